//! Text generated from the clap definitions: shell completions
//! (`umlkit completions bash|zsh|fish`) and man pages (`umlkit man --dir DIR`,
//! one page per command: `umlkit.1`, `umlkit-lab.1`, `umlkit-lab-start.1`, ...).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Print the completion script of `shell` for `cmd` on stdout.
pub fn completions(
    shell: clap_complete::Shell,
    mut cmd: clap::Command,
) -> anyhow::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "umlkit", &mut buf);
    crate::cmd::out::write_stdout(format_args!("{}", String::from_utf8_lossy(&buf)));
    Ok(ExitCode::SUCCESS)
}

/// Write a man page for `cmd` and each of its visible subcommands into `dir`.
pub fn man(dir: &Path, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let n = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count();
    errln!("{n} man pages in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
