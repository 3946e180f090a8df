//! Servers under test: starting them (`muse serve` for an architecture, or
//! a user's command), reading their `listening on` line, watching their
//! processes in /proc while the load runs, and stopping them.
//!
//! Every server muse starts runs in a session of its own, and so in its own
//! process group, recorded in a registry so that an interrupted bench
//! (Ctrl-C) can still stop and reap every one of them
//! ([`stop_all_and_exit`]). The session is for the scheduler: where the
//! kernel groups tasks by session (autogroup, on by default in most
//! distributions), a server in the bench's own session would share one
//! group's CPU with the load generator's threads, which would preempt it
//! as often as they preempt each other; in a session of its own it gets a
//! group's share, as a daemon does, and its tail latency is its own rather
//! than the load generator's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::archs::Arch;
use crate::bench::model::{Family, ProcessShare, ServerStats};
use crate::sys;

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a starting server is checked for having exited instead.
const START_TICK: Duration = Duration::from_millis(50);
/// How long a server may take to exit after `SIGTERM` before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the server's processes are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The protocols whose `muse serve` takes `--root DIR` (the bench gives
/// them the scenario's fixture directory).
pub const ROOTED: &[&str] = &["ftp", "http"];

/// The environment variable that gives a spawned command the fixture
/// directory (as `{root}` does in its command line).
pub const ROOT_ENV: &str = "MUSE_BENCH_ROOT";

/// The environment variable that gives a spawned command, in a durable
/// scenario (kv `durable`), the fresh directory to keep its data in (as
/// `{data}` does in its command line). Unset otherwise.
pub const DATA_ENV: &str = "MUSE_BENCH_DATA_DIR";

/// The environment variables that give a spawned command, in a TLS
/// scenario, the run's certificate and key (PEM files), as `{tls_cert}` and
/// `{tls_key}` do in its command line. Unset otherwise.
pub const TLS_CERT_ENV: &str = "MUSE_BENCH_TLS_CERT";
/// See [`TLS_CERT_ENV`].
pub const TLS_KEY_ENV: &str = "MUSE_BENCH_TLS_KEY";

/// A TLS scenario's certificate (for `localhost` and 127.0.0.1) and key,
/// PEM files the bench made for the run.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Explicit TLS (FTPS `AUTH TLS`): `muse serve` keeps its plain
    /// listener and gets the certificate and key for the switch.
    pub explicit: bool,
}

/// What is measured.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `muse serve PROTOCOL --arch ARCH`, with these arguments of its own
    /// (after the run's `--serve-arg`s, so they win).
    Muse(Arch, Vec<String>),
    /// A command that prints `listening on ADDR` once it serves.
    Spawn(String),
    /// A server already running, that muse neither starts nor sees.
    Against(SocketAddr),
}

/// A server to measure.
#[derive(Clone, Debug)]
pub struct Target {
    /// How the report names it.
    pub name: String,
    /// Its family (colour and grouping).
    pub family: Family,
    /// How to reach it.
    pub kind: Kind,
}

/// The family of an architecture.
pub fn family(arch: Arch) -> Family {
    match arch {
        Arch::Serial => Family::Serial,
        Arch::ProcessPerConnection | Arch::Prefork => Family::Processes,
        Arch::ThreadPerConnection | Arch::ThreadPool => Family::Threads,
        Arch::PreforkThreads => Family::Hybrid,
        Arch::Reactor | Arch::PreforkReactor | Arch::MultiReactor | Arch::ReactorPool => {
            Family::Evented
        }
        Arch::Async => Family::Async,
        Arch::Uring | Arch::MultiUring | Arch::PreforkUring => Family::Proactor,
    }
}

/// The `--max-connections` a `muse serve` started by the bench gets.
const BENCH_MAX_CONNECTIONS: &str = "1000000";

impl Target {
    /// The target for a muse architecture.
    pub fn muse(arch: Arch) -> Target {
        Target::muse_with(arch, Vec::new())
    }

