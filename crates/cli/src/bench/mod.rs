//! `tactful bench …`: benchmarks that print their figures beside a reference measured in the same
//! run, so a noisy machine shows in both.

pub mod access;
pub mod forward;
pub mod ingest;
pub mod insights;
pub mod personalize;
pub mod quick;
pub mod requests;
pub mod serving;
pub mod sign_in;

pub use access::{AccessArgs, access};
pub use forward::{ForwardArgs, forward};
pub use ingest::{IngestArgs, ingest};
pub use insights::{InsightsArgs, insights};
pub use personalize::{PersonalizeArgs, personalize};
pub use quick::quick;
pub use requests::{RequestsArgs, requests};
pub use serving::{ServingArgs, serving};
pub use sign_in::{SignInArgs, sign_in};

/// Prints how long one durable 4 KiB write takes here today (median of 200 `write` + `fsync` in
/// the temporary directory): every figure that waits for a commit moves with it.
pub fn print_fsync_probe() {
    match fsync_probe() {
        Ok(median) => {
            println!("fsync probe: {:.3} ms per durable 4 KiB write (median of 200)", median * 1000.0)
        }
        Err(error) => println!("fsync probe: failed ({error})"),
    }
}

fn fsync_probe() -> std::io::Result<f64> {
    use std::io::Write as _;
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("fsync-probe"))?;
    let block = [0u8; 4096];
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = std::time::Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// One line of `tactful bench`'s summary table: a figure, its value, the same-run reference it is
/// read against, and the target it is held to.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub reference: String,
    pub target: String,
}

static ROWS: std::sync::Mutex<Vec<Row>> = std::sync::Mutex::new(Vec::new());

/// Records a figure for the summary table printed by `tactful bench` with no subcommand (a bench run
/// on its own prints its own output and this table is never shown).
pub fn record(figure: &str, value: String, reference: String, target: &str) {
    if let Ok(mut rows) = ROWS.lock() {
        rows.push(Row { figure: figure.to_owned(), value, reference, target: target.to_owned() });
    }
}

/// The figures recorded so far, taken out of the table.
pub fn take_rows() -> Vec<Row> {
    ROWS.lock().map(|mut rows| std::mem::take(&mut *rows)).unwrap_or_default()
}
