//! `umlkit` subcommands of the lab area.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the lab area lands
    #[command(name = "lab-placeholder", hide = true)]
    Placeholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Placeholder => anyhow::bail!("the lab area is not built yet"),
    }
}
