//! Server-side SVG charts: no JavaScript, nothing fetched. Only numbers,
//! formatted dates and this module's own names go into the markup, so the output
//! is safe to embed as is.
//!
//! A chart fills its container's width and keeps its text at its own size at any
//! width: the y axis's labels sit in a narrow SVG of their own, the x axis's
//! labels and the grid are placed in percent, and only the lines are drawn in a
//! stretched viewBox (with strokes that do not stretch). Colours come from the
//! stylesheet (`.s0`…`.s5`), so dark mode and print restyle them.

use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::domain::{format_timestamp, Timestamp};
use crate::storage::uploads::ChartPoint;

pub const SERIES_NAMES: [&str; 4] = [
    "total files",
    "different",
    "missing on target",
    "extra on target",
];

/// A series' look: its class (`s0`…`s5`, coloured by the stylesheet) and a dash
/// pattern, so series that coincide stay apart without colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Total files, tasks reporting: solid blue.
    Total = 0,
    /// Different files, open problems: solid red.
    Different = 1,
    /// Missing on target: dashed amber.
    Missing = 2,
    /// Extra on target: dotted purple.
    Extra = 3,
    /// Tasks clean: dash-dot green.
    Clean = 4,
    /// Tasks with no results: short-dashed grey.
    Empty = 5,
}

impl Style {
    const DASHES: [&'static str; 6] = ["", "", "7 4", "2 3", "9 3 2 3", "4 4"];

    /// The style of one of the four counts, in [`SERIES_NAMES`] order.
    pub fn of_count(index: usize) -> Style {
        [Style::Total, Style::Different, Style::Missing, Style::Extra][index.min(3)]
    }

    fn class(self) -> String {
        format!("s{}", self as usize)
    }

    fn dash(self) -> &'static str {
        Self::DASHES[self as usize]
    }
}

/// A coordinate written with one decimal by integer arithmetic: a chart writes
/// thousands of them, and `{:.1}` on an `f64` often takes float formatting's
/// slow exact path.
#[derive(Clone, Copy)]
struct Px(f64);

impl std::fmt::Display for Px {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 * 10.0).round() as i64;
        let sign = if tenths < 0 { "-" } else { "" };
        let t = tenths.unsigned_abs();
        write!(f, "{sign}{}.{}", t / 10, t % 10)
    }
}

/// A small line of `values` (oldest first), e.g. problems per upload.
pub fn sparkline(values: &[i64]) -> String {
    const W: f64 = 100.0;
    const H: f64 = 22.0;
    if values.is_empty() {
        return String::new();
    }
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = i as f64 * step;
        let y = H - 2.0 - (*v as f64 / max) * (H - 4.0);
        let _ = write!(points, "{},{} ", Px(x), Px(y));
    }
    let last = values[values.len() - 1];
    let class = if last > 0 { "s1" } else { "s4" };
    format!(
        r#"<svg class="spark" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="problems over the last {n}, latest {last}"><polyline class="{class}" points="{p}" fill="none" stroke-width="1.5"/></svg>"#,
        n = crate::domain::counted(values.len() as u64, "upload"),
        last = super::thousands(last),
        p = points.trim_end()
    )
}

/// Which of the four counts a chart draws: total files dwarf the problem counts,
/// so they get a chart (and a scale) of their own.
pub const TOTAL_SERIES: &[usize] = &[0];
pub const PROBLEM_SERIES: &[usize] = &[1, 2, 3];

/// One point on a chart's time axis: when, and what a person calls it.
struct Point {
    at: Timestamp,
    name: String,
    /// Drawn as a grey mark on the baseline instead of values (an upload
    /// without results).
    empty: bool,
}

/// One line: a name for the legend, a look, a value per point (`None`: a gap).
struct Line<'a> {
    name: &'a str,
    style: Style,
    values: Vec<Option<i64>>,
}

