//! A scripted [`Backend`] for the runner's unit tests, and the wave
//! scheduler's tests on it: no kernels, no processes. The fake records every
//! call (and the runner's progress events) in one log, so tests assert on
//! the order of calls, never on timing. Its "processes" are the test process
//! itself (alive, never killed: these tests never call stop or crash).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, BootDone, Interrupt};
use crate::error::{LabError, Result};
use crate::plan::{MachinePlan, Plan, SwitchPlan};
use crate::runner::{self, ExecOutput, ProcEntry, ProcRef};

/// How a machine's start goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Launches, then reports ready.
    Ready,
    /// Launches, then its boot steps fail with this text.
    BootFails(String),
    /// `start_machine` itself fails with this text.
    StartError(String),
    /// Launches and never reports (until [`Fake::release`]).
    Hang,
    /// Launches and reports ready once N more machines were launched after
    /// it (steps of the scheduler, not time).
    ReadyAfter(usize),
    /// Its kernel dies before init at each of its first N launches (its
    /// process is gone, the boot fails with this text), then it is ready.
    DiesBeforeInit(usize, String),
}

/// The call log, shared by the fake and the test's progress callback.
#[derive(Default, Clone)]
pub(crate) struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    pub(crate) fn push(&self, s: String) {
        self.0 .0.lock().unwrap().push(s);
        self.0 .1.notify_all();
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }
    /// Wait (bounded) until a line equal to `line` is logged.
    pub(crate) fn wait_for(&self, line: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.0 .0.lock().unwrap();
        loop {
            if g.iter().any(|l| l == line) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.0 .1.wait_timeout(g, left).unwrap().0;
        }
    }
    /// Index of the first line equal to `line`.
    pub(crate) fn pos(&self, line: &str) -> Option<usize> {
        self.lines().iter().position(|l| l == line)
    }
}

/// The fake backend.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) log: Log,
    outcomes: Mutex<HashMap<String, Outcome>>,
    held: Mutex<Vec<BootDone>>,
    /// Machines waiting for N more launches: (launches left, report).
    after: Mutex<Vec<(usize, BootDone)>>,
    results: Mutex<HashMap<String, std::result::Result<(), String>>>,
    /// Machines whose last launch died before init, with the cause.
    early_deaths: Mutex<HashMap<String, String>>,
}

impl Fake {
    pub(crate) fn new(outcomes: &[(&str, Outcome)]) -> Fake {
        let f = Fake::default();
        f.outcomes
            .lock()
            .unwrap()
            .extend(outcomes.iter().map(|(n, o)| (n.to_string(), o.clone())));
        f
    }

    /// Report a hanging machine ready now.
    pub(crate) fn release(&self, name: &str) {
        let mut held = self.held.lock().unwrap();
        if let Some(i) = held.iter().position(|d| d.machine() == name) {
            let d = held.remove(i);
            self.results.lock().unwrap().insert(name.into(), Ok(()));
            d.finish(Ok(()));
        }
    }

    /// An entry whose process is gone: a child that already exited and
    /// was reaped (its pid and start time no longer name a live process).
    fn dead_entry(name: &str) -> ProcEntry {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        let start = umlkit_sys::process::start_time(pid);
        c.wait().unwrap();
        ProcEntry {
            name: name.into(),
            pid: Some(pid),
            start: start.or(Some(u64::MAX)),
            ..Default::default()
        }
    }

