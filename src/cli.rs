//! The command line (DESIGN.md §5): flags are parsed by clap into plain
//! structs ([`Cli`]), then checked and turned into a [`Config`] and a
//! protocol. Bad arguments exit 2 (clap's convention); run-time failures
//! (a port in use) exit 1 with the reason.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::accept::Strategy;
use crate::archs::Arch;
use crate::net::ListenAddr;
use crate::protocols;
use crate::scoreboard::MAX_WORKERS;
use crate::server::{Config, MaxRequests, Server};

/// One protocol, every server architecture.
#[derive(Parser, Debug)]
#[command(name = "muse", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a protocol under one architecture.
    Serve(ServeArgs),
    /// Measure architectures (and other servers) side by side under load.
    Bench(crate::bench::BenchArgs),
    /// List the architectures, one per line: name, then what it does.
    Archs,
    /// Read a password on stdin and print its hash for an ftp users file.
    Passwd,
}

/// The largest `--max-worker-memory`, in MiB (16 TiB): more than any
/// machine has, and far from where its byte count would overflow.
const MAX_WORKER_MEMORY_MIB: u64 = 1 << 24;

/// `muse serve` flags, as typed.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The protocol to serve.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(protocols::NAMES))]
    protocol: String,
    /// The concurrency architecture (see `muse archs`).
    #[arg(long, default_value = "multi-reactor", value_parser = arch_names())]
    arch: String,
    /// Where to listen; repeat for several: HOST:PORT (port 0 picks a free
    /// port), unix:PATH (a socket file; not for ftp) or fd://N (an
    /// inherited listening socket). [default: the sockets systemd passes
    /// (LISTEN_FDS), else 127.0.0.1 on the protocol's port: echo 7007, kv
    /// 6380, ftp 2121, http 8080, calc 7070]
    #[arg(long, value_name = "ADDR")]
    listen: Vec<ListenAddr>,
    /// The permissions of unix: socket files, in octal.
    #[arg(long, value_name = "MODE", default_value = "666", value_parser = parse_mode)]
    unix_mode: u32,
    /// Worker processes for the prefork family [default: per architecture,
    /// from the CPU count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_WORKERS as i64))]
    workers: Option<u32>,
    /// Threads: pool size, reactors or tokio workers [default: per
    /// architecture, from the CPU count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: Option<u32>,
    /// Connections open at once; more are refused with the protocol's own
    /// refusal.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Connections open at once from one client address; more are refused
    /// like those over --max-connections [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_per_ip: Option<u32>,
    /// Close a connection idle this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    idle_timeout: Duration,
    /// On SIGTERM/SIGINT, wait this many seconds for open connections.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    shutdown_timeout: Duration,
    /// ftp, http: the directory served [default: the current directory].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// ftp: virtual users, `name:hash:home:permissions` per line (see the
    /// README) [default: anonymous, read-only].
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// ftp: the ports passive data connections use, A-B [default: any].
    #[arg(long, value_name = "A-B", value_parser = parse_port_range)]
    passive_ports: Option<(u16, u16)>,
    /// ftp: the address PASV replies advertise (a server behind NAT).
    #[arg(long, value_name = "IP")]
    masquerade: Option<IpAddr>,
    /// ftp: abort a transfer whose data connection moves nothing for this
    /// many seconds, with 426 (0: never).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_secs)]
    data_timeout: Duration,
    /// http: close a client that has not sent a whole request head this
    /// many seconds after its first byte, with 408 (slowloris; 0: never).
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_secs)]
    header_timeout: Duration,
    /// http: list directories that have no index.html.
    #[arg(long)]
    autoindex: bool,
    /// http: serve NAME.gz, where it exists, for NAME to clients that accept
    /// gzip.
    #[arg(long)]
    gzip_static: bool,
    /// http: serve files and directories whose names start with `.` (by
    /// default they are 404 and unlisted, `.well-known` excepted).
    #[arg(long)]
    dotfiles: bool,
    /// http: write an access log (combined format) to FILE, or stdout for
    /// `-` [default: none].
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// calc: refuse answers longer than this many decimal digits.
    #[arg(long, value_name = "N", default_value_t = protocols::calc::expr::DEFAULT_MAX_DIGITS, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    max_digits: u32,
    /// kv: clients must `AUTH` with this password first (Redis's
    /// `requirepass`).
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
    /// kv: keep an append-only log in DIR, replayed at start
    /// [default: no log, nothing survives a restart].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// kv: when the log is synced to the disk: `always` (before a write is
    /// answered), `everysec` or `no`.
    #[arg(long, value_name = "POLICY", default_value = "everysec")]
    fsync: protocols::kv::aof::Fsync,
    /// kv: the memory the store may use, in bytes or with a unit as Redis
    /// takes it (`100mb`, `1gb`, `500k`; 0: no limit). Counted as Redis
    /// counts `used_memory`: the allocator's live bytes.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_bytes)]
    maxmemory: u64,
    /// kv: what happens at --maxmemory: `noeviction` refuses commands that
    /// may grow memory; the others evict keys (`allkeys-*` any key,
    /// `volatile-*` keys with an expiry; `lru` the least recently used,
    /// `lfu` the least frequently used, `random`, `ttl` the nearest
    /// expiry).
    #[arg(long, value_name = "POLICY", default_value = "noeviction", value_parser = policy_names())]
    maxmemory_policy: String,
    /// Kill a prefork worker that shows no sign of life for this many
    /// seconds (at least 2: an idle worker shows one once a second).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_worker_timeout)]
    worker_timeout: Duration,
    /// Every connection opens with a PROXY protocol header (v1 or v2) naming
    /// the real client, as HAProxy's `send-proxy` and nginx's `stream`
    /// `proxy_protocol on` send it; one without a valid header within
    /// --header-timeout is closed.
    #[arg(long)]
    proxy_protocol: bool,
    /// Also listen here with TLS from the first byte (HTTPS, Redis over
    /// TLS); repeat for several. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Vec<ListenAddr>,
    /// The TLS certificate chain, PEM, leaf first (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve nothing in plain text: only --tls-listen listeners (ftp: a
    /// client must send AUTH TLS before USER, and PROT P before a
    /// transfer).
    #[arg(long)]
    require_tls: bool,
    /// Close a TLS connection whose handshake is not over this many
    /// seconds after it began (0 keeps the default).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    tls_handshake_timeout: Duration,
    /// ftp: refuse a TLS data connection that does not resume a TLS
    /// session (the defence against a stranger taking a passive port; some
    /// clients, Python's ftplib among them, do not resume).
    #[arg(long)]
    tls_require_reuse: bool,
    /// Recycle a prefork worker whose resident memory passes this many MiB:
    /// it stops accepting, finishes its connections and is replaced (at
    /// most 16 TiB, 16777216).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=MAX_WORKER_MEMORY_MIB))]
    max_worker_memory: Option<u64>,
    /// Recycle a prefork worker after it has served this many requests
    /// (an HTTP response, a kv reply, a calc answer, an ftp reply, an echo
    /// chunk): it stops accepting, finishes its connections (answering
    /// what their clients had already sent: an HTTP keep-alive client gets
    /// one more answer, with `Connection: close`) and is replaced
    /// [default: never].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: Option<u64>,
    /// With --max-requests N: each worker's limit is drawn at its start
    /// from N to N+J, so that workers started together do not all recycle
    /// at once.
    #[arg(long, value_name = "J", default_value_t = 0, requires = "max_requests")]
    max_requests_jitter: u64,
    /// How prefork workers get their connections: `shared` (all accept on
    /// the master's listeners), `reuseport` (each worker has its own
    /// SO_REUSEPORT listeners; IP addresses only) or `handoff` (the master
    /// accepts and passes each connection to the least-loaded worker).
    #[arg(long, value_name = "STRATEGY", default_value = "shared", value_parser = accept_names())]
    accept: String,
}

