//! The HTTP server under every architecture, driven by a small strict client
//! over loopback: byte-exact GET and HEAD, keep-alive and pipelining,
//! HTTP/1.0, conditionals (ETag, If-None-Match, If-Modified-Since), ranges
//! and If-Range, index files, directory redirects and listings,
//! precompressed sidecars, method and framing refusals, limits (414, 431),
//! slowloris and idle deadlines, clients that never read, a large download
//! beside small ones, graceful shutdown, the connection limit's 503, and
//! hostile targets (traversal in every encoding, symlinks out of the root).
//!
//! Each test builds its own root under the temp directory (removed at the
//! end), with a secret file beside it that no request may ever return.
//! Every wait is bounded; nothing asserts that anything was fast.

#[macro_use]
mod common;
#[path = "common/http.rs"]
mod http_client;

use common::*;
use http_client::*;
use std::time::{Duration, UNIX_EPOCH};

/// Size of the binary file every root holds.
const BIG_LEN: usize = 3 << 20;
/// The content of the file beside the root.
const SECRET: &str = "MUSE-HTTP-SECRET-7b2d";
/// small.txt's modification time: 2021-03-04 05:06:07 UTC.
const SMALL_MTIME: u64 = 1_614_834_367;
const SMALL_LAST_MODIFIED: &str = "Thu, 04 Mar 2021 05:06:07 GMT";
const SMALL: &[u8] = b"a small text file\n";

struct Fixture(TempRoot);

impl std::ops::Deref for Fixture {
    type Target = TempRoot;
    fn deref(&self) -> &TempRoot {
        &self.0
    }
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let fx = Fixture(TempRoot::new("http", tag));
        fx.write("index.html", b"<!DOCTYPE html><title>home</title>\n");
        fx.write("big.bin", &big());
        fx.write("small.txt", SMALL);
        let f = std::fs::File::options()
            .write(true)
            .open(fx.path("small.txt"))
            .unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(SMALL_MTIME))
            .unwrap();
        fx.write("style.css", b"body { color: red }\n");
        fx.write("docs/index.html", b"<p>docs</p>\n");
        fx.write("files/a b.txt", b"spaced\n");
        fx.write("files/<x>&.txt", b"angles\n");
        fx.write("files/sub/deep.txt", b"deep\n");
        std::fs::create_dir_all(fx.path("empty")).unwrap();
        fx.write(".git/config", SECRET.as_bytes());
        fx.write(
            ".well-known/security.txt",
            b"Contact: mailto:x@example.org\n",
        );
        std::fs::write(fx.base.join("secret.txt"), SECRET).unwrap();
        std::os::unix::fs::symlink("../secret.txt", fx.path("escape.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", fx.path("passwd")).unwrap();
        fx
    }
}

fn big() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend(pseudo_random_bytes(0x4177, BIG_LEN - v.len()));
    v
}

fn serve(arch: &str, fx: &Fixture, extra: &[&str]) -> Server {
    let mut args = vec!["--root", fx.root_str()];
    args.extend_from_slice(extra);
    Server::start("http", arch, &with_sizing(arch, &args))
}

/// The flags that leave a pooled architecture one worker: a client that
/// holds it blocks every other.
fn one_worker(arch: &str) -> &'static [&'static str] {
    match arch {
        "thread-pool" => &["--threads", "1"],
        "prefork" => &["--workers", "1"],
        "prefork-threads" => &["--workers", "1", "--threads", "1"],
        _ => &[],
    }
}

fn expect_status(s: &Server, what: &str, r: &Response, status: u16) {
    if r.status != status {
        s.fail(&format!("{what}: expected {status}, got {r}"));
    }
}

fn expect_body(s: &Server, what: &str, r: &Response, body: &[u8]) {
    if let Some(at) = first_difference(body, &r.body) {
        s.fail(&format!(
            "{what}: body differs at byte {at} (expected {} bytes, got {}): {r}",
            body.len(),
            r.body.len()
        ));
    }
}

