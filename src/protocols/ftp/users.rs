//! FTP users: who may log in, where their home is, and what they may do.
//!
//! Without `--users`, the server has one user, `anonymous` (alias `ftp`),
//! who logs in with any password (conventionally an e-mail address) and may
//! only read and list, from the root down.
//!
//! With `--users FILE`, the users are exactly those in the file: UTF-8 text,
//! one user per line, four fields separated by `:`. Blank lines and lines
//! starting with `#` are ignored, and a `#` after the permissions starts a
//! comment.
//!
//! ```text
//! # name:password-hash:home:permissions
//! alice:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:/alice:read,list,write,append,delete,rename,mkdir
//! bob:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:/shared:read,list
//! carol:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:/:all
//! anonymous::/pub:read,list    # empty hash: anonymous login, any password
//! ```
//!
//! - **name**: 1 to 32 characters among `A-Z a-z 0-9 . _ -`, each name once.
//!   Names are case-sensitive, except `anonymous` and its alias `ftp`,
//!   which are one user whatever their case.
//! - **password-hash**: an argon2 hash in PHC form (`$argon2id$...`), made by
//!   `muse passwd`, which reads a password on its standard input and prints
//!   its hash. Passwords are never written in plain text: a field that is
//!   not such a hash is an error. The field may be empty only for
//!   `anonymous` (or `ftp`), who then logs in with any password.
//! - **home**: the user's directory, a path under the server's `--root`
//!   starting with `/` (`/` is the root itself). The user cannot go above it.
//!   It may not contain `..`, `\`, `:` or control characters.
//! - **permissions**: comma-separated, from `read` (download), `list`
//!   (list directories and enter them), `write` (upload, overwrite), `append`,
//!   `delete` (files), `rename`, `mkdir` (create and remove directories);
//!   or `all` for every one, or `none`.
//!
//! A mistake in the file stops the server at start-up with the file's path,
//! the line number and what is wrong (exit 1).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use argon2::password_hash::phc::{PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Longest user name accepted.
pub const MAX_NAME_LEN: usize = 32;

/// Longest password `muse passwd` accepts, in bytes.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Largest argon2 memory cost accepted in a hash, in KiB (1 GiB): every login
/// allocates this much while it is being checked, so a mistyped `m=` would
/// otherwise exhaust the server's memory at the first login.
pub const MAX_M_COST_KIB: u32 = 1024 * 1024;

/// Largest argon2 work accepted in a hash: memory cost times passes
/// (`m` × `t`), in KiB (4 GiB of memory filled, a few seconds of one CPU).
/// A login with an unknown name is checked against a hash with the first
/// entry's costs, so without this bound one entry with a huge `t=` would
/// let anyone keep a CPU busy for hours per attempt. `muse passwd` makes
/// 19,456 KiB × 2.
pub const MAX_WORK_KIB: u64 = 4 * 1024 * 1024;

/// Checked for unknown user names so that a failed login takes as long
/// whether or not the name exists. Its password is irrelevant (the result is
/// thrown away); made by [`hash_password`], so with the default costs. When
/// the users file has hashes, their first one's costs replace these (see
/// [`Users::parse`]).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ekehfAM+zTN/FzC6EdFQMg$XKJQbtOPdPuR0A5wPFQakI3GPp5H5yKA2EiDeHWpdwg";

/// What a user may do. Every check on a command is one of these fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perms {
    /// Download files (`RETR`, `SIZE`, `MDTM`).
    pub read: bool,
    /// List directories and enter them (`LIST`, `NLST`, `MLSD`, `MLST`, `CWD`).
    pub list: bool,
    /// Upload: create and overwrite files (`STOR`, `STOU`).
    pub write: bool,
    /// Append to files (`APPE`).
    pub append: bool,
    /// Delete files (`DELE`).
    pub delete: bool,
    /// Rename files and directories (`RNFR`/`RNTO`).
    pub rename: bool,
    /// Create and remove directories (`MKD`, `RMD`).
    pub mkdir: bool,
}

/// The permission words of the users file, in order.
const PERM_WORDS: [&str; 7] = [
    "read", "list", "write", "append", "delete", "rename", "mkdir",
];

