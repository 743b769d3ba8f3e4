package validate_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

// schema1Manifest is a signed Docker schema 1 manifest, as registries still serve old
// images (application/vnd.docker.distribution.manifest.v1+prettyjws).
const schema1Manifest = `{
   "schemaVersion": 1,
   "name": "team/legacy",
   "tag": "v1",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}
   ],
   "history": [
      {"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\",\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Cmd\":[\"/bin/sh\"]}}"}
   ],
   "signatures": [
      {
         "header": {"jwk": {"crv": "P-256", "kid": "OIH7:HQFS:44FK:45VB:3B53:OIAG:TPL4:ATF5:6PNE:MGHN:NHQX:2GE4", "kty": "EC", "x": "Cu_UyxwLgHzE9rvlYSmvVdqYCXY42E9eNhBb0xNv0SQ", "y": "zUsjWJkeKQ5tv7S-hl1Tg71cd-CqnrtiiLxSi6N_yc8"}, "alg": "ES256"},
         "signature": "m3bgdBXZYRQ4ssAbrgj8Kjl7GNgrKQvmCSY-00yzQosKi-8UBrIRrn3Iu5alj82B6u_jNrkGCjEx3TxrfT1rig",
         "protected": "eyJmb3JtYXRMZW5ndGgiOjYwNjMsImZvcm1hdFRhaWwiOiJDbjAiLCJ0aW1lIjoiMjAyMS0wMS0wMVQwMDowMDowMFoifQ"
      }
   ]
}`

// platformFixture is a registry holding the images of the platform tables.
type platformFixture struct {
	reg *testregistry.Registry
	// amd64Child is the digest of p/deleted's linux/amd64 child, deleted from the registry.
	amd64Child v1.Hash
}

