//! A gate: a bound on costly work under way (password checks, big
//! computations), per server and per client address, shared by every
//! process of the server. FTP bounds its argon2 login checks with one; calc
//! bounds its computations with another (without a per-address share).
//!
//! Why: an argon2 check costs ~19 MiB and tens of milliseconds of CPU.
//! Unbounded, 150 clients failing logins at once took a server to 1.9 GiB
//! and 155 threads, and a valid login waited 8 s behind them.
//!
//! # How a session uses it
//!
//! Before it starts the work, the session calls [`Gate::try_acquire`] with
//! its peer's address.
//!
//! - With a [`Permit`], it moves the permit into the closure that does the
//!   work, which drops it when the work ends (so the place is given back
//!   wherever and however the work finishes).
//! - Without one, it keeps only what the work needs, holding no thread and
//!   no working memory, and tries again a little later (FTP's
//!   `LOGIN_RETRY`, calc's `COMPUTE_RETRY`: 20 ms) until its deadline.
//!
//! One address holds at most `per_ip` places, so a flood of bad logins from
//! one address delays only itself, and a valid login from another address
//! gets a place at once.
//!
//! # Shared places
//!
//! The places are `total` slots in `MAP_SHARED` memory made before the
//! first fork, so prefork workers, process-per-connection children and
//! threads all see the same ones. A slot is claimed by a compare-and-swap
//! of its owner pid from 0, and holds its address bucket
//! ([`ip_bucket`]); the count per address is a scan of the slots, so the
//! slots are the one source of truth. Threads of one process share a pid,
//! which is fine: a live process's slots are never taken from it.
//!
//! A process killed while holding places cannot leak them: when the gate
//! looks full, `try_acquire` frees slots whose owner no longer exists
//! (`kill(pid, 0)` fails with `ESRCH`). A dead child exists until its
//! parent reaps it, so its places come back once it is reaped (the
//! master reaps on `SIGCHLD`). A pid reused by a new process keeps a dead
//! owner's slot until that process ends too: rare, and it only refuses
//! early, never admits more than the bounds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::scoreboard::ip_bucket;

/// The most places a gate can have: far more concurrent checks than any
/// machine has cores to run them (and ~1.2 GiB of hash memory), and few
/// enough that scanning every slot on each attempt costs nothing.
pub const MAX_TOTAL: usize = 64;

/// Places per client address: two checks under way from one address, so a
/// client that retries at once is not refused by its own previous attempt,
/// and a flood from one address holds no more than two.
pub const DEFAULT_PER_IP: usize = 2;

/// Places per server by default: two checks per CPU keep every core busy
/// hashing when logins are many (one may wait on the scheduler while the
/// other runs), bound memory at ~19 MiB a place, and never fewer than two
/// so a single-core machine still takes a second address at once.
pub fn default_total() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).clamp(2, MAX_TOTAL)
}

/// What a slot's `bucket` holds when it names no address: the slot is free,
/// or just claimed and not yet labelled. Zero, so that fresh (zero-filled)
/// memory is all free slots; a real bucket is stored plus one.
const NO_BUCKET: u32 = 0;

/// One place.
///
/// Every access is `SeqCst`: a claimant labels its slot and then counts the
/// others, and two claimants from one address racing must not both miss
/// each other's label (with weaker orderings the store may pass the loads).
#[repr(C)]
#[derive(Debug)]
struct Slot {
    /// The holder's pid (0: free).
    owner_pid: AtomicI32,
    /// The holder's address bucket plus one ([`NO_BUCKET`]: none).
    bucket: AtomicU32,
}

/// The shared places (see the module documentation). Copying it shares
/// the same places.
#[derive(Clone, Copy)]
pub struct Gate {
    slots: &'static [Slot],
    per_ip: usize,
    /// How many [`WaitTurn`]s are out: clients waiting for a place, whom a
    /// newcomer lets go first ([`Gate::try_acquire_in_turn`]).
    waiting: &'static AtomicU32,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("total", &self.slots.len())
            .field("per_ip", &self.per_ip)
            .field("held", &self.held())
            .finish()
    }
}

