package validate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	lru "github.com/hashicorp/golang-lru/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
)

// Registry is what the checks ask of registries. pkg/registrycache implements it.
type Registry interface {
	// Resolve confirms a reference exists (a HEAD) and returns its descriptor.
	Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error)
	// Platforms returns the platforms the manifest at a digest is built for.
	Platforms(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Platform, error)
	// Children returns the manifests the index at a digest lists, in its order, entries
	// without a platform included; nothing for a manifest that is not an index.
	Children(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Descriptor, error)
	// Tags lists at most limit tags of a repository.
	Tags(ctx context.Context, repo name.Repository, auth authn.Authenticator, limit int) ([]string, error)
}

// CredentialProviders is what the checks ask of the nodes' credential provider plugins.
// pkg/credentialprovider implements it.
type CredentialProviders interface {
	// NodeCredentials returns the plugins' credentials for repo for a pod in namespace
	// running as serviceAccount, in the kubelet's order, and an error when a plugin that
	// should have answered could not (lookup.ErrNotCached under lookup.WithCacheOnly).
	NodeCredentials(ctx context.Context, repo name.Repository, namespace, serviceAccount string) ([]pullsecrets.Credential, error)
}

// Pod is what the checks need to know about one pod (or pod template).
type Pod struct {
	Namespace       string
	NamespaceLabels map[string]string
	Spec            *corev1.PodSpec
	// Keyring holds the pull secrets the kubelet would use; nil means none.
	Keyring *pullsecrets.Keyring
	// Template says Spec is a workload's pod template (Deployment, Job, ...), whose pods are
	// created later, rather than a Pod's own spec, whose pulls start at once. A pull secret
	// or ServiceAccount missing for a template follows the policy's
	// onMissingSecretInTemplate; a missing ServiceAccount is only reported for a template
	// (a Pod naming one that does not exist is refused by the ServiceAccount admission
	// plugin before it gets here).
	Template bool
	// DaemonSet says Spec is a DaemonSet's pod template: its pods get the DaemonSet
	// controller's tolerations, so they may land on nodes other pods may not.
	DaemonSet bool
	// Discreet says the caller may not be the API server (pullgate verifies no client
	// certificate): findings then leave out what only pullgate's credentials and network
	// position reveal, so that a forged AdmissionReview learns no more than the verdict. The
	// tags suggested for a missing tag are left out when the listing used a pull secret (an
	// anonymous listing is anyone's to make), and the cause of a registry failure (refused,
	// timeout, DNS, an HTTP status) is left out of every message, so a stranger cannot tell
	// what listens at an internal address.
	Discreet bool
}

// Checker runs the checks. Its zero value is not usable: Registry is required.
type Checker struct {
	Registry Registry
	// Nodes returns the cluster's Ready nodes (pkg/nodes keeps them). The platform check
	// and the images already on nodes look at the nodes the pod may run on; when Nodes is
	// nil or that is none, the platform check says nothing: there is nothing to compare with.
	Nodes func() *Nodes
	// Parallelism bounds how many distinct images of one pod are looked up at once. Zero means 8.
	Parallelism int
	// NodeCredentials gives the credentials the nodes' kubelet credential provider plugins
	// would give (pkg/credentialprovider); nil: the nodes have none that pullgate runs.
	NodeCredentials CredentialProviders
	// RegistryHosts is the nodes' containerd registry configuration (hosts.toml): a look-up
	// tries the mirrors it names first, as containerd does. Nil: none.
	RegistryHosts RegistryHosts

	parsedOnce sync.Once
	parsed     *lru.Cache[string, parsedRef]
}

// parsedRef is a parse of an image string, kept because the same few images are admitted
// over and over and parsing was a third of a warm check's CPU time.
type parsedRef struct {
	ref name.Reference
	err error
	// familiar is familiarName(ref), the name status.images lists it by.
	familiar string
}

// parse is name.ParseReference, memoised in a bounded LRU.
func (c *Checker) parse(image string) (name.Reference, error) {
	c.parsedOnce.Do(func() { c.parsed, _ = lru.New[string, parsedRef](4096) })
	if p, ok := c.parsed.Get(image); ok {
		return p.ref, p.err
	}
	ref, err := name.ParseReference(image)
	p := parsedRef{ref: ref, err: err}
	if err == nil {
		p.familiar = familiarName(ref)
	}
	c.parsed.Add(image, p)
	return ref, err
}

