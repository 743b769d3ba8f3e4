package mutate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
)

// OriginalImagesAnnotation is the Pod annotation recording, as a JSON object from container
// name to image, the image each container had before pullgate changed it.
const OriginalImagesAnnotation = "pullgate.io/original-images"

// Registry is what the mutations ask of registries. pkg/registrycache implements it.
type Registry interface {
	// Resolve confirms a reference exists (a HEAD) and returns its descriptor.
	Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error)
	// Platforms returns the platforms the manifest at a digest is built for.
	Platforms(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Platform, error)
}

// Mutator computes the mutations of Pods. Registry and Reader are required.
type Mutator struct {
	Registry Registry
	// Reader reads secrets and service accounts; in the webhook it is the manager's cache.
	Reader client.Reader
	// APIReader, when set, reads a Secret or ServiceAccount again that Reader does not find
	// (pullsecrets.WithAPIReader); in the webhook it is the manager's uncached API reader.
	APIReader client.Reader
	// Nodes returns the cluster's Ready nodes (pkg/nodes keeps them): a mirror must have the
	// platforms of the nodes the pod may run on.
	Nodes func() *validate.Nodes
	// Parallelism bounds how many distinct images of one pod are looked up at once. Zero means 8.
	Parallelism int
	// Discreet words the warnings for a caller that may not be the API server, as
	// validate.Pod.Discreet does the findings: a look-up that failed without a verdict is
	// "lookup failed", never timeout versus unreachable versus an HTTP error.
	Discreet bool
}

// Kind names a mutation.
type Kind string

const (
	// Mirror is the rewrite of an image to a mirror.
	Mirror Kind = "mirror"
	// PullSecret is the addition of a pull secret to imagePullSecrets.
	PullSecret Kind = "pullSecret"
	// Pin is the pinning of a tag to its digest.
	Pin Kind = "pin"
)

// Change is one change Mutate made.
type Change struct {
	Kind Kind
	// Container is the container whose image changed; empty for PullSecret.
	Container string
	// From and To are the image before and after the change; for PullSecret, From is empty
	// and To is the secret added.
	From, To string
}

// Warning is a mutation the policy asks for that was not made, and why. It holds no secret
// data.
type Warning struct {
	Kind      Kind
	Container string
	// Image is the container's image when the mutation was tried.
	Image string
	// Message says why, in one short line.
	Message string
}

// Result is what Mutate did and did not do.
type Result struct {
	Changes  []Change
	Warnings []Warning
}

// Mutate applies the mutations pol asks for to pod, a Pod being created in namespace, in
// place, and reports them. It changes nothing when pol.Mutations.Enabled is false; checking
// exempt namespaces is the caller's job. Registry failures never make it fail: the mutation
// is skipped with a Warning. It returns an error only when the pod's pull secrets or
// ServiceAccount cannot be read, and then leaves pod unchanged.
func (m *Mutator) Mutate(ctx context.Context, pol *policy.Policy, namespace string, pod *corev1.Pod) (Result, error) {
	mp := &pol.Mutations
	if !mp.Enabled || (len(mp.Mirrors) == 0 && len(mp.PullSecrets) == 0 && !mp.PinDigests) {
		return Result{}, nil
	}
	keyring, err := pullsecrets.ForPod(ctx, m.Reader, namespace, &pod.Spec, m.readOptions()...)
	if err != nil {
		return Result{}, fmt.Errorf("reading the pod's pull secrets: %w", err)
	}
	r := &run{m: m, pol: pol, namespace: namespace, pod: pod, keyring: keyring}
	if m.Nodes != nil {
		r.needed = validate.SchedulablePlatforms(m.Nodes(), validate.Placement{Spec: &pod.Spec})
	}
	if len(r.needed) > 0 {
		// A mirror's platforms are read after its look-up: let the look-up fetch the body.
		ctx = lookup.WithPlatformsWanted(ctx)
	}
	before := make(map[string]string)
	for _, s := range r.slots() {
		before[s.name] = *s.image
	}
	// What the mirror rewrite and pinning learn is written into the pod: they ask what
	// the registries say now, not what the cache remembers from minutes ago.
	fresh := lookup.WithFresh(ctx)
	if len(mp.Mirrors) > 0 {
		r.rewriteToMirrors(fresh)
	}
	if len(mp.PullSecrets) > 0 {
		r.injectPullSecrets(ctx)
	}
	if mp.PinDigests {
		r.pinDigests(fresh)
	}
	r.recordOriginals(before)
	return r.result, nil
}

