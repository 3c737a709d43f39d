//! SIGINT and SIGTERM: a process-wide "interrupted" flag, source children
//! stopped, leases released.
//!
//! [`install`] starts a watcher thread (signal-hook). On the first SIGINT or
//! SIGTERM it records the signal, sends SIGTERM to every registered child
//! ([`watch_child`]; source commands run in their own process group, so a
//! shell's grandchildren stop too), and then:
//!
//! - while a [`Graceful`] guard exists (an operation that polls [`check`],
//!   such as the content loop of a backup or a copy), it returns: that
//!   operation stops at its next check with [`ErrorKind::Interrupted`],
//!   indexes the packs it already stored, drops its lease and `snap` exits
//!   with 128 + the signal number (130 for SIGINT, 143 for SIGTERM);
//! - otherwise it runs the registered clean-ups ([`on_exit`]: lease
//!   removal) and ends the process as the signal's default action would.
//!
//! A second signal ends the process at once, without clean-up (the lease then
//! expires by itself, format-spec §19).

use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Signal number received first, 0 while none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Live [`Graceful`] guards.
static GRACEFUL: AtomicUsize = AtomicUsize::new(0);
/// Token source for [`CHILDREN`] and [`CLEANUPS`] entries.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// (token, pid, whether pid is a process group id).
static CHILDREN: Mutex<Vec<(u64, u32, bool)>> = Mutex::new(Vec::new());

type CleanupFn = Box<dyn Fn() + Send + Sync>;
static CLEANUPS: Mutex<Vec<(u64, CleanupFn)>> = Mutex::new(Vec::new());

/// Starts the watcher thread for SIGINT and SIGTERM (see the module docs).
/// Call once, early in `main`. `on_stopping` is called (on the watcher
/// thread, with the signal number) when the first signal finds a
/// [`Graceful`] operation that will stop at its next check: the program may
/// tell its user; the library itself prints nothing.
///
/// Errors: [`ErrorKind::Io`] when the handlers cannot be registered.
pub fn install(on_stopping: impl Fn(i32) + Send + 'static) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::io("installing the SIGINT/SIGTERM handlers", e))?;
    std::thread::Builder::new()
        .name("snap-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig, &on_stopping);
            }
        })
        .map_err(|e| Error::io("starting the signal thread", e))?;
    Ok(())
}

fn on_signal(sig: i32, on_stopping: &dyn Fn(i32)) {
    if SIGNAL
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Second signal: quit now.
        signal_children(rustix::process::Signal::KILL);
        die(sig);
    }
    signal_children(rustix::process::Signal::TERM);
    if GRACEFUL.load(Ordering::SeqCst) > 0 {
        on_stopping(sig);
        return;
    }
    let cleanups = CLEANUPS.lock().unwrap_or_else(|p| p.into_inner());
    for (_, f) in cleanups.iter() {
        f();
    }
    drop(cleanups);
    die(sig);
}

/// Ends the process as the default action of `sig` would (so a calling
/// shell sees "killed by SIGINT"); exit code 128 + `sig` as a fallback.
fn die(sig: i32) -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    std::process::exit(128 + sig)
}

fn signal_children(sig: rustix::process::Signal) {
    let children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    for &(_, pid, group) in children.iter() {
        send(pid, group, sig);
    }
}

fn send(pid: u32, group: bool, sig: rustix::process::Signal) {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // The child may have exited already: nothing to do then.
    let _ = if group {
        rustix::process::kill_process_group(p, sig)
    } else {
        rustix::process::kill_process(p, sig)
    };
}

/// "SIGINT", "SIGTERM" or "signal N".
pub fn signal_name(sig: i32) -> String {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The first SIGINT/SIGTERM received, if any (its number).
pub fn signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether SIGINT or SIGTERM was received.
pub fn interrupted() -> bool {
    signal().is_some()
}

/// Exit status for an operation stopped by a signal: 128 + the signal
/// number (130 for SIGINT, 143 for SIGTERM); `None` when none was received.
pub fn exit_code() -> Option<u8> {
    signal().and_then(|s| u8::try_from(128 + s).ok())
}

/// `Ok` unless a signal was received; then [`ErrorKind::Interrupted`]
/// naming it.
pub fn check() -> Result<()> {
    match signal() {
        None => Ok(()),
        Some(s) => Err(Error::new(
            ErrorKind::Interrupted,
            format!("interrupted by {}", signal_name(s)),
        )),
    }
}

/// While one exists, the first signal only sets the flag (see the module
/// docs): the holder polls [`check`] and stops by itself.
pub struct Graceful(());

/// Marks the current operation as one that polls [`check`].
pub fn graceful() -> Graceful {
    GRACEFUL.fetch_add(1, Ordering::SeqCst);
    Graceful(())
}

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A registered child process; unregistered on drop (drop it once the
/// child was waited for).
pub struct ChildGuard {
    token: u64,
    pid: u32,
    group: bool,
}

/// Registers child `pid` to receive SIGTERM on an interrupt; with `group`,
/// `pid` leads its own process group (spawned with `process_group(0)`) and
/// the whole group is signalled. If a signal already arrived, the child is
/// signalled at once.
pub fn watch_child(pid: u32, group: bool) -> ChildGuard {
    let token = NEXT.fetch_add(1, Ordering::Relaxed);
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((token, pid, group));
    if interrupted() {
        send(pid, group, rustix::process::Signal::TERM);
    }
    ChildGuard { token, pid, group }
}

impl ChildGuard {
    /// Sends SIGKILL to the child (its whole group when registered so).
    pub fn kill(&self) {
        send(self.pid, self.group, rustix::process::Signal::KILL);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        CHILDREN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c.0 != self.token);
    }
}

/// A registered clean-up; unregistered on drop.
pub struct Cleanup {
    token: u64,
}

/// Registers `f` to run when a signal ends the process outside a
/// [`Graceful`] operation (e.g. removing a lease). `f` runs on the signal
/// thread while other threads may still run; it must be quick.
pub fn on_exit(f: impl Fn() + Send + Sync + 'static) -> Cleanup {
    let token = NEXT.fetch_add(1, Ordering::Relaxed);
    CLEANUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((token, Box::new(f)));
    Cleanup { token }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        CLEANUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c.0 != self.token);
    }
}
