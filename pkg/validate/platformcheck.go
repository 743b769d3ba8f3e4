package validate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// defaultPullPolicy is the pull policy the API server gives a container that states none
// (k8s.io/kubernetes pkg/apis/core/v1/defaults.go SetDefaults_Container): Always for the
// tag latest, written or implied (parsers.ParseImageName: "If no tag was specified, use the
// default latest", unless there is a digest), else IfNotPresent. Admitted objects have
// been defaulted already; pod specs built by hand (tests, tools) may not be.
func (c *Checker) defaultPullPolicy(image string) corev1.PullPolicy {
	ref, err := c.parse(image)
	if err != nil {
		return corev1.PullIfNotPresent
	}
	if t, ok := ref.(name.Tag); ok && t.TagStr() == name.DefaultTag {
		return corev1.PullAlways
	}
	// name.Digest keeps no tag, but the API server's defaulting reads the one of tag@digest.
	if _, ok := ref.(name.Digest); ok && strings.Contains(image, ":"+name.DefaultTag+"@") {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// all reports whether every candidate node lists the image.
func (p presence) all() bool { return p.total > 0 && p.listed == p.total }

// soften adjusts the findings of a failed look-up of an image the kubelet pulls only when
// it is not on the node (IfNotPresent). With the image on the node the kubelet does not
// pull (pkg/kubelet/images/image_manager.go EnsureImageExists: "Container image %q already
// present on machine"), with one exception: in 1.37 KubeletEnsureSecretPulledImages is on
// by default (beta since 1.35) and imagePullCredentialsVerificationPolicy defaults to
// NeverVerifyPreloadedImages, so an image the kubelet itself pulled with a pull secret is
// pulled again, with the pod's credentials, for a pod that lacks that secret
// (pullmanager/image_pull_manager.go MustAttemptImagePull). So:
//   - on every candidate node: a missing image or a registry that cannot be asked is no
//     finding; a credential problem stands (the kubelet verifies credentials for what it
//     pulled with a secret, and most private images on a node got there that way);
//   - on some (or maybe on some: a node listing as many images as the kubelet reports,
//     nodeStatusMaxImages, may have more): nothing denies; a warning says the pod fails
//     on the others;
//   - on none listed: the findings stand. Absence from status.images is no proof, but a
//     registry's answer is.
func (p presence) soften(fs []Finding) []Finding {
	if p.listed == 0 || len(fs) == 0 {
		return fs
	}
	var out []Finding
	for _, f := range fs {
		credentials := false
		switch f.Reason {
		case ImageNotFound, TagNotFound, DigestNotFound,
			RegistryUnreachable, RegistryRateLimited, RegistryError:
		case NoCredentials, CredentialsRejected, PullSecretMissing, PullSecretInvalid:
			credentials = true
		default:
			out = append(out, f)
			continue
		}
		severity := f.Severity
		f.Severity = Warn
		switch {
		case credentials:
			// The kubelet verifies the pod's own credentials for an image it pulled with a
			// secret before it lets the pod use it (KubeletEnsureSecretPulledImages, beta and
			// on by default since 1.35: pullmanager's MustAttemptImagePull re-pulls with the
			// pod's credentials); only images it did not pull (preloaded,
			// imagePullCredentialsVerificationPolicy NeverVerifyPreloadedImages) or pulled
			// anonymously are used as they are. Which it was is not in the node's status, and
			// a private image on a node was most often pulled with a secret: the finding
			// stands.
			f.Severity = severity
			f.Message += "; the nodes have the image, but the kubelet verifies the pod's credentials for images it pulled with a secret"
		case p.all():
			continue
		case p.listed+p.maybe == p.total:
			f.Message += fmt.Sprintf("; %d of %d candidate nodes list the image (IfNotPresent uses it), the others may not have it", p.listed, p.total)
		default:
			f.Message += fmt.Sprintf("; %d of %d candidate nodes have the image (IfNotPresent uses it), the pod fails on the others", p.listed, p.total)
			f.OnSomeNodes = true
		}
		out = append(out, f)
	}
	return out
}

// outcome is how an image fits one target.
type outcome struct {
	verdict verdict
	// note says why a fitsWithWarning may still fail.
	note string
	// child names the missing manifest of a childMissing: "linux/amd64 as sha256:…".
	child string
	// refusedBy names the runtime of a refused.
	refusedBy string
	// failure is a look-up that failed without a verdict: reported as registry errors.
	failure []Finding
}

type verdict int

const (
	fits verdict = iota
	fitsWithWarning
	// noMatch: the runtime finds no manifest for the node, or the image does not run there.
	noMatch
	// childMissing: the index lists a manifest for the node that the registry does not have.
	childMissing
	// refused: the runtime refuses the manifest's format.
	refused
	// noAnswer: a look-up failed; the failure findings say why.
	noAnswer
)

// maxIndexDepth bounds how deep nested indexes are followed.
const maxIndexDepth = 4

// checkPlatform compares the image at desc with the kinds of node the pod may run on, as
// each node's runtime would pull it, and confirms that the manifest each would fetch exists.
// Under lookup.WithCacheOnly it reports false when an answer needs the registry.
func (r *run) checkPlatform(ctx context.Context, ref name.Reference, image string, desc lookup.Descriptor, auth authn.Authenticator) ([]Finding, bool) {
	digest := ref.Context().Digest(desc.Digest.String())
	var (
		outcomes = make([]outcome, len(r.targets))
		// have names the platforms the image is built for, for messages.
		have = func() []string { return nil }
	)
	switch {
	case desc.MediaType.IsSchema1():
		for i, t := range r.targets {
			outcomes[i] = schema1Outcome(t.target)
		}
	case desc.IsIndex():
		children, err := r.checker.Registry.Children(ctx, digest, auth)
		if err != nil {
			if lookup.CacheOnly(ctx) && needsRegistry(err) {
				return nil, false
			}
			return r.lookupFindings(ctx, ref, image, auth, err), true
		}
		have = func() []string { return childPlatforms(children) }
		for i, t := range r.targets {
			o, ok := r.indexOutcome(ctx, ref, image, desc.Digest, desc.MediaType, children, t.target, auth, 0)
			if !ok {
				return nil, false
			}
			outcomes[i] = o
		}
	default:
		plats, err := r.checker.Registry.Platforms(ctx, digest, auth)
		if err != nil {
			if lookup.CacheOnly(ctx) && needsRegistry(err) {
				return nil, false
			}
			return r.lookupFindings(ctx, ref, image, auth, err), true
		}
		if len(plats) == 0 || !known(&plats[0]) {
			// An image that declares no platform runs wherever the runtime accepts it.
			return nil, true
		}
		have = func() []string { return []string{formatPlatform(plats[0])} }
		for i, t := range r.targets {
			outcomes[i] = configOutcome(t.target, plats[0])
		}
	}
	return r.platformFindings(image, have, outcomes), true
}

// schema1Outcome: containerd 2 refuses Docker schema 1 manifests
// (core/remotes/docker/resolver.go: "media type %q is no longer supported since containerd
// v2.0, please rebuild the image as %q or %q"; core/transfer/local/pull.go: "schema 1 image
// manifests are no longer supported"); containerd 1.6 converts them
// (pkg/cri/server/image_pull.go: containerd.WithSchema1Conversion); containers/image reads
// them (internal/image/manifest.go manifestSchema1FromManifest).
func schema1Outcome(t target) outcome {
	switch {
	case t.runtime.Kind == RuntimeCRIO:
		return outcome{verdict: fits}
	case t.runtime.Kind == RuntimeContainerd && t.runtime.Major >= 2:
		return outcome{verdict: refused, refusedBy: "containerd " + fmt.Sprint(t.runtime.Major)}
	case t.runtime.Kind == RuntimeContainerd && t.runtime.Major == 1:
		return outcome{verdict: fitsWithWarning, note: "image is a Docker schema 1 manifest: containerd 1 converts it, containerd 2 refuses it"}
	}
	return outcome{verdict: fitsWithWarning, note: "image is a Docker schema 1 manifest, which containerd 2 refuses to pull"}
}

// configOutcome is how a single image whose config states p fits the target.
func configOutcome(t target, p v1.Platform) outcome {
	switch f, note := t.runsOn(p); f {
	case fitsExactly:
		return outcome{verdict: fits}
	case fitsMaybe:
		return outcome{verdict: fitsWithWarning, note: note}
	}
	return outcome{verdict: noMatch}
}

// indexOutcome follows the target's runtime through an index (at digest index, of media
// type mt, listing children) to the manifest it would pull, and confirms that manifest exists.
func (r *run) indexOutcome(ctx context.Context, ref name.Reference, image string, index v1.Hash, mt types.MediaType, children []v1.Descriptor,
	t target, auth authn.Authenticator, depth int) (outcome, bool) {
	p, note := t.chooseCached(index, mt, children)
	if !p.found {
		return outcome{verdict: noMatch}, true
	}
	child := ref.Context().Digest(p.child.Digest.String())
	childName := func() string {
		if p.child.Platform == nil {
			return "a manifest without a platform as " + shortDigest(p.child.Digest.String())
		}
		return formatPlatform(*p.child.Platform) + " as " + shortDigest(p.child.Digest.String())
	}
	// missing tells a deleted child from a look-up that failed.
	missing := func(err error) (outcome, bool) {
		switch {
		case lookup.CacheOnly(ctx) && needsRegistry(err):
			return outcome{}, false
		case lookup.KindOf(err) == lookup.KindManifestUnknown:
			return outcome{verdict: childMissing, child: childName()}, true
		}
		return outcome{verdict: noAnswer, failure: r.lookupFindings(ctx, child, image, auth, err)}, true
	}
	var o outcome
	switch {
	case p.child.MediaType.IsIndex() && depth < maxIndexDepth:
		// A nested index: both runtimes walk into it (containerd's images.Manifest walks the
		// children it chose; containers/image's manifestOCI1FromImageIndex chooses again).
		grand, err := r.checker.Registry.Children(ctx, child, auth)
		if err != nil {
			return missing(err)
		}
		var ok bool
		if o, ok = r.indexOutcome(ctx, ref, image, p.child.Digest, p.child.MediaType, grand, t, auth, depth+1); !ok {
			return o, false
		}
	case p.unplatformed:
		// containerd reads the config of an entry without a platform and skips it if it
		// does not match (images.Manifest: ConfigPlatform); containers/image pulls it. Either
		// way the container runs only where its config's platform does.
		plats, err := r.checker.Registry.Platforms(ctx, child, auth)
		if err != nil {
			return missing(err)
		}
		o = outcome{verdict: fits}
		if len(plats) > 0 && known(&plats[0]) {
			o = configOutcome(t, plats[0])
		}
	default:
		// Only whether the child still exists matters (its platform is in the index): a
		// HEAD, not the body.
		if _, err := r.checker.Registry.Resolve(lookup.WithoutPlatformsWanted(ctx), child, auth); err != nil {
			return missing(err)
		}
		o = outcome{verdict: fits}
		if p.fallback {
			o = outcome{verdict: fitsWithWarning, note: fallbackNote(t.platform.Platform().String(), formatPlatform(*p.child.Platform))}
			if t.runtime.Kind != RuntimeCRIO && t.runtime.Major != 1 {
				// containerd 2 pulls through its transfer service unless configured otherwise,
				// and that filters the index with platforms.Ordered(DefaultSpec()): no fallback.
				o.note += "; containerd 2's default pull skips it"
			}
		}
	}
	if o.verdict <= fitsWithWarning && note != "" {
		o = outcome{verdict: fitsWithWarning, note: note}
	}
	return o, true
}

// childPlatforms names the platforms an index lists, for messages.
func childPlatforms(children []v1.Descriptor) []string {
	var out []string
	for _, d := range children {
		if known(d.Platform) {
			out = append(out, formatPlatform(*d.Platform))
		}
	}
	return out
}

// platformFindings turns the outcomes for the targets into findings: a failure on every
// candidate node denies, on some it warns, and a fit that may not run warns.
func (r *run) platformFindings(image string, have func() []string, outcomes []outcome) []Finding {
	var out []Finding
	// onSome marks the findings of pulls that fail on some of the candidate nodes, not on
	// all: those warn at admission, but a DaemonSet has a pod on every candidate node.
	onSome := false
	add := func(reason Reason, natural Severity, msg, fix string) {
		if f, ok := r.finding(reason, natural, image, msg, fix); ok {
			f.OnSomeNodes = onSome
			out = append(out, f)
		}
	}
	var (
		fitting, failing                []Platform
		noMatchOn                       []Platform
		missingChildren, refusedBy      []string
		notes                           []string
		unanswered                      []Finding
		noMatchNodes, missing, refusals int
	)
	for i, o := range outcomes {
		t := r.targets[i]
		pl := t.platform.Platform()
		switch o.verdict {
		case fits, fitsWithWarning:
			fitting = appendNew(fitting, pl)
			if o.note != "" && !slices.Contains(notes, o.note) {
				notes = append(notes, o.note)
			}
			continue
		case noMatch:
			noMatchOn = appendNew(noMatchOn, pl)
			noMatchNodes += t.nodes
		case childMissing:
			missingChildren = appendNew(missingChildren, o.child)
			missing += t.nodes
		case refused:
			refusedBy = appendNew(refusedBy, o.refusedBy)
			refusals += t.nodes
		case noAnswer:
			for _, f := range o.failure {
				if !slices.ContainsFunc(unanswered, func(g Finding) bool { return g.Reason == f.Reason && g.Message == f.Message }) {
					unanswered = append(unanswered, f)
				}
			}
			continue
		}
		failing = appendNew(failing, pl)
	}
	everywhere := len(fitting) == 0 && len(unanswered) == 0
	severity := Warn
	if everywhere {
		severity = Deny
	}
	onSome = !everywhere
	if noMatchNodes > 0 {
		if everywhere && len(failing) == len(noMatchOn) {
			add(PlatformMismatch, Deny,
				fmt.Sprintf("image is built for %s; the pod can only run on %s nodes", joinSorted(have()), joinPlatforms(noMatchOn)),
				fmt.Sprintf("build and push the image for %s (docker buildx build --platform ...), or pick an image that has it", joinPlatforms(noMatchOn)))
		} else {
			msg := fmt.Sprintf("image lacks %s; the pod fails on those nodes", joinPlatforms(noMatchOn))
			fix := fmt.Sprintf("build the image for %s", joinPlatforms(noMatchOn))
			if len(fitting) > 0 {
				fix = fmt.Sprintf("add nodeSelector kubernetes.io/arch (or os) for %s, or build the image for %s", joinPlatforms(fitting), joinPlatforms(noMatchOn))
			}
			add(PlatformMismatch, severity, msg, fix)
		}
	}
	if missing > 0 {
		msg := fmt.Sprintf("the index lists %s but it was deleted", strings.Join(missingChildren, " and "))
		if !everywhere {
			msg += "; the pod fails on those nodes"
		}
		add(DigestNotFound, severity, msg,
			"push the image again for all its platforms (docker buildx build --platform ... --push)")
	}
	if refusals > 0 {
		msg := fmt.Sprintf("image is a Docker schema 1 manifest, which %s refuses to pull", strings.Join(refusedBy, " and "))
		if !everywhere {
			msg += "; the pod fails on those nodes"
		}
		add(UnsupportedManifest, severity, msg, schema1Fix)
	}
	onSome = false // a fit that may not run is no failed pull
	for _, n := range notes {
		reason, fix := PlatformMismatch, "build and push the image for "+joinPlatforms(fitting)
		if strings.Contains(n, "runtime of the") {
			fix = "check the nodes' runtime (status.nodeInfo.containerRuntimeVersion), or build for " + joinPlatforms(fitting)
		}
		if strings.Contains(n, "schema 1") {
			reason, fix = UnsupportedManifest, schema1Fix
		}
		add(reason, Warn, n, fix)
	}
	return append(out, unanswered...)
}

// schema1Fix says how to turn a Docker schema 1 image into one every runtime pulls.
const schema1Fix = "re-push it as schema 2: crane copy SRC DST, or skopeo copy --format v2s2 docker://SRC docker://DST"

func appendNew[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
