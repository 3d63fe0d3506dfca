#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every check and test of flowpin.
# Tests that need root (network namespaces, XDP, AF_XDP) are part of it: without root they fail, naming
# what is missing. `.ci/run` runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup"
./scripts/setup.sh

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (release binaries used by the end-to-end tests)"
cargo build --release --locked -p flowpin -p flowpin-lab

step "tests"
cargo test --workspace --locked
