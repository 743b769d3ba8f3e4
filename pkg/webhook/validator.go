package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
)

// ValidatePath is where the validating webhook is served.
const ValidatePath = "/validate"

// Validator is the validating admission handler for Pods and workloads.
type Validator struct {
	Checker *validate.Checker
	Policy  *policy.Store
	// Reader reads namespaces, secrets and service accounts; in the webhook it is the
	// manager's cache.
	Reader client.Reader
	// APIReader, when set, reads a Secret or ServiceAccount again that Reader does not find
	// (pullsecrets.WithAPIReader); in the webhook it is the manager's uncached API reader.
	APIReader client.Reader
	// PolicyConfigMap, when set, is the ConfigMap holding the policy: writes of it that do
	// not parse are denied.
	PolicyConfigMap types.NamespacedName
	// Discreet leaves out of denials and warnings what only pullgate's credentials and
	// network position reveal (validate.Pod.Discreet): set it when the webhook server does not
	// verify that its caller is the API server, since anyone who reaches the Service can then
	// post a forged AdmissionReview naming any namespace's pull secrets.
	Discreet bool
}

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	kind := req.Kind.Kind
	resp := v.handle(ctx, req)
	admissionDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return resp
}

func (v *Validator) handle(ctx context.Context, req admission.Request) admission.Response {
	// The context's logger already carries the namespace, name, resource, user and request
	// ID (RequestLogger); adding them again cost every admission a logger copy.
	log := logf.FromContext(ctx)
	kind := req.Kind.Kind
	pol := v.Policy.Load()
	if req.Kind.Group == "" && kind == "ConfigMap" {
		if v.PolicyConfigMap.Name == "" || (types.NamespacedName{Namespace: req.Namespace, Name: req.Name}) != v.PolicyConfigMap {
			return admission.Allowed("")
		}
		return v.checkPolicyConfigMap(req)
	}

	spec, ok, err := v.specToCheck(req)
	if err != nil {
		admissionsTotal.WithLabelValues(kind, "errored").Inc()
		return admission.Errored(http.StatusBadRequest, err)
	}
	if !ok || spec == nil || pol.NamespaceExempt(req.Namespace) {
		admissionsTotal.WithLabelValues(kind, "skipped").Inc()
		return admission.Allowed("")
	}

	var nsLabels map[string]string
	var ns corev1.Namespace
	switch err := v.Reader.Get(ctx, types.NamespacedName{Name: req.Namespace}, &ns); {
	case err == nil:
		nsLabels = ns.Labels
	case apierrors.IsNotFound(err):
	default:
		log.Error(err, "Reading namespace labels; using the cluster-wide policy")
	}
	if pol.AllOff(nsLabels) {
		// Nothing could be reported (a namespace labelled off): read no secret, ask no
		// registry.
		admissionsTotal.WithLabelValues(kind, "skipped").Inc()
		return admission.Allowed("")
	}

	ctx, cancel := context.WithTimeout(ctx, pol.LookupTimeout.Duration)
	defer cancel()

	var opts []pullsecrets.Option
	if v.APIReader != nil {
		opts = append(opts, pullsecrets.WithAPIReader(v.APIReader))
	}
	keyring, err := pullsecrets.ForPod(ctx, v.Reader, req.Namespace, spec, opts...)
	if err != nil {
		// Not knowing the secrets is a failure of pullgate, not a verdict on the pod.
		log.Error(err, "Reading pull secrets")
		admissionsTotal.WithLabelValues(kind, "errored").Inc()
		return admission.Allowed("").WithWarnings("pullgate could not read pull secrets; images were not checked")
	}
	findings := v.Checker.Check(ctx, pol, validate.Pod{
		Namespace:       req.Namespace,
		NamespaceLabels: nsLabels,
		Spec:            spec,
		Keyring:         keyring,
		// Every kind but Pod carries a template whose pods are created later.
		Template: kind != "Pod",
		// Its pods get the DaemonSet controller's tolerations.
		DaemonSet: req.Kind.Group == "apps" && kind == "DaemonSet",
		Discreet:  v.Discreet,
	})
	for _, f := range findings {
		findingsTotal.WithLabelValues(string(f.Reason), string(f.Severity)).Inc()
	}
	resp := respond(kind, findings)
	decision := "allowed"
	switch {
	case !resp.Allowed:
		decision = "denied"
	case len(resp.Warnings) > 0:
		decision = "warned"
	}
	admissionsTotal.WithLabelValues(kind, decision).Inc()
	log.V(1).Info("Admission decided", "decision", decision, "findings", len(findings))
	return resp
}

