//! Unit tests of the FTP session without a driver: a [`Harness`] feeds a
//! session input and channel events on a fake clock, over a scratch root,
//! and plays the driver's part for computations. Timeouts are tested by
//! moving the clock, never by sleeping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{
    FtpSession, CLOSE_LINGER, DATA_CONNECT_TIMEOUT, LOGIN_FAILURE_DELAY, LOGIN_TIMEOUT,
    MAX_DEFERRED, MAX_OUTPUT,
};
use super::users::{self, Users};
use super::FtpConfig;
use crate::gate::Gate;
use crate::root::Root;
use crate::session::{ChannelEvent, ChannelId, ConnInfo, Request, Session};

const IDLE: Duration = Duration::from_secs(300);
const DATA_TIMEOUT: Duration = Duration::from_secs(60);

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "muse-ftp-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One session, its fake clock, and the requests it made.
struct Harness {
    s: FtpSession,
    now: Instant,
    requests: Vec<Request>,
    dir: Scratch,
}

impl Harness {
    /// A session over a fresh root, logged in as a user with every right
    /// (`alice`, password `secret`) when `login`.
    fn new(login: bool) -> Harness {
        Harness::with_gate(login, Gate::new(4, 2).unwrap())
    }

    fn with_gate(login: bool, gate: Gate) -> Harness {
        let dir = Scratch::new();
        let hash = users::hash_password(b"secret").unwrap();
        let list = format!("alice:{hash}:/:all\nanonymous::/:read,list\n");
        let users = Users::parse(&list, Path::new("users")).unwrap();
        let config = FtpConfig {
            passive_ports: (0, 0),
            masquerade: None,
            idle_timeout: Some(IDLE),
            data_timeout: Some(DATA_TIMEOUT),
            tls: true,
            require_tls: false,
        };
        let addr: SocketAddr = "127.0.0.1:2121".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let info = ConnInfo {
            peer,
            local: addr,
            wall: std::time::SystemTime::now(),
        };
        let now = Instant::now();
        let s = FtpSession::new(
            Arc::new(Root::open(dir.path()).unwrap()),
            Arc::new(users),
            Arc::new(config),
            gate,
            info,
            now,
        );
        let mut h = Harness {
            s,
            now,
            requests: Vec::new(),
            dir,
        };
        assert!(h.output().starts_with("220 "));
        if login {
            h.send("USER alice\r\nPASS secret\r\n");
            h.compute();
            let out = h.output();
            assert!(out.contains("230 "), "{out}");
        }
        h
    }

    fn send(&mut self, text: &str) {
        self.s.handle_input(text.as_bytes(), self.now);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(r) = self.s.poll_request() {
            self.requests.push(r);
        }
    }

    /// Everything the session wrote, as the driver would take it.
    fn output(&mut self) -> String {
        let out = String::from_utf8_lossy(self.s.poll_output().bytes()).into_owned();
        let n = self.s.poll_output().bytes().len();
        self.s.consume_output(n, self.now);
        self.collect();
        out
    }