// readOptions are the options pull secrets are read with.
func (m *Mutator) readOptions() []pullsecrets.Option {
	if m.APIReader == nil {
		return nil
	}
	return []pullsecrets.Option{pullsecrets.WithAPIReader(m.APIReader)}
}

// run is the state of one Mutate call.
type run struct {
	m         *Mutator
	pol       *policy.Policy
	namespace string
	pod       *corev1.Pod
	// keyring is the pod's pull secrets as it came in; injected are those added since.
	keyring  *pullsecrets.Keyring
	injected []*pullsecrets.Keyring
	// needed are the platforms of the nodes the pod may be scheduled on; empty when unknown.
	needed []validate.Platform
	result Result

	mu sync.Mutex
	// candidates are the keyrings of the secrets pull-secret rules name, read once.
	candidates map[string]candidate
}

type candidate struct {
	keyring *pullsecrets.Keyring
	err     error
}

// slot is one container's image, of any of the three kinds.
type slot struct {
	name  string
	image *string
	never bool
}

func (r *run) slots() []slot {
	spec := &r.pod.Spec
	var out []slot
	add := func(name string, image *string, p corev1.PullPolicy) {
		out = append(out, slot{name: name, image: image, never: p == corev1.PullNever})
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		add(c.Name, &c.Image, c.ImagePullPolicy)
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		add(c.Name, &c.Image, c.ImagePullPolicy)
	}
	for i := range spec.EphemeralContainers {
		c := &spec.EphemeralContainers[i]
		add(c.Name, &c.Image, c.ImagePullPolicy)
	}
	return out
}

// pulled parses image, which the kubelet will pull, when the policy does not exempt
// it. Images that do not parse are left to the validating webhook to report.
func (r *run) pulled(image string) (name.Reference, bool) {
	ref, err := name.ParseReference(image)
	if err != nil || r.pol.ImageExempt(validate.FamiliarName(ref)) {
		return nil, false
	}
	if r.insecure(ref.Context().RegistryStr()) {
		if insecure, err := name.ParseReference(image, name.Insecure); err == nil {
			ref = insecure
		}
	}
	return ref, true
}

// insecure reports whether the policy lists host as spoken to over plain HTTP; a reference
// to it is then parsed with name.Insecure, which is how the registry client learns it (as
// the validating webhook's checks do).
func (r *run) insecure(host string) bool {
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	return r.pol.InsecureRegistry(host)
}

// outcome is what a step decided for one distinct image: a new image, or why not.
type outcome struct {
	image   string
	warning string
}

// apply runs decide once per distinct pulled image, in parallel, and applies the outcomes
// to every container with that image.
func (r *run) apply(ctx context.Context, kind Kind, decide func(context.Context, name.Reference) outcome) {
	slots := r.slots()
	type job struct {
		image string
		ref   name.Reference
	}
	var jobs []job
	seen := make(map[string]bool)
	for _, s := range slots {
		if s.never || seen[*s.image] {
			continue
		}
		seen[*s.image] = true
		if ref, ok := r.pulled(*s.image); ok {
			jobs = append(jobs, job{*s.image, ref})
		}
	}
	parallelism := r.m.Parallelism
	if parallelism <= 0 {
		parallelism = 8
	}
	outcomes := make(map[string]outcome, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelism)
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := decide(ctx, j.ref)
			mu.Lock()
			outcomes[j.image] = o
			mu.Unlock()
		})
	}
	wg.Wait()

	for _, s := range slots {
		if s.never {
			continue
		}
		o, ok := outcomes[*s.image]
		switch {
		case !ok:
		case o.image != "" && o.image != *s.image:
			r.result.Changes = append(r.result.Changes, Change{Kind: kind, Container: s.name, From: *s.image, To: o.image})
			*s.image = o.image
		case o.warning != "":
			r.warn(kind, s.name, *s.image, o.warning)
		}
	}
}

