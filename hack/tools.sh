#!/usr/bin/env bash
# hack/tools.sh - build pullgate's local control-plane tools from source.
#
# Everything comes from the Go module proxy (no release downloads, no Docker):
#   kube-apiserver, kubectl, k8s.io/kubernetes ${K8S_VERSION}
#   kubelet, kube-controller-manager, kube-scheduler
#                            (the real node of the e2e and the demo)
#   etcd                     go.etcd.io/etcd/server/v3 at the version that
#                            k8s.io/kubernetes ${K8S_VERSION} itself requires
#   helm                     helm.sh/helm/v3/cmd/helm ${HELM_VERSION}, built
#                            with `go install ...@version`, i.e. against helm's
#                            own go.mod/go.sum
#   cert-manager/            cert-manager's controller and cainjector
#                            ${CERT_MANAGER_VERSION}, for test/install, built in the
#                            module hack/certmanager (cert-manager's go.mod has a
#                            replace directive: no `go install ...@version`)
#   kyverno/                 Kyverno's admission controller ${KYVERNO_VERSION}, for
#                            `go run ./test/bench -kyverno` only: built when
#                            PULLGATE_TOOLS_KYVERNO=1 or by `hack/tools.sh kyverno`
#                            (`make kyverno`), in the module hack/kyverno (Kyverno's
#                            go.mod has a replace directive)
#   containerd2/             containerd and containerd-shim-runc-v2
#                            ${CONTAINERD2_VERSION}, the e2e's second node (Debian
#                            has containerd 1.6 for the first), with go install
#                            against containerd's own go.mod
#
# The Kubernetes binaries and etcd are built inside the separate tools module
# hack/tools (go.mod generated from k8s.io/kubernetes's go.mod, see
# `update-gomod`), so pullgate's own go.mod is never involved.
#
# Usage:
#   hack/tools.sh [build]       build what is missing or stale into hack/tools/bin
#   hack/tools.sh update-gomod  regenerate hack/tools/go.mod + go.sum
#   hack/tools.sh env           print `export KUBEBUILDER_ASSETS=...` (eval it)
#   hack/tools.sh versions      print the version of every built binary
#   hack/tools.sh kyverno       build only Kyverno (for test/bench -kyverno)
#
# controller-runtime's envtest reads KUBEBUILDER_ASSETS and wants the files
# kube-apiserver, etcd and kubectl in that directory:
#   export KUBEBUILDER_ASSETS="$(pwd)/hack/tools/bin"
#
# Idempotent: a binary is rebuilt only when it is missing or its stamp file
# (hack/tools/bin/.<name>.stamp: version, Go version, flags, go.mod/go.sum
# hash) no longer matches. FORCE=1 rebuilds everything.
set -Eeuo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${ROOT_DIR}/hack/tools"
BIN_DIR="${TOOLS_BIN_DIR:-${TOOLS_DIR}/bin}"

K8S_VERSION="v1.37.2"
HELM_VERSION="v3.22.0"
CONTAINERD2_VERSION="v2.4.2"
CERT_MANAGER_VERSION="v1.11.5"
KYVERNO_VERSION="v1.19.1"
TOOLS_MODULE="github.com/pullgate/pullgate/hack/tools"

# Use the installed Go as is (never fetch a toolchain), ignore any go.work,
# and build static binaries like the upstream release builds do.
export GOTOOLCHAIN=local
export GOWORK=off
export CGO_ENABLED=0

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'hack/tools.sh: ERROR: %s\n' "$*" >&2
	exit 1
}
# Report the failing command once (at the top-level shell, not in every
# command-substitution subshell it passed through).
on_err() {
	local rc="$1" line="$2" cmd="$3"
	if [[ "${BASH_SUBSHELL}" -eq 0 ]]; then
		printf 'hack/tools.sh: ERROR: exit %s at line %s: %s\n' "${rc}" "${line}" "${cmd}" >&2
	fi
	exit "${rc}"
}
trap 'on_err "$?" "${LINENO}" "${BASH_COMMAND}"' ERR

command -v go >/dev/null || die "go is not on PATH"

# ---------------------------------------------------------------------------
# update-gomod: regenerate hack/tools/go.mod from k8s.io/kubernetes's go.mod.
# ---------------------------------------------------------------------------

# k8s.io/kubernetes's go.mod file from the module cache (downloads it).
k8s_gomod_file() {
	local json file
	json="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}")" ||
		die "go mod download k8s.io/kubernetes@${K8S_VERSION} failed"
	file="$(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -f "${file}" ]] || die "no go.mod for k8s.io/kubernetes@${K8S_VERSION} in: ${json}"
	printf '%s\n' "${file}"
}

