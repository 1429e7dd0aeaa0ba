//! Audit appends from many concurrent callers gathered into one durable commit. Each caller still
//! waits for the commit of the batch its entries went into (an entry is durable before its caller is
//! answered, so a read is answered only after its access-log entry committed), but one commit and its
//! `fsync` serve everyone who arrived while the previous one ran.

use std::sync::Mutex;

use tactful_domain::audit::Unnumbered;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// One caller's entries, and where to answer it with their positions.
pub(crate) struct Waiting {
    pub(crate) entries: Vec<Unnumbered>,
    reply: oneshot::Sender<Result<Vec<u64>>>,
}

impl Waiting {
    /// Answers the caller (who may have stopped waiting).
    pub(crate) fn answer(self, result: Result<Vec<u64>>) {
        let _ = self.reply.send(result);
    }
}

/// Answers every caller of a batch with its own result (positions are handed out in batch order).
pub(crate) fn answer_all(waiting: Vec<Waiting>, results: Vec<Result<Vec<u64>>>) {
    let mut results = results.into_iter();
    for caller in waiting {
        caller.answer(results.next().unwrap_or_else(|| {
            Err(StoreError::Internal("an audit append was not run; see the server log".into()))
        }));
    }
}

/// Callers waiting for the next batch, and whether someone has already been asked to take them.
#[derive(Default)]
pub(crate) struct AuditQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    /// A drain is on its way: whoever queues next need not start another.
    armed: bool,
}

impl AuditQueue {
    /// Queues a caller's entries. Returns where its answer will come, and whether the caller must
    /// start a drain (nobody else is about to take the queue).
    pub(crate) fn push(&self, entries: Vec<Unnumbered>) -> (oneshot::Receiver<Result<Vec<u64>>>, bool) {
        let (reply, answer) = oneshot::channel();
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.waiting.push(Waiting { entries, reply });
        let start = !state.armed;
        state.armed = true;
        (answer, start)
    }

    /// Takes every caller waiting. The queue is disarmed: whoever queues next starts the next drain
    /// (for a drain that cannot loop, like a job of the SQLite writer).
    pub(crate) fn take(&self) -> Vec<Waiting> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.armed = false;
        std::mem::take(&mut state.waiting)
    }

    /// Takes every caller waiting, and disarms the queue only when there is none: the drain that
    /// calls this loops until the queue is empty, so callers arriving meanwhile wait for its next
    /// round instead of starting a commit of their own.
    pub(crate) fn take_or_disarm(&self) -> Vec<Waiting> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.waiting.is_empty() {
            state.armed = false;
        }
        std::mem::take(&mut state.waiting)
    }
}

/// Waits for the answer to a queued append.
pub(crate) async fn answered(answer: oneshot::Receiver<Result<Vec<u64>>>) -> Result<Vec<u64>> {
    answer
        .await
        .map_err(|_| StoreError::Internal("an audit append was abandoned; see the server log".into()))?
}
