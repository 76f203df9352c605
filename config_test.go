package ghost

import (
	"context"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad addr":         {Addr: "nonsense"},
		"value over bytes": {MaxBytes: 100, MaxValueSize: 1000},
		"negative ttl":     {DefaultTTL: -5 * time.Second},
		"short key":        {SecretKey: []byte("short")},
	} {
		cfg.Network = NewMemNetwork()
		if _, err := Join(context.Background(), cfg); err == nil {
			t.Errorf("%s: Join succeeded", name)
		}
	}
}