/// A line chart of some of the four counts over time (points oldest first).
pub fn counts_chart(points: &[ChartPoint], series: &[usize]) -> String {
    if points.is_empty() {
        return no_history("No uploads in this range.");
    }
    let axis: Vec<Point> = points
        .iter()
        .map(|p| Point {
            at: p.at,
            name: format!("upload {} at {}", p.id, format_timestamp(p.at)),
            empty: !p.has_results,
        })
        .collect();
    let lines: Vec<Line> = series
        .iter()
        .map(|&s| Line {
            name: SERIES_NAMES[s],
            style: Style::of_count(s),
            values: points
                .iter()
                .map(|p| p.has_results.then_some(p.values[s]))
                .collect(),
        })
        .collect();
    let label = format!(
        "{} over {}",
        series
            .iter()
            .map(|s| SERIES_NAMES[*s])
            .collect::<Vec<_>>()
            .join(", "),
        crate::domain::counted(points.len() as u64, "upload")
    );
    line_chart(&label, &axis, &lines, 220.0, 120)
}

/// One line of a daily chart: a name, a look, a value per day.
pub struct DailySeries<'a> {
    pub name: &'static str,
    pub style: Style,
    pub values: &'a [i64],
}

/// A line chart with a point a day (`dates` as `YYYY-MM-DD`, oldest first; the
/// last may be a moment in RFC 3339).
pub fn daily_chart(dates: &[String], series: &[DailySeries<'_>], label: &str) -> String {
    if dates.is_empty() {
        return no_history("No days in this range.");
    }
    let axis: Vec<Point> = dates
        .iter()
        .map(|d| Point {
            at: crate::domain::parse_time_arg(d).unwrap_or(0),
            name: d.clone(),
            empty: false,
        })
        .collect();
    let lines: Vec<Line> = series
        .iter()
        .map(|s| Line {
            name: s.name,
            style: s.style,
            values: s.values.iter().map(|v| Some(*v)).collect(),
        })
        .collect();
    let label = format!(
        "{label}, a point a day over {}",
        crate::domain::counted(dates.len() as u64, "day")
    );
    // A dot a day only up to a month: 90 dots a line hide the line.
    line_chart(&label, &axis, &lines, 190.0, 31)
}

/// A compact note where a chart would be.
pub fn no_history(text: &str) -> String {
    format!(r#"<p class="no-history">{text}</p>"#)
}

/// Pixels: the y axis's labels, the space above the plot and under it (the x
/// axis's labels).
const Y_AXIS: u32 = 52;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// The stretched viewBox's width: x positions are in thousandths of the plot.
const VIEW_W: f64 = 1000.0;
/// A chart of `lines` over `points` (oldest first), `height` pixels high, with a
/// dot per point up to `dots_up_to` points (beyond, the line and the hover bands).
fn line_chart(
    label: &str,
    points: &[Point],
    lines: &[Line],
    height: f64,
    dots_up_to: usize,
) -> String {
    let plot_h = height - TOP - BOTTOM;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten().copied())
        .max()
        .unwrap_or(0);
    let (step, top) = nice_scale(max);
    let y = |v: i64| TOP + plot_h - (v as f64 / top as f64) * plot_h;
    let (t0, t1) = (points[0].at, points[points.len() - 1].at);
    let by_time = t1 > t0;
    let x = |i: usize| -> f64 {
        if by_time {
            (points[i].at - t0) as f64 / (t1 - t0) as f64 * VIEW_W
        } else if points.len() > 1 {
            i as f64 / (points.len() - 1) as f64 * VIEW_W
        } else {
            VIEW_W / 2.0
        }
    };

    let mut svg = String::new();
    let _ = write!(svg, r#"<figure class="chart">"#);
    legend(&mut svg, lines);
    let _ = write!(
        svg,
        r#"<div class="chart-body"><svg class="y-axis" width="{Y_AXIS}" height="{height}" aria-hidden="true">"#
    );
    let ticks: Vec<i64> = (0..=top / step).map(|k| k * step).collect();
    for v in &ticks {
        let _ = write!(
            svg,
            r#"<text class="y-tick" x="{}" y="{}" text-anchor="end">{}</text>"#,
            Y_AXIS - 6,
            Px(y(*v) + 4.0),
            compact(*v)
        );
    }
    let _ = write!(
        svg,
        r#"</svg><svg class="plot" width="100%" height="{height}" role="img" aria-label="{label}"><title>{label}</title><desc>{}</desc>"#,
        describe(points, lines)
    );
    for v in &ticks {
        let _ = write!(
            svg,
            r#"<line class="grid{}" x1="0" x2="100%" y1="{yy}" y2="{yy}"/>"#,
            if *v == 0 { " base" } else { "" },
            yy = Px(y(*v))
        );
    }
    let baseline = TOP + plot_h;
    x_axis(&mut svg, (t0, t1), baseline, height);
    let _ = write!(
        svg,
        r#"<svg width="100%" height="{height}" viewBox="0 0 {VIEW_W} {height}" preserveAspectRatio="none" overflow="visible">"#
    );
    for line in lines {
        draw_line(&mut svg, line, &x, &y, points.len() <= dots_up_to);
    }
    for (i, _) in points.iter().enumerate().filter(|(_, p)| p.empty) {
        let _ = write!(
            svg,
            r#"<path class="no-results" d="M{} {}v-9"/>"#,
            Px(x(i)),
            Px(baseline)
        );
    }
    hover_bands(&mut svg, points, lines, &x, plot_h);
    svg.push_str("</svg></svg></div></figure>");
    svg
}

/// The time axis under the plot: a tick and a label at each round moment between
/// `t0` and `t1` (one label at `t0` when they are the same moment).
fn x_axis(svg: &mut String, (t0, t1): (Timestamp, Timestamp), baseline: f64, height: f64) {
    let by_time = t1 > t0;
    let ticks = if by_time {
        time_ticks(t0, t1)
    } else {
        vec![(t0, full_label(t0))]
    };
    for (at, text) in ticks {
        let p = if by_time {
            (at - t0) as f64 / (t1 - t0) as f64
        } else {
            0.0
        };
        let anchor = match p {
            p if p < 0.04 => "start",
            p if p > 0.96 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<line class="grid tick" x1="{pc:.2}%" x2="{pc:.2}%" y1="{baseline:.1}" y2="{:.1}"/><text class="x-tick" x="{pc:.2}%" y="{:.1}" text-anchor="{anchor}">{text}</text>"#,
            baseline + 4.0,
            height - 6.0,
            pc = p * 100.0
        );
    }
}

/// The legend: each series' name, its look, and its latest value.
fn legend(svg: &mut String, lines: &[Line]) {
    svg.push_str(r#"<figcaption class="legend">"#);
    for line in lines {
        let latest = match line.values.last() {
            Some(Some(v)) => super::thousands(v),
            Some(None) => "no results".to_string(),
            None => "–".to_string(),
        };
        let _ = write!(
            svg,
            r#"<span><svg class="swatch" width="26" height="10" aria-hidden="true"><line class="{c}" x1="1" x2="25" y1="5" y2="5" stroke-dasharray="{d}"/></svg>{name} <strong class="latest">{latest}</strong></span>"#,
            c = line.style.class(),
            d = line.style.dash(),
            name = line.name
        );
    }
    svg.push_str("</figcaption>");
}

/// One series: its line (broken at gaps) and, if asked, a dot per point.
fn draw_line(
    svg: &mut String,
    line: &Line,
    x: &dyn Fn(usize) -> f64,
    y: &dyn Fn(i64) -> f64,
    dots: bool,
) {
    let class = line.style.class();
    let mut stretch = String::new();
    let flush = |svg: &mut String, stretch: &mut String| {
        if !stretch.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline class="line {class}" points="{}" stroke-dasharray="{}"/>"#,
                stretch.trim_end(),
                line.style.dash()
            );
            stretch.clear();
        }
    };
    for (i, v) in line.values.iter().enumerate() {
        match v {
            Some(v) => {
                let _ = write!(stretch, "{},{} ", Px(x(i)), Px(y(*v)));
            }
            None => flush(svg, &mut stretch),
        }
    }
    flush(svg, &mut stretch);
    if dots {
        for (i, v) in line.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    svg,
                    r#"<path class="dot {class}" d="M{} {}h0"/>"#,
                    Px(x(i)),
                    Px(y(*v))
                );
            }
        }
    }
}

