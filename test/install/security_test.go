package install_test

import (
	"encoding/base64"
	"path"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	clientAuthCertManager = "cert-manager"
	clientAuthSecret      = "secret"
)

// controlPlaneCIDRs are the addresses the NetworkPolicy entries admit the webhook port from.
var controlPlaneCIDRs = []string{"10.0.0.0/24", "fd00:10::/64"}

// securityMatrix: client authentication off (every other entry), with cert-manager's CA and
// client certificate, and with a CA Secret of one's own (with and without cert-manager), and
// the NetworkPolicy on.
func securityMatrix(caPEM []byte) []matrixEntry {
	byo := []string{
		"certManager.enabled=false",
		"tls.secretName=pullgate-byo-tls",
		"webhook.caBundle=" + base64.StdEncoding.EncodeToString(caPEM),
	}
	return []matrixEntry{
		{
			name:        "client auth, cert-manager",
			install:     install{release: "pullgate", namespace: "pullgate", set: []string{"clientAuth.enabled=true", "clientAuth.allowedNames={kube-apiserver}", "secretCache=pull-secrets"}},
			certManager: true,
			clientAuth:  clientAuthCertManager,
		},
		{
			name:       "client auth, own CA secret, no cert-manager",
			install:    install{release: "pullgate", namespace: "pullgate", set: append(byo, "clientAuth.enabled=true", "clientAuth.caSecretName=apiserver-client-ca")},
			caBundle:   caPEM,
			clientAuth: clientAuthSecret,
		},
		{
			name: "NetworkPolicy on, client auth off",
			install: install{release: "gate", namespace: "security", set: []string{
				"networkPolicy.enabled=true",
				"networkPolicy.controlPlaneCIDRs={" + strings.Join(controlPlaneCIDRs, ",") + "}",
				"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			}},
			certManager:   true,
			networkPolicy: true,
		},
		{
			name: "NetworkPolicy and client auth on",
			install: install{release: "pullgate", namespace: "pullgate", set: []string{
				"clientAuth.enabled=true",
				"networkPolicy.enabled=true",
				"networkPolicy.controlPlaneCIDRs={" + strings.Join(controlPlaneCIDRs, ",") + "}",
			}},
			certManager:   true,
			clientAuth:    clientAuthCertManager,
			networkPolicy: true,
		},
	}
}

func checkSecurity(t *testing.T, m matrixEntry, o *objects, r rendered) {
	checkClientAuth(t, m, o, r)
	checkNetworkPolicy(t, m, o, r)
}

func checkClientAuth(t *testing.T, m matrixEntry, o *objects, r rendered) {
	caFile, on := r.flags["client-ca-file"]
	if m.clientAuth == "" {
		if on {
			t.Errorf("--client-ca-file=%s with client authentication off", caFile)
		}
		if _, ok := r.flags["client-allowed-names"]; ok {
			t.Error("--client-allowed-names with client authentication off")
		}
		return
	}
	if !on {
		t.Fatal("client authentication on, but no --client-ca-file")
	}
	if _, ok := r.flags["unauthenticated-details"]; ok {
		t.Error("--unauthenticated-details with client authentication on: it has no effect")
	}
	// The file is a key of a mounted Secret.
	var volume string
	for _, vm := range r.container.VolumeMounts {
		if vm.MountPath == path.Dir(caFile) {
			volume = vm.Name
			if !vm.ReadOnly {
				t.Errorf("the client CA is mounted read-write")
			}
		}
	}
	var secret string
	for _, v := range r.deploy.Spec.Template.Spec.Volumes {
		if v.Name == volume && v.Secret != nil {
			secret = v.Secret.SecretName
			if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == path.Base(caFile) }) {
				t.Errorf("the Secret volume does not project %s", path.Base(caFile))
			}
		}
	}
	if secret == "" {
		t.Fatalf("no Secret volume is mounted at %s", path.Dir(caFile))
	}

	certs := all[*cmv1.Certificate](o)
	switch m.clientAuth {
	case clientAuthSecret:
		if secret != "apiserver-client-ca" {
			t.Errorf("the client CA comes from Secret %q, want clientAuth.caSecretName", secret)
		}
		for _, c := range certs {
			if slices.Contains(c.Spec.Usages, cmv1.UsageClientAuth) {
				t.Errorf("Certificate %s: a client certificate issued although the CA is one's own", c.Name)
			}
		}
	case clientAuthCertManager:
		// A CA Certificate writes the Secret; a client certificate for the API server is issued
		// by the CA Issuer of that Secret, and by nothing else.
		var ca *cmv1.Certificate
		for _, c := range certs {
			if c.Spec.SecretName == secret {
				ca = c
			}
		}
		if ca == nil || !ca.Spec.IsCA {
			t.Fatalf("Secret %s is not written by a CA Certificate", secret)
		}
		if ca.Spec.SecretName == r.servingCASecret(o) {
			t.Error("the client CA is the serving CA: anything it signs could call pullgate")
		}
		var clients []*cmv1.Certificate
		for _, c := range certs {
			if slices.Contains(c.Spec.Usages, cmv1.UsageClientAuth) {
				clients = append(clients, c)
			}
		}
		if len(clients) != 1 {
			t.Fatalf("%d client certificates issued, want 1 (the API server's)", len(clients))
		}
		client := clients[0]
		issuer := findIssuer(all[*cmv1.Issuer](o), m.namespace, client.Spec.IssuerRef.Name)
		if issuer == nil || issuer.Spec.CA == nil || issuer.Spec.CA.SecretName != secret {
			t.Errorf("Certificate %s is not issued by the CA Issuer of Secret %s", client.Name, secret)
		}
		if client.Spec.IsCA {
			t.Errorf("Certificate %s: the client certificate is a CA", client.Name)
		}
		if names := r.flags["client-allowed-names"]; names != "" && !slices.Contains(strings.Split(names, ","), client.Spec.CommonName) {
			t.Errorf("--client-allowed-names=%s does not allow the issued certificate's common name %q", names, client.Spec.CommonName)
		}
	}
}

