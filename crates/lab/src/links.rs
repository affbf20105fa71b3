//! Links and captures declared in lab files: the per-interface link settings
//! a domain's switch gets at start, and the captures (`capture = true`) that
//! run from `lab start` to `lab stop` as `umlkit capture` processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net_proto::link::LinkSpec;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::plan::{CapturePlan, Plan};
use crate::runner::{ProcEntry, ProcRef, State};

/// `(port, settings)` of the interfaces on `domain` that have their own
/// `link` (for the frames they send: the port's `in` direction).
pub fn iface_links(plan: &Plan, domain: &str) -> Vec<(u32, LinkSpec)> {
    plan.machines
        .iter()
        .flat_map(|m| &m.interfaces)
        .filter(|i| i.domain == domain && i.port > 0)
        .filter_map(|i| Some((i.port, i.link.as_ref()?.spec().ok()?)))
        .collect()
}

/// A port of `domain` for an interface added at run time (`lab connect`):
/// the first one above the planned ports that no other added interface of
/// the domain asked for.
pub fn free_extra_port(plan: &Plan, state: &State, domain: &str) -> u32 {
    let planned = plan
        .machines
        .iter()
        .flat_map(|m| &m.interfaces)
        .filter(|i| i.domain == domain)
        .map(|i| i.port)
        .max()
        .unwrap_or(0);
    let used: Vec<u32> = state
        .extra_ifaces
        .iter()
        .filter(|x| x.domain == domain)
        .map(|x| x.port)
        .collect();
    (planned + 1..)
        .find(|p| !used.contains(p))
        .expect("a free port")
}

/// The switch settings a plan gives one interface, as the switch writes
/// them (`in delay=20ms`; `out ...` from the domain), or None.
pub fn planned_iface_link(plan: &Plan, machine: &str, ifname: &str) -> Option<String> {
    let m = plan.machine(machine)?;
    let i = m.interfaces.iter().find(|i| i.name == ifname)?;
    let mut parts = Vec::new();
    if let Some(s) = i.link.as_ref().and_then(|l| l.spec().ok()) {
        parts.push(format!("in {s}"));
    }
    let sw = &plan.switches[i.switch];
    if let Some(s) = sw.link.as_ref().and_then(|l| l.spec().ok()) {
        parts.push(format!("out {s}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Start the plan's captures on the switches `switches` (indexes) that have
/// none running, with `umlkit` (the binary whose `switch` runs the lab's
/// switches; None: another switch program, which cannot stream a capture,
/// so each capture is reported as not started). Each is recorded in the state before `lab start` goes on, and
/// streams (it says `ready`) before machines boot.
pub fn start_captures(
    plan: &Plan,
    umlkit: Option<&Path>,
    switches: &[usize],
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let wanted: Vec<&CapturePlan> = plan
        .captures
        .iter()
        .filter(|c| switches.contains(&c.switch))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(umlkit) = umlkit else {
        for c in wanted {
            progress(&format!(
                "capture {}: not started (the lab's switch is not umlkit switch; see UMLKIT_LAB_SWITCH)",
                c.name
            ));
        }
        return Ok(());
    };
    let dir = plan.state_dir.join("capture");
    umlkit_sys::private::private_dir(&dir, true)
        .map_err(|e| LabError::Run(format!("cannot make {}: {e}", dir.display())))?;
    let state = State::load(plan)?;
    for c in wanted {
        if state.captures.iter().any(|e| e.name == c.name && e.alive()) {
            continue;
        }
        let Some(mgmt) = plan.switches[c.switch].mgmt.as_ref() else {
            continue;
        };
        let log = c.file.with_extension("log");
        let logf = umlkit_sys::file::create_nofollow(&log, 0o600)
            .map_err(|e| LabError::Run(format!("cannot create {}: {e}", log.display())))?;
        let mut cmd = Command::new(umlkit);
        cmd.arg("capture").arg(mgmt).arg("-w").arg(&c.file);
        if let Some(p) = c.port {
            cmd.arg("--port").arg(p.to_string());
        }
        for (p, n) in plan.port_names(c.switch) {
            cmd.arg("--name").arg(format!("{p}={n}"));
        }
        cmd.arg("--notify-ready")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf));
        // its own session: the terminal's Ctrl-C after `lab start` is not
        // for it; `lab stop` ends it
        umlkit_sys::process::setsid_on_spawn(&mut cmd, false);
        let mut child = cmd
            .spawn()
            .map_err(|e| LabError::Run(format!("cannot run {}: {e}", umlkit.display())))?;
        let pid = child.id();
        // it says `ready` once the switch streams to it (EOF: it ended)
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            let _ = tx.send(line);
        });
        // reaped by init once `lab start` exits; not waited for here
        drop(child);
        let e = ProcEntry {
            name: c.name.clone(),
            pid: Some(pid),
            start: umlkit_sys::process::start_time(pid),
            ..Default::default()
        };
        State::update(plan, |s| {
            s.captures.retain(|x| x.name != e.name);
            s.captures.push(e.clone());
        })?;
        let ready = rx.recv_timeout(Duration::from_secs(10));
        if ready.as_deref().map(str::trim) != Ok("ready") {
            if e.alive() {
                let _ = umlkit_sys::process::ProcessId {
                    pid,
                    start: e.start,
                }
                .signal(umlkit_sys::process::SIGKILL);
            }
            // the capture's own error (after its exit) names the problem
            let deadline = Instant::now() + Duration::from_secs(2);
            while e.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let why = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(LabError::Run(format!(
                "capture {} did not start: {}",
                c.name,
                if why.trim().is_empty() {
                    "no answer from the switch in 10 s"
                } else {
                    why.trim()
                }
            )));
        }
        progress(&format!("capture {} -> {}", c.name, c.file.display()));
    }
    Ok(())
}

