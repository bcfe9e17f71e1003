//! The report's rendering and the rounding and percentiles its numbers go through.

use super::Report;
use serde_json::Value;
use std::time::Duration;

/// The report as a table, grouped by part.
pub fn print(report: &Report) {
    let mut part = "";
    for (k, v) in report {
        let (p, rest) = k.split_once('.').unwrap_or((k, ""));
        if p != part {
            println!("{p}");
            part = p;
        }
        match v {
            // A list (cost.assumptions): one item a line under the key.
            Value::Array(items) => {
                println!("  {rest}");
                for item in items {
                    match item {
                        Value::String(s) => println!("    - {s}"),
                        other => println!("    - {other}"),
                    }
                }
            }
            Value::String(s) => println!("  {rest:<46} {s}"),
            other => println!("  {rest:<46} {other}"),
        }
    }
}

/// The `p` percentile of `sorted`, in milliseconds.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// `v` rounded to `digits` decimals.
pub(super) fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
