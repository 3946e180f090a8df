//! FTPS (RFC 4217) under every architecture, with a rustls client: `AUTH
//! TLS` on the plain port (explicit) and TLS from the first byte on
//! `--tls-listen` (implicit); `PROT P` data connections in passive and
//! active mode, downloads and uploads byte-exact; `ABOR` under TLS;
//! `--require-tls` and `--tls-require-reuse` (the rustls client resumes the
//! control connection's session on its data connections, so it passes).

#[macro_use]
mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tls::Certs;

const PASSWORD: &str = "secret";

/// A TLS stream over a TCP connection, client side.
type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tls_client(config: &Arc<ClientConfig>, tcp: TcpStream) -> Tls {
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(
        ClientConnection::new(Arc::clone(config), name).unwrap(),
        tcp,
    )
}

/// An FTPS control connection.
struct Ftps {
    ctrl: Tls,
    config: Arc<ClientConfig>,
}

/// Reads one reply (multi-line ones whole) from `r`: code and text.
fn reply(r: &mut impl Read) -> Result<(u16, String), String> {
    let mut text = String::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        line.clear();
        while !line.ends_with(b"\r\n") {
            match r.read(&mut byte) {
                Ok(0) => return Err(format!("closed in a reply: {text}{line:?}")),
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(format!("reading a reply: {e}")),
            }
        }
        let l = String::from_utf8_lossy(&line).into_owned();
        text.push_str(&l);
        let code = l.get(..3).and_then(|c| c.parse::<u16>().ok());
        if let (Some(code), Some(b' ')) = (code, l.as_bytes().get(3)) {
            return Ok((code, text));
        }
    }
}

impl Ftps {
    /// Explicit FTPS: a plain connection, `AUTH TLS`, then TLS.
    fn explicit(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Ftps, String> {
        let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        expect(reply(&mut tcp)?, 220)?;
        tcp.write_all(b"AUTH TLS\r\n").map_err(|e| e.to_string())?;
        expect(reply(&mut tcp)?, 234)?;
        Ok(Ftps {
            ctrl: tls_client(config, tcp),
            config: Arc::clone(config),
        })
    }

    /// Implicit FTPS: TLS from the first byte.
    fn implicit(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Ftps, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let mut ftps = Ftps {
            ctrl: tls_client(config, tcp),
            config: Arc::clone(config),
        };
        expect(reply(&mut ftps.ctrl)?, 220)?;
        Ok(ftps)
    }

    fn cmd(&mut self, line: &str) -> Result<(u16, String), String> {
        self.ctrl
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("{line}: {e}"))?;
        reply(&mut self.ctrl)
    }

    fn expect(&mut self, line: &str, code: u16) -> Result<String, String> {
        let got = self.cmd(line)?;
        expect(got, code).map_err(|e| format!("{line}: {e}"))
    }

    /// Logs in as alice and asks for private data connections.
    fn login_private(&mut self) -> Result<(), String> {
        self.expect("USER alice", 331)?;
        self.expect(&format!("PASS {PASSWORD}"), 230)?;
        self.expect("PBSZ 0", 200)?;
        self.expect("PROT P", 200)?;
        self.expect("TYPE I", 200)?;
        Ok(())
    }

    /// Opens a data connection (passive, or active through a listener)
    /// and sends `line`; the TLS data stream once the server has said 150.
    fn transfer(&mut self, line: &str, active: bool) -> Result<Tls, String> {
        let tcp = if active {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = listener.local_addr().unwrap();
            let (h, p) = (a.ip().to_string().replace('.', ","), a.port());
            self.expect(&format!("PORT {h},{},{}", p >> 8, p & 0xff), 200)?;
            expect(self.cmd(line)?, 150)?;
            listener.set_nonblocking(false).unwrap();
            let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
            tcp
        } else {
            let text = self.expect("PASV", 227)?;
            let nums: Vec<u16> = text
                .split(['(', ')'])
                .nth(1)
                .ok_or_else(|| format!("PASV: {text}"))?
                .split(',')
                .map(|n| n.trim().parse().unwrap_or(0))
                .collect();
            let addr = SocketAddr::from((
                [nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8],
                nums[4] * 256 + nums[5],
            ));
            let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            expect(self.cmd(line)?, 150)?;
            tcp
        };
        Ok(tls_client(&self.config, tcp))
    }

    fn retr(&mut self, path: &str, active: bool) -> Result<Vec<u8>, String> {
        let mut data = self.transfer(&format!("RETR {path}"), active)?;
        let mut got = Vec::new();
        data.read_to_end(&mut got)
            .map_err(|e| format!("RETR {path} data: {e}"))?;
        expect(reply(&mut self.ctrl)?, 226)?;
        Ok(got)
    }

    fn stor(&mut self, path: &str, body: &[u8], active: bool) -> Result<(), String> {
        let mut data = self.transfer(&format!("STOR {path}"), active)?;
        data.write_all(body)
            .map_err(|e| format!("STOR data: {e}"))?;
        data.conn.send_close_notify();
        data.flush().map_err(|e| e.to_string())?;
        // The server answers close_notify with its own, then closes.
        let mut rest = Vec::new();
        let _ = data.read_to_end(&mut rest);
        expect(reply(&mut self.ctrl)?, 226)?;
        Ok(())
    }
}

fn expect(got: (u16, String), code: u16) -> Result<String, String> {
    if got.0 == code {
        Ok(got.1)
    } else {
        Err(format!("expected {code}, got {}", got.1.trim_end()))
    }
}

