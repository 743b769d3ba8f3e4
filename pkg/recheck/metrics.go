package recheck

import (
	"cmp"
	"slices"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// maxNamespaceSeries bounds the namespaces the at-risk gauge names; the others are summed
// under namespace "" so that a cluster of thousands of namespaces cannot make thousands of
// series. The namespaces with the most workloads at risk are the ones named.
const maxNamespaceSeries = 50

var (
	atRisk = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pullgate_recheck_workloads_at_risk",
		Help: "Workloads whose next pull will fail, by namespace and reason, as of the last re-check. The namespaces beyond the 50 with the most are summed under namespace=\"\".",
	}, []string{"namespace", "reason"})
	workloads = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pullgate_recheck_workloads",
		Help: "Workloads re-checked, by result (pass, warn, fail, error), as of the last re-check.",
	}, []string{"result"})
	runsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_recheck_runs_total",
		Help: "Re-checks run, by what they covered: all (every workload: an interval, or a node of a new platform) or change (what a changed pull secret or ServiceAccount touches).",
	}, []string{"trigger"})
	runDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pullgate_recheck_duration_seconds",
		Help:    "How long a re-check of everything took.",
		Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
	})
	lastRun = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pullgate_recheck_last_run_timestamp_seconds",
		Help: "When the last re-check of everything ended (Unix time).",
	})
	transitionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_recheck_transitions_total",
		Help: "Workloads that turned bad (fail) or recovered (recover), as the PullWillFail and PullWillSucceed events record them.",
	}, []string{"to"})
)

func init() {
	metrics.Registry.MustRegister(atRisk, workloads, runsTotal, runDuration, lastRun, transitionsTotal)
}

// gauge sets the gauges from the current outcomes.
func (c *Controller) gauge(results map[string]map[types.UID]outcome) {
	type nsCount struct {
		ns       string
		total    int
		byReason map[string]int
	}
	var counts []nsCount
	byResult := map[reportsv1alpha1.Result]int{resultPass: 0, resultWarn: 0, resultFail: 0, resultError: 0}
	for ns, byUID := range results {
		n := nsCount{ns: ns, byReason: map[string]int{}}
		for _, o := range byUID {
			byResult[o.result]++
			if o.result != resultFail {
				continue
			}
			n.total++
			for _, r := range o.failing() {
				n.byReason[string(r)]++
			}
		}
		if n.total > 0 {
			counts = append(counts, n)
		}
	}
	slices.SortFunc(counts, func(a, b nsCount) int {
		return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.ns, b.ns))
	})
	// Set the new values, then delete the series no longer at risk: a Reset first would
	// let a scrape in between read "nothing at risk".
	series := map[[2]string]float64{}
	for i, n := range counts {
		label := n.ns
		if i >= maxNamespaceSeries {
			label = ""
		}
		for reason, k := range n.byReason {
			series[[2]string{label, reason}] += float64(k)
		}
	}
	for key, v := range series {
		atRisk.WithLabelValues(key[0], key[1]).Set(v)
	}
	for key := range c.series {
		if _, ok := series[key]; !ok {
			atRisk.DeleteLabelValues(key[0], key[1])
		}
	}
	c.series = series
	for r, k := range byResult {
		workloads.WithLabelValues(string(r)).Set(float64(k))
	}
}