# The staging modules: every k8s.io/* that k8s.io/kubernetes requires at
# v0.0.0 (and replaces with ./staging/src/k8s.io/*). The two lists must agree.
staging_modules() {
	local gomod="$1" required replaced
	required="$(awk '
		/^require[[:space:]]*\($/ { inreq = 1; next }
		inreq && /^\)/ { inreq = 0; next }
		inreq && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }
		/^require[[:space:]]+k8s\.io\// && $3 == "v0.0.0" { print $2 }
	' "${gomod}" | sort -u)"
	replaced="$(awk '$1 ~ /^k8s\.io\// && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }
		/^replace[[:space:]]+k8s\.io\// && $3 == "=>" && $4 ~ /^\.\/staging\// { print $2 }' "${gomod}" | sort -u)"
	[[ -n "${required}" ]] || die "found no v0.0.0 k8s.io/* requirements in ${gomod}"
	# Every required v0.0.0 module must be a staging replace (the replace
	# list may name a few extra, unrequired samples; those need nothing).
	local missing
	missing="$(comm -23 <(printf '%s\n' "${required}") <(printf '%s\n' "${replaced}"))"
	[[ -z "${missing}" ]] || die "required at v0.0.0 but not replaced to ./staging: ${missing}"
	printf '%s\n' "${required}"
}

update_gomod() {
	local gomod staging_version go_line mods m
	gomod="$(k8s_gomod_file)"
	staging_version="v0.${K8S_VERSION#v1.}" # v1.37.2 -> v0.37.2
	log "generating ${TOOLS_DIR}/go.mod from ${gomod}"
	mods="$(staging_modules "${gomod}")"
	log "$(printf '%s\n' "${mods}" | wc -l) staging modules -> ${staging_version}"

	cd "${TOOLS_DIR}"
	rm -f go.mod go.sum
	go mod init "${TOOLS_MODULE}" 2>/dev/null
	# Same language version and GODEBUG defaults as k8s.io/kubernetes, so the
	# binaries behave like upstream's (the main module decides GODEBUG).
	go_line="$(awk '$1 == "go" { print $2; exit }' "${gomod}")"
	go mod edit -go="${go_line}"
	while read -r m; do
		go mod edit -godebug="${m}"
	done < <(awk '$1 == "godebug" && $2 != "(" { print $2 }' "${gomod}")
	go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
	{
		printf '\n// Every k8s.io/* module that k8s.io/kubernetes requires at v0.0.0 (its\n'
		printf '// ./staging replaces), pinned to the matching published version.\n'
		printf 'replace (\n'
		while read -r m; do
			printf '\t%s => %s %s\n' "${m}" "${m}" "${staging_version}"
		done <<<"${mods}"
		printf ')\n'
	} >>go.mod
	go mod tidy
	{
		printf '// Code generated by hack/tools.sh update-gomod; DO NOT EDIT.\n'
		printf '// k8s.io/kubernetes %s; staging modules replaced to %s.\n\n' "${K8S_VERSION}" "${staging_version}"
		cat go.mod
	} >go.mod.tmp && mv go.mod.tmp go.mod
	go mod verify >/dev/null

	# Report where the resolved graph differs from k8s.io/kubernetes's own
	# pins (MVS may raise a version if etcd's server module needs more).
	local diffs
	diffs="$(LC_ALL=C join <(awk '/^require[[:space:]]*\($/{r=1;next} r&&/^\)/{r=0;next} r&&$2!="v0.0.0"{print $1, $2}' "${gomod}" | LC_ALL=C sort) \
		<(go list -m -f '{{.Path}} {{.Version}}' all | LC_ALL=C sort) | awk '$2 != $3 { print "   " $1 ": kubernetes " $2 ", tools module " $3 }')"
	if [[ -n "${diffs}" ]]; then
		log "versions raised above k8s.io/kubernetes's go.mod:"
		printf '%s\n' "${diffs}" >&2
	else
		log "every k8s.io/kubernetes requirement resolves to the same version"
	fi
	log "wrote ${TOOLS_DIR}/go.mod and go.sum"
}

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

# Version of a module in the tools module's build list.
tools_mod_version() {
	(cd "${TOOLS_DIR}" && go list -mod=readonly -m -f '{{.Version}}' "$1")
}

