package validate_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/pkg/credentialprovider"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

var (
	fakePluginOnce sync.Once
	fakePluginDir  string
	fakePluginErr  error
)

// fakePlugin builds pkg/credentialprovider's test plugin, a real executable speaking the
// credentialprovider.kubelet.k8s.io protocol, into a directory it returns.
func fakePlugin(t *testing.T) string {
	t.Helper()
	fakePluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pullgate-validate-plugin")
		if err != nil {
			fakePluginErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "fake"), "../credentialprovider/testdata/fakeplugin").CombinedOutput()
		if err != nil {
			fakePluginErr = fmt.Errorf("building the plugin: %v\n%s", err, out)
		}
		fakePluginDir = dir
	})
	if fakePluginErr != nil {
		t.Fatal(fakePluginErr)
	}
	return fakePluginDir
}

// TestCheckWithNodeCredentials: the nodes' credential provider plugins, run as the kubelet
// runs them, and registries the policy says the nodes authenticate to on their own.
func TestCheckWithNodeCredentials(t *testing.T) {
	f := newFixture(t)
	priv := f.private
	bin := fakePlugin(t)
	plugin := func(args ...string) string {
		cfg := fmt.Sprintf("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: fake\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  defaultCacheDuration: 1m\n  matchImages: [%q]\n  args: [%s]\n",
			priv.Host, strings.Join(append([]string{`"--key=` + priv.Host + `"`}, args...), ", "))
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	nodeAuth := testPolicy()
	nodeAuth.NodeCredentials = []string{priv.Host}
	nodeAuthWildcard := testPolicy()
	nodeAuthWildcard.NodeCredentials = []string{"127.0.0.*:" + strings.Split(priv.Host, ":")[1]}
	enforceRegistryErrors := testPolicy()
	enforceRegistryErrors.OnRegistryError = policy.Enforce
	withSecret := func(spec corev1.PodSpec, name string) corev1.PodSpec {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
		return spec
	}
	image := priv.Ref("secret/app", ":v1")
	tests := []struct {
		desc   string
		config string // "" for no plugins
		pol    *policy.Policy
		spec   corev1.PodSpec
		want   []brief
		// wantText are words the first finding's message must contain.
		wantText []string
		timeout  time.Duration
	}{{
		desc:   "the plugin's credential is accepted: admitted",
		config: plugin(`"--user=puller"`, `"--password=s3cret"`),
		spec:   pod(image),
	}, {
		desc:   "a pod secret that is refused, then the plugin's credential: admitted, as the kubelet tries both",
		config: plugin(`"--user=puller"`, `"--password=s3cret"`),
		spec:   withSecret(pod(image), "wrong"),
	}, {
		desc:     "the plugin's credential is refused: a warning, pullgate's identity may not be the node's",
		config:   plugin(`"--user=puller"`, `"--password=nope"`),
		spec:     pod(image),
		want:     []brief{{validate.NodeCredentials, "c0", validate.Warn}},
		wantText: []string{`credential provider "fake"`},
	}, {
		desc:     "the plugin fails: a registry error under onRegistryError (warn)",
		config:   plugin(`"--mode=fail"`),
		spec:     pod(image),
		want:     []brief{{validate.RegistryError, "c0", validate.Warn}},
		wantText: []string{"node's credentials", "exit status 1"},
	}, {
		desc:   "the plugin fails: a registry error under onRegistryError (enforce)",
		config: plugin(`"--mode=fail"`),
		pol:    enforceRegistryErrors,
		spec:   pod(image),
		want:   []brief{{validate.RegistryError, "c0", validate.Deny}},
	}, {
		desc:     "the plugin answers another apiVersion: a registry error, not a verdict",
		config:   plugin(`"--api-version=credentialprovider.kubelet.k8s.io/v1alpha1"`),
		spec:     pod(image),
		want:     []brief{{validate.RegistryError, "c0", validate.Warn}},
		wantText: []string{"apiVersion"},
	}, {
		desc:     "the plugin hangs: it ends with the admission's deadline, a registry error",
		config:   plugin(`"--mode=hang"`),
		spec:     pod(image),
		timeout:  time.Second,
		want:     []brief{{validate.RegistryError, "c0", validate.Warn}},
		wantText: []string{"deadline"},
	}, {
		desc:   "the plugin fails but the pod's secret is accepted: admitted",
		config: plugin(`"--mode=fail"`),
		spec:   withSecret(pod(image), "good"),
	}, {
		desc:   "a public image the plugin does not match: the plugin is not asked",
		config: plugin(`"--mode=fail"`),
		spec:   pod(f.public.Ref("team/app", ":v1.0.0")),
	}, {
		desc: "no plugin, no nodeCredentials: NoCredentials denies",
		spec: pod(image),
		want: []brief{{validate.NoCredentials, "c0", validate.Deny}},
	}, {
		desc:     "no plugin, the registry in nodeCredentials: a warning, never a denial",
		pol:      nodeAuth,
		spec:     pod(image),
		want:     []brief{{validate.NodeCredentials, "c0", validate.Warn}},
		wantText: []string{"the node's own credentials will be used; pullgate cannot check them"},
	}, {
		desc: "nodeCredentials matched with the kubelet's globs",
		pol:  nodeAuthWildcard,
		spec: pod(image),
		want: []brief{{validate.NodeCredentials, "c0", validate.Warn}},
	}, {
		desc: "nodeCredentials and a missing pull secret: the node's credentials are used, the secret warns",
		pol:  nodeAuth,
		spec: withSecret(pod(image), "absent"),
		want: []brief{{validate.NodeCredentials, "c0", validate.Warn}, {validate.PullSecretMissing, "", validate.Warn}},
	}, {
		desc: "nodeCredentials does not hide a missing tag",
		pol:  nodeAuth,
		spec: withSecret(pod(priv.Ref("secret/app", ":v9")), "good"),
		want: []brief{{validate.TagNotFound, "c0", validate.Deny}},
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
			if tc.config != "" {
				p, err := credentialprovider.Load(tc.config, bin)
				if err != nil {
					t.Fatal(err)
				}
				checker.NodeCredentials = p
			}
			spec := tc.spec
			kr, err := pullsecrets.ForPod(t.Context(), f.reader, ns, &spec)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			got := checker.Check(ctx, pol, validate.Pod{Namespace: ns, Spec: &spec, Keyring: kr})
			var briefs []brief
			for _, g := range got {
				briefs = append(briefs, brief{g.Reason, g.Container, g.Severity})
				if strings.Contains(g.Message+g.Fix, "s3cret") || strings.Contains(g.Message+g.Fix, "hunter2") {
					t.Errorf("finding leaks a credential: %+v", g)
				}
			}
			if diff := cmp.Diff(tc.want, briefs, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\nall: %+v", diff, got)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(got[0].Message, w) {
					t.Errorf("message %q does not contain %q", got[0].Message, w)
				}
			}
		})
	}
}
