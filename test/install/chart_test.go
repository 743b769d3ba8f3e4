package install_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/pullgate/pullgate/internal/testcerts"
	"github.com/pullgate/pullgate/pkg/policy"
	pgwebhook "github.com/pullgate/pullgate/pkg/webhook"
)

// The server's side of the contract: the paths pkg/webhook serves, and the port the chart
// passes to cmd/webhook's --port (TestChartFlagsExist checks the flags exist).
const (
	validatePath = pgwebhook.ValidatePath
	mutatePath   = pgwebhook.MutatePath
	webhookPort  = 9443
)

// matrixEntry is one install of the chart and what it should have turned on.
type matrixEntry struct {
	name string
	install
	certManager, mutations, serviceMonitor bool
	// recheck says the background re-check is on (recheck.interval), with its Report CRD.
	recheck bool
	// caBundle is the PEM the webhook configurations must carry without cert-manager.
	caBundle []byte
}

func matrix(t *testing.T) []matrixEntry {
	caPEM := testCA(t)
	return []matrixEntry{
		{
			name:        "defaults",
			install:     install{release: "pullgate", namespace: "pullgate"},
			certManager: true,
		},
		{
			name: "no cert-manager",
			install: install{release: "pullgate", namespace: "pullgate", set: []string{
				"certManager.enabled=false",
				"tls.secretName=pullgate-byo-tls",
				"webhook.caBundle=" + base64.StdEncoding.EncodeToString(caPEM),
			}},
			caBundle: caPEM,
		},
		{
			name:        "mutations on",
			install:     install{release: "pullgate", namespace: "pullgate", set: []string{"mutations.enabled=true"}},
			certManager: true,
			mutations:   true,
		},
		{
			name:           "ServiceMonitor on",
			install:        install{release: "pullgate", namespace: "pullgate", set: []string{"serviceMonitor.enabled=true"}},
			certManager:    true,
			serviceMonitor: true,
		},
		{
			name: "re-check on, with the Report CRD",
			install: install{release: "pullgate", namespace: "pullgate", set: []string{
				"recheck.interval=10m", "recheck.reports.installCRD=true",
			}},
			certManager: true,
			recheck:     true,
		},
		{
			// Nothing may assume the release or the namespace is called pullgate.
			name: "other release and namespace, everything on",
			install: install{release: "gate", namespace: "security", set: []string{
				"mutations.enabled=true", "serviceMonitor.enabled=true",
				"webhook.excludeNamespaces={legacy}", "recheck.interval=5m",
			}},
			certManager: true, mutations: true, serviceMonitor: true, recheck: true,
		},
	}
}

