// Command demo shows pullgate at work on a throwaway local cluster: it starts kube-apiserver
// and etcd, a public and a private registry on loopback, and the pullgate webhook, applies a
// handful of manifests with the real kubectl, prints what kubectl printed for each, and
// removes everything it started. Run it with `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// steps are the manifests the demo applies, in test/e2e/testdata, with what they show.
var steps = []struct{ file, what string }{
	{"good-deployment.yaml", "a Deployment of a multi-arch image that exists"},
	{"image-not-found.yaml", "a typo in the repository name"},
	{"tag-not-found.yaml", "a tag that was never pushed"},
	{"no-credentials.yaml", "a private image and no pull secret"},
	{"private-with-secret.yaml", "the same image with its pull secret"},
	{"platform-mismatch.yaml", "an arm64-only image pinned to amd64 nodes"},
	{"partial-platform.yaml", "an amd64-only image in a cluster with arm64 nodes too"},
	{"unreachable.yaml", "a registry nobody can reach (onRegistryError: warn)"},
}

func run(ctx context.Context) error {
	start := time.Now()
	fmt.Println("Starting a throwaway cluster (kube-apiserver + etcd), two registries and pullgate…")
	env, err := harness.Start(ctx, harness.Options{Policy: harness.DefaultPolicy})
	if err != nil {
		return err
	}
	defer func() {
		env.Stop()
		fmt.Printf("\nStopped everything and removed %s (%s in all).\n", env.Dir, time.Since(start).Round(time.Second))
	}()
	fmt.Printf("Up in %s. Nodes: node-amd64 (linux/amd64), node-arm64 (linux/arm64).\n", time.Since(start).Round(time.Second))
	fmt.Printf("Public registry %s, private registry %s (htpasswd auth).\n", env.Public, env.Private)

	testdata := filepath.Join(harness.RepoRoot(), "test", "e2e", "testdata")
	if r := env.Kubectl(ctx, "", "apply", "-f", filepath.Join(testdata, "namespaces.yaml")); r.ExitCode != 0 {
		return fmt.Errorf("creating namespaces: %s", r.Output())
	}
	if r := env.Kubectl(ctx, "", "create", "secret", "docker-registry", "billing-pull", "-n", "shop",
		"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser,
		"--docker-password="+harness.PrivatePassword); r.ExitCode != 0 {
		return fmt.Errorf("creating the pull secret: %s", r.Output())
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
	return showMutations(ctx, env, testdata)
}

func printIndented(out string) {
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Println("    " + line)
		}
	}
}

// showMutations turns the mirror rewrite and pull-secret injection on and shows what the API
// server stored for two pods.
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
	return nil
}
