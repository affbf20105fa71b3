//! Issue 8: a guest must not be able to pin a host CPU through its agent
//! line (8.1), and one client that does not read must not stall the guest's
//! other clients, the console log or the agent line (8.2). Real guests.

mod guest_common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use guest_common::Env;

/// Run umlkit with a bounded wait (a stalled supervisor must fail the test,
/// not hang it); stdout is collected in a file.
fn bounded(env: &Env, args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let out = tempfile::NamedTempFile::new_in(env.path()).unwrap();
    let mut c = env.cmd(args);
    c.stdout(out.reopen().unwrap()).stderr(Stdio::inherit());
    let mut g = testkit::ProcGuard::spawn("umlkit", c);
    let st = g
        .wait_timeout(timeout)
        .unwrap_or_else(|| panic!("umlkit {args:?} did not finish within {timeout:?}"));
    (st, std::fs::read_to_string(out.path()).unwrap())
}

fn exec_ok(env: &Env, name: &str, cmd: &str) -> String {
    let (st, out) = bounded(
        env,
        &["exec", name, "--", "sh", "-c", cmd],
        Duration::from_secs(60),
    );
    assert!(st.success(), "exec {cmd:?}: {st}");
    out
}

/// CPU time (user + system, clock ticks) of a process and all its threads.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // after ")": state(0) ... utime(11) stime(12)
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn io(env: &Env, name: &str, key: &str) -> u64 {
    env.state_json(name)["io"][key].as_u64().unwrap_or(0)
}

/// 8.1: ten bytes (a valid magic, an unknown kind) written by root in the
/// guest to the agent's serial line made the supervisor's reader retry the
/// same header forever: 100 % CPU and no exec output any more.
#[test]
fn guest_agent_line_garbage_does_not_spin_supervisor() {
    let env = Env::new("ugg");
    env.start("gg", &[]);
    let sup = env.state_json("gg")["supervisor_pid"].as_u64().unwrap() as u32;
    // bad kind (200) and an oversize length, then plain junk
    exec_ok(
        &env,
        "gg",
        r"printf '\245\310\0\0\0\0\0\0\0\0' > /dev/ttyS1; printf '\245\5\1\0\0\0\377\377\377\377' > /dev/ttyS1; printf 'junk\245' > /dev/ttyS1",
    );
    assert!(
        testkit::wait_until(Duration::from_secs(10), || io(
            &env,
            "gg",
            "agent_bad_frames"
        ) >= 2),
        "bad frames not counted: {}",
        env.state_json("gg")["io"]
    );
    let t0 = cpu_ticks(sup);
    let start = std::time::Instant::now();
    // a measurement window, not synchronisation
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(sup) - t0;
    let hz = 100.0; // USER_HZ on Linux x86-64
    let share = used as f64 / hz / start.elapsed().as_secs_f64();
    assert!(share < 0.2, "supervisor uses {:.0}% CPU", share * 100.0);
    for i in 0..3 {
        assert_eq!(
            exec_ok(&env, "gg", &format!("echo ok{i}")),
            format!("ok{i}\n")
        );
    }
    env.ok(&["halt", "gg"]);
}

