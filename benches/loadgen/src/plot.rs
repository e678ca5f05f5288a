//! `--plot`: an SVG chart of a run's time series, written without any charting library.
//!
//! Three panels share the time axis: latency per interval (p50, p99, max; log scale), throughput
//! (deliveries, publishes and completed polls per second) and, when the server was sampled, its
//! CPU use and RSS.

use std::fmt::Write as _;

use crate::report::Report;
use crate::series::SeriesPoint;

/// Chart width, pixels.
pub const DEFAULT_PLOT_WIDTH: f64 = 960.0;

/// Height of one panel, pixels.
pub const DEFAULT_PANEL_HEIGHT: f64 = 230.0;

/// Left, right, top and bottom margin of a panel, pixels (room for the axis labels).
const MARGIN: (f64, f64, f64, f64) = (80.0, 80.0, 34.0, 30.0);

/// Line colours, in the order the lines of a panel are drawn.
const COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// One line of a panel: its label, its axis (false = left, true = right) and a value per point.
struct Line<'a> {
    label: &'a str,
    right: bool,
    values: Vec<Option<f64>>,
}

/// A vertical axis.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn linear(values: &[Option<f64>]) -> Self {
        let max = values.iter().flatten().copied().fold(0.0, f64::max);
        Self {
            lo: 0.0,
            hi: nice_ceiling(max),
            log: false,
        }
    }

    fn log(values: &[Option<f64>]) -> Self {
        let pos = values.iter().flatten().copied().filter(|v| *v > 0.0);
        let (min, max) = pos.fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        if max <= 0.0 {
            return Self {
                lo: 0.01,
                hi: 1.0,
                log: true,
            };
        }
        Self {
            lo: 10f64.powf(min.log10().floor()),
            hi: 10f64.powf(max.log10().ceil().max(min.log10().floor() + 1.0)),
            log: true,
        }
    }

    /// Position of `v` between 0 (bottom) and 1 (top).
    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            (0..=4)
                .map(|i| self.lo + (self.hi - self.lo) * f64::from(i) / 4.0)
                .collect()
        }
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (1 for zero or less).
pub fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A short label: 1.5k, 20M, 0.25.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[allow(clippy::too_many_arguments)]
fn panel(
    svg: &mut String,
    top: f64,
    title: &str,
    units: (&str, &str),
    t: &[f64],
    t_max: f64,
    lines: &[Line<'_>],
    log_left: bool,
) {
    let (ml, mr, mt, mb) = MARGIN;
    let (x0, x1) = (ml, DEFAULT_PLOT_WIDTH - mr);
    let (y0, y1) = (top + DEFAULT_PANEL_HEIGHT - mb, top + mt);
    let side = |right: bool| -> Vec<Option<f64>> {
        lines
            .iter()
            .filter(|l| l.right == right)
            .flat_map(|l| l.values.iter().copied())
            .collect()
    };
    let left = if log_left {
        Axis::log(&side(false))
    } else {
        Axis::linear(&side(false))
    };
    let right = Axis::linear(&side(true));
    let x = |v: f64| x0 + (x1 - x0) * if t_max > 0.0 { v / t_max } else { 0.0 };
    let y = |a: &Axis, v: f64| y0 - (y0 - y1) * a.frac(v);
    let _ = writeln!(
        svg,
        r#"<text x="{x0}" y="{}" font-weight="bold">{}</text>"#,
        top + 20.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        x1 - x0,
        y0 - y1
    );
    for v in left.ticks() {
        let yy = y(&left, v);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            yy + 4.0,
            short_number(v)
        );
    }
    if lines.iter().any(|l| l.right) {
        for v in right.ticks() {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}">{}</text>"#,
                x1 + 6.0,
                y(&right, v) + 4.0,
                short_number(v)
            );
        }
    }
    let step = nice_ceiling(t_max / 5.0);
    for i in 0..=10u32 {
        let v = step * f64::from(i);
        if v > t_max * (1.0 + 1e-9) {
            break;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{} s</text>"#,
            x(v),
            y0 + 16.0,
            short_number(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" transform="rotate(-90 {} {})" text-anchor="middle">{}</text>"#,
        20.0,
        (y0 + y1) / 2.0,
        20.0,
        (y0 + y1) / 2.0,
        escape(units.0)
    );
    if !units.1.is_empty() {
        let xr = DEFAULT_PLOT_WIDTH - 14.0;
        let _ = writeln!(
            svg,
            r#"<text x="{xr}" y="{}" transform="rotate(90 {xr} {})" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape(units.1)
        );
    }
    let mut legend_x = x0 + 300.0;
    for (line, colour) in lines.iter().zip(COLOURS) {
        let axis = if line.right { &right } else { &left };
        // A missing value ends one polyline; the next value starts another.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (tv, v) in t.iter().zip(&line.values) {
            match (v, runs.last_mut()) {
                (Some(v), Some(run)) => run.push((x(*tv), y(axis, *v))),
                _ => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| r.len() == 1) {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#,
                run[0].0, run[0].1
            );
        }
        for run in runs.iter().filter(|r| r.len() > 1) {
            let pts: Vec<String> = run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                pts.join(" ")
            );
        }
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="{}" width="14" height="4" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            top + 14.0,
            legend_x + 18.0,
            top + 20.0,
            escape(line.label)
        );
        legend_x += 150.0;
    }
}