# True when $BIN_DIR/$1 exists and its stamp equals $2.
# NAME may be DIR/FILE: the stamp is then DIR/.FILE.stamp.
up_to_date() {
	[[ -z "${FORCE:-}" && -x "${BIN_DIR}/$1" && -f "$(stamp_file "$1")" &&
		"$(cat "$(stamp_file "$1")")" == "$2" ]]
}

stamp_file() { printf '%s/%s/.%s.stamp' "${BIN_DIR}" "$(dirname "$1")" "$(basename "$1")"; }
new_file() { printf '%s/%s/.%s.new' "${BIN_DIR}" "$(dirname "$1")" "$(basename "$1")"; }

# check_version NAME EXPECTED CMD... : run CMD, require EXPECTED in its output.
check_version() {
	local name="$1" want="$2" out
	shift 2
	out="$("$@" 2>&1)" || die "${name}: '$*' failed: ${out}"
	[[ "${out}" == *"${want}"* ]] || die "${name}: '$*' printed '${out}', expected it to contain '${want}'"
}

# finish NAME STAMP VERSION-CHECK...: verify the freshly built .NAME.new,
# then move it in place and write its stamp.
finish() {
	local name="$1" stamp="$2" want="$3"
	shift 3
	check_version "${name}" "${want}" "$(new_file "${name}")" "$@"
	mv -f "$(new_file "${name}")" "${BIN_DIR}/${name}"
	printf '%s\n' "${stamp}" >"$(stamp_file "${name}")"
}

