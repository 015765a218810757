package journal

import bolt "go.etcd.io/bbolt"

// RewriteFormatForTest overwrites the format marker of a closed journal file.
func RewriteFormatForTest(path, format string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte(format)) })
}
