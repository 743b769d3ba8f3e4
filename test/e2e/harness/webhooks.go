package harness

import (
	"context"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ValidatingWebhookConfiguration is pullgate's validating webhook as the e2e installs it:
// the chart's defaults, with the service reference envtest rewrites to the local server.
func ValidatingWebhookConfiguration() *admissionregistrationv1.ValidatingWebhookConfiguration {
	path := "validate" // envtest joins it to https://HOST:PORT/
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	client := admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: Namespace, Name: "pullgate", Path: &path},
	}
	rule := func(ops []admissionregistrationv1.OperationType, group string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources,
		}}
	}
	create := []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	update := []admissionregistrationv1.OperationType{admissionregistrationv1.Update}
	both := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pullgate"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "workloads.pullgate.io",
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{
				rule(create, "", "pods"),
				rule(update, "", "pods/ephemeralcontainers"),
				rule(both, "", "replicationcontrollers"),
				rule(both, "apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
				rule(both, "batch", "jobs", "cronjobs"),
			},
			// Never block the cluster's own namespaces or pullgate's.
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
				Values: []string{"kube-system", Namespace},
			}}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}, {
			Name:         "policy.pullgate.io",
			ClientConfig: client,
			Rules:        []admissionregistrationv1.RuleWithOperations{rule(both, "", "configmaps")},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
				"kubernetes.io/metadata.name": Namespace,
			}},
			// Only the policy ConfigMap is pullgate's business.
			MatchConditions: []admissionregistrationv1.MatchCondition{{
				Name: "policy-configmap", Expression: `request.name == "` + PolicyConfigMap + `"`,
			}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
}

// MutatingWebhookConfiguration is pullgate's mutating webhook as the e2e installs it: Pods
// only, on CREATE, reinvoked if a later webhook changes the pod. It changes nothing unless
// the policy turns mutations on.
func MutatingWebhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	path := "mutate"
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(10)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "pullgate"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "pods.mutate.pullgate.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: Namespace, Name: "pullgate", Path: &path},
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
				Values: []string{"kube-system", Namespace},
			}}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			ReinvocationPolicy:      &ifNeeded,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
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
