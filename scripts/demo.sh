#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo: a network-namespace lab (two LAN hosts, a router,
# two weighted uplinks through two ISPs to an "internet" with servers) with live traffic from the LAN hosts
# and a live per-uplink table of packets and leak counters. The lab is torn down when the demo ends.
#   ./scripts/demo.sh                 # the router is flowpin
#   ./scripts/demo.sh --router kernel # the kernel reference router, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo
# A toolchain that setup installed with rustup is not on this shell's PATH yet.
# rustup's toolchain first: Debian's own cargo in /usr/bin is older than the MSRV.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p flowpin-lab -p flowpin
case " $* " in
  *" --router "*) ;;
  *) set -- --router flowpin "$@" ;;
esac
exec ./target/release/flowpin-lab demo "$@"
