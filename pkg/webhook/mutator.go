package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

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
	// The context's logger already carries the namespace, name, resource, user and request
	// ID (RequestLogger); adding them again cost every admission a logger copy.
	log := logf.FromContext(ctx)

	// Decoded as the API server decodes (field names match case-sensitively), so the patch's
	// paths name the fields the mutations read.
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, &pod); err != nil {
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

	// The patch takes the request's object to the mutated typed pod. Encoding a typed pod
	// drops the fields this build's Pod type does not know (a newer API server's), which the
	// patch would then remove: such removals, those that re-encoding the unmutated pod
	// would make too, are dropped (as controller-runtime's defaulting webhooks do). The
	// mutations themselves only add and replace.
	before, err := json.Marshal(original)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding Pod: %w", err))
	}
	after, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding Pod: %w", err))
	}
	resp := dropRoundTripRemovals(admission.PatchResponseFromRaw(req.Object.Raw, after), req.Object.Raw, before)
	log.V(1).Info("Pod mutated", "changes", len(res.Changes), "warnings", len(res.Warnings))
	return resp.WithWarnings(warnings...)
}

// dropRoundTripRemovals drops from resp's patch the removals that re-encoding the
// unmutated pod (before) would make to raw: fields the typed Pod does not hold.
func dropRoundTripRemovals(resp admission.Response, raw, before []byte) admission.Response {
	isRemove := func(op jsonpatch.Operation) bool { return op.Operation == "remove" }
	if !resp.Allowed || !slices.ContainsFunc(resp.Patches, isRemove) {
		return resp
	}
	roundTrip, err := jsonpatch.CreatePatch(raw, before)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("comparing the Pod with its encoding: %w", err))
	}
	lost := make(map[string]bool)
	for _, op := range roundTrip {
		if isRemove(op) {
			lost[op.Path] = true
		}
	}
	resp.Patches = slices.DeleteFunc(resp.Patches, func(op jsonpatch.Operation) bool { return isRemove(op) && lost[op.Path] })
	if len(resp.Patches) == 0 {
		resp.PatchType = nil
	}
	return resp
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
