package validate

import (
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// RuntimeKind is the container runtime a node pulls with.
type RuntimeKind int

const (
	// RuntimeUnknown is a runtime pullgate has no rules for (docker://, remote://, none):
	// containerd's rules are applied, and a difference from CRI-O's only warns.
	RuntimeUnknown RuntimeKind = iota
	// RuntimeContainerd is containerd's CRI plugin.
	RuntimeContainerd
	// RuntimeCRIO is CRI-O, which pulls with containers/image.
	RuntimeCRIO
)

// Runtime is a node's container runtime, from status.nodeInfo.containerRuntimeVersion.
type Runtime struct {
	Kind RuntimeKind
	// Major is containerd's major version (1 or 2, ...); 0 when it is not known.
	Major int
}

// ParseRuntime reads status.nodeInfo.containerRuntimeVersion: "containerd://1.7.27",
// "containerd://2.1.3-k3s1", "cri-o://1.31.2". Anything else is RuntimeUnknown.
func ParseRuntime(version string) Runtime {
	kind, ver, ok := strings.Cut(version, "://")
	if !ok {
		return Runtime{}
	}
	switch kind {
	case "containerd":
		major, _, _ := strings.Cut(strings.TrimPrefix(ver, "v"), ".")
		n, err := strconv.Atoi(major)
		if err != nil || n < 0 {
			n = 0
		}
		return Runtime{Kind: RuntimeContainerd, Major: n}
	case "cri-o":
		return Runtime{Kind: RuntimeCRIO}
	}
	return Runtime{}
}

func (rt Runtime) String() string {
	switch rt.Kind {
	case RuntimeContainerd:
		if rt.Major > 0 {
			return "containerd " + strconv.Itoa(rt.Major)
		}
		return "containerd"
	case RuntimeCRIO:
		return "CRI-O"
	}
	return "an unknown runtime"
}

// NodePlatform is what a node's runtime matches image platforms against: the os and
// architecture the kubelet reports, and for Windows the build in the
// node.kubernetes.io/windows-build label (what containerd's Windows matcher compares
// os.version with). Variant is left empty: nodes do not report it, and for amd64 and arm64
// containerd's own default has none (platforms.DefaultSpec: "The Variant field will be
// empty if arch != ARM", and arm64's v8 normalises to "").
type NodePlatform struct {
	OS, Architecture, OSVersion string
}

// Platform returns the os/arch pair of the node.
func (p NodePlatform) Platform() Platform { return Platform{OS: p.OS, Architecture: p.Architecture} }

// ImageSet is a set of image names, kept as hashes: a node lists up to nodeStatusMaxImages
// (50 by default) images with up to five names each, and thousands of nodes list mostly
// the same names, so the strings themselves are not kept. Use NewImageSet.
type ImageSet struct{ hashes []uint64 }

// imageSeed keys the hashes of image names for the life of the process.
var imageSeed = maphash.MakeSeed()

func imageKey(name string) uint64 { return maphash.String(imageSeed, name) }

// NewImageSet returns the set of names, as status.images lists them
// (docker.io/library/nginx:1.27, docker.io/library/nginx@sha256:…).
func NewImageSet(names []string) ImageSet {
	hs := make([]uint64, 0, len(names))
	for _, n := range names {
		hs = append(hs, imageKey(n))
	}
	slices.Sort(hs)
	return ImageSet{hashes: slices.Compact(hs)}
}

func (s ImageSet) has(h uint64) bool {
	_, ok := slices.BinarySearch(s.hashes, h)
	return ok
}

// Equal reports whether s and o hold the same names.
func (s ImageSet) Equal(o ImageSet) bool { return slices.Equal(s.hashes, o.hashes) }

// Len is the number of names in s.
func (s ImageSet) Len() int { return len(s.hashes) }

// NodeGroup is a set of Ready nodes alike in everything the checks look at but their
// names, their kubernetes.io/hostname label and their images: a cluster of thousands of
// nodes is a few such groups, and a check compares a pod with groups, not nodes.
type NodeGroup struct {
	Platform      NodePlatform
	Runtime       Runtime
	Taints        []corev1.Taint
	Unschedulable bool
	// ImagesTruncated says the members list as many images as the kubelet reports
	// (nodeStatusMaxImages, 50 by default): an image they do not list may still be there.
	ImagesTruncated bool
	Members         []NodeMember
}

// NodeMember is one node of a group.
type NodeMember struct {
	Name string
	// Labels are all the node's labels. They are read, never changed.
	Labels map[string]string
	Images ImageSet
}

// Nodes is a snapshot of the cluster's Ready nodes. It is never changed once built, so
// admissions read it without locks. Build it with NewNodes.
type Nodes struct {
	groups []*group
	byName map[string]memberRef
	count  int
}

type memberRef struct{ group, member int }

// group is a NodeGroup with what the checks derive from it, computed once per snapshot.
type group struct {
	NodeGroup
	// nodes are the members as the scheduling helpers take them.
	nodes []*corev1.Node
	// listed counts, by image name hash, the members that list the image.
	listed map[uint64]int32
	target target
}

// NewNodes builds a snapshot of groups. Groups and their members must not change after.
func NewNodes(groups []NodeGroup) *Nodes {
	ns := &Nodes{byName: make(map[string]memberRef)}
	for _, g := range groups {
		if len(g.Members) == 0 {
			continue
		}
		gr := &group{
			NodeGroup: g,
			nodes:     make([]*corev1.Node, len(g.Members)),
			listed:    make(map[uint64]int32),
			target:    newTarget(g.Platform, g.Runtime),
		}
		for mi, m := range g.Members {
			n := &corev1.Node{}
			n.Name, n.Labels = m.Name, m.Labels
			n.Spec.Taints, n.Spec.Unschedulable = g.Taints, g.Unschedulable
			gr.nodes[mi] = n
			for _, h := range m.Images.hashes {
				gr.listed[h]++
			}
			ns.byName[m.Name] = memberRef{group: len(ns.groups), member: mi}
		}
		ns.groups = append(ns.groups, gr)
		ns.count += len(g.Members)
	}
	return ns
}

// Groups is the number of groups of alike nodes in the snapshot.
func (ns *Nodes) Groups() int {
	if ns == nil {
		return 0
	}
	return len(ns.groups)
}

// Len is the number of Ready nodes in the snapshot.
func (ns *Nodes) Len() int {
	if ns == nil {
		return 0
	}
	return ns.count
}

// Placement is what decides which nodes a pod may run on.
type Placement struct {
	Spec *corev1.PodSpec
	// DaemonSet says Spec is a DaemonSet's pod template: the DaemonSet controller adds
	// tolerations to every pod it creates from it.
	DaemonSet bool
}

// selection is the candidate nodes of one pod: whole groups, or some members of a group.
type selection struct {
	group *group
	// members are the chosen members' indexes; nil means all of them.
	members []int
}

// candidates are the Ready nodes a pod may run on.
type candidates struct {
	sel   []selection
	total int
}

func (s selection) count() int {
	if s.members == nil {
		return len(s.group.Members)
	}
	return len(s.members)
}

// candidates returns the Ready nodes the pod may run on: the node spec.nodeName names
// alone when it is set (the scheduler is not involved); else the nodes its nodeSelector and
// required node affinity select (nodeaffinity.RequiredNodeAffinity, what the scheduler's
// NodeAffinity plugin uses) whose NoSchedule and NoExecute taints it tolerates
// (the TaintToleration plugin's Filter, helper.DoNotScheduleTaintsFilterFunc) and that are
// not cordoned unless it tolerates node.kubernetes.io/unschedulable (the NodeUnschedulable
// plugin's Filter).
func (ns *Nodes) candidates(p Placement) candidates {
	var out candidates
	if ns == nil || p.Spec == nil {
		return out
	}
	spec := p.Spec
	if spec.NodeName != "" {
		if ref, ok := ns.byName[spec.NodeName]; ok {
			out.sel = append(out.sel, selection{group: ns.groups[ref.group], members: []int{ref.member}})
			out.total = 1
		}
		return out
	}
	tolerations := spec.Tolerations
	if p.DaemonSet {
		tolerations = daemonSetTolerations(spec)
	}
	affinity := nodeaffinity.NewRequiredNodeAffinity(spec.NodeSelector, spec.Affinity)
	perNode := namesNodes(spec)
	only := nodeNamesOnly(spec)
	for _, g := range ns.groups {
		if !tolerates(g, tolerations) {
			continue
		}
		if !perNode {
			if ok, err := affinity.Match(g.nodes[0]); err == nil && ok {
				out.sel = append(out.sel, selection{group: g})
				out.total += len(g.Members)
			}
			continue
		}
		var members []int
		for i, n := range g.nodes {
			if only != nil && !only[n.Name] {
				continue
			}
			if ok, err := affinity.Match(n); err == nil && ok {
				members = append(members, i)
			}
		}
		if len(members) > 0 {
			out.sel = append(out.sel, selection{group: g, members: members})
			out.total += len(members)
		}
	}
	return out
}

// tolerates reports whether a pod with tolerations may be scheduled on the group's nodes.
func tolerates(g *group, tolerations []corev1.Toleration) bool {
	logger := logr.Discard()
	// TaintTolerationComparisonOperators is alpha and off by default in 1.37.
	const comparisonOperators = false
	if g.Unschedulable && !corev1helpers.TolerationsTolerateTaint(logger, tolerations,
		&corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}, comparisonOperators) {
		return false
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(logger, g.Taints, tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, comparisonOperators)
	return !untolerated
}

// daemonSetTolerations are the tolerations of the pods the DaemonSet controller creates
// from spec: AddOrUpdateDaemonPodTolerations (k8s.io/kubernetes
// pkg/controller/daemon/util/daemonset_util.go) adds them to every pod. It cannot be
// imported (k8s.io/kubernetes is not a library), so its list is here; appending instead
// of replacing a toleration with the same key and effect tolerates the same taints.
func daemonSetTolerations(spec *corev1.PodSpec) []corev1.Toleration {
	out := slices.Clone(spec.Tolerations)
	add := func(key string, effect corev1.TaintEffect) {
		out = append(out, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect})
	}
	add(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)
	if spec.HostNetwork {
		add(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)
	}
	return out
}

