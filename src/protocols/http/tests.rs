//! Unit tests of the HTTP session without a driver: a [`Harness`] feeds a
//! session bytes and a fake clock over a scratch root, takes its output as a
//! driver would (reading file ranges with `pread`), and runs its
//! computations in place. Deadlines are tested by moving the clock, not by
//! sleeping.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::session::{DRAIN_GRACE, LINGER, MAX_OUTPUT, MAX_QUEUED_FILES};
use super::{Http, HttpConfig};
use crate::root::Root;
use crate::session::{ConnInfo, Output, Protocol, Request, Session};

const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(30);
/// The calendar time the session is born at: 2001-09-09 01:46:40 UTC.
const BORN: u64 = 1_000_000_000;

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "muse-http-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Harness {
    s: Box<dyn Session>,
    now: Instant,
    dir: Scratch,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut HttpConfig)) -> Harness {
        let dir = Scratch::new();
        std::fs::write(dir.0.join("a.txt"), b"hello\n").unwrap();
        std::fs::write(dir.0.join("big.bin"), vec![7u8; 100_000]).unwrap();
        std::fs::create_dir(dir.0.join("d")).unwrap();
        std::fs::write(dir.0.join("d/x.txt"), b"x").unwrap();
        let mut config = HttpConfig {
            header_timeout: Some(HEADER_TIMEOUT),
            idle_timeout: Some(IDLE),
            autoindex: false,
            gzip_static: false,
            access_log: None,
            dotfiles: false,
        };
        configure(&mut config);
        let http = Http::new(Root::open(&dir.0).unwrap(), config);
        let now = Instant::now();
        let info = ConnInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            wall: UNIX_EPOCH + Duration::from_secs(BORN),
        };
        Harness {
            s: http.new_session(&info, now),
            now,
            dir,
        }
    }

    fn send(&mut self, text: &str) {
        self.s.handle_input(text.as_bytes(), self.now);
    }

    /// Everything the session has queued, bodies included, as a driver
    /// would send it.
    fn output(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            match self.s.poll_output() {
                Output::Nothing => break,
                Output::Bytes { data, .. } => {
                    let n = data.len();
                    out.extend_from_slice(data);
                    self.s.consume_output(n, self.now);
                }
                Output::File {
                    file, offset, len, ..
                } => {
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, offset).unwrap();
                    out.extend_from_slice(&buf);
                    self.s.consume_output(len as usize, self.now);
                }
                Output::StartTls => panic!("http never switches to TLS"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
        }
    }

    /// Runs the computation the session asked for, as a driver would.
    fn compute(&mut self) {
        match self.s.poll_request() {
            Some(Request::Compute(work)) => {
                let result = work.run();
                self.s.handle_computed(result, self.now);
            }
            other => panic!("expected a computation, got {other:?}"),
        }
    }
}

#[test]
fn each_response_is_one_request() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200, 404]);
    h.send("GET /a.txt HTTP/1.1\r\nHo");
    assert_eq!(h.s.take_finished_requests(), 2);
    h.send("st: x\r\n\r\nBAD\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200, 400]);
    assert_eq!(
        h.s.take_finished_requests(),
        2,
        "a malformed head is answered too"
    );
    assert_eq!(h.s.take_finished_requests(), 0);
}

/// The status codes in `out`, in order.
fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| out[i + 9..i + 12].parse().ok())
        .collect()
}

#[test]
fn a_get_is_answered_with_the_file_after_its_head() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\nContent-Length: 6\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello\n"), "{out}");
    // The calendar time comes from the connection's start, not a clock.
    assert!(
        out.contains("\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n"),
        "{out}"
    );
    h.advance(Duration::from_secs(21));
    h.send("HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert!(
        out.contains("\r\nDate: Sun, 09 Sep 2001 01:47:01 GMT\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\n"), "HEAD has no body: {out}");
    assert!(h.s.wants_read() && !h.s.wants_close());
}

