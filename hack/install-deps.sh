#!/usr/bin/env bash
# hack/install-deps.sh - install the Debian packages pullgate's e2e needs.
#
#   docker-registry  /usr/bin/docker-registry (distribution v2), the local
#                    registry the e2e pushes to (see hack/registry-config.example.yml)
#   apache2-utils    htpasswd, to make the registry's bcrypt htpasswd file
#   containerd, runc, containernetworking-plugins
#                    the real node's container runtime, OCI runtime and CNI plugins
#                    (the harness runs its own containerd with its own config and sockets)
#   iproute2         ip, for the real node's bridge
#
# Idempotent: only missing packages are installed, with apt-get (through sudo
# when not root). Extra packages: EXTRA_DEB_PACKAGES="pkg1 pkg2".
set -euo pipefail

read -ra EXTRA <<<"${EXTRA_DEB_PACKAGES:-}"
PACKAGES=(docker-registry apache2-utils containerd runc containernetworking-plugins iproute2 "${EXTRA[@]}")

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'hack/install-deps.sh: ERROR: %s\n' "$*" >&2
	exit 1
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
	die "needs a Debian/Ubuntu system with apt-get"
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${p}" 2>/dev/null)" != "installed" ]]; then
		missing+=("${p}")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	log "Debian packages already installed: ${PACKAGES[*]}"
	exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo; install as root: apt-get install ${missing[*]}"
	SUDO=(sudo)
fi

log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
# In containers without an init system the package's own docker-registry
# service is not started ("invoke-rc.d: policy-rc.d denied execution of
# start"); that is expected: the e2e starts its own registry with its own config. The same
# holds for containerd's service: the real node runs its own containerd.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
	die "apt-get install ${missing[*]} failed"

for p in "${missing[@]}"; do
	[[ "$(dpkg-query -W -f='${db:Status-Status}' "${p}" 2>/dev/null)" == "installed" ]] ||
		die "${p} is still not installed"
done
for b in docker-registry htpasswd containerd runc ip; do
	command -v "${b}" >/dev/null || die "${b} not on PATH after install"
done
log "installed: ${missing[*]}"
