//go:build e2e

// Package e2e runs pullgate end to end: the real kube-apiserver and etcd, real registries on
// loopback, the pullgate binary, and the real kubectl, whose exit codes and output are what
// the assertions read. Run it with `make e2e` (it builds the control plane first).
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	harness.RunReaperIfAsked()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	var err error
	env, err = harness.Start(ctx, harness.Options{Policy: harness.DefaultPolicy, ClientAuth: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the e2e environment:", err)
		os.Exit(1)
	}
	fmt.Printf("e2e environment up in %s (logs: %s)\n", time.Since(start).Round(time.Millisecond), env.LogFile())
	code := m.Run()
	if code != 0 {
		if logs, err := os.ReadFile(env.LogFile()); err == nil {
			fmt.Fprintf(os.Stderr, "---- component logs (last 8 KiB) ----\n%s\n", tail(logs, 8<<10))
		}
	}
	env.Stop()
	os.Exit(code)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func testdata(name string) string { return filepath.Join("testdata", name) }

func apply(t *testing.T, file string, extra ...string) harness.Result {
	t.Helper()
	r, err := env.Apply(t.Context(), testdata(file), extra...)
	if err != nil {
		t.Fatalf("applying %s: %v", file, err)
	}
	t.Logf("kubectl apply -f %s %s → exit %d\n%s", file, strings.Join(extra, " "), r.ExitCode, r.Output())
	return r
}

func kubectl(t *testing.T, args ...string) harness.Result {
	t.Helper()
	r := env.Kubectl(t.Context(), "", args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Output())
	}
	return r
}

// expect checks one kubectl apply: its exit code and what it printed.
type expect struct {
	exitCode int
	contains []string
	absent   []string
}

func check(t *testing.T, r harness.Result, want expect) {
	t.Helper()
	if r.ExitCode != want.exitCode {
		t.Errorf("kubectl exit code = %d, want %d\n%s", r.ExitCode, want.exitCode, r.Output())
	}
	out := r.Output()
	for _, s := range want.contains {
		if !strings.Contains(out, env.Expand(s)) {
			t.Errorf("kubectl output lacks %q:\n%s", env.Expand(s), out)
		}
	}
	for _, s := range want.absent {
		if strings.Contains(out, env.Expand(s)) {
			t.Errorf("kubectl output has %q:\n%s", env.Expand(s), out)
		}
	}
}

// setupNamespaces creates the e2e's namespaces and pull secrets in ns (once), and waits for
// the namespaces' default ServiceAccounts, without which no pod is admitted.
func setupNamespaces(t *testing.T, namespaces ...string) {
	t.Helper()
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	for _, ns := range append(namespaces, "shop") {
		if env.Kubectl(t.Context(), "", "get", "namespace", ns).ExitCode != 0 {
			kubectl(t, "create", "namespace", ns)
		}
		if env.Kubectl(t.Context(), "", "get", "secret", "billing-pull", "-n", ns).ExitCode != 0 {
			kubectl(t, "create", "secret", "docker-registry", "billing-pull", "-n", ns,
				"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password="+harness.PrivatePassword)
			kubectl(t, "create", "secret", "docker-registry", "billing-pull-stale", "-n", ns,
				"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password=not-the-password")
		}
	}
	for _, ns := range append(namespaces, "shop", "staging", "sandbox") {
		if err := env.WaitServiceAccount(t.Context(), ns); err != nil {
			t.Fatalf("namespace %s has no default ServiceAccount: %v", ns, err)
		}
	}
}

// truthCase is one manifest of the ground truth: what pullgate says of it, and what the kubelet
// does with it when pullgate is not installed.
type truthCase struct {
	file string
	app  string // the pods' app label
	// withPullgate is what `kubectl apply` must give with pullgate installed.
	withPullgate expect
	// kubelet is a regular expression the kubelet's "Failed to pull image" event must match
	// (containerd 1.6 and 2.x word some failures differently); "" means the pods must run.
	kubelet string
	// crashes: the pull succeeds but the container cannot run (CrashLoopBackOff).
	crashes bool
	// perNode, for a DaemonSet on every real node, is kubelet's expectation on each node:
	// the two containerd generations differ.
	perNode map[string]string
}

