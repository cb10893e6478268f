// Package deploycheck holds the checks on what deploy/ ships: the compose stack and the
// Kubernetes manifests set only variables flashhold reads, with values it accepts, and their
// health checks, ports, dependencies and selectors line up. The image itself is tested by
// `make image-test` (deploy/container/image-test.sh).
package deploycheck

import (
	"os"
	"strings"
	"testing"

	"github.com/flashhold/flashhold/config"
)

// known is every variable of config/variables.txt.
func known() map[string]config.Var {
	m := map[string]config.Var{}
	for _, v := range config.Vars() {
		m[v.Name] = v
	}
	return m
}

// checkVars reports every FLASHHOLD_ variable of env that config/variables.txt does not list,
// then loads env as serve would (no other FLASHHOLD_ variable set) and reports what it refuses.
// It returns the loaded configuration.
func checkVars(t *testing.T, where string, env map[string]string) config.Config {
	t.Helper()
	vars := known()
	for name := range env {
		if _, ok := vars[name]; strings.HasPrefix(name, "FLASHHOLD_") && !ok {
			t.Errorf("%s sets %s, which config/variables.txt does not list", where, name)
		}
	}
	for name := range vars {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	for name, value := range env {
		if strings.HasPrefix(name, "FLASHHOLD_") {
			t.Setenv(name, value)
		}
	}
	cfg, err := config.Load()
	if err != nil {
		t.Errorf("%s: serve would refuse its settings: %v", where, err)
	}
	return cfg
}
