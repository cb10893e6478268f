package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCaptured runs flashhold with args and returns its exit code, stdout and stderr.
func runCaptured(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	was, wasErr := stdout, stderr
	stdout, stderr = &out, &errOut
	t.Cleanup(func() { stdout, stderr = was, wasErr })
	// Nothing may be reached: a command that starts working instead of answering fails on
	// this Redis and Postgres, or returns at once on the cancelled context.
	t.Setenv("FLASHHOLD_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("FLASHHOLD_POSTGRES_URL", "postgres://nobody@127.0.0.1:1/none")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code := run(ctx, args)
	return code, out.String(), errOut.String()
}

// helpCases is every command (and sub-command) line that must answer --help.
var helpCases = [][]string{{"serve"}, {"sweep"}, {"persist"}, {"migrate"}, {"reconcile"}, {"bench"},
	{"functions"}, {"version"}, {"health"}, {"stock"}, {"stock", "load"}, {"stock", "show"}}

// TestHelp: every command prints its usage on stdout for -h and --help and exits 0, without
// starting its work.
func TestHelp(t *testing.T) {
	for _, c := range helpCases {
		for _, flag := range []string{"--help", "-h"} {
			code, out, errOut := runCaptured(t, append(c, flag)...)
			name := strings.Join(c, " ")
			if code != 0 || !strings.HasPrefix(out, "Usage: flashhold "+name+" ") || errOut != "" {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q", name, flag, code, out, errOut)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if code, out, _ := runCaptured(t, args...); code != 0 || !strings.Contains(out, "flashhold serve") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

// TestUnknownFlag: an unknown flag or a stray argument exits 2 with a message naming it,
// before the command does anything.
func TestUnknownFlag(t *testing.T) {
	for _, c := range helpCases {
		name := strings.Join(c, " ")
		code, out, errOut := runCaptured(t, append(c, "--no-such-flag")...)
		if code != 2 || !strings.Contains(errOut, "no-such-flag") || !strings.Contains(errOut, "--help") || out != "" {
			t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"serve", "now"}, {"sweep", "x"}, {"stock", "count"}, {"stock", "show", "only-location"}, {"frobnicate"}, {}} {
		if code, _, errOut := runCaptured(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
