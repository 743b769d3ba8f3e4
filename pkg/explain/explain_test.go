package explain

import (
	"testing"

	"github.com/pullgate/pullgate/pkg/validate"
)

func TestCauseOf(t *testing.T) {
	// Every reason that can fail a pull is one of the seven causes; the others are none.
	want := map[validate.Reason]string{
		validate.ImageNotFound:       "Cause 1: Image Does Not Exist",
		validate.InvalidReference:    "Cause 1: Image Does Not Exist",
		validate.PullSecretMissing:   "Cause 2: Private Registry Authentication",
		validate.PullSecretInvalid:   "Cause 2: Private Registry Authentication",
		validate.NoCredentials:       "Cause 2: Private Registry Authentication",
		validate.CredentialsRejected: "Cause 2: Private Registry Authentication",
		validate.NodeCredentials:     "Cause 2: Private Registry Authentication",
		validate.TagNotFound:         "Cause 3: Invalid Image Tag",
		validate.DigestNotFound:      "Cause 4: Digest Mismatch",
		validate.RegistryUnreachable: "Cause 5: Network Issues",
		validate.RegistryError:       "Cause 5: Network Issues",
		validate.RegistryRateLimited: "Cause 6: Rate Limiting (Docker Hub)",
		validate.PlatformMismatch:    "Cause 7: Image Architecture Mismatch",
		validate.UnsupportedManifest: "Cause 7: Image Architecture Mismatch",
		validate.UnpinnedTag:         "",
		validate.RegistryNotAllowed:  "",
	}
	for _, r := range validate.Reasons {
		w, ok := want[r]
		if !ok {
			t.Errorf("reason %s has no expected cause: add it here and to CauseOf", r)
			continue
		}
		if got := CauseOf(r); got != w {
			t.Errorf("CauseOf(%s) = %q, want %q", r, got, w)
		}
	}
}

func TestNodeSide(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		// containerd's words for failures to connect (the e2e's unreachable registry).
		{`failed to resolve reference "127.0.0.1:1/a:1": failed to do request: Head "https://127.0.0.1:1/v2/a/manifests/1": dial tcp 127.0.0.1:1: connect: connection refused`, true},
		{`dial tcp: lookup registry.internal on 10.0.0.10:53: no such host`, true},
		{`tls: failed to verify certificate: x509: certificate signed by unknown authority`, true},
		{`rpc error: code = NotFound desc = failed to pull and unpack image "x": not found`, false},
		{`401 Unauthorized`, false},
	}
	for _, tc := range tests {
		if got := nodeSide(tc.msg); got != tc.want {
			t.Errorf("nodeSide(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

func TestContainerOf(t *testing.T) {
	for in, want := range map[string]string{
		"spec.containers{app}":          "app",
		"spec.initContainers{init-db}":  "init-db",
		"spec.ephemeralContainers{dbg}": "dbg",
		"":                              "",
	} {
		if got := containerOf(in); got != want {
			t.Errorf("containerOf(%q) = %q, want %q", in, got, want)
		}
	}
}
