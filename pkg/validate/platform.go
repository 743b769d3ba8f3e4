package validate

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	lru "github.com/hashicorp/golang-lru/v2"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is an os/arch pair that nodes run and images are built for, the way messages
// and the mutations' mirror choice compare them.
type Platform struct {
	OS           string
	Architecture string
}

func (p Platform) String() string { return p.OS + "/" + p.Architecture }

// target is one kind of candidate node the platform check compares an image with: its
// platform and the runtime that pulls for it, with that runtime's matchers built once.
type target struct {
	platform NodePlatform
	runtime  Runtime
	// spec is the node as containerd's platforms.DefaultSpec would describe it.
	spec specs.Platform
	// only is platforms.Only(spec), what containerd's local pull (containerd 1, and
	// containerd 2 with use_local_image_pull) matches with: the platform itself, then
	// amd64/v(N-1)…v1 and 386 on amd64, arm/v8…v5 on arm64. strict is platforms.Ordered(spec),
	// what containerd 2's default pull through the transfer service filters an index with
	// (internal/cri/server/images/image_pull.go: transferimage.WithPlatforms(
	// platforms.DefaultSpec()); core/transfer/image/imagestore.go ImageFilter:
	// platforms.Ordered(is.platforms...)): the platform alone.
	only, strict platforms.MatchComparer
	// choices remembers choose's answers by index digest: what a digest names never
	// changes, and matching is most of a warm platform check's work.
	choices *lru.Cache[v1.Hash, choice]
}

// choice is one answer of choose.
type choice struct {
	pick pick
	note string
}

// maxChoices bounds the choices a target remembers.
const maxChoices = 1024

func newTarget(p NodePlatform, rt Runtime) target {
	t := target{platform: p, runtime: rt}
	t.spec = specs.Platform{OS: p.OS, Architecture: p.Architecture, OSVersion: p.OSVersion}
	if p.OS != "windows" {
		t.spec.OSVersion = ""
	}
	t.only = platforms.Only(t.spec)
	t.strict = platforms.Ordered(t.spec)
	t.choices, _ = lru.New[v1.Hash, choice](maxChoices) // size > 0
	return t
}

func toSpec(p v1.Platform) specs.Platform {
	return specs.Platform{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		OSFeatures:   p.OSFeatures,
	}
}

// known reports whether an image platform says enough to be compared: attestation
// manifests say unknown/unknown, and an empty os would be read by platforms.Normalize as
// the os pullgate itself runs on.
func known(p *v1.Platform) bool {
	return p != nil && p.OS != "" && p.Architecture != "" && p.OS != "unknown" && p.Architecture != "unknown"
}

// formatPlatform names an image platform as containerd normalises it: linux/amd64,
// linux/arm/v7, linux/amd64/v3.
func formatPlatform(p v1.Platform) string {
	return platforms.Format(platforms.Normalize(toSpec(p)))
}

// pick is the manifest of an index a runtime would pull for a target.
type pick struct {
	found bool
	child v1.Descriptor
	// fallback: only a 32-bit fallback matched (386 on amd64, arm on arm64).
	fallback bool
	// unplatformed: the entry has no platform; the runtime reads the child's config.
	unplatformed bool
}

// chooseCached is choose for the index at digest, remembered.
func (t target) chooseCached(digest v1.Hash, mt types.MediaType, children []v1.Descriptor) (pick, string) {
	if c, ok := t.choices.Get(digest); ok {
		return c.pick, c.note
	}
	p, note := t.choose(mt, children)
	t.choices.Add(digest, choice{pick: p, note: note})
	return p, note
}

// choose returns the child of an index (of media type mt, listing children) the target's
// runtime would pull, and a note when the runtimes pullgate models would not agree.
func (t target) choose(mt types.MediaType, children []v1.Descriptor) (pick, string) {
	switch t.runtime.Kind {
	case RuntimeContainerd:
		return t.containerdChoice(children), ""
	case RuntimeCRIO:
		return t.crioChoice(mt, children), ""
	}
	// An unknown runtime is taken for containerd, the most common; where CRI-O would not
	// pull the same, the difference only warns.
	c, o := t.containerdChoice(children), t.crioChoice(mt, children)
	if c.found && (!o.found || o.child.Digest != c.child.Digest) {
		return c, "the runtime of the " + t.platform.Platform().String() + " nodes is unknown: CRI-O would not pull the manifest containerd would"
	}
	if !c.found && o.found {
		return o, "the runtime of the " + t.platform.Platform().String() + " nodes is unknown: only CRI-O would find a manifest for them"
	}
	return c, ""
}