#[test]
fn a_head_fed_one_byte_at_a_time_is_the_same_request() {
    let mut h = Harness::new();
    for b in "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".bytes() {
        assert_eq!(h.output(), "");
        h.s.handle_input(&[b], h.now);
    }
    assert!(h.output().ends_with("hello\n"));
}

#[test]
fn pipelined_requests_past_the_output_bound_wait_their_turn() {
    let mut h = Harness::new();
    let many = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3 * MAX_QUEUED_FILES);
    h.send(&many);
    // Only so many bodies are queued; the rest wait in the input, and the
    // session reads no more until the client takes what it was sent.
    assert!(!h.s.wants_read(), "back-pressure");
    let out = h.output();
    assert_eq!(statuses(&out).len(), 3 * MAX_QUEUED_FILES);
    assert!(h.s.wants_read());
    // Error responses are bounded by bytes too.
    let mut h = Harness::new();
    let misses = "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n".repeat(MAX_OUTPUT / 100 * 2);
    h.send(&misses);
    assert!(!h.s.wants_read(), "back-pressure on bytes");
    let out = h.output();
    assert_eq!(statuses(&out).len(), MAX_OUTPUT / 100 * 2);
}

#[test]
fn a_slow_head_gets_408_at_the_header_timeout() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\n");
    h.advance(HEADER_TIMEOUT - Duration::from_millis(1));
    assert_eq!(h.output(), "");
    // Bytes arriving do not extend the head's deadline.
    h.send("X-A: 1\r\n");
    h.advance(Duration::from_millis(1));
    let out = h.output();
    assert_eq!(statuses(&out), [408]);
    assert!(out.contains("Connection: close"));
    // It lingers, reading and dropping what the client still sends, until
    // the client closes or the linger ends.
    assert!(!h.s.wants_close() && h.s.wants_read());
    h.send("more of the slow head");
    assert_eq!(h.output(), "");
    h.advance(LINGER);
    assert!(h.s.wants_close() && !h.s.wants_read());
}

#[test]
fn an_error_that_closes_lingers_until_the_client_closes() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\nsome of the body");
    let out = h.output();
    assert_eq!(statuses(&out), [413]);
    assert!(
        h.s.wants_read(),
        "the body still coming is read and dropped"
    );
    h.send(&"x".repeat(100_000));
    assert_eq!(h.output(), "");
    assert!(!h.s.wants_close());
    h.s.handle_eof(h.now);
    assert!(h.s.wants_close());
}

#[test]
fn a_connection_that_never_speaks_closes_quietly_at_the_header_timeout() {
    let mut h = Harness::new();
    h.advance(HEADER_TIMEOUT);
    assert_eq!(h.output(), "");
    assert!(h.s.wants_close());
}

#[test]
fn a_keep_alive_connection_closes_quietly_at_the_idle_timeout() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    h.output();
    h.advance(HEADER_TIMEOUT * 2);
    assert!(
        !h.s.wants_close(),
        "between requests the idle timeout counts"
    );
    h.advance(IDLE);
    assert_eq!(h.output(), "");
    assert!(h.s.wants_close());
}

#[test]
fn output_that_does_not_move_closes_the_connection_now() {
    let mut h = Harness::new();
    h.send("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // The driver writes nothing: the client does not read.
    h.advance(IDLE);
    assert!(h.s.wants_close_now());
}

#[test]
fn shutdown_closes_at_the_next_request_boundary() {
    // A whole request waiting is answered, and the partial one after it is
    // waited for no longer than the header timeout (then 408, the linger,
    // the close).
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\n");
    let first = h.output();
    assert_eq!(statuses(&first), [200]);
    h.s.handle_shutdown(h.now);
    h.advance(HEADER_TIMEOUT);
    let out = h.output();
    assert_eq!(statuses(&out), [408]);
    h.advance(LINGER);
    assert!(h.s.wants_close(), "{out}");

    // An idle keep-alive connection is closed after the drain's grace...
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200]);
    h.s.handle_shutdown(h.now);
    assert!(!h.s.wants_close());
    assert_eq!(h.s.poll_timeout(), Some(h.now + DRAIN_GRACE));
    h.advance(DRAIN_GRACE);
    assert!(h.s.wants_close());
    // ...unless its next request comes within it: answered with close.
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200]);
    h.s.handle_shutdown(h.now);
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    assert!(out.contains("Connection: close"), "{out}");
    assert!(h.s.wants_close());

    // A new connection may still send its first request (its client could
    // not know), which is answered with close...
    let mut h = Harness::new();
    h.s.handle_shutdown(h.now);
    assert!(!h.s.wants_close() && h.s.wants_read());
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    assert!(out.contains("Connection: close"), "{out}");
    assert!(h.s.wants_close());
    // ...but only within the header timeout.
    let mut h = Harness::new();
    h.s.handle_shutdown(h.now);
    h.advance(HEADER_TIMEOUT);
    h.advance(LINGER);
    assert!(h.s.wants_close() || h.s.wants_close_now());

    // A request completed during the drain is answered, and says close.
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n");
    h.s.handle_shutdown(h.now);
    assert!(!h.s.wants_close(), "a request under way is finished first");
    h.send("\r\n");
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    assert!(out.contains("Connection: close"), "{out}");
    assert!(h.s.wants_close());
}

