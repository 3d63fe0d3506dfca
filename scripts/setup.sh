#!/usr/bin/env bash
# Installs what flowpin needs to build, test and run its lab on Debian 12+ (as root), idempotently:
# apt packages for the XDP program and the lab, bpffs, a Rust toolchain when there is none, and cargo tools.
set -euo pipefail

die() { echo "setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the lab creates network namespaces and attaches XDP programs)"
# Debian packages: compiler for the XDP program, the lab's tools, real clients and servers.
apt_packages=(
  clang llvm libbpf-dev bpftool          # build the XDP program
  iproute2 nftables conntrack ethtool    # the lab and the kernel reference router
  iperf3 socat curl netsniff-ng hping3   # real clients, servers and generators
  tcpdump traceroute iputils-ping procps psmisc python3 python3-scapy
  openssl                                # the health probe tests' lab CA
  prometheus                             # promtool: checks and unit-tests the shipped alert rules
  chromium                               # headless browser test of the status page
  ca-certificates                        # https for rustup on a machine without Rust
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

# Rust: Debian's own rustc is older than the MSRV, so a machine without cargo gets the pinned stable
# toolchain from rustup (static.rust-lang.org). A machine that already has cargo keeps its toolchain.
RUST_TOOLCHAIN=1.95.0
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found, installing Rust $RUST_TOOLCHAIN with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "$RUST_TOOLCHAIN" -c rustfmt -c clippy \
    || die "rustup could not install Rust $RUST_TOOLCHAIN (needs https access to static.rust-lang.org)"
  . "$HOME/.cargo/env"
fi
rust_version=$(rustc --version | awk '{print $2}')
printf '%s\n1.95.0\n' "$rust_version" | sort -V -C -r 2>/dev/null \
  || die "rustc $rust_version is older than the MSRV 1.95: update the toolchain (rustup update)"

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