// containerdChoice is containerd's choice of a child of an index
// (core/images/image.go Manifest and core/images/handlers.go LimitManifests, the same in
// containerd 1.6 and 2.x): the entries without a platform or whose platform matches, sorted
// with the matcher's Less (the earlier platform in its list first, entries without a
// platform last, ties in the index's order), and the first of them.
func (t target) containerdChoice(children []v1.Descriptor) pick {
	match, less := t.containerdMatcher()
	var cands []v1.Descriptor
	for _, d := range children {
		if d.Platform == nil || (known(d.Platform) && match(*d.Platform)) {
			cands = append(cands, d)
		}
	}
	if len(cands) == 0 {
		return pick{}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Platform == nil {
			return false
		}
		if cands[j].Platform == nil {
			return true
		}
		return less(*cands[i].Platform, *cands[j].Platform)
	})
	p := pick{found: true, child: cands[0], unplatformed: cands[0].Platform == nil}
	if !p.unplatformed && t.platform.OS != "windows" {
		p.fallback = !t.strict.Match(t.containerdSpec(*p.child.Platform))
	}
	return p
}

// containerdSpec is an image platform as the node's containerd compares it. containerd 1.6's
// matcher (platforms/platforms.go matcher.Match) compares os, architecture and variant
// only; github.com/containerd/platforms, which containerd 2 uses, also requires an image's
// os.features to be among the node's (none, on Linux).
func (t target) containerdSpec(p v1.Platform) specs.Platform {
	s := toSpec(p)
	if t.runtime.Major == 1 && t.platform.OS != "windows" {
		s.OSFeatures = nil
	}
	return s
}

