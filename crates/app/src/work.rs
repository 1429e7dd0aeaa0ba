//! Heavy work off the async workers, with a deadline: counting a query's pages and computing its
//! answer, writing an export, a whole model release, the quality check. Each runs on tokio's
//! blocking pool, so a request never keeps a worker that answers `/healthz` or ingestion busy; a
//! piece of work still running when its deadline passes is answered `too_slow`, and whatever it
//! finishes afterwards is thrown away. Store reads stay async, between the pieces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

use crate::Config;
use crate::error::{AppError, ErrorCode};

/// Called with the name of a point in heavy work (`"count"`, `"answer"`, `"release"`,
/// `"quality"`, `"export"`) from the blocking pool, just before the work there is done.
pub type Probe = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The deadlines of heavy work, from the configuration (shared by the engines of one process).
pub struct Limits {
    work_ms: AtomicU64,
    export_ms: AtomicU64,
    probe: RwLock<Option<Probe>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&Config::default())
    }
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            work_ms: AtomicU64::new(config.work_deadline_ms.max(1)),
            export_ms: AtomicU64::new(config.export_deadline_ms.max(1)),
            probe: RwLock::new(None),
        }
    }

    /// The deadline of a query answer, a whole model release or a quality check, from now.
    pub fn work(&self) -> Deadline {
        Deadline::after(self.work_ms.load(Ordering::Relaxed))
    }

    /// The deadline of an export, from now.
    pub fn export(&self) -> Deadline {
        Deadline::after(self.export_ms.load(Ordering::Relaxed))
    }

    /// Changes both deadlines (milliseconds, at least 1) for work started from now on.
    pub fn set_deadlines(&self, work_ms: u64, export_ms: u64) {
        self.work_ms.store(work_ms.max(1), Ordering::Relaxed);
        self.export_ms.store(export_ms.max(1), Ordering::Relaxed);
    }

    /// Test hook: `probe` is called at each point of heavy work (see [`Probe`]), on the blocking
    /// pool, so a test can hold work mid-count without sleeping. `None` removes it. Production code
    /// never sets one.
    pub fn set_probe(&self, probe: Option<Probe>) {
        *self.probe.write().unwrap_or_else(std::sync::PoisonError::into_inner) = probe;
    }

    /// Calls the probe, if a test set one.
    pub fn probe(&self, point: &'static str) {
        let probe = self.probe.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(probe) = probe {
            probe(point);
        }
    }
}

/// When a piece of work must be done by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: tokio::time::Instant,
    ms: u64,
}

impl Deadline {
    /// `ms` milliseconds from now.
    pub fn after(ms: u64) -> Deadline {
        Deadline { at: tokio::time::Instant::now() + Duration::from_millis(ms), ms }
    }

    /// The deadline's length, in milliseconds.
    pub fn ms(&self) -> u64 {
        self.ms
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.at
    }

    /// The error of work that did not finish in time.
    pub fn late(&self) -> Late {
        Late { deadline_ms: self.ms }
    }

    /// Runs async work (store reads between the blocking pieces) until the deadline.
    pub async fn run<T, E: From<Late>>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(done) => done,
            Err(_) => Err(self.late().into()),
        }
    }
}

/// Work that did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the work did not finish within its deadline of {deadline_ms} ms")]
pub struct Late {
    pub deadline_ms: u64,
}

impl From<Late> for AppError {
    fn from(late: Late) -> AppError {
        AppError::with_message(
            ErrorCode::TooSlow,
            format!(
                "this did not finish within {} ms, so it was stopped: ask for less (a shorter window, fewer dimensions), or raise the deadline",
                late.deadline_ms
            ),
        )
        .details(json!({"deadline_ms": late.deadline_ms}))
    }
}

/// Runs `work` on the blocking pool, answering [`Late`] once `deadline` passes (what it finishes
/// afterwards is thrown away). A panic in it is an internal failure.
pub async fn blocking<T: Send + 'static>(
    deadline: Deadline,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stopped> {
    if deadline.passed() {
        return Err(Stopped::Late(deadline.late()));
    }
    let task = tokio::task::spawn_blocking(work);
    match tokio::time::timeout_at(deadline.at, task).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(failed)) => Err(Stopped::Failed(failed.to_string())),
        Err(_) => Err(Stopped::Late(deadline.late())),
    }
}

/// Why blocking work gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error(transparent)]
    Late(#[from] Late),
    #[error("heavy work failed: {0}")]
    Failed(String),
}

impl From<Stopped> for AppError {
    fn from(stopped: Stopped) -> AppError {
        match stopped {
            Stopped::Late(late) => late.into(),
            failed @ Stopped::Failed(_) => AppError::internal(failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_finished_in_time_is_answered_and_late_work_is_thrown_away() {
        assert_eq!(blocking(Deadline::after(5_000), || 7).await, Ok(7));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (finished, done) = std::sync::mpsc::channel::<u32>();
        let started = std::time::Instant::now();
        let late = blocking(Deadline::after(100), move || {
            held.recv().ok();
            finished.send(1).ok();
            1
        })
        .await;
        assert_eq!(late, Err(Stopped::Late(Late { deadline_ms: 100 })));
        assert!(started.elapsed() < Duration::from_secs(2), "answered at the deadline, not when done");
        release.send(()).unwrap();
        assert_eq!(done.recv().unwrap(), 1, "the work ran to its end; its result went nowhere");
        let error = AppError::from(Stopped::Late(Late { deadline_ms: 100 }));
        assert_eq!((error.code.as_str(), error.code.status()), ("too_slow", 503));
        assert_eq!(error.details, Some(json!({"deadline_ms": 100})));
    }

    #[tokio::test]
    async fn a_panic_in_heavy_work_is_an_internal_failure() {
        let failed = blocking(Deadline::after(5_000), || -> u32 { panic!("boom") }).await;
        assert!(matches!(failed, Err(Stopped::Failed(_))));
        assert_eq!(AppError::from(failed.unwrap_err()).code, ErrorCode::Internal);
    }

    #[test]
    fn deadlines_come_from_the_configuration_and_are_at_least_one_millisecond() {
        let limits = Limits::default();
        assert_eq!((limits.work().ms(), limits.export().ms()), (10_000, 600_000));
        limits.set_deadlines(0, 5);
        assert_eq!((limits.work().ms(), limits.export().ms()), (1, 5));
    }
}
