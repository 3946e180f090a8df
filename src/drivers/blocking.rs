//! The blocking driver: one session on one blocking socket, in the thread
//! or process the architecture gives it.
//!
//! The common case costs a `read` and a `write` per request: the thread
//! blocks in `read` with `SO_RCVTIMEO` set to the session's next deadline
//! (at most [`TICK`], so that a shutdown is noticed). Only while the session
//! has side channels (an FTP transfer) does it wait with `poll(2)` over the
//! control socket and the channel sockets together, so that an `ABOR` on the
//! control connection is seen during a transfer; likewise while it has a
//! service stream (the kv store of the forking architectures) or waits for
//! its waker (an `eventfd`, signalled from any thread).

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::drivers::channel::Wait;
use crate::drivers::conn::{Connection, Status};
use crate::drivers::{earliest, wait_for, with_scratch, Ctx, Heartbeat};
use crate::net::Accepted;
use crate::scoreboard::Ticket;
use crate::sys;

/// The longest a blocking driver sleeps without looking at the shutdown
/// switch and updating its heartbeat.
pub const TICK: Duration = Duration::from_secs(1);

/// A read timeout within this much of the one wanted is close enough: the
/// deadline fires at most this late, and the socket option is not reset on
/// every request.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// Serves one accepted connection to its end. The socket must be blocking.
pub fn serve(accepted: Accepted, ticket: Option<Ticket>, ctx: &Ctx) {
    let now = Instant::now();
    let mut conn = Connection::accept(accepted, &ctx.protocol, true, ticket, now);
    // A client that never reads must not hold this thread in `send`
    // forever: a send that moves nothing for a tick returns, and the loop
    // looks at its deadlines and the shutdown switch.
    if sys::set_write_timeout(conn.stream(), TICK).is_err() {
        return;
    }
    let wake = if conn.wants_waker() {
        match sys::EventFd::new() {
            Ok(fd) => {
                let fd = Arc::new(FdWake(fd));
                conn.set_waker(crate::session::Waker::new(fd.clone()));
                Some(fd)
            }
            Err(e) => {
                crate::log::warn(format_args!("cannot make a waker: {e}"));
                return;
            }
        }
    } else {
        None
    };
    with_scratch(|scratch| run(&mut conn, ctx, wake.as_deref(), scratch));
}

/// A blocking session's waker: an `eventfd` its thread polls.
struct FdWake(sys::EventFd);

impl crate::session::Wake for FdWake {
    fn wake(&self) {
        self.0.signal();
    }
}

fn run(conn: &mut Connection, ctx: &Ctx, waker: Option<&FdWake>, scratch: &mut [u8]) {
    // The SO_RCVTIMEO currently set on the control socket (None: none).
    let mut read_timeout: Option<Duration> = None;
    let mut heartbeat = Heartbeat::new();
    loop {
        let now = Instant::now();
        if ctx.shutdown.is_expired(now) {
            conn.last_words(now);
            return;
        }
        let status = conn.process(ctx.env(now), scratch);
        ctx.count_requests(conn.take_finished_requests());
        if status == Status::Closed {
            return;
        }
        conn.take_retired().for_each(drop);
        heartbeat.beat(ctx, now);
        if conn.has_more() {
            continue;
        }
        let wake = earliest([conn.deadline(), ctx.shutdown.deadline()]);
        let wait = wait_for(wake, now, TICK);
        let plain = !conn.has_channels() && conn.service_fd().is_none() && !conn.is_waiting();
        if plain && conn.would_read() && !conn.wants_write() {
            // Block in read itself: one system call per request.
            let fits = read_timeout.is_some_and(|t| t <= wait + TIMEOUT_SLACK && t * 2 >= wait);
            if !fits {
                if sys::set_read_timeout(conn.stream(), Some(wait)).is_err() {
                    return;
                }
                read_timeout = Some(wait);
            }
            conn.readable = true;
        } else if wait_poll(conn, ctx, waker, wait).is_err() {
            return;
        }
    }
}

/// Waits with `poll` for the control socket, the channels and the shutdown
/// switch, and records what became ready.
fn wait_poll(
    conn: &mut Connection,
    ctx: &Ctx,
    wake: Option<&FdWake>,
    wait: Duration,
) -> std::io::Result<()> {
    let mut fds: Vec<sys::PollFd> = Vec::with_capacity(4 + crate::session::MAX_CHANNELS);
    // A control socket the session will not read from is left out (fd -1),
    // or a pending hang-up or urgent mark would wake this loop forever.
    let control = if conn.would_read() {
        conn.stream().as_raw_fd()
    } else {
        -1
    };
    let mut events = sys::POLLIN | sys::POLLPRI;
    let write = conn.wants_write();
    let control = if write {
        events = if control == -1 {
            sys::POLLOUT
        } else {
            events | sys::POLLOUT
        };
        conn.stream().as_raw_fd()
    } else {
        control
    };
    fds.push(sys::poll_fd(control, events));
    let mut slots = Vec::with_capacity(crate::session::MAX_CHANNELS);
    for (i, c) in conn.channels() {
        let events = match c.wait() {
            Wait::Nothing => continue,
            Wait::Read => sys::POLLIN,
            Wait::Write => sys::POLLOUT,
        };
        fds.push(sys::poll_fd(c.fd(), events));
        slots.push(i);
    }
    // The service stream and the waker, at fixed places after the channels
    // (fd -1 when absent: poll skips it).
    let (service_read, service_write) = conn.service_wants();
    let mut events = 0;
    if service_read {
        events |= sys::POLLIN;
    }
    if service_write {
        events |= sys::POLLOUT;
    }
    let service = match conn.service_fd() {
        Some(fd) if events != 0 => fd,
        _ => -1,
    };
    let at_service = fds.len();
    fds.push(sys::poll_fd(service, events));
    fds.push(sys::poll_fd(wake.map_or(-1, |w| w.0.fd()), sys::POLLIN));
    if !ctx.shutdown.is_draining() {
        // Once draining, the switch stays readable: leave it out or spin.
        fds.push(sys::poll_fd(ctx.shutdown.wake_fd(), sys::POLLIN));
    }
    if sys::poll(&mut fds, Some(wait))? == 0 {
        return Ok(());
    }
    let r = fds[at_service].revents;
    if let Some(link) = conn.service_mut() {
        link.readable |= r & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0;
        link.writable |= r & (sys::POLLOUT | sys::POLLHUP | sys::POLLERR) != 0;
    }
    if fds[at_service + 1].revents != 0 {
        if let Some(w) = wake {
            w.0.clear();
        }
        conn.woken = true;
    }
    let r = fds[0].revents;
    if r & sys::POLLPRI != 0 {
        conn.urgent = true;
    }
    if r & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0 && conn.would_read() {
        conn.readable = true;
    }
    if write && r & (sys::POLLOUT | sys::POLLHUP | sys::POLLERR) != 0 {
        conn.writable = true;
    }
    for (k, i) in slots.into_iter().enumerate() {
        if fds[1 + k].revents != 0 {
            conn.set_channel_ready(i);
        }
    }
    Ok(())
}
