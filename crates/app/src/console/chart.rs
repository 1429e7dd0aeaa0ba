//! Charts for the console as server-rendered SVG: numbers become coordinates here, and templates
//! draw them with classes the stylesheet colours (the pages' CSP allows no inline style and no
//! script). Every chart also comes with its numbers as a table, which the templates show beside it.

/// The drawing area inside a chart's view box, leaving room for axis labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plot {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

/// A labelled position on an axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Where it sits along its axis, in view-box units.
    pub at: String,
    pub label: String,
}

/// One line of a line chart: polyline segments (broken where a value is missing) and the lone
/// points no segment passes through (drawn as dots, or they would not show at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// The stylesheet class giving its colour and dash (`s0` … `s5`).
    pub class: &'static str,
    /// Each segment as SVG `points` text (`x,y x,y …`).
    pub segments: Vec<String>,
    pub dots: Vec<(String, String)>,
}

/// A line chart of percentages over a shared x axis (days, say).
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub width: u32,
    pub height: u32,
    pub plot: Plot,
    /// The plot's edges as view-box text, and where axis labels sit.
    pub left: String,
    pub right: String,
    pub bottom: String,
    pub y_label_x: String,
    pub x_label_y: String,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub lines: Vec<Line>,
}

/// The series classes, in the order lines are given them.
pub const SERIES_CLASSES: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

const WIDTH: u32 = 640;
const LINE_HEIGHT: u32 = 220;

/// Coordinates with one decimal: precise enough on screen, short in the page.
fn coord(value: f64) -> String {
    format!("{value:.1}")
}

/// A chart of percentages (0 to 100) over `x_labels.len()` positions; each series gives one value
/// per position, `None` where there is nothing to show. Every `label_every`th x label is drawn (and
/// the last one).
pub fn percent_lines(
    x_labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    label_every: usize,
) -> LineChart {
    let plot =
        Plot { left: 44.0, right: f64::from(WIDTH) - 24.0, top: 12.0, bottom: f64::from(LINE_HEIGHT) - 28.0 };
    let positions = x_labels.len();
    let x = |index: usize| -> f64 {
        if positions <= 1 {
            (plot.left + plot.right) / 2.0
        } else {
            plot.left + (plot.right - plot.left) * index as f64 / (positions - 1) as f64
        }
    };
    let y =
        |percent: f64| -> f64 { plot.bottom - (plot.bottom - plot.top) * percent.clamp(0.0, 100.0) / 100.0 };
    let y_ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
        .into_iter()
        .map(|percent| Tick { at: coord(y(percent)), label: format!("{percent:.0}%") })
        .collect();
    let every = label_every.max(1);
    let x_ticks = x_labels
        .iter()
        .enumerate()
        // Every `every`th label, and the last, unless a periodic one sits too close to it.
        .filter(|(index, _)| {
            index + 1 == positions || (index % every == 0 && positions - 1 - index >= every.div_ceil(2))
        })
        .map(|(index, label)| Tick { at: coord(x(index)), label: label.clone() })
        .collect();
    let lines = series
        .iter()
        .enumerate()
        .map(|(number, (label, values))| {
            let mut segments = Vec::new();
            let mut dots = Vec::new();
            let mut run: Vec<(f64, f64)> = Vec::new();
            let mut close = |run: &mut Vec<(f64, f64)>| {
                match run.as_slice() {
                    [] => {}
                    [(px, py)] => dots.push((coord(*px), coord(*py))),
                    points => segments.push(
                        points
                            .iter()
                            .map(|(px, py)| format!("{},{}", coord(*px), coord(*py)))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                }
                run.clear();
            };
            for (index, value) in values.iter().enumerate().take(positions) {
                match value {
                    Some(percent) if percent.is_finite() => run.push((x(index), y(*percent))),
                    _ => close(&mut run),
                }
            }
            close(&mut run);
            Line {
                label: label.clone(),
                class: SERIES_CLASSES[number % SERIES_CLASSES.len()],
                segments,
                dots,
            }
        })
        .collect();
    LineChart {
        width: WIDTH,
        height: LINE_HEIGHT,
        left: coord(plot.left),
        right: coord(plot.right),
        bottom: coord(plot.bottom),
        y_label_x: coord(plot.left - 6.0),
        x_label_y: coord(plot.bottom + 18.0),
        plot,
        x_ticks,
        y_ticks,
        lines,
    }
}

/// One bar of a bar chart: how much of a whole is used.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    /// What the bar says in words (`ε 2.5 of 10`).
    pub value: String,
    /// Top of the bar's row.
    pub y: String,
    /// Where the label's baseline sits.
    pub text_y: String,
    /// The full track's width and the filled part's.
    pub track: String,
    pub filled: String,
    /// Past the threshold where the whole is nearly used (`warn`), or not.
    pub class: &'static str,
}

