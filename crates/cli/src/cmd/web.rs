//! `umlkit web` (every running lab of the user) and the server behind
//! `umlkit lab web` (crates/web).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve a web view of every running lab of yours (topology, states,
    /// terminals, controls); prints the URL with its access token
    Web {
        #[command(flatten)]
        listen: WebOpts,
        /// Root of the per-lab state folders (as `umlkit lab --state-root`)
        #[arg(long)]
        state_root: Option<PathBuf>,
    },
}

/// Where the web view listens.
#[derive(Args, Debug, Clone)]
pub struct WebOpts {
    /// Address and port to listen on (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Allow an address other than loopback (anyone who can reach it and
    /// has the token gets the labs' shells)
    #[arg(long)]
    pub remote: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Web { listen, state_root } = cmd;
    let root = lab::open::state_root(state_root.as_deref());
    let plans = web::running_labs(&root)?;
    if plans.is_empty() {
        errln!(
            "umlkit web: no lab runs under {} yet; labs started later appear in the page",
            root.display()
        );
    }
    serve(plans, &root, &listen, true)
}

/// Serve `plans` until Ctrl-C / SIGTERM; with `discover`, also the labs
/// started under `root` later.
pub fn serve(
    plans: Vec<lab::plan::Plan>,
    root: &std::path::Path,
    o: &WebOpts,
    discover: bool,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().ok();
    let labs = plans
        .into_iter()
        .map(|p| web::LabEntry::new(p, root, exe.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    if !o.listen.ip().is_loopback() && o.remote {
        errln!(
            "umlkit web: warning: listening on {} (not loopback): whoever reaches it with the \
             token gets a root shell in every machine",
            o.listen
        );
    }
    let opts = web::Options {
        listen: o.listen,
        remote: o.remote,
        discover: discover.then(|| web::Discover {
            root: root.to_path_buf(),
            umlkit: exe.clone(),
        }),
    };
    web::serve(labs, &opts, &mut |url| {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "umlkit web: {url}");
        let _ = out.flush();
        errln!("umlkit web: open the URL above (it carries the access token); Ctrl-C ends");
    })
    .context("web view")?;
    Ok(ExitCode::SUCCESS)
}
