//! Running a lab: switches first, then machines in dependency waves, bounded
//! parallelism, a state file written before every process start so a lab
//! interrupted mid-start can still be stopped and cleaned completely.
//!
//! Machines are guest-crate guests ([`GuestBackend`]); switches are a
//! VDE-compatible switch program (`umlkit switch` or `vde_switch`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::BootEvent;
pub use crate::backend::{Backend, BootDone, Interrupt};
use crate::error::{chain, io_err, LabError, Result};
pub use crate::guest_backend::GuestBackend;
use crate::plan::{MachinePlan, Plan, SwitchPlan};

/// Output of a command run inside a guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A process named by pid and start time (`/proc/PID/stat` field 22), so a
/// pid the system reused for something else is never taken for it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcRef {
    pub pid: u32,
    /// `None` only in state files written before start times were kept.
    #[serde(default)]
    pub start: Option<u64>,
}

impl ProcRef {
    /// The running process `pid`, with its start time.
    pub fn of(pid: u32) -> ProcRef {
        ProcRef {
            pid,
            start: umlkit_sys::process::start_time(pid),
        }
    }

    /// This process.
    pub fn me() -> ProcRef {
        ProcRef::of(std::process::id())
    }

    fn id(&self) -> umlkit_sys::process::ProcessId {
        umlkit_sys::process::ProcessId {
            pid: self.pid,
            start: self.start,
        }
    }

    /// True while this very process runs (not a zombie, pid not reused).
    pub fn alive(&self) -> bool {
        self.id().alive()
    }

    /// SIGKILL this process only (never a process that reused its pid).
    pub fn kill(&self) {
        let _ = self.id().signal(umlkit_sys::process::SIGKILL);
    }
}

/// A process the lab started: enough to find and kill it later.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcEntry {
    pub name: String,
    /// Set before the process is started; pid filled right after.
    pub pid: Option<u32>,
    /// Start time of `pid` (see [`ProcRef`]).
    #[serde(default)]
    pub start: Option<u64>,
    /// Process group to kill (machines run in their own group).
    pub pgid: Option<u32>,
    /// For daemonizing switches: where the pid will appear.
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// Other processes to kill with it (e.g. the guest's supervisor).
    #[serde(default)]
    pub extra_pids: Vec<u32>,
    /// Start times of `extra_pids`, same order (empty in old state files).
    #[serde(default)]
    pub extra_starts: Vec<Option<u64>>,
    /// Machines: the `lab start` process that runs the boot steps. When it
    /// is gone and the machine never became ready, the steps will never
    /// finish (that start was killed): a rerun restarts the machine.
    #[serde(default)]
    pub steps_runner: Option<ProcRef>,
    /// Machines: per collision domain, the switch (pid and start time) the
    /// machine was plugged into at boot. UML's daemon transport does not
    /// reconnect: once that switch is gone the link is lost for good.
    #[serde(default)]
    pub links: BTreeMap<String, ProcRef>,
}

impl ProcEntry {
    /// The main process, by pid and start time.
    pub fn proc_ref(&self) -> Option<ProcRef> {
        self.pid.map(|pid| ProcRef {
            pid,
            start: self.start,
        })
    }

    /// True while the main process this entry recorded runs.
    pub fn alive(&self) -> bool {
        self.proc_ref().is_some_and(|p| p.alive())
    }

    fn extras(&self) -> impl Iterator<Item = ProcRef> + '_ {
        self.extra_pids.iter().enumerate().map(|(i, &pid)| ProcRef {
            pid,
            start: self.extra_starts.get(i).copied().flatten(),
        })
    }
}

/// Interfaces added at run time with `lab connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExtraIface {
    pub machine: String,
    pub name: String,
    pub domain: String,
    pub mac: String,
    /// The switch port it asked for (0: any, in older state files).
    #[serde(default)]
    pub port: u32,
}

/// The lab's state file (`STATE/state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub lab_dir: PathBuf,
    pub switches: Vec<ProcEntry>,
    pub machines: Vec<ProcEntry>,
    /// Switches started later by `lab connect` (domain -> switch dir).
    #[serde(default)]
    pub extra_switches: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub extra_ifaces: Vec<ExtraIface>,
    /// Captures started with the lab (`crate::links`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<ProcEntry>,
}

/// Refuse state dirs another user could have prepared: the state root and
/// the lab's state dir must be real directories (not symlinks) owned by us
/// and not writable by others. With `create`, missing ones are made 0700.
/// Without, a missing state dir is fine (nothing to read).
pub fn check_state_dir(plan: &Plan, create: bool) -> Result<()> {
    use umlkit_sys::private::private_dir;
    let sd = &plan.state_dir;
    if !create && sd.symlink_metadata().is_err() {
        if let Some(root) = sd.parent().filter(|r| r.symlink_metadata().is_ok()) {
            private_dir(root, false)?;
        }
        return Ok(());
    }
    if let Some(root) = sd.parent() {
        private_dir(root, false)?;
    }
    Ok(private_dir(sd, true)?)
}

impl State {
    fn lock_file(plan: &Plan) -> PathBuf {
        plan.state_dir.join("state.lock")
    }

