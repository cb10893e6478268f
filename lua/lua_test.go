package lua

import (
	"strings"
	"testing"
)

// TestLibrary: the library registers every partition operation exactly once under its own
// name, leaves the standalone scripts out, and is the same on every build of the same sources.
func TestLibrary(t *testing.T) {
	name, code, err := Library()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(code, "#!lua name="+name+"\n") {
		t.Fatalf("library code does not open with its name %q: %.60q", name, code)
	}
	for _, op := range Names {
		reg := "redis.register_function('" + Function(name, op) + "',"
		switch n := strings.Count(code, reg); {
		case Standalone(op) && n != 0:
			t.Errorf("standalone script %s is registered in the library", op)
		case !Standalone(op) && n != 1:
			t.Errorf("operation %s is registered %d times", op, n)
		}
	}
	if strings.Count(code, "redis.register_function(") != len(Names)-len(standalone) {
		t.Errorf("the library registers functions that are not operations")
	}
	again, code2, _ := Library()
	if again != name || code2 != code {
		t.Errorf("two builds of the same sources differ: %s and %s", name, again)
	}
}

// TestScript: only standalone scripts are handed out as scripts.
func TestScript(t *testing.T) {
	src, err := Script("lease")
	if err != nil || !strings.Contains(src, "redis.call('GET', key)") {
		t.Fatalf("lease: %v", err)
	}
	if _, err := Script("reserve"); err == nil {
		t.Fatal("reserve, a library function, was handed out as a standalone script")
	}
}