// containerdMatcher returns how the node's containerd matches and orders index entries.
func (t target) containerdMatcher() (match func(v1.Platform) bool, less func(a, b v1.Platform) bool) {
	if t.platform.OS == "windows" {
		// On Windows containerd's default matcher is platforms.NewMatcher(DefaultSpec())
		// (os.version against the host's build: platform_windows_compat.go
		// checkWindowsHostAndContainerCompat) ordered by windowsMatchComparer.Less: the
		// highest os.version first. containerd 1.6 (platforms/defaults_windows.go
		// matchComparer) wanted the host's exact build as a prefix of os.version, or none.
		m := platforms.NewMatcher(t.spec)
		match = func(p v1.Platform) bool { return m.Match(toSpec(p)) }
		if t.runtime.Major == 1 && t.platform.OSVersion != "" {
			base := platforms.Normalize(specs.Platform{OS: t.spec.OS, Architecture: t.spec.Architecture})
			match = func(p v1.Platform) bool {
				n := platforms.Normalize(specs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
				return n.OS == base.OS && n.Architecture == base.Architecture && n.Variant == base.Variant &&
					(p.OSVersion == "" || strings.HasPrefix(p.OSVersion, t.platform.OSVersion))
			}
		}
		less = func(a, b v1.Platform) bool { return a.OSVersion > b.OSVersion }
		return match, less
	}
	match = func(p v1.Platform) bool { return t.only.Match(t.containerdSpec(p)) }
	less = func(a, b v1.Platform) bool { return t.only.Less(t.containerdSpec(a), t.containerdSpec(b)) }
	return match, less
}

// crioCompatibility is containers/image's table of variants an architecture runs, most
// capable first (go.podman.io/image/v5 internal/pkg/platform/platform_matcher.go
// compatibility). It is copied because that package is internal, and the public
// manifest.List.ChooseInstance would bring containers/image and its dependencies into
// pullgate for twenty lines.
var crioCompatibility = map[string][]string{
	"arm":   {"v8", "v7", "v6", "v5"},
	"arm64": {"v8"},
}

// crioWanted is platform.WantedPlatforms for the node: its os and architecture exactly
// (no 386 on amd64, no arm on arm64), and its CPU variant's compatible variants, then none.
// The variant is what CRI-O reads from /proc/cpuinfo (getCPUVariantArm): v8 on arm64; on
// 32-bit arm, v7 is assumed.
func (t target) crioWanted() []specs.Platform {
	variant := ""
	switch t.platform.Architecture {
	case "arm64":
		variant = "v8"
	case "arm":
		variant = "v7"
	}
	var variants []string
	if variant != "" {
		if order := crioCompatibility[t.platform.Architecture]; order != nil {
			if i := slices.Index(order, variant); i >= 0 {
				variants = slices.Clone(order[i:])
			}
		}
		if variants == nil {
			variants = []string{variant}
		}
		variants = append(variants, "")
	} else {
		variants = append([]string{""}, crioCompatibility[t.platform.Architecture]...)
	}
	out := make([]specs.Platform, len(variants))
	for i, v := range variants {
		out[i] = specs.Platform{OS: t.platform.OS, Architecture: t.platform.Architecture, Variant: v}
	}
	return out
}

// crioZstdAnnotation marks a zstd-compressed instance, which CRI-O prefers
// (internal/manifest/oci_index.go instanceIsZstd, OCI1InstanceAnnotationCompressionZSTD).
const crioZstdAnnotation = "io.github.containers.compression.zstd"

// crioChoice is containers/image's choice: for an OCI index (internal/manifest/oci_index.go
// chooseInstance) the entry whose platform comes earliest in crioWanted, zstd first, then
// the first listed, entries without a platform last; for a Docker manifest list
// (docker_schema2_list.go ChooseInstance) the first entry equal to the first wanted
// platform any entry equals. Platforms are compared as written (platform.MatchesPlatform):
// x86_64 is not amd64 to it.
func (t target) crioChoice(mt types.MediaType, children []v1.Descriptor) pick {
	wanted := t.crioWanted()
	matches := func(p *v1.Platform, w specs.Platform) bool {
		return p.OS == w.OS && p.Architecture == w.Architecture && p.Variant == w.Variant
	}
	if mt == types.DockerManifestList {
		for _, w := range wanted {
			for _, d := range children {
				if d.Platform != nil && matches(d.Platform, w) {
					return pick{found: true, child: d}
				}
			}
		}
		return pick{}
	}
	best, bestRank, bestZstd := -1, 0, false
	for i, d := range children {
		rank := math.MaxInt
		if d.Platform != nil {
			rank = slices.IndexFunc(wanted, func(w specs.Platform) bool { return matches(d.Platform, w) })
			if rank < 0 {
				continue
			}
		}
		zstd := d.Annotations[crioZstdAnnotation] == "true"
		if best < 0 || rank < bestRank || (rank == bestRank && zstd && !bestZstd) {
			best, bestRank, bestZstd = i, rank, zstd
		}
	}
	if best < 0 {
		return pick{}
	}
	return pick{found: true, child: children[best], unplatformed: children[best].Platform == nil}
}

// fit is how an image built for one platform fits a target.
type fit int

const (
	fitsExactly fit = iota
	// fitsMaybe: it may run, depending on the CPU or kernel; a warning says why.
	fitsMaybe
	fitsNot
)

// runsOn tells whether an image whose config states platform p runs on the target. The
// runtimes pull a single image whatever its config says (containerd checks no platform
// outside an index; containers/image only logs "Image operating system mismatch"), so
// this is whether the container can start: an exact match runs; 386 on amd64 and arm on
// arm64 (the 32-bit fallbacks containerd accepts) and another variant of the same
// architecture (amd64/v3, arm64/v8.2) depend on the CPU and kernel; a Windows build other
// than one containerd's matcher accepts depends on the isolation; another os or
// architecture does not run.
func (t target) runsOn(p v1.Platform) (fit, string) {
	s := toSpec(p)
	img, node := platforms.Normalize(s), platforms.Normalize(t.spec)
	if img.OS != node.OS {
		return fitsNot, ""
	}
	nodeName := t.platform.Platform().String()
	if t.platform.OS == "windows" {
		if img.Architecture != node.Architecture {
			return fitsNot, ""
		}
		if platforms.NewMatcher(t.spec).Match(s) {
			return fitsExactly, ""
		}
		return fitsMaybe, "image is built for Windows " + p.OSVersion + ", the nodes run " + t.platform.OSVersion + ": process isolation needs a compatible build"
	}
	if t.strict.Match(s) {
		return fitsExactly, ""
	}
	if t.only.Match(s) {
		return fitsMaybe, fallbackNote(nodeName, formatPlatform(p))
	}
	if img.Architecture == node.Architecture {
		return fitsMaybe, "image is built for " + formatPlatform(p) + ": it runs only on " + nodeName + " nodes whose CPU supports it"
	}
	return fitsNot, ""
}

func fallbackNote(nodes, image string) string {
	return nodes + " nodes would run its " + image + " image: 32-bit code needs kernel and CPU support"
}

// imagePlatforms turns an image's platforms into the distinct os/arch pairs nodes are
// compared with, architectures normalised as containerd does (x86_64 is amd64, aarch64 is
// arm64); entries without os or architecture, or unknown/unknown (attestations), are left
// out.
func imagePlatforms(ps []v1.Platform) []Platform {
	var out []Platform
	for _, p := range ps {
		if !known(&p) {
			continue
		}
		n := platforms.Normalize(toSpec(p))
		pp := Platform{OS: n.OS, Architecture: n.Architecture}
		if !slices.Contains(out, pp) {
			out = append(out, pp)
		}
	}
	return out
}

func joinPlatforms(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return joinSorted(s)
}

// joinSorted joins the distinct strings of s, sorted.
func joinSorted(s []string) string {
	s = slices.Clone(s)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ", ")
}
