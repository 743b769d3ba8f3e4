// Package workload says which of a cluster's objects will make the kubelet pull, and what:
// the pod spec of a bare Pod, or of the template of a Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job or CronJob. The background re-check (pkg/recheck)
// and `kubectl pullgate audit` list a cluster through it, so both check the same objects the
// webhook checks at admission, each once: a Pod, ReplicaSet or Job created by a controller of
// one of those kinds is represented by that controller's template, not listed again.
package workload
