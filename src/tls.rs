//! TLS for control connections: the server's certificate and the rustls
//! configuration every TLS connection of the process is made from.
//!
//! A listener given with `--tls-listen` speaks TLS from the first byte
//! (HTTPS, Redis over TLS); the connection core (`drivers/conn.rs`) runs a
//! `rustls::ServerConnection` between the socket and the session, which
//! sees only plaintext. rustls is itself sans-IO, so the same code serves
//! the blocking, evented and async drivers.
//!
//! The configuration is process-wide: loaded once before anything listens
//! ([`configure`]; a bad file stops the server with exit 1, naming it), and
//! reloaded on `SIGHUP` ([`reload`]) without touching a connection: each
//! new connection takes the configuration current when it is accepted.
//!
//! Crypto provider: aws-lc-rs, rustls's default. It offers the hybrid
//! post-quantum key exchange browsers now use (X25519MLKEM768, which
//! *ring* lacks and for which rustls deprecated it), and faster RSA and
//! ECDSA signing, which is what a handshake-heavy load spends its time on.
//! Its cost is build time: its C library adds about 45 s to a clean build
//! on two cores, against 15 s for *ring*, paid once per clean build. Bulk
//! encryption (AES-GCM, ChaCha20) is assembly in both. TLS 1.2 and 1.3
//! only.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// How long a client may take to finish its handshake before the
/// connection is closed, unless `--tls-handshake-timeout` says otherwise:
/// a client that opens a TLS connection and sends nothing, or stops
/// halfway, must not hold a blocking worker.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `--tls-handshake-timeout`, in milliseconds (0: [`HANDSHAKE_TIMEOUT`]).
static HANDSHAKE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the handshake deadline (`--tls-handshake-timeout`).
pub fn set_handshake_timeout(timeout: std::time::Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    HANDSHAKE_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// How long a handshake may take.
pub fn handshake_timeout() -> std::time::Duration {
    match HANDSHAKE_MS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => HANDSHAKE_TIMEOUT,
        ms => std::time::Duration::from_millis(ms),
    }
}

/// `--tls-require-reuse`: a TLS data connection must resume a session.
static REQUIRE_REUSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets `--tls-require-reuse`: FTP data connections that do not resume a
/// TLS session (the control connection's, for a well-behaved client) are
/// refused, so that a stranger who connects to a passive port first cannot
/// take the transfer.
pub fn set_require_reuse(on: bool) {
    REQUIRE_REUSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--tls-require-reuse` is on.
pub fn require_reuse() -> bool {
    REQUIRE_REUSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether TLS is configured (a certificate is loaded).
pub fn is_configured() -> bool {
    TLS.get().is_some()
}

/// The process's TLS settings, once configured.
static TLS: OnceLock<Tls> = OnceLock::new();

struct Tls {
    cert: PathBuf,
    key: PathBuf,
    alpn: Vec<Vec<u8>>,
    /// For control connections, and for data connections.
    current: Mutex<(Arc<ServerConfig>, Arc<ServerConfig>)>,
}

/// Loads the certificate chain and key and makes TLS available to this
/// process's connections. `alpn` lists the protocols offered
/// (`http/1.1` for HTTPS; empty for others).
pub fn configure(cert: &Path, key: &Path, alpn: Vec<Vec<u8>>) -> anyhow::Result<()> {
    let config = with_data(load(cert, key, &alpn)?);
    let tls = Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        alpn,
        current: Mutex::new(config),
    };
    if TLS.set(tls).is_err() {
        bail!("TLS is configured already");
    }
    Ok(())
}

/// Reads the certificate and key files again (`SIGHUP`). On success new
/// connections use them; on an error the loaded ones stay. `Ok(None)`: no
/// TLS configured.
pub fn reload() -> Result<Option<String>, String> {
    let Some(tls) = TLS.get() else {
        return Ok(None);
    };
    match load(&tls.cert, &tls.key, &tls.alpn) {
        Ok(config) => {
            *tls.current.lock().unwrap_or_else(|e| e.into_inner()) = with_data(config);
            Ok(Some(format!(
                "tls: reloaded the certificate {}",
                tls.cert.display()
            )))
        }
        Err(e) => Err(format!(
            "tls: cannot reload: {e:#}; keeping the certificate loaded"
        )),
    }
}

/// A server-side TLS connection with the current configuration; `None` if
/// TLS is not configured.
pub fn accept() -> Option<io::Result<rustls::ServerConnection>> {
    let tls = TLS.get()?;
    let config = Arc::clone(&tls.current.lock().unwrap_or_else(|e| e.into_inner()).0);
    Some(rustls::ServerConnection::new(config).map_err(io::Error::other))
}

/// Like [`accept`], for an FTP upload's data connection: no session
/// tickets are sent on it, because a client that uploads never reads them,
/// and closing a socket with unread bytes resets it, which can cut off the
/// end of the upload. (A download's data connection sends tickets: the
/// client reads everything there, and a client that uses each ticket once
/// needs new ones to resume the next data connection.)
pub fn accept_data() -> Option<io::Result<rustls::ServerConnection>> {
    let tls = TLS.get()?;
    let config = Arc::clone(&tls.current.lock().unwrap_or_else(|e| e.into_inner()).1);
    Some(rustls::ServerConnection::new(config).map_err(io::Error::other))
}

/// The control configuration and its data-connection twin (the same
/// certificate, ticket keys and session cache; no tickets sent).
fn with_data(control: Arc<ServerConfig>) -> (Arc<ServerConfig>, Arc<ServerConfig>) {
    let mut data = (*control).clone();
    data.send_tls13_tickets = 0;
    (control, Arc::new(data))
}

/// A configuration from the PEM files `cert` (the chain, leaf first) and
/// `key` (PKCS#8, PKCS#1 or SEC1).
fn load(cert: &Path, key: &Path, alpn: &[Vec<u8>]) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "the key {} does not match the certificate {}",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = alpn.to_vec();
    // Tickets let a client resume (and FTP data connections reuse) a
    // session without a full handshake.
    config.ticketer = aws_lc_rs::Ticketer::new().context("TLS session tickets")?;
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file = File::open(path)
        .with_context(|| format!("cannot open the certificate {}", path.display()))?;
    let chain = CertificateDer::pem_reader_iter(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read the certificate {}", path.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(chain)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let file =
        File::open(path).with_context(|| format!("cannot open the key {}", path.display()))?;
    PrivateKeyDer::from_pem_reader(BufReader::new(file))
        .with_context(|| format!("no private key in {}", path.display()))
}
