//! The durability log: an append-only file of the write commands, replayed
//! at start so that a restarted server has the keyspace it had.
//!
//! The log stores records and knows nothing of Redis: a record is a
//! database number and a list of byte strings, and the store decides what
//! they mean (it logs each write command in its deterministic form and
//! runs them again on replay). Unlike the protocol cores this module does
//! I/O: it is the store's one door to the disk.
//!
//! # The file
//!
//! `DIR/appendonly.muse` starts with the 8-byte header [`MAGIC`] (`MUSEKV`,
//! a zero byte, format version 1), then records:
//!
//! ```text
//! [u32 LE payload_len][u32 LE crc32 of payload][payload]
//! payload = [u8 db][u32 LE argc] then argc × ([u32 LE len][bytes])
//! ```
//!
//! The format is binary and checksummed rather than Redis's text (RESP)
//! log: a crash in the middle of a write leaves a torn last record, and a
//! bad disk or a stray write can flip a byte anywhere. A length prefix
//! tells a short record from a whole one, and the CRC tells a damaged
//! record from a good one, where a RESP log may still parse after a flip
//! (`$3\r\nfoo` turned into `$3\r\nfoa`) and replay a value nobody wrote.
//! At open, a damaged or short *last* record is what a crash leaves: it is
//! dropped with a warning and the file truncated, so that appends go on
//! cleanly. Damage anywhere else is refused with the file and the byte
//! offset, for the operator to look at; nothing is skipped silently. A
//! flipped length that points past the end of the file looks like a torn
//! record at first; it is told apart by the whole records that follow it
//! (`whole_record_in`), and refused too.
//!
//! # Writing
//!
//! [`Aof::append`] only encodes into a buffer in memory, under the lock
//! the caller already holds to order its writes, so a command never waits
//! for the disk. One writer thread (`kv-aof`) swaps the buffer for an
//! empty one, writes it with one `write(2)` per batch and syncs it per the
//! [`Fsync`] policy. With `always`, every record appended while the disk
//! is busy goes into the next batch and shares its `fdatasync` (group
//! commit), and a client's reply waits in [`Aof::when_durable`] for its
//! record's sequence number. The caller watches [`Aof::backlog`] to push
//! back when the disk falls behind. A failed write or sync is logged once
//! and tried again every 100 ms with the records kept in memory, in
//! order: nothing is dropped, and waiters go on waiting.
//!
//! # Rewriting
//!
//! The log only grows; a rewrite replaces it with a snapshot of the
//! keyspace plus what was appended since the snapshot was taken (Redis's
//! `BGREWRITEAOF`). [`Aof::begin_rewrite`] marks the point, the caller
//! writes the snapshot through [`Rewrite::write`] from any thread, and
//! [`Rewrite::finish`] has the writer thread, between two batches, append
//! the records logged since the mark, sync, and rename the new file over
//! the old one. Those records are kept in memory until then, as Redis
//! keeps its rewrite buffer.
//!
//! `DIR/LOCK` is held with `flock` while the log is open (in a server,
//! the process's life), so two servers never append to the same log.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The file's first 8 bytes: `MUSEKV`, a zero byte, format version 1.
pub const MAGIC: &[u8; 8] = b"MUSEKV\0\x01";

/// The log's name in the data directory.
pub const FILE_NAME: &str = "appendonly.muse";

/// The name a rewrite is written under before it replaces the log.
pub const REWRITE_NAME: &str = "appendonly.muse.rewrite";

/// The lock file's name in the data directory.
pub const LOCK_NAME: &str = "LOCK";

/// A record's header: payload length and CRC.
const RECORD_HEADER: usize = 8;

/// The largest payload: a command the store accepts is at most 1 GiB
/// (Redis's `client-query-buffer-limit`), plus room for the length
/// prefixes of its arguments. Replay refuses a longer length as corrupt,
/// and never allocates more than what is left of the file, so a damaged
/// length cannot make it allocate absurdly.
pub const MAX_PAYLOAD: usize = (1 << 30) + (1 << 20);

/// How long the writer waits before trying a failed write or sync again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How often `everysec` syncs at most.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long [`Aof::close`] keeps retrying a failing disk before it gives
/// up: a server must be able to exit, and the warning says what was lost.
const CLOSE_GIVE_UP: Duration = Duration::from_secs(5);

/// A buffer that grew past this during a burst is dropped once drained,
/// so an idle log does not keep the burst's memory.
const KEEP_CAPACITY: usize = 16 << 20;

/// When the log is synced to the disk (Redis's `appendfsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch, before its writes are answered: nothing
    /// acknowledged is lost.
    Always,
    /// At most once a second: a crash loses up to the last second.
    EverySec,
    /// Never: the kernel writes back when it likes.
    No,
}

impl FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Fsync, String> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "no" => Ok(Fsync::No),
            _ => Err(format!(
                "unknown fsync policy '{s}' (expected always, everysec or no)"
            )),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        })
    }
}

/// The length of the payload of a record of `args`.
fn payload_len(args: &[&[u8]]) -> usize {
    1 + 4 + args.iter().map(|a| 4 + a.len()).sum::<usize>()
}

/// Appends one record (header and payload) to `out`.
///
/// # Panics
///
/// If the payload would be longer than [`MAX_PAYLOAD`]: replay would
/// refuse such a record, so it is never written. The store bounds the
/// commands it accepts below that.
pub fn encode_record(out: &mut Vec<u8>, db: u8, args: &[&[u8]]) {
    let len = payload_len(args);
    assert!(len <= MAX_PAYLOAD, "a {len}-byte log record is too long");
    out.reserve(RECORD_HEADER + len);
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(db);
    out.extend_from_slice(&(args.len() as u32).to_le_bytes());
    for arg in args {
        out.extend_from_slice(&(arg.len() as u32).to_le_bytes());
        out.extend_from_slice(arg);
    }
    let crc = crc32fast::hash(&out[start + RECORD_HEADER..]);
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Why a payload (whose CRC matched) does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The payload stops inside a field.
    #[error("the payload ends inside a field at byte {0} of it")]
    Short(usize),
    /// Bytes follow the last argument.
    #[error("{0} bytes follow the last argument")]
    Trailing(usize),
}

/// Decodes a record's payload into its database and arguments, which
/// borrow from `payload`.
pub fn decode_record(payload: &[u8]) -> Result<(u8, Vec<&[u8]>), RecordError> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], RecordError> {
        let field = payload.get(at..at + n).ok_or(RecordError::Short(at))?;
        at += n;
        Ok(field)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let db = take(1)?[0];
    let argc = u32_at(take(4)?);
    // Each argument takes at least its 4-byte length: a damaged count
    // cannot reserve more than the payload could hold.
    let mut args = Vec::with_capacity(argc.min(payload.len() / 4));
    for _ in 0..argc {
        let len = u32_at(take(4)?);
        args.push(take(len)?);
    }
    match payload.len() - at {
        0 => Ok((db, args)),
        n => Err(RecordError::Trailing(n)),
    }
}