fn expect_no_secret(s: &Server, what: &str, r: &Response) {
    if String::from_utf8_lossy(&r.body).contains(SECRET) || r.body.starts_with(b"root:") {
        s.fail(&format!("{what}: a file outside the root was served: {r}"));
    }
}

arch_tests!(get_head_and_keep_alive, |arch| {
    let fx = Fixture::new("get");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    // Several requests on one connection, byte-exact, with the headers a
    // browser relies on.
    let r = c.get("/big.bin", "").or_fail(s);
    expect_status(s, "GET big.bin", &r, 200);
    expect_body(s, "GET big.bin", &r, &big());
    let r = c.get("/small.txt", "").or_fail(s);
    expect_status(s, "GET small.txt", &r, 200);
    expect_body(s, "GET small.txt", &r, SMALL);
    for (name, want) in [
        ("content-type", Some("text/plain; charset=utf-8")),
        ("last-modified", Some(SMALL_LAST_MODIFIED)),
        ("accept-ranges", Some("bytes")),
        ("server", Some("muse")),
        ("connection", None),
    ] {
        if r.header(name) != want {
            s.fail(&format!("small.txt: {name} should be {want:?}: {r}"));
        }
    }
    if !r.header("date").is_some_and(|d| d.ends_with(" GMT")) {
        s.fail(&format!("no Date: {r}"));
    }
    if !r.header("etag").is_some_and(|e| e.starts_with('"')) {
        s.fail(&format!("no strong ETag: {r}"));
    }
    let h = c.request("HEAD", "/big.bin", "").or_fail(s);
    expect_status(s, "HEAD big.bin", &h, 200);
    if h.header("content-length") != Some(&BIG_LEN.to_string()) || !h.body.is_empty() {
        s.fail(&format!("HEAD: {h}"));
    }
    let r = c.get("/", "").or_fail(s);
    expect_status(s, "GET /", &r, 200);
    expect_body(s, "GET /", &r, b"<!DOCTYPE html><title>home</title>\n");
    if r.header("content-type") != Some("text/html; charset=utf-8") {
        s.fail(&format!("index content type: {r}"));
    }
    // Connection: close is honoured after the response.
    let r = c.get("/style.css", "Connection: close\r\n").or_fail(s);
    expect_status(s, "GET style.css", &r, 200);
    if !r.closes() || r.header("content-type") != Some("text/css; charset=utf-8") {
        s.fail(&format!("close: {r}"));
    }
    c.expect_closed().or_fail(s);
});

arch_tests!(http_1_0_closes_unless_asked_to_keep_alive, |arch| {
    let fx = Fixture::new("http10");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    c.send(b"GET /small.txt HTTP/1.0\r\n\r\n").or_fail(s);
    let r = c.response(false).or_fail(s);
    expect_status(s, "1.0 GET", &r, 200);
    expect_body(s, "1.0 GET", &r, SMALL);
    c.expect_closed().or_fail(s);

    let mut c = Conn::connect(s.addr()).or_fail(s);
    for i in 0..3 {
        c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .or_fail(s);
        let r = c.response(false).or_fail(s);
        expect_body(s, &format!("1.0 keep-alive {i}"), &r, SMALL);
        if r.header("connection") != Some("keep-alive") {
            s.fail(&format!("1.0 keep-alive {i}: {r}"));
        }
    }
});

arch_tests!(pipelined_requests_are_answered_in_order, |arch| {
    let fx = Fixture::new("pipeline");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    let paths = ["/small.txt", "/big.bin", "/missing", "/docs/", "/big.bin"];
    let mut burst = Vec::new();
    for _ in 0..4 {
        for p in paths {
            burst.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
    }
    // Sent from a thread: the responses (12 MiB) are far more than the
    // socket buffers hold, so the server must answer while we send.
    let mut writer = c.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &burst));
    let want: [(u16, Vec<u8>); 5] = [
        (200, SMALL.to_vec()),
        (200, big()),
        (404, b"404 Not Found\n".to_vec()),
        (200, b"<p>docs</p>\n".to_vec()),
        (200, big()),
    ];
    for round in 0..4 {
        for (i, (status, body)) in want.iter().enumerate() {
            let what = format!("round {round}, {}", paths[i]);
            let r = c.response(false).or_fail(s);
            expect_status(s, &what, &r, *status);
            expect_body(s, &what, &r, body);
        }
    }
    sender.join().unwrap().map_err(|e| e.to_string()).or_fail(s);
});

