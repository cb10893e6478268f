package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"
)

// version is the release this binary was built as, set at link time
// (-ldflags "-X main.version=..."); "dev" when it was not.
var version = "dev"

// versionCmd prints the release, the Go version and the source revision the binary was built from.
func versionCmd(_ context.Context, args []string) error {
	fs := newFlags("version", "", "Print the release, the Go version and the source revision of this binary.")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	rev, goVersion := "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "flashhold %s %s %s\n", version, goVersion, rev)
	return nil
}

// healthCmd asks a serve on this host for /healthz: the image's health check, which has no
// shell or HTTP client but the binary.
func healthCmd(ctx context.Context, args []string) error {
	fs := newFlags("health", "[--url URL]", `Exit 0 when serve answers 200 on /healthz, 1 otherwise. The address is
FLASHHOLD_HTTP_ADDR's port on 127.0.0.1 unless --url names one.`)
	url := fs.String("url", "", "the URL to ask (default http://127.0.0.1:PORT/healthz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *url == "" {
		addr := os.Getenv("FLASHHOLD_HTTP_ADDR")
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return usageError{fmt.Errorf("FLASHHOLD_HTTP_ADDR %q: %w", addr, err)}
		}
		*url = "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError{err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", *url, resp.Status)
	}
	return nil
}