    fn running_entry(name: &str) -> ProcEntry {
        let me = ProcRef::me();
        ProcEntry {
            name: name.into(),
            pid: Some(me.pid),
            start: me.start,
            ..Default::default()
        }
    }
}

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn prepare(&self, _plan: &Plan) -> Result<()> {
        self.log.push("prepare".into());
        Ok(())
    }

    fn start_switch(
        &self,
        _plan: &Plan,
        sw: &SwitchPlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
    ) -> Result<()> {
        self.log.push(format!("switch {}", sw.domain));
        rec(ProcEntry {
            name: sw.domain.clone(),
            ..Default::default()
        })?;
        rec(Fake::running_entry(&sw.domain))
    }

    fn start_machine(
        &self,
        _plan: &Plan,
        m: &MachinePlan,
        rec: &mut dyn FnMut(ProcEntry) -> Result<()>,
        done: BootDone,
    ) -> Result<()> {
        self.log.push(format!("start {}", m.name));
        // this launch is a step for the machines counting launches
        let due: Vec<BootDone> = {
            let mut after = self.after.lock().unwrap();
            after.iter_mut().for_each(|(n, _)| *n -= 1);
            let (due, wait): (Vec<_>, Vec<_>) = after.drain(..).partition(|(n, _)| *n == 0);
            *after = wait;
            due.into_iter().map(|(_, d)| d).collect()
        };
        for d in due {
            self.results
                .lock()
                .unwrap()
                .insert(d.machine().to_string(), Ok(()));
            d.finish(Ok(()));
        }
        let outcome = self
            .outcomes
            .lock()
            .unwrap()
            .get(&m.name)
            .cloned()
            .unwrap_or(Outcome::Ready);
        if let Outcome::StartError(e) = outcome {
            drop(done); // the start failed: no boot result will come
            return Err(LabError::Run(format!("{}: {e}", m.name)));
        }
        rec(ProcEntry {
            name: m.name.clone(),
            ..Default::default()
        })?;
        if let Outcome::DiesBeforeInit(n, why) = &outcome {
            if *n > 0 {
                self.outcomes
                    .lock()
                    .unwrap()
                    .insert(m.name.clone(), Outcome::DiesBeforeInit(n - 1, why.clone()));
                rec(Fake::dead_entry(&m.name))?;
                self.early_deaths
                    .lock()
                    .unwrap()
                    .insert(m.name.clone(), why.clone());
                self.results
                    .lock()
                    .unwrap()
                    .insert(m.name.clone(), Err(why.clone()));
                done.finish(Err(why.clone()));
                return Ok(());
            }
        }
        self.early_deaths.lock().unwrap().remove(&m.name);
        rec(Fake::running_entry(&m.name))?;
        match outcome {
            Outcome::Ready => {
                self.results.lock().unwrap().insert(m.name.clone(), Ok(()));
                done.finish(Ok(()));
            }
            Outcome::BootFails(why) => {
                self.results
                    .lock()
                    .unwrap()
                    .insert(m.name.clone(), Err(why.clone()));
                done.finish(Err(why));
            }
            Outcome::Hang => {
                self.held.lock().unwrap().push(done);
                self.log.push(format!("hanging {}", m.name));
            }
            Outcome::DiesBeforeInit(..) => {
                self.results.lock().unwrap().insert(m.name.clone(), Ok(()));
                done.finish(Ok(()));
            }
            Outcome::ReadyAfter(0) => {
                self.results.lock().unwrap().insert(m.name.clone(), Ok(()));
                done.finish(Ok(()));
            }
            Outcome::ReadyAfter(n) => self.after.lock().unwrap().push((n, done)),
            Outcome::StartError(_) => unreachable!(),
        }
        Ok(())
    }

    fn is_ready(&self, m: &MachinePlan) -> bool {
        matches!(self.results.lock().unwrap().get(&m.name), Some(Ok(())))
    }

    fn boot_failure(&self, m: &MachinePlan) -> Option<String> {
        self.results
            .lock()
            .unwrap()
            .get(&m.name)
            .and_then(|r| r.clone().err())
    }

    fn died_before_init(&self, m: &MachinePlan) -> Option<String> {
        self.early_deaths.lock().unwrap().get(&m.name).cloned()
    }

    fn startup_errors(&self, _m: &MachinePlan) -> Option<String> {
        None
    }

    fn exec(&self, m: &MachinePlan, cmd: &str, _timeout: Duration) -> Result<ExecOutput> {
        self.log.push(format!("exec {} {cmd}", m.name));
        Ok(ExecOutput::default())
    }

    fn mconsole(&self, _plan: &Plan, m: &MachinePlan, cmd: &str) -> Result<String> {
        self.log.push(format!("mconsole {} {cmd}", m.name));
        Ok(String::new())
    }

    fn shutdown(&self, _plan: &Plan, m: &MachinePlan, _timeout: Duration) {
        self.log.push(format!("shutdown {}", m.name));
    }

    fn console_log(&self, m: &MachinePlan) -> PathBuf {
        m.dir.join("console.log")
    }
}