/// What replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records replayed.
    pub records: u64,
    /// The log's length after replay, header included.
    pub bytes: u64,
    /// A torn last record that was dropped: its offset and the bytes cut.
    pub truncated: Option<(u64, u64)>,
}

/// What the writer thread has done, for `INFO` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches written.
    pub writes: u64,
    /// `fdatasync` calls that succeeded.
    pub syncs: u64,
    /// Rewrites installed.
    pub rewrites: u64,
    /// Whether the last write or sync failed (the writer is retrying).
    pub failing: bool,
}

/// A callback waiting for a record to be durable.
type Waker = Box<dyn FnOnce() + Send>;

/// The append-only log. Cheap to clone: clones share one log and one
/// writer thread.
#[derive(Clone)]
pub struct Aof {
    shared: Arc<Shared>,
}

/// What the callers and the writer thread share.
struct Shared {
    dir: PathBuf,
    path: PathBuf,
    fsync: Fsync,
    state: Mutex<State>,
    /// Wakes the writer: something appended, a rewrite to install, close.
    work: Condvar,
    /// Wakes [`Rewrite::finish`] when its rewrite is installed or failed.
    done: Condvar,
    durable: AtomicU64,
    /// Bytes appended and not yet written.
    unwritten: AtomicUsize,
    file_size: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    rewrites: AtomicU64,
    failing: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held (locked) for the log's life; closing it releases the lock.
    _lock: File,
    #[cfg(test)]
    faults: Faults,
}

/// Failures the tests inject into the writer thread.
#[cfg(test)]
#[derive(Default)]
struct Faults {
    /// Writes to cut short, each followed by a failing one.
    writes: std::sync::atomic::AtomicU32,
    /// Syncs to fail.
    syncs: std::sync::atomic::AtomicU32,
    /// The writer takes nothing while set (a disk that does not keep up).
    stalled: AtomicBool,
}

/// What is guarded by [`Shared::state`].
struct State {
    /// Records appended since the writer last took them.
    buf: Vec<u8>,
    /// The last sequence number handed out.
    seq: u64,
    waiters: BTreeMap<u64, Vec<Waker>>,
    /// The running rewrite, whose records the writer copies as it takes
    /// them.
    rewrite: Option<Capture>,
    next_rewrite: u64,
    /// A finished snapshot waiting to be installed.
    finish: Option<FinishRequest>,
    /// The outcome of the last installed (or failed) rewrite, by id.
    finished: Option<(u64, io::Result<()>)>,
    closing: bool,
    stopped: bool,
}

/// A rewrite in progress: the first `skip` bytes of `buf` were appended
/// before it began, everything after belongs to it.
struct Capture {
    id: u64,
    skip: usize,
}

/// A snapshot handed to the writer thread.
struct FinishRequest {
    id: u64,
    file: File,
    /// Bytes in `file` so far.
    size: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on some thread must not take the log down with it: the
        // state stays consistent between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn corrupt(path: &Path, offset: u64, why: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{}: corrupt record at byte {offset}: {why}", path.display())
}

/// Replays the log in `file` (opened for reading and appending) into
/// `apply`, truncating a torn last record, and leaves the file ready to
/// append to.
fn replay(
    path: &Path,
    file: &mut File,
    apply: &mut impl FnMut(u8, &[&[u8]]) -> anyhow::Result<()>,
) -> anyhow::Result<ReplayStats> {
    let io_context = || format!("cannot read {}", path.display());
    let file_len = file.metadata().with_context(io_context)?.len();
    let mut stats = ReplayStats {
        records: 0,
        bytes: file_len,
        truncated: None,
    };
    let mut reader = BufReader::with_capacity(1 << 20, &*file);
    let mut offset: u64;
    if file_len < MAGIC.len() as u64 {
        let mut head = vec![0; file_len as usize];
        reader.read_exact(&mut head).with_context(io_context)?;
        if !MAGIC.starts_with(&head) {
            bail!("{}: not a muse kv log (bad header)", path.display());
        }
        // Empty, or a header cut short when the file was created.
        offset = 0;
        if file_len > 0 {
            stats.truncated = Some((0, file_len));
        }
    } else {
        let mut head = [0; 8];
        reader.read_exact(&mut head).with_context(io_context)?;
        if head[..7] == MAGIC[..7] && head[7] != MAGIC[7] {
            bail!(
                "{}: muse kv log format version {} (this server reads version {})",
                path.display(),
                head[7],
                MAGIC[7]
            );
        }
        if &head != MAGIC {
            bail!("{}: not a muse kv log (bad header)", path.display());
        }
        offset = MAGIC.len() as u64;
        let mut payload = Vec::new();
        while offset < file_len {
            let left = file_len - offset;
            if left < RECORD_HEADER as u64 {
                stats.truncated = Some((offset, left));
                break;
            }
            let mut header = [0; RECORD_HEADER];
            reader.read_exact(&mut header).with_context(io_context)?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > MAX_PAYLOAD {
                return Err(corrupt(
                    path,
                    offset,
                    format_args!("length {len} is over the limit of {MAX_PAYLOAD}"),
                ));
            }
            let end = offset + (RECORD_HEADER + len) as u64;
            if end > file_len {
                // A crash tears the last record; a damaged length looks the
                // same, but whole records follow it.
                let file = reader.get_ref();
                let next = offset + RECORD_HEADER as u64;
                if let Some(at) = whole_record_in(file, next, file_len).with_context(io_context)? {
                    return Err(corrupt(
                        path,
                        offset,
                        format_args!(
                            "length {len} runs past the end of the file, \
                             but a whole record follows at byte {at}"
                        ),
                    ));
                }
                stats.truncated = Some((offset, left));
                break;
            }
            payload.resize(len, 0);
            reader.read_exact(&mut payload).with_context(io_context)?;
            if crc32fast::hash(&payload) != crc {
                if end == file_len {
                    stats.truncated = Some((offset, left));
                    break;
                }
                return Err(corrupt(path, offset, "bad checksum"));
            }
            let (db, args) = decode_record(&payload).map_err(|e| corrupt(path, offset, e))?;
            apply(db, &args)
                .with_context(|| format!("{}: record at byte {offset}", path.display()))?;
            stats.records += 1;
            offset = end;
        }
    }
    drop(reader);
    if let Some((at, dropped)) = stats.truncated {
        crate::log::warn(format_args!(
            "{}: dropped a torn last record at byte {at} ({dropped} bytes)",
            path.display()
        ));
        file.set_len(at)
            .with_context(|| format!("cannot truncate {}", path.display()))?;
    }
    if offset == 0 {
        file.write_all(MAGIC)
            .with_context(|| format!("cannot write {}", path.display()))?;
        offset = MAGIC.len() as u64;
    }
    if stats.truncated.is_some() || file_len == 0 {
        file.sync_all()
            .with_context(|| format!("cannot sync {}", path.display()))?;
    }
    stats.bytes = offset;
    Ok(stats)
}

