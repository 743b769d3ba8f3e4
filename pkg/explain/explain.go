package explain

import (
	"context"

	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
)

// The waiting reasons of a container whose image does not pull (the kubelet's
// pkg/kubelet/images/types.go: ErrImagePull, ImagePullBackOff, ErrImageInspect,
// ErrImageNeverPull, ErrInvalidImageName).
var pullReasons = []string{"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "ErrInvalidImageName", "ErrImageInspect"}

// IsPullFailure reports whether a waiting reason is one of a failed pull.
func IsPullFailure(reason string) bool { return slices.Contains(pullReasons, reason) }

// Failing reports whether some container of pod is waiting on a failed pull.
func Failing(pod *corev1.Pod) bool {
	for _, st := range statuses(pod) {
		if st.State.Waiting != nil && IsPullFailure(st.State.Waiting.Reason) {
			return true
		}
	}
	return false
}

func statuses(pod *corev1.Pod) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	out = append(out, pod.Status.InitContainerStatuses...)
	out = append(out, pod.Status.ContainerStatuses...)
	return append(out, pod.Status.EphemeralContainerStatuses...)
}

// Explainer explains pods. Reader reads with the caller's own credentials (a user's
// kubeconfig): what it may not read is reported as a check skipped, never guessed.
type Explainer struct {
	Checker *validate.Checker
	Policy  *policy.Policy
	Reader  client.Reader
	// NodesSkipped, when not empty, says why the nodes could not be read: the platform
	// check is then skipped.
	NodesSkipped string
}

// Report is what Explain found about one pod.
type Report struct {
	Namespace, Pod string
	// Owner is the workload the pod's spec comes from ("deployment/web"), or "pod/NAME".
	Owner string
	Phase corev1.PodPhase
	// Node is the node the pod is on; "" when it is not scheduled.
	Node string
	// Platforms are the platforms of the nodes the pod was checked against ("linux/amd64").
	Platforms []string
	// Skipped says which checks were not made and why.
	Skipped    []string
	Containers []Container
}

// Container is one container (or image volume) of the pod.
type Container struct {
	Name, Image string
	// Waiting is the waiting reason (ErrImagePull, ImagePullBackOff), "" when not waiting.
	Waiting string
	// KubeletMessage is the container status's waiting message.
	KubeletMessage string
	// Events are the kubelet's "Failed" events about the container's image, newest last.
	Events []string
	// Findings are pullgate's findings now.
	Findings []validate.Finding
	// Causes names each cause of the findings, in the seven causes' words.
	Causes []string
	// Fix are commands that fix it.
	Fix []string
	// Verdict says what the kubelet and pullgate agree or disagree on.
	Verdict string
}

// Failing says whether the container's pull failed.
func (c Container) Failing() bool { return IsPullFailure(c.Waiting) }

// credentialReasons are the findings made from the pod's pull secrets.
var credentialReasons = []validate.Reason{validate.PullSecretMissing, validate.PullSecretInvalid, validate.NoCredentials, validate.CredentialsRejected}

