package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

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
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"kind"})
)

func init() {
	metrics.Registry.MustRegister(admissionsTotal, findingsTotal, admissionDuration)
}