impl Perms {
    /// Read and list: the anonymous default.
    pub const READ_ONLY: Perms = Perms {
        read: true,
        list: true,
        write: false,
        append: false,
        delete: false,
        rename: false,
        mkdir: false,
    };

    /// Everything.
    pub const ALL: Perms = Perms {
        read: true,
        list: true,
        write: true,
        append: true,
        delete: true,
        rename: true,
        mkdir: true,
    };

    /// Nothing.
    pub const NONE: Perms = Perms {
        read: false,
        list: false,
        write: false,
        append: false,
        delete: false,
        rename: false,
        mkdir: false,
    };

    fn field_mut(&mut self, word: &str) -> Option<&mut bool> {
        Some(match word {
            "read" => &mut self.read,
            "list" => &mut self.list,
            "write" => &mut self.write,
            "append" => &mut self.append,
            "delete" => &mut self.delete,
            "rename" => &mut self.rename,
            "mkdir" => &mut self.mkdir,
            _ => return None,
        })
    }

    fn fields(&self) -> [bool; 7] {
        [
            self.read,
            self.list,
            self.write,
            self.append,
            self.delete,
            self.rename,
            self.mkdir,
        ]
    }

    /// Parses the permissions field: words separated by commas (spaces
    /// around them and empty items are ignored, case does not matter), from
    /// `read list write append delete rename mkdir`, or `all`, or `none`
    /// alone. The error says what is wrong, without the line.
    pub fn parse(s: &str) -> Result<Perms, String> {
        let mut perms = Perms::NONE;
        let mut none = false;
        let mut any = false;
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            any = true;
            let lower = word.to_ascii_lowercase();
            match lower.as_str() {
                "all" => perms = Perms::ALL,
                "none" => none = true,
                w => match perms.field_mut(w) {
                    Some(field) => *field = true,
                    None => {
                        return Err(format!(
                            "unknown permission `{word}` (the permissions are {}, \
                             or `all`, or `none`)",
                            PERM_WORDS.join(", ")
                        ))
                    }
                },
            }
        }
        if !any {
            return Err("no permissions (write `none` for a user who may do nothing)".into());
        }
        if none && perms != Perms::NONE {
            return Err("`none` cannot be combined with other permissions".into());
        }
        Ok(perms)
    }

    /// The `perm` fact of `MLST`/`MLSD` (RFC 3659 §7.5.5) for a file or a
    /// directory this user sees.
    ///
    /// Files: `r` read (`RETR`), `a` append (`APPE`), `w` write (`STOR`),
    /// `d` delete (`DELE`), `f` rename.
    /// Directories: `e` enter (`CWD`) and `l` list, both from `list`;
    /// `c` create files in it (`write`); `m` make directories in it
    /// (`mkdir`); `p` purge, delete files in it (`delete`); `d` delete the
    /// directory itself, `RMD`, which `mkdir` allows; `f` rename.
    pub fn mlst_perm(&self, is_dir: bool) -> String {
        let letters: &[(bool, char)] = if is_dir {
            &[
                (self.list, 'e'),
                (self.list, 'l'),
                (self.write, 'c'),
                (self.mkdir, 'm'),
                (self.delete, 'p'),
                (self.mkdir, 'd'),
                (self.rename, 'f'),
            ]
        } else {
            &[
                (self.read, 'r'),
                (self.append, 'a'),
                (self.write, 'w'),
                (self.delete, 'd'),
                (self.rename, 'f'),
            ]
        };
        letters
            .iter()
            .filter(|(on, _)| *on)
            .map(|&(_, c)| c)
            .collect()
    }
}

/// The permission words, comma-separated (`none` for none): the form
/// [`Perms::parse`] reads.
impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = PERM_WORDS
            .iter()
            .zip(self.fields())
            .filter(|(_, on)| *on)
            .map(|(w, _)| *w)
            .collect();
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(","))
        }
    }
}

/// One user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The name as written in the users file (`anonymous` by default).
    pub name: String,
    /// The argon2 PHC string; `None` for an anonymous user.
    hash: Option<String>,
    /// The home directory: a virtual path under the root, starting with `/`,
    /// normalized (no `.`, `..`, empty components or trailing `/`).
    pub home: String,
    /// What the user may do.
    pub perms: Perms,
}