// Explain reads pod's status and events and checks its images now.
func (e *Explainer) Explain(ctx context.Context, pod *corev1.Pod) (*Report, error) {
	r := &Report{Namespace: pod.Namespace, Pod: pod.Name, Phase: pod.Status.Phase, Node: pod.Spec.NodeName}
	r.Owner = e.owner(ctx, pod)
	if e.NodesSkipped != "" {
		r.Skipped = append(r.Skipped, "platform: "+e.NodesSkipped)
	} else if e.Checker.Nodes != nil {
		r.Platforms = platformsOf(e.Checker.Nodes(), pod)
	}

	var nsLabels map[string]string
	var ns corev1.Namespace
	if err := e.Reader.Get(ctx, types.NamespacedName{Name: pod.Namespace}, &ns); err == nil {
		nsLabels = ns.Labels
	} else if !apierrors.IsNotFound(err) {
		r.Skipped = append(r.Skipped, fmt.Sprintf("namespace labels: %s; the cluster-wide policy applies", reasonOf(err)))
	}

	keyring, err := pullsecrets.ForPod(ctx, e.Reader, pod.Namespace, &pod.Spec)
	credsKnown := true
	if err != nil {
		if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
			return nil, fmt.Errorf("reading the pull secrets of pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		credsKnown = false
		keyring = nil
		r.Skipped = append(r.Skipped, fmt.Sprintf("pull secrets: %s, so the credentials the kubelet uses are unknown: the pull-secret check was skipped and images were looked up anonymously (a private image is then not checked)", reasonOf(err)))
	}
	findings := e.Checker.Check(ctx, e.Policy, validate.Pod{
		Namespace: pod.Namespace, NamespaceLabels: nsLabels, Spec: &pod.Spec, Keyring: keyring,
	})
	if !credsKnown {
		findings = slices.DeleteFunc(findings, func(f validate.Finding) bool { return slices.Contains(credentialReasons, f.Reason) })
	}

	events, evErr := e.events(ctx, pod)
	if evErr != nil {
		r.Skipped = append(r.Skipped, fmt.Sprintf("events: %s", reasonOf(evErr)))
	}
	byName := map[string]corev1.ContainerStatus{}
	for _, st := range statuses(pod) {
		byName[st.Name] = st
	}
	for _, c := range imagesOf(&pod.Spec) {
		ct := Container{Name: c.name, Image: c.image}
		if st, ok := byName[c.name]; ok && st.State.Waiting != nil {
			ct.Waiting, ct.KubeletMessage = st.State.Waiting.Reason, st.State.Waiting.Message
		}
		ct.Events = events[c.name]
		for _, f := range findings {
			if (c.volume && f.Volume == c.name) || (!c.volume && f.Container == c.name) || (f.Container == "" && f.Volume == "" && c.first) {
				ct.Findings = append(ct.Findings, f)
			}
		}
		e.diagnose(r, &ct, credsKnown)
		r.Containers = append(r.Containers, ct)
	}
	return r, nil
}

// reasonOf says why a read failed, without the object's content.
func reasonOf(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return "your credentials may not read them (forbidden)"
	case apierrors.IsUnauthorized(err):
		return "your credentials were refused (unauthorized)"
	}
	return err.Error()
}

type image struct {
	name, image string
	volume      bool
	// first is the first image of the pod: findings about the pod as a whole go with it.
	first bool
}

func imagesOf(spec *corev1.PodSpec) []image {
	var out []image
	for _, c := range spec.InitContainers {
		out = append(out, image{name: c.Name, image: c.Image})
	}
	for _, c := range spec.Containers {
		out = append(out, image{name: c.Name, image: c.Image})
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, image{name: c.Name, image: c.Image})
	}
	for _, v := range spec.Volumes {
		if v.Image != nil {
			out = append(out, image{name: v.Name, image: v.Image.Reference, volume: true})
		}
	}
	if len(out) > 0 {
		out[0].first = true
	}
	return out
}

// events returns the kubelet's Failed events of the pod by container name (from
// involvedObject.fieldPath "spec.containers{NAME}"), oldest first.
func (e *Explainer) events(ctx context.Context, pod *corev1.Pod) (map[string][]string, error) {
	var list corev1.EventList
	if err := e.Reader.List(ctx, &list, client.InNamespace(pod.Namespace),
		client.MatchingFields{"involvedObject.name": pod.Name, "involvedObject.uid": string(pod.UID)}); err != nil {
		return nil, err
	}
	slices.SortStableFunc(list.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b).Time) })
	out := map[string][]string{}
	for _, ev := range list.Items {
		if ev.Reason != "Failed" || !strings.Contains(ev.Message, "pull") && !strings.Contains(ev.Message, "image") {
			continue
		}
		c := containerOf(ev.InvolvedObject.FieldPath)
		if !slices.Contains(out[c], ev.Message) {
			out[c] = append(out[c], ev.Message)
		}
	}
	return out, nil
}

