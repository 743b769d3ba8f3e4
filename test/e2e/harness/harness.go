package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Namespace is where pullgate "runs" and keeps its policy ConfigMap.
const (
	Namespace       = "pullgate"
	PolicyConfigMap = "pullgate-policy"
)

// Env is a running end-to-end environment. Stop it, always.
type Env struct {
	Dir        string
	Kubeconfig string
	// Public, Private, Mirror, RateLimited, Unreachable and Gated are registry hosts
	// (127.0.0.1:PORT). Mirror holds copies of some of Public's images under the path "hub/".
	// Gated answers GatedUser, hides everything from GatedHider (404) and refuses the rest.
	Public, Private, Mirror, RateLimited, Unreachable, Gated string
	// Digests of pushed images, by reference ("PUBLIC/app:v1" form, see Images).
	Digests map[string]string
	Client  kubernetes.Interface
	// Nodes are the real nodes (a kubelet and a containerd each); FakeNodes the Node objects of
	// other platforms without a kubelet, tainted with NoKubeletTaint.
	Nodes     []NodeInfo
	FakeNodes []string

	root         string
	reaper       *os.File
	cluster      *cluster
	addrs        clusterAddrs
	inCluster    *inClusterRegistry
	apiForwarder *forwarder
	images       *appImages
	webhooks     savedWebhooks
	kubectl      string
	env          *envtest.Environment
	public       *httptest.Server
	mirror       *httptest.Server
	limited      *httptest.Server
	gated        *httptest.Server
	gatedPush    *httptest.Server
	registry     *exec.Cmd
	pullgate     *exec.Cmd
	pullgateOK   chan struct{}
	// publicRequests and mirrorRequests count requests to those registries by "METHOD kind".
	publicRequests, mirrorRequests requestCounter
	binary                         string
	assets                         string // hack/tools/bin
	certDir                        string
	port                           int
	probeAddr                      string
	logs                           *os.File

	// webhookArgs are the arguments RestartWebhook adds to pullgate's; metricsAddr is
	// where the running pullgate serves /metrics.
	webhookArgs []string
	metricsAddr string
	// certManagerRunning says StartCertManager has run.
	certManagerRunning bool
	// clientAuth is set when Options.ClientAuth is on.
	clientAuth *clientAuth
	// credProv is the nodes' credential provider plugin and its registry (credprov.go).
	credProv *credProvider
}

// Options tune Start.
type Options struct {
	// Policy is the policy.yaml pullgate starts with.
	Policy string
	// Logs receives the control plane's, registry's and pullgate's output; nil writes it to
	// a file in Dir.
	Logs io.Writer
	// InstallOnly leaves pullgate out: no pullgate process, no webhook configurations. The
	// install tests put it in the cluster with helm or kubectl.
	InstallOnly bool
	// ClientAuth starts the API server presenting a client certificate to pullgate (an
	// AdmissionConfiguration, as README's "Only the API server may call pullgate" shows) and
	// pullgate verifying it (--client-ca-file, --client-allowed-names). Not with InstallOnly.
	ClientAuth bool
}