    /// The target for a muse architecture served with `args` of its own
    /// (`prefork-reactor --accept handoff`), named with them.
    pub fn muse_with(arch: Arch, args: Vec<String>) -> Target {
        let name = std::iter::once(arch.name().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Target {
            name: format!("muse/{name}"),
            family: family(arch),
            kind: Kind::Muse(arch, args),
        }
    }

    /// Starts the server (or, for `Against`, only checks nothing needs
    /// starting) and waits for its address. `root` is the fixture
    /// directory: `--root` for a `muse serve` of a [`ROOTED`] protocol;
    /// `{root}` in a spawned command line, and [`ROOT_ENV`] in its
    /// environment. `data`, for a durable scenario, is where the server
    /// keeps its writes: `--data-dir DIR --fsync always` for `muse serve`;
    /// `{data}` and [`DATA_ENV`] for a spawned command. `tls`, for a TLS
    /// scenario, is the run's certificate: `muse serve` listens with TLS
    /// only (`--tls-listen 127.0.0.1:0 --tls-cert C --tls-key K`) and its
    /// TLS listener's line (`..., tls)`) is the address, or, for explicit
    /// TLS, listens in clear (`--listen 127.0.0.1:0 --tls-cert C --tls-key
    /// K`) and switches on `AUTH TLS`; a spawned command
    /// gets `{tls_cert}` and `{tls_key}` in its command line, and
    /// [`TLS_CERT_ENV`] and [`TLS_KEY_ENV`].
    pub fn start(
        &self,
        exe: &Path,
        protocol: &str,
        serve_args: &[String],
        root: Option<&Path>,
        data: Option<&Path>,
        tls: Option<&TlsFiles>,
    ) -> anyhow::Result<Started> {
        let want_tls_line = tls.is_some_and(|t| !t.explicit) && matches!(self.kind, Kind::Muse(..));
        let mut cmd = match &self.kind {
            Kind::Against(addr) => {
                return Ok(Started {
                    addr: *addr,
                    child: None,
                    stderr: None,
                })
            }
            Kind::Muse(arch, own) => {
                let mut c = Command::new(exe);
                c.args(["serve", protocol, "--arch", arch.name()]);
                match tls {
                    Some(tls) if tls.explicit => {
                        c.args(["--listen", "127.0.0.1:0", "--tls-cert"])
                            .arg(&tls.cert)
                            .arg("--tls-key")
                            .arg(&tls.key);
                    }
                    Some(tls) => {
                        c.args(["--tls-listen", "127.0.0.1:0", "--tls-cert"])
                            .arg(&tls.cert)
                            .arg("--tls-key")
                            .arg(&tls.key);
                    }
                    None => {
                        c.args(["--listen", "127.0.0.1:0"]);
                    }
                }
                if let (Some(root), true) = (root, ROOTED.contains(&protocol)) {
                    c.arg("--root").arg(root);
                }
                if let Some(data) = data {
                    c.arg("--data-dir").arg(data).args(["--fsync", "always"]);
                }
                // The peers measured beside muse have no connection limit
                // (or one far above any scenario's), so muse's default of
                // 10,000 is lifted too, unless the run sets its own: the
                // idle scenarios hold 10,000 connections beside the
                // measuring clients.
                if !serve_args
                    .iter()
                    .any(|a| a.starts_with("--max-connections"))
                {
                    c.args(["--max-connections", BENCH_MAX_CONNECTIONS]);
                }
                c.args(serve_args);
                c.args(own);
                c
            }
            Kind::Spawn(line) => {
                let mut c = Command::new("/bin/sh");
                let line = match root {
                    Some(root) => {
                        c.env(ROOT_ENV, root);
                        line.replace("{root}", &shell_quote(&root.to_string_lossy()))
                    }
                    None => line.clone(),
                };
                let line = match data {
                    Some(data) => {
                        c.env(DATA_ENV, data);
                        line.replace("{data}", &shell_quote(&data.to_string_lossy()))
                    }
                    None => line,
                };
                let line = match tls {
                    Some(tls) => {
                        c.env(TLS_CERT_ENV, &tls.cert).env(TLS_KEY_ENV, &tls.key);
                        line.replace("{tls_cert}", &shell_quote(&tls.cert.to_string_lossy()))
                            .replace("{tls_key}", &shell_quote(&tls.key.to_string_lossy()))
                    }
                    None => line,
                };
                c.arg("-c").arg(format!("exec {line}"));
                c
            }
        };
        let stderr = ErrLog::create().context("cannot create a file for the server's stderr")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr.0.try_clone()?));
        // A session of its own (the module's comment says why); the
        // session's id is the child's pid, so its process group is too.
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        register(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            // Report the first `listening on` line (a muse TLS listener's,
            // in a TLS scenario), then keep draining so the server never
            // blocks on a full pipe.
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && (!want_tls_line || line.trim_end().ends_with(", tls)")) {
                    if let Some(addr) = parse_listening(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let mut started = Started {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            stderr: Some(stderr),
        };
        // Waits for the line, looking every tick whether the server has
        // exited instead (a grandchild may still hold its stdout open).
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = loop {
            match rx.recv_timeout(START_TICK) {
                Ok(addr) => {
                    started.addr = addr;
                    return Ok(started);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break "closed its output before it printed `listening on ADDR`".to_string()
                }
                Err(mpsc::RecvTimeoutError::Timeout) if started.has_exited() => {
                    break "exited before it printed `listening on ADDR`".to_string()
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    break format!("printed no `listening on ADDR` line within {START_TIMEOUT:?}")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        let tail = started.stderr_tail();
        started.stop();
        bail!(
            "{} {failure}{}",
            self.name,
            if tail.is_empty() {
                String::new()
            } else {
                format!("; it said: {tail}")
            }
        )
    }
}

/// `s` as one word for `/bin/sh`: as it is when it is plainly safe, else
/// single-quoted.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Reads `listening on ADDR ...` (ADDR may be `[::1]:P`).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where a server's stderr goes: a file, not a pipe. A server that logs a
/// line per request (muse logs every FTP transfer) would otherwise wake a
/// reader thread of the bench for every line, on the same CPUs, and the
/// bench would charge that to the server. The file is unlinked at once, so
/// nothing is left behind; it lives while the server and this handle do.
struct ErrLog(File);

/// How much of the end of a server's stderr is kept for error messages.
const TAIL_BYTES: u64 = 4096;

impl ErrLog {
    fn create() -> io::Result<ErrLog> {
        use std::sync::atomic::AtomicU64;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        loop {
            let name = format!(
                "muse-bench-stderr-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .open(&path);
            match opened {
                Ok(file) => {
                    std::fs::remove_file(&path)?;
                    return Ok(ErrLog(file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The last [`TAIL_BYTES`] written.
    fn tail(&self) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let len = self.0.metadata().map_or(0, |m| m.len());
        let from = len.saturating_sub(TAIL_BYTES);
        let mut buf = vec![0; (len - from) as usize];
        match self.0.read_exact_at(&mut buf, from) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    }
}

/// A running server.
pub struct Started {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its stderr, if muse started it.
    stderr: Option<ErrLog>,
}

impl Started {
    /// Its pid (and process group), if muse started it.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The last few lines it wrote to stderr, blank ones left out.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.as_ref().map(ErrLog::tail).unwrap_or_default();
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text
            .trim()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        // The last four, in the order written: an argument error's first
        // line, its tip, usage and hint.
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// Whether it has exited already (it crashed under load).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Stops it: `SIGTERM` to its process group, then `SIGKILL` after
    /// [`STOP_TIMEOUT`]; reaps it. Returns how it ended (`None` if muse did
    /// not start it).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pgid = child.id() as i32;
        sys::kill(-pgid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    sys::kill(-pgid, libc::SIGKILL);
                    break child.wait().ok();
                }
            }
        };
        // Whatever of its group is left (a worker that outlived its master).
        sys::kill(-pgid, libc::SIGKILL);
        unregister(pgid);
        status
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Directories to remove should the bench exit early (the fixture).
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` (recursively) if the bench exits through
/// [`stop_all_and_exit`]; [`forget_on_exit`] once it is removed otherwise.
pub fn remove_on_exit(dir: &Path) {
    SCRATCH
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.to_path_buf());
}

/// Undoes [`remove_on_exit`].
pub fn forget_on_exit(dir: &Path) {
    SCRATCH
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|d| d != dir);
}

fn register(pgid: i32) {
    LIVE.lock().expect("registry").push(pgid);
}

fn unregister(pgid: i32) {
    LIVE.lock().expect("registry").retain(|p| *p != pgid);
}

/// Stops every server still running and exits with `code` (for Ctrl-C):
/// `SIGTERM` to each group, so that masters stop and reap their workers,
/// then `SIGKILL` to whatever is left after a grace period; every leader is
/// reaped.
pub fn stop_all_and_exit(code: i32) -> ! {
    const GRACE: Duration = Duration::from_secs(3);
    let groups = std::mem::take(&mut *LIVE.lock().expect("registry"));
    for &pgid in &groups {
        sys::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    let mut left: Vec<i32> = groups.clone();
    while !left.is_empty() && Instant::now() < deadline {
        // SAFETY: waitpid on our own children, no status wanted.
        left.retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pgid in &groups {
        sys::kill(-pgid, libc::SIGKILL);
    }
    for &pid in &left {
        // SAFETY: as above, blocking: SIGKILL has been sent.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    // Best effort: the servers that used them are gone.
    let dirs = std::mem::take(&mut *SCRATCH.lock().unwrap_or_else(|e| e.into_inner()));
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(code)
}

/// One process as /proc shows it.
#[derive(Clone, Copy, Debug, Default)]
struct ProcStat {
    ppid: i32,
    /// utime + stime, in clock ticks.
    cpu: u64,
    /// cutime + cstime (reaped children), in clock ticks.
    children_cpu: u64,
    threads: u64,
    rss_pages: u64,
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields from 3 (state) on: ppid is 4, utime 14, stime 15, cutime 16,
    // cstime 17, num_threads 20, rss 24 (proc(5), 1-based).
    let at = |n: usize| f.get(n - 3).and_then(|s| s.parse::<i64>().ok());
    Some(ProcStat {
        ppid: at(4)? as i32,
        cpu: (at(14)? + at(15)?) as u64,
        children_cpu: (at(16)? + at(17)?) as u64,
        threads: at(20)? as u64,
        rss_pages: at(24)?.max(0) as u64,
    })
}

/// The processes of the tree rooted at `root`, with their stats.
fn process_tree(root: i32) -> HashMap<i32, ProcStat> {
    let mut all = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                all.insert(pid, stat);
            }
        }
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, s) in &all {
        children.entry(s.ppid).or_default().push(pid);
    }
    let mut tree = HashMap::new();
    let mut queue = VecDeque::from([root]);
    let mut seen = HashSet::new();
    while let Some(pid) = queue.pop_front() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(s) = all.get(&pid) {
            tree.insert(pid, *s);
            queue.extend(children.get(&pid).into_iter().flatten());
        }
    }
    tree
}

fn total_cpu(tree: &HashMap<i32, ProcStat>) -> u64 {
    tree.values().map(|s| s.cpu + s.children_cpu).sum()
}

/// Samples a server's process tree in the background until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ServerStats>,
}

impl Sampler {
    /// Starts sampling the tree rooted at `root`. CPU is counted from
    /// `warmup` on, when the load generator starts counting requests, so
    /// that requests per CPU-second divide like by like.
    pub fn start(root: i32, warmup: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let from = Instant::now() + warmup;
        let handle = std::thread::spawn(move || sample(root, &flag, from));
        Sampler { stop, handle }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(self) -> anyhow::Result<ServerStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))
    }
}

fn sample(root: i32, stop: &AtomicBool, from: Instant) -> ServerStats {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
    let mut first = process_tree(root);
    let mut counting = false;
    let mut last = first.clone();
    let mut stats = ServerStats::default();
    loop {
        if !counting && Instant::now() >= from {
            // The warm-up is over: CPU counts from here.
            counting = true;
            first = process_tree(root);
        }
        let tree = process_tree(root);
        if !tree.is_empty() {
            let rss = tree.values().map(|s| s.rss_pages * page_kib).sum();
            stats.peak_rss_kib = stats.peak_rss_kib.max(rss);
            stats.peak_processes = stats.peak_processes.max(tree.len());
            stats.peak_threads = stats
                .peak_threads
                .max(tree.values().map(|s| s.threads as usize).sum());
            last = tree;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    stats.cpu_seconds = total_cpu(&last).saturating_sub(total_cpu(&first)) as f64 / ticks;
    // Workers: the root's direct children alive at the end. One born after
    // the first sample (a master forks after it announces) used all its CPU
    // during the run.
    let mut workers: Vec<ProcessShare> = last
        .iter()
        .filter(|(_, s)| s.ppid == root)
        .map(|(&pid, s)| {
            let before = first.get(&pid).map_or(0, |b| b.cpu);
            ProcessShare {
                pid,
                cpu_seconds: s.cpu.saturating_sub(before) as f64 / ticks,
            }
        })
        .collect();
    workers.sort_by_key(|w| w.pid);
    stats.workers = workers;
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_never_listens_is_reported_with_its_last_words() {
        let target = Target {
            name: "mute".into(),
            family: Family::Baseline,
            kind: Kind::Spawn("sh -c 'echo first >&2; echo last words >&2; exit 3'".into()),
        };
        let err = target
            .start(Path::new("/bin/false"), "ftp", &[], None, None, None)
            .err()
            .expect("it never listens");
        let msg = format!("{err:#}");
        assert!(msg.contains("it said: first | last words"), "{msg}");
        // The stderr file was unlinked as soon as it was made.
        let prefix = format!("muse-bench-stderr-{}-", std::process::id());
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_spawned_server_leads_a_session_of_its_own() {
        let target = Target {
            name: "leader".into(),
            family: Family::Baseline,
            // Listens (says so) only if field 6 of its stat, the session,
            // is its own pid.
            kind: Kind::Spawn(
                "sh -c 'set -- $(cat /proc/$$/stat); [ \"$6\" = \"$$\" ] || exit 3; echo listening on 127.0.0.1:9; sleep 10'"
                    .into(),
            ),
        };
        let mut server = target
            .start(Path::new("/bin/false"), "echo", &[], None, None, None)
            .expect("it leads its session");
        assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], 9)));
        server.stop();
    }

    #[test]
    fn a_spawned_server_is_given_its_data_directory() {
        let target = Target {
            name: "durable".into(),
            family: Family::Baseline,
            // Listens (says so) only if `{data}` and the variable agree.
            kind: Kind::Spawn(
                "sh -c '[ \"$MUSE_BENCH_DATA_DIR\" = \"$0\" ] || exit 3; echo listening on 127.0.0.1:9; sleep 10' {data}"
                    .into(),
            ),
        };
        let data = Path::new("/tmp/a dir's name");
        let mut server = target
            .start(Path::new("/bin/false"), "kv", &[], None, Some(data), None)
            .expect("it listens");
        assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], 9)));
        server.stop();
        let err = target
            .start(Path::new("/bin/false"), "kv", &[], None, None, None)
            .err()
            .expect("no data directory, no listening line");
        assert!(format!("{err:#}").contains("listening on"), "{err:#}");
    }
}
