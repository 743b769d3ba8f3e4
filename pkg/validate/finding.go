package validate

import "github.com/pullgate/pullgate/pkg/policy"

// Reason is a stable, documented code for one cause of a failed pull.
type Reason string

// The reason codes. They are part of pullgate's interface: documented in the README, used
// in metrics labels and in users' alerting. Never rename one.
const (
	InvalidReference    Reason = "InvalidReference"
	RegistryNotAllowed  Reason = "RegistryNotAllowed"
	ImageNotFound       Reason = "ImageNotFound"
	TagNotFound         Reason = "TagNotFound"
	DigestNotFound      Reason = "DigestNotFound"
	PlatformMismatch    Reason = "PlatformMismatch"
	PullSecretMissing   Reason = "PullSecretMissing"
	PullSecretInvalid   Reason = "PullSecretInvalid"
	NoCredentials       Reason = "NoCredentials"
	CredentialsRejected Reason = "CredentialsRejected"
	RegistryUnreachable Reason = "RegistryUnreachable"
	RegistryRateLimited Reason = "RegistryRateLimited"
	RegistryError       Reason = "RegistryError"
	UnpinnedTag         Reason = "UnpinnedTag"
	// UnsupportedManifest: the node's runtime refuses the manifest's format (a Docker
	// schema 1 manifest on containerd 2).
	UnsupportedManifest Reason = "UnsupportedManifest"
	// NodeCredentials: the registry refused an anonymous look-up, no pull secret has an
	// entry for it, and the policy's nodeCredentials says the nodes authenticate to it on
	// their own. Always a warning: pullgate cannot check the node's credentials.
	NodeCredentials Reason = "NodeCredentials"
)

// Reasons lists every reason code, for documentation and metrics.
var Reasons = []Reason{
	InvalidReference, RegistryNotAllowed, ImageNotFound, TagNotFound, DigestNotFound,
	PlatformMismatch, PullSecretMissing, PullSecretInvalid, NoCredentials, CredentialsRejected,
	RegistryUnreachable, RegistryRateLimited, RegistryError, UnpinnedTag, UnsupportedManifest,
	NodeCredentials,
}

// check returns the policy check that sets the mode of a reason, or "" for the registry
// failures, whose mode is the policy's onRegistryError.
func (r Reason) check() policy.Check {
	switch r {
	case InvalidReference:
		return policy.CheckInvalidReference
	case RegistryNotAllowed:
		return policy.CheckRegistryAllowed
	case ImageNotFound, TagNotFound, DigestNotFound:
		return policy.CheckExistence
	case PlatformMismatch, UnsupportedManifest:
		return policy.CheckPlatform
	case PullSecretMissing, PullSecretInvalid, NoCredentials, CredentialsRejected, NodeCredentials:
		return policy.CheckPullSecrets
	case UnpinnedTag:
		return policy.CheckUnpinnedTag
	}
	return ""
}

// Severity is what a finding does to the admission.
type Severity string

const (
	// Deny rejects the admission.
	Deny Severity = "deny"
	// Warn admits it with an admission warning.
	Warn Severity = "warn"
)

// Finding is one reason the image of one container or image volume will not pull (or
// should be fixed).
type Finding struct {
	Reason Reason
	// Container is the container's name; empty for findings about an image volume or the
	// pod as a whole.
	Container string
	// Volume is the image volume's name (spec.volumes[].name) for findings about the image
	// of an image volume; empty otherwise.
	Volume   string
	Image    string
	Severity Severity
	// Message names the cause in one line.
	Message string
	// Fix says what to do about it in one line.
	Fix string
	// OnSomeNodes says the pull fails on some of the nodes the pod may run on, not all: an
	// image lacking one of the nodes' platforms, or an image gone from the registry that
	// some nodes still have. A warning at admission, since the pod may land on the others;
	// for the background re-check, a workload whose next reschedule may land on those.
	OnSomeNodes bool
}