impl User {
    /// Whether this user logs in with any password (`anonymous`/`ftp` with
    /// an empty hash in the file).
    pub fn is_anonymous(&self) -> bool {
        self.hash.is_none()
    }
}

/// Leaves the hash out of logs.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("anonymous", &self.is_anonymous())
            .field("home", &self.home)
            .field("perms", &self.perms)
            .finish_non_exhaustive()
    }
}

/// Why a users file was refused. Each names the file; the `Display` text is
/// meant for the operator, as is.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read (the reason is the source).
    #[error("cannot read the users file {}", path.display())]
    Read {
        /// The users file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("users file {}: line {line}: {message}", path.display())]
    Line {
        /// The users file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file has no users at all.
    #[error(
        "users file {}: no users (every line is blank or a comment)",
        path.display()
    )]
    Empty {
        /// The users file.
        path: PathBuf,
    },
}

/// The users a server accepts.
#[derive(Clone, Debug)]
pub struct Users {
    /// By lookup key (see [`key`]).
    users: BTreeMap<String, User>,
    /// Checked for unknown names; see [`DUMMY_HASH`].
    dummy: String,
}

/// The lookup key of a name: `anonymous` and `ftp`, in any case, are one
/// user; other names are case-sensitive.
fn key(name: &str) -> &str {
    if name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp") {
        "anonymous"
    } else {
        name
    }
}

impl Users {
    /// The default without `--users`: `anonymous` (alias `ftp`), any
    /// password, home `/`, read and list only.
    pub fn anonymous_read_only() -> Users {
        let user = User {
            name: "anonymous".into(),
            hash: None,
            home: "/".into(),
            perms: Perms::READ_ONLY,
        };
        Users {
            users: BTreeMap::from([("anonymous".to_string(), user)]),
            dummy: DUMMY_HASH.into(),
        }
    }

    /// Reads and checks a users file (format: the module documentation).
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let bytes = std::fs::read(path).map_err(|source| UsersError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            UsersError::Line {
                path: path.to_owned(),
                line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
                message: "not UTF-8 text".into(),
            }
        })?;
        Users::parse(&text, path)
    }

    /// Parses the text of a users file; `path_for_messages` names it in
    /// errors. Every hash is checked to be an argon2 PHC string with sane
    /// costs (not verified against anything: that happens at login).
    pub fn parse(text: &str, path_for_messages: &Path) -> Result<Users, UsersError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut users = BTreeMap::new();
        let mut lines_of = BTreeMap::new();
        let mut reference: Option<PasswordHash> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| UsersError::Line {
                path: path_for_messages.to_owned(),
                line: i + 1,
                message,
            };
            let (user, parsed) = parse_line(line).map_err(err)?;
            let k = key(&user.name).to_string();
            if let Some(first) = lines_of.get(&k) {
                let alias = if k == "anonymous" {
                    " (`anonymous` and `ftp` are the same user)"
                } else {
                    ""
                };
                return Err(err(format!(
                    "user `{}` is already defined on line {first}{alias}",
                    user.name
                )));
            }
            if reference.is_none() {
                reference = parsed;
            }
            lines_of.insert(k.clone(), i + 1);
            users.insert(k, user);
        }
        if users.is_empty() {
            return Err(UsersError::Empty {
                path: path_for_messages.to_owned(),
            });
        }
        Ok(Users {
            users,
            dummy: dummy_like(reference.as_ref()),
        })
    }

    /// Checks a login: the user if `password` is theirs, or if they are
    /// anonymous (any password). For an unknown name, one hash is still
    /// checked (with the costs of the file's first hash) so that the time
    /// taken does not tell which names exist.
    ///
    /// This takes one argon2 computation (see [`hash_password`] for the
    /// cost): call it off an event loop's thread.
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<&User> {
        match self.get(name) {
            Some(user) => match &user.hash {
                None => Some(user),
                Some(hash) => verify(hash, password).then_some(user),
            },
            None => {
                verify(&self.dummy, password);
                None
            }
        }
    }

    /// The user called `name`, for `USER`: an anonymous one gets
    /// "331 Anonymous login ok, send your e-mail as password"; everyone
    /// else, *including unknown names*, "331 Password required" (the answer
    /// must not tell which names exist; [`Users::authenticate`] refuses them
    /// after `PASS`).
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(key(name))
    }

    /// Whether `name` is a user who logs in with any password.
    pub fn is_anonymous(&self, name: &str) -> bool {
        self.get(name).is_some_and(User::is_anonymous)
    }

    /// The users, by name (anonymous under `anonymous`).
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// How many users there are (never 0).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Always false: a users file without users is refused.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// One non-comment line, trimmed: the user and their parsed hash.
fn parse_line(line: &str) -> Result<(User, Option<PasswordHash>), String> {
    let mut fields = line.splitn(4, ':');
    let (Some(name), Some(hash), Some(home), Some(rest)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(
            "expected four fields separated by `:`: name:password-hash:home:permissions".into(),
        );
    };
    let perms = rest.split('#').next().unwrap_or_default();
    if perms.contains(':') {
        return Err("more than four fields (a home cannot contain `:`)".into());
    }
    check_name(name)?;
    let parsed = if hash.is_empty() {
        if key(name) != "anonymous" {
            return Err(format!(
                "user `{name}` has no password hash; only `anonymous` (or `ftp`) may \
                 have none; make one with `muse passwd`"
            ));
        }
        None
    } else {
        Some(check_hash(hash)?)
    };
    let home = normalize_home(home)?;
    let perms = Perms::parse(perms)?;
    let user = User {
        name: name.to_string(),
        hash: parsed.as_ref().map(|_| hash.to_string()),
        home,
        perms,
    };
    Ok((user, parsed))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid user name (1 to {MAX_NAME_LEN} letters, digits, \
             `.`, `_` or `-`)",
            name.escape_debug()
        ))
    }
}

