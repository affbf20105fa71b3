//! Syscall wrappers: net.
//!
//! Sockets beyond what `std` offers: AF_UNIX sockets bound or connected to
//! raw `sockaddr_un` bytes (abstract names with arbitrary bytes included),
//! batched datagram I/O (`recvmmsg`/`sendmmsg`), epoll, signalfd, socket
//! buffer sizing, user/group lookups, `daemon(3)` and `syslog(3)`.
//!
//! Addresses are passed as the raw bytes of a `struct sockaddr_un`
//! (family u16 in host order, then up to 108 bytes of `sun_path`), at most
//! [`SOCKADDR_UN_LEN`] bytes; the length given is the `addrlen` used.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `sizeof(struct sockaddr_un)` on Linux: 2 + 108.
pub const SOCKADDR_UN_LEN: usize = 110;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn to_sockaddr(addr: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    if addr.len() < 2 || addr.len() > SOCKADDR_UN_LEN {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // SAFETY: sa is exactly SOCKADDR_UN_LEN bytes and addr.len() <= that.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            &mut sa as *mut libc::sockaddr_un as *mut u8,
            addr.len(),
        );
    }
    Ok((sa, addr.len() as libc::socklen_t))
}

/// Kind of AF_UNIX socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockKind {
    Stream,
    Dgram,
    /// SOCK_SEQPACKET: one message per frame, connection-oriented (UML's
    /// vector `bess` transport).
    SeqPacket,
}

/// A new AF_UNIX socket with CLOEXEC (and O_NONBLOCK if asked).
pub fn unix_socket(kind: SockKind, nonblock: bool) -> io::Result<OwnedFd> {
    let mut ty = match kind {
        SockKind::Stream => libc::SOCK_STREAM,
        SockKind::Dgram => libc::SOCK_DGRAM,
        SockKind::SeqPacket => libc::SOCK_SEQPACKET,
    } | libc::SOCK_CLOEXEC;
    if nonblock {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: socket(2) takes plain integers; the returned fd is owned by us.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, ty, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// bind(2) to raw sockaddr_un bytes.
pub fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let (sa, len) = to_sockaddr(addr)?;
    // SAFETY: sa is a valid sockaddr_un that lives across the call; len <= its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            len,
        )
    })?;
    Ok(())
}

/// connect(2) to raw sockaddr_un bytes.
pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let (sa, len) = to_sockaddr(addr)?;
    // SAFETY: as in bind_raw.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            len,
        )
    })?;
    Ok(())
}

/// listen(2).
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// accept4(2) with CLOEXEC and NONBLOCK: the new connection's socket.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers ask for no peer address.
    let c = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })?;
    // SAFETY: c was just returned by accept4 and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(c) })
}

/// setsockopt(SO_REUSEADDR, 1).
pub fn set_reuseaddr(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
}

/// setsockopt(IP_MULTICAST_IF): send multicast through the interface that
/// has `addr`.
pub fn set_multicast_if_v4(fd: BorrowedFd<'_>, addr: std::net::Ipv4Addr) -> io::Result<()> {
    // a 4-byte option value is read as a struct in_addr (network order)
    setsockopt_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        i32::from_ne_bytes(addr.octets()),
    )
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: val lives across the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &val as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> io::Result<i32> {
    let mut val: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: val and len live across the call; len holds val's size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &mut val as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(val)
}

/// Set SO_SNDBUF / SO_RCVBUF (0 = leave alone); as root the *FORCE variants
/// lift the sysctl caps. Best effort.
pub fn set_buffer_sizes(fd: BorrowedFd<'_>, snd: i32, rcv: i32) {
    if snd > 0 && setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, snd);
    }
    if rcv > 0 && setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcv);
    }
}

/// SO_SNDBUF as the kernel reports it.
pub fn send_buffer_size(fd: BorrowedFd<'_>) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)
}

/// Take ownership of an inherited descriptor `fd` that must be an AF_UNIX
/// SOCK_SEQPACKET socket (what UML's vde transport hands `vde_plug` as
/// `seqpacket://FD`). Anything else is refused: the number came from a
/// command line and must not close or misuse an unrelated descriptor.
pub fn inherited_seqpacket(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: fd is open (checked above); the borrow ends before ownership is taken.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let kind = getsockopt_int(borrowed, libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(-1);
    if kind != libc::SOCK_SEQPACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a SOCK_SEQPACKET socket"),
        ));
    }
    // SAFETY: fd is an open socket handed to this process to use; nothing
    // else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Peer credentials of a connected AF_UNIX stream socket: (pid, uid, gid).
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(i32, u32, u32)> {
    // SAFETY: ucred is plain old data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len live across the call; len holds cred's size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// Receive one datagram with the sender's raw address; returns
/// (length, address bytes, address length). Non-blocking (MSG_DONTWAIT).
pub fn recv_from_raw(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, [u8; SOCKADDR_UN_LEN], usize)> {
    let mut addr = [0u8; SOCKADDR_UN_LEN];
    let mut alen = SOCKADDR_UN_LEN as libc::socklen_t;
    // SAFETY: buf and addr are valid writable buffers of the sizes passed.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            addr.as_mut_ptr() as *mut libc::sockaddr,
            &mut alen,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, addr, (alen as usize).min(SOCKADDR_UN_LEN)))
}

