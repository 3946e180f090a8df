//! The FTP server under every architecture, driven by a real (small) FTP
//! client over loopback: browsing (PWD, CWD, LIST, NLST, MLSD, MLST, SIZE,
//! MDTM, FEAT, HELP, STAT), byte-exact downloads and uploads in passive
//! (PASV, EPSV) and active (PORT, EPRT) modes, TYPE A conversion, REST,
//! APPE, STOU, rename, delete, mkdir/rmdir, per-user permissions, ABOR in
//! the middle of a transfer, many concurrent sessions, a stalled data reader
//! next to a live session, idle timeout, --max-connections, start-up errors,
//! and hostile clients: path traversal, symlinks out of the root, bad bytes
//! in paths, PORT bounce, passive-port theft from another address, login
//! guessing, over-long command lines, aborted uploads.
//!
//! Each test builds its own root under the temp directory (removed at the
//! end); a secret file lives beside the root, and hostile tests check that
//! its content never reaches the client by any path. Every wait is bounded;
//! nothing asserts that anything was fast.

#[macro_use]
mod common;
#[path = "common/ftp.rs"]
mod ftp_client;

use common::*;
use ftp_client::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

// ---------------------------------------------------------------- fixture

/// Size of the binary file every root holds.
const BIG_LEN: usize = 3 << 20;
/// Size of the sparse file for stalled and aborted downloads.
const HUGE_LEN: u64 = 200 << 20;
/// big.bin's modification time: 2021-03-04 05:06:07 UTC.
const BIG_MTIME: u64 = 1_614_834_367;
const BIG_MDTM: &str = "20210304050607";
/// Line-feed text for TYPE A.
const TEXT: &[u8] = b"line one\nline two\n\nline four: tabs\tand spaces  \nlast line\n";
/// Content of the files outside the root; must never reach a client.
const SECRET: &str = "MUSE-TOP-SECRET-5e1f0c2a";
/// Names in a fresh root's top directory.
const TOP_NAMES: [&str; 7] = [
    "a",
    "big.bin",
    "empty.txt",
    "héllo.txt",
    "pub",
    "text.txt",
    "with space.txt",
];
/// The password of every user in the users files.
const PASSWORD: &str = "correct horse battery";

/// 3 MiB: every byte value first, then pseudo-random bytes (CR and LF
/// included, so any conversion in binary mode shows).
fn big_content() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut v: Vec<u8> = (0..=255u8).collect();
        v.extend_from_slice(b"\r\n\n\r\r\n");
        v.extend(pseudo_random_bytes(0xB16, BIG_LEN - v.len()));
        v
    })
}

/// A temp directory `base` holding the server's `root` and, beside it, the
/// secrets a hostile client tries to reach.
struct Fixture(TempRoot);

