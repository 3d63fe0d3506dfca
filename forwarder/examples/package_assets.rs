//! Writes what the Debian package ships besides the binary and the docs, generated from the clap
//! definitions so they never drift from `flowpin --help`:
//! - `OUT/man/flowpin.8` and one page per subcommand, `flowpin-SUB.8` (`flowpin-uplink-drain.8` for
//!   nested ones);
//! - `OUT/completions/flowpin.bash`, `_flowpin` (zsh) and `flowpin.fish`.
//!
//! Usage: `cargo run --locked -p flowpin --example package_assets -- OUT` (see `scripts/package.sh`).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/package-assets"));
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut command = flowpin::cli::Cli::command();
    command.build();
    let pages = write_man_pages(&command, "flowpin", &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command.clone(), "flowpin", &completions)?;
    }
    println!(
        "{pages} man pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// Writes `name.8` for `command` and, recursively, `name-SUB.8` for its subcommands; returns how many.
fn write_man_pages(command: &clap::Command, name: &str, dir: &Path) -> std::io::Result<usize> {
    let page = command
        .clone()
        .display_name(name.to_owned())
        .bin_name(name.replace('-', " "));
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .section("8")
        .manual("flowpin")
        .render(&mut roff)?;
    std::fs::write(dir.join(format!("{name}.8")), roff)?;
    let mut pages = 1;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        pages += write_man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(pages)
}
