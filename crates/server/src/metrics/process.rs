//! The standard `process_*` metrics every Prometheus client library exports (CPU seconds, resident
//! and virtual memory, open and maximum file descriptors, start time), read from `/proc` at each
//! scrape, so dashboards made for any exporter work unchanged. Absent where there is no `/proc`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/self/stat` (`USER_HZ`, 100 on every Linux architecture).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    start_time_seconds: Option<f64>,
    resident_memory_bytes: Option<f64>,
    virtual_memory_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Reading {
    fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let mut reading = parse_stat(&stat, boot_time())?;
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            reading.resident_memory_bytes = status_kilobytes(&status, "VmRSS:").map(|kb| kb * 1024.0);
            reading.virtual_memory_bytes = status_kilobytes(&status, "VmSize:").map(|kb| kb * 1024.0);
        }
        reading.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count() as f64);
        reading.max_fds =
            std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| max_open_files(&limits));
        Some(reading)
    }
}

/// CPU time and start time from `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str, boot_time: Option<f64>) -> Option<Reading> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let ticks = |field: usize| fields.get(field - 3).and_then(|value| value.parse::<f64>().ok());
    let cpu_seconds = (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND;
    let start_time_seconds = boot_time.zip(ticks(22)).map(|(boot, start)| boot + start / TICKS_PER_SECOND);
    Some(Reading { cpu_seconds, start_time_seconds, ..Reading::default() })
}

/// When the machine booted (Unix seconds): `btime` in `/proc/stat`.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|value| value.trim().parse().ok())
}

fn status_kilobytes(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find_map(|line| line.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reading) = Reading::now() else { return Ok(()) };
        let cpu = ConstCounter::new(reading.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                reading.start_time_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                reading.resident_memory_bytes,
            ),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", reading.virtual_memory_bytes),
            ("process_open_fds", "Number of open file descriptors.", reading.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", reading.max_fds),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 250, stime 50, starttime 1000 ticks.
        let stat = "42 (tac (ful) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 1000000 200";
        let reading = parse_stat(stat, Some(1_700_000_000.0)).unwrap();
        assert_eq!(reading.cpu_seconds, 3.0);
        assert_eq!(reading.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(parse_stat("42 (truncated", None), None);
    }

    #[test]
    fn memory_and_file_limits_are_read_from_their_lines() {
        assert_eq!(
            status_kilobytes("Name:\ttactful\nVmSize:\t  2048 kB\nVmRSS:\t    512 kB\n", "VmRSS:"),
            Some(512.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }
}
