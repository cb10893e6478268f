package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path"
	"regexp"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flashhold/flashhold/internal/repo"
)

// object is the part of a Kubernetes object these checks read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas *int     `yaml:"replicas"`
		Selector selector `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		// Service
		Type         string `yaml:"type"`
		ExternalName string `yaml:"externalName"`
		Ports        []struct {
			Name       string `yaml:"name"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		// HorizontalPodAutoscaler
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		// ServiceMonitor
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// selector is the labels an object selects: a Service's plain map, or a workload's
// matchLabels.
type selector map[string]string

func (s *selector) UnmarshalYAML(n *yaml.Node) error {
	var m struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	if err := n.Decode(&m); err == nil && m.MatchLabels != nil {
		*s = m.MatchLabels
		return nil
	}
	var plain map[string]string
	if err := n.Decode(&plain); err != nil {
		return err
	}
	*s = plain
	return nil
}

type podSpec struct {
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	RestartPolicy                 string `yaml:"restartPolicy"`
	SecurityContext               struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
		SecretRef    *struct{ Name string } `yaml:"secretRef"`
	} `yaml:"envFrom"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// rendered is what `kubectl kustomize` makes of the example overlay, by kind and name.
type rendered map[string]map[string]object

func (r rendered) one(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := r[kind][name]
	if !ok {
		t.Fatalf("the rendered manifests have no %s %s", kind, name)
	}
	return o
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the Kubernetes manifests are not rendered")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Dir = repo.TestRoot(t)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, errOut.String())
	}
	r := rendered{}
	dec := yaml.NewDecoder(&out)
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		if r[o.Kind] == nil {
			r[o.Kind] = map[string]object{}
		}
		r[o.Kind][o.Metadata.Name] = o
	}
	return r
}

// subset says whether every label of sel is in labels, and sel names any.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// env is what a container's envFrom gives it.
func env(t *testing.T, r rendered, c container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		var values map[string]string
		switch {
		case from.ConfigMapRef != nil:
			values = r.one(t, "ConfigMap", from.ConfigMapRef.Name).Data
		case from.SecretRef != nil:
			s := r.one(t, "Secret", from.SecretRef.Name)
			values = s.StringData
			if len(s.Data) > 0 {
				t.Errorf("Secret %s: base64 data is not checked here; use stringData", from.SecretRef.Name)
			}
		}
		for k, v := range values {
			out[k] = v
		}
	}
	return out
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestKubernetes renders the example overlay and checks serve's Deployment (probes, resources,
// shutdown), its settings and secrets, the migration Job, and that the Service, the
// PodDisruptionBudget, the autoscaler and the ServiceMonitor all find serve.
func TestKubernetes(t *testing.T) {
	r := render(t, "deploy/k8s/overlays/example")
	d := r.one(t, "Deployment", "flashhold")
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Metadata.Labels
	if !subset(d.Spec.Selector, podLabels) {
		t.Fatalf("Deployment selector %v does not select its pods %v", d.Spec.Selector, podLabels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("Deployment replicas %v, want at least 2", d.Spec.Replicas)
	}
	if !pod.SecurityContext.RunAsNonRoot {
		t.Error("serve pods may run as root")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("serve pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) != 1 || c.Args[0] != "serve" {
		t.Errorf("serve container args %v, want [serve]", c.Args)
	}

	// Probes: readiness on /readyz, liveness on /healthz, on a port the container names.
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range []struct {
		name, path string
		probe      *probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("serve has no HTTP %s", p.name)
		case p.probe.HTTPGet.Path != p.path:
			t.Errorf("%s asks %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		default:
			if name, ok := p.probe.HTTPGet.Port.(string); ok && !ports[name] {
				t.Errorf("%s asks port %q, which the container does not name", p.name, name)
			}
		}
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("serve resources %+v: want cpu and memory requests and a memory limit (the autoscaler needs the cpu request)", c.Resources)
	}

	// Settings: every variable exists and serve accepts them; the grace period covers the
	// preStop pause and the shutdown timeout.
	settings := env(t, r, c)
	cfg := checkVars(t, "the serve container's ConfigMap and Secret", settings)
	preStop := 0
	if s := c.Lifecycle.PreStop.Sleep; s != nil {
		preStop = s.Seconds
	}
	need := time.Duration(preStop)*time.Second + cfg.ShutdownTimeout
	if pod.TerminationGracePeriodSeconds == nil {
		t.Error("serve pods keep the default grace period of 30 s")
	} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %v is not above preStop %d s + FLASHHOLD_SHUTDOWN_TIMEOUT %v",
			grace, preStop, cfg.ShutdownTimeout)
	}
	for _, k := range []string{"FLASHHOLD_POSTGRES_URL", "FLASHHOLD_ID_SECRET"} {
		if _, ok := r.one(t, "ConfigMap", "flashhold-config").Data[k]; ok {
			t.Errorf("%s is in the ConfigMap; it belongs in a Secret", k)
		}
		if settings[k] == "" {
			t.Errorf("serve gets no %s", k)
		}
	}

	// API keys: a Secret mounted where FLASHHOLD_API_KEYS_FILE points, holding valid entries.
	keysFile := settings["FLASHHOLD_API_KEYS_FILE"]
	if keysFile == "" {
		t.Fatal("serve gets no FLASHHOLD_API_KEYS_FILE")
	}
	secretOf := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secretOf[v.Name] = v.Secret.SecretName
		}
	}
	found := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(keysFile) || secretOf[m.Name] == "" {
			continue
		}
		found = true
		raw := r.one(t, "Secret", secretOf[m.Name]).StringData[path.Base(keysFile)]
		var keys []struct{ ID, Role, Vendor, SHA256 string }
		if err := json.Unmarshal([]byte(raw), &keys); err != nil || len(keys) == 0 {
			t.Errorf("Secret %s %s: %v (%d keys)", secretOf[m.Name], path.Base(keysFile), err, len(keys))
		}
		for _, k := range keys {
			if k.ID == "" || !sha256Hex.MatchString(k.SHA256) {
				t.Errorf("API key %+v: want an id and a SHA-256 in hex", k)
			}
			switch k.Role {
			case "client", "admin", "vendor":
			default:
				t.Errorf("API key %s: role %q", k.ID, k.Role)
			}
		}
	}
	if !found {
		t.Errorf("no Secret is mounted at %s, the directory of FLASHHOLD_API_KEYS_FILE", path.Dir(keysFile))
	}

	// The migration Job runs the same image with the same settings.
	j := r.one(t, "Job", "flashhold-migrate")
	jc := j.Spec.Template.Spec.Containers
	if len(jc) != 1 || len(jc[0].Args) != 1 || jc[0].Args[0] != "migrate" || jc[0].Image != c.Image {
		t.Errorf("migrate Job containers %+v: want one, image %s, args [migrate]", jc, c.Image)
	} else {
		checkVars(t, "the migrate Job's ConfigMap and Secret", env(t, r, jc[0]))
	}

	// What must find serve's pods.
	svc := r.one(t, "Service", "flashhold")
	if !subset(svc.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not select serve's pods %v", svc.Spec.Selector, podLabels)
	}
	pdb := r.one(t, "PodDisruptionBudget", "flashhold")
	if !subset(pdb.Spec.Selector, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select serve's pods %v", pdb.Spec.Selector, podLabels)
	}
	hpa := r.one(t, "HorizontalPodAutoscaler", "flashhold")
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Metadata.Name {
		t.Errorf("HorizontalPodAutoscaler scales %s %s, want Deployment %s", ref.Kind, ref.Name, d.Metadata.Name)
	}
	if hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler replicas %d..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	sm := r.one(t, "ServiceMonitor", "flashhold")
	if sm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor is %s", sm.APIVersion)
	}
	if !subset(sm.Spec.Selector, svc.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service %v", sm.Spec.Selector, svc.Metadata.Labels)
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Error("ServiceMonitor has no endpoints")
	}
	for _, e := range sm.Spec.Endpoints {
		if !svcPorts[e.Port] || e.Path != "/metrics" {
			t.Errorf("ServiceMonitor scrapes port %q path %q, want a Service port and /metrics", e.Port, e.Path)
		}
	}

	// Redis and Postgres live outside the cluster.
	for _, name := range []string{"flashhold-redis", "flashhold-postgres"} {
		if s := r.one(t, "Service", name); s.Spec.Type != "ExternalName" || s.Spec.ExternalName == "" {
			t.Errorf("Service %s: type %q, externalName %q; want an ExternalName", name, s.Spec.Type, s.Spec.ExternalName)
		}
	}
}