impl std::ops::Deref for Fixture {
    type Target = TempRoot;
    fn deref(&self) -> &TempRoot {
        &self.0
    }
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let fx = Fixture(TempRoot::new("ftp", tag));
        fx.write("big.bin", big_content());
        let big = std::fs::File::options()
            .write(true)
            .open(fx.path("big.bin"))
            .unwrap();
        big.set_modified(UNIX_EPOCH + Duration::from_secs(BIG_MTIME))
            .unwrap();
        drop(big);
        fx.write("text.txt", TEXT);
        fx.write("empty.txt", b"");
        fx.write("with space.txt", b"spaced out\n");
        fx.write("héllo.txt", b"bonjour\n");
        fx.mkdir("a/b");
        fx.write("a/b/deep.txt", b"deep down\n");
        fx.write("a/note.txt", b"a note\n");
        fx.mkdir("pub");
        fx.write("pub/readme.txt", b"read me\n");
        for f in ["big.bin", "text.txt", "empty.txt", "a/b/deep.txt"] {
            std::fs::set_permissions(fx.path(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // Outside the root.
        std::fs::write(fx.base.join("secret"), SECRET).unwrap();
        std::fs::create_dir_all(fx.base.join("outside")).unwrap();
        std::fs::write(fx.base.join("outside/secret.txt"), SECRET).unwrap();
        fx
    }

    /// Names in a directory under the root.
    fn names(&self, rel: &str) -> BTreeSet<String> {
        std::fs::read_dir(self.path(rel))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes a users file beside the root (not inside it) and returns its
    /// path.
    fn users(&self, lines: &[String]) -> String {
        let path = self.base.join("users");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The secrets are unchanged and nothing new appeared beside them.
    fn assert_secrets_intact(&self, server: &Server) {
        let outside: BTreeSet<String> = std::fs::read_dir(self.base.join("outside"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        if outside != BTreeSet::from(["secret.txt".to_string()]) {
            server.fail(&format!(
                "the directory outside the root changed: {outside:?}"
            ));
        }
        for f in ["secret", "outside/secret.txt"] {
            let got = std::fs::read(self.base.join(f)).unwrap_or_default();
            if got != SECRET.as_bytes() {
                server.fail(&format!(
                    "{f} outside the root was modified: now {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        let base: BTreeSet<String> = std::fs::read_dir(&self.base)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        let expected: BTreeSet<String> = ["outside", "root", "secret", "users"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !base.is_subset(&expected) {
            server.fail(&format!(
                "new files appeared beside the root: {:?}",
                base.difference(&expected).collect::<Vec<_>>()
            ));
        }
    }
}

// ---------------------------------------------------------------- server

/// Worker and thread counts that keep each architecture small; flags that
/// `extra` sets itself are left out.
fn sizing(arch: &str) -> &'static [(&'static str, &'static str)] {
    match arch {
        "prefork" | "prefork-reactor" => &[("--workers", "4")],
        "prefork-threads" => &[("--workers", "2"), ("--threads", "4")],
        "thread-pool" => &[("--threads", "8")],
        "reactor-pool" => &[("--threads", "4")],
        "multi-reactor" => &[("--threads", "2")],
        _ => &[],
    }
}

/// `muse serve ftp --arch ARCH --root ROOT` plus sizing and `extra`.
fn serve(arch: &str, fx: &Fixture, extra: &[&str]) -> Server {
    let mut args: Vec<&str> = vec!["--root", fx.root_str()];
    for (flag, value) in sizing(arch) {
        if !extra.contains(flag) {
            args.extend([*flag, *value]);
        }
    }
    args.extend_from_slice(extra);
    Server::start("ftp", arch, &args)
}

/// A control connection logged in as anonymous, in binary mode (TYPE I;
/// RFC 959's default is ASCII).
fn anonymous(server: &Server) -> Ftp {
    let mut ftp = Ftp::connect(server.addr()).or_fail(server);
    ftp.login_anonymous().or_fail(server);
    ftp.expect("TYPE I", 200).or_fail(server);
    ftp
}

/// A control connection logged in as `user` with [`PASSWORD`], in binary
/// mode.
fn user(server: &Server, name: &str) -> Ftp {
    let mut ftp = Ftp::connect(server.addr()).or_fail(server);
    ftp.login(name, PASSWORD).or_fail(server);
    ftp.expect("TYPE I", 200).or_fail(server);
    ftp
}

/// `muse passwd` with `password` on stdin → the hash it prints (cached: one
/// run per password per test binary).
fn password_hash(password: &str) -> String {
    static CACHE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = cache.get(password) {
        return h.clone();
    }
    let mut child = Command::new(muse_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run muse passwd: {e}"));
    let pid = child.id() as i32;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .expect("writing the password to muse passwd");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(EXIT_TIMEOUT) {
        Ok(out) => out.expect("muse passwd"),
        Err(_) => {
            // SAFETY: kill takes plain integers; the child is not reaped
            // yet (its waiter thread is still blocked).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("muse passwd did not exit within {EXIT_TIMEOUT:?}");
        }
    };
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !hash.is_empty() && !hash.contains(password),
        "muse passwd failed ({}): stdout {:?} stderr {:?}",
        out.status,
        hash,
        String::from_utf8_lossy(&out.stderr)
    );
    cache.insert(password.to_string(), hash.clone());
    hash
}

/// `name:HASH:home:perms`.
fn user_line(name: &str, home: &str, perms: &str) -> String {
    format!("{name}:{}:{home}:{perms}", password_hash(PASSWORD))
}

/// A server with users alice (all permissions, home /) and carol
/// (read,list, home /).
fn serve_with_users(arch: &str, fx: &Fixture, extra: &[&str]) -> Server {
    let users = fx.users(&[
        user_line("alice", "/", "all"),
        user_line("carol", "/", "read,list"),
    ]);
    let mut args = vec!["--users", users.as_str()];
    args.extend_from_slice(extra);
    serve(arch, fx, &args)
}

// ---------------------------------------------------------------- checks

fn assert_same(server: &Server, what: &str, expected: &[u8], got: &[u8]) {
    if let Some(at) = first_difference(expected, got) {
        server.fail(&format!(
            "{what}: expected {} bytes, got {}; first difference at byte {at} (expected {:?}, got {:?})",
            expected.len(),
            got.len(),
            expected.get(at),
            got.get(at)
        ));
    }
}

fn assert_code(server: &Server, what: &str, reply: &Reply, codes: &[u16]) {
    if !codes.contains(&reply.code) {
        server.fail(&format!("{what}: expected {codes:?}, got {reply}"));
    }
}

/// True for verbs that use a data connection.
fn is_transfer_verb(verb: &str) -> bool {
    matches!(
        verb,
        "RETR" | "LIST" | "NLST" | "MLSD" | "STOR" | "APPE" | "STOU"
    )
}

/// Sends a command line (raw bytes, CRLF added) that must be refused with
/// a 4xx/5xx reply. Transfer commands get a passive data connection first,
/// so a transfer the server wrongly starts is caught (and its data lands in
/// the transcript).
fn refused_bytes(ftp: &mut Ftp, line: &[u8]) -> Result<Reply, String> {
    let shown = String::from_utf8_lossy(line).into_owned();
    let verb = shown
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let data = if is_transfer_verb(&verb) {
        Some(ftp.open_data(Mode::Pasv)?)
    } else {
        None
    };
    let mut bytes = line.to_vec();
    bytes.extend_from_slice(b"\r\n");
    let reply = ftp.cmd_raw(&bytes)?;
    if reply.is_preliminary() {
        let mut stream = data
            .ok_or_else(|| format!("{shown:?}: preliminary reply {reply}"))?
            .into_stream()?;
        let mut got = Vec::new();
        if matches!(verb.as_str(), "STOR" | "APPE" | "STOU") {
            let _ = stream.write_all(b"written through a hole\n");
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let _ = stream.read_to_end(&mut got);
        ftp.transcript.extend_from_slice(&got);
        let last = ftp.reply().unwrap_or(Reply {
            code: 0,
            text: String::new(),
        });
        return Err(format!(
            "{shown:?} should have been refused, but the server started the transfer: {reply} ({} bytes of data, then {last})",
            got.len()
        ));
    }
    if !reply.is_error() {
        return Err(format!("{shown:?} should have been refused, got {reply}"));
    }
    Ok(reply)
}

fn refused(ftp: &mut Ftp, line: &str) -> Result<Reply, String> {
    refused_bytes(ftp, line.as_bytes())
}

/// Findings of a test that goes on after a wrong answer, so that one run
/// reports every hostile input the server mishandles, not only the first.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// Records the error of `result`, if any; returns its value otherwise.
    fn note<T>(&mut self, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    /// Fails the test with every problem recorded.
    fn finish(self, server: &Server, what: &str) {
        if !self.0.is_empty() {
            server.fail(&format!(
                "{what}: {} problem(s):\n  {}",
                self.0.len(),
                self.0.join("\n  ")
            ));
        }
    }
}

/// Nothing the client received contains the secret (or /etc/passwd).
fn assert_no_leak(server: &Server, ftp: &Ftp) {
    let seen = String::from_utf8_lossy(&ftp.transcript);
    if seen.contains(SECRET) {
        server.fail("the secret outside the root reached the client");
    }
    if seen.contains("root:x:0:0") || seen.contains("root:*:0:0") {
        server.fail("/etc/passwd reached the client");
    }
}

/// Polls the server's stderr for a transfer log line containing every one
/// of `parts`.
fn assert_transfer_logged(server: &Server, parts: &[&str]) {
    let found = wait_for(IO_TIMEOUT, || {
        server
            .stderr()
            .lines()
            .any(|l| l.contains("ftp transfer:") && parts.iter().all(|p| l.contains(p)))
            .then_some(())
    });
    if found.is_none() {
        server.fail(&format!("no `ftp transfer:` line with {parts:?} on stderr"));
    }
}

fn lines_set(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn top_names() -> BTreeSet<String> {
    TOP_NAMES.iter().map(|s| s.to_string()).collect()
}

fn lf_to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

// ---------------------------------------------------------------- browsing

arch_tests!(browse_anonymous, |arch| {
    let fx = Fixture::new("browse");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = Ftp::connect(server.addr()).or_fail(s);

    // Informational commands work before login.
    let syst = ftp.expect("SYST", 215).or_fail(s);
    if !syst.text.contains("UNIX") {
        s.fail(&format!("SYST: expected a UNIX system type, got {syst}"));
    }
    let feat = ftp.expect("FEAT", 211).or_fail(s);
    if feat.lines().len() < 3 || !feat.text.starts_with("211-") {
        s.fail(&format!(
            "FEAT: expected a multi-line 211 reply, got {feat}"
        ));
    }
    let features: Vec<String> = feat.lines()[1..feat.lines().len() - 1]
        .iter()
        .map(|l| l.trim().to_ascii_uppercase())
        .collect();
    for wanted in ["EPSV", "MLST", "REST STREAM", "UTF8", "SIZE", "MDTM"] {
        if !features.iter().any(|f| f.starts_with(wanted)) {
            s.fail(&format!("FEAT does not list {wanted}: {feat}"));
        }
    }
    ftp.noop().or_fail(s);

    ftp.login_anonymous().or_fail(s);
    let check_pwd = |ftp: &mut Ftp, want: &str| {
        let got = ftp.pwd().or_fail(s);
        if got != want {
            s.fail(&format!("PWD: expected {want:?}, got {got:?}"));
        }
    };
    check_pwd(&mut ftp, "/");
    let xpwd = ftp.expect("XPWD", 257).or_fail(s);
    if parse_257(&xpwd.text).as_deref() != Some("/") {
        s.fail(&format!("XPWD: expected \"/\", got {xpwd}"));
    }

    // CWD / CDUP.
    ftp.expect("CWD a", 250).or_fail(s);
    check_pwd(&mut ftp, "/a");
    ftp.expect("CWD b", 250).or_fail(s);
    check_pwd(&mut ftp, "/a/b");
    ftp.expect("CDUP", 250).or_fail(s);
    check_pwd(&mut ftp, "/a");
    ftp.expect("CWD /a/b", 250).or_fail(s);
    check_pwd(&mut ftp, "/a/b");
    ftp.expect("CWD ..", 250).or_fail(s);
    check_pwd(&mut ftp, "/a");
    ftp.expect("XCUP", 250).or_fail(s);
    check_pwd(&mut ftp, "/");
    ftp.expect("CWD /", 250).or_fail(s);
    check_pwd(&mut ftp, "/");
    ftp.expect("CWD no-such-dir", 550).or_fail(s);
    ftp.expect("CWD big.bin", 550).or_fail(s);
    check_pwd(&mut ftp, "/");
    ftp.expect_one_of("CDUP", &[250, 550]).or_fail(s);
    check_pwd(&mut ftp, "/");

    // Settings.
    ftp.expect("TYPE A", 200).or_fail(s);
    ftp.expect("TYPE I", 200).or_fail(s);
    ftp.expect("MODE S", 200).or_fail(s);
    ftp.expect("STRU F", 200).or_fail(s);
    ftp.expect("OPTS UTF8 ON", 200).or_fail(s);
    ftp.expect_one_of("ALLO 1000", &[200, 202]).or_fail(s);
    ftp.expect_one_of("ABOR", &[225, 226]).or_fail(s);

    // LIST: ls -l lines, one per entry.
    let list = ftp.list(None).or_fail(s);
    let mut listed = BTreeSet::new();
    for line in list.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with("total ") {
            continue;
        }
        let Some((kind, size, name, fields)) = parse_ls_line(line) else {
            s.fail(&format!("LIST line is not in `ls -l` form: {line:?}"));
        };
        if fields[0].len() != 10 || !"-dl".contains(kind) {
            s.fail(&format!("LIST: bad mode field in {line:?}"));
        }
        match name.as_str() {
            "big.bin" => {
                if kind != '-' || size != BIG_LEN as u64 {
                    s.fail(&format!(
                        "LIST: big.bin should be a {BIG_LEN}-byte file: {line:?}"
                    ));
                }
                let day: Option<u32> = fields[6].parse().ok();
                if fields[5] != "Mar" || day != Some(4) || fields[7] != "2021" {
                    s.fail(&format!(
                        "LIST: big.bin's date should read `Mar 4 2021`: {line:?}"
                    ));
                }
            }
            "a" | "pub" if kind != 'd' => {
                s.fail(&format!("LIST: {name} should be a directory: {line:?}"))
            }
            "empty.txt" if size != 0 => s.fail(&format!("LIST: empty.txt has a size: {line:?}")),
            _ => {}
        }
        listed.insert(name);
    }
    if listed != top_names() {
        s.fail(&format!(
            "LIST names {listed:?}, expected {:?}\n{list}",
            top_names()
        ));
    }
    let sub = ftp.list(Some("a")).or_fail(s);
    let sub_names: BTreeSet<String> = sub
        .lines()
        .filter_map(|l| parse_ls_line(l.trim_end_matches('\r')))
        .map(|(_, _, n, _)| n)
        .collect();
    if !sub_names.contains("b") || !sub_names.contains("note.txt") {
        s.fail(&format!("LIST a: expected b and note.txt, got {sub:?}"));
    }
    let one = ftp.list(Some("big.bin")).or_fail(s);
    let one_lines: Vec<&str> = one.lines().filter(|l| !l.trim().is_empty()).collect();
    if one_lines.len() != 1 || !one_lines[0].trim_end().ends_with("big.bin") {
        s.fail(&format!(
            "LIST big.bin: expected one line for the file, got {one:?}"
        ));
    }

    // NLST: bare names.
    let nlst = lines_set(&ftp.nlst(None).or_fail(s));
    if nlst != top_names() {
        s.fail(&format!("NLST: got {nlst:?}, expected {:?}", top_names()));
    }
    let nested = ftp.nlst(Some("a/b")).or_fail(s);
    let nested: Vec<String> = lines_set(&nested).into_iter().collect();
    if nested.len() != 1 || !nested[0].ends_with("deep.txt") {
        s.fail(&format!("NLST a/b: expected deep.txt, got {nested:?}"));
    }

    // MLSD: RFC 3659 facts.
    let mlsd = ftp.mlsd(None).or_fail(s);
    let mut entries = BTreeMap::new();
    for line in mlsd.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let Some((facts, name)) = parse_mlsx_line(line) else {
            s.fail(&format!("MLSD line is not `facts name`: {line:?}"));
        };
        let facts: BTreeMap<String, String> = facts.into_iter().collect();
        let kind = facts.get("type").map(|t| t.to_ascii_lowercase());
        match kind.as_deref() {
            Some("cdir" | "pdir") => continue,
            Some("file" | "dir") => {}
            _ => s.fail(&format!("MLSD: missing or odd type fact in {line:?}")),
        }
        entries.insert(name, facts);
    }
    let names: BTreeSet<String> = entries.keys().cloned().collect();
    if names != top_names() {
        s.fail(&format!(
            "MLSD names {names:?}, expected {:?}\n{mlsd}",
            top_names()
        ));
    }
    let big = &entries["big.bin"];
    let fact =
        |facts: &BTreeMap<String, String>, k: &str| facts.get(k).cloned().unwrap_or_default();
    if !fact(big, "type").eq_ignore_ascii_case("file")
        || fact(big, "size") != BIG_LEN.to_string()
        || !fact(big, "modify").starts_with(BIG_MDTM)
    {
        s.fail(&format!("MLSD big.bin facts: {big:?}"));
    }
    let perm = fact(big, "perm");
    if !perm.contains('r') || perm.contains(['a', 'd', 'f', 'w']) {
        s.fail(&format!(
            "MLSD big.bin perm for anonymous should be read-only: {perm:?}"
        ));
    }
    let mode = u32::from_str_radix(&fact(big, "unix.mode"), 8).ok();
    if mode != Some(0o644) {
        s.fail(&format!(
            "MLSD big.bin unix.mode: expected 0644, got {big:?}"
        ));
    }
    let dir = &entries["a"];
    let perm = fact(dir, "perm");
    if !fact(dir, "type").eq_ignore_ascii_case("dir")
        || !perm.contains('e')
        || !perm.contains('l')
        || perm.contains(['c', 'd', 'f', 'm', 'p'])
    {
        s.fail(&format!("MLSD a facts (anonymous): {dir:?}"));
    }

    // MLST: one entry on the control connection.
    let mlst = ftp.expect("MLST big.bin", 250).or_fail(s);
    let lines = mlst.lines();
    let entry = lines.iter().find(|l| l.starts_with(' ')).copied();
    let Some((facts, name)) = entry.and_then(parse_mlsx_line) else {
        s.fail(&format!("MLST big.bin: no ` facts name` line in {mlst}"));
    };
    let facts: BTreeMap<String, String> = facts.into_iter().collect();
    if !name.ends_with("big.bin") || fact(&facts, "size") != BIG_LEN.to_string() {
        s.fail(&format!("MLST big.bin: {mlst}"));
    }
    ftp.expect("MLST no-such-file", 550).or_fail(s);

    // SIZE, MDTM.
    let size = ftp.expect("SIZE big.bin", 213).or_fail(s);
    if size.text.trim() != format!("213 {BIG_LEN}") {
        s.fail(&format!("SIZE big.bin: {size}"));
    }
    let size = ftp.expect("SIZE a/b/deep.txt", 213).or_fail(s);
    if size.text.trim() != "213 10" {
        s.fail(&format!("SIZE a/b/deep.txt: {size}"));
    }
    ftp.expect("SIZE no-such-file", 550).or_fail(s);
    ftp.expect("SIZE a", 550).or_fail(s);
    let mdtm = ftp.expect("MDTM big.bin", 213).or_fail(s);
    if !mdtm.text.trim().starts_with(&format!("213 {BIG_MDTM}")) {
        s.fail(&format!(
            "MDTM big.bin: expected 213 {BIG_MDTM}, got {mdtm}"
        ));
    }
    ftp.expect("MDTM no-such-file", 550).or_fail(s);

    // HELP, STAT: multi-line.
    let help = ftp.expect("HELP", 214).or_fail(s);
    if help.lines().len() < 2 || !help.text.to_ascii_uppercase().contains("RETR") {
        s.fail(&format!(
            "HELP: expected a multi-line 214 naming RETR, got {help}"
        ));
    }
    let stat = ftp.expect("STAT", 211).or_fail(s);
    if stat.lines().len() < 2 {
        s.fail(&format!("STAT: expected a multi-line 211, got {stat}"));
    }

    ftp.expect_one_of("FROBNICATE", &[500, 502]).or_fail(s);
    ftp.noop().or_fail(s);
    ftp.quit().or_fail(s);
});

// ---------------------------------------------------------------- downloads

arch_tests!(download_every_mode, |arch| {
    let fx = Fixture::new("download");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);
    ftp.expect("TYPE I", 200).or_fail(s);

    // PASV advertises the address the client reached.
    let advertised = ftp.pasv().or_fail(s);
    if advertised.ip() != server.addr().ip() {
        s.fail(&format!(
            "PASV advertised {advertised}, the control connection is to {}",
            server.addr()
        ));
    }

    for mode in MODES {
        let got = ftp.retr("big.bin", mode).or_fail(s);
        assert_same(s, &format!("RETR big.bin ({mode:?})"), big_content(), &got);
    }
    assert_transfer_logged(
        s,
        &["user=anonymous", "RETR", &format!("bytes={BIG_LEN}"), "ok"],
    );

    // Paths: nested, absolute, spaces, UTF-8, empty, `..` inside the root.
    for (path, want) in [
        ("a/b/deep.txt", &b"deep down\n"[..]),
        ("/a/b/deep.txt", b"deep down\n"),
        ("with space.txt", b"spaced out\n"),
        ("héllo.txt", b"bonjour\n"),
        ("empty.txt", b""),
        ("a/../text.txt", TEXT),
    ] {
        let got = ftp.retr(path, Mode::Pasv).or_fail(s);
        assert_same(s, &format!("RETR {path}"), want, &got);
    }
    ftp.expect("CWD a", 250).or_fail(s);
    let got = ftp.retr("../text.txt", Mode::Epsv).or_fail(s);
    assert_same(s, "RETR ../text.txt from /a", TEXT, &got);
    let got = ftp.retr("b/deep.txt", Mode::Port).or_fail(s);
    assert_same(s, "RETR b/deep.txt from /a", b"deep down\n", &got);
    ftp.expect("CWD /", 250).or_fail(s);

    // TYPE A: LF → CRLF.
    ftp.expect("TYPE A", 200).or_fail(s);
    for mode in [Mode::Pasv, Mode::Port] {
        let got = ftp.retr("text.txt", mode).or_fail(s);
        assert_same(
            s,
            &format!("RETR text.txt in TYPE A ({mode:?})"),
            &lf_to_crlf(TEXT),
            &got,
        );
    }
    ftp.expect("TYPE I", 200).or_fail(s);
    let got = ftp.retr("text.txt", Mode::Pasv).or_fail(s);
    assert_same(s, "RETR text.txt in TYPE I", TEXT, &got);
    // A transfer uses up its data connection: without a new one, 425.
    ftp.expect("RETR big.bin", 425).or_fail(s);

    // REST: the next RETR starts at the offset, the one after from 0.
    let offset = 1_000_003;
    ftp.expect(&format!("REST {offset}"), 350).or_fail(s);
    let got = ftp.retr("big.bin", Mode::Pasv).or_fail(s);
    assert_same(s, "REST then RETR", &big_content()[offset..], &got);
    let got = ftp.retr("big.bin", Mode::Epsv).or_fail(s);
    assert_same(s, "RETR after a resumed RETR", big_content(), &got);
    ftp.expect("REST 5", 350).or_fail(s);
    let got = ftp.retr("big.bin", Mode::Eprt).or_fail(s);
    assert_same(s, "REST 5 then RETR (EPRT)", &big_content()[5..], &got);

    // Errors: missing file, directory.
    refused(&mut ftp, "RETR no-such-file").or_fail(s);
    refused(&mut ftp, "RETR a").or_fail(s);
    let got = ftp.retr("big.bin", Mode::Pasv).or_fail(s);
    assert_same(s, "RETR after errors", big_content(), &got);
    ftp.quit().or_fail(s);
});

// ---------------------------------------------------------------- uploads

arch_tests!(upload_as_user, |arch| {
    let fx = Fixture::new("upload");
    let server = serve_with_users(arch, &fx, &[]);
    let s = &server;

    // Wrong passwords and unknown users get 530; the right one then works.
    let mut ftp = Ftp::connect(server.addr()).or_fail(s);
    ftp.expect("USER alice", 331).or_fail(s);
    ftp.expect("PASS not the password", 530).or_fail(s);
    ftp.expect("USER mallory", 331).or_fail(s);
    ftp.expect(&format!("PASS {PASSWORD}"), 530).or_fail(s);
    ftp.login("alice", PASSWORD).or_fail(s);
    ftp.expect("TYPE I", 200).or_fail(s);
    let check_disk = |rel: &str, want: &[u8]| match fx.read(rel) {
        Some(got) => assert_same(s, &format!("{rel} on disk"), want, &got),
        None => s.fail(&format!("{rel} is not on disk")),
    };

    // STOR in every mode, byte-exact on disk and read back.
    for (i, mode) in MODES.iter().enumerate() {
        let data = pseudo_random_bytes(100 + i as u64, (1 << 20) + 17 * i);
        let name = format!("up_{i}.bin");
        ftp.stor(&name, &data, *mode).or_fail(s);
        check_disk(&name, &data);
        let back = ftp.retr(&name, *mode).or_fail(s);
        assert_same(
            s,
            &format!("RETR {name} after STOR ({mode:?})"),
            &data,
            &back,
        );
    }
    assert_transfer_logged(s, &["user=alice", "STOR", "bytes=1048593", "ok"]);

    // Overwrite with a shorter file.
    let short = b"shorter now".to_vec();
    ftp.stor("up_0.bin", &short, Mode::Pasv).or_fail(s);
    check_disk("up_0.bin", &short);

    // APPE to an existing file and to a new one.
    let tail = pseudo_random_bytes(7, 70_000);
    ftp.appe("up_0.bin", &tail, Mode::Port).or_fail(s);
    check_disk("up_0.bin", &[short.clone(), tail.clone()].concat());
    ftp.appe("appended_new.bin", &tail, Mode::Epsv).or_fail(s);
    check_disk("appended_new.bin", &tail);

    // STOU: a new file with a fresh name, named in a reply.
    let before = fx.names("");
    let unique = pseudo_random_bytes(8, 12_345);
    let (first, last) = ftp.transfer_out("STOU", &unique, Mode::Pasv).or_fail(s);
    let after = fx.names("");
    let new: Vec<&String> = after.difference(&before).collect();
    if new.len() != 1 {
        s.fail(&format!("STOU: expected one new file, got {new:?}"));
    }
    check_disk(new[0], &unique);
    if !first.text.contains(new[0].as_str()) && !last.text.contains(new[0].as_str()) {
        s.fail(&format!(
            "STOU created {:?} but neither reply names it: {first} / {last}",
            new[0]
        ));
    }

    // REST + STOR writes at the offset, keeping what is before it.
    let old = pseudo_random_bytes(9, 100_000);
    fx.write("rest.bin", &old);
    let new_tail = pseudo_random_bytes(10, 60_000);
    ftp.expect("REST 50000", 350).or_fail(s);
    ftp.stor("rest.bin", &new_tail, Mode::Pasv).or_fail(s);
    check_disk("rest.bin", &[&old[..50_000], &new_tail[..]].concat());

    // TYPE A upload: CRLF → LF.
    ftp.expect("TYPE A", 200).or_fail(s);
    ftp.stor("ascii.txt", b"one\r\ntwo\r\n\r\nthree\r\n", Mode::Eprt)
        .or_fail(s);
    check_disk("ascii.txt", b"one\ntwo\n\nthree\n");
    ftp.expect("TYPE I", 200).or_fail(s);

    // MKD, uploads into it (by path and after CWD), RMD.
    let mkd = ftp.expect("MKD newdir", 257).or_fail(s);
    if parse_257(&mkd.text).as_deref() != Some("/newdir") {
        s.fail(&format!("MKD newdir: expected \"/newdir\" in {mkd}"));
    }
    if !fx.path("newdir").is_dir() {
        s.fail("MKD newdir: no directory on disk");
    }
    ftp.stor("newdir/inner.txt", b"inner", Mode::Pasv)
        .or_fail(s);
    ftp.expect("CWD newdir", 250).or_fail(s);
    ftp.stor("relative.txt", b"relative", Mode::Port).or_fail(s);
    ftp.expect("CDUP", 250).or_fail(s);
    check_disk("newdir/inner.txt", b"inner");
    check_disk("newdir/relative.txt", b"relative");
    ftp.expect("MKD newdir", 550).or_fail(s);
    ftp.expect("XMKD x2", 257).or_fail(s);
    ftp.expect("XRMD x2", 250).or_fail(s);
    if fx.path("x2").exists() {
        s.fail("XRMD x2: the directory is still there");
    }
    ftp.expect("RMD newdir", 550).or_fail(s);

    // Rename a file and a directory.
    ftp.expect("RNFR up_1.bin", 350).or_fail(s);
    ftp.expect("RNTO renamed.bin", 250).or_fail(s);
    if fx.path("up_1.bin").exists() {
        s.fail("RNFR/RNTO: the old name still exists");
    }
    check_disk("renamed.bin", &pseudo_random_bytes(101, (1 << 20) + 17));
    ftp.expect("RNFR newdir", 350).or_fail(s);
    ftp.expect("RNTO moved_dir", 250).or_fail(s);
    check_disk("moved_dir/inner.txt", b"inner");
    ftp.expect("RNTO orphan.bin", 503).or_fail(s);
    ftp.expect("RNFR no-such-file", 550).or_fail(s);

    // Delete.
    ftp.expect("DELE renamed.bin", 250).or_fail(s);
    if fx.path("renamed.bin").exists() {
        s.fail("DELE renamed.bin: still on disk");
    }
    ftp.expect("DELE no-such-file", 550).or_fail(s);
    ftp.expect("DELE moved_dir/inner.txt", 250).or_fail(s);
    ftp.expect("DELE moved_dir/relative.txt", 250).or_fail(s);
    ftp.expect("RMD moved_dir", 250).or_fail(s);
    if fx.path("moved_dir").exists() {
        s.fail("RMD moved_dir: still on disk");
    }

    let size = ftp.expect("SIZE up_2.bin", 213).or_fail(s);
    if size.text.trim() != format!("213 {}", (1 << 20) + 34) {
        s.fail(&format!("SIZE up_2.bin: {size}"));
    }
    ftp.quit().or_fail(s);
});

// ---------------------------------------------------------------- permissions

/// Every write-side command is refused with 550 for `ftp`, and the root is
/// unchanged.
fn assert_read_only(server: &Server, fx: &Fixture, ftp: &mut Ftp, who: &str) {
    let s = server;
    let before = fx.names("");
    for line in [
        "STOR new.txt",
        "STOR big.bin",
        "APPE text.txt",
        "STOU",
        "DELE text.txt",
        "MKD newdir",
        "RMD a",
        "RNFR text.txt",
        "DELE a/note.txt",
    ] {
        let reply = refused(ftp, line).unwrap_or_else(|e| s.fail(&format!("{who}: {e}")));
        if reply.code != 550 {
            s.fail(&format!("{who}: {line}: expected 550, got {reply}"));
        }
        ftp.noop().or_fail(s);
    }
    if fx.names("") != before {
        s.fail(&format!(
            "{who}: the root changed: {:?} → {:?}",
            before,
            fx.names("")
        ));
    }
    assert_same(
        s,
        "big.bin after refusals",
        big_content(),
        &fx.read("big.bin").unwrap(),
    );
    assert_same(
        s,
        "text.txt after refusals",
        TEXT,
        &fx.read("text.txt").unwrap(),
    );
    if !fx.path("a/note.txt").exists() {
        s.fail(&format!("{who}: a/note.txt was deleted"));
    }
    // Reading still works.
    let got = ftp.retr("text.txt", Mode::Pasv).or_fail(s);
    assert_same(s, &format!("{who}: RETR text.txt"), TEXT, &got);
}

arch_tests!(permission_refusals, |arch| {
    let fx = Fixture::new("perms");
    {
        let server = serve_with_users(arch, &fx, &[]);
        let mut carol = user(&server, "carol");
        assert_read_only(&server, &fx, &mut carol, "carol (read,list)");
        carol.quit().or_fail(&server);
        // Without an anonymous entry in the users file, anonymous is out.
        let mut anon = Ftp::connect(server.addr()).or_fail(&server);
        anon.expect_one_of("USER anonymous", &[331, 530])
            .or_fail(&server);
        anon.expect_one_of("PASS guest@example.com", &[530, 503])
            .or_fail(&server);
        anon.expect("PWD", 530).or_fail(&server);
    }
    let server = serve(arch, &fx, &[]);
    let mut anon = anonymous(&server);
    assert_read_only(&server, &fx, &mut anon, "anonymous (default)");
    anon.quit().or_fail(&server);
});

arch_tests!(
    anonymous_entry_in_users_file,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("anon-entry");
        let users = fx.users(&[
            user_line("alice", "/", "all"),
            "anonymous::/pub:read,list".to_string(),
        ]);
        let server = serve(arch, &fx, &["--users", &users]);
        let s = &server;
        let mut ftp = Ftp::connect(server.addr()).or_fail(s);
        ftp.login("anonymous", "guest@example.com").or_fail(s);
        ftp.expect("TYPE I", 200).or_fail(s);
        let got = ftp.retr("readme.txt", Mode::Pasv).or_fail(s);
        assert_same(
            s,
            "anonymous RETR readme.txt in its home /pub",
            b"read me\n",
            &got,
        );
        let names = lines_set(&ftp.nlst(None).or_fail(s));
        if names != BTreeSet::from(["readme.txt".to_string()]) {
            s.fail(&format!("anonymous NLST in /pub: {names:?}"));
        }
        let reply = refused(&mut ftp, "STOR up.txt").or_fail(s);
        assert_code(s, "anonymous STOR", &reply, &[550]);
        ftp.quit().or_fail(s);
        let mut alice = user(s, "alice");
        let got = alice.retr("pub/readme.txt", Mode::Pasv).or_fail(s);
        assert_same(s, "alice RETR pub/readme.txt", b"read me\n", &got);
    }
);

// ---------------------------------------------------------------- hostile clients

arch_tests!(hostile_basics, |arch| {
    let fx = Fixture::new("hostile-basic");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);

    refused(&mut ftp, "RETR ../../etc/passwd").or_fail(s);
    ftp.noop().or_fail(s);
    refused(&mut ftp, "RETR ../secret").or_fail(s);
    ftp.noop().or_fail(s);
    ftp.cmd("CWD ../../..").or_fail(s);
    let pwd = ftp.pwd().or_fail(s);
    if pwd != "/" {
        s.fail(&format!(
            "after CWD ../../.. PWD is {pwd:?}, expected \"/\""
        ));
    }
    let reply = refused_bytes(&mut ftp, b"RETR text\0.txt").or_fail(s);
    assert_code(s, "RETR with a NUL byte", &reply, &[501, 553]);
    ftp.noop().or_fail(s);

    let decoy = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let reply = ftp
        .cmd(&port_command(decoy.local_addr().unwrap()))
        .or_fail(s);
    assert_code(s, "PORT to another address (bounce)", &reply, &[500]);
    ftp.noop().or_fail(s);
    let got = ftp.retr("text.txt", Mode::Pasv).or_fail(s);
    assert_same(s, "RETR after the attacks", TEXT, &got);
    assert_no_leak(s, &ftp);
    ftp.quit().or_fail(s);
});

arch_tests!(
    hostile_paths,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("hostile-paths");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        let mut problems = Problems::default();

        for path in [
            "../secret",
            "../../etc/passwd",
            "/../secret",
            "/..//../secret",
            "a/../../secret",
            "a/b/../../../secret",
            "//etc/passwd",
            "%2e%2e/%2e%2e/secret",
            "%2e%2e/secret",
            "../outside/secret.txt",
            "...//secret",
        ] {
            for verb in ["RETR", "SIZE", "MDTM", "LIST", "NLST", "MLSD", "MLST"] {
                problems.note(refused(&mut ftp, &format!("{verb} {path}")));
                ftp.noop().or_fail(s);
            }
        }

        // CWD never leaves the root: clamped or refused, PWD stays inside.
        for (start, path) in [
            ("/", "../../.."),
            ("/", ".."),
            ("/", "/../../.."),
            ("/a", "../../.."),
            ("/a/b", "../../../../outside"),
            ("/", "../outside"),
        ] {
            ftp.expect("CWD /", 250).or_fail(s);
            ftp.expect(&format!("CWD {start}"), 250).or_fail(s);
            ftp.cmd(&format!("CWD {path}")).or_fail(s);
            let pwd = ftp.pwd().or_fail(s);
            if !(pwd == "/" || pwd.starts_with("/a")) {
                problems.push(format!("CWD {start} then CWD {path}: PWD is {pwd:?}"));
            }
            let names = lines_set(&ftp.nlst(None).or_fail(s));
            if names.iter().any(|n| n.contains("secret")) {
                problems.push(format!(
                    "CWD {start} then CWD {path}: NLST shows {names:?} (outside the root)"
                ));
            }
            ftp.noop().or_fail(s);
        }
        ftp.expect("CWD /", 250).or_fail(s);

        // Bad bytes: 553 or 501, and the session goes on. (A raw 0xff is
        // Telnet IAC on the control connection; the byte itself is sent as
        // IAC IAC.)
        let bad: [&[u8]; 12] = [
            b"RETR ..\\..\\secret",
            b"RETR a\\..\\..\\secret",
            b"CWD ..\\..",
            b"RETR text.txt\0../../secret",
            b"RETR \0",
            b"CWD a\0b",
            b"SIZE big\0.bin",
            b"RETR \xfe\xfe.txt",
            b"RETR \x80secret",
            b"CWD \xc3\x28",
            b"MDTM big\xff\xff.bin",
            b"SIZE \xc0\xaf..\xc0\xafsecret",
        ];
        for line in bad {
            let shown = format!("{:?}", String::from_utf8_lossy(line));
            if let Some(reply) = problems.note(refused_bytes(&mut ftp, line)) {
                if ![501, 553].contains(&reply.code) {
                    problems.push(format!("{shown}: expected [501, 553], got {reply}"));
                }
            }
            ftp.noop().or_fail(s);
            let pwd = ftp.pwd().or_fail(s);
            if pwd != "/" {
                problems.push(format!("after {shown} PWD is {pwd:?}"));
                ftp.expect("CWD /", 250).or_fail(s);
            }
        }
        let got = ftp.retr("big.bin", Mode::Pasv).or_fail(s);
        assert_same(s, "RETR after the attacks", big_content(), &got);
        assert_no_leak(s, &ftp);
        problems.finish(s, "hostile paths");
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    symlinks_out_of_the_root,
    [thread_per_connection, reactor, async_],
    |arch| {
        use std::os::unix::fs::symlink;
        let fx = Fixture::new("symlinks");
        symlink(fx.base.join("secret"), fx.path("link_abs")).unwrap();
        symlink("../secret", fx.path("link_rel")).unwrap();
        symlink(fx.base.join("outside"), fx.path("dirlink")).unwrap();
        symlink("../outside", fx.path("dirlink_rel")).unwrap();
        symlink("../../../outside", fx.path("a/b/deeplink")).unwrap();
        let server = serve_with_users(arch, &fx, &[]);
        let s = &server;
        let mut ftp = user(s, "alice");
        let mut problems = Problems::default();

        for path in [
            "link_abs",
            "link_rel",
            "dirlink/secret.txt",
            "dirlink_rel/secret.txt",
            "a/b/deeplink/secret.txt",
            "/dirlink/secret.txt",
        ] {
            for verb in ["RETR", "SIZE", "MDTM", "MLST"] {
                problems.note(refused(&mut ftp, &format!("{verb} {path}")));
                ftp.noop().or_fail(s);
            }
        }
        for dir in ["dirlink", "dirlink_rel", "a/b/deeplink", "dirlink/"] {
            for verb in ["LIST", "NLST", "MLSD", "CWD"] {
                problems.note(refused(&mut ftp, &format!("{verb} {dir}")));
                ftp.noop().or_fail(s);
            }
            let pwd = ftp.pwd().or_fail(s);
            if pwd != "/" {
                problems.push(format!("after CWD {dir}: PWD is {pwd:?}"));
                ftp.expect("CWD /", 250).or_fail(s);
            }
        }
        // Writes through the links are refused.
        for line in [
            "STOR dirlink/new.txt",
            "STOR dirlink_rel/new.txt",
            "STOR dirlink/secret.txt",
            "APPE dirlink/secret.txt",
            "STOU dirlink/x",
            "APPE link_abs",
            "APPE link_rel",
            "MKD dirlink/newdir",
            "RMD dirlink/..",
            "DELE dirlink/secret.txt",
            "RNFR dirlink/secret.txt",
        ] {
            problems.note(refused(&mut ftp, line));
            ftp.noop().or_fail(s);
        }
        ftp.expect("RNFR text.txt", 350).or_fail(s);
        problems.note(refused(&mut ftp, "RNTO dirlink/moved.txt"));
        if !fx.path("text.txt").exists() {
            problems.push("RNTO into a symlinked directory moved text.txt away".into());
        }
        fx.assert_secrets_intact(s);
        assert_no_leak(s, &ftp);

        // STOR onto a link as the final component either is refused or
        // replaces the link itself with a regular file (what `mv` onto a
        // link does); it never writes through it.
        for name in ["link_abs", "link_rel"] {
            let data = format!("uploaded over {name}\n").into_bytes();
            match ftp.stor(name, &data, Mode::Pasv) {
                Ok(()) => {
                    let meta = std::fs::symlink_metadata(fx.path(name)).unwrap();
                    if !meta.file_type().is_file() || fx.read(name).as_deref() != Some(&data[..]) {
                        problems.push(format!(
                            "STOR {name} succeeded but {name} is not the uploaded regular file"
                        ));
                    }
                }
                Err(e) if e.contains("expected 150") => {}
                Err(e) => problems.push(e),
            }
            ftp.noop().or_fail(s);
        }
        fx.assert_secrets_intact(s);

        // The root itself is still browsable (the links are entries there).
        let names = lines_set(&ftp.nlst(None).or_fail(s));
        if !names.contains("big.bin") {
            problems.push(format!("NLST after the attacks: {names:?}"));
        }
        assert_no_leak(s, &ftp);
        problems.finish(s, "symlinks out of the root");
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    port_bounce_refused,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("bounce");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        let decoy = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        decoy.set_nonblocking(true).unwrap();
        let decoy_addr = decoy.local_addr().unwrap();
        let me = ftp.control().local_addr().unwrap();

        for (line, codes) in [
            (port_command(decoy_addr), &[500][..]),
            (eprt_command(decoy_addr), &[500]),
            (port_command(SocketAddr::new(me.ip(), 21)), &[500]),
            (port_command(SocketAddr::new(me.ip(), 1023)), &[500]),
            (eprt_command(SocketAddr::new(me.ip(), 80)), &[500]),
            (format!("EPRT |2|::1|{}|", decoy_addr.port()), &[500, 522]),
            ("PORT 127,0,0,1,4".to_string(), &[500, 501]),
            ("EPRT |1|127.0.0.1|99999|".to_string(), &[500, 501]),
        ] {
            let reply = ftp.cmd(&line).or_fail(s);
            assert_code(s, &line, &reply, codes);
            // No data connection is set up: a transfer cannot start.
            let reply = ftp.cmd("RETR text.txt").or_fail(s);
            assert_code(s, &format!("RETR after a refused `{line}`"), &reply, &[425]);
            ftp.noop().or_fail(s);
        }
        thread::sleep(Duration::from_millis(200));
        match decoy.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => s.fail(&format!(
                "the server connected to the bounce target from {peer}"
            )),
            Err(e) => s.fail(&format!("accept on the decoy: {e}")),
        }
        // Active mode to our own address still works.
        let got = ftp.retr("text.txt", Mode::Port).or_fail(s);
        assert_same(s, "RETR (PORT) after refused bounces", TEXT, &got);
        ftp.quit().or_fail(s);
    }
);

/// Connects to `addr` from 127.0.0.2.
fn connect_from_other_address(addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&SockAddr::from(
        "127.0.0.2:0".parse::<SocketAddr>().unwrap(),
    ))?;
    sock.connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)?;
    let stream: std::net::TcpStream = sock.into();
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(stream)
}

arch_tests!(
    passive_port_theft_refused,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("theft");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        ftp.expect("TYPE I", 200).or_fail(s);
        for extended in [false, true] {
            let addr = if extended {
                SocketAddr::new(server.addr().ip(), ftp.epsv().or_fail(s))
            } else {
                ftp.pasv().or_fail(s)
            };
            // The thief gets there first (the kernel may complete its
            // handshake; the server must not serve it).
            let mut thief = connect_from_other_address(addr).unwrap_or_else(|e| {
                s.fail(&format!(
                    "connecting to the passive port {addr} from 127.0.0.2: {e}"
                ))
            });
            let mut real = connect_stream(addr).or_fail(s);
            let reply = ftp.cmd("RETR big.bin").or_fail(s);
            if !reply.is_preliminary() {
                s.fail(&format!("RETR after a stolen passive port: {reply}"));
            }
            let got = read_to_eof(&mut real).or_fail(s);
            ftp.finish_transfer("RETR big.bin").or_fail(s);
            assert_same(
                s,
                "RETR with a thief on the passive port",
                big_content(),
                &got,
            );
            let mut buf = [0u8; 1024];
            match thief.read(&mut buf) {
                Ok(n) if n > 0 => s.fail(&format!(
                    "the connection from 127.0.0.2 received {n} bytes of the transfer"
                )),
                _ => {}
            }
            ftp.noop().or_fail(s);
        }
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    commands_before_login,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("prelogin");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = Ftp::connect(server.addr()).or_fail(s);
        for line in [
            "PWD",
            "CWD /",
            "CDUP",
            "TYPE I",
            "PASV",
            "EPSV",
            "PORT 127,0,0,1,200,10",
            "LIST",
            "NLST",
            "MLSD",
            "MLST big.bin",
            "RETR big.bin",
            "STOR x",
            "SIZE big.bin",
            "MDTM big.bin",
            "MKD d",
            "DELE big.bin",
            "RNFR big.bin",
            "REST 10",
        ] {
            ftp.expect(line, 530).or_fail(s);
        }
        ftp.expect("SYST", 215).or_fail(s);
        ftp.expect("FEAT", 211).or_fail(s);
        ftp.expect("HELP", 214).or_fail(s);
        ftp.noop().or_fail(s);
        ftp.login_anonymous().or_fail(s);
        let pwd = ftp.pwd().or_fail(s);
        if pwd != "/" {
            s.fail(&format!("PWD after login: {pwd:?}"));
        }
        assert_no_leak(s, &ftp);
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    three_failed_logins_close,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("guessing");
        let server = serve_with_users(arch, &fx, &[]);
        let s = &server;
        let mut ftp = Ftp::connect(server.addr()).or_fail(s);
        for attempt in 1..=2 {
            ftp.expect("USER alice", 331).or_fail(s);
            let reply = ftp.cmd(&format!("PASS guess {attempt}")).or_fail(s);
            assert_code(
                s,
                &format!("wrong password, attempt {attempt}"),
                &reply,
                &[530],
            );
        }
        ftp.expect("USER alice", 331).or_fail(s);
        ftp.send_line("PASS guess 3").or_fail(s);
        let mut codes = Vec::new();
        loop {
            match ftp.reply() {
                Ok(r) => codes.push(r.code),
                Err(e) if e.contains("closed") || e.contains("reset") => break,
                Err(e) => s.fail(&format!(
                    "after the third wrong password (replies so far {codes:?}): {e}"
                )),
            }
            if codes.len() > 3 {
                s.fail(&format!(
                    "the session goes on after three wrong passwords: {codes:?}"
                ));
            }
        }
        if codes.last() != Some(&421) {
            s.fail(&format!(
                "third wrong password: expected 421 and a close, got {codes:?} and a close"
            ));
        }
        // A new connection still logs in.
        let mut again = user(s, "alice");
        again.noop().or_fail(s);
    }
);

arch_tests!(
    overlong_command_line,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("longline");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        let mut line = b"SIZE ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 256 << 10));
        line.extend_from_slice(b"\r\n");
        let reply = ftp.cmd_raw(&line).or_fail(s);
        assert_code(s, "a 256 KiB command line", &reply, &[500]);
        ftp.noop().or_fail(s);
        let size = ftp.expect("SIZE text.txt", 213).or_fail(s);
        if size.text.trim() != format!("213 {}", TEXT.len()) {
            s.fail(&format!("SIZE after the long line: {size}"));
        }
        // A long line without any line end, then one: still one 500.
        let mut line = b"NOOP ".to_vec();
        line.extend(std::iter::repeat_n(b'y', 64 << 10));
        ftp.send_raw(&line).or_fail(s);
        ftp.send_raw(&line).or_fail(s);
        let reply = ftp.cmd_raw(b"\r\n").or_fail(s);
        assert_code(s, "a 128 KiB NOOP line in pieces", &reply, &[500]);
        ftp.noop().or_fail(s);
        let got = ftp.retr("text.txt", Mode::Pasv).or_fail(s);
        assert_same(s, "RETR after long lines", TEXT, &got);
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    aborted_upload_keeps_old_file,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("abort-upload");
        let old = pseudo_random_bytes(42, 512 << 10);
        fx.write("keep.bin", &old);
        let names_before = fx.names("");
        let server = serve_with_users(arch, &fx, &[]);
        let s = &server;
        let mut ftp = user(s, "alice");
        ftp.expect("TYPE I", 200).or_fail(s);
        let partial = pseudo_random_bytes(43, 100 << 10);

        // ABOR in the middle of STOR: 426, then 226.
        let (mut data, _) = ftp.start_transfer("STOR keep.bin", Mode::Pasv).or_fail(s);
        data.write_all(&partial).unwrap();
        ftp.send_line("ABOR").or_fail(s);
        let first = ftp.reply().or_fail(s);
        assert_code(s, "ABOR during STOR, first reply", &first, &[426]);
        let second = ftp.reply().or_fail(s);
        assert_code(s, "ABOR during STOR, second reply", &second, &[226]);
        drop(data);
        ftp.noop().or_fail(s);
        assert_same(
            s,
            "keep.bin after an aborted STOR",
            &old,
            &fx.read("keep.bin").unwrap(),
        );

        // The data connection reset in the middle of STOR: 426.
        let (mut data, _) = ftp.start_transfer("STOR keep.bin", Mode::Port).or_fail(s);
        data.write_all(&partial).unwrap();
        reset(data);
        let reply = ftp.reply().or_fail(s);
        assert_code(s, "STOR whose data connection was reset", &reply, &[426]);
        ftp.noop().or_fail(s);
        assert_same(
            s,
            "keep.bin after a broken STOR",
            &old,
            &fx.read("keep.bin").unwrap(),
        );
        let back = ftp.retr("keep.bin", Mode::Pasv).or_fail(s);
        assert_same(s, "RETR keep.bin after failed uploads", &old, &back);

        // No temporary files are left behind.
        let clean = wait_for(IO_TIMEOUT, || (fx.names("") == names_before).then_some(()));
        if clean.is_none() {
            s.fail(&format!(
                "files left in the root after failed uploads: {:?}",
                fx.names("").difference(&names_before).collect::<Vec<_>>()
            ));
        }
        // And an upload that completes does replace the file.
        ftp.stor("keep.bin", &partial, Mode::Pasv).or_fail(s);
        assert_same(
            s,
            "keep.bin after a complete STOR",
            &partial,
            &fx.read("keep.bin").unwrap(),
        );
        ftp.quit().or_fail(s);
    }
);

