//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

// recheckInterval is the re-check's --audit-interval in this test; the policy's tagTTL is
// below it, so that a deleted tag is seen at the next interval.
const recheckInterval = 5 * time.Second

const recheckPolicy = `apiVersion: v1
kind: ConfigMap
metadata:
  name: pullgate-policy
  namespace: pullgate
data:
  policy.yaml: |
    registries:
      allowLoopback: true
    exemptNamespaces: [sandbox]
    cache:
      tagTTL: 1s
`

const recheckWorkloads = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: recheck}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "${PUBLIC}/recheck/web:v1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: billing, namespace: recheck}
spec:
  replicas: 1
  selector: {matchLabels: {app: billing}}
  template:
    metadata: {labels: {app: billing}}
    spec:
      imagePullSecrets: [{name: billing-pull}]
      containers:
      - {name: billing, image: "${PRIVATE}/internal/billing:3.1"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: recheck}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: "${PUBLIC}/recheck/agent:v1"}
`

// TestRecheck runs the background re-check on the real cluster: workloads admitted and
// running turn bad after admission — a tag deleted, a pull secret rotated to a wrong
// password, a node pool of another architecture joining — and the re-check's Report entry,
// Event and gauge say so; restored, each clears.
func TestRecheck(t *testing.T) {
	ctx := t.Context()
	setupNamespaces(t, "recheck")
	kubectl(t, "apply", "-f", harness.RepoRoot()+"/charts/pullgate/files/openreports.io_reports.yaml")
	kubectl(t, "wait", "--for=condition=Established", "crd/reports.openreports.io", "--timeout=60s")
	if _, err := env.PushPublic(ctx, "recheck/web:v1", "linux/amd64", "linux/arm64"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.PushPublicIndex(ctx, "recheck/agent:v1", "linux/amd64"); err != nil {
		t.Fatal(err)
	}
	mustApplyStdin(t, recheckPolicy)
	if err := env.RestartWebhook(ctx, "--audit-interval="+recheckInterval.String(), "--audit-registry-budget=50",
		"--leader-election-namespace="+harness.Namespace); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context() has ended by now.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		env.Kubectl(ctx, "", "delete", "namespace", "recheck", "--wait=false")
		env.Kubectl(ctx, "", "apply", "-f", testdata("policy-default.yaml"))
		if err := env.RestartWebhook(ctx); err != nil {
			t.Errorf("restarting pullgate without the re-check: %v", err)
		}
	})

	mustApplyStdin(t, env.ExpandIn("recheck", recheckWorkloads))
	for app, n := range map[string]int{"web": 1, "billing": 1, "agent": len(env.Nodes)} {
		if _, err := env.WaitAllRunning(ctx, "recheck", app, n, outcomeTimeout); err != nil {
			t.Fatalf("%s not running: %v", app, err)
		}
	}
	allPass := []string{"DaemonSet/agent Pull pass", "Deployment/billing Pull pass", "Deployment/web Pull pass"}
	waitReport(t, "every workload pulls", func(lines []string) bool { return slices.Equal(lines, allPass) })
	t.Logf("kubectl get reports -n recheck:\n%s", kubectl(t, "get", "reports.openreports.io", "-n", "recheck").Output())

	// What an idle interval costs the public registry: the re-check's look-ups of the two
	// public images, cached for tagTTL, nothing else.
	env.ResetPublicRequests()
	time.Sleep(2 * recheckInterval)
	t.Logf("public registry requests from pullgate over two idle intervals: HEAD manifests %d, GET manifests %d, ping %d",
		env.PublicRequests("pullgate HEAD", "manifests"), env.PublicRequests("pullgate GET", "manifests"), env.PublicRequests("pullgate GET", "ping"))

	t.Run("a tag deleted after admission", func(t *testing.T) {
		if err := env.DeletePublicTag(ctx, "recheck/web", "v1"); err != nil {
			t.Fatal(err)
		}
		took := waitReport(t, "web's tag deleted", func(lines []string) bool {
			return slices.Contains(lines, "Deployment/web TagNotFound fail")
		})
		t.Logf("seen %s after the tag was deleted (interval %s, tagTTL 1s)", took.Round(100*time.Millisecond), recheckInterval)
		waitEvent(t, "Warning", "PullWillFail", "web")
		metrics, err := env.WebhookMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := harness.MetricValue(metrics, `pullgate_recheck_workloads_at_risk{namespace="recheck",reason="TagNotFound"}`); !ok || v != "1" {
			t.Errorf("at-risk gauge for recheck/TagNotFound = %q (present %v), want 1", v, ok)
		}
		// The pod already running is not touched: the re-check only says what its next pull
		// would do.
		if _, err := env.PushPublic(ctx, "recheck/web:v1", "linux/amd64", "linux/arm64"); err != nil {
			t.Fatal(err)
		}
		waitReport(t, "web's tag pushed again", func(lines []string) bool { return slices.Contains(lines, "Deployment/web Pull pass") })
		waitEvent(t, "Normal", "PullWillSucceed", "web")
	})

	t.Run("a pull secret rotated to a wrong password", func(t *testing.T) {
		rotate := func(password string) {
			secret := kubectl(t, "create", "secret", "docker-registry", "billing-pull", "-n", "recheck", "--dry-run=client", "-o", "yaml",
				"--docker-server="+env.Private, "--docker-username="+harness.PrivateUser, "--docker-password="+password)
			mustApplyStdin(t, secret.Stdout)
		}
		rotate("rotated-wrong-password")
		took := waitReport(t, "billing's secret rotated", func(lines []string) bool {
			return slices.Contains(lines, "Deployment/billing CredentialsRejected fail")
		})
		t.Logf("seen %s after the secret changed (a Secret change re-checks what uses it at once)", took.Round(100*time.Millisecond))
		waitEvent(t, "Warning", "PullWillFail", "billing")
		rotate(harness.PrivatePassword)
		waitReport(t, "billing's secret restored", func(lines []string) bool { return slices.Contains(lines, "Deployment/billing Pull pass") })
		waitEvent(t, "Normal", "PullWillSucceed", "billing")
	})

	t.Run("a node pool of another architecture joins", func(t *testing.T) {
		remove, err := env.AddFakeNode(ctx, "arm64-pool-recheck", "arm64")
		if err != nil {
			t.Fatal(err)
		}
		took := waitReport(t, "an arm64 node joined", func(lines []string) bool {
			return slices.Contains(lines, "DaemonSet/agent PlatformMismatch fail")
		})
		t.Logf("seen %s after the node became Ready", took.Round(100*time.Millisecond))
		waitEvent(t, "Warning", "PullWillFail", "agent")
		remove()
		waitReport(t, "the arm64 node left", func(lines []string) bool { return slices.Equal(lines, allPass) })
		waitEvent(t, "Normal", "PullWillSucceed", "agent")
	})
	t.Logf("kubectl get reports -n recheck -o yaml (after):\n%s", kubectl(t, "get", "reports.openreports.io", "pullgate", "-n", "recheck", "-o", "yaml").Output())
}

// mustApplyStdin applies the manifests in yaml, or fails the test.
func mustApplyStdin(t *testing.T, yaml string) {
	t.Helper()
	if r := applyManifest(t, yaml); r.ExitCode != 0 {
		t.Fatalf("kubectl apply: exit %d\n%s", r.ExitCode, r.Output())
	}
}

// waitReport waits until the recheck namespace's Report, as sorted "Kind/name Rule result"
// lines, satisfies ok, and returns how long that took.
func waitReport(t *testing.T, what string, ok func([]string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	var lines []string
	for time.Since(start) < 6*recheckInterval+30*time.Second {
		lines = reportLines(t)
		if ok(lines) {
			return time.Since(start)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: the Report never got there; it says %q; pullgate's log: %s", what, lines, env.LogFile())
	return 0
}

func reportLines(t *testing.T) []string {
	r := env.Kubectl(t.Context(), "", "get", "reports.openreports.io", "pullgate", "-n", "recheck", "-o", "json")
	if r.ExitCode != 0 {
		return nil
	}
	var report struct {
		Results []struct {
			Rule      string `json:"rule"`
			Result    string `json:"result"`
			Resources []struct {
				Kind, Name string
			} `json:"resources"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &report); err != nil {
		t.Fatalf("decoding the Report: %v", err)
	}
	var lines []string
	for _, res := range report.Results {
		for _, s := range res.Resources {
			lines = append(lines, fmt.Sprintf("%s/%s %s %s", s.Kind, s.Name, res.Rule, res.Result))
		}
	}
	slices.Sort(lines)
	return lines
}

// waitEvent waits for an Event of type and reason on the workload named name in recheck.
func waitEvent(t *testing.T, typ, reason, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := env.Kubectl(t.Context(), "", "get", "events", "-n", "recheck",
			"--field-selector", "reason="+reason+",involvedObject.name="+name, "-o", "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.kind,MESSAGE:.message", "--no-headers")
		if r.ExitCode == 0 && strings.Contains(r.Stdout, typ+" ") {
			t.Logf("kubectl get events: %s", strings.TrimSpace(r.Stdout))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s %s event on %s: %s", typ, reason, name, r.Output())
		}
		time.Sleep(500 * time.Millisecond)
	}
}
