//go:build tools

// Package ecrprovider pins k8s.io/cloud-provider-aws, whose cmd/ecr-credential-provider is
// the kubelet credential provider plugin of EKS nodes: the wiring test runs it through
// pullgate's --image-credential-provider-config (it cannot reach AWS here, which must end
// in a warning, never a denial). Its own module, as hack/certmanager, so its dependencies
// stay out of pullgate's go.mod. Build: cd hack/ecrprovider && go build -o BIN
// k8s.io/cloud-provider-aws/cmd/ecr-credential-provider
package ecrprovider

import _ "k8s.io/cloud-provider-aws/cmd/ecr-credential-provider"
