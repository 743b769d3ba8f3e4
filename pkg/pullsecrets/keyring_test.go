package pullsecrets

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// configSecret is a kubernetes.io/dockerconfigjson secret holding cfg as .dockerconfigjson.
func configSecret(name, cfg string) corev1.Secret {
	return corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
}

// auths is a .dockerconfigjson whose entries map registry names to "user:password".
func auths(entries ...string) string {
	s := `{"auths":{`
	for i := 0; i+1 < len(entries); i += 2 {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%q:{\"auth\":%q}", entries[i], base64.StdEncoding.EncodeToString([]byte(entries[i+1])))
	}
	return s + "}}"
}

// described lists credentials as "secret entry user:password" (or "... anonymous").
func described(t *testing.T, creds []Credential) []string {
	t.Helper()
	var out []string
	for _, c := range creds {
		if c.Auth == authn.Anonymous {
			out = append(out, c.Secret+" "+c.Entry+" anonymous")
			continue
		}
		cfg, err := c.Auth.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Secret+" "+c.Entry+" "+cfg.Username+":"+cfg.Password)
	}
	return out
}

func mustRepo(t *testing.T, image string) name.Repository {
	t.Helper()
	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context()
}

// The kubelet's keyring rules (k8s.io/kubernetes pkg/credentialprovider/keyring.go), each
// with a case that go-containerregistry's pkg/authn/kubernetes, used before, got wrong.
// hack/tools/keyringdiff checks the same against the kubelet's own code.
func TestCredentials(t *testing.T) {
	tests := []struct {
		desc    string
		secrets []corev1.Secret
		// want maps an image to the credentials the kubelet tries for it, in order.
		want map[string][]string
		// wantKinds are the problems reported, in order.
		wantKinds []ProblemKind
	}{{
		desc:    "a docker.io key, as kubectl create secret --docker-server=docker.io writes it, matches Docker Hub images",
		secrets: []corev1.Secret{configSecret("hub", auths("docker.io", "u:p"))},
		want: map[string][]string{
			"nginx:1.27":                      {"hub docker.io u:p"},
			"docker.io/acme/app:1":            {"hub docker.io u:p"},
			"index.docker.io/acme/app:1":      {"hub docker.io u:p"},
			"registry-1.docker.io/acme/app:1": nil,
		},
	}, {
		desc:    "the index.docker.io key docker login writes is Docker Hub's fallback",
		secrets: []corev1.Secret{configSecret("hub", auths("https://index.docker.io/v1/", "u:p"))},
		want: map[string][]string{
			"nginx:1.27":         {"hub index.docker.io u:p"},
			"acme/app:1":         {"hub index.docker.io u:p"},
			"ghcr.io/acme/app:1": nil,
		},
	}, {
		desc: "the index.docker.io fallback is not used when another key matched",
		secrets: []corev1.Secret{
			configSecret("login", auths("https://index.docker.io/v1/", "fallback:p")),
			configSecret("hub", auths("docker.io/acme", "acme:p")),
		},
		want: map[string][]string{
			"docker.io/acme/app:1":  {"hub docker.io/acme acme:p"},
			"docker.io/other/app:1": {"login index.docker.io fallback:p"},
		},
	}, {
		desc: "index.docker.io/acme and *.docker.io never match a Docker Hub image",
		secrets: []corev1.Secret{
			configSecret("path", auths("index.docker.io/acme", "u:p")),
			configSecret("glob", auths("*.docker.io", "u:p")),
		},
		want: map[string][]string{"docker.io/acme/app:1": nil, "nginx:1": nil},
	}, {
		desc: "every matching entry of a secret, most specific first",
		secrets: []corev1.Secret{configSecret("multi", auths(
			"registry.example.com", "host:p",
			"registry.example.com/team", "team:p",
			"https://registry.example.com/v2/team/app", "app:p",
		))},
		want: map[string][]string{
			"registry.example.com/team/app:1": {"multi registry.example.com/team/app app:p", "multi registry.example.com/team team:p", "multi registry.example.com host:p"},
			// A key's path is a string prefix, not a path prefix.
			"registry.example.com/teamster/x:1": {"multi registry.example.com/team team:p", "multi registry.example.com host:p"},
			"registry.example.com/other:1":      {"multi registry.example.com host:p"},
		},
	}, {
		desc: "secrets are merged into one keyring: specificity first, then the order listed",
		secrets: []corev1.Secret{
			configSecret("first", auths("registry.example.com", "first:p")),
			configSecret("second", auths("registry.example.com/team", "second:p")),
			configSecret("third", auths("registry.example.com", "third:p")),
		},
		want: map[string][]string{"registry.example.com/team/app:1": {
			"second registry.example.com/team second:p", "first registry.example.com first:p", "third registry.example.com third:p",
		}},
	}, {
		desc: "globs match one host label each, ports must be equal",
		secrets: []corev1.Secret{configSecret("globs", auths(
			"*.example.com", "one:p",
			"*.*.example.com", "two:p",
			"registry.example.com:5000", "port:p",
		))},
		want: map[string][]string{
			"a.example.com/app:1":               {"globs *.example.com one:p"},
			"a.b.example.com/app:1":             {"globs *.*.example.com two:p"},
			"example.com/app:1":                 nil,
			"registry.example.com:5000/app:1":   {"globs registry.example.com:5000 port:p"},
			"registry.example.com:5001/app:1":   nil,
			"registry.example.com/app:1":        {"globs *.example.com one:p"},
			"other.registry.example.com/app:1":  {"globs *.*.example.com two:p"},
			"registry.example.com:5000/a/b/c:1": {"globs registry.example.com:5000 port:p"},
		},
	}, {
		desc: "schemes, /v1/ and trailing slashes are dropped from keys",
		secrets: []corev1.Secret{configSecret("forms", auths(
			"http://plain.example.com", "plain:p",
			"https://v1.example.com/v1/", "v1:p",
			"slash.example.com/", "slash:p",
		))},
		want: map[string][]string{
			"plain.example.com/app:1": {"forms plain.example.com plain:p"},
			"v1.example.com/app:1":    {"forms v1.example.com v1:p"},
			"slash.example.com/app:1": {"forms slash.example.com slash:p"},
		},
	}, {
		desc: "an entry whose name is not a URL is skipped, the rest of the secret is used",
		secrets: []corev1.Secret{configSecret("partial", auths(
			"registry.example.com:port", "bad:p",
			"registry.example.com", "good:p",
		))},
		want:      map[string][]string{"registry.example.com/app:1": {"partial registry.example.com good:p"}},
		wantKinds: []ProblemKind{EntrySkipped},
	}, {
		desc: "an entry with only an identity token is tried anonymously",
		secrets: []corev1.Secret{configSecret("token",
			`{"auths":{"registry.example.com":{"identitytoken":"tok"},"other.example.com":{"username":"u","password":"p","identitytoken":"tok"}}}`)},
		want: map[string][]string{
			"registry.example.com/app:1": {"token registry.example.com anonymous"},
			"other.example.com/app:1":    {"token other.example.com u:p"},
		},
		wantKinds: []ProblemKind{NoUsername},
	}, {
		desc: "empty entries, as a config.json with a credential store has, are one problem",
		secrets: []corev1.Secret{configSecret("desktop",
			`{"auths":{"ghcr.io":{},"quay.io":{},"registry.example.com":{}},"credsStore":"desktop"}`)},
		want:      map[string][]string{"quay.io/acme/app:1": {"desktop quay.io anonymous"}},
		wantKinds: []ProblemKind{NoUsername},
	}, {
		desc: "auth wins over username and password, unpadded base64 too",
		secrets: []corev1.Secret{configSecret("auth",
			`{"auths":{"registry.example.com":{"username":"ignored","password":"ignored","auth":"`+
				base64.RawStdEncoding.EncodeToString([]byte("u:p:with:colons"))+`"}}}`)},
		want: map[string][]string{"registry.example.com/app:1": {"auth registry.example.com u:p:with:colons"}},
	}, {
		desc: "a legacy dockercfg secret",
		secrets: []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"https://index.docker.io/v1/":{"username":"u","password":"p"}}`)}}},
		want: map[string][]string{"nginx:1": {"legacy index.docker.io u:p"}},
	}, {
		desc: "a secret whose auth is not base64 does not parse; the others still answer",
		secrets: []corev1.Secret{
			configSecret("broken", `{"auths":{"other.example.com":{"auth":"%%%"}}}`),
			configSecret("good", auths("registry.example.com", "u:p")),
		},
		want:      map[string][]string{"registry.example.com/app:1": {"good registry.example.com u:p"}},
		wantKinds: []ProblemKind{Unparseable},
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			k := FromSecrets(tc.secrets)
			for image, want := range tc.want {
				got := described(t, k.Credentials(mustRepo(t, image)))
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("credentials for %s (-want +got):\n%s", image, diff)
				}
			}
			var kinds []ProblemKind
			for _, p := range k.Problems {
				kinds = append(kinds, p.Kind)
				if p.Detail == "" || containsAny(p.Detail, "%%%", `"tok"`, ":p", "port") {
					t.Errorf("problem detail %q is empty or quotes secret data", p.Detail)
				}
			}
			if diff := cmp.Diff(tc.wantKinds, kinds, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// Which decoding failures make the kubelet fail every pull of the pod (its
// secretsToTrackedDockerConfigs returns the json.Unmarshal error), and which it shrugs off.
func TestUnparseable(t *testing.T) {
	tests := map[string]struct {
		cfg  string
		want bool
	}{
		"not JSON":                         {`{not json`, true},
		"auth not base64":                  {`{"auths":{"x.io":{"auth":"%%%"}}}`, true},
		"auth without a colon":             {`{"auths":{"x.io":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("nocolon")) + `"}}}`, true},
		"a username that is not a string":  {`{"auths":{"x.io":{"username":5}}}`, true},
		"HttpHeaders not a map of strings": {`{"auths":{},"HttpHeaders":{"X":1}}`, true},
		"auths not an object":              {`{"auths":[]}`, true},
		"no auths":                         {`{}`, false},
		"null":                             {`null`, false},
		"unknown fields":                   {`{"auths":{"x.io":{"username":"u","password":"p","serveraddress":"x"}},"credsStore":"desktop"}`, false},
		"an entry that is null":            {`{"auths":{"x.io":null}}`, false},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			k := FromSecrets([]corev1.Secret{configSecret("s", tc.cfg)})
			if got := len(k.Unparseable()) > 0; got != tc.want {
				t.Errorf("unparseable = %v, want %v (problems %+v)", got, tc.want, k.Problems)
			}
		})
	}
}

