package install_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/yaml"

	"github.com/pullgate/pullgate/pkg/policy"
)

// TestChartRefusesBadValues: values that would install a webhook that cannot work fail the
// render with a message that says what to change.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		desc string
		set  []string
		want string
	}{
		{
			desc: "client auth without cert-manager and without a CA secret",
			set:  []string{"clientAuth.enabled=true", "certManager.enabled=false", "tls.secretName=x", "webhook.caBundle=eA=="},
			want: "needs clientAuth.caSecretName",
		},
		{
			desc: "NetworkPolicy without control plane CIDRs",
			set:  []string{"networkPolicy.enabled=true"},
			want: "needs networkPolicy.controlPlaneCIDRs",
		},
		{
			desc: "unknown unauthenticated details",
			set:  []string{"clientAuth.unauthenticatedDetails=everything"},
			want: "unauthenticatedDetails",
		},
		{
			desc: "timeoutSeconds equal to lookupTimeout",
			set:  []string{"webhook.timeoutSeconds=5"},
			want: "webhook.timeoutSeconds (5) must be greater than policy.lookupTimeout (5s)",
		},
		{
			desc: "lookupTimeout above timeoutSeconds, in minutes and seconds",
			set:  []string{"policy.lookupTimeout=0m12s", "webhook.timeoutSeconds=12"},
			want: "must be greater than policy.lookupTimeout (0m12s)",
		},
		{
			desc: "lookupTimeout above pullgate's maximum",
			set:  []string{"policy.lookupTimeout=26s", "webhook.timeoutSeconds=30"},
			want: "above pullgate's maximum of 25s",
		},
		{
			desc: "lookupTimeout not a duration",
			set:  []string{"policy.lookupTimeout=5 seconds"},
			want: "policy.lookupTimeout",
		},
		{
			desc: "timeoutSeconds above the API server's 30",
			set:  []string{"webhook.timeoutSeconds=31"},
			want: "/webhook/timeoutSeconds",
		},
		{
			desc: "no cert-manager and no caBundle",
			set:  []string{"certManager.enabled=false", "tls.secretName=mine"},
			want: "certManager.enabled=false needs webhook.caBundle",
		},
		{
			desc: "no cert-manager and no Secret",
			set:  []string{"certManager.enabled=false", "webhook.caBundle=Zm9v"},
			want: "certManager.enabled=false needs tls.secretName",
		},
		{
			desc: "unknown failurePolicy",
			set:  []string{"webhook.failurePolicy=Sometimes"},
			want: "/webhook/failurePolicy",
		},
		{
			desc: "misspelt check",
			set:  []string{"policy.checks.platfrom=warn"},
			want: "platfrom",
		},
		{
			desc: "misspelt top-level value",
			set:  []string{"replicas=3"},
			want: "replicas",
		},
		{
			desc: "ServiceMonitor without metrics",
			set:  []string{"serviceMonitor.enabled=true", "metrics.enabled=false"},
			want: "serviceMonitor.enabled=true needs metrics.enabled=true",
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := install{release: "pullgate", namespace: "pullgate", set: tc.set}
			out, err := in.template(t)
			if err == nil {
				t.Fatalf("rendered without an error:\n%.400s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestChartPolicyFromValues: every policy value reaches the ConfigMap, and the result is a
// policy pullgate accepts.
func TestChartPolicyFromValues(t *testing.T) {
	in := install{release: "pullgate", namespace: "pullgate", values: `
webhook:
  timeoutSeconds: 15
policy:
  checks:
    platform: off          # unquoted: YAML 1.1 reads false
    unpinnedTag: enforce
    existence: warn
  onRegistryError: enforce
  onMissingSecretInTemplate: enforce
  lookupTimeout: 9500ms
  cache:
    tagTTL: 1m30s
    negativeTTL: 5s
    maxEntries: 500
  exemptNamespaces: [ci-scratch, sandbox]
  exemptImages: ["registry.k8s.io/*", "docker.io/library/busybox:*"]
  registries:
    allowed: [docker.io, "*.example.com", "registry.local:5000"]
    denied: [old.example.com]
    allowLoopback: true
    allowPrivateNetworks: true
    insecure: ["registry.local:5000"]
  namespaceModeLabel: example.com/pullgate-mode
`}
	o := in.render(t)
	var cm *corev1.ConfigMap
	for _, c := range all[*corev1.ConfigMap](o) {
		if c.Name == "pullgate-policy" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("no pullgate-policy ConfigMap")
	}
	got, err := policy.Parse([]byte(cm.Data[policy.DataKey]))
	if err != nil {
		t.Fatalf("the rendered policy does not parse: %v\n%s", err, cm.Data[policy.DataKey])
	}
	want := policy.Default()
	want.Checks[policy.CheckPlatform] = policy.Off
	want.Checks[policy.CheckUnpinnedTag] = policy.Enforce
	want.Checks[policy.CheckExistence] = policy.Warn
	want.OnRegistryError = policy.Enforce
	want.OnMissingSecretInTemplate = policy.Enforce
	want.LookupTimeout = metav1.Duration{Duration: 9500 * time.Millisecond}
	want.Cache.TagTTL = metav1.Duration{Duration: 90 * time.Second}
	want.Cache.NegativeTTL = metav1.Duration{Duration: 5 * time.Second}
	want.Cache.MaxEntries = 500
	want.ExemptNamespaces = []string{"ci-scratch", "sandbox"}
	want.ExemptImages = []string{"registry.k8s.io/*", "docker.io/library/busybox:*"}
	want.Registries = policy.RegistryPolicy{
		Allowed:              []string{"docker.io", "*.example.com", "registry.local:5000"},
		Denied:               []string{"old.example.com"},
		AllowLoopback:        true,
		AllowPrivateNetworks: true,
		Insecure:             []string{"registry.local:5000"},
	}
	want.NamespaceModeLabel = "example.com/pullgate-mode"
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}

	// The exempt namespaces are also left out of the pod webhook's namespaceSelector, and
	// timeoutSeconds follows the longer lookupTimeout.
	for _, w := range one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, o).Webhooks {
		if !slices.ContainsFunc(w.Rules, func(r admissionregistrationv1.RuleWithOperations) bool {
			return slices.Contains(r.Resources, "pods")
		}) {
			continue
		}
		for _, ns := range []string{"ci-scratch", "sandbox"} {
			if nsMatches(t, w.NamespaceSelector, ns, nil) {
				t.Errorf("%s: namespaceSelector selects exempt namespace %q", w.Name, ns)
			}
		}
		if w.TimeoutSeconds == nil || *w.TimeoutSeconds != 15 {
			t.Errorf("%s: timeoutSeconds %v, want 15", w.Name, w.TimeoutSeconds)
		}
	}
}

// TestChartREADMEListsEveryValue: the values reference in the chart's README names every
// value of values.yaml.
func TestChartREADMEListsEveryValue(t *testing.T) {
	dir := chartDir(t)
	data, err := readFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := readFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Values whose default is a map documented as a whole.
	opaque := map[string]bool{"resources": true, "nodeSelector": true}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !opaque[p] {
				walk(p+".", sub)
				continue
			}
			if !strings.Contains(string(readme), "| `"+p+"` |") {
				t.Errorf("README.md's values table lacks `%s`", p)
			}
		}
	}
	walk("", values)
}
