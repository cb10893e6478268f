package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flashhold/flashhold/catalog"
	"github.com/flashhold/flashhold/config"
	"github.com/flashhold/flashhold/engine"
)

// openEngine connects to Redis and builds an engine from the environment.
func openEngine(ctx context.Context) (*engine.Engine, config.Config, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, cfg, err
	}
	rdb, err := engine.NewRedisClient(cfg.Engine)
	if err != nil {
		return nil, cfg, err
	}
	e, err := engine.New(ctx, rdb, cfg.Engine, engine.WithLogger(cfg.Logger()), engine.OwnsClient())
	if err != nil {
		rdb.Close()
		return nil, cfg, err
	}
	return e, cfg, nil
}

func stockCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("want `stock load FILE` or `stock show LOCATION SKU`")}
	}
	switch args[0] {
	case "load":
		fs := newFlags("stock load", "[--reset] [--missing] [--format csv|json] FILE", `Create the pools of a CSV or JSON file and set their stock. Loading the same file
again changes nothing unless --reset is given.`)
		reset := fs.Bool("reset", false, "set stock again even if this file was loaded before")
		missing := fs.Bool("missing", false, "load only pools that do not exist yet; leave existing ones (and their stock) alone")
		format := fs.String("format", "", "csv or json (default: from the file name)")
		if err := parseFlags(fs, args[1:], 1); err != nil {
			return err
		}
		return stockLoad(ctx, fs.Arg(0), *format, *reset, *missing)
	case "show":
		fs := newFlags("stock show", "LOCATION SKU", "Print a pool's availability as JSON.")
		if err := parseFlags(fs, args[1:], 2); err != nil {
			return err
		}
		e, _, err := openEngine(ctx)
		if err != nil {
			return err
		}
		defer e.Close()
		a, err := e.Availability(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(a, "", "  ")
		fmt.Println(string(out))
		return nil
	}
	fs := newFlags("stock", "load [flags] FILE | show LOCATION SKU", `Load pools and their stock from a file, or show one pool. `+
		"`flashhold stock load --help`"+` lists load's flags.`)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	return usageError{fmt.Errorf("unknown stock command %q", args[0])}
}

func stockLoad(ctx context.Context, path, format string, reset, missing bool) error {
	if format == "" {
		format = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, bad, err := catalog.Parse(f, format)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	e, _, err := openEngine(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	opts := catalog.LoadOptions{MissingOnly: missing}
	if reset {
		opts.Reset = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	n, loadBad := catalog.Load(ctx, e, rows, "stock-load", opts)
	bad = append(bad, loadBad...)
	sort.Slice(bad, func(i, j int) bool { return bad[i].Line < bad[j].Line })
	for _, b := range bad {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, b)
	}
	fmt.Printf("%s: %d pools loaded, %d rows refused\n", path, n, len(bad))
	if len(bad) > 0 {
		return fmt.Errorf("%d rows refused", len(bad))
	}
	return nil
}