/// End the lab's captures (SIGTERM: each writes its statistics and closes
/// its file), waiting up to 5 s, then SIGKILL what is left.
pub fn stop_captures(state: &mut State) {
    use umlkit_sys::process::{ProcessId, SIGKILL, SIGTERM};
    let refs: Vec<ProcRef> = state
        .captures
        .iter()
        .filter_map(ProcEntry::proc_ref)
        .collect();
    let id = |r: &ProcRef| ProcessId {
        pid: r.pid,
        start: r.start,
    };
    for r in &refs {
        let _ = id(r).signal(SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while refs.iter().any(ProcRef::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in refs.iter().filter(|r| r.alive()) {
        let _ = id(r).signal(SIGKILL);
    }
    state.captures.clear();
}

/// One capture of a lab, as `lab status` and `lab capture --list` show it.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureStatus {
    pub name: String,
    /// running, stopped (file kept) or dead (the process died early).
    pub state: String,
    pub file: std::path::PathBuf,
    pub bytes: u64,
    pub pid: Option<u32>,
}

impl std::fmt::Display for CaptureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:<8} {} ({} bytes)",
            self.name,
            self.state,
            self.file.display(),
            self.bytes
        )
    }
}

/// The plan's captures with their process state and file size.
pub fn capture_status(plan: &Plan) -> Result<Vec<CaptureStatus>> {
    let state = State::load(plan)?;
    Ok(plan
        .captures
        .iter()
        .map(|c| {
            let e = state.captures.iter().find(|e| e.name == c.name);
            let st = match e {
                Some(e) if e.alive() => "running",
                Some(_) => "dead",
                None => "stopped",
            };
            CaptureStatus {
                name: c.name.clone(),
                state: st.into(),
                file: c.file.clone(),
                bytes: std::fs::symlink_metadata(&c.file).map_or(0, |m| m.len()),
                pid: e.and_then(|e| e.pid),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::LabFile;
    use crate::plan::plan;

    const LAB: &str = r#"
[machines.r1]
[[machines.r1.interfaces]]
domain = "A"
[[machines.r1.interfaces]]
domain = "../../etc"
capture = true
link = { delay_ms = 20.0, spec = "jitter=2ms,dist=normal" }
[machines.pc]
[[machines.pc.interfaces]]
domain = "A"
link = { loss_percent = 2.0 }
[domains.A]
capture = true
link = { bandwidth_kbit = 10000 }
"#;

    fn lab_plan(text: &str) -> crate::plan::Plan {
        let f = Path::new("/lab/lab.toml");
        plan(
            &LabFile::from_toml(text, f).unwrap(),
            Path::new("/lab"),
            Path::new("/st/x"),
        )
        .unwrap()
    }

    /// Ports are planned 1, 2, ... per domain by machine name then
    /// interface, so they are the same on every start.
    #[test]
    fn lab_plan_gives_each_interface_a_stable_port_per_domain() {
        let p = lab_plan(LAB);
        let port = |m: &str, i: usize| p.machine(m).unwrap().interfaces[i].port;
        assert_eq!((port("pc", 0), port("r1", 0), port("r1", 1)), (1, 2, 1));
        let sw = p.switches.iter().position(|s| s.domain == "A").unwrap();
        assert_eq!(p.port_names(sw).get(&2).unwrap(), "r1:eth0");
        let links = super::iface_links(&p, "A");
        assert_eq!(links.len(), 1);
        assert_eq!((links[0].0, links[0].1.to_string()), (1, "loss=2%".into()));
        assert_eq!(
            super::planned_iface_link(&p, "pc", "eth0").unwrap(),
            "in loss=2%, out rate=10mbit"
        );
        assert_eq!(
            super::planned_iface_link(&p, "r1", "eth1").unwrap(),
            "in delay=20ms,jitter=2ms,dist=normal"
        );
        assert!(p
            .captures
            .iter()
            .any(|c| c.switch == sw && c.port.is_none()));
    }

    /// A domain name is never a path: a capture of `../../etc` stays in
    /// the state dir's capture folder.
    #[test]
    fn lab_capture_file_of_a_hostile_domain_name_stays_in_the_state_dir() {
        let p = lab_plan(LAB);
        assert_eq!(p.captures.len(), 2, "{:?}", p.captures);
        // (r1's eth1 is the only interface capture; A's is the domain's)
        for c in &p.captures {
            assert_eq!(c.file.parent().unwrap(), Path::new("/st/x/capture"));
        }
        let domain = p.captures.iter().find(|c| c.name == "A").unwrap();
        assert_eq!(domain.file, Path::new("/st/x/capture/A.pcapng"));
        let r1 = p.captures.iter().find(|c| c.name == "r1:eth1").unwrap();
        assert_eq!(r1.file, Path::new("/st/x/capture/r1-eth1.pcapng"));
        assert_eq!(r1.port, Some(1));
    }

    /// A bad interface setting is refused while loading, naming the file,
    /// machine, interface and key.
    #[test]
    fn lab_interface_link_bad_value_names_machine_and_key() {
        let bad = LAB.replace("delay_ms = 20.0, ", "delay_ms = -1.0, ");
        let e = LabFile::from_toml(&bad, Path::new("/lab/lab.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/lab/lab.toml"), "{e}");
        assert!(e.contains("machine r1 eth1: link emulation"), "{e}");
        assert!(e.contains("delay"), "{e}");
        let bad = LAB.replace("jitter=2ms", "delay=3ms");
        let e = LabFile::from_toml(&bad, Path::new("/lab/lab.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("machine r1 eth1") && e.contains("delay"), "{e}");
    }

    /// Graph edges and domains carry their link settings and captures.
    #[test]
    fn lab_graph_labels_show_link_settings_and_captures() {
        let p = lab_plan(LAB);
        let dot = crate::graph::dot(&p);
        assert!(dot.contains("sends: loss=2%"), "{dot}");
        assert!(dot.contains("out: rate=10mbit\\ncaptured"), "{dot}");
        assert!(
            dot.contains("sends: delay=20ms,jitter=2ms,dist=normal\\ncaptured"),
            "{dot}"
        );
        let svg = crate::graph::svg(&p).unwrap();
        assert!(svg.contains(">sends: loss=2%</text>"), "{svg}");
        assert!(svg.contains(">out: rate=10mbit</text>"), "{svg}");
    }
}
