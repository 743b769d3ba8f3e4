package nodes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/pullgate/pullgate/pkg/validate"
)

// DefaultNodeStatusMaxImages is the kubelet's default nodeStatusMaxImages
// (pkg/kubelet/apis/config/v1beta1/defaults.go: "obj.NodeStatusMaxImages =
// ptr.To[int32](50)"): a node listing that many images may have more.
const DefaultNodeStatusMaxImages = 50

// maxImageNames bounds the image names kept of one node, whatever nodeStatusMaxImages it
// runs with (-1 lists every image): 5 names each (nodestatus.MaxNamesPerImageInNodeStatus)
// of the 50 default images, twice over.
const maxImageNames = 500

// Tracker keeps what the checks need of the cluster's Ready nodes, fed by a Node informer:
// per node its name, labels, taints, whether it is cordoned, its platform, runtime and the
// images it lists; and, for the admissions, snapshots of them grouped into nodes alike
// (validate.NodeGroup). It is safe for concurrent use. Create it with NewTracker.
type Tracker struct {
	mu      sync.Mutex
	byNode  map[string]record
	pending bool
	// built is when the snapshot was last rebuilt.
	built time.Time
	// debounce is the least time between two rebuilds; zero rebuilds on every change.
	// Rebuilding costs time in the number of nodes, and a node's images change whenever it
	// pulls one.
	debounce time.Duration

	// listing is true from Watch until the informer has delivered its initial list: until
	// then no partial snapshot is published (a check against the first of many nodes would
	// judge a pod by that node alone).
	listing bool
	synced  atomic.Bool

	// snapshot is what admissions read: rebuilt on change, never modified.
	snapshot atomic.Pointer[validate.Nodes]
}

// record is what the Tracker keeps of one Ready node.
type record struct {
	// shape identifies the group the node belongs to: everything but its name, hostname
	// label and images.
	shape  string
	group  validate.NodeGroup // without members
	member validate.NodeMember
}

func (r record) equal(o record) bool {
	return r.shape == o.shape && r.member.Name == o.member.Name &&
		r.member.Labels[corev1.LabelHostname] == o.member.Labels[corev1.LabelHostname] &&
		r.member.Images.Equal(o.member.Images)
}

// Option configures a Tracker.
type Option func(*Tracker)

// WithDebounce sets how long after a rebuild further changes wait to be rebuilt together.
// The default is 200ms; zero rebuilds on every change.
func WithDebounce(d time.Duration) Option { return func(t *Tracker) { t.debounce = max(d, 0) } }

// NewTracker returns an empty Tracker; feed it with Watch or Observe/Forget.
func NewTracker(opts ...Option) *Tracker {
	t := &Tracker{byNode: make(map[string]record), debounce: 200 * time.Millisecond}
	for _, o := range opts {
		o(t)
	}
	t.snapshot.Store(validate.NewNodes(nil))
	t.synced.Store(true)
	return t
}

// Synced reports whether the snapshot reflects the informer's initial list of nodes (always
// true for a Tracker fed by Observe only): pullgate is ready only then.
func (t *Tracker) Synced() bool { return t.synced.Load() }

// Get returns the current snapshot. It is never nil.
func (t *Tracker) Get() *validate.Nodes { return t.snapshot.Load() }

// Watch registers t with the cache's Node informer.
//
// Until the informer has listed every node, the snapshot stays as it was (empty: the platform
// check has nothing to compare with) and Synced is false; then it is built once from all of
// them.
func (t *Tracker) Watch(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return fmt.Errorf("getting node informer: %w", err)
	}
	t.mu.Lock()
	t.listing = true
	t.synced.Store(false)
	t.mu.Unlock()
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj) },
		UpdateFunc: func(_, obj any) { t.observe(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				t.Forget(n.Name)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	go func() {
		if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.listing = false
		t.rebuild()
		t.synced.Store(true)
	}()
	return nil
}

func (t *Tracker) observe(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		t.Observe(n)
	}
}

// Observe records node: what the checks need when it is Ready, nothing otherwise. An
// update that changes nothing the checks read (the kubelet's heartbeats, conditions'
// times, resource versions) does not rebuild the snapshot.
func (t *Tracker) Observe(node *corev1.Node) {
	rec, ok := recordOf(node)
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.byNode[node.Name]
	switch {
	case ok && (!had || !old.equal(rec)):
		t.byNode[node.Name] = rec
	case !ok && had:
		delete(t.byNode, node.Name)
	default:
		return
	}
	t.changed()
}

