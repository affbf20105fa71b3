//! Benchmarks against the C tools and of labs, each measured side by side
//! in one run: `moo` (uml_moo vs `umlkit moo`), `switch` (vde_switch vs
//! `umlkit switch` with vdeblast), `net` (guest to guest over five
//! transport/switch paths, VXLAN pps), `lab` (lab start to all reachable, host
//! memory, guests of the `guest` crate). Built on `cow`, `guest`, `image`
//! and `lab`; results are written to the writer passed in.

pub mod lab;
pub mod moo;
pub mod net;
pub mod switch;

use std::path::PathBuf;

/// Errors of the benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cow(#[from] cow::CowError),
    #[error(transparent)]
    Lab(#[from] ::lab::error::LabError),
    #[error(transparent)]
    Guest(#[from] guest::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    /// A file or folder of the benchmark.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A program or socket the benchmark drives.
    #[error("{what}")]
    Run {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The benchmark could not run or its case failed.
    #[error("{0}")]
    Failed(String),
    /// The report could not be written.
    #[error("cannot write the report")]
    Output(#[source] std::io::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
