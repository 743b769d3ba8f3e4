# pullgate Makefile

SHELL := /usr/bin/env bash

# ---------------------------------------------------------------------------
# Local control-plane tools (hack/tools.sh, hack/install-deps.sh)
#
# hack/tools/bin holds kube-apiserver, kubectl, etcd (for envtest) and helm,
# built from source via the Go module proxy. envtest reads KUBEBUILDER_ASSETS.
# ---------------------------------------------------------------------------
TOOLS_BIN := $(CURDIR)/hack/tools/bin
export KUBEBUILDER_ASSETS ?= $(TOOLS_BIN)

.PHONY: tools
tools: ## Build kube-apiserver, kubectl, etcd, helm into hack/tools/bin (cached)
	hack/tools.sh

.PHONY: deps
deps: ## Install the Debian packages the e2e needs (registry, htpasswd, containerd, runc, CNI plugins)
	hack/install-deps.sh

# ---------------------------------------------------------------------------
# Build, test, demo
# ---------------------------------------------------------------------------
GO ?= go
# A count of executions, not a duration: with a duration, Go's fuzzing coordinator races its
# own deadline on a loaded machine and fails with a bare "context deadline exceeded" and no
# failing input (seen in CI here, FuzzImageReference; golang/go's known shutdown race).
FUZZTIME ?= 10000x

# The Dockerfile's build: static, -trimpath, the version stamped in. Both paths give the same
# binary for the same VERSION.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO_BUILD_FLAGS = -trimpath -ldflags "-s -w -X main.version=$(VERSION)"

.PHONY: build
build: ## Build the webhook binary into bin/webhook as the Dockerfile does (VERSION=...)
	CGO_ENABLED=0 $(GO) build $(GO_BUILD_FLAGS) -o bin/webhook ./cmd/webhook

.PHONY: build-plugin
build-plugin: ## Build the kubectl plugin into bin/kubectl-pullgate, with the same flags (VERSION=...)
	CGO_ENABLED=0 $(GO) build $(GO_BUILD_FLAGS) -o bin/kubectl-pullgate ./cmd/kubectl-pullgate

# The plugin's release: one archive per krew platform, and deploy/krew/pullgate.yaml with the
# version and the archives' sha256 filled in, as dist/pullgate.yaml.
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
.PHONY: release-plugin
release-plugin: ## Build the plugin's release archives and krew manifest into dist/ (VERSION=vX.Y.Z)
	@rm -rf dist && mkdir -p dist
	@set -euo pipefail; manifest=$$(cat deploy/krew/pullgate.yaml); \
	for p in $(PLUGIN_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; exe=kubectl-pullgate; [ "$$os" = windows ] && exe=kubectl-pullgate.exe; \
	  work=dist/$$os-$$arch; mkdir -p $$work; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(GO_BUILD_FLAGS) -o $$work/$$exe ./cmd/kubectl-pullgate; \
	  archive=dist/kubectl-pullgate_$(VERSION)_$${os}_$${arch}.tar.gz; \
	  tar -C $$work -czf $$archive $$exe; rm -rf $$work; \
	  sum=$$(sha256sum $$archive | cut -d' ' -f1); \
	  manifest=$${manifest//\$$\{SHA256_$${os}_$${arch}\}/$$sum}; \
	  echo "$$archive $$sum"; \
	done; \
	manifest=$${manifest//\$$\{VERSION\}/$(VERSION)}; printf '%s\n' "$$manifest" > dist/pullgate.yaml
	@echo "dist/pullgate.yaml written"

IMAGE ?=
.PHONY: image
image: build ## Build the container image without Docker and push it: IMAGE=REGISTRY/REPO:TAG [INSECURE=1]
	@test -n "$(IMAGE)" || { echo "make image: set IMAGE=REGISTRY/REPOSITORY:TAG"; exit 2; }
	$(GO) run ./hack/image -binary bin/webhook -version $(VERSION) -ref $(IMAGE) $(if $(INSECURE),-insecure)

.PHONY: demo
demo: deps tools ## Show pullgate rejecting, warning and admitting on a throwaway local cluster
	$(GO) run ./hack/demo

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/ ./test/install/realnode/

.PHONY: unit
unit: ## Unit and integration tests with the race detector
	$(GO) test -race -count=1 ./...

.PHONY: fuzz
fuzz: ## A short run of every fuzz target
	$(GO) test -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZTIME) ./pkg/webhook/
	$(GO) test -run '^$$' -fuzz '^FuzzPullSpecScan$$' -fuzztime $(FUZZTIME) ./pkg/webhook/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/policy/
	$(GO) test -run '^$$' -fuzz '^FuzzImageReference$$' -fuzztime $(FUZZTIME) ./pkg/validate/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/registryhosts/

# hack/tools/keyringdiff is its own module (it requires k8s.io/kubernetes, which pullgate
# must not): the table against the kubelet's own keyring, then a short run of each fuzz target.
KEYRINGDIFF := cd hack/tools/keyringdiff && GOWORK=off

.PHONY: keyringdiff
keyringdiff: ## Differential test: pkg/pullsecrets against the kubelet's keyring (k8s.io/kubernetes pkg/credentialprovider)
	$(KEYRINGDIFF) $(GO) vet ./...
	$(KEYRINGDIFF) $(GO) test -count=1 ./...
	$(KEYRINGDIFF) $(GO) test -run '^$$' -fuzz '^FuzzRegistryKeys$$' -fuzztime $(FUZZTIME) .
	$(KEYRINGDIFF) $(GO) test -run '^$$' -fuzz '^FuzzDockerConfig$$' -fuzztime $(FUZZTIME) .

.PHONY: e2e
e2e: deps tools ## End-to-end tests on a real cluster (two kubelets): every cause's ground truth, and the chart installed for real
	$(GO) test -tags e2e -count=1 -p 1 -timeout 45m -v ./test/e2e/ ./test/install/realnode/

.PHONY: test
test: deps tools lint unit fuzz keyringdiff e2e ## Everything CI runs (.ci/run)

.PHONY: bench
bench: deps tools ## Benchmark pullgate against a do-nothing webhook (BENCHMARKS.md); BENCHFLAGS passes flags
	$(GO) run ./test/bench -out BENCHMARKS-results.json $(BENCHFLAGS)

.PHONY: kyverno
kyverno: ## Build Kyverno's admission controller into hack/tools/bin/kyverno (only for `go run ./test/bench -kyverno`)
	hack/tools.sh kyverno