#[test]
fn end_of_input_answers_what_was_sent_then_closes() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /d/x.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a");
    h.s.handle_eof(h.now);
    let out = h.output();
    assert_eq!(statuses(&out), [200, 200]);
    assert!(h.s.wants_close());
}

#[test]
fn a_listing_is_a_computation_and_later_requests_wait_for_it() {
    let mut h = Harness::with(|c| c.autoindex = true);
    h.send("GET /d/ HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(h.output(), "", "nothing before the listing");
    assert!(!h.s.wants_read());
    h.compute();
    let out = h.output();
    assert_eq!(statuses(&out), [200, 200]);
    let listing_end = out.find("</html>").expect("the listing first");
    assert!(out[listing_end..].contains("hello\n"));
    assert!(out.contains("href=\"x.txt\""));
}

#[test]
fn a_directory_redirect_names_the_slash_form() {
    let mut h = Harness::new();
    h.send("GET /d?q=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert_eq!(statuses(&out), [301]);
    assert!(out.contains("\r\nLocation: /d/?q=1\r\n"), "{out}");
}

#[test]
fn a_request_body_is_thrown_away_before_the_next_request() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    // The body's rest, then the next request, in one piece.
    h.send("56789GET /d/x.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    assert!(out.ends_with("\r\n\r\nx"), "{out}");
}

#[test]
fn a_body_sent_a_byte_at_a_time_gets_the_header_timeout_from_its_head() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200]);
    // A byte a second: each one is progress, but the body keeps the clock
    // its head started (a blocking worker is held no longer than that).
    let step = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    while waited < HEADER_TIMEOUT - step {
        h.advance(step);
        waited += step;
        h.send("x");
        assert_eq!(h.output(), "", "still within the timeout at {waited:?}");
    }
    h.advance(step);
    let out = h.output();
    assert_eq!(statuses(&out), [408], "{out}");
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
}

#[test]
fn a_closing_answer_with_its_body_still_coming_lingers_for_it() {
    for extra in ["Connection: close\r\n", "Expect: 100-continue\r\n"] {
        let mut h = Harness::new();
        h.send(&format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: 10\r\n\r\n"
        ));
        let out = h.output();
        assert_eq!(statuses(&out), [200], "{extra}: {out}");
        assert!(out.ends_with("hello\n"), "{extra}: {out}");
        // Closing now, with the body unread, would reset the connection
        // under the answer: the body is read and dropped first.
        assert!(h.s.wants_read() && !h.s.wants_close(), "{extra}");
        h.send("0123456789GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            h.output(),
            "",
            "{extra}: nothing after the close is answered"
        );
        h.advance(LINGER);
        assert!(h.s.wants_close() && !h.s.wants_read(), "{extra}");
    }
}

