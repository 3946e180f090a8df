//! TLS for the tests: certificates made here (rcgen), and a rustls client
//! that trusts them.

#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::common::IO_TIMEOUT;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as
/// `cert.pem` and `key.pem` in a directory.
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, for a client to trust.
    pub der: CertificateDer<'static>,
}

impl Certs {
    /// A new certificate and key in `dir` (replacing any there).
    pub fn new(dir: &Path) -> Certs {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("rcgen makes a certificate");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Certs {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    /// `--tls-cert CERT --tls-key KEY`.
    pub fn args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.to_str().unwrap().into(),
            "--tls-key".into(),
            self.key.to_str().unwrap().into(),
        ]
    }

    /// A client configuration that trusts this certificate only, offering
    /// `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A TLS client stream.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` with `config` and completes the handshake.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Tls, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    }
    Ok(tls)
}

/// Reads until `n` bytes have come.
pub fn read_exact(tls: &mut Tls, n: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    tls.read_exact(&mut buf)?;
    Ok(buf)
}
