//! `muse bench`: every architecture measured side by side under the same
//! load, next to the servers people run today (DESIGN.md §6).
//!
//! For each repetition, in alternating order (A B C, then C B A, ...), for
//! each server: start it (`muse serve` for an architecture, `--spawn` for a
//! command, nothing for `--against`), run the scenario's load (warm-up, then
//! the timed phase) while sampling the server's processes, stop it. Then
//! rank the servers and print the table, and write `--json` / `--svg`.
//!
//! - [`scenario`]: scenarios as data;
//! - [`client`]: the sans-IO load clients (echo, stream, FTP, HTTP, calc, kv);
//! - [`load`]: the load generator, one evented loop that runs them;
//! - [`target`]: starting, sampling and stopping servers;
//! - [`model`]: the results; [`report`]: the table, JSON and SVG.

pub mod client;
pub mod load;
pub mod model;
pub mod report;
pub mod scenario;
pub mod target;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::archs::Arch;
use crate::bench::model::{Family, Ranking, Report, Run, SCHEMA_VERSION};
use crate::bench::target::{Kind, Sampler, Target};
use crate::cli::Usage;
use crate::signals;

/// `muse bench` flags, as typed.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The protocol to load.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(scenario::PROTOCOLS))]
    protocol: String,
    /// Architectures to run, comma-separated, or `all`. An entry may add
    /// `muse serve` arguments of its own after the name, to measure one
    /// architecture several ways: `prefork-reactor,prefork-reactor --accept
    /// handoff`.
    #[arg(long, value_name = "LIST|all", default_value = "all")]
    arch: String,
    /// Also drive a server already running: NAME=HOST:PORT (repeatable).
    #[arg(long, value_name = "NAME=HOST:PORT")]
    against: Vec<String>,
    /// Also start a server for each run: NAME=COMMAND, where the command
    /// prints `listening on ADDR` once it serves (repeatable). `{root}` in
    /// the command becomes the directory of the scenario's files (ftp, http), also
    /// given as $MUSE_BENCH_ROOT; in kv `durable`, `{data}` and
    /// $MUSE_BENCH_DATA_DIR are a fresh directory for the server's data; in
    /// a TLS scenario, `{tls_cert}` and `{tls_key}` ($MUSE_BENCH_TLS_CERT,
    /// $MUSE_BENCH_TLS_KEY) are the run's certificate and key (PEM, for
    /// `localhost` and 127.0.0.1).
    #[arg(long, value_name = "NAME=CMD")]
    spawn: Vec<String>,
    /// The scenario (echo: rr, pipeline, stream, connect, idle, slow; ftp:
    /// sessions, ftps-sessions, download; http: get, large, close,
    /// pipeline, idle, slow, https-get, handshake; calc: cheap, heavy,
    /// mixed; kv: getset, pipeline, large, durable, kv-tls)
    /// [default: the protocol's first: rr, sessions, get, cheap, getset].
    #[arg(long)]
    scenario: Option<String>,
    /// Measuring connections [default: the scenario's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: Option<u32>,
    /// Timed phase per run, in seconds [default: the scenario's].
    #[arg(long, value_name = "SECS", value_parser = crate::cli::parse_secs)]
    duration: Option<Duration>,
    /// Warm-up per run, in seconds.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::cli::parse_secs)]
    warmup: Duration,
    /// Open loop: send this many requests per second in all, on a schedule,
    /// and measure latency from the intended send time.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Runs per server, interleaved across servers.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Load generator threads [default: the CPU count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    load_threads: Option<u32>,
    /// An argument for every `muse serve` started (repeatable), e.g.
    /// `--serve-arg=--workers=4`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// Write the report as JSON (schema in `bench/report.rs`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the chart as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

fn split_named(spec: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match spec.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => {
            Ok((name.to_string(), value.to_string()))
        }
        _ => Err(Usage(format!("{flag} wants NAME=VALUE, not {spec:?}")).into()),
    }
}

