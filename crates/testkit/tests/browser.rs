//! testkit::browser against a real headless Chromium and a page served by a
//! std TcpListener HTTP server in this test. One browser for the file.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::browser::Browser;

const PAGE: &str = r#"<!doctype html>
<html><head><title>browser test</title></head>
<body>
<form id="form"><input id="name" autocomplete="off"></form>
<button id="btn">Go</button>
<div id="out">idle</div>
<a id="link" href="/second">second page</a>
<script>
window.keys = [];
document.addEventListener('keydown', e => keys.push([e.key, e.code, e.keyCode]));
document.getElementById('form').addEventListener('submit', e => {
  e.preventDefault();
  document.getElementById('out').textContent = 'submitted ' + document.getElementById('name').value;
});
document.getElementById('btn').addEventListener('click', () => {
  document.getElementById('out').textContent = 'clicked';
});
function boom() { setTimeout(() => { throw new Error('boom on demand'); }, 0); }
</script>
</body></html>
"#;

const SECOND: &str = "<!doctype html><title>second</title><p>the second page</p>";

/// Serve PAGE at / (404 elsewhere) on 127.0.0.1; returns the base URL.
fn serve() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/" => ("200 OK", PAGE),
                "/second" => ("200 OK", SECOND),
                _ => ("404 Not Found", "not found"),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn browser_drives_a_served_page() {
    let url = serve();
    let mut b = Browser::launch().expect("launch chromium");
    b.set_viewport(640, 480).unwrap();
    b.goto(&url).unwrap();

    // eval: values, promises, exceptions as Err with the message.
    assert_eq!(b.eval("document.title").unwrap(), json!("browser test"));
    assert_eq!(b.eval("1 + 1").unwrap(), json!(2));
    assert_eq!(b.eval("undefined").unwrap(), json!(null));
    assert_eq!(
        b.eval("new Promise(r => setTimeout(() => r({a: [1, 'x']}), 10))")
            .unwrap(),
        json!({"a": [1, "x"]})
    );
    let e = b.eval("throw new Error('thrown on purpose')").unwrap_err();
    assert!(e.contains("thrown on purpose"), "{e}");
    let e = b
        .eval("Promise.reject(new Error('rejected on purpose'))")
        .unwrap_err();
    assert!(e.contains("rejected on purpose"), "{e}");

    // focus + type_text + press_key: Backspace edits, Enter submits the form.
    b.focus("#name").unwrap();
    b.type_text("hello").unwrap();
    assert_eq!(
        b.eval("document.getElementById('name').value").unwrap(),
        json!("hello")
    );
    b.press_key("Backspace").unwrap();
    b.press_key("!").unwrap();
    b.press_key("Enter").unwrap();
    b.wait_for(
        "document.getElementById('out').textContent == 'submitted hell!'",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        b.eval("keys").unwrap(),
        json!([
            ["Backspace", "Backspace", 8],
            ["!", "Digit1", 49],
            ["Enter", "Enter", 13]
        ])
    );
    b.eval("keys.length = 0").unwrap();
    b.press_key("Control+c").unwrap();
    b.press_key("Tab").unwrap();
    assert_eq!(
        b.eval("keys").unwrap(),
        json!([["c", "KeyC", 67], ["Tab", "Tab", 9]])
    );
    assert!(b.focus("#nothing-here").is_err());

    // click with real mouse events; wait_for returns the truthy value.
    b.click("#btn").unwrap();
    let v = b
        .wait_for(
            "document.getElementById('out').textContent.startsWith('clicked') && \
             document.getElementById('out').textContent",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(v, json!("clicked"));
    let e = b.click("#nothing-here").unwrap_err();
    assert!(e.contains("#nothing-here"), "{e}");

    // wait_for times out with the last value.
    let t = Instant::now();
    let e = b
        .wait_for(
            "document.title == 'never' ? 1 : 0",
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(e.contains("last value: 0"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // screenshot: a PNG of the viewport size.
    let dir = testkit::short_tempdir("browser-shot.");
    let shot = dir.path().join("page.png");
    b.screenshot(&shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (640, 480));

    // js_errors: an uncaught exception and console.error are collected.
    assert!(b.js_errors().is_empty(), "{:?}", b.js_errors());
    b.eval("boom(); console.error('bad thing', 42)").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.js_errors().len() < 2 && Instant::now() < deadline {
        b.eval("0").unwrap(); // reading the reply collects the events
    }
    let errs = b.js_errors();
    assert!(
        errs.iter().any(|e| e.contains("boom on demand")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e == "console.error: bad thing 42"),
        "{errs:?}"
    );
    // console_messages has every console call; log_errors the browser's own
    // errors, such as a resource that is not found.
    b.eval("console.log('hello', 42); fetch('/missing').then(r => r.status)")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.log_errors().iter().any(|e| e.contains("/missing")) && Instant::now() < deadline {
        b.eval("0").unwrap();
    }
    let console = b.console_messages();
    assert!(
        console.contains(&"log: hello 42".to_string()),
        "{console:?}"
    );
    assert!(
        console.contains(&"error: bad thing 42".to_string()),
        "{console:?}"
    );
    let logged = b.log_errors();
    assert!(
        logged
            .iter()
            .any(|e| e.contains("404") && e.contains("/missing")),
        "{logged:?}"
    );
    b.clear_js_errors();
    assert!(b.js_errors().is_empty());
    assert!(b.log_errors().is_empty() && b.console_messages().is_empty());

    // alert()/confirm() would block the page: they are accepted.
    assert_eq!(
        b.eval("alert('hi'); confirm('sure?')").unwrap(),
        json!(true)
    );

    // A page that cannot load is an error naming it.
    let e = b.goto("http://127.0.0.1:1/").unwrap_err();
    assert!(e.contains("127.0.0.1:1"), "{e}");
    b.goto(&url).unwrap();
    assert_eq!(b.eval("document.title").unwrap(), json!("browser test"));
    assert!(b.now_ms().unwrap() >= 0.0);

    // A link followed by a click, then goto: goto waits for its own
    // navigation's load, not the link's.
    b.click("#link").unwrap();
    b.goto(&url).unwrap();
    assert_eq!(
        b.eval("document.readyState + ' ' + document.title + ' ' + location.pathname")
            .unwrap(),
        json!("complete browser test /")
    );
    b.goto(&format!("{url}second")).unwrap();
    assert_eq!(b.eval("document.title").unwrap(), json!("second"));

    // Drop kills the whole process group and removes the profile.
    let pid = b.pid();
    let profile = b.profile_dir().to_path_buf();
    assert!(profile.join("DevToolsActivePort").is_file());
    drop(b);
    assert!(
        !umlkit_sys::process::group_exists(pid),
        "chromium group {pid} survived"
    );
    assert!(!profile.exists(), "{} left behind", profile.display());
    let left = testkit::pids_mentioning(&profile.to_string_lossy());
    assert!(left.is_empty(), "chromium processes left: {left:?}");
}

#[test]
fn missing_chromium_is_a_clear_error() {
    let e = Browser::launch_binary(Path::new("/nonexistent/chromium"))
        .err()
        .expect("launching a missing binary must fail");
    assert!(e.contains("/nonexistent/chromium"), "{e}");
    assert!(e.contains("apt-get install chromium"), "{e}");
}

#[test]
fn chromium_exiting_at_start_is_an_error_with_its_status() {
    let e = Browser::launch_binary(Path::new("/bin/false"))
        .err()
        .expect("a browser that exits at once must fail");
    assert!(e.contains("/bin/false exited"), "{e}");
    assert!(e.contains("before opening its DevTools port"), "{e}");
}

#[test]
fn browser_can_be_shared_between_tests() {
    // One browser per test file, e.g. in a static Mutex, needs Send.
    fn send<T: Send>() {}
    send::<Browser>();
}

/// Run by `chromium_dies_with_a_killed_test_process` in a child test
/// process: launch a browser, report its process group, wait to be killed.
#[test]
#[ignore = "helper: run by chromium_dies_with_a_killed_test_process"]
fn helper_hold_a_browser_until_killed() {
    let b = Browser::launch().expect("launch chromium");
    println!("chromium {} {}", b.pid(), b.profile_dir().display());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line); // EOF never comes: killed first
    drop(b);
}

#[test]
fn chromium_dies_with_a_killed_test_process() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "helper_hold_a_browser_until_killed",
        "--nocapture",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let mut helper = testkit::ProcGuard::spawn("browser helper", cmd);
    let out = helper.child_mut().stdout.take().unwrap();
    let line = std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("chromium "))
        .expect("the helper reports its browser");
    let mut f = line.split_whitespace().skip(1);
    let pgid: u32 = f.next().unwrap().parse().unwrap();
    let profile = std::path::PathBuf::from(f.next().unwrap());
    assert!(umlkit_sys::process::group_exists(pgid));

    // SIGKILL the test process alone: no Drop runs in it.
    umlkit_sys::process::kill(helper.pid(), umlkit_sys::process::SIGKILL).unwrap();
    let gone = testkit::wait_until(Duration::from_secs(10), || {
        !umlkit_sys::process::group_exists(pgid)
    });
    if !gone {
        let _ = umlkit_sys::process::kill_group(pgid, umlkit_sys::process::SIGKILL);
    }
    let _ = std::fs::remove_dir_all(&profile); // the one thing left behind
    assert!(
        gone,
        "chromium group {pgid} outlived its killed test process"
    );
}

/// Run by `launch_without_chromium_names_the_package` with no chromium on
/// PATH: prints what `Browser::launch` says.
#[test]
#[ignore = "helper: run by launch_without_chromium_names_the_package"]
fn helper_launch_without_chromium() {
    let e = Browser::launch().err().expect("no chromium on PATH");
    println!("launch error: {e}");
}

#[test]
fn launch_without_chromium_names_the_package() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_launch_without_chromium",
            "--nocapture",
        ])
        .env("PATH", "/nonexistent")
        .env_remove("UMLKIT_CHROMIUM")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("launch error: "))
        .unwrap_or_else(|| panic!("no error line in {stdout}"));
    assert!(
        line.contains("chromium not found") && line.contains("apt-get install chromium"),
        "{line}"
    );
}