/// An ftp server over a root with `big.bin`, user alice (all
/// permissions), a plain and a TLS (implicit) listener.
fn ftps(arch: &str, dir: &TempRoot, certs: &Certs, extra: &[&str]) -> Server {
    dir.write("big.bin", &pseudo_random_bytes(11, 3 << 20));
    let hash = {
        let mut child = std::process::Command::new(muse_bin())
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let users = dir.base.join("users");
    std::fs::write(&users, format!("alice:{hash}:/:all\n")).unwrap();
    let tls_args = certs.args();
    let mut args = vec![
        "--root",
        dir.root_str(),
        "--users",
        users.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ];
    args.extend(tls_args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start("ftp", arch, &with_sizing(arch, &args))
}

arch_tests!(ftps_explicit_and_implicit_passive_and_active, |arch| {
    let dir = TempRoot::new("ftps", arch);
    let certs = Certs::new(&dir.base);
    let server = ftps(arch, &dir, &certs, &["--tls-require-reuse"]);
    let s = &server;
    let (plain, implicit) = (s.addrs()[0], s.addrs()[1]);
    let config = certs.client(&[]);
    let big = pseudo_random_bytes(11, 3 << 20);

    let mut ftp = Ftps::explicit(plain, &config).or_fail(s);
    ftp.login_private().or_fail(s);
    for active in [false, true] {
        let got = ftp.retr("big.bin", active).or_fail(s);
        if let Some(at) = first_difference(&big, &got) {
            s.fail(&format!(
                "RETR (active: {active}): {} bytes, first difference at {at}",
                got.len()
            ));
        }
        let up = pseudo_random_bytes(active as u64 + 20, 1 << 20);
        let name = format!("up-{active}.bin");
        ftp.stor(&name, &up, active).or_fail(s);
        if dir.read(&name).as_deref() != Some(&up[..]) {
            s.fail(&format!("STOR {name} (active: {active}) is not byte-exact"));
        }
    }
    ftp.expect("CCC", 533).or_fail(s);
    ftp.expect("QUIT", 221).or_fail(s);

    let mut ftp = Ftps::implicit(implicit, &config).or_fail(s);
    ftp.login_private().or_fail(s);
    let got = ftp.retr("up-true.bin", false).or_fail(s);
    assert_eq!(
        got,
        pseudo_random_bytes(21, 1 << 20),
        "{arch}: implicit RETR"
    );
});

arch_tests!(abor_under_tls, |arch| {
    let dir = TempRoot::new("ftps-abor", arch);
    let certs = Certs::new(&dir.base);
    let server = ftps(arch, &dir, &certs, &[]);
    // Far more than the socket buffers hold: the transfer is still
    // under way when ABOR comes.
    dir.sparse("huge.bin", 256 << 20);
    let s = &server;
    let mut ftp = Ftps::explicit(s.addrs()[0], &certs.client(&[])).or_fail(s);
    ftp.login_private().or_fail(s);
    let mut data = ftp.transfer("RETR huge.bin", false).or_fail(s);
    let mut some = [0u8; 4096];
    data.read_exact(&mut some).or_fail_io(s);
    // Stop reading; ABOR on the encrypted control connection.
    ftp.ctrl.write_all(b"ABOR\r\n").unwrap();
    let (first, _) = reply(&mut ftp.ctrl).or_fail(s);
    let (second, _) = reply(&mut ftp.ctrl).or_fail(s);
    if (first, second) != (426, 226) {
        s.fail(&format!(
            "ABOR under TLS: {first} then {second}, not 426 then 226"
        ));
    }
    drop(data);
    // The session goes on.
    let got = ftp.retr("big.bin", false).or_fail(s);
    assert_eq!(got.len(), 3 << 20);
});

trait OrFailIo<T> {
    fn or_fail_io(self, s: &Server) -> T;
}

impl<T> OrFailIo<T> for std::io::Result<T> {
    fn or_fail_io(self, s: &Server) -> T {
        self.unwrap_or_else(|e| s.fail(&e.to_string()))
    }
}

#[test]
fn require_tls_refuses_plain_logins_and_clear_data() {
    let dir = TempRoot::new("ftps", "require");
    let certs = Certs::new(&dir.base);
    let server = ftps("reactor", &dir, &certs, &["--require-tls"]);
    let s = &server;
    // USER before AUTH TLS: 530.
    let mut plain = TcpStream::connect(s.addrs()[0]).unwrap();
    plain.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    expect(reply(&mut plain).or_fail(s), 220).or_fail(s);
    plain.write_all(b"USER alice\r\n").unwrap();
    expect(reply(&mut plain).or_fail(s), 530).or_fail(s);
    // Under TLS: PROT C refused, and a transfer without PROT P too.
    let mut ftp = Ftps::explicit(s.addrs()[0], &certs.client(&[])).or_fail(s);
    ftp.expect("USER alice", 331).or_fail(s);
    ftp.expect(&format!("PASS {PASSWORD}"), 230).or_fail(s);
    ftp.expect("PROT P", 503).or_fail(s);
    ftp.expect("PBSZ 0", 200).or_fail(s);
    ftp.expect("PROT C", 536).or_fail(s);
    ftp.expect("PASV", 227).or_fail(s);
    ftp.expect("RETR big.bin", 521).or_fail(s);
    let feat = ftp.expect("FEAT", 211).or_fail(s);
    for f in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(feat.contains(f), "FEAT lacks {f}: {feat}");
    }
}