// testCA returns the PEM of a throwaway self-signed CA certificate.
func testCA(t *testing.T) []byte {
	t.Helper()
	ca, err := testcerts.NewCA("pullgate test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca.PEM()
}

func TestChartLints(t *testing.T) {
	for _, m := range matrix(t) {
		t.Run(m.name, func(t *testing.T) {
			h := helm(t)
			args := append([]string{"lint", "--strict", chartDir(t)}, m.args(t)...)
			if out, err := run(h, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestChartRender renders every matrix entry and checks what breaks installs.
func TestChartRender(t *testing.T) {
	for _, m := range matrix(t) {
		t.Run(m.name, func(t *testing.T) {
			o := m.render(t)
			r := inspect(t, m, o)
			t.Run("namespaces", func(t *testing.T) { checkNamespaces(t, m, o) })
			t.Run("tls", func(t *testing.T) { checkTLS(t, m, o, r) })
			t.Run("webhooks", func(t *testing.T) { checkWebhooks(t, m, o, r) })
			t.Run("rbac", func(t *testing.T) { checkRBAC(t, m, o, r) })
			t.Run("pod", func(t *testing.T) { checkPod(t, m, o, r) })
			t.Run("policy", func(t *testing.T) { checkPolicyConfigMap(t, m, r) })
			t.Run("metrics", func(t *testing.T) { checkMetrics(t, m, o, r) })
		})
	}
}

// rendered is what the checks share: the webhook Deployment, its container and flags, and
// the Service in front of it.
type rendered struct {
	deploy    *appsv1.Deployment
	container corev1.Container
	flags     map[string]string
	service   *corev1.Service
	policyCM  *corev1.ConfigMap
	policy    *policy.Policy
}

func inspect(t *testing.T, m matrixEntry, o *objects) rendered {
	t.Helper()
	var r rendered
	r.deploy = one[*appsv1.Deployment](t, o)
	cs := r.deploy.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want one container in the webhook pod, got %d", len(cs))
	}
	r.container = cs[0]
	r.flags = flags(t, r.container.Args)

	// The webhook Service: the one the validating webhook calls.
	vwc := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
	if len(vwc.Webhooks) == 0 || vwc.Webhooks[0].ClientConfig.Service == nil {
		t.Fatal("the validating webhook configuration calls no Service")
	}
	ref := vwc.Webhooks[0].ClientConfig.Service
	for _, s := range all[*corev1.Service](o) {
		if s.Name == ref.Name && s.Namespace == ref.Namespace {
			r.service = s
		}
	}
	if r.service == nil {
		t.Fatalf("the webhook calls Service %s/%s, which the chart does not render", ref.Namespace, ref.Name)
	}

	ns, name, ok := strings.Cut(r.flags["policy-configmap"], "/")
	if !ok {
		t.Fatalf("--policy-configmap=%q is not NAMESPACE/NAME", r.flags["policy-configmap"])
	}
	if ns != m.namespace {
		t.Errorf("--policy-configmap is in namespace %q, want the release namespace %q", ns, m.namespace)
	}
	for _, cm := range all[*corev1.ConfigMap](o) {
		if cm.Namespace == ns && cm.Name == name {
			r.policyCM = cm
		}
	}
	if r.policyCM == nil {
		t.Fatalf("--policy-configmap=%s/%s names a ConfigMap the chart does not render", ns, name)
	}
	p, err := policy.Parse([]byte(r.policyCM.Data[policy.DataKey]))
	if err != nil {
		t.Fatalf("the rendered policy does not parse: %v\n%s", err, r.policyCM.Data[policy.DataKey])
	}
	r.policy = p
	return r
}

// clusterScoped are the kinds the chart renders without a namespace.
var clusterScoped = sets.New("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")

func checkNamespaces(t *testing.T, m matrixEntry, o *objects) {
	seen := map[id]bool{}
	for _, u := range o.raw {
		i := idOf(u)
		if seen[i] {
			t.Errorf("%s is rendered twice", i)
		}
		seen[i] = true
		switch {
		case clusterScoped.Has(i.Kind) && i.Namespace != "":
			t.Errorf("%s: a cluster-scoped object has a namespace", i)
		case !clusterScoped.Has(i.Kind) && i.Namespace != m.namespace:
			// kubectl apply -f of the render would put it in the current namespace.
			t.Errorf("%s: want namespace %q set explicitly", i, m.namespace)
		}
	}
}

func checkTLS(t *testing.T, m matrixEntry, o *objects, r rendered) {
	// The Secret mounted at --cert-dir is what the webhook serves with.
	certDir := r.flags["cert-dir"]
	if certDir == "" {
		t.Fatal("the webhook has no --cert-dir: it would read the default under /tmp, where nothing is mounted")
	}
	var volume string
	for _, vm := range r.container.VolumeMounts {
		if vm.MountPath == certDir {
			volume = vm.Name
		}
	}
	var secretName string
	for _, v := range r.deploy.Spec.Template.Spec.Volumes {
		if v.Name == volume && v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	if secretName == "" {
		t.Fatalf("no Secret volume is mounted at --cert-dir=%s", certDir)
	}

	vwc := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
	mwcs := all[*admissionregistrationv1.MutatingWebhookConfiguration](o)
	configs := []metav1.Object{vwc}
	var bundles [][]byte
	for _, w := range vwc.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, mwc := range mwcs {
		configs = append(configs, mwc)
		for _, w := range mwc.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
	}

	certs := all[*cmv1.Certificate](o)
	issuers := all[*cmv1.Issuer](o)
	if !m.certManager {
		if len(certs)+len(issuers)+len(all[*cmv1.ClusterIssuer](o)) > 0 {
			t.Error("cert-manager objects rendered with certManager.enabled=false")
		}
		if secretName != "pullgate-byo-tls" {
			t.Errorf("the webhook mounts Secret %q, want tls.secretName %q", secretName, "pullgate-byo-tls")
		}
		for i, b := range bundles {
			if !slices.Equal(b, m.caBundle) {
				t.Errorf("webhook %d: caBundle is not webhook.caBundle", i)
			}
		}
		for _, c := range configs {
			if _, ok := c.GetAnnotations()["cert-manager.io/inject-ca-from"]; ok {
				t.Errorf("%s: cert-manager.io/inject-ca-from without cert-manager", c.GetName())
			}
		}
		return
	}

	// The serving Certificate: the one that writes the mounted Secret.
	var serving *cmv1.Certificate
	for _, c := range certs {
		if c.Spec.SecretName == secretName && c.Namespace == m.namespace {
			serving = c
		}
	}
	if serving == nil {
		t.Fatalf("no Certificate writes Secret %s/%s, which the webhook mounts at --cert-dir", m.namespace, secretName)
	}
	svc, ns := r.service.Name, r.service.Namespace
	for _, want := range []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"} {
		if !slices.Contains(serving.Spec.DNSNames, want) {
			t.Errorf("Certificate %s: dnsNames %v do not cover %q", serving.Name, serving.Spec.DNSNames, want)
		}
	}
	if serving.Spec.IsCA {
		t.Errorf("Certificate %s: the serving certificate is a CA", serving.Name)
	}
	if len(serving.Spec.Usages) > 0 && !slices.Contains(serving.Spec.Usages, cmv1.UsageServerAuth) {
		t.Errorf("Certificate %s: usages %v lack %q", serving.Name, serving.Spec.Usages, cmv1.UsageServerAuth)
	}

	// Its issuer is a CA issuer whose key is a self-signed CA Certificate: the chain the
	// cainjector puts into the webhook configurations.
	ref := serving.Spec.IssuerRef
	if ref.Kind != "Issuer" || (ref.Group != "" && ref.Group != "cert-manager.io") {
		t.Fatalf("Certificate %s: issuerRef %+v, want the chart's own Issuer", serving.Name, ref)
	}
	issuer := findIssuer(issuers, m.namespace, ref.Name)
	if issuer == nil || issuer.Spec.CA == nil {
		t.Fatalf("Certificate %s: issuer %q is not a rendered CA Issuer", serving.Name, ref.Name)
	}
	var ca *cmv1.Certificate
	for _, c := range certs {
		if c.Spec.SecretName == issuer.Spec.CA.SecretName && c.Namespace == m.namespace {
			ca = c
		}
	}
	if ca == nil || !ca.Spec.IsCA {
		t.Fatalf("Issuer %s: its Secret %q is not written by a CA Certificate", issuer.Name, issuer.Spec.CA.SecretName)
	}
	if root := findIssuer(issuers, m.namespace, ca.Spec.IssuerRef.Name); root == nil || root.Spec.SelfSigned == nil {
		t.Errorf("CA Certificate %s: issuer %q is not a rendered self-signed Issuer", ca.Name, ca.Spec.IssuerRef.Name)
	}

	want := m.namespace + "/" + serving.Name
	for _, c := range configs {
		if got := c.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != want {
			t.Errorf("%s: cert-manager.io/inject-ca-from = %q, want %q", c.GetName(), got, want)
		}
	}
	for i, b := range bundles {
		if len(b) != 0 {
			t.Errorf("webhook %d: a caBundle is rendered although the cainjector manages it", i)
		}
	}
}

func findIssuer(issuers []*cmv1.Issuer, ns, name string) *cmv1.Issuer {
	for _, i := range issuers {
		if i.Namespace == ns && i.Name == name {
			return i
		}
	}
	return nil
}

// rule is one (group, version, resource, operation) a webhook matches.
type rule struct{ Group, Version, Resource, Op string }

func rulesOf(t *testing.T, rs []admissionregistrationv1.RuleWithOperations) []rule {
	t.Helper()
	var out []rule
	for _, r := range rs {
		if r.Scope == nil || *r.Scope != admissionregistrationv1.NamespacedScope {
			t.Errorf("rule %v: want scope Namespaced", r.Resources)
		}
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					for _, op := range r.Operations {
						if g == "*" || v == "*" || res == "*" || res == "*/*" || op == "*" {
							t.Errorf("rule %v: wildcard", r)
						}
						out = append(out, rule{g, v, res, string(op)})
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b rule) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}

// The resources pkg/webhook decodes and checks, with the operations that make the kubelet
// pull something new: a Pod's UPDATE too, when it changes an image (`kubectl set image`).
var wantValidateRules = func() []rule {
	var out []rule
	out = append(out, rule{"", "v1", "pods", "CREATE"}, rule{"", "v1", "pods", "UPDATE"},
		rule{"", "v1", "pods/ephemeralcontainers", "UPDATE"})
	for _, op := range []string{"CREATE", "UPDATE"} {
		out = append(out, rule{"", "v1", "replicationcontrollers", op})
		for _, res := range []string{"deployments", "statefulsets", "daemonsets", "replicasets"} {
			out = append(out, rule{"apps", "v1", res, op})
		}
		for _, res := range []string{"jobs", "cronjobs"} {
			out = append(out, rule{"batch", "v1", res, op})
		}
	}
	slices.SortFunc(out, func(a, b rule) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}()

// nsMatches reports whether a namespaceSelector selects a namespace with these labels
// (the API server sets kubernetes.io/metadata.name on every namespace).
func nsMatches(t *testing.T, sel *metav1.LabelSelector, name string, extra map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("namespaceSelector: %v", err)
	}
	l := labels.Set{"kubernetes.io/metadata.name": name}
	for k, v := range extra {
		l[k] = v
	}
	return s.Matches(l)
}

// commonWebhookChecks are the settings every pullgate webhook shares.
func commonWebhookChecks(t *testing.T, r rendered, name string, cc admissionregistrationv1.WebhookClientConfig,
	sideEffects *admissionregistrationv1.SideEffectClass, versions []string, timeout *int32, wantPath string,
	conditions []admissionregistrationv1.MatchCondition) {
	t.Helper()
	if sideEffects == nil || *sideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("%s: sideEffects must be None (pullgate writes nothing; dry-run requests need it)", name)
	}
	if !slices.Equal(versions, []string{"v1"}) {
		t.Errorf("%s: admissionReviewVersions = %v, want [v1]", name, versions)
	}
	if timeout == nil {
		t.Errorf("%s: no explicit timeoutSeconds", name)
	} else if *timeout < 1 || *timeout > 30 {
		t.Errorf("%s: timeoutSeconds %d is outside 1..30", name, *timeout)
	}
	svc := cc.Service
	if svc == nil || cc.URL != nil {
		t.Fatalf("%s: must call the Service, not a URL", name)
	}
	if svc.Name != r.service.Name || svc.Namespace != r.service.Namespace {
		t.Errorf("%s: calls Service %s/%s, want %s/%s", name, svc.Namespace, svc.Name, r.service.Namespace, r.service.Name)
	}
	if svc.Path == nil || *svc.Path != wantPath {
		t.Errorf("%s: path %v, want %s", name, svc.Path, wantPath)
	}
	port := int32(443)
	if svc.Port != nil {
		port = *svc.Port
	}
	var found bool
	for _, sp := range r.service.Spec.Ports {
		if sp.Port != port {
			continue
		}
		found = true
		if got := containerPort(t, r.container, sp.TargetPort); got != webhookPort {
			t.Errorf("%s: Service port %d leads to container port %d, want the webhook's %d", name, port, got, webhookPort)
		}
	}
	if !found {
		t.Errorf("%s: Service %s has no port %d", name, r.service.Name, port)
	}
	names := sets.New[string]()
	for _, c := range conditions {
		if names.Has(c.Name) {
			t.Errorf("%s: matchCondition %q twice", name, c.Name)
		}
		names.Insert(c.Name)
		if strings.TrimSpace(c.Expression) == "" {
			t.Errorf("%s: matchCondition %q has no expression", name, c.Name)
		}
	}
}

func checkWebhooks(t *testing.T, m matrixEntry, o *objects, r rendered) {
	if got := r.flags["port"]; got != fmt.Sprint(webhookPort) {
		t.Errorf("--port=%s, want %d", got, webhookPort)
	}
	if got := containerPortNamed(r.container, "webhook"); got != webhookPort {
		t.Errorf("container port \"webhook\" is %d, want %d", got, webhookPort)
	}

	vwc := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
	var pods, cm *admissionregistrationv1.ValidatingWebhook
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		commonWebhookChecks(t, r, w.Name, w.ClientConfig, w.SideEffects, w.AdmissionReviewVersions, w.TimeoutSeconds, validatePath, w.MatchConditions)
		for _, rr := range w.Rules {
			switch {
			case slices.Contains(rr.Resources, "pods"):
				pods = w
			case slices.Contains(rr.Resources, "configmaps"):
				cm = w
			}
		}
	}
	if pods == nil || cm == nil || len(vwc.Webhooks) != 2 {
		t.Fatalf("want two validating webhooks, one for pods and workloads and one for the policy ConfigMap; got %d", len(vwc.Webhooks))
	}

	// Pods and workloads.
	if diff := cmp.Diff(wantValidateRules, rulesOf(t, pods.Rules)); diff != "" {
		t.Errorf("%s: rules (-want +got):\n%s", pods.Name, diff)
	}
	if pods.FailurePolicy == nil || *pods.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("%s: failurePolicy must default to Ignore (a pullgate outage must not block the cluster)", pods.Name)
	}
	lookup := r.policy.LookupTimeout.Duration
	if pods.TimeoutSeconds != nil && time.Duration(*pods.TimeoutSeconds)*time.Second <= lookup {
		t.Errorf("%s: timeoutSeconds %d is not above the policy's lookupTimeout %s", pods.Name, *pods.TimeoutSeconds, lookup)
	}
	checkPodNamespaceSelector(t, m, pods.Name, pods.NamespaceSelector)
	if pods.ObjectSelector != nil && (len(pods.ObjectSelector.MatchLabels) > 0 || len(pods.ObjectSelector.MatchExpressions) > 0) {
		t.Errorf("%s: an objectSelector would let anyone who can label a pod opt it out", pods.Name)
	}

	// The policy ConfigMap guard: its namespace only, that ConfigMap only.
	if diff := cmp.Diff([]rule{{"", "v1", "configmaps", "CREATE"}, {"", "v1", "configmaps", "UPDATE"}}, rulesOf(t, cm.Rules)); diff != "" {
		t.Errorf("%s: rules (-want +got):\n%s", cm.Name, diff)
	}
	if !nsMatches(t, cm.NamespaceSelector, m.namespace, nil) || nsMatches(t, cm.NamespaceSelector, "default", nil) {
		t.Errorf("%s: namespaceSelector must select the release namespace %q only", cm.Name, m.namespace)
	}
	if cm.FailurePolicy == nil || *cm.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("%s: failurePolicy must be Ignore, or a pullgate that cannot start blocks fixing its policy", cm.Name)
	}
	wantCond := fmt.Sprintf("request.name == '%s'", r.policyCM.Name)
	if !slices.ContainsFunc(cm.MatchConditions, func(c admissionregistrationv1.MatchCondition) bool {
		return strings.TrimSpace(c.Expression) == wantCond
	}) {
		t.Errorf("%s: want a matchCondition %q", cm.Name, wantCond)
	}

	// The mutating webhook, only when asked for.
	mwcs := all[*admissionregistrationv1.MutatingWebhookConfiguration](o)
	if !m.mutations {
		if len(mwcs) != 0 {
			t.Error("a MutatingWebhookConfiguration is rendered with mutations.enabled=false")
		}
		return
	}
	if len(mwcs) != 1 || len(mwcs[0].Webhooks) != 1 {
		t.Fatal("want one MutatingWebhookConfiguration with one webhook")
	}
	mw := mwcs[0].Webhooks[0]
	commonWebhookChecks(t, r, mw.Name, mw.ClientConfig, mw.SideEffects, mw.AdmissionReviewVersions, mw.TimeoutSeconds, mutatePath, mw.MatchConditions)
	if diff := cmp.Diff([]rule{{"", "v1", "pods", "CREATE"}}, rulesOf(t, mw.Rules)); diff != "" {
		t.Errorf("%s: rules (-want +got):\n%s", mw.Name, diff)
	}
	if mw.ReinvocationPolicy == nil || *mw.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("%s: reinvocationPolicy must be IfNeeded", mw.Name)
	}
	if mw.FailurePolicy == nil || *mw.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("%s: failurePolicy must default to Ignore", mw.Name)
	}
	if mw.TimeoutSeconds != nil && time.Duration(*mw.TimeoutSeconds)*time.Second <= lookup {
		t.Errorf("%s: timeoutSeconds %d is not above the policy's lookupTimeout %s", mw.Name, *mw.TimeoutSeconds, lookup)
	}
	checkPodNamespaceSelector(t, m, mw.Name, mw.NamespaceSelector)
}

