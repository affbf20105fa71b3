//! `lab status`: the machines, the switches and the link emulation the
//! running switches apply, gathered once; its JSON document; and what does
//! not work as started (the problems that make the exit status 1).

use crate::error::Result;
use crate::plan::Plan;
use crate::runner::{GuestBackend, MachineStatus, SwitchStatus};

/// A lab as `status` shows it.
#[derive(Debug, Clone)]
pub struct LabStatus {
    pub machines: Vec<MachineStatus>,
    pub switches: Vec<SwitchStatus>,
    /// Per switch of the plan (same order): the impairments its running
    /// switch applies now, summarised (see [`live_links`]).
    pub links: Vec<Option<String>>,
    /// Per switch of the plan: per port, the impairments applied now
    /// (empty when the switch is not running or applies none).
    pub port_links: Vec<std::collections::BTreeMap<u32, Vec<String>>>,
    /// The lab's captures.
    pub captures: Vec<crate::links::CaptureStatus>,
}

/// Something that does not work as started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The switch of this domain is dead.
    DeadSwitch(String),
    /// The machine is dead.
    Dead(String),
    /// Its boot steps never finished (the lab start was killed).
    Interrupted(String),
    /// Its boot steps failed.
    Failed(String),
    /// The machine lost its link to these domains (their switch died).
    LostLinks(String, Vec<String>),
    /// The capture ended early; its log file says why.
    DeadCapture(String, std::path::PathBuf),
}

/// Gather the status of `plan`'s lab.
pub fn gather(backend: &GuestBackend, plan: &Plan) -> Result<LabStatus> {
    gather_with(backend, plan, &mut |m, _pid| {
        crate::runner::ask_addresses(backend, m)
    })
}

/// [`gather`] with the machines' addresses from `addrs` (see
/// [`crate::runner::status_with`]).
pub fn gather_with(
    backend: &GuestBackend,
    plan: &Plan,
    addrs: &mut dyn FnMut(&crate::plan::MachinePlan, u32) -> Option<String>,
) -> Result<LabStatus> {
    let machines = crate::runner::status_with(backend, plan, addrs)?;
    let switches = crate::runner::switch_status(plan)?;
    let running_mgmt = |s: &crate::plan::SwitchPlan| {
        let running = switches
            .iter()
            .any(|x| x.domain == s.domain && x.state == "running");
        s.mgmt.clone().filter(|_| running)
    };
    let links = plan
        .switches
        .iter()
        .map(|s| running_mgmt(s).as_deref().and_then(live_links))
        .collect();
    let port_links = plan
        .switches
        .iter()
        .map(|s| {
            running_mgmt(s)
                .as_deref()
                .map(live_port_links)
                .unwrap_or_default()
        })
        .collect();
    let captures = crate::links::capture_status(plan)?;
    Ok(LabStatus {
        machines,
        switches,
        links,
        port_links,
        captures,
    })
}

impl LabStatus {
    /// The state of the switch of `domain`: `running`, `dead` or `stopped`.
    pub fn switch_state(&self, domain: &str) -> &str {
        self.switches
            .iter()
            .find(|x| x.domain == domain)
            .map(|x| x.state.as_str())
            .unwrap_or("stopped")
    }

    /// The link settings on interface `i` of `machine`: as its running
    /// switch applies them, or as planned when the switch does not run.
    pub fn iface_link(
        &self,
        plan: &Plan,
        machine: &str,
        i: &crate::plan::IfacePlan,
    ) -> Option<String> {
        let ports = self.port_links.get(i.switch)?;
        match ports.get(&i.port).filter(|_| i.port > 0) {
            Some(v) => Some(v.join(", ")),
            None if ports.is_empty() => crate::links::planned_iface_link(plan, machine, &i.name),
            None => None,
        }
    }