fn accept_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Strategy::ALL.map(Strategy::name))
}

fn policy_names() -> clap::builder::PossibleValuesParser {
    use protocols::kv::engine::Policy;
    clap::builder::PossibleValuesParser::new(Policy::ALL.map(Policy::name))
}

/// Parses a memory size as Redis takes one (`100mb`, `1gb`, plain bytes).
fn parse_bytes(s: &str) -> Result<u64, String> {
    protocols::kv::engine::parse_memory(s).ok_or_else(|| {
        format!(
            "{s:?} is not a memory size: bytes, or a number with a unit \
             b, k, kb, m, mb, g or gb (k = 1000, kb = 1024)"
        )
    })
}

fn arch_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Arch::ALL.map(Arch::name))
}

/// Parses a number of seconds (fractions allowed) for a flag.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is not a number of seconds from 0 to 1e9"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--worker-timeout`: seconds, at least [`MIN_WORKER_TIMEOUT`].
fn parse_worker_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_secs(s)?;
    if d < MIN_WORKER_TIMEOUT {
        return Err(format!(
            "{s:?} is under {} seconds: an idle worker shows a sign of life once a \
             second, so a shorter timeout kills healthy workers",
            MIN_WORKER_TIMEOUT.as_secs()
        ));
    }
    Ok(d)
}

