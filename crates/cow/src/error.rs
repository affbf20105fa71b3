//! The cow crate's error type. Every variant names the file it is about.

use std::io;
use std::path::PathBuf;

use cow_format::FormatError;

/// The I/O step that failed; front ends map it to the C tools' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenCow,
    ReadHeader,
    StatBacking,
    OpenBacking,
    ReadBacking,
    CreateOutput,
    ReadBitmap,
    ReadData,
    WriteData,
    WriteCow,
    Rename,
    Sync,
    Journal,
    ReadArchive,
    WriteArchive,
    Other,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::OpenCow => "cannot open COW file",
            Op::ReadHeader => "cannot read the COW header of",
            Op::StatBacking => "cannot stat backing file",
            Op::OpenBacking => "cannot open backing file",
            Op::ReadBacking => "cannot read backing file",
            Op::CreateOutput => "cannot create output file",
            Op::ReadBitmap => "cannot read the COW bitmap of",
            Op::ReadData => "cannot read the COW data area of",
            Op::WriteData => "cannot write",
            Op::WriteCow => "cannot write COW file",
            Op::Rename => "cannot rename into place",
            Op::Sync => "cannot sync",
            Op::Journal => "merge journal",
            Op::ReadArchive => "cannot read archive",
            Op::WriteArchive => "cannot write",
            Op::Other => "I/O error on",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CowError {
    /// An I/O call failed on `path`.
    #[error("{op} {}", path.display())]
    Io {
        op: Op,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's header is not a valid COW header.
    #[error("{}: not a usable COW file", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// A backing file name that does not fit the header (or is empty).
    #[error("backing file name \"{}\" cannot be stored", name.display())]
    BackingName {
        name: PathBuf,
        #[source]
        source: FormatError,
    },
    /// The directory part of a backing name cannot be resolved.
    #[error("absolutize: cannot change to the directory of \"{}\"", name.display())]
    Absolutize {
        name: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The backing file's size differs from the one recorded in the header.
    #[error(
        "Size mismatch ({recorded} vs {actual}) of COW header vs backing file \"{}\" (COW file {}): the backing file was resized or replaced; this COW cannot be used with it",
        backing.display(), cow.display()
    )]
    SizeMismatch {
        cow: PathBuf,
        backing: PathBuf,
        recorded: u64,
        actual: u64,
    },
    /// The backing file's mtime differs from the one recorded in the header.
    #[error(
        "mtime mismatch ({recorded} vs {actual}) of COW header vs backing file \"{}\" (COW file {}): the backing file was modified or touched after the COW was made; if its contents are unchanged run `umlkit cow rebase {} --accept-mtime`",
        backing.display(), cow.display(), cow.display()
    )]
    MtimeMismatch {
        cow: PathBuf,
        backing: PathBuf,
        recorded: u32,
        actual: i64,
    },
    /// The bitmap marks sectors that lie past the end of the COW file.
    #[error(
        "{}: COW data area too short: the bitmap marks sector {sector}, whose data would end at byte {needed}, but the file has {len} bytes",
        path.display()
    )]
    DataShort {
        path: PathBuf,
        sector: u64,
        needed: u64,
        len: u64,
    },
    /// The output exists and overwriting was not asked for.
    #[error("{} already exists (use --force to overwrite it)", path.display())]
    Exists { path: PathBuf },
    /// A merge journal that does not belong to this COW/backing pair.
    #[error("merge journal {}: {msg}", path.display())]
    Journal { path: PathBuf, msg: String },
    /// A running guest (or another tool) holds a lock on the file.
    #[error(
        "{} is in use: process {pid} holds a lock on it (a running UML guest?); stop it first",
        path.display()
    )]
    InUse { path: PathBuf, pid: u32 },
    /// `moo -d` on a backing file, named only by the COW header, that the
    /// invoking user does not own: the header could name anyone's file.
    #[error(
        "backing file \"{}\" named by {} belongs to uid {owner}, not to you (uid {me}): refusing to merge into it; name it explicitly with -b {} if you mean it",
        backing.display(),
        cow.display(),
        backing.display()
    )]
    ForeignBacking {
        cow: PathBuf,
        backing: PathBuf,
        owner: u32,
        me: u32,
    },
    /// A tar archive that we cannot unpack.
    #[error("archive {}: {msg}", path.display())]
    Archive { path: PathBuf, msg: String },
    /// Anything else, with its file.
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, CowError>;

/// Attach `op` and `path` to an `io::Result`.
pub(crate) trait IoCtx<T> {
    fn ctx(self, op: Op, path: &std::path::Path) -> Result<T>;
}

impl<T> IoCtx<T> for io::Result<T> {
    fn ctx(self, op: Op, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| CowError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
