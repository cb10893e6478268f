// Package lua holds flashhold's Redis code, one file per operation.
//
// lib.lua holds the helpers every partition operation shares. Library builds one Redis
// Functions library of them: lib.lua once, then each operation's file as the body of a
// registered function, so the helpers are defined when the library loads and not on every
// call. Standalone scripts (lease) are plain EVAL scripts (Script).
package lua

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"fmt"
	"strings"
)

//go:embed *.lua
var files embed.FS

// Names lists every operation script.
var Names = []string{
	"reserve", "reserve_batch", "commit", "release", "end_batch", "extend", "void", "claim", "settle",
	"hold_end", "sweep", "adjust", "adjust_batch", "transfer_out", "transfer_in", "transfer_settle", "transfer_done",
	"fence", "snapshot", "lease", "repair", "rebase", "carry", "trim", "hold_change",
}

// LibraryPrefix starts the name of every version of the library.
const LibraryPrefix = "flashhold_"

// standalone scripts touch no partition and get no shared helpers; they are called with
// EVALSHA, not as library functions.
var standalone = map[string]bool{"lease": true}

// Standalone reports whether the named script is a plain script outside the library.
func Standalone(name string) bool { return standalone[name] }

// Script returns the source of a standalone script.
func Script(name string) (string, error) {
	if !standalone[name] {
		return "", fmt.Errorf("lua: %q is a library function, not a standalone script", name)
	}
	op, err := files.ReadFile(name + ".lua")
	if err != nil {
		return "", fmt.Errorf("lua: no script %q: %w", name, err)
	}
	return string(op), nil
}

// Library returns the Functions library of every partition operation: its name and its code
// for FUNCTION LOAD. The name carries a hash of the sources, so engines of different versions
// that share a Redis each load and call their own functions (Function names them).
func Library() (name, code string, err error) {
	lib, err := files.ReadFile("lib.lua")
	if err != nil {
		return "", "", err
	}
	type operation struct {
		name string
		src  []byte
	}
	var ops []operation
	h := sha1.New()
	h.Write(lib)
	for _, op := range Names {
		if standalone[op] {
			continue
		}
		src, err := files.ReadFile(op + ".lua")
		if err != nil {
			return "", "", fmt.Errorf("lua: no script %q: %w", op, err)
		}
		ops = append(ops, operation{op, src})
		fmt.Fprintf(h, "\x00%s\x00%s", op, src)
	}
	name = LibraryPrefix + hex.EncodeToString(h.Sum(nil))[:16]
	var b strings.Builder
	fmt.Fprintf(&b, "#!lua name=%s\n", name)
	b.Write(lib)
	for _, op := range ops {
		// begin binds the call's keys and arguments; the file's body runs, and finish ends
		// the call with what it answers (see lib.lua).
		fmt.Fprintf(&b, "\nredis.register_function('%s', function(keys, args)\nbegin(keys, args)\nreturn finish((function()\n%s\nend)())\nend)\n",
			Function(name, op.name), op.src)
	}
	return name, b.String(), nil
}

// Function is the name operation op has in library lib.
func Function(lib, op string) string { return lib + "_" + op }