var denied = `admission webhook "pullgate-validate.pullgate.io" denied the request`

// groundTruth holds the seven causes and a good manifest of every workload kind.
var groundTruth = []truthCase{
	{file: "image-not-found.yaml", app: "web-typo",
		withPullgate: expect{1, []string{denied, "[ImageNotFound]", `container "web-typo"`, "${PUBLIC}/shop/wbe does not exist", "Fix:"}, nil},
		kubelet:      "not found"},
	{file: "no-credentials.yaml", app: "billing-anon",
		withPullgate: expect{1, []string{denied, "[NoCredentials]", "kubectl create secret docker-registry"}, nil},
		kubelet:      "401 Unauthorized|no basic auth credentials"},
	{file: "credentials-rejected.yaml", app: "billing-stale",
		withPullgate: expect{1, []string{denied, "[CredentialsRejected]", `pull secret "billing-pull-stale"`}, []string{"not-the-password"}},
		kubelet:      "401 Unauthorized"},
	{file: "tag-not-found.yaml", app: "web-store",
		withPullgate: expect{1, []string{denied, "[TagNotFound]", `tag "1.4.3" does not exist`, "closest: 1.4.2"}, nil},
		kubelet:      "not found"},
	{file: "digest-not-found.yaml", app: "migrate",
		withPullgate: expect{1, []string{denied, "[DigestNotFound]", "sha256:000000000000"}, nil},
		kubelet:      "not found"},
	{file: "unreachable.yaml", app: "legacy",
		withPullgate: expect{0, []string{"Warning: pullgate [RegistryUnreachable]", "pod/legacy created"}, nil},
		kubelet:      "connection refused"},
	{file: "rate-limited.yaml", app: "nightly-report",
		withPullgate: expect{0, []string{"Warning: pullgate [RegistryRateLimited]", "cronjob.batch/nightly-report created"}, nil},
		kubelet:      "429 Too Many Requests"},
	{file: "platform-mismatch.yaml", app: "edge-agent",
		withPullgate: expect{1, []string{denied, "[PlatformMismatch]", "linux/arm64", "linux/amd64"}, nil},
		kubelet:      "no match for platform in manifest"},
	// containerd checks the platform of an index's entries, not of a single manifest: it pulls
	// an arm64-only image on amd64, whose program then cannot execute.
	{file: "platform-mismatch-single.yaml", app: "edge-agent-single",
		withPullgate: expect{1, []string{denied, "[PlatformMismatch]", "linux/arm64", "linux/amd64"}, nil},
		crashes:      true},
	{file: "good-deployment.yaml", app: "web", withPullgate: expect{0, []string{"deployment.apps/web created"}, []string{"Warning"}}},
	{file: "private-with-secret.yaml", app: "billing", withPullgate: expect{0, []string{"deployment.apps/billing created"}, []string{"Warning"}}},
	{file: "good-statefulset.yaml", app: "web-db", withPullgate: expect{0, []string{"statefulset.apps/web-db created"}, []string{"Warning"}}},
	{file: "good-daemonset.yaml", app: "node-agent", withPullgate: expect{0, []string{"daemonset.apps/node-agent created"}, []string{"Warning"}}},
	{file: "good-replicaset.yaml", app: "web-rs", withPullgate: expect{0, []string{"replicaset.apps/web-rs created"}, []string{"Warning"}}},
	{file: "good-replicationcontroller.yaml", app: "web-rc", withPullgate: expect{0, []string{"replicationcontroller/web-rc created"}, []string{"Warning"}}},
	{file: "good-job.yaml", app: "web-migrate", withPullgate: expect{0, []string{"job.batch/web-migrate created"}, []string{"Warning"}}},
	{file: "good-cronjob.yaml", app: "web-report", withPullgate: expect{0, []string{"cronjob.batch/web-report created"}, []string{"Warning"}}},
}