/// The chart of `points` as an SVG document; `title` goes on top.
pub fn render(title: &str, points: &[SeriesPoint]) -> String {
    let t: Vec<f64> = points.iter().map(|p| p.t).collect();
    let t_max = t.iter().copied().fold(0.0, f64::max);
    let ms = |f: fn(&SeriesPoint) -> Option<u64>| -> Vec<Option<f64>> {
        points
            .iter()
            .map(|p| f(p).map(|v| v as f64 / 1000.0))
            .collect()
    };
    let rate = |f: fn(&SeriesPoint) -> f64| -> Vec<Option<f64>> {
        points.iter().map(|p| Some(f(p))).collect()
    };
    let server = points.iter().any(|p| p.server_rss_kb.is_some());
    let panels = if server { 3.0 } else { 2.0 };
    let height = 40.0 + panels * DEFAULT_PANEL_HEIGHT;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{DEFAULT_PLOT_WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="13" font-weight="bold">{}</text>"#,
        MARGIN.0,
        escape(title)
    );
    let latency = [
        Line {
            label: "p50",
            right: false,
            values: ms(|p| p.latency_p50_us),
        },
        Line {
            label: "p99",
            right: false,
            values: ms(|p| p.latency_p99_us),
        },
        Line {
            label: "max",
            right: false,
            values: ms(|p| p.latency_max_us),
        },
    ];
    panel(
        &mut svg,
        40.0,
        "publish → receive latency per interval",
        ("ms (log)", ""),
        &t,
        t_max,
        &latency,
        true,
    );
    let mut through = vec![
        Line {
            label: "deliveries/s",
            right: false,
            values: rate(|p| p.deliveries_per_sec),
        },
        Line {
            label: "publishes/s",
            right: true,
            values: rate(|p| p.publishes_per_sec),
        },
    ];
    if points.iter().any(|p| p.polls > 0) {
        through.push(Line {
            label: "polls/s",
            right: false,
            values: rate(|p| p.polls_per_sec),
        });
    }
    panel(
        &mut svg,
        40.0 + DEFAULT_PANEL_HEIGHT,
        "throughput",
        ("per second", "publishes per second"),
        &t,
        t_max,
        &through,
        false,
    );
    if server {
        let cpu = Line {
            label: "server CPU %",
            right: false,
            values: points.iter().map(|p| p.server_cpu_percent).collect(),
        };
        let rss = Line {
            label: "server RSS MiB",
            right: true,
            values: points
                .iter()
                .map(|p| p.server_rss_kb.map(|k| k as f64 / 1024.0))
                .collect(),
        };
        panel(
            &mut svg,
            40.0 + 2.0 * DEFAULT_PANEL_HEIGHT,
            "server",
            ("CPU % (100 = one core)", "RSS MiB"),
            &t,
            t_max,
            &[cpu, rss],
            false,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The chart of a report, titled with what was run.
pub fn render_report(r: &Report) -> String {
    let p = &r.plan;
    let name = |v: serde_json::Result<serde_json::Value>| -> String {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let title = format!(
        "{} {} {}: {} subscribers, {} channels; latency p50 {} µs, p99 {} µs; {:.0}/s",
        name(serde_json::to_value(p.target)),
        name(serde_json::to_value(p.transport)),
        name(serde_json::to_value(p.mode)),
        p.subscribers,
        p.channels,
        r.latency_us.p50,
        r.latency_us.p99,
        r.delivery.rate_per_sec
    );
    render(&title, &r.series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(1100.0), 2000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2e7), "20M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.0), "0");
        let a = Axis::log(&[Some(0.3), Some(42.0), None]);
        assert_eq!((a.lo, a.hi), (0.1, 100.0));
        assert_eq!(a.ticks(), vec![0.1, 1.0, 10.0, 100.0]);
        assert!((a.frac(1.0) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(Axis::linear(&[Some(3.0)]).hi, 5.0);
    }

    #[test]
    fn svg_has_a_line_per_series_and_breaks_at_gaps() {
        let mut points: Vec<SeriesPoint> = (1..=5)
            .map(|k| SeriesPoint {
                t: f64::from(k),
                deliveries_per_sec: 1000.0 * f64::from(k),
                publishes_per_sec: 10.0,
                latency_p50_us: Some(800),
                latency_p99_us: Some(2500),
                latency_max_us: Some(9000),
                ..SeriesPoint::default()
            })
            .collect();
        points[2].latency_max_us = None;
        let svg = render("a <test> & more", &points);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;test&gt; &amp; more"));
        // p50, p99, two runs of max, deliveries/s, publishes/s; no server panel.
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert_eq!(svg.matches("<circle").count(), 0);
        assert!(!svg.contains("server CPU"));
        points[0].server_rss_kb = Some(2048);
        points[1].server_rss_kb = Some(4096);
        points[1].server_cpu_percent = Some(55.0);
        points[4].polls = 3;
        let svg = render("t", &points);
        assert!(svg.contains("server CPU %") && svg.contains("polls/s"));
        // + polls/s, + RSS (one run of two points); CPU has a single point: a dot.
        assert_eq!(svg.matches("<polyline").count(), 8);
        assert_eq!(svg.matches("<circle").count(), 1);
        let empty = render("nothing", &[]);
        assert!(empty.contains("nothing") && !empty.contains("<polyline"));
    }
}
