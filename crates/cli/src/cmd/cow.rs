//! `umlkit` subcommands of the cow area: `mkcow`, `moo`, `cow info|check|
//! rebase|pack|unpack`, `bench moo`, and the `uml_mkcow`/`uml_moo`
//! multi-call entry points (same arguments, texts and exit codes as the C
//! tools of uml-utilities).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use cow::{CowError, MkcowOptions, MooOptions, Op, RebaseOptions};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a COW file over a backing file (as uml_mkcow)
    Mkcow {
        /// Overwrite an existing COW file (like uml_mkcow -f: the header is
        /// rewritten, the file is not truncated)
        #[arg(short = 'f', long = "force")]
        force: bool,
        /// The COW file to create
        cow: PathBuf,
        /// The backing file (stored as an absolute path)
        backing: PathBuf,
    },
    /// Merge a COW file with its backing file (as uml_moo, much faster)
    #[command(
        override_usage = "umlkit moo [-b BACKING] [--force] COW NEW\n       umlkit moo [-b BACKING] -d COW"
    )]
    Moo(MooArgs),
    /// Inspect, check, repair and move COW files
    Cow {
        #[command(subcommand)]
        cmd: CowCommand,
    },
}

/// `umlkit moo [-b BACKING] COW NEW` or `umlkit moo [-b BACKING] -d COW`.
#[derive(Args, Debug)]
pub struct MooArgs {
    /// Use this backing file instead of the one named in the COW header
    #[arg(short = 'b', value_name = "BACKING")]
    backing: Option<PathBuf>,
    /// Merge in place into the backing file (crash-safe, resumable)
    #[arg(short = 'd')]
    destructive: bool,
    /// Overwrite NEW if it exists
    #[arg(long)]
    force: bool,
    /// COW [NEW]
    #[arg(value_name = "FILES")]
    files: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum CowCommand {
    /// Show a COW file's header, layout, changed sectors and backing status
    Info {
        cow: PathBuf,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Check a COW file as the kernel does (backing size and mtime must match)
    Check { cow: PathBuf },
    /// Point a COW file at a moved backing file, or accept a touched one
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["backing", "accept_mtime"])))]
    Rebase {
        cow: PathBuf,
        /// The backing file's new location (its size and mtime must match)
        #[arg(long, value_name = "NEW_PATH")]
        backing: Option<PathBuf>,
        /// Record the backing file's current mtime (contents must be unchanged!)
        #[arg(long)]
        accept_mtime: bool,
    },
    /// Pack COW files and their backing files into a sparse tar archive
    Pack {
        /// The archive to write
        out: PathBuf,
        /// COW files to pack (their backing files come along)
        #[arg(required = true)]
        cows: Vec<PathBuf>,
    },
    /// Unpack an archive made by `cow pack` into DIR, fixing backing paths
    Unpack { input: PathBuf, dir: PathBuf },
}

const MOO_USAGE: &str = "uml_moo usage:
\tuml_moo [ -b <actual backing file> ] <COW file> <new backing file>
\tuml_moo [ -b <actual backing file> ] -d <COW file>
Creates a new filesystem image from the COW file and its backing file.
Specifying -d will cause a destructive, in-place merge of the COW file into
its current backing file
Specifying -b overrides the backing_file specified in the COW file.  This is
needed when dealing with a COW file that was created inside a chroot jail.
uml_moo supports version 1,2 and 3 COW files.
";

