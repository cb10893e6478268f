package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Where commands write their usage and errors (tests read them).
var stdout, stderr io.Writer = os.Stdout, os.Stderr

// usageError is a command line that cannot be run: a flag or an argument that does not
// belong. flashhold exits 2 for it.
type usageError struct{ error }

// newFlags is the flag set of the command name; its usage shows synopsis (what follows the
// command's name) and about.
func newFlags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: flashhold %s %s\n\n%s\n", name, synopsis, about)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
		fmt.Fprintln(out, "\nConfiguration comes from FLASHHOLD_* environment variables (docs/configuration.md).")
	}
	return fs
}

// parseFlags reads args into fs and checks that nargs arguments remain (-1: any number).
// -h or --help prints the usage on stdout and returns flag.ErrHelp: the command does nothing
// else.
func parseFlags(fs *flag.FlagSet, args []string, nargs int) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return flag.ErrHelp
	case err != nil:
		return usageError{err}
	case nargs >= 0 && fs.NArg() != nargs:
		if fs.NArg() > nargs {
			return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(nargs))}
		}
		return usageError{fmt.Errorf("want %d argument(s), got %d", nargs, fs.NArg())}
	}
	return nil
}
