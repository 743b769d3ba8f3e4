package install_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// repoRoot is the directory of pullgate's go.mod.
var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/pullgate/pullgate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/pullgate/pullgate above the working directory")
		}
		dir = parent
	}
})

func root(t *testing.T) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func chartDir(t *testing.T) string { return watched(t, filepath.Join(root(t), "charts", "pullgate")) }

// watched reads every file under dir (once per test binary) and returns dir. helm and
// kubectl read these files in another process, which go test's result cache cannot see;
// reading them here makes a change of them invalidate cached results.
func watched(t *testing.T, dir string) string {
	t.Helper()
	readTrees.Lock()
	defer readTrees.Unlock()
	if !readTrees.done[dir] {
		if err := readTree(dir); err != nil {
			t.Fatal(err)
		}
		readTrees.done[dir] = true
	}
	return dir
}

var readTrees = struct {
	sync.Mutex
	done map[string]bool
}{done: map[string]bool{}}

// readTree reads every regular file under p (or p itself).
func readTree(p string) error {
	return filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = os.ReadFile(path)
		return err
	})
}

// tool finds an external program: $env, else hack/tools/bin/name, else PATH. Without it the
// test skips, or fails under CI=true, where the tools are built before the tests run.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p := filepath.Join(root(t), "hack", "tools", "bin", name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: set %s, or run `make tools` to build hack/tools/bin/%s", name, env, name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func helm(t *testing.T) string    { return tool(t, "HELM", "helm") }
func kubectl(t *testing.T) string { return tool(t, "KUBECTL", "kubectl") }

// run runs a program and returns its standard output; err carries standard error.
func run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// install is one way to install the chart: a release in a namespace with some values.
type install struct {
	release, namespace string
	// set are helm --set arguments.
	set []string
	// values is the content of a values file given with -f, if not empty.
	values string
}

func (in install) args(t *testing.T) []string {
	t.Helper()
	args := []string{"--namespace", in.namespace}
	for _, s := range in.set {
		args = append(args, "--set", s)
	}
	if in.values != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(in.values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	return args
}

// template runs helm template; the error holds helm's message.
func (in install) template(t *testing.T) ([]byte, error) {
	t.Helper()
	h := helm(t)
	args := append([]string{"template", in.release, chartDir(t)}, in.args(t)...)
	return run(h, args...)
}

// render runs helm template and decodes what it prints.
func (in install) render(t *testing.T) *objects {
	t.Helper()
	out, err := in.template(t)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, out)
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor the chart sets,
// decoded strictly (pullgate does not depend on the operator's Go module for one type).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func (s *serviceMonitor) DeepCopyObject() runtime.Object { c := *s; return &c }

// decoder decodes the Kubernetes and cert-manager types strictly: an unknown or duplicated
// field is an error, as the API server's field validation would make it.
var decoder = sync.OnceValue(func() runtime.Decoder {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := cmv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
})

// objects is a decoded render, in order.
type objects struct {
	items []runtime.Object
	// raw holds each object as a generic map, in the same order.
	raw []map[string]any
}

func decodeAll(t *testing.T, manifest []byte) *objects {
	t.Helper()
	var objs objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("splitting the manifest: %v", err)
		}
		var u map[string]any
		if err := yaml.Unmarshal(doc, &u); err != nil {
			t.Fatalf("parsing a document: %v\n%s", err, doc)
		}
		if len(u) == 0 {
			continue // only comments
		}
		kind, _ := u["kind"].(string)
		var obj runtime.Object
		if kind == "ServiceMonitor" {
			sm := &serviceMonitor{}
			if err := yaml.UnmarshalStrict(doc, sm); err != nil {
				t.Fatalf("decoding ServiceMonitor: %v\n%s", err, doc)
			}
			obj = sm
		} else {
			obj, _, err = decoder().Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("decoding %s: %v\n%s", kind, err, doc)
			}
		}
		objs.items = append(objs.items, obj)
		objs.raw = append(objs.raw, u)
	}
	if len(objs.items) == 0 {
		t.Fatal("the manifest holds no object")
	}
	return &objs
}

// all returns the objects of type T.
func all[T runtime.Object](o *objects) []T {
	var out []T
	for _, obj := range o.items {
		if v, ok := obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the only object of type T, failing the test when there is not exactly one.
func one[T runtime.Object](t *testing.T, o *objects) T {
	t.Helper()
	got := all[T](o)
	if len(got) != 1 {
		var zero T
		t.Fatalf("want exactly one %s, got %d", reflect.TypeOf(zero).Elem().Name(), len(got))
	}
	return got[0]
}

// id names an object by kind, namespace and name.
type id struct{ Kind, Namespace, Name string }

func (i id) String() string { return fmt.Sprintf("%s %s/%s", i.Kind, i.Namespace, i.Name) }

func idOf(u map[string]any) id {
	obj := unstructured.Unstructured{Object: u}
	return id{Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// flags parses a container's --name=value arguments.
func flags(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("argument %q is not --name=value", a)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("flag --%s given twice", name)
		}
		out[name] = value
	}
	return out
}

// portOf returns the port number of a listen address such as ":8080".
func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, ok := strings.Cut(addr, ":")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		t.Fatalf("%q is not a listen address with a port", addr)
	}
	return int32(n)
}

// containerPort resolves a Service targetPort or probe port (a number or a port name) to
// the container's port number.
func containerPort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}
