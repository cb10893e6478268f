// Command gendoc writes docs/configuration.md from the list of variables in package config.
// Run it from the module's root: go run ./config/cmd/gendoc (or make docs-config).
package main

import (
	"fmt"
	"os"

	"github.com/flashhold/flashhold/config"
)

func main() {
	if err := os.WriteFile(config.DocPath, config.Markdown(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