// namesNodes reports whether the pod's node selection can tell members of a group apart:
// by kubernetes.io/hostname, or by a field (metadata.name, as the DaemonSet controller's
// pods do). Then each member is matched on its own.
func namesNodes(spec *corev1.PodSpec) bool {
	if _, ok := spec.NodeSelector[corev1.LabelHostname]; ok {
		return true
	}
	for _, term := range requiredTerms(spec) {
		if len(term.MatchFields) > 0 {
			return true
		}
		for _, e := range term.MatchExpressions {
			if e.Key == corev1.LabelHostname {
				return true
			}
		}
	}
	return false
}

// nodeNamesOnly returns the node names a pod is limited to when every term of its required
// node affinity names nodes with metadata.name In (the DaemonSet controller's pods: one
// node each), so that not every node is matched; nil when it is not limited so.
func nodeNamesOnly(spec *corev1.PodSpec) map[string]bool {
	terms := requiredTerms(spec)
	if len(terms) == 0 {
		return nil
	}
	names := make(map[string]bool)
	for _, term := range terms {
		found := false
		for _, f := range term.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn {
				found = true
				for _, v := range f.Values {
					names[v] = true
				}
			}
		}
		if !found {
			return nil
		}
	}
	return names
}

func requiredTerms(spec *corev1.PodSpec) []corev1.NodeSelectorTerm {
	a := spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

// presence counts how many candidate nodes list an image.
type presence struct {
	// listed nodes have it; maybe nodes do not list it but list as many images as the
	// kubelet reports, so may have it; the others (total-listed-maybe) lack it.
	listed, maybe, total int
}

func (c candidates) presence(imageName string) presence {
	h := imageKey(imageName)
	p := presence{total: c.total}
	for _, s := range c.sel {
		var n int
		if s.members == nil {
			n = int(s.group.listed[h])
		} else {
			for _, i := range s.members {
				if s.group.Members[i].Images.has(h) {
					n++
				}
			}
		}
		p.listed += n
		if s.group.ImagesTruncated {
			p.maybe += s.count() - n
		}
	}
	return p
}

// targets returns the distinct platform and runtime pairs among the candidates, with how
// many candidate nodes each has: what the platform check compares images with.
func (c candidates) targets() []countedTarget {
	var out []countedTarget
	for _, s := range c.sel {
		i := slices.IndexFunc(out, func(t countedTarget) bool {
			return t.platform == s.group.target.platform && t.runtime == s.group.target.runtime
		})
		if i < 0 {
			out = append(out, countedTarget{target: s.group.target})
			i = len(out) - 1
		}
		out[i].nodes += s.count()
	}
	return out
}

type countedTarget struct {
	target
	nodes int
}

// SchedulablePlatforms returns the distinct os/arch pairs of the Ready nodes a pod may run
// on, as the platform check chooses them (nodeName, nodeSelector, required node affinity,
// taints), sorted.
func SchedulablePlatforms(nodes *Nodes, p Placement) []Platform {
	var out []Platform
	for _, t := range nodes.candidates(p).targets() {
		if pl := t.platform.Platform(); !slices.Contains(out, pl) {
			out = append(out, pl)
		}
	}
	slices.SortFunc(out, func(a, b Platform) int { return strings.Compare(a.String(), b.String()) })
	return out
}
