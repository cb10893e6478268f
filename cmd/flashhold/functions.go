package main

import (
	"context"
	"fmt"
	"strings"
)

// functionsCmd lists the versions of the function library in Redis and, with --prune, deletes
// all but this build's (and those kept).
func functionsCmd(ctx context.Context, args []string) error {
	fs := newFlags("functions", "[--prune [--keep NAME,...]]", `List the versions of the Redis function library; --prune deletes all but this
build's (and those kept).`)
	prune := fs.Bool("prune", false, "delete every version but this build's and those in --keep")
	keep := fs.String("keep", "", "comma-separated library names --prune leaves alone (builds still running)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	e, _, err := openEngine(ctx)
	if err != nil {
		return err
	}
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
