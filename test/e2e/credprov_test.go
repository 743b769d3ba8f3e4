//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

// deployment is a one-replica Deployment of image named app in namespace shop.
func deployment(app, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - {name: app, image: %[2]q, imagePullPolicy: Always}
`, app, image)
}

func applyManifest(t *testing.T, manifest string, extra ...string) harness.Result {
	t.Helper()
	return applyManifestCtx(t.Context(), t, manifest, extra...)
}

func applyManifestCtx(ctx context.Context, t *testing.T, manifest string, extra ...string) harness.Result {
	t.Helper()
	r := env.Kubectl(ctx, manifest, append([]string{"apply", "-f", "-"}, extra...)...)
	t.Logf("kubectl apply %s → exit %d\n%s", strings.Join(extra, " "), r.ExitCode, r.Output())
	return r
}

func setPolicy(ctx context.Context, t *testing.T, policyYAML string) {
	t.Helper()
	cm := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata:\n  policy.yaml: |\n    %s\n",
		harness.PolicyConfigMap, harness.Namespace, strings.ReplaceAll(strings.TrimSpace(policyYAML), "\n", "\n    "))
	if r := applyManifestCtx(ctx, t, cm); r.ExitCode != 0 {
		t.Fatalf("setting the policy: %s", r.Output())
	}
}

// TestNodeCredentials (issue 13): a private registry that only the nodes' kubelet credential
// provider plugin opens; the same configuration given to pullgate; then pullgate without it
// and the policy's nodeCredentials; then a containerd mirror on the nodes for a registry that
// refuses with 429.
func TestNodeCredentials(t *testing.T) {
	setupNamespaces(t)
	ctx := t.Context()
	image, err := env.PushCredProviderImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context() is done by now.
		ctx := context.Background()
		for _, app := range []string{"credprov-plugin", "credprov-node", "credprov-mirror"} {
			env.Kubectl(ctx, "", "delete", "deployment", app, "-n", "shop", "--ignore-not-found", "--wait=false")
		}
		setPolicy(ctx, t, harness.DefaultPolicy)
		if err := env.RestartWebhook(ctx); err != nil {
			t.Errorf("restarting pullgate as it was: %v", err)
		}
	})

	t.Run("the nodes' plugin configuration given to pullgate: admitted and Running", func(t *testing.T) {
		if err := env.RestartWebhook(ctx, env.CredProviderFlags()...); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := applyManifest(t, deployment("credprov-plugin", image))
		t.Logf("admission with the plugin took %s", time.Since(start).Round(time.Millisecond))
		check(t, r, expect{0, []string{"deployment.apps/credprov-plugin created"}, []string{"Warning"}})
		outs, err := env.WaitAllRunning(ctx, "shop", "credprov-plugin", 1, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pods: %+v", outs)
	})

	t.Run("without the plugin on pullgate, nodeCredentials listing the host: admitted with the warning, Running", func(t *testing.T) {
		if err := env.RestartWebhook(ctx); err != nil {
			t.Fatal(err)
		}
		// Without nodeCredentials pullgate denies: it asks anonymously and is refused.
		check(t, applyManifest(t, deployment("credprov-node", image), "--dry-run=server"), expect{1, []string{"[NoCredentials]"}, nil})
		setPolicy(ctx, t, harness.DefaultPolicy+"nodeCredentials: [\""+env.CredProviderRegistry()+"\"]\n")
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := applyManifest(t, deployment("credprov-node", image))
			if r.ExitCode == 0 || time.Now().After(deadline) {
				check(t, r, expect{0, []string{"Warning: pullgate [NodeCredentials]", "the node's own credentials will be used; pullgate cannot check them", "deployment.apps/credprov-node created"}, nil})
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if _, err := env.WaitAllRunning(ctx, "shop", "credprov-node", 1, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a containerd mirror on the nodes holds what the origin refuses with 429: admitted and Running", func(t *testing.T) {
		if _, err := env.PushMirror(ctx, "credprov/app:1.0"); err != nil {
			t.Fatal(err)
		}
		limitedImage := env.RateLimited + "/credprov/app:1.0"
		check(t, applyManifest(t, deployment("credprov-mirror", limitedImage), "--dry-run=server"),
			expect{0, []string{"Warning: pullgate [RegistryRateLimited]"}, nil})
		dir, cleanup, err := env.SetNodeMirror(env.RateLimited, env.Mirror)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cleanup)
		if err := env.RestartWebhook(ctx, "--node-registry-config-dir="+dir); err != nil {
			t.Fatal(err)
		}
		check(t, applyManifest(t, deployment("credprov-mirror", limitedImage)),
			expect{0, []string{"deployment.apps/credprov-mirror created"}, []string{"Warning"}})
		if _, err := env.WaitAllRunning(ctx, "shop", "credprov-mirror", 1, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	})
}
