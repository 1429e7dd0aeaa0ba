//! Group commit for ingestion on PostgreSQL: requests arriving while earlier ones are being written
//! wait in a queue, and the next free writer takes them all as one batch — one transaction, one set
//! of round trips and one WAL flush for many requests. Each request is answered only after the
//! transaction holding its events committed, with the outcomes of its own events, exactly as if it
//! had been written alone right after the requests queued before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tactful_domain::policy::Policy;
use tokio::sync::{Semaphore, oneshot};

use super::ingest::Writer;
use crate::{IngestEvent, IngestOutcome, Result, StoreError};

/// Transactions one instance writes events in at once. One: every request arriving while a group
/// is written joins the next group, so the busier the instance, the larger its groups (measured:
/// with two, requests rarely met and groups were mostly of one).
const WRITERS: usize = 1;
/// Events gathered into one transaction at most; a request is never split.
const GROUP_EVENTS: usize = 2_000;

/// A request waiting for a writer.
struct Waiting {
    events: Vec<IngestEvent>,
    policy: Arc<Policy>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>>>,
}

/// The queue of requests and the writers that drain it.
pub(crate) struct Groups {
    queue: Mutex<VecDeque<Waiting>>,
    writers: Arc<Semaphore>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups { queue: Mutex::new(VecDeque::new()), writers: Arc::new(Semaphore::new(WRITERS)) }
    }
}

impl Groups {
    /// Queues `events` and answers with their outcomes once committed. The caller becomes a writer
    /// when one is free and its request is still waiting; the work runs in its own task, so a
    /// request whose client went away does not abandon the others of its group.
    pub(crate) async fn ingest(
        &self,
        writer: &Writer,
        events: Vec<IngestEvent>,
        policy: Arc<Policy>,
    ) -> Result<Vec<IngestOutcome>> {
        let (reply, mut answer) = oneshot::channel();
        self.lock().push_back(Waiting { events, policy, reply });
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => {
                    return answered.unwrap_or_else(|_| {
                        Err(StoreError::Unavailable("the writer of this batch stopped".into()))
                    });
                }
                permit = self.writers.clone().acquire_owned() => {
                    let permit = permit.map_err(|_| StoreError::Unavailable("ingestion is closed".into()))?;
                    let group = self.take();
                    if group.is_empty() {
                        // Another writer took this request; its answer comes on `answer`.
                        drop(permit);
                        match (&mut answer).await {
                            Ok(answered) => return answered,
                            Err(_) => {
                                return Err(StoreError::Unavailable("the writer of this batch stopped".into()));
                            }
                        }
                    }
                    // Requests that queue meanwhile are taken by the next writer free: each of
                    // their callers waits here for a permit until answered, so none is left behind.
                    let writer = writer.clone();
                    let written = tokio::spawn(async move {
                        write_group(&writer, group).await;
                        drop(permit);
                    });
                    let _ = written.await;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The oldest waiting requests with the same policy, up to [`GROUP_EVENTS`] events (at least one
    /// request).
    fn take(&self) -> Vec<Waiting> {
        let mut queue = self.lock();
        let mut group: Vec<Waiting> = Vec::new();
        let mut events = 0;
        while let Some(next) = queue.front() {
            if let Some(first) = group.first()
                && (events + next.events.len() > GROUP_EVENTS || !Arc::ptr_eq(&first.policy, &next.policy))
            {
                break;
            }
            events += next.events.len();
            group.extend(queue.pop_front());
        }
        group
    }
}

/// Writes a group in one transaction and answers each request. If the group fails for a reason
/// other than a lost race, each request is written alone, so one request's failure is its own.
async fn write_group(writer: &Writer, group: Vec<Waiting>) {
    if let [_] = group.as_slice() {
        let Some(only) = group.into_iter().next() else { return };
        let outcome = super::ingest::ingest(writer, &only.policy, &only.events).await;
        let _ = only.reply.send(outcome);
        return;
    }
    let lengths: Vec<usize> = group.iter().map(|waiting| waiting.events.len()).collect();
    let policy = group[0].policy.clone();
    let mut events = Vec::with_capacity(lengths.iter().sum());
    let mut replies = Vec::with_capacity(group.len());
    let mut members = Vec::with_capacity(group.len());
    for waiting in group {
        events.extend(waiting.events);
        replies.push(waiting.reply);
    }
    match super::ingest::ingest(writer, &policy, &events).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, length) in replies.into_iter().zip(lengths) {
                let _ = reply.send(Ok(outcomes.by_ref().take(length).collect()));
            }
        }
        Err(error) => {
            tracing::debug!(%error, requests = replies.len(), "a group failed; writing its requests one by one");
            let mut events = events.into_iter();
            for (reply, length) in replies.into_iter().zip(lengths) {
                members.push((reply, events.by_ref().take(length).collect::<Vec<_>>()));
            }
            for (reply, events) in members {
                let _ = reply.send(super::ingest::ingest(writer, &policy, &events).await);
            }
        }
    }
}
