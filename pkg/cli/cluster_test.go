package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
)

// apiServer is one kube-apiserver (envtest) for the package's tests: an admin's client and
// kubeconfig, and a viewer's kubeconfig who may read pods, events, workloads and nodes but
// not secrets.
type apiServer struct {
	admin                 client.Client
	adminKubeconfig       string
	viewerKubeconfig      string
	unreachableKubeconfig string
}

var (
	serverOnce sync.Once
	server     *apiServer
	serverErr  string
	stopServer func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stopServer != nil {
		stopServer()
	}
	os.Exit(code)
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	serverOnce.Do(func() { server, serverErr = newAPIServer() })
	if serverErr != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(serverErr)
		}
		t.Skip(serverErr)
	}
	return server
}

func newAPIServer() (*apiServer, string) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "hack", "tools", "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, "no " + b + " in " + assets + " (make tools)"
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		return nil, "starting envtest: " + err.Error()
	}
	stopServer = func() { _ = env.Stop() }
	dir, err := os.MkdirTemp("", "pullgate-cli-test")
	if err != nil {
		return nil, err.Error()
	}
	s := &apiServer{}
	write := func(name string, u envtest.User) (string, error) {
		au, err := env.AddUser(u, cfg)
		if err != nil {
			return "", err
		}
		kc, err := au.KubeConfig()
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, kc, 0o600)
	}
	if s.adminKubeconfig, err = write("admin", envtest.User{Name: "admin", Groups: []string{"system:masters"}}); err != nil {
		return nil, err.Error()
	}
	if s.viewerKubeconfig, err = write("viewer", envtest.User{Name: "viewer"}); err != nil {
		return nil, err.Error()
	}
	raw, _ := os.ReadFile(s.adminKubeconfig)
	// A server nothing listens on: port 1 of loopback.
	bad := strings.Replace(string(raw), strings.TrimSuffix(strings.TrimPrefix(cfg.Host, "https://"), "/"), "127.0.0.1:1", 1)
	s.unreachableKubeconfig = filepath.Join(dir, "unreachable")
	if err := os.WriteFile(s.unreachableKubeconfig, []byte(bad), 0o600); err != nil {
		return nil, err.Error()
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	s.admin, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err.Error()
	}
	ctx := context.Background()
	objs := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "events", "namespaces", "nodes", "serviceaccounts", "configmaps", "replicationcontrollers"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apps", "batch"}, Resources: []string{"*"}, Verbs: []string{"get", "list"}},
		}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "viewer"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}}},
	}
	for _, o := range objs {
		if err := s.admin.Create(ctx, o); err != nil {
			return nil, err.Error()
		}
	}
	return s, ""
}

// node creates a Ready node of arch.
func (s *apiServer) node(t *testing.T, name, arch string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch, corev1.LabelHostname: name}}}
	if err := s.admin.Create(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	// The API server's TaintNodesByCondition admission taints a new node not-ready; the node
	// lifecycle controller, which would lift it, does not run here.
	n.Spec.Taints = nil
	if err := s.admin.Update(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	n.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		NodeInfo:   corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: arch, ContainerRuntimeVersion: "containerd://2.1.4"},
	}
	if err := s.admin.Status().Update(t.Context(), n); err != nil {
		t.Fatal(err)
	}
}