    /// Moves the clock and fires the session's timer if it is due.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
        self.collect();
    }

    fn event(&mut self, e: ChannelEvent) {
        self.s.handle_channel(e, self.now);
        self.collect();
    }

    /// Runs the computation the session asked for, as a driver would.
    fn compute(&mut self) {
        let i = self
            .requests
            .iter()
            .position(|r| matches!(r, Request::Compute(_)))
            .expect("a computation was asked for");
        let Request::Compute(work) = self.requests.remove(i) else {
            unreachable!()
        };
        self.s.handle_computed(work.run(), self.now);
        self.collect();
    }

    /// Takes the requests made so far.
    fn take(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// `EPSV`: the session listens on channel `id` (returned).
    fn passive(&mut self) -> ChannelId {
        self.send("EPSV\r\n");
        let id = match self.take().as_slice() {
            [Request::Listen { id, .. }] => *id,
            other => panic!("EPSV asked for {other:?}"),
        };
        self.event(ChannelEvent::Listening {
            id,
            addr: "127.0.0.1:50000".parse().unwrap(),
        });
        assert!(self.output().starts_with("229 "));
        id
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn connected(id: ChannelId) -> ChannelEvent {
    ChannelEvent::Connected {
        id,
        peer: "127.0.0.1:40001".parse().unwrap(),
    }
}

/// Starts a download of `big` (written first) on a passive channel.
fn start_retr(h: &mut Harness) -> ChannelId {
    std::fs::write(h.file("big"), vec![7u8; 1000]).unwrap();
    let id = h.passive();
    h.send("RETR big\r\n");
    assert!(h.output().starts_with("150 "));
    let reqs = h.take();
    assert!(
        matches!(reqs.as_slice(), [Request::SendFile { .. }]),
        "{reqs:?}"
    );
    h.event(connected(id));
    id
}

#[test]
fn each_command_line_is_one_request() {
    let mut h = Harness::new(true);
    assert_eq!(h.s.take_finished_requests(), 2, "USER and PASS");
    h.send("NOOP\r\nSYST\r\nBOGUS\r\n");
    let out = h.output();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(h.s.take_finished_requests(), 3);
    assert_eq!(h.s.take_finished_requests(), 0);
}

#[test]
fn a_password_is_checked_off_the_session_and_commands_wait_for_it() {
    for (password, want) in [("secret", "230 "), ("wrong", "530 ")] {
        let mut h = Harness::new(false);
        h.send(&format!("USER alice\r\nPASS {password}\r\nPWD\r\n"));
        assert!(h.output().starts_with("331 "));
        assert!(!h.s.wants_read(), "no input while the password is checked");
        assert_eq!(h.output(), "", "PWD waits for the login's answer");
        h.compute();
        let out = h.output();
        assert!(out.starts_with(want), "{password}: {out}");
        if want == "230 " {
            assert!(out.contains("\r\n257 \"/\""), "{out}");
        } else {
            // PWD also waits out the pause after a failed login.
            assert_eq!(out, "530 Login incorrect.\r\n");
            h.advance(LOGIN_FAILURE_DELAY);
            let out = h.output();
            assert!(out.starts_with("530 Please login"), "{out}");
        }
    }
    // Anonymous has no password to check: answered at once.
    let mut h = Harness::new(false);
    h.send("USER anonymous\r\nPASS me@\r\n");
    assert!(h.output().contains("\r\n230 "));
    assert!(h.take().is_empty());
}

#[test]
fn a_full_login_gate_makes_a_check_wait_holding_nothing() {
    let gate = Gate::new(1, 1).unwrap();
    let held = gate
        .try_acquire("127.0.0.1".parse().unwrap())
        .expect("the one place");
    let mut h = Harness::with_gate(false, gate);
    h.send("USER alice\r\nPASS secret\r\n");
    assert!(h.output().starts_with("331 "));
    assert!(h.take().is_empty(), "no check starts without a place");
    h.advance(Duration::from_millis(50));
    assert!(h.take().is_empty(), "still none");
    drop(held);
    h.advance(Duration::from_millis(50));
    h.compute();
    assert!(h.output().starts_with("230 "));
}

#[test]
fn pipelined_replies_past_the_output_bound_are_all_sent_as_output_drains() {
    let mut h = Harness::new(true);
    let n = 1000;
    h.send(&"HELP\r\n".repeat(n));
    // The session stops at its bound with input still held...
    assert!(h.s.poll_output().bytes().len() > MAX_OUTPUT);
    assert!(!h.s.wants_read());
    // ...and goes on as the driver takes its output, with no more input.
    let mut all = String::new();
    for _ in 0..n {
        let out = h.output();
        if out.is_empty() {
            break;
        }
        all.push_str(&out);
    }
    assert_eq!(all.matches("214 Help OK.").count(), n);
    assert!(h.s.wants_read());
}

#[test]
fn commands_during_a_transfer_are_answered_in_order_after_it_none_dropped() {
    let mut h = Harness::new(true);
    let id = start_retr(&mut h);
    // 40 commands (more than the deferral bound), one unknown verb and one
    // unparsable line, in one write.
    let mut input = String::new();
    for i in 0..40 {
        input.push_str(&format!("MKD d{i}\r\n"));
    }
    input.push_str("BOGUS\r\n\r\nPWD\r\n");
    h.send(&input);
    assert_eq!(
        h.output(),
        "",
        "nothing is answered before the transfer ends"
    );
    assert!(!h.s.wants_read(), "back-pressure, not discarding");
    h.event(ChannelEvent::Done { id, bytes: 1000 });
    let out = h.output();
    let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes[0], "226");
    assert_eq!(codes[1..41], ["257"; 40]);
    assert!(out.contains("\"/d39\" created"), "{out}");
    assert_eq!(codes[41], "500", "the unknown verb: {out}");
    assert_eq!(codes[42], "500", "the empty line: {out}");
    assert_eq!(codes[43], "257", "PWD last: {out}");
    assert_eq!(codes.len(), 44);
    for i in 0..40 {
        assert!(h.file(&format!("d{i}")).is_dir());
    }
}

#[test]
fn abor_and_stat_are_answered_during_a_transfer_and_noop_in_its_turn() {
    let mut h = Harness::new(true);
    let id = start_retr(&mut h);
    h.send("NOOP\r\nSTAT\r\n");
    let out = h.output();
    assert!(out.starts_with("200 NOOP"), "{out}");
    assert!(out.contains("211 End of status"), "{out}");
    h.send("PWD\r\nNOOP\r\nABOR\r\n");
    assert_eq!(h.output(), "", "NOOP after a waiting PWD waits too");
    assert!(matches!(h.take().as_slice(), [Request::Abort { id: i }] if *i == id));
    h.event(ChannelEvent::Aborted { id, bytes: 10 });
    let out = h.output();
    let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["426", "226", "257", "200"], "{out}");
}

