//! `umlkit` subcommands of the switch area.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the switch area lands
    #[command(name = "switch-placeholder", hide = true)]
    Placeholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Placeholder => anyhow::bail!("the switch area is not built yet"),
    }
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Placeholder until `bench switch` lands
    #[command(name = "switch-placeholder", hide = true)]
    Placeholder,
}

pub fn bench(b: Bench) -> anyhow::Result<ExitCode> {
    match b {
        Bench::Placeholder => anyhow::bail!("not built yet"),
    }
}

pub fn multicall_uml_switch(_args: &[std::ffi::OsString]) -> ExitCode {
    eprintln!("uml_switch: not built yet");
    ExitCode::from(1)
}
