package pullsecrets

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testregistry"
)

const ns = "apps"

func dockerSecret(name, host string) *corev1.Secret {
	return testregistry.PullSecret(ns, name, host, "u", "p")
}

func refs(names ...string) []corev1.LocalObjectReference {
	var out []corev1.LocalObjectReference
	for _, n := range names {
		out = append(out, corev1.LocalObjectReference{Name: n})
	}
	return out
}

func TestForPod(t *testing.T) {
	legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, Type: corev1.SecretTypeDockercfg,
		Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"old.example.com":{"username":"u","password":"p"}}`)}}
	reader := fake.NewClientBuilder().WithObjects(
		dockerSecret("ghcr", "ghcr.io"), dockerSecret("quay", "quay.io"), legacy,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tls"}, Type: corev1.SecretTypeTLS},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"}, Type: corev1.SecretTypeDockerConfigJson},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "garbled"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"x.io":{"auth":"%%%"}}}`)}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}, ImagePullSecrets: refs("quay")},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci"}, ImagePullSecrets: refs("ghcr", "missing")},
	).Build()

	tests := []struct {
		desc         string
		spec         corev1.PodSpec
		wantNames    []string
		wantSA       string
		wantProblems []Problem
		// wantCreds maps a repository to the secrets whose credentials apply, in order.
		wantCreds map[string][]string
	}{
		{desc: "the default ServiceAccount's secrets when the pod lists none",
			wantNames: []string{"quay"}, wantSA: "default",
			wantCreds: map[string][]string{"quay.io/team/app": {"quay"}, "ghcr.io/team/app": nil}},
		{desc: "a named ServiceAccount's secrets, one missing",
			spec:      corev1.PodSpec{ServiceAccountName: "ci"},
			wantNames: []string{"ghcr", "missing"}, wantSA: "ci",
			wantProblems: []Problem{{Secret: "missing", Kind: Missing}},
			wantCreds:    map[string][]string{"ghcr.io/team/app": {"ghcr"}}},
		{desc: "the pod's own list wins over the ServiceAccount's, duplicates once",
			spec:      corev1.PodSpec{ImagePullSecrets: refs("ghcr", "legacy", "ghcr")},
			wantNames: []string{"ghcr", "legacy"},
			wantCreds: map[string][]string{"old.example.com/app": {"legacy"}, "quay.io/team/app": nil}},
		{desc: "unusable secrets are reported, not used",
			spec:      corev1.PodSpec{ImagePullSecrets: refs("tls", "empty", "garbled")},
			wantNames: []string{"tls", "empty", "garbled"},
			wantProblems: []Problem{
				{Secret: "tls", Kind: WrongType}, {Secret: "empty", Kind: WrongType}, {Secret: "garbled", Kind: Unparseable},
			},
			wantCreds: map[string][]string{"x.io/app": nil}},
		{desc: "a missing ServiceAccount means no secrets, and is reported",
			spec:         corev1.PodSpec{ServiceAccountName: "nobody"},
			wantProblems: []Problem{{ServiceAccount: "nobody", Kind: ServiceAccountMissing}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := ForPod(t.Context(), reader, ns, &tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantNames, k.SecretNames, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("secret names (-want +got):\n%s", diff)
			}
			if k.ServiceAccount != tc.wantSA {
				t.Errorf("ServiceAccount = %q, want %q", k.ServiceAccount, tc.wantSA)
			}
			if diff := cmp.Diff(tc.wantProblems, k.Problems, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Problem{}, "Detail")); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			for _, p := range k.Problems {
				if p.Detail == "" || containsAny(p.Detail, "%%%", `"p"`) {
					t.Errorf("problem detail %q is empty or quotes secret data", p.Detail)
				}
			}
			for repo, want := range tc.wantCreds {
				r, err := name.NewRepository(repo)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range k.Credentials(r) {
					got = append(got, c.Secret)
				}
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("credentials for %s (-want +got):\n%s", repo, diff)
				}
			}
		})
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// Parsed secrets are kept by UID and resourceVersion: a rotated secret's new password is
// used at once, and a recreated secret (new UID) is parsed afresh.
func TestRotatedSecretIsParsedAgain(t *testing.T) {
	secret := dockerSecret("rotating", "rot.example.com")
	secret.UID = "uid-1"
	reader := fake.NewClientBuilder().WithObjects(secret).Build()
	spec := &corev1.PodSpec{ImagePullSecrets: refs("rotating")}
	repo, err := name.NewRepository("rot.example.com/app")
	if err != nil {
		t.Fatal(err)
	}
	password := func() string {
		t.Helper()
		k, err := ForPod(t.Context(), reader, ns, spec)
		if err != nil {
			t.Fatal(err)
		}
		creds := k.Credentials(repo)
		if len(creds) != 1 {
			t.Fatalf("got %d credentials for %s, want 1", len(creds), repo)
		}
		cfg, err := creds[0].Auth.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Password
	}
	setPassword := func(p string) {
		t.Helper()
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{"rot.example.com": map[string]string{"username": "u", "password": p}}})
		secret.Data[corev1.DockerConfigJsonKey] = cfg
		if err := reader.Update(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
	}

	if got := password(); got != "p" {
		t.Fatalf("password = %q, want %q", got, "p")
	}
	if got := password(); got != "p" {
		t.Fatalf("second read: password = %q, want %q", got, "p")
	}
	setPassword("rotated")
	if got := password(); got != "rotated" {
		t.Errorf("after rotation: password = %q, want %q", got, "rotated")
	}
}

// A secret with entries for two paths of one registry answers per repository, also when the
// answers are remembered across admissions.
func TestCredentialsPerRepository(t *testing.T) {
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{
		"multi.example.com/team-a": map[string]string{"username": "a", "password": "pa"},
		"multi.example.com/team-b": map[string]string{"username": "b", "password": "pb"},
	}})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "paths", UID: "uid-paths"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}}
	reader := fake.NewClientBuilder().WithObjects(secret).Build()
	spec := &corev1.PodSpec{ImagePullSecrets: refs("paths")}
	for i, tc := range []struct{ repo, wantUser string }{
		{"multi.example.com/team-a/app", "a"},
		{"multi.example.com/team-b/app", "b"},
		{"multi.example.com/team-a/app", "a"},
		{"multi.example.com/team-c/app", ""},
		{"multi.example.com/team-b/app", "b"},
	} {
		k, err := ForPod(t.Context(), reader, ns, spec)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(tc.repo)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if creds := k.Credentials(repo); len(creds) > 0 {
			cfg, err := creds[0].Auth.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			got = cfg.Username
		}
		if got != tc.wantUser {
			t.Errorf("%d: credentials for %s: user %q, want %q", i, tc.repo, got, tc.wantUser)
		}
	}
}
