package engine

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestConfigSentinel(t *testing.T) {
	for _, c := range []struct {
		name  string
		set   func(*Config)
		wants string // part of the error; empty: valid
	}{
		{"both", func(c *Config) { c.RedisSentinelAddrs, c.RedisSentinelMaster = []string{"127.0.0.1:26379"}, "fh" }, ""},
		{"addrs alone", func(c *Config) { c.RedisSentinelAddrs = []string{"127.0.0.1:26379"} }, "set both or neither"},
		{"master alone", func(c *Config) { c.RedisSentinelMaster = "fh" }, "set both or neither"},
		{"with cluster", func(c *Config) {
			c.RedisSentinelAddrs, c.RedisSentinelMaster = []string{"127.0.0.1:26379"}, "fh"
			c.RedisClusterAddrs = []string{"127.0.0.1:7000"}
		}, "exclude each other"},
		{"with wait", func(c *Config) {
			c.RedisSentinelAddrs, c.RedisSentinelMaster = []string{"127.0.0.1:26379"}, "fh"
			c.RedisWaitReplicas = 1
		}, ""},
	} {
		cfg := DefaultConfig()
		c.set(&cfg)
		err := cfg.Validate()
		switch {
		case c.wants == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wants != "" && (err == nil || !strings.Contains(err.Error(), c.wants)):
			t.Errorf("%s: got %v, want an error saying %q", c.name, err, c.wants)
		}
	}
}

// With Sentinels the client is a failover client: it takes the user, password and database
// from FLASHHOLD_REDIS_URL and the primary's address from the Sentinels.
func TestNewRedisClientSentinel(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RedisURL = "redis://app:secret@ignored:1/3"
	cfg.RedisSentinelAddrs, cfg.RedisSentinelMaster = []string{"127.0.0.1:1", "127.0.0.1:2"}, "fh"
	rdb, err := NewRedisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	c, ok := rdb.(*redis.Client)
	if !ok {
		t.Fatalf("got %T, want a failover *redis.Client", rdb)
	}
	o := c.Options()
	if o.Addr != "FailoverClient" || o.Username != "app" || o.Password != "secret" || o.DB != 3 ||
		o.ReadTimeout != cfg.RedisTimeout {
		t.Errorf("options: addr %q user %q password %q db %d read timeout %s", o.Addr, o.Username, o.Password, o.DB, o.ReadTimeout)
	}
}

func TestNewRedisClientSentinelTLS(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RedisURL = "rediss://ignored:1/0"
	cfg.RedisSentinelAddrs, cfg.RedisSentinelMaster = []string{"127.0.0.1:1"}, "fh"
	if rdb, err := NewRedisClient(cfg); err == nil {
		rdb.Close()
		t.Fatal("a rediss:// URL with Sentinels was accepted; its TLS would not be used")
	}
}