/// Checks that `hash` is an argon2 PHC string this server can verify. The
/// messages never quote the field: it may be a password typed by mistake.
fn check_hash(hash: &str) -> Result<PasswordHash, String> {
    const REMEDY: &str = "make one with `muse passwd`";
    if !hash.starts_with('$') {
        return Err("the password must be a hash from `muse passwd`, never plain text".into());
    }
    let parsed = PasswordHash::new(hash)
        .map_err(|e| format!("the password hash is not a valid PHC string ({e}); {REMEDY}"))?;
    Algorithm::try_from(parsed.algorithm.as_str()).map_err(|_| {
        format!(
            "the password hash is `{}`, not argon2 (argon2id, argon2i or argon2d); {REMEDY}",
            parsed.algorithm
        )
    })?;
    if let Some(v) = parsed.version {
        Version::try_from(v)
            .map_err(|_| format!("unknown argon2 version {v} in the password hash; {REMEDY}"))?;
    }
    let params = Params::try_from(&parsed)
        .map_err(|e| format!("bad argon2 parameters in the password hash ({e}); {REMEDY}"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!(
            "the password hash has no salt or no hash value; {REMEDY}"
        ));
    }
    if params.m_cost() > MAX_M_COST_KIB {
        return Err(format!(
            "the password hash's memory cost m={} KiB is over the {MAX_M_COST_KIB} KiB \
             (1 GiB) this server accepts; {REMEDY}",
            params.m_cost()
        ));
    }
    let work = u64::from(params.m_cost()) * u64::from(params.t_cost());
    if work > MAX_WORK_KIB {
        return Err(format!(
            "the password hash's work m={} KiB × t={} passes is over the {MAX_WORK_KIB} KiB \
             (4 GiB) this server accepts; {REMEDY}",
            params.m_cost(),
            params.t_cost()
        ));
    }
    Ok(parsed)
}

/// Normalizes a home directory: `/` then the components, without `.`, empty
/// ones or a trailing `/`. Refuses `..`, `\` and control characters.
fn normalize_home(home: &str) -> Result<String, String> {
    if !home.starts_with('/') {
        return Err(format!(
            "the home `{}` must be a path under the root starting with `/`",
            home.escape_debug()
        ));
    }
    if home.chars().any(char::is_control) {
        return Err("the home contains a control character".into());
    }
    if home.contains('\\') {
        return Err(format!("the home `{home}` contains `\\`"));
    }
    let mut parts = Vec::new();
    for part in home.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("the home `{home}` contains `..`")),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A hash no password matches in practice, with the algorithm, version and
