package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/pkg/mutate"
	"github.com/pullgate/pullgate/pkg/policy"
)

// MutatePath is where the mutating webhook is served.
const MutatePath = "/mutate"

// Mutator is the mutating admission handler: mirror rewrite, pull-secret injection and digest
// pinning of Pods at CREATE (see pkg/mutate). It answers every other request, and every Pod
// when the policy's mutations are off, with an allow and no patch. It never denies a pod
// because a look-up failed: it admits it unchanged, or partly changed, with a warning.
type Mutator struct {
	Mutations *mutate.Mutator
	Policy    *policy.Store
	// Reader reads namespaces; in the webhook it is the manager's cache.
	Reader client.Reader
}

var _ admission.Handler = (*Mutator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp := m.handle(ctx, req)
	mutationDuration.Observe(time.Since(start).Seconds())
	return resp
}

func (m *Mutator) handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.SubResource != "" ||
		req.Kind != (metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}) {
		return admission.Allowed("")
	}
	pol := m.Policy.Load()
	if !pol.Mutations.Enabled || pol.NamespaceExempt(req.Namespace) {
		return admission.Allowed("")
	}
	log := logf.FromContext(ctx).WithValues("namespace", req.Namespace, "name", req.Name)

	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", err))
	}

	var nsLabels map[string]string
	var ns corev1.Namespace
	switch err := m.Reader.Get(ctx, types.NamespacedName{Name: req.Namespace}, &ns); {
	case err == nil:
		nsLabels = ns.Labels
	case apierrors.IsNotFound(err):
	default:
		log.Error(err, "Reading namespace labels; using the cluster-wide policy")
	}
	if !pol.MutationsEnabledFor(req.Namespace, nsLabels) {
		return admission.Allowed("")
	}

	ctx, cancel := context.WithTimeout(ctx, pol.LookupTimeout.Duration)
	defer cancel()

	original := pod.DeepCopy()
	res, err := m.Mutations.Mutate(ctx, pol, req.Namespace, &pod)
	if err != nil {
		log.Error(err, "Mutating pod")
		mutationsTotal.WithLabelValues("all", "errored").Inc()
		return admission.Allowed("").WithWarnings("pullgate could not read the pod's pull secrets; the pod was not changed")
	}
	for _, c := range res.Changes {
		mutationsTotal.WithLabelValues(string(c.Kind), "applied").Inc()
	}
	for _, w := range res.Warnings {
		mutationsTotal.WithLabelValues(string(w.Kind), "skipped").Inc()
	}
	warnings := mutationWarnings(res.Warnings)
	if len(res.Changes) == 0 {
		return admission.Allowed("").WithWarnings(warnings...)
	}

	// The patch is the difference between the typed pod before and after the mutations, both
	// encoded the same way, rather than between the request's raw object and the mutated
	// pod: that would also "remove" every field this build's Pod type does not know (a newer
	// API server's) and "add" every empty field encoding/json writes, which would break
	// idempotence under reinvocation. The paths it touches exist in the raw object too.
	before, err := json.Marshal(original)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding Pod: %w", err))
	}
	after, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding Pod: %w", err))
	}
	resp := admission.PatchResponseFromRaw(before, after)
	log.V(1).Info("Pod mutated", "changes", len(res.Changes), "warnings", len(res.Warnings))
	return resp.WithWarnings(warnings...)
}

// mutationWarnings turns the mutations not made into admission warnings, each under the API
// server's truncation length, at most maxWarnings with a summary.
func mutationWarnings(ws []mutate.Warning) []string {
	var out []string
	for i, w := range ws {
		if i == maxWarnings-1 && len(ws) > maxWarnings {
			out = append(out, fmt.Sprintf("pullgate: %d more mutation warnings not shown", len(ws)-i))
			break
		}
		s := fmt.Sprintf("pullgate %s:", w.Kind)
		if w.Container != "" {
			s += fmt.Sprintf(" container %q", w.Container)
		}
		if w.Image != "" {
			s += fmt.Sprintf(" (image %q)", truncateRunes(w.Image, 100))
		}
		out = append(out, truncateRunes(s+": "+w.Message, warningRunes))
	}
	return out
}

var (
	mutationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_mutations_total",
		Help: "Mutations of pods, by mutation (mirror, pullSecret, pin; all for a failure before any) and outcome (applied, skipped, errored).",
	}, []string{"mutation", "outcome"})
	mutationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pullgate_mutation_duration_seconds",
		Help:    "Time to answer a mutating admission request.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
)

func init() {
	metrics.Registry.MustRegister(mutationsTotal, mutationDuration)
}
