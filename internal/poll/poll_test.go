package poll

import (
	"errors"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	calls := 0
	Until(t, time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("%d calls, want 3", calls)
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = format
}

func TestUntilFailsAtTheDeadline(t *testing.T) {
	r := &fatalRecorder{TB: t}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(r, 50*time.Millisecond, func() error {
			if r.msg != "" {
				return nil // Fatalf was called: stop, as the test would
			}
			return errors.New("never")
		})
	}()
	<-done
	if r.msg == "" || time.Since(start) < 50*time.Millisecond {
		t.Errorf("Fatalf %q after %v", r.msg, time.Since(start))
	}
}