// Upload temporaries are nobody's files: an upload in progress has no name
// on disk, a crash's leftover does not keep RMD from removing a directory
// that lists as empty, and no command reaches a reserved name.
arch_tests!(
    upload_temporaries_stay_private,
    [thread_per_connection, reactor, async_],
    |arch| {
        const STALE: &str = ".muse-upload.0123456789abcdef";
        let fx = Fixture::new("upload-private");
        fx.write(STALE, b"a crash's leftover");
        fx.mkdir("crashed");
        fx.write(&format!("crashed/{STALE}"), b"half");
        let server = serve_with_users(arch, &fx, &[]);
        let s = &server;
        let mut ftp = user(s, "alice");
        ftp.expect("TYPE I", 200).or_fail(s);

        // While STOR runs, the directory holds nothing new; after, the file.
        fx.mkdir("up");
        let (mut data, _) = ftp.start_transfer("STOR up/new.bin", Mode::Pasv).or_fail(s);
        let content = pseudo_random_bytes(44, 300 << 10);
        data.write_all(&content[..100 << 10]).unwrap();
        // The upload's file was made before the 150 reply.
        let during = fx.names("up");
        if !during.is_empty() {
            s.fail(&format!("names on disk during STOR: {during:?}"));
        }
        data.write_all(&content[100 << 10..]).unwrap();
        drop(data);
        ftp.finish_transfer("STOR up/new.bin").or_fail(s);
        assert_same(
            s,
            "STOR up/new.bin",
            &content,
            &fx.read("up/new.bin").unwrap(),
        );
        let after: Vec<String> = fx.names("up").into_iter().collect();
        if after != ["new.bin"] {
            s.fail(&format!("names on disk after STOR: {after:?}"));
        }

        // A directory with only a leftover lists as empty, and goes.
        let listed = ftp.nlst(Some("crashed")).or_fail(s);
        if !listed.trim().is_empty() {
            s.fail(&format!("NLST crashed: {listed:?}"));
        }
        ftp.expect("RMD crashed", 250).or_fail(s);
        if fx.path("crashed").exists() {
            s.fail("RMD crashed: still on disk");
        }

        // No command reaches a reserved name.
        for line in [
            format!("RETR {STALE}"),
            format!("SIZE {STALE}"),
            format!("MDTM {STALE}"),
            format!("MLST {STALE}"),
            format!("DELE {STALE}"),
            format!("RNFR {STALE}"),
            format!("CWD {STALE}"),
            format!("LIST {STALE}"),
            format!("STOR {STALE}"),
            format!("APPE {STALE}"),
            "STOR up/.muse-upload.mine".to_owned(),
            "MKD .muse-upload.dir".to_owned(),
            "RMD .muse-upload.dir".to_owned(),
        ] {
            let reply = refused(&mut ftp, &line).or_fail(s);
            assert_code(s, &line, &reply, &[550, 553]);
        }
        ftp.expect("RNFR up/new.bin", 350).or_fail(s);
        let reply = refused(&mut ftp, &format!("RNTO {STALE}")).or_fail(s);
        assert_code(s, "RNTO onto a reserved name", &reply, &[550, 553]);
        if fx.read(STALE).as_deref() != Some(&b"a crash's leftover"[..]) {
            s.fail("the leftover upload temporary was changed");
        }
        if fx.read("up/new.bin").as_deref() != Some(&content[..]) {
            s.fail("up/new.bin was changed");
        }
        if fx.path(".muse-upload.dir").exists() || fx.path("up/.muse-upload.mine").exists() {
            s.fail("a reserved name was created");
        }
        ftp.quit().or_fail(s);
    }
);

