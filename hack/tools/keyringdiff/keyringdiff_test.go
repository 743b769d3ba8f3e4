// Package keyringdiff is a differential test of pullgate's pull-secret keyring
// (github.com/pullgate/pullgate/pkg/pullsecrets) against the kubelet's own
// (k8s.io/kubernetes pkg/credentialprovider): the same docker configs and image names go to
// both, built as the kubelet builds a pod's keyring (secrets.MakeDockerKeyring) and looked
// up as the kubelet looks an image up (parsers.ParseImageName, then Lookup), and both must
// give the same credentials in the same order, and fail to parse the same configs.
//
// It is its own module so that pullgate itself never requires k8s.io/kubernetes; `make
// keyringdiff` runs the table and a short fuzz of each target.
package keyringdiff

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"

	"github.com/pullgate/pullgate/pkg/pullsecrets"
)

func TestMain(m *testing.M) {
	// The kubelet's keyring logs every entry it skips; the fuzzer makes many.
	klog.InitFlags(flag.NewFlagSet("klog", flag.ContinueOnError))
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// cred is what the container runtime sends for one credential the kubelet tries: the
// username and password, or nothing for an entry without a username (containerd's CRI,
// internal/cri/server/images/image_pull.go ParseAuth: "if auth.Username != "" { return
// auth.Username, auth.Password, nil }" ... "An empty auth config is valid for anonymous
// registry"). pullgate's keyring answers authn.Anonymous for those.
type cred struct{ user, pass string }

func (c cred) String() string {
	if c == (cred{}) {
		return "anonymous"
	}
	return c.user + ":" + c.pass
}

// kubelet returns the credentials the kubelet tries for image, in order, or parseFails when
// it cannot build the pod's keyring (and so fails every pull). ok is false when the kubelet
// cannot parse image at all.
func kubelet(pullSecrets []corev1.Secret, image string) (creds []cred, parseFails, ok bool) {
	repoToPull, _, _, err := parsers.ParseImageName(image)
	if err != nil {
		return nil, false, false
	}
	// As pkg/kubelet/images/image_manager.go makeLookupPullCredentialsFunc, with an empty
	// node keyring standing for the node's config and credential provider plugins.
	keyring, err := secrets.MakeDockerKeyring(pullSecrets, &credentialprovider.BasicDockerKeyring{})
	if err != nil {
		return nil, true, true
	}
	found, _ := keyring.Lookup(repoToPull)
	for _, c := range found {
		if c.Username == "" {
			creds = append(creds, cred{})
			continue
		}
		creds = append(creds, cred{c.Username, c.Password})
	}
	return creds, false, true
}

// group is a run of pullgate's credentials from one entry key of one secret. The kubelet
// adds a secret's entries in map order, so the order within such a run is not defined.
type group struct {
	secret, entry string
	creds         []cred
}

// pullgate is kubelet for pullgate's keyring, its credentials in groups.
func pullgate(t testing.TB, pullSecrets []corev1.Secret, image string) (groups []group, parseFails, ok bool) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil, false, false
	}
	k := pullsecrets.FromSecrets(pullSecrets)
	if len(k.Unparseable()) > 0 {
		return nil, true, true
	}
	for _, c := range k.Credentials(ref.Context()) {
		var got cred
		if c.Auth != authn.Anonymous {
			cfg, err := c.Auth.Authorization()
			if err != nil {
				t.Fatalf("Authorization: %v", err)
			}
			if cfg.Username == "" {
				t.Errorf("%s: credential from secret %q entry %q has no username but is not authn.Anonymous", image, c.Secret, c.Entry)
			}
			got = cred{cfg.Username, cfg.Password}
		}
		if n := len(groups); n > 0 && groups[n-1].secret == c.Secret && groups[n-1].entry == c.Entry {
			groups[n-1].creds = append(groups[n-1].creds, got)
			continue
		}
		groups = append(groups, group{secret: c.Secret, entry: c.Entry, creds: []cred{got}})
	}
	return groups, false, true
}

