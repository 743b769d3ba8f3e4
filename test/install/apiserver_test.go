package install_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pullgate/pullgate/internal/testcerts"
)

// apiServer starts a kube-apiserver and etcd (envtest) with cert-manager's CRDs, taken from
// the cert-manager Go module. It skips when the binaries are missing (`make tools`), or
// fails under CI=true.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root(t), "hack", "tools", "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if !isExecutable(filepath.Join(assets, b)) {
			msg := fmt.Sprintf("no %s in %s: set KUBEBUILDER_ASSETS or run `make tools`", b, assets)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("finding the cert-manager module: %v", err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")},
			ErrorIfPathMissing: true,
		},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	return cfg
}

// TestChartAppliesToAPIServer: every object of every matrix entry is accepted by a real API
// server (server-side dry run), which checks what decoding cannot: the webhooks'
// matchConditions compile as CEL, label selectors and names are valid, the cert-manager
// objects pass cert-manager's CRD schemas. (ServiceMonitor is left out: its CRD belongs to
// the Prometheus Operator.)
func TestChartAppliesToAPIServer(t *testing.T) {
	cfg := apiServer(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	created := map[string]bool{}
	for _, m := range matrix(t) {
		t.Run(m.name, func(t *testing.T) {
			if !created[m.namespace] {
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.namespace}}
				if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
				created[m.namespace] = true
			}
			o := m.render(t)
			for _, raw := range o.raw {
				u := &unstructured.Unstructured{Object: raw}
				if u.GetKind() == "ServiceMonitor" {
					continue
				}
				if err := c.Create(ctx, u.DeepCopy(), client.DryRunAll); err != nil {
					t.Errorf("%s: %v", idOf(raw), err)
				}
			}
		})
	}
}

// TestRBACIsWhatTheWebhookNeeds runs the real webhook binary, with the chart's arguments,
// as the chart's ServiceAccount with nothing but the chart's RBAC: it must become ready
// (its informers of secrets, service accounts, namespaces, nodes and the policy ConfigMap
// sync). Then the same identity must be refused everything else tried.
func TestRBACIsWhatTheWebhookNeeds(t *testing.T) {
	cfg := apiServer(t)
	admin, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := install{release: "pullgate", namespace: "pullgate"}
	r, sa := installRBAC(t, admin, in)
	startWebhookAs(t, cfg, sa, r)

	// Everything else is refused.
	asSA := rest.CopyConfig(cfg)
	asSA.Impersonate = rest.ImpersonationConfig{UserName: sa}
	cs, err := kubernetes.NewForConfig(asSA)
	if err != nil {
		t.Fatal(err)
	}
	policyName := r.policyCM.Name
	ns := in.namespace
	sel := metav1.ListOptions{FieldSelector: "metadata.name=" + policyName}
	for _, tc := range []struct {
		desc    string
		call    func(context.Context) error
		allowed bool
	}{
		{"list the policy ConfigMap by field selector", func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, sel)
			return err
		}, true},
		{"watch the policy ConfigMap by field selector", func(ctx context.Context) error {
			w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, sel)
			if err == nil {
				w.Stop()
			}
			return err
		}, true},
		{"get the policy ConfigMap", func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, policyName, metav1.GetOptions{})
			return err
		}, true},
		{"list every ConfigMap of its namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"get another ConfigMap", func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		}, false},
		{"list ConfigMaps cluster-wide", func(ctx context.Context) error {
			_, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"update the policy ConfigMap", func(ctx context.Context) error {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, policyName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, false},
		{"create a Secret", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}},
				metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, false},
		{"list Pods", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"create an Event", func(ctx context.Context) error {
			_, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "x", Namespace: ns}},
				metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.call(t.Context())
			switch {
			case tc.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !tc.allowed && !apierrors.IsForbidden(err):
				t.Errorf("want Forbidden, got %v", err)
			}
		})
	}
}

// installRBAC renders in and creates, as admin, what the webhook's identity rests on: its
// ServiceAccount, RBAC, policy ConfigMap (and the Report CRD when the chart has it). It
// returns the render's Deployment and the ServiceAccount's user name.
func installRBAC(t *testing.T, admin client.Client, in install) (rendered, string) {
	t.Helper()
	ctx := t.Context()
	o := in.render(t)
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.namespace}}); err != nil {
		t.Fatal(err)
	}
	for _, raw := range o.raw {
		u := &unstructured.Unstructured{Object: raw}
		switch u.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "CustomResourceDefinition":
			if err := admin.Create(ctx, u.DeepCopy()); err != nil {
				t.Fatalf("%s: %v", idOf(raw), err)
			}
		}
	}
	r := inspect(t, matrixEntry{install: in}, o)
	return r, "system:serviceaccount:" + in.namespace + ":" + r.deploy.Spec.Template.Spec.ServiceAccountName
}

