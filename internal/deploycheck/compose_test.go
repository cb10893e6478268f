package deploycheck

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/flashhold/flashhold/internal/repo"
)

// composeFile is the part of a compose file these checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string   `yaml:"image"`
	Command     []string `yaml:"command"`
	Environment envMap   `yaml:"environment"`
	Ports       []string `yaml:"ports"`
	Volumes     []string `yaml:"volumes"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
	DependsOn dependsOn `yaml:"depends_on"`
	Restart   string    `yaml:"restart"`
}

// envMap is a service's environment, written as a map or as a list of NAME=value.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	*e = envMap{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
		return nil
	}
	var m map[string]string
	err := n.Decode(&m)
	for k, v := range m {
		(*e)[k] = v
	}
	return err
}

// dependsOn is a service's depends_on, written as a list of names or as a map of conditions.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, s := range list {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	err := n.Decode(&m)
	for k, v := range m {
		cond := v.Condition
		if cond == "" {
			cond = "service_started"
		}
		(*d)[k] = cond
	}
	return err
}

// oneShots are the services that run once and exit, which need no health check.
var oneShots = map[string]string{
	"migrate": "applies the ledger migrations and exits; serve waits for it to complete",
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo.TestRoot(t), "deploy/compose/compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(f.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return f
}

// isFlashhold says whether the service runs the flashhold image, and which command.
func isFlashhold(s composeService) (string, bool) {
	if !strings.Contains(s.Image, "flashhold") || len(s.Command) == 0 {
		return "", false
	}
	return s.Command[0], true
}

// TestComposeVariables: every FLASHHOLD_ variable the stack sets exists, and serve accepts the
// values.
func TestComposeVariables(t *testing.T) {
	f := readCompose(t)
	for name, s := range f.Services {
		if _, ok := isFlashhold(s); ok {
			checkVars(t, "compose service "+name, s.Environment)
		}
	}
}

// TestComposeHealthAndDependencies: every long-running service has a health check, every
// dependency names a service, a wait for health names a service that has one, a wait for
// completion names a one-shot, and every serve waits for the migration to complete.
func TestComposeHealthAndDependencies(t *testing.T) {
	f := readCompose(t)
	healthy := func(name string) bool {
		h := f.Services[name].Healthcheck
		return h != nil && !h.Disable && len(h.Test) > 0 && h.Test[0] != "NONE"
	}
	serves := 0
	for name, s := range f.Services {
		_, oneShot := oneShots[name]
		switch {
		case oneShot && s.Restart != "no":
			t.Errorf("%s runs once, but restart is %q, not \"no\"", name, s.Restart)
		case !oneShot && !healthy(name):
			t.Errorf("%s has no health check", name)
		}
		for dep, cond := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			}
			switch cond {
			case "service_healthy":
				if !healthy(dep) {
					t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				}
			case "service_completed_successfully":
				if _, ok := oneShots[dep]; !ok {
					t.Errorf("%s waits for %s to complete, which is not a one-shot", name, dep)
				}
			case "service_started":
			default:
				t.Errorf("%s depends on %s with condition %q", name, dep, cond)
			}
		}
		if cmd, ok := isFlashhold(s); ok && cmd == "serve" {
			serves++
			if s.DependsOn["migrate"] != "service_completed_successfully" {
				t.Errorf("%s does not wait for migrate to complete (depends_on: %v)", name, s.DependsOn)
			}
		}
	}
	if serves < 2 {
		t.Errorf("the stack runs %d serve instances, want at least 2", serves)
	}
}

// TestComposePorts: no two services publish the same host port on overlapping addresses.
func TestComposePorts(t *testing.T) {
	f := readCompose(t)
	type bound struct{ service, ip string }
	byPort := map[string][]bound{}
	for name, s := range f.Services {
		for _, p := range s.Ports {
			// [ip:]host:container[/proto]
			p, proto, _ := strings.Cut(p, "/")
			if proto == "" {
				proto = "tcp"
			}
			parts := strings.Split(p, ":")
			if len(parts) < 2 {
				continue // a container port alone: the host picks one
			}
			ip := "0.0.0.0"
			if len(parts) == 3 {
				ip = parts[0]
			}
			key := parts[len(parts)-2] + "/" + proto
			for _, b := range byPort[key] {
				if b.ip == ip || b.ip == "0.0.0.0" || ip == "0.0.0.0" {
					t.Errorf("%s and %s both publish host port %s on %s", b.service, name, key, ip)
				}
			}
			byPort[key] = append(byPort[key], bound{name, ip})
		}
	}
}

// TestComposeFiles: every file the stack mounts exists (the observability files may come
// later: logged), and Prometheus scrapes exactly the serve instances.
func TestComposeFiles(t *testing.T) {
	f := readCompose(t)
	dir := filepath.Join(repo.TestRoot(t), "deploy/compose")
	for name, s := range f.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") {
				if _, ok := f.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, which volumes: does not declare", name, src)
				}
				continue
			}
			path := filepath.Join(dir, src)
			if _, err := os.Stat(path); err != nil {
				rel, _ := filepath.Rel(repo.TestRoot(t), path)
				if strings.HasPrefix(rel, "deploy/observability/") {
					t.Logf("%s mounts %s, not in this tree yet", name, rel)
					continue
				}
				t.Errorf("%s mounts %s: %v", name, rel, err)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var scraped, serves []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				if sc.JobName != "flashhold" {
					t.Errorf("target %s is in job %s; the alerting rules expect flashhold", target, sc.JobName)
				}
				scraped = append(scraped, target)
			}
		}
	}
	for name, s := range f.Services {
		if cmd, ok := isFlashhold(s); ok && cmd == "serve" {
			_, port, err := net.SplitHostPort(s.Environment["FLASHHOLD_HTTP_ADDR"])
			if err != nil {
				t.Errorf("%s: FLASHHOLD_HTTP_ADDR: %v", name, err)
			}
			serves = append(serves, net.JoinHostPort(name, port))
		}
	}
	slices.Sort(scraped)
	slices.Sort(serves)
	if !slices.Equal(scraped, serves) {
		t.Errorf("Prometheus scrapes %v, want the serve instances %v", scraped, serves)
	}
}