    fn read(plan: &Plan) -> Result<State> {
        let p = plan.state_file();
        match umlkit_sys::private::read_nofollow(&p) {
            Ok(t) => serde_json::from_slice(&t).map_err(|e| LabError::Invalid {
                file: p.clone(),
                rule: format!("unreadable state file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                lab_dir: plan.lab_dir.clone(),
                ..Default::default()
            }),
            Err(e) => Err(io_err("cannot read", p)(e)),
        }
    }

    /// Read the state (under a shared lock), after checking that the state
    /// dir is ours.
    pub fn load(plan: &Plan) -> Result<State> {
        check_state_dir(plan, false)?;
        if plan.state_dir.symlink_metadata().is_err() {
            return Self::read(plan);
        }
        let _lock = umlkit_sys::private::StateLock::shared(&Self::lock_file(plan)).ok();
        Self::read(plan)
    }

    fn write(&self, plan: &Plan) -> Result<()> {
        let p = plan.state_file();
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        umlkit_sys::private::write_atomic(&p, text.as_bytes())
            .map_err(io_err("cannot write the lab state", &p))
    }

    /// Replace the state file with this state (under the exclusive lock).
    /// Prefer [`State::update`], which loses no concurrent change.
    pub fn save(&self, plan: &Plan) -> Result<()> {
        let _lock = Self::lock(plan)?;
        self.write(plan)
    }

    fn lock(plan: &Plan) -> Result<umlkit_sys::private::StateLock> {
        check_state_dir(plan, true)?;
        let lf = Self::lock_file(plan);
        umlkit_sys::private::StateLock::exclusive(&lf).map_err(io_err("cannot lock", &lf))
    }

    /// Read-modify-write under the exclusive lock (`flock` on
    /// `state.lock`): `f` changes the state as it is on disk now, so two lab
    /// commands on one lab lose none of each other's records. `f` runs even
    /// when the write then fails (a full disk): what it stops is stopped.
    /// Returns the new state and what `f` returned.
    pub fn update<R>(plan: &Plan, f: impl FnOnce(&mut State) -> R) -> Result<(State, R)> {
        let _lock = Self::lock(plan)?;
        let mut st = Self::read(plan)?;
        let r = f(&mut st);
        st.write(plan)?;
        Ok((st, r))
    }

    /// Record `e` in the list chosen by `pick` (by name).
    fn record(
        plan: &Plan,
        pick: fn(&mut State) -> &mut Vec<ProcEntry>,
        e: &ProcEntry,
    ) -> Result<State> {
        Ok(State::update(plan, |s| {
            let list = pick(s);
            let i = State::entry(list, &e.name);
            list[i] = e.clone();
        })?
        .0)
    }

    fn entry(list: &mut Vec<ProcEntry>, name: &str) -> usize {
        if let Some(i) = list.iter().position(|e| e.name == name) {
            i
        } else {
            list.push(ProcEntry {
                name: name.to_string(),
                ..Default::default()
            });
            list.len() - 1
        }
    }
}

/// Start a VDE-compatible switch (`PROG -s DIR -n PORTS -d -p PIDFILE [--hub]`).
pub fn start_switch_process(
    switch_cmd: &[String],
    plan: &Plan,
    sw: &SwitchPlan,
    rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
) -> Result<()> {
    // the switch makes its own dir; the folder holding it is private
    let parent = sw.dir.parent().expect("switch dir has a parent");
    umlkit_sys::private::private_dir(parent, true)?;
    let _ = std::fs::remove_file(&sw.pidfile);
    let mut e = ProcEntry {
        name: sw.domain.clone(),
        pidfile: Some(sw.pidfile.clone()),
        ..Default::default()
    };
    rec(e.clone())?;
    let ports = plan
        .machines
        .iter()
        .map(|m| m.interfaces.len())
        .sum::<usize>()
        .max(28)
        + 4;
    let mut cmd = Command::new(&switch_cmd[0]);
    cmd.args(&switch_cmd[1..])
        .arg("-s")
        .arg(&sw.dir)
        .args(["-n", &ports.to_string()])
        .arg("-d")
        .arg("-p")
        .arg(&sw.pidfile);
    if sw.hub {
        cmd.arg("--hub");
    }
    if sw.nat {
        if switch_cmd.get(1).is_none_or(|a| a != "switch") {
            return Err(LabError::Run(format!(
                "bridged machines need `umlkit switch --nat`, not {}",
                switch_cmd.join(" ")
            )));
        }
        cmd.arg("--nat");
        // an untrusted lab folder does not reach the services on the
        // host's loopback (they trust local connections); a lab the user
        // trusts (`--host-access`) does, as slirp's default
        if !plan.host_access {
            cmd.arg("--nat-no-host-loopback");
        }
    }
    // `umlkit switch` (not vde_switch): a console for run-time settings, and
    // the domain's link emulation on the way out of every port (each frame
    // crosses it once)
    if switch_cmd.get(1).is_some_and(|a| a == "switch") {
        if let Some(m) = &sw.mgmt {
            cmd.arg("-M").arg(m);
        }
        if let Some(spec) = sw.link.as_ref().and_then(|l| l.spec().ok()) {
            for p in 0..ports {
                cmd.arg("--link").arg(format!("{p}:out:{spec}"));
            }
        }
        // interfaces' own settings: the frames they send (their port, in)
        for (port, spec) in crate::links::iface_links(plan, &sw.domain) {
            cmd.arg("--link").arg(format!("{port}:in:{spec}"));
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err("cannot run switch", &switch_cmd[0]))?;
    if !out.status.success() {
        return Err(LabError::Run(format!(
            "switch for domain {} failed: {}",
            sw.domain,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = read_pid(&sw.pidfile) {
            if sw.ctl().exists() {
                e.pid = Some(pid);
                e.start = umlkit_sys::process::start_time(pid);
                return rec(e);
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::Run(format!(
                "switch for domain {} did not come up ({})",
                sw.domain,
                sw.ctl().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The switch program: `$UMLKIT_LAB_SWITCH` (a command line), else
/// `umlkit switch` when this binary has it, else `vde_switch`.
pub fn discover_switch(umlkit: Option<&Path>) -> Result<Vec<String>> {
    if let Ok(s) = std::env::var("UMLKIT_LAB_SWITCH") {
        return Ok(s.split_whitespace().map(str::to_string).collect());
    }
    if let Some(u) = umlkit.filter(|u| {
        Command::new(u)
            .args(["switch", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) {
        return Ok(vec![u.to_string_lossy().into_owned(), "switch".into()]);
    }
    if let Some(v) = which("vde_switch") {
        return Ok(vec![v.to_string_lossy().into_owned()]);
    }
    Err(LabError::Run(
        "no switch: neither `umlkit switch` nor vde_switch (install vde2) is available".into(),
    ))
}

/// The lab's backend: guest-crate guests on the default image. Fails with
/// the build command when the static exec agent is missing.
pub fn backend_for(plan: &Plan, umlkit: Option<&Path>) -> Result<GuestBackend> {
    GuestBackend::new(plan, umlkit)
}

use umlkit_sys::file::which;

/// True while `pid` runs (a zombie, e.g. an unreaped child of a long-lived
/// caller such as `lab bench`, counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    if !umlkit_sys::process::process_exists(pid) {
        return false;
    }
    umlkit_sys::procfs::state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Machine liveness from the state file (pid and start time).
pub fn machine_alive(state: &State, name: &str) -> bool {
    state
        .machines
        .iter()
        .find(|e| e.name == name)
        .is_some_and(ProcEntry::alive)
}

/// Where a machine stands, from the state file and its boot-step markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Not started (or stopped).
    Stopped,
    /// Started, but its kernel is gone.
    Dead,
    /// Running; the boot steps are still being run.
    Booting,
    /// Running, boot steps done.
    Running,
    /// Running, but its boot steps failed.
    Failed,
    /// Running, but the `lab start` that ran its boot steps was killed
    /// before they finished: they never will.
    Interrupted,
}

impl std::fmt::Display for MachineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MachineState::Stopped => "stopped",
            MachineState::Dead => "dead",
            MachineState::Booting => "booting",
            MachineState::Running => "running",
            MachineState::Failed => "failed",
            MachineState::Interrupted => "interrupted",
        })
    }
}

/// The state of machine `m`.
pub fn machine_state(backend: &dyn Backend, state: &State, m: &MachinePlan) -> MachineState {
    let Some(e) = state.machines.iter().find(|e| e.name == m.name) else {
        return MachineState::Stopped;
    };
    if e.pid.is_none() {
        // recorded before its process started: a start is under way or died
        return if e.steps_runner.is_some_and(|r| r.alive()) {
            MachineState::Booting
        } else {
            MachineState::Stopped
        };
    }
    if !e.alive() {
        return MachineState::Dead;
    }
    if backend.is_ready(m) {
        MachineState::Running
    } else if backend.boot_failure(m).is_some() {
        MachineState::Failed
    } else if e.steps_runner.is_none_or(|r| r.alive()) {
        MachineState::Booting
    } else {
        MachineState::Interrupted
    }
}

/// A switch of the lab, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchStatus {
    pub domain: String,
    /// `running`, `dead` (started, process gone) or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
}

/// Running machines whose link to a domain is lost: the switch they were
/// plugged into at boot is dead or was replaced by another one. Returns
/// (machine, domains).
pub fn lost_links(state: &State) -> Vec<(String, Vec<String>)> {
    let mut v = Vec::new();
    for e in state.machines.iter().filter(|e| e.alive()) {
        let lost: Vec<String> = e
            .links
            .iter()
            .filter(|(domain, was)| {
                let now = state
                    .switches
                    .iter()
                    .find(|s| &s.name == *domain)
                    .and_then(ProcEntry::proc_ref);
                !(now == Some(**was) && was.alive())
            })
            .map(|(d, _)| d.clone())
            .collect();
        if !lost.is_empty() {
            v.push((e.name.clone(), lost));
        }
    }
    v
}

/// Progress events of `start`.
pub trait Progress {
    fn event(&mut self, text: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn event(&mut self, text: &str) {
        self(text)
    }
}

/// Start switches, then machines in waves, at most `parallel` booting at a
/// time. Machines already running are left alone.
pub fn start(
    backend: &dyn Backend,
    plan: &Plan,
    waves: &[Vec<String>],
    parallel: usize,
    boot_timeout: Duration,
    progress: &mut dyn Progress,
) -> Result<()> {
    let never = Interrupt::new();
    start_until(
        backend,
        plan,
        waves,
        parallel,
        boot_timeout,
        progress,
        &never,
    )
}

/// [`start`], stopped between machines by `interrupt`: no machine starts
/// after it is triggered, and the error names the machines this start had
/// launched (ready, or still booting).
///
/// A machine of wave N+1 is launched only after every machine of wave N
/// reported its boot result ([`BootDone`], through a channel); a boot
/// failure or timeout ends the start before any later machine is launched.
pub fn start_until(
    backend: &dyn Backend,
    plan: &Plan,
    waves: &[Vec<String>],
    parallel: usize,
    boot_timeout: Duration,
    progress: &mut dyn Progress,
    interrupt: &Interrupt,
) -> Result<()> {
    if interrupt.is_set() {
        return Err(LabError::Interrupted {
            ready: vec![],
            booting: vec![],
        });
    }
    check_state_dir(plan, true)?;
    let plan_file = plan.state_dir.join("plan.json");
    umlkit_sys::private::write_atomic(
        &plan_file,
        serde_json::to_string_pretty(plan)
            .expect("plan serializes")
            .as_bytes(),
    )
    .map_err(io_err("cannot write", &plan_file))?;
    State::update(plan, |s| s.lab_dir = plan.lab_dir.clone())?;
    backend.prepare(plan)?;

    let wanted: Vec<&MachinePlan> = waves
        .iter()
        .flatten()
        .filter_map(|n| plan.machine(n))
        .collect();
    let mut needed_sw: Vec<usize> = wanted
        .iter()
        .flat_map(|m| m.interfaces.iter().map(|i| i.switch))
        .collect();
    needed_sw.sort();
    needed_sw.dedup();
    // Two lab commands starting machines of one lab at once must not both
    // start a switch for a domain: check and start under one lock, on the
    // state as it is on disk now.
    let switches_lock = plan.state_dir.join("switches.lock");
    let sw_guard = umlkit_sys::private::StateLock::exclusive(&switches_lock)
        .map_err(io_err("cannot lock", &switches_lock))?;
    let mut state = State::load(plan)?;
    for &si in &needed_sw {
        let sw = &plan.switches[si];
        let i = State::entry(&mut state.switches, &sw.domain);
        if state.switches[i].alive() {
            continue;
        }
        if state.switches[i].pid.is_some() {
            progress.event(&format!("switch {} was dead; starting it again", sw.domain));
        }
        // a switch whose start was interrupted before its pid was recorded
        kill_entry(&state.switches[i]);
        wait_entries_gone(
            std::slice::from_ref(&state.switches[i]),
            Duration::from_secs(5),
        );
        backend.start_switch(plan, sw, &mut |e| {
            state = State::record(plan, |s| &mut s.switches, &e)?;
            Ok(())
        })?;
        progress.event(&format!(
            "switch {} up ({})",
            sw.domain,
            if sw.hub { "hub" } else { "learning switch" }
        ));
    }
    let cmd = backend.switch_cmd();
    let umlkit = cmd
        .first()
        .filter(|_| cmd.get(1).is_some_and(|a| a == "switch"))
        .map(Path::new);
    crate::links::start_captures(plan, umlkit, &needed_sw, &mut |t| progress.event(t))?;
    drop(sw_guard);

    let total = wanted.len();
    let mut done = 0usize;
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<BootEvent>();
    interrupt.watch(tx.clone());
    // machines this start launched and saw ready (for an interruption)
    let mut ready_here: Vec<String> = Vec::new();
    // machines booted again after their kernel died before init (once each)
    let mut rebooted: Vec<String> = Vec::new();
    for wave in waves {
        let mut queue: Vec<&MachinePlan> = wave.iter().filter_map(|n| plan.machine(n)).collect();
        queue.reverse();
        let mut booting: Vec<(&MachinePlan, Instant)> = Vec::new();
        while !queue.is_empty() || !booting.is_empty() {
            // Fill the free slots; the machines of one batch are set up and
            // launched concurrently (COW, supervisor, kernel start).
            let mut batch: Vec<(&MachinePlan, usize)> = Vec::new();
            while booting.len() + batch.len() < parallel.max(1) && !interrupt.is_set() {
                let Some(m) = queue.pop() else { break };
                match machine_state(backend, &state, m) {
                    MachineState::Running => {
                        done += 1;
                        progress.event(&format!("[{done}/{total}] {} already running", m.name));
                        continue;
                    }
                    MachineState::Booting if state.machines.iter().any(|e| e.name == m.name) => {
                        let by = state
                            .machines
                            .iter()
                            .find(|e| e.name == m.name)
                            .and_then(|e| e.steps_runner)
                            .map(|r| r.pid.to_string())
                            .unwrap_or_else(|| "?".into());
                        return Err(LabError::Run(format!(
                            "{} is being started by another `lab start` (pid {by})",
                            m.name
                        )));
                    }
                    s @ (MachineState::Interrupted | MachineState::Failed) => {
                        progress.event(&format!(
                            "{}: {}; restarting it",
                            m.name,
                            if s == MachineState::Failed {
                                "its boot steps failed"
                            } else {
                                "the start that ran its boot steps was killed before they finished"
                            }
                        ));
                        if let Some(e) = state.machines.iter().find(|e| e.name == m.name) {
                            kill_entry(e);
                            wait_entries_gone(std::slice::from_ref(e), Duration::from_secs(5));
                        }
                        sweep(plan, Some(m));
                    }
                    MachineState::Stopped | MachineState::Dead => {
                        // leftovers of a start interrupted before the pid
                        // was recorded, or of a kernel that died
                        if state.machines.iter().any(|e| e.name == m.name) {
                            sweep(plan, Some(m));
                        }
                    }
                    MachineState::Booting => {}
                }
                batch.push((m, State::entry(&mut state.machines, &m.name)));
            }
            if !batch.is_empty() {
                let shared = std::sync::Mutex::new(&mut state);
                let results: Vec<Result<()>> = std::thread::scope(|sc| {
                    let handles: Vec<_> = batch
                        .iter()
                        .map(|&(m, _)| {
                            let shared = &shared;
                            let done = BootDone::new(&m.name, tx.clone());
                            sc.spawn(move || {
                                let mut rec = |mut e: ProcEntry| {
                                    let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
                                    e.steps_runner = Some(ProcRef::me());
                                    e.links = m
                                        .interfaces
                                        .iter()
                                        .filter_map(|itf| {
                                            let sw = &plan.switches[itf.switch];
                                            let r = st
                                                .switches
                                                .iter()
                                                .find(|s| s.name == sw.domain)?
                                                .proc_ref()?;
                                            Some((sw.domain.clone(), r))
                                        })
                                        .collect();
                                    **st = State::record(plan, |s| &mut s.machines, &e)?;
                                    Ok(())
                                };
                                backend.start_machine(plan, m, &mut rec, done)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(LabError::Run("a machine start panicked".into()))
                            })
                        })
                        .collect()
                });
                for r in results {
                    r?;
                }
                let now = Instant::now();
                booting.extend(batch.iter().map(|&(m, _)| (m, now)));
            }
            if booting.is_empty() {
                if interrupt.is_set() {
                    return Err(LabError::Interrupted {
                        ready: ready_here,
                        booting: vec![],
                    });
                }
                continue;
            }
            // Wait for the next boot result (or the earliest boot deadline).
            let deadline = booting
                .iter()
                .map(|(_, t)| *t + boot_timeout)
                .min()
                .expect("booting is not empty");
            let event = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            match event {
                Ok(BootEvent::Interrupted) => {
                    // results that came in before the interruption count
                    while let Ok(ev) = rx.try_recv() {
                        if let BootEvent::Done {
                            name,
                            result: Ok(()),
                        } = ev
                        {
                            if let Some(i) = booting.iter().position(|(m, _)| m.name == name) {
                                booting.remove(i);
                                ready_here.push(name);
                            }
                        }
                    }
                    return Err(LabError::Interrupted {
                        ready: ready_here,
                        booting: booting.iter().map(|(m, _)| m.name.clone()).collect(),
                    });
                }
                Ok(BootEvent::Done { name, result }) => {
                    // results of machines this start no longer waits for
                    // (none today) are ignored
                    let Some(i) = booting.iter().position(|(m, _)| m.name == name) else {
                        continue;
                    };
                    let (m, t) = booting.remove(i);
                    match result {
                        Ok(()) => {
                            done += 1;
                            ready_here.push(m.name.clone());
                            progress.event(&format!(
                                "[{done}/{total}] {} ready in {:.1} s (lab {:.1} s)",
                                m.name,
                                t.elapsed().as_secs_f64(),
                                t0.elapsed().as_secs_f64()
                            ));
                            if let Some(errs) = backend.startup_errors(m) {
                                progress.event(&startup_errors_text(plan, m, &errs));
                            }
                        }
                        Err(why) => {
                            // A kernel that panicked before init ran nothing
                            // of the machine (seen rarely under load: a
                            // failed allocation mounting the root fs, error
                            // -12): boot it again, once, and say so.
                            if !rebooted.contains(&m.name) && !interrupt.is_set() {
                                if let Some(cause) = backend.died_before_init(m) {
                                    progress.event(&guest::booting_again(&m.name, &cause));
                                    rebooted.push(m.name.clone());
                                    queue.push(m);
                                    continue;
                                }
                            }
                            return Err(LabError::Run(format!(
                                "{}: boot failed: {}; console log {}:\n{}",
                                m.name,
                                why.trim(),
                                backend.console_log(m).display(),
                                tail(&backend.console_log(m), 10)
                            )));
                        }
                    }
                }
                Err(_) => {
                    // no result before the earliest deadline
                    let now = Instant::now();
                    if let Some((m, _)) = booting
                        .iter()
                        .find(|(_, t)| now.duration_since(*t) >= boot_timeout)
                    {
                        return Err(if !machine_alive(&state, &m.name) {
                            LabError::Run(format!(
                                "{} died while booting; console log {}:\n{}",
                                m.name,
                                backend.console_log(m).display(),
                                tail(&backend.console_log(m), 15)
                            ))
                        } else {
                            LabError::Run(format!(
                                "{} not ready after {:?}; console log {}:\n{}",
                                m.name,
                                boot_timeout,
                                backend.console_log(m).display(),
                                tail(&backend.console_log(m), 15)
                            ))
                        });
                    }
                }
            }
        }
    }
    let lost = lost_links(&state);
    if !lost.is_empty() {
        return Err(LabError::Run(lost_links_message(&lost, plan)));
    }
    Ok(())
}

/// "pc1 (A), pc2 (A, B) lost their links ...: how to fix it".
pub fn lost_links_message(lost: &[(String, Vec<String>)], plan: &Plan) -> String {
    let list: Vec<String> = lost
        .iter()
        .map(|(m, d)| format!("{m} (domain {})", d.join(", ")))
        .collect();
    let names: Vec<&str> = lost.iter().map(|(m, _)| m.as_str()).collect();
    format!(
        "{} lost the link to a switch that died (UML does not reconnect); \
         restart them: umlkit lab restart {} {}",
        list.join(", "),
        plan.lab_dir.display(),
        names.join(" ")
    )
}

/// A ready machine's startup errors for people: the summary of each error
/// file (`== FILE: N lines` and its first lines) and where the rest is.
pub fn startup_errors_text(plan: &Plan, m: &MachinePlan, summary: &str) -> String {
    let mut t = format!("{}: startup errors:", m.name);
    for l in summary.lines() {
        t.push_str("\n    ");
        t.push_str(l);
    }
    t.push_str(&format!(
        "\n    full logs: umlkit lab logs -d {} {}",
        plan.lab_dir.display(),
        m.name
    ));
    t
}

/// The full boot and startup logs of a machine: read from the guest when it
/// runs (umlkit's boot step log, then Kathará's /var/log/shared.* and
/// /var/log/startup.*), plus the host-side boot failure if any.
pub fn logs(backend: &dyn Backend, plan: &Plan, m: &MachinePlan) -> Result<String> {
    let mut out = String::new();
    if let Some(e) = backend.boot_failure(m) {
        out.push_str(&format!("== boot failure (host)\n{}\n", e.trim_end()));
    }
    let state = State::load(plan)?;
    if machine_alive(&state, &m.name) {
        let files: Vec<&str> = std::iter::once(crate::script::BOOT_LOG)
            .chain(crate::script::STARTUP_LOGS.iter().copied())
            .collect();
        let cmd = format!(
            "for f in {}; do [ -s \"$f\" ] && {{ echo \"== $f\"; cat \"$f\"; }}; done; true",
            files.join(" ")
        );
        let o = backend.exec(m, &cmd, Duration::from_secs(60))?;
        out.push_str(&o.stdout);
    } else {
        out.push_str(&format!(
            "{} is not running; console log {}:\n{}\n",
            m.name,
            backend.console_log(m).display(),
            tail(&backend.console_log(m), 30)
        ));
    }
    Ok(out)
}

/// Last `n` lines of a file.
pub fn tail(p: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn wait_gone(procs: &[ProcRef], timeout: Duration) -> bool {
    let pids: Vec<u32> = procs.iter().filter(|p| p.alive()).map(|p| p.pid).collect();
    umlkit_sys::watch::wait_exit(
        &pids,
        |pid| procs.iter().any(|p| p.pid == pid && p.alive()),
        timeout,
    )
}

/// Wait (bounded) until the processes of these entries are gone: their
/// process groups' members, their recorded processes and helpers, and a
/// switch known only by its pid file (blocking on pidfds, see
/// [`umlkit_sys::watch::wait_exit`]).
fn wait_entries_gone(entries: &[ProcEntry], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let groups: Vec<u32> = entries
            .iter()
            .filter_map(|e| e.pgid.filter(|_| e.alive()))
            .collect();
        let mut pids: Vec<u32> = Vec::new();
        if !groups.is_empty() {
            pids.extend(umlkit_sys::process::all_pids().into_iter().filter(|&p| {
                umlkit_sys::process::getpgid(p).is_ok_and(|g| groups.contains(&g)) && pid_alive(p)
            }));
        }
        for e in entries {
            match e.proc_ref() {
                Some(r) if r.alive() => pids.push(r.pid),
                Some(_) => {}
                None => {
                    if let Some(p) = e
                        .pidfile
                        .as_deref()
                        .and_then(|pf| read_pid(pf).filter(|&p| names_path(p, pf) && pid_alive(p)))
                    {
                        pids.push(p);
                    }
                }
            }
            pids.extend(e.extras().filter(|r| r.alive()).map(|r| r.pid));
        }
        pids.sort_unstable();
        pids.dedup();
        let left = deadline.saturating_duration_since(Instant::now());
        if pids.is_empty() || left.is_zero() {
            return;
        }
        // a group may gain or lose members meanwhile: look again after
        umlkit_sys::watch::wait_exit(&pids, pid_alive, left);
    }
}

/// Kill what an entry recorded: its group only while the leader is the
/// process we started, pids only while their start time matches (a pid or
/// group id the system reused is never hit). A switch recorded before its
/// pid was known is found through its pid file, if that process works in
/// the lab's state folder.
fn kill_entry(e: &ProcEntry) {
    use umlkit_sys::process::{kill_group, SIGKILL};
    if let Some(g) = e.pgid.filter(|_| e.alive()) {
        let _ = kill_group(g, SIGKILL);
    }
    match e.proc_ref() {
        Some(r) => r.kill(),
        None => {
            if let Some(pf) = e.pidfile.as_deref() {
                if let Some(p) = read_pid(pf) {
                    if names_path(p, pf) {
                        ProcRef::of(p).kill();
                    }
                }
            }
        }
    }
    for r in e.extras() {
        r.kill();
    }
}

/// True when the command line of `pid` names `path` (a switch started with
/// `-p PIDFILE`).
fn names_path(pid: u32, path: &Path) -> bool {
    let cmdline = umlkit_sys::procfs::cmdline_raw(pid);
    let want = path.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|a| a == want)
}

/// Stop machines (all, or `only`): graceful shutdown scripts, then power off;
/// anything still alive after `timeout` is killed. Switches go when no
/// machine is left.
pub fn stop(
    backend: &dyn Backend,
    plan: &Plan,
    only: &[String],
    timeout: Duration,
    progress: &mut dyn Progress,
) -> Result<()> {
    let mut state = State::load(plan)?;
    let targets: Vec<ProcEntry> = state
        .machines
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
        .cloned()
        .collect();
    let waiting: Vec<ProcEntry> = targets.iter().filter(|e| e.alive()).cloned().collect();
    std::thread::scope(|sc| {
        for e in &waiting {
            if let Some(m) = plan.machine(&e.name) {
                sc.spawn(move || backend.shutdown(plan, m, timeout));
            }
        }
    });
    let procs: Vec<ProcRef> = waiting.iter().filter_map(ProcEntry::proc_ref).collect();
    if !wait_gone(&procs, timeout) {
        for e in &waiting {
            if e.alive() {
                progress.event(&format!(
                    "{} did not power off in {:?}; killed",
                    e.name, timeout
                ));
            }
        }
    }
    for e in &targets {
        kill_entry(e); // helper processes of the group
        progress.event(&format!("{} stopped", e.name));
    }
    wait_entries_gone(&targets, Duration::from_secs(5));
    for e in &targets {
        if let Some(m) = plan.machine(&e.name) {
            sweep(plan, Some(m));
        }
    }
    forget_machines(plan, &mut state, |n| targets.iter().any(|t| t.name == n))
}

/// Drop the stopped machines from the state (as it is on disk now) and stop
/// the switches once no machine is left. The processes are gone even when
/// the state cannot be written (a full disk): the error says so.
fn forget_machines(plan: &Plan, state: &mut State, gone: impl Fn(&str) -> bool) -> Result<()> {
    let mut ran = false;
    let r = State::update(plan, |s| {
        ran = true;
        s.machines.retain(|e| !gone(&e.name));
        stop_switches_if_idle(plan, s);
    });
    if !ran {
        // the state on disk could not be read: go by what we loaded
        state.machines.retain(|e| !gone(&e.name));
        stop_switches_if_idle(plan, state);
    }
    r.map(|_| ()).map_err(|e| {
        LabError::Run(format!(
            "every process asked for was stopped, but the lab state could not be updated: {}",
            chain(&e)
        ))
    })
}

/// Once no machine of the lab is left, its switches go too, with whatever
/// run-time wiring (`connect`) was recorded.
fn stop_switches_if_idle(plan: &Plan, state: &mut State) {
    if !state.machines.is_empty() {
        return;
    }
    crate::links::stop_captures(state);
    for e in &state.switches {
        kill_entry(e);
    }
    wait_entries_gone(&state.switches, Duration::from_secs(5));
    sweep(plan, None);
    state.switches.clear();
    state.extra_switches.clear();
    state.extra_ifaces.clear();
}

/// Kill every process whose command line places it in this lab: a UML of
/// the lab (`uml_dir=` under the state folder; `umid=` of `machine` when
/// given), or a switch/supervisor working in the state folder. UML's
/// per-address-space host processes run in sessions of their own, so group
/// kills miss them once their kernel is gone. Repeats until none is left
/// (bounded).
pub fn sweep(plan: &Plan, machine: Option<&MachinePlan>) {
    let sd = plan.state_dir.to_string_lossy().into_owned();
    let under = |v: &str| v == sd || v.starts_with(&format!("{sd}/"));
    let me = std::process::id();
    for _ in 0..50 {
        let mut found = Vec::new();
        for pid in umlkit_sys::process::all_pids() {
            if pid == me {
                continue;
            }
            let args = umlkit_sys::procfs::cmdline(pid);
            let in_lab_uml = args
                .iter()
                .any(|a| a.strip_prefix("uml_dir=").is_some_and(under));
            let hit = match machine {
                None => in_lab_uml || args.iter().skip(1).any(|a| under(a)),
                Some(m) => {
                    let umid_ok = args.iter().any(|a| {
                        a == &format!("umid={}", m.umid) || a == &format!("umid={}", m.name)
                    });
                    let sup = format!("{sd}/g/{}", m.name);
                    (in_lab_uml && umid_ok) || args.iter().skip(1).any(|a| *a == sup)
                }
            };
            if hit && pid_alive(pid) {
                found.push(pid);
            }
        }
        if found.is_empty() {
            return;
        }
        for &pid in &found {
            let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
        }
        // then look again once they are gone (new ones may have appeared)
        umlkit_sys::watch::wait_exit(&found, pid_alive, Duration::from_secs(1));
    }
}

/// Kill everything at once (no shutdown scripts).
pub fn crash(plan: &Plan, only: &[String]) -> Result<()> {
    let mut state = State::load(plan)?;
    for e in state
        .machines
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
    {
        kill_entry(e);
    }
    wait_entries_gone(&state.machines, Duration::from_secs(5));
    for m in plan
        .machines
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
    {
        sweep(plan, Some(m));
    }
    forget_machines(plan, &mut state, |n| {
        only.is_empty() || only.iter().any(|o| o == n)
    })
}

/// Kill whatever the lab still runs and remove its state folder (and the
/// state root if that is then empty). The lab folder is not touched.
pub fn clean(plan: &Plan) -> Result<()> {
    // never kill or remove on the word of a state dir someone else prepared
    check_state_dir(plan, false)?;
    if plan.state_dir.symlink_metadata().is_ok() {
        // the state dir goes anyway: a state that cannot be written (full
        // disk) or read must not keep the lab running
        let _ = crash(plan, &[]);
        // Guests found only through their uml_dir pid files (interrupted start).
        if let Ok(rd) = std::fs::read_dir(&plan.uml_dir) {
            for e in rd.flatten() {
                if let Some(pid) = read_pid(&e.path().join("pid")) {
                    if is_our_uml(pid, &plan.uml_dir) {
                        let _ = umlkit_sys::process::kill_group(pid, umlkit_sys::process::SIGKILL);
                        let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGKILL);
                    }
                }
            }
        }
        sweep(plan, None);
        std::fs::remove_dir_all(&plan.state_dir)
            .map_err(io_err("cannot remove", &plan.state_dir))?;
    }
    if let Some(root) = plan.state_dir.parent() {
        let _ = std::fs::remove_dir(root); // only if empty
    }
    Ok(())
}

/// The pid runs a UML of this lab (its cmdline names our uml_dir).
fn is_our_uml(pid: u32, uml_dir: &Path) -> bool {
    let cmdline = umlkit_sys::procfs::cmdline_raw(pid);
    let want = format!("uml_dir={}", uml_dir.display());
    cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes())
}

/// Live view of one machine for `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineStatus {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub mem_mb: u32,
    pub interfaces: Vec<IfaceStatus>,
    /// Domains whose switch died since the machine booted: no traffic
    /// passes there until the machine is restarted.
    #[serde(default)]
    pub lost_links: Vec<String>,
    /// Startup error summary (`== FILE: N lines`, first lines), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_errors: Option<String>,
    /// Why the boot steps failed, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_error: Option<String>,
}

/// One interface in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IfaceStatus {
    pub name: String,
    pub domain: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

/// Machine states and (for running machines) live addresses, asked from
/// each running machine (`ip -o addr show`).
pub fn status(backend: &dyn Backend, plan: &Plan) -> Result<Vec<MachineStatus>> {
    status_with(backend, plan, &mut |m, _pid| ask_addresses(backend, m))
}

/// A running machine's `ip -o addr show` text (what [`status_with`] reads
/// addresses from); `None` when the machine could not answer.
pub fn ask_addresses(backend: &dyn Backend, m: &MachinePlan) -> Option<String> {
    backend
        .exec(m, "ip -o addr show", Duration::from_secs(5))
        .ok()
        .map(|o| o.stdout)
}

/// [`status`], with the running machines' `ip -o addr show` text from
/// `addrs` (machine, kernel pid): a caller polling often (the web view)
/// can keep answers for a while instead of running a command in every
/// machine each time.
pub fn status_with(
    backend: &dyn Backend,
    plan: &Plan,
    addrs: &mut dyn FnMut(&MachinePlan, u32) -> Option<String>,
) -> Result<Vec<MachineStatus>> {
    let state = State::load(plan)?;
    let lost = lost_links(&state);
    let mut v = Vec::new();
    for m in &plan.machines {
        let pid = state
            .machines
            .iter()
            .find(|e| e.name == m.name)
            .and_then(|e| e.pid);
        let ms = machine_state(backend, &state, m);
        let st = ms.to_string();
        let boot_error = backend.boot_failure(m);
        let mut interfaces: Vec<IfaceStatus> = m
            .interfaces
            .iter()
            .map(|i| IfaceStatus {
                name: i.name.clone(),
                domain: i.domain.clone(),
                mac: i.mac.clone(),
                addresses: i.addresses.clone(),
            })
            .collect();
        for x in state.extra_ifaces.iter().filter(|x| x.machine == m.name) {
            interfaces.push(IfaceStatus {
                name: x.name.clone(),
                domain: x.domain.clone(),
                mac: x.mac.clone(),
                addresses: vec![],
            });
        }
        if let (MachineState::Running, Some(pid)) = (ms, pid) {
            if let Some(out) = addrs(m, pid) {
                for i in interfaces.iter_mut() {
                    i.addresses = out
                        .lines()
                        .filter_map(|l| {
                            let w: Vec<&str> = l.split_whitespace().collect();
                            (w.get(1) == Some(&i.name.as_str())
                                && matches!(w.get(2), Some(&"inet") | Some(&"inet6")))
                            .then(|| w.get(3).map(|s| s.to_string()))
                            .flatten()
                        })
                        .filter(|a| !a.starts_with("fe80:"))
                        .collect();
                }
            }
        }
        v.push(MachineStatus {
            name: m.name.clone(),
            state: st,
            pid,
            mem_mb: m.mem_mb,
            interfaces,
            lost_links: lost
                .iter()
                .find(|(n, _)| *n == m.name)
                .map(|(_, d)| d.clone())
                .unwrap_or_default(),
            startup_errors: backend.startup_errors(m),
            boot_error,
        });
    }
    Ok(v)
}

/// The lab's switches: running, dead (started, process gone) or stopped.
pub fn switch_status(plan: &Plan) -> Result<Vec<SwitchStatus>> {
    let state = State::load(plan)?;
    let mut domains: Vec<String> = plan.switches.iter().map(|s| s.domain.clone()).collect();
    domains.extend(state.extra_switches.keys().cloned());
    Ok(domains
        .into_iter()
        .map(|d| {
            let e = state.switches.iter().find(|e| e.name == d);
            let st = match e {
                None => "stopped",
                Some(e) if e.alive() => "running",
                Some(e)
                    if e.pid.is_none()
                        && e.pidfile.as_deref().is_some_and(|pf| {
                            read_pid(pf).is_some_and(|p| names_path(p, pf) && pid_alive(p))
                        }) =>
                {
                    "running"
                }
                Some(_) => "dead",
            };
            SwitchStatus {
                domain: d,
                state: st.into(),
                pid: e.and_then(|e| e.pid),
            }
        })
        .collect())
}

/// Plug a running machine into `domain` (a new interface, hot-added through
/// mconsole; a switch is started for a new domain). Returns the interface name.
pub fn connect(backend: &dyn Backend, plan: &Plan, machine: &str, domain: &str) -> Result<String> {
    let m = plan
        .machine(machine)
        .ok_or_else(|| LabError::Run(format!("no machine {machine} in lab {}", plan.name)))?;
    let mut state = State::load(plan)?;
    if !machine_alive(&state, machine) {
        return Err(LabError::Run(format!("{machine} is not running")));
    }
    let dir = if let Some(sw) = plan.switches.iter().find(|s| s.domain == domain) {
        if !state.switches.iter().any(|e| e.name == domain && e.alive()) {
            backend.start_switch(plan, sw, &mut |e| {
                state = State::record(plan, |s| &mut s.switches, &e)?;
                Ok(())
            })?;
        }
        sw.dir.clone()
    } else if let Some(dir) = state.extra_switches.get(domain) {
        dir.clone()
    } else {
        let n = plan.switches.len() + state.extra_switches.len();
        let sw = SwitchPlan {
            domain: domain.to_string(),
            dir: plan.state_dir.join("sw").join(n.to_string()),
            pidfile: plan.state_dir.join("sw").join(format!("{n}.pid")),
            hub: plan.dialect == crate::model::Dialect::Netkit,
            capture: false,
            link: None,
            mgmt: None,
            nat: false,
        };
        backend.start_switch(plan, &sw, &mut |e| {
            state = State::record(plan, |s| &mut s.switches, &e)?;
            Ok(())
        })?;
        let dir = sw.dir.clone();
        state = State::update(plan, |s| {
            s.extra_switches.insert(domain.to_string(), dir);
        })?
        .0;
        sw.dir
    };
    let used: Vec<u32> = m
        .interfaces
        .iter()
        .map(|i| i.index)
        .chain(
            state
                .extra_ifaces
                .iter()
                .filter(|x| x.machine == machine)
                .filter_map(|x| x.name.strip_prefix("eth")?.parse().ok()),
        )
        .collect();
    let idx = (0..).find(|i| !used.contains(i)).expect("free index");
    let name = format!("eth{idx}");
    let mac = crate::mac::format_mac(&crate::mac::derive_mac(&m.umid, &name));
    // a port above the planned ones (crate::links), so a planned machine
    // started later never shares its port with this interface
    let port = crate::links::free_extra_port(plan, &state, domain);
    backend.mconsole(
        plan,
        m,
        &format!("config {name}=vde,{},{mac},{port}", dir.display()),
    )?;
    let x = ExtraIface {
        machine: machine.to_string(),
        name: name.clone(),
        domain: domain.to_string(),
        mac,
        port,
    };
    // the switch this interface is plugged into, to tell when it dies
    let sw = state
        .switches
        .iter()
        .find(|e| e.name == domain)
        .and_then(ProcEntry::proc_ref);
    State::update(plan, |s| {
        s.extra_ifaces.push(x);
        if let (Some(sw), Some(e)) = (sw, s.machines.iter_mut().find(|e| e.name == machine)) {
            e.links.insert(domain.to_string(), sw);
        }
    })?;
    Ok(name)
}

/// Unplug `machine` from `domain`: the interface is taken down in the guest,
/// then removed through mconsole.
pub fn disconnect(
    backend: &dyn Backend,
    plan: &Plan,
    machine: &str,
    domain: &str,
) -> Result<String> {
    let m = plan
        .machine(machine)
        .ok_or_else(|| LabError::Run(format!("no machine {machine} in lab {}", plan.name)))?;
    let state = State::load(plan)?;
    let name = state
        .extra_ifaces
        .iter()
        .find(|x| x.machine == machine && x.domain == domain)
        .map(|x| x.name.clone())
        .or_else(|| {
            m.interfaces
                .iter()
                .find(|i| i.domain == domain)
                .map(|i| i.name.clone())
        })
        .ok_or_else(|| LabError::Run(format!("{machine} has no interface on {domain}")))?;
    backend.exec(
        m,
        &format!("ip link set {name} down"),
        Duration::from_secs(10),
    )?;
    backend.mconsole(plan, m, &format!("remove {name}"))?;
    State::update(plan, |s| {
        s.extra_ifaces
            .retain(|x| !(x.machine == machine && x.name == name));
        if let Some(e) = s.machines.iter_mut().find(|e| e.name == machine) {
            e.links.remove(domain);
        }
    })?;
    Ok(name)
}

/// Write `text` to stdout-like sinks without failing on a closed pipe.
pub fn emit(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn entry(name: &str, pid: u32, start: Option<u64>) -> ProcEntry {
        ProcEntry {
            name: name.into(),
            pid: Some(pid),
            start,
            ..Default::default()
        }
    }

    #[test]
    fn entries_are_alive_only_with_their_own_start_time() {
        let me = ProcRef::me();
        assert!(entry("x", me.pid, me.start).alive());
        // an old state file without start times: the pid alone
        assert!(entry("x", me.pid, None).alive());
        // the pid was reused by someone else (another start time)
        assert!(!entry("x", me.pid, me.start.map(|s| s + 1)).alive());
    }

    #[test]
    fn a_machine_loses_its_link_when_its_switch_is_replaced_or_dead() {
        let me = ProcRef::me();
        let other = ProcRef {
            pid: me.pid,
            start: me.start.map(|s| s + 1),
        };
        let mut m = entry("pc1", me.pid, me.start);
        m.links.insert("A".into(), me);
        let mut state = State {
            switches: vec![entry("A", me.pid, me.start)],
            machines: vec![m.clone()],
            ..Default::default()
        };
        assert!(lost_links(&state).is_empty());
        // the switch entry now names another process (restarted switch)
        state.switches[0].start = other.start;
        assert_eq!(lost_links(&state), vec![("pc1".into(), vec!["A".into()])]);
        // the switch recorded at boot is gone
        m.links.insert("A".into(), other);
        state.machines = vec![m];
        state.switches[0].start = other.start;
        assert_eq!(lost_links(&state), vec![("pc1".into(), vec!["A".into()])]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_in(root: &Path) -> Plan {
        Plan {
            name: "t".into(),
            id: "t".into(),
            dialect: crate::model::Dialect::Kathara,
            lab_dir: root.join("lab"),
            state_dir: root.join("st").join("t"),
            uml_dir: root.join("st").join("t").join("uml"),
            switches: vec![],
            machines: vec![],
            waves: vec![],
            notes: vec![],
            host_access: false,
            captures: vec![],
        }
    }

    /// Regression (issue 8.4): two lab commands on one lab each loaded the
    /// state, changed it and wrote it back through one fixed
    /// `state.json.tmp`, so one lost the other's records. Every writer
    /// here opens the lock file itself (as separate processes do).
    #[test]
    fn lab_state_concurrent_updates_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan_in(tmp.path());
        let (threads, per) = (8, 25);
        std::thread::scope(|sc| {
            for t in 0..threads {
                let plan = &plan;
                sc.spawn(move || {
                    for k in 0..per {
                        let e = ProcEntry {
                            name: format!("m{t}-{k}"),
                            pid: Some(1000 + k),
                            ..Default::default()
                        };
                        State::record(plan, |s| &mut s.machines, &e).unwrap();
                        State::load(plan).unwrap();
                    }
                });
            }
        });
        let st = State::load(&plan).unwrap();
        assert_eq!(st.machines.len(), (threads * per) as usize);
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(plan.state_file()).unwrap();
        assert_eq!(md.mode() & 0o777, 0o600);
        let sd = std::fs::metadata(&plan.state_dir).unwrap();
        assert_eq!(sd.mode() & 0o777, 0o700);
        let left: Vec<_> = std::fs::read_dir(&plan.state_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }

    /// A state root that is a symlink or writable by others is refused
    /// before anything is read from it.
    #[test]
    fn lab_state_root_symlink_or_world_writable_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("st")).unwrap();
        let plan = plan_in(tmp.path());
        let e = State::load(&plan).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(State::update(&plan, |_| ()).is_err());
        assert!(!real.join("t").exists(), "wrote through the symlink");
        std::fs::remove_file(tmp.path().join("st")).unwrap();
        std::fs::create_dir(tmp.path().join("st")).unwrap();
        std::fs::set_permissions(
            tmp.path().join("st"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = State::load(&plan).unwrap_err().to_string();
        assert!(
            e.contains("0777") && e.contains("other users can write"),
            "{e}"
        );
    }
}
