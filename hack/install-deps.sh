#!/usr/bin/env bash
# Installs the Debian packages that building and testing agentd need, but only
# those that are missing. Run it as root on a Debian (12) machine:
#
#   sudo hack/install-deps.sh
#   sudo hack/install-deps.sh vm    # and what hack/test-cgroupv2.sh's VM needs
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
  docker-registry # /usr/bin/docker-registry, the distribution registry the pull tests start on loopback (agent/internal/testregistry)
  skopeo         # `skopeo copy`, the yardstick of the registry pull benchmark (make bench-pull; DESIGN.md's target)
)

# `vm`: the packages of hack/test-cgroupv2.sh (make test-cgroupv2), which boots a
# Debian VM under qemu; not needed by make test, so not installed unless asked.
if [[ ${1:-} == vm ]]; then
  PACKAGES+=(
    qemu-system-x86 # qemu-system-x86_64, software emulation (TCG): no KVM needed
    debootstrap     # the VM's root file system, from Debian's packages
    e2fsprogs       # mke2fs -d: its disk image without loop mounts
  )
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [vm]" >&2
  exit 2
fi

# Packages whose service must not run on this machine: the tests start their own
# server with their own config, and Debian's docker-registry service would serve
# /var/lib/docker-registry on port 5000 of every interface.
NO_SERVICE=(docker-registry)

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

# Keep the services of NO_SERVICE packages from starting while they are installed:
# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d, and 101 means "not
# allowed". An existing policy-rc.d is the administrator's and is left alone; the
# services are stopped and disabled below in any case.
policy=/usr/sbin/policy-rc.d
if [[ ! -e ${policy} ]]; then
  pattern=""
  for svc in "${NO_SERVICE[@]}"; do
    pattern+="${pattern:+|}${svc}|${svc}.service"
  done
  trap 'rm -f "${policy}"' EXIT
  printf '#!/bin/sh\n# Written by %s while it installs packages; removed when it exits.\ncase "$1" in %s) exit 101 ;; esac\nexit 0\n' \
    "$0" "${pattern}" >"${policy}"
  chmod 0755 "${policy}"
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

# Stop and disable the services of the NO_SERVICE packages just installed (never
# those of packages that were already there: those are the administrator's).
for pkg in "${missing[@]}"; do
  for svc in "${NO_SERVICE[@]}"; do
    [[ ${pkg} == "${svc}" ]] || continue
    if [[ -d /run/systemd/system ]]; then
      systemctl stop "${svc}.service" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/${svc} ]]; then
      /etc/init.d/"${svc}" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --quiet "${svc}.service" >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
      update-rc.d "${svc}" disable >/dev/null 2>&1 || true
    fi
    echo "${svc}: service stopped and disabled (the tests start their own server)"
  done
done
echo "installed: ${missing[*]}"
