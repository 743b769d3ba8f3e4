package recheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/workload"
)

// Event reasons. Like the finding reason codes, they are an interface: users filter on them.
const (
	// ReasonPullWillFail is the Warning Event of a workload whose next pull will fail.
	ReasonPullWillFail = "PullWillFail"
	// ReasonPullWillSucceed is the Normal Event of a workload that was reported
	// PullWillFail and pulls again.
	ReasonPullWillSucceed = "PullWillSucceed"
)

// Options configure a Controller. Checker, Policy, Reader and Lister are required.
type Options struct {
	// Interval is the time between two re-checks of everything. Required, > 0.
	Interval time.Duration
	// BudgetPerRegistry bounds the registry requests of one interval per registry host.
	// Zero means DefaultBudgetPerRegistry.
	BudgetPerRegistry int
	// Checker runs the checks; the webhook's own, sharing its registry cache.
	Checker *validate.Checker
	// Policy is the webhook's policy, read at every re-check.
	Policy *policy.Store
	// Reader reads Namespaces, Secrets and ServiceAccounts (the manager's cache).
	Reader client.Reader
	// APIReader reads a Secret or ServiceAccount missing from Reader again, and may be nil.
	APIReader client.Reader
	// Lister lists the workloads, page by page; the API server directly, so that the
	// cluster's Pods and workloads are not held in memory between re-checks.
	Lister client.Reader
	// Reports writes the OpenReports Reports; nil writes none.
	Reports client.Client
	// Events records the Events; nil records none.
	Events events.EventRecorder
	// Log is the controller's logger.
	Log logr.Logger
	// Parallelism bounds how many workloads are checked at once. Zero means 4.
	Parallelism int
}

// DefaultBudgetPerRegistry is the registry requests one interval may make to one registry.
const DefaultBudgetPerRegistry = 300

// Controller is the background re-check. Add it to a manager (it needs leader election);
// Notify* tell it what changed between intervals.
type Controller struct {
	opts Options

	mu sync.Mutex
	// pending is what changes since the last re-check ask to re-check; wake is signalled
	// when it grows.
	pending scope
	wake    chan struct{}
	// platforms are the node platforms seen Ready, to tell a new one.
	platforms map[string]bool

	// Only the re-check loop touches what follows.
	results map[string]map[types.UID]outcome // namespace → workload → outcome
	bad     map[types.UID]bool               // workloads whose PullWillFail event is standing
	budget  *lookup.Budget
	// offset is where the next full re-check starts: where the budget of the last one ran
	// out, so that the workloads at the end of the list are not always the ones left out.
	offset int
	seeded bool
	// series are the at-risk gauge's label values last set.
	series map[[2]string]float64
}

// New returns a Controller.
func New(opts Options) (*Controller, error) {
	var errs []error
	if opts.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s is not positive", opts.Interval))
	}
	if opts.BudgetPerRegistry < 0 {
		errs = append(errs, fmt.Errorf("budget per registry %d is negative", opts.BudgetPerRegistry))
	}
	if opts.Checker == nil || opts.Policy == nil || opts.Reader == nil || opts.Lister == nil {
		errs = append(errs, errors.New("Checker, Policy, Reader and Lister are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring the re-check: %w", err)
	}
	if opts.BudgetPerRegistry == 0 {
		opts.BudgetPerRegistry = DefaultBudgetPerRegistry
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = 4
	}
	return &Controller{
		opts:      opts,
		wake:      make(chan struct{}, 1),
		platforms: map[string]bool{},
		results:   map[string]map[types.UID]outcome{},
		bad:       map[types.UID]bool{},
	}, nil
}

// NeedLeaderElection says only the leader runs the re-check: two replicas would write the
// same reports and events twice.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start runs the re-check until ctx ends: everything at once, then every interval, and what
// changed in between.
func (c *Controller) Start(ctx context.Context) error {
	log := c.opts.Log
	log.Info("Background re-check started", "interval", c.opts.Interval, "budgetPerRegistry", c.opts.BudgetPerRegistry)
	ticker := time.NewTicker(c.opts.Interval)
	defer ticker.Stop()
	c.take() // what the informers' initial lists asked for is covered by the first run
	c.runInterval(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			c.take()
			c.runInterval(ctx)
		case <-c.wake:
			// Between intervals, against the interval's budget: a change cannot buy more
			// registry requests.
			s := c.take()
			if s.all {
				c.runAll(ctx)
			} else if !s.empty() {
				c.runSome(ctx, s)
			}
		}
	}
}

// scope is what a change asks to re-check.
type scope struct {
	all bool
	// secrets and serviceAccounts name, by namespace, what changed.
	secrets         map[string]map[string]bool
	serviceAccounts map[string]map[string]bool
}

func (s scope) empty() bool { return !s.all && len(s.secrets) == 0 && len(s.serviceAccounts) == 0 }