arch_tests!(conditionals_and_ranges, |arch| {
    let fx = Fixture::new("cond");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    let first = c.get("/big.bin", "").or_fail(s);
    let etag = first.header("etag").unwrap_or_default().to_string();
    let lm = first
        .header("last-modified")
        .unwrap_or_default()
        .to_string();

    let r = c
        .get("/big.bin", &format!("If-None-Match: {etag}\r\n"))
        .or_fail(s);
    expect_status(s, "If-None-Match", &r, 304);
    if r.header("etag") != Some(etag.as_str()) {
        s.fail(&format!("304 without its ETag: {r}"));
    }
    let r = c
        .get("/big.bin", "If-None-Match: \"other\", W/\"x\"\r\n")
        .or_fail(s);
    expect_status(s, "If-None-Match other", &r, 200);
    let r = c
        .get("/big.bin", &format!("If-Modified-Since: {lm}\r\n"))
        .or_fail(s);
    expect_status(s, "If-Modified-Since equal", &r, 304);
    let r = c
        .get(
            "/small.txt",
            "If-Modified-Since: Wed, 03 Mar 2021 05:06:07 GMT\r\n",
        )
        .or_fail(s);
    expect_status(s, "If-Modified-Since earlier", &r, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = c
        .get(
            "/small.txt",
            &format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {SMALL_LAST_MODIFIED}\r\n"),
        )
        .or_fail(s);
    expect_status(s, "If-None-Match over If-Modified-Since", &r, 200);

    let whole = big();
    let r = c.get("/big.bin", "Range: bytes=100-199\r\n").or_fail(s);
    expect_status(s, "range", &r, 206);
    expect_body(s, "range", &r, &whole[100..200]);
    if r.header("content-range") != Some(&format!("bytes 100-199/{BIG_LEN}")) {
        s.fail(&format!("Content-Range: {r}"));
    }
    let r = c.get("/big.bin", "Range: bytes=-10\r\n").or_fail(s);
    expect_body(s, "suffix range", &r, &whole[BIG_LEN - 10..]);
    let r = c
        .get("/big.bin", &format!("Range: bytes={}-\r\n", BIG_LEN - 5))
        .or_fail(s);
    expect_body(s, "open range", &r, &whole[BIG_LEN - 5..]);
    let r = c
        .get("/big.bin", &format!("Range: bytes={BIG_LEN}-\r\n"))
        .or_fail(s);
    expect_status(s, "range past the end", &r, 416);
    if r.header("content-range") != Some(&format!("bytes */{BIG_LEN}")) {
        s.fail(&format!("416 Content-Range: {r}"));
    }
    let r = c.get("/big.bin", "Range: bytes=0-1,5-6\r\n").or_fail(s);
    expect_status(s, "several ranges are served whole", &r, 200);
    expect_body(s, "several ranges", &r, &whole);
    let r = c
        .get(
            "/big.bin",
            &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
        )
        .or_fail(s);
    expect_status(s, "If-Range matching", &r, 206);
    let r = c
        .get("/big.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n")
        .or_fail(s);
    expect_status(s, "If-Range stale", &r, 200);
    expect_body(s, "If-Range stale", &r, &whole);
});

arch_tests!(directories_redirects_and_listings, |arch| {
    let fx = Fixture::new("dirs");
    let server = serve(arch, &fx, &["--autoindex"]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    let r = c.get("/docs", "").or_fail(s);
    expect_status(s, "/docs", &r, 301);
    if r.header("location") != Some("/docs/") {
        s.fail(&format!("redirect: {r}"));
    }
    let r = c.get("/files?x=1", "").or_fail(s);
    if r.header("location") != Some("/files/?x=1") {
        s.fail(&format!("redirect keeps the query: {r}"));
    }
    let r = c.get("/docs/", "").or_fail(s);
    expect_body(s, "/docs/", &r, b"<p>docs</p>\n");
    let r = c.get("/small.txt/", "").or_fail(s);
    expect_status(s, "a file with a slash", &r, 404);
    let r = c.get("/files/", "").or_fail(s);
    expect_status(s, "listing", &r, 200);
    let html = String::from_utf8_lossy(&r.body).into_owned();
    for want in [
        "href=\"a%20b.txt\"",
        "&lt;x&gt;&amp;.txt",
        "href=\"sub/\"",
        "href=\"../\"",
    ] {
        if !html.contains(want) {
            s.fail(&format!("listing lacks {want:?}: {html}"));
        }
    }
    if html.contains("<x>") {
        s.fail(&format!("listing did not escape a name: {html}"));
    }
    let r = c.get("/files/a%20b.txt", "").or_fail(s);
    expect_body(s, "an escaped name", &r, b"spaced\n");
    let r = c.get("/empty/", "").or_fail(s);
    expect_status(s, "empty listing", &r, 200);
});

arch_tests!(
    a_directory_without_index_is_404_without_autoindex,
    [reactor, thread_pool, async_],
    |arch| {
        let fx = Fixture::new("noindex");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let r = get(s.addr(), "/files/").or_fail(s);
        expect_status(s, "no index", &r, 404);
    }
);

arch_tests!(
    precompressed_sidecars,
    [reactor, thread_per_connection, async_],
    |arch| {
        let fx = Fixture::new("gzip");
        fx.write("app.js", b"console.log(1)\n");
        fx.write("app.js.gz", b"\x1f\x8bnot really gzip");
        let server = serve(arch, &fx, &["--gzip-static"]);
        let s = &server;
        let mut c = Conn::connect(s.addr()).or_fail(s);
        let r = c
            .get("/app.js", "Accept-Encoding: br, gzip;q=0.8\r\n")
            .or_fail(s);
        expect_body(s, "gzip", &r, b"\x1f\x8bnot really gzip");
        if r.header("content-encoding") != Some("gzip")
            || r.header("vary") != Some("Accept-Encoding")
            || r.header("content-type") != Some("text/javascript; charset=utf-8")
        {
            s.fail(&format!("gzip sidecar headers: {r}"));
        }
        let r = c.get("/app.js", "").or_fail(s);
        expect_body(s, "identity", &r, b"console.log(1)\n");
        if r.header("content-encoding").is_some() || r.header("vary").is_none() {
            s.fail(&format!("identity headers: {r}"));
        }
        let r = c.get("/app.js", "Accept-Encoding: gzip;q=0\r\n").or_fail(s);
        expect_body(s, "gzip refused", &r, b"console.log(1)\n");
    }
);

arch_tests!(hostile_targets_never_leave_the_root, |arch| {
    let fx = Fixture::new("hostile");
    let server = serve(arch, &fx, &["--autoindex"]);
    let s = &server;
    for (target, want) in [
        ("/../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E%2Fsecret.txt", 400),
        ("/files/..%2f..%2fsecret.txt", 400),
        ("/files/../../secret.txt", 400),
        ("/%c0%ae%c0%ae/secret.txt", 400),
        ("/a/%00/b", 400),
        ("/small.txt%00.html", 400),
        ("/%252e%252e/secret.txt", 404),
        ("/escape.txt", 404),
        ("/passwd", 404),
        ("//etc/passwd", 404),
        ("/..\\secret.txt", 400),
        ("http://evil/../secret.txt", 400),
        ("*", 400),
        ("secret.txt", 400),
        ("/.git/config", 404),
        ("/%2egit/config", 404),
        ("/files/../.git/config", 404),
    ] {
        let mut c = Conn::connect(s.addr()).or_fail(s);
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .or_fail(s);
        let r = c.response(false).or_fail(s);
        expect_no_secret(s, target, &r);
        if r.status != want && !(want == 400 && r.status == 404) {
            s.fail(&format!("{target}: expected {want}, got {r}"));
        }
    }
    // The absolute form is accepted (its host ignored).
    let mut c = Conn::connect(s.addr()).or_fail(s);
    c.send(b"GET http://anything/small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .or_fail(s);
    let r = c.response(false).or_fail(s);
    expect_body(s, "absolute form", &r, SMALL);
    drop(c);
    // Dotfiles are hidden, from listings too, but .well-known is served.
    let r = get(s.addr(), "/.well-known/security.txt").or_fail(s);
    expect_body(s, ".well-known", &r, b"Contact: mailto:x@example.org\n");
    let r = get(s.addr(), "/").or_fail(s);
    expect_status(s, "the root's index", &r, 200);
});

arch_tests!(malformed_requests_get_their_status, |arch| {
    let fx = Fixture::new("malformed");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let long_target = format!("/{}", "a".repeat(9000));
    let many_headers: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "b".repeat(40_000));
    let cases: Vec<(String, u16, bool)> = vec![
        ("GARBAGE\r\n\r\n".into(), 400, true),
        ("GET /small.txt HTTP/1.1\r\n\r\n".into(), 400, true), // no Host
        ("GET /small.txt HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505, true),
        (format!("GET {long_target} HTTP/1.1\r\nHost: t\r\n\r\n"), 414, true),
        (format!("GET / HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n"), 431, true),
        (format!("GET / HTTP/1.1\r\nHost: t\r\n{huge_header}\r\n"), 431, true),
        ("GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n".into(), 400, true),
        ("GET / HTTP/1.1\r\nHost : t\r\n\r\n".into(), 400, true),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
            400,
            true,
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            411,
            true,
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n".into(),
            400,
            true,
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n".into(),
            413,
            true,
        ),
        ("POST / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405, false),
        ("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405, false),
        ("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n".into(), 501, false),
    ];
    for (request, want, closes) in cases {
        let what = format!("{:?}", &request[..request.len().min(60)]);
        let mut c = Conn::connect(s.addr()).or_fail(s);
        c.send(request.as_bytes()).or_fail(s);
        let r = c.response(false).or_fail(s);
        expect_status(s, &what, &r, want);
        if r.body.is_empty() {
            s.fail(&format!("{what}: an error without a body: {r}"));
        }
        if want == 405 && r.header("allow") != Some("GET, HEAD") {
            s.fail(&format!("{what}: 405 without Allow: {r}"));
        }
        if closes {
            if !r.closes() {
                s.fail(&format!("{what}: should say Connection: close: {r}"));
            }
            // The server reads and drops what a refused client still sends
            // until that client closes; this one is done.
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.expect_closed().or_fail(s);
        } else {
            let r = c.get("/small.txt", "").or_fail(s);
            expect_body(s, &format!("after {what}"), &r, SMALL);
        }
    }
    // A body on a GET is read and thrown away; the next request is served.
    let mut c = Conn::connect(s.addr()).or_fail(s);
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        .or_fail(s);
    let r = c.response(false).or_fail(s);
    expect_body(s, "GET with a body", &r, SMALL);
    let r = c.response(false).or_fail(s);
    expect_body(s, "after the body", &r, b"body { color: red }\n");
});

arch_tests!(a_slow_head_gets_408_and_frees_its_worker, |arch| {
    // Slowloris: a head trickling in one byte a second. --header-timeout 1
    // ends it with 408, whatever the architecture, and a blocking server's
    // thread is free again for the next client.
    let fx = Fixture::new("slowloris");
    let sizing = one_worker(arch);
    let mut args = vec!["--header-timeout", "1"];
    args.extend_from_slice(sizing);
    let server = serve(arch, &fx, &args);
    let s = &server;
    let mut slow = Conn::connect(s.addr()).or_fail(s);
    let started = std::time::Instant::now();
    let mut sent = 0;
    let head = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    // Send one byte every 300 ms until the server answers.
    let r = loop {
        if sent < head.len() {
            let _ = std::io::Write::write_all(&mut slow.stream, &head[sent..sent + 1]);
            sent += 1;
        } else {
            let _ = std::io::Write::write_all(&mut slow.stream, b"x");
        }
        slow.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match slow.response(false) {
            Ok(r) => break r,
            Err(e) if e.contains("timed out") || e.contains("Resource temporarily") => {}
            Err(e) => s.fail(&format!("slow client: {e}")),
        }
        if started.elapsed() > IO_TIMEOUT {
            s.fail("a head trickling in for 20 s was never answered (--header-timeout 1)");
        }
    };
    expect_status(s, "slowloris", &r, 408);
    slow.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    slow.expect_closed().or_fail(s);
    let r = get(s.addr(), "/small.txt").or_fail(s);
    expect_body(s, "after the slow client", &r, SMALL);
});

arch_tests!(a_slow_body_gets_408_and_frees_its_worker, |arch| {
    // A body trickling in a byte at a time after a whole head: it shares
    // the head's --header-timeout, so a blocking server's only thread is
    // free again for the next client.
    let fx = Fixture::new("slowbody");
    let sizing = one_worker(arch);
    let mut args = vec!["--header-timeout", "1"];
    args.extend_from_slice(sizing);
    let server = serve(arch, &fx, &args);
    let s = &server;
    let mut slow = Conn::connect(s.addr()).or_fail(s);
    slow.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .or_fail(s);
    let r = slow.response(false).or_fail(s);
    expect_body(s, "the answer before the body", &r, SMALL);
    let started = std::time::Instant::now();
    let r = loop {
        let _ = std::io::Write::write_all(&mut slow.stream, b"x");
        slow.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match slow.response(false) {
            Ok(r) => break r,
            Err(e) if e.contains("timed out") || e.contains("Resource temporarily") => {}
            Err(e) => s.fail(&format!("slow body: {e}")),
        }
        if started.elapsed() > IO_TIMEOUT {
            s.fail("a body trickling in for 20 s was never cut off (--header-timeout 1)");
        }
    };
    expect_status(s, "slow body", &r, 408);
    slow.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = slow.stream.shutdown(std::net::Shutdown::Write);
    slow.expect_closed().or_fail(s);
    let r = get(s.addr(), "/small.txt").or_fail(s);
    expect_body(s, "after the slow body", &r, SMALL);
});

arch_tests!(
    a_closing_answer_is_not_reset_by_the_body_behind_it,
    |arch| {
        // `Connection: close` (or HTTP/1.0) with a body that comes after the
        // answer began: the server reads and drops it before it closes, so the
        // close is a FIN behind the whole answer, not a reset that destroys
        // what the client has not read yet.
        let fx = Fixture::new("closebody");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let expected = big();
        for head in [
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 10\r\n\r\n",
        "GET /big.bin HTTP/1.0\r\nContent-Length: 10\r\n\r\n",
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    ] {
        let what = &head[..head.find("\r\nContent-Length").unwrap()];
        let mut c = Conn::connect(s.addr()).or_fail(s);
        c.send(head.as_bytes()).or_fail(s);
        // The body comes while the answer is on its way; the client reads
        // only later.
        std::thread::sleep(Duration::from_millis(200));
        c.send(b"0123456789").or_fail(s);
        std::thread::sleep(Duration::from_millis(300));
        let r = c.response(false).or_fail(s);
        expect_status(s, what, &r, 200);
        if r.body != expected {
            s.fail(&format!("{what}: {} bytes of {} arrived", r.body.len(), expected.len()));
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.expect_closed().or_fail(s);
    }
    }
);

arch_tests!(idle_keep_alive_connections_close_quietly, |arch| {
    let fx = Fixture::new("idle");
    let server = serve(arch, &fx, &["--idle-timeout", "1"]);
    let s = &server;
    let mut c = Conn::connect(s.addr()).or_fail(s);
    let r = c.get("/small.txt", "").or_fail(s);
    expect_body(s, "before idling", &r, SMALL);
    // No 408 for a connection that asked nothing: just the close.
    c.expect_closed().or_fail(s);
});

arch_tests!(a_client_that_never_reads_is_closed, |arch| {
    // It asks for big files again and again and reads nothing; once the
    // buffers are full nothing moves, and the idle timeout ends it.
    let fx = Fixture::new("noread");
    let server = serve(arch, &fx, &["--idle-timeout", "1"]);
    let s = &server;
    let c = Conn::connect(s.addr()).or_fail(s);
    c.stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
    let started = std::time::Instant::now();
    loop {
        match std::io::Write::write(&mut &c.stream, request.as_bytes()) {
            Err(e) if is_reset(&e) || e.kind() == std::io::ErrorKind::BrokenPipe => break,
            _ if started.elapsed() > IO_TIMEOUT => s.fail(&format!(
                "a client that never reads is still connected after {IO_TIMEOUT:?} (--idle-timeout 1)"
            )),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let r = get(s.addr(), "/small.txt").or_fail(s);
    expect_body(s, "a fresh client", &r, SMALL);
});

arch_tests!(
    a_large_download_beside_small_requests,
    [
        process_per_connection,
        thread_per_connection,
        prefork,
        thread_pool,
        prefork_threads,
        reactor,
        prefork_reactor,
        multi_reactor,
        reactor_pool,
        async_,
    ],
    |arch| {
        // 256 MiB (sparse) to one client while another fetches small files on
        // its own connection: both complete, byte-exact. (Not serial: it
        // serves one connection at a time by design.)
        let fx = Fixture::new("large");
        let huge = std::fs::File::create(fx.path("huge.bin")).unwrap();
        huge.set_len(256 << 20).unwrap();
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let addr = s.addr();
        let download = std::thread::spawn(move || -> Result<usize, String> {
            let r = get(addr, "/huge.bin")?;
            if r.status != 200 || r.body.iter().any(|&b| b != 0) {
                return Err(format!("huge.bin: {r}"));
            }
            Ok(r.body.len())
        });
        let mut c = Conn::connect(addr).or_fail(s);
        for i in 0..50 {
            let r = c.get("/small.txt", "").or_fail(s);
            expect_body(s, &format!("small {i} beside the download"), &r, SMALL);
        }
        let got = download.join().unwrap().or_fail(s);
        if got != 256 << 20 {
            s.fail(&format!("huge.bin: {got} bytes"));
        }
    }
);

arch_tests!(shutdown_closes_idle_keep_alive_connections, |arch| {
    let fx = Fixture::new("shutdown");
    let mut server = serve(arch, &fx, &[]);
    let mut c = Conn::connect(server.addr()).or_fail(&server);
    let r = c.get("/small.txt", "").or_fail(&server);
    expect_body(&server, "before shutdown", &r, SMALL);
    server.signal(libc::SIGTERM);
    c.expect_closed().or_fail(&server);
    let Some(status) = server.wait_exit(EXIT_TIMEOUT) else {
        server.fail("still running after SIGTERM with only idle keep-alive connections");
    };
    if status.code() != Some(0) {
        server.fail(&format!("exit status {status}"));
    }
});

arch_tests!(
    over_the_connection_limit_gets_503,
    [thread_per_connection, reactor, async_, prefork_reactor],
    |arch| {
        let fx = Fixture::new("limit");
        let server = serve(arch, &fx, &["--max-connections", "1"]);
        let s = &server;
        let mut first = Conn::connect(s.addr()).or_fail(s);
        let r = first.get("/small.txt", "").or_fail(s);
        expect_body(s, "the one allowed", &r, SMALL);
        let mut second = Conn::connect(s.addr()).or_fail(s);
        let r = second.response(false).or_fail(s);
        expect_status(s, "over the limit", &r, 503);
        second.expect_closed().or_fail(s);
    }
);

#[test]
fn a_missing_root_exits_1_naming_it() {
    let missing = "/nonexistent/muse-http-root";
    let run = run_cli(&[
        "serve",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--root",
        missing,
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains(missing), "{run:?}");
    assert!(!run.stdout.contains("listening on"), "{run:?}");
}
