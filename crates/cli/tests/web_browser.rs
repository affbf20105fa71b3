//! The web view in a real browser (headless Chromium over the DevTools
//! protocol, `testkit::browser`) against a real running lab: every machine
//! and link in the page, `hostname` typed into a machine's terminal, a
//! machine stopped from the page (the page and `lab status` agree);
//! screenshots of a 3- and a 20-machine lab under target/screenshots/.
//! `web_numbers` (ignored) prints the numbers of docs/web.md.
#![allow(clippy::disallowed_macros)] // eprintln! in tests: the harness captures stderr

mod web_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::browser::Browser;
use testkit::lab::TestLab;
use web_common::*;

fn screenshots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Open the page and wait until the topology and the status are shown.
fn open_page(b: &mut Browser, web: &WebServer, machines: usize) {
    b.set_viewport(1400, 1000).unwrap();
    b.goto(&web.url).unwrap();
    wait_page_ready(b, machines);
}

/// Until the page shows the topology and a row per machine.
fn wait_page_ready(b: &mut Browser, machines: usize) {
    b.wait_for(
        &format!(
            "window.umlkit && umlkit.svgReady && umlkit.status && \
             document.querySelectorAll('#machines tbody tr').length == {machines}"
        ),
        Duration::from_secs(60),
    )
    .unwrap();
}

fn count(b: &mut Browser, selector: &str) -> u64 {
    b.eval(&format!(
        "document.querySelectorAll({}).length",
        serde_json::Value::String(selector.into())
    ))
    .unwrap()
    .as_u64()
    .unwrap()
}

fn machine_state_in_page(b: &mut Browser, m: &str) -> String {
    b.eval(&format!(
        "(document.getElementById('row-machine-{m}') || {{dataset: {{}}}}).dataset.state || ''"
    ))
    .unwrap()
    .as_str()
    .unwrap_or_default()
    .to_string()
}

fn term_has_line(b: &mut Browser, line: &str, timeout: Duration) -> Result<(), String> {
    b.wait_for(
        &format!(
            "umlkit.termText().split('\\n').some(l => l.trim() == {})",
            serde_json::Value::String(line.into())
        ),
        timeout,
    )
    .map(|_| ())
}

#[test]
fn web_page_shows_the_lab_runs_hostname_in_a_terminal_and_stops_a_machine() {
    let lab = TestLab::new("webpage", &three_machine_files());
    lab.ok_dir("start", &[]);
    let web = start_web(&lab, &["--listen", "127.0.0.1:0"]);
    let mut b = Browser::launch().unwrap();
    open_page(&mut b, &web, 3);
    // the token left the address bar for the cookie
    let href = b.eval("location.href").unwrap();
    assert_eq!(href, format!("http://{}/", web.addr));
    // every machine, domain and link: in the topology and in the tables
    for m in ["a", "b", "c"] {
        assert_eq!(
            count(&mut b, &format!("svg [id=\"machine-{m}\"]")),
            1,
            "{m}"
        );
        assert_eq!(count(&mut b, &format!("#row-machine-{m}")), 1, "{m}");
        assert_eq!(machine_state_in_page(&mut b, m), "running");
    }
    for d in ["A", "B"] {
        assert_eq!(count(&mut b, &format!("svg [id=\"domain-{d}\"]")), 1, "{d}");
        assert_eq!(count(&mut b, &format!("#row-domain-{d}")), 1, "{d}");
        assert_eq!(
            count(&mut b, &format!("#row-domain-{d} a.capture")),
            1,
            "{d}"
        );
    }
    for l in ["a-eth0", "b-eth0", "b-eth1", "c-eth0"] {
        assert_eq!(count(&mut b, &format!("svg [id=\"link-{l}\"]")), 1, "{l}");
    }
    assert_eq!(count(&mut b, "svg g.machine[data-state=\"running\"]"), 3);

    // b's terminal: type `hostname`, read the answer
    b.click("svg [id=\"machine-b\"]").unwrap();
    b.wait_for(
        "umlkit.termWs && umlkit.termWs.readyState == 1 && umlkit.termText().includes('#')",
        Duration::from_secs(30),
    )
    .unwrap();
    b.focus(".xterm-helper-textarea").unwrap();
    b.type_text("hostname").unwrap();
    b.press_key("Enter").unwrap();
    term_has_line(&mut b, "b", Duration::from_secs(20)).unwrap();
    b.eval("document.getElementById('log-box').open = true")
        .unwrap();
    b.wait_for(
        "document.getElementById('log').textContent.includes('b: addresses set')",
        Duration::from_secs(30),
    )
    .unwrap();
    b.screenshot(&screenshots().join("web-3-machines.png"))
        .unwrap();

    // stop c from the page: its row, its topology node and `lab status`
    b.click("#row-machine-c").unwrap();
    b.wait_for(
        "document.getElementById('panel-name').textContent == 'c'",
        Duration::from_secs(10),
    )
    .unwrap();
    b.click("button[data-machine-action=\"stop\"]").unwrap();
    b.wait_for(
        "document.getElementById('row-machine-c').dataset.state == 'stopped' && \
         document.querySelector('svg [data-machine=\"c\"]').dataset.state == 'stopped' && \
         document.getElementById('panel-state').dataset.state == 'stopped'",
        Duration::from_secs(90),
    )
    .unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&lab.run_dir("status", &["--json"]).stdout).unwrap();
    let c = st["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "c")
        .unwrap();
    assert_eq!(c["state"], "stopped", "{st}");
    assert_eq!(machine_state_in_page(&mut b, "a"), "running");

    // and start it again from the page: running, with a shell
    b.click("button[data-machine-action=\"start\"]").unwrap();
    b.wait_for(
        "document.getElementById('row-machine-c').dataset.state == 'running'",
        Duration::from_secs(90),
    )
    .unwrap();
    b.wait_for(
        "umlkit.termWs && umlkit.termWs.readyState == 1 && umlkit.termText().includes('c:/#')",
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(b.js_errors().is_empty(), "{:?}", b.js_errors());
}

/// lab.conf of `n` machines in a chain of domains plus one shared LAN.
fn chain_lab(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("m{i}[0]=lan\n"));
        if i > 0 {
            s.push_str(&format!("m{i}[1]=c{}\n", i - 1));
        }
        if i + 1 < n {
            s.push_str(&format!("m{i}[{}]=c{i}\n", if i > 0 { 2 } else { 1 }));
        }
    }
    s
}

