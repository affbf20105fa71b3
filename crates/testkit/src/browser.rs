//! A small synchronous headless-Chromium driver over the Chrome DevTools
//! Protocol, for end-to-end tests of pages served on localhost.
//!
//! [`Browser::launch`] starts `chromium` (Debian package `chromium`) headless
//! in its own process group with a fresh temporary profile, connects to its
//! DevTools WebSocket, opens one page and attaches to it (flattened session).
//! Every call is a blocking request/response with a bounded wait; the events
//! that arrive meanwhile are kept (the last [`EVENT_BACKLOG`]), and page errors
//! (`Runtime.exceptionThrown`, `console.error`) are collected for
//! [`Browser::js_errors`]. Dropping the [`Browser`] kills the whole process
//! group by PID and removes the profile directory. If the test process dies
//! first (SIGKILL, a timeout) or never drops it (a `static`: keep the
//! browser in a test function instead), a forked watchdog still kills the
//! group when the process ends, but the profile stays in
//! `/tmp/umlkit-chromium.*`.
//!
//! Input goes in as a user's would: [`Browser::click`] dispatches mouse
//! events at the element's centre, [`Browser::type_text`] inserts text into
//! the focused element, [`Browser::press_key`] sends keydown/keyup with the
//! key, code and keyCode a US keyboard gives ("Enter", "Control+c",
//! "ArrowUp"...). An xterm.js terminal (6.0, focused through its
//! `.xterm-helper-textarea`) receives typed text as one `onData` and keys as
//! "\r", "\x7f", "\t", "\x03", "\x1b[A".
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use std::time::Duration;
//! let mut b = testkit::browser::Browser::launch()?;
//! b.goto("http://127.0.0.1:8080/")?;
//! b.click("#start")?;
//! b.wait_for("document.querySelector('#state').textContent == 'running'", Duration::from_secs(10))?;
//! assert!(b.js_errors().is_empty());
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::ProcGuard;

/// How many protocol events [`Browser::events`] keeps (oldest dropped first).
pub const EVENT_BACKLOG: usize = 2000;

/// How long one protocol command may take before it is an error.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `goto` waits for the page's load event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Chromium may take to open its DevTools port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of `wait_for`.
const POLL: Duration = Duration::from_millis(25);

/// The flags Chromium runs with: headless, no sandbox (tests run as root),
/// nothing talking to the network on its own.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
];

/// A headless Chromium with one page attached; see the module docs.
pub struct Browser {
    // Field order is drop order: close the socket, kill the group, then
    // remove the profile the processes were writing to.
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Loader ids of the last navigations whose load event fired.
    loaded: VecDeque<String>,
    events: VecDeque<Value>,
    errors: Vec<String>,
    console: Vec<String>,
    log_errors: Vec<String>,
    proc: ProcGuard,
    watchdog: Watchdog,
    profile: tempfile::TempDir,
}

/// A forked guard that kills Chromium's process group when this process
/// ends without dropping the [`Browser`] (killed, or the browser kept in a
/// `static`, which is never dropped); disarmed on drop.
struct Watchdog(Option<umlkit_sys::process::GroupGuard>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.disarm();
        }
    }
}

/// The Chromium binary: `$UMLKIT_CHROMIUM`, else `chromium`,
/// `chromium-browser`, `google-chrome` on PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UMLKIT_CHROMIUM") {
        return crate::which(&p.to_string_lossy());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| crate::which(n))
}

impl Browser {
    /// Start headless Chromium (see [`chromium`] for where it is looked
    /// for) with a blank page attached.
    pub fn launch() -> Result<Browser, String> {
        let bin = chromium().ok_or_else(|| {
            "chromium not found on PATH (or $UMLKIT_CHROMIUM): install the Debian package \
             chromium (apt-get install chromium)"
                .to_string()
        })?;
        Browser::launch_binary(&bin)
    }

