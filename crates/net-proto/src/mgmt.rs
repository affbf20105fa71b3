//! The vde_switch management console protocol: command lines in, typed
//! commands out; reply framing.
//!
//! One `read()` is one command; one trailing `\n` is stripped; leading
//! spaces/tabs are skipped; an empty line or a `#` comment yields only the
//! prompt. A command is found by prefix: the first registered path that the
//! line starts with; its arguments follow after spaces.
//!
//! Replies:
//! ```text
//! 0000 DATA END WITH '.'\n <lines> .\n      (commands with output)
//! 1000 Success\n  |  1%03d <strerror>\n     (status)
//! \nvde$                                     (prompt)
//! 9999 END OF SESSION                       (logout/shutdown, then close)
//! ```

use crate::eth::MacAddr;
use crate::link::{LinkDir, LinkSpec};

/// The banner written on connect (before the first prompt).
pub const BANNER: &str =
    "VDE switch V.2.3.2\n(C) Virtual Square Team (coord. R. Davoli) 2005,2006,2007 - GPLv2\n";
/// The prompt.
pub const PROMPT: &str = "\nvde$ ";
/// Header of a data block.
pub const DATA_START: &str = "0000 DATA END WITH '.'\n";
/// End of a data block.
pub const DATA_END: &str = ".\n";
/// Written (without newline) before closing on logout/shutdown.
pub const END_OF_SESSION: &str = "9999 END OF SESSION";
/// Largest command read in one go (vde_switch reads 128 bytes; a full
/// `link/set` line needs more).
pub const MAX_LINE: usize = 1024;

pub const ENOENT: i32 = 2;
pub const ENXIO: i32 = 6;
pub const EBUSY: i32 = 16;
pub const ENODEV: i32 = 19;
pub const EEXIST: i32 = 17;
pub const EINVAL: i32 = 22;
pub const ENOSYS: i32 = 38;
pub const EADDRINUSE: i32 = 98;

/// `strerror` text of the errno values the console uses (glibc wording).
pub fn strerror(errno: i32) -> &'static str {
    match errno {
        0 => "Success",
        1 => "Operation not permitted",
        ENOENT => "No such file or directory",
        ENXIO => "No such device or address",
        12 => "Cannot allocate memory",
        EBUSY => "Device or resource busy",
        ENODEV => "No such device",
        EEXIST => "File exists",
        EINVAL => "Invalid argument",
        ENOSYS => "Function not implemented",
        EADDRINUSE => "Address already in use",
        _ => "Unknown error",
    }
}

/// The status line: `1000 Success\n` or `1%03d <strerror>\n`.
pub fn status_line(errno: i32) -> String {
    format!("1{:03} {}\n", errno, strerror(errno))
}

/// A whole reply: data block (if `data` is Some), status, prompt.
pub fn reply(data: Option<&str>, errno: i32) -> String {
    let mut s = String::new();
    if let Some(d) = data {
        s.push_str(DATA_START);
        s.push_str(d);
        s.push_str(DATA_END);
    }
    s.push_str(&status_line(errno));
    s.push_str(PROMPT);
    s
}

/// A management command with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtCommand {
    /// Empty line or comment: only the prompt.
    Nothing,
    Help(Option<String>),
    ShowInfo,
    Logout,
    Shutdown,
    DsShowInfo,
    PortShowInfo,
    PortPrint {
        port: Option<u32>,
        all: bool,
    },
    PortSetNumPorts(u32),
    PortSetHub(bool),
    PortSetVlan {
        port: u32,
        vlan: u16,
    },
    PortCreateAuto,
    PortCreate(u32),
    PortRemove(u32),
    PortResetCounter(Option<u32>),
    /// umlkit extension: all counters including drops.
    PortStats(Option<u32>),
    PortEpClose {
        port: u32,
        id: u32,
    },
    HashShowInfo,
    HashPrint,
    HashFind {
        mac: MacAddr,
        vlan: u16,
    },
    HashDelete {
        mac: MacAddr,
        vlan: Option<u16>,
    },
    VlanCreate(u16),
    VlanRemove(u16),
    VlanAddPort {
        vlan: u16,
        port: u32,
    },
    VlanDelPort {
        vlan: u16,
        port: u32,
    },
    VlanPrint {
        vlan: Option<u16>,
        all: bool,
    },
    /// umlkit extension: `link/set PORT [in|out|both] SPEC`, the impairments
    /// of a port's link (see [`crate::link`]); both directions by default.
    LinkSet {
        port: u32,
        dir: LinkDir,
        spec: LinkSpec,
    },
    /// umlkit extension: `link/show [PORT]`.
    LinkShow(Option<u32>),
    /// umlkit extension: `link/clear PORT [in|out|both]`: back to the
    /// neutral link (frames held still leave).
    LinkClear {
        port: u32,
        dir: LinkDir,
    },
    /// umlkit extension: `capture/start [port=N] [vlan=V]`: the connection
    /// becomes a capture stream ([`crate::capture`]) after the status line.
    CaptureStart {
        port: Option<u32>,
        vlan: Option<u16>,
    },
}