// Forget drops a deleted node.
func (t *Tracker) Forget(nodeName string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, had := t.byNode[nodeName]; had {
		delete(t.byNode, nodeName)
		t.changed()
	}
}

// changed rebuilds the snapshot: at once when the last rebuild is at least the debounce
// delay old, so that a lone change (a node joining) is seen by the next admission; else
// once when that delay has passed, for every change until then. t.mu is held.
func (t *Tracker) changed() {
	if t.pending || t.listing {
		return
	}
	since := time.Since(t.built)
	if since >= t.debounce {
		t.rebuild()
		return
	}
	t.pending = true
	time.AfterFunc(t.debounce-since, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.pending = false
		t.rebuild()
	})
}

// rebuild groups the nodes into a new snapshot. t.mu is held.
func (t *Tracker) rebuild() {
	byShape := make(map[string]int)
	var groups []validate.NodeGroup
	names := make([]string, 0, len(t.byNode))
	for name := range t.byNode {
		names = append(names, name)
	}
	slices.Sort(names) // members in a stable order
	for _, name := range names {
		rec := t.byNode[name]
		i, ok := byShape[rec.shape]
		if !ok {
			i = len(groups)
			byShape[rec.shape] = i
			groups = append(groups, rec.group)
		}
		groups[i].Members = append(groups[i].Members, rec.member)
	}
	t.snapshot.Store(validate.NewNodes(groups))
	t.built = time.Now()
}

// recordOf reads what the checks need of a Ready node.
func recordOf(node *corev1.Node) (record, bool) {
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return record{}, false
	}
	plat := validate.NodePlatform{
		OS:           cmp.Or(node.Labels[corev1.LabelOSStable], node.Status.NodeInfo.OperatingSystem),
		Architecture: cmp.Or(node.Labels[corev1.LabelArchStable], node.Status.NodeInfo.Architecture),
	}
	if plat.OS == "" || plat.Architecture == "" {
		return record{}, false
	}
	if plat.OS == "windows" {
		plat.OSVersion = node.Labels[corev1.LabelWindowsBuild]
	}
	var names []string
	for _, img := range node.Status.Images {
		for _, n := range img.Names {
			if len(names) < maxImageNames {
				names = append(names, n)
			}
		}
	}
	g := validate.NodeGroup{
		Platform:        plat,
		Runtime:         validate.ParseRuntime(node.Status.NodeInfo.ContainerRuntimeVersion),
		Unschedulable:   node.Spec.Unschedulable,
		ImagesTruncated: len(node.Status.Images) >= DefaultNodeStatusMaxImages,
	}
	for _, taint := range node.Spec.Taints {
		// TimeAdded differs from node to node and says nothing about scheduling.
		g.Taints = append(g.Taints, corev1.Taint{Key: taint.Key, Value: taint.Value, Effect: taint.Effect})
	}
	slices.SortFunc(g.Taints, func(a, b corev1.Taint) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Value, b.Value), cmp.Compare(a.Effect, b.Effect))
	})
	return record{
		shape:  shapeOf(node, g),
		group:  g,
		member: validate.NodeMember{Name: node.Name, Labels: node.Labels, Images: validate.NewImageSet(names)},
	}, true
}

// shapeOf is the group key of a node: its labels but the hostname (unique to each node),
// taints, cordon, platform, runtime and whether its image list is full.
func shapeOf(node *corev1.Node, g validate.NodeGroup) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%d\x00%d\x00%t\x00%t\x00", g.Platform.OS, g.Platform.Architecture, g.Platform.OSVersion,
		g.Runtime.Kind, g.Runtime.Major, g.Unschedulable, g.ImagesTruncated)
	keys := make([]string, 0, len(node.Labels))
	for k := range node.Labels {
		if k != corev1.LabelHostname {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(node.Labels[k])
		b.WriteByte('\x00')
	}
	b.WriteByte('\x01')
	for _, taint := range g.Taints {
		fmt.Fprintf(&b, "%s=%s:%s\x00", taint.Key, taint.Value, taint.Effect)
	}
	return b.String()
}