    /// The `lab status --json` document.
    pub fn json(&self, plan: &Plan) -> serde_json::Value {
        serde_json::json!({
            "lab": plan.name, "dir": plan.lab_dir, "dialect": plan.dialect.to_string(),
            "state_dir": plan.state_dir,
            "links": plan.machines.iter().flat_map(|m| m.interfaces.iter().map(|i| {
                serde_json::json!({"machine": m.name, "interface": i.name,
                    "domain": i.domain, "port": (i.port > 0).then_some(i.port),
                    "planned": crate::links::planned_iface_link(plan, &m.name, &i.name),
                    "link": self.iface_link(plan, &m.name, i)})
            }).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "captures": self.captures,
            "domains": plan.switches.iter().zip(&self.links).map(|(s, link)| {
                let live = self.switches.iter().find(|x| x.domain == s.domain);
                serde_json::json!({"name": s.domain, "hub": s.hub, "ctl": s.ctl(),
                    "state": live.map(|x| x.state.as_str()).unwrap_or("stopped"),
                    "pid": live.and_then(|x| x.pid), "link": link})
            }).collect::<Vec<_>>(),
            "machines": self.machines,
        })
    }

    /// What does not work as started (empty: all is well).
    pub fn problems(&self) -> Vec<Problem> {
        let mut v = Vec::new();
        for s in self.switches.iter().filter(|s| s.state == "dead") {
            v.push(Problem::DeadSwitch(s.domain.clone()));
        }
        for c in self.captures.iter().filter(|c| c.state == "dead") {
            v.push(Problem::DeadCapture(
                c.name.clone(),
                c.file.with_extension("log"),
            ));
        }
        for m in &self.machines {
            match m.state.as_str() {
                "dead" => v.push(Problem::Dead(m.name.clone())),
                "interrupted" => v.push(Problem::Interrupted(m.name.clone())),
                "failed" => v.push(Problem::Failed(m.name.clone())),
                _ => {}
            }
            if !m.lost_links.is_empty() {
                v.push(Problem::LostLinks(m.name.clone(), m.lost_links.clone()));
            }
        }
        v
    }
}

/// Per port, the impairments a running switch applies (`in delay=20ms`,
/// `out loss=1%`); empty when none or no console answers.
pub fn live_port_links(mgmt: &std::path::Path) -> std::collections::BTreeMap<u32, Vec<String>> {
    let mut m: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let Ok(text) = switchd::client::command(mgmt, "link/show") else {
        return m;
    };
    for l in text.lines().filter(|l| l.starts_with("Port ")) {
        let mut f = l.split_whitespace().skip(1);
        let (Some(port), Some(dir), Some(spec)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (Ok(p), false) = (port.parse::<u32>(), spec == "none") {
            m.entry(p).or_default().push(format!("{dir} {spec}"));
        }
    }
    m
}

/// The impairments a running switch applies, summarised: `out
/// delay=15ms on 32 ports`; None when it has none (or no console answers).
pub fn live_links(mgmt: &std::path::Path) -> Option<String> {
    summarize_links(&switchd::client::command(mgmt, "link/show").ok()?)
}

/// [`live_links`] from the text of the switch console's `link/show`.
pub fn summarize_links(text: &str) -> Option<String> {
    // (direction, settings) -> ports
    let mut groups: Vec<((String, String), u32)> = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("Port ")) {
        let mut f = l.split_whitespace().skip(2);
        let (Some(dir), Some(spec)) = (f.next(), f.next()) else {
            continue;
        };
        if spec == "none" {
            continue;
        }
        let key = (dir.to_string(), spec.to_string());
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1 += 1,
            None => groups.push((key, 1)),
        }
    }
    if groups.is_empty() {
        return None;
    }
    Some(
        groups
            .iter()
            .map(|((d, s), n)| format!("{d} {s} on {n} port{}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::MachineStatus;

    fn m(name: &str, state: &str, lost: &[&str]) -> MachineStatus {
        MachineStatus {
            name: name.into(),
            state: state.into(),
            pid: None,
            mem_mb: 64,
            interfaces: vec![],
            lost_links: lost.iter().map(|s| s.to_string()).collect(),
            startup_errors: None,
            boot_error: None,
        }
    }

    #[test]
    fn links_are_grouped_by_direction_and_settings() {
        let text = "Port 0000 out delay=15ms\nPort 0001 out delay=15ms\nPort 0002 in none\n\
                    Port 0003 in loss=1%\nsomething else\n";
        assert_eq!(
            summarize_links(text).unwrap(),
            "out delay=15ms on 2 ports; in loss=1% on 1 port"
        );
        assert_eq!(summarize_links("Port 0000 out none\n"), None);
    }

    #[test]
    fn problems_name_dead_failed_and_cut_off_machines() {
        let st = LabStatus {
            machines: vec![
                m("a", "running", &[]),
                m("b", "dead", &[]),
                m("c", "interrupted", &[]),
                m("d", "failed", &["A", "B"]),
            ],
            switches: vec![
                SwitchStatus {
                    domain: "A".into(),
                    state: "dead".into(),
                    pid: Some(1),
                },
                SwitchStatus {
                    domain: "B".into(),
                    state: "running".into(),
                    pid: Some(2),
                },
            ],
            links: vec![],
            port_links: vec![],
            captures: vec![crate::links::CaptureStatus {
                name: "lan".into(),
                state: "dead".into(),
                file: "/st/capture/lan.pcapng".into(),
                bytes: 0,
                pid: None,
            }],
        };
        assert_eq!(
            st.problems(),
            vec![
                Problem::DeadSwitch("A".into()),
                Problem::DeadCapture("lan".into(), "/st/capture/lan.log".into()),
                Problem::Dead("b".into()),
                Problem::Interrupted("c".into()),
                Problem::Failed("d".into()),
                Problem::LostLinks("d".into(), vec!["A".into(), "B".into()]),
            ]
        );
        assert_eq!(st.switch_state("B"), "running");
        assert_eq!(st.switch_state("Z"), "stopped");
    }
}
