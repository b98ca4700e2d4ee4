//! Server-side SVG charts: no JavaScript, nothing fetched. Only numbers and
//! formatted dates go into the markup, so the output is safe to embed as is.

use std::fmt::Write;

use crate::domain::format_timestamp;
use crate::storage::uploads::ChartPoint;

pub const SERIES_COLORS: [&str; 4] = ["#1f4e79", "#cf222e", "#9a6700", "#8250df"];
pub const SERIES_NAMES: [&str; 4] = [
    "total files",
    "different",
    "missing on target",
    "extra on target",
];

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
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let last = values[values.len() - 1];
    let color = if last > 0 {
        SERIES_COLORS[1]
    } else {
        "#1a7f37"
    };
    format!(
        r#"<svg class="spark" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="problems over the last {n}, latest {last}"><polyline points="{p}" fill="none" stroke="{color}" stroke-width="1.5"/></svg>"#,
        n = crate::domain::counted(values.len() as u64, "upload"),
        p = points.trim_end()
    )
}

/// The charts' width and margins, in pixels (the height is each chart's own).
const W: f64 = 760.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// Which of the four counts a chart draws: total files dwarf the problem counts,
/// so they get a chart (and a scale) of their own.
pub const TOTAL_SERIES: &[usize] = &[0];
pub const PROBLEM_SERIES: &[usize] = &[1, 2, 3];

/// A line chart of some of the four counts over time (points oldest first).
pub fn counts_chart(points: &[ChartPoint], series: &[usize]) -> String {
    const H: f64 = 260.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="counts over {}">"#,
        crate::domain::counted(points.len() as u64, "upload")
    );
    if points.is_empty() {
        svg.push_str(
            r##"<text x="20" y="40" fill="#5d6670">No uploads in this range.</text></svg>"##,
        );
        return svg;
    }
    let max = points
        .iter()
        .flat_map(|p| series.iter().map(|s| p.values[*s]))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (t0, t1) = (points[0].at, points[points.len() - 1].at);
    let span = (t1 - t0).max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize, at: i64| {
        if t1 > t0 {
            LEFT + (at - t0) as f64 / span * plot_w
        } else if points.len() > 1 {
            LEFT + i as f64 / (points.len() - 1) as f64 * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y = |v: i64| TOP + plot_h - (v as f64 / max) * plot_h;

    let (first, last) = (format_timestamp(t0), format_timestamp(t1));
    frame(
        &mut svg,
        (LEFT, W - RIGHT, H - 12.0),
        max,
        y,
        (
            first.get(..16).unwrap_or(&first),
            last.get(..16).unwrap_or(&last),
        ),
    );

    for &s in series {
        let color = SERIES_COLORS[s];
        // An upload without results breaks the line: its zeros are no result.
        let mut line = String::new();
        for (i, p) in points.iter().enumerate() {
            if p.has_results {
                let _ = write!(line, "{:.1},{:.1} ", x(i, p.at), y(p.values[s]));
            } else {
                segment(&mut svg, &line, color);
                line.clear();
            }
        }
        segment(&mut svg, &line, color);
        if points.len() <= 120 {
            for (i, p) in points.iter().enumerate().filter(|(_, p)| p.has_results) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>upload {} at {}: {} {}</title></circle>"#,
                    x(i, p.at),
                    y(p.values[s]),
                    p.id,
                    format_timestamp(p.at),
                    p.values[s],
                    SERIES_NAMES[s]
                );
            }
        }
    }
    no_result_marks(&mut svg, points, &x, H - BOTTOM);
    svg.push_str("</svg>");
    svg
}

/// One stretch of a series' line (nothing for an empty stretch).
fn segment(svg: &mut String, line: &str, color: &str) {
    if !line.is_empty() {
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            line.trim_end()
        );
    }
}

/// A grey mark on the baseline for each upload without results.
fn no_result_marks(
    svg: &mut String,
    points: &[ChartPoint],
    x: &dyn Fn(usize, i64) -> f64,
    baseline: f64,
) {
    for (i, p) in points.iter().enumerate().filter(|(_, p)| !p.has_results) {
        let _ = write!(
            svg,
            r##"<rect class="no-results" x="{:.1}" y="{:.1}" width="4" height="8" fill="#8c959f"><title>upload {} at {}: no results</title></rect>"##,
            x(i, p.at) - 2.0,
            baseline - 8.0,
            p.id,
            format_timestamp(p.at)
        );
    }
}