func eventTime(ev corev1.Event) metav1.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp
	case !ev.EventTime.IsZero():
		return metav1.NewTime(ev.EventTime.Time)
	}
	return ev.CreationTimestamp
}

// containerOf reads NAME from "spec.containers{NAME}" (also initContainers,
// ephemeralContainers), as the kubelet's container reference sets it.
func containerOf(fieldPath string) string {
	_, rest, ok := strings.Cut(fieldPath, "{")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(rest, "}")
}

// owner names the workload whose template the pod comes from, following the controller
// references a user can read: ReplicaSet → Deployment, Job → CronJob.
func (e *Explainer) owner(ctx context.Context, pod *corev1.Pod) string {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "pod/" + pod.Name
	}
	kind, name := strings.ToLower(ref.Kind), ref.Name
	var obj client.Object
	switch ref.Kind {
	case "ReplicaSet":
		obj = &metav1.PartialObjectMetadata{}
		obj.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind("apps/v1", "ReplicaSet"))
	case "Job":
		obj = &metav1.PartialObjectMetadata{}
		obj.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind("batch/v1", "Job"))
	default:
		return kind + "/" + name
	}
	if err := e.Reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, obj); err == nil {
		if up := metav1.GetControllerOf(obj); up != nil && (up.Kind == "Deployment" || up.Kind == "CronJob") {
			return strings.ToLower(up.Kind) + "/" + up.Name
		}
	}
	return kind + "/" + name
}

// platformsOf lists the platforms of the pod's node, or of the nodes it may be scheduled on.
func platformsOf(ns *validate.Nodes, pod *corev1.Pod) []string {
	return ns.CandidatePlatforms(validate.Placement{Spec: &pod.Spec})
}

// diagnose fills in the cause, fix and verdict of a container.
func (e *Explainer) diagnose(r *Report, c *Container, credsKnown bool) {
	var deny []validate.Finding
	registryError := false
	for _, f := range c.Findings {
		if cause := CauseOf(f.Reason); cause != "" && !slices.Contains(c.Causes, cause) {
			c.Causes = append(c.Causes, cause)
		}
		if f.Severity == validate.Deny || registryFailure(f.Reason) {
			deny = append(deny, f)
		}
		if registryFailure(f.Reason) {
			registryError = true
		}
		c.Fix = append(c.Fix, fixCommands(r, c, f)...)
	}
	c.Fix = slices.Compact(c.Fix)
	kubelet := strings.Join(append([]string{c.KubeletMessage}, c.Events...), "\n")
	switch {
	case c.Waiting == "ErrImageNeverPull":
		// The kubelet's image manager fails a pull policy of Never at once when the image is
		// not on the node (pkg/kubelet/images/image_manager.go, EnsureImageExists:
		// ErrImageNeverPull); no registry is asked.
		c.Verdict = "imagePullPolicy is Never and the image is not on the node: the kubelet does not pull it, so no registry is involved."
		c.Fix = append(c.Fix, neverPullFix(r, c))
	case c.Failing() && len(deny) > 0 && !registryError:
		c.Verdict = "pullgate agrees with the kubelet: the pull fails for the cause above."
		if len(c.Fix) > 0 {
			c.Fix = append(c.Fix, fmt.Sprintf("kubectl delete pod %s -n %s   # after the fix, so that the pull is tried again at once", r.Pod, r.Namespace))
		}
	case c.Failing() && registryError:
		c.Verdict = "the registry gives pullgate no answer either (" + registryProblem(c.Findings) + "), so whether the image exists is unknown: the cause above is what both see."
	case c.Failing() && !credsKnown:
		c.Verdict = "pullgate could not check with the pod's credentials (see Skipped): run this again as a user who may read the pod's pull secrets."
	case c.Failing() && nodeSide(kubelet):
		c.Verdict = "DISAGREE: the registry answers pullgate and the image pulls from here, but the node cannot reach it: a node-side problem pullgate cannot see (the node's network or firewall, its DNS, its proxy, its registry mirror configuration in containerd's hosts.toml)."
		c.Causes = append(c.Causes, "Cause 5: Network Issues (on the node)")
		c.Fix = append(c.Fix,
			fmt.Sprintf("kubectl debug node/%s -it --image=busybox -- wget -qO- %s --timeout=5   # from the node's network", nodeOr(r.Node), v2URL(c.Image)))
	case c.Failing():
		c.Verdict = "DISAGREE: the image exists and pulls with the pod's credentials now: the kubelet's failure was transient (the image or tag was pushed since, a secret fixed, or the registry recovered); the next retry should succeed."
		c.Fix = append(c.Fix, fmt.Sprintf("kubectl delete pod %s -n %s   # to retry at once instead of waiting for the back-off", r.Pod, r.Namespace))
	case len(deny) > 0 && !registryError:
		c.Verdict = "the container is not failing now (its image is already on the node, or it was pulled before the change), but its pull would fail if it were pulled again (rescheduled, or with imagePullPolicy Always)."
	}
}