// servingCASecret is the Secret of the CA that signs the serving certificate, "" if none.
func (r rendered) servingCASecret(o *objects) string {
	for _, c := range all[*cmv1.Certificate](o) {
		if slices.Contains(c.Spec.Usages, cmv1.UsageServerAuth) {
			if i := findIssuer(all[*cmv1.Issuer](o), c.Namespace, c.Spec.IssuerRef.Name); i != nil && i.Spec.CA != nil {
				return i.Spec.CA.SecretName
			}
		}
	}
	return ""
}

func checkNetworkPolicy(t *testing.T, m matrixEntry, o *objects, r rendered) {
	nps := all[*networkingv1.NetworkPolicy](o)
	if !m.networkPolicy {
		if len(nps) > 0 {
			t.Errorf("%d NetworkPolicies rendered with networkPolicy.enabled=false", len(nps))
		}
		return
	}
	if len(nps) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(nps))
	}
	np := nps[0]
	sel, err := labels.ValidatedSelectorFromSet(np.Spec.PodSelector.MatchLabels)
	if err != nil || len(np.Spec.PodSelector.MatchExpressions) > 0 {
		t.Fatalf("podSelector %+v: %v", np.Spec.PodSelector, err)
	}
	if !sel.Matches(labels.Set(r.deploy.Spec.Template.Labels)) {
		t.Errorf("podSelector %v does not select the webhook pods (%v)", sel, r.deploy.Spec.Template.Labels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("policyTypes %v lack Ingress", np.Spec.PolicyTypes)
	}
	// Which container port a NetworkPolicy port names.
	portName := func(p networkingv1.NetworkPolicyPort) string {
		if p.Port == nil {
			return "*"
		}
		for _, cp := range r.container.Ports {
			if p.Port.String() == cp.Name || p.Port.IntValue() == int(cp.ContainerPort) {
				return cp.Name
			}
		}
		t.Errorf("NetworkPolicy port %s is no port of the webhook container", p.Port.String())
		return p.Port.String()
	}
	var webhookFrom []string
	metrics := false
	for _, rule := range np.Spec.Ingress {
		names := []string{}
		for _, p := range rule.Ports {
			names = append(names, portName(p))
		}
		if len(rule.Ports) == 0 {
			names = []string{"*"}
		}
		for _, n := range names {
			switch n {
			case "webhook", "*":
				if len(rule.From) == 0 {
					t.Error("the webhook port is admitted from everywhere")
				}
				for _, f := range rule.From {
					if f.IPBlock == nil || f.PodSelector != nil || f.NamespaceSelector != nil || len(f.IPBlock.Except) > 0 {
						t.Errorf("the webhook port is admitted from %+v, not a control plane CIDR", f)
						continue
					}
					webhookFrom = append(webhookFrom, f.IPBlock.CIDR)
				}
			case "metrics":
				metrics = true
			}
		}
	}
	if !slices.Equal(webhookFrom, controlPlaneCIDRs) {
		t.Errorf("the webhook port is admitted from %v, want %v", webhookFrom, controlPlaneCIDRs)
	}
	wantMetrics := strings.Contains(strings.Join(m.set, " "), "networkPolicy.metricsFrom")
	if metrics != wantMetrics {
		t.Errorf("metrics port admitted: %v, want %v", metrics, wantMetrics)
	}
}