/// One entry of the command table: path, syntax, help (as `help` prints them).
pub struct CommandInfo {
    pub path: &'static str,
    pub syntax: &'static str,
    pub help: &'static str,
}

const fn ci(path: &'static str, syntax: &'static str, help: &'static str) -> CommandInfo {
    CommandInfo { path, syntax, help }
}

/// The registered commands, in vde_switch's order (menu headers have
/// syntax `============`).
pub const COMMANDS: &[CommandInfo] = &[
    ci("ds", "============", "DATA SOCKET MENU"),
    ci("ds/showinfo", "", "show ds info"),
    ci("help", "[arg]", "Help (limited to arg when specified)"),
    ci("logout", "", "logout from this mgmt terminal"),
    ci("shutdown", "", "shutdown of the switch"),
    ci("showinfo", "", "show switch version and info"),
    ci("hash", "============", "HASH TABLE MENU"),
    ci("hash/showinfo", "", "show hash info"),
    ci("hash/print", "", "print the hash table"),
    ci("hash/find", "MAC [VLAN]", "MAC lookup"),
    ci("hash/delete", "MAC [VLAN]", "delete a MAC entry"),
    ci("port", "============", "PORT STATUS MENU"),
    ci("port/showinfo", "", "show port info"),
    ci("port/setnumports", "N", "set the number of ports"),
    ci("port/sethub", "0/1", "1=HUB 0=switch"),
    ci("port/setvlan", "N VLAN", "set port VLAN (untagged)"),
    ci(
        "port/createauto",
        "",
        "create a port with an automatically allocated id (inactive|notallocatable)",
    ),
    ci(
        "port/create",
        "N",
        "create the port N (inactive|notallocatable)",
    ),
    ci("port/remove", "N", "remove the port N"),
    ci("port/epclose", "N ID", "remove the endpoint port N/id ID"),
    ci("port/resetcounter", "[N]", "reset the port (N) counters"),
    ci("port/print", "[N]", "print the port/endpoint table"),
    ci(
        "port/stats",
        "[N]",
        "print the port counters including drops",
    ),
    ci(
        "port/allprint",
        "[N]",
        "print the port/endpoint table (including inactive port)",
    ),
    ci("vlan", "============", "VLAN MANAGEMENT MENU"),
    ci("vlan/create", "N", "create the VLAN with tag N"),
    ci("vlan/remove", "N", "remove the VLAN with tag N"),
    ci("vlan/addport", "N PORT", "add port to the vlan N (tagged)"),
    ci("vlan/delport", "N PORT", "add port to the vlan N (tagged)"),
    ci("vlan/print", "[N]", "print the list of defined vlan"),
    ci(
        "vlan/allprint",
        "[N]",
        "print the list of defined vlan (including inactive port)",
    ),
];

/// Link emulation commands (umlkit extension), listed by [`help_text`]
/// after vde_switch's own.
pub const LINK_COMMANDS: &[CommandInfo] = &[
    ci("link", "============", "LINK EMULATION MENU"),
    ci(
        "link/set",
        "N [in|out] SPEC",
        "set the impairments of port N (delay=20ms,loss=1%,...)",
    ),
    ci("link/show", "[N]", "show link impairments and counters"),
    ci(
        "link/clear",
        "N [in|out]",
        "remove the impairments of port N",
    ),
    ci("capture", "============", "CAPTURE MENU"),
    ci(
        "capture/start",
        "[port=N] [vlan=V]",
        "turn this connection into a capture stream",
    ),
];

