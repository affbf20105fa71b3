//! The web view's server against a real running lab (busybox image, 3
//! machines): the token on every request and WebSocket, the Origin check,
//! the status document (the same as `lab status --json`), the topology, the
//! live status pushes, a terminal into a machine (with resize), the switch
//! counters and stopping a machine through the API.

mod web_common;

use std::time::Duration;

use testkit::lab::TestLab;
use tungstenite::Message;
use web_common::*;

fn status_json(lab: &TestLab) -> serde_json::Value {
    let o = lab.run_dir("status", &["--json"]);
    serde_json::from_slice(&o.stdout).expect("lab status --json")
}

fn states(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Run `line` in the terminal and wait for `want` in its output.
fn term_run(ws: &mut Ws, line: &str, want: &str) -> String {
    ws.send(Message::Binary(format!("{line}\r").into_bytes().into()))
        .unwrap();
    let mut out = String::new();
    let got = ws_until(ws, Duration::from_secs(20), |m| {
        if let Message::Binary(b) = m {
            out.push_str(&String::from_utf8_lossy(b));
        }
        out.contains(want)
    });
    assert!(got.is_some(), "no {want:?} after {line:?}: {out:?}");
    out
}

/// The block types of a pcapng file, in order.
fn pcapng_block_types(b: &[u8]) -> Vec<u32> {
    let mut v = Vec::new();
    let mut off = 0;
    while off + 8 <= b.len() {
        let t = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        assert!(len >= 12 && off + len <= b.len(), "bad block at {off}");
        v.push(t);
        off += len;
    }
    assert_eq!(off, b.len(), "trailing bytes");
    v
}

#[test]
fn web_api_serves_a_running_lab_with_token_terminal_and_actions() {
    let lab = TestLab::new("webapi", &three_machine_files());
    // `umlkit web` started before any lab runs shows none, then the lab
    // once it was started
    let mut all = std::process::Command::new(testkit::umlkit_bin());
    all.args(["web", "--state-root"]).arg(&lab.state);
    all.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let all = spawn_web(all);
    assert_eq!(all.get("/api/labs").json(), serde_json::json!([]));
    lab.ok_dir("start", &[]);
    let listed = all.get("/api/labs").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["machines"], serde_json::json!(["a", "b", "c"]));
    let found = listed[0]["id"].as_str().unwrap().to_string();
    let st = all.get(&format!("/api/labs/{found}/status")).json();
    assert!(
        states(&st["status"]).contains(&("a".into(), "running".into())),
        "{st}"
    );
    drop(all);
    let web = start_web(&lab, &["--listen", "127.0.0.1:0"]);
    let addr = web.addr.clone();

    // no token, a wrong token: 401 for the page, the API and the WebSocket
    assert_eq!(http(&addr, "GET", "/", &[], "").status, 401);
    assert_eq!(http(&addr, "GET", "/api/labs", &[], "").status, 401);
    // the last hex digit changed (not always to 0: it may be 0 already)
    let (head, last) = web.token.split_at(web.token.len() - 1);
    let wrong = format!("{head}{}", if last == "0" { "1" } else { "0" });
    let port = addr.rsplit(':').next().unwrap();
    let bad_cookie = format!("Cookie: umlkit_web_{port}={wrong}");
    assert_eq!(
        http(
            &addr,
            "GET",
            "/api/labs",
            std::slice::from_ref(&bad_cookie),
            ""
        )
        .status,
        401
    );
    assert_eq!(
        http(&addr, "GET", &format!("/?token={wrong}"), &[], "").status,
        401
    );
    let id = web.lab_id();
    let events = format!("/api/labs/{id}/events");
    let origin = format!("http://{addr}");
    assert_eq!(
        ws_refused_status(ws_connect(&addr, &events, None, Some(&origin))),
        Some(401)
    );
    assert_eq!(
        ws_refused_status(ws_connect(&addr, &events, Some(&bad_cookie), Some(&origin))),
        Some(401)
    );
    // the right token from a foreign page (cross-site WebSocket hijacking)
    assert_eq!(
        ws_refused_status(ws_connect(
            &addr,
            &events,
            Some(&web.cookie()),
            Some("http://evil.example")
        )),
        Some(403)
    );

    // the printed URL sets the cookie (HttpOnly, SameSite=Strict) and
    // sends the browser on without the token in the address
    let a = http(&addr, "GET", &format!("/?token={}", web.token), &[], "");
    assert_eq!(a.status, 303, "{}", a.headers);
    assert_eq!(a.header("location").as_deref(), Some("/"));
    let cookie = a.header("set-cookie").unwrap();
    assert!(cookie.contains(&format!("umlkit_web_{port}={}", web.token)));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let page = web.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/assets/vendor/xterm.js"));
    assert_eq!(web.get("/assets/vendor/xterm.js").status, 200);
    assert_eq!(web.get("/assets/../Cargo.toml").status, 404);

    // the status document is `lab status --json`'s
    let doc = web.get(&format!("/api/labs/{id}/status")).json();
    let cli = status_json(&lab);
    assert_eq!(doc["status"]["lab"], cli["lab"]);
    assert_eq!(doc["status"]["domains"], cli["domains"]);
    assert_eq!(states(&doc["status"]), states(&cli));
    assert_eq!(
        states(&doc["status"]),
        ["a", "b", "c"].map(|m| (m.to_string(), "running".to_string()))
    );
    assert!(doc["live"]["a"]["uptime_s"].as_u64().is_some(), "{doc}");
    assert!(
        doc["live"]["a"]["host_rss_kb"].as_u64().unwrap() > 0,
        "{doc}"
    );
    let svg = web.get(&format!("/api/labs/{id}/topology.svg"));
    assert_eq!(svg.header("content-type").as_deref(), Some("image/svg+xml"));
    for name in ["a", "b", "c", "A", "B"] {
        assert!(svg.text().contains(&format!(">{name}<")), "{name}");
    }
    let log = web.get(&format!("/api/labs/{id}/machines/b/log"));
    assert_eq!(log.status, 200);
    assert!(log.text().contains("b: addresses set"), "{}", log.text());
    let c = web
        .get(&format!("/api/labs/{id}/domains/A/counters"))
        .json();
    assert!(c["port_stats"].as_str().unwrap().contains("Port"), "{c}");

    // a timed capture of domain A while a pings b: a pcapng download
    let cap = std::thread::scope(|s| {
        let ping = s.spawn(|| lab.exec("a", "sleep 1; ping -c 3 -i 0.3 10.1.0.2"));
        let cap = web.get(&format!("/api/labs/{id}/domains/A/capture?seconds=4"));
        assert!(ping.join().unwrap().status.success());
        cap
    });
    assert_eq!(cap.status, 200, "{}", cap.text());
    assert_eq!(
        cap.header("content-disposition").as_deref(),
        Some("attachment; filename=\"lab-A.pcapng\"")
    );
    let blocks = pcapng_block_types(&cap.body);
    assert_eq!(blocks.first(), Some(&0x0A0D_0D0A), "section header first");
    let packets = blocks.iter().filter(|&&t| t == 6).count();
    assert!(packets >= 6, "{packets} packets in {blocks:?}");
    assert_eq!(
        web.get(&format!("/api/labs/{id}/domains/A/capture?seconds=0"))
            .status,
        400
    );

    // live status: pushed at once
    let mut ev = web.ws(&events);
    let first = ws_until(&mut ev, Duration::from_secs(20), |m| m.is_text()).unwrap();
    let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "status");
    assert_eq!(v["data"]["status"]["machines"].as_array().unwrap().len(), 3);

    // a terminal: hostname, then a resize the shell sees
    let mut t = web.ws(&format!(
        "/api/labs/{id}/machines/b/terminal?rows=30&cols=100"
    ));
    term_run(&mut t, "hostname; echo mark-$((40+2))", "mark-42");
    term_run(&mut t, "stty size", "30 100");
    let out = term_run(&mut t, "hostname", "\nb\r");
    assert!(out.contains("\nb\r"), "{out:?}");
    t.send(Message::Text(r#"{"resize":[37,111]}"#.into()))
        .unwrap();
    term_run(&mut t, "stty size", "37 111");
    // the page going away ends the shell in the guest
    let out = term_run(&mut t, "echo pid-$$-$((6*7))", "-42\r");
    let pid = out
        .rsplit("pid-")
        .next()
        .and_then(|x| x.split("-42").next())
        .unwrap()
        .to_string();
    assert!(pid.parse::<u32>().is_ok(), "{out:?}");
    assert!(lab.exec("b", &format!("kill -0 {pid}")).status.success());
    t.send(Message::Close(None)).unwrap();
    drop(t);
    assert!(
        testkit::wait_until(Duration::from_secs(10), || !lab
            .exec("b", &format!("kill -0 {pid}"))
            .status
            .success()),
        "the terminal's shell {pid} outlived its WebSocket"
    );

    // `umlkit web`: every running lab of the state root (this one)
    let mut c = std::process::Command::new(testkit::umlkit_bin());
    c.args(["web", "--state-root"])
        .arg(&lab.state)
        .stdout(std::process::Stdio::piped());
    let all = spawn_web(c);
    let labs = all.get("/api/labs").json();
    assert_eq!(labs.as_array().unwrap().len(), 1, "{labs}");
    assert_eq!(labs[0]["id"], id.as_str());
    assert_eq!(labs[0]["machines"], serde_json::json!(["a", "b", "c"]));
    drop(all);

    // stop c through the API: the CLI and the pushed status agree
    let r = web.post_json(
        &format!("/api/labs/{id}/action"),
        &serde_json::json!({"action": "stop", "machines": ["c"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cli = status_json(&lab);
    assert!(
        states(&cli).contains(&("c".into(), "stopped".into())),
        "{cli}"
    );
    let pushed = ws_until(&mut ev, Duration::from_secs(20), |m| {
        m.to_text().is_ok_and(|t| {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            states(&v["data"]["status"]).contains(&("c".into(), "stopped".into()))
        })
    });
    assert!(pushed.is_some(), "no status push with c stopped");
    // and start it again
    let r = web.post_json(
        &format!("/api/labs/{id}/action"),
        &serde_json::json!({"action": "start", "machines": ["c"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(states(&status_json(&lab)).contains(&("c".into(), "running".into())));
    assert_eq!(lab.exec_ok("c", "hostname").trim(), "c");
    // a bad action and an unknown machine are refused with a message
    let r = web.post_json(
        &format!("/api/labs/{id}/action"),
        &serde_json::json!({"action": "explode"}),
    );
    assert_eq!(r.status, 409);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown action"));
    let r = web.post_json(
        &format!("/api/labs/{id}/action"),
        &serde_json::json!({"action": "stop", "machines": ["zz"]}),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn web_refuses_non_loopback_without_remote_and_guards_it_with_the_token() {
    let lab = TestLab::new("webremote", &three_machine_files());
    let o = lab.run_dir("web", &["--listen", "0.0.0.0:0"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--remote"),
        "{err}"
    );

    // with --remote: every address of the host, reached here via loopback
    let web = start_web(&lab, &["--listen", "0.0.0.0:0", "--remote"]);
    let addr = web.addr.clone();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(http(&addr, "GET", "/api/labs", &[], "").status, 401);
    let id = web.lab_id();
    let events = format!("/api/labs/{id}/events");
    let origin = format!("http://{addr}");
    assert_eq!(
        ws_refused_status(ws_connect(&addr, &events, None, Some(&origin))),
        Some(401)
    );
    assert_eq!(
        ws_refused_status(ws_connect(&addr, &events, None, None)),
        Some(401)
    );
    // and with it, the WebSocket opens (the lab is not running: the
    // status says so)
    let mut ev = web.ws(&events);
    let first = ws_until(&mut ev, Duration::from_secs(20), |m| m.is_text()).unwrap();
    let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(
        states(&v["data"]["status"]),
        ["a", "b", "c"].map(|m| (m.to_string(), "stopped".to_string()))
    );
    // listeners that come together, and after everyone left, all get the
    // status (one poller per lab, started again when needed)
    drop(ev);
    for round in 0..2 {
        let mut many: Vec<Ws> = (0..4).map(|_| web.ws(&events)).collect();
        for (i, w) in many.iter_mut().enumerate() {
            assert!(
                ws_until(w, Duration::from_secs(20), |m| m.is_text()).is_some(),
                "round {round}: listener {i} got no status"
            );
        }
    }
}

/// `umlkit exec -t` gives the guest's pty its terminal's size instead of
/// 24x80, and follows it on SIGWINCH (the resize frame).
#[test]
fn exec_tty_follows_the_callers_terminal_size() {
    use std::io::Write;
    let (_lab, id) = started_one_machine_lab("execwinch");
    let pty = umlkit_sys::process::open_pty().unwrap();
    let slave = std::os::fd::AsFd::as_fd(&pty.slave);
    umlkit_sys::process::set_winsize(slave, 33, 99).unwrap();
    umlkit_sys::process::make_raw(slave).unwrap();
    let mut c = std::process::Command::new(testkit::umlkit_bin());
    c.env("UMLKIT_STATE_DIR", id.join("g"))
        .args(["exec", "-t", "a", "--", "/bin/sh"])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(std::process::Stdio::piped());
    let mut g = testkit::ProcGuard::spawn("umlkit exec -t", c);
    let mut w = pty.master.try_clone().unwrap();
    let rx = read_chunks(pty.master.try_clone().unwrap());
    // the output of `line` up to `want` (which the echo must not contain)
    let mut run = |line: &str, want: &str| -> String {
        w.write_all(format!("{line}\r").as_bytes()).unwrap();
        let mut out = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !out.contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {want:?} after {line:?}: {out:?}"),
            }
        }
        out
    };
    run("stty size; echo done-$((1+1))", "done-2");
    let first = run("stty size; echo done-$((2+1))", "done-3");
    assert!(first.contains("33 99"), "{first:?}");
    // the terminal grows (as a window manager would: new size, SIGWINCH);
    // the resize frame may land after the next command started
    umlkit_sys::process::set_winsize(slave, 41, 120).unwrap();
    umlkit_sys::process::kill(g.pid(), umlkit_sys::process::SIGWINCH).unwrap();
    let seen = (0..50).any(|i| {
        run(
            &format!("stty size; echo done-$((4+{i}))"),
            &format!("done-{}", 4 + i),
        )
        .contains("41 120")
    });
    assert!(seen, "the guest never saw 41 120");
    run("exit 0", "exit 0");
    assert!(g.wait_timeout(Duration::from_secs(30)).is_some());
}

/// `umlkit exec -t` sends its terminal's size instead of leaving the
/// guest's pty at 24x80 (regression: a resize frame after the exec raced
/// with the process reading its size).
#[test]
fn exec_tty_starts_at_the_callers_terminal_size() {
    use std::io::Read;
    let (_lab, id) = started_one_machine_lab("exectty");
    let pty = umlkit_sys::process::open_pty().unwrap();
    umlkit_sys::process::set_winsize(std::os::fd::AsFd::as_fd(&pty.slave), 33, 99).unwrap();
    let mut c = std::process::Command::new(testkit::umlkit_bin());
    c.env("UMLKIT_STATE_DIR", id.join("g"))
        .args(["exec", "-t", "a", "--", "stty", "size"])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(std::process::Stdio::piped());
    let mut g = testkit::ProcGuard::spawn("umlkit exec -t", c);
    drop(pty.slave);
    let st = g
        .wait_timeout(Duration::from_secs(60))
        .expect("exec -t ends");
    assert!(st.success(), "{st:?}");
    let mut out = Vec::new();
    let mut m = pty.master;
    let mut buf = [0u8; 4096];
    // the pty reads EIO once the last holder of its other side is gone
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("33 99"), "{out:?}");
}