// ---------------------------------------------------------------- ABOR

/// Starts RETR of a 200 MiB file, reads 64 KiB of it, stops reading and
/// aborts with `abort` (which sends the ABOR); expects 426 then 226 and a
/// control connection that keeps working.
fn abort_download(arch: &str, abort: fn(&mut Ftp) -> Result<(), String>) {
    let fx = Fixture::new("abort");
    fx.sparse("huge.bin", HUGE_LEN);
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);
    ftp.expect("TYPE I", 200).or_fail(s);
    for mode in [Mode::Pasv, Mode::Port] {
        let (mut data, _) = ftp.start_transfer("RETR huge.bin", mode).or_fail(s);
        let head = try_read_exact(&mut data, 64 << 10).unwrap_or_else(|e| s.fail(&e));
        if head.iter().any(|&b| b != 0) {
            s.fail("the sparse file's first bytes are not zeros");
        }
        abort(&mut ftp).or_fail(s);
        let first = ftp.reply().or_fail(s);
        assert_code(
            s,
            &format!("ABOR during RETR ({mode:?}), first reply"),
            &first,
            &[426],
        );
        let second = ftp.reply().or_fail(s);
        assert_code(
            s,
            &format!("ABOR during RETR ({mode:?}), second reply"),
            &second,
            &[226],
        );
        drop(data);
        ftp.noop().or_fail(s);
        let got = ftp.retr("text.txt", Mode::Pasv).or_fail(s);
        assert_same(s, "RETR after ABOR", TEXT, &got);
    }
    let pwd = ftp.pwd().or_fail(s);
    if pwd != "/" {
        s.fail(&format!("PWD after ABOR: {pwd:?}"));
    }
    ftp.quit().or_fail(s);
}

