package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReportRendersInChromium opens report.html in headless Chromium: the rendered page shows
// the run's summary numbers, and a screenshot of it is taken (left in the test's temp dir, or
// in FLASHHOLD_SCREENSHOT_DIR when set).
func TestReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (deploy/local/browser.sh installs it; make test runs it)")
	}
	f := setup(t)
	p := f.e.PartitionOf("s1", "a", 1)
	f.rdb.HIncrBy(context.Background(), f.e.Config().Prefix+":{p"+strconv.Itoa(p)+"}:stock", "s1|a|1", 4)
	rep := f.run(t)
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	page := "file://" + filepath.Join(dir, "report.html")
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1200,900"}
	chrome := func(extra ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append(append(flags, extra...), page)...).Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return out
	}
	dom := string(chrome("--dump-dom"))
	for _, want := range []string{`id="pools">2<`, `id="partitions">16<`, fmt.Sprintf(`id="events">%d<`, rep.Events),
		`id="findings">1<`, "1 discrepancy found", "available is"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	shots := os.Getenv("FLASHHOLD_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	shot := filepath.Join(shots, "reconcile-report.png")
	chrome("--screenshot=" + shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10_000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
}