/// The shortest `--worker-timeout`: two of the loops' one-second ticks.
const MIN_WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses file permissions in octal (`660`, `0600`).
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not a mode in octal, 0 to 777"))
}

/// Parses a port range `A-B` (1 ≤ A ≤ B).
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range A-B with 1 <= A <= B <= 65535");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// The protocol's default port (DESIGN.md §5).
fn default_port(protocol: &str) -> u16 {
    match protocol {
        "kv" => 6380,
        "ftp" => 2121,
        "http" => 8080,
        "calc" => 7070,
        _ => 7007,
    }
}

/// A mistake in the command line found after parsing (a name that must be
/// looked up, a combination of flags): reported like clap's errors, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The flags given (not defaulted), to tell a protocol's flag given to
    // another protocol.
    let given: Vec<String> = matches
        .subcommand_matches("serve")
        .map(|m| {
            m.ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.as_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    let result = match cli.command {
        Command::Archs => {
            print_archs();
            Ok(())
        }
        Command::Serve(args) => serve(args, &given),
        Command::Bench(args) => crate::bench::run(args),
        Command::Passwd => passwd(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muse: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `muse passwd`: reads a password (without echo on a terminal) and prints
/// its hash for a `--users` file. The password is never an argument, so it
/// never shows in the process list.
fn passwd() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let echo = if stdin.is_terminal() {
        eprint!("Password: ");
        crate::sys::EchoOff::new()
    } else {
        None
    };
    let result = protocols::ftp::users::passwd_main(stdin.lock(), std::io::stdout().lock());
    drop(echo);
    result
}

fn print_archs() {
    let width = Arch::ALL.iter().map(|a| a.name().len()).max().unwrap_or(0);
    for a in Arch::ALL {
        println!("{:width$}  {}", a.name(), a.describe());
    }
}

/// Flags that only some protocols read: (argument id, protocols). A
/// flag is its id with dashes for underscores ([`flag`]).
const PROTOCOL_FLAGS: &[(&str, &[&str])] = &[
    ("root", &["ftp", "http"]),
    ("users", &["ftp"]),
    ("passive_ports", &["ftp"]),
    ("masquerade", &["ftp"]),
    ("data_timeout", &["ftp"]),
    ("tls_require_reuse", &["ftp"]),
    // Also read with --proxy-protocol, by every protocol (`check_flags`).
    ("header_timeout", &["http"]),
    ("autoindex", &["http"]),
    ("gzip_static", &["http"]),
    ("dotfiles", &["http"]),
    ("access_log", &["http"]),
    ("max_digits", &["calc"]),
    ("requirepass", &["kv"]),
    ("data_dir", &["kv"]),
    ("fsync", &["kv"]),
    ("maxmemory", &["kv"]),
    ("maxmemory_policy", &["kv"]),
];

/// Whether an architecture reads a flag.
type Reads = fn(Arch) -> bool;

/// Flags that only some architectures read: (argument id, whether `arch`
/// reads it).
const ARCH_FLAGS: &[(&str, Reads)] = &[
    ("workers", Arch::is_prefork),
    ("threads", Arch::has_threads),
    ("max_requests", Arch::is_prefork),
    ("max_worker_memory", Arch::is_prefork),
    ("worker_timeout", Arch::is_prefork),
];

/// A flag of another protocol is a mistake (exit 2). A flag the
/// architecture does not read is only warned about: `muse bench
/// --serve-arg` gives one set of flags to every architecture it starts.
fn check_flags(protocol: &str, arch: Arch, proxied: bool, given: &[String]) -> anyhow::Result<()> {
    for (id, protocols) in PROTOCOL_FLAGS {
        // --header-timeout also bounds the wait for a PROXY header, in
        // every protocol.
        let read_by_proxy = *id == "header_timeout" && proxied;
        if given.iter().any(|g| g == id) && !protocols.contains(&protocol) && !read_by_proxy {
            return Err(Usage(format!(
                "{} is for {}; {protocol} does not read it",
                flag(id),
                protocols.join(" and ")
            ))
            .into());
        }
    }
    for (id, reads) in ARCH_FLAGS {
        if given.iter().any(|g| g == id) && !reads(arch) {
            crate::log::warn(format_args!(
                "{} does nothing under {} (see `muse archs`)",
                flag(id),
                arch.name()
            ));
        }
    }
    Ok(())
}

/// The command-line flag of a `serve` argument id (clap's long name).
fn flag(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

fn serve(args: ServeArgs, given: &[String]) -> anyhow::Result<()> {
    let arch = Arch::from_name(&args.arch).expect("clap checked the name");
    check_flags(&args.protocol, arch, args.proxy_protocol, given)?;
    if arch.is_proactor() {
        // Before anything is bound or forked: a clear reason, exit 1.
        if let Err(why) = crate::drivers::proactor::available() {
            anyhow::bail!("{} cannot run here: {why}", arch.name());
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A hot restart's successor takes over its predecessor's sockets; with
    // no --listen, as they are (they came from systemd or the default).
    let successor = crate::restart::inherited().context("cannot start the server")?;
    let listen = if let (true, Some(groups)) = (args.listen.is_empty(), &successor) {
        // The old server's plain listeners come first, its TLS ones after.
        let plain = groups[0].len().saturating_sub(args.tls_listen.len());
        groups[0][..plain]
            .iter()
            .map(|&fd| ListenAddr::Fd(fd))
            .collect()
    } else if args.listen.is_empty() {
        let inherited = crate::net::systemd_listeners().map_err(anyhow::Error::msg)?;
        if !inherited.is_empty() {
            inherited
        } else if !args.tls_listen.is_empty() {
            // TLS only: no plain default beside it.
            Vec::new()
        } else {
            vec![ListenAddr::Ip(SocketAddr::from((
                [127, 0, 0, 1],
                default_port(&args.protocol),
            )))]
        }
    } else {
        args.listen
    };
    if args.protocol == "ftp" {
        let mut every = listen.iter().chain(&args.tls_listen);
        if let Some(a) = every.find(|a| matches!(a, ListenAddr::Unix(_))) {
            anyhow::bail!("ftp cannot listen on {a}: its data connections need IP addresses");
        }
        if args.require_tls && args.tls_cert.is_none() {
            anyhow::bail!("--require-tls needs --tls-cert and --tls-key");
        }
    }
    if args.require_tls && args.protocol != "ftp" {
        if let Some(a) = listen.first() {
            anyhow::bail!(
                "--require-tls: {a} is a plain listener; {} is served over TLS only (--tls-listen)",
                args.protocol
            );
        }
        if args.tls_listen.is_empty() {
            anyhow::bail!("--require-tls needs a --tls-listen address");
        }
    }
    crate::tls::set_require_reuse(args.tls_require_reuse);
    if !args.tls_handshake_timeout.is_zero() {
        crate::tls::set_handshake_timeout(args.tls_handshake_timeout);
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let alpn = match args.protocol.as_str() {
                "http" => vec![b"http/1.1".to_vec()],
                _ => Vec::new(),
            };
            crate::tls::configure(cert, key, alpn).context("cannot start the server")?;
        }
        (None, None) if args.tls_listen.is_empty() => {}
        _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
    }
    let accept = Strategy::from_name(&args.accept).expect("clap checked the name");
    if accept != Strategy::Shared && !arch.is_prefork() {
        return Err(Usage(format!(
            "--accept {} is for the prefork family (prefork, prefork-threads, \
             prefork-reactor); {} accepts its own way",
            accept.name(),
            arch.name()
        ))
        .into());
    }
    if accept == Strategy::ReusePort {
        if let Some(a) = listen.iter().find(|a| !a.is_ip()) {
            return Err(Usage(format!(
                "--accept reuseport binds a listener per worker, which {a} cannot have \
                 (only HOST:PORT addresses can); use --accept shared or handoff"
            ))
            .into());
        }
    }
    let config = Config {
        accept,
        arch,
        listen,
        tls_listen: args.tls_listen,
        unix_mode: args.unix_mode,
        workers: args
            .workers
            .map_or(arch.default_workers(cpus), |n| n as usize),
        threads: args
            .threads
            .map_or(arch.default_threads(cpus), |n| n as usize),
        max_connections: args.max_connections as usize,
        // Behind a PROXY balancer every connection comes from the
        // balancer: the limit applies to the client its header names.
        max_per_ip: match args.max_per_ip {
            Some(n) if !args.proxy_protocol => n as usize,
            _ => usize::MAX,
        },
        shutdown_timeout: args.shutdown_timeout,
        worker_timeout: args.worker_timeout,
        max_worker_memory: args.max_worker_memory.map(|mib| mib << 20),
        max_requests: args.max_requests.map(|base| MaxRequests {
            base,
            jitter: args.max_requests_jitter,
        }),
    };
    let root = match args.root {
        Some(root) => root,
        None => std::env::current_dir().context("cannot find the current directory")?,
    };
    let options = protocols::Options {
        idle_timeout: Some(args.idle_timeout).filter(|d| !d.is_zero()),
        root,
        users: args.users,
        passive_ports: args.passive_ports.unwrap_or((0, 0)),
        masquerade: args.masquerade,
        data_timeout: Some(args.data_timeout).filter(|d| !d.is_zero()),
        header_timeout: Some(args.header_timeout).filter(|d| !d.is_zero()),
        autoindex: args.autoindex,
        gzip_static: args.gzip_static,
        access_log: args.access_log,
        dotfiles: args.dotfiles,
        max_digits: args.max_digits,
        requirepass: args.requirepass,
        data_dir: args.data_dir,
        fsync: args.fsync,
        maxmemory: args.maxmemory,
        maxmemory_policy: protocols::kv::engine::Policy::from_name(&args.maxmemory_policy)
            .expect("clap checked the name"),
        arch: arch.name().to_string(),
        tls: crate::tls::is_configured(),
        require_tls: args.require_tls,
        port: config
            .listen
            .iter()
            .find_map(|a| match a {
                ListenAddr::Ip(ip) => Some(ip.port()),
                _ => None,
            })
            .unwrap_or(0),
    };
    let mut protocol = protocols::build(&args.protocol, &options)?;
    if args.proxy_protocol {
        let timeout = Some(args.header_timeout)
            .filter(|d| !d.is_zero())
            .unwrap_or(crate::proxy::DEFAULT_TIMEOUT);
        let per_ip = args.max_per_ip.map(|n| n as usize);
        protocol = Box::new(crate::proxy::Proxied::new(protocol, timeout, per_ip));
    }
    let server =
        Server::bind_inheriting(config, protocol, successor).context("cannot start the server")?;
    server.run().context("server failed")
}
