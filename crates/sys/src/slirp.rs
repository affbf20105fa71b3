//! libslirp (Debian's `libslirp0`, 4.7): a user-mode TCP/IP stack that
//! gives a virtual Ethernet DHCP, DNS and outbound TCP/UDP through the
//! calling user's own sockets, plus host-to-guest port forwards (QEMU's
//! user networking).
//!
//! Minimal bindings, only what the switch's NAT port needs, behind a safe
//! [`Slirp`]: frames from the guest network go in through
//! [`Slirp::input`]; frames for it come out through the `send` closure
//! given to [`Slirp::new`]; [`Slirp::poll`] waits on slirp's host sockets,
//! its timers and one extra descriptor of the caller (the switch side).
//!
//! Threading: libslirp has no locks. A [`Slirp`] is used by one thread at a
//! time (`&mut self` everywhere); it may move between threads.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub const POLL_IN: c_int = 1 << 0;
    pub const POLL_OUT: c_int = 1 << 1;
    pub const POLL_PRI: c_int = 1 << 2;
    pub const POLL_ERR: c_int = 1 << 3;
    pub const POLL_HUP: c_int = 1 << 4;

    #[repr(C)]
    pub struct Slirp {
        _private: [u8; 0],
    }

    pub type SlirpTimerCb = unsafe extern "C" fn(opaque: *mut c_void);
    pub type AddPollCb =
        unsafe extern "C" fn(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int;
    pub type GetReventsCb = unsafe extern "C" fn(idx: c_int, opaque: *mut c_void) -> c_int;

    /// `SlirpCb` of libslirp.h (4.7), version 1 callbacks plus the two of
    /// version 4 (left null: we use `timer_new`).
    #[repr(C)]
    pub struct SlirpCb {
        pub send_packet:
            unsafe extern "C" fn(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize,
        pub guest_error: unsafe extern "C" fn(msg: *const c_char, opaque: *mut c_void),
        pub clock_get_ns: unsafe extern "C" fn(opaque: *mut c_void) -> i64,
        pub timer_new: unsafe extern "C" fn(
            cb: SlirpTimerCb,
            cb_opaque: *mut c_void,
            opaque: *mut c_void,
        ) -> *mut c_void,
        pub timer_free: unsafe extern "C" fn(timer: *mut c_void, opaque: *mut c_void),
        pub timer_mod:
            unsafe extern "C" fn(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void),
        pub register_poll_fd: unsafe extern "C" fn(fd: c_int, opaque: *mut c_void),
        pub unregister_poll_fd: unsafe extern "C" fn(fd: c_int, opaque: *mut c_void),
        pub notify: unsafe extern "C" fn(opaque: *mut c_void),
        pub init_completed: Option<unsafe extern "C" fn(slirp: *mut Slirp, opaque: *mut c_void)>,
        pub timer_new_opaque: Option<
            unsafe extern "C" fn(
                id: c_int,
                cb_opaque: *mut c_void,
                opaque: *mut c_void,
            ) -> *mut c_void,
        >,
    }

    /// `SlirpConfig` of libslirp.h (4.7), up to version 4.
    #[repr(C)]
    pub struct SlirpConfig {
        pub version: u32,
        pub restricted: c_int,
        pub in_enabled: bool,
        pub vnetwork: libc::in_addr,
        pub vnetmask: libc::in_addr,
        pub vhost: libc::in_addr,
        pub in6_enabled: bool,
        pub vprefix_addr6: libc::in6_addr,
        pub vprefix_len: u8,
        pub vhost6: libc::in6_addr,
        pub vhostname: *const c_char,
        pub tftp_server_name: *const c_char,
        pub tftp_path: *const c_char,
        pub bootfile: *const c_char,
        pub vdhcp_start: libc::in_addr,
        pub vnameserver: libc::in_addr,
        pub vnameserver6: libc::in6_addr,
        pub vdnssearch: *const *const c_char,
        pub vdomainname: *const c_char,
        pub if_mtu: usize,
        pub if_mru: usize,
        pub disable_host_loopback: bool,
        pub enable_emu: bool,
        // version 2
        pub outbound_addr: *mut libc::sockaddr_in,
        pub outbound_addr6: *mut libc::sockaddr_in6,
        // version 3
        pub disable_dns: bool,
        // version 4
        pub disable_dhcp: bool,
    }

    #[link(name = "slirp")]
    extern "C" {
        pub fn slirp_new(
            cfg: *const SlirpConfig,
            cb: *const SlirpCb,
            opaque: *mut c_void,
        ) -> *mut Slirp;
        pub fn slirp_cleanup(slirp: *mut Slirp);
        pub fn slirp_pollfds_fill(
            slirp: *mut Slirp,
            timeout: *mut u32,
            add: AddPollCb,
            opaque: *mut c_void,
        );
        pub fn slirp_pollfds_poll(
            slirp: *mut Slirp,
            select_error: c_int,
            get: GetReventsCb,
            opaque: *mut c_void,
        );
        pub fn slirp_input(slirp: *mut Slirp, pkt: *const u8, len: c_int);
        pub fn slirp_add_hostfwd(
            slirp: *mut Slirp,
            is_udp: c_int,
            host_addr: libc::in_addr,
            host_port: c_int,
            guest_addr: libc::in_addr,
            guest_port: c_int,
        ) -> c_int;
        pub fn slirp_version_string() -> *const c_char;
    }
}

/// The virtual network slirp serves (QEMU's defaults from [`Default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Network address (10.0.2.0).
    pub net: Ipv4Addr,
    /// Netmask (255.255.255.0).
    pub mask: Ipv4Addr,
    /// The gateway, which is also the host as the guests see it (10.0.2.2).
    pub host: Ipv4Addr,
    /// The DNS forwarder (10.0.2.3).
    pub dns: Ipv4Addr,
    /// First address DHCP hands out (10.0.2.15).
    pub dhcp_start: Ipv4Addr,
    /// Refuse guests' connections to the host's loopback through `host`.
    pub no_host_loopback: bool,
    /// Isolate the guests: no outbound connections (forwards still work).
    pub restricted: bool,
    /// Host name DHCP offers (none if empty).
    pub hostname: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            net: Ipv4Addr::new(10, 0, 2, 0),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            host: Ipv4Addr::new(10, 0, 2, 2),
            dns: Ipv4Addr::new(10, 0, 2, 3),
            dhcp_start: Ipv4Addr::new(10, 0, 2, 15),
            no_host_loopback: false,
            restricted: false,
            hostname: String::new(),
        }
    }
}

