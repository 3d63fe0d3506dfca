#!/usr/bin/env bash
# Builds the Debian package from the release build that is already there (it does not rebuild flowpin):
# man pages and shell completions generated from the clap definitions, then `cargo deb --no-build`.
# Output: target/debian/flowpin_<version>-1_<arch>.deb (under $CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."
# rustup's toolchain first: Debian's own cargo in /usr/bin is older than the MSRV.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
target=${CARGO_TARGET_DIR:-target}
[ -x "$target/release/flowpin" ] \
  || { echo "package: no $target/release/flowpin: run cargo build --release --locked -p flowpin first" >&2; exit 1; }
command -v cargo-deb >/dev/null \
  || { echo "package: cargo-deb is missing: run ./scripts/setup.sh package" >&2; exit 1; }
rm -rf "$target/release/package-assets"
cargo run --locked --quiet -p flowpin --example package_assets -- "$target/release/package-assets"
gzip -9n "$target"/release/package-assets/man/*.8   # Debian policy: compressed man pages
rm -f "$target"/debian/flowpin_*.deb
cargo deb --no-build --strip -p flowpin
ls "$target"/debian/flowpin_*.deb