// RepoRoot finds the module root from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Start brings the environment up. On error, everything already started is stopped.
//
// The real node needs root (cgroups, mounts, a bridge) and the binaries `make tools` builds.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	root := RepoRoot()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "hack", "tools", "bin")
	}
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl", "kubelet", "kube-controller-manager", "kube-scheduler", "containerd2/containerd", "helm"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools`", bin, assets)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the real node (kubelet + containerd) needs root: cgroups, mounts and a bridge")
	}
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found (run make deps): %w", err)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return nil, fmt.Errorf("runc not found (run make deps): %w", err)
	}
	dir, err := os.MkdirTemp("", "pullgate-e2e-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, root: root, kubectl: filepath.Join(assets, "kubectl"), Digests: map[string]string{}}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	// First of all: whatever happens to this process from here on, the reaper cleans up.
	if e.reaper, err = startReaper(dir); err != nil {
		return nil, err
	}
	for _, sub := range []string{"pki", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	e.logs, err = os.Create(filepath.Join(dir, "logs.txt"))
	if err != nil {
		return nil, err
	}
	var logs io.Writer = e.logs
	if opts.Logs != nil {
		logs = io.MultiWriter(e.logs, opts.Logs)
	}
	e.images = &appImages{dir: filepath.Join(dir, "bin")}
	runID := newRunID()
	e.addrs = newClusterAddrs(runID)
	e.cluster = &cluster{dir: dir, runID: runID, logs: logs, runc: runc, serviceCIDR: e.addrs.serviceCIDR}
	step := timer(logs)
	if err := e.addrs.makeLink(dir); err != nil {
		return nil, err
	}
	if e.inCluster, err = startInClusterRegistry(e.addrs.registryIP); err != nil {
		return nil, err
	}

	e.binary = filepath.Join(dir, "bin", "pullgate")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.binary, "./cmd/webhook")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building pullgate: %w\n%s", err, out)
	}
	step("pullgate built")

	e.public = startPublicRegistry(&e.publicRequests)
	e.Public = strings.TrimPrefix(e.public.URL, "http://")
	e.mirror = startPublicRegistry(&e.mirrorRequests)
	e.Mirror = strings.TrimPrefix(e.mirror.URL, "http://")
	e.limited = startRateLimitedRegistry()
	e.RateLimited = strings.TrimPrefix(e.limited.URL, "http://")
	e.gated, e.gatedPush = startGatedRegistry()
	e.Gated = strings.TrimPrefix(e.gated.URL, "http://")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e.Unreachable = fmt.Sprintf("127.0.0.1:%d", port) // nothing listens there
	e.Private, e.registry, err = startPrivateRegistry(ctx, dir, logs)
	if err != nil {
		return nil, err
	}
	if err := e.pushImages(ctx); err != nil {
		return nil, err
	}
	step("registries up, images pushed")

	e.env = &envtest.Environment{BinaryAssetsDirectory: assets, AttachControlPlaneOutput: os.Getenv("E2E_CONTROL_PLANE_OUTPUT") != ""}
	if !opts.InstallOnly {
		validating, mutating, err := chartWebhooks(ctx, filepath.Join(assets, "helm"))
		if err != nil {
			return nil, err
		}
		e.env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			LocalServingCertDir: filepath.Join(dir, "webhook-certs"),
			ValidatingWebhooks:  []*admissionregistrationv1.ValidatingWebhookConfiguration{validating},
			MutatingWebhooks:    []*admissionregistrationv1.MutatingWebhookConfiguration{mutating},
		}
	}
	if err := configureAPIServer(e.env, dir, e.addrs.serviceCIDR); err != nil {
		return nil, err
	}
	if opts.ClientAuth && !opts.InstallOnly {
		if err := e.setupClientAuth(dir); err != nil {
			return nil, fmt.Errorf("setting up client authentication: %w", err)
		}
	}
	if err := e.addrs.writeAPIServerCert(e.env); err != nil {
		return nil, err
	}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	step("kube-apiserver and etcd up")
	if err := e.startAPIForwarder(ctx); err != nil {
		return nil, err
	}
	user, err := e.env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the e2e user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(dir, "pki", "admin.kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	// Bursts of pod creations must reach the API server at once, not at client-go's 5 QPS.
	cfg.QPS, cfg.Burst = 2000, 2000
	if e.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}

	e.cluster.ca = filepath.Join(dir, "pki", "apiserver-ca.crt")
	if err := os.WriteFile(e.cluster.ca, cfg.CAData, 0o600); err != nil {
		return nil, err
	}
	if err := e.cluster.startControllers(e.env, assets); err != nil {
		return nil, err
	}
	// Two real nodes, one per containerd generation: they differ in how they match platforms
	// and in what they refuse to pull (Docker schema 1).
	runtimes := []struct{ name, binary string }{
		{"node-ctrd16", containerd},
		{"node-ctrd2", filepath.Join(assets, "containerd2", "containerd")},
	}
	if e.credProv, err = startCredProvider(ctx, dir, root); err != nil {
		return nil, err
	}
	for i, rt := range runtimes {
		node, err := e.cluster.newRealNode(i+1, rt.name, rt.binary)
		if err != nil {
			return nil, err
		}
		if node.extraKubeletArgs, err = e.credProv.kubeletArgs(node); err != nil {
			return nil, err
		}
		if err := e.cluster.startNode(ctx, e.env, assets, e.Public+"/pullgate-e2e/pause:1.0", node); err != nil {
			return nil, err
		}
		if err := writeHostsTOML(node, e.inCluster.host); err != nil {
			return nil, err
		}
		e.cluster.nodes = append(e.cluster.nodes, node)
	}
	if err := fakeNode(ctx, e, "arm64-no-kubelet", "arm64", true); err != nil {
		return nil, err
	}
	e.FakeNodes = []string{"arm64-no-kubelet"}
	hbCtx, stopHB := context.WithCancel(context.Background())
	e.cluster.stopHeartbeats = stopHB
	go heartbeat(hbCtx, e, e.FakeNodes)
	if !opts.InstallOnly {
		if err := e.seedCluster(ctx, opts.Policy); err != nil {
			return nil, err
		}
	}
	for _, n := range e.cluster.nodes {
		if err := waitNodeReady(ctx, e, n.name); err != nil {
			return nil, fmt.Errorf("node %s not Ready: %w; see %s", n.name, err, e.logs.Name())
		}
		got, err := e.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		e.Nodes = append(e.Nodes, NodeInfo{Name: n.name, Runtime: got.Status.NodeInfo.ContainerRuntimeVersion})
	}
	step("nodes Ready")
	if err := waitFor(ctx, 60*time.Second, func() bool {
		_, err := e.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("kube-controller-manager created no default ServiceAccount: %w", err)
	}

	e.assets = assets
	if opts.InstallOnly {
		return e, nil
	}
	e.certDir = e.env.WebhookInstallOptions.LocalServingCertDir
	e.port = e.env.WebhookInstallOptions.LocalServingPort
	probePort, err := freePort()
	if err != nil {
		return nil, err
	}
	e.probeAddr = fmt.Sprintf("127.0.0.1:%d", probePort)
	if err := e.StartWebhook(ctx); err != nil {
		return nil, err
	}
	step("pullgate ready")
	return e, nil
}

