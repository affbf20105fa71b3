//! Routes: the page, the JSON API and the WebSockets (schema: docs/json.md).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;

use crate::{auth, LabEntry};

/// One lab the server shows, with what its handlers share.
pub struct Slot {
    pub entry: Arc<LabEntry>,
    /// Latest status document (JSON text), refreshed while someone listens.
    status: watch::Sender<Arc<String>>,
    /// A poller refreshes `status` (at most one at a time).
    polling: Arc<std::sync::atomic::AtomicBool>,
    /// One lab action at a time.
    busy: tokio::sync::Mutex<()>,
    /// The topology picture, laid out once (Graphviz takes seconds for
    /// large labs; the plan does not change while we serve).
    svg: tokio::sync::OnceCell<Result<String, String>>,
}

impl Slot {
    fn new(entry: LabEntry) -> Slot {
        Slot {
            entry: Arc::new(entry),
            status: watch::channel(Arc::new(String::new())).0,
            polling: Arc::default(),
            busy: tokio::sync::Mutex::new(()),
            svg: tokio::sync::OnceCell::new(),
        }
    }
}

/// The server's shared state.
pub struct App {
    labs: std::sync::RwLock<Vec<Arc<Slot>>>,
    /// `umlkit web`: labs started after the server are found here.
    discover: Option<crate::Discover>,
    token: String,
    port: u16,
}

impl App {
    pub fn new(
        labs: Vec<LabEntry>,
        token: String,
        port: u16,
        discover: Option<crate::Discover>,
    ) -> App {
        App {
            labs: std::sync::RwLock::new(
                labs.into_iter().map(|l| Arc::new(Slot::new(l))).collect(),
            ),
            discover,
            token,
            port,
        }
    }