arch_tests!(abor_during_download, |arch| {
    abort_download(arch, |ftp| ftp.send_line("ABOR"));
});

arch_tests!(abor_with_telnet_synch_during_download, |arch| {
    // As BSD ftp does it: IAC IP IAC with the last byte urgent (the Synch),
    // then DM and the command in band.
    abort_download(arch, |ftp| {
        ftp.send_urgent(&[0xff, 0xf4, 0xff])?;
        ftp.send_raw(b"\xf2ABOR\r\n")
    });
});

// ---------------------------------------------------------------- concurrency

arch_tests!(twenty_concurrent_sessions, |arch| {
    const SESSIONS: usize = 20;
    let fx = Fixture::new("concurrent");
    for i in 0..SESSIONS {
        fx.write(
            &format!("s{i:02}.bin"),
            &pseudo_random_bytes(1000 + i as u64, 256 << 10),
        );
    }
    let extra: &[&str] = match arch {
        "prefork" | "prefork-reactor" => &["--workers", "24"],
        "prefork-threads" => &["--workers", "2", "--threads", "12"],
        "thread-pool" => &["--threads", "24"],
        _ => &[],
    };
    let server = serve(arch, &fx, extra);
    let addr = server.addr();
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|i| {
            thread::spawn(move || -> Result<(), String> {
                let mut ftp = Ftp::connect(addr)?;
                ftp.login_anonymous()?;
                ftp.expect("TYPE I", 200)?;
                let mode = MODES[i % MODES.len()];
                let name = format!("s{i:02}.bin");
                let got = ftp.retr(&name, mode)?;
                let want = pseudo_random_bytes(1000 + i as u64, 256 << 10);
                if let Some(at) = first_difference(&want, &got) {
                    return Err(format!(
                        "RETR {name} ({mode:?}): {} bytes, first difference at {at}",
                        got.len()
                    ));
                }
                ftp.quit()
            })
        })
        .collect();
    let failures: Vec<String> = sessions
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("session {i}: {e}")),
            Err(_) => Some(format!("session {i}: panicked")),
        })
        .collect();
    if !failures.is_empty() {
        server.fail(&failures.join("\n"));
    }
});

