//! The `flowpin` binary.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("flowpin: not built yet");
    std::process::exit(2);
}
