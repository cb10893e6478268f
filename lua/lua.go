// Package lua holds flashhold's Redis scripts, one file per operation.
//
// lib.lua holds the helpers every script shares; Script prepends it to the
// operation's own file, so each loaded script is self-contained.
package lua

import (
	"embed"
	"fmt"
)

//go:embed *.lua
var files embed.FS

// Names lists every operation script.
var Names = []string{
	"reserve", "reserve_batch", "commit", "release", "extend", "sweep", "adjust",
	"transfer_out", "transfer_in", "transfer_settle", "remember", "fence", "snapshot", "lease", "repair",
	"rebase", "carry",
}

// standalone scripts touch no partition and get no shared helpers.
var standalone = map[string]bool{"lease": true}

// Script returns the full source of the named operation: lib.lua, then the operation (a
// standalone script alone).
func Script(name string) (string, error) {
	if standalone[name] {
		op, err := files.ReadFile(name + ".lua")
		if err != nil {
			return "", fmt.Errorf("lua: no script %q: %w", name, err)
		}
		return string(op), nil
	}
	lib, err := files.ReadFile("lib.lua")
	if err != nil {
		return "", err
	}
	op, err := files.ReadFile(name + ".lua")
	if err != nil {
		return "", fmt.Errorf("lua: no script %q: %w", name, err)
	}
	return string(lib) + "\n" + string(op), nil
}
