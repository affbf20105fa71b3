//! What the runner needs from whatever runs the machines and switches: the
//! [`Backend`] trait ([`crate::guest_backend::GuestBackend`] boots real
//! guests; the unit tests script a fake), the [`BootDone`] handle through
//! which a backend reports a machine's boot result to the runner (a channel,
//! not a file the runner polls), and [`Interrupt`], which stops a start
//! between machines.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Result;
use crate::plan::{MachinePlan, Plan, SwitchPlan};
use crate::runner::{ExecOutput, ProcEntry};

/// Runs a lab's machines and switches for [`crate::runner`].
///
/// `rec` callbacks save a [`ProcEntry`] to the lab state: called once before
/// any process starts (so an interrupted start can still be cleaned) and
/// again with the pids filled in.
pub trait Backend: Sync {
    /// Short name for messages.
    fn name(&self) -> &'static str;

    /// Build or find whatever the plan's machines boot (images, lab disk).
    fn prepare(&self, plan: &Plan) -> Result<()>;

    /// The command that runs the lab's switches (`umlkit switch` or
    /// `vde_switch`); captures need umlkit's. Empty: no switch program.
    fn switch_cmd(&self) -> Vec<String> {
        Vec::new()
    }

    /// Start a switch and return once it accepts connections.
    fn start_switch(
        &self,
        plan: &Plan,
        sw: &SwitchPlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()>;

    /// Launch a machine and return once its processes run; its boot steps
    /// go on asynchronously and end with exactly one `done.finish(..)`.
    fn start_machine(
        &self,
        plan: &Plan,
        m: &MachinePlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
        done: BootDone,
    ) -> Result<()>;

    /// True once the machine finished its boot steps (also for machines a
    /// former command started: read from the machine's state folder).
    fn is_ready(&self, m: &MachinePlan) -> bool;

    /// Why the machine's boot steps failed, if they did.
    fn boot_failure(&self, m: &MachinePlan) -> Option<String>;

    /// Why the machine's kernel died before it ran any program of the
    /// guest (a panic during the kernel's own start, e.g. a failed
    /// allocation mounting the root filesystem): nothing in the machine
    /// ran, so booting it again is safe. `None` for any other failure.
    fn died_before_init(&self, _m: &MachinePlan) -> Option<String> {
        None
    }

    /// The startup error summary of a ready machine, `None` when its
    /// startup wrote no errors.
    fn startup_errors(&self, m: &MachinePlan) -> Option<String>;

    /// Run a shell command line in the machine.
    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput>;

    /// Send an mconsole command to the machine's kernel.
    fn mconsole(&self, plan: &Plan, m: &MachinePlan, cmd: &str) -> Result<String>;

    /// Run the shutdown scripts and power the machine off (bounded).
    fn shutdown(&self, plan: &Plan, m: &MachinePlan, timeout: Duration);

    /// The machine's console log file.
    fn console_log(&self, m: &MachinePlan) -> PathBuf;
}

/// What the runner's start loop waits on.
#[derive(Debug)]
pub(crate) enum BootEvent {
    /// Machine `name` finished its boot steps (`Err`: why they failed).
    Done {
        name: String,
        result: std::result::Result<(), String>,
    },
    /// [`Interrupt::trigger`] was called.
    Interrupted,
}

/// Reports one machine's boot result to the runner waiting for it. Dropped
/// without [`BootDone::finish`] (a boot thread that panicked), it reports a
/// failure, so the runner never waits for a result that cannot come.
#[derive(Debug)]
pub struct BootDone {
    name: String,
    tx: Option<Sender<BootEvent>>,
}

impl BootDone {
    pub(crate) fn new(name: &str, tx: Sender<BootEvent>) -> BootDone {
        BootDone {
            name: name.to_string(),
            tx: Some(tx),
        }
    }

    /// The machine this result is for.
    pub fn machine(&self) -> &str {
        &self.name
    }

    /// Report the result: `Ok` ready, `Err` why the boot steps failed.
    pub fn finish(mut self, result: std::result::Result<(), String>) {
        self.send(result);
    }

    fn send(&mut self, result: std::result::Result<(), String>) {
        if let Some(tx) = self.tx.take() {
            // the runner may be gone (interrupted, or failed on another
            // machine): nobody is waiting then
            let _ = tx.send(BootEvent::Done {
                name: std::mem::take(&mut self.name),
                result,
            });
        }
    }
}

impl Drop for BootDone {
    fn drop(&mut self) {
        self.send(Err("its boot steps ended without a result".into()));
    }
}

/// Stops a [`crate::runner::start_until`] between machines (Ctrl-C): no
/// machine is started after [`Interrupt::trigger`], and the start returns
/// [`crate::LabError::Interrupted`] naming the machines it had started.
/// Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<Mutex<InterruptInner>>);

#[derive(Debug, Default)]
struct InterruptInner {
    set: bool,
    waiters: Vec<Sender<BootEvent>>,
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Ask every start watching this flag to stop; a start that begins
    /// later stops before its first machine.
    pub fn trigger(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.set = true;
        for w in g.waiters.drain(..) {
            let _ = w.send(BootEvent::Interrupted);
        }
    }

    /// True once [`Interrupt::trigger`] was called.
    pub fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).set
    }

    /// Deliver the interruption to `tx` too (at once when already set).
    pub(crate) fn watch(&self, tx: Sender<BootEvent>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.set {
            let _ = tx.send(BootEvent::Interrupted);
        } else {
            g.waiters.push(tx);
        }
    }
}
