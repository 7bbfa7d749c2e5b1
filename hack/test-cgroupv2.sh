#!/usr/bin/env bash
# cgroup v2 test: agentd on a unified cgroup v2 hierarchy, the layout current
# Debian, Ubuntu, Fedora and RHEL boot by default, in a VM this script boots.
#
#   hack/test-cgroupv2.sh          (make test-cgroupv2)
#
# The VM is Debian 12's own kernel (linux-image-amd64) under qemu-system-x86_64
# with software emulation (TCG: no KVM needed), booted with
# systemd.unified_cgroup_hierarchy=1 and no network device. Its root file system
# is made by debootstrap from Debian's packages (the ones agentd needs at run
# time, and systemd) once, and kept in _output/cgv2/ under a key of the package
# list and the guest setup: the first run downloads them (~120 MB; debootstrap
# takes 4-6 minutes on a 2-CPU machine), later runs reuse them (then the whole
# run takes 2.5 to 4.5 minutes, the VM's boot and checks nearly all of it). The
# freshly built binaries ($AGENTD_TEST_BIN, default `make build`), the test
# image ($AGENTD_TEST_IMAGE, default
# _output/busybox.tar), manifests/systemd/agentd.service and
# hack/cgroupv2/guest-test.sh go in on a second, read-only disk; a unit of the
# image runs guest-test.sh at boot, which starts agentd under systemd and checks
# (see its header): Cgroup Version 2 in `agentctl info`; the limits in
# memory.max, cpu.max, cpu.weight and pids.max; OOMKilled from memory.events;
# monitors in leaf cgroups of their own that survive agentd's kill -9 with live
# restore; top and /metrics/resource from cpu.stat and memory.current; the
# unit's Delegate=yes; then runs the project's root tests that touch cgroups
# (GO_TESTS below, built here with go test -c). Its output comes back on the VM's second serial port and
# is printed here; the VM powers itself off. Exits non-zero on any failure, or
# when the VM does not finish within CGV2_TIMEOUT seconds (default 900): qemu is
# then killed by its pid.
#
# Needs root (debootstrap, mke2fs -d of a root file system); installs
# qemu-system-x86, debootstrap and e2fsprogs through hack/install-deps.sh vm.
# The disk the VM writes is a qemu snapshot of the cached image: nothing the VM
# does outlives it. Not part of `make test` (the boot under TCG takes minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$PWD
export PATH=${PATH}:/usr/local/go/bin
started=${SECONDS}
[[ $(id -u) -eq 0 ]] || { echo "error: run as root (debootstrap and the image's root-owned files)" >&2; exit 1; }
timeout_s=${CGV2_TIMEOUT:-900}
mirror=${CGV2_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

hack/install-deps.sh vm >/dev/null

# --- the binaries and the test image -------------------------------------------------
bin=${AGENTD_TEST_BIN:-}
if [[ -z ${bin} ]]; then
  echo "== make build"
  make build >/dev/null
  bin=${top}/bin
fi
image=${AGENTD_TEST_IMAGE:-${top}/_output/busybox.tar}
[[ -f ${image} ]] || make image >/dev/null
for b in agentd agentctl agent-monitor agent-monitor-lean; do
  [[ -x ${bin}/${b} ]] || { echo "error: ${bin}/${b} is missing: run make build" >&2; exit 1; }
done

# --- the root file system, cached -----------------------------------------------------
# What agentd needs at run time (libseccomp2: agent-monitor is cgo-linked; the
# CNI plugins and iptables: pod networking; kmod: the kernel loads overlay,
# bridge, veth, nf_tables), systemd as init, and Debian's kernel.
PACKAGES=(systemd systemd-sysv udev kmod linux-image-amd64 iptables libseccomp2 containernetworking-plugins iproute2)
# guest_setup writes the image's own files into the root file system $1: the unit
# that mounts the payload disk and runs its guest-test.sh, then powers off.
guest_setup() {
  local r=$1
  echo cgv2 >"${r}/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 cgv2\n' >"${r}/etc/hosts"
  printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"${r}/etc/fstab"
  cat >"${r}/etc/systemd/system/cgv2-test.service" <<'UNIT'
[Unit]
Description=agentd cgroup v2 test (hack/test-cgroupv2.sh)
After=local-fs.target systemd-udev-settle.service systemd-modules-load.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /payload && mount -o ro /dev/vdb /payload && exec /bin/bash /payload/guest-test.sh /payload >/dev/ttyS1 2>&1'
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "${r}/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/cgv2-test.service "${r}/etc/systemd/system/multi-user.target.wants/cgv2-test.service"
  # Nothing waits for a network the VM does not have, nor for a login.
  rm -f "${r}/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
}
# The root file system is keyed on the suite and the packages; its disk image on
# that and guest_setup too.
key=$(printf '%s\n' "${suite}" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
setup_key=$(declare -f guest_setup | sha256sum | cut -c1-8)
cache=${top}/_output/cgv2
rootfs=${cache}/rootfs-${key}
base=${cache}/base-${key}-${setup_key}.img
mkdir -p "${cache}"
if [[ ! -f ${base} ]]; then
  if [[ ! -d ${rootfs} ]]; then
    echo "== debootstrap ${suite} (${PACKAGES[*]}) into ${rootfs} (first run: downloads ~120 MB, 4-6 minutes)"
    rm -rf "${rootfs}.tmp"
    t0=${SECONDS}
    if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" "${suite}" "${rootfs}.tmp" "${mirror}" >"${cache}/debootstrap.log" 2>&1; then
      tail -n 30 "${cache}/debootstrap.log" >&2
      echo "error: debootstrap failed (log: ${cache}/debootstrap.log)" >&2
      exit 1
    fi
    rm -rf "${rootfs}.tmp/var/cache/apt/archives/"*.deb
    mv "${rootfs}.tmp" "${rootfs}"
    echo "   took $((SECONDS - t0)) s"
  fi
  echo "== the VM's disk image ${base}"
  guest_setup "${rootfs}"
  mb=$(( $(du -sm "${rootfs}" | cut -f1) + 1536 ))
  rm -f "${base}.tmp"
  mke2fs -q -t ext4 -L cgv2root -d "${rootfs}" "${base}.tmp" "${mb}M"
  mv "${base}.tmp" "${base}"
  # Older images of this root file system are stale.
  find "${cache}" -maxdepth 1 -name "base-${key}-*.img" ! -name "$(basename "${base}")" -delete
fi
kernel=$(ls "${rootfs}"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "${rootfs}"/boot/initrd.img-* | sort -V | tail -n1)
[[ -f ${kernel} && -f ${initrd} ]] || { echo "error: no kernel or initrd in ${rootfs}/boot: rm -rf ${cache} and run again" >&2; exit 1; }

# --- the payload disk and the boot ------------------------------------------------------
work=$(mktemp -d /var/tmp/agentd-cgv2.XXXXXX)
qemu_pid=""
cleanup() {
  local rc=$?
  set +e
  if [[ -n ${qemu_pid} ]] && kill -0 "${qemu_pid}" 2>/dev/null; then kill -KILL "${qemu_pid}"; wait "${qemu_pid}" 2>/dev/null; fi
  if [[ ${rc} -ne 0 && -f ${work}/console.log ]]; then
    echo "--- the VM's console (last 60 lines):" >&2
    tail -n 60 "${work}/console.log" | tr -d '\r' >&2
  fi
  rm -rf "${work}"
  echo "== took $((SECONDS - started)) s"
  exit "${rc}"
}
trap cleanup EXIT

mkdir -p "${work}/payload/bin"
cp "${bin}"/agentd "${bin}"/agentctl "${bin}"/agent-monitor "${bin}"/agent-monitor-lean "${work}/payload/bin/"
[[ -x ${bin}/agent-etcd ]] && cp "${bin}/agent-etcd" "${work}/payload/bin/"
cp "${image}" "${work}/payload/busybox.tar"
cp manifests/systemd/agentd.service hack/cgroupv2/guest-test.sh "${work}/payload/"
# The project's own root tests that read or write cgroups, built here and run in
# the VM after the checks above: package, then the -run pattern.
GO_TESTS=(
  "agent/e2e" '^(TestE2EQOSCgroups|TestE2EPodList|TestE2EMetrics)$'
  "agent/runtime" '^TestRootUpdate'
  "agent/internal/cgroupkill" '^TestRoot'
)
mkdir -p "${work}/payload/tests"
for ((i = 0; i < ${#GO_TESTS[@]}; i += 2)); do
  name=$(basename "${GO_TESTS[i]}")
  ${GO:-go} test -c -o "${work}/payload/tests/${name}.test" "./${GO_TESTS[i]}"
  printf '%s\n' "${GO_TESTS[i + 1]}" >"${work}/payload/tests/${name}.run"
done
mb=$(( $(du -sm "${work}/payload" | cut -f1) + 64 ))
mke2fs -q -t ext4 -d "${work}/payload" "${work}/payload.img" "${mb}M"
rm -rf "${work}/payload"

echo "== booting $(basename "${kernel}") under qemu (TCG, 2 CPUs, 2 GiB, no network; at most ${timeout_s} s)"
t0=${SECONDS}
qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2048 -nodefaults -display none -no-reboot -nic none \
  -kernel "${kernel}" -initrd "${initrd}" \
  -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet" \
  -drive "file=${base},if=virtio,format=raw,snapshot=on" \
  -drive "file=${work}/payload.img,if=virtio,format=raw,readonly=on" \
  -serial "file:${work}/console.log" -serial "file:${work}/result.log" \
  >"${work}/qemu.log" 2>&1 &
qemu_pid=$!
printed=0
while kill -0 "${qemu_pid}" 2>/dev/null; do
  if ((SECONDS - t0 > timeout_s)); then
    echo "FAIL: the VM did not finish within ${timeout_s} s" >&2
    exit 1
  fi
  # Print the guest's lines as they come.
  if [[ -f ${work}/result.log ]]; then
    n=$(wc -l <"${work}/result.log")
    if ((n > printed)); then sed -n "$((printed + 1)),${n}p" "${work}/result.log" | tr -d '\r'; printed=${n}; fi
  fi
  sleep 1
done
wait "${qemu_pid}" || { cat "${work}/qemu.log" >&2; qemu_pid=""; echo "FAIL: qemu exited with an error" >&2; exit 1; }
qemu_pid=""
n=$(wc -l <"${work}/result.log")
((n > printed)) && sed -n "$((printed + 1)),${n}p" "${work}/result.log" | tr -d '\r'
echo "== the VM ran $((SECONDS - t0)) s"
grep -q '^CGV2-RESULT: PASS' "${work}/result.log" || { echo "FAIL: the checks in the VM did not pass" >&2; exit 1; }
echo "PASS: agentd on cgroup v2 ($(basename "${kernel}"), systemd, Delegate=yes)"