#[test]
fn web_page_of_a_20_machine_lab_not_started_shows_the_planned_topology() {
    let conf = chain_lab(20);
    let lab = TestLab::new("web20", &[("lab.conf", &conf)]);
    let web = start_web(&lab, &["--listen", "127.0.0.1:0"]);
    let mut b = Browser::launch().unwrap();
    open_page(&mut b, &web, 20);
    for i in 0..20 {
        assert_eq!(count(&mut b, &format!("svg [id=\"machine-m{i}\"]")), 1);
        assert_eq!(machine_state_in_page(&mut b, &format!("m{i}")), "stopped");
    }
    assert_eq!(count(&mut b, "svg .domain"), 20);
    // no capture of a switch that does not run
    assert_eq!(count(&mut b, "a.capture"), 0);
    b.screenshot(&screenshots().join("web-20-machines.png"))
        .unwrap();
    assert!(b.js_errors().is_empty(), "{:?}", b.js_errors());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Milliseconds from `goto` to the topology and the status shown.
fn page_load_ms(web: &WebServer, machines: usize) -> f64 {
    let mut b = Browser::launch().unwrap();
    b.set_viewport(1400, 1000).unwrap();
    // once unmeasured: the cookie set, the topology laid out (the server
    // keeps it); assets are not cached (no-store)
    open_page(&mut b, web, machines);
    let mut v = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        b.goto(&format!("http://{}/", web.addr)).unwrap();
        wait_page_ready(&mut b, machines);
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    median(v)
}

/// Echo latency of one keystroke in the page's terminal (ms, in the
/// page's clock: from xterm's input to the echoed byte arriving).
fn browser_echo_ms(b: &mut Browser) -> f64 {
    let js = "new Promise(res => { const ws = umlkit.termWs; const t0 = performance.now(); \
              const h = ev => { if (typeof ev.data != 'string' && new TextDecoder().decode(ev.data).includes('x')) \
              { ws.removeEventListener('message', h); res(performance.now() - t0); } }; \
              ws.addEventListener('message', h); umlkit.term.input('x', true); })";
    b.eval(js).unwrap().as_f64().unwrap()
}

/// Echo latency of one keystroke through `umlkit lab console` (the
/// machine's console, `umlkit console`) on a pty (ms); None without echo.
fn console_echo_ms(lab: &TestLab, machine: &str) -> Option<Vec<f64>> {
    pty_echo_ms(lab.cmd(&["console", "-d", lab.d(), machine]))
}

/// Echo latency of one keystroke through `umlkit exec -t MACHINE -- sh -l`
/// (the browser terminal's path without the web server) on a pty (ms).
fn exec_tty_echo_ms(lab: &TestLab, machine: &str) -> Option<Vec<f64>> {
    let mut c = std::process::Command::new(testkit::umlkit_bin());
    let id = std::fs::read_dir(&lab.state).ok()?.flatten().next()?.path();
    c.env("UMLKIT_STATE_DIR", id.join("g"))
        .args(["exec", "-t", machine, "--", "/bin/sh", "-l"]);
    pty_echo_ms(c)
}

/// Echo latency of `x` typed into `c` run on a raw pty (ms, 20 keys).
fn pty_echo_ms(mut c: std::process::Command) -> Option<Vec<f64>> {
    use std::io::Write;
    let pty = umlkit_sys::process::open_pty().ok()?;
    c.stdin(pty.slave.try_clone().ok()?)
        .stdout(pty.slave.try_clone().ok()?)
        .stderr(std::process::Stdio::null());
    // raw: every echo comes from the guest, none from this pty
    umlkit_sys::process::make_raw(std::os::fd::AsFd::as_fd(&pty.slave)).ok()?;
    let mut g = testkit::ProcGuard::spawn("umlkit console", c);
    drop(pty.slave);
    let mut w = pty.master.try_clone().ok()?;
    let rx = read_chunks(pty.master);
    let echo = |rx: &std::sync::mpsc::Receiver<Vec<u8>>, limit: Duration| -> bool {
        let t = Instant::now();
        while let Some(left) = limit.checked_sub(t.elapsed()) {
            match rx.recv_timeout(left) {
                Ok(b) if b.contains(&b'x') => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    w.write_all(b"\r").ok()?;
    // whatever the console prints first (a prompt) is not an echo
    while rx.recv_timeout(Duration::from_secs(2)).is_ok() {}
    let mut v = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        w.write_all(b"x").ok()?;
        if !echo(&rx, Duration::from_secs(5)) {
            g.kill();
            return None;
        }
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = w.write_all(b"\x15");
    g.kill();
    Some(v)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
#[ignore = "numbers for the report (stderr): cargo test -p umlkit --test web_browser -- --ignored web_numbers"]
fn web_numbers() {
    let lab = TestLab::new("webnum", &three_machine_files());
    lab.ok_dir("start", &[]);
    let web = start_web(&lab, &["--listen", "127.0.0.1:0"]);
    eprintln!(
        "page load to full topology, 3 machines (running, layout kept): {:.0} ms",
        page_load_ms(&web, 3)
    );
    let conf = chain_lab(50);
    let lab50 = TestLab::new("webnum50", &[("lab.conf", &conf)]);
    let t0 = Instant::now();
    let web50 = start_web(&lab50, &["--listen", "127.0.0.1:0"]);
    let id50 = web50.lab_id();
    assert_eq!(
        web50.get(&format!("/api/labs/{id50}/topology.svg")).status,
        200
    );
    eprintln!(
        "server start to the 50-machine topology laid out (Graphviz neato, once per server): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    eprintln!(
        "page load to full topology, 50 machines (not started, layout kept): {:.0} ms",
        page_load_ms(&web50, 50)
    );
    drop(web50);

    let mut b = Browser::launch().unwrap();
    open_page(&mut b, &web, 3);
    b.click("#row-machine-b").unwrap();
    b.wait_for(
        "umlkit.termWs && umlkit.termWs.readyState == 1 && umlkit.termText().includes('#')",
        Duration::from_secs(30),
    )
    .unwrap();
    let v: Vec<f64> = (0..20).map(|_| browser_echo_ms(&mut b)).collect();
    eprintln!(
        "keystroke to echo, browser terminal: median {:.1} ms, max {:.1} ms (20 keys)",
        median(v.clone()),
        v.iter().cloned().fold(0.0, f64::max)
    );
    match console_echo_ms(&lab, "b") {
        Some(v) => eprintln!(
            "keystroke to echo, umlkit lab console (pty): median {:.1} ms, max {:.1} ms (20 keys)",
            median(v.clone()),
            v.iter().cloned().fold(0.0, f64::max)
        ),
        None => eprintln!("keystroke to echo, umlkit lab console: no echo (line-mode console)"),
    }
    match exec_tty_echo_ms(&lab, "b") {
        Some(v) => eprintln!(
            "keystroke to echo, umlkit exec -t (pty): median {:.1} ms, max {:.1} ms (20 keys)",
            median(v.clone()),
            v.iter().cloned().fold(0.0, f64::max)
        ),
        None => eprintln!("keystroke to echo, umlkit exec -t: no echo"),
    }
    drop(b);

    let id = web.lab_id();
    let before = rss_kb(web.guard.pid());
    let mut terms = Vec::new();
    for _ in 0..10 {
        let mut t = web.ws(&format!("/api/labs/{id}/machines/a/terminal"));
        t.send(tungstenite::Message::Binary(
            b"echo ready-$((1+1))\r".to_vec().into(),
        ))
        .unwrap();
        let mut out = String::new();
        assert!(ws_until(&mut t, Duration::from_secs(30), |m| {
            if let tungstenite::Message::Binary(b) = m {
                out.push_str(&String::from_utf8_lossy(b));
            }
            out.contains("ready-2")
        })
        .is_some());
        terms.push(t);
    }
    eprintln!(
        "server RSS: {} KiB idle, {} KiB with 10 open terminals",
        before,
        rss_kb(web.guard.pid())
    );
}