#[test]
fn bytes_pipelined_behind_a_closing_answer_are_lingered_over() {
    let mut h = Harness::new();
    h.send(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
         GET /d/x.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(statuses(&h.output()), [200]);
    assert!(h.s.wants_read() && !h.s.wants_close());
    h.s.handle_eof(h.now);
    assert!(h.s.wants_close());
}

#[test]
fn a_closing_answer_with_nothing_behind_it_closes_at_once() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200]);
    assert!(h.s.wants_close() && !h.s.wants_read());
}

#[test]
fn the_linger_counts_from_the_end_of_the_answer() {
    let mut h = Harness::new();
    h.send("GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 4\r\n\r\n");
    // The answer is slow to leave: the linger waits for it.
    h.advance(LINGER * 2);
    assert!(!h.s.wants_close());
    assert_eq!(statuses(&h.output()), [200]);
    assert!(!h.s.wants_close());
    h.advance(LINGER);
    assert!(h.s.wants_close());
}

#[test]
fn a_client_that_ends_in_the_middle_of_a_body_is_closed_at_once() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc");
    assert_eq!(statuses(&h.output()), [200]);
    h.s.handle_eof(h.now);
    assert_eq!(h.output(), "");
    assert!(h.s.wants_close());
}

#[test]
fn a_file_that_changes_gets_a_new_etag_and_loses_its_304() {
    let mut h = Harness::new();
    h.send("GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = h.output();
    let etag = out
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .unwrap()
        .to_string();
    h.send(&format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(statuses(&h.output()), [304]);
    std::fs::write(h.dir.0.join("a.txt"), b"hello, changed\n").unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(h.dir.0.join("a.txt"))
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    // The next request comes in a later turn of the loop (a thread reuses
    // a file it opened only within one turn: `files.rs`).
    h.advance(Duration::from_millis(1));
    h.send(&format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    let out = h.output();
    assert_eq!(statuses(&out), [200]);
    assert!(out.ends_with("hello, changed\n"));
}

#[test]
fn the_protocol_refusal_is_a_whole_503() {
    let dir = Scratch::new();
    let http = Http::new(
        Root::open(&dir.0).unwrap(),
        HttpConfig {
            header_timeout: None,
            idle_timeout: None,
            autoindex: false,
            gzip_static: false,
            access_log: None,
            dotfiles: false,
        },
    );
    let text = std::str::from_utf8(http.refusal()).unwrap();
    assert!(text.starts_with("HTTP/1.1 503 "));
    let _ = Arc::new(http);
}

#[test]
fn dotfiles_are_hidden_unless_asked_for() {
    for dotfiles in [false, true] {
        let mut h = Harness::with(|c| {
            c.autoindex = true;
            c.dotfiles = dotfiles;
        });
        std::fs::create_dir(h.dir.0.join(".git")).unwrap();
        std::fs::write(h.dir.0.join(".git/config"), b"secret").unwrap();
        std::fs::write(h.dir.0.join(".env"), b"KEY=1").unwrap();
        std::fs::create_dir(h.dir.0.join(".well-known")).unwrap();
        std::fs::write(h.dir.0.join(".well-known/security.txt"), b"Contact: x").unwrap();
        let hidden = if dotfiles { 200 } else { 404 };
        for (path, want) in [
            ("/.git/config", hidden),
            ("/.env", hidden),
            ("/d/../.env", hidden),
            ("/%2Eenv", hidden),
            ("/.well-known/security.txt", 200),
        ] {
            h.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
            let out = h.output();
            assert_eq!(statuses(&out), [want], "{path} with dotfiles {dotfiles}");
        }
        h.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        h.compute();
        let listing = h.output();
        assert_eq!(listing.contains(".git"), dotfiles, "{listing}");
        assert!(listing.contains(".well-known/"), "{listing}");
    }
}

#[test]
fn a_tls_handshake_on_the_plain_port_is_answered_400_at_once() {
    let mut h = Harness::new();
    // The first bytes of a ClientHello: no line end, and none coming.
    h.s.handle_input(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], h.now);
    let out = h.output();
    assert_eq!(statuses(&out), [400], "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    // Empty lines before a request are still allowed (RFC 9112 §2.2).
    let mut h = Harness::new();
    h.send("\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(statuses(&h.output()), [200]);
}
