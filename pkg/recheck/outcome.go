package recheck

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/workload"
)

// The results a report entry can have (OpenReports' enumeration).
const (
	resultPass  reportsv1alpha1.Result = "pass"
	resultFail  reportsv1alpha1.Result = "fail"
	resultWarn  reportsv1alpha1.Result = "warn"
	resultError reportsv1alpha1.Result = "error"
)

// ReportName is the name of pullgate's Report in each namespace.
const ReportName = "pullgate"

// managedBy labels the Reports pullgate writes, to find them again after a restart.
const managedBy = "app.kubernetes.io/managed-by"

// maxResults bounds the results of one Report, so that a namespace of thousands of
// workloads stays under the API server's object size limit: "pass" results go first, then
// "warn"; the summary still counts them all.
const maxResults = 1000

// outcome is what one re-check found of one workload.
type outcome struct {
	ns      string
	uid     types.UID
	gvkKind string
	ref     corev1.ObjectReference
	object  client.Object

	findings []validate.Finding
	// unreadable is why its pull secrets could not be read, if they could not.
	unreadable error
	// budgetRefused says a look-up was not made: the interval's budget for a registry was
	// spent.
	budgetRefused bool
	result        reportsv1alpha1.Result
	// since is when each of its results (by resultKey) was first seen, carried from one
	// re-check to the next so that a Report changes only when a result does.
	since map[string]metav1.Timestamp
}

func newOutcome(w workload.Workload) outcome {
	return outcome{
		ns: w.Namespace, uid: w.UID, gvkKind: w.GVK.Kind, ref: w.ObjectReference(), object: w.Object,
		result: resultPass,
	}
}

// resultOf is the report result of one finding of a workload. A registry that failed or
// was not asked is "error": pullgate does not know whether the pull would succeed. A pull
// that fails on some of the nodes (validate.Finding.OnSomeNodes) only warns at admission,
// where the new pod may land on the others, but is "fail" here: the workload's pods are
// running, and what the re-check predicts is a reschedule — a drain, an autoscaler, a
// DaemonSet's pod on each node — that lands them on those nodes.
func resultOf(f validate.Finding) reportsv1alpha1.Result {
	switch f.Reason {
	case validate.RegistryUnreachable, validate.RegistryRateLimited, validate.RegistryError:
		return resultError
	}
	if f.Severity == validate.Deny || f.OnSomeNodes {
		return resultFail
	}
	return resultWarn
}

// rank orders results from the best to the worst.
func rank(r reportsv1alpha1.Result) int {
	return map[reportsv1alpha1.Result]int{resultPass: 0, resultWarn: 1, resultError: 2, resultFail: 3}[r]
}

// classify sets the workload's result: its worst finding's.
func (o *outcome) classify() {
	o.result = resultPass
	if o.unreadable != nil {
		o.result = resultError
	}
	for _, f := range o.findings {
		if r := resultOf(f); rank(r) > rank(o.result) {
			o.result = r
		}
	}
}

// failing returns the reasons of its findings that make its pulls fail.
func (o *outcome) failing() []validate.Reason {
	var out []validate.Reason
	for _, f := range o.findings {
		if resultOf(f) == resultFail && !slices.Contains(out, f.Reason) {
			out = append(out, f.Reason)
		}
	}
	return out
}

func resultKey(r reportsv1alpha1.ReportResult) string {
	return strings.Join([]string{r.Rule, string(r.Result), r.Properties["container"], r.Properties["volume"], r.Properties["image"]}, "|")
}

