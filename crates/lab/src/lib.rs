//! Network labs: lab.conf (Netkit/Kathará) and lab.toml readers, planner and
//! runner.
//!
//! Layers: [`conf`] and [`model`] are pure parsers (text in, typed values
//! out); [`load`] reads a lab folder and checks path safety; [`confine`]
//! keeps an untrusted lab folder off the host (lab disk instead of hostfs,
//! host-side kernel arguments refused, symlink-safe writes); [`plan`] turns a
//! lab into a typed [`plan::Plan`] ([`images`] picks each machine's image); [`script`] writes the guest-side scripts;
//! [`check`] evaluates `lab test` checks; [`graph`] draws the topology (laid out by
//! Graphviz through [`graphviz`]);
//! [`links`] applies lab files' link settings and runs their captures;
//! [`runner`] starts, stops and inspects a lab on guest-crate guests
//! ([`guest_backend::GuestBackend`]).

pub mod backend;
pub mod check;
pub mod conf;
pub mod confine;
pub mod dialect;
pub mod error;
#[cfg(test)]
mod fake_backend;
pub mod graph;
pub mod graphviz;
pub mod guest_backend;
pub mod images;
pub mod links;
pub mod load;
pub mod mac;
pub mod model;
pub mod open;
pub mod plan;
pub mod runner;
pub mod script;
pub mod sizing;
pub mod status;
pub mod test_run;

/// The crate's error type under its short name (`lab::Error`).
pub use error::LabError as Error;
pub use error::{LabError, Result};
