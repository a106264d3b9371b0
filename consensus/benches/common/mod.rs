//! A/B measurement shared by the benches (consensus and node): every result is a ratio of a
//! subject to a baseline measured in the same process, in interleaved rounds.
//!
//! Why not criterion: a ratio is what the goals are stated in, and the two sides must see the
//! same machine state. On a shared 2-core machine the load changes from second to second, so
//! the subject and its baseline alternate sample by sample (baseline, subject, baseline, ...)
//! and the ratio is taken of the two medians. Nothing here asserts a time; the binary prints
//! `ratio = x` and whether the goal holds.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// One finished comparison.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) subject: &'static str,
    pub(crate) baseline: &'static str,
    pub(crate) subject_ns: f64,
    pub(crate) baseline_ns: f64,
    pub(crate) goal: f64,
}

impl Row {
    pub(crate) fn ratio(&self) -> f64 {
        self.subject_ns / self.baseline_ns
    }
    pub(crate) fn met(&self) -> bool {
        self.ratio() <= self.goal
    }
}

/// Runs `rounds` interleaved samples of each side; each closure runs one sample and returns
/// the time per operation in nanoseconds (so a sample may exclude its own setup).
pub(crate) fn compare(
    name: impl Into<String>,
    (subject, baseline): (&'static str, &'static str),
    goal: f64,
    rounds: usize,
    mut subject_sample: impl FnMut() -> f64,
    mut baseline_sample: impl FnMut() -> f64,
) -> Row {
    // One warm-up sample each: caches, page faults, lazy initialisation.
    subject_sample();
    baseline_sample();
    let mut subject_ns = Vec::with_capacity(rounds);
    let mut baseline_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        baseline_ns.push(baseline_sample());
        subject_ns.push(subject_sample());
    }
    let row = Row {
        name: name.into(),
        subject,
        baseline,
        subject_ns: median(&mut subject_ns),
        baseline_ns: median(&mut baseline_ns),
        goal,
    };
    println!(
        "{:<34} {} {:>10}  vs  {} {:>10}   ratio = {:.3}  (goal <= {}: {})",
        row.name,
        row.subject,
        fmt_ns(row.subject_ns),
        row.baseline,
        fmt_ns(row.baseline_ns),
        row.ratio(),
        row.goal,
        if row.met() { "met" } else { "NOT met" }
    );
    row
}

/// Time `iters` runs of `f`, in nanoseconds per run.
pub(crate) fn per_op(iters: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    nanos(start.elapsed()) / f64::from(iters)
}

pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Median (sorts in place). NaN-free input assumed: every value is a measured duration.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The markdown table the README's "Performance" section is filled from.
pub(crate) fn print_table(rows: &[Row]) {
    println!();
    println!("| benchmark | subject | baseline | ratio | goal | met |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} {} | {} {} | {:.3} | <= {} | {} |",
            r.name,
            r.subject,
            fmt_ns(r.subject_ns),
            r.baseline,
            fmt_ns(r.baseline_ns),
            r.ratio(),
            r.goal,
            if r.met() { "yes" } else { "no" }
        );
    }
}

/// The first command-line argument that is not a flag: `cargo bench -- NAME` runs only the
/// comparisons whose name contains NAME (cargo itself passes `--bench`).
pub(crate) fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

pub(crate) fn selected(filter: &Option<String>, name: &str) -> bool {
    filter.as_deref().is_none_or(|f| name.contains(f))
}