// reportResults are the workload's entries in its namespace's Report.
func (o *outcome) reportResults(now metav1.Timestamp) []reportsv1alpha1.ReportResult {
	entry := func(rule string, res reportsv1alpha1.Result, msg string, props map[string]string) reportsv1alpha1.ReportResult {
		sev := reportsv1alpha1.ResultSeverity("info")
		switch res {
		case resultFail:
			sev = "high"
		case resultWarn, resultError:
			sev = "medium"
		}
		r := reportsv1alpha1.ReportResult{
			Source: "pullgate", Policy: "image-pull", Rule: rule, Category: "Image pull",
			Severity: sev, Result: res, Scored: true, Subjects: []corev1.ObjectReference{o.ref},
			Description: msg, Properties: props,
		}
		key := resultKey(r)
		if t, ok := o.since[key]; ok {
			r.Timestamp = t
		} else {
			r.Timestamp = now
			if o.since == nil {
				o.since = map[string]metav1.Timestamp{}
			}
			o.since[key] = now
		}
		return r
	}
	if o.unreadable != nil {
		return []reportsv1alpha1.ReportResult{entry("PullSecretsUnreadable", resultError,
			"pullgate could not read the workload's pull secrets: "+o.unreadable.Error(), nil)}
	}
	if len(o.findings) == 0 {
		return []reportsv1alpha1.ReportResult{entry("Pull", resultPass, "every image pulls", nil)}
	}
	out := make([]reportsv1alpha1.ReportResult, 0, len(o.findings))
	for _, f := range o.findings {
		props := map[string]string{"image": f.Image}
		if f.Container != "" {
			props["container"] = f.Container
		}
		if f.Volume != "" {
			props["volume"] = f.Volume
		}
		if f.Fix != "" {
			props["fix"] = f.Fix
		}
		out = append(out, entry(string(f.Reason), resultOf(f), f.Message, props))
	}
	return out
}

// carry keeps the times since which prev's results hold.
func (o *outcome) carry(prev outcome) {
	if prev.since != nil {
		o.since = maps.Clone(prev.since)
	}
}

// publish makes results the current state: Events for the workloads that turned bad or
// recovered, the Reports of namespaces, the gauges.
func (c *Controller) publish(ctx context.Context, results map[string]map[types.UID]outcome, namespaces map[string]bool) {
	now := metav1.Timestamp{Seconds: time.Now().Unix()}
	c.seed(ctx)
	seen := map[types.UID]bool{}
	for ns, byUID := range results {
		for uid, o := range byUID {
			seen[uid] = true
			if prev, ok := c.results[ns][uid]; ok {
				o.carry(prev)
			}
			o.reportResults(now) // fixes o.since for the results it has now
			byUID[uid] = o
			c.event(o)
		}
	}
	for uid := range c.bad {
		if !seen[uid] {
			delete(c.bad, uid) // gone, or in a namespace no longer checked
		}
	}
	c.results = results
	for ns := range namespaces {
		c.writeReport(ctx, ns, results[ns], now)
	}
	c.gauge(results)
}

// event records PullWillFail when o turns bad and PullWillSucceed when it recovers. A
// workload whose registry failed keeps its state: pullgate does not know more than before.
func (c *Controller) event(o outcome) {
	switch {
	case o.result == resultFail && !c.bad[o.uid]:
		c.bad[o.uid] = true
		transitionsTotal.WithLabelValues("fail").Inc()
		if c.opts.Events != nil && o.object != nil {
			c.opts.Events.Eventf(o.object, nil, corev1.EventTypeWarning, ReasonPullWillFail, "Recheck", "%s", failNote(o))
		}
	case (o.result == resultPass || o.result == resultWarn) && c.bad[o.uid]:
		delete(c.bad, o.uid)
		transitionsTotal.WithLabelValues("recover").Inc()
		if c.opts.Events != nil && o.object != nil {
			c.opts.Events.Eventf(o.object, nil, corev1.EventTypeNormal, ReasonPullWillSucceed, "Recheck", "%s", "pullgate's re-check finds that its images pull again")
		}
	}
}

// failNote is the Event's note: the first failing finding in the words of the webhook's
// denial, and how many more. An Event's note holds at most 1 kB.
func failNote(o outcome) string {
	var first validate.Finding
	n := 0
	for _, f := range o.findings {
		if resultOf(f) == resultFail {
			if n == 0 {
				first = f
			}
			n++
		}
	}
	where := "container " + first.Container
	if first.Volume != "" {
		where = "image volume " + first.Volume
	}
	note := fmt.Sprintf("the next pull will fail: %s: %s (%s): %s; fix: %s", first.Reason, where, first.Image, first.Message, first.Fix)
	if n > 1 {
		note += fmt.Sprintf(" (and %d more findings: kubectl get reports.openreports.io %s -n %s -o yaml)", n-1, ReportName, o.ns)
	}
	return truncate(note, 1000)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n-3] + "..."
}

