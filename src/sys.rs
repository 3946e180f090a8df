//! Thin, checked wrappers over the few POSIX calls muse makes directly:
//! `poll`, pipes, `fork`, `waitpid`, `kill`, the parent-death signal,
//! `sendfile`, `splice`, shared anonymous memory and resource limits. Everything else
//! goes through std, mio, socket2 or tokio. Each wrapper turns `-1` into an
//! `io::Error` and retries `EINTR` where retrying is always right.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose both ends are non-blocking and close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes one byte to a non-blocking descriptor, ignoring a full pipe (a
/// wake-up byte already waiting is as good as a second one).
pub fn poke(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a valid buffer; errors are deliberately ignored.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Reads and discards everything waiting on a non-blocking descriptor.
pub fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a valid local buffer of the given length.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// `poll(2)` readiness flags, re-exported so callers need not name libc.
pub use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI};

/// One descriptor to wait on.
pub type PollFd = libc::pollfd;

/// A `pollfd` asking for `events` on `fd`.
pub fn poll_fd(fd: RawFd, events: libc::c_short) -> PollFd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: forever).
/// Returns how many are ready; `EINTR` counts as zero ready, so that callers
/// look at their signal flags.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so that a sub-millisecond wait does not become a busy loop.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `fds` is a valid slice of pollfd structures.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// Time left until `deadline`, or zero.
pub fn until(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}

/// What `fork` returned in this process.
pub enum Forked {
    /// This is the parent; the child has this pid.
    Parent(libc::pid_t),
    /// This is the child.
    Child,
}

/// Forks. The caller must be single-threaded (muse forks before it starts
/// any thread or runtime), so the child may run ordinary Rust code.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: muse only forks from single-threaded processes, so the child
    // inherits no lock held by another thread.
    match check(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the process at once, without running destructors or flushing
/// std's buffers (a forked child must not flush its parent's buffers twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Reaps one child that has ended, without waiting. `None`: none has.
pub fn reap_any() -> Option<(libc::pid_t, ChildExit)> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    Some((pid, exit_of(status)))
}

/// Reaps the child `pid`: waiting for it to end with `block`, else only if
/// it has. `None`: it has not ended (or is not our child).
pub fn reap(pid: libc::pid_t, block: bool) -> Option<ChildExit> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let got = unsafe { libc::waitpid(pid, &mut status, flags) };
        if got == pid {
            return Some(exit_of(status));
        }
        if got == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

fn exit_of(status: libc::c_int) -> ChildExit {
    if libc::WIFSIGNALED(status) {
        ChildExit::Signal(libc::WTERMSIG(status))
    } else {
        ChildExit::Code(libc::WEXITSTATUS(status))
    }
}

/// Sends `sig` to `pid`. A process that is already gone is not an error.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// The resident memory of process `pid`, in bytes, as `/proc/PID/statm`
/// says (`None`: gone, or unreadable).
pub fn resident_bytes(pid: libc::pid_t) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// This process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: always safe.
    unsafe { libc::getpid() }
}

/// Asks the kernel to send `sig` to this process when its parent dies, then
/// checks that the parent is still `parent` (it may have died before the
/// request was made). Returns false if it already has.
pub fn die_with_parent(sig: libc::c_int, parent: libc::pid_t) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number by value.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    // SAFETY: always safe.
    unsafe { libc::getppid() == parent }
}

