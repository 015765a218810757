package actors

import "testing"

// methodIndex runs on every call between grains (each outbox delivery, each Dasher → Order call).
func BenchmarkMethodIndex(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := methodIndex(KindArea, "Deliver"); err != nil {
			b.Fatal(err)
		}
	}
}