#[test]
fn rest_applies_to_the_next_command_only() {
    let mut h = Harness::new(true);
    std::fs::write(h.file("old"), vec![b'o'; 1000]).unwrap();
    // REST, a RETR that fails, PWD: the offset is gone.
    let id = h.passive();
    h.send("REST 100\r\nRETR missing\r\nPWD\r\n");
    let out = h.output();
    let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["350", "550", "257"], "{out}");
    h.send("STOR old\r\n");
    assert!(h.output().starts_with("150 "));
    let file = match h.take().pop() {
        Some(Request::ReceiveFile { file, .. }) => file,
        other => panic!("{other:?}"),
    };
    h.event(connected(id));
    use std::io::Write;
    (&file).write_all(b"hello world").unwrap();
    drop(file);
    h.event(ChannelEvent::Done { id, bytes: 11 });
    assert!(h.output().starts_with("226 "));
    assert_eq!(std::fs::read(h.file("old")).unwrap(), b"hello world");
}

#[test]
fn a_failed_upload_leaves_the_file_it_named_untouched() {
    let mut h = Harness::new(true);
    std::fs::write(h.file("keep"), b"precious").unwrap();
    let id = h.passive();
    h.send("STOR keep\r\n");
    assert!(h.output().starts_with("150 "));
    let file = match h.take().pop() {
        Some(Request::ReceiveFile { file, .. }) => file,
        other => panic!("{other:?}"),
    };
    h.event(connected(id));
    use std::io::Write;
    (&file).write_all(b"half").unwrap();
    h.event(ChannelEvent::Failed {
        id,
        bytes: 4,
        error: std::io::ErrorKind::ConnectionReset,
    });
    assert!(h.output().starts_with("426 "));
    assert_eq!(std::fs::read(h.file("keep")).unwrap(), b"precious");
}

#[test]
fn a_full_disk_is_452_and_a_quota_552() {
    for (error, code) in [
        (std::io::ErrorKind::StorageFull, "452 "),
        (std::io::ErrorKind::QuotaExceeded, "552 "),
    ] {
        let mut h = Harness::new(true);
        let id = h.passive();
        h.send("STOR new\r\n");
        assert!(h.output().starts_with("150 "));
        h.event(connected(id));
        h.event(ChannelEvent::Failed {
            id,
            bytes: 0,
            error,
        });
        let out = h.output();
        assert!(out.starts_with(code), "{error:?}: {out}");
        assert!(!h.file("new").exists());
    }
}