func newPlatformFixture(t *testing.T) *platformFixture {
	reg := testregistry.New(t)
	plat := func(os, arch, variant string) *v1.Platform {
		return &v1.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	win := func(build string) *v1.Platform {
		return &v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: build}
	}
	reg.PushIndexOf(t, "p/multi", "v1", testregistry.Entry{Platform: plat("linux", "amd64", "")}, testregistry.Entry{Platform: plat("linux", "arm64", "v8")})
	reg.PushIndexOf(t, "p/386only", "v1", testregistry.Entry{Platform: plat("linux", "386", "")})
	reg.PushIndexOf(t, "p/armv7only", "v1", testregistry.Entry{Platform: plat("linux", "arm", "v7")})
	reg.PushIndexOf(t, "p/amd64v3only", "v1", testregistry.Entry{Platform: plat("linux", "amd64", "v3")})
	reg.PushIndexOf(t, "p/spelling", "v1",
		testregistry.Entry{Platform: plat("linux", "x86_64", ""), Arch: "amd64"},
		testregistry.Entry{Platform: plat("linux", "aarch64", ""), Arch: "arm64"})
	reg.PushIndexOf(t, "p/windows", "v1",
		testregistry.Entry{Platform: win("10.0.17763.6414")},
		testregistry.Entry{Platform: win("10.0.20348.2762")})
	reg.PushIndexOf(t, "p/windows2025", "v1", testregistry.Entry{Platform: win("10.0.26100.2033")})
	reg.PushIndexOf(t, "p/unplatformed", "v1", testregistry.Entry{OS: "linux", Arch: "amd64"})
	reg.PushIndexOf(t, "p/unplatformed-arm", "v1", testregistry.Entry{OS: "linux", Arch: "arm64"})
	reg.PushIndexOf(t, "p/nested", "v1", testregistry.Entry{Index: []testregistry.Entry{{Platform: plat("linux", "amd64", "")}}})
	reg.PushIndexOf(t, "p/attested", "v1",
		testregistry.Entry{Platform: plat("linux", "amd64", "")},
		testregistry.Entry{Platform: plat("unknown", "unknown", ""), OS: "linux", Arch: "amd64"})
	_, children := reg.PushIndexOf(t, "p/deleted", "v1", testregistry.Entry{Platform: plat("linux", "amd64", "")}, testregistry.Entry{Platform: plat("linux", "arm64", "")})
	reg.DeleteManifest(t, "p/deleted", children[0])
	reg.PushImage(t, "p/single386", "v1", "linux", "386")
	reg.PutManifest(t, "p/legacy", "v1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(schema1Manifest))
	return &platformFixture{reg: reg, amd64Child: children[0]}
}

func (f *platformFixture) check(t *testing.T, nodes *validate.Nodes, spec corev1.PodSpec, daemonSet bool) []validate.Finding {
	t.Helper()
	checker := &validate.Checker{
		Registry: registrycache.New(
			registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
			registrycache.WithBreaker(0, 0),
		),
		Nodes: func() *validate.Nodes { return nodes },
	}
	return checker.Check(t.Context(), testPolicy(), validate.Pod{Namespace: ns, Spec: &spec, DaemonSet: daemonSet})
}

func briefs(fs []validate.Finding) []brief {
	var out []brief
	for _, g := range fs {
		out = append(out, brief{g.Reason, g.Container, g.Severity})
	}
	return out
}

func checkFindings(t *testing.T, got []validate.Finding, want []brief, wantText []string) {
	t.Helper()
	if diff := cmp.Diff(want, briefs(got), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("findings (-want +got):\n%s\nall: %+v", diff, got)
	}
	var text strings.Builder
	for _, g := range got {
		if g.Message == "" || g.Fix == "" {
			t.Errorf("finding %s has no message or fix: %+v", g.Reason, g)
		}
		if n := len(g.Message) + len(g.Fix); n > 230 && (g.Reason == validate.PlatformMismatch || g.Reason == validate.DigestNotFound || g.Reason == validate.UnsupportedManifest) {
			t.Errorf("finding %s is %d characters, too long for a kubectl warning: %+v", g.Reason, n, g)
		}
		text.WriteString(g.Message + " " + g.Fix + "\n")
	}
	for _, w := range wantText {
		if !strings.Contains(text.String(), w) {
			t.Errorf("findings %q do not contain %q", text.String(), w)
		}
	}
}

// TestPlatformAsTheRuntimeMatches is issue 12 items 6, 7 and 8: an image is compared with
// the nodes the way each node's runtime chooses from an index, and the manifest it would
// fetch must exist.
func TestPlatformAsTheRuntimeMatches(t *testing.T) {
	f := newPlatformFixture(t)
	var (
		amd64            = testnodes.Ready("amd64", "linux", "amd64")
		arm64            = testnodes.Ready("arm64", "linux", "arm64")
		amd64Containerd1 = testnodes.Ready("amd64-ctrd1", "linux", "amd64", testnodes.Runtime("containerd://1.6.20"))
		amd64CRIO        = testnodes.Ready("amd64-crio", "linux", "amd64", testnodes.Runtime("cri-o://1.31.2"))
		arm64CRIO        = testnodes.Ready("arm64-crio", "linux", "arm64", testnodes.Runtime("cri-o://1.31.2"))
		amd64Unknown     = testnodes.Ready("amd64-docker", "linux", "amd64", testnodes.Runtime("docker://28.1.1"))
		win2022          = testnodes.Ready("win2022", "windows", "amd64", testnodes.Label(corev1.LabelWindowsBuild, "10.0.20348"))
		win2019          = testnodes.Ready("win2019", "windows", "amd64", testnodes.Label(corev1.LabelWindowsBuild, "10.0.17763"))
	)
	tests := []struct {
		desc     string
		image    string
		nodes    []*corev1.Node
		want     []brief
		wantText []string
	}{{
		desc:  "index with every node platform",
		image: "p/multi:v1",
		nodes: []*corev1.Node{amd64, arm64, amd64CRIO, arm64CRIO},
	}, {
		desc:     "386-only index on containerd amd64 nodes: pulled by the 32-bit fallback, warns",
		image:    "p/386only:v1",
		nodes:    []*corev1.Node{amd64},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"linux/386", "32-bit", "containerd 2's default pull skips it"},
	}, {
		desc:     "386-only index on containerd 1 amd64 nodes warns",
		image:    "p/386only:v1",
		nodes:    []*corev1.Node{amd64Containerd1},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"32-bit"},
	}, {
		desc:     "386-only index on CRI-O amd64 nodes: containers/image has no fallback",
		image:    "p/386only:v1",
		nodes:    []*corev1.Node{amd64CRIO},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
		wantText: []string{"built for linux/386", "linux/amd64 nodes"},
	}, {
		desc:     "arm/v7-only index on containerd arm64 nodes warns",
		image:    "p/armv7only:v1",
		nodes:    []*corev1.Node{arm64},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"linux/arm/v7", "32-bit"},
	}, {
		desc:  "arm/v7-only index on CRI-O arm64 nodes is a mismatch",
		image: "p/armv7only:v1",
		nodes: []*corev1.Node{arm64CRIO},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:     "amd64/v3-only index is skipped by containerd's default matcher",
		image:    "p/amd64v3only:v1",
		nodes:    []*corev1.Node{amd64, amd64Containerd1},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
		wantText: []string{"linux/amd64/v3"},
	}, {
		desc:  "x86_64 and aarch64 spellings are amd64 and arm64 to containerd",
		image: "p/spelling:v1",
		nodes: []*corev1.Node{amd64, arm64, amd64Containerd1},
	}, {
		desc:  "x86_64 is not amd64 to CRI-O",
		image: "p/spelling:v1",
		nodes: []*corev1.Node{amd64CRIO},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:     "unknown runtime: containerd's rules, a CRI-O difference only warns",
		image:    "p/spelling:v1",
		nodes:    []*corev1.Node{amd64Unknown},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"runtime of the linux/amd64 nodes is unknown"},
	}, {
		desc:  "Windows: the index has the node's build",
		image: "p/windows:v1",
		nodes: []*corev1.Node{win2022, win2019},
	}, {
		desc:     "Windows: no manifest for the node's build",
		image:    "p/windows2025:v1",
		nodes:    []*corev1.Node{win2019},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
		wantText: []string{"windows/amd64"},
	}, {
		desc:     "Windows: a newer build is no match for an older node, whose pods fail",
		image:    "p/windows2025:v1",
		nodes:    []*corev1.Node{win2019, amd64},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
		wantText: []string{"windows/amd64", "linux/amd64"},
	}, {
		desc:  "index entry without a platform: its config's platform decides",
		image: "p/unplatformed:v1",
		nodes: []*corev1.Node{amd64, amd64CRIO},
	}, {
		desc:  "index entry without a platform whose config is another architecture",
		image: "p/unplatformed-arm:v1",
		nodes: []*corev1.Node{amd64},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:  "nested index is followed to the image",
		image: "p/nested:v1",
		nodes: []*corev1.Node{amd64, amd64CRIO},
	}, {
		desc:  "nested index without the node's platform",
		image: "p/nested:v1",
		nodes: []*corev1.Node{arm64},
		want:  []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
	}, {
		desc:  "attestation entries are never pulled",
		image: "p/attested:v1",
		nodes: []*corev1.Node{amd64, amd64CRIO},
	}, {
		desc:     "the child for the nodes' platform was deleted",
		image:    "p/deleted:v1",
		nodes:    []*corev1.Node{amd64, amd64CRIO},
		want:     []brief{{validate.DigestNotFound, "c0", validate.Deny}},
		wantText: []string{"lists linux/amd64 as " + f.amd64Child.String()[:19], "was deleted", "push the image again"},
	}, {
		desc:     "the child for some nodes' platform was deleted: they fail, warns",
		image:    "p/deleted:v1",
		nodes:    []*corev1.Node{amd64, arm64},
		want:     []brief{{validate.DigestNotFound, "c0", validate.Warn}},
		wantText: []string{"the pod fails on those nodes"},
	}, {
		desc:     "schema 1 on containerd 2 nodes: refused",
		image:    "p/legacy:v1",
		nodes:    []*corev1.Node{amd64, arm64},
		want:     []brief{{validate.UnsupportedManifest, "c0", validate.Deny}},
		wantText: []string{"schema 1", "containerd 2 refuses", "crane copy", "skopeo copy --format v2s2"},
	}, {
		desc:     "schema 1 on containerd 1 nodes: converted, warns",
		image:    "p/legacy:v1",
		nodes:    []*corev1.Node{amd64Containerd1},
		want:     []brief{{validate.UnsupportedManifest, "c0", validate.Warn}},
		wantText: []string{"containerd 1 converts it"},
	}, {
		desc:  "schema 1 on CRI-O nodes: pulled",
		image: "p/legacy:v1",
		nodes: []*corev1.Node{amd64CRIO},
	}, {
		desc:     "schema 1 on containerd 2 and CRI-O nodes: fails on some, warns",
		image:    "p/legacy:v1",
		nodes:    []*corev1.Node{amd64, amd64CRIO},
		want:     []brief{{validate.UnsupportedManifest, "c0", validate.Warn}},
		wantText: []string{"the pod fails on those nodes"},
	}, {
		desc:     "single linux/386 image on amd64 nodes may run: warns",
		image:    "p/single386:v1",
		nodes:    []*corev1.Node{amd64, amd64CRIO},
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"32-bit"},
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := f.check(t, testnodes.Snapshot(tc.nodes...), pod(f.reg.Ref(strings.Split(tc.image, ":")[0], ":"+strings.Split(tc.image, ":")[1])), false)
			checkFindings(t, got, tc.want, tc.wantText)
			// A pull that fails on some of the nodes, and only such a pull, is marked so:
			// the re-check holds it a certain failure for a DaemonSet.
			for _, g := range got {
				if partial := strings.Contains(g.Message, "the pod fails on those nodes"); g.OnSomeNodes != partial {
					t.Errorf("%s %q: OnSomeNodes = %v, want %v", g.Reason, g.Message, g.OnSomeNodes, partial)
				}
			}
		})
	}
}
