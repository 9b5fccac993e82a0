//! Generates, at build time, the man page and the shell completions of
//! election-server (embedded: `--man`, `--completions SHELL`), and records
//! the git revision shown by `--version`.

#[allow(dead_code)]
mod cli {
    include!("src/cli.rs");
}

use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rev = git_revision();
    println!("cargo:rustc-env=ELECTION_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=src/cli.rs");
    watch_git_head();
    let version = format!(
        "{} (git {rev})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    let cmd = cli::command(Box::leak(version.into_boxed_str()));
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut roff)?;
    std::fs::write(out.join("election-server.1"), roff)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "election-server.bash"),
        (clap_complete::Shell::Zsh, "_election-server"),
        (clap_complete::Shell::Fish, "election-server.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "election-server", &mut buf);
        std::fs::write(out.join(file), buf)?;
    }
    Ok(())
}

/// `git rev-parse --short=12 HEAD`, or `unknown` outside a clone.
fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Rebuild when HEAD moves (a commit, a checkout).
fn watch_git_head() {
    let Some(dir) = run_git_dir() else { return };
    let head = dir.join("HEAD");
    println!("cargo:rerun-if-changed={}", head.display());
    if let Ok(text) = std::fs::read_to_string(&head) {
        if let Some(r) = text.strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed={}", dir.join(r.trim()).display());
        }
    }
}

fn run_git_dir() -> Option<PathBuf> {
    let o = std::process::Command::new("git")
        .args(["rev-parse", "--absolute-git-dir"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && Path::new(&p).is_dir()).then(|| PathBuf::from(p))
}
