//! `lab test`: a declarative check file (`lab.test.toml`, in the spirit of
//! kathara-lab-checker) and Netkit's `_test/` signatures. Pure: a check says
//! which command to run on which machine, and judges the output.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// The check file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    #[serde(default)]
    pub address: Vec<AddressCheck>,
    #[serde(default)]
    pub route: Vec<RouteCheck>,
    #[serde(default)]
    pub reach: Vec<ReachCheck>,
    #[serde(default)]
    pub command: Vec<CommandCheck>,
}

/// An interface has an address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressCheck {
    pub machine: String,
    pub interface: String,
    /// `10.0.0.1/24`
    pub address: String,
}

/// A route exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    pub machine: String,
    /// `default` or `10.0.2.0/24`
    pub destination: String,
    #[serde(default)]
    pub via: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
}

/// `from` can (or, with `expect = false`, cannot) ping `to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReachCheck {
    pub from: String,
    pub to: String,
    #[serde(default = "yes")]
    pub expect: bool,
}

fn yes() -> bool {
    true
}

/// A command's exit status and output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    pub machine: String,
    pub run: String,
    #[serde(default)]
    pub exit: Option<i32>,
    /// Whole stdout, compared after trimming.
    #[serde(default)]
    pub stdout: Option<String>,
    /// A substring stdout must contain.
    #[serde(default)]
    pub contains: Option<String>,
}

/// One concrete check: run `command` on `machine`, judge with `judge`.
#[derive(Debug, Clone)]
pub struct Check {
    pub machine: String,
    pub title: String,
    pub command: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Address(String),
    Route {
        dest: String,
        via: Option<String>,
        dev: Option<String>,
    },
    Reach(bool),
    Command {
        exit: Option<i32>,
        stdout: Option<String>,
        contains: Option<String>,
    },
}

impl CheckFile {
    pub fn from_toml(text: &str, file: &std::path::Path) -> Result<CheckFile> {
        toml::from_str(text).map_err(|e| LabError::Toml {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// All checks, in file order per kind.
    pub fn checks(&self) -> Vec<Check> {
        let mut v = Vec::new();
        for a in &self.address {
            v.push(Check {
                machine: a.machine.clone(),
                title: format!("address {} on {}", a.address, a.interface),
                command: format!("ip -o addr show dev {}", crate::script::shq(&a.interface)),
                kind: Kind::Address(a.address.clone()),
            });
        }
        for r in &self.route {
            let mut title = format!("route {}", r.destination);
            if let Some(v) = &r.via {
                title.push_str(&format!(" via {v}"));
            }
            if let Some(d) = &r.device {
                title.push_str(&format!(" dev {d}"));
            }
            v.push(Check {
                machine: r.machine.clone(),
                title,
                command: "ip route show".into(),
                kind: Kind::Route {
                    dest: r.destination.clone(),
                    via: r.via.clone(),
                    dev: r.device.clone(),
                },
            });
        }
        for r in &self.reach {
            v.push(Check {
                machine: r.from.clone(),
                title: format!(
                    "{} {}",
                    if r.expect {
                        "reaches"
                    } else {
                        "does not reach"
                    },
                    r.to
                ),
                command: format!("ping -c 3 -i 0.3 -W 1 -w 5 {}", crate::script::shq(&r.to)),
                kind: Kind::Reach(r.expect),
            });
        }
        for c in &self.command {
            v.push(Check {
                machine: c.machine.clone(),
                title: format!("`{}`", c.run),
                command: c.run.clone(),
                kind: Kind::Command {
                    exit: c.exit,
                    stdout: c.stdout.clone(),
                    contains: c.contains.clone(),
                },
            });
        }
        v
    }
}

impl Check {
    /// Judge the command's result: Ok(()) or Err(why it failed).
    pub fn judge(&self, code: i32, stdout: &str) -> std::result::Result<(), String> {
        match &self.kind {
            Kind::Address(a) => {
                let fam = if a.contains(':') { "inet6" } else { "inet" };
                let want = format!("{fam} {a}");
                if stdout
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| format!("{} {}", w[0], w[1]) == want)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "not configured; interface has: {}",
                        summarize_addrs(stdout)
                    ))
                }
            }
            Kind::Route { dest, via, dev } => {
                let found = stdout.lines().any(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    let d_ok = w.first().is_some_and(|d| {
                        d == dest
                            || (dest.contains('/') && *d == dest.as_str())
                            || (!dest.contains('/') && dest != "default" && *d == dest.as_str())
                    });
                    let via_ok = via
                        .as_ref()
                        .is_none_or(|v| w.windows(2).any(|p| p[0] == "via" && p[1] == v));
                    let dev_ok = dev
                        .as_ref()
                        .is_none_or(|v| w.windows(2).any(|p| p[0] == "dev" && p[1] == v));
                    d_ok && via_ok && dev_ok
                });
                if found {
                    Ok(())
                } else {
                    Err(format!(
                        "no such route; table: {}",
                        stdout.lines().collect::<Vec<_>>().join("; ")
                    ))
                }
            }
            Kind::Reach(expect) => match (*expect, code == 0) {
                (true, true) | (false, false) => Ok(()),
                (true, false) => Err("no reply".into()),
                (false, true) => Err("got replies but expected none".into()),
            },
            Kind::Command {
                exit,
                stdout: want,
                contains,
            } => {
                if let Some(e) = exit {
                    if *e != code {
                        return Err(format!("exit status {code}, expected {e}"));
                    }
                }
                if let Some(w) = want {
                    if stdout.trim() != w.trim() {
                        return Err(format!(
                            "output {:?}, expected {:?}",
                            stdout.trim(),
                            w.trim()
                        ));
                    }
                }
                if let Some(c) = contains {
                    if !stdout.contains(c.as_str()) {
                        return Err(format!("output does not contain {c:?}"));
                    }
                }
                Ok(())
            }
        }
    }
}

fn summarize_addrs(out: &str) -> String {
    let w: Vec<&str> = out.split_whitespace().collect();
    let v: Vec<String> = w
        .windows(2)
        .filter(|p| p[0] == "inet" || p[0] == "inet6")
        .map(|p| p[1].to_string())
        .collect();
    if v.is_empty() {
        "no address".into()
    } else {
        v.join(", ")
    }
}

/// Netkit `_test/` default test: what the machine's network state looks like,
/// in a stable form (addresses, routes, listening sockets).
pub const NETKIT_DEFAULT_TEST: &str = "ip -o addr show | awk '{print $2, $3, $4}' | sort; echo '--'; ip route show | sort; echo '--'; netstat -ltun 2>/dev/null | awk 'NR>2 {print $1, $4}' | sort";

/// Compare a result with a signature: Ok or the first differing line.
pub fn compare_signature(result: &str, signature: &str) -> std::result::Result<(), String> {
    let a: Vec<&str> = result.lines().map(str::trim_end).collect();
    let b: Vec<&str> = signature.lines().map(str::trim_end).collect();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            return Err(format!(
                "line {}: got {:?}, signature has {:?}",
                i + 1,
                x.copied().unwrap_or("<end>"),
                y.copied().unwrap_or("<end>")
            ));
        }
    }
    Ok(())
}
