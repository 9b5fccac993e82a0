//! Generates, at build time, the man page and the shell completions of
//! `openio` (embedded: `openio man`, `openio completion SHELL`).

#[allow(dead_code)]
mod cli {
    include!("src/cli.rs");
}

use clap::CommandFactory;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src/cli.rs");
    let cmd = cli::Cli::command();
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut roff)?;
    // One page per subcommand group too: `man openio-election`.
    for sub in cmd.get_subcommands() {
        let name = format!("openio-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut page)?;
        roff.extend_from_slice(b"\n");
        roff.extend_from_slice(&page);
    }
    std::fs::write(out.join("openio.1"), roff)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
        clap_complete::Shell::Elvish,
        clap_complete::Shell::PowerShell,
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "openio", &mut buf);
        std::fs::write(out.join(format!("openio.{shell}")), buf)?;
    }
    Ok(())
}
