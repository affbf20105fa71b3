//! Shared by the web view tests: the server of a test lab (`umlkit lab web`
//! in its own process group, killed on drop), a minimal HTTP/1.1 client and
//! a WebSocket client (tungstenite), all over real sockets.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::lab::TestLab;
use testkit::ProcGuard;

pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A running `umlkit lab web` (or `umlkit web`).
pub struct WebServer {
    pub guard: ProcGuard,
    /// `http://127.0.0.1:PORT/?token=T` as printed.
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub token: String,
}

/// Start `umlkit lab web LAB ARGS` and wait for its URL line.
pub fn start_web(lab: &TestLab, args: &[&str]) -> WebServer {
    let mut c = lab.cmd_dir("web", args);
    c.stdout(Stdio::piped()).stderr(Stdio::inherit());
    spawn_web(c)
}

/// Run `c` (a web server command) and wait for its URL line.
pub fn spawn_web(c: std::process::Command) -> WebServer {
    let mut guard = ProcGuard::spawn("umlkit web", c);
    let out = guard.child_mut().stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the web server prints its URL");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let addr = url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let token = url.split("token=").nth(1).expect("token").to_string();
    WebServer {
        guard,
        url,
        addr,
        token,
    }
}

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// `METHOD PATH` on `addr` with extra header lines and a body.
pub fn http(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers: head,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(p) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..p]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[p + 2 + n + 2..];
    }
}

impl WebServer {
    pub fn cookie(&self) -> String {
        let port = self.addr.rsplit(':').next().unwrap();
        format!("Cookie: umlkit_web_{port}={}", self.token)
    }
    /// GET with the token (as the page sends it: the cookie).
    pub fn get(&self, path: &str) -> Answer {
        http(&self.addr, "GET", path, &[self.cookie()], "")
    }
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Answer {
        http(
            &self.addr,
            "POST",
            path,
            &[self.cookie(), "Content-Type: application/json".into()],
            &body.to_string(),
        )
    }
    /// The first lab's id.
    pub fn lab_id(&self) -> String {
        self.get("/api/labs").json()[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
    /// A WebSocket to `path` with the cookie and the page's Origin.
    pub fn ws(&self, path: &str) -> Ws {
        ws_connect(
            &self.addr,
            path,
            Some(&self.cookie()),
            Some(&format!("http://{}", self.addr)),
        )
        .unwrap_or_else(|e| panic!("websocket {path}: {e}"))
    }
}

/// A WebSocket handshake on `addr` with optional cookie and Origin headers.
pub fn ws_connect(
    addr: &str,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(c) = cookie {
        let v = c.strip_prefix("Cookie: ").unwrap_or(c);
        req.headers_mut().insert("Cookie", v.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let (ws, _) = tungstenite::connect(req)?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    Ok(ws)
}

/// Read messages until `f` accepts the accumulated text output (binary
/// frames) or a text frame; `None` on timeout.
pub fn ws_until(
    ws: &mut Ws,
    timeout: Duration,
    mut f: impl FnMut(&tungstenite::Message) -> bool,
) -> Option<tungstenite::Message> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(m) => {
                if f(&m) {
                    return Some(m);
                }
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("websocket: {e}"),
        }
    }
    None
}

/// The HTTP status of a refused WebSocket handshake (None: it was accepted).
pub fn ws_refused_status(r: Result<Ws, tungstenite::Error>) -> Option<u16> {
    match r {
        Ok(_) => None,
        Err(tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("unexpected websocket error: {e}"),
    }
}

/// Three machines on two domains: a-b on A, b-c on B.
pub fn three_machine_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("lab.conf", "a[0]=A\nb[0]=A\nb[1]=B\nc[0]=B\n"),
        ("a.startup", "ip addr add 10.1.0.1/24 dev eth0\n"),
        (
            "b.startup",
            "ip addr add 10.1.0.2/24 dev eth0\nip addr add 10.2.0.2/24 dev eth1\necho b: addresses set\n",
        ),
        ("c.startup", "ip addr add 10.2.0.1/24 dev eth0\n"),
    ]
}

/// Chunks read from `r` (a pty master) by a thread, until EOF or error.
pub fn read_chunks(mut r: std::fs::File) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    rx
}

/// A started one-machine lab (machine `a`) and its state folder (the one
/// holding `plan.json`), whose `g` is the guests' state dir.
pub fn started_one_machine_lab(prefix: &str) -> (TestLab, std::path::PathBuf) {
    let lab = TestLab::new(prefix, &[("lab.conf", "a[0]=A\n")]);
    lab.ok_dir("start", &[]);
    let dir = std::fs::read_dir(&lab.state)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("plan.json").exists())
        .unwrap()
        .path();
    (lab, dir)
}
