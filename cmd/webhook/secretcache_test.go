package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
)

// TestSecretCacheModes fills a real API server (envtest) with Secrets of the kinds a cluster
// holds — service account tokens, TLS certificates, Helm release records, opaque
// configuration — and a few pull secrets, then starts the informer as the webhook does in
// each --secret-cache mode and measures what it holds. Pull secrets of either docker config
// type, and a secret of the wrong type named in imagePullSecrets, are read the same in both
// modes (from the cache or, when missing there, from the API server).
func TestSecretCacheModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "hack", "tools", "bin")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no kube-apiserver in", assets)
		}
		t.Skip("no kube-apiserver in ", assets, ": set KUBEBUILDER_ASSETS or run `make tools`")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "shop"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	filler := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	var objs []*corev1.Secret
	add := func(count int, typ corev1.SecretType, data map[string][]byte, annotations map[string]string) {
		for i := range count {
			objs = append(objs, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", strings.ToLower(strings.NewReplacer("/", "-", ".", "-").Replace(string(typ))), i), Annotations: annotations},
				Type:       typ, Data: data,
			})
		}
	}
	// What a namespace of a busy cluster holds, roughly: many tokens and certificates, Helm's
	// release history (tens of KiB each), a few pull secrets.
	add(40, corev1.SecretTypeServiceAccountToken, map[string][]byte{"token": filler(1000), "ca.crt": filler(1200), "namespace": []byte(ns)}, map[string]string{corev1.ServiceAccountNameKey: "default"})
	add(20, corev1.SecretTypeTLS, map[string][]byte{"tls.crt": filler(2000), "tls.key": filler(300)}, nil)
	add(20, "helm.sh/release.v1", map[string][]byte{"release": filler(20000)}, nil)
	add(15, corev1.SecretTypeOpaque, map[string][]byte{"config": filler(4000)}, nil)
	pull := testregistry.PullSecret(ns, "regcred", "registry.example.com", "puller", "hunter2")
	legacy := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Type:       corev1.SecretTypeDockercfg,
		Data: map[string][]byte{corev1.DockerConfigKey: fmt.Appendf(nil, `{"legacy.example.com":{"auth":%q}}`,
			base64.StdEncoding.EncodeToString([]byte("old:hunter3")))},
	}
	objs = append(objs, pull, legacy)
	for _, s := range objs {
		if err := c.Create(ctx, s.DeepCopy()); err != nil {
			t.Fatalf("creating %s: %v", s.Name, err)
		}
	}

	for _, tc := range []struct {
		mode string
		// cached are how many of the secrets the informer must hold; withData how many
		// with data.
		cached, withData int
	}{
		{mode: secretCacheAll, cached: len(objs), withData: 2},
		{mode: secretCachePullSecrets, cached: 1, withData: 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			informers, err := cache.New(cfg, cache.Options{
				Scheme:           scheme,
				DefaultTransform: cache.TransformStripManagedFields(),
				ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: secretCacheByObject(tc.mode)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := informers.GetInformer(ctx, &corev1.Secret{}); err != nil {
				t.Fatal(err)
			}
			go func() { _ = informers.Start(ctx) }()
			if !informers.WaitForCacheSync(ctx) {
				t.Fatal("no sync")
			}
			var list corev1.SecretList
			if err := informers.List(ctx, &list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			bytes, withData := 0, 0
			for i := range list.Items {
				b, err := json.Marshal(&list.Items[i])
				if err != nil {
					t.Fatal(err)
				}
				bytes += len(b)
				if len(list.Items[i].Data) > 0 {
					withData++
				}
			}
			var stored int
			for _, s := range objs {
				b, _ := json.Marshal(s)
				stored += len(b)
			}
			t.Logf("--secret-cache=%s: %d of %d secrets cached, %d with data; %d bytes as JSON (the API server stores %d); %d bytes per cached secret",
				tc.mode, len(list.Items), len(objs), withData, bytes, stored, bytes/max(len(list.Items), 1))
			if len(list.Items) != tc.cached || withData != tc.withData {
				t.Errorf("cached %d secrets, %d with data; want %d, %d", len(list.Items), withData, tc.cached, tc.withData)
			}

			// Both docker config types, and a wrong type, as the kubelet reads them.
			for _, p := range []struct {
				secret, image string
				problem       pullsecrets.ProblemKind
				creds         int
			}{
				{"regcred", "registry.example.com/app", "", 1},
				{"legacy", "legacy.example.com/app", "", 1},
				{"opaque-0", "registry.example.com/app", pullsecrets.WrongType, 0},
			} {
				spec := &corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: p.secret}}}
				k, err := pullsecrets.ForPod(ctx, informers, ns, spec, pullsecrets.WithAPIReader(c))
				if err != nil {
					t.Fatal(err)
				}
				var kinds []pullsecrets.ProblemKind
				for _, pr := range k.Problems {
					kinds = append(kinds, pr.Kind)
				}
				if (p.problem == "" && len(kinds) > 0) || (p.problem != "" && (len(kinds) != 1 || kinds[0] != p.problem)) {
					t.Errorf("%s: problems %v, want %q", p.secret, kinds, p.problem)
				}
				repo, err := name.NewRepository(p.image)
				if err != nil {
					t.Fatal(err)
				}
				if got := len(k.Credentials(repo)); got != p.creds {
					t.Errorf("%s: %d credentials for %s, want %d", p.secret, got, p.image, p.creds)
				}
			}
		})
	}
}
