// Package webhook is pullgate's admission plumbing: it decodes Pods and workloads from
// AdmissionReviews, picks the pod template, gathers what the checks need from the cluster
// (namespace labels, pull secrets) and turns findings into an admission response — one
// denial message listing every failing container, or admission warnings kubectl prints.
// The checks themselves live in pkg/validate.
package webhook