/// An invisible band around each point whose tooltip gives every series' value
/// there: hovering anywhere over a point's column reads it.
fn hover_bands(
    svg: &mut String,
    points: &[Point],
    lines: &[Line],
    x: &dyn Fn(usize) -> f64,
    plot_h: f64,
) {
    let n = points.len();
    for (i, point) in points.iter().enumerate() {
        let left = if i == 0 { 0.0 } else { (x(i - 1) + x(i)) / 2.0 };
        let right = if i + 1 == n {
            VIEW_W
        } else {
            (x(i) + x(i + 1)) / 2.0
        };
        let mut title = point.name.clone();
        if point.empty {
            title.push_str(": no results");
        } else {
            for (k, line) in lines.iter().enumerate() {
                if let Some(Some(v)) = line.values.get(i) {
                    let sep = if k == 0 { ": " } else { ", " };
                    let _ = write!(title, "{sep}{} {}", super::thousands(v), line.name);
                }
            }
        }
        let _ = write!(
            svg,
            r#"<rect class="hover" x="{}" y="0" width="{}" height="{}"><title>{title}</title></rect>"#,
            Px(left),
            Px((right - left).max(0.5)),
            Px(TOP + plot_h)
        );
    }
}

/// The chart in words, for screen readers: each series' latest, highest and
/// lowest value with when.
fn describe(points: &[Point], lines: &[Line]) -> String {
    let mut text = format!(
        "From {} to {}.",
        points[0].name,
        points[points.len() - 1].name
    );
    for line in lines {
        let known: Vec<(usize, i64)> = line
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        let (Some(latest), Some(high), Some(low)) = (
            known.last(),
            known.iter().max_by_key(|(_, v)| *v),
            known.iter().min_by_key(|(_, v)| *v),
        ) else {
            let _ = write!(text, " {}: no values.", line.name);
            continue;
        };
        let _ = write!(
            text,
            " {}: latest {} ({}), highest {} ({}), lowest {} ({}).",
            line.name,
            super::thousands(latest.1),
            points[latest.0].name,
            super::thousands(high.1),
            points[high.0].name,
            super::thousands(low.1),
            points[low.0].name
        );
    }
    text
}

