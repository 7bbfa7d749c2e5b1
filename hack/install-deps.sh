#!/usr/bin/env bash
# Installs the Debian packages that building and testing agentd need, but only
# those that are missing. Run it as root on a Debian (12) machine:
#
#   sudo hack/install-deps.sh
#
# It is safe to run repeatedly: when everything is present it changes nothing.
set -euo pipefail

# Package -> why we need it.
PACKAGES=(
  busybox-static # /bin/busybox, the test image (hack/build-test-image.sh)
  runc           # OCI runtime used by the tests
  conmon         # container monitor
  iproute2       # ip(8), network setup in tests
  gcc            # cgo
  make
  libseccomp-dev # cgo: libseccomp-golang
  pkg-config     # cgo: finds libseccomp
  containernetworking-plugins # CNI bridge + host-local in /usr/lib/cni: pod IPs (agent/network)
  iptables       # pod masquerading (bridge ipMasq); Debian 12's is iptables-nft (nf_tables backend)
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "error: dpkg-query not found; this script supports Debian-based systems only." >&2
  echo "Install these packages with your system's package manager: ${PACKAGES[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("${pkg}")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "all dependencies present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "error: missing packages: ${missing[*]}" >&2
  echo "Run this script as root to install them:" >&2
  echo "  sudo $0" >&2
  echo "or install them yourself:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
if ! apt-get update; then
  echo "error: 'apt-get update' failed; check the network and /etc/apt/sources.list, then re-run $0" >&2
  exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
  echo "error: installing ${missing[*]} failed; see the apt-get output above, fix it and re-run $0" >&2
  exit 1
fi
echo "installed: ${missing[*]}"