// timer returns a function that logs how long the start-up took up to each step.
func timer(w io.Writer) func(string) {
	start := time.Now()
	return func(what string) {
		fmt.Fprintf(w, "[harness] %6.2fs %s\n", time.Since(start).Seconds(), what)
	}
}

// PublicRequests returns how many requests of method reached kind ("manifests", "blobs",
// "tags", "ping") of the public registry since the last ResetPublicRequests.
func (e *Env) PublicRequests(method, kind string) int {
	return e.publicRequests.get(method + " " + kind)
}

// ResetPublicRequests zeroes the public registry's request counters.
func (e *Env) ResetPublicRequests() { e.publicRequests.reset() }

// MirrorRequests is PublicRequests for the mirror. A method "node GET" (or "node HEAD")
// counts only the requests of the nodes' containerd, "pullgate GET" only pullgate's; so
// does PublicRequests.
func (e *Env) MirrorRequests(method, kind string) int {
	return e.mirrorRequests.get(method + " " + kind)
}

// ResetMirrorRequests zeroes the mirror's request counters.
func (e *Env) ResetMirrorRequests() { e.mirrorRequests.reset() }

// PushPublic pushes a new image for the given "os/arch" platforms to the public registry
// as repo:tag and returns its reference.
func (e *Env) PushPublic(ctx context.Context, repoTag string, platforms ...string) (string, error) {
	ref := e.Public + "/" + repoTag
	d, err := e.pushImage(ctx, ref, authn.Anonymous, platforms...)
	if err == nil {
		e.Digests[ref] = d.String()
	}
	return ref, err
}