/// A lab folder (lab.conf, lab.dep) planned with its state under `root`.
fn lab(root: &Path, conf: &str, dep: &str) -> Plan {
    let dir = root.join("lab");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lab.conf"), conf).unwrap();
    if !dep.is_empty() {
        std::fs::write(dir.join("lab.dep"), dep).unwrap();
    }
    let loaded = crate::load::load_lab(&dir, None).unwrap();
    let st = root.join("st");
    umlkit_sys::private::private_dir(&st, true).unwrap();
    crate::plan::plan(&loaded.lab, &dir, &st.join("lab")).unwrap()
}

/// Run `start` on the fake, progress events logged as `progress TEXT`.
fn run(fake: &Fake, plan: &Plan, parallel: usize, boot_timeout: Duration) -> Result<()> {
    run_until(fake, plan, parallel, boot_timeout, &Interrupt::new())
}

fn run_until(
    fake: &Fake,
    plan: &Plan,
    parallel: usize,
    boot_timeout: Duration,
    interrupt: &Interrupt,
) -> Result<()> {
    let log = fake.log.clone();
    let mut progress = |t: &str| log.push(format!("progress {t}"));
    runner::start_until(
        fake,
        plan,
        &plan.waves,
        parallel,
        boot_timeout,
        &mut progress,
        interrupt,
    )
}

/// True when the progress line saying `name` is ready comes before `line`.
fn ready_before(log: &[String], name: &str, line: &str) -> bool {
    let ready = log
        .iter()
        .position(|l| l.starts_with("progress [") && l.contains(&format!("] {name} ready in")));
    let at = log.iter().position(|l| l == line);
    matches!((ready, at), (Some(r), Some(a)) if r < a)
}

/// Most machines launched and not yet seen ready at any point of the log.
fn max_booting(log: &[String]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for l in log {
        if l.starts_with("start ") {
            now += 1;
            max = max.max(now);
        } else if l.starts_with("progress [") && l.contains(" ready in ") {
            now -= 1;
        }
    }
    max
}

const LONG: Duration = Duration::from_secs(60);

/// lab.dep: no machine is launched before every machine it depends on
/// reported ready; switches come before any machine. Machines of one wave
/// share a batch (parallel 4), so a scheduler that ignored the waves
/// would launch the dependents in the first batch.
#[test]
fn lab_dep_order_is_honoured_on_the_recorded_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(
        tmp.path(),
        "a[0]=A\nb[0]=A\nc[0]=B\nd[0]=B\n",
        "c: a b\nd: c\n",
    );
    assert_eq!(plan.waves.len(), 3, "{:?}", plan.waves);
    let fake = Fake::new(&[]);
    run(&fake, &plan, 4, LONG).unwrap();
    let log = fake.log.lines();
    for line in ["switch A", "switch B"] {
        let sw = log.iter().position(|l| l == line).expect(line);
        let first = log.iter().position(|l| l.starts_with("start ")).unwrap();
        assert!(sw < first, "{log:#?}");
    }
    for (dep, m) in [("a", "c"), ("b", "c"), ("c", "d")] {
        assert!(
            ready_before(&log, dep, &format!("start {m}")),
            "{m} started before {dep} was ready: {log:#?}"
        );
    }
    // and the first wave really is one batch
    assert_eq!(max_booting(&log[..]), 2, "{log:#?}");
    let state = runner::State::load(&plan).unwrap();
    assert_eq!(state.machines.len(), 4);
}

