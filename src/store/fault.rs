//! A test aid: [`FaultStore`], an `ObjectStore` wrapper that fails the N-th
//! call (of any kind, or of one [`Op`] kind), deterministically by count.
//!
//! Public so that integration tests and fuzz targets can build a
//! [`super::Store`] over it ([`super::Store::from_object_store`]); snap
//! itself never uses it. Modelled on redb's fuzzing backend, which counts
//! I/O calls down to a failure and then checks the database against a
//! reference model.
//!
//! A fault is either a lost request ([`Fault::applied`] false: the call is
//! not passed on) or a lost reply (true: the call reaches the inner store,
//! then the caller gets an error, as when a connection drops after a `PUT`
//! landed). With [`Fault::crash`] every call after the N-th fails too, as if
//! the process had died there: what the inner store holds then is what a
//! crash at that point leaves behind.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use std::sync::{Arc, Mutex};

/// Kinds of calls a [`FaultStore`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put_opts` and `put_multipart_opts` (one per object).
    Put,
    /// `get_opts` for bytes (whole or ranged).
    Get,
    /// `get_opts` with `head` (size and metadata only).
    Head,
    /// `list` and `list_with_delimiter`.
    List,
    /// Each location of `delete_stream`.
    Delete,
    /// `copy_opts`.
    Copy,
}

const OPS: [Op; 6] = [Op::Put, Op::Get, Op::Head, Op::List, Op::Delete, Op::Copy];

fn slot(op: Op) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(0)
}

/// The error a fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// A generic store failure (snap maps it to `ErrorKind::Backend`).
    Backend,
    /// A full filesystem: an `io::Error` of kind `StorageFull` (ENOSPC) as
    /// the error's source, as object_store's local backend reports one.
    StorageFull,
}

/// Which call fails, and how.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The 1-based number of the failing call among the calls that match
    /// `op`, counted from when the fault is armed.
    pub nth: u64,
    /// Count only calls of this kind; `None`: every call.
    pub op: Option<Op>,
    /// The failing call (and, with `crash`, no later one) still reaches the
    /// inner store before the error is returned (a lost reply).
    pub applied: bool,
    /// Every call after the failing one fails too, without reaching the
    /// inner store.
    pub crash: bool,
    /// The error returned.
    pub error: Injected,
}

impl Fault {
    /// The `nth` call of any kind fails without reaching the store; later
    /// calls go through.
    pub fn nth(nth: u64) -> Fault {
        Fault {
            nth,
            op: None,
            applied: false,
            crash: false,
            error: Injected::Backend,
        }
    }

    /// The `nth` call of any kind and every call after it fail, none of
    /// them reaching the store: a process that died before its `nth` call.
    pub fn crash_at(nth: u64) -> Fault {
        Fault {
            crash: true,
            ..Fault::nth(nth)
        }
    }

    /// Counts only calls of kind `op`.
    pub fn only(mut self, op: Op) -> Fault {
        self.op = Some(op);
        self
    }

    /// The failing call reaches the store before its error is returned.
    pub fn applied(mut self) -> Fault {
        self.applied = true;
        self
    }