// Images maps the names manifests use (${PUBLIC}, ${PRIVATE}, ...) to hosts, for Expand.
func (e *Env) vars() map[string]string {
	return map[string]string{
		"PUBLIC": e.Public, "PRIVATE": e.Private, "MIRROR": e.Mirror, "RATELIMITED": e.RateLimited,
		"UNREACHABLE": e.Unreachable, "GATED": e.Gated, "INCLUSTER": e.InClusterRegistry(), "MISSING_DIGEST": "sha256:" + strings.Repeat("0", 64),
		"PRIVATE_USER": PrivateUser, "PRIVATE_PASSWORD": PrivatePassword,
	}
}

// Expand replaces ${PUBLIC} and friends in a manifest, ${NS} with "shop".
func (e *Env) Expand(s string) string { return e.ExpandIn("shop", s) }

// ExpandIn is Expand with ${NS} set to ns.
func (e *Env) ExpandIn(ns, s string) string {
	v := e.vars()
	v["NS"] = ns
	return os.Expand(s, func(k string) string {
		if val, ok := v[k]; ok {
			return val
		}
		return "${" + k + "}"
	})
}

func (e *Env) pushImages(ctx context.Context) error {
	private := &authn.Basic{Username: PrivateUser, Password: PrivatePassword}
	pushes := []struct {
		ref       string
		auth      authn.Authenticator
		platforms []string
		index     bool
	}{
		{e.Public + "/shop/web:1.4.2", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
		{e.Public + "/shop/web:1.4.1", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
		{e.Public + "/shop/web:1.5.0", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
		{e.Public + "/shop/web:latest", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
		{e.Public + "/shop/worker:2.0", authn.Anonymous, []string{"linux/amd64"}, false},
		// arm64 only, as an index (what buildx pushes) and as a single manifest.
		{e.Public + "/shop/edge-agent:1.0", authn.Anonymous, []string{"linux/arm64"}, true},
		{e.Public + "/shop/edge-agent:1.0-single", authn.Anonymous, []string{"linux/arm64"}, false},
		{e.Private + "/internal/billing:3.1", private, []string{"linux/amd64", "linux/arm64"}, false},
		{e.Mirror + "/hub/shop/web:1.4.2", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
		// The nodes' sandbox image.
		{e.Public + "/pullgate-e2e/pause:1.0", authn.Anonymous, []string{"linux/amd64", "linux/arm64"}, false},
	}
	for _, p := range pushes {
		label := p.ref
		if p.ref == e.Mirror+"/hub/shop/web:1.4.2" {
			// A mirror holds the origin's very image: same label, same digest.
			label = e.Public + "/shop/web:1.4.2"
		}
		d, err := e.push(ctx, p.ref, label, p.auth, p.index || len(p.platforms) > 1, p.platforms)
		if err != nil {
			return err
		}
		e.Digests[p.ref] = d.String()
	}
	// The gated registry's image, pushed past its gate; pulled as GATED/team/app:1.0.
	gatedPush := strings.TrimPrefix(e.gatedPush.URL, "http://") + "/team/app:1.0"
	if _, err := e.push(ctx, gatedPush, e.Gated+"/team/app:1.0", authn.Anonymous, true, []string{"linux/amd64", "linux/arm64"}); err != nil {
		return err
	}
	return nil
}

// seedCluster creates pullgate's namespace and its policy.
func (e *Env) seedCluster(ctx context.Context, policyYAML string) error {
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: PolicyConfigMap},
		Data:       map[string]string{"policy.yaml": policyYAML},
	}
	if _, err := e.Client.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating policy ConfigMap: %w", err)
	}
	return nil
}

// StartWebhook starts the pullgate binary and waits until it is ready.
func (e *Env) StartWebhook(ctx context.Context) error {
	// The metrics port is picked free and closed before pullgate binds it; an outgoing
	// connection of another process may take it meanwhile (seen once: "bind: address
	// already in use"). A process that exits at start is started again, with a new port.
	var err error
	for range 3 {
		if err = e.startWebhookOnce(ctx); !errors.Is(err, errExitedAtStart) {
			return err
		}
	}
	return err
}

// errExitedAtStart is a pullgate process that exited before it was ready.
var errExitedAtStart = errors.New("pullgate exited at start")

func (e *Env) startWebhookOnce(ctx context.Context) error {
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(e.binary,
		"--kubeconfig", e.Kubeconfig,
		"--cert-dir", e.certDir,
		"--port", fmt.Sprint(e.port),
		"--policy-configmap", Namespace+"/"+PolicyConfigMap,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--health-probe-bind-address", e.probeAddr,
		// A process beside the cluster, in no Service's endpoints: nothing to drain.
		"--shutdown-delay=0s",
	)
	cmd.Args = append(cmd.Args, e.webhookArgs...)
	e.metricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	cmd.Args = append(cmd.Args, e.clientAuthFlags()...)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting pullgate: %w", err)
	}
	e.pullgate = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.pullgateOK = exited
	err = waitFor(ctx, 60*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		resp, err := http.Get("http://" + e.probeAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-exited:
		return fmt.Errorf("%w; see %s", errExitedAtStart, e.logs.Name())
	default:
	}
	if err != nil {
		return fmt.Errorf("pullgate not ready: %w; see %s", err, e.logs.Name())
	}
	return nil
}

// StopWebhook stops the pullgate binary, as a crash or a rollout would.
func (e *Env) StopWebhook() {
	if e.pullgate == nil {
		return
	}
	_ = e.pullgate.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.pullgateOK:
	case <-time.After(10 * time.Second):
		_ = e.pullgate.Process.Kill()
		<-e.pullgateOK
	}
	e.pullgate = nil
}

// Result is what one kubectl run printed.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Output is stdout and stderr together, as a terminal shows them.
func (r Result) Output() string { return strings.TrimSpace(r.Stderr + "\n" + r.Stdout) }

// Kubectl runs the real kubectl against the environment.
func (e *Env) Kubectl(ctx context.Context, stdin string, args ...string) Result {
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	return runCommand(cmd, stdin)
}

// runCommand runs cmd with stdin and returns what it printed and its exit code (-1, with the
// error in Stderr, when it could not run).
func runCommand(cmd *exec.Cmd, stdin string) Result {
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
	case err != nil:
		r.ExitCode = -1
		r.Stderr += err.Error()
	}
	return r
}