func (r *run) warn(kind Kind, container, image, msg string) {
	r.result.Warnings = append(r.result.Warnings, Warning{Kind: kind, Container: container, Image: image, Message: msg})
}

// resolve looks ref up as the kubelet would pull it, with the pod's credentials for it
// (including any this run added).
func (r *run) resolve(ctx context.Context, ref name.Reference) (lookup.Descriptor, authn.Authenticator, error) {
	return validate.ResolveAsKubelet(ctx, r.m.Registry, ref, r.credentials(ctx, ref.Context()))
}

// podCredentials are the credentials the pod's pull secrets, including any added by this
// run, hold for repo.
func (r *run) podCredentials(repo name.Repository) []pullsecrets.Credential {
	if len(r.injected) == 0 {
		return r.keyring.Credentials(repo)
	}
	// The added secrets join the pod's in one keyring, as the kubelet merges them.
	return pullsecrets.Join(append([]*pullsecrets.Keyring{r.keyring}, r.injected...)...).Credentials(repo)
}

// credentials are the credentials a pull from repo would use once the mutations are made:
// the pod's own, else those of the first pull-secret rule for repo's registry whose secret
// exists and holds some (injectPullSecrets will add that secret).
func (r *run) credentials(ctx context.Context, repo name.Repository) []pullsecrets.Credential {
	if creds := r.podCredentials(repo); len(creds) > 0 {
		return creds
	}
	for _, rule := range r.pol.Mutations.PullSecrets {
		if !policy.RegistryMatches(rule.Registry, repo.RegistryStr()) {
			continue
		}
		if c := r.candidate(ctx, rule.SecretName); c.err == nil {
			if creds := c.keyring.Credentials(repo); len(creds) > 0 {
				return creds
			}
		}
	}
	return nil
}

// candidate reads the secret a pull-secret rule names, once per run.
func (r *run) candidate(ctx context.Context, secret string) candidate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.candidates[secret]; ok {
		return c
	}
	kr, err := pullsecrets.ForPod(ctx, r.m.Reader, r.namespace, &corev1.PodSpec{
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: secret}},
	}, r.m.readOptions()...)
	c := candidate{keyring: kr, err: err}
	if r.candidates == nil {
		r.candidates = make(map[string]candidate)
	}
	r.candidates[secret] = c
	return c
}

// rewriteToMirrors is step 1.
func (r *run) rewriteToMirrors(ctx context.Context) {
	r.apply(ctx, Mirror, r.mirrorImage)
}

// mirrorImage picks the mirror for ref, or says why none qualifies. A tag is looked up on
// the origin first: when the origin names a digest, a mirror qualifies only if its tag
// names the same one (a mirror that has not caught up would run other bytes than the pod
// asks for). When the origin gives no digest (it fails, is rate limited, refuses the pod's
// credentials, or lacks the tag), the mirror must have the platforms the pod needs.
func (r *run) mirrorImage(ctx context.Context, ref name.Reference) outcome {
	repo := ref.Context()
	rule := ruleFor(r.pol.Mutations.Mirrors, repo)
	if rule == nil || onMirror(r.pol.Mutations.Mirrors, repo) {
		return outcome{}
	}
	var origin *lookup.Descriptor
	if _, ok := ref.(name.Tag); ok {
		if desc, _, err := r.resolve(ctx, ref); err == nil {
			origin = &desc
		}
	}
	var reasons []string
	for _, mirror := range rule.Mirrors {
		target, err := mirrorTarget(mirror, ref, r.insecure)
		if err != nil {
			reasons = append(reasons, mirror+": the image's name is not valid there")
			continue
		}
		if !r.pol.RegistryAllowed(target.Context().RegistryStr()) {
			reasons = append(reasons, mirror+": registry not allowed by the policy")
			continue
		}
		desc, auth, err := r.resolve(ctx, target)
		if err != nil {
			reasons = append(reasons, mirror+": "+r.describe(err))
			continue
		}
		switch {
		case origin != nil && desc.Digest != origin.Digest:
			reasons = append(reasons, fmt.Sprintf("%s: stale, its tag names %s, the origin's %s",
				mirror, shortDigest(desc.Digest), shortDigest(origin.Digest)))
			continue
		case origin == nil:
			if gap := r.platformGap(ctx, ref, target, desc, auth); gap != "" {
				reasons = append(reasons, mirror+": "+gap)
				continue
			}
		}
		return outcome{image: target.String()}
	}
	return outcome{warning: "kept, no mirror qualifies (" + strings.Join(reasons, "; ") + ")"}
}

