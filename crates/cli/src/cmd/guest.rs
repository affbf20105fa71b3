//! `umlkit` subcommands of the guest area.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the guest area lands
    #[command(name = "guest-placeholder", hide = true)]
    Placeholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Placeholder => anyhow::bail!("the guest area is not built yet"),
    }
}

pub fn multicall_mconsole(_args: &[std::ffi::OsString]) -> ExitCode {
    eprintln!("uml_mconsole: not built yet");
    ExitCode::from(1)
}