// Apply is ApplyIn the "shop" namespace, where the e2e's manifests go by default.
func (e *Env) Apply(ctx context.Context, file string, extra ...string) (Result, error) {
	return e.ApplyIn(ctx, "shop", file, extra...)
}

// LogFile is where the components' output went.
func (e *Env) LogFile() string { return e.logs.Name() }

// Stop stops every process and removes everything the run made (unless KEEP_E2E_DIR is
// set, the run directory too).
func (e *Env) Stop() {
	e.StopWebhook()
	if e.credProv != nil {
		e.credProv.server.Close()
	}
	if e.cluster != nil {
		e.cluster.stop()
	}
	e.apiForwarder.close()
	if e.env != nil {
		_ = e.env.Stop()
	}
	e.inCluster.close()
	if e.registry != nil {
		_ = e.registry.Process.Kill()
		_ = e.registry.Wait()
	}
	for _, s := range []*httptest.Server{e.public, e.mirror, e.limited, e.gated, e.gatedPush} {
		if s != nil {
			s.CloseClientConnections()
			s.Close()
		}
	}
	if e.logs != nil {
		e.logs.Close()
	}
	if err := teardown(e.Dir, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
	}
	if e.reaper != nil {
		e.reaper.Close() // the reaper finds nothing left, and exits
	}
}

// DefaultPolicy is the policy the e2e and the demo start pullgate with (the same as
// test/e2e/testdata/policy-default.yaml): the registries listen on loopback, so pullgate
// must be allowed to dial it, and the "sandbox" namespace is exempt.
const DefaultPolicy = `registries:
  allowLoopback: true
exemptNamespaces: [sandbox]
`