arch_tests!(
    stalled_download_does_not_block_others,
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
        let fx = Fixture::new("stalled");
        fx.sparse("huge.bin", HUGE_LEN);
        let server = serve(arch, &fx, &[]);
        let s = &server;
        // The first client starts a big download and never reads it.
        let mut stuck = anonymous(s);
        stuck.expect("TYPE I", 200).or_fail(s);
        let (stuck_data, _) = stuck.start_transfer("RETR huge.bin", Mode::Pasv).or_fail(s);
        // Several others come and go meanwhile (under multi-reactor, some
        // land on the stuck client's reactor).
        for round in 0..4 {
            let mut other = anonymous(s);
            other.expect("TYPE I", 200).or_fail(s);
            let names = lines_set(&other.nlst(None).or_fail(s));
            if !names.contains("big.bin") {
                s.fail(&format!(
                    "round {round}: NLST during a stalled transfer: {names:?}"
                ));
            }
            let list = other.list(None).or_fail(s);
            if !list.contains("text.txt") {
                s.fail(&format!(
                    "round {round}: LIST during a stalled transfer: {list:?}"
                ));
            }
            let got = other.retr("text.txt", Mode::Pasv).or_fail(s);
            assert_same(s, "RETR text.txt during a stalled transfer", TEXT, &got);
            let got = other.retr("a/b/deep.txt", Mode::Port).or_fail(s);
            assert_same(
                s,
                "RETR a/b/deep.txt during a stalled transfer",
                b"deep down\n",
                &got,
            );
            other.quit().or_fail(s);
        }
        // The stuck client's control connection still answers once it aborts.
        stuck.send_line("ABOR").or_fail(s);
        let first = stuck.reply().or_fail(s);
        assert_code(s, "ABOR of the stalled transfer", &first, &[426, 226]);
        if first.code == 426 {
            let second = stuck.reply().or_fail(s);
            assert_code(
                s,
                "ABOR of the stalled transfer, second reply",
                &second,
                &[226],
            );
        }
        drop(stuck_data);
        stuck.noop().or_fail(s);
    }
);

arch_tests!(concurrent_uploads_replace_whole_files, |arch| {
    // Two users upload different contents to one name, again and again,
    // while a third downloads it: every download is one whole version
    // (uploads land by rename), and the last upload wins whole.
    const ROUNDS: usize = 3;
    let fx = Fixture::new("upload-race");
    let old = pseudo_random_bytes(500, 1 << 20);
    fx.write("race.bin", &old);
    let versions: Vec<Vec<u8>> = (0..2)
        .map(|i| pseudo_random_bytes(501 + i, (2 << 20) + i as usize))
        .collect();
    let server = serve_with_users(arch, &fx, &[]);
    let addr = server.addr();
    let login = move || -> Result<Ftp, String> {
        let mut ftp = Ftp::connect(addr)?;
        ftp.login("alice", PASSWORD)?;
        ftp.expect("TYPE I", 200)?;
        Ok(ftp)
    };
    let mut workers = Vec::new();
    for (i, data) in versions.iter().cloned().enumerate() {
        workers.push(thread::spawn(move || -> Result<(), String> {
            let mut ftp = login()?;
            for round in 0..ROUNDS {
                let mode = MODES[(i + round) % MODES.len()];
                ftp.stor("race.bin", &data, mode)
                    .map_err(|e| format!("uploader {i} round {round}: {e}"))?;
            }
            ftp.quit()
        }));
    }
    let whole: Vec<Vec<u8>> = [vec![old.clone()], versions.clone()].concat();
    workers.push(thread::spawn(move || -> Result<(), String> {
        let mut ftp = login()?;
        for round in 0..2 * ROUNDS {
            let got = ftp.retr("race.bin", Mode::Pasv)?;
            if !whole.contains(&got) {
                return Err(format!(
                    "reader round {round}: got {} bytes that are no whole version of race.bin",
                    got.len()
                ));
            }
        }
        ftp.quit()
    }));
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|t| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("a client thread panicked".to_string()),
        })
        .collect();
    if !failures.is_empty() {
        server.fail(&failures.join("\n"));
    }
    let last = fx.read("race.bin").unwrap_or_default();
    if !versions.contains(&last) {
        server.fail(&format!(
            "race.bin after the uploads is {} bytes, neither upload whole",
            last.len()
        ));
    }
    let names = fx.names("");
    if names
        .iter()
        .any(|n| !top_names().contains(n) && n != "race.bin")
    {
        server.fail(&format!("temporary files left in the root: {names:?}"));
    }
});

arch_tests!(large_directory_listing, |arch| {
    const FILES: usize = 2000;
    let fx = Fixture::new("bigdir");
    fx.mkdir("many");
    let mut want = BTreeSet::new();
    for i in 0..FILES {
        let name = format!("file-{i:04}-with-a-longish-name.txt");
        fx.write(&format!("many/{name}"), format!("{i}\n").as_bytes());
        want.insert(name);
    }
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);
    let nlst = lines_set(&ftp.nlst(Some("many")).or_fail(s));
    let nlst: BTreeSet<String> = nlst
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    if nlst != want {
        s.fail(&format!(
            "NLST many: {} names, expected {FILES}; missing e.g. {:?}",
            nlst.len(),
            want.difference(&nlst).next()
        ));
    }
    ftp.expect("CWD many", 250).or_fail(s);
    let list = ftp.list(None).or_fail(s);
    let listed: BTreeSet<String> = list
        .lines()
        .filter_map(|l| parse_ls_line(l.trim_end_matches('\r')))
        .map(|(_, _, name, _)| name)
        .collect();
    if listed != want {
        s.fail(&format!(
            "LIST in many: {} names, expected {FILES}",
            listed.len()
        ));
    }
    let mlsd = ftp.mlsd(None).or_fail(s);
    let entries: BTreeSet<String> = mlsd
        .lines()
        .filter_map(|l| parse_mlsx_line(l.trim_end_matches('\r')))
        .filter(|(facts, _)| {
            facts
                .iter()
                .any(|(k, v)| k == "type" && v.eq_ignore_ascii_case("file"))
        })
        .map(|(_, name)| name)
        .collect();
    if entries != want {
        s.fail(&format!(
            "MLSD in many: {} file entries, expected {FILES}",
            entries.len()
        ));
    }
    ftp.quit().or_fail(s);
});

arch_tests!(
    ipv6_listener_with_extended_modes,
    [thread_per_connection, reactor, async_],
    |arch| {
        if !ipv6_loopback_available() {
            eprintln!("skipped: no IPv6 loopback");
            return;
        }
        let fx = Fixture::new("ipv6");
        let server = serve(arch, &fx, &["--listen", "[::1]:0"]);
        let s = &server;
        if !server.addr().is_ipv6() {
            s.fail(&format!("listening on {}, expected [::1]", server.addr()));
        }
        let mut ftp = anonymous(s);
        for mode in [Mode::Epsv, Mode::Eprt] {
            let got = ftp.retr("big.bin", mode).or_fail(s);
            assert_same(
                s,
                &format!("RETR big.bin over IPv6 ({mode:?})"),
                big_content(),
                &got,
            );
        }
        // PASV cannot describe an IPv6 address: any answer but a broken
        // session will do, and EPSV still works after it.
        let _ = ftp.cmd("PASV").or_fail(s);
        ftp.noop().or_fail(s);
        // EPRT to an IPv4 address from an IPv6 client is someone else.
        let reply = ftp.cmd("EPRT |1|127.0.0.1|40000|").or_fail(s);
        assert_code(s, "EPRT to IPv4 from an IPv6 client", &reply, &[500, 522]);
        let got = ftp.retr("text.txt", Mode::Epsv).or_fail(s);
        assert_same(s, "RETR text.txt over IPv6 (EPSV)", TEXT, &got);
        ftp.quit().or_fail(s);
    }
);

// ---------------------------------------------------------------- limits

arch_tests!(idle_timeout_closes_with_421, |arch| {
    let fx = Fixture::new("idle");
    let server = serve(arch, &fx, &["--idle-timeout", "1"]);
    let s = &server;
    let mut ftp = anonymous(s);
    // Silence: the server says 421 and closes (bounded by the read timeout).
    let reply = ftp.reply().or_fail(s);
    assert_code(s, "idle session", &reply, &[421]);
    ftp.expect_closed().or_fail(s);
    // A fresh session works.
    let mut again = anonymous(s);
    again.noop().or_fail(s);
});