// shortDigest is the start of a digest, enough to tell two apart in a warning.
func shortDigest(h v1.Hash) string {
	return h.Algorithm + ":" + h.Hex[:min(len(h.Hex), 12)]
}

// ruleFor returns the mirror rule for repo: among the rules for its registry whose
// repositoryPrefix it is in, the one with the longest prefix (the first of equals).
func ruleFor(rules []policy.MirrorRule, repo name.Repository) *policy.MirrorRule {
	var best *policy.MirrorRule
	for i := range rules {
		rule := &rules[i]
		if !policy.RegistryMatches(rule.Registry, repo.RegistryStr()) || !underPath(repo.RepositoryStr(), rule.RepositoryPrefix) {
			continue
		}
		if best == nil || len(rule.RepositoryPrefix) > len(best.RepositoryPrefix) {
			best = rule
		}
	}
	return best
}

// underPath reports whether the repository path repo is prefix or below it; every path is
// below the empty prefix.
func underPath(repo, prefix string) bool {
	return prefix == "" || repo == prefix || strings.HasPrefix(repo, prefix+"/")
}

// onMirror reports whether repo is already on one of the mirrors of any rule: such an image
// is never rewritten again, which keeps the rewrite idempotent even when a mirror lives on the
// registry it mirrors.
func onMirror(rules []policy.MirrorRule, repo name.Repository) bool {
	for _, rule := range rules {
		for _, mirror := range rule.Mirrors {
			host, path, err := policy.SplitMirror(mirror)
			if err != nil {
				continue
			}
			reg, err := name.NewRegistry(host)
			if err != nil {
				continue
			}
			if strings.EqualFold(reg.RegistryStr(), repo.RegistryStr()) && underPath(repo.RepositoryStr(), path) {
				return true
			}
		}
	}
	return false
}

// Target returns the reference ref becomes on mirror (host[:port] or host[:port]/path): the
// mirror's registry, the mirror's path followed by ref's normalised repository path, and
// ref's tag, digest, or both. Short names are normalised as the container runtime does:
// "nginx" on mirror "mirror.internal:5000/dockerhub" is
// mirror.internal:5000/dockerhub/library/nginx:latest.
func Target(mirror, image string) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", fmt.Errorf("parsing image %q: %w", image, err)
	}
	target, err := mirrorTarget(mirror, ref, func(string) bool { return false })
	if err != nil {
		return "", err
	}
	return target.String(), nil
}