// neverPullFix sets the container's pull policy to IfNotPresent in the pod's workload (a
// strategic merge patch matches containers by name); a bare pod's policy cannot change.
func neverPullFix(r *Report, c *Container) string {
	template := `{"spec":{"template":{"spec":{"containers":[{"name":%q,"imagePullPolicy":"IfNotPresent"}]}}}}`
	switch {
	case strings.HasPrefix(r.Owner, "pod/"):
		return fmt.Sprintf("# recreate pod %s with imagePullPolicy: IfNotPresent for container %q, or load the image onto node %s", r.Pod, c.Name, nodeOr(r.Node))
	case strings.HasPrefix(r.Owner, "cronjob/"):
		template = `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":%q,"imagePullPolicy":"IfNotPresent"}]}}}}}}`
	}
	return fmt.Sprintf("kubectl patch %s -n %s -p '%s'   # or load the image onto node %s", r.Owner, r.Namespace, fmt.Sprintf(template, c.Name), nodeOr(r.Node))
}

func nodeOr(n string) string {
	if n == "" {
		return "NODE"
	}
	return n
}

// nodeSide reports whether the kubelet's message is one of a connection that the node could
// not make (containerd's resolver wraps Go's dial, DNS and TLS errors).
func nodeSide(msg string) bool {
	for _, s := range []string{"dial tcp", "no such host", "i/o timeout", "connection refused", "connection reset", "x509:", "tls:", "TLS handshake", "network is unreachable", "context deadline exceeded", "server misbehaving", "proxyconnect"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// registryProblem names the registry failure among findings.
func registryProblem(fs []validate.Finding) string {
	for _, f := range fs {
		switch f.Reason {
		case validate.RegistryRateLimited:
			return "it is rate limiting"
		case validate.RegistryUnreachable:
			return "it cannot be reached"
		case validate.RegistryError:
			return "it fails"
		}
	}
	return "it fails"
}

func registryFailure(r validate.Reason) bool {
	return r == validate.RegistryUnreachable || r == validate.RegistryRateLimited || r == validate.RegistryError
}

// CauseOf names the cause of a reason in the words of the seven causes of ImagePullBackOff;
// "" for findings that are no cause of a failed pull (UnpinnedTag, RegistryNotAllowed).
func CauseOf(r validate.Reason) string {
	switch r {
	case validate.ImageNotFound, validate.InvalidReference:
		return "Cause 1: Image Does Not Exist"
	case validate.PullSecretMissing, validate.PullSecretInvalid, validate.NoCredentials, validate.CredentialsRejected, validate.NodeCredentials:
		return "Cause 2: Private Registry Authentication"
	case validate.TagNotFound:
		return "Cause 3: Invalid Image Tag"
	case validate.DigestNotFound:
		return "Cause 4: Digest Mismatch"
	case validate.RegistryUnreachable, validate.RegistryError:
		return "Cause 5: Network Issues"
	case validate.RegistryRateLimited:
		return "Cause 6: Rate Limiting (Docker Hub)"
	case validate.PlatformMismatch, validate.UnsupportedManifest:
		return "Cause 7: Image Architecture Mismatch"
	}
	return ""
}

// fixCommands are the commands that fix one finding.
func fixCommands(r *Report, c *Container, f validate.Finding) []string {
	ns := r.Namespace
	ref, err := name.ParseReference(c.Image)
	host, repo := "REGISTRY", "IMAGE"
	if err == nil {
		host, repo = ref.Context().RegistryStr(), ref.Context().Name()
	}
	setImage := func(what string) string {
		return fmt.Sprintf("kubectl set image %s %s=%s -n %s   # %s", r.Owner, c.Name, what, ns, f.Fix)
	}
	secret := func(n string) string {
		return fmt.Sprintf("kubectl create secret docker-registry %s --docker-server=%s --docker-username=USER --docker-password=PASSWORD -n %s", n, host, ns)
	}
	switch f.Reason {
	case validate.ImageNotFound, validate.InvalidReference:
		return []string{setImage("CORRECT-IMAGE")}
	case validate.TagNotFound:
		return []string{setImage(repo + ":EXISTING-TAG")}
	case validate.DigestNotFound:
		return []string{setImage(repo + "@sha256:EXISTING-DIGEST")}
	case validate.NoCredentials, validate.PullSecretMissing:
		n := "regcred"
		if f.Reason == validate.PullSecretMissing {
			if s := quoted(f.Fix); s != "" {
				n = s
			}
			return []string{secret(n)}
		}
		sa := "default"
		return []string{secret(n),
			fmt.Sprintf(`kubectl patch serviceaccount %s -n %s -p '{"imagePullSecrets":[{"name":"%s"}]}'   # or list it under the pod template's imagePullSecrets`, sa, ns, n)}
	case validate.CredentialsRejected, validate.PullSecretInvalid:
		n := quoted(f.Message)
		if n == "" {
			n = "SECRET"
		}
		return []string{fmt.Sprintf("kubectl delete secret %s -n %s && %s   # with credentials the registry accepts", n, ns, secret(n))}
	case validate.RegistryUnreachable, validate.RegistryError:
		return []string{fmt.Sprintf("kubectl run pullgate-net-test --rm -it --restart=Never --image=busybox -n %s -- wget -qO- %s --timeout=5", ns, v2URL(c.Image))}
	case validate.RegistryRateLimited:
		return []string{fmt.Sprintf("kubectl create secret docker-registry dockerhub-cred --docker-server=docker.io --docker-username=USER --docker-password=PASSWORD -n %s   # authenticated pulls, or use a mirror", ns)}
	case validate.PlatformMismatch, validate.UnsupportedManifest:
		return []string{"kubectl get nodes -L kubernetes.io/os,kubernetes.io/arch   # then build the image for them, or set the pod's nodeSelector kubernetes.io/arch to one it is built for",
			setImage("MULTI-ARCH-IMAGE")}
	}
	if f.Fix != "" {
		return []string{"# " + f.Fix}
	}
	return nil
}

// quoted returns the first "double-quoted" word of s (the secret a finding names).
func quoted(s string) string {
	_, rest, ok := strings.Cut(s, `"`)
	if !ok {
		return ""
	}
	q, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return ""
	}
	return q
}

// v2URL is the registry's API root as the node's containerd asks it: over HTTPS (it falls back
// to HTTP only for hosts configured so in hosts.toml, which pullgate cannot see), whatever
// go-containerregistry's own default for loopback hosts.
func v2URL(image string) string {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "https://REGISTRY/v2/"
	}
	return "https://" + ref.Context().RegistryStr() + "/v2/"
}