// failingPod creates a pod on node whose container "app" waits in reason with message,
// and the kubelet's Failed event for it.
func (s *apiServer) failingPod(t *testing.T, ns, name, node, image string, secrets []string, reason, message string) {
	t.Helper()
	ctx := t.Context()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: image}}}}
	if reason == "ErrImageNeverPull" {
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	}
	for _, sec := range secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: sec})
	}
	if err := s.admin.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "app", Image: image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}}
	if err := s.admin.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + ".failed"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name, UID: p.UID, APIVersion: "v1", FieldPath: "spec.containers{app}"},
		Reason:         "Failed", Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "kubelet", Host: node},
		Message: "Failed to pull image \"" + image + "\": " + message, LastTimestamp: metav1.NewTime(time.Now()), FirstTimestamp: metav1.NewTime(time.Now()), Count: 1}
	if err := s.admin.Create(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

func (s *apiServer) namespace(t *testing.T, ns string) {
	t.Helper()
	if err := s.admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	pol := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "pullgate", Name: "pullgate-policy"}, Data: map[string]string{policy.DataKey: loopbackPolicy}}
	if err := s.admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pullgate"}}); err == nil {
		if err := s.admin.Create(t.Context(), pol); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExplain(t *testing.T) {
	s := startAPIServer(t)
	public := testregistry.New(t)
	public.PushImage(t, "shop/web", "1.4.2", "linux", "amd64")
	public.PushImage(t, "shop/arm", "1.0", "linux", "arm64")
	private := testregistry.New(t, testregistry.WithBasicAuth("puller", "s3cret"))
	private.PushImage(t, "billing/api", "2.0", "linux", "amd64")
	ns := "explain"
	s.namespace(t, ns)
	s.node(t, "node-amd64", "amd64")
	if err := s.admin.Create(t.Context(), testregistry.PullSecret(ns, "billing-stale", private.Host, "puller", "wrong")); err != nil {
		t.Fatal(err)
	}
	notFound := "rpc error: code = NotFound desc = failed to pull and unpack image: not found"
	s.failingPod(t, ns, "web-store", "node-amd64", public.Ref("shop/web", ":1.4.3"), nil, "ErrImagePull", notFound)
	s.failingPod(t, ns, "billing-stale", "node-amd64", private.Ref("billing/api", ":2.0"), []string{"billing-stale"}, "ImagePullBackOff", "401 Unauthorized")
	s.failingPod(t, ns, "edge", "node-amd64", public.Ref("shop/arm", ":1.0"), nil, "ErrImagePull", "no match for platform in manifest: not found")
	s.failingPod(t, ns, "pushed-since", "node-amd64", public.Ref("shop/web", ":1.4.2"), nil, "ImagePullBackOff", notFound)
	s.failingPod(t, ns, "never", "node-amd64", public.Ref("shop/web", ":1.4.2"), nil, "ErrImageNeverPull", `Container image "`+public.Ref("shop/web", ":1.4.2")+`" is not present with pull policy of Never`)
	s.failingPod(t, ns, "node-net", "node-amd64", public.Ref("shop/web", ":1.4.2"), nil, "ErrImagePull", "dial tcp: lookup registry.internal: no such host")

	tests := []struct {
		desc       string
		kubeconfig string
		args       []string
		code       int
		contains   []string
		absent     []string
	}{
		{desc: "a missing tag: cause, evidence, fix", args: []string{"pod/web-store"}, contains: []string{
			"Cause 3: Invalid Image Tag", "kubelet (status):  " + notFound, `kubelet (event):   Failed to pull image`,
			`registry (now):    [TagNotFound] tag "1.4.3" does not exist`, "closest: 1.4.2", "pullgate agrees with the kubelet",
			"kubectl set image pod/web-store app=" + public.Ref("shop/web", ":EXISTING-TAG") + " -n explain", "Platforms: linux/amd64 (containerd 2, 1 node)"}},
		{desc: "rejected credentials name the secret and never its content", args: []string{"billing-stale"}, contains: []string{
			"Cause 2: Private Registry Authentication", "[CredentialsRejected]", `"billing-stale"`, "kubectl delete secret billing-stale -n explain && kubectl create secret docker-registry billing-stale"},
			absent: []string{"wrong", "s3cret"}},
		{desc: "a platform the node lacks", args: []string{"pod/edge"}, contains: []string{"Cause 7: Image Architecture Mismatch", "[PlatformMismatch]", "linux/amd64"}},
		{desc: "the image exists now: transient", args: []string{"pod/pushed-since"}, contains: []string{"DISAGREE", "transient", "kubectl delete pod pushed-since -n explain"}},
		{desc: "the node cannot reach what pullgate reaches: node-side", args: []string{"pod/node-net"}, contains: []string{"DISAGREE", "node-side problem", "Cause 5: Network Issues (on the node)", "kubectl debug node/node-amd64"}},
		{desc: "pull policy Never: no registry involved", args: []string{"pod/never"}, contains: []string{"imagePullPolicy is Never", "recreate pod never with imagePullPolicy: IfNotPresent"}, absent: []string{"DISAGREE"}},
		{desc: "without a name, every failing pod", args: []string{}, contains: []string{"Pod explain/web-store", "Pod explain/billing-stale", "Pod explain/edge"}},
		{desc: "a user who may not read secrets is told what was skipped", kubeconfig: s.viewerKubeconfig, args: []string{"pod/billing-stale"}, contains: []string{
			"Skipped:   pull secrets: your credentials may not read them (forbidden)", "could not check with the pod's credentials"}, absent: []string{"[CredentialsRejected]", "[NoCredentials]"}},
		{desc: "a pod that does not exist", args: []string{"pod/nope"}, code: 2, contains: []string{"pod/nope not found"}},
		{desc: "a kind explain does not take", args: []string{"svc/web"}, code: 2, contains: []string{`not "svc/web"`}},
		{desc: "an unreachable cluster", kubeconfig: s.unreachableKubeconfig, args: []string{"pod/web-store"}, code: 2, contains: []string{"cannot reach the cluster at https://127.0.0.1:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			kc := tc.kubeconfig
			if kc == "" {
				kc = s.adminKubeconfig
			}
			args := append([]string{"explain", "--kubeconfig", kc, "-n", ns, "--request-timeout", "5s"}, tc.args...)
			code, stdout, stderr := run(t, "", args...)
			out := stdout + stderr
			t.Logf("kubectl pullgate %s → exit %d\n%s", strings.Join(args, " "), code, out)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, c := range tc.contains {
				if !strings.Contains(out, c) {
					t.Errorf("output lacks %q:\n%s", c, out)
				}
			}
			for _, c := range tc.absent {
				if strings.Contains(out, c) {
					t.Errorf("output has %q:\n%s", c, out)
				}
			}
		})
	}
}