/// `send(2)` on a connected socket, without SIGPIPE. With `more`, the bytes
/// may wait in the kernel for what follows (`MSG_MORE`): the last reply
/// before a close then leaves in one segment with the FIN.
///
/// Made as a plain system call: libc's `send` is a thread cancellation
/// point, and marks and unmarks the thread around the call for it, which
/// costs a few percent of a small request's time on an event loop; nothing
/// here cancels threads.
pub fn send(sock: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is the
    // caller's; no address is given.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            sock,
            buf.as_ptr(),
            buf.len(),
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `recv(2)` into `buf`, as a plain system call (see [`send`]).
pub fn recv(sock: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the
    // descriptor is the caller's; no address is asked for.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            sock,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `send(2)` that never blocks, whatever the socket's mode
/// (`MSG_DONTWAIT`): what the socket buffer takes now, for last words sent
/// just before a close. With `more` (`MSG_MORE`) the bytes may wait for
/// the close, and go in one segment with the FIN.
pub fn send_now(sock: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is the
    // caller's.
    let n = unsafe { libc::send(sock, buf.as_ptr().cast(), buf.len(), flags) };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `sendfile(2)` from `file` at `*offset` to `sock`, at most `count` bytes.
pub fn sendfile(sock: RawFd, file: RawFd, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off = *offset as libc::off_t;
    // SAFETY: `off` is a valid in/out pointer; the descriptors are the caller's.
    let n = unsafe { libc::sendfile(sock, file, &mut off, count) };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}

/// Moves up to `count` bytes from `from` to `to` inside the kernel, one of
/// them a pipe: from a socket, the pages the bytes arrived in are handed
/// to the pipe, and from the pipe to a socket they are handed on, without
/// a copy. Never waits for the pipe (`SPLICE_F_NONBLOCK`); whether it
/// waits for the socket is the socket's own mode. `Ok(0)` from a socket is
/// its end of stream.
pub fn splice(from: RawFd, to: RawFd, count: usize) -> io::Result<usize> {
    // SAFETY: no offsets (both descriptors are a pipe or a socket); the
    // descriptors are the caller's.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            count,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `SIOCATMARK` (Linux's `asm-generic/sockios.h`; the libc crate does not
/// name it).
const SIOCATMARK: libc::c_ulong = 0x8905;

/// Whether the next byte a TCP socket would read is its urgent byte (the
/// read position is at the urgent mark, where `splice` stops for good).
/// False if the kernel cannot say.
pub fn at_urgent_mark(sock: RawFd) -> bool {
    let mut at: libc::c_int = 0;
    // SAFETY: SIOCATMARK writes one int through the pointer given.
    let r = unsafe { libc::ioctl(sock, SIOCATMARK as _, &mut at) };
    r == 0 && at != 0
}

/// Memory shared by this process and every process it forks afterwards,
/// zero-filled, never unmapped (it lives as long as the server).
pub fn shared_memory(len: usize) -> io::Result<&'static mut [u8]> {
    // SAFETY: an anonymous shared mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is `len` bytes, zeroed, and is never unmapped.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// `CLOCK_MONOTONIC` in milliseconds: comparable between processes, unlike
/// `Instant`, which cannot cross a process boundary.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Sets `SO_RCVTIMEO` (`None`: block forever).
pub fn set_read_timeout(fd: &impl AsRawFd, timeout: Option<Duration>) -> io::Result<()> {
    set_socket_timeout(fd, libc::SO_RCVTIMEO, timeout)
}

/// Sets `SO_SNDTIMEO`: a blocking send that can move nothing for this long
/// returns `EAGAIN` (with what it sent so far) instead of waiting forever.
pub fn set_write_timeout(fd: &impl AsRawFd, timeout: Duration) -> io::Result<()> {
    set_socket_timeout(fd, libc::SO_SNDTIMEO, Some(timeout))
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: a `bind` to port 0 leaves the port to
/// `connect`, which chooses it for the whole address pair rather than from
/// the ports free for any destination.
pub fn set_bind_address_no_port(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and a c_int option of the size given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Sets `SO_RCVTIMEO` or `SO_SNDTIMEO` (`None`: forever).
fn set_socket_timeout(
    fd: &impl AsRawFd,
    option: libc::c_int,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let tv = match timeout {
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        Some(d) => {
            // A zero timeval means "forever"; the smallest real wait is 1 µs.
            let d = d.max(Duration::from_micros(1));
            libc::timeval {
                tv_sec: d.as_secs() as libc::time_t,
                tv_usec: d.subsec_micros() as libc::suseconds_t,
            }
        }
    };
    // SAFETY: passes a valid timeval of the right size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Turns off the terminal's echo on standard input until dropped (for
/// reading a password).
pub struct EchoOff(libc::termios);

impl EchoOff {
    /// `None` if standard input is not a terminal.
    pub fn new() -> Option<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        // No echo, but the typed newline is still shown.
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        // SAFETY: fd 0 and a valid pointer.
        (unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } == 0).then_some(EchoOff(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: fd 0 and a valid pointer.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// An `eventfd` counter: a descriptor that a thread makes readable with
/// [`EventFd::signal`] and another waits on with `poll` (a blocking
/// driver's session waker).
#[derive(Debug)]
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    /// A new non-blocking, close-on-exec counter at zero.
    pub fn new() -> io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system call; the descriptor is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable (adds one to the counter).
    pub fn signal(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. A
        // full counter (EAGAIN) is readable anyway, which is all we want.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Resets the counter (the descriptor is no longer readable).
    pub fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own descriptor.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut n).cast(), 8) };
    }

    /// The descriptor, for `poll`.
    pub fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// A connected pair of `SOCK_SEQPACKET` Unix-domain sockets, close-on-exec
/// and blocking (each send names its own mode): the channel a prefork
/// master hands accepted connections to a worker over (`accept.rs`).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for socketpair to fill.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for the control message of one descriptor (`CMSG_SPACE` of one
/// `int`, 24 bytes on 64-bit Linux), aligned for `cmsghdr`.
type FdControl = [u64; 4];

/// Sends one message, `bytes`, with the descriptor `fd` attached
/// (`SCM_RIGHTS`), without blocking (`MSG_DONTWAIT`: a full socket is
/// `WouldBlock`) and without `SIGPIPE`. The receiver gets its own
/// descriptor for the same open file; the caller may close `fd` at once.
pub fn send_fd(sock: RawFd, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let mut control: FdControl = [0; 4];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; the fields used are filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen =
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as _;
    // SAFETY: msg_control points at `control`, which is large enough (and
    // aligned) for one cmsghdr with one int, so CMSG_FIRSTHDR is that
    // header and CMSG_DATA lies inside `control`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
    }
    loop {
        // SAFETY: `msg` and everything it points at are valid for the call;
        // `bytes` is only read.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One message received by [`recv_fd`].
pub struct FdMessage {
    /// The bytes of the message (0 with no descriptor: the sender has
    /// closed its end).
    pub len: usize,
    /// The descriptor attached, close-on-exec.
    pub fd: Option<OwnedFd>,
    /// The kernel could not give us the descriptor that came with the
    /// message (this process is out of descriptors): it is closed, and its
    /// connection lost.
    pub truncated: bool,
}

/// Receives one message into `buf` and the descriptor attached to it, if
/// any, without blocking (`MSG_DONTWAIT`: nothing waiting is
/// `WouldBlock`). Retries `EINTR`.
pub fn recv_fd(sock: RawFd, buf: &mut [u8]) -> io::Result<FdMessage> {
    let mut control: FdControl = [0; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the fields used are filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of::<FdControl>() as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both
        // valid for writes of the lengths given.
        let n =
            unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fd = None;
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of
    // well-formed control messages inside `control`; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within them, and each SCM_RIGHTS payload holds
    // descriptors the kernel has just installed in this process, which
    // nothing else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let got = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    // One descriptor per message; any other is closed.
                    if fd.is_none() {
                        fd = Some(got);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(FdMessage {
        len: n,
        fd,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// `shutdown(fd, SHUT_RD)`: on a listening TCP socket, stops it listening
/// for every process that holds it (it leaves its `SO_REUSEPORT` group, and
/// the connections queued in its backlog are reset, or moved to another
/// listener of the group when `net.ipv4.tcp_migrate_req` is 1).
pub fn shutdown_read(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown has no memory-safety preconditions.
    check(unsafe { libc::shutdown(fd, libc::SHUT_RD) }).map(|_| ())
}

/// Sets or clears `O_NONBLOCK` on `fd` (shared by every descriptor of the
/// same open file).
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL on a descriptor the caller owns.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(|_| ())
}

/// The kernel's release string (`uname -r`), or an empty one.
pub fn kernel_release() -> String {
    // SAFETY: `uname` fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: `release` is NUL-terminated by the kernel.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
