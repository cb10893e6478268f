// Command flashhold is the reservation engine's one binary: see `flashhold help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `flashhold: a reservation engine for flash-sale checkout.

Usage:
  flashhold serve                       serve the HTTP API (FLASHHOLD_HTTP_ADDR), with the sweeper
  flashhold sweep                       run only the sweeper (expiry, rebalancing, write-off)
  flashhold persist                     run only the ledger persister (Redis streams -> Postgres)
  flashhold migrate                     apply the ledger schema migrations to FLASHHOLD_POSTGRES_URL
  flashhold reconcile [--repair] [--full] [--since T] [--out DIR] [--pool LOCATION/SKU]
                                        compare the ledger with the live counters; exit 0 clean,
                                        1 findings, 2 could not run
  flashhold stock load [--reset] [--missing] [--format F] FILE
                                        create pools and set their stock from CSV or JSON
  flashhold stock show LOCATION SKU     print a pool's availability as JSON
  flashhold bench [--scenario NAME] [--duration D] [--out DIR] [--clients N] [--rate R] [--stock K]
                                        drive flash-sale load at an in-process flashhold and at
                                        baselines; exit 0 clean, 1 oversold/undersold, 2 could not run
  flashhold functions [--prune [--keep NAME,...]]
                                        list the function library versions in Redis; --prune
                                        deletes all but this build's (and those kept)
  flashhold version                     print the release, Go version and source revision
  flashhold health [--url URL]          exit 0 when serve answers 200 on /healthz (the image's
                                        health check)
  flashhold help                        this text

Every command takes -h or --help. Configuration comes from FLASHHOLD_* environment
variables: docs/configuration.md lists them.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// commands are flashhold's commands by name; each reads its own flags (and -h, --help).
var commands = map[string]func(context.Context, []string) error{
	"serve":     serveCmd,
	"sweep":     sweepCmd,
	"persist":   persistCmd,
	"migrate":   migrateCmd,
	"reconcile": reconcileCmd,
	"stock":     stockCmd,
	"bench":     benchCmd,
	"functions": functionsCmd,
	"version":   versionCmd,
	"health":    healthCmd,
}

// run runs the command args name and returns the exit code: 0 done (or help shown), 1 failed
// (reconcile: findings; bench: invariants broken), 2 a command line that cannot be run
// (reconcile and bench: also could not run).
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "flashhold: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := cmd(ctx, args[1:])
	var bad usageError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "flashhold %s: %v\nRun `flashhold %s --help` for usage.\n", name, err, name)
		return 2
	case errors.Is(err, errFindings) || errors.Is(err, errDirty):
		return 1
	}
	fmt.Fprintf(stderr, "flashhold %s: %v\n", name, err)
	if name == "reconcile" || name == "bench" {
		return 2
	}
	return 1
}
