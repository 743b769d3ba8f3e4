package validate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/pkg/credentialprovider"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
)

// offline is a Registry that answers every look-up as unreachable without sending anything:
// the ECR host of TestECRCredentialProvider must not be asked from this machine.
type offline struct{ validate.Registry }

func (offline) Resolve(_ context.Context, ref name.Reference, _ authn.Authenticator) (lookup.Descriptor, error) {
	return lookup.Descriptor{}, &lookup.Error{Kind: lookup.KindUnreachable, Host: ref.Context().RegistryStr(), Err: fmt.Errorf("not dialled in this test")}
}

// TestECRCredentialProvider runs the real ecr-credential-provider (k8s.io/cloud-provider-aws,
// built from hack/ecrprovider) through the same configuration the EKS nodes use. It cannot
// reach AWS (its endpoints point at a closed port on 127.0.0.1): the plugin fails, and that
// must be a warning, never a denial. Set PULLGATE_ECR_CREDENTIAL_PROVIDER to the binary:
//
//	cd hack/ecrprovider && go build -o /tmp/bin/ecr-credential-provider k8s.io/cloud-provider-aws/cmd/ecr-credential-provider
//	PULLGATE_ECR_CREDENTIAL_PROVIDER=/tmp/bin/ecr-credential-provider go test -run TestECRCredentialProvider ./pkg/validate
func TestECRCredentialProvider(t *testing.T) {
	bin := os.Getenv("PULLGATE_ECR_CREDENTIAL_PROVIDER")
	if bin == "" {
		t.Skip("PULLGATE_ECR_CREDENTIAL_PROVIDER is not set")
	}
	// The EKS AMI's configuration (/etc/eks/image-credential-provider/config.json), with
	// AWS's endpoints pointed at a port nothing listens on.
	cfg := `{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{
"name":"ecr-credential-provider","apiVersion":"credentialprovider.kubelet.k8s.io/v1","defaultCacheDuration":"12h",
"matchImages":["*.dkr.ecr.*.amazonaws.com","*.dkr.ecr.*.amazonaws.com.cn","*.dkr.ecr-fips.*.amazonaws.com"],
"env":[{"name":"AWS_ENDPOINT_URL","value":"http://127.0.0.1:9"},{"name":"AWS_EC2_METADATA_DISABLED","value":"true"},
{"name":"AWS_ACCESS_KEY_ID","value":"AKIDEXAMPLE"},{"name":"AWS_SECRET_ACCESS_KEY","value":"example"},{"name":"AWS_REGION","value":"eu-west-1"}]}]}`
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(dir, "bin")
	os.Mkdir(binDir, 0o755)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "ecr-credential-provider"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := credentialprovider.Load(config, binDir, credentialprovider.WithEnviron(func() []string { return []string{"HOME=" + dir} }))
	if err != nil {
		t.Fatal(err)
	}
	checker := &validate.Checker{Registry: offline{}, NodeCredentials: p}
	spec := pod("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	got := checker.Check(ctx, testPolicy(), validate.Pod{Namespace: ns, Spec: &spec, Keyring: &pullsecrets.Keyring{}})
	t.Logf("%s: %+v", time.Since(start).Round(time.Millisecond), got)
	if len(got) != 1 || got[0].Reason != validate.RegistryError || got[0].Severity != validate.Warn {
		t.Fatalf("findings = %+v, want one RegistryError warning", got)
	}
	if !strings.Contains(got[0].Message, `credential provider "ecr-credential-provider"`) {
		t.Errorf("message %q does not name the plugin", got[0].Message)
	}
}
