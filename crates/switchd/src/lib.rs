//! The switch daemon: sockets (VDE switch directory, uml_switch control
//! socket, UML daemon transport), the event loop around the pure
//! [`switch_core::Switch`], and the management console.
//!
//! One switching fabric serves every kind of client:
//! - `DIR/ctl` (VDE): per-port datagram sockets `DIR/NNN.FD` connected to
//!   each client; also accepts UML's `eth=daemon` transport (abstract
//!   client address).
//! - a uml_switch control socket: one shared abstract datagram socket,
//!   ports told apart by sender address.
//! - a management console socket speaking vde_switch's protocol.
//!
//! Usage: build [`Options`], [`Server::bind`] (creates the sockets, so
//! errors surface before daemonizing), then [`Server::run`].

pub mod capture;
pub mod client;
mod flow;
mod log;
mod mgmt;
pub mod nat;
pub mod options;
pub mod plug;
mod reach;
mod server;
pub mod vxlan;

use std::io;
use std::path::PathBuf;

pub use log::Logger;
pub use server::{ExitReason, Server};

/// How the daemon talks (messages and conventions of which C tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `umlkit switch` (vde_switch-like messages).
    Umlkit,
    /// Invoked as `uml_switch`: its stdout messages.
    UmlSwitch,
}

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// VDE switch directory (DIR/ctl).
    pub vde_dir: Option<PathBuf>,
    /// uml_switch control socket.
    pub uml_ctl: Option<PathBuf>,
    /// uml_switch `-compat-v0` named data socket.
    pub v0_data: Option<PathBuf>,
    /// Management console socket.
    pub mgmt: Option<PathBuf>,
    pub hub: bool,
    pub numports: u32,
    /// Mode of the ctl and port sockets.
    pub mode: u32,
    /// Mode of the switch directory.
    pub dirmode: u32,
    /// Mode of the uml_switch control socket (None = leave to umask).
    pub uml_mode: Option<u32>,
    /// Mode of the management socket.
    pub mgmt_mode: u32,
    /// Group of the directory and sockets.
    pub group: Option<u32>,
    pub flavor: Flavor,
    /// Socket buffer size for data sockets (bytes, 0 = kernel default).
    pub sock_buf: i32,
    /// Also serve UML's vector `bess` transport on `DIR/vec` (a
    /// SOCK_SEQPACKET listener: one raw frame per message, no handshake).
    pub vector: bool,
    /// Largest payload of a frame (MTU): 1500 as vde_switch, up to
    /// [`net_proto::eth::MAX_MTU`] for jumbo frames (guests on the vector
    /// transport with `mtu=`; legacy transports stay at 1500).
    pub mtu: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            vde_dir: None,
            uml_ctl: None,
            v0_data: None,
            mgmt: None,
            hub: false,
            numports: switch_core::DEFAULT_NUMPORTS,
            mode: 0o600,
            dirmode: 0o2700,
            uml_mode: None,
            mgmt_mode: 0o600,
            group: None,
            flavor: Flavor::Umlkit,
            sock_buf: std::env::var("UMLKIT_SWITCH_SOCKBUF")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(4 << 20),
            vector: false,
            mtu: net_proto::eth::DEFAULT_MTU,
        }
    }
}

/// The vector (`bess`) socket of a switch directory.
pub fn vector_socket(dir: &std::path::Path) -> PathBuf {
    dir.join("vec")
}

/// vde_switch's directory mode derived from `-m MODE` (spec §1): setgid
/// plus, for each of user/group/other that has any rw bit, those bits and x.
pub fn dirmode_from_mode(mode: u32) -> u32 {
    let mut d = 0o2000;
    for (rw, x) in [(0o600, 0o100), (0o060, 0o010), (0o006, 0o001)] {
        if mode & rw != 0 {
            d |= (mode & rw) | x;
        }
    }
    d
}

