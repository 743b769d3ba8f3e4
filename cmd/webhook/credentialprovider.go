package main

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pullgate/pullgate/pkg/credentialprovider"
	"github.com/pullgate/pullgate/pkg/registryhosts"
	"github.com/pullgate/pullgate/pkg/validate"
)

// loadCredentialProviders loads the plugins --image-credential-provider-config names, or
// returns nil when it is not set.
func loadCredentialProviders(cfg config, restCfg *rest.Config, cached, api client.Reader) (validate.CredentialProviders, error) {
	if cfg.CredentialProviderConfig == "" {
		return nil, nil
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("creating the client for service account tokens: %w", err)
	}
	p, err := credentialprovider.Load(cfg.CredentialProviderConfig, cfg.CredentialProviderBinDir,
		credentialprovider.WithServiceAccounts(&serviceAccounts{cached: cached, api: api, tokens: cs}))
	if err != nil {
		return nil, fmt.Errorf("loading credential providers: %w", err)
	}
	ctrl.Log.WithName("setup").Info("Credential provider plugins loaded", "providers", p.Names())
	return p, nil
}

// serviceAccounts reads ServiceAccounts from the informer cache (then the API server) and
// mints tokens with the TokenRequest API (create on serviceaccounts/token).
type serviceAccounts struct {
	cached, api client.Reader
	tokens      kubernetes.Interface
}

func (s *serviceAccounts) Get(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	var sa corev1.ServiceAccount
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := s.cached.Get(ctx, key, &sa)
	if apierrors.IsNotFound(err) {
		err = s.api.Get(ctx, key, &sa)
	}
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

func (s *serviceAccounts) CreateToken(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return s.tokens.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr, metav1.CreateOptions{})
}

// registryHostsOf is the nodes' containerd registry configuration --node-registry-config-dir
// names, or nil.
func registryHostsOf(cfg config) validate.RegistryHosts {
	if cfg.NodeRegistryConfigDir == "" {
		return nil
	}
	return registryhosts.Config{Dir: cfg.NodeRegistryConfigDir}
}
