//! TLS between a control socket and its session: the connection core's
//! half of `--tls-listen` (the certificate is `tls.rs`'s).
//!
//! A [`Secure`] wraps a `rustls::ServerConnection`, which is sans-IO: the
//! core feeds it ciphertext from the socket ([`Secure::read_socket`]) and
//! takes plaintext for the session ([`Secure::plaintext`]), and gives it
//! the session's output to encrypt ([`Secure::encrypt`],
//! [`Secure::encrypt_file`]) and sends the records
//! ([`Secure::send_records`]). Memory stays bounded:
//! ciphertext is read only while rustls wants more (it stops while the
//! session has not taken the plaintext it has), and output is encrypted one
//! record's worth at a time, only once the records before it are in the
//! socket. A file body, which goes out with `sendfile` on a plain socket,
//! is read here in record-sized pieces and encrypted, within the same
//! per-turn budget. The handshake has a deadline of its own
//! ([`crate::tls::handshake_timeout`]).
//!
//! Kernel TLS belongs here, after the handshake: where the kernel offers
//! the `tls` upper-layer protocol, rustls can hand over the traffic secrets
//! (`dangerous_extract_secrets`, with the `secret_extraction` feature) to
//! set as `TLS_TX`/`TLS_RX` on the socket, and from then on the core's plain
//! paths, `sendfile` included, would carry the records. It is not built:
//! this machine's kernel lacks `tls` in `/proc/sys/net/ipv4/tcp_available_ulp`,
//! so the record-at-a-time encryption here is what runs and what the bench
//! measures.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rustls::ServerConnection;

use crate::sys;

/// Plaintext encrypted at a time: one TLS record's worth.
pub const RECORD: usize = 16 * 1024;

/// A control connection's TLS.
pub struct Secure {
    conn: Box<ServerConnection>,
    /// The handshake must be over by then.
    pub handshake_deadline: Instant,
    /// `close_notify` has been queued.
    closed: bool,
}

/// What reading the socket did.
pub enum Took {
    /// This many bytes of ciphertext came in (and were decrypted).
    Some(usize),
    /// This many came in, fewer than the read asked for: the socket had no
    /// more (a new arrival raises a new edge). How much rustls asks for
    /// varies (its deframer offers what is left of its buffer, as little as
    /// a few bytes when a record is almost whole), so only the read itself
    /// can say.
    Short(usize),
    /// The socket would block: wait for readiness.
    Drained,
    /// The socket's end.
    End,
    /// Nothing: rustls holds plaintext the session has not taken yet.
    Full,
}

/// What the session's next plaintext is.
pub enum Plain {
    /// `n` bytes in the scratch buffer.
    Data(usize),
    /// None until more ciphertext arrives.
    Empty,
    /// The client's stream ended (`close_notify`, or the socket's end).
    End,
}

/// The socket, as rustls reads and writes it.
struct Sock {
    fd: RawFd,
    /// Never block, whatever the socket's mode (last words).
    now: bool,
    /// The last read returned less than it asked for.
    short: bool,
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is
        // the connection's.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == -1 {
            return Err(io::Error::last_os_error());
        }
        self.short = (n as usize) < buf.len();
        Ok(n as usize)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.now {
            sys::send_now(self.fd, buf, false)
        } else {
            sys::send(self.fd, buf, false)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Secure {
    /// TLS on a connection accepted at `now`.
    pub fn new(conn: ServerConnection, now: Instant) -> Secure {
        Secure {
            conn: Box::new(conn),
            handshake_deadline: now + crate::tls::handshake_timeout(),
            closed: false,
        }
    }

    /// Whether the handshake is still under way.
    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether records wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Reads ciphertext from `fd` once, if rustls wants more, and
    /// decrypts it. An error is the connection's end (a bad record or
    /// handshake; rustls's alert has been sent) and says why.
    pub fn read_socket(&mut self, fd: RawFd) -> Result<Took, String> {
        let mut sock = Sock {
            fd,
            now: false,
            short: false,
        };
        match self.read_from(&mut sock, fd)? {
            Took::Some(n) if sock.short => Ok(Took::Short(n)),
            took => Ok(took),
        }
    }

    /// [`Secure::read_socket`] from any source of ciphertext: the proactor
    /// hands over what its ring received. `fd` is the socket an alert goes
    /// out on when the client's records are bad.
    pub fn read_from(&mut self, from: &mut dyn Read, fd: RawFd) -> Result<Took, String> {
        if !self.conn.wants_read() {
            return Ok(Took::Full);
        }
        let took = match self.conn.read_tls(from) {
            Ok(0) => Took::End,
            Ok(n) => Took::Some(n),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => Took::Drained,
                io::ErrorKind::Interrupted => Took::Some(0),
                _ => return Err(e.to_string()),
            },
        };
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.conn.write_tls(&mut Sock {
                fd,
                now: true,
                short: false,
            });
            return Err(format!("TLS: {e}"));
        }
        Ok(took)
    }

    /// The next plaintext for the session, into `scratch`.
    pub fn plaintext(&mut self, scratch: &mut [u8]) -> Plain {
        match self.conn.reader().read(scratch) {
            Ok(0) => Plain::End,
            Ok(n) => Plain::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Plain::Empty,
            // The socket ended without `close_notify`: an end all the same
            // (HTTP/1.1 and RESP frame their own messages).
            Err(_) => Plain::End,
        }
    }

    /// Sends queued records to `fd` until none is left (`Ok(false)`) or the
    /// socket would block (`Ok(true)`).
    pub fn send_records(&mut self, fd: RawFd) -> io::Result<bool> {
        self.send_records_to(&mut Sock {
            fd,
            now: false,
            short: false,
        })
    }

    /// [`Secure::send_records`] into any sink: the proactor's send buffer.
    pub fn send_records_to(&mut self, to: &mut dyn Write) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(to) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(true),
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                },
            }
        }
        Ok(false)
    }

    /// Whether more output may be encrypted now: the handshake is over,
    /// the connection not closing, and the records before are sent.
    pub fn can_encrypt(&self) -> bool {
        !self.conn.is_handshaking() && !self.closed && !self.conn.wants_write()
    }

    /// Encrypts up to a record of `data`; how much was taken.
    pub fn encrypt(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(RECORD);
        self.conn.writer().write(&data[..n])
    }

    /// Reads up to a record (and at most `budget` bytes) of `file` from
    /// `offset` and encrypts it; how much was taken (0: the file ended
    /// early).
    pub fn encrypt_file(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        budget: usize,
    ) -> io::Result<usize> {
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(RECORD)
            .min(budget);
        let mut buf = [0u8; RECORD];
        let n = loop {
            match file.read_at(&mut buf[..want], offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n > 0 {
            self.conn.writer().write_all(&buf[..n])?;
        }
        Ok(n)
    }

    /// Queues `close_notify` once, and makes one attempt to send what is
    /// queued without blocking.
    pub fn close(&mut self, fd: RawFd) {
        self.queue_close();
        self.send_now(fd);
    }

    /// Queues `close_notify` once, to be sent with the other records.
    pub fn queue_close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.conn.send_close_notify();
        }
    }

    /// Encrypts `data` (the session's last words) and makes one attempt to
    /// send what is queued without blocking.
    pub fn last_words(&mut self, fd: RawFd, data: &[u8]) {
        if !self.conn.is_handshaking() {
            let _ = self.conn.writer().write(data);
        }
        self.send_now(fd);
    }

    fn send_now(&mut self, fd: RawFd) {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Sock {
                fd,
                now: true,
                short: false,
            }) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}