// seed takes, once, the workloads the Reports of an earlier leader say fail as standing
// PullWillFail events, so that a restart or a new leader does not record them again.
func (c *Controller) seed(ctx context.Context) {
	if c.seeded || c.opts.Reports == nil {
		return
	}
	c.seeded = true
	var list reportsv1alpha1.ReportList
	if err := c.opts.Reports.List(ctx, &list, client.MatchingLabels{managedBy: "pullgate"}); err != nil {
		c.reportsUnavailable(err)
		return
	}
	for _, r := range list.Items {
		for _, res := range r.Results {
			if res.Result != resultFail {
				continue
			}
			for _, s := range res.Subjects {
				c.bad[s.UID] = true
			}
		}
	}
}

// reportsUnavailable turns Reports off when their kind is not installed: Events and gauges
// go on. Other errors are logged; the next re-check writes again.
func (c *Controller) reportsUnavailable(err error) bool {
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) && strings.Contains(err.Error(), "the server could not find the requested resource") {
		c.opts.Log.Info("The OpenReports Report kind (reports.openreports.io) is not installed: writing no reports; install its CRD (chart value recheck.reports.installCRD) to get them")
		c.opts.Reports = nil
		return true
	}
	c.opts.Log.Error(err, "Reading or writing pullgate's Reports")
	return false
}

// buildReport is namespace's Report from its workloads' outcomes.
func buildReport(ns string, byUID map[types.UID]outcome, now metav1.Timestamp) *reportsv1alpha1.Report {
	var results []reportsv1alpha1.ReportResult
	for _, o := range byUID {
		results = append(results, o.reportResults(now)...)
	}
	slices.SortFunc(results, func(a, b reportsv1alpha1.ReportResult) int {
		if d := rank(b.Result) - rank(a.Result); d != 0 {
			return d
		}
		if d := strings.Compare(a.Subjects[0].Kind+"/"+a.Subjects[0].Name, b.Subjects[0].Kind+"/"+b.Subjects[0].Name); d != 0 {
			return d
		}
		return strings.Compare(resultKey(a), resultKey(b))
	})
	var sum reportsv1alpha1.ReportSummary
	for _, r := range results {
		switch r.Result {
		case resultPass:
			sum.Pass++
		case resultFail:
			sum.Fail++
		case resultWarn:
			sum.Warn++
		case resultError:
			sum.Error++
		}
	}
	if len(results) > maxResults {
		results = results[:maxResults] // sorted worst first: the passes go
	}
	return &reportsv1alpha1.Report{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReportName, Labels: map[string]string{managedBy: "pullgate"}},
		Source:     "pullgate",
		Summary:    sum,
		Results:    results,
	}
}

// writeReport makes namespace's Report say what byUID says, writing only what changed; a
// namespace with no workload left has none.
func (c *Controller) writeReport(ctx context.Context, ns string, byUID map[types.UID]outcome, now metav1.Timestamp) {
	if c.opts.Reports == nil {
		return
	}
	want := buildReport(ns, byUID, now)
	var have reportsv1alpha1.Report
	err := c.opts.Reports.Get(ctx, types.NamespacedName{Namespace: ns, Name: ReportName}, &have)
	switch {
	case apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) && len(byUID) > 0:
		err = c.opts.Reports.Create(ctx, want)
	case apierrors.IsNotFound(err) && !meta.IsNoMatchError(err):
		return
	case err != nil:
	case len(byUID) == 0:
		err = client.IgnoreNotFound(c.opts.Reports.Delete(ctx, &have))
	case !equality.Semantic.DeepEqual(have.Results, want.Results) || have.Summary != want.Summary:
		have.Results, have.Summary, have.Source = want.Results, want.Summary, want.Source
		err = c.opts.Reports.Update(ctx, &have)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		c.reportsUnavailable(err)
	}
}
