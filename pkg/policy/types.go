package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode says what a check's findings do to an admission.
type Mode string

const (
	// Enforce denies the admission.
	Enforce Mode = "enforce"
	// Warn admits with an admission warning.
	Warn Mode = "warn"
	// Off drops the finding.
	Off Mode = "off"
)

// Check names a group of reason codes that share a mode.
type Check string

const (
	// CheckInvalidReference covers InvalidReference.
	CheckInvalidReference Check = "invalidReference"
	// CheckExistence covers ImageNotFound, TagNotFound and DigestNotFound.
	CheckExistence Check = "existence"
	// CheckPullSecrets covers PullSecretMissing, PullSecretInvalid, NoCredentials and
	// CredentialsRejected.
	CheckPullSecrets Check = "pullSecrets"
	// CheckPlatform covers PlatformMismatch.
	CheckPlatform Check = "platform"
	// CheckUnpinnedTag covers UnpinnedTag.
	CheckUnpinnedTag Check = "unpinnedTag"
	// CheckRegistryAllowed covers RegistryNotAllowed.
	CheckRegistryAllowed Check = "registryAllowed"
)

// Policy is the content of the policy.yaml key of pullgate's ConfigMap.
type Policy struct {
	// Checks sets a mode per check; a check left out keeps its default.
	Checks map[Check]Mode `json:"checks,omitempty"`
	// OnRegistryError is what a registry that cannot be asked (unreachable, timeout, 429,
	// 5xx) does to an admission: Warn (default) admits with a warning, Enforce denies.
	OnRegistryError Mode `json:"onRegistryError,omitempty"`
	// OnMissingSecretInTemplate is what a pull secret or ServiceAccount that does not exist
	// does to a workload (Deployment, Job, CronJob, ...) whose pods would need it: Warn
	// (default) admits with a warning, Enforce denies as checks.pullSecrets says. Such objects
	// are often created together with the workload (helm install, an Argo CD sync, kubectl
	// apply -f dir/, External Secrets), and the kubelet reads secrets when it pulls. Bare Pods
	// are not affected: their pulls start at once.
	OnMissingSecretInTemplate Mode `json:"onMissingSecretInTemplate,omitempty"`
	// LookupTimeout bounds all registry work for one admission. Default 5s. It must stay
	// below the webhook configuration's timeoutSeconds.
	LookupTimeout metav1.Duration `json:"lookupTimeout,omitempty"`
	// Cache sets the registry cache's lifetimes and size.
	Cache CachePolicy `json:"cache,omitempty"`
	// ExemptNamespaces are never checked.
	ExemptNamespaces []string `json:"exemptNamespaces,omitempty"`
	// ExemptImages are path.Match patterns on the full reference as written in the pod
	// after normalisation (e.g. "registry.k8s.io/*", "docker.io/library/busybox:*"). A
	// pattern ending in "/**" matches everything under what its part before "/**" matches,
	// at any depth: "registry.example.com/**" exempts a whole registry, "*.example.com/**"
	// every registry of a domain, "ghcr.io/acme/**" a namespace.
	ExemptImages []string `json:"exemptImages,omitempty"`
	// NodeCredentials are registries the nodes authenticate to on their own (kubelet
	// credential provider plugins that pullgate does not run, or containerd's own
	// credentials): patterns as a credential provider's matchImages ("*.dkr.ecr.*.amazonaws.com",
	// "*-docker.pkg.dev", "gcr.io", "*.gcr.io", "*.azurecr.io"), matched with the kubelet's
	// rules (a "*" matches within one dot-separated part of the host; a path is a prefix). A
	// look-up there that is refused (401/403) while no pull secret of the pod has an entry
	// for it is a NodeCredentials warning, never a denial.
	NodeCredentials []string `json:"nodeCredentials,omitempty"`
	// Registries restricts and opens registry hosts.
	Registries RegistryPolicy `json:"registries,omitempty"`
	// NamespaceModeLabel is the namespace label whose value (enforce, warn or off) overrides
	// every check's mode for that namespace. Default "pullgate.io/mode".
	NamespaceModeLabel string `json:"namespaceModeLabel,omitempty"`
	// Mutations configures the mutating webhook (mutations.go); off by default.
	Mutations MutationPolicy `json:"mutations,omitempty"`
}

// CachePolicy sets the registry cache's lifetimes and bound.
type CachePolicy struct {
	// TagTTL is how long a tag → digest answer, and the answer that a digest exists, is
	// reused. Default 5m.
	TagTTL metav1.Duration `json:"tagTTL,omitempty"`
	// NegativeTTL is how long a "not found" answer is reused: at most 2s, which larger
	// values act as, so that "push, then apply" is not refused. Default 2s.
	NegativeTTL metav1.Duration `json:"negativeTTL,omitempty"`
	// MaxEntries bounds each cache (digest-addressed content, tags, negatives). Default 10000.
	MaxEntries int `json:"maxEntries,omitempty"`
}

// RegistryPolicy restricts which registries images may come from and which addresses the
// registry client may dial.
type RegistryPolicy struct {
	// Allowed, when not empty, is the only registry hosts images may name (RegistryNotAllowed
	// otherwise). Entries are host[:port], "*.example.com" matches subdomains.
	Allowed []string `json:"allowed,omitempty"`
	// Denied registry hosts are always refused; Denied wins over Allowed.
	Denied []string `json:"denied,omitempty"`
	// AllowLoopback lets the registry client dial 127.0.0.0/8 and ::1. Default false.
	AllowLoopback bool `json:"allowLoopback,omitempty"`
	// AllowPrivateNetworks lets the registry client dial RFC 1918 and fc00::/7 addresses.
	// Default false. Link-local and cloud metadata addresses are never dialled.
	AllowPrivateNetworks bool `json:"allowPrivateNetworks,omitempty"`
	// Insecure lists registry hosts reached over plain HTTP (loopback hosts always may be).
	Insecure []string `json:"insecure,omitempty"`
}