/// 8.2: an exec client that never reads a large output used to block the
/// supervisor's agent-line reader on its socket: every other exec of the
/// guest stalled. Now the client is cut off after a bounded backlog (its
/// process killed) and the others go on.
#[test]
fn guest_unread_exec_output_does_not_stall_other_execs() {
    let env = Env::new("ugx");
    env.start("gx", &[]);
    let mut c = env.cmd(&[
        "exec",
        "gx",
        "--",
        "sh",
        "-c",
        "while :; do cat /bin/busybox; done",
    ]);
    // a pipe nobody reads: the client blocks on its stdout
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut stuck = testkit::ProcGuard::spawn("umlkit exec (unread)", c);
    assert!(
        testkit::wait_until(Duration::from_secs(60), || io(
            &env,
            "gx",
            "exec_clients_disconnected"
        ) >= 1),
        "the unread client was never cut off: {}",
        env.state_json("gx")["io"]
    );
    for i in 0..3 {
        assert_eq!(
            exec_ok(&env, "gx", &format!("echo ok{i}")),
            format!("ok{i}\n")
        );
    }
    let big = exec_ok(&env, "gx", "head -c 2000000 /dev/zero | wc -c");
    assert_eq!(big.trim(), "2000000");
    // the guest-side process of the cut-off client was killed
    let ps = exec_ok(&env, "gx", "ps");
    assert!(!ps.contains("while"), "{ps}");
    drop(stuck.child_mut().stdout.take());
    assert!(stuck.wait_timeout(Duration::from_secs(20)).is_some());
    env.ok(&["halt", "gx"]);
}

/// 8.2: a console client that never reads used to block the console pump:
/// console.log stopped and the guest's console writes hung. Now it loses
/// output (counted) while the log and exec keep going.
#[test]
fn guest_unread_console_client_does_not_stall_log_or_exec() {
    let env = Env::new("ugc");
    env.start("gc", &[]);
    let sock = env.state.join("gc").join("console.sock");
    let mut idle = UnixStream::connect(&sock).unwrap();
    idle.write_all(b"").unwrap();
    let log = env.state.join("gc").join("console.log");
    let before = std::fs::metadata(&log).unwrap().len();
    // 300 kB to the console: far more than the client's socket buffer and
    // backlog
    exec_ok(
        &env,
        "gc",
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 300000 > /dev/console",
    );
    assert!(
        testkit::wait_until(Duration::from_secs(30), || std::fs::metadata(&log)
            .unwrap()
            .len()
            >= before + 300_000),
        "console.log did not get the output"
    );
    assert!(
        testkit::wait_until(Duration::from_secs(10), || io(
            &env,
            "gc",
            "console_dropped_bytes"
        ) > 0),
        "drops not counted: {}",
        env.state_json("gc")["io"]
    );
    assert_eq!(exec_ok(&env, "gc", "echo still"), "still\n");
    let ps = env.ps_entry("gc");
    assert!(ps["io"]["console_dropped_bytes"].as_u64().unwrap() > 0);
    drop(idle);
    env.ok(&["halt", "gc"]);
}

/// 8.2: the console was a host pty, and the 6.1 kernel's fd console stalled
/// for good once the pty was full (a pty slave raises no SIGIO when the
/// master drains): a few hundred kB of fast console output hung the
/// writer, with or without console clients. The console is a socketpair now.
#[test]
fn guest_fast_console_output_does_not_stall_console() {
    let env = Env::new("ugf");
    env.start("gf", &[]);
    let log = env.state.join("gf").join("console.log");
    let before = std::fs::metadata(&log).unwrap().len();
    exec_ok(
        &env,
        "gf",
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 4000000 > /dev/console",
    );
    assert!(
        testkit::wait_until(Duration::from_secs(20), || std::fs::metadata(&log)
            .unwrap()
            .len()
            >= before + 4_000_000),
        "console.log did not get the output"
    );
    assert_eq!(exec_ok(&env, "gf", "echo still"), "still\n");
    env.ok(&["halt", "gf"]);
}

/// The socketpair console still takes input: a client gets the init's
/// shell with Enter and sees a command's output.
#[test]
fn guest_console_client_input_reaches_the_guest_shell() {
    use std::io::Read;
    let env = Env::new("ugi");
    env.start("gi", &[]);
    let sock = env.state.join("gi").join("console.sock");
    let mut c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let found = testkit::wait_until(Duration::from_secs(30), || {
        // Enter starts the shell; the command is repeated until its output shows
        let _ = c.write_all(b"\necho marker$((6*7))\n");
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).contains("marker42")
    });
    assert!(found, "{}", String::from_utf8_lossy(&seen));
    drop(c);
    env.ok(&["halt", "gi"]);
}
