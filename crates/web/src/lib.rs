//! `umlkit lab web` / `umlkit web`: a web view of running labs.
//!
//! One HTTP server (axum on tokio) serving, for each lab it was given:
//! the page (embedded assets, no CDN), the lab's status as `lab status
//! --json` has it ([`lab::status::gather`] + [`lab::status::LabStatus::json`],
//! plus per-machine uptime and host memory), the topology SVG
//! ([`lab::graph`]), live status pushes over a WebSocket, a terminal per
//! machine (a tty exec shell through the guest's exec agent, with resize),
//! the per-domain switch counters, and start/stop/restart with the
//! runner's calls, as the CLI makes them.
//!
//! Security: every request needs the access token ([`auth`]); WebSocket
//! upgrades also need an `Origin` of the served host; a listener off
//! loopback needs [`Options::remote`].
//!
//! Schema of the API: docs/json.md ("web API") and docs/web.md.

pub mod api;
pub mod assets;
pub mod auth;
pub mod term;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::plan::Plan;
use lab::runner::GuestBackend;

/// Errors of the web server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    #[error(
        "{0}: not a loopback address: every local and remote host could reach the lab's \
         shells; add --remote to listen there anyway (the access token still guards it)"
    )]
    NotLoopback(SocketAddr),
    #[error(transparent)]
    Lab(#[from] lab::LabError),
}

/// How to listen.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Allow a non-loopback listener.
    pub remote: bool,
    /// Also show labs started after the server (`umlkit web`).
    pub discover: Option<Discover>,
}

/// Where labs started later are found: the state root of
/// [`running_labs`], and the `umlkit` executable their backend runs.
#[derive(Debug, Clone)]
pub struct Discover {
    pub root: PathBuf,
    pub umlkit: Option<PathBuf>,
}

/// How long the web view keeps a machine's addresses (`ip -o addr show`)
/// before asking the machine again: the status is polled every second,
/// and asking 50 machines each second costs 50 exec sessions a second.
pub const ADDRESS_TTL: Duration = Duration::from_secs(10);

/// Addresses of running machines, by machine: (kernel pid, when, answer).
#[derive(Default)]
pub struct AddressCache(
    std::sync::Mutex<std::collections::HashMap<String, (u32, Instant, String)>>,
);

impl AddressCache {
    /// The kept answer for `machine` while its kernel is still `pid` and
    /// the answer younger than `ttl`; else `ask()`'s, kept.
    pub fn get(
        &self,
        machine: &str,
        pid: u32,
        now: Instant,
        ttl: Duration,
        ask: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        {
            let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((p, t, text)) = c.get(machine) {
                if *p == pid && now.saturating_duration_since(*t) < ttl {
                    return Some(text.clone());
                }
            }
        }
        let text = ask()?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(machine.to_string(), (pid, now, text.clone()));
        Some(text)
    }
}

/// One lab the server shows.
pub struct LabEntry {
    pub plan: Plan,
    pub backend: GuestBackend,
    /// Addresses kept between status polls ([`ADDRESS_TTL`]).
    pub addresses: AddressCache,
    /// The lab state root (to reload the lab folder for start/restart).
    pub state_root: PathBuf,
}

impl LabEntry {
    /// The lab of `plan`, with the guest backend the CLI uses (`umlkit`:
    /// this executable, for switches and supervisors).
    pub fn new(plan: Plan, state_root: &Path, umlkit: Option<&Path>) -> Result<LabEntry, Error> {
        let backend = lab::runner::backend_for(&plan, umlkit)?;
        Ok(LabEntry {
            plan,
            backend,
            addresses: AddressCache::default(),
            state_root: state_root.to_path_buf(),
        })
    }
}

/// The topology picture of `plan`, laid out by Graphviz ([`lab::graph::svg`]).
pub fn topology_svg(plan: &Plan) -> Result<String, String> {
    lab::graph::svg(plan).map_err(|e| e.to_string())
}

/// The labs under `root` that have a saved plan (started at least once)
/// and a live machine or switch: what `umlkit web` shows.
pub fn running_labs(root: &Path) -> Result<Vec<Plan>, Error> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return Ok(v);
    };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let p = d.join("plan.json");
        let Ok(bytes) = umlkit_sys::private::read_nofollow(&p) else {
            continue;
        };
        let Ok(plan) = serde_json::from_slice::<Plan>(&bytes) else {
            continue;
        };
        // re-read through the checked path (private folder, own plan)
        let Ok(Some((plan, _))) = lab::open::saved_plan(&plan.lab_dir, root) else {
            continue;
        };
        let Ok(state) = lab::runner::State::load(&plan) else {
            continue;
        };
        if plan
            .machines
            .iter()
            .any(|m| lab::runner::machine_alive(&state, &m.name))
        {
            v.push(plan);
        }
    }
    Ok(v)
}

/// Serve `labs` until SIGINT or SIGTERM. `announce` gets the URL (with
/// the token) once the socket listens.
pub fn serve(
    labs: Vec<LabEntry>,
    opts: &Options,
    announce: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    if !opts.listen.ip().is_loopback() && !opts.remote {
        return Err(Error::NotLoopback(opts.listen));
    }
    let token = auth::new_token()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io("cannot start the async runtime".into(), e))?;
    let res = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::Io(format!("cannot listen on {}", opts.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io("listener address".into(), e))?;
        let app = Arc::new(api::App::new(
            labs,
            token.clone(),
            addr.port(),
            opts.discover.clone(),
        ));
        // lay the topologies out now, before the first page asks
        for id in app.ids() {
            let app = app.clone();
            tokio::spawn(async move { app.svg(&id).await.ok() });
        }
        let router = api::router(app);
        let shown = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => {
                SocketAddr::new([127, 0, 0, 1].into(), addr.port())
            }
            ip if ip.is_unspecified() => {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
            }
            _ => addr,
        };
        announce(&format!("http://{shown}/?token={token}"));
        let server = axum::serve(listener, router);
        tokio::select! {
            r = server => r.map_err(|e| Error::Io("server failed".into(), e)),
            _ = shutdown_signal() => Ok(()),
        }
    });
    // open terminals and pollers end with the process; their exec
    // connections close and the supervisors kill the shells
    rt.shutdown_timeout(Duration::from_millis(500));
    res
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::AddressCache;
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    #[test]
    fn addresses_are_asked_again_after_the_ttl_or_a_new_kernel() {
        let c = AddressCache::default();
        let asked = Cell::new(0);
        let ask = |t: &'static str| {
            asked.set(asked.get() + 1);
            Some(t.to_string())
        };
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(
            c.get("a", 7, t0, ttl, || ask("one")).as_deref(),
            Some("one")
        );
        // within the ttl, same kernel: the kept answer, no exec
        let t1 = t0 + Duration::from_secs(9);
        assert_eq!(
            c.get("a", 7, t1, ttl, || ask("two")).as_deref(),
            Some("one")
        );
        assert_eq!(asked.get(), 1);
        // a restarted machine (new kernel pid) is asked at once
        assert_eq!(
            c.get("a", 8, t1, ttl, || ask("three")).as_deref(),
            Some("three")
        );
        // and after the ttl
        let t2 = t1 + ttl;
        assert_eq!(
            c.get("a", 8, t2, ttl, || ask("four")).as_deref(),
            Some("four")
        );
        assert_eq!(asked.get(), 3);
        // a failed ask keeps nothing
        assert_eq!(c.get("b", 9, t2, ttl, || None), None);
        assert_eq!(
            c.get("b", 9, t2, ttl, || ask("five")).as_deref(),
            Some("five")
        );
    }
}
