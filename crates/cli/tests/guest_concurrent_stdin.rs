//! A command that never reads its stdin, fed more than a pipe buffer, must
//! not block other commands in the same guest (the agent queues stdin per
//! command).

mod guest_common;

use std::io::Write;
use std::process::Stdio;

use guest_common::Env;

#[test]
fn guest_unread_stdin_does_not_block_other_execs() {
    let env = Env::new("ugi");
    env.start("gi", &[]);
    let mut c = env.cmd(&["exec", "-i", "gi", "--", "sleep", "60"]);
    c.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut stuck = testkit::ProcGuard::spawn("umlkit exec sleep", c);
    let mut input = stuck.child_mut().stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 65536];
        for _ in 0..8 {
            if input.write_all(&chunk).is_err() {
                break;
            }
        }
        input
    });
    let w = writer.join().unwrap();
    for i in 0..3 {
        let out = env.ok(&["exec", "gi", "--", "echo", &format!("ok{i}")]);
        assert_eq!(out, format!("ok{i}\n"));
    }
    drop(w);
    stuck.kill();
    env.ok(&["halt", "gi"]);
}