build() {
	[[ -f "${TOOLS_DIR}/go.mod" ]] || die "${TOOLS_DIR}/go.mod is missing; run: hack/tools.sh update-gomod"
	local have
	have="$(tools_mod_version k8s.io/kubernetes)"
	[[ "${have}" == "${K8S_VERSION}" ]] ||
		die "hack/tools/go.mod has k8s.io/kubernetes ${have}, want ${K8S_VERSION}; run: hack/tools.sh update-gomod"
	mkdir -p "${BIN_DIR}"

	local go_version mod_hash etcd_version
	go_version="$(go env GOVERSION)"
	mod_hash="$(cat "${TOOLS_DIR}/go.mod" "${TOOLS_DIR}/go.sum" | sha256sum | cut -c1-16)"
	etcd_version="$(tools_mod_version go.etcd.io/etcd/server/v3)"

	# Version stamping as in kubernetes' hack/lib/version.sh. The build date
	# is the release's publication time on the module proxy, so the binaries
	# are reproducible. The git commit is not known from the module proxy.
	local k8s_minor build_date k8s_ldflags k8s_tags pkg
	k8s_minor="${K8S_VERSION#v1.}"
	k8s_minor="${k8s_minor%%.*}"
	build_date="$(cd "${TOOLS_DIR}" && go list -mod=readonly -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
	k8s_ldflags="-s -w"
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
		k8s_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${k8s_minor}"
		k8s_ldflags+=" -X ${pkg}.gitTreeState=archive -X ${pkg}.gitCommit="
		k8s_ldflags+=" -X ${pkg}.buildDate=${build_date}"
	done
	# Tags of kubernetes' release build (hack/lib/golang.sh, non-debug).
	k8s_tags="selinux,notest,grpcnotrace"

	local name stamp
	for name in kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler; do
		stamp="${name} ${K8S_VERSION} ${go_version} ${mod_hash} $(printf '%s' "${k8s_ldflags}${k8s_tags}" | sha256sum | cut -c1-16)"
		if up_to_date "${name}" "${stamp}"; then
			log "${name} ${K8S_VERSION}: up to date"
			continue
		fi
		log "building ${name} ${K8S_VERSION} (k8s.io/kubernetes/cmd/${name}) ..."
		(cd "${TOOLS_DIR}" && go build -mod=readonly -trimpath -tags "${k8s_tags}" \
			-ldflags "${k8s_ldflags}" -o "${BIN_DIR}/.${name}.new" "k8s.io/kubernetes/cmd/${name}")
		case "${name}" in
		kube-apiserver | kubelet | kube-controller-manager | kube-scheduler)
			finish "${name}" "${stamp}" "Kubernetes ${K8S_VERSION}" --version ;;
		kubectl) finish "${name}" "${stamp}" "Client Version: ${K8S_VERSION}" version --client ;;
		esac
	done

	local etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-${etcd_version}"
	stamp="etcd ${etcd_version} ${go_version} ${mod_hash} $(printf '%s' "${etcd_ldflags}" | sha256sum | cut -c1-16)"
	if up_to_date etcd "${stamp}"; then
		log "etcd ${etcd_version}: up to date"
	else
		log "building etcd ${etcd_version} (go.etcd.io/etcd/server/v3) ..."
		(cd "${TOOLS_DIR}" && go build -mod=readonly -trimpath -ldflags "${etcd_ldflags}" \
			-o "${BIN_DIR}/.etcd.new" go.etcd.io/etcd/server/v3)
		finish etcd "${stamp}" "etcd Version: ${etcd_version#v}" --version
	fi

	# helm: built from its own module (its go.mod/go.sum, no replaces), with
	# the ldflags of helm's Makefile.
	local helm_gomod helm_k8s helm_ldflags
	helm_gomod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -f "${helm_gomod}" ]] || die "go mod download helm.sh/helm/v3@${HELM_VERSION} failed"
	helm_k8s="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "${helm_gomod}")" # v0.37.0
	helm_k8s="${helm_k8s#v0.}"
	helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
	helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${helm_k8s%%.*}"
	helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${helm_k8s%%.*}"
	stamp="helm ${HELM_VERSION} ${go_version} $(printf '%s' "${helm_ldflags}" | sha256sum | cut -c1-16)"
	if up_to_date helm "${stamp}"; then
		log "helm ${HELM_VERSION}: up to date"
	else
		log "building helm ${HELM_VERSION} (helm.sh/helm/v3/cmd/helm) ..."
		local gobin
		gobin="$(mktemp -d)"
		(cd "${gobin}" && GOBIN="${gobin}" go install -trimpath -ldflags "${helm_ldflags}" \
			"helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
		mv -f "${gobin}/helm" "${BIN_DIR}/.helm.new"
		rmdir "${gobin}"
		finish helm "${stamp}" "${HELM_VERSION}" version --short
	fi

	# containerd v2: the daemon and its runc shim, static, without the snapshotters that need
	# cgo or kernel modules the e2e does not use.
	local ctrd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD2_VERSION}"
	local ctrd_tags="no_btrfs,no_devmapper,no_zfs,no_aufs"
	stamp="containerd2 ${CONTAINERD2_VERSION} ${go_version} $(printf '%s' "${ctrd_ldflags}${ctrd_tags}" | sha256sum | cut -c1-16)"
	if up_to_date containerd2/containerd "${stamp}"; then
		log "containerd ${CONTAINERD2_VERSION}: up to date"
	else
		log "building containerd ${CONTAINERD2_VERSION} (github.com/containerd/containerd/v2/cmd/containerd) ..."
		local gobin
		gobin="$(mktemp -d)"
		(cd "${gobin}" && GOBIN="${gobin}" go install -trimpath -tags "${ctrd_tags}" -ldflags "${ctrd_ldflags}" \
			"github.com/containerd/containerd/v2/cmd/containerd@${CONTAINERD2_VERSION}" \
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${CONTAINERD2_VERSION}")
		mkdir -p "${BIN_DIR}/containerd2"
		mv -f "${gobin}/containerd-shim-runc-v2" "${BIN_DIR}/containerd2/containerd-shim-runc-v2"
		mv -f "${gobin}/containerd" "${BIN_DIR}/containerd2/.containerd.new"
		rmdir "${gobin}"
		finish containerd2/containerd "${stamp}" "${CONTAINERD2_VERSION}" --version
	fi

	# cert-manager: controller and cainjector, versioned as its Makefile does.
	local cm_dir="${ROOT_DIR}/hack/certmanager" cm_have cm_ldflags cm_hash c
	cm_have="$(cd "${cm_dir}" && go list -mod=readonly -m -f '{{.Version}}' github.com/cert-manager/cert-manager)"
	[[ "${cm_have}" == "${CERT_MANAGER_VERSION}" ]] ||
		die "hack/certmanager/go.mod has cert-manager ${cm_have}, want ${CERT_MANAGER_VERSION}"
	cm_ldflags="-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=${CERT_MANAGER_VERSION}"
	cm_hash="$(cat "${cm_dir}/go.mod" "${cm_dir}/go.sum" | sha256sum | cut -c1-16)"
	for c in controller cainjector; do
		stamp="cert-manager-${c} ${CERT_MANAGER_VERSION} ${go_version} ${cm_hash} $(printf '%s' "${cm_ldflags}" | sha256sum | cut -c1-16)"
		if up_to_date "cert-manager/${c}" "${stamp}"; then
			log "cert-manager ${c} ${CERT_MANAGER_VERSION}: up to date"
			continue
		fi
		log "building cert-manager ${c} ${CERT_MANAGER_VERSION} (hack/certmanager) ..."
		mkdir -p "${BIN_DIR}/cert-manager"
		(cd "${cm_dir}" && go build -mod=readonly -trimpath -ldflags "${cm_ldflags}" \
			-o "$(new_file "cert-manager/${c}")" "github.com/cert-manager/cert-manager/cmd/${c}")
		# No --version flag: the build info names the module's version.
		check_version "cert-manager ${c}" "github.com/cert-manager/cert-manager	${CERT_MANAGER_VERSION}" go version -m "$(new_file "cert-manager/${c}")"
		mv -f "$(new_file "cert-manager/${c}")" "${BIN_DIR}/cert-manager/${c}"
		printf '%s\n' "${stamp}" >"$(stamp_file "cert-manager/${c}")"
	done

	if [[ -n "${PULLGATE_TOOLS_KYVERNO:-}" ]]; then
		build_kyverno
	fi

	log "tools ready in ${BIN_DIR}; for envtest: export KUBEBUILDER_ASSETS=${BIN_DIR}"
}

