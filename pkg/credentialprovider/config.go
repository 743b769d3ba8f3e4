package credentialprovider

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"
)

// configAPIVersions are the apiVersions of CredentialProviderConfig the kubelet reads; the
// three have the same fields but tokenAttributes (v1 only), and are decoded here into the
// v1 type.
var configAPIVersions = []string{"kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"}

// pluginAPIVersions are the protocol versions a provider may ask for (plugin.go,
// apiVersions). Their request and response have the same JSON shape, the service account
// fields aside, which only v1 has and only tokenAttributes (v1 only) fills.
var pluginAPIVersions = []string{
	"credentialprovider.kubelet.k8s.io/v1alpha1",
	"credentialprovider.kubelet.k8s.io/v1beta1",
	credentialproviderv1.SchemeGroupVersion.String(),
}

// ReadConfig reads the CredentialProviderConfig at path, a file or a directory, as the
// kubelet's readCredentialProviderConfig does: a directory's *.json, *.yaml and *.yml files
// in lexical order, their providers merged, a provider name seen twice an error. Decoding is
// strict (an unknown field is an error), as the kubelet's codec is. It validates the result
// (validateConfig).
func ReadConfig(path string) (*kubeletconfigv1.CredentialProviderConfig, error) {
	if path == "" {
		return nil, errors.New("credential provider config path is empty")
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading credential provider config: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("reading credential provider config directory: %w", err)
		}
		files = nil
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".json", ".yaml", ".yml":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		slices.Sort(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("no configuration files found in directory %q", path)
		}
	}
	merged := &kubeletconfigv1.CredentialProviderConfig{}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading credential provider config: %w", err)
		}
		cfg, err := decodeConfig(data)
		if err != nil {
			return nil, fmt.Errorf("decoding credential provider config %q: %w", f, err)
		}
		for _, p := range cfg.Providers {
			if seen[p.Name] {
				return nil, fmt.Errorf("duplicate provider name %q found in configuration file(s)", p.Name)
			}
			seen[p.Name] = true
			merged.Providers = append(merged.Providers, p)
		}
	}
	if errs := validateConfig(merged); len(errs) > 0 {
		return nil, fmt.Errorf("invalid credential provider config: %w", errs.ToAggregate())
	}
	return merged, nil
}

func decodeConfig(data []byte) (*kubeletconfigv1.CredentialProviderConfig, error) {
	var cfg kubeletconfigv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, err
	}
	if cfg.Kind != "CredentialProviderConfig" {
		return nil, fmt.Errorf("kind %q is not CredentialProviderConfig", cfg.Kind)
	}
	if !slices.Contains(configAPIVersions, cfg.APIVersion) {
		return nil, fmt.Errorf("apiVersion %q is not one of %s", cfg.APIVersion, strings.Join(configAPIVersions, ", "))
	}
	return &cfg, nil
}