// mirrorTarget is Target for a parsed reference; the result is parsed with name.Insecure
// when insecure says so of the mirror's host.
func mirrorTarget(mirror string, ref name.Reference, insecure func(host string) bool) (name.Reference, error) {
	host, path, err := policy.SplitMirror(mirror)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	var opts []name.Option
	if insecure(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	components := []string{ref.Context().RepositoryStr()}
	if path != "" {
		components = slices.Insert(components, 0, path)
	}
	repo := reg.Repo(components...)
	var s string
	switch ref := ref.(type) {
	case name.Tag:
		s = repo.Tag(ref.TagStr()).String()
	case name.Digest:
		if tag := tagOf(ref); tag != "" {
			s, err = withDigest(repo.Tag(tag), ref.DigestStr())
			if err != nil {
				return nil, err
			}
		} else {
			s = repo.Digest(ref.DigestStr()).String()
		}
	default:
		return nil, fmt.Errorf("unexpected reference type %T", ref)
	}
	// Repo does not validate; parsing the result does.
	out, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	return out, nil
}

// tagOf returns the tag a tag@digest reference spells out, or "" when it has none.
// name.Digest keeps only the digest (the runtime pulls by it), but the tag is worth keeping
// for the people reading the pod.
func tagOf(d name.Digest) string {
	base, _, ok := strings.Cut(d.String(), "@")
	if !ok {
		return ""
	}
	t, err := name.NewTag(base)
	if err != nil || !hasExplicitTag(t) {
		return ""
	}
	return t.TagStr()
}

// hasExplicitTag reports whether t was written with its tag, rather than defaulting to latest.
func hasExplicitTag(t name.Tag) bool {
	return strings.HasSuffix(t.String(), ":"+t.TagStr())
}

// withDigest writes t as the user wrote it (with ":latest" added when the tag was implicit)
// followed by @digest: go-containerregistry has no constructor for tag-and-digest
// references, so this is the one place such a name is formatted. The result is parsed back
// to check it.
func withDigest(t name.Tag, digest string) (string, error) {
	s := t.String()
	if !hasExplicitTag(t) {
		s += ":" + t.TagStr()
	}
	s += "@" + digest
	d, err := name.NewDigest(s)
	if err != nil {
		return "", fmt.Errorf("writing %s with digest %s: %w", t, digest, err)
	}
	if d.DigestStr() != digest {
		return "", fmt.Errorf("writing %s with digest %s: got digest %s", t, digest, d.DigestStr())
	}
	return s, nil
}

// platformGap says which platforms the pod needs that the mirror's image (target, found as
// desc) lacks, or "" when it has them all; it is asked only when the origin gave no digest
// to compare with. A digest reference needs no check: the mirror has the same bytes. With
// the pod's nodes unknown the mirror is trusted: nothing says what it must have.
func (r *run) platformGap(ctx context.Context, orig, target name.Reference, desc lookup.Descriptor, auth authn.Authenticator) string {
	if _, ok := orig.(name.Digest); ok || len(r.needed) == 0 {
		return ""
	}
	plats, err := r.m.Registry.Platforms(ctx, target.Context().Digest(desc.Digest.String()), auth)
	if err != nil {
		return "reading its platforms: " + r.describe(err)
	}
	have := validate.ImagePlatforms(plats)
	if len(have) == 0 {
		// An image that declares no platform runs wherever the runtime accepts it.
		return ""
	}
	if missing := minus(r.needed, have); len(missing) > 0 {
		return "lacks " + joinPlatforms(missing)
	}
	return ""
}

func minus(a, b []validate.Platform) []validate.Platform {
	var out []validate.Platform
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

func joinPlatforms(ps []validate.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// describe is the part of a lookup error worth a warning: its kind, never URLs or
// credentials.
func (r *run) describe(err error) string {
	if k := lookup.KindOf(err); k != 0 && (!r.m.Discreet || k.IsVerdict()) {
		return k.String()
	}
	return "lookup failed"
}

// injectPullSecrets is step 2.
func (r *run) injectPullSecrets(ctx context.Context) {
	warned := make(map[string]bool)
	warnOnce := func(s slot, msg string) {
		if !warned[msg] {
			warned[msg] = true
			r.warn(PullSecret, s.name, *s.image, msg)
		}
	}
	for _, s := range r.slots() {
		if s.never {
			continue
		}
		ref, ok := r.pulled(*s.image)
		if !ok {
			continue
		}
		repo := ref.Context()
		if len(r.podCredentials(repo)) > 0 {
			continue
		}
		for _, rule := range r.pol.Mutations.PullSecrets {
			if !policy.RegistryMatches(rule.Registry, repo.RegistryStr()) {
				continue
			}
			c := r.candidate(ctx, rule.SecretName)
			switch {
			case c.err != nil:
				warnOnce(s, fmt.Sprintf("pull secret %q not added: it could not be read", rule.SecretName))
				continue
			case unusable(c.keyring) != nil:
				// A secret that does not exist is the namespace's choice, not a problem; one
				// that exists but cannot be used is worth saying. One that does not parse
				// would fail every pull of the pod.
				if p := unusable(c.keyring); p.Kind != pullsecrets.Missing {
					warnOnce(s, "pull secret not added: "+p.Detail)
				}
				continue
			case len(c.keyring.Credentials(repo)) == 0:
				warnOnce(s, fmt.Sprintf("pull secret %q not added: it has no credential for %s", rule.SecretName, repo.RegistryStr()))
				continue
			}
			r.addPullSecret(rule.SecretName, c.keyring)
			break
		}
	}
}

// unusable returns the problem that makes a pull-secret rule's secret unusable as a whole,
// or nil: missing, of a type the kubelet ignores, or not parseable. A secret with some
// entries skipped can still serve the others.
func unusable(kr *pullsecrets.Keyring) *pullsecrets.Problem {
	for i, p := range kr.Problems {
		switch p.Kind {
		case pullsecrets.Missing, pullsecrets.WrongType, pullsecrets.Unparseable:
			return &kr.Problems[i]
		}
	}
	return nil
}

// addPullSecret appends secret to the pod's imagePullSecrets, after copying the
// ServiceAccount's into the list when the pod listed none (see the package documentation).
func (r *run) addPullSecret(secret string, kr *pullsecrets.Keyring) {
	spec := &r.pod.Spec
	if len(spec.ImagePullSecrets) == 0 && r.keyring.ServiceAccount != "" {
		for _, n := range r.keyring.SecretNames {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
	}
	if !slices.ContainsFunc(spec.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == secret }) {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: secret})
	}
	r.injected = append(r.injected, kr)
	r.result.Changes = append(r.result.Changes, Change{Kind: PullSecret, To: secret})
}

// pinDigests is step 3.
func (r *run) pinDigests(ctx context.Context) {
	r.apply(ctx, Pin, r.pinImage)
}

// pinImage resolves a tag to its digest with the pod's credentials, freshly (ctx is
// lookup.WithFresh): after a push and a rollout restart the new pods must get the new
// digest, not the one the cache held for the tag TTL. When the registry answers definitely
// that the tag cannot be pulled, nothing is said: the validating webhook explains that
// better.
func (r *run) pinImage(ctx context.Context, ref name.Reference) outcome {
	tag, ok := ref.(name.Tag)
	if !ok {
		return outcome{}
	}
	desc, _, err := r.resolve(ctx, tag)
	if err != nil {
		if lookup.KindOf(err).IsVerdict() {
			return outcome{}
		}
		return outcome{warning: "not pinned to a digest: " + r.describe(err)}
	}
	s, err := withDigest(tag, desc.Digest.String())
	if err != nil {
		return outcome{warning: "not pinned to a digest: the pinned name is not valid"}
	}
	return outcome{image: s}
}

// recordOriginals adds every container whose image changed to OriginalImagesAnnotation.
// Entries already there win: they hold the image as first written, from an earlier pass.
func (r *run) recordOriginals(before map[string]string) {
	changed := make(map[string]string)
	for _, s := range r.slots() {
		if orig, ok := before[s.name]; ok && orig != *s.image {
			changed[s.name] = orig
		}
	}
	if len(changed) == 0 {
		return
	}
	originals := make(map[string]string)
	if v, ok := r.pod.Annotations[OriginalImagesAnnotation]; ok {
		if err := json.Unmarshal([]byte(v), &originals); err != nil {
			originals = make(map[string]string) // not ours to keep: replaced
		}
	}
	for c, img := range changed {
		if _, had := originals[c]; !had {
			originals[c] = img
		}
	}
	b, err := json.Marshal(originals)
	if err != nil {
		return // a map of strings always marshals
	}
	if r.pod.Annotations == nil {
		r.pod.Annotations = make(map[string]string)
	}
	r.pod.Annotations[OriginalImagesAnnotation] = string(b)
}
