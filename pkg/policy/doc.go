// Package policy is pullgate's configuration of what to check and how hard: a mode per
// check, what to do when a registry cannot be asked, deadlines, cache lifetimes, exemptions
// and registry allow/deny lists. It parses the policy.yaml a ConfigMap holds, strictly and
// with field-level errors, and keeps the last good policy when an update is invalid.
//
// Parse and LoadFile read a document; Default is the policy of an empty one. A Store holds
// the policy in force for the admission path (lock-free Load), and a ConfigMapWatcher keeps
// the Store in step with the ConfigMap. The decisions the checks and handlers need — ModeFor,
// RegistryErrorMode, NamespaceExempt, ImageExempt, RegistryAllowed — are methods on Policy,
// so that every caller reads the policy the same way. README-policy.md is the reference.
package policy