// familiar is familiarName(ref) for the image string ref was parsed from, memoised.
func (c *Checker) familiar(image string, ref name.Reference) string {
	if p, ok := c.parsed.Get(image); ok && p.familiar != "" {
		return p.familiar
	}
	return familiarName(ref)
}

// tagListLimit bounds the tag listing behind "did you mean" suggestions.
const tagListLimit = 1000

// container is one image the kubelet pulls for a pod, as the checks see it: a container's
// of any of the three kinds, or an image volume's.
type container struct {
	name, image string
	// policy is the pull policy, defaulted as the API server does.
	policy corev1.PullPolicy
	// volume says name is an image volume's (spec.volumes[].image), not a container's.
	volume bool
}

// containersOf lists every image the kubelet pulls for the containers of spec: theirs, of
// all three kinds, and those of the image volumes they mount.
//
// Image volumes are pulled like container images: the kubelet's getImageVolumes
// (pkg/kubelet/kuberuntime/kuberuntime_manager.go) calls the same
// "m.imagePuller.EnsureImageExists(ctx, objectRef, pod, volume.Image.Reference, pullSecrets,
// podSandboxConfig, podRuntimeHandler, volume.Image.PullPolicy)", with the pod's pull
// secrets, before it starts any container. A failed pull fails only the containers that
// mount the volume (toKubeContainerImageVolumes walks "container.VolumeMounts"), so a volume
// no container of spec mounts is left out: its pull failing stops nothing. An empty pull
// policy (a template the API server has not defaulted) is not Never: SetDefaults_Volume
// (pkg/apis/core/v1/defaults.go) makes it Always for :latest, IfNotPresent otherwise.
func containersOf(spec *corev1.PodSpec) []container {
	var out []container
	var mounted map[string]bool
	add := func(name, image string, policy corev1.PullPolicy, mounts []corev1.VolumeMount) {
		out = append(out, container{name: name, image: image, policy: policy})
		if len(spec.Volumes) == 0 {
			return
		}
		for _, m := range mounts {
			if mounted == nil {
				mounted = make(map[string]bool)
			}
			mounted[m.Name] = true
		}
	}
	for _, c := range spec.InitContainers {
		add(c.Name, c.Image, c.ImagePullPolicy, c.VolumeMounts)
	}
	for _, c := range spec.Containers {
		add(c.Name, c.Image, c.ImagePullPolicy, c.VolumeMounts)
	}
	for _, c := range spec.EphemeralContainers {
		add(c.Name, c.Image, c.ImagePullPolicy, c.VolumeMounts)
	}
	for _, v := range spec.Volumes {
		if v.Image == nil || !mounted[v.Name] {
			continue
		}
		out = append(out, container{name: v.Name, image: v.Image.Reference, policy: v.Image.PullPolicy, volume: true})
	}
	return out
}

// Check returns every finding for pod under pol, with severities decided by the policy;
// findings whose check is off are left out.
func (c *Checker) Check(ctx context.Context, pol *policy.Policy, pod Pod) []Finding {
	if pol.AllOff(pod.NamespaceLabels) {
		return nil
	}
	if pod.Keyring == nil {
		pod.Keyring = &pullsecrets.Keyring{}
	}
	r := run{checker: c, pol: pol, pod: pod}
	if c.Nodes != nil {
		r.candidates = c.Nodes().candidates(Placement{Spec: pod.Spec, DaemonSet: pod.DaemonSet})
		if pol.ModeFor(policy.CheckPlatform, pod.NamespaceLabels) != policy.Off {
			r.targets = r.candidates.targets()
		}
	}
	// A look-up can only end in a finding of these checks, or in a registry error that
	// says one of them could not be made: with all of them off, none is made.
	r.lookups = len(r.targets) > 0 ||
		pol.ModeFor(policy.CheckExistence, pod.NamespaceLabels) != policy.Off ||
		pol.ModeFor(policy.CheckPullSecrets, pod.NamespaceLabels) != policy.Off

	// Containers that share an image (and pull policy) share one look-up.
	containers := containersOf(pod.Spec)
	for i := range containers {
		if containers[i].policy == "" {
			containers[i].policy = c.defaultPullPolicy(containers[i].image)
		}
	}
	type key struct {
		image  string
		policy corev1.PullPolicy
	}
	results := make(map[key][]Finding)
	var order []key
	for _, ctr := range containers {
		k := key{ctr.image, ctr.policy}
		if _, ok := results[k]; !ok {
			results[k] = nil
			order = append(order, k)
		}
	}
	if len(r.targets) > 0 {
		// A first look-up can then fetch the manifest instead of a HEAD: one round trip
		// fewer for a new image, none for a multi-arch one's platforms.
		ctx = lookup.WithPlatformsWanted(ctx)
	}
	// Images the cache answers are checked here, one after the other: a goroutine costs
	// more than such a check. Those that need the registry are looked up in parallel.
	cacheOnly := lookup.WithCacheOnly(ctx)
	var uncached []key
	for _, k := range order {
		fs, ok := r.checkImage(cacheOnly, k.image, k.policy)
		if !ok {
			uncached = append(uncached, k)
			continue
		}
		results[k] = fs
	}
	parallelism := c.Parallelism
	if parallelism <= 0 {
		parallelism = 8
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, k := range uncached {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fs, _ := r.checkImage(ctx, k.image, k.policy)
			mu.Lock()
			results[k] = fs
			mu.Unlock()
		}()
	}
	wg.Wait()

	var findings []Finding
	for _, ctr := range containers {
		for _, f := range results[key{ctr.image, ctr.policy}] {
			if ctr.volume {
				f.Volume = ctr.name
			} else {
				f.Container = ctr.name
			}
			findings = append(findings, f)
		}
	}
	return append(findings, r.unusedSecretProblems()...)
}

