package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// chartWebhooks renders the chart's webhook configurations — the ones a user installs, with
// their rules, namespace selector and match conditions — with mutations on (the mutating
// configuration is rendered only then; it changes nothing until the policy turns a mutation
// on). envtest points their service references at the local pullgate.
func chartWebhooks(ctx context.Context, helm string) (*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfiguration, error) {
	cmd := exec.CommandContext(ctx, helm, "template", "pullgate", filepath.Join(RepoRoot(), "charts", "pullgate"),
		"--namespace", Namespace, "--set", "mutations.enabled=true",
		"--show-only", "templates/validatingwebhookconfiguration.yaml",
		"--show-only", "templates/mutatingwebhookconfiguration.yaml")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if exit, ok := err.(*exec.ExitError); ok {
			stderr = exit.Stderr
		}
		return nil, nil, fmt.Errorf("helm template of the chart's webhooks: %w\n%s", err, stderr)
	}
	var v *admissionregistrationv1.ValidatingWebhookConfiguration
	var m *admissionregistrationv1.MutatingWebhookConfiguration
	for _, doc := range strings.Split(string(out), "\n---") {
		switch {
		case strings.Contains(doc, "kind: ValidatingWebhookConfiguration"):
			v = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			err = yaml.UnmarshalStrict([]byte(doc), v)
		case strings.Contains(doc, "kind: MutatingWebhookConfiguration"):
			m = &admissionregistrationv1.MutatingWebhookConfiguration{}
			err = yaml.UnmarshalStrict([]byte(doc), m)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("decoding the chart's webhook configuration: %w", err)
		}
	}
	if v == nil || m == nil {
		return nil, nil, fmt.Errorf("the chart rendered no webhook configurations:\n%s", out)
	}
	// envtest sets the CA bundle itself; cert-manager does not run here.
	v.Annotations, m.Annotations = nil, nil
	return v, m, nil
}

// savedWebhooks are pullgate's webhook configurations as installed, while RemoveWebhooks has
// them out of the cluster.
type savedWebhooks struct {
	validating *admissionregistrationv1.ValidatingWebhookConfiguration
	mutating   *admissionregistrationv1.MutatingWebhookConfiguration
}

// RemoveWebhooks deletes pullgate's webhook configurations, as if pullgate were not installed:
// what the kubelet does with a manifest is then seen on its own. RestoreWebhooks puts them back.
func (e *Env) RemoveWebhooks(ctx context.Context) error {
	api := e.Client.AdmissionregistrationV1()
	v, err := api.ValidatingWebhookConfigurations().Get(ctx, "pullgate", metav1.GetOptions{})
	if err != nil {
		return err
	}
	m, err := api.MutatingWebhookConfigurations().Get(ctx, "pullgate", metav1.GetOptions{})
	if err != nil {
		return err
	}
	e.webhooks = savedWebhooks{validating: v, mutating: m}
	if err := api.ValidatingWebhookConfigurations().Delete(ctx, "pullgate", metav1.DeleteOptions{}); err != nil {
		return err
	}
	return api.MutatingWebhookConfigurations().Delete(ctx, "pullgate", metav1.DeleteOptions{})
}

// RestoreWebhooks re-creates the configurations RemoveWebhooks deleted.
func (e *Env) RestoreWebhooks(ctx context.Context) error {
	api := e.Client.AdmissionregistrationV1()
	v, m := e.webhooks.validating.DeepCopy(), e.webhooks.mutating.DeepCopy()
	v.ObjectMeta = metav1.ObjectMeta{Name: v.Name}
	m.ObjectMeta = metav1.ObjectMeta{Name: m.Name}
	if _, err := api.ValidatingWebhookConfigurations().Create(ctx, v, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := api.MutatingWebhookConfigurations().Create(ctx, m, metav1.CreateOptions{})
	return err
}