func checkPodNamespaceSelector(t *testing.T, m matrixEntry, name string, sel *metav1.LabelSelector) {
	t.Helper()
	if sel == nil {
		t.Fatalf("%s: no namespaceSelector: pullgate would gate kube-system and itself", name)
	}
	for _, ns := range []string{"kube-system", m.namespace} {
		if nsMatches(t, sel, ns, nil) {
			t.Errorf("%s: namespaceSelector selects %q", name, ns)
		}
	}
	for _, ns := range []string{"default", "team-a"} {
		if !nsMatches(t, sel, ns, nil) {
			t.Errorf("%s: namespaceSelector leaves out %q", name, ns)
		}
		if nsMatches(t, sel, ns, map[string]string{"pullgate.io/ignore": "true"}) {
			t.Errorf("%s: namespaceSelector selects %q labelled pullgate.io/ignore=true", name, ns)
		}
	}
	for _, s := range m.set {
		if list, ok := strings.CutPrefix(s, "webhook.excludeNamespaces="); ok {
			for _, ns := range strings.Split(strings.Trim(list, "{}"), ",") {
				if nsMatches(t, sel, ns, nil) {
					t.Errorf("%s: namespaceSelector selects excluded namespace %q", name, ns)
				}
			}
		}
	}
}

func containerPortNamed(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// grant is one permission: a verb on a resource, in a namespace ("" for cluster-wide),
// perhaps limited to one name.
type grant struct{ Namespace, Group, Resource, Verb, Name string }

func checkRBAC(t *testing.T, m matrixEntry, o *objects, r rendered) {
	saName := r.deploy.Spec.Template.Spec.ServiceAccountName
	var sa *corev1.ServiceAccount
	for _, s := range all[*corev1.ServiceAccount](o) {
		if s.Name == saName && s.Namespace == m.namespace {
			sa = s
		}
	}
	if sa == nil {
		t.Fatalf("the Deployment runs as ServiceAccount %q, which the chart does not render", saName)
	}
	isSA := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa.Name && s.Namespace == sa.Namespace
		})
	}

	clusterRoles := map[string]*rbacv1.ClusterRole{}
	for _, cr := range all[*rbacv1.ClusterRole](o) {
		clusterRoles[cr.Name] = cr
	}
	roles := map[string]*rbacv1.Role{}
	for _, ro := range all[*rbacv1.Role](o) {
		roles[ro.Namespace+"/"+ro.Name] = ro
	}

	var got []grant
	add := func(ns string, rules []rbacv1.PolicyRule, from string) {
		for _, pr := range rules {
			if len(pr.NonResourceURLs) > 0 {
				t.Errorf("%s: grants non-resource URLs %v", from, pr.NonResourceURLs)
			}
			names := pr.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, g := range pr.APIGroups {
				for _, res := range pr.Resources {
					for _, v := range pr.Verbs {
						for _, n := range names {
							if g == "*" || res == "*" || v == "*" {
								t.Errorf("%s: wildcard in %+v", from, pr)
							}
							got = append(got, grant{ns, g, res, v, n})
						}
					}
				}
			}
		}
	}
	used := sets.New[string]()
	for _, b := range all[*rbacv1.ClusterRoleBinding](o) {
		if !isSA(b.Subjects) {
			t.Errorf("ClusterRoleBinding %s binds something other than pullgate's ServiceAccount", b.Name)
			continue
		}
		cr, ok := clusterRoles[b.RoleRef.Name]
		if b.RoleRef.Kind != "ClusterRole" || !ok {
			t.Errorf("ClusterRoleBinding %s: roleRef %+v is not a rendered ClusterRole", b.Name, b.RoleRef)
			continue
		}
		used.Insert("ClusterRole/" + cr.Name)
		add("", cr.Rules, "ClusterRole "+cr.Name)
	}
	for _, b := range all[*rbacv1.RoleBinding](o) {
		if !isSA(b.Subjects) {
			t.Errorf("RoleBinding %s binds something other than pullgate's ServiceAccount", b.Name)
			continue
		}
		if b.RoleRef.Kind != "Role" {
			t.Errorf("RoleBinding %s binds %s %s; want a namespaced Role", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
			continue
		}
		ro, ok := roles[b.Namespace+"/"+b.RoleRef.Name]
		if !ok {
			t.Errorf("RoleBinding %s: roleRef %+v is not a rendered Role in %s", b.Name, b.RoleRef, b.Namespace)
			continue
		}
		used.Insert("Role/" + ro.Name)
		add(b.Namespace, ro.Rules, "Role "+ro.Name)
	}
	for name := range clusterRoles {
		if !used.Has("ClusterRole/" + name) {
			t.Errorf("ClusterRole %s is bound to nothing", name)
		}
	}
	for _, ro := range roles {
		if !used.Has("Role/" + ro.Name) {
			t.Errorf("Role %s is bound to nothing", ro.Name)
		}
	}

	// Exactly what the webhook reads: its informers of secrets, service accounts,
	// namespaces and nodes cluster-wide, and its one policy ConfigMap. Nothing else, and no
	// write of any kind unless the background re-check is on.
	var want []grant
	for _, res := range []string{"secrets", "serviceaccounts", "namespaces", "nodes"} {
		for _, v := range []string{"get", "list", "watch"} {
			want = append(want, grant{"", "", res, v, ""})
		}
	}
	for _, v := range []string{"get", "list", "watch"} {
		want = append(want, grant{m.namespace, "", "configmaps", v, r.policyCM.Name})
	}
	if m.recheck {
		// The re-check: its workloads listed page by page (no watch), its Events and
		// Reports, and its one Lease.
		for _, gr := range [][2]string{
			{"apps", "deployments"}, {"apps", "statefulsets"}, {"apps", "daemonsets"}, {"apps", "replicasets"},
			{"batch", "jobs"}, {"batch", "cronjobs"}, {"", "pods"}, {"", "replicationcontrollers"},
		} {
			want = append(want, grant{"", gr[0], gr[1], "list", ""})
		}
		for _, v := range []string{"create", "patch"} {
			want = append(want, grant{"", "events.k8s.io", "events", v, ""},
				grant{m.namespace, "", "events", v, ""}, grant{m.namespace, "events.k8s.io", "events", v, ""})
		}
		for _, v := range []string{"get", "list", "create", "update", "delete"} {
			want = append(want, grant{"", "openreports.io", "reports", v, ""})
		}
		want = append(want, grant{m.namespace, "coordination.k8s.io", "leases", "create", ""})
		for _, v := range []string{"get", "update"} {
			want = append(want, grant{m.namespace, "coordination.k8s.io", "leases", v, "pullgate-recheck"})
		}
	}
	sortGrants := func(g []grant) {
		slices.SortFunc(g, func(a, b grant) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	}
	sortGrants(want)
	sortGrants(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("permissions of ServiceAccount %s/%s (-want +got):\n%s", sa.Namespace, sa.Name, diff)
	}
}

func checkPod(t *testing.T, m matrixEntry, o *objects, r rendered) {
	d := r.deploy
	pod := d.Spec.Template
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Fatal("the Deployment's selector does not select its own pods")
	}
	if !labels.SelectorFromSet(r.service.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service %s does not select the webhook pods", r.service.Name)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling updates must keep every replica until its replacement is ready (maxUnavailable 0)")
	}

	// Availability: a PodDisruptionBudget and a spread over nodes.
	pdb := one[*policyv1.PodDisruptionBudget](t, o)
	if ps, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !ps.Matches(labels.Set(pod.Labels)) {
		t.Errorf("PodDisruptionBudget %s does not select the webhook pods", pdb.Name)
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		if pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget maxUnavailable = %s, want 1", pdb.Spec.MaxUnavailable.String())
		}
	case pdb.Spec.MinAvailable != nil:
		if v := pdb.Spec.MinAvailable.IntValue(); v < 1 || v >= 2 {
			t.Errorf("PodDisruptionBudget minAvailable = %d: drains would be blocked or unprotected", v)
		}
	default:
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	var spread bool
	for _, c := range pod.Spec.TopologySpreadConstraints {
		cs, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err == nil && c.TopologyKey == "kubernetes.io/hostname" && c.MaxSkew == 1 && cs.Matches(labels.Set(pod.Labels)) {
			spread = true
		}
	}
	if !spread {
		t.Error("no topology spread of the webhook pods over kubernetes.io/hostname")
	}

	// Locked down.
	ps := pod.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("pod: runAsNonRoot must be true")
	}
	if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: seccompProfile must be RuntimeDefault")
	}
	if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
		t.Error("pod: uses a host namespace")
	}
	c := r.container
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container: no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container: runAsNonRoot must be true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container: readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: allowPrivilegeEscalation must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container: privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Error("container: capabilities must drop ALL and add none")
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("container: seccompProfile must be RuntimeDefault")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("container: no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("container: no %s limit", res)
		}
	}

	// Probes on the server's health endpoint.
	health := portOf(t, r.flags["health-probe-bind-address"])
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container: no HTTP %s probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe: path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := containerPort(t, c, p.probe.HTTPGet.Port); got != health {
			t.Errorf("%s probe: port %d, want --health-probe-bind-address's %d", p.name, got, health)
		}
	}
	if pod.Spec.ServiceAccountName == "" || pod.Spec.ServiceAccountName == "default" {
		t.Error("the webhook must run as its own ServiceAccount")
	}
}

