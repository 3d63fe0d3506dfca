#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo: a network-namespace lab (two LAN hosts, a router,
# two weighted uplinks through two ISPs to an "internet" with servers) with live traffic from the LAN hosts
# and a live per-uplink table of packets and leak counters. The lab is torn down when the demo ends.
#   ./scripts/demo.sh                 # the router is flowpin
#   ./scripts/demo.sh --router kernel # the kernel reference router, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# A toolchain that setup installed with rustup is not on this shell's PATH yet.
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p flowpin-lab -p flowpin
case " $* " in
  *" --router "*) ;;
  *) set -- --router flowpin "$@" ;;
esac
exec ./target/release/flowpin-lab demo "$@"