    /// Start the Chromium binary at `bin` (tests of the error path; other
    /// Chromium builds).
    pub fn launch_binary(bin: &Path) -> Result<Browser, String> {
        if crate::which(&bin.to_string_lossy()).is_none() {
            return Err(format!(
                "{}: no such executable: install the Debian package chromium (apt-get install chromium)",
                bin.display()
            ));
        }
        let profile = tempfile::Builder::new()
            .prefix("umlkit-chromium.")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a Chromium profile dir in /tmp: {e}"))?;
        let log = profile.path().join("chromium.stderr");
        let logf = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        let mut proc = ProcGuard::try_spawn("chromium", cmd)
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let watchdog = Watchdog(
            umlkit_sys::process::GroupGuard::spawn(proc.pid(), Duration::from_millis(100)).ok(),
        );

        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        let ws_url = loop {
            if let Some(url) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| devtools_url(&s))
            {
                break url;
            }
            if let Ok(Some(st)) = proc.child_mut().try_wait() {
                return Err(format!(
                    "{} exited ({st}) before opening its DevTools port:\n{}",
                    bin.display(),
                    log_tail(&log)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not open its DevTools port within {START_TIMEOUT:?}:\n{}",
                    bin.display(),
                    log_tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let ws = connect(&ws_url)?;
        let mut b = Browser {
            ws,
            session: String::new(),
            next_id: 0,
            loaded: VecDeque::new(),
            events: VecDeque::new(),
            errors: Vec::new(),
            console: Vec::new(),
            log_errors: Vec::new(),
            proc,
            watchdog,
            profile,
        };
        let target = b.call_browser("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| format!("Target.createTarget gave no targetId: {target}"))?
            .to_string();
        let att = b.call_browser(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        b.session = att["sessionId"]
            .as_str()
            .ok_or_else(|| format!("Target.attachToTarget gave no sessionId: {att}"))?
            .to_string();
        b.call("Page.enable", json!({}))?;
        b.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))?;
        b.call("Runtime.enable", json!({}))?;
        b.call("Log.enable", json!({}))?;
        Ok(b)
    }

    /// PID (and process group) of the Chromium process.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The temporary profile directory (removed on drop).
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Navigate to `url` and wait for its load event.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r["errorText"].as_str() {
            return Err(format!("cannot load {url}: {e}"));
        }
        let Some(loader) = r["loaderId"].as_str() else {
            return Ok(()); // same-document navigation: no load event
        };
        // This navigation's own load event, not a late one of an earlier
        // navigation (a click that followed a link).
        let deadline = Instant::now() + LOAD_TIMEOUT;
        while !self.loaded.iter().any(|l| l == loader) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{url} did not finish loading within {LOAD_TIMEOUT:?}"
                ));
            }
            self.pump(deadline)?;
        }
        Ok(())
    }

    /// Evaluate `js` in the page (promises awaited) and return its value
    /// (`null` for `undefined`); a thrown exception is `Err` with its message.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "returnByValue": true,
                "awaitPromise": true,
                "userGesture": true,
            }),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(exception_text(ex));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluate `js_predicate` until its value is truthy and return that
    /// value; after `timeout`, `Err` with the last value (or error).
    pub fn wait_for(&mut self, js_predicate: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(js_predicate) {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for `{js_predicate}`; last value: {last}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Click the centre of the first element matching `css_selector` with
    /// real mouse events (scrolled into view first).
    pub fn click(&mut self, css_selector: &str) -> Result<(), String> {
        let sel = js_string(css_selector);
        let r = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center', inline: 'center'}}); \
             const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ))?;
        let (x, y) = match (r[0].as_f64(), r[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(format!("click: no element matches {css_selector}")),
        };
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        )?;
        for ty in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": ty, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
            )?;
        }
        Ok(())
    }

    /// Focus the first element matching `css_selector`.
    pub fn focus(&mut self, css_selector: &str) -> Result<(), String> {
        let sel = js_string(css_selector);
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
             e.focus(); return true; }})()"
        ))?;
        if found != Value::Bool(true) {
            return Err(format!("focus: no element matches {css_selector}"));
        }
        Ok(())
    }

    /// Insert `text` into the focused element, as an IME would
    /// (`Input.insertText`: an `input` event, no key events).
    pub fn type_text(&mut self, text: &str) -> Result<(), String> {
        self.call("Input.insertText", json!({ "text": text }))?;
        Ok(())
    }

    /// Press and release one key: a DOM key name ("Enter", "Backspace",
    /// "Tab", "Escape", "ArrowUp", "Delete", "Home", "F1"...) or one
    /// character, optionally after modifiers ("Control+c", "Shift+Tab",
    /// "Alt+x"). Sent with key, code, keyCode and text as a real keyboard
    /// does, so keydown listeners (xterm.js) see them.
    pub fn press_key(&mut self, key: &str) -> Result<(), String> {
        let k = key_spec(key)?;
        let mut down = json!({
            "type": if k.text.is_empty() { "rawKeyDown" } else { "keyDown" },
            "key": k.key,
            "code": k.code,
            "windowsVirtualKeyCode": k.key_code,
            "nativeVirtualKeyCode": k.key_code,
            "modifiers": k.modifiers,
        });
        if !k.text.is_empty() {
            down["text"] = json!(k.text);
            down["unmodifiedText"] = json!(k.text);
        }
        if k.location != 0 {
            down["location"] = json!(k.location);
        }
        self.call("Input.dispatchKeyEvent", down)?;
        let mut up = json!({
            "type": "keyUp",
            "key": k.key,
            "code": k.code,
            "windowsVirtualKeyCode": k.key_code,
            "nativeVirtualKeyCode": k.key_code,
            "modifiers": k.modifiers,
        });
        if k.location != 0 {
            up["location"] = json!(k.location);
        }
        self.call("Input.dispatchKeyEvent", up)?;
        Ok(())
    }

    /// Emulate a `w`×`h` CSS-pixel viewport (device scale 1, not mobile).
    pub fn set_viewport(&mut self, w: u32, h: u32) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": w, "height": h, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        Ok(())
    }

    /// Save a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = r["data"]
            .as_str()
            .ok_or("Page.captureScreenshot returned no data")?;
        let png = base64_decode(data)?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// `performance.now()` of the page, in milliseconds (timing helper).
    pub fn now_ms(&mut self) -> Result<f64, String> {
        self.eval("performance.now()")?
            .as_f64()
            .ok_or_else(|| "performance.now() is not a number".to_string())
    }

    /// Uncaught exceptions and `console.error` messages seen so far.
    pub fn js_errors(&self) -> Vec<String> {
        self.errors.clone()
    }

    /// Forget the collected [`js_errors`](Browser::js_errors),
    /// [`log_errors`](Browser::log_errors) and
    /// [`console_messages`](Browser::console_messages).
    pub fn clear_js_errors(&mut self) {
        self.errors.clear();
        self.log_errors.clear();
        self.console.clear();
    }

    /// Errors the browser itself logged for the page (not in
    /// [`js_errors`](Browser::js_errors)): failed resource loads (a 404, a
    /// refused WebSocket), security and intervention messages. Chromium's own
    /// `/favicon.ico` request shows here when the server has none.
    pub fn log_errors(&self) -> Vec<String> {
        self.log_errors.clone()
    }

    /// Every `console.*` call seen so far, as "TYPE: ARGS" ("log: hello 42").
    pub fn console_messages(&self) -> Vec<String> {
        self.console.clone()
    }

    /// The page's protocol events seen so far (the last [`EVENT_BACKLOG`]),
    /// each the full message (`method`, `params`).
    pub fn events(&self) -> impl Iterator<Item = &Value> {
        self.events.iter()
    }

    /// Send any page-session command and return its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.command(Some(&session), method, params)
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.command(None, method, params)
    }

    fn command(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.send(&msg)?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(reply) = self.pump(deadline)? {
                if reply["id"].as_u64() == Some(id) {
                    if let Some(e) = reply.get("error") {
                        let m = e["message"].as_str().unwrap_or("error");
                        let data = e["data"].as_str().map(|d| format!(" ({d})"));
                        return Err(format!("{method}: {m}{}", data.unwrap_or_default()));
                    }
                    return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
                }
                continue; // a late reply to a command we stopped waiting for
            }
            if Instant::now() >= deadline {
                return Err(format!("{method}: no reply within {COMMAND_TIMEOUT:?}"));
            }
        }
    }

    fn send(&mut self, msg: &Value) -> Result<(), String> {
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("DevTools socket: {e}"))
    }

    /// Read one message (waiting at most until `deadline`): a command reply
    /// is returned, an event is recorded and gives `None`.
    fn pump(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        let _ = self.ws.get_ref().set_read_timeout(Some(wait));
        let text = match self.ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(_) => return Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("DevTools socket: {e}")),
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("bad DevTools message: {e}"))?;
        if v.get("id").is_some() {
            return Ok(Some(v));
        }
        self.event(v)?;
        Ok(None)
    }

    fn event(&mut self, v: Value) -> Result<(), String> {
        let method = v["method"].as_str().unwrap_or_default().to_string();
        let ours = v["sessionId"].as_str() == Some(self.session.as_str());
        if !self.session.is_empty()
            && method == "Target.detachedFromTarget"
            && v["params"]["sessionId"].as_str() == Some(self.session.as_str())
        {
            return Err("the page was closed (detached from its target)".into());
        }
        if !ours {
            return Ok(());
        }
        let p = &v["params"];
        match method.as_str() {
            "Page.lifecycleEvent" if p["name"] == "load" => {
                if self.loaded.len() >= 64 {
                    self.loaded.pop_front();
                }
                self.loaded
                    .push_back(p["loaderId"].as_str().unwrap_or_default().to_string());
            }
            "Runtime.exceptionThrown" => self.errors.push(exception_text(&p["exceptionDetails"])),
            "Runtime.consoleAPICalled" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| a.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                let ty = p["type"].as_str().unwrap_or("log");
                if ty == "error" {
                    self.errors
                        .push(format!("console.error: {}", args.join(" ")));
                }
                if self.console.len() >= EVENT_BACKLOG {
                    self.console.remove(0);
                }
                self.console.push(format!("{ty}: {}", args.join(" ")));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                let text = e["text"].as_str().unwrap_or_default();
                let url = e["url"].as_str().map(|u| format!(" ({u})"));
                self.log_errors
                    .push(format!("{text}{}", url.unwrap_or_default()));
            }
            "Page.javascriptDialogOpening" => {
                // An alert() would block the page: accept it, without
                // waiting for the reply (it is dropped when it comes).
                self.next_id += 1;
                let msg = json!({
                    "id": self.next_id,
                    "sessionId": self.session,
                    "method": "Page.handleJavaScriptDialog",
                    "params": { "accept": true },
                });
                self.send(&msg)?;
            }
            "Inspector.targetCrashed" => return Err("the page crashed".into()),
            _ => {}
        }
        if self.events.len() >= EVENT_BACKLOG {
            self.events.pop_front();
        }
        self.events.push_back(v);
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        self.proc.kill();
        if let Some(g) = self.watchdog.0.take() {
            g.disarm();
        }
        // TempDir's own drop removes the profile afterwards.
    }
}