// startWebhookAs runs the webhook binary with the render's arguments as the ServiceAccount
// sa until it is ready, failing the test if it was refused anything. It returns its log.
func startWebhookAs(t *testing.T, cfg *rest.Config, sa string, r rendered) *lockedBuffer {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, cfg, sa, kubeconfig)
	certDir := filepath.Join(dir, "tls")
	writeServingCert(t, certDir)

	// The chart's arguments, with ports and files of this test.
	args := []string{"--kubeconfig=" + kubeconfig}
	health := freePort(t)
	for name, value := range r.flags {
		switch name {
		case "cert-dir":
			value = certDir
		case "port":
			value = fmt.Sprint(freePort(t))
		case "metrics-bind-address":
			value = "0"
		case "health-probe-bind-address":
			value = fmt.Sprintf("127.0.0.1:%d", health)
		}
		args = append(args, "--"+name+"="+value)
	}
	cmd := exec.Command(buildWebhook(t), args...)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", health)
	// /readyz waits for the informers for as long as the request lasts: bound each one.
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not become ready as %s with the chart's RBAC; its log:\n%s", sa, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("the webhook was refused something with the chart's RBAC; its log:\n%s", logs.String())
	}

	return &logs
}

// buildDir holds the webhook binary built for the tests; TestMain removes it.
var buildDir string

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pullgate-install-test-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	bin := filepath.Join(dir, "webhook")
	rootDir, err := repoRoot()
	if err != nil {
		return "", err
	}
	// Read what the build reads, so that go test's cache notices a change of it.
	for _, p := range []string{"go.mod", "go.sum", "cmd", "pkg", "internal"} {
		if err := readTree(filepath.Join(rootDir, p)); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
	cmd.Dir = rootDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/webhook: %w\n%s", err, out)
	}
	return bin, nil
})

// buildWebhook builds cmd/webhook once per test binary run.
func buildWebhook(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func writeKubeconfig(t *testing.T, cfg *rest.Config, user, path string) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		Impersonate:           user,
	}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "sa"}
	kc.CurrentContext = "sa"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

func writeServingCert(t *testing.T, dir string) {
	t.Helper()
	ca, err := testcerts.NewCA("pullgate test CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteServing(dir); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRBACIsWhatTheRecheckNeeds runs the webhook with the chart's arguments for the
// background re-check on, as the chart's ServiceAccount with the chart's RBAC and the
// chart's Report CRD: it must take the Lease, list the workloads, write a namespace's Report
// and record the PullWillFail Event of a workload whose image cannot be pulled, refused
// nothing.
func TestRBACIsWhatTheRecheckNeeds(t *testing.T) {
	cfg := apiServer(t)
	admin, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	in := install{release: "pullgate", namespace: "pullgate-recheck", set: []string{
		"recheck.interval=2s", "recheck.reports.installCRD=true",
	}}
	r, sa := installRBAC(t, admin, in)
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	// An image reference no runtime can parse: a definite finding, without any registry.
	web := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "Registry.Example/UPPER:v1"}}},
			},
		},
	}
	if err := admin.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	logs := startWebhookAs(t, cfg, sa, r)

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	report := &unstructured.Unstructured{}
	report.SetAPIVersion("openreports.io/v1alpha1")
	report.SetKind("Report")
	deadline := time.Now().Add(60 * time.Second)
	for {
		reportErr := admin.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "pullgate"}, report)
		evs, evErr := cs.EventsV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "reason=PullWillFail"})
		if reportErr == nil && evErr == nil && len(evs.Items) > 0 {
			if evs.Items[0].Regarding.Name != "web" || evs.Items[0].Type != corev1.EventTypeWarning {
				t.Errorf("event %+v, want a Warning on web", evs.Items[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Report (%v) and PullWillFail Event (%v) in shop after 60s; the webhook's log:\n%s", reportErr, evErr, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	results, _, _ := unstructured.NestedSlice(report.Object, "results")
	if len(results) != 1 || results[0].(map[string]any)["policy"] != "image-pull" || results[0].(map[string]any)["result"] != "fail" {
		t.Errorf("report results = %v, want one fail of policy image-pull", results)
	}
	if _, err := cs.CoordinationV1().Leases(in.namespace).Get(ctx, "pullgate-recheck", metav1.GetOptions{}); err != nil {
		t.Errorf("the re-check's Lease: %v", err)
	}
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("the webhook was refused something with the chart's RBAC; its log:\n%s", logs.String())
	}
}
