package recheck

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/workload"
)

// world is a cluster (controller-runtime's fake client, which keeps objects as an API
// server does) and a real registry, with a re-check over them.
type world struct {
	t      *testing.T
	reg    *testregistry.Registry
	client client.Client
	events *events.FakeRecorder
	nodes  atomic.Pointer[validate.Nodes]
	c      *Controller
}

func newWorld(t *testing.T, budget int, objs ...client.Object) *world {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := reportsv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, reg: testregistry.New(t), events: events.NewFakeRecorder(100)}
	w.nodes.Store(testnodes.Snapshot(testnodes.Ready("amd64-1", "linux", "amd64")))
	objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	w.client = fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	pol := policy.Default()
	pol.Registries.AllowLoopback = true
	// Every re-check asks the registry again: a deleted tag is seen at the next one.
	cache := registrycache.New(
		registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
		registrycache.WithTagTTL(0), registrycache.WithNegativeTTL(0),
	)
	c, err := New(Options{
		Interval:          time.Hour,
		BudgetPerRegistry: budget,
		Checker:           &validate.Checker{Registry: cache, Nodes: w.nodes.Load},
		Policy:            policy.NewStore(pol),
		Reader:            w.client,
		Lister:            w.client,
		Reports:           w.client,
		Events:            w.events,
		Log:               logr.Discard(),
		Parallelism:       1,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.c = c
	return w
}

func deployment(name, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}},
		}}},
	}
}

func daemonSet(name, image string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "agent", Image: image}},
		}}},
	}
}

// report returns the namespace's Report's results as "Kind/name Rule result" lines, and
// its summary.
func (w *world) report() ([]string, reportsv1alpha1.ReportSummary) {
	w.t.Helper()
	var r reportsv1alpha1.Report
	if err := w.client.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: ReportName}, &r); err != nil {
		w.t.Fatalf("reading the Report: %v", err)
	}
	var lines []string
	for _, res := range r.Results {
		lines = append(lines, fmt.Sprintf("%s/%s %s %s", res.Subjects[0].Kind, res.Subjects[0].Name, res.Rule, res.Result))
	}
	return lines, r.Summary
}