// compare requires pullgate's keyring to answer image as the kubelet's does.
func compare(t *testing.T, pullSecrets []corev1.Secret, image string) {
	t.Helper()
	want, wantFails, kubeletOK := kubelet(pullSecrets, image)
	groups, gotFails, pullgateOK := pullgate(t, pullSecrets, image)
	if !kubeletOK || !pullgateOK {
		// Which references parse is not the keyring's business (and go-containerregistry
		// and github.com/distribution/reference differ at the edges).
		return
	}
	if gotFails != wantFails {
		t.Fatalf("image %q: pullgate parse fails = %v, kubelet = %v\nsecrets: %s", image, gotFails, wantFails, describe(pullSecrets))
	}
	var got []cred
	for _, g := range groups {
		got = append(got, g.creds...)
	}
	if len(got) != len(want) {
		t.Fatalf("image %q: pullgate tries %v, kubelet %v\nsecrets: %s", image, got, want, describe(pullSecrets))
	}
	i := 0
	for _, g := range groups {
		gotRun := slices.Clone(g.creds)
		wantRun := slices.Clone(want[i : i+len(g.creds)])
		i += len(g.creds)
		less := func(a, b cred) int { return strings.Compare(a.String(), b.String()) }
		slices.SortFunc(gotRun, less)
		slices.SortFunc(wantRun, less)
		if !slices.Equal(gotRun, wantRun) {
			t.Fatalf("image %q: pullgate tries %v, kubelet %v (differing at secret %q entry %q)\nsecrets: %s",
				image, got, want, g.secret, g.entry, describe(pullSecrets))
		}
	}
}

func describe(pullSecrets []corev1.Secret) string {
	var parts []string
	for _, s := range pullSecrets {
		for k, v := range s.Data {
			parts = append(parts, fmt.Sprintf("%s (%s, %s): %q", s.Name, s.Type, k, v))
		}
	}
	return strings.Join(parts, "; ")
}

// configSecret is a kubernetes.io/dockerconfigjson secret, or a kubernetes.io/dockercfg one
// when legacy.
func configSecret(name string, legacy bool, config []byte) corev1.Secret {
	s := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}}
	if legacy {
		s.Type, s.Data = corev1.SecretTypeDockercfg, map[string][]byte{corev1.DockerConfigKey: config}
	} else {
		s.Type, s.Data = corev1.SecretTypeDockerConfigJson, map[string][]byte{corev1.DockerConfigJsonKey: config}
	}
	return s
}

