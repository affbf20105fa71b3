//! The lab backend on the guest crate: each machine is a supervised guest
//! (`guest::Store` rooted in the lab's state folder) booting the default
//! image (`image::default_image`) with the lab folder as a read-only disk
//! at `/hostlab` (live hostfs only with `--host-access`, see
//! [`crate::confine`]); the boot steps ([`crate::script::boot_script`]) and every
//! `lab exec` go through the guest's exec agent; stop runs the shutdown
//! scripts and then `Store::halt` (Ctrl-Alt-Del: init powers off).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use guest::{ConsoleMode, DiskSpec, GuestConfig, NetSpec, Store, Transport};

use crate::backend::{Backend, BootDone};
use crate::error::{guest_err, LabError, Result};
use crate::plan::SwitchPlan;
use crate::plan::{MachinePlan, Plan};
use crate::runner::{discover_switch, start_switch_process, ExecOutput, ProcEntry};
use crate::script;

/// Seconds a guest may take until its agent answers.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// File in the machine's state folder holding the startup error summary.
const STARTUP_ERRORS: &str = "startup.errors";

/// The command that builds the static exec agent the default image needs.
pub const AGENT_BUILD: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p umlkit-agent --target x86_64-unknown-linux-gnu";

/// Machines as guest-crate guests.
pub struct GuestBackend {
    store: Store,
    switch_cmd: Vec<String>,
    umlkit: Option<PathBuf>,
    /// Image per recipe (`None`: the default image), built by `prepare`.
    images: std::sync::Mutex<std::collections::BTreeMap<Option<String>, PathBuf>>,
    lab_disk: std::sync::OnceLock<()>,
    disk_lock: std::sync::Mutex<()>,
    /// Boot results of the machines this process started, so a start does
    /// not depend on writing `ready`/`boot.error` (a full state disk).
    boots: BootResults,
}

type BootResults = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<String, std::result::Result<(), String>>>,
>;