/// Send one datagram to a raw address (or on a connected socket if `addr`
/// is None). Non-blocking (MSG_DONTWAIT | MSG_NOSIGNAL).
pub fn send_to_raw(fd: BorrowedFd<'_>, buf: &[u8], addr: Option<&[u8]>) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let n = match addr {
        Some(a) => {
            let (sa, len) = to_sockaddr(a)?;
            // SAFETY: buf and sa are valid for the lengths passed.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    buf.as_ptr() as *const libc::c_void,
                    buf.len(),
                    flags,
                    &sa as *const _ as *const libc::sockaddr,
                    len,
                )
            }
        }
        // SAFETY: buf is valid for buf.len() bytes.
        None => unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                flags,
            )
        },
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Most datagrams moved by one `recvmmsg`/`sendmmsg` call.
pub const MAX_BATCH: usize = 64;

/// Fixed buffers for `recvmmsg`: `slots` frames of `slot_size` bytes each
/// plus the sender addresses. Allocated once, reused for every call.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot_size: usize,
    slots: usize,
    lens: [usize; MAX_BATCH],
    truncated: [bool; MAX_BATCH],
    addrs: Box<[[u8; SOCKADDR_UN_LEN]]>,
    addr_lens: [usize; MAX_BATCH],
    count: usize,
}

impl RecvBatch {
    /// `slots` is capped at [`MAX_BATCH`].
    pub fn new(slots: usize, slot_size: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_BATCH);
        RecvBatch {
            buf: vec![0u8; slots * slot_size].into_boxed_slice(),
            slot_size,
            slots,
            lens: [0; MAX_BATCH],
            truncated: [false; MAX_BATCH],
            addrs: vec![[0u8; SOCKADDR_UN_LEN]; slots].into_boxed_slice(),
            addr_lens: [0; MAX_BATCH],
            count: 0,
        }
    }

    /// One non-blocking `recvmmsg`; returns how many datagrams arrived
    /// (`WouldBlock` when none). With `want_addr` the sender addresses are
    /// recorded too.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, want_addr: bool) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: all-zero is a valid value for these POD C structs.
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        for i in 0..self.slots {
            // SAFETY: i * slot_size + slot_size <= buf.len() by construction.
            iov[i].iov_base = unsafe { base.add(i * self.slot_size) } as *mut libc::c_void;
            iov[i].iov_len = self.slot_size;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            if want_addr {
                hdrs[i].msg_hdr.msg_name = self.addrs[i].as_mut_ptr() as *mut libc::c_void;
                hdrs[i].msg_hdr.msg_namelen = SOCKADDR_UN_LEN as libc::socklen_t;
            }
        }
        // SAFETY: hdrs[..slots] point into iov, buf and addrs, all of which
        // outlive the call and have the sizes written in the headers.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                self.slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.addr_lens[i] = if want_addr {
                (h.msg_hdr.msg_namelen as usize).min(SOCKADDR_UN_LEN)
            } else {
                0
            };
        }
        self.count = n;
        Ok(n)
    }

    /// Datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` (truncated to the slot size).
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = i * self.slot_size;
        &self.buf[start..start + self.lens[i].min(self.slot_size)]
    }

    /// True when datagram `i` was longer than the slot.
    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// Sender address of datagram `i` (raw sockaddr bytes, `addrlen` long).
    pub fn addr(&self, i: usize) -> &[u8] {
        &self.addrs[i][..self.addr_lens[i]]
    }
}

/// Send up to [`MAX_BATCH`] datagrams with one `sendmmsg` (non-blocking).
/// `get(i)` yields datagram `i` and its destination (None on a connected
/// socket). Returns how many were sent; `WouldBlock` if none could be.
pub fn send_batch<'a>(
    fd: BorrowedFd<'_>,
    count: usize,
    mut get: impl FnMut(usize) -> (&'a [u8], Option<&'a [u8]>),
) -> io::Result<usize> {
    let count = count.min(MAX_BATCH);
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these POD C structs.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..count {
        let (frame, addr) = get(i);
        iov[i].iov_base = frame.as_ptr() as *mut libc::c_void;
        iov[i].iov_len = frame.len();
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
        if let Some(a) = addr {
            hdrs[i].msg_hdr.msg_name = a.as_ptr() as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen = a.len().min(SOCKADDR_UN_LEN) as libc::socklen_t;
        }
    }
    // SAFETY: the headers point at frames and addresses borrowed for 'a and
    // at iov, all alive across the call; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Readiness interest for [`Epoll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    pub const READ_WRITE: Interest = Interest {
        read: true,
        write: true,
    };

    fn bits(self) -> u32 {
        let mut e = 0u32;
        if self.read {
            e |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            e |= libc::EPOLLOUT as u32;
        }
        e
    }
}

