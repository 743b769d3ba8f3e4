// Command demo shows pullgate at work on a throwaway cluster with a real node: it starts
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler and a kubelet driving
// containerd, a public and a private registry on loopback, and the pullgate webhook. It
// applies the same manifests without pullgate — and shows the pods the kubelet leaves in
// ImagePullBackOff, with the kubelet's own events — and with pullgate, which rejects them at
// `kubectl apply` with the fix, while the good ones run. It removes everything it started.
// Run it with `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

func main() {
	harness.RunReaperIfAsked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// steps are the manifests the demo applies, in test/e2e/testdata, with what they show.
var steps = []struct{ file, app, what string }{
	{"good-deployment.yaml", "web", "a Deployment of a multi-arch image that exists"},
	{"image-not-found.yaml", "web-typo", "a typo in the repository name"},
	{"tag-not-found.yaml", "web-store", "a tag that was never pushed"},
	{"no-credentials.yaml", "billing-anon", "a private image and no pull secret"},
	{"private-with-secret.yaml", "billing", "the same image with its pull secret"},
	{"platform-mismatch.yaml", "edge-agent", "an arm64-only image pinned to amd64 nodes"},
	{"unreachable.yaml", "legacy", "a registry nobody can reach (onRegistryError: warn)"},
}

func run(ctx context.Context) error {
	start := time.Now()
	fmt.Println("Starting a throwaway cluster with a real node (kubelet + containerd), two registries and pullgate…")
	env, err := harness.Start(ctx, harness.Options{Policy: harness.DefaultPolicy})
	if err != nil {
		return err
	}
	defer func() {
		env.Stop()
		fmt.Printf("\nStopped everything and removed %s (%s in all).\n", env.Dir, time.Since(start).Round(time.Second))
	}()
	fmt.Printf("Up in %s.\n", time.Since(start).Round(time.Second))
	for _, n := range env.Nodes {
		fmt.Printf("  node %s: a real kubelet, %s\n", n.Name, n.Runtime)
	}
	for _, n := range env.FakeNodes {
		fmt.Printf("  node %s: a Node object without a kubelet (tainted %s)\n", n, harness.NoKubeletTaint)
	}
	fmt.Printf("  public registry %s, private registry %s (htpasswd auth)\n", env.Public, env.Private)

	testdata := filepath.Join(harness.RepoRoot(), "test", "e2e", "testdata")
	for _, ns := range []string{"without-pullgate", "shop"} {
		if err := setupNamespace(ctx, env, ns); err != nil {
			return err
		}
	}

	fmt.Printf("\n=== Without pullgate (its webhook configurations removed) ===\n")
	if err := env.RemoveWebhooks(ctx); err != nil {
		return err
	}
	for _, s := range steps {
		r, err := env.ApplyIn(ctx, "without-pullgate", filepath.Join(testdata, s.file))
		if err != nil {
			return err
		}
		fmt.Printf("$ kubectl apply -f %s   # %s\n", s.file, s.what)
		printIndented(r.Output())
	}
	fmt.Println("\nEvery apply succeeded. The kubelet finds out at pull time (waiting for its back-off)…")
	var wg sync.WaitGroup
	for _, s := range steps {
		wg.Go(func() { _, _ = env.WaitOutcome(ctx, "without-pullgate", s.app, 90*time.Second) })
	}
	wg.Wait()
	fmt.Println("\n$ kubectl get pods -n without-pullgate")
	printIndented(env.Kubectl(ctx, "", "get", "pods", "-n", "without-pullgate").Output())
	fmt.Println("\n$ kubectl get events -n without-pullgate --field-selector reason=Failed   # the kubelet's messages")
	printIndented(kubeletFailures(ctx, env, "without-pullgate"))
	if err := env.RestoreWebhooks(ctx); err != nil {
		return err
	}
	_ = env.Kubectl(ctx, "", "delete", "namespace", "without-pullgate", "--wait=false")

	fmt.Printf("\n=== With pullgate ===\n")
	// The API server picks the restored configurations up within a moment.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := env.Apply(ctx, filepath.Join(testdata, "image-not-found.yaml"), "--dry-run=server")
		if err == nil && r.ExitCode != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for i, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := env.Apply(ctx, filepath.Join(testdata, s.file))
		if err != nil {
			return err
		}
		verdict := "ADMITTED"
		switch {
		case r.ExitCode != 0:
			verdict = "REJECTED"
		case strings.Contains(r.Stderr, "Warning:"):
			verdict = "ADMITTED WITH A WARNING"
		}
		fmt.Printf("\n[%d/%d] %s\n$ kubectl apply -f %s   → %s\n", i+1, len(steps), s.what, s.file, verdict)
		printIndented(r.Output())
	}
	for _, app := range []string{"web", "billing"} {
		_, _ = env.WaitAllRunning(ctx, "shop", app, 1, 90*time.Second)
	}
	fmt.Println("\n$ kubectl get pods -n shop")
	printIndented(env.Kubectl(ctx, "", "get", "pods", "-n", "shop").Output())
	return showMutations(ctx, env, testdata)
}