arch_tests!(idle_timeout_spares_a_running_transfer, |arch| {
    // The control connection is silent while a download runs; that is not
    // idleness. The client keeps reading (slowly) for a few idle periods,
    // then aborts: the session must still be there to answer.
    let fx = Fixture::new("idle-transfer");
    fx.sparse("huge.bin", HUGE_LEN);
    let server = serve(arch, &fx, &["--idle-timeout", "1"]);
    let s = &server;
    let mut ftp = anonymous(s);
    let (mut data, _) = ftp.start_transfer("RETR huge.bin", Mode::Pasv).or_fail(s);
    let started = std::time::Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 32 << 10];
    while started.elapsed() < Duration::from_secs(3) {
        match data.read(&mut buf) {
            Ok(0) => s.fail(&format!(
                "the data connection closed after {got} bytes while the client was reading"
            )),
            Ok(n) => got += n,
            Err(e) => s.fail(&format!("data connection after {got} bytes: {e}")),
        }
        thread::sleep(Duration::from_millis(20));
    }
    ftp.send_line("ABOR").or_fail(s);
    let first = ftp
        .reply()
        .map_err(|e| format!("ABOR after {got} bytes read over 3 s of transfer: {e}"))
        .or_fail(s);
    assert_code(
        s,
        &format!("ABOR after {got} bytes read over 3 s of transfer (--idle-timeout 1)"),
        &first,
        &[426],
    );
    let second = ftp.reply().or_fail(s);
    assert_code(s, "ABOR, second reply", &second, &[226]);
    drop(data);
    ftp.noop().or_fail(s);
    ftp.quit().or_fail(s);
});

arch_tests!(
    max_connections_refuses_with_421,
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
        let fx = Fixture::new("maxconn");
        let server = serve(arch, &fx, &["--max-connections", "2"]);
        let s = &server;
        let mut first = anonymous(s);
        let mut second = anonymous(s);
        let (mut third, greeting) = Ftp::connect_any(server.addr()).or_fail(s);
        assert_code(
            s,
            "third connection with --max-connections 2",
            &greeting,
            &[421],
        );
        third.expect_closed().or_fail(s);
        first.noop().or_fail(s);
        second.noop().or_fail(s);
        // Data connections do not count against the limit.
        let got = first.retr("text.txt", Mode::Pasv).or_fail(s);
        assert_same(s, "RETR at the connection limit", TEXT, &got);
        first.quit().or_fail(s);
        let admitted = wait_for(PROCESS_TIMEOUT, || {
            let (ftp, greeting) = Ftp::connect_any(server.addr()).ok()?;
            (greeting.code == 220).then_some(ftp)
        });
        let Some(mut fresh) = admitted else {
            s.fail("after one of two sessions quit, no new session was admitted");
        };
        fresh.login_anonymous().or_fail(s);
        fresh.noop().or_fail(s);
        second.noop().or_fail(s);
    }
);

arch_tests!(
    masquerade_and_passive_ports,
    [thread_per_connection, reactor, async_],
    |arch| {
        let fx = Fixture::new("masquerade");
        // A range below the ephemeral ports, different per test process and
        // architecture to keep parallel runs apart.
        let salt = (std::process::id() as u16 % 40) * 25 + arch.len() as u16;
        let low = 20_000 + salt * 5;
        let high = low + 19;
        let range = format!("{low}-{high}");
        let server = serve(
            arch,
            &fx,
            &["--passive-ports", &range, "--masquerade", "10.1.2.3"],
        );
        let s = &server;
        let mut ftp = anonymous(s);
        ftp.expect("TYPE I", 200).or_fail(s);
        for _ in 0..3 {
            let advertised = ftp.pasv().or_fail(s);
            if advertised.ip().to_string() != "10.1.2.3" {
                s.fail(&format!(
                    "PASV with --masquerade 10.1.2.3 advertised {advertised}"
                ));
            }
            if !(low..=high).contains(&advertised.port()) {
                s.fail(&format!(
                    "PASV port {} outside --passive-ports {range}",
                    advertised.port()
                ));
            }
            let mut data =
                connect_stream(SocketAddr::new(server.addr().ip(), advertised.port())).or_fail(s);
            ftp.expect_one_of("RETR big.bin", &[125, 150]).or_fail(s);
            let got = read_to_eof(&mut data).or_fail(s);
            ftp.finish_transfer("RETR big.bin").or_fail(s);
            assert_same(s, "RETR through a masqueraded PASV", big_content(), &got);
            let port = ftp.epsv().or_fail(s);
            if !(low..=high).contains(&port) {
                s.fail(&format!("EPSV port {port} outside --passive-ports {range}"));
            }
            let mut data = connect_stream(SocketAddr::new(server.addr().ip(), port)).or_fail(s);
            ftp.expect_one_of("RETR text.txt", &[125, 150]).or_fail(s);
            let got = read_to_eof(&mut data).or_fail(s);
            ftp.finish_transfer("RETR text.txt").or_fail(s);
            assert_same(s, "RETR through EPSV in the range", TEXT, &got);
        }
        ftp.quit().or_fail(s);
    }
);

arch_tests!(
    small_passive_port_range_is_reused,
    [thread_per_connection, reactor, async_],
    |arch| {
        // The server closes a download's data connection first, so that
        // port spends a minute in TIME-WAIT; a passive range must still be
        // reusable right away (SO_REUSEADDR on the passive listener, as
        // vsftpd and proftpd do), or a range of N ports allows only N
        // transfers a minute.
        let fx = Fixture::new("pasv-reuse");
        let salt = (std::process::id() as u16 % 40) * 25 + arch.len() as u16;
        let low = 26_000 + salt * 3;
        let range = format!("{low}-{}", low + 2);
        let server = serve(arch, &fx, &["--passive-ports", &range]);
        let s = &server;
        let mut ftp = anonymous(s);
        for round in 0..10 {
            let mode = if round % 2 == 0 {
                Mode::Pasv
            } else {
                Mode::Epsv
            };
            let got = ftp
                .retr("text.txt", mode)
                .map_err(|e| format!("download {round} with --passive-ports {range}: {e}"))
                .or_fail(s);
            assert_same(s, &format!("download {round}"), TEXT, &got);
        }
        ftp.quit().or_fail(s);
    }
);

arch_tests!(list_accepts_ls_options, [reactor], |arch| {
    // Many clients send `LIST -la` or `LIST -a`; servers treat the options
    // as options, not as a path.
    let fx = Fixture::new("lsopts");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);
    for line in ["LIST -la", "LIST -a", "LIST -l"] {
        let data = ftp.transfer_in(line, Mode::Pasv).or_fail(s);
        let text = String::from_utf8_lossy(&data);
        if !text.contains("big.bin") || !text.contains("text.txt") {
            s.fail(&format!("{line}: listing lacks the root's files: {text:?}"));
        }
    }
    ftp.quit().or_fail(s);
});

// ---------------------------------------------------------------- start-up errors

fn assert_startup_error(args: &[&str], must_name: &[&str]) {
    let mut full = vec![
        "serve",
        "ftp",
        "--arch",
        "reactor",
        "--listen",
        "127.0.0.1:0",
    ];
    full.extend_from_slice(args);
    let run = run_cli(&full);
    assert_eq!(
        run.status.code(),
        Some(1),
        "`muse {}` should exit 1: {run:?}",
        full.join(" ")
    );
    assert!(
        !run.stdout.contains("listening on"),
        "`muse {}` printed a listening line before failing: {run:?}",
        full.join(" ")
    );
    for part in must_name {
        assert!(
            run.stderr.contains(part),
            "`muse {}`: stderr should name {part:?}: {:?}",
            full.join(" "),
            run.stderr
        );
    }
}

#[test]
fn missing_root_exits_1() {
    let fx = Fixture::new("noroot");
    let missing = fx.base.join("no-such-root");
    let missing = missing.to_str().unwrap();
    assert_startup_error(&["--root", missing], &[missing]);
}

#[test]
fn root_that_is_a_file_exits_1() {
    let fx = Fixture::new("fileroot");
    let file = fx.path("big.bin");
    let file = file.to_str().unwrap();
    assert_startup_error(&["--root", file], &[file]);
}

#[test]
fn missing_users_file_exits_1() {
    let fx = Fixture::new("nousers");
    let missing = fx.base.join("no-such-users");
    let missing = missing.to_str().unwrap();
    assert_startup_error(&["--root", fx.root_str(), "--users", missing], &[missing]);
}

/// The users file fails to load; stderr names it and the bad line.
fn assert_bad_users_file(lines: &[String], bad_line: usize) {
    let fx = Fixture::new("badusers");
    let users = fx.users(lines);
    let run = run_cli(&[
        "serve",
        "ftp",
        "--arch",
        "reactor",
        "--listen",
        "127.0.0.1:0",
        "--root",
        fx.root_str(),
        "--users",
        &users,
    ]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a bad users file (line {bad_line}) should exit 1: {run:?}\nfile:\n{}",
        lines.join("\n")
    );
    assert!(
        !run.stdout.contains("listening on"),
        "printed a listening line with a bad users file: {run:?}"
    );
    assert!(
        run.stderr.contains(&users),
        "stderr should name the users file {users:?}: {:?}",
        run.stderr
    );
    let names_line = run.stderr.contains(&format!("line {bad_line}"))
        || run.stderr.contains(&format!("{users}:{bad_line}"));
    assert!(
        names_line,
        "stderr should name line {bad_line} of the users file: {:?}",
        run.stderr
    );
}

#[test]
fn users_file_with_plain_text_password_exits_1() {
    assert_bad_users_file(
        &[
            user_line("alice", "/", "all"),
            "bob:hunter2:/:read,list".to_string(),
        ],
        2,
    );
}

#[test]
fn users_file_with_unknown_permission_exits_1() {
    assert_bad_users_file(
        &[
            user_line("alice", "/", "all"),
            user_line("carol", "/", "read,list"),
            user_line("dave", "/", "read,fly"),
        ],
        3,
    );
}

