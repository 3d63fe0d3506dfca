#!/usr/bin/env bash
# Installs what one of flowpin's commands needs on Debian 12+ (as root), idempotently, and nothing more:
#   ./scripts/setup.sh [test]   everything scripts/test.sh (CI) runs: build, lab, package, fuzz, bench plot,
#                               promtool and a headless browser
#   ./scripts/setup.sh demo     build and lab tools for scripts/demo.sh
#   ./scripts/setup.sh package  build tools and cargo-deb for scripts/package.sh
#   ./scripts/setup.sh bench    build and lab tools and the plot's font for the benchmark
# The Rust toolchain: the pinned one from rustup when there is no cargo or the cargo on PATH is older
# than the MSRV (Debian's own is); a toolchain new enough is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }

what=${1:-test}
case "$what" in
  test | demo | package | bench) ;;
  *) die "unknown command '$what' (test, demo, package or bench)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (the lab creates network namespaces and attaches XDP programs)"

# Debian packages, by what needs them.
build_packages=(
  clang llvm libbpf-dev bpftool          # build the XDP program
  curl ca-certificates                   # https for rustup on a machine without a recent Rust
)
lab_packages=(
  iproute2 nftables conntrack ethtool    # the lab and the kernel reference router
  iperf3 socat curl netsniff-ng hping3   # real clients, servers and generators
  tcpdump traceroute iputils-ping procps psmisc python3 python3-scapy
  openssl                                # the health probe tests' lab CA
)
plot_packages=(fonts-dejavu-core)        # the benchmark plot's text (bench/src/plot.rs)
package_packages=(dpkg-dev)              # dpkg-shlibdeps for the package's library dependencies
package_test_packages=(
  man-db                                 # man -w finds the installed man pages
  systemd                                # systemd-analyze verify checks the installed unit
  util-linux                             # setpriv applies the unit's capability bounding set
)
monitoring_test_packages=(
  prometheus                             # promtool: checks and unit-tests the shipped alert rules
  chromium                               # headless browser test of the status page
)
apt_packages=("${build_packages[@]}")
case "$what" in
  test) apt_packages+=("${lab_packages[@]}" "${plot_packages[@]}" "${package_packages[@]}" "${package_test_packages[@]}"
        "${monitoring_test_packages[@]}") ;;
  demo) apt_packages+=("${lab_packages[@]}") ;;
  package) apt_packages+=("${package_packages[@]}") ;;
  bench) apt_packages+=("${lab_packages[@]}" "${plot_packages[@]}") ;;
esac
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

# Rust: the workspace's rust-version is the MSRV; the pinned toolchain is what CI uses.
MSRV=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
RUST_TOOLCHAIN=1.95.0
[ -n "$MSRV" ] || die "no rust-version in Cargo.toml"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
new_enough() { # VERSION: is it at least the MSRV?
  [ "$(printf '%s\n%s\n' "$MSRV" "$1" | sort -V | head -n1)" = "$MSRV" ]
}
rust_ok() {
  command -v cargo >/dev/null && command -v rustc >/dev/null \
    && new_enough "$(cargo --version | awk '{print $2}')" && new_enough "$(rustc --version | awk '{print $2}')"
}
if ! rust_ok; then
  found=$(command -v cargo >/dev/null && cargo --version || echo "no cargo")
  echo "setup: $found on PATH is older than the MSRV $MSRV or missing; installing Rust $RUST_TOOLCHAIN with rustup"
  if command -v rustup >/dev/null; then
    rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal -c rustfmt -c clippy \
      && rustup default "$RUST_TOOLCHAIN" \
      || die "rustup could not install Rust $RUST_TOOLCHAIN"
  else
    # Debian's cargo in /usr/bin stays; rustup's goes first on PATH through ~/.cargo/env.
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | RUSTUP_INIT_SKIP_PATH_CHECK=yes sh -s -- -y --profile minimal --default-toolchain "$RUST_TOOLCHAIN" -c rustfmt -c clippy \
      || die "rustup could not install Rust $RUST_TOOLCHAIN (needs https access to static.rust-lang.org)"
  fi
  export PATH="$HOME/.cargo/bin:$PATH"   # before Debian's /usr/bin/cargo, as the other scripts do
  rust_ok || die "$(cargo --version) is still older than the MSRV $MSRV"
fi

# bpffs, for pinned maps and links (the lab and the demo attach XDP).
if [ "$what" != package ] && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
fi

# Cargo tools, only for the commands that run them.
cargo_tool() { # SUBCOMMAND CRATE
  cargo "$1" --version >/dev/null 2>&1 && return
  echo "setup: installing $2"
  cargo install --locked "$2" >/dev/null 2>&1 || die "cargo install $2 failed"
}
case "$what" in
  test) cargo_tool fuzz cargo-fuzz; cargo_tool deb cargo-deb ;;
  package) cargo_tool deb cargo-deb ;;
esac
echo "setup: ok ($what)"