/// The browser's WebSocket URL from DevToolsActivePort ("PORT\n/devtools/
/// browser/UUID"); `None` until the file is complete.
fn devtools_url(file: &str) -> Option<String> {
    let mut lines = file.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let path = lines.next()?.trim();
    let id = path.strip_prefix("/devtools/browser/")?;
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| format!("ws://127.0.0.1:{port}{path}"))
}

/// Connect the DevTools WebSocket at `url` (ws://127.0.0.1:PORT/...).
fn connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("unexpected DevTools URL {url}"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let stream = TcpStream::connect(host)
        .map_err(|e| format!("cannot connect to DevTools at {url}: {e}"))?;
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tungstenite::client::client(url, stream)
        .map_err(|e| format!("DevTools WebSocket handshake with {url}: {e}"))?;
    Ok(ws)
}

/// The last lines of Chromium's stderr, for error messages.
fn log_tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A JS string literal for `s`.
fn js_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// JavaScript truthiness of a returned value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The message of a `Runtime.ExceptionDetails`.
fn exception_text(ex: &Value) -> String {
    let ex_obj = &ex["exception"];
    if let Some(d) = ex_obj["description"].as_str() {
        return d.lines().next().unwrap_or(d).to_string();
    }
    if let Some(v) = ex_obj.get("value") {
        return format!("Uncaught {}", remote_value_text(v));
    }
    ex["text"].as_str().unwrap_or("exception").to_string()
}