// run is the state of one Check call.
type run struct {
	checker *Checker
	pol     *policy.Policy
	pod     Pod
	// candidates are the Ready nodes the pod may run on; targets their kinds (platform
	// and runtime), empty when the platform check is off.
	candidates candidates
	targets    []countedTarget
	// lookups is false when no finding could come of asking a registry: no look-up is made.
	lookups bool

	mu sync.Mutex
	// citedSecrets are secrets a deny-level finding already names.
	citedSecrets map[string]bool
}

// finding builds a finding with the severity the policy gives it, or reports false when the
// policy turns its check off. natural is the severity in enforce mode.
func (r *run) finding(reason Reason, natural Severity, image, msg, fix string) (Finding, bool) {
	var mode policy.Mode
	if reason == PullSecretMissing && r.pod.Template {
		mode = r.pol.MissingSecretInTemplateMode(r.pod.NamespaceLabels)
	} else if check := reason.check(); check != "" {
		mode = r.pol.ModeFor(check, r.pod.NamespaceLabels)
	} else {
		mode = r.pol.RegistryErrorMode(r.pod.NamespaceLabels)
	}
	f := Finding{Reason: reason, Image: image, Severity: natural, Message: msg, Fix: fix}
	switch mode {
	case policy.Off:
		return f, false
	case policy.Warn:
		f.Severity = Warn
	}
	return f, true
}

