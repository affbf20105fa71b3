//! Console attach/detach and `logs -f` against a real guest (issue 11: these
//! had no test). The CLI maps to `guest::attach`; the real binary is driven
//! through pipes, and every wait is on a condition with a bounded timeout.

mod guest_common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use guest_common::Env;

/// Everything `r` yields, collected by a thread; `wait_for` waits until the
/// text seen so far contains a needle (bounded).
struct Collected {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
    done: bool,
}

impl Collected {
    fn new(mut r: impl Read + Send + 'static) -> Collected {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Collected {
            rx,
            seen: Vec::new(),
            done: false,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.text().contains(needle) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.done {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(d) => self.seen.extend_from_slice(&d),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
    }

    /// Wait until the stream ends (bounded); true when it did.
    fn wait_end(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.done {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(d) => self.seen.extend_from_slice(&d),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
        true
    }
}

/// A child process killed and reaped when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut st = None;
    testkit::wait_until(timeout, || {
        st = c.try_wait().ok().flatten();
        st.is_some()
    });
    st
}

#[test]
fn console_attach_shows_output_and_detach_escape_leaves_guest_running() {
    let env = Env::new("uat");
    env.start("ca", &[]);
    let mut kid = Kid(env
        .cmd(&["console", "ca"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let mut stdin = kid.0.stdin.take().unwrap();
    let mut out = Collected::new(kid.0.stdout.take().unwrap());
    let mut err = Collected::new(kid.0.stderr.take().unwrap());
    assert!(
        err.wait_for(
            "[attached to ca; detach with Ctrl-]]",
            Duration::from_secs(10)
        ),
        "stderr: {}",
        err.text()
    );
    // the shell may still be starting: retype until the answer shows
    let end = Instant::now() + Duration::from_secs(30);
    let mut seen = false;
    while !seen && Instant::now() < end {
        stdin.write_all(b"echo attach-marker-$((6*7))\n").unwrap();
        seen = out.wait_for("attach-marker-42", Duration::from_secs(3));
    }
    assert!(seen, "console output: {:?}", out.text());
    // bytes before the escape still reach the guest; the escape detaches
    stdin.write_all(b"echo before-escape\n\x1d").unwrap();
    let st = wait_exit(&mut kid.0, Duration::from_secs(10)).expect("console did not detach");
    assert!(st.success(), "{st}");
    assert!(
        err.wait_for("[detached from ca]", Duration::from_secs(5)),
        "stderr: {}",
        err.text()
    );
    // the guest keeps running and got the line typed before the escape
    assert_eq!(
        env.ps_entry("ca")["phase"],
        "running",
        "{:?}",
        env.ps_entry("ca")
    );
    assert_eq!(
        env.ok(&["exec", "ca", "--", "echo", "still-here"]),
        "still-here\n"
    );
    let mut found = false;
    testkit::wait_until(Duration::from_secs(10), || {
        found = env.ok(&["logs", "ca"]).contains("before-escape\r\n");
        found
    });
    assert!(
        found,
        "the line typed before Ctrl-] did not reach the guest"
    );
    drop(stdin);
}

/// Regression: a key typed after the guest stopped failed to reach the closed
/// console and the session said `[detached from NAME]`, as if the user had
/// detached; it is the guest that closed the console.
#[test]
fn console_says_closed_not_detached_when_the_guest_stops() {
    let env = Env::new("uac");
    env.start("cc", &[]);
    let mut kid = Kid(env
        .cmd(&["console", "cc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let mut stdin = kid.0.stdin.take().unwrap();
    let _out = Collected::new(kid.0.stdout.take().unwrap());
    let mut err = Collected::new(kid.0.stderr.take().unwrap());
    assert!(err.wait_for("[attached to cc", Duration::from_secs(10)));
    env.ok(&["halt", "cc"]);
    // the session notices at the next key press, as a terminal user would
    let mut closed = false;
    testkit::wait_until(Duration::from_secs(10), || {
        let _ = stdin.write_all(b"\n");
        closed = kid.0.try_wait().ok().flatten().is_some();
        closed
    });
    assert!(closed, "console did not end after the guest stopped");
    assert!(
        err.wait_for("[cc: console closed]", Duration::from_secs(5)),
        "stderr: {}",
        err.text()
    );
}

#[test]
fn logs_follow_shows_new_lines_and_ends_when_the_guest_stops() {
    let env = Env::new("ulf");
    env.start("lf", &[]);
    let mut kid = Kid(env
        .cmd(&["logs", "-f", "lf"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let mut out = Collected::new(kid.0.stdout.take().unwrap());
    // the boot log is there already
    assert!(
        out.wait_for("Linux version", Duration::from_secs(10)),
        "{}",
        out.text()
    );
    // a line the guest prints later is followed
    env.ok(&[
        "exec",
        "lf",
        "--",
        "sh",
        "-c",
        "echo follow-marker-$((6*7)) > /dev/console",
    ]);
    assert!(
        out.wait_for("follow-marker-42", Duration::from_secs(10)),
        "logs -f did not follow: {}",
        out.text()
    );
    assert!(kid.0.try_wait().unwrap().is_none(), "logs -f ended early");
    // and it ends on its own once the guest stops
    env.ok(&["halt", "lf"]);
    let st = wait_exit(&mut kid.0, Duration::from_secs(15)).expect("logs -f kept running");
    assert!(st.success(), "{st}");
    assert!(out.wait_end(Duration::from_secs(5)));
}
