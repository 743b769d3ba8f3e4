//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

// fidelityCases are the disagreements between pullgate and the kubelet that issue 12 listed,
// as far as loopback registries can show them: what the kubelet does with each, and what
// pullgate says.
var fidelityCases = []truthCase{
	{file: "fidelity/keyring-order.yaml", app: "keyring-order",
		withPullgate: expect{0, []string{"deployment.apps/keyring-order created"}, []string{denied}}},
	{file: "fidelity/keyring-hidden.yaml", app: "keyring-hidden",
		withPullgate: expect{0, []string{"deployment.apps/keyring-hidden created"}, []string{denied}}},
	{file: "fidelity/keyring-v1-key.yaml", app: "keyring-v1-key",
		withPullgate: expect{0, []string{"deployment.apps/keyring-v1-key created"}, []string{denied}}},
	{file: "fidelity/with-its-secret", app: "born-together",
		withPullgate: expect{0, []string{"secret/born-together created", "deployment.apps/born-together created"}, []string{"Warning"}}},
	{file: "fidelity/platform-386.yaml", app: "only-386",
		withPullgate: expect{0, []string{"Warning: pullgate [PlatformMismatch]", "daemonset.apps/only-386 created"}, nil},
		// containerd 1.6 falls back to 386 on amd64 (platforms.Only); containerd 2's transfer
		// service matches strictly, keeps nothing of the index and fails for the config.
		perNode: map[string]string{"node-ctrd16": "", "node-ctrd2": "no match for platform|get image config descriptor"}},
	{file: "fidelity/deleted-child.yaml", app: "pruned",
		withPullgate: expect{1, []string{denied, "[DigestNotFound]", "linux/amd64"}, nil},
		kubelet:      "not found"},
	{file: "fidelity/schema1.yaml", app: "schema1",
		withPullgate: expect{0, []string{"Warning: pullgate [UnsupportedManifest]", "daemonset.apps/schema1 created"}, nil},
		perNode:      map[string]string{"node-ctrd16": "", "node-ctrd2": "no longer supported"}},
	{file: "fidelity/schema1-ctrd2.yaml", app: "schema1-ctrd2",
		withPullgate: expect{1, []string{denied, "[UnsupportedManifest]", "skopeo copy"}, nil},
		kubelet:      "no longer supported"},
	{file: "fidelity/on-nodes-tag-deleted.yaml", app: "preloaded",
		withPullgate: expect{0, []string{"deployment.apps/preloaded created"}, []string{denied}}},
	{file: "fidelity/on-nodes-no-credentials.yaml", app: "billing-cached",
		withPullgate: expect{1, []string{denied, "[NoCredentials]"}, nil},
		kubelet:      "401 Unauthorized|no basic auth credentials"},
	{file: "fidelity/image-volume-missing.yaml", app: "models",
		withPullgate: expect{1, []string{denied, `volume "models"`, "[TagNotFound]"}, nil},
		kubelet:      "not found"},
}