// checkImage returns the findings for image. Under lookup.WithCacheOnly it reports false,
// and no findings, when the answer needs the registry (or explaining a failure does).
func (r *run) checkImage(ctx context.Context, image string, pullPolicy corev1.PullPolicy) ([]Finding, bool) {
	var out []Finding
	add := func(reason Reason, natural Severity, msg, fix string) {
		if f, ok := r.finding(reason, natural, image, msg, fix); ok {
			out = append(out, f)
		}
	}

	ref, err := r.checker.parse(image)
	if err != nil {
		add(InvalidReference, Deny, fmt.Sprintf("image %q is not a valid reference", truncate(image, 80)),
			"write it as [registry/]repository[:tag][@sha256:digest], lower case")
		return out, true
	}
	if len(r.pol.ExemptImages) > 0 && r.pol.ImageExempt(familiarName(ref)) {
		return nil, true
	}
	if r.pol.InsecureRegistry(registryHost(ref.Context())) {
		// The operator says this registry speaks plain HTTP (as the nodes' containerd is
		// configured to): the registry client speaks it, after HTTPS, only to references
		// parsed with name.Insecure, and to localhost, as containerd does by default.
		if insecure, err := name.ParseReference(image, name.Insecure); err == nil {
			ref = insecure
		}
	}
	repo := ref.Context()
	host := registryHost(repo)
	if !r.pol.RegistryAllowed(host) {
		add(RegistryNotAllowed, Deny, fmt.Sprintf("registry %s is not allowed by the cluster's pullgate policy", host),
			"use an image from an allowed registry (ask your cluster operator which)")
		return out, true
	}
	if tag, ok := ref.(name.Tag); ok && tag.TagStr() == name.DefaultTag {
		add(UnpinnedTag, Deny, "image has no tag or uses :latest, so nodes may run different versions",
			"pin a version tag or a digest (image:1.2.3 or image@sha256:…)")
	}
	if pullPolicy == corev1.PullNever || !r.lookups {
		// Never: the kubelet will not pull, the image must already be on the node.
		// !lookups: nothing a look-up could find would be reported.
		return out, true
	}
	var onNodes presence
	if pullPolicy == corev1.PullIfNotPresent && r.candidates.total > 0 {
		onNodes = r.candidates.presence(r.checker.familiar(image, ref))
	}
	if broken := r.pod.Keyring.Unparseable(); len(broken) > 0 {
		// The kubelet builds no keyring for the pod and fails the pull before it asks any
		// registry (pkg/kubelet/images/image_manager.go, makeLookupPullCredentialsFunc:
		// "keyring, err := credentialprovidersecrets.MakeDockerKeyring(...); if err != nil
		// { return nil, err }"), whatever the image — unless the image is on the node and
		// needs no pull (presence softens it).
		var fs []Finding
		for _, p := range broken {
			r.cite(problemKey(p))
			if f, ok := r.finding(PullSecretInvalid, Deny, image, p.Detail+", so the kubelet pulls none of the pod's images",
				fmt.Sprintf("fix the docker config in secret %q (kubectl create secret docker-registry %s ... --dry-run=client -o yaml | kubectl apply -f -) or remove it from imagePullSecrets",
					p.Secret, p.Secret)); ok {
				fs = append(fs, f)
			}
		}
		return append(out, onNodes.soften(fs)...), true
	}
	desc, auth, from, err := r.resolveAny(ctx, ref)
	if err != nil && lookup.CacheOnly(ctx) && needsRegistry(err) {
		return nil, false
	}
	if err != nil {
		return append(out, onNodes.soften(r.lookupFindings(ctx, ref, image, auth, err))...), true
	}
	// An image on the nodes is no more runnable there than in the registry: the platform
	// check stands whatever the nodes list.
	if len(r.targets) > 0 {
		fs, ok := r.checkPlatform(ctx, from, image, desc, auth)
		if !ok {
			return nil, false
		}
		out = append(out, fs...)
	}
	return out, true
}

// resolveAny looks ref up where the node's containerd would: through the nodes' mirrors
// when RegistryHosts is set, else at its registry. It returns the reference that answered.
func (r *run) resolveAny(ctx context.Context, ref name.Reference) (lookup.Descriptor, authn.Authenticator, name.Reference, error) {
	if r.checker.RegistryHosts == nil {
		desc, auth, err := r.resolve(ctx, ref)
		return desc, auth, ref, err
	}
	return r.resolveThroughMirrors(ctx, ref, func() (lookup.Descriptor, authn.Authenticator, error) { return r.resolve(ctx, ref) })
}

// resolve looks ref up with the credentials the pod's keyring holds for it, then those of
// the nodes' credential provider plugins: the kubelet's keyring is the pod's pull secrets
// first, then the node's providers (pkg/kubelet/images/image_manager.go,
// makeLookupPullCredentialsFunc: "credentialprovidersecrets.MakeDockerKeyring(pullSecrets,
// credentialprovider.UnionDockerKeyring{m.nodeKeyring, externalCredentialProviderKeyring})",
// and MakeDockerKeyring returns "UnionDockerKeyring{providerFromSecrets, defaultKeyring}").
// A plugin that failed leaves the look-up undecided unless another credential was accepted:
// the kubelet would have pulled with what it returned, which pullgate cannot know.
func (r *run) resolve(ctx context.Context, ref name.Reference) (lookup.Descriptor, authn.Authenticator, error) {
	creds := r.pod.Keyring.Credentials(ref.Context())
	var pluginErr error
	if nc := r.checker.NodeCredentials; nc != nil {
		pcs, err := nc.NodeCredentials(ctx, ref.Context(), r.pod.Namespace, r.pod.Spec.ServiceAccountName)
		if errors.Is(err, lookup.ErrNotCached) {
			return lookup.Descriptor{}, authn.Anonymous, err
		}
		creds = append(creds, pcs...)
		pluginErr = err
	}
	desc, auth, err := ResolveAsKubelet(ctx, r.checker.Registry, ref, creds)
	if err != nil && pluginErr != nil && !(lookup.CacheOnly(ctx) && needsRegistry(err)) {
		return desc, auth, &NodeCredentialsError{Plugin: pluginErr, Lookup: err}
	}
	return desc, auth, err
}