/// Errors of the slirp bindings.
#[derive(Debug, thiserror::Error)]
pub enum SlirpError {
    #[error("libslirp refused the network configuration {0}")]
    New(String),
    #[error("cannot forward {proto} {host}:{host_port} to {guest}:{guest_port}")]
    Forward {
        proto: &'static str,
        host: Ipv4Addr,
        host_port: u16,
        guest: Ipv4Addr,
        guest_port: u16,
        source: io::Error,
    },
}

type SendFn = Box<dyn FnMut(&[u8]) + Send>;
type ErrorFn = Box<dyn FnMut(&str) + Send>;

struct Timer {
    cb: ffi::SlirpTimerCb,
    cb_opaque: *mut c_void,
    /// Expiry in ms of the slirp clock, if armed.
    expire_ms: Option<i64>,
}

/// What the callbacks reach through slirp's `opaque` pointer. Only ever
/// touched through the raw pointer (never a long-lived `&mut`), because
/// slirp calls back into it from inside every entry point.
struct State {
    send: SendFn,
    guest_error: ErrorFn,
    t0: Instant,
    timers: Vec<*mut Timer>,
    pollfds: Vec<libc::pollfd>,
}

/// One libslirp instance.
pub struct Slirp {
    slirp: *mut ffi::Slirp,
    state: *mut State,
    // kept alive for the life of `slirp` (it keeps pointers to them)
    _strings: Vec<CString>,
}

// SAFETY: libslirp has no thread affinity (no thread-locals; the glib main
// context is not used through this API); every entry point takes `&mut
// self`, so one thread at a time uses the instance and its state. The
// closures in State are `Send`.
unsafe impl Send for Slirp {}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

/// libslirp's version string ("4.7.0").
pub fn version() -> String {
    // SAFETY: slirp_version_string returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::slirp_version_string()) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C" fn cb_send_packet(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    // SAFETY: opaque is the State pointer given to slirp_new, alive until
    // slirp_cleanup; buf holds len bytes for the duration of the call.
    let st = unsafe { &mut *(opaque as *mut State) };
    let frame = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
    (st.send)(frame);
    len as isize
}

unsafe extern "C" fn cb_guest_error(msg: *const c_char, opaque: *mut c_void) {
    // SAFETY: as in cb_send_packet; msg is a NUL-terminated string.
    let st = unsafe { &mut *(opaque as *mut State) };
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    (st.guest_error)(&msg);
}

