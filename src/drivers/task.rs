//! The async driver: one tokio task per connection. The task runs the same
//! [`Connection`] as the other drivers and waits with tokio's readiness
//! (`AsyncFd`) on the control socket and the channel sockets, the session's
//! deadline and the shutdown switch, all in one `select!`.
//!
//! Readiness is recorded in the connection's flags and tokio's copy is
//! cleared at once; the connection then moves bytes until the socket would
//! block, so nothing is lost between the two records.
//!
//! A session's waker is a `tokio::sync::Notify` (a wake while the task is
//! busy is kept as a permit, so none is lost); its service stream, if it
//! opens one, is one more `AsyncFd` in the same `select!`.

use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::drivers::channel::Wait;
use crate::drivers::conn::{Connection, Status};
use crate::drivers::{earliest, with_scratch, Ctx};
use crate::net::Accepted;
use crate::scoreboard::Ticket;
use crate::session::MAX_CHANNELS;

/// A descriptor owned elsewhere (by the connection), as tokio wants it.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

enum Woke {
    Control {
        read: bool,
        write: bool,
        urgent: bool,
        closed: bool,
    },
    Channel(usize),
    Service {
        read: bool,
        write: bool,
    },
    Woken,
    Other,
}

/// A task's session waker.
struct NotifyWake(tokio::sync::Notify);

