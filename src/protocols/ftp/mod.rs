//! `ftp`: an FTP server (RFC 959, with the extensions real clients use:
//! RFC 2389 FEAT, RFC 2428 EPRT/EPSV, RFC 3659 MLST/MLSD/SIZE/MDTM/REST).
//!
//! - [`wire`]: command lines, replies, addresses and listings as bytes;
//! - [`users`]: the virtual users file and password hashes;
//! - [`gate`]: the bound on password checks under way, across processes;
//! - [`listing`]: directory listings made in bounded batches off the loop;
//! - [`session`]: one control connection's state machine.
//!
//! Files are reached only through [`crate::root::Root`]; data connections
//! belong to the driver (see `session.rs`).

pub mod listing;
pub mod session;
pub mod users;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::root::{Root, VPath};
use crate::session::{ConnInfo, Protocol, Session};

/// The FTP server's settings.
#[derive(Clone, Debug)]
pub struct FtpConfig {
    /// Passive data ports to choose from (inclusive; `(0, 0)`: any).
    pub passive_ports: (u16, u16),
    /// The address advertised in PASV replies instead of the control
    /// connection's local address (a server behind NAT).
    pub masquerade: Option<IpAddr>,
    /// Close a control connection idle this long (`421 Timeout.`).
    pub idle_timeout: Option<Duration>,
    /// Abort a transfer whose data connection moves nothing this long
    /// (`426`; vsftpd's `data_connection_timeout`).
    pub data_timeout: Option<Duration>,
    /// A certificate is loaded: `AUTH TLS`, `PBSZ` and `PROT` are offered.
    pub tls: bool,
    /// `--require-tls`: `USER` only after `AUTH TLS` (or on a TLS
    /// listener), and transfers only with `PROT P` (vsftpd's
    /// `force_local_logins_ssl` and `force_local_data_ssl`).
    pub require_tls: bool,
}

/// The FTP protocol: one root, one set of users, shared by every session.
pub struct Ftp {
    root: Arc<Root>,
    /// The users new sessions log in against; `SIGHUP` replaces them with
    /// the users file read again ([`Protocol::reload`]), and a session keeps
    /// the set it started with.
    users: Mutex<Arc<users::Users>>,
    /// The users file (`None`: anonymous read-only access, nothing to read).
    users_file: Option<PathBuf>,
    config: Arc<FtpConfig>,
    gate: crate::gate::Gate,
}

impl Ftp {
    /// An FTP server over `root` for `users`. Called before any fork: the
    /// login gate is memory every worker process shares.
    /// `users_file` is where `users` came from, read again on `SIGHUP`.
    pub fn new(
        root: Root,
        users: users::Users,
        users_file: Option<PathBuf>,
        config: FtpConfig,
    ) -> std::io::Result<Ftp> {
        let gate =
            crate::gate::Gate::new(crate::gate::default_total(), crate::gate::DEFAULT_PER_IP)?;
        Ok(Ftp {
            root: Arc::new(root),
            users: Mutex::new(Arc::new(users)),
            users_file,
            config: Arc::new(config),
            gate,
        })
    }
}

impl Protocol for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(session::FtpSession::new(
            Arc::clone(&self.root),
            self.users(),
            Arc::clone(&self.config),
            self.gate,
            *info,
            now,
        ))
    }

    fn refusal(&self) -> &[u8] {
        session::REFUSAL
    }

    fn reload(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.users_file else {
            return Ok(None);
        };
        let loaded = users::Users::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|users| check_homes(&self.root, &users).map(|()| users));
        match loaded {
            Ok(users) => {
                let n = users.len();
                *self.users.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
                Ok(Some(format!(
                    "ftp: reloaded {n} user(s) from {}",
                    path.display()
                )))
            }
            Err(e) => Err(format!(
                "ftp: cannot reload the users file: {e:#}; keeping the {} user(s) loaded",
                self.users().len()
            )),
        }
    }
}

impl Ftp {
    /// The users new sessions log in against.
    fn users(&self) -> Arc<users::Users> {
        Arc::clone(&self.users.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Checks that every user's home exists under `root`, naming the first
/// that does not.
pub fn check_homes(root: &Root, users: &users::Users) -> anyhow::Result<()> {
    use anyhow::Context;
    for user in users.iter() {
        VPath::resolve(&VPath::root(), user.home.as_bytes())
            .map_err(anyhow::Error::from)
            .and_then(|home| root.subroot(&home).map_err(anyhow::Error::from))
            .with_context(|| format!("home {} of user {}", user.home, user.name))?;
    }
    Ok(())
}