/// One readiness event: the token given at registration and what happened.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
}

/// An epoll instance (level-triggered).
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain flags; the fd returned is owned by us.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: fd was just created and is not owned elsewhere.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token,
        };
        // SAFETY: ev lives across the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, interest)
    }

    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), token, interest)
    }

    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, Interest::READ)
    }

    /// Wait at most `timeout_ms` (-1 = forever, 0 = poll); the events are
    /// appended to `out` (cleared first). EINTR yields no events.
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        // SAFETY: events has events.len() writable entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        for ev in &self.events[..n as usize] {
            let bits = ev.events;
            out.push(Event {
                token: ev.u64,
                readable: bits & (libc::EPOLLIN as u32) != 0,
                writable: bits & (libc::EPOLLOUT as u32) != 0,
                hangup: bits & ((libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32) != 0,
            });
        }
        Ok(())
    }
}

/// Signals delivered through a file descriptor: the signals are blocked for
/// the calling thread and read from a signalfd.
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Block `signals` in this thread and open a non-blocking signalfd for them.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        // SAFETY: sigset_t is POD; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: set is valid; invalid signal numbers just fail.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        // SAFETY: set is valid; old mask not requested.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: set is valid; -1 asks for a new fd.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        Ok(SignalFd {
            // SAFETY: fd was just created and is not owned elsewhere.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Block until a signal is pending (then [`SignalFd::read`] it).
    pub fn wait(&self) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `p` is one valid pollfd that lives across the call;
            // the kernel writes only its `revents`.
            let r = unsafe { libc::poll(&mut p, 1, -1) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The next pending signal number, if any.
    pub fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is POD.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let sz = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: info is writable for sz bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut info as *mut _ as *mut libc::c_void,
                sz,
            )
        };
        if n as usize == sz {
            Some(info.ssi_signo as i32)
        } else {
            None
        }
    }
}

/// Restore the default disposition of `sig`, unblock it and raise it (used
/// to die "by signal" like the C tools do).
pub fn reraise(sig: i32) {
    // SAFETY: signal/sigprocmask/raise take plain values; this is the
    // documented way to terminate with a signal.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Group id of a group name (getgrnam_r).
pub fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    // SAFETY: group is POD.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes passed; result is only
    // read after the call.
    let r = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if r != 0 || result.is_null() {
        return None;
    }
    Some(grp.gr_gid)
}

/// User name of a uid (getpwuid_r).
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: passwd is POD.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes passed.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// access(path, R_OK|W_OK) for the real uid.
pub fn access_rw(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated string.
    unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) == 0 }
}

/// daemon(3): detach from the terminal (fork, setsid); `nochdir`/`noclose`
/// as in the C function.
pub fn daemonize(nochdir: bool, noclose: bool) -> io::Result<()> {
    // SAFETY: daemon(3) forks; the caller is single-threaded at this point.
    cvt(unsafe { libc::daemon(nochdir as i32, noclose as i32) })?;
    Ok(())
}

/// openlog(3) with LOG_DAEMON and the given identity (leaked: syslog keeps
/// the pointer).
pub fn open_syslog(ident: &str) {
    let c = CString::new(ident).unwrap_or_default();
    let p = Box::leak(c.into_boxed_c_str());
    // SAFETY: p is a 'static NUL-terminated string.
    unsafe { libc::openlog(p.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
}

/// syslog(3) of one message at `priority` (LOG_INFO, LOG_ERR, ...).
pub fn syslog(priority: i32, msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the format is a constant "%s" and c a valid C string.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

pub use libc::{LOG_ERR, LOG_INFO, LOG_WARNING, SIGHUP, SIGINT, SIGTERM};

/// Microseconds part of the current time of day (used in abstract names
/// the way UML and uml_switch build them).
pub fn time_usecs() -> u32 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.subsec_micros()
}

/// A one-shot monotonic timer readable through epoll (sub-millisecond
/// wake-ups, where `epoll_wait` only takes milliseconds).
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain flags; the fd returned is owned by us.
        let fd = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        Ok(TimerFd {
            // SAFETY: fd was just created and is not owned elsewhere.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Fire once after `after` (at least 1 ns); None disarms.
    pub fn arm(&self, after: Option<std::time::Duration>) -> io::Result<()> {
        let v = match after {
            Some(d) => libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: (d.subsec_nanos().max(if d.as_secs() == 0 { 1 } else { 0 }))
                    as libc::c_long,
            },
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: v,
        };
        // SAFETY: spec lives across the call; old value not requested.
        cvt(unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
        Ok(())
    }

    /// Consume an expiry (so the fd is no longer readable).
    pub fn clear(&self) {
        let mut n = [0u8; 8];
        // SAFETY: n is writable for 8 bytes.
        unsafe { libc::read(self.fd.as_raw_fd(), n.as_mut_ptr() as *mut libc::c_void, 8) };
    }
}
