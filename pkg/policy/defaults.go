package policy

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults and bounds. They are the values Default fills in and the limits Validate holds
// a policy to.
const (
	// DefaultLookupTimeout is LookupTimeout when the policy does not set it.
	DefaultLookupTimeout = 5 * time.Second
	// MaxLookupTimeout is the largest LookupTimeout Validate accepts: the API server gives a
	// webhook at most 30s, and the response still has to be built and sent.
	MaxLookupTimeout = 25 * time.Second
	// DefaultTagTTL is Cache.TagTTL when the policy does not set it.
	DefaultTagTTL = 5 * time.Minute
	// DefaultNegativeTTL is Cache.NegativeTTL when the policy does not set it: the registry
	// cache's burst window, which is also the most it uses (a denial never rests on an
	// older "not found").
	DefaultNegativeTTL = 2 * time.Second
	// DefaultMaxEntries is Cache.MaxEntries when the policy does not set it.
	DefaultMaxEntries = 10000
	// MaxMaxEntries is the largest Cache.MaxEntries Validate accepts.
	MaxMaxEntries = 1000000
	// DefaultNamespaceModeLabel is NamespaceModeLabel when the policy does not set it.
	DefaultNamespaceModeLabel = "pullgate.io/mode"
	// DefaultOnRegistryError is OnRegistryError when the policy does not set it.
	DefaultOnRegistryError = Warn
	// DefaultOnMissingSecretInTemplate is OnMissingSecretInTemplate when the policy does not
	// set it.
	DefaultOnMissingSecretInTemplate = Warn
	// MaxSize is the largest policy document Parse and LoadFile read, in bytes (1 MiB, the
	// most a ConfigMap can hold anyway).
	MaxSize = 1 << 20
)

// defaultModes is the mode of every known check when the policy does not set it. Its keys
// are the set of known checks.
var defaultModes = map[Check]Mode{
	CheckInvalidReference: Enforce,
	CheckExistence:        Enforce,
	CheckPullSecrets:      Enforce,
	CheckPlatform:         Enforce,
	CheckUnpinnedTag:      Warn,
	CheckRegistryAllowed:  Enforce,
}

// Checks returns every check a policy may name, sorted.
func Checks() []Check {
	return []Check{
		CheckExistence,
		CheckInvalidReference,
		CheckPlatform,
		CheckPullSecrets,
		CheckRegistryAllowed,
		CheckUnpinnedTag,
	}
}

// DefaultMode is the mode of check when a policy does not set it. It is Warn for a check
// pullgate does not know.
func DefaultMode(check Check) Mode {
	if m, ok := defaultModes[check]; ok {
		return m
	}
	return Warn
}

// Valid reports whether m is Enforce, Warn or Off.
func (m Mode) Valid() bool {
	switch m {
	case Enforce, Warn, Off:
		return true
	}
	return false
}

// Default returns a new policy with every field set to its default: invalidReference,
// existence, pullSecrets, platform and registryAllowed enforce, unpinnedTag warns; registry
// errors warn; a pull secret or ServiceAccount missing for a workload's pod template warns;
// lookups time out after 5s; tags are cached for 5m, "not found" for 30s, at most 10000
// entries per cache; no namespace or image is exempt (the webhook configuration's
// namespaceSelector exempts kube-system and pullgate's own namespace); every registry is
// allowed; the namespace label "pullgate.io/mode" overrides modes.
//
// Each call returns a policy that shares nothing with any other.
func Default() *Policy {
	checks := make(map[Check]Mode, len(defaultModes))
	for c, m := range defaultModes {
		checks[c] = m
	}
	return &Policy{
		Checks:                    checks,
		OnRegistryError:           DefaultOnRegistryError,
		OnMissingSecretInTemplate: DefaultOnMissingSecretInTemplate,
		LookupTimeout:             metav1.Duration{Duration: DefaultLookupTimeout},
		Cache: CachePolicy{
			TagTTL:      metav1.Duration{Duration: DefaultTagTTL},
			NegativeTTL: metav1.Duration{Duration: DefaultNegativeTTL},
			MaxEntries:  DefaultMaxEntries,
		},
		NamespaceModeLabel: DefaultNamespaceModeLabel,
	}
}
