// Package policy is pullgate's configuration of what to check and how hard: a mode per
// check, what to do when a registry cannot be asked, deadlines, cache lifetimes, exemptions
// and registry allow/deny lists. It parses the policy.yaml a ConfigMap holds, strictly and
// with field-level errors, and keeps the last good policy when an update is invalid.
package policy