# build_kyverno builds Kyverno's admission controller (cmd/kyverno) into
# ${BIN_DIR}/kyverno/kyverno, versioned as Kyverno's Makefile does (LD_FLAGS), and
# links its CRDs (config/crds in the module) as ${BIN_DIR}/kyverno/crds.
build_kyverno() {
	local ky_dir="${ROOT_DIR}/hack/kyverno" ky_have ky_ldflags ky_hash stamp
	ky_have="$(cd "${ky_dir}" && go list -mod=readonly -m -f '{{.Version}}' github.com/kyverno/kyverno)"
	[[ "${ky_have}" == "${KYVERNO_VERSION}" ]] ||
		die "hack/kyverno/go.mod has kyverno ${ky_have}, want ${KYVERNO_VERSION}"
	ky_ldflags="-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=${KYVERNO_VERSION}"
	ky_hash="$(cat "${ky_dir}/go.mod" "${ky_dir}/go.sum" | sha256sum | cut -c1-16)"
	stamp="kyverno ${KYVERNO_VERSION} $(go env GOVERSION) ${ky_hash} $(printf '%s' "${ky_ldflags}" | sha256sum | cut -c1-16)"
	mkdir -p "${BIN_DIR}/kyverno"
	if up_to_date kyverno/kyverno "${stamp}"; then
		log "kyverno ${KYVERNO_VERSION}: up to date"
	else
		log "building kyverno ${KYVERNO_VERSION} (hack/kyverno; about 10 minutes cold) ..."
		(cd "${ky_dir}" && go build -mod=readonly -trimpath -ldflags "${ky_ldflags}" \
			-o "$(new_file kyverno/kyverno)" github.com/kyverno/kyverno/cmd/kyverno)
		check_version kyverno "github.com/kyverno/kyverno	${KYVERNO_VERSION}" go version -m "$(new_file kyverno/kyverno)"
		mv -f "$(new_file kyverno/kyverno)" "${BIN_DIR}/kyverno/kyverno"
		printf '%s\n' "${stamp}" >"$(stamp_file kyverno/kyverno)"
	fi
	ln -sfn "$(cd "${ky_dir}" && go list -mod=readonly -m -f '{{.Dir}}' github.com/kyverno/kyverno)/config/crds" "${BIN_DIR}/kyverno/crds"
}

versions() {
	local b
	for b in kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler etcd helm; do
		[[ -x "${BIN_DIR}/${b}" ]] || die "${BIN_DIR}/${b} is missing; run: make tools"
	done
	"${BIN_DIR}/kube-apiserver" --version
	"${BIN_DIR}/kubelet" --version
	"${BIN_DIR}/kube-controller-manager" --version
	"${BIN_DIR}/kube-scheduler" --version
	"${BIN_DIR}/kubectl" version --client
	"${BIN_DIR}/etcd" --version
	"${BIN_DIR}/helm" version --short
}

case "${1:-build}" in
build) build ;;
update-gomod) update_gomod ;;
env) printf 'export KUBEBUILDER_ASSETS=%q\n' "${BIN_DIR}" ;;
versions) versions ;;
kyverno) build_kyverno ;;
*) die "unknown command '$1' (build | update-gomod | env | versions | kyverno)" ;;
esac