// setupNamespace creates ns with the private registry's pull secret and waits for its default
// ServiceAccount.
func setupNamespace(ctx context.Context, env *harness.Env, ns string) error {
	if r := env.Kubectl(ctx, "", "create", "namespace", ns); r.ExitCode != 0 && !strings.Contains(r.Stderr, "AlreadyExists") {
		return fmt.Errorf("creating namespace %s: %s", ns, r.Output())
	}
	if r := env.Kubectl(ctx, "", "create", "secret", "docker-registry", "billing-pull", "-n", ns,
		"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser,
		"--docker-password="+harness.PrivatePassword); r.ExitCode != 0 {
		return fmt.Errorf("creating the pull secret: %s", r.Output())
	}
	return env.WaitServiceAccount(ctx, ns)
}

// kubeletFailures lists the kubelet's "Failed to pull image" events of ns, one per pod.
func kubeletFailures(ctx context.Context, env *harness.Env, ns string) string {
	r := env.Kubectl(ctx, "", "get", "events", "-n", ns, "--field-selector", "reason=Failed",
		"-o", `jsonpath={range .items[*]}{.involvedObject.name}{": "}{.message}{"\n"}{end}`)
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(r.Stdout, "\n") {
		pod, msg, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(msg, "Failed to pull image") || seen[pod] {
			continue
		}
		seen[pod] = true
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func printIndented(out string) {
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Println("    " + line)
		}
	}
}

// showMutations turns the mirror rewrite and pull-secret injection on and shows what the API
// server stored for two pods, and that they run.
func showMutations(ctx context.Context, env *harness.Env, testdata string) error {
	fmt.Printf("\nTurning mutations on: images of %s are pulled from the mirror %s/hub when it has them,\n"+
		"and pods without credentials for %s get the secret billing-pull.\n", env.Public, env.Mirror, env.Private)
	if r, err := env.Apply(ctx, filepath.Join(testdata, "policy-mutations.yaml")); err != nil || r.ExitCode != 0 {
		return fmt.Errorf("applying the mutation policy: %v %s", err, r.Output())
	}
	// The policy reload is asynchronous; wait until a server-side dry run shows the rewrite.
	mirrored := env.Mirror + "/hub/shop/web:1.4.2"
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := env.Apply(ctx, filepath.Join(testdata, "mirrored-pod.yaml"), "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
		if err == nil && r.Stdout == mirrored {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the mutation policy did not take effect in 30s")
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, s := range []struct{ file, pod, jsonpath, what string }{
		{"mirrored-pod.yaml", "storefront-demo", `{.spec.containers[0].image}{"\n"}{.metadata.annotations.pullgate\.io/original-images}`, "a pod of " + env.Public + "/shop/web:1.4.2"},
		{"pod-without-secret.yaml", "billing-job", `{.spec.imagePullSecrets[*].name}`, "a pod of the private image without imagePullSecrets"},
	} {
		r, err := env.Apply(ctx, filepath.Join(testdata, s.file))
		if err != nil {
			return err
		}
		fmt.Printf("\n%s\n$ kubectl apply -f %s\n", s.what, s.file)
		printIndented(r.Output())
		got := env.Kubectl(ctx, "", "get", "pod", s.pod, "-n", "shop", "-o", "jsonpath="+s.jsonpath)
		fmt.Printf("$ kubectl get pod %s -o jsonpath='%s'\n", s.pod, s.jsonpath)
		printIndented(got.Output())
	}
	for _, app := range []string{"storefront-demo", "billing-job"} {
		_, _ = env.WaitAllRunning(ctx, "shop", app, 1, 90*time.Second)
	}
	fmt.Println("\n$ kubectl get pods -n shop storefront-demo billing-job")
	printIndented(env.Kubectl(ctx, "", "get", "pods", "-n", "shop", "storefront-demo", "billing-job").Output())
	return nil
}