/// The servers to measure, in the order of the first repetition.
fn targets(args: &BenchArgs) -> anyhow::Result<Vec<Target>> {
    let mut list = Vec::new();
    if args.arch != "none" {
        if args.arch == "all" {
            list.extend(Arch::ALL.into_iter().map(Target::muse));
        } else {
            for entry in args.arch.split(',') {
                let mut words = entry.split_whitespace();
                let n = words.next().unwrap_or_default();
                let arch = Arch::from_name(n).ok_or_else(|| {
                    Usage(format!("unknown architecture {n:?} (see `muse archs`)"))
                })?;
                list.push(Target::muse_with(arch, words.map(String::from).collect()));
            }
        }
    }
    for s in &args.spawn {
        let (name, cmd) = split_named(s, "--spawn")?;
        list.push(Target {
            name,
            family: Family::Baseline,
            kind: Kind::Spawn(cmd),
        });
    }
    for a in &args.against {
        let (name, addr) = split_named(a, "--against")?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| Usage(format!("--against {name}: {addr:?} is not HOST:PORT")))?;
        if !addr.ip().is_loopback() {
            return Err(Usage(format!(
                "--against {name}: {addr} is not a loopback address; muse only loads 127.0.0.0/8 and ::1"
            ))
            .into());
        }
        list.push(Target {
            name,
            family: Family::Baseline,
            kind: Kind::Against(addr),
        });
    }
    if list.is_empty() {
        return Err(Usage("nothing to measure: give --arch, --spawn or --against".into()).into());
    }
    Ok(list)
}

