package nodes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/pullgate/pullgate/pkg/validate"
)

// Platforms tracks the distinct platforms of Ready nodes.
type Platforms struct {
	mu     sync.Mutex
	byNode map[string]validate.Platform
	// snapshot is what readers get: rebuilt on change, never mutated.
	snapshot atomic.Pointer[[]validate.Platform]
}

// NewPlatforms returns an empty tracker; feed it with Watch or Observe/Forget.
func NewPlatforms() *Platforms {
	p := &Platforms{byNode: make(map[string]validate.Platform)}
	p.snapshot.Store(&[]validate.Platform{})
	return p
}

// Get returns the distinct platforms of Ready nodes, sorted. Callers must not modify it.
func (p *Platforms) Get() []validate.Platform { return *p.snapshot.Load() }

// Watch registers p with the cache's Node informer.
func (p *Platforms) Watch(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return fmt.Errorf("getting node informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.observe(obj) },
		UpdateFunc: func(_, obj any) { p.observe(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				p.Forget(n.Name)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	return nil
}

func (p *Platforms) observe(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		p.Observe(n)
	}
}

// Observe records node: its platform when it is Ready, nothing otherwise.
func (p *Platforms) Observe(node *corev1.Node) {
	plat, ok := platformOf(node)
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.byNode[node.Name]
	switch {
	case ok && (!had || old != plat):
		p.byNode[node.Name] = plat
	case !ok && had:
		delete(p.byNode, node.Name)
	default:
		return
	}
	p.rebuild()
}

// Forget drops a deleted node.
func (p *Platforms) Forget(nodeName string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, had := p.byNode[nodeName]; had {
		delete(p.byNode, nodeName)
		p.rebuild()
	}
}

func (p *Platforms) rebuild() {
	var out []validate.Platform
	for _, plat := range p.byNode {
		if !slices.Contains(out, plat) {
			out = append(out, plat)
		}
	}
	slices.SortFunc(out, func(a, b validate.Platform) int {
		return cmp.Or(cmp.Compare(a.OS, b.OS), cmp.Compare(a.Architecture, b.Architecture))
	})
	p.snapshot.Store(&out)
}

// platformOf reads a Ready node's platform from its well-known labels, falling back to what
// the kubelet reports in status.
func platformOf(node *corev1.Node) (validate.Platform, bool) {
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return validate.Platform{}, false
	}
	plat := validate.Platform{
		OS:           node.Labels[corev1.LabelOSStable],
		Architecture: node.Labels[corev1.LabelArchStable],
	}
	if plat.OS == "" {
		plat.OS = node.Status.NodeInfo.OperatingSystem
	}
	if plat.Architecture == "" {
		plat.Architecture = node.Status.NodeInfo.Architecture
	}
	return plat, plat.OS != "" && plat.Architecture != ""
}