/// One place at the gate, given back when dropped.
///
/// Only the process that took it gives it back: a copy inherited by a
/// forked child is inert there.
#[derive(Debug)]
pub struct Permit {
    slot: &'static Slot,
    owner_pid: i32,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.slot.owner_pid.load(Ordering::SeqCst) != self.owner_pid
            || std::process::id() as i32 != self.owner_pid
        {
            return;
        }
        // Unlabel before freeing, so no one sees our bucket on a slot that
        // someone else has since claimed.
        self.slot.bucket.store(NO_BUCKET, Ordering::SeqCst);
        self.slot.owner_pid.store(0, Ordering::SeqCst);
    }
}

/// A client's place in the line of those waiting at a [`Gate`], given up
/// when dropped. Only the process that took it gives it up (a copy
/// inherited by a forked child is inert there). A process killed while
/// waiting leaves the count one too high: newcomers then wait one retry
/// before taking a free place, which is slower, never stuck.
#[derive(Debug)]
pub struct WaitTurn {
    waiting: &'static AtomicU32,
    owner_pid: i32,
}

impl Drop for WaitTurn {
    fn drop(&mut self) {
        if std::process::id() as i32 == self.owner_pid {
            let _ = self
                .waiting
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }
}

impl Gate {
    /// A gate of `total` places (1 to [`MAX_TOTAL`]), at most `per_ip`
    /// (at least 1) of them for one address, in memory shared with every
    /// process forked afterwards. Call it before the first fork.
    pub fn new(total: usize, per_ip: usize) -> std::io::Result<Gate> {
        if !(1..=MAX_TOTAL).contains(&total) || per_ip == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("login gate: {total} places, {per_ip} per address (want 1 to {MAX_TOTAL}, and at least 1)"),
            ));
        }
        let slots_len = total * std::mem::size_of::<Slot>();
        let mem = crate::sys::shared_memory(slots_len + std::mem::size_of::<AtomicU32>())?;
        // SAFETY: the mapping is page-aligned (so aligned for atomics), large
        // enough, zero-filled (all slots free, see NO_BUCKET; no one
        // waiting) and never unmapped; Slot is plain atomics, and the
        // waiting count sits after the slots at a 4-byte-aligned offset
        // (Slot is two 4-byte atomics).
        let slots = unsafe { std::slice::from_raw_parts(mem.as_ptr().cast::<Slot>(), total) };
        let waiting = unsafe { &*mem.as_ptr().add(slots_len).cast::<AtomicU32>() };
        Ok(Gate {
            slots,
            per_ip,
            waiting,
        })
    }

    /// [`Gate::try_acquire`] that keeps turns: a client that is not yet
    /// waiting (`turn` is `None`) takes no place while others wait, and
    /// joins them instead (`turn` becomes its [`WaitTurn`]); a waiting
    /// client takes a place when one is free, and its turn ends. Without
    /// this, a client whose last piece of work just ended, asking again at
    /// once, would take the place it gave back every time, ahead of those
    /// polling for it.
    pub fn try_acquire_in_turn(&self, ip: IpAddr, turn: &mut Option<WaitTurn>) -> Option<Permit> {
        if turn.is_none() && self.waiting.load(Ordering::SeqCst) > 0 {
            *turn = Some(self.wait_turn());
            return None;
        }
        let permit = self.try_acquire(ip);
        match (&permit, turn.is_some()) {
            (Some(_), _) => *turn = None,
            (None, false) => *turn = Some(self.wait_turn()),
            (None, true) => {}
        }
        permit
    }

    fn wait_turn(&self) -> WaitTurn {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        WaitTurn {
            waiting: self.waiting,
            owner_pid: std::process::id() as i32,
        }
    }

    /// A place for a check from `ip`, if fewer than `total` are held in the
    /// whole server and fewer than `per_ip` from `ip`'s bucket. Lock-free;
    /// when the gate looks full it first frees the places of processes that
    /// have died.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<Permit> {
        let bucket = ip_bucket(ip) as u32 + 1;
        let me = std::process::id() as i32;
        if let Some(permit) = self.claim(bucket, me) {
            return Some(permit);
        }
        if self.reclaim_dead(me) == 0 {
            return None;
        }
        self.claim(bucket, me)
    }

    /// Places held now, by any process (for tests and status).
    pub fn held(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.owner_pid.load(Ordering::SeqCst) != 0)
            .count()
    }

    /// Claims a free slot for `bucket`, unless that bucket already has
    /// `per_ip` places.
    fn claim(&self, bucket: u32, me: i32) -> Option<Permit> {
        if self.count(bucket, None) >= self.per_ip {
            return None;
        }
        let permit = self.take_free(bucket, me)?;
        self.keep_within_bound(permit)
    }

    /// Takes any free slot and labels it `bucket`. Another thread or
    /// process may race for each free slot: they are tried in turn.
    fn take_free(&self, bucket: u32, me: i32) -> Option<Permit> {
        let slot = self.slots.iter().find(|s| {
            s.owner_pid
                .compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })?;
        slot.bucket.store(bucket, Ordering::SeqCst);
        Some(Permit {
            slot,
            owner_pid: me,
        })
    }

    /// Counts again once the slot is labelled: of claimants from one
    /// address that raced past the first count, the last to label sees all
    /// the others, so no more than `per_ip` keep their place (the others
    /// drop theirs, giving it back).
    fn keep_within_bound(&self, permit: Permit) -> Option<Permit> {
        let bucket = permit.slot.bucket.load(Ordering::SeqCst);
        (self.count(bucket, Some(permit.slot)) < self.per_ip).then_some(permit)
    }

    /// Held slots labelled `bucket`, not counting `except`.
    fn count(&self, bucket: u32, except: Option<&Slot>) -> usize {
        self.slots
            .iter()
            .filter(|s| !except.is_some_and(|e| std::ptr::eq(*s, e)))
            .filter(|s| {
                s.owner_pid.load(Ordering::SeqCst) != 0 && s.bucket.load(Ordering::SeqCst) == bucket
            })
            .count()
    }

    /// Frees the slots of owners that no longer exist; returns how many.
    /// Each distinct foreign pid is checked once (this process is alive, so
    /// a threaded server never makes the system call).
    fn reclaim_dead(&self, me: i32) -> usize {
        let mut checked = [(0i32, false); MAX_TOTAL];
        let mut n_checked = 0;
        let mut freed = 0;
        for slot in self.slots {
            let owner = slot.owner_pid.load(Ordering::SeqCst);
            if owner == 0 || owner == me {
                continue;
            }
            let dead = match checked[..n_checked].iter().find(|(p, _)| *p == owner) {
                Some(&(_, dead)) => dead,
                None => {
                    let dead = !alive(owner);
                    checked[n_checked] = (owner, dead);
                    n_checked += 1;
                    dead
                }
            };
            // Take it from the dead owner first, so that only we unlabel it
            // and then free it (a racing reclaimer's swap fails).
            if dead
                && slot
                    .owner_pid
                    .compare_exchange(owner, me, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                slot.bucket.store(NO_BUCKET, Ordering::SeqCst);
                slot.owner_pid.store(0, Ordering::SeqCst);
                freed += 1;
            }
        }
        freed
    }
}

