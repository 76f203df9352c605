// Package poll is for tests: it waits for a condition by polling it, and
// fails the test at a deadline with the condition's last error. Tests never
// sleep and hope.
package poll

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 5 * time.Millisecond

// Until polls cond until it returns nil, failing t at the deadline with
// cond's last error.
func Until(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(Interval)
	}
}