unsafe extern "C" fn cb_clock_get_ns(opaque: *mut c_void) -> i64 {
    // SAFETY: as in cb_send_packet.
    let st = unsafe { &*(opaque as *const State) };
    st.t0.elapsed().as_nanos() as i64
}

unsafe extern "C" fn cb_timer_new(
    cb: ffi::SlirpTimerCb,
    cb_opaque: *mut c_void,
    opaque: *mut c_void,
) -> *mut c_void {
    // SAFETY: as in cb_send_packet.
    let st = unsafe { &mut *(opaque as *mut State) };
    let t = Box::into_raw(Box::new(Timer {
        cb,
        cb_opaque,
        expire_ms: None,
    }));
    st.timers.push(t);
    t as *mut c_void
}

unsafe extern "C" fn cb_timer_free(timer: *mut c_void, opaque: *mut c_void) {
    // SAFETY: as in cb_send_packet; timer came from cb_timer_new and is
    // freed once (removed from the list first).
    let st = unsafe { &mut *(opaque as *mut State) };
    let t = timer as *mut Timer;
    if let Some(i) = st.timers.iter().position(|x| *x == t) {
        st.timers.swap_remove(i);
        drop(unsafe { Box::from_raw(t) });
    }
}

unsafe extern "C" fn cb_timer_mod(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void) {
    // SAFETY: as in cb_timer_free; only timers still in the list are touched.
    let st = unsafe { &mut *(opaque as *mut State) };
    let t = timer as *mut Timer;
    if st.timers.contains(&t) {
        unsafe { (*t).expire_ms = Some(expire_ms) };
    }
}

unsafe extern "C" fn cb_register_poll_fd(_fd: c_int, _opaque: *mut c_void) {}
unsafe extern "C" fn cb_unregister_poll_fd(_fd: c_int, _opaque: *mut c_void) {}
unsafe extern "C" fn cb_notify(_opaque: *mut c_void) {}

unsafe extern "C" fn cb_add_poll(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: opaque is the State pointer passed to slirp_pollfds_fill.
    let st = unsafe { &mut *(opaque as *mut State) };
    let mut ev = 0;
    if events & ffi::POLL_IN != 0 {
        ev |= libc::POLLIN;
    }
    if events & ffi::POLL_OUT != 0 {
        ev |= libc::POLLOUT;
    }
    if events & ffi::POLL_PRI != 0 {
        ev |= libc::POLLPRI;
    }
    st.pollfds.push(libc::pollfd {
        fd,
        events: ev,
        revents: 0,
    });
    (st.pollfds.len() - 1) as c_int
}

unsafe extern "C" fn cb_get_revents(idx: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: opaque is the State pointer passed to slirp_pollfds_poll.
    let st = unsafe { &*(opaque as *const State) };
    let Some(p) = usize::try_from(idx).ok().and_then(|i| st.pollfds.get(i)) else {
        return 0;
    };
    let mut r = 0;
    if p.revents & libc::POLLIN != 0 {
        r |= ffi::POLL_IN;
    }
    if p.revents & libc::POLLOUT != 0 {
        r |= ffi::POLL_OUT;
    }
    if p.revents & libc::POLLPRI != 0 {
        r |= ffi::POLL_PRI;
    }
    if p.revents & libc::POLLERR != 0 {
        r |= ffi::POLL_ERR;
    }
    if p.revents & libc::POLLHUP != 0 {
        r |= ffi::POLL_HUP;
    }
    r
}

static CALLBACKS: ffi::SlirpCb = ffi::SlirpCb {
    send_packet: cb_send_packet,
    guest_error: cb_guest_error,
    clock_get_ns: cb_clock_get_ns,
    timer_new: cb_timer_new,
    timer_free: cb_timer_free,
    timer_mod: cb_timer_mod,
    register_poll_fd: cb_register_poll_fd,
    unregister_poll_fd: cb_unregister_poll_fd,
    notify: cb_notify,
    init_completed: None,
    timer_new_opaque: None,
};

