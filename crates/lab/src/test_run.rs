//! `lab test`: the checks of `lab.test.toml` and Netkit's `_test/` folder
//! (default and user tests compared with signatures), run in the machines.
//! Commands run through the `exec` function passed in (the guest backend,
//! or a fake in tests); results are reported as [`TestEvent`]s for the
//! caller to show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::check::{compare_signature, Check, CheckFile, NETKIT_DEFAULT_TEST};
use crate::error::{io_err, LabError, Result};
use crate::plan::{MachinePlan, Plan};
use crate::runner::ExecOutput;

/// Something `lab test` found, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEvent {
    /// The checks of this machine (from lab.test.toml) follow.
    Machine(String),
    /// A check of lab.test.toml: passed, or failed with why.
    Check {
        title: String,
        verdict: std::result::Result<(), String>,
    },
    /// A `_test/` test (`default` or `user`) of a machine compared with its
    /// signature.
    Signature {
        machine: String,
        kind: &'static str,
        verdict: std::result::Result<(), String>,
    },
    /// A machine is not running: its `_test/` tests fail.
    NotRunning(String),
    /// `--write-signatures`: a signature was written.
    Wrote { machine: String, path: PathBuf },
}

/// Counts of a `lab test` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestSummary {
    pub passed: usize,
    pub failed: usize,
}

/// How `lab test` reaches the machines: whether one runs, and running a
/// shell command line in it with a timeout.
pub trait Machines {
    fn alive(&self, name: &str) -> bool;
    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput>;
}

/// The lab's running machines: the guest backend and the state saved at
/// start.
pub struct Live<'a> {
    backend: &'a crate::runner::GuestBackend,
    state: crate::runner::State,
}

impl<'a> Live<'a> {
    pub fn new(plan: &Plan, backend: &'a crate::runner::GuestBackend) -> Result<Live<'a>> {
        Ok(Live {
            backend,
            state: crate::runner::State::load(plan)?,
        })
    }
}

impl Machines for Live<'_> {
    fn alive(&self, name: &str) -> bool {
        crate::runner::machine_alive(&self.state, name)
    }
    fn exec(&self, m: &MachinePlan, cmd: &str, timeout: Duration) -> Result<ExecOutput> {
        self.backend.exec(m, cmd, timeout)
    }
}

