//! Progress on the terminal for the commands that can run longer than a few seconds (generate,
//! eval, items import, model rebuild, export-dataset, backup, keys rotate, the benchmarks and the
//! demo). Drawn on stderr only when stderr is a terminal, so scripts, tests and CI logs get none.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes: stderr when it is a terminal, nowhere otherwise.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
}

/// A bar with its style and message set before anything is drawn.
fn made(len: Option<u64>, template: &str, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(len, target()).with_style(style).with_message(message.to_owned())
}

/// A bar over `len` things of a kind (`"customers"`, `"people"`), with the time left.
pub fn bar(len: u64, message: &str, unit: &str) -> ProgressBar {
    made(
        Some(len),
        &format!("{{msg:>12}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit}, {{eta}} left"),
        message,
    )
}

/// A bar over `len` bytes (reading a file).
pub fn bytes(len: u64, message: &str) -> ProgressBar {
    made(Some(len), "{msg:>12} [{bar:40}] {bytes}/{total_bytes}, {bytes_per_sec}, {eta} left", message)
}

/// A spinner for work of unknown length, with what has been done so far (`{pos}` things of
/// `unit`, or bytes when `unit` is `"bytes"`) and the time it has taken.
pub fn spinner(message: &str, unit: &str) -> ProgressBar {
    let template = match unit {
        "" => "{spinner} {msg} ({elapsed})".to_owned(),
        "bytes" => "{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})".to_owned(),
        unit => format!("{{spinner}} {{msg}}: {{human_pos}} {unit} ({{elapsed}})"),
    };
    let bar = made(None, &template, message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A writer that counts the bytes written through it on a progress bar.
pub struct Counted<W> {
    inner: W,
    progress: ProgressBar,
}

impl<W> Counted<W> {
    pub fn new(inner: W, progress: ProgressBar) -> Counted<W> {
        Counted { inner, progress }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.progress.inc(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