/// A scale from 0 whose step is 1, 2, 2.5 or 5 times a power of ten, about four
/// steps to the first tick at or above `max`: `(step, top)`.
pub fn nice_scale(max: i64) -> (i64, i64) {
    let max = max.max(1);
    let rough = max as f64 / 4.0;
    let mut magnitude: i64 = 1;
    while (magnitude as f64) * 10.0 <= rough {
        magnitude *= 10;
    }
    // 2.5 times a power of ten only where it stays a whole number.
    let quarter = (magnitude >= 10).then_some(magnitude * 5 / 2);
    let step = [
        Some(magnitude),
        Some(2 * magnitude),
        quarter,
        Some(5 * magnitude),
    ]
    .into_iter()
    .flatten()
    .find(|s| *s as f64 >= rough)
    .unwrap_or(10 * magnitude);
    (step, (max + step - 1) / step * step)
}

/// A tick's value with a unit a person reads at a glance: `950`, `2,500`,
/// `250k`, `1.5M`.
pub fn compact(v: i64) -> String {
    let short = |n: f64, unit: &str| {
        let text = format!("{n:.1}");
        format!("{}{unit}", text.trim_end_matches(".0"))
    };
    match v.unsigned_abs() {
        a if a < 10_000 => super::thousands(v),
        a if a < 1_000_000 => short(v as f64 / 1e3, "k"),
        a if a < 1_000_000_000 => short(v as f64 / 1e6, "M"),
        _ => short(v as f64 / 1e9, "B"),
    }
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Round moments between `t0` and `t1` (at most about six) with their labels:
/// whole minutes, hours, days, Mondays or first days of months.
fn time_ticks(t0: Timestamp, t1: Timestamp) -> Vec<(Timestamp, String)> {
    const FIXED: [i64; 21] = [
        SECOND,
        2 * SECOND,
        5 * SECOND,
        10 * SECOND,
        15 * SECOND,
        30 * SECOND,
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
    ];
    const MOST: i64 = 6;
    let span = t1 - t0;
    let ticks = match FIXED.iter().find(|s| span / **s < MOST) {
        Some(&step) => {
            // Weeks start on Monday (the epoch was a Thursday).
            let offset = if step >= 7 * DAY { 4 * DAY } else { 0 };
            let first = (t0 - offset).div_euclid(step) * step + offset;
            let first = if first < t0 { first + step } else { first };
            let mut ticks = Vec::new();
            let mut at = first;
            let mut last_day = None;
            while at <= t1 {
                let day = at.div_euclid(DAY);
                let text = if step >= DAY {
                    format_at(at, "%b %-d")
                } else if last_day == Some(day) {
                    format_at(at, if step < MINUTE { "%H:%M:%S" } else { "%H:%M" })
                } else {
                    format_at(
                        at,
                        if step < MINUTE {
                            "%b %-d %H:%M:%S"
                        } else {
                            "%b %-d %H:%M"
                        },
                    )
                };
                last_day = Some(day);
                ticks.push((at, text));
                at += step;
            }
            ticks
        }
        None => month_ticks(t0, t1),
    };
    if ticks.is_empty() {
        vec![(t0, full_label(t0))]
    } else {
        ticks
    }
}

/// First days of months between `t0` and `t1`, every 1, 2, 3, 6 or 12 months.
fn month_ticks(t0: Timestamp, t1: Timestamp) -> Vec<(Timestamp, String)> {
    let month_of = |t: Timestamp| {
        let d = utc(t);
        d.year() as i64 * 12 + d.month0() as i64
    };
    let (m0, m1) = (month_of(t0), month_of(t1));
    let every = [1, 2, 3, 6, 12, 24, 60, 120]
        .into_iter()
        .find(|k| (m1 - m0) / k < 6)
        .unwrap_or(240);
    let mut ticks = Vec::new();
    for m in (m0 + 1)..=m1 {
        if m % every != 0 {
            continue;
        }
        let Some(at) = Utc
            .with_ymd_and_hms((m / 12) as i32, (m % 12) as u32 + 1, 1, 0, 0, 0)
            .single()
        else {
            continue;
        };
        let at = at.timestamp_millis();
        ticks.push((at, format_at(at, "%b %Y")));
    }
    ticks
}

fn utc(at: Timestamp) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at).single().unwrap_or_default()
}

