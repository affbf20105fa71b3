//! `umlkit bench switch`: vde_switch vs umlkit switch with vdeblast.

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Frames per throughput run
    #[arg(long, default_value_t = 200_000)]
    frames: u64,
}

pub fn run(_a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