fn remote_object_text(o: &Value) -> String {
    if let Some(v) = o.get("value") {
        return remote_value_text(v);
    }
    o["description"]
        .as_str()
        .or(o["type"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn remote_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One key as `Input.dispatchKeyEvent` wants it.
#[derive(Debug, PartialEq)]
struct KeySpec {
    key: String,
    code: String,
    key_code: u32,
    text: String,
    modifiers: u32,
    location: u32,
}

/// Parse "Enter", "a", "Control+c", "Shift+Tab"... (see `press_key`).
fn key_spec(spec: &str) -> Result<KeySpec, String> {
    let (mods, name) = match spec.rsplit_once('+') {
        Some((m, n)) if !n.is_empty() => (m, n),
        _ => ("", spec),
    };
    let mut modifiers = 0;
    for m in mods.split('+').filter(|m| !m.is_empty()) {
        modifiers |= match m {
            "Alt" => 1,
            "Control" | "Ctrl" => 2,
            "Meta" | "Cmd" => 4,
            "Shift" => 8,
            _ => return Err(format!("press_key: unknown modifier {m:?} in {spec:?}")),
        };
    }
    let named: Option<(&str, u32, &str)> = match name {
        "Enter" => Some(("Enter", 13, "\r")),
        "Tab" => Some(("Tab", 9, "")),
        "Backspace" => Some(("Backspace", 8, "")),
        "Escape" | "Esc" => Some(("Escape", 27, "")),
        "Delete" => Some(("Delete", 46, "")),
        "Insert" => Some(("Insert", 45, "")),
        "Home" => Some(("Home", 36, "")),
        "End" => Some(("End", 35, "")),
        "PageUp" => Some(("PageUp", 33, "")),
        "PageDown" => Some(("PageDown", 34, "")),
        "ArrowLeft" => Some(("ArrowLeft", 37, "")),
        "ArrowUp" => Some(("ArrowUp", 38, "")),
        "ArrowRight" => Some(("ArrowRight", 39, "")),
        "ArrowDown" => Some(("ArrowDown", 40, "")),
        "Space" | " " => Some(("Space", 32, " ")),
        _ => None,
    };
    let (key, code, key_code, text, location) = if let Some((code, kc, text)) = named {
        let key = if code == "Space" { " " } else { code };
        (key.to_string(), code.to_string(), kc, text.to_string(), 0)
    } else if let Some(n) = name
        .strip_prefix('F')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=12).contains(n))
    {
        (
            name.to_string(),
            name.to_string(),
            111 + n,
            String::new(),
            0,
        )
    } else if let "Shift" | "Control" | "Alt" | "Meta" = name {
        let kc = match name {
            "Shift" => 16,
            "Control" => 17,
            "Alt" => 18,
            _ => 91,
        };
        (
            name.to_string(),
            format!("{name}Left"),
            kc,
            String::new(),
            1,
        )
    } else {
        let mut chars = name.chars();
        let c = match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => return Err(format!("press_key: unknown key {spec:?}")),
        };
        let (code, kc) = match c {
            'a'..='z' | 'A'..='Z' => (
                format!("Key{}", c.to_ascii_uppercase()),
                c.to_ascii_uppercase() as u32,
            ),
            '0'..='9' => (format!("Digit{c}"), c as u32),
            ')' | '!' | '@' | '#' | '$' | '%' | '^' | '&' | '*' | '(' => {
                let d = ")!@#$%^&*(".find(c).unwrap_or(0) as u32;
                (format!("Digit{d}"), 48 + d)
            }
            _ => punctuation(c).map_or((String::new(), 0), |(code, kc)| (code.into(), kc)),
        };
        (c.to_string(), code, kc, c.to_string(), 0)
    };
    // With Control, Alt or Meta held a key types nothing (xterm.js and the
    // browser act on the keydown alone).
    let text = if modifiers & 0b111 != 0 {
        String::new()
    } else {
        text
    };
    Ok(KeySpec {
        key,
        code,
        key_code,
        text,
        modifiers,
        location,
    })
}

