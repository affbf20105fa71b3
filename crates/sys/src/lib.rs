//! The one place that talks to the kernel with raw syscalls. Every `unsafe`
//! block in umlkit lives here, each with a `// SAFETY:` note.
//!
//! Modules are split by area so that each stays small:
//! - [`file`]: sparse files and copying (`SEEK_DATA`/`SEEK_HOLE`, `copy_file_range`, ...)
//! - [`net`]: sockets beyond `std` (abstract AF_UNIX addresses, batched datagrams, ...)
//! - [`process`]: processes, process groups, ptys, signals
//! - [`private`]: private state dirs and files (0700/0600, locks, atomic writes, no symlinks)
//! - [`slirp`] (feature `slirp`): libslirp, the user-mode NAT of the switch's `--nat` port
//! - [`watch`]: waiting for a directory change or a process exit (inotify, pidfd, poll)

pub mod file;
pub mod net;
pub mod private;
pub mod process;
pub mod procfs;
#[cfg(feature = "slirp")]
pub mod slirp;
pub mod watch;
