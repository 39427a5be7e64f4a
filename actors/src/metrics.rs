//! Prometheus text exposition helpers shared by the master's and agents' `/metrics`.

use std::fmt::Write as _;

/// Appends one counter (`{prefix}_{name}_total`).
pub fn counter(out: &mut String, prefix: &str, name: &str, value: f64) {
    let _ = writeln!(
        out,
        "# TYPE {prefix}_{name}_total counter\n{prefix}_{name}_total {value}"
    );
}

/// Appends one gauge (`{prefix}_{name}`).
pub fn gauge(out: &mut String, prefix: &str, name: &str, value: f64) {
    let _ = writeln!(out, "# TYPE {prefix}_{name} gauge\n{prefix}_{name} {value}");
}

/// Appends a counter for every numeric field of a serialized counters struct, so a counter
/// added to a core shows up without touching the HTTP code.
pub fn counters_from<'a>(
    out: &mut String,
    prefix: &str,
    fields: impl IntoIterator<Item = (&'a str, Option<f64>)>,
) {
    for (name, value) in fields {
        if let Some(v) = value {
            counter(out, prefix, name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_counters_and_gauges() {
        let mut s = String::new();
        super::counters_from(&mut s, "x", [("a", Some(1.0)), ("skip", None)]);
        super::gauge(&mut s, "x", "g", 2.5);
        assert_eq!(
            s,
            "# TYPE x_a_total counter\nx_a_total 1\n# TYPE x_g gauge\nx_g 2.5\n"
        );
    }
}