// outcomeTimeout bounds the wait for a pod's outcome: a CronJob starts its Job at the next
// minute, and a failed pull reaches ImagePullBackOff about 10 s after ErrImagePull.
const outcomeTimeout = 150 * time.Second

// TestGroundTruth applies every manifest twice: without pullgate (its webhook configurations
// removed), to see what the kubelet really does with it, and with pullgate, to see what
// `kubectl apply` says. Denied manifests must be those whose pulls really fail; admitted ones
// must really run.
func TestGroundTruth(t *testing.T) {
	setupNamespaces(t, "truth")
	truthTable(t, "truth", groundTruth, nil)
}

// truthTable runs cases without pullgate in namespace truthNS, then (after beforeWith, if
// any) with pullgate in "shop", checks both, and logs the table.
func truthTable(t *testing.T, truthNS string, cases []truthCase, beforeWith func()) {
	t.Helper()
	ctx := t.Context()

	// Without pullgate.
	if err := env.RemoveWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		r, err := env.ApplyIn(ctx, truthNS, testdata(tc.file))
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("without pullgate, kubectl apply -f %s: %v\n%s", tc.file, err, r.Output())
		}
	}
	truth := make([][]harness.Outcome, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		wg.Go(func() {
			var err error
			switch {
			case tc.perNode != nil:
				truth[i], err = env.WaitOutcomes(ctx, truthNS, tc.app, len(tc.perNode), outcomeTimeout)
			case tc.crashes:
				var o harness.Outcome
				o, err = env.WaitCrash(ctx, truthNS, tc.app, outcomeTimeout)
				truth[i] = []harness.Outcome{o}
			default:
				var o harness.Outcome
				o, err = env.WaitOutcome(ctx, truthNS, tc.app, outcomeTimeout)
				truth[i] = []harness.Outcome{o}
			}
			if err != nil {
				t.Errorf("without pullgate, %s: %v", tc.file, err)
			}
		})
	}
	wg.Wait()
	for i, tc := range cases {
		for _, o := range truth[i] {
			want := tc.kubelet
			if tc.perNode != nil {
				want = tc.perNode[o.Node]
			}
			switch {
			case tc.crashes && o.Status != "CrashLoopBackOff":
				t.Errorf("without pullgate, %s: pod %s is %s, want CrashLoopBackOff after a successful pull", tc.file, o.Pod, o.Status)
			case tc.crashes:
			case want == "" && !o.Ran:
				t.Errorf("without pullgate, %s: pod %s on %s is %s, want it running (kubelet: %s)", tc.file, o.Pod, o.Node, o.Status, o.PullError)
			case want != "" && !o.PullFailed():
				t.Errorf("without pullgate, %s: pod %s on %s is %s, want ErrImagePull/ImagePullBackOff", tc.file, o.Pod, o.Node, o.Status)
			case want != "" && !regexp.MustCompile(want).MatchString(o.PullError):
				t.Errorf("without pullgate, %s: the kubelet's event on %s %q lacks %q", tc.file, o.Node, o.PullError, want)
			}
		}
	}
	kubectl(t, "delete", "namespace", truthNS, "--wait=false")
	if err := env.RestoreWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	// The API server picks the configurations up within a moment.
	eventually(t, "image-not-found.yaml", expect{1, []string{denied}, nil}, "--dry-run=server")
	if beforeWith != nil {
		beforeWith()
	}

	// With pullgate.
	results := make([]harness.Result, len(cases))
	for i, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			results[i] = apply(t, tc.file)
			check(t, results[i], tc.withPullgate)
		})
	}
	running := make([]harness.Outcome, len(cases))
	for i, tc := range cases {
		if tc.withPullgate.exitCode != 0 || tc.kubelet != "" || tc.crashes || tc.perNode != nil {
			continue
		}
		wg.Go(func() {
			o, err := env.WaitOutcome(ctx, "shop", tc.app, outcomeTimeout)
			if err != nil || !o.Ran {
				t.Errorf("with pullgate, %s was admitted but its pod did not run: %v %+v", tc.file, err, o)
			}
			running[i] = o
		})
	}
	wg.Wait()

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-40s | %-145s | %s\n", "manifest", "without pullgate (pod status: the kubelet's event)", "with pullgate (kubectl apply)")
	for i, tc := range cases {
		with := verdict(results[i])
		if running[i].Ran {
			with += "; pod " + running[i].Status
		}
		for n, o := range truth[i] {
			without := o.Status + " on " + o.Node
			switch {
			case o.PullError != "":
				without += ": …" + lastRunes(o.PullError, 110)
			case o.Crash != "":
				without += " (pulled; " + o.Crash + ")"
			}
			file := tc.file
			if n > 0 {
				file, with = "", ""
			}
			fmt.Fprintf(&table, "%-40s | %-145s | %s\n", file, without, with)
		}
	}
	t.Log(table.String())
}