// NodeCredentialsError is a look-up that failed while a node credential provider plugin
// that matched the image could not give its credentials. It is never a verdict.
type NodeCredentialsError struct {
	// Plugin is the plugin's failure; Lookup the look-up's with the other credentials.
	Plugin, Lookup error
}

func (e *NodeCredentialsError) Error() string {
	return fmt.Sprintf("%v (and without its credentials: %v)", e.Plugin, e.Lookup)
}
func (e *NodeCredentialsError) Unwrap() error { return e.Plugin }

// Resolver is the part of Registry that confirms a reference exists.
type Resolver interface {
	Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error)
}

// ResolveAsKubelet looks ref up as the kubelet would pull it: with each credential in
// order until one is accepted, on any error, and without credentials only when there are
// none (pkg/kubelet/kuberuntime/kuberuntime_image.go, PullImage: "for _, currentCreds :=
// range credentials { ... if err == nil { return imageRef, &currentCreds, nil };
// pullErrs = append(pullErrs, err) }", then an aggregate of every error; no anonymous
// attempt after them). It returns the descriptor and authenticator of the first accepted
// credential.
//
// When every credential fails, the error stands for the whole pull, and is a verdict only
// when every answer was one:
//   - any answer that is not a verdict (timeout, unreachable, 429, 5xx, not cached) is
//     returned as it is: the pull might have worked with that credential, so a registry
//     failure never becomes a denial;
//   - else a "not found" (repository or manifest unknown) is returned, with the
//     authenticator that got it, since that credential was let in to look;
//   - else (every credential refused, 401/403) a *RejectedError.
func ResolveAsKubelet(ctx context.Context, reg Resolver, ref name.Reference, creds []pullsecrets.Credential) (lookup.Descriptor, authn.Authenticator, error) {
	if len(creds) == 0 {
		desc, err := reg.Resolve(ctx, ref, authn.Anonymous)
		return desc, authn.Anonymous, err
	}
	var (
		undecided, notFound         error
		undecidedAuth, notFoundAuth authn.Authenticator
		rejected                    = &RejectedError{Anonymous: true}
	)
	for _, cred := range creds {
		desc, err := reg.Resolve(ctx, ref, cred.Auth)
		if err == nil {
			return desc, cred.Auth, nil
		}
		switch kind := lookup.KindOf(err); {
		case !kind.IsVerdict():
			if undecided == nil {
				undecided, undecidedAuth = err, cred.Auth
			}
		case kind == lookup.KindRepositoryUnknown || kind == lookup.KindManifestUnknown:
			if notFound == nil {
				notFound, notFoundAuth = err, cred.Auth
			}
		case cred.Provider != "":
			rejected.Err = err
			if !slices.Contains(rejected.Providers, cred.Provider) {
				rejected.Providers = append(rejected.Providers, cred.Provider)
			}
			rejected.Anonymous = rejected.Anonymous && cred.Auth == authn.Anonymous
		default:
			rejected.Secret, rejected.Err = cred.Secret, err
			if !slices.Contains(rejected.Secrets, cred.Secret) {
				rejected.Secrets = append(rejected.Secrets, cred.Secret)
			}
			rejected.Anonymous = rejected.Anonymous && cred.Auth == authn.Anonymous
		}
	}
	switch {
	case undecided != nil:
		return lookup.Descriptor{}, undecidedAuth, undecided
	case notFound != nil:
		return lookup.Descriptor{}, notFoundAuth, notFound
	}
	return lookup.Descriptor{}, creds[len(creds)-1].Auth, rejected
}

// RejectedError is the registry refusing (401/403) every credential the pod's pull secrets
// hold for an image.
type RejectedError struct {
	// Secret is the secret of the last credential refused, the kubelet's last attempt.
	Secret string
	// Secrets are the secrets whose credentials were refused, in the order tried, each once.
	Secrets []string
	// Providers are the node credential provider plugins whose credentials were refused.
	Providers []string
	// Anonymous says that every refused credential was an entry without a username, which
	// the container runtime sends no credentials for.
	Anonymous bool
	// Err is the last refusal.
	Err error
}

func (e *RejectedError) Error() string {
	if len(e.Secrets) == 0 && len(e.Providers) > 0 {
		return fmt.Sprintf("credential provider %q: %v", e.Providers[len(e.Providers)-1], e.Err)
	}
	return fmt.Sprintf("secret %q: %v", e.Secret, e.Err)
}
func (e *RejectedError) Unwrap() error { return e.Err }

