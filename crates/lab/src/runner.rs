//! Running a lab: switches first, then machines in dependency waves, bounded
//! parallelism, a state file written before every process start so a lab
//! interrupted mid-start can still be stopped and cleaned completely.
//!
//! The machine/switch mechanics sit behind [`Backend`]; [`UmlBackend`] is the
//! direct one (linux.uml + a VDE-compatible switch binary + the lab image).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::boot;
use crate::error::{io_err, LabError, Result};
use crate::plan::{MachinePlan, Plan, SwitchPlan};

/// Output of a command run inside a guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// A process the lab started: enough to find and kill it later.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcEntry {
    pub name: String,
    /// Set before the process is started; pid filled right after.
    pub pid: Option<u32>,
    /// Process group to kill (machines run in their own group).
    pub pgid: Option<u32>,
    /// For daemonizing switches: where the pid will appear.
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
}

/// Interfaces added at run time with `lab connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExtraIface {
    pub machine: String,
    pub name: String,
    pub domain: String,
    pub mac: String,
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
}

impl State {
    pub fn load(plan: &Plan) -> Result<State> {
        let p = plan.state_file();
        match std::fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| LabError::Invalid {
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

    pub fn save(&self, plan: &Plan) -> Result<()> {
        let p = plan.state_file();
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&tmp, text).map_err(io_err("cannot write", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(io_err("cannot write", &p))
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

/// What a lab needs from the layer that runs guests and switches.
pub trait Backend {
    /// Build whatever the machines boot from (the lab image).
    fn prepare(&self, plan: &Plan) -> Result<()>;
    /// Start a switch; `rec` is saved before the process starts, then filled.
    fn start_switch(
        &self,
        plan: &Plan,
        sw: &SwitchPlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()>;
    /// Start a machine (does not wait for it to boot).
    fn start_machine(
        &self,
        plan: &Plan,
        m: &MachinePlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()>;
    /// True once the machine finished its startup scripts.
    fn is_ready(&self, m: &MachinePlan) -> bool;
    /// Run a shell command in the guest.
    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput>;
    /// Send an mconsole command; returns the reply text.
    fn mconsole(&self, plan: &Plan, m: &MachinePlan, cmd: &str) -> Result<String>;
}

/// The direct backend: `linux.uml` guests on COW files over a per-lab busybox
/// image, daemon-transport NICs on VDE-compatible switches.
pub struct UmlBackend {
    pub kernel: PathBuf,
    /// Switch program: `umlkit switch` (args prefix) or `vde_switch`.
    pub switch_cmd: Vec<String>,
    pub busybox: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl UmlBackend {
    /// Find the kernel (`$UMLKIT_KERNEL`, linux.uml, linux) and the switch:
    /// `$UMLKIT_LAB_SWITCH` (a command line), else `umlkit switch` when this
    /// binary has it, else `vde_switch`.
    pub fn discover(umlkit: Option<&Path>) -> Result<UmlBackend> {
        let kernel = std::env::var_os("UMLKIT_KERNEL")
            .map(PathBuf::from)
            .or_else(|| which("linux.uml"))
            .or_else(|| which("linux"))
            .ok_or_else(|| {
                LabError::Run(
                    "no UML kernel: install user-mode-linux (linux.uml) or set UMLKIT_KERNEL"
                        .into(),
                )
            })?;
        let switch_cmd = if let Ok(s) = std::env::var("UMLKIT_LAB_SWITCH") {
            s.split_whitespace().map(str::to_string).collect()
        } else if let Some(u) = umlkit.filter(|u| {
            Command::new(u)
                .args(["switch", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }) {
            vec![u.to_string_lossy().into_owned(), "switch".into()]
        } else if let Some(v) = which("vde_switch") {
            vec![v.to_string_lossy().into_owned()]
        } else {
            return Err(LabError::Run(
                "no switch: neither `umlkit switch` nor vde_switch (install vde2) is available"
                    .into(),
            ));
        };
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| LabError::Run("no /bin/busybox: install busybox-static".into()))?;
        Ok(UmlBackend {
            kernel,
            switch_cmd,
            busybox,
        })
    }

    fn build_image(&self, plan: &Plan) -> Result<()> {
        let img = plan.image();
        if img.is_file() {
            return Ok(());
        }
        let root = plan.state_dir.join("rootfs");
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt", "run", "var",
            "umlkit", "hostlab", "shared", "usr/bin", "usr/sbin",
        ] {
            std::fs::create_dir_all(root.join(d)).map_err(io_err("cannot create", root.join(d)))?;
        }
        std::fs::copy(&self.busybox, root.join("bin/busybox"))
            .map_err(io_err("cannot copy", &self.busybox))?;
        let out = Command::new(&self.busybox)
            .arg("--list")
            .output()
            .map_err(io_err("cannot run", &self.busybox))?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let a = applet.trim();
            if !a.is_empty() && a != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .map_err(io_err("cannot write", &root))?;
        std::fs::write(root.join("etc/group"), "root:x:0:\n")
            .map_err(io_err("cannot write", &root))?;
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")
            .map_err(io_err("cannot write", &root))?;
        let init = root.join("sbin/init");
        let _ = std::fs::remove_file(&init);
        std::fs::write(&init, boot::image_init()).map_err(io_err("cannot write", &init))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("cannot chmod", &init))?;
        let tmp = img.with_extension("img.tmp");
        let f = std::fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        f.set_len(256 << 20).map_err(io_err("cannot size", &tmp))?;
        drop(f);
        let mkfs = which("mkfs.ext4").unwrap_or_else(|| PathBuf::from("/sbin/mkfs.ext4"));
        let st = Command::new(&mkfs)
            .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&tmp)
            .stdout(Stdio::null())
            .status()
            .map_err(io_err("cannot run", &mkfs))?;
        let _ = std::fs::remove_dir_all(&root);
        if !st.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(LabError::Run(format!(
                "mkfs.ext4 failed building {}",
                img.display()
            )));
        }
        std::fs::rename(&tmp, &img).map_err(io_err("cannot write", &img))
    }
}

impl Backend for UmlBackend {
    fn prepare(&self, plan: &Plan) -> Result<()> {
        self.build_image(plan)
    }

    fn start_switch(
        &self,
        plan: &Plan,
        sw: &SwitchPlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()> {
        std::fs::create_dir_all(sw.dir.parent().expect("switch dir has a parent"))
            .map_err(io_err("cannot create", &sw.dir))?;
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
        let mut cmd = Command::new(&self.switch_cmd[0]);
        cmd.args(&self.switch_cmd[1..])
            .arg("-s")
            .arg(&sw.dir)
            .args(["-n", &ports.to_string()])
            .arg("-d")
            .arg("-p")
            .arg(&sw.pidfile);
        if sw.hub {
            cmd.arg("--hub");
        }
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(io_err("cannot run switch", &self.switch_cmd[0]))?;
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

    fn start_machine(
        &self,
        plan: &Plan,
        m: &MachinePlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()> {
        let _ = std::fs::remove_dir_all(&m.dir);
        std::fs::create_dir_all(m.dir.join("exec")).map_err(io_err("cannot create", &m.dir))?;
        std::fs::create_dir_all(&plan.uml_dir).map_err(io_err("cannot create", &plan.uml_dir))?;
        let _ = std::fs::remove_dir_all(plan.uml_dir.join(&m.umid));
        let script = m.dir.join("boot.sh");
        std::fs::write(&script, boot::boot_script(plan, m))
            .map_err(io_err("cannot write", &script))?;
        let log = m.dir.join("console.log");
        let logf = std::fs::File::create(&log).map_err(io_err("cannot create", &log))?;
        let logf2 = logf.try_clone().map_err(io_err("cannot open", &log))?;
        let mut cmd = Command::new(&self.kernel);
        cmd.arg(format!("umid={}", m.umid))
            .arg(format!("uml_dir={}", plan.uml_dir.display()))
            .arg(format!("mem={}M", m.mem_mb))
            .arg(format!(
                "ubd0={},{}",
                m.dir.join("root.cow").display(),
                plan.image().display()
            ))
            .args([
                "root=/dev/ubda",
                "rw",
                "con=null",
                "con0=fd:0,fd:1",
                "init=/sbin/init",
                "quiet",
            ])
            .arg(format!("umlkit_state={}", m.dir.display()));
        for i in &m.interfaces {
            let sw = &plan.switches[i.switch];
            cmd.arg(format!(
                "eth{}=daemon,{},unix,{}",
                i.index,
                i.mac,
                sw.ctl().display()
            ));
        }
        cmd.args(&m.kernel_args);
        cmd.stdin(Stdio::null()).stdout(logf).stderr(logf2);
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut e = ProcEntry {
            name: m.name.clone(),
            ..Default::default()
        };
        rec(e.clone())?;
        let child = cmd.spawn().map_err(io_err("cannot start", &self.kernel))?;
        e.pid = Some(child.id());
        e.pgid = Some(child.id());
        // The child is not waited for: it outlives this command (reaped by init).
        drop(child);
        rec(e)
    }

    fn is_ready(&self, m: &MachinePlan) -> bool {
        m.dir.join("ready").exists()
    }

    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let spool = m.dir.join("exec");
        let id = format!(
            "h{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let tmp = spool.join(format!("{id}.tmp"));
        std::fs::write(&tmp, format!("{cmd}\n")).map_err(io_err("cannot write", &tmp))?;
        std::fs::rename(&tmp, spool.join(format!("{id}.cmd")))
            .map_err(io_err("cannot write", &spool))?;
        let rc = spool.join(format!("{id}.rc"));
        let deadline = Instant::now() + timeout;
        let cleanup = || {
            for ext in ["cmd", "run", "out", "err", "rc", "rct"] {
                let _ = std::fs::remove_file(spool.join(format!("{id}.{ext}")));
            }
        };
        loop {
            if let Ok(t) = std::fs::read_to_string(&rc) {
                if let Ok(code) = t.trim().parse::<i32>() {
                    let out = ExecOutput {
                        stdout: std::fs::read_to_string(spool.join(format!("{id}.out")))
                            .unwrap_or_default(),
                        stderr: std::fs::read_to_string(spool.join(format!("{id}.err")))
                            .unwrap_or_default(),
                        code,
                    };
                    cleanup();
                    return Ok(out);
                }
            }
            if Instant::now() > deadline {
                cleanup();
                return Err(LabError::Run(format!(
                    "{}: command timed out after {:?}: {cmd}",
                    m.name, timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn mconsole(&self, plan: &Plan, m: &MachinePlan, cmd: &str) -> Result<String> {
        let sock = plan.uml_dir.join(&m.umid).join("mconsole");
        let tool = which("uml_mconsole").ok_or_else(|| {
            LabError::Run("uml_mconsole not found (install uml-utilities)".into())
        })?;
        let out = Command::new(&tool)
            .arg(&sock)
            .args(cmd.split_whitespace())
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("cannot run", &tool))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.starts_with("ERR") {
            return Err(LabError::Run(format!("{}: mconsole {cmd}: {text}", m.name)));
        }
        Ok(text)
    }
}

/// True while `pid` runs (a zombie, e.g. an unreaped child of a long-lived
/// caller such as `lab bench`, counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    if !umlkit_sys::process::process_exists(pid) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the first field after the parenthesised command name
        Ok(st) => st
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Machine liveness from the state file.
pub fn machine_alive(state: &State, name: &str) -> bool {
    state
        .machines
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.pid)
        .is_some_and(pid_alive)
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
    std::fs::create_dir_all(&plan.state_dir).map_err(io_err("cannot create", &plan.state_dir))?;
    let plan_file = plan.state_dir.join("plan.json");
    std::fs::write(
        &plan_file,
        serde_json::to_string_pretty(plan).expect("plan serializes"),
    )
    .map_err(io_err("cannot write", &plan_file))?;
    let mut state = State::load(plan)?;
    state.lab_dir = plan.lab_dir.clone();
    state.save(plan)?;
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
    for &si in &needed_sw {
        let sw = &plan.switches[si];
        let i = State::entry(&mut state.switches, &sw.domain);
        if state.switches[i].pid.is_some_and(pid_alive) {
            continue;
        }
        backend.start_switch(plan, sw, &mut |e| {
            state.switches[i] = e;
            state.save(plan)
        })?;
        progress.event(&format!(
            "switch {} up ({})",
            sw.domain,
            if sw.hub { "hub" } else { "learning switch" }
        ));
    }

    let total = wanted.len();
    let mut done = 0usize;
    let t0 = Instant::now();
    for wave in waves {
        let mut queue: Vec<&MachinePlan> = wave.iter().filter_map(|n| plan.machine(n)).collect();
        queue.reverse();
        let mut booting: Vec<(&MachinePlan, Instant)> = Vec::new();
        while !queue.is_empty() || !booting.is_empty() {
            while booting.len() < parallel.max(1) {
                let Some(m) = queue.pop() else { break };
                if machine_alive(&state, &m.name) {
                    done += 1;
                    progress.event(&format!("[{done}/{total}] {} already running", m.name));
                    continue;
                }
                let i = State::entry(&mut state.machines, &m.name);
                backend.start_machine(plan, m, &mut |e| {
                    state.machines[i] = e;
                    state.save(plan)
                })?;
                booting.push((m, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(25));
            let mut still = Vec::new();
            for (m, t) in booting {
                if backend.is_ready(m) {
                    done += 1;
                    progress.event(&format!(
                        "[{done}/{total}] {} ready in {:.1} s (lab {:.1} s)",
                        m.name,
                        t.elapsed().as_secs_f64(),
                        t0.elapsed().as_secs_f64()
                    ));
                } else if !machine_alive(&state, &m.name) {
                    return Err(LabError::Run(format!(
                        "{} died while booting; console log {}:\n{}",
                        m.name,
                        m.dir.join("console.log").display(),
                        tail(&m.dir.join("console.log"), 15)
                    )));
                } else if t.elapsed() > boot_timeout {
                    return Err(LabError::Run(format!(
                        "{} not ready after {:?}; console log {}:\n{}",
                        m.name,
                        boot_timeout,
                        m.dir.join("console.log").display(),
                        tail(&m.dir.join("console.log"), 15)
                    )));
                } else {
                    still.push((m, t));
                }
            }
            booting = still;
        }
    }
    Ok(())
}

/// Last `n` lines of a file.
pub fn tail(p: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !pid_alive(*p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn kill_entry(e: &ProcEntry) {
    use umlkit_sys::process::{kill, kill_group, SIGKILL};
    if let Some(g) = e.pgid {
        let _ = kill_group(g, SIGKILL);
    }
    let pid = e.pid.or_else(|| e.pidfile.as_deref().and_then(read_pid));
    if let Some(p) = pid {
        let _ = kill(p, SIGKILL);
    }
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
    let mut waiting = Vec::new();
    for e in &targets {
        let alive = e.pid.is_some_and(pid_alive);
        if let (true, Some(m)) = (alive, plan.machine(&e.name)) {
            if backend.is_ready(m) {
                let spool = m.dir.join("exec");
                let f = spool.join("shutdown.cmd");
                let _ = std::fs::write(spool.join("shutdown.tmp"), boot::shutdown_command(&m.name))
                    .and_then(|_| std::fs::rename(spool.join("shutdown.tmp"), &f));
            } else if backend.mconsole(plan, m, "halt").is_err() {
                kill_entry(e);
            }
            waiting.push(e.clone());
        }
    }
    let pids: Vec<u32> = waiting.iter().filter_map(|e| e.pid).collect();
    if !wait_gone(&pids, timeout) {
        for e in &waiting {
            if e.pid.is_some_and(pid_alive) {
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
    state
        .machines
        .retain(|e| !targets.iter().any(|t| t.name == e.name));
    if state.machines.is_empty() {
        for e in &state.switches {
            kill_entry(e);
        }
        state.switches.clear();
        state.extra_switches.clear();
        state.extra_ifaces.clear();
    }
    state.save(plan)
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
    let pids: Vec<u32> = state.machines.iter().filter_map(|e| e.pid).collect();
    wait_gone(&pids, Duration::from_secs(5));
    state
        .machines
        .retain(|e| !(only.is_empty() || only.contains(&e.name)));
    if state.machines.is_empty() {
        for e in &state.switches {
            kill_entry(e);
        }
        state.switches.clear();
        state.extra_switches.clear();
        state.extra_ifaces.clear();
    }
    state.save(plan)
}

/// Kill whatever the lab still runs and remove its state folder (and the
/// state root if that is then empty). The lab folder is not touched.
pub fn clean(plan: &Plan) -> Result<()> {
    if plan.state_dir.exists() {
        crash(plan, &[])?;
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
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
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
}

/// One interface in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IfaceStatus {
    pub name: String,
    pub domain: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

/// Machine states and (for running machines) live addresses.
pub fn status(backend: &dyn Backend, plan: &Plan) -> Result<Vec<MachineStatus>> {
    let state = State::load(plan)?;
    let mut v = Vec::new();
    for m in &plan.machines {
        let pid = state
            .machines
            .iter()
            .find(|e| e.name == m.name)
            .and_then(|e| e.pid);
        let alive = pid.is_some_and(pid_alive);
        let st = match (pid.is_some(), alive, backend.is_ready(m)) {
            (false, _, _) => "stopped",
            (true, false, _) => "dead",
            (true, true, true) => "running",
            (true, true, false) => "booting",
        };
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
        if st == "running" {
            if let Ok(out) = backend.exec(m, "ip -o addr show", Duration::from_secs(5)) {
                for i in interfaces.iter_mut() {
                    i.addresses = out
                        .stdout
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
            state: st.into(),
            pid,
            mem_mb: m.mem_mb,
            interfaces,
        });
    }
    Ok(v)
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
    let ctl = if let Some(sw) = plan.switches.iter().find(|s| s.domain == domain) {
        if !state
            .switches
            .iter()
            .any(|e| e.name == domain && e.pid.is_some_and(pid_alive))
        {
            let i = State::entry(&mut state.switches, domain);
            backend.start_switch(plan, sw, &mut |e| {
                state.switches[i] = e;
                state.save(plan)
            })?;
        }
        sw.ctl()
    } else if let Some(dir) = state.extra_switches.get(domain) {
        dir.join("ctl")
    } else {
        let n = plan.switches.len() + state.extra_switches.len();
        let sw = SwitchPlan {
            domain: domain.to_string(),
            dir: plan.state_dir.join("sw").join(n.to_string()),
            pidfile: plan.state_dir.join("sw").join(format!("{n}.pid")),
            hub: plan.dialect == crate::model::Dialect::Netkit,
            capture: false,
            link: None,
        };
        let i = State::entry(&mut state.switches, domain);
        backend.start_switch(plan, &sw, &mut |e| {
            state.switches[i] = e;
            state.save(plan)
        })?;
        state
            .extra_switches
            .insert(domain.to_string(), sw.dir.clone());
        sw.ctl()
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
    backend.mconsole(
        plan,
        m,
        &format!("config {name}=daemon,{mac},unix,{}", ctl.display()),
    )?;
    state.extra_ifaces.push(ExtraIface {
        machine: machine.to_string(),
        name: name.clone(),
        domain: domain.to_string(),
        mac,
    });
    state.save(plan)?;
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
    let mut state = State::load(plan)?;
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
    state
        .extra_ifaces
        .retain(|x| !(x.machine == machine && x.name == name));
    state.save(plan)?;
    Ok(name)
}

/// Write `text` to stdout-like sinks without failing on a closed pipe.
pub fn emit(out: &mut dyn Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
}