#[test]
fn passwd_prints_a_phc_hash() {
    let hash = password_hash(PASSWORD);
    assert!(
        hash.starts_with("$argon2"),
        "muse passwd should print an argon2 PHC string, got {hash:?}"
    );
    // A fresh salt each time.
    let mut child = Command::new(muse_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(EXIT_TIMEOUT).unwrap_or_else(|_| {
        // SAFETY: kill takes plain integers; the child is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("muse passwd did not exit within {EXIT_TIMEOUT:?}")
    });
    let second = String::from_utf8_lossy(&out.unwrap().stdout)
        .trim()
        .to_string();
    assert_ne!(
        hash, second,
        "two hashes of one password should differ (salt)"
    );
}

arch_tests!(pipelined_replies_past_the_output_bound_all_arrive, |arch| {
    // 1,000 HELPs in one write: far more reply bytes than the session
    // buffers. It must go on with what it holds as the client reads.
    let fx = Fixture::new("pipeline");
    let server = serve(arch, &fx, &[]);
    let s = &server;
    let mut ftp = anonymous(s);
    ftp.send_raw("HELP\r\n".repeat(1000).as_bytes()).or_fail(s);
    ftp.send_line("PWD").or_fail(s);
    for i in 0..1000 {
        let reply = ftp.reply().or_fail(s);
        assert_code(s, &format!("HELP {i}"), &reply, &[214]);
    }
    let reply = ftp.reply().or_fail(s);
    assert_code(s, "PWD after the HELPs", &reply, &[257]);
});

arch_tests!(
    a_half_closed_control_connection_finishes_the_transfer,
    |arch| {
        // `cmds | nc`: RETR, then the client shuts its sending side. The
        // download completes, 226 follows, then the server closes.
        let fx = Fixture::new("halfclose");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        let (mut data, _) = ftp.start_transfer("RETR big.bin", Mode::Epsv).or_fail(s);
        ftp.control()
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let got = read_to_eof(&mut data).or_fail(s);
        assert_same(s, "download after half-close", big_content(), &got);
        let reply = ftp.reply().or_fail(s);
        assert_code(s, "after the download", &reply, &[226]);
        ftp.expect_closed().or_fail(s);
    }
);

arch_tests!(
    commands_sent_during_a_transfer_are_all_answered_in_order,
    |arch| {
        let fx = Fixture::new("deferred");
        let server = serve(arch, &fx, &[]);
        let s = &server;
        let mut ftp = anonymous(s);
        let (mut data, _) = ftp.start_transfer("RETR big.bin", Mode::Epsv).or_fail(s);
        // More commands than the session keeps, an unknown verb, then PWD.
        let mut burst = "SYST\r\n".repeat(30);
        burst.push_str("BOGUS\r\nPWD\r\n");
        ftp.send_raw(burst.as_bytes()).or_fail(s);
        let got = read_to_eof(&mut data).or_fail(s);
        assert_same(s, "download", big_content(), &got);
        let reply = ftp.reply().or_fail(s);
        assert_code(s, "after the download", &reply, &[226]);
        for i in 0..30 {
            let reply = ftp.reply().or_fail(s);
            assert_code(s, &format!("SYST {i}"), &reply, &[215]);
        }
        let reply = ftp.reply().or_fail(s);
        assert_code(s, "the unknown verb", &reply, &[500, 502]);
        let reply = ftp.reply().or_fail(s);
        assert_code(s, "PWD last", &reply, &[257]);
    }
);

arch_tests!(
    the_shutdown_deadline_says_426_and_421_before_closing,
    |arch| {
        // A download the client never reads holds the drain open until
        // --shutdown-timeout; then the client is told why it is cut off,
        // in order, before the connection closes.
        let fx = Fixture::new("drain-deadline");
        fx.sparse("huge.bin", HUGE_LEN);
        let mut server = serve(arch, &fx, &["--shutdown-timeout", "1"]);
        let mut ftp = anonymous(&server);
        let (data, _) = ftp
            .start_transfer("RETR huge.bin", Mode::Epsv)
            .or_fail(&server);
        server.signal(libc::SIGTERM);
        let first = ftp.reply().or_fail(&server);
        assert_code(&server, "first words at the deadline", &first, &[426]);
        let second = ftp.reply().or_fail(&server);
        assert_code(&server, "last words at the deadline", &second, &[421]);
        ftp.expect_closed().or_fail(&server);
        drop(data);
        if server.wait_exit(Duration::from_secs(10)).is_none() {
            server.fail("still running 10 s after SIGTERM with --shutdown-timeout 1");
        }
    }
);

arch_tests!(a_stalled_data_connection_is_aborted_with_426, |arch| {
    // --data-timeout 1: a download the client never reads and an upload
    // that never finishes sending are both cut with 426, the session goes
    // on, and the failed upload leaves the file it named untouched.
    let fx = Fixture::new("data-timeout");
    fx.sparse("huge.bin", HUGE_LEN);
    fx.write("kept.txt", b"the old content\n");
    let server = serve_with_users(arch, &fx, &["--data-timeout", "1"]);
    let s = &server;
    let mut ftp = user(s, "alice");

    let (stalled, _) = ftp.start_transfer("RETR huge.bin", Mode::Epsv).or_fail(s);
    let reply = ftp.reply().or_fail(s);
    assert_code(s, "a download nobody reads", &reply, &[426]);
    drop(stalled);
    ftp.noop().or_fail(s);

    let (mut upload, _) = ftp.start_transfer("STOR kept.txt", Mode::Pasv).or_fail(s);
    upload
        .write_all(b"a new begin")
        .map_err(|e| format!("writing the upload: {e}"))
        .or_fail(s);
    let reply = ftp.reply().or_fail(s);
    assert_code(s, "an upload that stops sending", &reply, &[426]);
    drop(upload);
    ftp.noop().or_fail(s);
    if fx.read("kept.txt").as_deref() != Some(b"the old content\n".as_slice()) {
        s.fail(&format!(
            "a timed-out STOR changed its file: {:?}",
            fx.read("kept.txt")
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        ));
    }
    ftp.quit().or_fail(s);
});

arch_tests!(a_client_that_floods_and_never_reads_is_closed, |arch| {
    // NOOPs sent without ever reading a reply: once the session's output
    // and both socket buffers are full it stops reading; the idle timeout
    // then closes the connection although its replies were never sent.
    let fx = Fixture::new("flood");
    let server = serve(arch, &fx, &["--idle-timeout", "1"]);
    let s = &server;
    let ftp = anonymous(s);
    ftp.control()
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    let burst = "NOOP\r\n".repeat(10_000);
    let started = std::time::Instant::now();
    let mut filled = false;
    while started.elapsed() < IO_TIMEOUT {
        match ftp.control().write(burst.as_bytes()) {
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => {
                filled = true;
                break;
            }
            Err(e) => s.fail(&format!("the flood failed before filling the buffers: {e}")),
        }
    }
    if !filled {
        s.fail(&format!("the server kept reading NOOPs for {IO_TIMEOUT:?}"));
    }
    // Still not reading: a write fails once the server has closed (its
    // close with unread bytes resets the connection).
    let started = std::time::Instant::now();
    loop {
        match ftp.control().write(b"NOOP\r\n") {
            Err(e) if is_reset(&e) || e.kind() == std::io::ErrorKind::BrokenPipe => break,
            _ if started.elapsed() > IO_TIMEOUT => s.fail(&format!(
                "a client that never reads is still connected {IO_TIMEOUT:?} after filling its buffers (--idle-timeout 1)"
            )),
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
    // The server serves others.
    let mut fresh = anonymous(s);
    fresh.noop().or_fail(s);
});

/// An FTP control connection from the loopback address `from`.
fn connect_from(server: &Server, from: std::net::Ipv4Addr) -> Ftp {
    Ftp::connect_from(std::net::SocketAddr::from((from, 0)), server.addr()).or_fail(server)
}

arch_tests!(logins_from_many_addresses_pass_the_login_gate, |arch| {
    // Failing logins from one address beside good ones from others,
    // all at once: the gate bounds the checks running per address and
    // per server, and every client still gets its own right answer,
    // whichever process or thread checks it.
    let fx = Fixture::new("gate");
    let server = serve_with_users(arch, &fx, &[]);
    let s = &server;
    let results = thread::scope(|scope| {
        let bad: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let mut ftp = connect_from(s, [127, 0, 0, 7].into());
                    ftp.expect("USER alice", 331)?;
                    ftp.cmd("PASS not the password")
                })
            })
            .collect();
        let good: Vec<_> = (2..6u8)
            .map(|i| {
                scope.spawn(move || {
                    let mut ftp = connect_from(s, [127, 0, 0, 10 + i].into());
                    ftp.expect("USER carol", 331)?;
                    let reply = ftp.cmd(&format!("PASS {PASSWORD}"))?;
                    ftp.pwd()?;
                    Ok(reply)
                })
            })
            .collect();
        let bad: Vec<_> = bad.into_iter().map(|h| h.join().unwrap()).collect();
        let good: Vec<_> = good.into_iter().map(|h| h.join().unwrap()).collect();
        (bad, good)
    });
    for (i, r) in results.0.into_iter().enumerate() {
        let reply = r.or_fail(s);
        assert_code(s, &format!("wrong password {i}"), &reply, &[530]);
    }
    for (i, r) in results.1.into_iter().enumerate() {
        let reply = r.or_fail(s);
        assert_code(s, &format!("right password {i}"), &reply, &[230]);
    }
});

arch_tests!(
    mass_listings_do_not_starve_a_worker_heartbeat,
    [reactor, prefork_reactor, multi_reactor, async_],
    |arch| {
        // Thirty clients list a 20,000-entry directory at once while an
        // unrelated client keeps its session. Listing is file-system work
        // done off the event loop in bounded batches, so the loop (and the
        // prefork worker's heartbeat, watched with --worker-timeout 2) keeps
        // going: no worker is killed and the unrelated session lives on.
        let fx = Fixture::new("mass-list");
        fx.mkdir("many");
        for i in 0..20_000 {
            std::fs::File::create(fx.path(&format!("many/file-{i:05}"))).unwrap();
        }
        let server = serve(arch, &fx, &["--worker-timeout", "2"]);
        let s = &server;
        let mut bystander = anonymous(s);
        let listed = thread::scope(|scope| {
            let listers: Vec<_> = (0..30)
                .map(|_| {
                    scope.spawn(|| {
                        let mut ftp = Ftp::connect(s.addr())?;
                        ftp.login_anonymous()?;
                        ftp.nlst(Some("many"))
                    })
                })
                .collect();
            for _ in 0..20 {
                bystander.noop().or_fail(s);
                thread::sleep(Duration::from_millis(100));
            }
            listers
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        for (i, r) in listed.into_iter().enumerate() {
            let names = r.or_fail(s);
            let count = names.lines().count();
            if count != 20_000 {
                s.fail(&format!("listing {i}: {count} names of 20000"));
            }
        }
        bystander.noop().or_fail(s);
        if s.stderr().contains("has not made progress") {
            s.fail("a worker was killed during the listings");
        }
    }
);

arch_tests!(
    sighup_reloads_the_users_file_without_dropping_a_session,
    [
        thread_pool,
        reactor,
        prefork,
        process_per_connection,
        async_
    ],
    |arch| {
        let fx = Fixture::new("hup");
        let users = fx.users(&[user_line("alice", "/", "all")]);
        let server = serve(arch, &fx, &["--users", &users]);
        let s = &server;
        let mut alice = user(s, "alice");
        let mut bob = Ftp::connect(s.addr()).or_fail(s);
        bob.expect("USER bob", 331).or_fail(s);
        bob.expect(&format!("PASS {PASSWORD}"), 530).or_fail(s);

        // bob is added, alice removed; a broken file is refused first.
        std::fs::write(&users, "bob:not-a-hash:/:all\n").unwrap();
        server.signal(libc::SIGHUP);
        if wait_for(Duration::from_secs(10), || {
            s.stderr()
                .contains("cannot reload the users file")
                .then_some(())
        })
        .is_none()
        {
            s.fail("no warning for a users file that does not parse");
        }
        let still = user(s, "alice");
        still.quit().or_fail(s);
        std::fs::write(&users, user_line("bob", "/", "read,list") + "\n").unwrap();
        server.signal(libc::SIGHUP);
        if wait_for(Duration::from_secs(10), || {
            s.stderr().contains("reloaded 1 user(s)").then_some(())
        })
        .is_none()
        {
            s.fail("no line saying the users file was reloaded");
        }
        // A prefork master forwards HUP to its workers: let each of them
        // take it before logging in (new connections may reach any).
        let mut bob = None;
        for _ in 0..50 {
            let mut c = Ftp::connect(s.addr()).or_fail(s);
            c.expect("USER bob", 331).or_fail(s);
            let reply = c
                .expect_one_of(&format!("PASS {PASSWORD}"), &[230, 530])
                .or_fail(s);
            if reply.code == 230 {
                bob = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let Some(mut bob) = bob else {
            s.fail("bob cannot log in after the reload");
        };
        bob.expect("PWD", 257).or_fail(s);
        bob.quit().or_fail(s);
        let mut refused = false;
        for _ in 0..50 {
            let mut gone = Ftp::connect(s.addr()).or_fail(s);
            gone.expect("USER alice", 331).or_fail(s);
            let pass = format!("PASS {PASSWORD}");
            if gone.expect_one_of(&pass, &[230, 530]).or_fail(s).code == 530 {
                refused = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !refused {
            s.fail("alice, removed from the users file, still logs in");
        }
        // alice's session from before the reload goes on.
        alice.expect("PWD", 257).or_fail(s);
        let got = alice.retr("text.txt", Mode::Pasv).or_fail(s);
        assert_same(s, "alice RETR after the reload", TEXT, &got);
        alice.quit().or_fail(s);
    }
);
