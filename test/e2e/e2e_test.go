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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	var err error
	env, err = harness.Start(ctx, harness.Options{Policy: harness.DefaultPolicy})
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

func TestApply(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	kubectl(t, "create", "secret", "docker-registry", "billing-pull", "-n", "shop",
		"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password="+harness.PrivatePassword)
	kubectl(t, "create", "secret", "docker-registry", "billing-pull-stale", "-n", "shop",
		"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password=not-the-password")

	denied := `admission webhook "workloads.pullgate.io" denied the request`
	tests := []struct {
		desc string
		file string
		want expect
	}{
		{"a multi-arch image that exists is admitted", "good-deployment.yaml",
			expect{0, []string{"deployment.apps/web created"}, []string{"Warning"}}},
		{"cause 1: a repository that does not exist", "image-not-found.yaml",
			expect{1, []string{denied, "[ImageNotFound]", `container "web-typo"`, "${PUBLIC}/shop/wbe does not exist", "Fix:"}, nil}},
		{"cause 2: a private image without credentials", "no-credentials.yaml",
			expect{1, []string{denied, "[NoCredentials]", "kubectl create secret docker-registry"}, nil}},
		{"cause 2: a private image with its pull secret is admitted", "private-with-secret.yaml",
			expect{0, []string{"deployment.apps/billing created"}, nil}},
		{"cause 2: credentials the registry rejects", "credentials-rejected.yaml",
			expect{1, []string{denied, "[CredentialsRejected]", `pull secret "billing-pull-stale"`}, []string{"not-the-password"}}},
		{"cause 3: a tag that does not exist, with the closest tags", "tag-not-found.yaml",
			expect{1, []string{denied, "[TagNotFound]", `tag "1.4.3" does not exist`, "closest: 1.4.2"}, nil}},
		{"cause 4: a digest that does not exist", "digest-not-found.yaml",
			expect{1, []string{denied, "[DigestNotFound]", "sha256:000000000000"}, nil}},
		{"cause 5: an unreachable registry warns (onRegistryError: warn)", "unreachable.yaml",
			expect{0, []string{"Warning: pullgate [RegistryUnreachable]", "pod/legacy created"}, nil}},
		{"cause 6: a rate-limited registry warns", "rate-limited.yaml",
			expect{0, []string{"Warning: pullgate [RegistryRateLimited]", "cronjob.batch/nightly-report created"}, nil}},
		{"cause 7: an arm64-only image on amd64 nodes", "platform-mismatch.yaml",
			expect{1, []string{denied, "[PlatformMismatch]", "linux/arm64", "linux/amd64"}, nil}},
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
			check(t, apply(t, tc.file), tc.want)
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
			`admission webhook "policy.pullgate.io" denied the request`, "checks.existance", "lookupTimeout",
		}, nil})
		check(t, apply(t, "image-not-found.yaml", "--dry-run=server"), denied)
	})
}

// TestRestartBurst restarts pullgate (an empty cache) and creates 500 pods of one image it
// has never seen, all at once: none may fail or time out, and the registry must see one
// look-up, not 500.
func TestRestartBurst(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
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
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
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
	heads, gets := env.PublicRequests("HEAD", "manifests"), env.PublicRequests("GET", "manifests")
	t.Logf("%d pods created in %s (%d failed); registry: %d manifest HEADs, %d manifest GETs, %d blob GETs",
		pods-failed, elapsed.Round(time.Millisecond), failed, heads, gets, env.PublicRequests("GET", "blobs"))
	// One manifest request in all: a GET when the platform check is on (its body gives the
	// platforms), a HEAD when it is off.
	if heads+gets != 1 {
		t.Errorf("the registry saw %d manifest HEADs and %d GETs for one image; want one request in all", heads, gets)
	}
}

func TestPullgateNamespaceIsNeverBlocked(t *testing.T) {
	r := env.Kubectl(t.Context(), env.Expand(`apiVersion: v1
kind: Pod
metadata:
  name: broken-self
  namespace: pullgate-system
spec:
  containers:
  - name: c
    image: ${PUBLIC}/shop/does-not-exist:1.0
`), "apply", "-f", "-")
	check(t, r, expect{0, []string{"pod/broken-self created"}, []string{"Warning"}})
}

// TestMutations turns the mirror rewrite and pull-secret injection on and checks what the
// API server stores. The Deployment's template is left as written (GitOps tools would see
// drift otherwise); its pods are rewritten. envtest runs no kube-controller-manager, so the
// test creates the pod from the template as the ReplicaSet controller would.
func TestMutations(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	r := env.Kubectl(t.Context(), "", "get", "secret", "billing-pull", "-n", "shop")
	if r.ExitCode != 0 {
		kubectl(t, "create", "secret", "docker-registry", "billing-pull", "-n", "shop",
			"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password="+harness.PrivatePassword)
	}
	check(t, apply(t, "policy-mutations.yaml"), expect{0, []string{"configmap/pullgate-policy configured"}, nil})
	t.Cleanup(func() { apply(t, "policy-default.yaml") })

	check(t, apply(t, "mirrored-deployment.yaml"), expect{0, []string{"deployment.apps/storefront"}, nil})
	deploy, err := env.Client.AppsV1().Deployments("shop").Get(t.Context(), "storefront", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	origin := env.Public + "/shop/web:1.4.2"
	mirrored := env.Mirror + "/hub/shop/web:1.4.2"
	if got := deploy.Spec.Template.Spec.Containers[0].Image; got != origin {
		t.Errorf("the Deployment's template was changed to %q; templates are never mutated", got)
	}
	podFromTemplate := func(dryRun bool) (*corev1.Pod, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "storefront-", Namespace: "shop",
				Labels: deploy.Spec.Template.Labels},
			Spec: *deploy.Spec.Template.Spec.DeepCopy(),
		}
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		return env.Client.CoreV1().Pods("shop").Create(t.Context(), pod, opts)
	}
	// The policy reload is asynchronous: wait until a dry run shows the rewrite.
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := podFromTemplate(true)
		if err == nil && p.Spec.Containers[0].Image == mirrored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mutation policy did not take effect in 30s (last: %v, %v)", err, p)
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("the Deployment's pods run the mirror's image", func(t *testing.T) {
		created, err := podFromTemplate(false)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := env.Client.CoreV1().Pods("shop").Get(t.Context(), created.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := stored.Spec.Containers[0].Image; got != mirrored {
			t.Errorf("stored pod runs %q, want the mirror's %q", got, mirrored)
		}
		if ann := stored.Annotations["pullgate.io/original-images"]; !strings.Contains(ann, origin) {
			t.Errorf("original image not recorded: annotation %q", ann)
		}
		t.Logf("pod %s: image %s, pullgate.io/original-images=%s", stored.Name, stored.Spec.Containers[0].Image,
			stored.Annotations["pullgate.io/original-images"])
	})

	t.Run("a pod without credentials gets the pull secret injected", func(t *testing.T) {
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
	})
}

// TestWebhookDown must run last: it stops pullgate.
func TestWebhookDown(t *testing.T) {
	kubectl(t, "apply", "-f", testdata("namespaces.yaml"))
	env.StopWebhook()
	check(t, apply(t, "image-not-found.yaml", "--dry-run=server"),
		expect{0, []string{"deployment.apps/web-typo created (server dry run)"}, []string{"Warning"}})
}