impl crate::session::Wake for NotifyWake {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// Serves one accepted connection (a non-blocking socket) to its end.
pub async fn serve(
    accepted: Accepted,
    ticket: Ticket,
    ctx: Ctx,
    mut draining: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let mut conn = Connection::accept(accepted, &ctx.protocol, false, Some(ticket), now);
    let notify = conn.wants_waker().then(|| {
        let n = std::sync::Arc::new(NotifyWake(tokio::sync::Notify::new()));
        conn.set_waker(crate::session::Waker::new(n.clone()));
        n
    });
    let mut service: Option<(RawFd, AsyncFd<Fd>)> = None;
    let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
    // SAFETY: the descriptor belongs to `conn`, which outlives `control`
    // (dropped explicitly at the end, before `conn`).
    let Ok(control) =
        (unsafe { AsyncFd::register_with_interest(Fd(conn.stream().as_raw_fd()), interest) })
    else {
        return;
    };
    let mut chans: [Option<(u64, AsyncFd<Fd>)>; MAX_CHANNELS] = Default::default();
    // One timer and one shutdown waiter for the connection's whole life:
    // making them afresh on every turn would take tokio's timer and watch
    // locks on every request. The timer is re-armed only when the wanted
    // instant comes before the armed one; if it fires early (the deadline
    // moved later), the connection checks its own deadline and re-arms.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut sleep_at: Option<Instant> = None;
    let drain_started = draining.changed();
    tokio::pin!(drain_started);
    let mut drain_seen = ctx.shutdown.is_draining();
    loop {
        let now = Instant::now();
        if ctx.shutdown.is_expired(now) {
            conn.last_words(now);
            break;
        }
        let env = ctx.env(now);
        let status = with_scratch(|s| catch_unwind(AssertUnwindSafe(|| conn.process(env, s))));
        ctx.count_requests(conn.take_finished_requests());
        match status {
            Ok(Status::Open) => {}
            Ok(Status::Closed) => break,
            Err(_) => {
                crate::log::warn(format_args!("a session panicked; its connection is closed"));
                break;
            }
        }
        sync_channels(&conn, &mut chans);
        match conn.service_fd() {
            Some(fd) if service.as_ref().is_none_or(|(have, _)| *have != fd) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                // SAFETY: the stream stays open while the connection has it,
                // and this registration is dropped (below) as soon as the
                // connection reports it gone, before anything else is opened.
                service = unsafe { AsyncFd::register_with_interest(Fd(fd), interest) }
                    .ok()
                    .map(|a| (fd, a));
            }
            Some(_) => {}
            None => service = None,
        }
        // Registrations of replaced sockets are gone now; the sockets may go.
        conn.take_retired().for_each(drop);
        if let Some(work) = conn.take_work() {
            // A computation too slow for a runtime thread (a password
            // check): on tokio's blocking pool, this task waiting for it.
            match tokio::task::spawn_blocking(move || work.run()).await {
                Ok(result) => {
                    conn.give_computed(result, Instant::now());
                    continue;
                }
                Err(_) => {
                    crate::log::warn(format_args!(
                        "a session's computation panicked; its connection is closed"
                    ));
                    break;
                }
            }
        }
        if conn.has_more() {
            tokio::task::yield_now().await;
            continue;
        }
        let mut waits = [Wait::Nothing; MAX_CHANNELS];
        for (i, c) in conn.channels() {
            waits[i] = c.wait();
        }
        let (want_read, want_write) = (conn.wants_read(), conn.wants_write());
        // Urgent data matters only while a transfer runs (FTP's ABOR) or a
        // stream is relayed; the urgent byte arrives in line either way.
        let want_urgent = want_read && conn.watches_urgent();
        let is_draining = ctx.shutdown.is_draining();
        let wake_at = earliest([
            conn.deadline(),
            if is_draining {
                ctx.shutdown.deadline()
            } else {
                None
            },
        ]);
        if let Some(at) = wake_at {
            if sleep_at.is_none_or(|armed| at < armed) {
                sleep.as_mut().reset(at.into());
                sleep_at = Some(at);
            }
        }
        let (service_read, service_write) = conn.service_wants();
        let woke = tokio::select! {
            r = poll_fn(|cx| poll_service(service.as_ref(), cx, service_read, service_write)), if service.is_some() && (service_read || service_write) => r,
            _ = async { notify.as_ref().expect("guarded").0.notified().await }, if notify.is_some() => Woke::Woken,
            r = poll_fn(|cx| poll_control(&control, cx, want_read, want_write)), if want_read || want_write => match r {
                Ok(woke) => woke,
                Err(_) => break,
            },
            r = control.ready(Interest::PRIORITY), if want_urgent => match r {
                Ok(mut guard) => {
                    guard.clear_ready();
                    Woke::Control { read: true, write: false, urgent: true, closed: false }
                }
                Err(_) => break,
            },
            i = channel_ready(&chans, &waits) => Woke::Channel(i),
            _ = &mut sleep, if sleep_at.is_some() => {
                sleep_at = None;
                Woke::Other
            }
            _ = &mut drain_started, if !drain_seen => {
                drain_seen = true;
                Woke::Other
            }
        };
        note(&mut conn, woke);
        // Take whatever else is ready already, so that the next `process`
        // sees it all at once: an FTP RETR and its data connection arriving
        // together are answered 150 and 226 in one write.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(woke)) = poll_control(&control, &mut cx, want_read, want_write) {
            note(&mut conn, woke);
        }
        for (i, slot) in chans.iter().enumerate() {
            if let Some((_, afd)) = slot {
                if poll_channel(afd, waits[i], &mut cx).is_ready() {
                    conn.set_channel_ready(i);
                }
            }
        }
    }
    // Deregister before the connection closes the descriptors.
    drop(service);
    drop(chans);
    drop(control);
}

/// Gives the connection what woke it.
fn note(conn: &mut Connection, woke: Woke) {
    match woke {
        Woke::Control {
            read,
            write,
            urgent,
            closed,
        } => {
            conn.peer_closed |= closed;
            conn.readable |= read;
            conn.writable |= write;
            conn.urgent |= urgent;
        }
        Woke::Channel(i) => conn.set_channel_ready(i),
        Woke::Service { read, write } => {
            if let Some(link) = conn.service_mut() {
                link.readable |= read;
                link.writable |= write;
            }
        }
        Woke::Woken => conn.woken = true,
        Woke::Other => {}
    }
}

