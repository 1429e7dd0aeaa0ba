//! `tactful catalog export --format fides` and `tactful catalog import`: data maps exchanged with
//! Fides (fideslang YAML). The mapping itself is `tactful_domain::fides`; this reads and writes files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tactful_domain::catalog::Catalog;

/// The formats a catalog can be exported in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// fideslang YAML: an organization, a system with its privacy declarations, a dataset.
    Fides,
}

/// Writes the catalog in `file` as fideslang YAML to `out` (or standard output).
pub fn export(file: &Path, format: ExportFormat, out: Option<&Path>) -> ExitCode {
    let shown = file.display().to_string();
    let Some(text) = read(file) else { return ExitCode::FAILURE };
    let catalog = match Catalog::parse(&text) {
        Ok(catalog) => catalog,
        Err(errors) => {
            eprintln!("{}", errors.render(&shown));
            eprintln!(
                "{} problem(s) found: fix them with `tactful catalog check {shown}` first",
                errors.problems.len()
            );
            return ExitCode::FAILURE;
        }
    };
    for note in catalog.notes() {
        eprintln!("{}: note: {}", note.position(&shown), note.message);
    }
    let yaml = match format {
        ExportFormat::Fides => tactful_domain::fides::export(&catalog),
    };
    write_out(&yaml, out)
}

/// Reads a fideslang file and writes a catalog skeleton to `out` (or standard output).
pub fn import(file: &Path, out: Option<&Path>) -> ExitCode {
    let shown = file.display().to_string();
    let Some(text) = read(file) else { return ExitCode::FAILURE };
    let imported = match tactful_domain::fides::import(&text) {
        Ok(imported) => imported,
        Err(error) => {
            eprintln!("{shown}:{error}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &imported.warnings {
        eprintln!("{shown}: warning: {warning}");
    }
    let code = write_out(&imported.toml, out);
    let target = out.map_or_else(|| "FILE".to_owned(), |path| path.display().to_string());
    eprintln!(
        "next: `tactful catalog check {target}` names what the skeleton still misses, with line and column"
    );
    code
}

/// The file's text, or `None` once the reason it cannot be read is printed.
fn read(file: &Path) -> Option<String> {
    std::fs::read_to_string(file).map_err(|error| eprintln!("{}: cannot read: {error}", file.display())).ok()
}

fn write_out(text: &str, out: Option<&Path>) -> ExitCode {
    let Some(path) = out else {
        print!("{text}");
        return ExitCode::SUCCESS;
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()));
    match written {
        Ok(()) => {
            eprintln!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: cannot write (it must not exist): {error}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Where the catalog is when no file is named: the configured one.
pub fn default_catalog() -> PathBuf {
    std::env::var_os("TACTFUL_CATALOG").map_or_else(|| PathBuf::from("tactful.toml"), PathBuf::from)
}