/// Errors of the daemon; each names the path or socket concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "MTU {0} is out of range: 1500 (the default) to 9216 (jumbo frames, for guests on the vector transport)"
    )]
    BadMtu(usize),
    #[error("cannot create switch directory {path}")]
    Mkdir { path: PathBuf, source: io::Error },
    /// The switch directory exists and belongs to someone else, who could
    /// replace its sockets.
    #[error(
        "switch directory {path} belongs to {owner} (uid {uid}), not to the user running the switch (uid {me}): refusing it; remove it or choose another directory"
    )]
    ForeignDir {
        path: PathBuf,
        owner: String,
        uid: u32,
        me: u32,
    },
    /// The switch directory is a symbolic link (its target would be used and chmod'ed).
    #[error("switch directory {0} is a symbolic link: refusing it; give the real directory")]
    SymlinkDir(PathBuf),
    #[error("switch directory {0} exists and is not a directory")]
    NotADir(PathBuf),
    #[error("Could not bind to socket '{path}'")]
    Bind { path: PathBuf, source: io::Error },
    /// A live server answers on the socket.
    #[error(
        "Could not bind to socket '{0}': Address already in use (another switch is running on it)"
    )]
    InUse(PathBuf),
    #[error("socket path too long (max 107 bytes): {0}")]
    PathTooLong(PathBuf),
    #[error("cannot set mode/group of {path}")]
    Perm { path: PathBuf, source: io::Error },
    #[error("cannot create socket: {0}")]
    Socket(io::Error),
    #[error("event loop failed: {0}")]
    Poll(io::Error),
    #[error("bad path {}", .0.display())]
    BadPath(PathBuf, #[source] io::Error),
    #[error("the number of ports must be at least 1")]
    NoPorts,
    #[error("-n {0}: at most {max} ports are supported", max = switch_core::MAX_NUMPORTS)]
    TooManyPorts(u32),
    #[error("No such group '{0}'")]
    NoGroup(String),
    /// uml_switch's arguments are wrong: it prints its usage.
    #[error("{}", options::UML_SWITCH_USAGE.trim_end())]
    UmlSwitchUsage,
    #[error(
        "-tap is not supported by this implementation (umlkit); attach the tap device with a VDE tap plug instead"
    )]
    TapUnsupported,
    #[error("nothing to serve: give a switch directory, a uml_switch socket or both")]
    NothingToServe,
    #[error("cannot read rc file {path}")]
    RcRead { path: PathBuf, source: io::Error },
    #[error("rc file {path}, line {line}: `{command}` failed: {status}")]
    RcCommand {
        path: PathBuf,
        line: usize,
        command: String,
        status: String,
    },
    #[error("port {port} does not exist (the switch has ports 0..{numports})")]
    NoSuchPort { port: u32, numports: u32 },
    #[error("cannot connect to the management socket {path}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("management socket {path}")]
    Console { path: PathBuf, source: io::Error },
    #[error("management socket {path}: `{command}` failed: {status}")]
    Refused {
        path: PathBuf,
        command: String,
        status: String,
    },
    #[error("cannot write the capture")]
    Output { source: io::Error },
    #[error("management socket {path}: unexpected reply: {reply:?}")]
    BadReply { path: PathBuf, reply: String },
    #[error("vde_open {url}: {reason}")]
    PlugUrl { url: String, reason: String },
    #[error("--vector needs a switch directory (-s DIR): its socket is DIR/vec")]
    VectorNeedsDir,
    #[error("vxlan: {what}")]
    Vxlan { what: String, source: io::Error },
    #[error("--forward {0}")]
    BadForward(String),
    #[error("--nat")]
    Nat(#[source] umlkit_sys::slirp::SlirpError),
    #[error("--forward {spec}")]
    Forward {
        spec: String,
        source: umlkit_sys::slirp::SlirpError,
    },
    #[error("--nat needs a switch directory (-s DIR): the NAT joins the switch as a port there")]
    NatNeedsDir,
    #[error("vde_open {url}: {what}")]
    Plug {
        url: String,
        what: String,
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirmode_derivation() {
        assert_eq!(dirmode_from_mode(0o600), 0o2700);
        assert_eq!(dirmode_from_mode(0o660), 0o2770);
        assert_eq!(dirmode_from_mode(0o666), 0o2777);
        assert_eq!(dirmode_from_mode(0o640), 0o2750);
        assert_eq!(dirmode_from_mode(0o400), 0o2500);
        assert_eq!(dirmode_from_mode(0), 0o2000);
    }
}