const MKCOW_USAGE: &str = "uml_mkcow usage: 
\tuml_mkcow [-f] <COW file> <backing file>
\t-f forces overwrite of an existing COW file
";

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Mkcow {
            force,
            cow,
            backing,
        } => {
            let opts = MkcowOptions {
                force,
                c_compat: false,
            };
            cow::mkcow(&cow, &backing, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Moo(a) => {
            let need = if a.destructive { 1 } else { 2 };
            if a.files.len() != need {
                err!("{MOO_USAGE}");
                return Ok(ExitCode::from(1));
            }
            let opts = MooOptions {
                backing: a.backing,
                force: a.force,
                check_locks: true,
            };
            if a.destructive {
                let jp = cow::moo::journal_path(&a.files[0]);
                if jp.exists() {
                    errln!(
                        "umlkit: resuming the interrupted in-place merge recorded in {}",
                        jp.display()
                    );
                }
                cow::moo_in_place(&a.files[0], &opts)?;
            } else {
                cow::moo_new(&a.files[0], &a.files[1], &opts)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cow { cmd } => run_cow(cmd),
    }
}

fn run_cow(cmd: CowCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CowCommand::Info { cow, json } => {
            let i = cow::info(&cow)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                print_info(&i);
            }
            Ok(ExitCode::SUCCESS)
        }
        CowCommand::Check { cow } => match cow::check(&cow) {
            Ok(b) => {
                outln!(
                    "{}: ok, matches backing file {} (size and mtime as recorded)",
                    cow.display(),
                    b.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ CowError::Io { op: Op::StatBacking, .. }) => Err(anyhow::Error::new(e).context(format!(
                "{}: its backing file is missing; if it was moved run `umlkit cow rebase {} --backing NEW_PATH`",
                cow.display(),
                cow.display()
            ))),
            Err(e) => Err(e.into()),
        },
        CowCommand::Rebase {
            cow,
            backing,
            accept_mtime,
        } => {
            let (old, new) = cow::rebase(
                &cow,
                &RebaseOptions {
                    backing,
                    accept_mtime,
                },
            )?;
            if old == new {
                outln!("{}: nothing to change", cow.display());
            }
            if old.backing_file != new.backing_file {
                outln!(
                    "{}: backing file {} -> {}",
                    cow.display(),
                    String::from_utf8_lossy(&old.backing_file),
                    String::from_utf8_lossy(&new.backing_file)
                );
            }
            if old.mtime != new.mtime {
                outln!(
                    "{}: recorded mtime {} ({}) -> {} ({})",
                    cow.display(),
                    old.mtime,
                    utc(i64::from(old.mtime)),
                    new.mtime,
                    utc(i64::from(new.mtime))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CowCommand::Pack { out, cows } => {
            let names = cow::tar::pack(&out, &cows)?;
            for n in names {
                outln!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CowCommand::Unpack { input, dir } => {
            for u in cow::tar::unpack(&input, &dir)? {
                match u.backing {
                    Some(b) => outln!("{} (COW over {})", u.path.display(), b.display()),
                    None => outln!("{}", u.path.display()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn print_info(i: &cow::CowInfo) {
    outln!("COW file:          {}", i.path);
    outln!("version:           {}", i.version);
    outln!("backing file:      {}", i.backing_file);
    outln!("recorded size:     {} bytes", i.recorded_size);
    outln!(
        "recorded mtime:    {} ({})",
        i.recorded_mtime,
        utc(i64::from(i.recorded_mtime))
    );
    match (i.current_size, i.current_mtime) {
        (Some(s), Some(m)) => {
            outln!("current size:      {s} bytes");
            outln!("current mtime:     {m} ({})", utc(m));
        }
        _ => outln!("current size/mtime: backing file cannot be stat'ed"),
    }
    match &i.backing_problem {
        None => outln!("backing status:    ok (size and mtime match)"),
        Some(p) => outln!("backing status:    MISMATCH: {p}"),
    }
    outln!("sector size:       {}", i.sector_size);
    outln!("alignment:         {}", i.alignment);
    outln!(
        "bitmap:            offset {}, {} bytes",
        i.bitmap_offset,
        i.bitmap_len
    );
    outln!("data offset:       {}", i.data_offset);
    outln!("file length:       {} bytes", i.file_len);
    outln!(
        "sectors changed:   {} of {} ({:.2}%)",
        i.sectors_changed,
        i.sectors,
        i.percent_changed
    );
    outln!("allocated on disk: {} bytes", i.allocated_bytes);
    if let Some(j) = &i.merge_journal {
        outln!(
            "INTERRUPTED MERGE: journal {j}; finish it with `umlkit moo -d {}`",
            i.path
        );
    }
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Time uml_moo against `umlkit moo` on a sparse ext4 image with a COW
    /// the real kernel wrote into
    Moo {
        /// Backing image size (K, M, G suffixes)
        #[arg(long, default_value = "2G")]
        size: String,
        /// Random data the guest writes into the COW
        #[arg(long, default_value = "200M")]
        write: String,
        /// Warm runs of each tool
        #[arg(long, default_value_t = 2)]
        runs: u32,
        /// Work directory (default: a new one under /tmp, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok(n * mul)
}

pub fn bench(b: Bench) -> anyhow::Result<ExitCode> {
    match b {
        Bench::Moo {
            size,
            write,
            runs,
            dir,
        } => {
            let cfg = bench::moo::MooBench {
                size: parse_size(&size)?,
                write: parse_size(&write)?,
                runs,
                dir,
                umlkit: std::env::current_exe().context("cannot find the umlkit executable")?,
            };
            let r = bench::moo::run_moo_bench(&cfg)?;
            out!("{r}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// strerror text of an io::Error, without Rust's " (os error N)" suffix.
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `uml_mkcow [-f] <COW file> <backing file>` with uml_mkcow's texts and
/// exit codes. Difference: a COW file created by a failing call is removed.
pub fn multicall_mkcow(args: &[OsString]) -> ExitCode {
    let (force, rest) = match args.first() {
        Some(a) if a == "-f" => (true, &args[1..]),
        _ => (false, args),
    };
    if rest.len() < 2 {
        err!("{MKCOW_USAGE}");
        return ExitCode::from(2);
    }
    let cow = PathBuf::from(&rest[0]);
    let backing = PathBuf::from(&rest[1]);
    let opts = MkcowOptions {
        force,
        c_compat: true,
    };
    match cow::mkcow(&cow, &backing, &opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CowError::Io {
                    op: Op::OpenCow,
                    source,
                    ..
                } => errln!("open COW file: {}", strerror(source)),
                CowError::Io {
                    op: Op::StatBacking,
                    path,
                    ..
                } => {
                    // uml_mkcow reports any stat failure as err = 1 / EPERM.
                    outln!(
                        "write_cow_header - backing file '{}' mtime request failed, err = 1",
                        path.display()
                    );
                    errln!("write_cow_header: Operation not permitted");
                }
                CowError::BackingName { name, .. } => {
                    outln!(
                        "Backing file name \"{}\" is too long - names are limited to 4095 characters",
                        name.display()
                    );
                    errln!("write_cow_header: Invalid argument");
                }
                CowError::Absolutize { name, source } => {
                    outln!(
                        "absolutize : Can't cd to '{}' - errno = {}",
                        name.display(),
                        source.raw_os_error().unwrap_or(0)
                    );
                    errln!("write_cow_header: Invalid argument");
                }
                CowError::Io { source, .. } => errln!("write_cow_header: {}", strerror(source)),
                other => errln!("write_cow_header: {}", cow::error_text(other)),
            }
            ExitCode::from(1)
        }
    }
}

/// `uml_moo [-b BACKING] COW NEW` / `uml_moo [-b BACKING] -d COW` with
/// uml_moo's texts and exit codes. Differences: options in any order; `-d`
/// alone prints the usage (uml_moo crashes); NEW is replaced atomically.
pub fn multicall_moo(args: &[OsString]) -> ExitCode {
    let mut destructive = false;
    let mut backing = None;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-d" {
            destructive = true;
        } else if a == "-b" {
            match it.next() {
                Some(b) => backing = Some(PathBuf::from(b)),
                None => {
                    err!("{MOO_USAGE}");
                    return ExitCode::from(1);
                }
            }
        } else {
            files.push(PathBuf::from(a));
        }
    }
    let need = if destructive { 1 } else { 2 };
    if files.len() != need {
        err!("{MOO_USAGE}");
        return ExitCode::from(1);
    }
    if let Ok(c) = cow::CowFile::open(&files[0], false) {
        if c.header.version == cow_format::Version::V3Broken {
            outln!("read_cow_header - broken V3 file with 64-bit layout - recovering content.");
        }
    }
    let opts = MooOptions {
        backing,
        force: true,
        check_locks: false,
    };
    let r = if destructive {
        cow::moo_in_place(&files[0], &opts)
    } else {
        cow::moo_new(&files[0], &files[1], &opts)
    };
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CowError::Io { op, source, .. } => {
                    let what = match op {
                        Op::OpenCow => "COW file open",
                        Op::ReadHeader => {
                            errln!("Reading COW header failed");
                            return ExitCode::from(1);
                        }
                        Op::StatBacking => "Stating backing file",
                        Op::OpenBacking => "Opening backing file",
                        Op::CreateOutput | Op::Rename => "Output file open",
                        Op::ReadBitmap => "Reading COW bitmap",
                        Op::ReadData | Op::ReadBacking => "Reading data",
                        Op::WriteData | Op::Sync => "Writing data",
                        _ => "uml_moo",
                    };
                    errln!("{what}: {}", strerror(source));
                }
                CowError::Format { .. } => errln!("Reading COW header failed"),
                CowError::SizeMismatch {
                    backing,
                    recorded,
                    actual,
                    ..
                } => errln!(
                    "Size mismatch ({recorded} vs {actual}) of COW header vs backing file \"{}\"",
                    backing.display()
                ),
                CowError::MtimeMismatch {
                    backing,
                    recorded,
                    actual,
                    ..
                } => errln!(
                    "mtime mismatch ({recorded} vs {actual}) of COW header vs backing file \"{}\"",
                    backing.display()
                ),
                CowError::DataShort { .. } => errln!("Reading data: {}", cow::error_text(&e)),
                other => errln!("uml_moo: {}", cow::error_text(other)),
            }
            ExitCode::from(1)
        }
    }
}
