package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// admissionBuckets span a cached answer (ms) to a lookup at the deadline (s).
var admissionBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

var (
	admissionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_admissions_total",
		Help: "Admission requests answered, by object kind and decision (allowed, warned, denied, skipped, errored).",
	}, []string{"kind", "decision"})
	findingsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_findings_total",
		Help: "Findings reported, by reason code and severity.",
	}, []string{"reason", "severity"})
	admissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pullgate_admission_duration_seconds",
		Help:    "Time to answer an admission request, by object kind.",
		Buckets: admissionBuckets,
	}, []string{"kind"})
	mutationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_mutations_total",
		Help: "Mutations of pods, by mutation (mirror, pullSecret, pin; all for a failure before any) and outcome (applied, skipped, errored).",
	}, []string{"mutation", "outcome"})
	mutationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pullgate_mutation_duration_seconds",
		Help:    "Time to answer a mutating admission request.",
		Buckets: admissionBuckets,
	})
)

func init() {
	metrics.Registry.MustRegister(admissionsTotal, findingsTotal, admissionDuration, mutationsTotal, mutationDuration)
}