/// A boot failure mid-wave ends the start: the error names the machine and
/// its cause, and no machine of a later wave is launched.
#[test]
fn a_boot_failure_mid_wave_starts_no_dependent() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nb[0]=A\nc[0]=A\n", "c: a b\n");
    let fake = Fake::new(&[("b", Outcome::BootFails("ifconfig: bad address".into()))]);
    let e = run(&fake, &plan, 2, LONG).unwrap_err().to_string();
    assert!(
        e.starts_with("b: boot failed: ifconfig: bad address"),
        "{e}"
    );
    assert!(fake.log.pos("start c").is_none(), "{:#?}", fake.log.lines());
}

/// A kernel that died before init (nothing of the machine ran) is booted
/// again once, saying why; the other machines go on meanwhile. A second
/// early death ends the start like any boot failure.
#[test]
fn a_kernel_dying_before_init_is_booted_again_once() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nb[0]=A\nc[0]=A\n", "c: a b\n");
    let cause = "VFS: Cannot open root device \"ubda\" or unknown-block(98,0): error -12";
    let fake = Fake::new(&[("b", Outcome::DiesBeforeInit(1, cause.into()))]);
    run(&fake, &plan, 2, LONG).unwrap();
    let log = fake.log.lines();
    assert_eq!(
        log.iter().filter(|l| *l == "start b").count(),
        2,
        "{log:#?}"
    );
    let again = format!("progress b: its kernel stopped before init ({cause}); booting it again");
    assert!(fake.log.pos(&again).is_some(), "{log:#?}");
    assert!(ready_before(&log, "b", "start c"), "{log:#?}");
    let state = runner::State::load(&plan).unwrap();
    assert!(state.machines.iter().all(|e| e.alive()), "{state:?}");

    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nb[0]=A\n", "");
    let fake = Fake::new(&[("b", Outcome::DiesBeforeInit(2, cause.into()))]);
    let e = run(&fake, &plan, 2, LONG).unwrap_err().to_string();
    assert!(e.starts_with(&format!("b: boot failed: {cause}")), "{e}");
    assert_eq!(
        fake.log.lines().iter().filter(|l| *l == "start b").count(),
        2
    );
}

/// A machine whose launch itself fails: the error is the backend's, naming
/// the machine, and the next wave is not launched.
#[test]
fn a_start_error_mid_wave_starts_no_dependent() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nb[0]=A\nc[0]=A\n", "c: a b\n");
    let fake = Fake::new(&[("a", Outcome::StartError("no memory".into()))]);
    let e = run(&fake, &plan, 2, LONG).unwrap_err().to_string();
    assert_eq!(e, "a: no memory");
    assert!(fake.log.pos("start c").is_none(), "{:#?}", fake.log.lines());
}

/// At most `parallel` machines are booting at once; a slot frees when a
/// machine reports ready.
#[test]
fn the_parallelism_limit_is_respected() {
    let tmp = tempfile::tempdir().unwrap();
    let conf: String = (0..6).map(|i| format!("m{i}[0]=A\n")).collect();
    let plan = lab(tmp.path(), &conf, "");
    let fake = Fake::new(&[]);
    run(&fake, &plan, 2, LONG).unwrap();
    let log = fake.log.lines();
    assert_eq!(log.iter().filter(|l| l.starts_with("start ")).count(), 6);
    assert_eq!(max_booting(&log), 2, "{log:#?}");
}