impl Slirp {
    /// A slirp stack for `cfg`. `send` gets every frame for the guest
    /// network; `guest_error` gets slirp's complaints about guest frames.
    pub fn new(
        cfg: &Config,
        send: impl FnMut(&[u8]) + Send + 'static,
        guest_error: impl FnMut(&str) + Send + 'static,
    ) -> Result<Slirp, SlirpError> {
        let state = Box::into_raw(Box::new(State {
            send: Box::new(send),
            guest_error: Box::new(guest_error),
            t0: Instant::now(),
            timers: Vec::new(),
            pollfds: Vec::new(),
        }));
        let mut strings = Vec::new();
        let hostname = CString::new(cfg.hostname.replace('\0', "")).unwrap_or_default();
        let hostname_ptr = if cfg.hostname.is_empty() {
            std::ptr::null()
        } else {
            hostname.as_ptr()
        };
        strings.push(hostname);
        // SAFETY: in6_addr is plain old data; all-zero is valid.
        let zero6: libc::in6_addr = unsafe { std::mem::zeroed() };
        let c = ffi::SlirpConfig {
            version: 4,
            restricted: cfg.restricted as c_int,
            in_enabled: true,
            vnetwork: in_addr(cfg.net),
            vnetmask: in_addr(cfg.mask),
            vhost: in_addr(cfg.host),
            in6_enabled: false,
            vprefix_addr6: zero6,
            vprefix_len: 0,
            vhost6: zero6,
            vhostname: hostname_ptr,
            tftp_server_name: std::ptr::null(),
            tftp_path: std::ptr::null(),
            bootfile: std::ptr::null(),
            vdhcp_start: in_addr(cfg.dhcp_start),
            vnameserver: in_addr(cfg.dns),
            vnameserver6: zero6,
            vdnssearch: std::ptr::null(),
            vdomainname: std::ptr::null(),
            if_mtu: 0,
            if_mru: 0,
            disable_host_loopback: cfg.no_host_loopback,
            enable_emu: false,
            outbound_addr: std::ptr::null_mut(),
            outbound_addr6: std::ptr::null_mut(),
            disable_dns: false,
            disable_dhcp: false,
        };
        // SAFETY: c and CALLBACKS are valid for the call (slirp copies the
        // config; the strings it keeps pointers to live in `strings` as long
        // as the instance); state stays valid until Drop, after
        // slirp_cleanup.
        let slirp = unsafe { ffi::slirp_new(&c, &CALLBACKS, state as *mut c_void) };
        if slirp.is_null() {
            // SAFETY: state came from Box::into_raw above and slirp did not
            // keep it.
            drop(unsafe { Box::from_raw(state) });
            return Err(SlirpError::New(format!(
                "net {} mask {} host {} dns {} dhcp {}",
                cfg.net, cfg.mask, cfg.host, cfg.dns, cfg.dhcp_start
            )));
        }
        Ok(Slirp {
            slirp,
            state,
            _strings: strings,
        })
    }

    /// Forward `host:host_port` (TCP, or UDP if `udp`) on the host to
    /// `guest:guest_port`. Fails when the host port cannot be bound.
    pub fn add_hostfwd(
        &mut self,
        udp: bool,
        host: Ipv4Addr,
        host_port: u16,
        guest: Ipv4Addr,
        guest_port: u16,
    ) -> Result<(), SlirpError> {
        // SAFETY: self.slirp is a live instance used by this thread only.
        let r = unsafe {
            ffi::slirp_add_hostfwd(
                self.slirp,
                udp as c_int,
                in_addr(host),
                host_port as c_int,
                in_addr(guest),
                guest_port as c_int,
            )
        };
        if r < 0 {
            let mut source = io::Error::last_os_error();
            if source.raw_os_error() == Some(0) {
                source = io::Error::other("refused by libslirp");
            }
            return Err(SlirpError::Forward {
                proto: if udp { "udp" } else { "tcp" },
                host,
                host_port,
                guest,
                guest_port,
                source,
            });
        }
        Ok(())
    }

    /// Hand one frame from the guest network to slirp (frames it answers
    /// with go to `send` before this returns).
    pub fn input(&mut self, frame: &[u8]) {
        let Ok(len) = c_int::try_from(frame.len()) else {
            return;
        };
        // SAFETY: frame is valid for len bytes during the call; slirp
        // copies what it keeps.
        unsafe { ffi::slirp_input(self.slirp, frame.as_ptr(), len) };
    }

