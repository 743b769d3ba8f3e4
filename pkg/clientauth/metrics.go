package clientauth

import "sigs.k8s.io/controller-runtime/pkg/metrics"

func init() {
	metrics.Registry.MustRegister(RefusedCallers)
}
