package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEveryFieldHasOneVariable: every field of the configuration is set by exactly one
// variable: a field added to a package's config without a line in variables.txt fails.
// (A line naming a field that is gone stops readTable; see TestReadTable.)
func TestEveryFieldHasOneVariable(t *testing.T) {
	var c Config
	setBy := map[any][]string{}
	names := map[string]bool{}
	for _, v := range Vars() {
		if names[v.Name] {
			t.Errorf("%s is listed twice", v.Name)
		}
		names[v.Name] = true
		if !strings.HasPrefix(v.Name, "FLASHHOLD_") || v.Help == "" || v.Group == "" {
			t.Errorf("%s: wants the FLASHHOLD_ prefix, a group and a description", v.Name)
		}
		for i := range v.Fields {
			f := v.field(&c, i).Addr().Interface()
			setBy[f] = append(setBy[f], v.Name)
		}
	}
	var walk func(path string, rv reflect.Value)
	walk = func(path string, rv reflect.Value) {
		for i := range rv.NumField() {
			f, sf := rv.Field(i), rv.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			if f.Kind() == reflect.Struct {
				walk(path+sf.Name+".", f)
				continue
			}
			p := f.Addr().Interface()
			if n := len(setBy[p]); n != 1 {
				t.Errorf("Config.%s%s is set by %d variables %v, want 1", path, sf.Name, n, setBy[p])
			}
			delete(setBy, p)
		}
	}
	walk("", reflect.ValueOf(&c).Elem())
}