fn boot_result(b: &BootResults, name: &str) -> Option<std::result::Result<(), String>> {
    b.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

impl GuestBackend {
    /// Fails when the default image cannot be built here (no static exec
    /// agent: the error says how to build it) or there is no UML kernel.
    pub fn new(plan: &Plan, umlkit: Option<&Path>) -> Result<GuestBackend> {
        image::find_agent().map_err(|e| {
            LabError::Run(format!(
                "labs need the static exec agent umlkit-agent ({e}); build it with \
                 `{AGENT_BUILD}` (or point $UMLKIT_AGENT at a static umlkit-agent)"
            ))
        })?;
        guest::find_kernel(None).map_err(guest_err("labs need a UML kernel"))?;
        // Creates nothing: a concurrent lab command may be using the folders.
        let dir = plan.state_dir.join("g");
        let mut store = Store::at(dir.clone()).map_err(guest_err(format!(
            "cannot use the guest store {}",
            dir.display()
        )))?;
        if let Some(u) = umlkit {
            store = store.with_supervisor_exe(u.to_path_buf());
        }
        Ok(GuestBackend {
            store,
            switch_cmd: discover_switch(umlkit)?,
            umlkit: umlkit.map(Path::to_path_buf),
            images: Default::default(),
            lab_disk: std::sync::OnceLock::new(),
            disk_lock: std::sync::Mutex::new(()),
            boots: Default::default(),
        })
    }

    fn config(&self, plan: &Plan, m: &MachinePlan, image: &Path) -> GuestConfig {
        let mut cfg = GuestConfig::new(&m.name);
        cfg.mem_mb = m.mem_mb.max(guest::MIN_MEM_MB);
        cfg.disks.push(DiskSpec::new(image));
        if plan.host_access {
            cfg.hostfs = Some(plan.lab_dir.clone());
        } else {
            // The lab folder as a read-only disk (/dev/ubdb, mounted at
            // /hostlab by the boot steps); without a share the guest crate
            // points hostfs at a file, so no host path is reachable.
            cfg.disks.push(DiskSpec {
                readonly: true,
                ..DiskSpec::new(plan.lab_disk())
            });
        }
        cfg.console = ConsoleMode::Pty;
        let contiguous = m
            .interfaces
            .iter()
            .enumerate()
            .all(|(i, itf)| itf.index as usize == i);
        for itf in &m.interfaces {
            let sw = &plan.switches[itf.switch];
            // The vde transport asks for the planned port, so the switch's
            // per-port link settings and captures apply from the first
            // frame; plans without ports use the daemon transport.
            if itf.port > 0 && contiguous {
                cfg.nets.push(NetSpec {
                    transport: Transport::Vde {
                        dir: sw.dir.clone(),
                        port: Some(itf.port),
                    },
                    mac: crate::mac::parse_mac(&itf.mac).ok(),
                });
            } else if itf.port > 0 {
                cfg.extra_args.push(format!(
                    "eth{}=vde,{},{},{}",
                    itf.index,
                    sw.dir.display(),
                    itf.mac,
                    itf.port
                ));
            } else if contiguous {
                cfg.nets.push(NetSpec {
                    transport: Transport::Daemon { ctl: sw.ctl() },
                    mac: crate::mac::parse_mac(&itf.mac).ok(),
                });
            } else {
                cfg.extra_args.push(format!(
                    "eth{}=daemon,{},unix,{}",
                    itf.index,
                    itf.mac,
                    sw.ctl().display()
                ));
            }
            // Lab interfaces are up before any startup script runs, as in
            // Kathará's containers: public labs only `ip address add`.
            // (a bridged machine's NAT interface: a DHCP lease)
            cfg.extra_args.push(format!(
                "umlkit.ip.eth{}={}",
                itf.index,
                if itf.dhcp { "dhcp" } else { "up" }
            ));
        }
        cfg.extra_args.extend(m.kernel_args.iter().cloned());
        cfg
    }
}

fn to_output(o: guest::ExecOutput) -> ExecOutput {
    ExecOutput {
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.code,
    }
}

impl GuestBackend {
    /// The guest store of the lab's machines (exec sessions, e.g. the web
    /// view's terminals).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Run a shell command line in the machine (also [`Backend::exec`]).
    pub fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput> {
        self.store
            .exec(&m.name, &script::user_command(cmd), timeout)
            .map(to_output)
            .map_err(guest_err(format!("{}: exec failed", m.name)))
    }

    /// `umlkit console MACHINE` for this lab, when the umlkit executable is
    /// known.
    pub fn console_command(&self, _plan: &Plan, m: &MachinePlan) -> Option<Command> {
        let exe = self.umlkit.clone()?;
        let mut c = Command::new(exe);
        c.env("UMLKIT_STATE_DIR", self.store.root())
            .arg("console")
            .arg(&m.name);
        Some(c)
    }
}

impl Backend for GuestBackend {
    fn name(&self) -> &'static str {
        "guest"
    }

    fn switch_cmd(&self) -> Vec<String> {
        self.switch_cmd.clone()
    }

    /// Start a switch; `rec` is saved before the process starts, then filled.
    fn start_switch(
        &self,
        plan: &Plan,
        sw: &SwitchPlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()> {
        start_switch_process(&self.switch_cmd, plan, sw, rec)
    }

    /// True once the machine finished its boot steps.
    fn is_ready(&self, m: &MachinePlan) -> bool {
        match boot_result(&self.boots, &m.name) {
            Some(r) => r.is_ok(),
            None => m.dir.join("ready").exists(),
        }
    }

    /// The startup error summary of a ready machine (see
    /// [`script::boot_script`]), `None` when its startup wrote no errors.
    fn startup_errors(&self, m: &MachinePlan) -> Option<String> {
        std::fs::read_to_string(m.dir.join(STARTUP_ERRORS))
            .ok()
            .filter(|s| !s.trim().is_empty())
    }

    /// The kernel panicked before it ran init: its console has the panic
    /// and not the kernel's "Run ... as init process" line.
    fn died_before_init(&self, m: &MachinePlan) -> Option<String> {
        let log = std::fs::read_to_string(self.console_log(m)).ok()?;
        guest::panic_before_init(&log)
    }

    /// Why the machine's boot failed (set by the asynchronous boot steps).
    fn boot_failure(&self, m: &MachinePlan) -> Option<String> {
        match boot_result(&self.boots, &m.name) {
            Some(r) => r.err(),
            None => std::fs::read_to_string(m.dir.join("boot.error")).ok(),
        }
    }

    /// Build (or find in the image cache) every image the plan's machines
    /// boot: the default image, and Debian lab images with mmdebstrap's
    /// progress on stderr the first time; and, unless the lab has host
    /// access, the lab disk (once per backend).
    fn prepare(&self, plan: &Plan) -> Result<()> {
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        for m in &plan.machines {
            if images.contains_key(&m.image) {
                continue;
            }
            let img =
                match &m.image {
                    None => image::default_image(&image::DefaultImageOpts::default()).map_err(
                        |source| LabError::Image {
                            what: "cannot build the default image".into(),
                            source,
                        },
                    )?,
                    Some(r) => {
                        let opts = image::debian::BuildOpts::default();
                        let (img, built) =
                            image::debian::build(r, &opts, &mut |l| eprintln!("image {r}: {l}"))
                                .map_err(|source| LabError::Image {
                                    what: format!("cannot build image {r}"),
                                    source,
                                })?;
                        if built {
                            eprintln!("image {r}: built {}", img.path.display());
                        }
                        img.path
                    }
                };
            images.insert(m.image.clone(), img);
        }
        if !plan.host_access && self.lab_disk.get().is_none() {
            let _guard = self.disk_lock.lock().unwrap_or_else(|p| p.into_inner());
            if self.lab_disk.get().is_none() {
                std::fs::create_dir_all(&plan.state_dir)
                    .map_err(crate::error::io_err("cannot create", &plan.state_dir))?;
                crate::confine::build_lab_disk(&plan.lab_dir, &plan.lab_disk())?;
                let _ = self.lab_disk.set(());
            }
        }
        Ok(())
    }

    fn start_machine(
        &self,
        plan: &Plan,
        m: &MachinePlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
        done: BootDone,
    ) -> Result<()> {
        self.prepare(plan)?;
        let image = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&m.image)
            .cloned()
            .ok_or_else(|| LabError::Run(format!("{}: image not prepared", m.name)))?;
        self.boots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&m.name);
        let _ = std::fs::remove_dir_all(&m.dir);
        umlkit_sys::private::private_dir(&m.dir, true)?;
        let cfg = self.config(plan, m, &image);
        let mut e = ProcEntry {
            name: m.name.clone(),
            ..Default::default()
        };
        rec(e.clone())?;
        let info = self
            .store
            .start(&cfg)
            .map_err(guest_err(format!("{}: cannot start", m.name)))?;
        e.pid = Some(info.pid);
        e.start = info.pid_start;
        e.pgid = Some(info.pgid);
        e.extra_pids = vec![info.supervisor_pid];
        e.extra_starts = vec![info.supervisor_start];
        rec(e)?;
        // Boot steps run asynchronously and end in `done` (the runner waits
        // on it); `ready`/`boot.error` are for later commands.
        let store = self.store.clone();
        let name = m.name.clone();
        let dir = m.dir.clone();
        let script = script::boot_script(plan, m);
        let console = self.store.paths(&m.name).console_log();
        let boots = self.boots.clone();
        std::thread::spawn(move || {
            let r = store
                .wait_ready(&name, READY_TIMEOUT)
                .map_err(|e| crate::error::chain(&e))
                .and_then(|_| {
                    store
                        .exec(&name, &["sh", "-c", &script], READY_TIMEOUT)
                        .map_err(|e| crate::error::chain(&e))
                });
            // `ready` is what `lab status` reads later: failing to write it
            // fails the boot, naming the file
            let write = |f: &str, data: &[u8]| {
                let p = dir.join(f);
                umlkit_sys::private::write_atomic(&p, data)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))
            };
            let r = match r {
                Ok(o) => {
                    let mut log = o.stdout.clone();
                    log.extend_from_slice(&o.stderr);
                    write("boot.log", &log).and_then(|()| {
                        if o.code == 0 {
                            if !o.stdout.is_empty() {
                                write(STARTUP_ERRORS, &o.stdout)?;
                            }
                            write("ready", b"")
                        } else {
                            let msg = String::from_utf8_lossy(&o.stderr).into_owned();
                            let _ = write("boot.error", msg.as_bytes());
                            Err(msg)
                        }
                    })
                }
                Err(e) => {
                    let tail = crate::runner::tail(&console, 10);
                    let msg = format!("{e}\n{tail}");
                    let _ = write("boot.error", msg.as_bytes());
                    Err(msg)
                }
            };
            boots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, r.clone());
            done.finish(r);
        });
        Ok(())
    }

    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput> {
        GuestBackend::exec(self, m, cmd, timeout)
    }

    fn mconsole(&self, _plan: &Plan, m: &MachinePlan, cmd: &str) -> Result<String> {
        self.store
            .mconsole(&m.name, cmd)
            .map(|r| r.text)
            .map_err(guest_err(format!("{}: mconsole '{cmd}' failed", m.name)))
    }

    fn shutdown(&self, _plan: &Plan, m: &MachinePlan, timeout: Duration) {
        if self.is_ready(m) {
            let scripts = script::shutdown_scripts(&m.name);
            let _ = self.store.exec(&m.name, &["sh", "-c", &scripts], timeout);
        }
        let _ = self
            .store
            .halt(&m.name, timeout.min(Duration::from_secs(10)));
    }

    fn console_log(&self, m: &MachinePlan) -> PathBuf {
        self.store.paths(&m.name).console_log()
    }
}