    /// Wait at most `timeout_ms` (less if slirp or one of its timers needs
    /// it) for slirp's sockets and for the `extra` descriptors (at most 32)
    /// to become readable, let slirp do its socket work and run its due
    /// timers. Returns which of `extra` are readable (or hung up): bit `i`
    /// for `extra[i]`.
    pub fn poll(&mut self, extra: &[BorrowedFd<'_>], timeout_ms: u32) -> io::Result<u32> {
        if extra.len() > 32 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let st = self.state;
        let mut timeout = timeout_ms;
        // SAFETY: st is our live State; no reference to it is held across
        // the slirp calls below, which reach it through the same pointer.
        unsafe { (*st).pollfds.clear() };
        // SAFETY: self.slirp is live; cb_add_poll gets st as opaque.
        unsafe {
            ffi::slirp_pollfds_fill(self.slirp, &mut timeout, cb_add_poll, st as *mut c_void)
        };
        let now = self.clock_ms();
        // SAFETY: as above.
        let next_timer = unsafe { (*st).timers.iter().filter_map(|t| (**t).expire_ms).min() };
        if let Some(at) = next_timer {
            timeout = timeout.min((at - now).clamp(0, u32::MAX as i64) as u32);
        }
        // SAFETY: as above.
        let pollfds = unsafe { &mut (*st).pollfds };
        let ours = pollfds.len();
        for fd in extra {
            pollfds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = timeout.min(i32::MAX as u32) as c_int;
        // SAFETY: pollfds is a valid array of pollfds.len() entries.
        let r = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        let err = if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            // report nothing ready
            for p in pollfds.iter_mut() {
                p.revents = 0;
            }
            1
        } else {
            0
        };
        let extra_ready = pollfds
            .drain(ours..)
            .enumerate()
            .filter(|(_, p)| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .fold(0u32, |m, (i, _)| m | 1 << i);
        // SAFETY: self.slirp is live; cb_get_revents reads st's pollfds
        // (no Rust reference to them is alive here).
        unsafe { ffi::slirp_pollfds_poll(self.slirp, err, cb_get_revents, st as *mut c_void) };
        self.run_timers();
        Ok(extra_ready)
    }

    fn clock_ms(&self) -> i64 {
        // SAFETY: state is live; read only.
        unsafe { (*self.state).t0.elapsed().as_millis() as i64 }
    }

    /// Run every due timer, one at a time (a callback may re-arm or free
    /// timers, so the list is searched again after each).
    fn run_timers(&mut self) {
        let st = self.state;
        for _ in 0..1024 {
            let now = self.clock_ms();
            // SAFETY: st is live; the borrow ends before the callback runs.
            let due = unsafe {
                (*st)
                    .timers
                    .iter()
                    .copied()
                    .find(|t| matches!((**t).expire_ms, Some(at) if at <= now))
            };
            let Some(t) = due else { return };
            // SAFETY: t is in the list, so not freed.
            let (cb, arg) = unsafe {
                (*t).expire_ms = None;
                ((*t).cb, (*t).cb_opaque)
            };
            // SAFETY: cb/arg are the callback slirp registered for this timer.
            unsafe { cb(arg) };
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        // SAFETY: slirp is live; after cleanup nothing calls back into state,
        // which we then free with the timers slirp did not free.
        unsafe {
            ffi::slirp_cleanup(self.slirp);
            let st = Box::from_raw(self.state);
            for t in &st.timers {
                drop(Box::from_raw(*t));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An ARP request for the gateway gets slirp's reply through `send`,
    /// synchronously: the callback path works.
    #[test]
    fn answers_arp_for_the_gateway() {
        let out = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let o = out.clone();
        let mut s = Slirp::new(
            &Config::default(),
            move |f| o.lock().unwrap().push(f.to_vec()),
            |_| {},
        )
        .unwrap();
        let me = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&me);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&me);
        f.extend_from_slice(&[10, 0, 2, 15]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[10, 0, 2, 2]);
        f.resize(60, 0);
        s.input(&f);
        let out = out.lock().unwrap();
        assert_eq!(out.len(), 1, "one ARP reply");
        assert_eq!(&out[0][0..6], &me);
        assert_eq!(&out[0][12..14], &[0x08, 0x06]);
        assert_eq!(&out[0][28..32], &[10, 0, 2, 2], "sender is the gateway");
        assert!(version().starts_with('4'));
    }

    /// A forward onto a port already bound on the host is refused, naming it.
    #[test]
    fn forward_onto_a_bound_port_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut s = Slirp::new(&Config::default(), |_| {}, |_| {}).unwrap();
        let e = s
            .add_hostfwd(
                false,
                Ipv4Addr::LOCALHOST,
                port,
                Ipv4Addr::new(10, 0, 2, 15),
                80,
            )
            .unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        let ok = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free = ok.local_addr().unwrap().port();
        drop(ok);
        s.add_hostfwd(
            false,
            Ipv4Addr::LOCALHOST,
            free,
            Ipv4Addr::new(10, 0, 2, 15),
            80,
        )
        .unwrap();
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        b.send(b"x").unwrap();
        assert_eq!(s.poll(&[b.as_fd(), a.as_fd()], 100).unwrap(), 0b10);
    }
    use std::os::fd::AsFd;
}