// A secret that parsed and has no entry for an image's registry cannot be why its pull is
// refused; one whose content is unknown could be.
func TestProblemsFor(t *testing.T) {
	mistyped := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mistyped"}, Type: corev1.SecretTypeDockercfg,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(auths("other.example.com", "u:p"))}}
	opaque := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opaque"}, Type: corev1.SecretTypeOpaque}
	reader := fake.NewClientBuilder().WithObjects(&mistyped, &opaque,
		ptr(configSecret("tokens", `{"auths":{"ghcr.io":{"identitytoken":"t"}}}`)),
		ptr(configSecret("partial", auths("quay.io:bad", "u:p", "ghcr.io", "u:p"))),
	).Build()
	k, err := ForPod(t.Context(), reader, ns, &corev1.PodSpec{ImagePullSecrets: refs("mistyped", "opaque", "tokens", "partial", "gone")})
	if err != nil {
		t.Fatal(err)
	}
	for image, want := range map[string][]string{
		"registry.example.com/app:1": {"opaque", "gone"},
		"other.example.com/app:1":    {"mistyped", "opaque", "gone"},
		"ghcr.io/acme/app:1":         {"opaque", "tokens", "gone"},
		"quay.io/acme/app:1":         {"opaque", "partial", "gone"},
	} {
		var got []string
		for _, p := range k.ProblemsFor(mustRepo(t, image)) {
			got = append(got, p.Secret)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("problems for %s (-want +got):\n%s", image, diff)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// notFound hides objects from a reader, as an informer that has not seen them yet does.
type notFound struct {
	client.Reader
	hidden map[string]bool
}

func (r notFound) Get(ctx context.Context, key types.NamespacedName, obj client.Object, opts ...client.GetOption) error {
	if r.hidden[key.Name] {
		return fake.NewClientBuilder().Build().Get(ctx, key, obj, opts...)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// A Secret or ServiceAccount created with the workload may not be in the cache yet: it is
// read again from the API server before it is reported missing.
func TestForPodReadsWhatTheCacheMisses(t *testing.T) {
	api := fake.NewClientBuilder().WithObjects(
		dockerSecret("fresh", "registry.example.com"),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"}, ImagePullSecrets: refs("fresh")},
	).Build()
	cache := notFound{Reader: api, hidden: map[string]bool{"fresh": true, "deployer": true}}
	repo := mustRepo(t, "registry.example.com/app:1")

	tests := []struct {
		desc         string
		spec         corev1.PodSpec
		opts         []Option
		wantCreds    []string
		wantProblems []ProblemKind
	}{
		{desc: "a secret the cache misses, read from the API server",
			spec: corev1.PodSpec{ImagePullSecrets: refs("fresh")}, opts: []Option{WithAPIReader(api)},
			wantCreds: []string{"fresh registry.example.com u:p"}},
		{desc: "a ServiceAccount the cache misses, read from the API server",
			spec: corev1.PodSpec{ServiceAccountName: "deployer"}, opts: []Option{WithAPIReader(api)},
			wantCreds: []string{"fresh registry.example.com u:p"}},
		{desc: "without an API reader the cache's word is final",
			spec: corev1.PodSpec{ImagePullSecrets: refs("fresh")}, wantProblems: []ProblemKind{Missing}},
		{desc: "missing from both",
			spec: corev1.PodSpec{ImagePullSecrets: refs("never")}, opts: []Option{WithAPIReader(api)},
			wantProblems: []ProblemKind{Missing}},
		{desc: "a named ServiceAccount missing from both",
			spec: corev1.PodSpec{ServiceAccountName: "nobody"}, opts: []Option{WithAPIReader(api)},
			wantProblems: []ProblemKind{ServiceAccountMissing}},
		{desc: "the default ServiceAccount missing from both means no secrets, without a word",
			opts: []Option{WithAPIReader(api)}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := ForPod(t.Context(), cache, ns, &tc.spec, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCreds, described(t, k.Credentials(repo)), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("credentials (-want +got):\n%s", diff)
			}
			var kinds []ProblemKind
			for _, p := range k.Problems {
				kinds = append(kinds, p.Kind)
			}
			if diff := cmp.Diff(tc.wantProblems, kinds, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