// drainEvents returns the events recorded since the last call, as "Type Reason".
func (w *world) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-w.events.Events:
			typ, rest, _ := strings.Cut(e, " ")
			reason, _, _ := strings.Cut(rest, " ")
			out = append(out, typ+" "+reason)
		default:
			return out
		}
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestRecheckFindsAndClears(t *testing.T) {
	atRisk.Reset()
	ctx := context.Background()
	w := newWorld(t, 1000)
	w.reg.PushImage(t, "app", "v1", "linux", "amd64")
	// The agent's image is an index of one platform: on another, the runtime finds no
	// manifest to pull.
	w.reg.PushIndex(t, "agent", "v1", "linux/amd64")
	web, agent := deployment("web", w.reg.Ref("app", ":v1")), daemonSet("agent", w.reg.Ref("agent", ":v1"))
	for _, o := range []client.Object{web, agent} {
		if err := w.client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	w.c.runAll(ctx)
	lines, sum := w.report()
	if want := []string{"DaemonSet/agent Pull pass", "Deployment/web Pull pass"}; !equal(lines, want) || sum.Pass != 2 {
		t.Fatalf("all good: report %q %+v, want %q", lines, sum, want)
	}
	if ev := w.drainEvents(); len(ev) != 0 {
		t.Fatalf("all good: events %q, want none", ev)
	}

	// The tag is deleted after admission.
	w.reg.DeleteTag(t, "app", "v1")
	w.reg.DeleteTag(t, "agent", "v1")
	w.c.runAll(ctx)
	lines, sum = w.report()
	if want := []string{"DaemonSet/agent TagNotFound fail", "Deployment/web TagNotFound fail"}; !equal(lines, want) || sum.Fail != 2 {
		t.Fatalf("tag deleted: report %q %+v, want %q", lines, sum, want)
	}
	if ev := w.drainEvents(); !equal(ev, []string{"Warning PullWillFail", "Warning PullWillFail"}) {
		t.Fatalf("tag deleted: events %q, want two PullWillFail", ev)
	}
	if got := testutil.ToFloat64(atRisk.WithLabelValues("shop", "TagNotFound")); got != 2 {
		t.Errorf("at-risk gauge = %v, want 2", got)
	}
	// Not repeated at every interval, and the Report is not written again.
	rv := func() string {
		var r reportsv1alpha1.Report
		if err := w.client.Get(ctx, types.NamespacedName{Namespace: "shop", Name: ReportName}, &r); err != nil {
			t.Fatal(err)
		}
		return r.ResourceVersion
	}
	before := rv()
	w.c.runAll(ctx)
	if ev := w.drainEvents(); len(ev) != 0 {
		t.Fatalf("still deleted: events %q, want none", ev)
	}
	if after := rv(); after != before {
		t.Errorf("the Report was written again with nothing changed (resourceVersion %s → %s)", before, after)
	}

	// Pushed again: both recover.
	w.reg.PushImage(t, "app", "v1", "linux", "amd64")
	w.reg.PushIndex(t, "agent", "v1", "linux/amd64")
	w.c.runAll(ctx)
	lines, _ = w.report()
	if want := []string{"DaemonSet/agent Pull pass", "Deployment/web Pull pass"}; !equal(lines, want) {
		t.Fatalf("restored: report %q, want %q", lines, want)
	}
	if ev := w.drainEvents(); !equal(ev, []string{"Normal PullWillSucceed", "Normal PullWillSucceed"}) {
		t.Fatalf("restored: events %q, want two PullWillSucceed", ev)
	}
	if got := testutil.CollectAndCount(atRisk); got != 0 {
		t.Errorf("at-risk gauge has %d series after recovery, want 0", got)
	}

	// A node of another platform joins: the amd64-only DaemonSet's pods will land there.
	arm := testnodes.Ready("arm64-1", "linux", "arm64")
	w.nodes.Store(testnodes.Snapshot(testnodes.Ready("amd64-1", "linux", "amd64"), arm))
	w.c.NotifyNode(testnodes.Ready("amd64-1", "linux", "amd64"))
	w.c.take() // the first node is not news: it is what the first run saw
	w.c.NotifyNode(arm)
	if s := w.c.take(); !s.all {
		t.Fatalf("a node of a new platform asked for %+v, want everything", s)
	}
	w.c.NotifyNode(arm)
	if s := w.c.take(); !s.empty() {
		t.Fatalf("the same node again asked for %+v, want nothing", s)
	}
	w.c.runAll(ctx)
	lines, _ = w.report()
	// The DaemonSet will have a pod on the arm64 node, whose pull finds no manifest; the
	// Deployment's single-arch amd64 image does not run there. Both warn at admission (a new
	// pod may land on the amd64 node) and both fail here: a reschedule may land them there.
	if want := []string{"DaemonSet/agent PlatformMismatch fail", "Deployment/web PlatformMismatch fail"}; !equal(lines, want) {
		t.Fatalf("arm64 node joined: report %q, want %q", lines, want)
	}
	if ev := w.drainEvents(); !equal(ev, []string{"Warning PullWillFail", "Warning PullWillFail"}) {
		t.Fatalf("arm64 node joined: events %q, want two PullWillFail", ev)
	}

	// The workloads go: so does the Report.
	for _, o := range []client.Object{web, agent} {
		if err := w.client.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	w.c.runAll(ctx)
	var r reportsv1alpha1.Report
	if err := w.client.Get(ctx, types.NamespacedName{Namespace: "shop", Name: ReportName}, &r); err == nil {
		t.Fatalf("the Report of a namespace with no workloads is still there: %+v", r.Results)
	}
}

// TestBudgetBoundsRequestsPerInterval counts the registry requests of each re-check of 30
// workloads of distinct images under a budget of 10 requests: never more than the budget and
// the one look-up in flight when it ran out, and every workload is checked within a few
// intervals because each starts where the last one ran out.
func TestBudgetBoundsRequestsPerInterval(t *testing.T) {
	ctx := context.Background()
	const budget, n = 10, 30
	w := newWorld(t, budget)
	for i := range n {
		repo := fmt.Sprintf("app%02d", i)
		w.reg.PushImage(t, repo, "v1", "linux", "amd64")
		if err := w.client.Create(ctx, deployment(repo, w.reg.Ref(repo, ":v1"))); err != nil {
			t.Fatal(err)
		}
	}
	checked := map[types.UID]bool{}
	const intervals = 8
	for interval := 1; interval <= intervals; interval++ {
		w.reg.Reset()
		w.c.runInterval(ctx)
		// One look-up is at most three requests (ping, token, manifest); one may be in
		// flight when the budget runs out.
		if got := w.reg.TotalRequests(); got > budget+3 {
			t.Errorf("interval %d: %d registry requests, budget %d", interval, got, budget)
		}
		pass, errs := 0, 0
		for uid, o := range w.c.results["shop"] {
			switch o.result {
			case resultPass:
				pass++
				checked[uid] = true
			case resultError:
				errs++
				if !o.budgetRefused {
					t.Errorf("interval %d: %s is error but not refused by the budget: %v", interval, o.ref.Name, o.findings)
				}
			default:
				t.Errorf("interval %d: %s is %s: %v", interval, o.ref.Name, o.result, o.findings)
			}
		}
		if pass == 0 || pass+errs != n {
			t.Errorf("interval %d: %d pass, %d error of %d", interval, pass, errs, n)
		}
		t.Logf("interval %d: %d requests, %d checked, %d left for later", interval, w.reg.TotalRequests(), pass, errs)
	}
	if len(checked) != n {
		t.Errorf("after %d intervals %d of %d workloads were checked: the budget always stops the same ones", intervals, len(checked), n)
	}
	// A node of a new platform re-checks everything between intervals, against the same
	// budget: it cannot buy more requests.
	w.reg.Reset()
	w.c.runAll(ctx)
	if got := w.reg.TotalRequests(); got > 0 {
		t.Errorf("a re-check between intervals, budget spent, made %d registry requests", got)
	}
	// A refused look-up is never a verdict: no event, nothing at risk.
	for _, ev := range w.drainEvents() {
		t.Errorf("event %q for a workload the budget left unchecked", ev)
	}
}

func TestTouches(t *testing.T) {
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "builder"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sa-creds"}}}
	w := newWorld(t, 10, sa)
	spec := func(saName string, secrets ...string) *appsv1.Deployment {
		d := deployment("d", "x")
		d.Spec.Template.Spec.ServiceAccountName = saName
		for _, s := range secrets {
			d.Spec.Template.Spec.ImagePullSecrets = append(d.Spec.Template.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return d
	}
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	tests := []struct {
		desc         string
		obj          *appsv1.Deployment
		secrets, sas map[string]bool
		want         bool
	}{
		{"its own pull secret changed", spec("", "creds"), set("creds"), nil, true},
		{"another secret changed", spec("", "creds"), set("other"), nil, false},
		{"its ServiceAccount's pull secret changed", spec("builder"), set("sa-creds"), nil, true},
		{"its ServiceAccount's secret is not used when it lists its own", spec("builder", "creds"), set("sa-creds"), nil, false},
		{"its ServiceAccount changed", spec("builder"), nil, set("builder"), true},
		{"the default ServiceAccount changed", spec(""), nil, set("default"), true},
		{"another ServiceAccount changed", spec("builder"), nil, set("default"), false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			wl, ok := workload.Of(tc.obj)
			if !ok {
				t.Fatal("not a workload")
			}
			if got := w.c.touches(ctx, wl, tc.secrets, tc.sas); got != tc.want {
				t.Errorf("touches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRunSomeRechecksOnlyWhatAChangeTouches(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 1000, testregistry.PullSecret("shop", "creds", "127.0.0.1:1", "u", "p"))
	w.reg.PushImage(t, "app", "v1", "linux", "amd64")
	a, b := deployment("a", w.reg.Ref("app", ":v1")), deployment("b", w.reg.Ref("app", ":v1"))
	a.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "creds"}}
	for _, o := range []client.Object{a, b} {
		if err := w.client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	w.c.runAll(ctx)
	w.reg.Reset()
	w.c.NotifySecret("shop", "creds")
	w.c.runSome(ctx, w.c.take())
	// Only a uses creds: one manifest request (the ping is known), not two.
	if got := w.reg.Requests("HEAD", "manifests") + w.reg.Requests("GET", "manifests"); got != 1 {
		t.Errorf("re-check after a secret change made %d manifest requests, want 1 (only the workload using it)", got)
	}
	if lines, _ := w.report(); len(lines) != 2 {
		t.Errorf("report after a partial re-check = %q, want both workloads still listed", lines)
	}
}

// TestAtRiskGaugeIsBounded: however many namespaces have workloads at risk, the gauge names
// at most maxNamespaceSeries of them (those with the most) and sums the rest under "".
func TestAtRiskGaugeIsBounded(t *testing.T) {
	atRisk.Reset() // other tests' controllers set it too
	w := newWorld(t, 10)
	results := map[string]map[types.UID]outcome{}
	for i := range maxNamespaceSeries + 20 {
		ns := fmt.Sprintf("ns-%03d", i)
		n := 1
		if i < 3 {
			n = 5 // the three namespaces with the most are named whatever their order
		}
		results[ns] = map[types.UID]outcome{}
		for j := range n {
			results[ns][types.UID(fmt.Sprintf("%s-%d", ns, j))] = outcome{result: resultFail,
				findings: []validate.Finding{{Reason: validate.TagNotFound, Severity: validate.Deny}}}
		}
	}
	w.c.gauge(results)
	if got := testutil.CollectAndCount(atRisk); got != maxNamespaceSeries+1 {
		t.Errorf("%d series, want %d", got, maxNamespaceSeries+1)
	}
	if got := testutil.ToFloat64(atRisk.WithLabelValues("ns-001", "TagNotFound")); got != 5 {
		t.Errorf("ns-001 = %v, want 5", got)
	}
	total := 0.0
	for _, v := range w.c.series {
		total += v
	}
	if want := float64(3*5 + maxNamespaceSeries + 17); total != want {
		t.Errorf("sum over the series = %v, want %v: every workload at risk counted once", total, want)
	}
	w.c.gauge(map[string]map[types.UID]outcome{})
	if got := testutil.CollectAndCount(atRisk); got != 0 {
		t.Errorf("%d series after everything recovered, want 0", got)
	}
}
