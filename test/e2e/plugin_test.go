//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

// pluginCase is one of the seven causes, made real with the webhook removed, and what
// `kubectl pullgate explain` must say of it.
type pluginCase struct {
	file, app string
	// target is what explain is given.
	target   string
	contains []string
}

var pluginCauses = []pluginCase{
	{"image-not-found.yaml", "web-typo", "deploy/web-typo", []string{"Cause 1: Image Does Not Exist", "[ImageNotFound]", "${PUBLIC}/shop/wbe does not exist", "kubectl set image deployment/web-typo web-typo="}},
	{"no-credentials.yaml", "billing-anon", "deploy/billing-anon", []string{"Cause 2: Private Registry Authentication", "[NoCredentials]", "kubectl create secret docker-registry regcred --docker-server=${PRIVATE}"}},
	{"credentials-rejected.yaml", "billing-stale", "deploy/billing-stale", []string{"Cause 2: Private Registry Authentication", "[CredentialsRejected]", `pull secret "billing-pull-stale"`, "kubectl delete secret billing-pull-stale"}},
	{"tag-not-found.yaml", "web-store", "sts/web-store", []string{"Cause 3: Invalid Image Tag", "[TagNotFound]", `tag "1.4.3" does not exist`, "closest: 1.4.2", "kubectl set image statefulset/web-store"}},
	{"digest-not-found.yaml", "migrate", "job/migrate", []string{"Cause 4: Digest Mismatch", "[DigestNotFound]", "sha256:000000000000", "kubectl set image job/migrate"}},
	{"unreachable.yaml", "legacy", "pod/legacy", []string{"Cause 5: Network Issues", "[RegistryUnreachable]", "wget -qO- https://${UNREACHABLE}/v2/"}},
	{"rate-limited.yaml", "nightly-report", "cronjob/nightly-report", []string{"Cause 6: Rate Limiting (Docker Hub)", "[RegistryRateLimited]", "from cronjob/nightly-report", "dockerhub-cred"}},
	{"platform-mismatch.yaml", "edge-agent", "ds/edge-agent", []string{"Cause 7: Image Architecture Mismatch", "[PlatformMismatch]", "linux/amd64", "kubectl get nodes -L kubernetes.io/os,kubernetes.io/arch"}},
}

func plugin(t *testing.T, stdin string, args ...string) harness.Result {
	t.Helper()
	start := time.Now()
	r := env.Plugin(t.Context(), stdin, args...)
	t.Logf("kubectl pullgate %s → exit %d in %s\n%s", strings.Join(args, " "), r.ExitCode, time.Since(start).Round(time.Millisecond), r.Output())
	return r
}

// TestPluginExplain: each of the seven causes, a pod really failing to pull on the real node
// (created with pullgate's webhooks removed), is explained by its cause, its evidence (the
// kubelet's own event) and a fix.
func TestPluginExplain(t *testing.T) {
	ctx := t.Context()
	const ns = "plugin"
	setupNamespaces(t, ns)
	if err := env.RemoveWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range pluginCauses {
		if r, err := env.ApplyIn(ctx, ns, testdata(tc.file)); err != nil || r.ExitCode != 0 {
			t.Fatalf("without pullgate, kubectl apply -f %s: %v\n%s", tc.file, err, r.Output())
		}
	}
	var wg sync.WaitGroup
	for _, tc := range pluginCauses {
		wg.Go(func() {
			o, err := env.WaitOutcome(ctx, ns, tc.app, outcomeTimeout)
			if err != nil || !o.PullFailed() {
				t.Errorf("without pullgate, %s did not fail to pull: %v %+v", tc.file, err, o)
			}
		})
	}
	wg.Wait()
	if err := env.RestoreWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, tc := range pluginCauses {
		t.Run(tc.file, func(t *testing.T) {
			r := plugin(t, "", "explain", tc.target, "-n", ns, "--failing")
			if r.ExitCode != 0 {
				t.Errorf("exit %d, want 0", r.ExitCode)
			}
			out := r.Output()
			want := append([]string{"kubelet (event):   Failed to pull image", "Fix:", "kubectl "}, tc.contains...)
			for _, s := range want {
				if !strings.Contains(out, env.ExpandIn(ns, s)) {
					t.Errorf("explain lacks %q", env.ExpandIn(ns, s))
				}
			}
		})
	}
	t.Run("every failing pod of the cluster", func(t *testing.T) {
		r := plugin(t, "", "explain", "-A", "--failing")
		if r.ExitCode != 0 {
			t.Errorf("exit %d, want 0", r.ExitCode)
		}
		for _, tc := range pluginCauses {
			if !regexp.MustCompile(`Pod ` + ns + `/` + regexp.QuoteMeta(tc.app)).MatchString(r.Output()) {
				t.Errorf("explain -A --failing lacks a pod of %s", tc.app)
			}
		}
	})
	kubectl(t, "delete", "namespace", ns, "--wait=false")
}