/// A machine that never reports holds its slot: the others go through the
/// remaining one, and the start ends at the boot timeout naming it.
#[test]
fn a_hanging_machine_holds_one_slot_and_times_out_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "h[0]=A\nm1[0]=A\nm2[0]=A\nm3[0]=A\n", "");
    let fake = Fake::new(&[("h", Outcome::Hang)]);
    let t = Instant::now();
    let e = run(&fake, &plan, 2, Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("h not ready after 300ms"), "{e}");
    assert!(t.elapsed() < LONG);
    let log = fake.log.lines();
    for m in ["m1", "m2", "m3"] {
        let ready = format!("] {m} ready in");
        assert!(
            log.iter()
                .any(|l| l.starts_with("progress [") && l.contains(&ready)),
            "{m} never ready: {log:#?}"
        );
    }
    assert_eq!(max_booting(&log), 2, "{log:#?}");
}

/// An interrupted start (Ctrl-C): once the flag is set no machine is
/// launched, and the error names the machines the start had launched,
/// ready or still booting.
#[test]
fn an_interrupted_start_launches_nothing_more_and_names_what_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nh[0]=A\nb[0]=A\n", "b: a h\n");
    let fake = Fake::new(&[("h", Outcome::Hang)]);
    let interrupt = Interrupt::new();
    std::thread::scope(|sc| {
        let runner = sc.spawn(|| run_until(&fake, &plan, 4, LONG, &interrupt));
        assert!(
            fake.log.wait_for("hanging h", Duration::from_secs(10)),
            "{:#?}",
            fake.log.lines()
        );
        interrupt.trigger();
        let r = runner.join().unwrap();
        match r {
            Err(LabError::Interrupted { ready, booting }) => {
                assert_eq!(booting, vec!["h".to_string()]);
                assert_eq!(ready, vec!["a".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    });
    assert!(fake.log.pos("start b").is_none(), "{:#?}", fake.log.lines());
    // releasing the hung machine afterwards starts nothing either
    fake.release("h");
    assert!(fake.log.pos("start b").is_none());
    // a start interrupted before it began launches nothing at all
    let fake2 = Fake::new(&[]);
    let e = run_until(&fake2, &plan, 4, LONG, &interrupt).unwrap_err();
    assert!(matches!(e, LabError::Interrupted { .. }), "{e}");
    assert!(fake2.log.lines().iter().all(|l| !l.starts_with("start ")));
}

/// A hung machine released later lets its dependents start: readiness
/// comes from the backend's report, whenever it comes.
#[test]
fn a_late_ready_report_releases_the_next_wave() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nb[0]=A\n", "b: a\n");
    let fake = Fake::new(&[("a", Outcome::Hang)]);
    std::thread::scope(|sc| {
        let runner = sc.spawn(|| run(&fake, &plan, 4, LONG));
        assert!(fake.log.wait_for("hanging a", Duration::from_secs(10)));
        assert!(fake.log.pos("start b").is_none());
        fake.release("a");
        runner.join().unwrap().unwrap();
    });
    let log = fake.log.lines();
    assert!(ready_before(&log, "a", "start b"), "{log:#?}");
}

/// A machine scripted ready only after two more launches keeps its slot
/// meanwhile (machines launch in name order: `a` first): the others go
/// through the second slot, and `a` is reported ready after the second of
/// them was launched.
#[test]
fn a_machine_ready_after_n_launches_keeps_its_slot_until_then() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = lab(tmp.path(), "a[0]=A\nm1[0]=A\nm2[0]=A\nm3[0]=A\n", "");
    let fake = Fake::new(&[("a", Outcome::ReadyAfter(2))]);
    run(&fake, &plan, 2, LONG).unwrap();
    let log = fake.log.lines();
    assert!(ready_before(&log, "m1", "start m2"), "{log:#?}");
    let a_ready = log
        .iter()
        .position(|l| l.contains("] a ready in"))
        .expect("a ready");
    assert!(fake.log.pos("start m2").unwrap() < a_ready, "{log:#?}");
    assert_eq!(max_booting(&log), 2, "{log:#?}");
}
