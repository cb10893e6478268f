package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/flashhold/flashhold/alerts"
	"github.com/flashhold/flashhold/engine"
	"github.com/flashhold/flashhold/reconcile"
)

// errFindings makes reconcile exit with 1.
var errFindings = errors.New("findings")

// reconcileCmd runs one reconciliation: exit 0 clean, 1 findings, 2 could not run.
func reconcileCmd(ctx context.Context, args []string) error {
	fs := newFlags("reconcile", "[flags]", `Replay the ledger and compare it with the live counters in Redis; write a report.
Exit 0 clean, 1 findings, 2 could not run.`)
	out := fs.String("out", "reconcile-report", "directory for report.html, report.json and findings.csv")
	poolArg := fs.String("pool", "", "only this pool, as LOCATION/SKU")
	grace := fs.Duration("transfer-grace", 30*time.Second, "a transfer pending longer than this is reported half-done")
	repair := fs.Bool("repair", false, "correct what can be corrected (drift of available counts, ledger rows missing or altered, half-done transfers)")
	full := fs.Bool("full", false, "replay every partition from its first event, ignoring checkpoints")
	sinceArg := fs.String("since", "", "leave out findings about events older than this (RFC 3339 time, or a duration such as 24h)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var since time.Time
	if *sinceArg != "" {
		if d, err := time.ParseDuration(*sinceArg); err == nil {
			since = time.Now().Add(-d)
		} else if since, err = time.Parse(time.RFC3339, *sinceArg); err != nil {
			return fmt.Errorf("--since wants an RFC 3339 time or a duration, got %q", *sinceArg)
		}
	}
	e, store, _, closeAll, err := openEngineWithLedger(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	opts := reconcile.Options{TransferGrace: *grace, Repair: *repair, Full: *full, Since: since}
	if *poolArg != "" {
		loc, sku, ok := strings.Cut(*poolArg, "/")
		if !ok {
			return fmt.Errorf("--pool wants LOCATION/SKU")
		}
		opts.Pool = &engine.PoolKey{Location: loc, SKU: sku}
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		opts.Progress = func(done, total int) { fmt.Fprintf(os.Stderr, "\rreconciling: %d/%d partitions", done, total) }
	}
	// Storefronts hear of hold parts a repair could not keep (their webhooks are checked when
	// they are set: no URL policy is needed to queue a notice).
	rep, err := reconcile.New(e, store).WithNotices(alerts.NewStore(store.Pool(), nil)).Run(ctx, opts)
	if opts.Progress != nil {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	if err := rep.Write(*out); err != nil {
		return err
	}
	fmt.Printf("run %d: %d partitions (%d from a checkpoint), %d pools, %d events replayed, %d findings; report in %s\n",
		rep.RunID, rep.Partitions, rep.FromCheckpoint, rep.Pools, rep.Events, len(rep.Findings), *out)
	for _, k := range rep.Kinds() {
		fmt.Printf("  %s: %d\n", k, rep.ByKind[k])
	}
	if *repair {
		n := 0
		for _, f := range rep.Findings {
			if f.Repaired {
				n++
			}
		}
		fmt.Printf("  repaired: %d of %d (run again to confirm)\n", n, len(rep.Findings))
	}
	if !rep.Clean() {
		return errFindings
	}
	return nil
}