/// Run the lab's tests. `_test/` results are kept in the state folder
/// (`test-results/`); with `write_signatures` the outputs become the
/// signatures (written inside the lab folder, never through a symlink).
/// Every lab path is resolved inside the (untrusted) lab folder.
pub fn run(
    plan: &Plan,
    machines: &dyn Machines,
    write_signatures: bool,
    event: &mut dyn FnMut(TestEvent),
) -> Result<TestSummary> {
    let mut sum = TestSummary::default();
    let check_file = plan.lab_dir.join("lab.test.toml");
    let test_dir = plan.lab_dir.join("_test");
    if !check_file.is_file() && !test_dir.is_dir() {
        return Err(LabError::Invalid {
            file: plan.lab_dir.clone(),
            rule: "no lab.test.toml and no _test/ folder: nothing to test".into(),
        });
    }
    if check_file.is_file() {
        let real = crate::confine::resolve_inside(&plan.lab_dir, Path::new("lab.test.toml"))?;
        let text = std::fs::read_to_string(&real).map_err(io_err("cannot read", &check_file))?;
        let cf = CheckFile::from_toml(&text, &check_file)?;
        let checks = cf.checks();
        let mut by_machine: BTreeMap<&str, Vec<&Check>> = BTreeMap::new();
        for c in &checks {
            by_machine.entry(c.machine.as_str()).or_default().push(c);
        }
        for (mname, cs) in by_machine {
            event(TestEvent::Machine(mname.to_string()));
            let m = plan.machine(mname);
            for c in cs {
                let verdict = match m {
                    None => Err(format!("no machine {mname} in the lab")),
                    Some(_) if !machines.alive(mname) => Err("machine not running".into()),
                    Some(m) => match machines.exec(m, &c.command, Duration::from_secs(30)) {
                        Ok(o) => c.judge(o.code, &o.stdout),
                        Err(e) => Err(e.to_string()),
                    },
                };
                if verdict.is_ok() {
                    sum.passed += 1;
                } else {
                    sum.failed += 1;
                }
                event(TestEvent::Check {
                    title: c.title.clone(),
                    verdict,
                });
            }
        }
    }
    if test_dir.is_dir() {
        let results = plan.state_dir.join("test-results");
        std::fs::create_dir_all(&results).map_err(io_err("cannot create", &results))?;
        // _test/ is part of the untrusted lab folder: every path is resolved
        // inside it, signatures are written with O_NOFOLLOW.
        let sigs = Path::new("_test/signatures");
        for m in &plan.machines {
            if !machines.alive(&m.name) {
                event(TestEvent::NotRunning(m.name.clone()));
                sum.failed += 1;
                continue;
            }
            let mut kinds = vec![("default", NETKIT_DEFAULT_TEST.to_string())];
            // The user test is read now (resolved inside the lab folder) and
            // its text run in the guest (with bash when the image has it, as
            // `lab exec`): /hostlab is a copy made at start.
            let user = Path::new("_test").join(format!("{}.test", m.name));
            if plan.lab_dir.join(&user).symlink_metadata().is_ok() {
                let p = crate::confine::resolve_inside(&plan.lab_dir, &user)?;
                let text = std::fs::read_to_string(&p).map_err(io_err("cannot read", &p))?;
                kinds.push(("user", text));
            }
            for (kind, cmd) in kinds {
                let out = machines.exec(m, &cmd, Duration::from_secs(60))?;
                let res = results.join(format!("{}.{kind}", m.name));
                std::fs::write(&res, &out.stdout).map_err(io_err("cannot write", &res))?;
                let sig = sigs.join(format!("{}.{kind}", m.name));
                if write_signatures {
                    let p =
                        crate::confine::write_inside(&plan.lab_dir, &sig, out.stdout.as_bytes())?;
                    event(TestEvent::Wrote {
                        machine: m.name.clone(),
                        path: p,
                    });
                } else if plan.lab_dir.join(&sig).symlink_metadata().is_ok() {
                    // A signature leading out of the lab folder is a failure,
                    // never read.
                    let verdict = crate::confine::resolve_inside(&plan.lab_dir, &sig)
                        .map_err(|e| e.to_string())
                        .and_then(|p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
                        .and_then(|s| compare_signature(&out.stdout, &s));
                    if verdict.is_ok() {
                        sum.passed += 1;
                    } else {
                        sum.failed += 1;
                    }
                    event(TestEvent::Signature {
                        machine: m.name.clone(),
                        kind,
                        verdict,
                    });
                }
            }
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Machines answering from a table: (machine, command) -> output.
    struct Fake {
        up: Vec<&'static str>,
        answers: Vec<(&'static str, &'static str, ExecOutput)>,
        ran: RefCell<Vec<(String, String)>>,
    }

    impl Machines for Fake {
        fn alive(&self, name: &str) -> bool {
            self.up.contains(&name)
        }
        fn exec(&self, m: &MachinePlan, cmd: &str, _t: Duration) -> Result<ExecOutput> {
            self.ran
                .borrow_mut()
                .push((m.name.clone(), cmd.to_string()));
            Ok(self
                .answers
                .iter()
                .find(|(n, c, _)| *n == m.name && cmd.starts_with(c))
                .map(|a| a.2.clone())
                .unwrap_or_default())
        }
    }

    fn out(s: &str, code: i32) -> ExecOutput {
        ExecOutput {
            stdout: s.into(),
            stderr: String::new(),
            code,
        }
    }

    fn lab(files: &[(&str, &str)]) -> (tempfile::TempDir, Plan) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("lab");
        for (f, text) in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let loaded = crate::load::load_lab(&dir, None).unwrap();
        let plan = crate::plan::plan(&loaded.lab, &loaded.dir, &t.path().join("state")).unwrap();
        (t, plan)
    }

    fn collect(plan: &Plan, m: &Fake, write: bool) -> (Result<TestSummary>, Vec<TestEvent>) {
        let mut ev = Vec::new();
        let r = run(plan, m, write, &mut |e| ev.push(e));
        (r, ev)
    }

    #[test]
    fn lab_test_nothing_to_test_names_the_folder() {
        let (_t, plan) = lab(&[("lab.conf", "a[0]=A\n")]);
        let fake = Fake {
            up: vec!["a"],
            answers: vec![],
            ran: Default::default(),
        };
        let (r, ev) = collect(&plan, &fake, false);
        let e = r.unwrap_err().to_string();
        assert!(
            e.ends_with(": no lab.test.toml and no _test/ folder: nothing to test"),
            "{e}"
        );
        assert!(e.starts_with(&plan.lab_dir.display().to_string()), "{e}");
        assert!(ev.is_empty());
    }

    #[test]
    fn lab_test_checks_pass_fail_and_stopped_machines() {
        let checks = "[[command]]\nmachine = \"a\"\nrun = \"echo hi\"\nstdout = \"hi\"\n\
                      [[command]]\nmachine = \"a\"\nrun = \"false\"\nexit = 0\n\
                      [[command]]\nmachine = \"b\"\nrun = \"true\"\n\
                      [[command]]\nmachine = \"zz\"\nrun = \"true\"\n";
        let (_t, plan) = lab(&[("lab.conf", "a[0]=A\nb[0]=A\n"), ("lab.test.toml", checks)]);
        let fake = Fake {
            up: vec!["a"],
            answers: vec![("a", "echo hi", out("hi\n", 0)), ("a", "false", out("", 1))],
            ran: Default::default(),
        };
        let (r, ev) = collect(&plan, &fake, false);
        assert_eq!(
            r.unwrap(),
            TestSummary {
                passed: 1,
                failed: 3
            }
        );
        assert_eq!(ev[0], TestEvent::Machine("a".into()));
        assert!(
            matches!(
                &ev[1],
                TestEvent::Check {
                    verdict: Ok(()),
                    ..
                }
            ),
            "{ev:?}"
        );
        assert!(
            matches!(
                &ev[2],
                TestEvent::Check {
                    verdict: Err(_),
                    ..
                }
            ),
            "{ev:?}"
        );
        assert_eq!(ev[3], TestEvent::Machine("b".into()));
        assert!(
            matches!(&ev[4], TestEvent::Check { verdict: Err(w), .. } if w == "machine not running"),
            "{ev:?}"
        );
        assert!(
            matches!(&ev[6], TestEvent::Check { verdict: Err(w), .. } if w == "no machine zz in the lab"),
            "{ev:?}"
        );
        // nothing ran on the stopped or unknown machine
        assert!(fake.ran.borrow().iter().all(|(m, _)| m == "a"));
    }

    #[test]
    fn lab_test_signatures_written_then_compared() {
        let (t, plan) = lab(&[
            ("lab.conf", "a[0]=A\nb[0]=A\n"),
            ("_test/a.test", "echo user-test\n"),
        ]);
        let mut fake = Fake {
            up: vec!["a", "b"],
            answers: vec![
                ("a", "echo user-test", out("user 1\n", 0)),
                ("a", "ip -o addr", out("default a\n", 0)),
                ("b", "ip -o addr", out("default b\n", 0)),
            ],
            ran: Default::default(),
        };
        let (r, ev) = collect(&plan, &fake, true);
        assert_eq!(r.unwrap(), TestSummary::default());
        assert_eq!(ev.len(), 3, "{ev:?}");
        let sig = plan.lab_dir.join("_test/signatures/a.user");
        assert_eq!(std::fs::read_to_string(&sig).unwrap(), "user 1\n");
        assert_eq!(
            std::fs::read_to_string(plan.state_dir.join("test-results/b.default")).unwrap(),
            "default b\n"
        );
        // the same outputs pass; a changed one fails with the differing line
        fake.answers[0].2 = out("user 2\n", 0);
        let (r, ev) = collect(&plan, &fake, false);
        assert_eq!(
            r.unwrap(),
            TestSummary {
                passed: 2,
                failed: 1
            }
        );
        let failed: Vec<_> = ev
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    TestEvent::Signature {
                        verdict: Err(_),
                        ..
                    }
                )
            })
            .collect();
        assert!(
            matches!(failed[..], [TestEvent::Signature { machine, kind: "user", .. }] if machine == "a"),
            "{ev:?}"
        );
        // a stopped machine fails its _test/ tests without running them
        fake.up = vec!["a"];
        let (r, ev) = collect(&plan, &fake, false);
        assert_eq!(r.unwrap().failed, 2);
        assert!(ev.contains(&TestEvent::NotRunning("b".into())));
        drop(t);
    }
}
