//! Builds the benchmark's XDP programs (`c/bench_xdp.c`) with clang for the BPF target into
//! `OUT_DIR/bench_xdp.o`, embedded by `src/xdp_programs.rs`. `CLANG` selects the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let source = manifest_dir.join("c").join("bench_xdp.c");
    println!("cargo::rerun-if-changed={}", source.display());
    println!("cargo::rerun-if-env-changed=CLANG");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets the target arch");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(format!("/usr/include/{arch}-linux-gnu"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(out_dir.join("bench_xdp.o"))
        .status()
        .unwrap_or_else(|err| panic!("running {clang}: {err}"));
    assert!(
        status.success(),
        "{clang} failed to build {}",
        source.display()
    );
}
