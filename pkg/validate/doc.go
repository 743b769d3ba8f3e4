// Package validate decides, before a pod exists, whether the kubelet's pull of each of its
// images will succeed, and explains every way it will not as a Finding with a stable reason
// code, a message that names the cause and a fix.
//
// The checks are pure: they take a pod spec, the pod's pull credentials, the os/arch of the
// nodes it may land on and a Registry to ask, and return findings. They never construct
// clients, speak HTTP or decode admission requests, so they can be tested and reused without
// a webhook around them (depcheck_test.go guards that).
package validate
