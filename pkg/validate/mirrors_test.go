package validate_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/registryhosts"
	"github.com/pullgate/pullgate/pkg/validate"
)

// TestCheckThroughMirrors: the nodes' containerd mirrors (hosts.toml), real registries as
// mirror and origin.
func TestCheckThroughMirrors(t *testing.T) {
	rateLimited := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
	}
	// origin has team/app:v1 and team/only-origin:v1; it is rate limited where a case says so.
	origin := testregistry.New(t)
	origin.PushImage(t, "team/app", "v1", "linux", "amd64")
	origin.PushImage(t, "team/only-origin", "v1", "linux", "amd64")
	limited := testregistry.New(t)
	limited.PushImage(t, "team/app", "v1", "linux", "amd64")
	limited.SetFault(rateLimited)
	// mirror holds team/app:v1 only.
	mirror := testregistry.New(t)
	appDigest := mirror.PushImage(t, "team/app", "v1", "linux", "amd64")
	dead := testregistry.New(t)
	dead.Close()
	// private is a mirror the nodes reach with credentials of their own containerd config;
	// pullgate's anonymous look-ups get 401.
	private := testregistry.New(t, testregistry.WithBasicAuth("node", "node-secret"))
	private.PushImage(t, "team/app", "v9", "linux", "amd64")

	hostsDir := func(host, toml string) string {
		root := t.TempDir()
		dir := filepath.Join(root, host)
		// containerd's directory for host:port is host_port_ (or host:port).
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	via := func(mirrorHost, extra string) string {
		return fmt.Sprintf("[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n%s", mirrorHost, extra)
	}
	tests := []struct {
		desc  string
		image string
		dir   string // "" for no hosts.toml
		pol   *policy.Policy
		want  []brief
	}{{
		desc:  "origin rate limited, no mirror: a RegistryRateLimited warning",
		image: limited.Ref("team/app", ":v1"),
		want:  []brief{{validate.RegistryRateLimited, "c0", validate.Warn}},
	}, {
		desc:  "origin rate limited, the mirror has the image: admitted without a warning",
		image: limited.Ref("team/app", ":v1"),
		dir:   hostsDir(limited.Host, via(mirror.Host, "")),
	}, {
		desc:  "by digest through the mirror",
		image: limited.Ref("team/app", "@"+appDigest.String()),
		dir:   hostsDir(limited.Host, via(mirror.Host, "")),
	}, {
		desc:  "the mirror lacks the image: the origin answers, admitted",
		image: origin.Ref("team/only-origin", ":v1"),
		dir:   hostsDir(origin.Host, via(mirror.Host, "")),
	}, {
		desc:  "the mirror lacks the tag and so does the origin: TagNotFound denies",
		image: origin.Ref("team/app", ":v9"),
		dir:   hostsDir(origin.Host, via(mirror.Host, "")),
		want:  []brief{{validate.TagNotFound, "c0", validate.Deny}},
	}, {
		desc:  "a dead mirror, then the origin: admitted",
		image: origin.Ref("team/app", ":v1"),
		dir:   hostsDir(origin.Host, via(dead.Host, "")),
	}, {
		desc:  "a dead mirror and a tag the origin lacks: a registry error, the node might pull from the mirror",
		image: origin.Ref("team/app", ":v9"),
		dir:   hostsDir(origin.Host, via(dead.Host, "")),
		want:  []brief{{validate.RegistryError, "c0", validate.Warn}},
	}, {
		desc:  "a mirror refusing anonymous look-ups and a tag the origin lacks: a registry error, never a denial",
		image: origin.Ref("team/app", ":v9"),
		dir:   hostsDir(origin.Host, via(private.Host, "")),
		want:  []brief{{validate.RegistryError, "c0", validate.Warn}},
	}, {
		desc:  "a pull-only mirror is not asked to resolve a tag: the origin's 429 stands",
		image: limited.Ref("team/app", ":v1"),
		dir:   hostsDir(limited.Host, fmt.Sprintf("[host.\"http://%s\"]\n  capabilities = [\"pull\"]\n", mirror.Host)),
		want:  []brief{{validate.RegistryRateLimited, "c0", validate.Warn}},
	}, {
		desc:  "server names the mirror: the origin is never asked",
		image: limited.Ref("team/app", ":v1"),
		dir:   hostsDir(limited.Host, fmt.Sprintf("server = \"http://%s\"\n", mirror.Host)),
	}, {
		desc:  "server names a mirror that lacks the image: a registry error, never a verdict",
		image: limited.Ref("team/only-origin", ":v1"),
		dir:   hostsDir(limited.Host, fmt.Sprintf("server = \"http://%s\"\n", mirror.Host)),
		want:  []brief{{validate.RegistryError, "c0", validate.Warn}},
	}, {
		desc:  "a mirror behind a path prefix cannot be asked: the origin is",
		image: origin.Ref("team/app", ":v1"),
		dir:   hostsDir(origin.Host, fmt.Sprintf("[host.\"http://%s/prefix\"]\n  override_path = true\n", mirror.Host)),
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = testPolicy()
			}
			checker := &validate.Checker{Registry: registrycache.New(
				registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
				registrycache.WithBreaker(0, 0),
			)}
			if tc.dir != "" {
				checker.RegistryHosts = registryhosts.Config{Dir: tc.dir}
			}
			spec := pod(tc.image)
			spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			got := checker.Check(t.Context(), pol, validate.Pod{Namespace: ns, Spec: &spec})
			var briefs []brief
			for _, g := range got {
				briefs = append(briefs, brief{g.Reason, g.Container, g.Severity})
			}
			if diff := cmp.Diff(tc.want, briefs, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\nall: %+v", diff, got)
			}
		})
	}
}