// verdict sums up a kubectl apply: the reason codes it was denied or warned with.
func verdict(r harness.Result) string {
	codes := reasonCodes.FindAllString(r.Output(), -1)
	slices.Sort(codes)
	codes = slices.Compact(codes)
	switch {
	case r.ExitCode != 0:
		return "REJECTED " + strings.Join(codes, " ")
	case len(codes) > 0:
		return "admitted, warning " + strings.Join(codes, " ")
	}
	return "admitted"
}

var reasonCodes = regexp.MustCompile(`\[[A-Za-z]+\]`)

// lastRunes keeps the end of a kubelet message: the part after the image name said three
// times is what differs between causes.
func lastRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[len(r)-n:])
}

func TestApply(t *testing.T) {
	setupNamespaces(t)
	tests := []struct {
		desc string
		file string
		want expect
	}{
		{"an image missing one node platform warns", "partial-platform.yaml",
			expect{0, []string{"Warning: pullgate [PlatformMismatch]", "lacks linux/arm64", "deployment.apps/worker created"}, nil}},
		{"a namespace labelled warn gets warnings, not denials", "warn-namespace.yaml",
			expect{0, []string{"Warning: pullgate [ImageNotFound]", "deployment.apps/web-typo created"}, nil}},
		{"an exempt namespace is admitted untouched", "exempt-namespace.yaml",
			expect{0, []string{"deployment.apps/web-typo created"}, []string{"Warning"}}},
		{"kube-system is never blocked", "kube-system-pod.yaml",
			expect{0, []string{"pod/broken-addon created"}, []string{"Warning"}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			check(t, apply(t, tc.file, "--dry-run=server"), tc.want)
		})
	}

	t.Run("server-side dry run gives the same verdict", func(t *testing.T) {
		check(t, apply(t, "image-not-found.yaml", "--dry-run=server"),
			expect{1, []string{denied, "[ImageNotFound]"}, nil})
		check(t, apply(t, "good-deployment.yaml", "--dry-run=server"),
			expect{0, []string{"deployment.apps/web", "(server dry run)"}, nil})
	})
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(testdata(file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually retries a kubectl apply until it gives want, for changes pullgate picks up
// asynchronously (a policy reload).
func eventually(t *testing.T, file string, want expect, extra ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := env.Apply(t.Context(), testdata(file), extra...)
		if err != nil {
			t.Fatal(err)
		}
		if r.ExitCode == want.exitCode {
			check(t, r, want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s kubectl still exits %d, want %d\n%s", r.ExitCode, want.exitCode, r.Output())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestPolicyReload(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	denied := expect{1, []string{"[ImageNotFound]"}, nil}
	check(t, apply(t, "image-not-found.yaml", "--dry-run=server"), denied)

	t.Run("a policy change takes effect without a restart", func(t *testing.T) {
		check(t, apply(t, "policy-existence-warn.yaml"), expect{0, []string{"configmap/pullgate-policy configured"}, nil})
		eventually(t, "image-not-found.yaml", expect{0, []string{"Warning: pullgate [ImageNotFound]"}, nil}, "--dry-run=server")
		check(t, apply(t, "policy-default.yaml"), expect{0, []string{"configmap/pullgate-policy configured"}, nil})
		eventually(t, "image-not-found.yaml", denied, "--dry-run=server")
	})

	t.Run("an invalid policy is refused and the old one keeps working", func(t *testing.T) {
		check(t, apply(t, "policy-invalid.yaml"), expect{1, []string{
			`admission webhook "policy.pullgate-validate.pullgate.io" denied the request`, "checks.existance", "lookupTimeout",
		}, nil})
		check(t, apply(t, "image-not-found.yaml", "--dry-run=server"), denied)
	})
}

// TestRestartBurst restarts pullgate (an empty cache) and creates 500 pods of one image it
// has never seen, all at once: none may fail or time out, and the registry must see one
// look-up, not 500.
//
// The pods carry a scheduling gate: they are admitted and stored, never scheduled, so the one
// node is not asked to run 500 pods.
func TestRestartBurst(t *testing.T) {
	setupNamespaces(t)
	env.StopWebhook()
	if err := env.StartWebhook(t.Context()); err != nil {
		t.Fatal(err)
	}
	image, err := env.PushPublic(t.Context(), "shop/burst:1.0", "linux/amd64", "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	env.ResetPublicRequests()
	const pods = 500
	start := time.Now()
	errs := make(chan error, pods)
	var wg sync.WaitGroup
	for i := range pods {
		wg.Go(func() {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("burst-%03d", i), Namespace: "shop"},
				Spec: corev1.PodSpec{
					Containers:      []corev1.Container{{Name: "app", Image: image}},
					SchedulingGates: []corev1.PodSchedulingGate{{Name: "pullgate.io/e2e-never"}},
				},
			}
			if _, err := env.Client.CoreV1().Pods("shop").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	elapsed := time.Since(start)
	failed := 0
	for err := range errs {
		if failed == 0 {
			t.Errorf("a pod creation failed: %v", err)
		}
		failed++
	}
	heads, gets := env.PublicRequests("pullgate HEAD", "manifests"), env.PublicRequests("pullgate GET", "manifests")
	t.Logf("%d pods created in %s (%d failed); registry: %d manifest HEADs, %d manifest GETs, %d blob GETs",
		pods-failed, elapsed.Round(time.Millisecond), failed, heads, gets, env.PublicRequests("pullgate GET", "blobs"))
	// One GET of the index (its body gives the platforms), and one HEAD of the child the
	// nodes' runtime would fetch, to confirm it was not deleted: two requests for 500 pods.
	if gets != 1 || heads != 1 {
		t.Errorf("the registry saw %d manifest HEADs and %d GETs for one image; want one GET of the index and one HEAD of its amd64 child", heads, gets)
	}
}

func TestPullgateNamespaceIsNeverBlocked(t *testing.T) {
	r := env.Kubectl(t.Context(), env.Expand(`apiVersion: v1
kind: Pod
metadata:
  name: broken-self
  namespace: pullgate
spec:
  containers:
  - name: c
    image: ${PUBLIC}/shop/does-not-exist:1.0
`), "apply", "-f", "-")
	check(t, r, expect{0, []string{"pod/broken-self created"}, []string{"Warning"}})
}

// TestMutations turns the mirror rewrite and pull-secret injection on and checks what the
// API server stores and what the node pulls. The Deployment's template is left as written
// (GitOps tools would see drift otherwise); its pods, made by the ReplicaSet controller, are
// rewritten and pulled from the mirror.
func TestMutations(t *testing.T) {
	setupNamespaces(t)
	check(t, apply(t, "policy-mutations.yaml"), expect{0, []string{"configmap/pullgate-policy configured"}, nil})
	// t.Context() is done by the time cleanups run.
	t.Cleanup(func() {
		if r, err := env.Apply(context.Background(), testdata("policy-default.yaml")); err != nil || r.ExitCode != 0 {
			t.Errorf("restoring the default policy: %v %s", err, r.Output())
		}
	})
	origin := env.Public + "/shop/web:1.4.2"
	mirrored := env.Mirror + "/hub/shop/web:1.4.2"

	// The policy reload is asynchronous: wait until a dry run shows the rewrite.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := env.Apply(t.Context(), testdata("mirrored-pod.yaml"), "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
		if err != nil {
			t.Fatal(err)
		}
		if r.Stdout == mirrored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mutation policy did not take effect in 30s (last: %s)", r.Output())
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("the Deployment's pods run the mirror's image", func(t *testing.T) {
		env.ResetMirrorRequests()
		check(t, apply(t, "mirrored-deployment.yaml"), expect{0, []string{"deployment.apps/storefront"}, nil})
		deploy, err := env.Client.AppsV1().Deployments("shop").Get(t.Context(), "storefront", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := deploy.Spec.Template.Spec.Containers[0].Image; got != origin {
			t.Errorf("the Deployment's template was changed to %q; templates are never mutated", got)
		}
		outs, err := env.WaitAllRunning(t.Context(), "shop", "storefront", 1, outcomeTimeout)
		if err != nil {
			t.Fatal(err)
		}
		pod, err := env.Client.CoreV1().Pods("shop").Get(t.Context(), outs[0].Pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.Containers[0].Image; got != mirrored {
			t.Errorf("the running pod's image is %q, want the mirror's %q", got, mirrored)
		}
		if ann := pod.Annotations["pullgate.io/original-images"]; !strings.Contains(ann, origin) {
			t.Errorf("original image not recorded: annotation %q", ann)
		}
		// The node's containerd resolved the image at the mirror (its layers, the origin's
		// very ones, may already be on the node).
		if n := env.MirrorRequests("node HEAD", "manifests") + env.MirrorRequests("node GET", "manifests"); n == 0 {
			t.Errorf("the node's containerd asked the mirror for no manifest")
		}
		t.Logf("pod %s on %s: %s, image %s, pullgate.io/original-images=%s; the node asked the mirror for %d manifests (HEAD) and %d (GET), %d blobs",
			pod.Name, pod.Spec.NodeName, outs[0].Status, pod.Spec.Containers[0].Image, pod.Annotations["pullgate.io/original-images"],
			env.MirrorRequests("node HEAD", "manifests"), env.MirrorRequests("node GET", "manifests"), env.MirrorRequests("node GET", "blobs"))
	})

	t.Run("a pod without credentials gets the pull secret injected, and runs", func(t *testing.T) {
		check(t, apply(t, "pod-without-secret.yaml"), expect{0, []string{"pod/billing-job created"}, nil})
		stored, err := env.Client.CoreV1().Pods("shop").Get(t.Context(), "billing-job", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range stored.Spec.ImagePullSecrets {
			names = append(names, s.Name)
		}
		if !slices.Contains(names, "billing-pull") {
			t.Errorf("stored pod's imagePullSecrets = %v, want billing-pull injected", names)
		}
		if _, err := env.WaitAllRunning(t.Context(), "shop", "billing-job", 1, outcomeTimeout); err != nil {
			t.Error(err)
		}
	})
}

// TestWebhookDown stops pullgate (and starts it again when done): with failurePolicy
// Ignore, the cluster goes on admitting.
func TestWebhookDown(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	env.StopWebhook()
	t.Cleanup(func() {
		if err := env.StartWebhook(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	check(t, apply(t, "image-not-found.yaml", "--dry-run=server"),
		expect{0, []string{"deployment.apps/web-typo created (server dry run)"}, []string{"Warning"}})
}