/// Runs `muse bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let names = scenario::names(&args.protocol);
    let wanted = args
        .scenario
        .as_deref()
        .or(names.first().copied())
        .unwrap_or_default();
    let scenario = scenario::find(&args.protocol, wanted).ok_or_else(|| {
        Usage(format!(
            "no scenario {:?} for {} (there are: {})",
            wanted,
            args.protocol,
            names.join(", ")
        ))
    })?;
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(
                Usage("--rate wants a positive number of requests per second".into()).into(),
            );
        }
    }
    for (flag, path) in [("--json", &args.json), ("--svg", &args.svg)] {
        if let Some(path) = path {
            writable_dir(flag, path)?;
        }
    }
    let targets = targets(&args)?;
    let exe = std::env::current_exe().context("cannot find the muse executable")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = args.clients.map_or(scenario.clients, |n| n as usize);
    let duration = args.duration.unwrap_or(scenario.duration);
    if duration.is_zero() {
        return Err(Usage(
            "--duration wants more than 0 seconds: a run measures for that long".into(),
        )
        .into());
    }
    let repeat = args.repeat as usize;
    // Before any server starts, so that they inherit it too: the idle
    // scenario holds thousands of connections on both sides.
    load::raise_fd_limit(65_536);
    watch_for_interrupt()?;
    // Removed when dropped, whatever happens from here on (and by the
    // interrupt path, which exits without unwinding).
    let fixture = Fixture::create("root", &scenario.fixture)?;
    let certificate = match &scenario.tls {
        Some(tls) => Some(Certificate::make(tls.explicit)?),
        None => None,
    };

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut notes = Vec::new();
    let mut failed = 0;
    if scenario.durable() {
        for t in targets
            .iter()
            .filter(|t| matches!(t.kind, Kind::Against(_)))
        {
            notes.push(format!(
                "{}: not started by the bench, so not told to sync every write",
                t.name
            ));
        }
    }
    for r in 0..repeat {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let target = &targets[i];
            let label = format!("[{}/{}] {}", r + 1, repeat, target.name);
            let measured = measure(
                target,
                &exe,
                &args,
                &scenario,
                fixture.path(),
                certificate.as_ref(),
                clients,
                duration,
                cpus,
                &label,
            );
            exit_if_interrupted();
            match measured {
                Ok(mut run) => {
                    run.repeat = r;
                    runs[i].push(run);
                }
                Err(e) => {
                    let note = format!("{}: {e:#}", target.name);
                    eprintln!("muse bench: {note}");
                    notes.push(note);
                    failed += 1;
                }
            }
        }
    }

    let servers = targets
        .iter()
        .zip(runs)
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(t, runs)| report::server_result(t.name.clone(), t.family, runs))
        .collect();
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        protocol: args.protocol.clone(),
        scenario: scenario.name.to_string(),
        summary: scenario.summary.to_string(),
        clients,
        duration_seconds: duration.as_secs_f64(),
        rate: args.rate,
        repeat,
        cpus,
        noise: 0.0,
        ranked_by: Ranking::Rate,
        servers,
        notes,
        extra: BTreeMap::new(),
    };
    report::rank(&mut report);
    if scenario.workload.is_bulk() {
        throughput_notes(&mut report);
    }
    println!("{}", report::table(&report));
    if let Some(path) = &args.json {
        report::write_json(&report, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        report::write_svg(&report, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The table (and the files) keep what the other runs measured; the
    // exit status says that something did not run, so that a script
    // does not take a partial comparison for a whole one.
    if failed > 0 {
        bail!(
            "{failed} of {} runs failed (the reasons are above); the report leaves them out",
            targets.len() * repeat
        );
    }
    Ok(())
}

/// Refuses a report path whose directory does not exist (or is not a
/// directory) before any run, rather than after all of them.
fn writable_dir(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if path.is_dir() {
        return Err(Usage(format!("{flag} {}: is a directory", path.display())).into());
    }
    if !dir.is_dir() {
        return Err(Usage(format!(
            "{flag} {}: no directory {}",
            path.display(),
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// One run of one server: start, load while sampling, stop.
#[allow(clippy::too_many_arguments)]
fn measure(
    target: &Target,
    exe: &std::path::Path,
    args: &BenchArgs,
    scenario: &scenario::Scenario,
    root: &std::path::Path,
    certificate: Option<&Certificate>,
    clients: usize,
    duration: Duration,
    cpus: usize,
    label: &str,
) -> anyhow::Result<Run> {
    // A fresh directory per run, so that no run replays another's log;
    // removed once the server is stopped (it is declared first).
    let data = if scenario.durable() {
        Some(Fixture::create("data", &[])?)
    } else {
        None
    };
    let mut server = target.start(
        exe,
        &args.protocol,
        &args.serve_arg,
        Some(root),
        data.as_ref().map(Fixture::path),
        certificate.map(|c| &c.files),
    )?;
    let spec = load::LoadSpec {
        addr: server.addr,
        workload: scenario.workload.clone(),
        clients,
        threads: args.load_threads.map_or(cpus, |n| n as usize),
        warmup: args.warmup,
        duration,
        rate: args.rate,
        progress: Some(Arc::new(AtomicU64::new(0))),
        tls: match (&scenario.tls, certificate) {
            (Some(tls), Some(c)) => Some(load::LoadTls {
                cert: c.der.clone(),
                resume: tls.resume,
                alpn: tls.alpn.map(|a| a.as_bytes().to_vec()),
                explicit: tls.explicit,
            }),
            _ => None,
        },
    };
    let sampler = server.pid().map(|pid| Sampler::start(pid, args.warmup));
    let bar = Progress::start(label, args.warmup + duration, spec.progress.clone());
    let result = load::run(&spec);
    bar.finish();
    let stats = sampler.map(Sampler::finish).transpose()?;
    let crashed = server.has_exited();
    let tail = server.stderr_tail();
    server.stop();
    let load = result.with_context(|| format!("load on {}", target.name))?;
    if load.requests == 0 && load.errors.connect > 0 && load.errors.total() == load.errors.connect {
        bail!(
            "no connection to {} succeeded ({} attempts): is it serving there?",
            server.addr,
            load.errors.connect
        );
    }
    if crashed {
        bail!(
            "{} exited during the run{}",
            target.name,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        );
    }
    Ok(Run {
        repeat: 0,
        load,
        server: stats,
    })
}

/// A bulk scenario's figure, data throughput, as a note per server: the
/// median over its runs of bytes received / seconds (the table's req/s
/// counts whole transfers), and, where the server's CPU was measured, the
/// median over runs of bytes received / server CPU seconds.
fn throughput_notes(report: &mut Report) {
    for s in &report.servers {
        let rates: Vec<f64> = s
            .runs
            .iter()
            .filter(|r| r.load.seconds > 0.0)
            .map(|r| r.load.bytes as f64 / r.load.seconds)
            .collect();
        if rates.is_empty() {
            continue;
        }
        let per_cpu: Vec<f64> = s
            .runs
            .iter()
            .filter_map(|r| {
                let cpu = r.server.as_ref()?.cpu_seconds;
                (cpu > 0.0).then(|| r.load.bytes as f64 / cpu)
            })
            .collect();
        let mut note = format!(
            "{}: {:.0} MB/s of data received",
            s.name,
            upper_median(rates) / 1e6
        );
        if !per_cpu.is_empty() {
            let _ = write!(
                note,
                ", {:.0} MB per server CPU-second",
                upper_median(per_cpu) / 1e6
            );
        }
        note.push_str(" (median over runs)");
        if !report.notes.contains(&note) {
            report.notes.push(note);
        }
    }
}

/// The middle value, the upper one of the two middle values for an even
/// count; `v` must not be empty.
fn upper_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The directory of a scenario's files, unique to this bench, removed when
/// dropped (and, should the bench be interrupted, on its way out).
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    /// Creates the directory (`muse-bench-KIND-...`) under the system's
    /// temporary directory and writes each file: `size` bytes of
    /// [`scenario::fixture_pattern`], written through one reused buffer.
    fn create(kind: &str, files: &[(&str, u64)]) -> anyhow::Result<Fixture> {
        use std::io::Write;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "muse-bench-{kind}-{}-{stamp:x}",
            std::process::id()
        ));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the fixture directory {}", dir.display()))?;
        target::remove_on_exit(&dir);
        let fixture = Fixture { dir };
        if files.is_empty() {
            return Ok(fixture);
        }
        // Whole periods, so every write starts the pattern afresh.
        let pattern = scenario::fixture_pattern();
        let buf = pattern.repeat(16);
        for (name, size) in files {
            let path = fixture.dir.join(name);
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&path)?;
                let mut left = *size;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    file.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                Ok(())
            };
            write().with_context(|| format!("cannot write the fixture {}", path.display()))?;
        }
        Ok(fixture)
    }

    fn path(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        target::forget_on_exit(&self.dir);
    }
}

/// A TLS scenario's certificate, made once per bench: self-signed, for
/// `localhost` and 127.0.0.1, in a directory of its own removed when
/// dropped.
struct Certificate {
    files: target::TlsFiles,
    /// The certificate (DER), the one the load trusts.
    der: Vec<u8>,
    _dir: Fixture,
}

impl Certificate {
    fn make(explicit: bool) -> anyhow::Result<Certificate> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = Fixture::create("tls", &[])?;
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("cannot make the run's TLS certificate")?;
        let files = target::TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            explicit,
        };
        let write = |path: &std::path::Path, text: String, mode: u32| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write {}", path.display()))
        };
        write(&files.cert, made.cert.pem(), 0o644)?;
        write(&files.key, made.signing_key.serialize_pem(), 0o600)?;
        Ok(Certificate {
            files,
            der: made.cert.der().to_vec(),
            _dir: dir,
        })
    }
}