/// How many places after a short record [`whole_record_in`] looks at, and
/// how many bytes it checksums at most while it does.
const TAIL_SCAN: u64 = 1 << 20;
const TAIL_SCAN_BYTES: u64 = 256 << 20;

/// Where a whole record (a header whose length fits in the file and whose
/// checksum matches its payload) begins in `file` between `from` and
/// `file_len`, if one does within [`TAIL_SCAN`] places. A torn last record
/// leaves only its own bytes behind; a length damaged in the middle of the
/// log leaves the records after it, the first of them within the damaged
/// record's true length. A false match needs a 32-bit checksum to agree
/// by chance.
fn whole_record_in(file: &File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let window_len = (file_len - from).min(TAIL_SCAN + RECORD_HEADER as u64) as usize;
    let mut window = vec![0; window_len];
    file.read_exact_at(&mut window, from)?;
    let mut budget = TAIL_SCAN_BYTES;
    let mut chunk = vec![0; 64 * 1024];
    for i in 0..window_len.saturating_sub(RECORD_HEADER - 1) {
        let h = &window[i..i + RECORD_HEADER];
        let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let at = from + i as u64;
        // The smallest payload is a database byte and an argument count.
        if len < 5 || at + RECORD_HEADER as u64 + len > file_len {
            continue;
        }
        if len > budget {
            break;
        }
        budget -= len;
        let mut hasher = crc32fast::Hasher::new();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            file.read_exact_at(&mut chunk[..n], at + RECORD_HEADER as u64 + done)?;
            hasher.update(&chunk[..n]);
            done += n as u64;
        }
        if hasher.finalize() == crc {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// Syncs a directory, so that a file created or renamed in it survives a
/// crash.
/// How long a hot restart's successor waits for the old server to release
/// the data directory: its graceful drain (`--shutdown-timeout`, 10 s by
/// default) with room to spare.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(120);

/// The lock is held and this process is a hot restart's successor: asks
/// the old server to drain and waits for its lock to go (the old store
/// closes its log, synced, as it exits; it is then replayed here).
fn take_over_lock(lock: &File, dir: &Path) -> anyhow::Result<()> {
    crate::restart::ask_to_hand_over();
    crate::log::info(format_args!(
        "kv: the old server holds {}; waiting for it to hand over",
        dir.display()
    ));
    let deadline = std::time::Instant::now() + TAKE_OVER_WAIT;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        match rustix::fs::flock(lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {}
            Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                "the old server did not release the data directory {} within {TAKE_OVER_WAIT:?}",
                dir.display()
            ),
            Err(e) => return Err(io::Error::from(e)).context("cannot lock the data directory"),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Aof {
    /// Opens (creating) `dir`, takes an exclusive lock on `dir/LOCK` held
    /// for the log's life (a second server on the same directory fails),
    /// replays `dir/appendonly.muse` calling `apply(db, &args)` for each
    /// record in order, and starts the writer thread.
    ///
    /// A torn last record (short, or with a bad checksum and nothing after
    /// it) is dropped with one warning and the file truncated; any other
    /// damage fails with the file and the byte offset. An error from
    /// `apply` stops the replay with the record's offset.
    pub fn open(
        dir: &Path,
        fsync: Fsync,
        mut apply: impl FnMut(u8, &[&[u8]]) -> anyhow::Result<()>,
    ) -> anyhow::Result<(Aof, ReplayStats)> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // flock locks belong to the open file description: a second
        // open() of LOCK, even in this process, conflicts with this one.
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) if crate::restart::is_successor() => {
                take_over_lock(&lock, dir)?
            }
            Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                "another server holds the data directory {} (lock {})",
                dir.display(),
                lock_path.display()
            ),
            Err(e) => {
                return Err(io::Error::from(e))
                    .with_context(|| format!("cannot lock {}", lock_path.display()))
            }
        }
        // A rewrite the last run did not finish: the log itself is whole.
        let _ = fs::remove_file(dir.join(REWRITE_NAME));
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let stats = replay(&path, &mut file, &mut apply)?;
        if !existed {
            sync_dir(dir).with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            path,
            fsync,
            state: Mutex::new(State {
                buf: Vec::new(),
                seq: 0,
                waiters: BTreeMap::new(),
                rewrite: None,
                next_rewrite: 0,
                finish: None,
                finished: None,
                closing: false,
                stopped: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durable: AtomicU64::new(0),
            unwritten: AtomicUsize::new(0),
            file_size: AtomicU64::new(stats.bytes),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            rewrites: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            writer: Mutex::new(None),
            _lock: lock,
            #[cfg(test)]
            faults: Faults::default(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            file,
            pending: Vec::new(),
            pending_seq: 0,
            written_seq: 0,
            published: 0,
            unsynced: false,
            last_sync: Instant::now(),
            retry: false,
            failing_since: None,
            tail: Vec::new(),
            tail_id: 0,
            finish: None,
            #[cfg(test)]
            fail_next: false,
        };
        let handle = thread::Builder::new()
            .name("kv-aof".into())
            .spawn(move || writer.run())
            .context("cannot start the log's writer thread")?;
        *shared.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok((Aof { shared }, stats))
    }

    /// Appends one record and returns its sequence number (1, 2, ...). It
    /// only encodes into memory; the writer thread writes it. Call it in
    /// execution order, under the lock that orders the writes.
    ///
    /// # Panics
    ///
    /// If the record is longer than [`MAX_PAYLOAD`] (see [`encode_record`]).
    pub fn append(&self, db: u8, args: &[&[u8]]) -> u64 {
        let mut st = self.shared.lock();
        let before = st.buf.len();
        encode_record(&mut st.buf, db, args);
        self.shared
            .unwritten
            .fetch_add(st.buf.len() - before, Ordering::Relaxed);
        st.seq += 1;
        let seq = st.seq;
        drop(st);
        // The writer waits only while the buffer is empty, so only the
        // append that fills it needs to wake it.
        if before == 0 {
            self.shared.work.notify_one();
        }
        seq
    }

    /// The highest sequence number that is durable per the policy: with
    /// `always`, written and synced; otherwise written to the kernel.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Calls `wake` once [`durable`](Aof::durable) reaches `seq`: at once
    /// on this thread if it already has, else on the writer thread. A
    /// waiter for a record appended after [`close`](Aof::close) is dropped
    /// uncalled.
    pub fn when_durable(&self, seq: u64, wake: Box<dyn FnOnce() + Send>) {
        let mut st = self.shared.lock();
        // The writer raises `durable` under this lock, so no wake-up can
        // slip between the check and the insert.
        if self.durable() >= seq {
            drop(st);
            wake();
        } else if !st.stopped {
            st.waiters.entry(seq).or_default().push(wake);
        }
    }

    /// Stops the writer taking records while `stalled` (tests of a disk
    /// that falls behind).
    #[cfg(test)]
    pub fn stall_writer(&self, stalled: bool) {
        self.shared.faults.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Bytes appended but not yet written (for back-pressure).
    pub fn backlog(&self) -> usize {
        self.shared.unwritten.load(Ordering::Relaxed)
    }

    /// The log file's size as written so far.
    pub fn file_size(&self) -> u64 {
        self.shared.file_size.load(Ordering::Relaxed)
    }

    /// The fsync policy.
    pub fn fsync(&self) -> Fsync {
        self.shared.fsync
    }

    /// What the writer thread has done.
    pub fn stats(&self) -> WriterStats {
        let s = &self.shared;
        WriterStats {
            writes: s.writes.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            rewrites: s.rewrites.load(Ordering::Relaxed),
            failing: s.failing.load(Ordering::Relaxed),
        }
    }

    /// Whether a rewrite is running.
    pub fn rewriting(&self) -> bool {
        self.shared.lock().rewrite.is_some()
    }

    /// Begins a rewrite. Call it while holding the lock that orders the
    /// appends, so that the snapshot taken under that lock and the records
    /// appended after this call are together exactly the state. Creates
    /// `DIR/appendonly.muse.rewrite`; fails if a rewrite is running.
    pub fn begin_rewrite(&self) -> io::Result<Rewrite> {
        let mut st = self.shared.lock();
        if st.rewrite.is_some() {
            return Err(io::Error::other("a rewrite is already running"));
        }
        if st.closing || st.stopped {
            return Err(io::Error::other("the log is closed"));
        }
        let path = self.shared.dir.join(REWRITE_NAME);
        let mut file = File::create(&path)?;
        file.write_all(MAGIC)?;
        st.next_rewrite += 1;
        let id = st.next_rewrite;
        let skip = st.buf.len();
        st.rewrite = Some(Capture { id, skip });
        Ok(Rewrite {
            shared: Arc::clone(&self.shared),
            id,
            path,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            size: MAGIC.len() as u64,
            scratch: Vec::new(),
            done: false,
        })
    }

    /// Stops the writer thread after writing (and, unless the policy is
    /// `no`, syncing) everything appended. If the disk keeps failing, it
    /// gives up after a few seconds with a warning naming the bytes lost.
    /// Records appended after this are not written.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        let handle = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// A rewrite in progress: the snapshot being written, from
/// [`Aof::begin_rewrite`]. Dropping it abandons it.
pub struct Rewrite {
    shared: Arc<Shared>,
    id: u64,
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    scratch: Vec<u8>,
    done: bool,
}

impl Rewrite {
    /// Writes one snapshot record. A record longer than [`MAX_PAYLOAD`] is
    /// refused: write big collections as several records.
    pub fn write(&mut self, db: u8, args: &[&[u8]]) -> io::Result<()> {
        if payload_len(args) > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a log record over the size limit",
            ));
        }
        self.scratch.clear();
        encode_record(&mut self.scratch, db, args);
        let out = self.out.as_mut().expect("a rewrite being written");
        out.write_all(&self.scratch)?;
        self.size += self.scratch.len() as u64;
        Ok(())
    }

    /// Hands the snapshot to the writer thread, which between two batches
    /// appends every record logged since [`Aof::begin_rewrite`], syncs,
    /// renames it over the log, syncs the directory and goes on appending
    /// to the new file. Returns once that is done (or failed, leaving the
    /// old log in use).
    pub fn finish(mut self) -> io::Result<()> {
        let out = self.out.take().expect("a rewrite being written");
        let file = out.into_inner().map_err(|e| e.into_error())?;
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        if st.closing || st.stopped {
            return Err(io::Error::other("the log is closed"));
        }
        st.finish = Some(FinishRequest {
            id: self.id,
            file,
            size: self.size,
        });
        shared.work.notify_one();
        loop {
            if matches!(&st.finished, Some((id, _)) if *id == self.id) {
                // The writer has removed the file if it failed.
                self.done = true;
                let (_, result) = st.finished.take().expect("checked");
                return result;
            }
            if st.stopped {
                return Err(io::Error::other("the log was closed"));
            }
            st = shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Abandons the rewrite and removes its file.
    pub fn abort(self) {}
}

impl Drop for Rewrite {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.out = None;
        let _ = fs::remove_file(&self.path);
        let mut st = self.shared.lock();
        if matches!(&st.rewrite, Some(c) if c.id == self.id) {
            st.rewrite = None;
        }
    }
}

/// The writer thread's own state.
struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Records taken from the buffer and not yet written.
    pending: Vec<u8>,
    /// The last sequence number in `pending`.
    pending_seq: u64,
    /// The last sequence number written whole.
    written_seq: u64,
    /// The last sequence number published as durable.
    published: u64,
    /// Written since the last sync.
    unsynced: bool,
    last_sync: Instant,
    /// The last write or sync failed: try again without waiting for work.
    retry: bool,
    failing_since: Option<Instant>,
    /// Records appended since the running rewrite began.
    tail: Vec<u8>,
    tail_id: u64,
    finish: Option<FinishRequest>,
    /// The last write was cut short by an injected fault: fail the next.
    #[cfg(test)]
    fail_next: bool,
}

impl Writer {
    /// The loop: take the buffer, write it, sync per policy, wake the
    /// waiters, install a finished rewrite, and stop once closed and
    /// drained.
    fn run(mut self) {
        loop {
            let closing = self.take_work();
            if let Err(e) = self.write_out(closing) {
                match self.failing_since {
                    None => {
                        crate::log::warn(format_args!(
                            "{}: {e} (retrying every {} ms)",
                            self.shared.path.display(),
                            RETRY_AFTER.as_millis()
                        ));
                        self.failing_since = Some(Instant::now());
                        self.shared.failing.store(true, Ordering::Relaxed);
                    }
                    Some(since) if closing && since.elapsed() >= CLOSE_GIVE_UP => {
                        crate::log::warn(format_args!(
                            "{}: giving up at exit with {} bytes not written",
                            self.shared.path.display(),
                            self.pending.len()
                        ));
                        break;
                    }
                    Some(_) => {}
                }
                self.retry = true;
                thread::sleep(RETRY_AFTER);
                continue;
            }
            if self.failing_since.take().is_some() {
                crate::log::info(format_args!(
                    "{}: writing again",
                    self.shared.path.display()
                ));
                self.shared.failing.store(false, Ordering::Relaxed);
            }
            self.retry = false;
            self.publish();
            if let Some(request) = self.finish.take() {
                self.install(request);
            }
            if closing && self.shared.lock().buf.is_empty() {
                break;
            }
        }
        let mut st = self.shared.lock();
        st.stopped = true;
        // Waiters for records that will never be written.
        let waiters = std::mem::take(&mut st.waiters);
        drop(st);
        drop(waiters);
        self.shared.done.notify_all();
    }

    /// When `everysec` must sync next, if something is unsynced.
    fn sync_deadline(&self) -> Option<Instant> {
        (self.shared.fsync == Fsync::EverySec && self.unsynced).then(|| self.last_sync + SYNC_EVERY)
    }

    /// Waits for something to do and takes the appended records (and a
    /// finished rewrite); returns whether the log is closing.
    fn take_work(&mut self) -> bool {
        #[cfg(test)]
        while self.shared.faults.stalled.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(1));
        }
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        while !(self.retry || !st.buf.is_empty() || st.finish.is_some() || st.closing) {
            match self.sync_deadline() {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    st = shared
                        .work
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
        let from = self.pending.len();
        if from == 0 {
            std::mem::swap(&mut st.buf, &mut self.pending);
        } else {
            self.pending.extend_from_slice(&st.buf);
            st.buf.clear();
        }
        self.pending_seq = st.seq;
        let capture = st.rewrite.as_mut().map(|c| {
            let skip = std::mem::take(&mut c.skip);
            (c.id, from + skip)
        });
        if let Some(request) = st.finish.take() {
            self.finish = Some(request);
        }
        let closing = st.closing;
        drop(st);
        match capture {
            Some((id, start)) => {
                if self.tail_id != id {
                    self.tail.clear();
                    self.tail_id = id;
                }
                self.tail.extend_from_slice(&self.pending[start..]);
            }
            None if self.tail.capacity() > 0 => self.tail = Vec::new(),
            None => {}
        }
        closing
    }

    /// Writes `pending` whole and syncs per the policy.
    fn write_out(&mut self, closing: bool) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut written = 0;
            while written < self.pending.len() {
                match self.write_some(written) {
                    Ok(0) => {
                        self.pending.drain(..written);
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    Ok(n) => {
                        written += n;
                        self.shared.unwritten.fetch_sub(n, Ordering::Relaxed);
                        self.shared.file_size.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // What was written stays written; only the rest is
                        // tried again, so no record is doubled.
                        self.pending.drain(..written);
                        return Err(e);
                    }
                }
            }
            self.pending.clear();
            if self.pending.capacity() > KEEP_CAPACITY {
                self.pending = Vec::new();
            }
            self.written_seq = self.pending_seq;
            self.unsynced = true;
            self.shared.writes.fetch_add(1, Ordering::Relaxed);
        }
        let sync = match self.shared.fsync {
            Fsync::Always => self.unsynced,
            Fsync::EverySec => self.unsynced && (closing || self.last_sync.elapsed() >= SYNC_EVERY),
            Fsync::No => false,
        };
        if sync {
            self.sync()?;
            self.unsynced = false;
            self.last_sync = Instant::now();
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One `write(2)` of `pending` from `at`.
    fn write_some(&mut self, at: usize) -> io::Result<usize> {
        #[cfg(test)]
        {
            if std::mem::take(&mut self.fail_next) {
                return Err(io::Error::other("injected write failure"));
            }
            let rest = self.pending.len() - at;
            let faults = &self.shared.faults.writes;
            if rest > 1 && faults.load(Ordering::Relaxed) > 0 {
                faults.fetch_sub(1, Ordering::Relaxed);
                self.fail_next = true;
                return self.file.write(&self.pending[at..at + rest / 2]);
            }
        }
        self.file.write(&self.pending[at..])
    }

    /// `fdatasync(2)` of the log.
    fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        {
            let faults = &self.shared.faults.syncs;
            if faults.load(Ordering::Relaxed) > 0 {
                faults.fetch_sub(1, Ordering::Relaxed);
                return Err(io::Error::other("injected sync failure"));
            }
        }
        self.file.sync_data()
    }

    /// Raises `durable` and wakes the waiters it covers.
    fn publish(&mut self) {
        if self.shared.fsync == Fsync::Always && self.unsynced {
            return;
        }
        let durable = self.written_seq;
        if durable <= self.published {
            return;
        }
        self.published = durable;
        let mut st = self.shared.lock();
        self.shared.durable.store(durable, Ordering::Release);
        let later = st.waiters.split_off(&(durable + 1));
        let ready = std::mem::replace(&mut st.waiters, later);
        drop(st);
        for wake in ready.into_values().flatten() {
            wake();
        }
    }

    /// Completes a rewrite: the records since it began, sync, rename,
    /// directory sync, then appends go to the new file.
    fn install(&mut self, request: FinishRequest) {
        let FinishRequest { id, mut file, size } = request;
        let tmp = self.shared.dir.join(REWRITE_NAME);
        let tail: &[u8] = if self.tail_id == id { &self.tail } else { &[] };
        let renamed = file
            .write_all(tail)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, &self.shared.path));
        let result = match renamed {
            Ok(()) => {
                self.file = file;
                self.unsynced = false;
                self.shared
                    .file_size
                    .store(size + tail.len() as u64, Ordering::Relaxed);
                self.shared.rewrites.fetch_add(1, Ordering::Relaxed);
                // The new file is the log from here on whatever happens;
                // a failed directory sync only leaves the rename to the
                // file system's next commit.
                if let Err(e) = sync_dir(&self.shared.dir) {
                    crate::log::warn(format_args!(
                        "cannot sync {} after a rewrite: {e}",
                        self.shared.dir.display()
                    ));
                }
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        };
        self.tail = Vec::new();
        let mut st = self.shared.lock();
        st.rewrite = None;
        st.finished = Some((id, result));
        drop(st);
        self.shared.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;

    /// A directory of its own under the system's temp directory, removed
    /// when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("muse-aof-{}-{n}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }

        fn log(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    type Record = (u8, Vec<Vec<u8>>);

    /// Opens the log and collects what it replays.
    fn open(dir: &TempDir, fsync: Fsync) -> anyhow::Result<(Aof, ReplayStats, Vec<Record>)> {
        let mut records = Vec::new();
        let (aof, stats) = Aof::open(&dir.0, fsync, |db, args| {
            records.push((db, args.iter().map(|a| a.to_vec()).collect()));
            Ok(())
        })?;
        Ok((aof, stats, records))
    }

    fn reopen(dir: &TempDir) -> (ReplayStats, Vec<Record>) {
        let (aof, stats, records) = open(dir, Fsync::No).unwrap();
        aof.close();
        (stats, records)
    }

    fn record(db: u8, args: &[&[u8]]) -> Record {
        (db, args.iter().map(|a| a.to_vec()).collect())
    }

    fn set(n: usize) -> Vec<Vec<u8>> {
        vec![
            b"SET".to_vec(),
            format!("key:{n}").into_bytes(),
            format!("value:{n}").into_bytes(),
        ]
    }

    fn refs(args: &[Vec<u8>]) -> Vec<&[u8]> {
        args.iter().map(|a| a.as_slice()).collect()
    }

    /// Where each record of a log starts, and where the last one ends.
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut at = MAGIC.len();
        let mut starts = vec![];
        while at < bytes.len() {
            starts.push(at);
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += RECORD_HEADER + len;
        }
        assert_eq!(at, bytes.len());
        starts.push(at);
        starts
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut out = Vec::new();
        encode_record(&mut out, 3, &[b"SET", b"k", b""]);
        let payload = [
            &[3u8][..],
            &3u32.to_le_bytes(),
            &3u32.to_le_bytes(),
            b"SET",
            &1u32.to_le_bytes(),
            b"k",
            &0u32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(&out[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&out[4..8], &crc32fast::hash(&payload).to_le_bytes());
        assert_eq!(&out[8..], &payload[..]);
        assert_eq!(
            decode_record(&out[8..]),
            Ok((3, vec![&b"SET"[..], b"k", b""]))
        );

        // No arguments at all, and binary ones.
        let mut out = Vec::new();
        encode_record(&mut out, 15, &[]);
        assert_eq!(decode_record(&out[8..]), Ok((15, vec![])));
        let binary: &[u8] = b"\0\r\n\xff$3\r\n";
        out.clear();
        encode_record(&mut out, 0, &[binary, b"x"]);
        assert_eq!(decode_record(&out[8..]), Ok((0, vec![binary, b"x"])));
    }

    #[test]
    fn decode_refuses_malformed_payloads() {
        assert_eq!(decode_record(b""), Err(RecordError::Short(0)));
        assert_eq!(decode_record(b"\x01\x01\0"), Err(RecordError::Short(1)));
        // One argument announced, none there; then one too long.
        assert_eq!(decode_record(b"\x01\x01\0\0\0"), Err(RecordError::Short(5)));
        assert_eq!(
            decode_record(b"\x01\x01\0\0\0\x05\0\0\0abc"),
            Err(RecordError::Short(9))
        );
        // A huge count fails on the data, without reserving for it.
        assert_eq!(
            decode_record(b"\x01\xff\xff\xff\xff"),
            Err(RecordError::Short(5))
        );
        assert_eq!(
            decode_record(b"\x01\x00\0\0\0xy"),
            Err(RecordError::Trailing(2))
        );
    }

    #[test]
    fn fsync_policies_parse_and_print() {
        for (text, policy) in [
            ("always", Fsync::Always),
            ("everysec", Fsync::EverySec),
            ("no", Fsync::No),
        ] {
            assert_eq!(text.parse::<Fsync>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!("EverySec".parse::<Fsync>(), Ok(Fsync::EverySec));
        assert_eq!(
            "sometimes".parse::<Fsync>(),
            Err("unknown fsync policy 'sometimes' (expected always, everysec or no)".into())
        );
    }

    #[test]
    fn appends_are_replayed_in_order_after_reopen() {
        let dir = TempDir::new("reopen");
        let (aof, stats, records) = open(&dir, Fsync::Always).unwrap();
        assert_eq!(
            stats,
            ReplayStats {
                records: 0,
                bytes: 8,
                truncated: None
            }
        );
        assert!(records.is_empty());
        assert_eq!(fs::read(dir.log()).unwrap(), MAGIC);
        let written: Vec<Record> = vec![
            record(0, &[b"SET", b"a", b"1"]),
            record(5, &[b"SET", b"", b""]),
            record(15, &[b"RPUSH", b"\0bin\r\n", b"\xff\xfe", b"x"]),
            record(0, &[]),
            record(1, &[b"DEL", b"a"]),
        ];
        for (i, (db, args)) in written.iter().enumerate() {
            assert_eq!(aof.append(*db, &refs(args)), i as u64 + 1);
        }
        aof.close();
        assert_eq!(aof.durable(), 5);
        assert_eq!(aof.backlog(), 0);
        let size = fs::metadata(dir.log()).unwrap().len();
        assert_eq!(aof.file_size(), size);
        drop(aof);

        let (aof, stats, records) = open(&dir, Fsync::EverySec).unwrap();
        assert_eq!(records, written);
        assert_eq!(
            stats,
            ReplayStats {
                records: 5,
                bytes: size,
                truncated: None
            }
        );
        // Numbering starts again at 1 and appends go after the old ones.
        assert_eq!(aof.append(2, &[b"INCR", b"n"]), 1);
        aof.close();
        drop(aof);
        let (_, records) = reopen(&dir);
        assert_eq!(records.len(), 6);
        assert_eq!(records[5], record(2, &[b"INCR", b"n"]));
    }

    #[test]
    fn group_commit_shares_fsyncs_and_wakes_every_waiter() {
        let dir = TempDir::new("group");
        let (aof, _, _) = open(&dir, Fsync::Always).unwrap();
        let (woken_tx, woken_rx) = mpsc::channel();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let aof = aof.clone();
                let woken_tx = woken_tx.clone();
                thread::spawn(move || {
                    for i in 0..200 {
                        let key = format!("t{t}:{i}");
                        let seq = aof.append(t, &[b"SET", key.as_bytes(), b"v"]);
                        let (tx, rx) = mpsc::channel();
                        aof.when_durable(seq, Box::new(move || tx.send(()).unwrap()));
                        rx.recv().unwrap();
                        assert!(aof.durable() >= seq);
                        woken_tx.send(()).unwrap();
                    }
                })
            })
            .collect();
        drop(woken_tx);
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(woken_rx.iter().count(), 1600);
        let stats = aof.stats();
        eprintln!(
            "1600 appends with always: {} writes, {} fdatasyncs",
            stats.writes, stats.syncs
        );
        assert!(stats.syncs < 1600, "{stats:?}");
        assert_eq!(aof.durable(), 1600);
        // Already durable: called at once, on this thread.
        let here = thread::current().id();
        let (tx, rx) = mpsc::channel();
        aof.when_durable(
            1600,
            Box::new(move || tx.send(thread::current().id()).unwrap()),
        );
        assert_eq!(rx.try_recv(), Ok(here));
        aof.close();
        drop(aof);
        let (stats, records) = reopen(&dir);
        assert_eq!(stats.records, 1600);
        // Each thread's records in its own order.
        for t in 0..8u8 {
            let keys: Vec<_> = records
                .iter()
                .filter(|(db, _)| *db == t)
                .map(|(_, args)| args[1].clone())
                .collect();
            let expected: Vec<_> = (0..200).map(|i| format!("t{t}:{i}").into_bytes()).collect();
            assert_eq!(keys, expected);
        }
    }

    #[test]
    fn failed_writes_and_syncs_are_retried_without_losing_or_doubling() {
        let dir = TempDir::new("faults");
        let (aof, _, _) = open(&dir, Fsync::Always).unwrap();
        aof.shared.faults.writes.store(3, Ordering::Relaxed);
        aof.shared.faults.syncs.store(2, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        for n in 0..50 {
            let seq = aof.append(0, &refs(&set(n)));
            let tx = tx.clone();
            aof.when_durable(seq, Box::new(move || tx.send(seq).unwrap()));
        }
        drop(tx);
        let woken: Vec<u64> = rx.iter().collect();
        // Five failures, each followed by a 100 ms pause.
        assert!(started.elapsed() >= RETRY_AFTER * 5);
        assert_eq!(woken.len(), 50);
        assert_eq!(aof.durable(), 50);
        assert!(!aof.stats().failing);
        aof.close();
        assert_eq!(aof.file_size(), fs::metadata(dir.log()).unwrap().len());
        drop(aof);
        let (stats, records) = reopen(&dir);
        assert_eq!(stats.truncated, None);
        assert_eq!(records, (0..50).map(|n| (0, set(n))).collect::<Vec<_>>());
    }

    #[test]
    fn everysec_and_no_make_writes_durable_once_written() {
        for policy in [Fsync::EverySec, Fsync::No] {
            let dir = TempDir::new("policies");
            let (aof, _, _) = open(&dir, policy).unwrap();
            assert_eq!(aof.fsync(), policy);
            let seq = aof.append(0, &[b"SET", b"k", b"v"]);
            let (tx, rx) = mpsc::channel();
            aof.when_durable(seq, Box::new(move || tx.send(()).unwrap()));
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            aof.close();
            let syncs = aof.stats().syncs;
            match policy {
                // The close syncs what the last second wrote.
                Fsync::EverySec => assert!(syncs >= 1),
                _ => assert_eq!(syncs, 0),
            }
            drop(aof);
            assert_eq!(reopen(&dir).1, vec![record(0, &[b"SET", b"k", b"v"])]);
        }
    }

    #[test]
    fn everysec_syncs_an_idle_log_within_a_second() {
        let dir = TempDir::new("idle");
        let (aof, _, _) = open(&dir, Fsync::EverySec).unwrap();
        // The first write syncs at once (the last sync is over a second
        // old by then); the next one waits for the timer.
        thread::sleep(SYNC_EVERY);
        aof.append(0, &[b"SET", b"a", b"1"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while aof.stats().syncs < 1 {
            assert!(Instant::now() < deadline, "no first sync");
            thread::sleep(Duration::from_millis(10));
        }
        aof.append(0, &[b"SET", b"b", b"2"]);
        while aof.stats().syncs < 2 {
            assert!(Instant::now() < deadline, "no sync of the idle second");
            thread::sleep(Duration::from_millis(20));
        }
        aof.close();
    }

    #[test]
    fn a_torn_last_record_is_dropped_at_every_cut() {
        let dir = TempDir::new("torn");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        for n in 0..3 {
            aof.append(0, &refs(&set(n)));
        }
        aof.close();
        drop(aof);
        let whole = fs::read(dir.log()).unwrap();
        let offsets = record_offsets(&whole);
        let (start, end) = (offsets[2], offsets[3]);
        for cut in start + 1..end {
            fs::write(dir.log(), &whole[..cut]).unwrap();
            let (aof, stats, records) = open(&dir, Fsync::No).unwrap();
            assert_eq!(records, vec![(0, set(0)), (0, set(1))], "cut at {cut}");
            assert_eq!(
                stats,
                ReplayStats {
                    records: 2,
                    bytes: start as u64,
                    truncated: Some((start as u64, (cut - start) as u64)),
                },
                "cut at {cut}"
            );
            assert_eq!(fs::metadata(dir.log()).unwrap().len(), start as u64);
            aof.append(0, &[b"SET", b"after", b"cut"]);
            aof.close();
            drop(aof);
            let (stats, records) = reopen(&dir);
            assert_eq!(stats.truncated, None, "cut at {cut}");
            assert_eq!(records.len(), 3);
            assert_eq!(records[2], record(0, &[b"SET", b"after", b"cut"]));
        }
        // Cut exactly between records: nothing is torn.
        fs::write(dir.log(), &whole[..start]).unwrap();
        let (stats, records) = reopen(&dir);
        assert_eq!((stats.records, stats.truncated), (2, None));
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_length_damaged_past_the_end_with_records_after_it_is_refused() {
        let dir = TempDir::new("midlen");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        for n in 0..100 {
            aof.append(0, &refs(&set(n)));
        }
        aof.close();
        drop(aof);
        let mut bytes = fs::read(dir.log()).unwrap();
        let offsets = record_offsets(&bytes);
        let at = offsets[3];
        bytes[at..at + 4].copy_from_slice(&10_000_000u32.to_le_bytes());
        fs::write(dir.log(), &bytes).unwrap();
        let err = format!("{:#}", open(&dir, Fsync::No).err().unwrap());
        assert!(
            err.contains(&format!("byte {at}")) && err.contains("runs past the end"),
            "{err}"
        );
        // Nothing was cut: the operator has the whole file to look at.
        assert_eq!(fs::read(dir.log()).unwrap(), bytes);
    }

    #[test]
    fn a_bad_checksum_on_the_last_record_is_torn() {
        let dir = TempDir::new("lastcrc");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        for n in 0..3 {
            aof.append(0, &refs(&set(n)));
        }
        aof.close();
        drop(aof);
        let mut bytes = fs::read(dir.log()).unwrap();
        let offsets = record_offsets(&bytes);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        fs::write(dir.log(), &bytes).unwrap();
        let (stats, records) = reopen(&dir);
        assert_eq!(records.len(), 2);
        assert_eq!(
            stats.truncated,
            Some((offsets[2] as u64, (offsets[3] - offsets[2]) as u64))
        );
    }

    #[test]
    fn a_torn_header_starts_the_log_again() {
        let dir = TempDir::new("header");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.log(), &MAGIC[..3]).unwrap();
        let (stats, records) = reopen(&dir);
        assert!(records.is_empty());
        assert_eq!(stats.truncated, Some((0, 3)));
        assert_eq!(fs::read(dir.log()).unwrap(), MAGIC);

        fs::write(dir.log(), b"*2\r\n$3\r\nSET\r\n").unwrap();
        let err = open(&dir, Fsync::No).err().unwrap().to_string();
        assert!(
            err.ends_with("appendonly.muse: not a muse kv log (bad header)"),
            "{err}"
        );
        fs::write(dir.log(), b"MUSEKV\0\x02").unwrap();
        let err = open(&dir, Fsync::No).err().unwrap().to_string();
        assert!(err.contains("format version 2"), "{err}");
    }

    #[test]
    fn a_flipped_byte_in_a_middle_record_fails_with_its_offset() {
        let dir = TempDir::new("flip");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        for n in 0..5 {
            aof.append(0, &refs(&set(n)));
        }
        aof.close();
        drop(aof);
        let whole = fs::read(dir.log()).unwrap();
        let offsets = record_offsets(&whole);
        let at = offsets[2];
        // A flip in the payload, in the checksum, and in the length (one
        // byte shorter, and over the limit).
        for (flip, mask, why) in [
            (at + RECORD_HEADER + 3, 0x80, "bad checksum"),
            (at + 5, 0x80, "bad checksum"),
            (at, 0x01, "bad checksum"),
            (at + 3, 0x80, "is over the limit"),
        ] {
            let mut bytes = whole.clone();
            bytes[flip] ^= mask;
            fs::write(dir.log(), &bytes).unwrap();
            let err = format!("{:#}", open(&dir, Fsync::No).err().unwrap());
            let log = dir.log();
            let expected = format!("{}: corrupt record at byte {at}: ", log.display());
            assert!(err.starts_with(&expected), "{err}");
            assert!(err.contains(why), "{err}");
            // Refused, not repaired.
            assert_eq!(fs::read(dir.log()).unwrap(), bytes);
        }
    }

    #[test]
    fn an_apply_error_stops_replay_with_the_offset() {
        let dir = TempDir::new("apply");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        aof.append(0, &[b"SET", b"a", b"1"]);
        aof.append(0, &[b"BOGUS"]);
        aof.close();
        drop(aof);
        let at = record_offsets(&fs::read(dir.log()).unwrap())[1];
        let err = Aof::open(&dir.0, Fsync::No, |_, args| match args[0] {
            b"SET" => Ok(()),
            _ => bail!("unknown command"),
        })
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.ends_with(&format!("record at byte {at}: unknown command")),
            "{text}"
        );
    }

    #[test]
    fn a_second_open_of_the_directory_fails_on_the_lock() {
        let dir = TempDir::new("lock");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        // Same process, new open file description: flock conflicts.
        let err = open(&dir, Fsync::No).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "another server holds the data directory {} (lock {})",
                dir.0.display(),
                dir.0.join(LOCK_NAME).display()
            )
        );
        aof.close();
        drop(aof);
        // Released once the log is closed and dropped.
        reopen(&dir);
    }

    #[test]
    fn a_rewrite_keeps_the_snapshot_and_later_appends_once() {
        let dir = TempDir::new("rewrite");
        let (aof, _, _) = open(&dir, Fsync::Always).unwrap();
        for n in 0..500 {
            aof.append(0, &refs(&set(n)));
        }
        // Pretend the snapshot of those 500 is one record per 100.
        let mut rewrite = aof.begin_rewrite().unwrap();
        assert!(aof.rewriting());
        assert_eq!(
            aof.begin_rewrite().err().unwrap().to_string(),
            "a rewrite is already running"
        );
        let appender = {
            let aof = aof.clone();
            thread::spawn(move || {
                for n in 500..1500 {
                    aof.append(1, &refs(&set(n)));
                }
            })
        };
        for chunk in 0..5 {
            let name = format!("snapshot:{chunk}");
            rewrite.write(0, &[b"SNAP", name.as_bytes()]).unwrap();
        }
        appender.join().unwrap();
        rewrite.finish().unwrap();
        assert!(!aof.rewriting());
        assert_eq!(aof.stats().rewrites, 1);
        assert!(!dir.0.join(REWRITE_NAME).exists());
        for n in 1500..1600 {
            aof.append(2, &refs(&set(n)));
        }
        aof.close();
        assert_eq!(aof.file_size(), fs::metadata(dir.log()).unwrap().len());
        drop(aof);

        let (stats, records) = reopen(&dir);
        assert_eq!(stats.records, 5 + 1100);
        for (chunk, (db, args)) in records[..5].iter().enumerate() {
            assert_eq!(
                (*db, args.clone()),
                record(0, &[b"SNAP", format!("snapshot:{chunk}").as_bytes()])
            );
        }
        let later: Vec<_> = records[5..].iter().map(|(_, args)| args.clone()).collect();
        let expected: Vec<_> = (500..1600).map(set).collect();
        assert_eq!(later, expected);
    }

    #[test]
    fn an_aborted_rewrite_leaves_the_log_alone() {
        let dir = TempDir::new("abort");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        aof.append(0, &[b"SET", b"a", b"1"]);
        let mut rewrite = aof.begin_rewrite().unwrap();
        assert!(dir.0.join(REWRITE_NAME).exists());
        rewrite.write(0, &[b"SNAP"]).unwrap();
        aof.append(0, &[b"SET", b"b", b"2"]);
        rewrite.abort();
        assert!(!dir.0.join(REWRITE_NAME).exists());
        assert!(!aof.rewriting());
        // A later rewrite does not see the first one's records.
        let mut rewrite = aof.begin_rewrite().unwrap();
        aof.append(0, &[b"SET", b"c", b"3"]);
        rewrite.write(0, &[b"SNAP", b"a", b"b"]).unwrap();
        rewrite.finish().unwrap();
        aof.close();
        drop(aof);
        assert_eq!(
            reopen(&dir).1,
            vec![
                record(0, &[b"SNAP", b"a", b"b"]),
                record(0, &[b"SET", b"c", b"3"])
            ]
        );
    }

    #[test]
    fn replay_speed_of_a_million_records() {
        let dir = TempDir::new("speed");
        let (aof, _, _) = open(&dir, Fsync::No).unwrap();
        let value = b"value";
        let mut key = Vec::new();
        for n in 0..1_000_000u32 {
            key.clear();
            write!(key, "key:{n}").unwrap();
            aof.append(0, &[b"SET", &key, value]);
        }
        aof.close();
        drop(aof);
        let started = Instant::now();
        let mut count = 0u64;
        let (aof, stats) = Aof::open(&dir.0, Fsync::No, |_, args| {
            count += args.len() as u64 / 3;
            Ok(())
        })
        .unwrap();
        let took = started.elapsed();
        assert_eq!((stats.records, count), (1_000_000, 1_000_000));
        eprintln!(
            "replayed {} records ({} bytes) in {:.3} s: {:.0} records/s",
            stats.records,
            stats.bytes,
            took.as_secs_f64(),
            stats.records as f64 / took.as_secs_f64()
        );
        aof.close();
    }
}