/// costs of `like` (so that checking it takes as long), or [`DUMMY_HASH`].
fn dummy_like(like: Option<&PasswordHash>) -> String {
    let dummy = PasswordHash::new(DUMMY_HASH).expect("DUMMY_HASH is a PHC string");
    match like {
        None => DUMMY_HASH.into(),
        Some(like) => PasswordHash {
            salt: dummy.salt.or_else(|| Salt::new(b"muse-dummy-salt").ok()),
            hash: dummy.hash,
            ..like.clone()
        }
        .to_string(),
    }
}

/// Whether `password` matches the PHC string `hash` (false if it is not one).
fn verify(hash: &str, password: &[u8]) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

/// Hashes a password for the users file: argon2id v19 with the `argon2`
/// crate's defaults, m=19456 KiB (19 MiB), t=2 passes, p=1 lane (OWASP's
/// recommendation), a 16-byte salt from the OS's random generator and a
/// 32-byte output.
///
/// Cost, measured once (x86_64, release build, machine shared with other
/// builds): about 12 ms per hash, 12–20 ms per login check, and 19 MiB of
/// memory while it runs; about 270 ms in a debug build.
pub fn hash_password(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default().hash_password(password)?.to_string())
}

/// `muse passwd`: reads a password from `stdin` (the first line, without its
/// `\n` or `\r\n`; an empty one is refused) and prints its hash on `stdout`,
/// a line to paste into the users file's second field.
pub fn passwd_main(stdin: impl BufRead, mut stdout: impl Write) -> anyhow::Result<()> {
    let mut line = Vec::new();
    stdin
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from standard input")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        bail!("no password: give it as one line on standard input (empty passwords are refused)");
    }
    if line.len() > MAX_PASSWORD_LEN {
        bail!("the password is longer than {MAX_PASSWORD_LEN} bytes");
    }
    let hash = hash_password(&line).context("cannot hash the password")?;
    writeln!(stdout, "{hash}").context("cannot write the hash")?;
    stdout.flush().context("cannot write the hash")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// A cheap hash (64 KiB, 1 pass): microseconds, even in a debug build.
    fn cheap_hash(password: &[u8]) -> String {
        let params = Params::new(64, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password)
            .unwrap()
            .to_string()
    }

    fn alice_hash() -> &'static str {
        static H: OnceLock<String> = OnceLock::new();
        H.get_or_init(|| cheap_hash(b"wonderland"))
    }

    fn bob_hash() -> &'static str {
        static H: OnceLock<String> = OnceLock::new();
        H.get_or_init(|| cheap_hash("bob's pässword".as_bytes()))
    }

    fn path() -> &'static Path {
        Path::new("/etc/muse/users")
    }

    fn good_file() -> String {
        format!(
            "# name:password-hash:home:permissions\n\
             \n\
             alice:{}:/alice:read,list,write,append,delete,rename,mkdir\n\
             \x20  # an indented comment\n\
             bob:{}:/shared/./bob//:read, list   # a comment: with a colon\r\n\
             carol:{}:/:all\n\
             dave:{}:/dave:none\n\
             ftp::/pub:read,list\n",
            alice_hash(),
            bob_hash(),
            alice_hash(),
            alice_hash(),
        )
    }

    fn line_error(text: &str) -> (usize, String) {
        match Users::parse(text, path()) {
            Err(UsersError::Line {
                path: p,
                line,
                message,
            }) => {
                assert_eq!(p, path());
                (line, message)
            }
            other => panic!("expected a line error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_good_file() {
        let users = Users::parse(&good_file(), path()).unwrap();
        assert_eq!(users.len(), 5);

        let alice = users.get("alice").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.hash.as_deref(), Some(alice_hash()));
        assert_eq!(alice.home, "/alice");
        assert_eq!(alice.perms, Perms::ALL);
        assert!(!alice.is_anonymous());

        let bob = users.get("bob").unwrap();
        assert_eq!(bob.hash.as_deref(), Some(bob_hash()));
        assert_eq!(bob.home, "/shared/bob");
        assert_eq!(bob.perms, Perms::READ_ONLY);

        let carol = users.get("carol").unwrap();
        assert_eq!((carol.home.as_str(), carol.perms), ("/", Perms::ALL));

        let dave = users.get("dave").unwrap();
        assert_eq!(dave.perms, Perms::NONE);

        for name in ["ftp", "anonymous", "FTP", "Anonymous"] {
            let anon = users.get(name).unwrap();
            assert_eq!(anon.name, "ftp");
            assert!(anon.is_anonymous());
            assert_eq!(anon.home, "/pub");
            assert_eq!(anon.perms, Perms::READ_ONLY);
            assert!(users.is_anonymous(name));
        }
        assert!(!users.is_anonymous("alice"));
        assert!(!users.is_anonymous("nobody"));
        assert!(users.get("Alice").is_none(), "names are case-sensitive");
        assert!(users.get("nobody").is_none());

        // The dummy hash has the costs of the file's first hash.
        assert!(users.dummy.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_ne!(users.dummy, alice_hash());
        // The debug form hides the hash.
        assert!(!format!("{alice:?}").contains('$'));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let text = format!("\u{feff}alice:{}:/:read\n", alice_hash());
        assert!(Users::parse(&text, path()).unwrap().get("alice").is_some());
    }

    #[test]
    fn bad_lines_name_their_line() {
        let h = alice_hash();
        let cases: Vec<(String, &str)> = vec![
            ("alice".into(), "four fields"),
            (format!("alice:{h}:/a"), "four fields"),
            (format!("alice:{h}:/a:b:read"), "more than four fields"),
            (format!(":{h}:/:read"), "not a valid user name"),
            (format!("al ice:{h}:/:read"), "not a valid user name"),
            (
                format!("{}:{h}:/:read", "a".repeat(33)),
                "not a valid user name",
            ),
            (format!("élise:{h}:/:read"), "not a valid user name"),
            ("alice::/:read".into(), "only `anonymous` (or `ftp`)"),
            ("alice:$1$abc$def:/:read".into(), "muse passwd"),
            (
                "alice:$argon2id$v=19$m=64,t=1,p=1$zz:/:read".into(),
                "not a valid PHC string",
            ),
            (
                "alice:$argon2id$v=19$m=64,t=1,p=1:/:read".into(),
                "no salt or no hash",
            ),
            (
                format!("alice:{}:/:read", h.replace("argon2id", "scrypt")),
                "not argon2",
            ),
            (
                format!("alice:{}:/:read", h.replace("v=19", "v=18")),
                "version",
            ),
            (
                format!("alice:{}:/:read", h.replace("t=1", "t=0")),
                "parameters",
            ),
            (
                format!("alice:{}:/:read", h.replace("m=64", "m=4194304")),
                "memory cost",
            ),
            (
                format!("alice:{}:/:read", h.replace("t=1", "t=4294967295")),
                "work",
            ),
            (
                format!("alice:{}:/:read", h.replace("m=64,t=1", "m=1048576,t=5")),
                "work",
            ),
            (format!("alice:{h}:alice:read"), "starting with `/`"),
            (format!("alice:{h}::read"), "starting with `/`"),
            (format!("alice:{h}:/a/../b:read"), "`..`"),
            (format!("alice:{h}:/..:read"), "`..`"),
            (format!("alice:{h}:/a\\b:read"), "`\\`"),
            (format!("alice:{h}:/a\u{7}b:read"), "control character"),
            (format!("alice:{h}:/a:read,fly"), "unknown permission `fly`"),
            (format!("alice:{h}:/a:"), "no permissions"),
            (format!("alice:{h}:/a:  # nothing"), "no permissions"),
            (
                format!("alice:{h}:/a:none,read"),
                "`none` cannot be combined",
            ),
        ];
        for (bad, expected) in cases {
            let text = format!("# users\n\nbob:{}:/:read\n{bad}\n", bob_hash());
            let (line, message) = line_error(&text);
            assert_eq!(line, 4, "{bad:?}: {message}");
            assert!(
                message.contains(expected),
                "{bad:?}: {message:?} does not say {expected:?}"
            );
            let shown = Users::parse(&text, path()).unwrap_err().to_string();
            assert!(
                shown.starts_with("users file /etc/muse/users: line 4: "),
                "{shown}"
            );
        }
    }

    #[test]
    fn plain_text_passwords_are_refused_without_being_repeated() {
        let (line, message) = line_error("# users\n\nalice:hunter2:/alice:read\n");
        assert_eq!(line, 3);
        assert_eq!(
            message,
            "the password must be a hash from `muse passwd`, never plain text"
        );
        let shown = Users::parse("alice:hunter2:/:read", path())
            .unwrap_err()
            .to_string();
        assert_eq!(
            shown,
            "users file /etc/muse/users: line 1: the password must be a hash from \
             `muse passwd`, never plain text"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let h = alice_hash();
        let (line, message) = line_error(&format!("alice:{h}:/:read\n\nalice:{h}:/b:read\n"));
        assert_eq!(line, 3);
        assert!(
            message.contains("`alice` is already defined on line 1"),
            "{message}"
        );

        let (line, message) = line_error("anonymous::/:read\nFTP::/pub:read\n");
        assert_eq!(line, 2);
        assert!(message.contains("same user"), "{message}");

        // Names differing in case are different users.
        let text = format!("alice:{h}:/:read\nAlice:{h}:/:read\n");
        assert_eq!(Users::parse(&text, path()).unwrap().len(), 2);
    }

    #[test]
    fn a_file_without_users_is_refused() {
        let err = Users::parse("# nobody\n\n   \n", path()).unwrap_err();
        assert!(matches!(err, UsersError::Empty { .. }));
        assert!(err.to_string().contains("/etc/muse/users"));
    }

    #[test]
    fn authenticates() {
        let users = Users::parse(&good_file(), path()).unwrap();
        assert_eq!(
            users
                .authenticate("alice", b"wonderland")
                .map(|u| &u.name[..]),
            Some("alice")
        );
        assert!(users.authenticate("alice", b"Wonderland").is_none());
        assert!(users.authenticate("alice", b"").is_none());
        assert!(users.authenticate("Alice", b"wonderland").is_none());
        assert_eq!(
            users
                .authenticate("bob", "bob's pässword".as_bytes())
                .map(|u| &u.name[..]),
            Some("bob")
        );
        assert!(users.authenticate("bob", b"wonderland").is_none());
        assert!(users.authenticate("nobody", b"wonderland").is_none());
        assert!(users.authenticate("", b"").is_none());
        for (name, password) in [("anonymous", &b"me@example.org"[..]), ("FTP", b"")] {
            let user = users.authenticate(name, password).unwrap();
            assert_eq!(user.home, "/pub");
        }
    }

    #[test]
    fn the_default_is_anonymous_read_only() {
        let users = Users::anonymous_read_only();
        assert_eq!(users.len(), 1);
        for name in ["anonymous", "ftp"] {
            let user = users.authenticate(name, b"guest@").unwrap();
            assert!(user.is_anonymous());
            assert_eq!((user.home.as_str(), user.perms), ("/", Perms::READ_ONLY));
        }
        // An unknown name checks the (default-cost) dummy hash: one slow
        // verification, refused.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(users.authenticate("root", b"toor").is_none());
    }

    #[test]
    fn passwd_hashes_a_line_that_verifies() {
        // Two argon2 computations at the default cost (about 0.3 s each in a
        // debug build): the hash, then one check.
        let mut out = Vec::new();
        passwd_main(&b"s3cret pw\r\nignored\n"[..], &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let hash = out.strip_suffix('\n').unwrap();
        assert!(!hash.contains('\n'));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let users = Users::parse(&format!("alice:{hash}:/:all"), path()).unwrap();
        assert!(users.authenticate("alice", b"s3cret pw").is_some());
        // The dummy now has the same costs; no need to check it again.
        assert!(users.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // hash_password salts: two hashes of one password differ (only the
        // salt is compared, no second computation).
        assert_ne!(cheap_hash(b"x"), cheap_hash(b"x"));
    }

    #[test]
    fn passwd_refuses_an_empty_or_huge_password() {
        for input in [&b""[..], b"\n", b"\r\n"] {
            let mut out = Vec::new();
            let err = passwd_main(input, &mut out).unwrap_err();
            assert!(err.to_string().contains("no password"), "{err}");
            assert!(out.is_empty());
        }
        let huge = vec![b'x'; MAX_PASSWORD_LEN + 1];
        let err = passwd_main(&huge[..], Vec::new()).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn perms_parse() {
        assert_eq!(Perms::parse("all"), Ok(Perms::ALL));
        assert_eq!(Perms::parse("ALL,read"), Ok(Perms::ALL));
        assert_eq!(Perms::parse("none"), Ok(Perms::NONE));
        assert_eq!(Perms::parse(" read , list ,"), Ok(Perms::READ_ONLY));
        assert_eq!(
            Perms::parse("write,mkdir"),
            Ok(Perms {
                write: true,
                mkdir: true,
                ..Perms::NONE
            })
        );
        let err = Perms::parse("read,rmdir").unwrap_err();
        assert!(err.contains("unknown permission `rmdir`"), "{err}");
        assert!(Perms::parse("").is_err());
        assert!(Perms::parse(",").is_err());
        assert!(Perms::parse("none,list").is_err());
        for p in [Perms::ALL, Perms::NONE, Perms::READ_ONLY] {
            assert_eq!(Perms::parse(&p.to_string()), Ok(p));
        }
        assert_eq!(Perms::READ_ONLY.to_string(), "read,list");
        assert_eq!(
            Perms::ALL.to_string(),
            "read,list,write,append,delete,rename,mkdir"
        );
        assert_eq!(Perms::default(), Perms::NONE);
    }

    #[test]
    fn mlst_perm_facts() {
        assert_eq!(Perms::ALL.mlst_perm(false), "rawdf");
        assert_eq!(Perms::ALL.mlst_perm(true), "elcmpdf");
        assert_eq!(Perms::READ_ONLY.mlst_perm(false), "r");
        assert_eq!(Perms::READ_ONLY.mlst_perm(true), "el");
        assert_eq!(Perms::NONE.mlst_perm(false), "");
        assert_eq!(Perms::NONE.mlst_perm(true), "");
        let uploader = Perms {
            write: true,
            append: true,
            ..Perms::NONE
        };
        assert_eq!(uploader.mlst_perm(false), "aw");
        assert_eq!(uploader.mlst_perm(true), "c");
        let mkdir = Perms {
            mkdir: true,
            ..Perms::NONE
        };
        assert_eq!(mkdir.mlst_perm(true), "md");
        assert_eq!(mkdir.mlst_perm(false), "");
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let missing = Path::new("/nonexistent/muse/users.txt");
        let err = Users::load(missing).unwrap_err();
        assert!(matches!(&err, UsersError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(
            err.to_string(),
            "cannot read the users file /nonexistent/muse/users.txt"
        );
        assert!(format!("{:#}", anyhow::Error::new(err)).contains("No such file"));

        let dir = std::env::temp_dir();
        let good = dir.join(format!("muse-users-test-{}-good", std::process::id()));
        std::fs::write(&good, good_file()).unwrap();
        let users = Users::load(&good);
        std::fs::remove_file(&good).unwrap();
        assert_eq!(users.unwrap().len(), 5);

        let bad = dir.join(format!("muse-users-test-{}-bad", std::process::id()));
        std::fs::write(&bad, b"# fine\nal\xffice::/:read\n").unwrap();
        let err = Users::load(&bad).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        match err {
            UsersError::Line {
                path,
                line,
                message,
            } => {
                assert_eq!((path, line), (bad, 2));
                assert_eq!(message, "not UTF-8 text");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn homes_are_normalized() {
        assert_eq!(normalize_home("/").unwrap(), "/");
        assert_eq!(normalize_home("//").unwrap(), "/");
        assert_eq!(normalize_home("/a/./b/").unwrap(), "/a/b");
        assert_eq!(normalize_home("/my files/é").unwrap(), "/my files/é");
        assert_eq!(normalize_home("/a..b").unwrap(), "/a..b");
        assert!(normalize_home("/a/\0").is_err());
    }
}