// validateConfig is the kubelet's validateCredentialProviderConfig (config.go) with the
// KubeletServiceAccountTokenForCredentialProviders feature on (it is GA).
func validateConfig(cfg *kubeletconfigv1.CredentialProviderConfig) field.ErrorList {
	var errs field.ErrorList
	if len(cfg.Providers) == 0 {
		errs = append(errs, field.Required(field.NewPath("providers"), "at least 1 item in plugins is required"))
	}
	seen := map[string]bool{}
	for i, p := range cfg.Providers {
		fp := field.NewPath("providers").Index(i)
		switch {
		case strings.Contains(p.Name, "/"):
			errs = append(errs, field.Invalid(fp.Child("name"), p.Name, "provider name cannot contain '/'"))
		case strings.Contains(p.Name, " "):
			errs = append(errs, field.Invalid(fp.Child("name"), p.Name, "provider name cannot contain spaces"))
		case p.Name == "." || p.Name == "..":
			errs = append(errs, field.Invalid(fp.Child("name"), p.Name, "provider name cannot be '.' or '..'"))
		case p.Name == "":
			errs = append(errs, field.Required(fp.Child("name"), ""))
		}
		if seen[p.Name] {
			errs = append(errs, field.Duplicate(fp.Child("name"), p.Name))
		}
		seen[p.Name] = true
		if p.APIVersion == "" {
			errs = append(errs, field.Required(fp.Child("apiVersion"), ""))
		} else if !slices.Contains(pluginAPIVersions, p.APIVersion) {
			errs = append(errs, field.NotSupported(fp.Child("apiVersion"), p.APIVersion, pluginAPIVersions))
		}
		if len(p.MatchImages) == 0 {
			errs = append(errs, field.Required(fp.Child("matchImages"), "at least 1 item in matchImages is required"))
		}
		for _, m := range p.MatchImages {
			// credentialprovider.ParseSchemelessURL
			if _, err := url.Parse("https://" + m); err != nil {
				errs = append(errs, field.Invalid(fp.Child("matchImages"), m, "match image is invalid: "+err.Error()))
			}
		}
		if p.DefaultCacheDuration == nil {
			errs = append(errs, field.Required(fp.Child("defaultCacheDuration"), ""))
		} else if p.DefaultCacheDuration.Duration < 0 {
			errs = append(errs, field.Invalid(fp.Child("defaultCacheDuration"), p.DefaultCacheDuration.Duration.String(), "must be greater than or equal to 0"))
		}
		if t := p.TokenAttributes; t != nil {
			tp := fp.Child("tokenAttributes")
			if t.ServiceAccountTokenAudience == "" {
				errs = append(errs, field.Required(tp.Child("serviceAccountTokenAudience"), ""))
			}
			if t.RequireServiceAccount == nil {
				errs = append(errs, field.Required(tp.Child("requireServiceAccount"), ""))
			}
			if p.APIVersion != credentialproviderv1.SchemeGroupVersion.String() {
				errs = append(errs, field.Forbidden(tp, "tokenAttributes is only supported for "+credentialproviderv1.SchemeGroupVersion.String()+" API version"))
			}
			if t.RequireServiceAccount != nil && !*t.RequireServiceAccount && len(t.RequiredServiceAccountAnnotationKeys) > 0 {
				errs = append(errs, field.Forbidden(tp.Child("requiredServiceAccountAnnotationKeys"), "requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set"))
			}
			errs = append(errs, validateAnnotationKeys(tp.Child("requiredServiceAccountAnnotationKeys"), t.RequiredServiceAccountAnnotationKeys)...)
			errs = append(errs, validateAnnotationKeys(tp.Child("optionalServiceAccountAnnotationKeys"), t.OptionalServiceAccountAnnotationKeys)...)
			for _, k := range t.RequiredServiceAccountAnnotationKeys {
				if slices.Contains(t.OptionalServiceAccountAnnotationKeys, k) {
					errs = append(errs, field.Invalid(tp, k, "annotation keys cannot be both required and optional"))
				}
			}
			switch t.CacheType {
			case kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType, kubeletconfigv1.TokenServiceAccountTokenCacheType:
			case "":
				errs = append(errs, field.Required(tp.Child("cacheType"), "cacheType is required to be set when tokenAttributes is specified. Supported values are: ServiceAccount, Token"))
			default:
				errs = append(errs, field.NotSupported(tp.Child("cacheType"), t.CacheType, []string{"ServiceAccount", "Token"}))
			}
		}
	}
	return errs
}

func validateAnnotationKeys(fp *field.Path, keys []string) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for _, k := range keys {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, field.Invalid(fp, k, msg))
		}
		if seen[k] {
			errs = append(errs, field.Duplicate(fp, k))
		}
		seen[k] = true
	}
	return errs
}

// binaryPath finds provider's executable in binDir, as RegisterCredentialProviderPlugins
// does (exec.LookPath of binDir/name).
func binaryPath(binDir, provider string) (string, error) {
	p, err := exec.LookPath(filepath.Join(binDir, provider))
	if err != nil {
		return "", fmt.Errorf("plugin binary executable for provider %q: %w", provider, err)
	}
	return p, nil
}
