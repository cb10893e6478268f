package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// functionsCmd lists the versions of the function library in Redis and, with --prune, deletes
// all but this build's (and those kept).
func functionsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("functions", flag.ContinueOnError)
	prune := fs.Bool("prune", false, "delete every version but this build's and those in --keep")
	keep := fs.String("keep", "", "comma-separated library names --prune leaves alone (builds still running)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	e, _, err := openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Redis().Close()
	defer e.Close()
	if *prune {
		var kept []string
		if *keep != "" {
			kept = strings.Split(*keep, ",")
		}
		deleted, err := e.PruneLibraries(ctx, kept)
		for _, n := range deleted {
			fmt.Printf("deleted %s\n", n)
		}
		if err != nil {
			return err
		}
	}
	libs, err := e.Libraries(ctx)
	if err != nil {
		return err
	}
	for _, l := range libs {
		state := "other build"
		if l.Current {
			state = "this build"
		}
		fmt.Printf("%s\t%s\ton %d node(s)\n", l.Name, state, l.Nodes)
	}
	return nil
}