    /// The ids of the labs shown, in the order they were added.
    pub fn ids(&self) -> Vec<String> {
        self.slots()
            .iter()
            .map(|s| s.entry.plan.id.clone())
            .collect()
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.labs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Add the labs started since the last look (with discovery on):
    /// returns the ids added. Labs already shown stay, running or not.
    pub async fn discover(self: &Arc<Self>) -> Vec<String> {
        let Some(d) = self.discover.clone() else {
            return vec![];
        };
        let known = self.ids();
        let found = tokio::task::spawn_blocking(move || {
            crate::running_labs(&d.root)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !known.contains(&p.id))
                .filter_map(|p| LabEntry::new(p, &d.root, d.umlkit.as_deref()).ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut added = Vec::new();
        let mut labs = self.labs.write().unwrap_or_else(|e| e.into_inner());
        for e in found {
            // another request may have added it meanwhile
            if labs.iter().all(|s| s.entry.plan.id != e.plan.id) {
                added.push(e.plan.id.clone());
                labs.push(Arc::new(Slot::new(e)));
            }
        }
        added
    }

    /// The lab's topology SVG (laid out on first use, then kept).
    pub async fn svg(&self, id: &str) -> Result<String, ApiError> {
        let slot = self.slot(id)?;
        let l = slot.entry.clone();
        slot.svg
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || crate::topology_svg(&l.plan))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            })
            .await
            .clone()
            .map_err(internal)
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, ApiError> {
        self.slots()
            .into_iter()
            .find(|s| s.entry.plan.id == id)
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no lab {id}")))
    }

    fn lab(&self, id: &str) -> Result<Arc<LabEntry>, ApiError> {
        self.slot(id).map(|s| s.entry.clone())
    }
}

/// An error answer: status code and message (as `{"error": ...}`).
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// `e` and its sources on one line, as the CLI prints them.
fn lab_error_text(e: &lab::LabError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// All routes, behind the token check.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*name}", get(asset))
        .route("/api/labs", get(labs))
        .route("/api/labs/{lab}/status", get(status))
        .route("/api/labs/{lab}/topology.svg", get(svg))
        .route("/api/labs/{lab}/events", get(events))
        .route("/api/labs/{lab}/machines/{machine}/log", get(log))
        .route("/api/labs/{lab}/machines/{machine}/terminal", get(terminal))
        .route("/api/labs/{lab}/domains/{domain}/counters", get(counters))
        .route("/api/labs/{lab}/domains/{domain}/capture", get(capture))
        .route("/api/labs/{lab}/action", post(action))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// The token on every request; a same-host `Origin` on WebSocket upgrades.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ok = auth::presented(req.headers(), req.uri(), app.port)
        .is_some_and(|t| auth::same(t.as_bytes(), app.token.as_bytes()));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            "umlkit web: the access token is missing or wrong (open the URL printed at start)\n",
        )
            .into_response();
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade && !auth::origin_ok(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "umlkit web: WebSocket from another origin refused\n",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The page; `/?token=T` (the printed URL) sets the cookie and sends the
/// browser to `/`, so the token leaves the address bar.
async fn index(State(app): State<Arc<App>>, uri: Uri) -> Response {
    if auth::query_token(&uri).is_some() {
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, "/")
            .header(header::SET_COOKIE, auth::set_cookie(app.port, &app.token))
            .body(Body::empty())
            .unwrap_or_default();
    }
    crate::assets::response("index.html")
}

async fn asset(Path(name): Path<String>) -> Response {
    crate::assets::response(&name)
}

/// `[{"id", "name", "dir", "machines", "domains"}]`; with discovery
/// (`umlkit web`), labs started since are added first.
async fn labs(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    for id in app.discover().await {
        // lay the new topology out now, before the page asks
        let app = app.clone();
        tokio::spawn(async move { app.svg(&id).await.ok() });
    }
    Json(serde_json::Value::Array(
        app.slots()
            .iter()
            .map(|s| {
                let l = &s.entry;
                serde_json::json!({
                    "id": l.plan.id, "name": l.plan.name, "dir": l.plan.lab_dir,
                    "machines": l.plan.machines.iter().map(|m| &m.name).collect::<Vec<_>>(),
                    "domains": l.plan.switches.iter().map(|s| &s.domain).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

/// The status document of a lab (see docs/json.md, "web API").
pub fn status_doc(l: &LabEntry) -> Result<serde_json::Value, lab::LabError> {
    let now = std::time::Instant::now();
    let st = lab::status::gather_with(&l.backend, &l.plan, &mut |m, pid| {
        l.addresses.get(&m.name, pid, now, crate::ADDRESS_TTL, || {
            lab::runner::ask_addresses(&l.backend, m)
        })
    })?;
    let mut live = serde_json::Map::new();
    let booted = boot_seconds();
    for m in &st.machines {
        let (uptime, rss) = match (m.pid, m.state.as_str()) {
            // every state whose kernel runs
            (Some(pid), "running" | "booting" | "failed" | "interrupted") => {
                let up = start_seconds(pid).and_then(|s| booted.map(|n| (n - s).max(0.0) as u64));
                (up, Some(guest::host_memory(&[pid]).rss_kb))
            }
            _ => (None, None),
        };
        live.insert(
            m.name.clone(),
            serde_json::json!({"uptime_s": uptime, "host_rss_kb": rss}),
        );
    }
    use lab::status::Problem;
    let problems: Vec<serde_json::Value> = st
        .problems()
        .into_iter()
        .map(|p| match p {
            Problem::DeadSwitch(d) => serde_json::json!({"kind": "dead_switch", "domain": d}),
            Problem::Dead(m) => serde_json::json!({"kind": "dead", "machine": m}),
            Problem::Interrupted(m) => serde_json::json!({"kind": "interrupted", "machine": m}),
            Problem::Failed(m) => serde_json::json!({"kind": "failed", "machine": m}),
            Problem::LostLinks(m, ds) => {
                serde_json::json!({"kind": "lost_links", "machine": m, "domains": ds})
            }
            Problem::DeadCapture(c, log) => {
                serde_json::json!({"kind": "dead_capture", "capture": c, "log": log})
            }
        })
        .collect();
    Ok(serde_json::json!({
        "id": l.plan.id,
        "status": st.json(&l.plan),
        "live": live,
        "problems": problems,
    }))
}

/// Seconds since the host booted.
fn boot_seconds() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When `pid` started, in seconds since boot (USER_HZ is 100 on Linux).
fn start_seconds(pid: u32) -> Option<f64> {
    let f = umlkit_sys::procfs::stat_fields(pid)?;
    // starttime is field 22 of stat; stat_fields starts at field 3
    let ticks: f64 = f.get(19)?.parse().ok()?;
    Some(ticks / 100.0)
}

async fn status(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = app.lab(&id)?;
    let v = tokio::task::spawn_blocking(move || status_doc(&l))
        .await
        .map_err(internal)?
        .map_err(|e| internal(lab_error_text(&e)))?;
    Ok(Json(v))
}

async fn svg(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = app.svg(&id).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], s).into_response())
}

async fn log(
    State(app): State<Arc<App>>,
    Path((id, machine)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let l = app.lab(&id)?;
    let text = tokio::task::spawn_blocking(move || {
        let m = l
            .plan
            .machine(&machine)
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no machine {machine}")))?;
        lab::runner::logs(&l.backend, &l.plan, m).map_err(|e| internal(lab_error_text(&e)))
    })
    .await
    .map_err(internal)??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// The switch's per-port counters (`port/stats`) and link settings
/// (`link/show`) of a domain, as text.
async fn counters(
    State(app): State<Arc<App>>,
    Path((id, domain)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = app.lab(&id)?;
    let sw = l
        .plan
        .switches
        .iter()
        .find(|s| s.domain == domain)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no domain {domain}")))?;
    let mgmt = sw.mgmt.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!("domain {domain}: its switch has no console"),
        )
    })?;
    let (stats, links) = tokio::task::spawn_blocking(move || {
        (
            switchd::client::command(&mgmt, "port/stats").map_err(|e| e.to_string()),
            switchd::client::command(&mgmt, "link/show").map_err(|e| e.to_string()),
        )
    })
    .await
    .map_err(internal)?;
    let stats = stats.map_err(|e| ApiError(StatusCode::CONFLICT, format!("{domain}: {e}")))?;
    Ok(Json(serde_json::json!({
        "domain": domain, "port_stats": stats, "link_show": links.unwrap_or_default(),
    })))
}

/// `?seconds=S` (1 to 300, default 10) and `&count=N` (stop after N
/// frames).
#[derive(Debug, Deserialize)]
pub struct CaptureQuery {
    pub seconds: Option<u64>,
    pub count: Option<u64>,
}

/// A pcapng file of what a domain's switch forwards for `seconds` (as
/// `umlkit lab capture DOMAIN -w FILE`), downloaded as an attachment.
async fn capture(
    State(app): State<Arc<App>>,
    Path((id, domain)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<CaptureQuery>,
) -> Result<Response, ApiError> {
    let l = app.lab(&id)?;
    let secs = q.seconds.unwrap_or(10);
    if !(1..=300).contains(&secs) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("seconds={secs}: from 1 to 300"),
        ));
    }
    let si = l
        .plan
        .switches
        .iter()
        .position(|s| s.domain == domain)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no domain {domain}")))?;
    let mgmt = l.plan.switches[si].mgmt.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!("domain {domain}: its switch has no console"),
        )
    })?;
    let opts = switchd::capture::CaptureOptions {
        count: q.count,
        names: l.plan.port_names(si),
        until: Some(std::time::Instant::now() + Duration::from_secs(secs)),
        ..Default::default()
    };
    // its own thread: the capture blocks SIGINT/SIGTERM in the thread it
    // runs on (signalfd), which must not be a pool thread
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = switchd::capture::capture(&mgmt, &opts, switchd::capture::Format::Pcapng, &mut out);
        let _ = tx.send(r.map(|_| out));
    });
    let bytes = rx
        .await
        .map_err(internal)?
        .map_err(|e| ApiError(StatusCode::CONFLICT, format!("{domain}: {e}")))?;
    let name: String = format!("{}-{domain}.pcapng", l.plan.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pcapng".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `{"action": "start"|"stop"|"restart"|"crash", "machines": [..]}`
/// (no machines: the whole lab).
#[derive(Debug, Deserialize)]
pub struct ActionRequest {
    pub action: String,
    #[serde(default)]
    pub machines: Vec<String>,
}

async fn action(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Json(req): Json<ActionRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = app.lab(&id)?;
    for m in &req.machines {
        if l.plan.machine(m).is_none() {
            return Err(ApiError(StatusCode::NOT_FOUND, format!("no machine {m}")));
        }
    }
    let slot = app.slot(&id)?;
    let _g = slot.busy.lock().await;
    let out = tokio::task::spawn_blocking(move || run_action(&l, &req))
        .await
        .map_err(internal)?
        .map_err(|e| ApiError(StatusCode::CONFLICT, e))?;
    Ok(Json(serde_json::json!({ "ok": true, "log": out })))
}

/// Start, stop, restart or crash machines (or the lab) with the runner's
/// calls, as `umlkit lab start/stop/restart/crash` makes them.
fn run_action(l: &LabEntry, req: &ActionRequest) -> Result<Vec<String>, String> {
    let mut log: Vec<String> = Vec::new();
    let plan = &l.plan;
    let stop = |log: &mut Vec<String>| {
        lab::runner::stop(
            &l.backend,
            plan,
            &req.machines,
            Duration::from_secs(30),
            &mut |s: &str| log.push(s.to_string()),
        )
        .map_err(|e| lab_error_text(&e))
    };
    let start = |log: &mut Vec<String>| -> Result<(), String> {
        // the lab folder as it is now, untrusted (host-side kernel
        // arguments refused), as `lab start` without --host-access
        let (fresh, loaded) = lab::open::load(&plan.lab_dir, None, None, &l.state_root)
            .map_err(|e| lab_error_text(&e))?;
        lab::confine::check_kernel_args(&loaded).map_err(|e| lab_error_text(&e))?;
        let waves = lab::plan::select(&fresh, &req.machines).map_err(|e| lab_error_text(&e))?;
        lab::runner::start(
            &l.backend,
            &fresh,
            &waves,
            lab::sizing::default_parallel(&fresh),
            Duration::from_secs(120),
            &mut |s: &str| log.push(s.to_string()),
        )
        .map_err(|e| lab_error_text(&e))
    };
    match req.action.as_str() {
        "start" => start(&mut log)?,
        "stop" => stop(&mut log)?,
        "restart" => {
            stop(&mut log)?;
            start(&mut log)?;
        }
        "crash" => lab::runner::crash(plan, &req.machines).map_err(|e| lab_error_text(&e))?,
        a => return Err(format!("unknown action {a} (start, stop, restart, crash)")),
    }
    Ok(log)
}

/// Live status: the document of `/status` now, then again each time it
/// changes (polled every second while anyone listens).
async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let slot = app.slot(&id)?;
    let l = slot.entry.clone();
    let tx = slot.status.clone();
    let rx = tx.subscribe();
    let flag = slot.polling.clone();
    if !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
        tokio::spawn(poll_status(l, tx, flag));
    }
    Ok(ws.on_upgrade(move |sock| push_status(sock, rx)))
}