    /// Returns `error` instead of a generic failure.
    pub fn with_error(mut self, error: Injected) -> Fault {
        self.error = error;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    /// Calls per [`Op`] since creation or [`FaultStore::reset_counts`].
    counts: [u64; 6],
    fault: Option<Fault>,
    /// Matching calls since the fault was armed.
    seen: u64,
    /// The fault's call has happened (crash mode: all calls fail).
    tripped: bool,
    /// Calls failed so far.
    failed: u64,
}

/// What to do with one call.
enum Verdict {
    Pass,
    /// Fail; `true`: pass the call on first.
    Fail(bool, Injected),
}

/// An `ObjectStore` that passes calls to `inner` and fails the ones an
/// armed [`Fault`] names. Thread-safe; counting is by arrival order, so
/// with concurrent callers the failing call is the N-th to arrive.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultStore {
        FaultStore {
            inner,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Arms `fault` (replacing any armed one); its count starts now.
    pub fn arm(&self, fault: Fault) {
        let mut st = self.state();
        st.fault = Some(fault);
        st.seen = 0;
        st.tripped = false;
    }

    /// Removes the armed fault: every later call goes through.
    pub fn disarm(&self) {
        let mut st = self.state();
        st.fault = None;
        st.tripped = false;
    }

    /// Whether the armed fault's call has happened.
    pub fn tripped(&self) -> bool {
        self.state().tripped
    }

    /// Calls failed so far.
    pub fn failures(&self) -> u64 {
        self.state().failed
    }

    /// Calls of kind `op` (`None`: of every kind) since creation or the
    /// last [`FaultStore::reset_counts`], failed ones included.
    pub fn calls(&self, op: Option<Op>) -> u64 {
        let st = self.state();
        match op {
            Some(o) => st.counts[slot(o)],
            None => st.counts.iter().sum(),
        }
    }

    /// Sets every call counter to zero.
    pub fn reset_counts(&self) {
        self.state().counts = [0; 6];
    }

    fn verdict(&self, op: Op) -> Verdict {
        verdict(&self.state, op)
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a call of kind `op` and decides its fate.
fn verdict(state: &Mutex<State>, op: Op) -> Verdict {
    let mut st = lock(state);
    st.counts[slot(op)] += 1;
    let Some(f) = st.fault else {
        return Verdict::Pass;
    };
    if st.tripped && f.crash {
        st.failed += 1;
        return Verdict::Fail(false, f.error);
    }
    if st.tripped || f.op.is_some_and(|o| o != op) {
        return Verdict::Pass;
    }
    st.seen += 1;
    if st.seen == f.nth {
        st.tripped = true;
        st.failed += 1;
        return Verdict::Fail(f.applied, f.error);
    }
    Verdict::Pass
}

fn injected(op: Op, location: &str, e: Injected) -> object_store::Error {
    let source: Box<dyn std::error::Error + Send + Sync> = match e {
        Injected::Backend => format!("injected fault: {op:?} {location}").into(),
        Injected::StorageFull => Box::new(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("injected fault: {op:?} {location}: no space left on device"),
        )),
    };
    object_store::Error::Generic {
        store: "FaultStore",
        source,
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.verdict(Op::Put) {
            Verdict::Pass => self.inner.put_opts(location, payload, opts).await,
            Verdict::Fail(applied, e) => {
                if applied {
                    let _ = self.inner.put_opts(location, payload, opts).await;
                }
                Err(injected(Op::Put, location.as_ref(), e))
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // A multipart upload is counted (and fails) as one put, at its start.
        match self.verdict(Op::Put) {
            Verdict::Pass => self.inner.put_multipart_opts(location, opts).await,
            Verdict::Fail(_, e) => Err(injected(Op::Put, location.as_ref(), e)),
        }
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        match self.verdict(op) {
            Verdict::Pass => self.inner.get_opts(location, options).await,
            Verdict::Fail(_, e) => Err(injected(op, location.as_ref(), e)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Each location is judged when the stream reaches it.
        let inner = self.inner.clone();
        let state = self.state.clone();
        locations
            .then(move |l| {
                let inner = inner.clone();
                let state = state.clone();
                async move {
                    let p = l?;
                    match verdict(&state, Op::Delete) {
                        Verdict::Pass => inner.delete(&p).await.map(|_| p),
                        Verdict::Fail(applied, e) => {
                            if applied {
                                let _ = inner.delete(&p).await;
                            }
                            Err(injected(Op::Delete, p.as_ref(), e))
                        }
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.verdict(Op::List) {
            Verdict::Pass => self.inner.list(prefix),
            Verdict::Fail(_, e) => {
                let p = prefix.map(|p| p.to_string()).unwrap_or_default();
                futures::stream::once(async move { Err(injected(Op::List, &p, e)) }).boxed()
            }
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        match self.verdict(Op::List) {
            Verdict::Pass => self.inner.list_with_delimiter(prefix).await,
            Verdict::Fail(_, e) => {
                let p = prefix.map(|p| p.to_string()).unwrap_or_default();
                Err(injected(Op::List, &p, e))
            }
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match self.verdict(Op::Copy) {
            Verdict::Pass => self.inner.copy_opts(from, to, options).await,
            Verdict::Fail(applied, e) => {
                if applied {
                    let _ = self.inner.copy_opts(from, to, options).await;
                }
                Err(injected(Op::Copy, to.as_ref(), e))
            }
        }
    }
}
