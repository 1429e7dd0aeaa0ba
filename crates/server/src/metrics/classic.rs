//! The Prometheus text format 0.0.4 ("classic"), for scrapers and tools that ask for it (older
//! Prometheus servers, `promtool check metrics`): the OpenMetrics text the registry writes, with
//! each counter's and info's family named as its samples are, and without the `# UNIT` and `# EOF`
//! lines that format does not have.

/// The classic text of an OpenMetrics exposition.
pub(super) fn from_openmetrics(openmetrics: &str) -> String {
    let mut classic = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((_, text)) = help.take().filter(|(help_name, _)| *help_name == name) {
                classic.push_str(&format!("# HELP {family} {text}\n"));
            }
            classic.push_str(&format!("# TYPE {family} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        classic.push_str(line);
        classic.push('\n');
    }
    classic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_infos_are_named_as_their_samples_and_openmetrics_only_lines_go() {
        let openmetrics = "# HELP tactful_events Events received.\n\
                           # TYPE tactful_events counter\n\
                           tactful_events_total{source=\"web\"} 3\n\
                           # HELP tactful_build Build.\n\
                           # TYPE tactful_build info\n\
                           tactful_build_info{version=\"0.1.0\"} 1\n\
                           # HELP tactful_lag_seconds Lag.\n\
                           # TYPE tactful_lag_seconds gauge\n\
                           # UNIT tactful_lag_seconds seconds\n\
                           tactful_lag_seconds 1.5\n\
                           # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP tactful_events_total Events received.\n\
             # TYPE tactful_events_total counter\n\
             tactful_events_total{source=\"web\"} 3\n\
             # HELP tactful_build_info Build.\n\
             # TYPE tactful_build_info gauge\n\
             tactful_build_info{version=\"0.1.0\"} 1\n\
             # HELP tactful_lag_seconds Lag.\n\
             # TYPE tactful_lag_seconds gauge\n\
             tactful_lag_seconds 1.5\n"
        );
    }
}
