// Package docs holds the checks that keep README.md and docs/ whole: every relative link
// leads to a file that exists, docs/README.md indexes every page, and no page points outside
// the repository.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flashhold/flashhold/internal/repo"
)

// pages lists README.md and every Markdown file under docs/, relative to the root.
func pages(t *testing.T, top string) []string {
	t.Helper()
	out := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(top, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(top, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var link = regexp.MustCompile(`\]\(([^)\s]+)\)|src="([^"]+)"`)

// TestLinksResolve: every relative link in README.md and docs/ names a file that exists, and
// none leads outside the repository.
func TestLinksResolve(t *testing.T) {
	top := repo.TestRoot(t)
	for _, page := range pages(t, top) {
		raw, err := os.ReadFile(filepath.Join(top, page))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "../shared") {
			t.Errorf("%s points outside the repository (../shared)", page)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target := m[1] + m[2]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			abs := filepath.Join(top, filepath.Dir(page), target)
			if rel, err := filepath.Rel(top, abs); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links outside the repository: %s", page, target)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", page, target)
			}
		}
	}
}

// TestIndexListsEveryPage: docs/README.md links to every Markdown page under docs/.
func TestIndexListsEveryPage(t *testing.T) {
	top := repo.TestRoot(t)
	index, err := os.ReadFile(filepath.Join(top, "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages(t, top) {
		rel, _ := filepath.Rel("docs", page)
		if page == "README.md" || rel == "README.md" {
			continue
		}
		if !strings.Contains(string(index), "("+filepath.ToSlash(rel)+")") {
			t.Errorf("docs/README.md does not index %s", rel)
		}
	}
}