func (r *run) lookupFindings(ctx context.Context, ref name.Reference, image string, auth authn.Authenticator, err error) []Finding {
	var out []Finding
	add := func(reason Reason, natural Severity, msg, fix string) {
		if f, ok := r.finding(reason, natural, image, msg, fix); ok {
			out = append(out, f)
		}
	}
	repo := ref.Context()
	host := registryHost(repo)
	repoName := familiarRepo(repo)

	var me *MirrorsError
	if errors.As(err, &me) {
		add(RegistryError, Deny, fmt.Sprintf("registry %s could not be checked through the nodes' mirrors: %s", host, truncate(me.Error(), 160)),
			"check the nodes' containerd hosts.toml for "+host+" and that pullgate can reach its mirrors")
		return out
	}
	var nce *NodeCredentialsError
	if errors.As(err, &nce) {
		// Not a verdict: the node's plugin would have given credentials pullgate did not get.
		add(RegistryError, Deny, fmt.Sprintf("registry %s could not be checked with the node's credentials: %s", host, truncate(nce.Plugin.Error(), 120)),
			"check the credential provider plugin pullgate runs (--image-credential-provider-config) and its identity")
		return out
	}
	var rejected *RejectedError
	if errors.As(err, &rejected) && len(rejected.Secrets) == 0 && len(rejected.Providers) > 0 {
		// pullgate runs the plugin with its own identity (its ServiceAccount's IRSA role or
		// workload identity), which may be granted less than the nodes': not a denial.
		if f, ok := r.finding(NodeCredentials, Warn, image,
			fmt.Sprintf("registry %s refused the credentials of credential provider %q as pullgate runs it; the node's own identity may differ", host, rejected.Providers[len(rejected.Providers)-1]),
			fmt.Sprintf("grant the nodes (and pullgate's identity) pull access to %s", repoName)); ok {
			out = append(out, f)
		}
		return out
	}
	if errors.As(err, &rejected) {
		secrets := secretsPhrase(rejected.Secrets)
		renew := rejected.Secret
		if len(rejected.Secrets) > 1 {
			renew = "NAME"
		}
		recreate := fmt.Sprintf("kubectl create secret docker-registry %s --docker-server=%s --docker-username=USER --docker-password=TOKEN -n %s --dry-run=client -o yaml | kubectl apply -f -",
			renew, host, r.pod.Namespace)
		switch {
		case rejected.Anonymous:
			// The entries matched, but without a username the runtime sent nothing.
			add(PullSecretInvalid, Deny,
				fmt.Sprintf("registry %s needs credentials and the entry for it in %s has no username, so the node pulls anonymously", host, secrets),
				"give it a username and password or auth (the kubelet does not read identity tokens): "+recreate)
		case lookup.KindOf(err) == lookup.KindDenied:
			add(CredentialsRejected, Deny,
				fmt.Sprintf("the credentials in %s may not pull %s", secrets, repoName),
				fmt.Sprintf("grant that account pull access to %s, or use a secret whose account has it", repoName))
		default:
			add(CredentialsRejected, Deny,
				fmt.Sprintf("registry %s rejected the credentials in %s", host, secrets),
				"renew the secret: "+recreate)
		}
		for _, s := range rejected.Secrets {
			r.cite(s)
		}
		return out
	}

	switch kind := lookup.KindOf(err); kind {
	case lookup.KindUnauthorized, lookup.KindDenied:
		out = append(out, r.noCredentialFindings(repo, image, host, repoName)...)
	case lookup.KindRepositoryUnknown:
		add(ImageNotFound, Deny, fmt.Sprintf("repository %s does not exist", repoName),
			"check the image name and registry host for typos, or push the image first")
	case lookup.KindManifestUnknown:
		out = append(out, r.manifestUnknownFindings(ctx, ref, image, auth)...)
	case lookup.KindRateLimited:
		add(RegistryRateLimited, Deny, fmt.Sprintf("registry %s is rate limiting pulls (HTTP 429)", host),
			"use a registry mirror or authenticated pulls (a pull secret raises the limit)")
	case lookup.KindTimeout, lookup.KindUnreachable:
		add(RegistryUnreachable, Deny, fmt.Sprintf("registry %s could not be reached%s", host, r.because(err)),
			"check the registry host name, DNS and firewall rules from the cluster's nodes")
	case lookup.KindBudgetSpent:
		add(RegistryError, Deny, fmt.Sprintf("registry %s was not asked: the re-check's request budget for it is spent", host),
			"it is asked again at the next re-check; raise the budget if this persists")
	case lookup.KindBlocked:
		add(RegistryError, Deny, fmt.Sprintf("registry %s resolves to an address pullgate's policy does not let it dial", host),
			"ask the operator to allow it (registries.allowPrivateNetworks / allowLoopback) or use a public registry")
	default:
		add(RegistryError, Deny, fmt.Sprintf("registry %s failed%s", host, r.because(err)),
			"retry later; if it persists, check the registry's health")
	}
	return out
}