// TestFidelity shows, on the real nodes, the kubelet and the two containerd generations
// agreeing with pullgate where issue 12 found them disagreeing: the kubelet's keyring (every
// matching entry, most specific first, on any error; old key spellings), a secret created
// with its workload, 32-bit platform fallbacks, an index whose child was deleted, Docker
// schema 1, images already on the nodes, and image volumes.
func TestFidelity(t *testing.T) {
	setupNamespaces(t, "truth-fid", "preload")
	ctx := t.Context()
	for _, ns := range []string{"truth-fid", "shop"} {
		for _, s := range []*corev1.Secret{
			dockerConfig(ns, "layered", map[string][2]string{
				env.Private + "/internal": {harness.PrivateUser, "not-the-password"},
				env.Private:               {harness.PrivateUser, harness.PrivatePassword},
			}),
			dockerConfig(ns, "gated-two", map[string][2]string{
				env.Gated + "/team": {harness.GatedHider, harness.GatedPassword},
				env.Gated:           {harness.GatedUser, harness.GatedPassword},
			}),
			legacyDockercfg(ns, "v1-key", "https://"+env.Private+"/v1/", harness.PrivateUser, harness.PrivatePassword),
		} {
			if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := env.PushPublicIndex(ctx, "shop/i386:1.0", "linux/386"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.PushPublicIndex(ctx, "shop/pruned:1.0", "linux/amd64", "linux/arm64"); err != nil {
		t.Fatal(err)
	}
	children, err := env.PublicIndexChildren(ctx, "shop/pruned:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.DeletePublicManifest(ctx, "shop/pruned", children["linux/amd64"]); err != nil {
		t.Fatal(err)
	}
	if _, err := env.PushPublicSchema1(ctx, "shop/schema1:1.0", "linux/amd64"); err != nil {
		t.Fatal(err)
	}

	// Images already on every node: one whose tag is then deleted, and the private one,
	// pulled with its secret.
	preloaded, err := env.PushPublic(ctx, "shop/preloaded:1.0", "linux/amd64", "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	check(t, env.Kubectl(ctx, env.ExpandIn("preload", preloadDaemonSets), "apply", "-f", "-"), expect{0, nil, nil})
	for _, app := range []string{"preload-public", "preload-private"} {
		if _, err := env.WaitAllRunning(ctx, "preload", app, len(env.Nodes), outcomeTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.DeletePublicManifest(ctx, "shop/preloaded", env.Digests[preloaded]); err != nil {
		t.Fatal(err)
	}
	waitNodesList(t, preloaded, env.Private+"/internal/billing:3.1")

	truthTable(t, "truth-fid", fidelityCases, nil)
}

const preloadDaemonSets = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: preload-public, namespace: ${NS}}
spec:
  selector: {matchLabels: {app: preload-public}}
  template:
    metadata: {labels: {app: preload-public}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: "${PUBLIC}/shop/preloaded:1.0"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: preload-private, namespace: ${NS}}
spec:
  selector: {matchLabels: {app: preload-private}}
  template:
    metadata: {labels: {app: preload-private}}
    spec:
      terminationGracePeriodSeconds: 1
      imagePullSecrets: [{name: billing-pull}]
      containers: [{name: app, image: "${PRIVATE}/internal/billing:3.1"}]
`

// waitNodesList waits until every real node lists the images in status.images, which the
// kubelet updates with its node status.
func waitNodesList(t *testing.T, images ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing := ""
		for _, n := range env.Nodes {
			node, err := env.Client.CoreV1().Nodes().Get(t.Context(), n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, img := range node.Status.Images {
				names = append(names, img.Names...)
			}
			for _, want := range images {
				if !slices.Contains(names, want) {
					missing = fmt.Sprintf("%s does not list %s", n.Name, want)
				}
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(missing)
		}
		time.Sleep(time.Second)
	}
}

// dockerConfig is a kubernetes.io/dockerconfigjson secret with one entry per key.
func dockerConfig(ns, name string, entries map[string][2]string) *corev1.Secret {
	var auths []string
	for key, up := range entries {
		auths = append(auths, fmt.Sprintf("%q:{%q:%q,%q:%q}", key, "username", up[0], "password", up[1]))
	}
	slices.Sort(auths)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{` + strings.Join(auths, ",") + `}}`)},
	}
}

// legacyDockercfg is a kubernetes.io/dockercfg secret (the ~/.dockercfg format: no "auths")
// with one entry, its credentials in "auth" as docker login wrote them.
func legacyDockercfg(ns, name, key, user, password string) *corev1.Secret {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockercfg,
		Data:       map[string][]byte{corev1.DockerConfigKey: []byte(fmt.Sprintf(`{%q:{"auth":%q,"email":"e2e@example.com"}}`, key, auth))},
	}
}

// TestPodImageUpdate changes the image of a running pod (`kubectl set image pod/…`) to a tag
// that does not exist: without pullgate the update is stored and the kubelet fails to pull;
// with pullgate it is refused.
func TestPodImageUpdate(t *testing.T) {
	setupNamespaces(t, "truth-update")
	ctx := t.Context()
	pod := `apiVersion: v1
kind: Pod
metadata: {name: web-single, namespace: ${NS}, labels: {app: web-single}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: web, image: "${PUBLIC}/shop/web:1.4.2"}]
`
	bad := env.Public + "/shop/web:9.9.9"
	for _, ns := range []string{"truth-update", "shop"} {
		check(t, env.Kubectl(ctx, env.ExpandIn(ns, pod), "apply", "-f", "-"), expect{0, nil, nil})
		if _, err := env.WaitAllRunning(ctx, ns, "web-single", 1, outcomeTimeout); err != nil {
			t.Fatal(err)
		}
	}

	if err := env.RemoveWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	without := env.Kubectl(ctx, "", "set", "image", "pod/web-single", "web="+bad, "-n", "truth-update")
	check(t, without, expect{0, []string{"pod/web-single image updated"}, nil})
	// The pod runs its old container until the kubelet has restarted it with the new image.
	var o harness.Outcome
	deadline := time.Now().Add(outcomeTimeout)
	for !o.PullFailed() && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		o, err = env.WaitOutcome(ctx, "truth-update", "web-single", outcomeTimeout)
	}
	if err != nil || !o.PullFailed() || !strings.Contains(o.PullError, "not found") {
		t.Errorf("without pullgate, the updated pod: %v %+v; want ErrImagePull/ImagePullBackOff, not found", err, o)
	}
	if err := env.RestoreWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "image-not-found.yaml", expect{1, []string{denied}, nil}, "--dry-run=server")

	with := env.Kubectl(ctx, "", "set", "image", "pod/web-single", "web="+bad, "-n", "shop")
	check(t, with, expect{1, []string{denied, "[TagNotFound]", `container "web"`}, nil})
	t.Logf("\nkubectl set image pod/web-single web=%s\n  without pullgate: %s; the kubelet: %s: %s\n  with pullgate:    %s",
		bad, strings.TrimSpace(without.Output()), o.Status, lastRunes(o.PullError, 80), verdict(with))
	kubectl(t, "delete", "namespace", "truth-update", "--wait=false")
}