fn format_at(at: Timestamp, format: &str) -> String {
    utc(at).format(format).to_string()
}

/// The one label of a chart whose points are all at one moment.
fn full_label(at: Timestamp) -> String {
    format_at(at, "%b %-d %Y %H:%M:%S")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<ChartPoint> {
        (0..5)
            .map(|i| ChartPoint {
                id: i,
                at: 1_764_000_000_000 + i * 60_000,
                values: [1_200 + i, i, 0, 2],
                has_results: i != 3,
            })
            .collect()
    }

    #[test]
    fn charts_hold_only_numbers_and_dates() {
        let svg = counts_chart(&points(), PROBLEM_SERIES);
        assert!(svg.starts_with("<figure") && svg.ends_with("</figure>"));
        // The upload without results breaks each line and is marked, not drawn at 0.
        assert_eq!(
            svg.matches("<polyline").count(),
            2 * PROBLEM_SERIES.len(),
            "{svg}"
        );
        assert!(
            svg.contains("upload 3 at 2025-11-24T16:03:00.000Z: no results</title>"),
            "{svg}"
        );
        assert_eq!(svg.matches(r#"class="no-results""#).count(), 1);
        assert_eq!(
            counts_chart(&points(), TOTAL_SERIES)
                .matches("<polyline")
                .count(),
            2
        );
        assert!(
            svg.contains("upload 4 at 2025-11-24T16:04:00.000Z: 4 different, 0 missing on target, 2 extra on target</title>"),
            "{svg}"
        );
        assert!(counts_chart(&points(), TOTAL_SERIES)
            .contains("total files: latest 1,204 (upload 4 at 2025-11-24T16:04:00.000Z)"));
        assert!(sparkline(&[3, 2, 0]).contains("latest 0"));
        assert_eq!(sparkline(&[]), "");
        assert!(counts_chart(&[], TOTAL_SERIES).contains("No uploads"));
        let dates = vec!["2026-11-01".to_string(), "2026-11-02".to_string()];
        let chart = daily_chart(
            &dates,
            &[DailySeries {
                name: "open problems",
                style: Style::Different,
                values: &[3, 1],
            }],
            "open problems",
        );
        assert!(chart.contains("2026-11-02: 1 open problems"), "{chart}");
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(daily_chart(&[], &[], "x").contains("No days"));
    }

    #[test]
    fn series_that_coincide_differ_in_dash_and_the_legend_gives_the_latest() {
        let svg = counts_chart(&points(), PROBLEM_SERIES);
        let dashes: Vec<&str> = svg
            .split("<polyline")
            .skip(1)
            .map(|p| {
                p.split("stroke-dasharray=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_ne!(dashes[0], dashes[2], "{dashes:?}");
        assert_ne!(dashes[2], dashes[4], "{dashes:?}");
        assert!(
            svg.contains("missing on target <strong class=\"latest\">0</strong>"),
            "{svg}"
        );
    }

    #[test]
    fn coordinates_are_written_as_float_formatting_would() {
        for v in [0.0, 0.04, 0.05, 1.25, 12.34, 999.96, -0.04, -3.46, 260.0] {
            assert_eq!(
                Px(v).to_string(),
                format!("{:.1}", (v * 10.0_f64).round() / 10.0).replace("-0.0", "0.0"),
                "{v}"
            );
        }
    }

    #[test]
    fn ticks_are_round_numbers_from_zero() {
        assert_eq!(nice_scale(0), (1, 1));
        assert_eq!(nice_scale(3), (1, 3));
        assert_eq!(nice_scale(7), (2, 8));
        assert_eq!(nice_scale(95), (25, 100));
        assert_eq!(nice_scale(1_000_066), (500_000, 1_500_000));
        assert_eq!(nice_scale(1_000_000), (250_000, 1_000_000));
        for max in (0..5_000).chain([12_345, 999_999, 7_654_321, i64::from(u32::MAX)]) {
            let (step, top) = nice_scale(max);
            let mut mantissa = step;
            while mantissa % 10 == 0 {
                mantissa /= 10;
            }
            assert!([1, 2, 25, 5].contains(&mantissa), "{max}: step {step}");
            assert!(
                top >= max && top % step == 0 && top / step <= 5,
                "{max}: {step} {top}"
            );
        }
        assert_eq!(compact(250_000), "250k");
        assert_eq!(compact(1_000_000), "1M");
        assert_eq!(compact(1_500_000), "1.5M");
        assert_eq!(compact(2_500), "2,500");
    }

    #[test]
    fn time_ticks_fall_on_round_moments() {
        let day = |d: &str| crate::domain::parse_time_arg(d).unwrap();
        let ticks = time_ticks(day("2026-09-07"), day("2026-12-05"));
        let labels: Vec<&str> = ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(labels, ["Oct 2026", "Nov 2026", "Dec 2026"]);
        let ticks = time_ticks(day("2026-11-20"), day("2026-12-05"));
        assert!(ticks.iter().all(|(at, _)| at % DAY == 0));
        assert_eq!(ticks[0].1, "Nov 23", "a Monday");
        let ticks = time_ticks(day("2026-12-05T08:37:11Z"), day("2026-12-05T10:01:00Z"));
        let labels: Vec<&str> = ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            labels,
            ["Dec 5 08:45", "09:00", "09:15", "09:30", "09:45", "10:00"]
        );
        assert_eq!(time_ticks(5, 5).len(), 1);
    }
}