// secretsPhrase names pull secrets in a message: `pull secret "a"`, `pull secrets "a", "b"`.
func secretsPhrase(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	if len(quoted) == 1 {
		return "pull secret " + quoted[0]
	}
	return "pull secrets " + strings.Join(quoted, ", ")
}

// noCredentialFindings explains a pull without credentials that the registry refused.
func (r *run) noCredentialFindings(repo name.Repository, image, host, repoName string) []Finding {
	var out []Finding
	add := func(reason Reason, msg, fix string) {
		if f, ok := r.finding(reason, Deny, image, msg, fix); ok {
			out = append(out, f)
		}
	}
	if r.nodeAuthenticated(repo) {
		// The nodes authenticate to this registry on their own (policy nodeCredentials):
		// whatever the pod's secrets lack, the node's credentials will be used.
		if f, ok := r.finding(NodeCredentials, Warn, image,
			"anonymous look-up refused; the node's own credentials will be used; pullgate cannot check them",
			"none if the nodes may pull it"); ok {
			out = append(out, f)
		}
		return out
	}
	ns := r.pod.Namespace
	create := fmt.Sprintf("kubectl create secret docker-registry NAME --docker-server=%s --docker-username=USER --docker-password=TOKEN -n %s", host, ns)
	kr := r.pod.Keyring
	// The pod meant to send credentials: a listed secret that cannot be used is the cause,
	// if it could hold an entry for this registry at all.
	var blamed bool
	for _, p := range kr.ProblemsFor(repo) {
		if !r.reported(p) {
			continue
		}
		blamed = true
		r.cite(problemKey(p))
		switch p.Kind {
		case pullsecrets.Missing:
			add(PullSecretMissing, fmt.Sprintf("registry %s needs credentials and pull secret %q does not exist", host, p.Secret),
				strings.Replace(create, "NAME", p.Secret, 1))
		case pullsecrets.ServiceAccountMissing:
			add(PullSecretMissing, fmt.Sprintf("registry %s needs credentials and service account %q, whose pull secrets the pods would get, does not exist", host, p.ServiceAccount),
				fmt.Sprintf("create service account %q with imagePullSecrets for %s, or list a pull secret under the template's imagePullSecrets", p.ServiceAccount, host))
		default:
			add(PullSecretInvalid, fmt.Sprintf("registry %s needs credentials and %s", host, p.Detail),
				"recreate it: "+strings.Replace(create, "NAME", p.Secret, 1))
		}
	}
	if blamed {
		return out
	}
	if len(kr.SecretNames) > 0 {
		add(NoCredentials, fmt.Sprintf("registry %s needs credentials for %s and no pull secret (%s) has an entry for it",
			host, repoName, strings.Join(kr.SecretNames, ", ")),
			fmt.Sprintf("add an entry for %s to a pull secret: %s", host, create))
		return out
	}
	add(NoCredentials, fmt.Sprintf("registry %s needs credentials for %s (or it does not exist) and the pod has no pull secrets", host, repoName),
		create+", then list it under imagePullSecrets or on the ServiceAccount")
	return out
}

// nodeAuthenticated reports whether the policy's nodeCredentials lists repo's registry,
// matched as the kubelet matches a credential provider's matchImages.
func (r *run) nodeAuthenticated(repo name.Repository) bool {
	if len(r.pol.NodeCredentials) == 0 {
		return false
	}
	image := pullsecrets.KubeletImageName(repo)
	for _, pat := range r.pol.NodeCredentials {
		if pullsecrets.KeyMatches(pat, image) {
			return true
		}
	}
	return false
}