/// Refresh a lab's status document every second until nobody listens
/// (`polling` is set while it runs).
async fn poll_status(
    l: Arc<LabEntry>,
    tx: watch::Sender<Arc<String>>,
    polling: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    loop {
        let l2 = l.clone();
        let doc = tokio::task::spawn_blocking(move || match status_doc(&l2) {
            Ok(v) => serde_json::json!({"type": "status", "data": v}),
            Err(e) => serde_json::json!({"type": "error", "error": lab_error_text(&e)}),
        })
        .await;
        if let Ok(doc) = doc {
            let text = doc.to_string();
            tx.send_if_modified(|cur| {
                if **cur != text {
                    *cur = Arc::new(text);
                    true
                } else {
                    false
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if tx.receiver_count() == 0 {
            // the next listener waits for a fresh document, not this one
            tx.send_replace(Arc::new(String::new()));
            polling.store(false, SeqCst);
            // a listener that came meanwhile saw the flag set: keep going
            // for it unless another poller took over
            if tx.receiver_count() == 0 || polling.swap(true, SeqCst) {
                return;
            }
        }
    }
}

async fn push_status(mut sock: WebSocket, mut rx: watch::Receiver<Arc<String>>) {
    let mut sent = String::new();
    loop {
        let cur = rx.borrow_and_update().clone();
        if !cur.is_empty() && *cur != sent {
            if sock
                .send(Message::Text((*cur).clone().into()))
                .await
                .is_err()
            {
                return;
            }
            sent = (*cur).clone();
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            m = sock.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

/// `?rows=R&cols=C`: the terminal's size at start.
#[derive(Debug, Deserialize)]
pub struct TermQuery {
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

async fn terminal(
    State(app): State<Arc<App>>,
    Path((id, machine)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<TermQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let l = app.lab(&id)?;
    if l.plan.machine(&machine).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no machine {machine}"),
        ));
    }
    let size = match (q.rows, q.cols) {
        (Some(r), Some(c)) if r > 0 && c > 0 => Some((r, c)),
        _ => None,
    };
    Ok(ws.on_upgrade(move |sock| crate::term::bridge(sock, l, machine, size)))
}