// TestPluginCheck: `kubectl pullgate check -f` on the e2e's manifests gives, for each, the
// verdict the webhook gives `kubectl apply --dry-run=server`: the exit code and the reason
// codes; and on them all at once, from a directory and from standard input.
func TestPluginCheck(t *testing.T) {
	const ns = "plugin-check"
	setupNamespaces(t, ns)
	var files []string
	for _, tc := range groundTruth {
		files = append(files, testdata(tc.file))
	}
	dir, err := env.ExpandFiles(ns, files...)
	if err != nil {
		t.Fatal(err)
	}
	anyDenied := false
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-36s | %-50s | %s\n", "manifest", "kubectl apply --dry-run=server (webhook)", "kubectl pullgate check -f --from-cluster")
	for _, tc := range groundTruth {
		t.Run(tc.file, func(t *testing.T) {
			file := filepath.Join(dir, tc.file)
			applied := env.Kubectl(t.Context(), "", "apply", "--dry-run=server", "-f", file)
			checked := plugin(t, "", "check", "-f", file, "--from-cluster", "-n", ns)
			want := 0
			if applied.ExitCode != 0 {
				want, anyDenied = 1, true
			}
			if checked.ExitCode != want {
				t.Errorf("check exit %d, want %d (kubectl apply exited %d:\n%s)", checked.ExitCode, want, applied.ExitCode, applied.Output())
			}
			if a, c := codes(applied), codes(checked); !slices.Equal(a, c) {
				t.Errorf("reason codes: webhook %v, check %v", a, c)
			}
			if want == 1 && !strings.Contains(checked.Output(), `admission webhook "pullgate-validate.pullgate.io" denied the request: pullgate:`) {
				t.Errorf("check's text lacks kubectl's denial line")
			}
			fmt.Fprintf(&table, "%-36s | exit %d %-43s | exit %d %s\n", tc.file, applied.ExitCode, strings.Join(codes(applied), " "), checked.ExitCode, strings.Join(codes(checked), " "))
		})
	}
	t.Log(table.String())
	if !anyDenied {
		t.Fatal("no manifest was denied by the webhook: the comparison proves nothing")
	}
	t.Run("a directory, as JSON", func(t *testing.T) {
		r := plugin(t, "", "check", "-f", dir, "--from-cluster", "-n", ns, "-o", "json")
		if r.ExitCode != 1 || !strings.Contains(r.Stdout, `"reason": "TagNotFound"`) {
			t.Errorf("exit %d, want 1 with TagNotFound in the JSON", r.ExitCode)
		}
	})
	t.Run("standard input, GitHub annotations", func(t *testing.T) {
		r := plugin(t, mustReadExpanded(t, dir, "tag-not-found.yaml"), "check", "-f", "-", "--from-cluster", "-n", ns, "-o", "github")
		if r.ExitCode != 1 || !strings.Contains(r.Stdout, "::error file=-,line=1,title=pullgate TagNotFound::statefulset.apps/web-store") {
			t.Errorf("exit %d, want 1 with a GitHub error annotation", r.ExitCode)
		}
	})
	t.Run("an unparseable manifest", func(t *testing.T) {
		r := plugin(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [\n", "check", "-f", "-")
		if r.ExitCode != 2 || !strings.Contains(r.Stderr, "parsing -, document 1 (line 5)") {
			t.Errorf("exit %d, want 2 naming the document", r.ExitCode)
		}
	})
	kubectl(t, "delete", "namespace", ns, "--wait=false")
}

func mustReadExpanded(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// codes are the distinct reason codes a kubectl or plugin output names, sorted.
func codes(r harness.Result) []string {
	c := reasonCodes.FindAllString(r.Output(), -1)
	slices.Sort(c)
	return slices.Compact(c)
}

// TestPluginAudit: a Deployment admitted and running, whose tag is deleted from the registry
// afterwards, is what `kubectl pullgate audit` reports.
func TestPluginAudit(t *testing.T) {
	ctx := t.Context()
	const ns = "plugin-audit"
	setupNamespaces(t, ns)
	ref, err := env.PushPublic(ctx, "plugin/audited:1.0", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: audited, namespace: ` + ns + `}
spec:
  selector: {matchLabels: {app: audited}}
  template:
    metadata: {labels: {app: audited}}
    spec:
      nodeSelector: {kubernetes.io/arch: amd64}
      containers:
      - name: app
        image: ` + ref + "\n"
	if r := env.Kubectl(ctx, manifest, "apply", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("kubectl apply: exit %d\n%s", r.ExitCode, r.Output())
	}
	if o, err := env.WaitOutcome(ctx, ns, "audited", outcomeTimeout); err != nil || !o.Ran {
		t.Fatalf("the Deployment's pod did not run: %v %+v", err, o)
	}
	if r := plugin(t, "", "audit", "-n", ns); r.ExitCode != 0 || !strings.Contains(r.Stdout, "would pull their images now") {
		t.Errorf("before the deletion: exit %d, want 0 and nothing to report", r.ExitCode)
	}
	if err := env.DeletePublicTag(ctx, "plugin/audited", "1.0"); err != nil {
		t.Fatal(err)
	}
	r := plugin(t, "", "audit", "-n", ns)
	if r.ExitCode != 1 {
		t.Errorf("after the deletion: exit %d, want 1", r.ExitCode)
	}
	row := regexp.MustCompile(ns + `\s+deployment\.apps/audited\s+app\s+` + regexp.QuoteMeta(ref) + `\s+TagNotFound\s+tag "1.0" does not exist`)
	if !strings.HasPrefix(r.Stdout, "NAMESPACE") || !row.MatchString(r.Stdout) {
		t.Errorf("audit's table lacks the deleted tag's row")
	}
	if o, err := env.WaitOutcome(ctx, ns, "audited", 10*time.Second); err != nil || !o.Ran {
		t.Errorf("the pod stopped running: %v %+v", err, o)
	}
	all := plugin(t, "", "audit", "-A")
	if !row.MatchString(all.Stdout) {
		t.Errorf("audit -A lacks the deleted tag's row")
	}
	kubectl(t, "delete", "namespace", ns, "--wait=false")
}
