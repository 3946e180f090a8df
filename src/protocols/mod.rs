//! The protocols muse serves, each a sans-IO session (see `session.rs`),
//! and the table that builds one from the command line.

pub mod calc;
pub mod echo;
pub mod ftp;
pub mod http;
pub mod kv;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::root::Root;
use crate::session::Protocol;

/// The protocols `muse serve` knows, by command-line name.
pub const NAMES: &[&str] = &["echo", "kv", "ftp", "http", "calc"];

/// Protocol settings from the command line (each protocol reads those it
/// understands).
#[derive(Clone, Debug)]
pub struct Options {
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// The directory served (ftp).
    pub root: PathBuf,
    /// The virtual users file (ftp); `None`: anonymous read-only.
    pub users: Option<PathBuf>,
    /// Passive data ports (ftp), inclusive; `(0, 0)`: any.
    pub passive_ports: (u16, u16),
    /// The address advertised in PASV replies (ftp).
    pub masquerade: Option<IpAddr>,
    /// How long a data connection may move nothing (ftp; `None`: forever).
    pub data_timeout: Option<Duration>,
    /// How long a request head may take to arrive (http; `None`: forever).
    pub header_timeout: Option<Duration>,
    /// List directories without an index (http).
    pub autoindex: bool,
    /// Serve precompressed `.gz` sidecars (http).
    pub gzip_static: bool,
    /// Where the access log goes, `-` for stdout (http; `None`: nowhere).
    pub access_log: Option<PathBuf>,
    /// Serve names starting with `.` (http).
    pub dotfiles: bool,
    /// The most decimal digits an answer may have (calc).
    pub max_digits: u32,
    /// The password clients must give (kv).
    pub requirepass: Option<String>,
    /// Where kv keeps its log (`None`: no log).
    pub data_dir: Option<PathBuf>,
    /// When kv syncs its log.
    pub fsync: kv::aof::Fsync,
    /// kv's memory limit, bytes (0: none).
    pub maxmemory: u64,
    /// What kv does at its memory limit.
    pub maxmemory_policy: kv::engine::Policy,
    /// The architecture's name (kv's `INFO server`).
    pub arch: String,
    /// A TLS certificate is loaded (FTP offers `AUTH TLS`).
    pub tls: bool,
    /// `--require-tls`.
    pub require_tls: bool,
    /// The first listener's port (kv's `INFO server`).
    pub port: u16,
}

/// Builds the protocol named `name`. Fails, naming the path, when its root
/// or users file cannot be used: before anything listens.
pub fn build(name: &str, options: &Options) -> anyhow::Result<Box<dyn Protocol>> {
    match name {
        "echo" => Ok(Box::new(echo::Echo {
            idle_timeout: options.idle_timeout,
        })),
        "ftp" => {
            let root = Root::open(&options.root)?;
            let users = match &options.users {
                Some(path) => ftp::users::Users::load(path)?,
                None => ftp::users::Users::anonymous_read_only(),
            };
            // Every home must exist now, not at a user's first login.
            ftp::check_homes(&root, &users)
                .with_context(|| format!("under root {}", options.root.display()))?;
            let ftp = ftp::Ftp::new(
                root,
                users,
                options.users.clone(),
                ftp::FtpConfig {
                    passive_ports: options.passive_ports,
                    masquerade: options.masquerade,
                    idle_timeout: options.idle_timeout,
                    data_timeout: options.data_timeout,
                    tls: options.tls,
                    require_tls: options.require_tls,
                },
            )
            .context("cannot set up the login gate")?;
            Ok(Box::new(ftp))
        }
        "http" => {
            let root = Root::open(&options.root)?;
            let access_log = match &options.access_log {
                Some(path) => Some(std::sync::Arc::new(http::AccessLog::open(path)?)),
                None => None,
            };
            Ok(Box::new(http::Http::new(
                root,
                http::HttpConfig {
                    header_timeout: options.header_timeout,
                    idle_timeout: options.idle_timeout,
                    autoindex: options.autoindex,
                    gzip_static: options.gzip_static,
                    access_log,
                    dotfiles: options.dotfiles,
                },
            )))
        }
        "kv" => Ok(Box::new(kv::Kv::new(kv::KvConfig {
            idle_timeout: options.idle_timeout,
            store: kv::store::StoreConfig {
                requirepass: options.requirepass.as_ref().map(|p| p.as_bytes().to_vec()),
                timeout_secs: options.idle_timeout.map_or(0, |d| d.as_secs()),
                arch: options.arch.clone(),
                port: options.port,
                data_dir: options.data_dir.clone(),
                fsync: options.fsync,
                maxmemory: options.maxmemory,
                maxmemory_policy: options.maxmemory_policy,
            },
        }))),
        "calc" => Ok(Box::new(
            calc::Calc::new(calc::CalcConfig {
                max_digits: options.max_digits,
                idle_timeout: options.idle_timeout,
            })
            .context("cannot set up the computation gate")?,
        )),
        other => anyhow::bail!("unknown protocol {other:?}"),
    }
}
