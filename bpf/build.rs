//! Builds the XDP program with clang and probes the map-layout header.
//!
//! Outputs in `OUT_DIR`:
//! - `flowpin_xdp.o`: the BPF object (`clang -O2 -g -target bpf`), embedded by `lib.rs`;
//! - `c_layout.rs`: every size, offset and constant of `c/flowpin_maps.h` as Rust constants,
//!   printed by a host build of `c/layout_probe.c`; `lib.rs` asserts its mirrors against them.
//!
//! `CLANG` (default `clang`) selects the compiler for both.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let c_dir = manifest_dir.join("c");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    for file in ["flowpin_maps.h", "flowpin_xdp.c", "layout_probe.c"] {
        println!("cargo::rerun-if-changed={}", c_dir.join(file).display());
    }
    println!("cargo::rerun-if-env-changed=CLANG");

    build_program(&clang, &c_dir, &out_dir);
    probe_layout(&clang, &c_dir, &out_dir);
}

/// Compiles the XDP program for the BPF target.
fn build_program(clang: &str, c_dir: &Path, out_dir: &Path) {
    // The kernel UAPI headers include <asm/types.h>, which Debian keeps under the multiarch dir.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
    let multiarch_include = format!("/usr/include/{arch}-linux-gnu");
    run(Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(&multiarch_include)
        .arg("-c")
        .arg(c_dir.join("flowpin_xdp.c"))
        .arg("-o")
        .arg(out_dir.join("flowpin_xdp.o")));
}

/// Builds and runs the host layout probe, writing its output to `c_layout.rs`.
fn probe_layout(clang: &str, c_dir: &Path, out_dir: &Path) {
    let probe = out_dir.join("layout_probe");
    run(Command::new(clang)
        .args(["-O0", "-Wall", "-Werror"])
        .arg(c_dir.join("layout_probe.c"))
        .arg("-o")
        .arg(&probe));
    let output = Command::new(&probe)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", probe.display()));
    assert!(output.status.success(), "layout probe failed: {output:?}");
    std::fs::write(out_dir.join("c_layout.rs"), output.stdout).expect("writing c_layout.rs");
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("cannot run {command:?} (is clang installed?): {err}"));
    assert!(status.success(), "{command:?} failed with {status}");
}