func TestAudit(t *testing.T) {
	s := startAPIServer(t)
	public := testregistry.New(t)
	public.PushImage(t, "shop/web", "1.0", "linux", "amd64")
	public.PushImage(t, "shop/web", "0.9", "linux", "amd64")
	ns := "audit"
	s.namespace(t, ns)
	for _, name := range []string{"web", "stable"} {
		tag := ":1.0"
		if name == "stable" {
			tag = ":0.9"
		}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: public.Ref("shop/web", tag)}}}}}}
		if err := s.admin.Create(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"audit", "--kubeconfig", s.adminKubeconfig, "-n", ns}
	code, stdout, stderr := run(t, "", args...)
	if code != 0 || !strings.Contains(stdout, "2 workloads checked: all would pull their images now.") {
		t.Fatalf("before the deletion: exit %d\n%s%s", code, stdout, stderr)
	}
	public.DeleteTag(t, "shop/web", "1.0")
	code, stdout, stderr = run(t, "", args...)
	if code != 1 {
		t.Errorf("after the deletion: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAMESPACE") ||
		!strings.Contains(lines[1], "audit") || !strings.Contains(lines[1], "deployment.apps/web") ||
		!strings.Contains(lines[1], "TagNotFound") || !strings.Contains(lines[1], `tag "1.0" does not exist`) {
		t.Errorf("table = \n%s\nwant the header and deployment.apps/web's TagNotFound alone", stdout)
	}
	if strings.Contains(stderr, "checking") {
		t.Errorf("progress printed to a stderr that is not a terminal: %q", stderr)
	}
}

func TestCheckFromCluster(t *testing.T) {
	s := startAPIServer(t)
	public := testregistry.New(t)
	public.PushImage(t, "shop/web", "1.0", "linux", "amd64")
	ns := "check-from-cluster"
	s.namespace(t, ns)
	s.node(t, "node-check-arm64", "arm64")
	// The other tests' workloads are checked against the amd64 node alone.
	t.Cleanup(func() {
		_ = s.admin.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-check-arm64"}})
	})
	dir := t.TempDir()
	f := writeFile(t, dir, "web.yaml", deployment("web", public.Ref("shop/web", ":1.0"), "      nodeSelector: {kubernetes.io/arch: arm64}\n"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	tests := []struct {
		desc       string
		kubeconfig string
		code       int
		contains   string
	}{
		// The policy comes from the cluster's ConfigMap (loopback allowed), the platforms
		// from its nodes: an amd64 image for a pod that must run on arm64.
		{"the cluster's nodes and policy", s.adminKubeconfig, 1, "[PlatformMismatch]"},
		{"an unreachable cluster", s.unreachableKubeconfig, 2, "cannot reach the cluster at https://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			code, stdout, stderr := run(t, "", "check", "--kubeconfig", tc.kubeconfig, "--request-timeout", "5s", "-n", ns, "-f", f, "--from-cluster")
			if code != tc.code || !strings.Contains(stdout+stderr, tc.contains) {
				t.Errorf("exit %d, want %d with %q\n%s%s", code, tc.code, tc.contains, stdout, stderr)
			}
		})
	}
}
