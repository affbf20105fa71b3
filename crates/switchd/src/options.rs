//! Option policy of the switch commands: how `umlkit switch`'s
//! vde_switch-style flags become [`Options`] (default directory, modes
//! derived from each other, group by name or number, limits), and the
//! `uml_switch` drop-in's argument handling (its messages, refusals and
//! defaults). No sockets are made here.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{dirmode_from_mode, Error, Flavor, Options};

/// The flags of `umlkit switch` (vde_switch's), as given.
#[derive(Debug, Clone, Default)]
pub struct SwitchFlags {
    /// `-s DIR`: VDE switch directory.
    pub sock: Option<PathBuf>,
    /// `-u CTL`: uml_switch control socket.
    pub uml_ctl: Option<PathBuf>,
    /// `-x`: hub.
    pub hub: bool,
    /// `-n N`.
    pub numports: u32,
    /// `-m MODE` (octal, already parsed).
    pub mode: Option<u32>,
    /// `--dirmode MODE`.
    pub dirmode: Option<u32>,
    /// `-g GROUP`: a group name or number.
    pub group: Option<String>,
    /// `-M MGMT`.
    pub mgmt: Option<PathBuf>,
    /// `--mgmtmode MODE`.
    pub mgmtmode: u32,
    /// `--vector`: also serve the kernel's vector transport on `DIR/vec`.
    pub vector: bool,
    /// `--mtu N`: largest frame payload forwarded (1500 unless given).
    pub mtu: Option<usize>,
}

/// `p` made absolute (the switch may daemonize and change directory).
pub fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::BadPath(p.to_path_buf(), e))
}

impl SwitchFlags {
    /// The daemon's options: the directory defaults to `/var/run/vde.ctl`
    /// as root, else `/tmp/vde.ctl`, unless `-u` is given alone; `-m` alone
    /// derives the directory mode as vde_switch does, `--dirmode` alone
    /// derives the socket mode (its rw bits); paths are made absolute.
    pub fn options(&self) -> Result<Options, Error> {
        let vde_dir = match (&self.sock, &self.uml_ctl) {
            (Some(d), _) => Some(absolute(d)?),
            (None, Some(_)) => None,
            (None, None) => Some(PathBuf::from(if umlkit_sys::net::euid() == 0 {
                "/var/run/vde.ctl"
            } else {
                "/tmp/vde.ctl"
            })),
        };
        let mut o = Options {
            vde_dir,
            ..Options::default()
        };
        o.uml_ctl = self.uml_ctl.as_deref().map(absolute).transpose()?;
        o.mgmt = self.mgmt.as_deref().map(absolute).transpose()?;
        o.hub = self.hub;
        o.vector = self.vector;
        if self.vector && o.vde_dir.is_none() {
            return Err(Error::VectorNeedsDir);
        }
        if self.numports == 0 {
            return Err(Error::NoPorts);
        }
        if self.numports > switch_core::MAX_NUMPORTS {
            return Err(Error::TooManyPorts(self.numports));
        }
        o.numports = self.numports;
        if let Some(mtu) = self.mtu {
            if !(net_proto::eth::DEFAULT_MTU..=net_proto::eth::MAX_MTU).contains(&mtu) {
                return Err(Error::BadMtu(mtu));
            }
            o.mtu = mtu;
        }
        match (self.mode, self.dirmode) {
            (Some(m), Some(d)) => {
                o.mode = m;
                o.dirmode = d;
            }
            (Some(m), None) => {
                o.mode = m;
                o.dirmode = dirmode_from_mode(m);
            }
            (None, Some(d)) => {
                o.dirmode = d;
                o.mode = d & 0o666;
            }
            (None, None) => {}
        }
        o.uml_mode = self.mode;
        o.mgmt_mode = self.mgmtmode;
        if let Some(g) = &self.group {
            let gid = match umlkit_sys::net::group_id(g) {
                Some(gid) => gid,
                None => g.parse().map_err(|_| Error::NoGroup(g.clone()))?,
            };
            o.group = Some(gid);
        }
        Ok(o)
    }
}