func add(m *map[string]map[string]bool, ns, name string) {
	if *m == nil {
		*m = map[string]map[string]bool{}
	}
	if (*m)[ns] == nil {
		(*m)[ns] = map[string]bool{}
	}
	(*m)[ns][name] = true
}

func (c *Controller) ask(f func(s *scope)) {
	c.mu.Lock()
	f(&c.pending)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Controller) take() scope {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.pending
	c.pending = scope{}
	return s
}

// NotifySecret asks to re-check the workloads of namespace that use the pull secret name,
// directly or through their ServiceAccount: it was created, changed or deleted.
func (c *Controller) NotifySecret(namespace, name string) {
	c.ask(func(s *scope) { add(&s.secrets, namespace, name) })
}

// NotifyServiceAccount asks to re-check the workloads of namespace running as the
// ServiceAccount name: its pull secrets changed, or it was created or deleted.
func (c *Controller) NotifyServiceAccount(namespace, name string) {
	c.ask(func(s *scope) { add(&s.serviceAccounts, namespace, name) })
}

// NotifyNode asks to re-check everything when node is Ready with a platform (and taints) no
// Ready node had: the workloads whose pods may land there may not pull on it.
func (c *Controller) NotifyNode(node *corev1.Node) {
	if !nodeReady(node) {
		return
	}
	key := platformKey(node)
	c.mu.Lock()
	seen := c.platforms[key]
	c.platforms[key] = true
	c.mu.Unlock()
	if !seen {
		c.ask(func(s *scope) { s.all = true })
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// platformKey is what of a node decides which workloads' pulls it may run: its platform and
// the taints that keep pods away.
func platformKey(n *corev1.Node) string {
	key := n.Status.NodeInfo.OperatingSystem + "/" + n.Status.NodeInfo.Architecture
	if v := n.Labels["kubernetes.io/arch"]; n.Status.NodeInfo.Architecture == "" && v != "" {
		key = n.Labels["kubernetes.io/os"] + "/" + v
	}
	var taints []string
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			taints = append(taints, t.Key+"="+t.Value+":"+string(t.Effect))
		}
	}
	slices.Sort(taints)
	return fmt.Sprintf("%s %v", key, taints)
}

// runInterval starts an interval: a new budget, and everything re-checked.
func (c *Controller) runInterval(ctx context.Context) {
	c.budget = lookup.NewBudget(c.opts.BudgetPerRegistry)
	c.runAll(ctx)
}

// runAll re-checks every workload, against the interval's budget.
func (c *Controller) runAll(ctx context.Context) {
	start := time.Now()
	if c.budget == nil {
		c.budget = lookup.NewBudget(c.opts.BudgetPerRegistry)
	}
	ws, err := workload.List(ctx, c.opts.Lister, "")
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		// A kind that could not be listed (RBAC, not served) is left out; the others are
		// re-checked. Its workloads keep what they had.
		c.opts.Log.Error(err, "Listing workloads for the re-check; going on with the others")
	}
	if len(ws) > 0 {
		c.offset %= len(ws)
		ws = append(ws[c.offset:], ws[:c.offset]...)
	}
	outs, refusedAt := c.checkAll(ctx, ws)
	if ctx.Err() != nil {
		return
	}
	if refusedAt >= 0 {
		c.offset = (c.offset + refusedAt) % len(ws)
	} else {
		c.offset = 0
	}
	results := map[string]map[types.UID]outcome{}
	for _, o := range outs {
		if results[o.ns] == nil {
			results[o.ns] = map[types.UID]outcome{}
		}
		results[o.ns][o.uid] = o
	}
	if err != nil {
		// Keep what the kinds that could not be listed had.
		for ns, byUID := range c.results {
			for uid, o := range byUID {
				if !listedKind(o.gvkKind, ws) {
					if results[ns] == nil {
						results[ns] = map[types.UID]outcome{}
					}
					results[ns][uid] = o
				}
			}
		}
	}
	namespaces := map[string]bool{}
	for ns := range c.results {
		namespaces[ns] = true
	}
	for ns := range results {
		namespaces[ns] = true
	}
	c.publish(ctx, results, namespaces)
	runsTotal.WithLabelValues("all").Inc()
	runDuration.Observe(time.Since(start).Seconds())
	lastRun.SetToCurrentTime()
	c.opts.Log.V(1).Info("Re-checked every workload", "workloads", len(ws), "duration", time.Since(start).Round(time.Millisecond), "requests", c.budget.Used())
}

func listedKind(kind string, ws []workload.Workload) bool {
	return slices.ContainsFunc(ws, func(w workload.Workload) bool { return w.GVK.Kind == kind })
}