/// `[in|out|both] SPEC...` of the link commands.
fn link_args<'a>(args: &mut impl Iterator<Item = &'a str>) -> (LinkDir, Vec<&'a str>) {
    let mut rest: Vec<&str> = args.collect();
    let dir = match rest.first().and_then(|a| LinkDir::parse(a)) {
        Some(d) => {
            rest.remove(0);
            d
        }
        None => LinkDir::Both,
    };
    (dir, rest)
}

/// The `help [prefix]` text (data block content).
pub fn help_text(prefix: Option<&str>) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<18} {:<15} {}\n",
        "COMMAND PATH", "SYNTAX", "HELP"
    ));
    s.push_str(&format!(
        "{:<18} {:<15} {}\n",
        "------------", "--------------", "------------"
    ));
    for c in COMMANDS.iter().chain(LINK_COMMANDS) {
        if let Some(p) = prefix {
            if !c.path.starts_with(p) {
                continue;
            }
        }
        s.push_str(&format!("{:<18} {:<15} {}\n", c.path, c.syntax, c.help));
    }
    s
}

/// Strip one trailing newline and leading blanks, as vde_switch does.
fn clean(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.trim_start_matches([' ', '\t'])
}

fn num<T: std::str::FromStr>(s: Option<&str>) -> Result<T, i32> {
    s.and_then(|s| s.parse().ok()).ok_or(EINVAL)
}

/// vde_switch reads numbers with atoi: leading digits, else 0.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

fn opt_num(s: Option<&str>) -> Result<Option<u32>, i32> {
    match s {
        None => Ok(None),
        Some(a) => {
            let v = atoi(a);
            u32::try_from(v).map(Some).map_err(|_| EINVAL)
        }
    }
}

/// Parse one command line. `Err(errno)` for an unknown command (ENOSYS) or
/// bad arguments (EINVAL).
pub fn parse(line: &str) -> Result<MgmtCommand, i32> {
    use MgmtCommand as C;
    let line = clean(line);
    if line.is_empty() || line.starts_with('#') {
        return Ok(C::Nothing);
    }
    let Some(info) = COMMANDS
        .iter()
        .chain(LINK_COMMANDS)
        .filter(|c| c.syntax != "============")
        .find(|c| line.starts_with(c.path))
    else {
        return Err(ENOSYS);
    };
    let rest = line[info.path.len()..].trim_matches([' ', '\t']);
    let mut args = rest.split_whitespace();
    let a1 = args.next();
    let a2 = args.next();
    let port_arg = |a: Option<&str>| -> Result<u32, i32> {
        u32::try_from(atoi(a.ok_or(EINVAL)?)).map_err(|_| EINVAL)
    };
    let vlan_arg = |a: Option<&str>| -> Result<u16, i32> {
        u16::try_from(atoi(a.ok_or(EINVAL)?)).map_err(|_| EINVAL)
    };
    Ok(match info.path {
        "help" => C::Help(if rest.is_empty() {
            None
        } else {
            Some(rest.to_string())
        }),
        "showinfo" => C::ShowInfo,
        "logout" => C::Logout,
        "shutdown" => C::Shutdown,
        "ds/showinfo" => C::DsShowInfo,
        "port/showinfo" => C::PortShowInfo,
        "port/print" => C::PortPrint {
            port: opt_num(a1)?,
            all: false,
        },
        "port/allprint" => C::PortPrint {
            port: opt_num(a1)?,
            all: true,
        },
        "port/setnumports" => C::PortSetNumPorts(port_arg(a1)?),
        "port/sethub" => C::PortSetHub(atoi(a1.ok_or(EINVAL)?) != 0),
        "port/setvlan" => C::PortSetVlan {
            port: port_arg(a1)?,
            vlan: vlan_arg(a2)?,
        },
        "port/createauto" => C::PortCreateAuto,
        "port/create" => C::PortCreate(port_arg(a1)?),
        "port/remove" => C::PortRemove(port_arg(a1)?),
        "port/epclose" => C::PortEpClose {
            port: port_arg(a1)?,
            id: port_arg(a2)?,
        },
        "port/resetcounter" => C::PortResetCounter(opt_num(a1)?),
        "port/stats" => C::PortStats(opt_num(a1)?),
        "hash/showinfo" => C::HashShowInfo,
        "hash/print" => C::HashPrint,
        "hash/find" => C::HashFind {
            mac: a1.and_then(MacAddr::parse).ok_or(EINVAL)?,
            vlan: match a2 {
                Some(v) => vlan_arg(Some(v))?,
                None => 0,
            },
        },
        "hash/delete" => C::HashDelete {
            mac: a1.and_then(MacAddr::parse).ok_or(EINVAL)?,
            vlan: match a2 {
                Some(_) => Some(num::<u16>(a2)?),
                None => None,
            },
        },
        "vlan/create" => C::VlanCreate(vlan_arg(a1)?),
        "vlan/remove" => C::VlanRemove(vlan_arg(a1)?),
        "vlan/addport" => C::VlanAddPort {
            vlan: vlan_arg(a1)?,
            port: port_arg(a2)?,
        },
        "vlan/delport" => C::VlanDelPort {
            vlan: vlan_arg(a1)?,
            port: port_arg(a2)?,
        },
        "vlan/print" => C::VlanPrint {
            vlan: opt_num(a1)?.map(|v| v.min(u16::MAX as u32) as u16),
            all: false,
        },
        "vlan/allprint" => C::VlanPrint {
            vlan: opt_num(a1)?.map(|v| v.min(u16::MAX as u32) as u16),
            all: true,
        },
        "link/set" => {
            let port = strict_port(a1)?;
            let mut rest = std::iter::once(a2).flatten().chain(args);
            let (dir, spec) = link_args(&mut rest);
            if spec.is_empty() {
                return Err(EINVAL);
            }
            C::LinkSet {
                port,
                dir,
                spec: LinkSpec::parse(&spec.join(",")).map_err(|_| EINVAL)?,
            }
        }
        "link/show" => C::LinkShow(match a1 {
            Some(a) => Some(strict_port(Some(a))?),
            None => None,
        }),
        "link/clear" => {
            let port = strict_port(a1)?;
            let mut rest = std::iter::once(a2).flatten().chain(args);
            let (dir, extra) = link_args(&mut rest);
            if !extra.is_empty() {
                return Err(EINVAL);
            }
            C::LinkClear { port, dir }
        }
        "capture/start" => {
            let (mut port, mut vlan) = (None, None);
            for a in std::iter::once(a1)
                .chain(std::iter::once(a2))
                .flatten()
                .chain(args)
            {
                match a.split_once('=') {
                    Some(("port", v)) if port.is_none() => port = Some(strict_port(Some(v))?),
                    Some(("vlan", v)) if vlan.is_none() => {
                        let v: u16 = strict_port(Some(v))?.try_into().map_err(|_| EINVAL)?;
                        if v > 4095 {
                            return Err(EINVAL);
                        }
                        vlan = Some(v);
                    }
                    _ => return Err(EINVAL),
                }
            }
            C::CaptureStart { port, vlan }
        }
        _ => return Err(ENOSYS),
    })
}