#[test]
fn nothing_is_created_before_a_data_connection_is_set_up() {
    let mut h = Harness::new(true);
    h.send("STOU\r\nAPPE a\r\nREST 5\r\nSTOR b\r\nSTOR c\r\n");
    let out = h.output();
    assert_eq!(out.matches("425 ").count(), 4, "{out}");
    let left: Vec<_> = std::fs::read_dir(h.dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bare_type_mode_and_stru_are_501() {
    let mut h = Harness::new(true);
    h.send("TYPE\r\nMODE\r\nSTRU\r\nTYPE X\r\n");
    let codes: Vec<String> = h.output().lines().map(|l| l[..3].to_string()).collect();
    assert_eq!(codes, ["501", "501", "501", "504"]);
}

#[test]
fn retr_and_stor_of_a_directory_say_why() {
    let mut h = Harness::new(true);
    std::fs::create_dir(h.file("dir")).unwrap();
    h.passive();
    h.send("RETR dir\r\nSTOR dir\r\n");
    let out = h.output();
    assert_eq!(out.matches("Is a directory.").count(), 2, "{out}");
}

#[test]
fn idle_time_counts_complete_commands_not_bytes() {
    let mut h = Harness::new(true);
    // One byte at a time, never a line end: not activity.
    for _ in 0..(IDLE.as_secs() / 2) {
        h.advance(Duration::from_secs(2));
        if h.s.wants_close() {
            break;
        }
        h.send("N");
    }
    assert!(h.output().contains("421 Timeout."));
    assert!(h.s.wants_close());
}

#[test]
fn a_login_has_its_own_deadline_whatever_is_sent() {
    let mut h = Harness::new(false);
    let mut closed = false;
    for _ in 0..(LOGIN_TIMEOUT.as_secs() + 10) {
        h.advance(Duration::from_secs(1));
        if h.s.wants_close() {
            closed = true;
            break;
        }
        h.send("NOOP\r\n");
        h.output();
    }
    assert!(closed, "closed at the login deadline");
    assert!(h.output().contains("421 Login timeout."));
}

#[test]
fn a_client_that_never_reads_is_closed_at_a_deadline_whatever_it_owes() {
    let mut h = Harness::new(true);
    while h.s.wants_read() {
        h.s.handle_input(&b"NOOP\r\n".repeat(1000), h.now);
    }
    assert!(!h.s.poll_output().bytes().is_empty());
    h.advance(IDLE);
    assert!(h.s.wants_close(), "421 queued behind the unsent replies");
    assert!(!h.s.wants_close_now());
    h.advance(CLOSE_LINGER);
    assert!(h.s.wants_close_now(), "closed with output unsent");
}

#[test]
fn a_stalled_data_connection_is_aborted_with_426() {
    let mut h = Harness::new(true);
    let id = start_retr(&mut h);
    // Progress is looked at four times per timeout: bytes moved at the
    // first look, then none; the abort comes at the first look a whole
    // timeout after they last moved, not up to a timeout later.
    let step = DATA_TIMEOUT / 4;
    h.advance(step);
    assert!(matches!(h.take().as_slice(), [Request::Progress { id: i }] if *i == id));
    h.event(ChannelEvent::Progress { id, bytes: 500 });
    for look in 2..=4 {
        h.advance(step);
        assert!(
            matches!(h.take().as_slice(), [Request::Progress { .. }]),
            "look {look}"
        );
        h.event(ChannelEvent::Progress { id, bytes: 500 });
        assert!(h.take().is_empty(), "look {look}: not a whole timeout yet");
    }
    h.advance(step);
    assert!(matches!(h.take().as_slice(), [Request::Progress { .. }]));
    h.event(ChannelEvent::Progress { id, bytes: 500 });
    assert!(matches!(h.take().as_slice(), [Request::Abort { id: i }] if *i == id));
    h.event(ChannelEvent::Aborted { id, bytes: 500 });
    let out = h.output();
    assert!(out.starts_with("426 Data connection timed out"), "{out}");
    assert!(!out.contains("226"), "{out}");
    // The session goes on.
    h.send("PWD\r\n");
    assert!(h.output().starts_with("257 "));
}

#[test]
fn a_data_connection_that_never_comes_is_425() {
    let mut h = Harness::new(true);
    h.passive();
    h.send("LIST\r\n");
    h.compute();
    assert!(h.output().starts_with("150 "));
    let id = match h.take().as_slice() {
        [Request::SendBytes { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    h.advance(DATA_CONNECT_TIMEOUT);
    assert!(matches!(h.take().as_slice(), [Request::Abort { .. }]));
    h.event(ChannelEvent::Closed { id });
    assert!(h.output().starts_with("425 "));
}

#[test]
fn end_of_input_and_quit_wait_for_the_transfer() {
    for how in ["eof", "quit"] {
        let mut h = Harness::new(true);
        let id = start_retr(&mut h);
        if how == "eof" {
            h.s.handle_eof(h.now);
        } else {
            h.send("QUIT\r\n");
        }
        h.collect();
        assert!(h.take().is_empty(), "{how}: the transfer is not aborted");
        assert!(!h.s.wants_close(), "{how}");
        h.event(ChannelEvent::Done { id, bytes: 1000 });
        let out = h.output();
        if how == "eof" {
            assert_eq!(out, "226 Transfer complete.\r\n");
        } else {
            assert_eq!(out, "226 Transfer complete.\r\n221 Goodbye.\r\n");
        }
        assert!(h.s.wants_close(), "{how}");
    }
}

#[test]
fn a_listing_streams_in_bounded_chunks() {
    let mut h = Harness::new(true);
    std::fs::create_dir(h.file("many")).unwrap();
    for i in 0..3000 {
        std::fs::write(h.file(&format!("many/file-with-a-long-name-{i:05}")), b"").unwrap();
    }
    let id = h.passive();
    h.send("NLST many\r\n");
    h.compute();
    assert!(h.output().starts_with("150 "));
    h.event(connected(id));
    let mut names = Vec::new();
    let mut chunks = 0;
    loop {
        let (data, more) = match h.take().pop() {
            Some(Request::SendBytes { data, more, .. }) => (data, more),
            other => panic!("{other:?}"),
        };
        assert!(data.len() <= super::listing::CHUNK + 4096);
        chunks += 1;
        names.extend(String::from_utf8(data).unwrap().lines().map(str::to_string));
        if !more {
            break;
        }
        h.event(ChannelEvent::Sent { id, bytes: 0 });
        h.compute();
    }
    assert!(chunks > 1, "{chunks} chunks");
    names.sort();
    assert_eq!(names.len(), 3000);
    assert_eq!(names[0], "file-with-a-long-name-00000");
    h.event(ChannelEvent::Done { id, bytes: 1 });
    assert!(h.output().starts_with("226 "));
}

#[test]
fn a_small_listing_is_sorted_and_a_missing_one_is_550_before_150() {
    let mut h = Harness::new(true);
    for name in ["c", "a", "b"] {
        std::fs::write(h.file(name), b"x").unwrap();
    }
    h.passive();
    h.send("NLST\r\n");
    h.compute();
    assert!(h.output().starts_with("150 "));
    match h.take().pop() {
        Some(Request::SendBytes { data, more, .. }) => {
            assert_eq!(data, b"a\r\nb\r\nc\r\n");
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    let mut h = Harness::new(true);
    h.passive();
    h.send("LIST nowhere\r\n");
    h.compute();
    assert!(h.output().starts_with("550 "));
}

#[test]
fn stat_of_a_large_directory_is_bounded_and_followed_by_what_was_pipelined() {
    let mut h = Harness::new(true);
    std::fs::create_dir(h.file("many")).unwrap();
    for i in 0..1500 {
        std::fs::write(h.file(&format!("many/f{i:04}")), b"").unwrap();
    }
    h.send("STAT many\r\nPWD\r\n");
    h.compute();
    let mut out = String::new();
    for _ in 0..100 {
        let o = h.output();
        if o.is_empty() {
            break;
        }
        out.push_str(&o);
    }
    assert!(
        out.contains("and 500 more entries"),
        "{}",
        &out[out.len() - 200..]
    );
    assert!(out.ends_with("213 End of status\r\n257 \"/\" is the current directory.\r\n"));
}

#[test]
fn shutdown_waits_for_the_transfer_then_says_421() {
    let mut h = Harness::new(true);
    let id = start_retr(&mut h);
    h.s.handle_shutdown(h.now);
    assert!(!h.s.wants_close());
    h.event(ChannelEvent::Done { id, bytes: 1000 });
    assert_eq!(
        h.output(),
        "226 Transfer complete.\r\n421 Server shutting down.\r\n"
    );
    assert!(h.s.wants_close());
}

#[test]
fn more_deferred_commands_than_the_bound_stop_reading() {
    let mut h = Harness::new(true);
    start_retr(&mut h);
    for _ in 0..MAX_DEFERRED {
        assert!(h.s.wants_read());
        h.send("PWD\r\n");
    }
    assert!(!h.s.wants_read());
}

#[test]
fn rest_survives_the_data_connection_setup_between_it_and_its_transfer() {
    let mut h = Harness::new(true);
    std::fs::write(h.file("f"), b"0123456789").unwrap();
    h.send("REST 4\r\nTYPE I\r\n");
    h.output();
    h.passive();
    h.send("RETR f\r\n");
    assert!(h.output().starts_with("150 "));
    match h.take().pop() {
        Some(Request::SendFile { offset, .. }) => assert_eq!(offset, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shutdown_deadline_cuts_a_transfer_with_426_then_421() {
    let mut h = Harness::new(true);
    start_retr(&mut h);
    // The drain waits for the transfer...
    h.s.handle_shutdown(h.now);
    h.collect();
    assert_eq!(h.output(), "");
    assert!(!h.s.wants_close());
    // ...until the deadline: last words, in order, then close.
    h.s.handle_shutdown_expired(h.now);
    h.collect();
    let out = h.output();
    assert!(
        out.starts_with("426 ") && out.contains("\r\n421 "),
        "last words: {out:?}"
    );
    assert!(h.s.wants_close());
}

#[test]
fn shutdown_deadline_of_an_idle_session_says_421_once() {
    let mut h = Harness::new(true);
    h.s.handle_shutdown_expired(h.now);
    h.collect();
    assert!(h.output().starts_with("421 "));
    // A session already closing adds nothing.
    h.s.handle_shutdown_expired(h.now);
    assert_eq!(h.output(), "");
}

#[test]
fn auth_tls_switches_after_its_234_and_reads_nothing_before() {
    let mut h = Harness::new(false);
    // A command pipelined behind AUTH TLS (in clear) is not taken.
    h.send("AUTH TLS\r\nUSER alice\r\n");
    assert_eq!(h.s.poll_output().bytes(), b"234 AUTH TLS successful.\r\n");
    h.s.consume_output(26, h.now);
    assert!(matches!(
        h.s.poll_output(),
        crate::session::Output::StartTls
    ));
    assert!(!h.s.wants_read(), "nothing is read until the switch");
    h.s.consume_output(0, h.now);
    h.s.handle_tls(h.now);
    assert!(h.s.wants_read());
    assert_eq!(h.output(), "", "the USER sent in clear was dropped");
    // Over TLS: PROT needs PBSZ; PROT P makes data connections TLS.
    h.send("PROT P\r\n");
    assert!(h.output().starts_with("503 "));
    h.send("PBSZ 0\r\nPROT P\r\nCCC\r\nAUTH TLS\r\n");
    let out = h.output();
    assert!(
        out.starts_with("200 PBSZ=0\r\n200 PROT now Private.\r\n533 "),
        "{out}"
    );
    assert!(out.ends_with("503 Already using TLS.\r\n"), "{out}");
    h.send("USER alice\r\nPASS secret\r\n");
    h.compute();
    assert!(h.output().contains("230 "));
    std::fs::write(h.file("big"), vec![7u8; 1000]).unwrap();
    let id = h.passive();
    h.send("RETR big\r\n");
    assert!(h.output().starts_with("150 "));
    let requests = h.take();
    assert!(
        matches!(requests.as_slice(), [Request::Secure { id: s }, Request::SendFile { id: f, .. }] if *s == id && *f == id),
        "{requests:?}"
    );
}

#[test]
fn prot_and_pbsz_need_tls_and_feat_offers_it() {
    let mut h = Harness::new(true);
    h.send("PBSZ 0\r\nPROT P\r\nFEAT\r\n");
    let out = h.output();
    assert!(
        out.starts_with("503 PBSZ needs AUTH TLS first.\r\n503 "),
        "{out}"
    );
    for f in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(out.contains(f), "FEAT lacks {f:?}: {out}");
    }
    h.send("AUTH KERBEROS\r\n");
    assert!(h.output().starts_with("503 AUTH must come before login."));
}
