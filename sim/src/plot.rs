//! A small SVG chart writer (line charts and grouped bar charts) for the evaluation plots: no
//! plotting dependency, plain SVG 1.1 text that any browser or GitHub renders.

use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a model or a reference, not a measurement).
    pub dashed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. 0..1 for utilization); computed from the data when `None`.
    pub y_range: Option<(f64, f64)>,
}

/// Bars grouped by category: `groups[g].1[c]` is group g's bar in category c.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub groups: Vec<(String, Vec<f64>)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Tick step of 1, 2 or 5 times a power of ten giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.round() {
        format!("{v:.0}")
    } else if (v * 10.0).round() == v * 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0).max(1e-12) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y0) / (self.y1 - self.y0).max(1e-12) * (H - TOP - BOTTOM)
    }
}

fn header(out: &mut String, title: &str, x_label: &str, y_label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"#,
        (W - RIGHT + LEFT) / 2.0,
        esc(title),
        (W - RIGHT + LEFT) / 2.0,
        H - 12.0,
        esc(x_label),
        (H - BOTTOM + TOP) / 2.0,
        (H - BOTTOM + TOP) / 2.0,
        esc(y_label)
    );
}

/// Axes, grid and tick labels; x ticks only when `x_ticks`.
fn axes(out: &mut String, f: &Frame, x_ticks: bool) {
    let ystep = nice_step(f.y1 - f.y0, 6.0);
    let mut y = (f.y0 / ystep).ceil() * ystep;
    while y <= f.y1 + ystep * 1e-6 {
        let py = f.py(y);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
        y += ystep;
    }
    if x_ticks {
        let xstep = nice_step(f.x1 - f.x0, 8.0);
        let mut x = (f.x0 / xstep).ceil() * xstep;
        while x <= f.x1 + xstep * 1e-6 {
            let px = f.px(x);
            let _ = writeln!(
                out,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                H - BOTTOM,
                H - BOTTOM + 5.0,
                H - BOTTOM + 18.0,
                fmt_tick(x)
            );
            x += xstep;
        }
    }
    let _ = writeln!(
        out,
        r##"<polyline points="{LEFT},{TOP} {LEFT},{:.1} {:.1},{:.1}" fill="none" stroke="black"/>"##,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
}

fn legend(out: &mut String, names: &[(String, bool)]) {
    for (i, (name, dashed)) in names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let x = W - RIGHT + 12.0;
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"{dash}/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            COLORS[i % COLORS.len()],
            x + 30.0,
            y + 4.0,
            esc(name)
        );
    }
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = range(pts().map(|p| p.0));
        let (y0, y1) = self.y_range.unwrap_or_else(|| {
            let (lo, hi) = range(pts().map(|p| p.1));
            (lo.min(0.0), hi * 1.05)
        });
        let f = Frame { x0, x1, y0, y1 };
        let mut out = String::new();
        header(&mut out, &self.title, &self.x_label, &self.y_label);
        axes(&mut out, &f, true);
        for (i, s) in self.series.iter().enumerate() {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", f.px(*x), f.py(*y)))
                .collect();
            let dash = if s.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                path.join(" "),
                COLORS[i % COLORS.len()]
            );
            if s.points.len() <= 30 {
                for (x, y) in &s.points {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                        f.px(*x),
                        f.py(*y),
                        COLORS[i % COLORS.len()]
                    );
                }
            }
        }
        let names: Vec<(String, bool)> = self
            .series
            .iter()
            .map(|s| (s.name.clone(), s.dashed))
            .collect();
        legend(&mut out, &names);
        out.push_str("</svg>\n");
        out
    }
}

impl BarChart {
    pub fn to_svg(&self) -> String {
        let (_, hi) = range(self.groups.iter().flat_map(|g| g.1.iter().copied()));
        let f = Frame {
            x0: 0.0,
            x1: self.categories.len().max(1) as f64,
            y0: 0.0,
            y1: hi * 1.1,
        };
        let mut out = String::new();
        header(&mut out, &self.title, "", &self.y_label);
        axes(&mut out, &f, false);
        let ng = self.groups.len().max(1) as f64;
        let slot = f.px(1.0) - f.px(0.0);
        let bar = slot * 0.8 / ng;
        for (c, cat) in self.categories.iter().enumerate() {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                f.px(c as f64 + 0.5),
                H - BOTTOM + 18.0,
                esc(cat)
            );
            for (g, (_, vals)) in self.groups.iter().enumerate() {
                let Some(v) = vals.get(c).copied().filter(|v| v.is_finite()) else {
                    continue;
                };
                let x = f.px(c as f64) + slot * 0.1 + g as f64 * bar;
                let (top, base) = (f.py(v), f.py(0.0));
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                    bar - 2.0,
                    (base - top).max(0.0),
                    COLORS[g % COLORS.len()],
                    x + bar / 2.0 - 1.0,
                    top - 3.0,
                    fmt_tick((v * 100.0).round() / 100.0)
                );
            }
        }
        let names: Vec<(String, bool)> = self.groups.iter().map(|g| (g.0.clone(), false)).collect();
        legend(&mut out, &names);
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_is_svg_with_every_series_and_label() {
        let c = LineChart {
            title: "ramp-up <k>".into(),
            x_label: "k".into(),
            y_label: "s".into(),
            series: vec![
                Series {
                    name: "sim".into(),
                    points: vec![(4.0, 20.0), (8.0, 27.0)],
                    dashed: false,
                },
                Series {
                    name: "model".into(),
                    points: vec![(4.0, 20.8), (8.0, 27.2)],
                    dashed: true,
                },
            ],
            y_range: None,
        };
        let svg = c.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("ramp-up &lt;k&gt;"));
        assert_eq!(
            svg.matches("<polyline points=").count(),
            3,
            "2 series + axes"
        );
        assert!(svg.contains("stroke-dasharray"));
        assert_eq!(svg.matches("<circle").count(), 4);
    }

    #[test]
    fn bar_chart_draws_one_bar_per_value_and_ticks_are_nice() {
        let c = BarChart {
            title: "t".into(),
            y_label: "s".into(),
            categories: vec!["a".into(), "b".into()],
            groups: vec![
                ("x".into(), vec![1.0, 2.0]),
                ("y".into(), vec![3.0, f64::NAN]),
            ],
        };
        assert_eq!(c.to_svg().matches("<rect x=").count(), 3);
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(7.0, 8.0), 1.0);
    }
}
