package install_test

import (
	"os"
	"path/filepath"
	"testing"

	celtypes "github.com/google/cel-go/common/types"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

// TestMatchConditions evaluates the validating webhook's matchConditions, as deploy/ holds
// them (TestKustomizeMatchesChart keeps deploy/ equal to the chart's defaults), with the API
// server's own CEL compiler and environment: which requests reach pullgate. No expression
// may fail to compile or to evaluate: an error skips the webhook under failurePolicy Ignore
// (a silent false admit) and fails the request under Fail.
func TestMatchConditions(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join(root(t), "deploy", "pullgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vwc := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, decodeAll(t, manifest))
	var conditions []admissionregistrationv1.MatchCondition
	for _, w := range vwc.Webhooks {
		if w.Name == "pullgate-validate.pullgate.io" {
			conditions = w.MatchConditions
		}
	}
	if len(conditions) == 0 {
		t.Fatal("the pods and workloads webhook has no matchConditions")
	}
	accessors := make([]cel.ExpressionAccessor, len(conditions))
	for i, c := range conditions {
		accessors[i] = &matchconditions.MatchCondition{Name: c.Name, Expression: c.Expression}
	}
	// As the API server compiles them when the configuration is written (NewExpressions,
	// the stricter environment) and its webhook plugin declares the variables
	// (accessors.go GetCompiledMatcher: no params, an authorizer).
	compiler := cel.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	evaluator := compiler.CompileCondition(accessors, cel.OptionalVariableDeclarations{HasAuthorizer: true}, environment.NewExpressions)
	for _, err := range evaluator.CompilationErrors() {
		t.Fatalf("compiling matchConditions: %v", err)
	}

	pod := func(images ...string) *corev1.Pod {
		p := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		}
		for i, img := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: img})
		}
		return p
	}
	withInit := func(p *corev1.Pod, image string) *corev1.Pod {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image}}
		return p
	}
	labelled := func(p *corev1.Pod) *corev1.Pod {
		p.Labels = map[string]string{"a": "b"}
		return p
	}
	mirror := func(p *corev1.Pod) *corev1.Pod {
		p.Annotations = map[string]string{"kubernetes.io/config.mirror": "x"}
		return p
	}
	deployment := func(image string, replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: pod(image).Spec}},
		}
	}
	podGVK := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deployGVK := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	tests := []struct {
		desc        string
		op          admission.Operation
		gvk         schema.GroupVersionKind
		subResource string
		obj, old    runtime.Object
		want        bool
	}{
		{"pod created", admission.Create, podGVK, "", pod("a:1"), nil, true},
		{"mirror pod created", admission.Create, podGVK, "", mirror(pod("a:1")), nil, false},
		{"pod's image changed (kubectl set image)", admission.Update, podGVK, "", pod("a:2", "b:1"), pod("a:1", "b:1"), true},
		{"pod's init container image changed", admission.Update, podGVK, "", withInit(pod("a:1"), "i:2"), withInit(pod("a:1"), "i:1"), true},
		{"pod's labels changed", admission.Update, podGVK, "", labelled(withInit(pod("a:1"), "i:1")), withInit(pod("a:1"), "i:1"), false},
		{"pod without init containers, labels changed", admission.Update, podGVK, "", labelled(pod("a:1")), pod("a:1"), false},
		{"ephemeral container added (kubectl debug)", admission.Update, podGVK, "ephemeralcontainers", pod("a:1"), pod("a:1"), true},
		{"deployment created", admission.Create, deployGVK, "", deployment("a:1", 1), nil, true},
		{"deployment's template changed", admission.Update, deployGVK, "", deployment("a:2", 1), deployment("a:1", 1), true},
		{"deployment scaled", admission.Update, deployGVK, "", deployment("a:1", 3), deployment("a:1", 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			resource := schema.GroupVersionResource{Group: tc.gvk.Group, Version: tc.gvk.Version, Resource: "pods"}
			if tc.gvk.Kind == "Deployment" {
				resource.Resource = "deployments"
			}
			attr := admission.NewAttributesRecord(tc.obj, tc.old, tc.gvk, "apps", "web", resource, tc.subResource, tc.op, nil, false, nil)
			versioned, err := admission.NewVersionedAttributes(attr, tc.gvk, nil) // already of that kind
			if err != nil {
				t.Fatal(err)
			}
			results, _, err := evaluator.ForInput(t.Context(), versioned,
				cel.CreateAdmissionRequest(attr, metav1.GroupVersionResource(resource), metav1.GroupVersionKind(tc.gvk)),
				cel.OptionalVariableBindings{}, nil, celconfig.RuntimeCELCostBudgetMatchConditions)
			if err != nil {
				t.Fatalf("evaluating: %v", err)
			}
			matches := true
			for _, r := range results {
				name := r.ExpressionAccessor.(*matchconditions.MatchCondition).Name
				if r.Error != nil {
					t.Errorf("matchCondition %q: %v", name, r.Error)
					continue
				}
				if r.EvalResult == celtypes.False {
					matches = false
					t.Logf("matchCondition %q is false", name)
				}
			}
			if matches != tc.want {
				t.Errorf("the request reaches pullgate: %v, want %v", matches, tc.want)
			}
		})
	}
}