// runSome re-checks the workloads a change touches, against the interval's budget.
func (c *Controller) runSome(ctx context.Context, s scope) {
	start := time.Now()
	if c.budget == nil {
		c.budget = lookup.NewBudget(c.opts.BudgetPerRegistry)
	}
	namespaces := map[string]bool{}
	for ns := range s.secrets {
		namespaces[ns] = true
	}
	for ns := range s.serviceAccounts {
		namespaces[ns] = true
	}
	results := map[string]map[types.UID]outcome{}
	for ns := range namespaces {
		ws, err := workload.List(ctx, c.opts.Lister, ns)
		if err != nil {
			c.opts.Log.Error(err, "Listing workloads for the re-check", "namespace", ns)
		}
		var touched []workload.Workload
		for _, w := range ws {
			if c.touches(ctx, w, s.secrets[ns], s.serviceAccounts[ns]) {
				touched = append(touched, w)
			}
		}
		outs, _ := c.checkAll(ctx, touched)
		if ctx.Err() != nil {
			return
		}
		// Start from what the namespace had, and replace what was re-checked.
		results[ns] = map[types.UID]outcome{}
		for uid, o := range c.results[ns] {
			results[ns][uid] = o
		}
		for _, o := range outs {
			results[ns][o.uid] = o
		}
	}
	for ns, byUID := range c.results {
		if !namespaces[ns] {
			results[ns] = byUID
		}
	}
	c.publish(ctx, results, namespaces)
	runsTotal.WithLabelValues("change").Inc()
	c.opts.Log.V(1).Info("Re-checked what a change touches", "namespaces", len(namespaces), "duration", time.Since(start).Round(time.Millisecond))
}

// touches reports whether w uses one of secrets (directly or through its ServiceAccount, as
// pullsecrets.ForPod picks them) or runs as one of serviceAccounts.
func (c *Controller) touches(ctx context.Context, w workload.Workload, secrets, serviceAccounts map[string]bool) bool {
	sa := w.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if serviceAccounts[sa] {
		return true
	}
	if len(secrets) == 0 {
		return false
	}
	keyring, err := pullsecrets.ForPod(ctx, c.opts.Reader, w.Namespace, w.Spec)
	if err != nil {
		return true // re-checking it says what went wrong
	}
	return slices.ContainsFunc(keyring.SecretNames, func(name string) bool { return secrets[name] })
}

// checkAll checks ws, at most Parallelism at once, and returns their outcomes in ws's order,
// and the index of the first workload a look-up of which the budget refused (-1 if none).
func (c *Controller) checkAll(ctx context.Context, ws []workload.Workload) ([]outcome, int) {
	outs := make([]outcome, len(ws))
	pol := checkPolicy(c.opts.Policy.Load())
	sem := make(chan struct{}, c.opts.Parallelism)
	var wg sync.WaitGroup
	for i, w := range ws {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			outs[i] = c.check(ctx, pol, w)
		}()
	}
	wg.Wait()
	refusedAt := -1
	var kept []outcome
	for i, o := range outs {
		if o.uid == "" { // skipped: an exempt namespace, or ctx ended
			continue
		}
		if o.budgetRefused && refusedAt < 0 {
			refusedAt = i
		}
		kept = append(kept, o)
	}
	return kept, refusedAt
}

// checkPolicy is the policy a re-check applies: the webhook's, except that a registry that
// cannot be asked is always reported ("error"), even where admissions ignore it, since
// saying nothing would read as "pulls".
func checkPolicy(p *policy.Policy) *policy.Policy {
	if p.OnRegistryError != policy.Off {
		return p
	}
	cp := *p
	cp.OnRegistryError = policy.Warn
	return &cp
}

// check re-checks one workload as the webhook would admit it now.
func (c *Controller) check(ctx context.Context, pol *policy.Policy, w workload.Workload) outcome {
	if pol.NamespaceExempt(w.Namespace) {
		return outcome{}
	}
	var ns corev1.Namespace
	var nsLabels map[string]string
	if err := c.opts.Reader.Get(ctx, types.NamespacedName{Name: w.Namespace}, &ns); err == nil {
		nsLabels = ns.Labels
	}
	if pol.AllOff(nsLabels) {
		return outcome{}
	}
	o := newOutcome(w)
	// Each workload gets the admission's deadline; the budget, not the clock, bounds a run.
	ctx, cancel := context.WithTimeout(ctx, pol.LookupTimeout.Duration)
	defer cancel()
	var opts []pullsecrets.Option
	if c.opts.APIReader != nil {
		opts = append(opts, pullsecrets.WithAPIReader(c.opts.APIReader))
	}
	keyring, err := pullsecrets.ForPod(ctx, c.opts.Reader, w.Namespace, w.Spec, opts...)
	if err != nil {
		o.unreadable = err
		return o
	}
	budget := c.budget.Share()
	o.findings = c.opts.Checker.Check(lookup.WithBudget(ctx, budget), pol, w.Pod(nsLabels, keyring))
	o.budgetRefused = budget.Refused() > 0
	o.classify()
	return o
}
