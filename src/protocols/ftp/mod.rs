//! `ftp`: an FTP server (RFC 959, with the extensions real clients use:
//! RFC 2389 FEAT, RFC 2428 EPRT/EPSV, RFC 3659 MLST/MLSD/SIZE/MDTM/REST).
//!
//! - [`wire`]: command lines, replies, addresses and listings as bytes;
//! - [`users`]: the virtual users file and password hashes;
//! - [`session`]: one control connection's state machine.
//!
//! Files are reached only through [`crate::root::Root`]; data connections
//! belong to the driver (see `session.rs`).

pub mod session;
pub mod users;
pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::root::Root;
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
}

/// The FTP protocol: one root, one set of users, shared by every session.
pub struct Ftp {
    root: Arc<Root>,
    users: Arc<users::Users>,
    config: Arc<FtpConfig>,
}

impl Ftp {
    /// An FTP server over `root` for `users`.
    pub fn new(root: Root, users: users::Users, config: FtpConfig) -> Ftp {
        Ftp {
            root: Arc::new(root),
            users: Arc::new(users),
            config: Arc::new(config),
        }
    }
}

impl Protocol for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(session::FtpSession::new(
            Arc::clone(&self.root),
            Arc::clone(&self.users),
            Arc::clone(&self.config),
            *info,
            now,
        ))
    }

    fn refusal(&self) -> &[u8] {
        session::REFUSAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Request;
    use std::net::SocketAddr;
    use std::path::Path;

    fn text(s: &dyn Session) -> String {
        String::from_utf8_lossy(s.poll_output()).into_owned()
    }

    fn drain(s: &mut dyn Session) -> String {
        let t = text(s);
        let n = s.poll_output().len();
        s.consume_output(n);
        t
    }

    /// A password check is asked of the driver (`Request::Compute`), not
    /// done in the session: commands after `PASS` wait for its answer.
    #[test]
    fn a_password_is_checked_off_the_session_and_commands_wait_for_it() {
        let dir = std::env::temp_dir().join(format!("muse-ftp-pass-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("alice")).unwrap();
        let hash = users::hash_password(b"secret").unwrap();
        let list = format!("alice:{hash}:/alice:read,list\nanonymous::/:read,list\n");
        let users = users::Users::parse(&list, Path::new("users")).unwrap();
        let config = FtpConfig {
            passive_ports: (0, 0),
            masquerade: None,
            idle_timeout: None,
        };
        let ftp = Ftp::new(Root::open(&dir).unwrap(), users, config);
        let addr: SocketAddr = "127.0.0.1:2121".parse().unwrap();
        let info = ConnInfo {
            peer: addr,
            local: addr,
        };
        let now = Instant::now();

        for (password, want) in [("secret", "230 "), ("wrong", "530 ")] {
            let mut s = ftp.new_session(&info, now);
            assert!(drain(&mut *s).starts_with("220 "));
            s.handle_input(
                format!("USER alice\r\nPASS {password}\r\nPWD\r\n").as_bytes(),
                now,
            );
            assert!(drain(&mut *s).starts_with("331 "));
            let Some(Request::Compute(work)) = s.poll_request() else {
                panic!("PASS asks for a computation");
            };
            assert!(s.poll_request().is_none());
            assert!(!s.wants_read(), "no input while the password is checked");
            assert_eq!(text(&*s), "", "PWD waits for the login's answer");
            s.handle_computed(work.run(), now);
            let out = drain(&mut *s);
            assert!(out.starts_with(want), "{password}: {out}");
            if want == "230 " {
                assert!(out.contains("\r\n257 \"/\""), "{out}");
            } else {
                // PWD also waits out the pause after a failed login.
                assert_eq!(out, "530 Login incorrect.\r\n");
                s.handle_timeout(now + Duration::from_secs(5));
                let out = drain(&mut *s);
                assert!(out.starts_with("530 Please login"), "{out}");
            }
        }

        // Anonymous has no password to check: answered at once.
        let mut s = ftp.new_session(&info, now);
        drain(&mut *s);
        s.handle_input(b"USER anonymous\r\nPASS me@\r\n", now);
        let out = drain(&mut *s);
        assert!(out.contains("\r\n230 "), "{out}");
        assert!(s.poll_request().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
