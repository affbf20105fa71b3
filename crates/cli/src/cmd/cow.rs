//! `umlkit` subcommands of the cow area.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the cow area lands
    #[command(name = "cow-placeholder", hide = true)]
    Placeholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Placeholder => anyhow::bail!("the cow area is not built yet"),
    }
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Placeholder until `bench moo` lands
    #[command(name = "cow-placeholder", hide = true)]
    Placeholder,
}

pub fn bench(b: Bench) -> anyhow::Result<ExitCode> {
    match b {
        Bench::Placeholder => anyhow::bail!("not built yet"),
    }
}

pub fn multicall_mkcow(_args: &[std::ffi::OsString]) -> ExitCode {
    eprintln!("uml_mkcow: not built yet");
    ExitCode::from(2)
}

pub fn multicall_moo(_args: &[std::ffi::OsString]) -> ExitCode {
    eprintln!("uml_moo: not built yet");
    ExitCode::from(1)
}