/// A progress bar for one run on stderr, showing elapsed time and the rate
/// so far. Hidden when stderr is not a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
    ticker: Option<std::thread::JoinHandle<()>>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Progress {
    fn start(label: &str, total: Duration, counter: Option<Arc<AtomicU64>>) -> Progress {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total.as_millis() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix:32} [{bar:30}] {elapsed:>3} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, d) = (bar.clone(), Arc::clone(&done));
        let ticker = std::thread::spawn(move || {
            let start = Instant::now();
            while !d.load(Ordering::Relaxed) {
                let elapsed = start.elapsed();
                b.set_position(elapsed.as_millis() as u64);
                if let Some(c) = &counter {
                    let n = c.load(Ordering::Relaxed);
                    b.set_message(format!(
                        "{:.0} req/s",
                        n as f64 / elapsed.as_secs_f64().max(1e-3)
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Progress {
            bar,
            ticker: Some(ticker),
            done,
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Set once the bench is interrupted: the runner stops after the current
/// run (which ends early) has stopped its server.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long an interrupted bench waits for the current run to wind down and
/// its server to stop gracefully before it kills every server it started.
const INTERRUPT_GRACE: Duration = Duration::from_secs(8);

/// On Ctrl-C (or `TERM`): end the current load run at once, let the runner
/// stop its server gracefully and exit 130; if that takes longer than
/// [`INTERRUPT_GRACE`], kill every server started and exit 130 anyway.
fn watch_for_interrupt() -> anyhow::Result<()> {
    signals::install().context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(|| loop {
            if signals::wait(None).is_err() {
                return;
            }
            let got = signals::take();
            if got.has(libc::SIGINT) || got.has(libc::SIGTERM) {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: no more waiting.
                    target::stop_all_and_exit(130);
                }
                eprintln!("muse bench: interrupted; stopping the servers");
                load::ABORT.store(true, Ordering::SeqCst);
                std::thread::spawn(|| {
                    std::thread::sleep(INTERRUPT_GRACE);
                    target::stop_all_and_exit(130);
                });
            }
        })?;
    Ok(())
}

/// Exits 130 if the bench was interrupted (its servers are stopped by then).
fn exit_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        target::stop_all_and_exit(130);
    }
}