func checkPolicyConfigMap(t *testing.T, m matrixEntry, r rendered) {
	// The chart's default values are pullgate's own defaults; mutations.enabled also turns
	// the policy's mutations on. Compared as JSON, as the ConfigMap holds it.
	want := asJSONMap(t, policy.Default())
	if m.mutations {
		want["mutations"] = map[string]any{"enabled": true}
	}
	if diff := cmp.Diff(want, asJSONMap(t, r.policy)); diff != "" {
		t.Errorf("the chart's policy differs from pullgate's defaults (-want +chart):\n%s", diff)
	}
}

func asJSONMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkMetrics(t *testing.T, m matrixEntry, o *objects, r rendered) {
	sms := all[*serviceMonitor](o)
	if !m.serviceMonitor {
		if len(sms) != 0 {
			t.Error("a ServiceMonitor is rendered with serviceMonitor.enabled=false")
		}
		return
	}
	if len(sms) != 1 {
		t.Fatalf("want one ServiceMonitor, got %d", len(sms))
	}
	sm := sms[0]
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{m.namespace}) {
		t.Errorf("ServiceMonitor: namespaceSelector %v, want [%s]", sm.Spec.NamespaceSelector.MatchNames, m.namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var selected []*corev1.Service
	for _, s := range all[*corev1.Service](o) {
		if s.Namespace == m.namespace && sel.Matches(labels.Set(s.Labels)) {
			selected = append(selected, s)
		}
	}
	if len(selected) != 1 || selected[0].Name == r.service.Name {
		t.Fatalf("the ServiceMonitor must select exactly the metrics Service, not the webhook's; selects %d", len(selected))
	}
	metricsPort := portOf(t, r.flags["metrics-bind-address"])
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor: want one endpoint, got %d", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Path != "/metrics" {
		t.Errorf("ServiceMonitor: path %q, want /metrics", ep.Path)
	}
	var found bool
	for _, sp := range selected[0].Spec.Ports {
		if sp.Name == ep.Port {
			found = true
			if got := containerPort(t, r.container, sp.TargetPort); got != metricsPort {
				t.Errorf("ServiceMonitor port %q leads to container port %d, want --metrics-bind-address's %d", ep.Port, got, metricsPort)
			}
		}
	}
	if !found {
		t.Errorf("ServiceMonitor: Service %s has no port named %q", selected[0].Name, ep.Port)
	}
}

// TestReportCRDIsUpstreams: the chart's copy of the reports.openreports.io CRD is the one of
// the module whose Go types the re-check writes (go.mod's github.com/openreports/reports-api).
func TestReportCRDIsUpstreams(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/openreports/reports-api").Output()
	if err != nil {
		t.Fatalf("finding the reports-api module: %v", err)
	}
	upstream, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "openreports.io_reports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join(chartDir(t), "files", "openreports.io_reports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(ours) != string(upstream) {
		t.Error("charts/pullgate/files/openreports.io_reports.yaml differs from the reports-api module's config/crd/openreports.io_reports.yaml: copy it again")
	}
}
