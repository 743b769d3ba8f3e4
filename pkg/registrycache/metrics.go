package registrycache

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics carry the registry host and nothing finer: never an image, tag or user.
var (
	registryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_registry_requests_total",
		Help: "HTTP requests sent to registries (including pings and token requests), by host, method and status code (\"error\" when no response).",
	}, []string{"host", "method", "code"})

	registryRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pullgate_registry_request_duration_seconds",
		Help:    "Time until a registry answered an HTTP request (response headers), by host.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"host"})

	cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_cache_lookups_total",
		Help: "Registry cache lookups by cache (manifest, platforms, tags) and result (hit, miss).",
	}, []string{"cache", "result"})

	circuitOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pullgate_registry_circuit_open",
		Help: "1 while the circuit breaker of a registry host is open, else 0.",
	}, []string{"host"})
)

func init() {
	metrics.Registry.MustRegister(registryRequests, registryRequestDuration, cacheLookups, circuitOpen)
}

const (
	cacheManifest  = "manifest"
	cachePlatforms = "platforms"
	cacheChildren  = "children"
	cacheTags      = "tags"
)

func countLookup(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	cacheLookups.WithLabelValues(cache, result).Inc()
}
