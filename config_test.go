package ghost

import (
	"context"
	"errors"
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

// A node that would listen beyond loopback with no secret refuses to start
// unless the config says it is meant to be open.
func TestOpenNodeMustSayItIsInsecure(t *testing.T) {
	ctx := context.Background()
	if _, err := Join(ctx, Config{Addr: ":0"}); !errors.Is(err, ErrInsecure) {
		t.Fatalf("Join on every interface without a secret: %v; want ErrInsecure", err)
	}
	for name, cfg := range map[string]Config{
		"loopback": {Addr: "127.0.0.1:0"},
		"insecure": {Addr: ":0", Insecure: true},
		"secret":   {Addr: ":0", SecretKey: []byte("0123456789abcdef")},
	} {
		n, err := Join(ctx, cfg)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		n.Close()
	}
}