/// What `umlkit switch` serves, for its start line: `switch with 32 ports
/// on switch directory /tmp/vde.ctl, management socket /tmp/m`.
pub fn describe(o: &Options) -> String {
    let mut what = Vec::new();
    if let Some(d) = &o.vde_dir {
        what.push(format!("switch directory {}", d.display()));
        if o.vector {
            what.push(format!(
                "vector socket {}",
                crate::vector_socket(d).display()
            ));
        }
    }
    if let Some(u) = &o.uml_ctl {
        what.push(format!("uml_switch socket {}", u.display()));
    }
    if let Some(m) = &o.mgmt {
        what.push(format!("management socket {}", m.display()));
    }
    let mtu = if o.mtu == net_proto::eth::DEFAULT_MTU {
        String::new()
    } else {
        format!(" (MTU {})", o.mtu)
    };
    format!(
        "{} with {} ports{mtu} on {}",
        if o.hub { "hub" } else { "switch" },
        o.numports,
        what.join(", ")
    )
}

/// uml_switch's usage text (stderr, exit status 1).
pub const UML_SWITCH_USAGE: &str =
    "Usage : uml_switch [ -unix control-socket ] [ -hub ] [ -tap tap-device ]\n\
or : uml_switch -compat-v0 [ -unix control-socket data-socket ] [ -hub ] [ -tap tap-device ]\n";

/// A `uml_switch` command line, understood.
#[derive(Debug, Clone)]
pub struct UmlSwitch {
    /// The control socket as given (shown in messages).
    pub ctl: PathBuf,
    /// `-daemon`.
    pub daemon: bool,
    /// The daemon's options (4096 ports, uml_switch messages).
    pub options: Options,
}

/// Parse `uml_switch`'s arguments (argv without argv[0]) as the C tool
/// does: `-hub` and `-compat-v0` print their notice on `notes` as they are
/// seen; a bad argument is [`Error::UmlSwitchUsage`], `-tap` is refused
/// with [`Error::TapUnsupported`].
pub fn uml_switch(args: &[OsString], notes: &mut dyn Write) -> Result<UmlSwitch, Error> {
    let mut ctl = PathBuf::from("/tmp/uml.ctl");
    let mut data: Option<PathBuf> = None;
    let mut hub = false;
    let mut daemon = false;
    let mut compat = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "-unix" => {
                let p = args.get(i + 1).ok_or(Error::UmlSwitchUsage)?;
                ctl = PathBuf::from(p);
                i += 1;
                if compat {
                    let d = args.get(i + 1).ok_or(Error::UmlSwitchUsage)?;
                    data = Some(PathBuf::from(d));
                    i += 1;
                }
            }
            "-hub" => {
                let _ = writeln!(notes, "uml_switch will be a hub instead of a switch");
                hub = true;
            }
            "-compat-v0" => {
                let _ = writeln!(notes, "Control protocol 0 compatibility");
                compat = true;
                data.get_or_insert_with(|| PathBuf::from("/tmp/uml.data"));
            }
            "-daemon" => daemon = true,
            "-tap" => return Err(Error::TapUnsupported),
            _ => return Err(Error::UmlSwitchUsage),
        }
        i += 1;
    }
    let mut options = Options {
        uml_ctl: Some(ctl.clone()),
        v0_data: if compat { data } else { None },
        hub,
        numports: 4096,
        flavor: Flavor::UmlSwitch,
        ..Options::default()
    };
    if let Ok(abs) = std::path::absolute(&ctl) {
        options.uml_ctl = Some(abs);
    }
    Ok(UmlSwitch {
        ctl,
        daemon,
        options,
    })
}

