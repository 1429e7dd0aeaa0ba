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

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// A bar over `len` things of a kind (`"customers"`, `"people"`), with rate and time left.
pub fn bar(len: u64, message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    bar.set_message(message.to_owned());
    let template =
        format!("{{msg:>12}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}}, {{eta}} left");
    styled(bar, &template)
}

/// A bar over `len` bytes (reading a file).
pub fn bytes(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target());
    bar.set_message(message.to_owned());
    styled(bar, "{msg:>12} [{bar:40}] {bytes}/{total_bytes}, {bytes_per_sec}, {eta} left")
}

/// A spinner for work of unknown length, with what has been done so far (`{pos}` things of
/// `unit`, or bytes when `unit` is `"bytes"`) and the time it has taken.
pub fn spinner(message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_message(message.to_owned());
    let template = match unit {
        "" => "{spinner} {msg} ({elapsed})".to_owned(),
        "bytes" => "{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})".to_owned(),
        unit => format!("{{spinner}} {{msg}}: {{human_pos}} {unit} ({{elapsed}})"),
    };
    let bar = styled(bar, &template);
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
