package cluster

import (
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

type PidCacheValue struct {
	cache cmap.ConcurrentMap
}

func NewPidCache() *PidCacheValue {
	pidCache := &PidCacheValue{
		cache: cmap.New(),
	}

	return pidCache
}

func key(identity string, kind string) string {
	return identity + "." + kind
}

// Platter patch 7: Get runs on every cluster request. key's concatenation allocated for every key longer than 32
// bytes (a UUID identity with its kind is 45 to 49), 4 % of a node's CPU with the other key strings. Get now builds
// the key in a stack buffer and looks it up through a string view of it, which ConcurrentMap.Get does not keep.
func (c *PidCacheValue) Get(identity string, kind string) (*actor.PID, bool) {
	var buf [128]byte
	var k string
	if len(identity)+1+len(kind) <= len(buf) {
		b := append(append(append(buf[:0], identity...), '.'), kind...)
		k = unsafe.String(unsafe.SliceData(b), len(b))
	} else {
		k = key(identity, kind)
	}
	v, ok := c.cache.Get(k)

	if !ok {
		return nil, false
	}

	return v.(*actor.PID), true
}

func (c *PidCacheValue) Set(identity string, kind string, pid *actor.PID) {
	k := key(identity, kind)
	c.cache.Set(k, pid)
}

func (c *PidCacheValue) RemoveByValue(identity string, kind string, pid *actor.PID) {
	k := key(identity, kind)

	c.cache.RemoveCb(k, func(key string, v interface{}, exists bool) bool {
		if !exists {
			return false
		}

		existing, _ := v.(*actor.PID)

		return existing.Equal(pid)
	})
}

func (c *PidCacheValue) Remove(identity string, kind string) {
	k := key(identity, kind)
	c.cache.Remove(k)
}

func (c *PidCacheValue) RemoveByMember(member *Member) {
	addr := member.Address()

	for item := range c.cache.IterBuffered() {
		pid, _ := item.Val.(*actor.PID)
		if pid.Address == addr {
			c.cache.Remove(item.Key)
		}
	}
}
