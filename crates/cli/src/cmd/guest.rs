//! `umlkit` subcommands of the guest area: images, guests, exec, mconsole.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Disk images: sparse ext4 without root, the default busybox image
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Create a sparse ext4 image (mkfs.ext4 -d; no root, loop device or mount)
    Create {
        /// Image file to create (must not exist)
        out: PathBuf,
        /// Size, e.g. 512M, 2G
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Fill the filesystem with this directory tree
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Build (or reuse from the cache) the default busybox guest image; print its path
    Default {
        /// Write the image here instead of the cache
        out: Option<PathBuf>,
        /// Image size (sparse)
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Static exec agent (default: $UMLKIT_AGENT, next to umlkit, or target/x86_64-unknown-linux-gnu/release)
        #[arg(long)]
        agent: Option<PathBuf>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    image::parse_size(s).ok_or_else(|| format!("invalid size '{s}' (examples: 512M, 2G)"))
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Image { cmd } => image_cmd(cmd),
    }
}

fn image_cmd(cmd: ImageCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCmd::Create { out, size, from } => {
            image::create(&out, size, from.as_deref())
                .with_context(|| format!("cannot create image {}", out.display()))?;
            println!("{}", out.display());
        }
        ImageCmd::Default { out, size, agent } => {
            let opts = image::DefaultImageOpts {
                out,
                size_bytes: size,
                agent,
                ..Default::default()
            };
            let p = image::default_image(&opts).context("cannot build the default image")?;
            println!("{}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn multicall_mconsole(_args: &[std::ffi::OsString]) -> ExitCode {
    eprintln!("uml_mconsole: not built yet");
    ExitCode::from(1)
}