// specToCheck returns the pod spec whose pulls an admission request would cause, or ok=false
// when the request causes none pullgate checks.
func (v *Validator) specToCheck(req admission.Request) (*corev1.PodSpec, bool, error) {
	switch req.Operation {
	case admissionv1.Create:
		if req.SubResource != "" {
			return nil, false, nil
		}
		return podSpecOf(req.Kind, req.Object.Raw)
	case admissionv1.Update:
		// Of the subresources, only kubectl debug's adds something to pull.
		if req.SubResource != "" && (req.Kind.Kind != "Pod" || req.SubResource != "ephemeralcontainers") {
			return nil, false, nil
		}
	default:
		return nil, false, nil
	}

	cur, ok, err := podSpecOf(req.Kind, req.Object.Raw)
	if !ok || err != nil {
		return nil, ok, err
	}
	old, _, err := podSpecOf(req.Kind, req.OldObject.Raw)
	if err != nil {
		return nil, true, fmt.Errorf("decoding old object: %w", err)
	}
	if req.Kind.Kind == "Pod" {
		// Only the containers that are new or have a new image will be pulled, with the
		// pod's secrets and placement (by now, often its node). The pod's image volumes
		// cannot change (see changedImages) and were checked when it was created.
		only := cur.DeepCopy()
		only.Volumes = nil
		if req.SubResource == "ephemeralcontainers" {
			only.InitContainers, only.Containers = nil, nil
			only.EphemeralContainers = newEphemeralContainers(old, cur)
		} else {
			only.InitContainers = changedImages(old.InitContainers, cur.InitContainers)
			only.Containers = changedImages(old.Containers, cur.Containers)
			only.EphemeralContainers = nil
		}
		if len(only.InitContainers)+len(only.Containers)+len(only.EphemeralContainers) == 0 {
			return nil, false, nil
		}
		return only, true, nil
	}
	if !pullRelevantChange(old, cur) {
		return nil, false, nil
	}
	return cur, true, nil
}

const (
	// maxListedFindings bounds the denial message however many containers fail.
	maxListedFindings = 20
	// maxWarnings bounds admission warnings; the API server truncates each to 256 runes
	// once they total over 4096, so a few short ones and a summary read best.
	maxWarnings = 8
	// warningRunes keeps each warning under the API server's per-warning truncation.
	warningRunes = 240
)

// respond turns findings into the admission response: denied with one message listing every
// deny-level finding, warn-level findings as warnings.
func respond(kind string, findings []validate.Finding) admission.Response {
	var denies, warns []validate.Finding
	for _, f := range findings {
		if f.Severity == validate.Deny {
			denies = append(denies, f)
		} else {
			warns = append(warns, f)
		}
	}
	warnings := warningsFor(warns)
	if len(denies) == 0 {
		return admission.Allowed("").WithWarnings(warnings...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pullgate: %s would fail to pull its images:", kind)
	for i, f := range denies {
		if i == maxListedFindings {
			fmt.Fprintf(&b, "\n  ... and %d more", len(denies)-i)
			break
		}
		fmt.Fprintf(&b, "\n  - %s: %s. Fix: %s", subject(f), f.Message, f.Fix)
	}
	resp := admission.Denied(b.String()).WithWarnings(warnings...)
	resp.Result.Reason = "PullWouldFail"
	return resp
}

// subject names what a finding is about: `[TagNotFound] container "app" (image "x")`, or
// `volume "models"` for an image volume's.
func subject(f validate.Finding) string {
	s := "[" + string(f.Reason) + "]"
	if f.Container != "" {
		s += fmt.Sprintf(" container %q", f.Container)
	}
	if f.Volume != "" {
		s += fmt.Sprintf(" volume %q", f.Volume)
	}
	if f.Image != "" {
		s += fmt.Sprintf(" (image %q)", truncateRunes(f.Image, 100))
	}
	return s
}

func warningsFor(warns []validate.Finding) []string {
	var out []string
	for i, f := range warns {
		if i == maxWarnings-1 && len(warns) > maxWarnings {
			out = append(out, fmt.Sprintf("pullgate: %d more warnings not shown; fix the ones above and apply again", len(warns)-i))
			break
		}
		out = append(out, truncateRunes(fmt.Sprintf("pullgate %s: %s. Fix: %s", subject(f), f.Message, f.Fix), warningRunes))
	}
	return out
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