/// A horizontal bar chart of parts of wholes (budgets spent, say).
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub width: u32,
    pub height: u32,
    pub left: String,
    pub bar_height: String,
    pub bars: Vec<Bar>,
}

/// Bars for `(label, used, whole, value in words)`; a bar at 80% or more of its whole is marked.
pub fn used_of_whole(rows: &[(String, f64, f64, String)]) -> BarChart {
    const ROW: f64 = 44.0;
    const BAR: f64 = 16.0;
    let left = 12.0;
    let track = f64::from(WIDTH) - 2.0 * left;
    let bars = rows
        .iter()
        .enumerate()
        .map(|(index, (label, used, whole, value))| {
            let share = if *whole > 0.0 && used.is_finite() { (used / whole).clamp(0.0, 1.0) } else { 0.0 };
            let top = index as f64 * ROW + 22.0;
            Bar {
                label: label.clone(),
                value: value.clone(),
                y: coord(top),
                text_y: coord(top - 6.0),
                track: coord(track),
                filled: coord(track * share),
                class: if share >= 0.8 { "warn" } else { "" },
            }
        })
        .collect();
    let height = (rows.len().max(1) as f64 * ROW + 8.0).round() as u32;
    BarChart { width: WIDTH, height, left: coord(left), bar_height: coord(BAR), bars }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    #[test]
    fn lines_break_where_values_are_missing_and_lone_points_become_dots() {
        let series = vec![("All".to_owned(), vec![Some(0.0), Some(100.0), None, Some(50.0), None])];
        let chart = percent_lines(&labels(5), &series, 2);
        let line = &chart.lines[0];
        assert_eq!(line.class, "s0");
        assert_eq!(line.segments.len(), 1, "{line:?}");
        let points: Vec<&str> = line.segments[0].split(' ').collect();
        assert_eq!(points.len(), 2);
        // 0% sits on the bottom of the plot, 100% on its top.
        assert!(points[0].ends_with(&format!(",{}", coord(chart.plot.bottom))), "{points:?}");
        assert!(points[1].ends_with(&format!(",{}", coord(chart.plot.top))), "{points:?}");
        assert_eq!(line.dots.len(), 1, "the lone 50% is a dot");
        let ticks: Vec<&str> = chart.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, ["d0", "d2", "d4"]);
        let ticks = percent_lines(&labels(30), &series, 7).x_ticks;
        let ticks: Vec<&str> = ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, ["d0", "d7", "d14", "d21", "d29"], "d28 would crowd the last label");
    }

    #[test]
    fn nothing_to_draw_draws_nothing() {
        let chart = percent_lines(&labels(3), &[("x".to_owned(), vec![None, None, None])], 1);
        assert!(chart.lines[0].segments.is_empty() && chart.lines[0].dots.is_empty());
        let chart = percent_lines(&[], &[("x".to_owned(), vec![Some(f64::NAN)])], 1);
        assert!(chart.x_ticks.is_empty() && chart.lines[0].dots.is_empty());
    }

    #[test]
    fn bars_fill_their_share_of_the_track_and_warn_near_the_end() {
        let rows = vec![
            ("a".to_owned(), 2.5, 10.0, "ε 2.5 of 10".to_owned()),
            ("b".to_owned(), 9.0, 10.0, String::new()),
            ("c".to_owned(), 5.0, 0.0, String::new()),
            ("d".to_owned(), 50.0, 10.0, String::new()),
        ];
        let chart = used_of_whole(&rows);
        let track: f64 = chart.bars[0].track.parse().unwrap();
        let filled: f64 = chart.bars[0].filled.parse().unwrap();
        assert!((filled / track - 0.25).abs() < 0.01);
        assert_eq!(chart.bars[0].class, "");
        assert_eq!(chart.bars[1].class, "warn");
        assert_eq!(chart.bars[2].filled, "0.0", "no whole, no bar");
        assert_eq!(chart.bars[3].filled, chart.bars[3].track, "never past the end");
    }
}