/// Waits for the control socket to be readable (if `read`) or writable (if
/// `write`), through tokio's per-direction waker slots (no lock, unlike a
/// combined-interest `ready()` future).
fn poll_control(
    control: &AsyncFd<Fd>,
    cx: &mut Context<'_>,
    read: bool,
    write: bool,
) -> Poll<std::io::Result<Woke>> {
    let (mut readable, mut writable, mut closed) = (false, false, false);
    if read {
        if let Poll::Ready(r) = control.poll_read_ready(cx) {
            let mut guard = r?;
            let ready = guard.ready();
            guard.clear_ready();
            readable = true;
            closed = ready.is_read_closed() || ready.is_error();
        }
    }
    if write {
        if let Poll::Ready(r) = control.poll_write_ready(cx) {
            r?.clear_ready();
            writable = true;
        }
    }
    if readable || writable {
        Poll::Ready(Ok(Woke::Control {
            read: readable,
            write: writable,
            urgent: false,
            closed,
        }))
    } else {
        Poll::Pending
    }
}

/// Waits for the service stream to be readable (if `read`) or writable (if
/// `write`).
fn poll_service(
    service: Option<&(RawFd, AsyncFd<Fd>)>,
    cx: &mut Context<'_>,
    read: bool,
    write: bool,
) -> Poll<Woke> {
    let Some((_, afd)) = service else {
        return Poll::Pending;
    };
    let (mut r, mut w) = (false, false);
    if read {
        if let Poll::Ready(ready) = afd.poll_read_ready(cx) {
            if let Ok(mut g) = ready {
                g.clear_ready();
            }
            r = true;
        }
    }
    if write {
        if let Poll::Ready(ready) = afd.poll_write_ready(cx) {
            if let Ok(mut g) = ready {
                g.clear_ready();
            }
            w = true;
        }
    }
    if r || w {
        Poll::Ready(Woke::Service { read: r, write: w })
    } else {
        Poll::Pending
    }
}

/// Registers each channel's current socket with tokio (and drops the
/// registrations of sockets the channels no longer use).
fn sync_channels(conn: &Connection, chans: &mut [Option<(u64, AsyncFd<Fd>)>; MAX_CHANNELS]) {
    let mut current = [None; MAX_CHANNELS];
    for (i, c) in conn.channels().filter(|(_, c)| c.watched()) {
        current[i] = Some((c.serial, c.fd()));
    }
    for (slot, cur) in chans.iter_mut().zip(current) {
        match (slot.as_ref().map(|(serial, _)| *serial), cur) {
            (Some(have), Some((want, _))) if have == want => {}
            (_, Some((serial, fd))) => {
                *slot = None;
                let interest = Interest::READABLE | Interest::WRITABLE;
                // SAFETY: the channel's socket stays open until its
                // registration here is dropped: replaced sockets go to the
                // connection's retired list, emptied only after this sync.
                *slot = unsafe { AsyncFd::register_with_interest(Fd(fd), interest) }
                    .ok()
                    .map(|a| (serial, a));
            }
            (_, None) => *slot = None,
        }
    }
}

/// Resolves with the index of the first channel ready for what it waits for.
async fn channel_ready(
    chans: &[Option<(u64, AsyncFd<Fd>)>; MAX_CHANNELS],
    waits: &[Wait; MAX_CHANNELS],
) -> usize {
    poll_fn(|cx| {
        for (i, slot) in chans.iter().enumerate() {
            let Some((_, afd)) = slot else { continue };
            if poll_channel(afd, waits[i], cx).is_ready() {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    })
    .await
}

/// Whether a side channel is ready for what it waits for (clearing that
/// readiness: the connection works the socket until it would block).
fn poll_channel(afd: &AsyncFd<Fd>, wait: Wait, cx: &mut Context<'_>) -> Poll<()> {
    let ready = match wait {
        Wait::Nothing => return Poll::Pending,
        Wait::Read => afd
            .poll_read_ready(cx)
            .map(|r| r.map(|mut g| g.clear_ready())),
        Wait::Write => afd
            .poll_write_ready(cx)
            .map(|r| r.map(|mut g| g.clear_ready())),
    };
    ready.map(|_| ())
}
