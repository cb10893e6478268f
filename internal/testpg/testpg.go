// Package testpg gives each test its own Postgres schema on the shared server, dropped when
// the test ends.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// URL is the server tests use: FLASHHOLD_TEST_POSTGRES_URL, or the local default.
func URL() string {
	if u := os.Getenv("FLASHHOLD_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Addr is the host:port of URL (tests that put a proxy in front of PostgreSQL aim it there).
func Addr(t testing.TB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(URL())
	if err != nil {
		t.Fatalf("postgres url: %v", err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// Schema creates a fresh schema and returns a pool whose search_path is that schema, and the
// schema's name. The schema is dropped when the test ends.
func Schema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgxpool.New(ctx, URL())
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Fatalf("postgres at %s not reachable (start it with deploy/local/up.sh or `make test`): %v", URL(), err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "fhtest_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return Pool(t, URL(), schema), schema
}

// Pool opens a pool on url with search_path set to schema, closed when the test ends.
func Pool(t testing.TB, url, schema string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