/// Whether process `pid` exists (a zombie does, until it is reaped; one we
/// may not signal does too).
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        // Not a process: kill would address a group.
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Test addresses, each in its own bucket (so the per-address bound is
    /// what the assertions see, not a shared bucket).
    fn addrs<const N: usize>() -> [IpAddr; N] {
        let v: [IpAddr; N] = std::array::from_fn(|i| IpAddr::from([10, 0, 0, 1 + i as u8]));
        for (i, a) in v.iter().enumerate() {
            for b in &v[..i] {
                assert_ne!(ip_bucket(*a), ip_bucket(*b), "{a} and {b} share a bucket");
            }
        }
        v
    }

    /// Runs `f` in a forked child, which exits with its result (2 if it
    /// panics) without running any destructor; returns the child's pid.
    /// The child only touches atomics and makes system calls, which is
    /// safe in the child of a threaded test process.
    fn in_child(f: impl FnOnce() -> i32) -> libc::pid_t {
        // SAFETY: the child runs only `f` (atomics and system calls) and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(2);
            crate::sys::exit_now(code);
        }
        pid
    }

    /// Reaps `pid`; returns its exit code (-1: killed by a signal).
    fn reap(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: reaping our own child into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        }
    }

    #[test]
    fn gate_and_permit_cross_threads_and_outlive_their_scope() {
        fn shared<T: Copy + Send + Sync + 'static>() {}
        fn movable<T: Send + 'static>() {}
        shared::<Gate>();
        movable::<Permit>();
    }

    #[test]
    fn gate_sizes_out_of_range_are_refused() {
        assert!(Gate::new(0, 1).is_err());
        assert!(Gate::new(1, 0).is_err());
        assert!(Gate::new(MAX_TOTAL + 1, 2).is_err());
        assert!(Gate::new(MAX_TOTAL, 1).is_ok());
        assert!((2..=MAX_TOTAL).contains(&default_total()));
    }

    #[test]
    fn gate_bounds_per_server_and_per_address_and_gives_back_on_drop() {
        let [a, b, c] = addrs();
        let gate = Gate::new(3, 2).unwrap();
        let a1 = gate.try_acquire(a).unwrap();
        let a2 = gate.try_acquire(a).unwrap();
        assert!(gate.try_acquire(a).is_none(), "per address");
        let b1 = gate.try_acquire(b).unwrap();
        assert!(gate.try_acquire(c).is_none(), "per server");
        assert!(gate.try_acquire(b).is_none(), "per server, under b's bound");
        assert_eq!(gate.held(), 3);

        drop(a1);
        assert_eq!(gate.held(), 2);
        let c1 = gate.try_acquire(c).expect("a's drop made room");
        assert!(gate.try_acquire(a).is_none(), "full again");
        drop((a2, b1, c1));
        assert_eq!(gate.held(), 0);
        let again: Vec<_> = [a, a, b].iter().map(|ip| gate.try_acquire(*ip)).collect();
        assert!(again.iter().all(Option::is_some), "every place came back");
    }

    #[test]
    fn gate_counts_an_ipv4_mapped_address_as_the_ipv4_one() {
        let gate = Gate::new(4, 1).unwrap();
        let _v4 = gate.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(gate
            .try_acquire("::ffff:192.0.2.7".parse().unwrap())
            .is_none());
    }

    #[test]
    fn gate_place_of_a_child_that_exits_holding_it_is_reclaimed() {
        let [a, b] = addrs();
        let gate = Gate::new(1, 1).unwrap();
        let pid = in_child(|| match gate.try_acquire(a) {
            Some(p) => {
                std::mem::forget(p);
                0
            }
            None => 1,
        });
        assert_eq!(reap(pid), 0, "the child took the one place");
        assert_eq!(gate.held(), 1, "the child died holding its place");
        let p = gate.try_acquire(b).expect("reclaimed from the dead child");
        assert_eq!(gate.held(), 1);
        drop(p);
        assert_eq!(gate.held(), 0);
    }

    /// Kills and reaps a child still running when dropped, so that a
    /// failed assertion cannot leave it paused forever (`None`: already
    /// reaped, its pid may be another process's now).
    struct KillOnDrop(Option<libc::pid_t>);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                // SAFETY: killing and reaping our own unreaped child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }

    #[test]
    fn gate_place_of_a_live_child_is_kept_until_it_is_killed_and_reaped() {
        let [a, b] = addrs();
        let gate = Gate::new(1, 1).unwrap();
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let pid = in_child(|| {
            let got = gate.try_acquire(a);
            let byte = if got.is_some() { b'y' } else { b'n' };
            // SAFETY: writing one byte from a local to our pipe.
            unsafe { libc::write(fds[1], [byte].as_ptr().cast(), 1) };
            loop {
                // SAFETY: waits for the parent's SIGKILL.
                unsafe { libc::pause() };
            }
        });
        let mut child = KillOnDrop(Some(pid));
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(fds[1]) };
        let mut byte = [0u8];
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
        // SAFETY: closing the read end.
        unsafe { libc::close(fds[0]) };
        assert_eq!((n, byte[0]), (1, b'y'), "the child took the one place");

        assert!(gate.try_acquire(b).is_none(), "a live process keeps it");
        // SAFETY: killing our own child, as a crash would.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        // Wait until the child is a zombie, without reaping it.
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; WNOWAIT leaves the zombie.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0);
        assert!(gate.try_acquire(b).is_none(), "a zombie still exists");
        assert_eq!(reap(pid), -1);
        child.0 = None;
        assert!(gate.try_acquire(b).is_some(), "reclaimed once reaped");
    }

    #[test]
    fn gate_permit_inherited_by_a_child_is_given_back_only_by_its_taker() {
        let [a] = addrs();
        let gate = Gate::new(1, 1).unwrap();
        let mut permit = gate.try_acquire(a);
        assert!(permit.is_some());
        // The child drops its copy; the parent's stays held.
        let pid = in_child(|| {
            drop(permit.take());
            i32::from(gate.held() != 1)
        });
        assert_eq!(
            reap(pid),
            0,
            "the child's drop gave back the parent's place"
        );
        assert!(gate.try_acquire(a).is_none());
        drop(permit);
        assert_eq!(gate.held(), 0, "the taker gives it back");
    }

    #[test]
    fn gate_claimants_from_one_address_racing_past_the_count_keep_at_most_per_ip() {
        let [a] = addrs();
        let bucket = ip_bucket(a) as u32 + 1;
        let me = std::process::id() as i32;
        for per_ip in 1..=3 {
            let gate = Gate::new(8, per_ip).unwrap();
            // per_ip + 2 claimants all passed the first count before any
            // took a slot, then all took one.
            assert_eq!(gate.count(bucket, None), 0);
            let taken: Vec<_> = (0..per_ip + 2)
                .map(|_| gate.take_free(bucket, me).unwrap())
                .collect();
            let kept: Vec<_> = taken
                .into_iter()
                .filter_map(|p| gate.keep_within_bound(p))
                .collect();
            assert!(
                (1..=per_ip).contains(&kept.len()),
                "{} kept of {per_ip}",
                kept.len()
            );
            assert_eq!(gate.held(), kept.len(), "the others gave theirs back");
        }
    }

    /// Acquires and drops permits from `ips` in turn (starting at
    /// `start`), counting the places held (in `counts`: all, then one per
    /// address of `ips`) while holding one; returns how often a bound was
    /// passed.
    fn hammer(
        gate: Gate,
        ips: &[IpAddr],
        start: usize,
        counts: &[AtomicUsize],
        rounds: usize,
    ) -> usize {
        let mut over = 0;
        for i in start..start + rounds {
            let who = i % ips.len();
            if let Some(p) = gate.try_acquire(ips[who]) {
                let all = counts[0].fetch_add(1, Ordering::SeqCst) + 1;
                let mine = counts[1 + who].fetch_add(1, Ordering::SeqCst) + 1;
                if all > gate.slots.len() || mine > gate.per_ip {
                    over += 1;
                }
                std::hint::spin_loop();
                counts[1 + who].fetch_sub(1, Ordering::SeqCst);
                counts[0].fetch_sub(1, Ordering::SeqCst);
                drop(p);
            }
        }
        over
    }

    #[test]
    fn gate_threads_racing_never_pass_the_bounds() {
        // Three addresses at two each could hold six: the total (four)
        // binds as well as the per-address bound.
        let ips: [IpAddr; 3] = addrs();
        let gate = Gate::new(4, 2).unwrap();
        let counts: Arc<[AtomicUsize]> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || hammer(gate, &ips, t, &counts, 20_000))
            })
            .collect();
        let over: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(over, 0, "bounds passed");
        assert_eq!(gate.held(), 0);
    }

    #[test]
    fn gate_processes_racing_never_pass_the_bounds() {
        let ips: [IpAddr; 3] = addrs();
        let gate = Gate::new(4, 2).unwrap();
        let mem = crate::sys::shared_memory(4 * std::mem::size_of::<AtomicUsize>()).unwrap();
        // SAFETY: page-aligned, zero-filled (all counts 0), never unmapped;
        // shared with the children.
        let counts: &'static [AtomicUsize] =
            unsafe { std::slice::from_raw_parts(mem.as_ptr().cast(), 4) };
        let children: Vec<_> = (0..3)
            .map(|c| in_child(move || i32::from(hammer(gate, &ips, c, counts, 20_000) > 0)))
            .collect();
        let here = hammer(gate, &ips, 3, counts, 20_000);
        let codes: Vec<i32> = children.into_iter().map(reap).collect();
        assert_eq!((here, codes), (0, vec![0, 0, 0]), "bounds passed");
        assert_eq!(gate.held(), 0);
    }
}