/// uml_switch's message when its control socket is served already.
pub fn uml_switch_in_use(ctl: &Path) -> String {
    let p = ctl.display();
    format!(
        "The control socket '{p}' has another server attached to it\nYou can either\n\tremove '{p}'\n\tor rerun with a different, unused filename for a socket"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SwitchFlags {
        SwitchFlags {
            sock: Some("/tmp/x".into()),
            numports: 32,
            mgmtmode: 0o600,
            ..SwitchFlags::default()
        }
    }

    #[test]
    fn modes_derive_from_each_other() {
        let o = SwitchFlags {
            mode: Some(0o660),
            ..flags()
        }
        .options()
        .unwrap();
        assert_eq!(
            (o.mode, o.dirmode, o.uml_mode),
            (0o660, 0o2770, Some(0o660))
        );
        let o = SwitchFlags {
            dirmode: Some(0o2750),
            ..flags()
        }
        .options()
        .unwrap();
        assert_eq!((o.mode, o.dirmode, o.uml_mode), (0o640, 0o2750, None));
        let o = flags().options().unwrap();
        assert_eq!((o.mode, o.dirmode), (0o600, 0o2700));
    }

    #[test]
    fn directory_defaults_unless_uml_ctl_alone() {
        let o = SwitchFlags {
            sock: None,
            uml_ctl: Some("/tmp/u.ctl".into()),
            ..flags()
        }
        .options()
        .unwrap();
        assert_eq!(o.vde_dir, None);
        let o = SwitchFlags {
            sock: None,
            ..flags()
        }
        .options()
        .unwrap();
        assert!(o.vde_dir.is_some());
    }

    #[test]
    fn port_counts_and_groups_are_checked() {
        let e = SwitchFlags {
            numports: 0,
            ..flags()
        }
        .options()
        .unwrap_err();
        assert_eq!(e.to_string(), "the number of ports must be at least 1");
        let n = switch_core::MAX_NUMPORTS + 1;
        let e = SwitchFlags {
            numports: n,
            ..flags()
        }
        .options()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "-n {n}: at most {} ports are supported",
                switch_core::MAX_NUMPORTS
            )
        );
        let e = SwitchFlags {
            group: Some("no-such-group-umlkit".into()),
            ..flags()
        }
        .options()
        .unwrap_err();
        assert_eq!(e.to_string(), "No such group 'no-such-group-umlkit'");
        let o = SwitchFlags {
            group: Some("4242".into()),
            ..flags()
        }
        .options()
        .unwrap();
        assert_eq!(o.group, Some(4242));
    }

    #[test]
    fn mtu_is_1500_unless_a_jumbo_size_is_asked() {
        assert_eq!(flags().options().unwrap().mtu, 1500);
        let o = SwitchFlags {
            mtu: Some(9000),
            ..flags()
        }
        .options()
        .unwrap();
        assert_eq!(o.mtu, 9000);
        assert!(describe(&o).contains("(MTU 9000)"), "{}", describe(&o));
        for bad in [1499, 9217, 0] {
            let e = SwitchFlags {
                mtu: Some(bad),
                ..flags()
            }
            .options()
            .unwrap_err();
            assert!(e
                .to_string()
                .starts_with(&format!("MTU {bad} is out of range")));
        }
    }

    #[test]
    fn uml_switch_arguments() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let mut notes = Vec::new();
        let u = uml_switch(
            &args(&["-compat-v0", "-hub", "-unix", "c", "d"]),
            &mut notes,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(notes).unwrap(),
            "Control protocol 0 compatibility\numl_switch will be a hub instead of a switch\n"
        );
        assert_eq!(u.ctl, PathBuf::from("c"));
        assert_eq!(u.options.v0_data, Some(PathBuf::from("d")));
        assert!(u.options.hub && !u.daemon);
        assert!(u.options.uml_ctl.unwrap().is_absolute());
        let mut notes = Vec::new();
        let u = uml_switch(&args(&["-daemon"]), &mut notes).unwrap();
        assert_eq!(u.ctl, PathBuf::from("/tmp/uml.ctl"));
        assert_eq!(u.options.v0_data, None);
        assert!(u.daemon && notes.is_empty());
        assert!(matches!(
            uml_switch(&args(&["-unix"]), &mut notes),
            Err(Error::UmlSwitchUsage)
        ));
        assert!(matches!(
            uml_switch(&args(&["-tap", "tap0"]), &mut notes),
            Err(Error::TapUnsupported)
        ));
        assert!(matches!(
            uml_switch(&args(&["-bogus"]), &mut notes),
            Err(Error::UmlSwitchUsage)
        ));
    }
}
