#!/usr/bin/env bash
# Installs what flowpin needs to build, test and run its lab on Debian 12+ (as root), idempotently:
# apt packages for the XDP program and the lab, bpffs, and cargo tools. It never downloads toolchains:
# a Rust toolchain >= 1.95 (rustup) must already be on PATH.
set -euo pipefail

die() { echo "setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the lab creates network namespaces and attaches XDP programs)"
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain >= 1.95 (rustup) first"

# Debian packages: compiler for the XDP program, the lab's tools, real clients and servers.
apt_packages=(
  clang llvm libbpf-dev bpftool          # build the XDP program
  iproute2 nftables conntrack ethtool    # the lab and the kernel reference router
  iperf3 socat curl netsniff-ng hping3   # real clients, servers and generators
  tcpdump traceroute iputils-ping procps psmisc python3 python3-scapy
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs, for pinned maps and links.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
fi

# Cargo tools used by the test command.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || die "cargo install cargo-fuzz failed"
fi
echo "setup: ok"
