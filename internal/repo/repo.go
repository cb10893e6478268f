// Package repo finds the repository's top directory, for tests and test helpers that read or
// build what lies outside their own package.
package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Root is the directory holding go.mod, found from the working directory upwards.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TestRoot is Root for a test: the test fails when there is none.
func TestRoot(t testing.TB) string {
	t.Helper()
	dir, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