/// A chart's grid (five lines with their values, `max` at the top) and the labels
/// of its first and last point under it; `(left, right, baseline)` in pixels.
fn frame(
    svg: &mut String,
    (left, right, baseline): (f64, f64, f64),
    max: f64,
    y: impl Fn(i64) -> f64,
    (first, last): (&str, &str),
) {
    for k in 0..=4 {
        let v = (max * k as f64 / 4.0).round() as i64;
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{right}" y2="{yy:.1}" stroke="#d8dee4" stroke-width="1"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#5d6670">{v}</text>"##,
            left - 6.0,
            yy + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{left}" y="{baseline}" font-size="11" fill="#5d6670">{first}</text><text x="{right}" y="{baseline}" font-size="11" text-anchor="end" fill="#5d6670">{last}</text>"##
    );
}

/// One line of a daily chart: a name, a colour, a value per day.
pub struct DailySeries<'a> {
    pub name: &'static str,
    pub color: &'static str,
    pub values: &'a [i64],
}

/// A line chart with a point a day (`dates` as `YYYY-MM-DD`, oldest first).
pub fn daily_chart(dates: &[String], series: &[DailySeries<'_>], label: &str) -> String {
    const H: f64 = 220.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{label}, a point a day over {}">"#,
        crate::domain::counted(dates.len() as u64, "day")
    );
    if dates.is_empty() {
        svg.push_str(r##"<text x="20" y="40" fill="#5d6670">No days in this range.</text></svg>"##);
        return svg;
    }
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if dates.len() > 1 {
            LEFT + i as f64 / (dates.len() - 1) as f64 * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y = |v: i64| TOP + plot_h - (v as f64 / max) * plot_h;
    let last = format!("{} (UTC)", dates[dates.len() - 1]);
    frame(
        &mut svg,
        (LEFT, W - RIGHT, H - 12.0),
        max,
        y,
        (&dates[0], &last),
    );
    for s in series {
        let mut line = String::new();
        for (i, v) in s.values.iter().enumerate() {
            let _ = write!(line, "{:.1},{:.1} ", x(i), y(*v));
        }
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"><title>{}</title></polyline>"#,
            line.trim_end(),
            s.color,
            s.name
        );
        if dates.len() <= 120 {
            for (i, v) in s.values.iter().enumerate() {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}"><title>{}: {v} {}</title></circle>"#,
                    x(i),
                    y(*v),
                    s.color,
                    dates[i],
                    s.name
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_hold_only_numbers_and_dates() {
        let points: Vec<ChartPoint> = (0..5)
            .map(|i| ChartPoint {
                id: i,
                at: 1_764_000_000_000 + i * 60_000,
                values: [100, i, 0, 2],
                has_results: i != 3,
            })
            .collect();
        let svg = counts_chart(&points, PROBLEM_SERIES);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // The upload without results breaks each line and is marked, not drawn at 0.
        assert_eq!(
            svg.matches("<polyline").count(),
            2 * PROBLEM_SERIES.len(),
            "{svg}"
        );
        assert!(
            svg.contains("upload 3 at") && svg.contains(": no results</title>"),
            "{svg}"
        );
        assert_eq!(
            counts_chart(&points, TOTAL_SERIES)
                .matches("<polyline")
                .count(),
            2
        );
        assert!(svg.contains("upload 4 at 2025-11-24T16:04:00.000Z: 4 different"));
        assert!(sparkline(&[3, 2, 0]).contains("latest 0"));
        assert_eq!(sparkline(&[]), "");
        assert!(counts_chart(&[], TOTAL_SERIES).contains("No uploads"));
        let dates = vec!["2026-11-01".to_string(), "2026-11-02".to_string()];
        let chart = daily_chart(
            &dates,
            &[DailySeries {
                name: "open problems",
                color: SERIES_COLORS[1],
                values: &[3, 1],
            }],
            "open problems",
        );
        assert!(chart.contains("2026-11-02: 1 open problems"));
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(daily_chart(&[], &[], "x").contains("No days"));
    }
}