/// A port number, digits only (the link commands are not atoi-lenient).
fn strict_port(a: Option<&str>) -> Result<u32, i32> {
    let a = a.ok_or(EINVAL)?;
    if !a.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EINVAL);
    }
    a.parse().map_err(|_| EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn framing_verified() {
        assert_eq!(reply(None, 0), "1000 Success\n\nvde$ ");
        assert_eq!(status_line(38), "1038 Function not implemented\n");
        assert_eq!(status_line(22), "1022 Invalid argument\n");
        assert_eq!(status_line(6), "1006 No such device or address\n");
        assert_eq!(status_line(17), "1017 File exists\n");
        assert_eq!(status_line(98), "1098 Address already in use\n");
        assert_eq!(
            reply(Some("Numports=32\n"), 0),
            "0000 DATA END WITH '.'\nNumports=32\n.\n1000 Success\n\nvde$ "
        );
    }

    #[test]
    fn parse_lines() {
        use MgmtCommand as C;
        assert_eq!(parse("\n"), Ok(C::Nothing));
        assert_eq!(parse("# comment\n"), Ok(C::Nothing));
        assert_eq!(parse("  showinfo\n"), Ok(C::ShowInfo));
        assert_eq!(parse("bogus\n"), Err(ENOSYS));
        assert_eq!(
            parse("port/print\n"),
            Ok(C::PortPrint {
                port: None,
                all: false
            })
        );
        assert_eq!(
            parse("port/allprint 3\n"),
            Ok(C::PortPrint {
                port: Some(3),
                all: true
            })
        );
        assert_eq!(
            parse("port/setvlan 12 10"),
            Ok(C::PortSetVlan { port: 12, vlan: 10 })
        );
        assert_eq!(parse("port/setvlan 12"), Err(EINVAL));
        assert_eq!(
            parse("vlan/addport 10 13\n"),
            Ok(C::VlanAddPort { vlan: 10, port: 13 })
        );
        assert_eq!(parse("port/sethub 1"), Ok(C::PortSetHub(true)));
        assert_eq!(parse("help port/set"), Ok(C::Help(Some("port/set".into()))));
        assert_eq!(
            parse("hash/delete 02:00:00:00:00:01"),
            Ok(C::HashDelete {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                vlan: None
            })
        );
        assert_eq!(parse("hash/delete nonsense"), Err(EINVAL));
        // several lines in one read: only the first command counts
        assert_eq!(parse("showinfo\nport/showinfo\n"), Ok(C::ShowInfo));
    }

    #[test]
    fn help_format() {
        let h = help_text(Some("port/set"));
        let mut lines = h.lines();
        assert_eq!(
            lines.next(),
            Some("COMMAND PATH       SYNTAX          HELP")
        );
        assert_eq!(
            lines.next(),
            Some("------------       --------------  ------------")
        );
        assert_eq!(
            lines.next(),
            Some("port/setnumports   N               set the number of ports")
        );
    }

    #[test]
    fn parse_link_commands() {
        use MgmtCommand as C;
        assert_eq!(
            parse("link/set 3 delay=20ms,loss=1%\n"),
            Ok(C::LinkSet {
                port: 3,
                dir: LinkDir::Both,
                spec: LinkSpec::parse("delay=20ms,loss=1%").unwrap()
            })
        );
        assert_eq!(
            parse("link/set 3 out delay=20ms loss=1%"),
            Ok(C::LinkSet {
                port: 3,
                dir: LinkDir::Out,
                spec: LinkSpec::parse("delay=20ms,loss=1%").unwrap()
            })
        );
        assert_eq!(
            parse("link/set 4 in none"),
            Ok(C::LinkSet {
                port: 4,
                dir: LinkDir::In,
                spec: LinkSpec::none()
            })
        );
        assert_eq!(parse("link/set 3"), Err(EINVAL));
        assert_eq!(parse("link/set 3 in"), Err(EINVAL));
        assert_eq!(parse("link/set 3x delay=1ms"), Err(EINVAL));
        assert_eq!(parse("link/set 3 delay=20"), Err(EINVAL));
        assert_eq!(parse("link/show"), Ok(C::LinkShow(None)));
        assert_eq!(parse("link/show 7"), Ok(C::LinkShow(Some(7))));
        assert_eq!(parse("link/show -1"), Err(EINVAL));
        assert_eq!(
            parse("link/clear 2"),
            Ok(C::LinkClear {
                port: 2,
                dir: LinkDir::Both
            })
        );
        assert_eq!(
            parse("link/clear 2 out"),
            Ok(C::LinkClear {
                port: 2,
                dir: LinkDir::Out
            })
        );
        assert_eq!(parse("link/clear 2 sideways"), Err(EINVAL));
        assert_eq!(parse("link/bogus"), Err(ENOSYS));
        assert_eq!(
            parse("capture/start"),
            Ok(C::CaptureStart {
                port: None,
                vlan: None
            })
        );
        assert_eq!(
            parse("capture/start vlan=10 port=3"),
            Ok(C::CaptureStart {
                port: Some(3),
                vlan: Some(10)
            })
        );
        assert_eq!(parse("capture/start vlan=4096"), Err(EINVAL));
        assert_eq!(parse("capture/start port=1 port=2"), Err(EINVAL));
        assert_eq!(parse("capture/start 3"), Err(EINVAL));
        assert!(help_text(None).contains("link/set"));
        assert!(!help_text(Some("port")).contains("link/"));
    }

    proptest! {
        #[test]
        fn link_set_round_trips(port in 0u32..1000, loss in 0u32..=100, delay in 0u64..5000) {
            let spec = LinkSpec::parse(&format!("loss={loss}%,delay={delay}us")).unwrap();
            let line = format!("link/set {port} out {spec}");
            prop_assert_eq!(parse(&line), Ok(MgmtCommand::LinkSet { port, dir: LinkDir::Out, spec }));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,128}") {
            let _ = parse(&s);
        }
    }
}
