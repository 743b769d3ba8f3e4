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
deps: ## Install the Debian packages the e2e needs (docker-registry, apache2-utils)
	hack/install-deps.sh
