//! UML management console: the datagram protocol (pure [`proto`] module) and a
//! [`client::Client`] with timeouts.
//!
//! The kernel serves a SOCK_DGRAM socket at `<uml_dir>/<umid>/mconsole`; each
//! command is one request datagram, answered by one or more reply datagrams
//! (see `proto` for the byte layout). The client binds an abstract address so
//! that replies can reach it, and gives up after a timeout instead of hanging
//! when the kernel dies mid-command.

pub mod client;
pub mod dropin;
pub mod proto;

pub use client::{send, Client};
pub use proto::Response;

use std::path::PathBuf;

/// Errors of the mconsole client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket path does not fit `sun_path` (107 bytes + NUL).
    #[error("mconsole socket path {0} is too long for a unix socket (at most 107 bytes)")]
    PathTooLong(PathBuf),
    /// No socket at that path (the guest is not running, or a wrong name).
    #[error("no mconsole socket at {0}")]
    NoSocket(PathBuf, #[source] std::io::Error),
    /// Creating or configuring the client socket failed.
    #[error("cannot create the mconsole client socket")]
    Socket(#[source] std::io::Error),
    /// sendto failed (the kernel is gone: ECONNREFUSED).
    #[error("sending command to '{}'", .0.display())]
    Send(PathBuf, #[source] std::io::Error),
    /// recv failed.
    #[error("receiving the reply from '{}'", .0.display())]
    Recv(PathBuf, #[source] std::io::Error),
    /// No (complete) reply in time.
    #[error("no reply from '{}' to '{1}' in time (is the guest alive?)", .0.display())]
    Timeout(PathBuf, String),
    /// A malformed datagram or a command that does not fit.
    #[error(transparent)]
    Proto(proto::ProtoError),
    /// The kernel rejected the protocol.
    #[error("mconsole protocol error: {0}")]
    Protocol(String),
}
