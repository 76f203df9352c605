package ghost

import "testing"

func TestCounterSumsItsCells(t *testing.T) {
	var c counter
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				c.Add(2)
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if got := c.Load(); got != 8000 {
		t.Fatalf("Load = %d, want 8000", got)
	}
}