/// US-layout `code` and keyCode of punctuation keys.
fn punctuation(c: char) -> Option<(&'static str, u32)> {
    Some(match c {
        ';' | ':' => ("Semicolon", 186),
        '=' | '+' => ("Equal", 187),
        ',' | '<' => ("Comma", 188),
        '-' | '_' => ("Minus", 189),
        '.' | '>' => ("Period", 190),
        '/' | '?' => ("Slash", 191),
        '`' | '~' => ("Backquote", 192),
        '[' | '{' => ("BracketLeft", 219),
        '\\' | '|' => ("Backslash", 220),
        ']' | '}' => ("BracketRight", 221),
        '\'' | '"' => ("Quote", 222),
        _ => return None,
    })
}

/// Decode standard base64 (what `Page.captureScreenshot` returns).
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' => continue,
            _ => return Err(format!("bad base64 byte {b:#04x} in screenshot data")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtools_url_waits_for_a_complete_port_file() {
        let full = "37445\n/devtools/browser/b18ed62c-fc6b-4fbc-bd5f-e786ed1d81e0";
        assert_eq!(
            devtools_url(full).as_deref(),
            Some("ws://127.0.0.1:37445/devtools/browser/b18ed62c-fc6b-4fbc-bd5f-e786ed1d81e0")
        );
        assert!(devtools_url(&format!("{full}\n")).is_some());
        for partial in [
            "",
            "374",
            "37445\n",
            "37445\n/devtools/browser/b18ed62c-fc6b",
        ] {
            assert_eq!(devtools_url(partial), None, "{partial:?}");
        }
    }

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn keys_carry_key_code_and_text() {
        let k = key_spec("Enter").unwrap();
        assert_eq!(
            (k.key.as_str(), k.code.as_str(), k.key_code, k.text.as_str()),
            ("Enter", "Enter", 13, "\r")
        );
        let k = key_spec("Backspace").unwrap();
        assert_eq!((k.key_code, k.text.as_str()), (8, ""));
        let k = key_spec("a").unwrap();
        assert_eq!(
            (k.code.as_str(), k.key_code, k.text.as_str()),
            ("KeyA", 65, "a")
        );
        let k = key_spec("Control+c").unwrap();
        assert_eq!(
            (k.key.as_str(), k.key_code, k.modifiers, k.text.as_str()),
            ("c", 67, 2, "")
        );
        let k = key_spec("Shift+Tab").unwrap();
        assert_eq!((k.key.as_str(), k.modifiers), ("Tab", 8));
        let k = key_spec("+").unwrap();
        assert_eq!((k.key.as_str(), k.code.as_str()), ("+", "Equal"));
        assert_eq!(key_spec("F5").unwrap().key_code, 116);
        assert!(key_spec("Hyper+x").is_err());
        assert!(key_spec("NoSuchKey").is_err());
    }

    #[test]
    fn truthiness_follows_javascript() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!(0.0)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
            assert!(truthy(&v), "{v}");
        }
    }
}
