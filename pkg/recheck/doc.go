// Package recheck is the background re-check: it finds the workloads whose next pull will
// fail although they were admitted — a tag deleted or moved to an image of another
// architecture, a digest garbage-collected, a pull secret rotated or gone, a node pool of
// another architecture joined — before a node drain or an autoscaler turns them into
// ImagePullBackOff.
//
// One replica runs it (it needs leader election). Every interval it re-checks every workload
// of the kinds the webhook checks, and every bare Pod (pkg/workload), with the webhook's own
// engine: pkg/validate's checks, the kubelet's keyring (pkg/pullsecrets) and the shared
// registry cache and circuit breakers (pkg/registrycache). Between intervals it re-checks
// only what a change touches: the workloads using a pull secret that changed or went, those
// running as a ServiceAccount whose pull secrets changed, and everything when a node of a
// new platform becomes Ready.
//
// It never causes the rate limits it warns about: the registry requests of one interval
// count against a per-registry budget (lookup.Budget); a look-up past it is not made and the
// workload is reported "error" until the next interval, which starts where the last one ran
// out. A workload is looked up through the registry cache, so one image shared by many
// workloads costs one look-up per tag lifetime, and a registry counting GETs as pulls
// (Docker Hub) is asked with HEAD first, as at admission.
//
// Results go where people already look:
//   - an OpenReports Report (openreports.io/v1alpha1, the successor of the wg-policy
//     PolicyReport that Kyverno 1.15+ and Policy Reporter read) per namespace, named
//     "pullgate", one result per finding and one "pass" per workload that pulls;
//   - a Warning Event (reason PullWillFail) on the workload when it turns bad, and a Normal
//     one (PullWillSucceed) when it recovers, never repeated at every interval;
//   - Prometheus gauges of the workloads at risk by namespace and reason, the namespaces
//     bounded so that a cluster of thousands cannot make thousands of series.
//
// A workload whose pull secrets could not be read, or whose registry failed or was not asked
// (budget), is reported "error", never "fail": pullgate does not know.
package recheck