// TestDefaults: with nothing set, Load gives Default(), which passes Validate, and every
// variable's default is the one its package states.
func TestDefaults(t *testing.T) {
	cfg, err := load(map[string]string{"PATH": "/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if def := Default(); !reflect.DeepEqual(cfg, def) {
		t.Errorf("empty environment gives\n %+v\nwant\n %+v", cfg, def)
	}
	want := map[string]string{"FLASHHOLD_HOLD_TTL_DEFAULT": "5m", "FLASHHOLD_IDEMPOTENCY_TTL": "1h", "FLASHHOLD_PARTITIONS": "64",
		"FLASHHOLD_HTTP_IDLE_TIMEOUT": "1m", "FLASHHOLD_REBALANCE_LOW_WATER": "0.25", "FLASHHOLD_REDIS_CLUSTER_ADDRS": "",
		"FLASHHOLD_ADMIT": "true", "FLASHHOLD_PERSIST_LAG_ALARM": "1000000", "FLASHHOLD_RECONCILE_EVERY": "0s"}
	for _, v := range Vars() {
		if w, ok := want[v.Name]; ok && v.Default() != w {
			t.Errorf("%s default %q, want %q", v.Name, v.Default(), w)
		}
	}
}

// TestEveryVariableReads: each variable set in the environment reaches its field (values of
// every type; FLASHHOLD_STREAM_KEEP reaches the sweeper and the persister both); an empty
// value keeps the default.
func TestEveryVariableReads(t *testing.T) {
	cfg, err := load(map[string]string{
		"FLASHHOLD_REDIS_CLUSTER_ADDRS": "a:1,b:2", "FLASHHOLD_HOLD_TTL_MAX": "2h", "FLASHHOLD_IDEMPOTENCY_TTL": "3h",
		"FLASHHOLD_ADMIT": "false", "FLASHHOLD_REBALANCE_LOW_WATER": "0.5", "FLASHHOLD_STREAM_KEEP": "77",
		"FLASHHOLD_HTTP_MAX_CONNS": "100", "FLASHHOLD_PERSIST_MODE": "insert", "FLASHHOLD_KEY_PREFIX": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Engine.RedisClusterAddrs, []string{"a:1", "b:2"}) || cfg.Engine.MaxTTL != 2*time.Hour ||
		cfg.API.Admission.On || cfg.Sweep.LowWater != 0.5 || cfg.Sweep.StreamKeep != 77 || cfg.Persist.Keep != 77 ||
		cfg.API.MaxConns != 100 || cfg.Persist.Mode != "insert" || cfg.Engine.Prefix != "fh" {
		t.Errorf("read %+v", cfg)
	}
	for _, v := range Vars() {
		if c := Default(); v.Default() != "" && v.set(&c, v.Default()) != nil {
			t.Errorf("%s does not read its own default back", v.Name)
		}
	}
}

// TestParseErrorNamesVariable: a value that cannot be read is reported with its variable and
// the value, every one of them; a value that cannot work names its variable.
func TestParseErrorNamesVariable(t *testing.T) {
	_, err := load(map[string]string{"FLASHHOLD_SWEEP_RATE": "fast", "FLASHHOLD_ADMIT": "maybe", "FLASHHOLD_HOLD_TTL_MIN": "5x"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, s := range []string{`FLASHHOLD_SWEEP_RATE="fast"`, `FLASHHOLD_ADMIT="maybe"`, `FLASHHOLD_HOLD_TTL_MIN="5x"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not name %s", err, s)
		}
	}
	if _, err := load(map[string]string{"FLASHHOLD_PERSIST_MODE": "carrier-pigeon"}); err == nil || !strings.Contains(err.Error(), "FLASHHOLD_PERSIST_MODE") {
		t.Errorf("bad mode: %v", err)
	}
}

// TestConfigurationDocCurrent: docs/configuration.md is what `make docs-config` writes from
// the list, so it documents every variable, each default as it is, and none that is gone.
func TestConfigurationDocCurrent(t *testing.T) {
	have, err := os.ReadFile(filepath.Join("..", DocPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, Markdown()) {
		t.Fatalf("%s is stale: run `make docs-config`", DocPath)
	}
	for _, v := range Vars() {
		if !bytes.Contains(have, []byte("| `"+v.Name+"` |")) {
			t.Errorf("%s is not documented", v.Name)
		}
	}
}

// harness are the variables the tests, the bench's tests and the scripts in deploy/ read;
// flashhold itself does not.
var harness = regexp.MustCompile(`^FLASHHOLD_(TEST_|SOAK|LOCAL_|DEMO_|LEDGER_GROWTH|BENCH_EVENTS|PLANTRAP_ROWS|SCREENSHOT_DIR|CALLGRIND_PORT)`)

// TestNoVariableNamedThatIsGone: every FLASHHOLD_ variable the README, docs/ and the Go
// sources name is one flashhold reads (or one of the harness's).
func TestNoVariableNamedThatIsGone(t *testing.T) {
	known := map[string]bool{}
	for _, v := range Vars() {
		known[v.Name] = true
	}
	name := regexp.MustCompile(`FLASHHOLD_[A-Z0-9_]*[A-Z0-9]`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == ".git" || d.Name() == ".local" || d.Name() == "bench" && filepath.Base(filepath.Dir(path)) == "docs") {
			if err == nil {
				err = filepath.SkipDir
			}
			return err
		}
		if ext := filepath.Ext(path); ext != ".go" && ext != ".md" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range name.FindAllString(string(raw), -1) {
			if !known[n] && !harness.MatchString(n) {
				t.Errorf("%s names %s, which flashhold does not read", path, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadTable: a line of variables.txt that names no field, or a field of another type
// than the line's first, or no class, is refused with its line number.
func TestReadTable(t *testing.T) {
	for _, text := range []string{
		"[g]\nEXAMPLE_X operator Engine.Gone help",
		"[g]\nEXAMPLE_X operator Engine.RedisURL,Sweep.Rate help",
		"[g]\nEXAMPLE_X Engine.RedisURL help",
		"[g]\nEXAMPLE_X tuning Engine help",
		"EXAMPLE_X tuning Engine.RedisURL no group",
	} {
		if _, err := readTable(text); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: %v", text, err)
		}
	}
	vs, err := readTable("# c\n[Redis]\nEXAMPLE_X  operator  Sweep.StreamKeep,Persist.Keep  what  it means\n")
	if err != nil || len(vs) != 1 || vs[0].Group != "Redis" || vs[0].Help != "what it means" || len(vs[0].Fields) != 2 {
		t.Errorf("%+v, %v", vs, err)
	}
}