// entries is a docker config mapping each registry name to a distinct "userN:passN", half
// of them written as "auth", as kubectl create secret docker-registry writes them; legacy
// leaves out the "auths" wrapper.
func entries(legacy bool, registries ...string) []byte {
	m := make(map[string]map[string]string, len(registries))
	for i, r := range registries {
		user, pass := fmt.Sprintf("user%d", i), fmt.Sprintf("pass%d", i)
		if i%2 == 0 {
			m[r] = map[string]string{"username": user, "password": pass}
		} else {
			m[r] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
		}
	}
	var v any = map[string]any{"auths": m}
	if legacy {
		v = m
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// images are looked up in every case: Docker Hub in each spelling, globs' hosts, ports,
// paths, localhost, IP addresses.
var images = []string{
	"nginx", "nginx:1.27", "library/nginx", "docker.io/nginx", "docker.io/library/nginx",
	"index.docker.io/library/nginx", "index.docker.io/acme/app:1", "docker.io/acme/app",
	"acme/app", "registry-1.docker.io/acme/app",
	"example.com/app", "example.com/team/app", "example.com/teamster/app", "example.com/team",
	"a.example.com/app", "a.b.example.com/app", "a.b.c.example.com/app",
	"registry.example.com:5000/team/app", "registry.example.com:443/app", "registry.example.com/app",
	"localhost/app", "localhost:5000/app", "127.0.0.1:5000/app", "10.0.0.1/app",
	"ghcr.io/acme/app@sha256:" + strings.Repeat("a", 64), "quay.io/acme/app:v1",
	"EXAMPLE.com/app", "Example.Com:5000/team/app",
}

func TestKeyringMatchesTheKubelets(t *testing.T) {
	tests := []struct {
		desc    string
		secrets []corev1.Secret
	}{
		{"docker.io, as kubectl create secret docker-registry --docker-server=docker.io writes it",
			[]corev1.Secret{configSecret("hub", false, entries(false, "docker.io"))}},
		{"index.docker.io", []corev1.Secret{configSecret("hub", false, entries(false, "index.docker.io"))}},
		{"https://index.docker.io/v1/, as docker login writes it",
			[]corev1.Secret{configSecret("hub", false, entries(false, "https://index.docker.io/v1/"))}},
		{"*.docker.io", []corev1.Secret{configSecret("hub", false, entries(false, "*.docker.io"))}},
		{"index.docker.io/acme", []corev1.Secret{configSecret("hub", false, entries(false, "index.docker.io/acme"))}},
		{"docker.io/acme and the index.docker.io fallback in two secrets", []corev1.Secret{
			configSecret("login", false, entries(false, "https://index.docker.io/v1/")),
			configSecret("acme", false, entries(false, "docker.io/acme")),
		}},
		{"every Docker Hub spelling in one secret", []corev1.Secret{configSecret("hub", false, entries(false,
			"docker.io", "index.docker.io", "https://index.docker.io/v1/", "*.docker.io", "index.docker.io/acme",
			"registry-1.docker.io", "http://docker.io/v2/", "docker.io/library"))}},
		{"globs", []corev1.Secret{configSecret("globs", false, entries(false,
			"*.example.com", "*.*.example.com", "*", "*.*", "a.*.example.com", "[ab].example.com", "?.example.com", "*.com"))}},
		{"ports", []corev1.Secret{configSecret("ports", false, entries(false,
			"registry.example.com:5000", "registry.example.com", "localhost:5000", "127.0.0.1:5000", "*.example.com:5000", "registry.example.com:443"))}},
		{"paths", []corev1.Secret{configSecret("paths", false, entries(false,
			"example.com/team", "example.com/team/", "example.com", "example.com/team/app", "https://example.com/v2/team", "example.com/v1/", "example.com/v3/team"))}},
		{"schemes and trailing slashes", []corev1.Secret{configSecret("forms", false, entries(false,
			"https://example.com", "http://a.example.com/", "HTTPS://registry.example.com", "example.com/", "https://example.com/v1/", "ftp://example.com"))}},
		{"several matches over several secrets, one key in two of them", []corev1.Secret{
			configSecret("first", false, entries(false, "example.com", "example.com/team")),
			configSecret("second", true, entries(true, "example.com", "*.example.com")),
			configSecret("third", false, entries(false, "example.com/team/app", "example.com")),
		}},
		{"a secret listed twice", []corev1.Secret{
			configSecret("twice", false, entries(false, "example.com")),
			configSecret("twice", false, entries(false, "example.com")),
		}},
		{"localhost and IP addresses", []corev1.Secret{configSecret("local", false, entries(false,
			"localhost", "localhost:5000", "127.0.0.1:5000", "10.0.0.1", "[::1]:5000"))}},
		{"names that are not URLs next to good ones", []corev1.Secret{configSecret("partial", false, entries(false,
			"example.com:port", "exa mple.com", "example.com/%zz", "example.com", "://", ""))}},
		{"two keys that file under one", []corev1.Secret{configSecret("same", false, entries(false,
			"example.com", "https://example.com", "example.com/", "http://example.com/v2/"))}},
		{"entries without a username", []corev1.Secret{configSecret("tokens", false,
			[]byte(`{"auths":{"example.com":{"identitytoken":"t"},"a.example.com":{},"docker.io":{"password":"p"},"b.example.com":null}}`))}},
		{"auth wins over username and password, unpadded auth", []corev1.Secret{configSecret("auth", false,
			[]byte(`{"auths":{"example.com":{"username":"u","password":"p","auth":"`+base64.RawStdEncoding.EncodeToString([]byte("a:b:c"))+`"}}}`))}},
		{"a legacy dockercfg secret", []corev1.Secret{configSecret("legacy", true, entries(true, "https://index.docker.io/v1/", "example.com"))}},
		{"a config that does not parse, next to one that does", []corev1.Secret{
			configSecret("good", false, entries(false, "example.com")),
			configSecret("bad", false, []byte(`{"auths":{"example.com":{"auth":"%%%"}}}`)),
		}},
		{"an auth without a colon", []corev1.Secret{configSecret("nocolon", false,
			[]byte(`{"auths":{"example.com":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("nocolon"))+`"}}}`))}},
		{"a field of the wrong type", []corev1.Secret{configSecret("typed", false, []byte(`{"auths":{"example.com":{"username":1}}}`))}},
		{"HttpHeaders of the wrong type", []corev1.Secret{configSecret("headers", false, []byte(`{"auths":{},"HttpHeaders":[]}`))}},
		{"fields in another case", []corev1.Secret{configSecret("case", false, []byte(`{"AUTHS":{"example.com":{"UserName":"u","PASSWORD":"p"}}}`))}},
		{"a legacy config in a dockerconfigjson secret", []corev1.Secret{configSecret("mixed", false, entries(true, "example.com"))}},
		{"secrets the kubelet does not read", []corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Name: "opaque"}, Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{corev1.DockerConfigJsonKey: entries(false, "example.com")}},
			{ObjectMeta: metav1.ObjectMeta{Name: "mistyped"}, Type: corev1.SecretTypeDockercfg,
				Data: map[string][]byte{corev1.DockerConfigJsonKey: entries(false, "example.com")}},
			{ObjectMeta: metav1.ObjectMeta{Name: "empty"}, Type: corev1.SecretTypeDockerConfigJson,
				Data: map[string][]byte{corev1.DockerConfigJsonKey: {}}},
			configSecret("good", false, entries(false, "a.example.com")),
		}},
		{"no secrets", nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, image := range images {
				compare(t, tc.secrets, image)
			}
		})
	}
}

// FuzzDockerConfig gives both keyrings arbitrary secret contents.
func FuzzDockerConfig(f *testing.F) {
	f.Add(entries(false, "docker.io", "example.com/team"), entries(true, "*.example.com"), false, "nginx")
	f.Add(entries(false, "https://index.docker.io/v1/"), []byte(`{"auths":{"x":{"auth":"%%%"}}}`), true, "docker.io/acme/app")
	f.Add([]byte(`{"auths":{"example.com":{"identitytoken":"t"}}}`), []byte(`null`), false, "example.com/app")
	f.Add([]byte(`{"auths":{"example.com:port":{"username":"u"},"example.com":{"auth":"dTpw"}}}`), []byte(`{}`), true, "example.com:5000/team/app")
	f.Fuzz(func(t *testing.T, config1, config2 []byte, legacy1 bool, image string) {
		compare(t, []corev1.Secret{configSecret("one", legacy1, config1), configSecret("two", true, config2)}, image)
	})
}

// FuzzRegistryKeys gives both keyrings well-formed secrets with arbitrary registry names.
func FuzzRegistryKeys(f *testing.F) {
	f.Add("docker.io", "index.docker.io/acme", "https://index.docker.io/v1/", "nginx")
	f.Add("*.example.com", "*.*.example.com", "example.com:5000", "a.b.example.com/app")
	f.Add("example.com/team", "https://example.com/v2/team/", "http://example.com", "example.com/teamster/app")
	f.Add("localhost", "localhost:5000", "[::1]:5000", "localhost/app")
	f.Fuzz(func(t *testing.T, key1, key2, key3, image string) {
		compare(t, []corev1.Secret{
			configSecret("one", false, entries(false, key1, key2)),
			configSecret("two", true, entries(true, key3, key1)),
		}, image)
	})
}