// manifestUnknownFindings tells a missing repository from a missing tag or digest: a HEAD
// 404 has no body to tell them apart, a tag listing does.
func (r *run) manifestUnknownFindings(ctx context.Context, ref name.Reference, image string, auth authn.Authenticator) []Finding {
	var out []Finding
	add := func(reason Reason, msg, fix string) {
		if f, ok := r.finding(reason, Deny, image, msg, fix); ok {
			out = append(out, f)
		}
	}
	repo := ref.Context()
	repoName := familiarRepo(repo)
	tags, err := r.checker.Registry.Tags(ctx, repo, auth, tagListLimit)
	if lookup.KindOf(err) == lookup.KindRepositoryUnknown {
		add(ImageNotFound, fmt.Sprintf("repository %s does not exist", repoName),
			"check the image name and registry host for typos, or push the image first")
		return out
	}
	switch ref := ref.(type) {
	case name.Digest:
		add(DigestNotFound, fmt.Sprintf("digest %s does not exist in %s (deleted or garbage-collected?)", shortDigest(ref.DigestStr()), repoName),
			"pin a digest that exists (resolve a current tag) or push the image again")
	case name.Tag:
		fix := "use an existing tag or push this one"
		if r.pod.Discreet && !anonymous(auth) {
			tags = nil
		}
		if kind, some := suggestTags(ref.TagStr(), tags, 3); len(some) > 0 {
			if kind != suggestClosest && len(tags) >= tagListLimit {
				// Only the first tagListLimit tags were read: the newest may be past them.
				kind += fmt.Sprintf(" of the first %d listed", tagListLimit)
			}
			fix = "use an existing tag (" + kind + ": " + strings.Join(some, ", ") + ") or push this one"
		}
		add(TagNotFound, fmt.Sprintf("tag %q does not exist in %s", ref.TagStr(), repoName), fix)
	}
	return out
}

// because is ": " and the cause of a failed look-up, or nothing when the pod's findings
// are discreet.
func (r *run) because(err error) string {
	if r.pod.Discreet {
		return ""
	}
	return ": " + cause(err)
}

// anonymous says whether a look-up was made without credentials.
func anonymous(auth authn.Authenticator) bool {
	return auth == nil || auth == authn.Anonymous
}

// problemKey is what cite records for a problem: its secret, or its ServiceAccount.
func problemKey(p pullsecrets.Problem) string {
	if p.Kind == pullsecrets.ServiceAccountMissing {
		return "serviceaccount/" + p.ServiceAccount
	}
	return p.Secret
}

// cite records that a deny-level finding names key (a secret, or problemKey's
// ServiceAccount), so that unusedSecretProblems does not repeat it.
func (r *run) cite(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.citedSecrets == nil {
		r.citedSecrets = make(map[string]bool)
	}
	r.citedSecrets[key] = true
}

// reported says whether a problem is one to tell the pod's author about: a missing
// ServiceAccount only for a template (see Pod.Template).
func (r *run) reported(p pullsecrets.Problem) bool {
	return p.Kind != pullsecrets.ServiceAccountMissing || r.pod.Template
}

// unusedSecretProblems reports problems of the listed pull secrets (and the ServiceAccount)
// that no deny-level finding already blamed. The pull may still work (anonymously, or with
// another secret), so they warn.
func (r *run) unusedSecretProblems() []Finding {
	var out []Finding
	for _, p := range r.pod.Keyring.Problems {
		if !r.reported(p) || r.citedSecrets[problemKey(p)] {
			continue
		}
		reason, effect, fix := PullSecretInvalid, "the kubelet skips it", fmt.Sprintf("fix or remove secret %q from imagePullSecrets", p.Secret)
		switch p.Kind {
		case pullsecrets.Missing:
			reason, fix = PullSecretMissing, fmt.Sprintf("create secret %q or remove it from imagePullSecrets", p.Secret)
		case pullsecrets.ServiceAccountMissing:
			reason, effect = PullSecretMissing, "its pods cannot be created until it exists"
			fix = fmt.Sprintf("create service account %q or name one that exists in serviceAccountName", p.ServiceAccount)
		case pullsecrets.EntrySkipped:
			effect = "the kubelet skips those entries"
		case pullsecrets.NoUsername:
			effect = "the node pulls anonymously with it"
		case pullsecrets.Unparseable:
			effect = "while it is listed the kubelet pulls none of the pod's images"
		}
		if f, ok := r.finding(reason, Warn, "", p.Detail+"; "+effect, fix); ok {
			out = append(out, f)
		}
	}
	return out
}

// needsRegistry reports whether a lookup error under lookup.WithCacheOnly leaves a question
// for the registry: the answer itself, or the tag listing that tells a missing repository
// from a missing tag.
func needsRegistry(err error) bool {
	return errors.Is(err, lookup.ErrNotCached) || lookup.KindOf(err) == lookup.KindManifestUnknown
}
