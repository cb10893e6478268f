// Command flashhold is the reservation engine's one binary: see `flashhold help`.
package main

import (
	"context"
	"errors"
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
  flashhold stock load [--reset] FILE   create pools and set their stock from CSV or JSON
  flashhold stock show LOCATION SKU     print a pool's availability as JSON
  flashhold bench [--scenario NAME] [--duration D] [--out DIR] [--clients N] [--rate R] [--stock K]
                                        drive flash-sale load at an in-process flashhold and at
                                        baselines; exit 0 clean, 1 oversold/undersold, 2 could not run
  flashhold functions [--prune [--keep NAME,...]]
                                        list the function library versions in Redis; --prune
                                        deletes all but this build's (and those kept)
  flashhold help                        this text

Configuration comes from FLASHHOLD_* environment variables (see README.md).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx)
	case "reconcile":
		if err := reconcileCmd(ctx, args[1:]); err != nil {
			if errors.Is(err, errFindings) {
				return 1
			}
			fmt.Fprintf(os.Stderr, "flashhold reconcile: %v\n", err)
			return 2
		}
		return 0
	case "migrate":
		err = migrateCmd(ctx)
	case "persist":
		err = persistCmd(ctx)
	case "bench":
		if err := benchCmd(ctx, args[1:]); err != nil {
			if errors.Is(err, errDirty) {
				return 1
			}
			fmt.Fprintf(os.Stderr, "flashhold bench: %v\n", err)
			return 2
		}
		return 0
	case "sweep":
		err = sweepCmd(ctx)
	case "stock":
		err = stockCmd(ctx, args[1:])
	case "functions":
		err = functionsCmd(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "flashhold: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "flashhold %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
