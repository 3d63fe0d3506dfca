#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every check and test of flowpin.
# Tests that need root (network namespaces, XDP, AF_XDP) are part of it: without root they fail, naming
# what is missing. `.ci/run` runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup"
./scripts/setup.sh test
# A toolchain that setup installed with rustup is not on this shell's PATH yet.
# rustup's toolchain first: Debian's own cargo in /usr/bin is older than the MSRV.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (release binaries used by the end-to-end tests)"
cargo build --release --locked -p flowpin -p flowpin-lab

step "Debian package from that release build (installed, run on the lab and removed by the package test)"
./scripts/package.sh

step "monitoring: the shipped alert rules (promtool check and unit tests)"
promtool check rules packaging/monitoring/flowpin-alerts.yml
promtool test rules packaging/monitoring/flowpin-alerts.test.yml

step "tests"
cargo test --workspace --locked --no-fail-fast

step "model checks under shuttle: the NAT port allocator's and the flow table's races"
RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/model \
  cargo test --locked -p flowpin-nat --lib shuttle_tests
RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/model \
  cargo test --locked --release -p flowpin-flowtable --test shuttle_model

step "fuzz: parse + rewrite + ICMP error translation + originated packets, 60 s"
(
  cd nat/fuzz
  mkdir -p corpus/parse_rewrite
  # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
  RUSTC_BOOTSTRAP=1 cargo fuzz run parse_rewrite corpus/parse_rewrite seeds -- -max_total_time=60
)

step "fuzz: the configuration loader (hostile TOML) and the control socket's request parser, 30 s each"
(
  cd forwarder/fuzz
  for target in config_parse control_request; do
    mkdir -p "corpus/$target"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time=30
  done
)

echo
echo "all checks passed in ${SECONDS}s"
