//! The bench's report: ranks the servers, measures the run-to-run noise,
//! and writes the results three ways — a table for the terminal, a JSON
//! document for machines (`--json`) and an SVG chart for people (`--svg`).
//!
//! # Reading the numbers
//!
//! * A server's rate is the **median** over its runs of requests answered
//!   correctly per second; the spread is the smallest and largest run.
//! * The **noise** is the median, over the servers that ran at least twice
//!   without errors, of (max − min) / median rate. Two neighbouring rows whose
//!   medians differ by no more than that are a **tie** (`≈`): the bench cannot
//!   tell them apart. With one run per server the noise is unknown and the
//!   report says so instead of pretending to a precision it did not measure.
//! * A server that answered anything wrongly, dropped a connection or stalled
//!   is reported with its **errors, not with a rate**: a fast server that
//!   corrupts bytes is not fast. Such servers rank last.
//! * Latency columns are medians over runs of each run's percentile (from the
//!   load generator's HdrHistogram); `max` is the largest over all runs.
//! * Server CPU seconds (median per run) and peak RSS (largest sum over the
//!   server's processes) come from /proc; servers muse did not start
//!   (`--against`) have none. The CPU is counted over the timed phase (from
//!   the end of the warm-up, to within the sampler's 100 ms step).
//! * A server's **efficiency** is the median over its runs of requests
//!   answered in the timed phase / server CPU seconds: requests per server
//!   CPU-second (`req/CPU-s`), a "request" being what the scenario counts
//!   (a whole session in ftp `sessions`, a whole transfer in ftp `download`
//!   and http `large`, one echoed chunk in echo `stream`; bulk scenarios
//!   also note data bytes per server CPU-second). Servers without a CPU
//!   figure have none and show `—`.
//! * Servers are **ranked** by requests per second, unless the load
//!   generator was the limit (its threads busy over 90 % of the time) in
//!   most runs: then req/s is the load generator's ceiling, and they are
//!   ranked by efficiency instead, those without one last. The table's key
//!   and a note say which.
//!
//! # JSON schema, version 1
//!
//! `--json FILE` writes one object (pretty-printed UTF-8). `schema_version`
//! is bumped whenever a field is renamed, removed or changes meaning; new
//! fields may appear without a bump, so readers should ignore unknown ones.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema_version` | integer | `1` |
//! | `protocol` | string | the protocol driven (`"echo"`, ...) |
//! | `scenario` | string | the scenario's name (`"rr"`, `"stream"`, ...) |
//! | `summary` | string | the scenario in one line |
//! | `clients` | integer | measuring connections |
//! | `duration_seconds` | number | timed phase of each run, seconds |
//! | `rate` | number or null | open-loop target, requests/s; null = closed loop |
//! | `repeat` | integer | runs per server (interleaved across servers) |
//! | `cpus` | integer | CPUs of the machine |
//! | `noise` | number | run-to-run noise of requests/s as a fraction (0.04 = 4 %); 0 when unknown (`repeat` = 1) |
//! | `ranked_by` | string | what "best" means in `servers`: `"rate"` (requests/s) or `"efficiency"` (requests per server CPU-second, when the load generator was the limit in most runs) |
//! | `servers` | array | one object per server, best first (see below) |
//! | `notes` | array of strings | what the reader must know (saturated load generator, errors, ...) |
//! | `extra` | object of strings | further facts by name |
//!
//! Each element of `servers`:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `name` | string | `muse/ARCH` or the baseline's name |
//! | `family` | string | `serial`, `processes`, `threads`, `hybrid`, `evented`, `async` or `baseline` |
//! | `median_rate` | number | median over runs of requests/s (meaningless if any run has errors) |
//! | `rate_range` | [number, number] | smallest and largest requests/s over the runs |
//! | `median_p99_us` | number | median over runs of the p99 latency, microseconds |
//! | `median_efficiency` | number or null | median over the runs with a `server` of `load.requests` / `server.cpu_seconds`: requests per server CPU-second; null when no run has a CPU figure |
//! | `runs` | array | every run, in the order they happened |
//!
//! Each element of `runs`:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `repeat` | integer | which repetition, from 0 |
//! | `load.requests` | integer | requests answered correctly in the timed phase |
//! | `load.bytes` | integer | payload bytes received back in the timed phase |
//! | `load.seconds` | number | length of the timed phase, seconds |
//! | `load.latency` | object | `p50_us`, `p99_us`, `p999_us`, `max_us`: microseconds (open loop: from the intended send time) |
//! | `load.errors` | object | counts by kind: `connect`, `mismatch` (wrong bytes), `closed` (closed while an answer was owed), `io`, `stalled` (no answer at all), `tls` (failed TLS handshakes, unreadable TLS records) |
//! | `load.client_cpu_seconds` | number | CPU seconds the load generator used |
//! | `load.client_threads` | integer | the load generator's threads |
//! | `load.idle_held` | integer | idle connections still open at the end (idle scenario) |
//! | `server` | object or null | null for servers muse did not start; else: |
//! | `server.cpu_seconds` | number | user + system CPU seconds over all the server's processes, reaped children included, over the timed phase |
//! | `server.peak_rss_kib` | integer | largest sum of resident memory over its processes, KiB |
//! | `server.peak_processes` | integer | most processes seen at once |
//! | `server.peak_threads` | integer | most threads seen at once, over all processes |
//! | `server.workers` | array | multi-process servers: `{pid, cpu_seconds}` per worker, master excluded |

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;

use comfy_table::{
    CellAlignment, ColumnConstraint, ContentArrangement, LineStyle, Table, TableStyle, Width,
};
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::model::{Errors, Family, Ranking, Report, Run, ServerResult};

// ---------------------------------------------------------------------------
// Summaries and ranking
// ---------------------------------------------------------------------------

/// Summarises one server's runs: median rate, its range, median p99,
/// median requests per server CPU-second.
pub fn server_result(name: String, family: Family, runs: Vec<Run>) -> ServerResult {
    let rates: Vec<f64> = runs.iter().map(|r| r.load.rate()).collect();
    let median_p99_us = median(runs.iter().map(|r| r.load.latency.p99_us).collect());
    let efficiencies: Vec<f64> = runs.iter().filter_map(run_efficiency).collect();
    ServerResult {
        name,
        family,
        median_rate: median(rates.clone()),
        rate_range: range(&rates),
        median_p99_us,
        median_efficiency: (!efficiencies.is_empty()).then(|| median(efficiencies)),
        runs,
    }
}

/// One run's requests per server CPU-second; None without a CPU figure.
fn run_efficiency(r: &Run) -> Option<f64> {
    let cpu = r.server.as_ref()?.cpu_seconds;
    (cpu > 0.0).then(|| r.load.requests as f64 / cpu)
}

/// The smallest and largest of `v`; (0, 0) when empty.
fn range(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// A server's median of the figure the report ranks by; None for
/// efficiency without a CPU figure.
fn figure(s: &ServerResult, by: Ranking) -> Option<f64> {
    match by {
        Ranking::Rate => Some(s.median_rate),
        Ranking::Efficiency => s.median_efficiency,
    }
}

/// Each run's value of the figure, over the runs that have one.
fn run_figures(s: &ServerResult, by: Ranking) -> Vec<f64> {
    match by {
        Ranking::Rate => s.runs.iter().map(|r| r.load.rate()).collect(),
        Ranking::Efficiency => s.runs.iter().filter_map(run_efficiency).collect(),
    }
}

/// How many runs, over all servers, the load generator was the limit in,
/// and how many runs there were.
fn saturated_runs(report: &Report) -> (usize, usize) {
    let runs = report.servers.iter().flat_map(|s| &s.runs);
    let saturated = runs.clone().filter(|r| r.load.client_saturated()).count();
    (saturated, runs.count())
}

/// The figure to rank by: requests per second, unless the load generator
/// was the limit in most runs. Then requests per second measure the load
/// generator, and what still tells the servers apart is what each spent
/// on the requests it got: requests per server CPU-second.
fn ranking(report: &Report) -> Ranking {
    let (saturated, runs) = saturated_runs(report);
    if runs > 0 && saturated * 2 > runs {
        Ranking::Efficiency
    } else {
        Ranking::Rate
    }
}

/// Sorts the servers best first, measures the noise and writes the notes.
///
/// Best is the highest requests per second, or, when the load generator
/// was the limit in most runs, the most requests per server CPU-second
/// (servers without a CPU figure then come after those with one).
/// Servers with errors in any run go last, in the order they came: their
/// rate means nothing, so ordering them by it would mean something false.
/// Calling it twice does not duplicate notes.
pub fn rank(report: &mut Report) {
    let by = ranking(report);
    report.ranked_by = by;
    // A stable sort keeps the runner's order among equals and among the
    // erroring servers.
    report.servers.sort_by(|a, b| {
        let (ea, eb) = (has_errors(a), has_errors(b));
        ea.cmp(&eb).then_with(|| {
            if ea {
                return Ordering::Equal;
            }
            match (figure(a, by), figure(b, by)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        })
    });

    report.noise = noise(report, Ranking::Rate).unwrap_or(0.0);

    let mut notes = Vec::new();
    if by == Ranking::Efficiency {
        let (saturated, runs) = saturated_runs(report);
        notes.push(format!(
            "ranked by requests per server CPU-second (req/CPU-s), not req/s: the load \
             generator was the limit in {saturated} of {runs} runs, so req/s is its ceiling \
             rather than the servers'"
        ));
    }
    for s in &report.servers {
        let saturated = s.runs.iter().filter(|r| r.load.client_saturated()).count();
        if saturated > 0 {
            let mut note = format!(
                "the load generator was the limit for {}: its numbers are a floor",
                s.name
            );
            if s.runs.len() > 1 {
                let _ = write!(note, " ({saturated} of {} runs)", s.runs.len());
            }
            notes.push(note);
        }
        let errors = total_errors(s);
        if errors.total() > 0 {
            notes.push(format!(
                "{}: {} errors ({}): reported without a rate",
                s.name,
                errors.total(),
                error_kinds(&errors)
            ));
        }
    }
    for note in notes {
        if !report.notes.contains(&note) {
            report.notes.push(note);
        }
    }
}

/// The run-to-run noise of a figure: the median over the servers that can
/// say something about it (at least two runs with the figure, no errors, a
/// non-zero median) of (max − min) / median. None when no server can.
fn noise(report: &Report, by: Ranking) -> Option<f64> {
    if report.repeat <= 1 {
        return None;
    }
    let samples: Vec<f64> = report
        .servers
        .iter()
        .filter(|s| !has_errors(s))
        .filter_map(|s| {
            let runs = run_figures(s, by);
            let m = median(runs.clone());
            let (lo, hi) = range(&runs);
            (runs.len() >= 2 && m > 0.0).then(|| (hi - lo) / m)
        })
        .collect();
    (!samples.is_empty()).then(|| median(samples))
}

/// Whether the report measured its noise (at least one server ran twice
/// without errors). Without it no two rows can be called a tie, nor told
/// apart with confidence.
fn noise_known(report: &Report) -> bool {
    noise(report, Ranking::Rate).is_some()
}

/// For each server (in report order), whether its figure (the one the
/// report is ranked by) is within that figure's noise of the row above.
/// Only between two error-free rows with the figure, and only when the
/// noise was measured.
fn ties(report: &Report) -> Vec<bool> {
    let by = report.ranked_by;
    let noise = noise(report, by);
    let tie = |above: &ServerResult, row: &ServerResult| {
        let (Some(noise), Some(a), Some(r)) = (noise, figure(above, by), figure(row, by)) else {
            return false;
        };
        if has_errors(above) || has_errors(row) || a <= 0.0 {
            return false;
        }
        // A tiny epsilon so that a gap equal to the noise, computed through
        // a different sequence of float operations, still counts.
        (a - r).abs() / a <= noise + 1e-9
    };
    std::iter::once(false)
        .chain(report.servers.windows(2).map(|w| tie(&w[0], &w[1])))
        .take(report.servers.len())
        .collect()
}

/// The yardstick: the fastest error-free baseline.
fn best_baseline(report: &Report) -> Option<&ServerResult> {
    report
        .servers
        .iter()
        .filter(|s| s.family == Family::Baseline && !has_errors(s) && s.median_rate > 0.0)
        .max_by(|a, b| a.median_rate.total_cmp(&b.median_rate))
}

/// The yardstick for efficiency: the error-free baseline with the most
/// requests per server CPU-second (None if no baseline has a CPU figure).
fn most_efficient_baseline(report: &Report) -> Option<(&ServerResult, f64)> {
    report
        .servers
        .iter()
        .filter(|s| s.family == Family::Baseline && !has_errors(s))
        .filter_map(|s| s.median_efficiency.filter(|e| *e > 0.0).map(|e| (s, e)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn total_errors(s: &ServerResult) -> Errors {
    let mut e = Errors::default();
    for r in &s.runs {
        e.add(&r.load.errors);
    }
    e
}

fn has_errors(s: &ServerResult) -> bool {
    s.runs.iter().any(|r| r.load.errors.total() > 0)
}

/// "12 mismatch, 3 stalled": the non-zero kinds, named as in the JSON.
fn error_kinds(e: &Errors) -> String {
    let kinds = [
        (e.connect, "connect"),
        (e.mismatch, "mismatch"),
        (e.closed, "closed"),
        (e.io, "io"),
        (e.stalled, "stalled"),
        (e.tls, "tls"),
    ];
    let parts: Vec<String> = kinds
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, k)| format!("{n} {k}"))
        .collect();
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join(", ")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn family_name(f: Family) -> &'static str {
    // The same words serde writes into the JSON.
    match f {
        Family::Serial => "serial",
        Family::Processes => "processes",
        Family::Threads => "threads",
        Family::Hybrid => "hybrid",
        Family::Evented => "evented",
        Family::Async => "async",
        Family::Proactor => "proactor",
        Family::Baseline => "baseline",
    }
}

/// What the table shows of one server beyond its rate, over all its runs.
struct Columns {
    /// Whether any request was answered (else latencies are meaningless).
    answered: bool,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Median over runs with server stats.
    cpu_seconds: Option<f64>,
    /// Largest over runs.
    peak_rss_kib: Option<u64>,
    peak_processes: Option<usize>,
    peak_threads: Option<usize>,
    /// Each worker's share of the workers' CPU, in percent, busiest first;
    /// empty unless the server has at least two workers.
    worker_shares: Vec<f64>,
}

fn columns(s: &ServerResult) -> Columns {
    let lat = |f: fn(&Run) -> f64| median(s.runs.iter().map(f).collect());
    let stats: Vec<_> = s.runs.iter().filter_map(|r| r.server.as_ref()).collect();
    Columns {
        answered: s.runs.iter().any(|r| r.load.requests > 0),
        p50_us: lat(|r| r.load.latency.p50_us),
        p99_us: lat(|r| r.load.latency.p99_us),
        p999_us: lat(|r| r.load.latency.p999_us),
        max_us: s
            .runs
            .iter()
            .map(|r| r.load.latency.max_us)
            .fold(0.0, f64::max),
        cpu_seconds: (!stats.is_empty())
            .then(|| median(stats.iter().map(|st| st.cpu_seconds).collect())),
        peak_rss_kib: stats.iter().map(|st| st.peak_rss_kib).max(),
        peak_processes: stats.iter().map(|st| st.peak_processes).max(),
        peak_threads: stats.iter().map(|st| st.peak_threads).max(),
        worker_shares: worker_shares(s),
    }
}

/// Worker CPU shares, busiest first, averaged rank by rank over the runs.
///
/// Which pid was busiest changes from run to run and does not matter; how
/// uneven the spread is does, so each run's shares are sorted before they
/// are averaged. Runs with a different worker count from the first (a
/// worker died and was replaced mid-run) are left out rather than padded.
fn worker_shares(s: &ServerResult) -> Vec<f64> {
    let per_run: Vec<Vec<f64>> = s
        .runs
        .iter()
        .filter_map(|r| r.server.as_ref())
        .filter(|st| st.workers.len() >= 2)
        .filter_map(|st| {
            let total: f64 = st.workers.iter().map(|w| w.cpu_seconds).sum();
            if total <= 0.0 {
                return None;
            }
            let mut shares: Vec<f64> = st
                .workers
                .iter()
                .map(|w| 100.0 * w.cpu_seconds / total)
                .collect();
            shares.sort_by(|a, b| b.total_cmp(a));
            Some(shares)
        })
        .collect();
    let Some(n) = per_run.first().map(Vec::len) else {
        return Vec::new();
    };
    let same: Vec<&Vec<f64>> = per_run.iter().filter(|v| v.len() == n).collect();
    (0..n)
        .map(|i| same.iter().map(|v| v[i]).sum::<f64>() / same.len() as f64)
        .collect()
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// 412345.6 -> "412,345": full digits in the table, where columns are
/// compared by eye and right alignment makes magnitudes obvious.
fn fmt_int(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits with a k/M suffix: "412k", "1.23M", "812".
fn fmt_si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        let m = v / 1e6;
        if m.abs() >= 100.0 {
            format!("{m:.0}M")
        } else if m.abs() >= 10.0 {
            format!("{m:.1}M")
        } else {
            format!("{m:.2}M")
        }
    } else if a >= 1e3 {
        let k = v / 1e3;
        if k.abs() >= 100.0 {
            format!("{k:.0}k")
        } else if k.abs() >= 10.0 {
            format!("{k:.1}k")
        } else {
            format!("{k:.2}k")
        }
    } else {
        format!("{v:.0}")
    }
}

/// An axis tick or a round figure: [`fmt_si`] without trailing zeros
/// ("20k", not "20.0k").
fn fmt_tick(v: f64) -> String {
    let s = fmt_si(v);
    let suffix: String = s.chars().filter(|c| c.is_alphabetic()).collect();
    let number = s.trim_end_matches(char::is_alphabetic);
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    };
    format!("{number}{suffix}")
}

/// A latency in microseconds as a person reads it: "87 µs", "1.23 ms",
/// "45.6 ms", "2.10 s".
fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us < 100_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A plain number without trailing zeros: 10.0 -> "10", 2.5 -> "2.5".
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn fmt_percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// "51/49%" for up to four workers; beyond that the list stops being
/// readable, so the busiest and idlest with the count: "8×: 17–9%".
fn fmt_shares(shares: &[f64]) -> String {
    match shares.len() {
        0 | 1 => "—".to_string(),
        2..=4 => {
            let parts: Vec<String> = shares.iter().map(|s| format!("{s:.0}")).collect();
            format!("{}%", parts.join("/"))
        }
        n => format!("{n}×: {:.0}–{:.0}%", shares[0], shares[shares.len() - 1]),
    }
}

/// The report's first line: what was run, how.
fn headline(report: &Report) -> String {
    let mut line = format!("{} {}", report.protocol, report.scenario);
    if !report.summary.is_empty() {
        let _ = write!(line, " ({})", report.summary);
    }
    let _ = write!(
        line,
        " · {} clients · {} s per run",
        report.clients,
        fmt_num(report.duration_seconds)
    );
    if report.repeat > 1 {
        let _ = write!(line, " · {} runs per server, interleaved", report.repeat);
    } else {
        line.push_str(" · 1 run per server");
    }
    match report.rate {
        Some(r) => {
            let _ = write!(line, " · open loop at {} req/s", fmt_int(r));
        }
        None => line.push_str(" · closed loop"),
    }
    let _ = write!(line, " · {} CPUs", report.cpus);
    line
}

/// The report's second line: how far its differences can be trusted.
fn noise_line(report: &Report) -> String {
    if report.repeat <= 1 {
        return "run-to-run noise unknown: one run per server (--repeat N measures it), so small differences may be chance"
            .to_string();
    }
    let Some(rate_noise) = noise(report, Ranking::Rate) else {
        return "run-to-run noise unknown: no server ran twice without errors".to_string();
    };
    match report.ranked_by {
        Ranking::Rate => format!(
            "run-to-run noise {} (median over servers of (max − min) / median): differences within it are ties, marked ≈",
            fmt_percent(rate_noise)
        ),
        Ranking::Efficiency => match noise(report, Ranking::Efficiency) {
            Some(n) => format!(
                "run-to-run noise {} in req/s, {} in req/CPU-s (median over servers of (max − min) / median): \
                 req/CPU-s differences within it are ties, marked ≈",
                fmt_percent(rate_noise),
                fmt_percent(n)
            ),
            None => format!(
                "run-to-run noise {} in req/s, unknown in req/CPU-s (no server ran twice with a CPU figure)",
                fmt_percent(rate_noise)
            ),
        },
    }
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// Lines under the header and around the table, none between columns: the
/// columns are numbers aligned right, which separates them well enough, and
/// it saves three characters a column for the 170-column budget.
const TABLE_STYLE: TableStyle = TableStyle::new()
    .top_border(LineStyle::none().fill('─').junction('─'))
    .header_separator(LineStyle::none().fill('─').junction('─'))
    .bottom_border(LineStyle::none().fill('─').junction('─'));

/// The error list's widest line in the table; longer lists wrap.
const ERRORS_WIDTH: u16 = 24;

/// The table the bench prints at the end: a headline, the noise, one row
/// per server (best first), the key to the columns, what the rows are
/// ranked by and the notes.
pub fn table(report: &Report) -> String {
    let baseline = best_baseline(report);
    let efficient = most_efficient_baseline(report);
    let by = report.ranked_by;
    let ties = ties(report);
    let repeated = report.repeat > 1;

    let mut header = vec!["server", "family", "req/s"];
    if repeated {
        header.push("min–max");
    }
    let ratio_header = match baseline {
        Some(b) => format!("vs\n{}", b.name),
        None => "vs\nbaseline".to_string(),
    };
    header.push(&ratio_header);
    // Requests per server CPU-second and its ratio share a column: two
    // would not fit the width.
    let efficiency_header = match efficient {
        Some((b, _)) => format!("req/CPU-s\nvs {}", b.name),
        None => "req/\nCPU-s".to_string(),
    };
    header.push(&efficiency_header);
    header.extend([
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        "CPU s",
        "RSS\nMiB",
        "procs/\nthreads",
        "worker\nCPU",
    ]);

    let mut t = Table::new();
    // Columns as wide as their content (comfy-table's dynamic arrangement
    // would spread them over the whole width and wrap the server names);
    // only the error list, the one cell of unbounded length, wraps. Two-line
    // headers keep the narrow numeric columns narrow.
    t.load_style(TABLE_STYLE)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.clone());

    for (i, s) in report.servers.iter().enumerate() {
        let c = columns(s);
        let errors = total_errors(s);
        let failed = errors.total() > 0;
        let lat = |us: f64| {
            if c.answered {
                fmt_us(us)
            } else {
                "—".to_string()
            }
        };
        let mut row = vec![s.name.clone(), family_name(s.family).to_string()];
        row.push(if failed {
            "errors".to_string()
        } else if ties[i] && by == Ranking::Rate {
            format!("≈ {}", fmt_int(s.median_rate))
        } else {
            fmt_int(s.median_rate)
        });
        if repeated {
            row.push(if failed || s.runs.len() < 2 {
                "—".to_string()
            } else {
                format!("{}–{}", fmt_si(s.rate_range.0), fmt_si(s.rate_range.1))
            });
        }
        row.push(match baseline {
            Some(b) if !failed => format!("{:.2}×", s.median_rate / b.median_rate),
            _ => "—".to_string(),
        });
        row.push(match s.median_efficiency {
            Some(e) if !failed => {
                let mut cell = String::new();
                if ties[i] && by == Ranking::Efficiency {
                    cell.push_str("≈ ");
                }
                // Padded so that the values line up above each other as
                // well as the ratios.
                let _ = write!(cell, "{:>5}", fmt_si(e));
                if let Some((_, best)) = efficient {
                    let _ = write!(cell, " {:.2}×", e / best);
                }
                cell
            }
            _ => "—".to_string(),
        });
        row.extend([
            lat(c.p50_us),
            lat(c.p99_us),
            lat(c.p999_us),
            lat(c.max_us),
            error_kinds(&errors),
            c.cpu_seconds.map_or("—".to_string(), |v| format!("{v:.1}")),
            c.peak_rss_kib
                .map_or("—".to_string(), |v| format!("{:.1}", v as f64 / 1024.0)),
            match (c.peak_processes, c.peak_threads) {
                (Some(p), Some(th)) => format!("{p}/{th}"),
                _ => "—".to_string(),
            },
            fmt_shares(&c.worker_shares),
        ]);
        t.add_row(row);
    }
    // Names and words left, numbers right.
    let last = header.len() - 1;
    for (i, h) in header.iter().enumerate() {
        let Some(col) = t.column_mut(i) else { continue };
        col.set_cell_alignment(match *h {
            "server" | "family" | "errors" => CellAlignment::Left,
            _ => CellAlignment::Right,
        });
        if *h == "errors" {
            col.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(ERRORS_WIDTH)));
        }
        // comfy-table puts a space between columns even when the style
        // draws no line there; one space of padding on the right makes two
        // between columns and none wasted at the edges.
        col.set_padding((0, if i == last { 0 } else { 1 }));
    }

    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(report));
    let _ = writeln!(out, "{}", noise_line(report));
    let _ = writeln!(out, "{t}");
    // The key to the columns, in lines that fit the 170 columns.
    let mut key = String::from("req/s: median");
    if repeated {
        key.push_str(", min–max over runs");
    }
    match baseline {
        Some(b) => {
            let _ = write!(key, " · vs {}: ratio to the fastest baseline", b.name);
        }
        None => key.push_str(" · no baseline ran, so no ratio"),
    }
    let _ = writeln!(out, "{key}");
    let mut key = String::from("req/CPU-s: requests per server CPU-second, median over runs");
    match efficient {
        Some((b, _)) => {
            let _ = write!(key, "; vs {}: ratio to the most efficient baseline", b.name);
        }
        None => key.push_str("; no baseline with a CPU figure, so no ratio"),
    }
    if report
        .servers
        .iter()
        .any(|s| !has_errors(s) && s.median_efficiency.is_none())
    {
        key.push_str(" · —: no CPU figure (not started by muse)");
    }
    let _ = writeln!(out, "{key}");
    let mut key = match by {
        Ranking::Rate => String::from("ranked by req/s"),
        Ranking::Efficiency => {
            let (saturated, runs) = saturated_runs(report);
            format!(
                "ranked by req/CPU-s, not req/s: the load generator was the limit in {saturated} of {runs} runs"
            )
        }
    };
    if ties.iter().any(|t| *t) {
        key.push_str("; ≈: a tie with the row above");
    }
    let _ = writeln!(out, "{key}");
    let _ = writeln!(
        out,
        "latency: median of each run's percentile, max over runs · CPU s: median per run · \
         RSS: peak sum over processes"
    );
    if report.servers.iter().any(|s| !worker_shares(s).is_empty()) {
        let _ = writeln!(
            out,
            "worker CPU: each worker's share of the workers' CPU, busiest first \
             (N×: busiest–idlest of N workers); even is fair, uneven is the accept imbalance"
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// Writes the report as the versioned JSON document described in this
/// module's documentation.
pub fn write_json(report: &Report, path: &Path) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    serde_json::to_writer_pretty(&mut w, report).map_err(io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

// ---------------------------------------------------------------------------
// SVG
// ---------------------------------------------------------------------------

/// One colour per family. Okabe–Ito, a palette colour-blind readers can
/// tell apart; the baselines in dark grey because they are the yardstick,
/// not contestants.
fn family_colour(f: Family) -> RGBColor {
    match f {
        Family::Serial => RGBColor(0xCC, 0x79, 0xA7),
        Family::Processes => RGBColor(0xD5, 0x5E, 0x00),
        Family::Threads => RGBColor(0xE6, 0x9F, 0x00),
        Family::Hybrid => RGBColor(0x00, 0x9E, 0x73),
        Family::Evented => RGBColor(0x00, 0x72, 0xB2),
        Family::Async => RGBColor(0x56, 0xB4, 0xE9),
        Family::Proactor => RGBColor(0xF0, 0xE4, 0x42),
        Family::Baseline => RGBColor(0x4D, 0x4D, 0x4D),
    }
}

const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const ERROR_GREY: RGBColor = RGBColor(0xBB, 0xBB, 0xBB);

/// plotters' SVG backend writes `font-size` as the requested size / 1.24
/// (a ratio it uses for its bitmap fonts); this asks for `px` pixels.
fn font(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::SansSerif, px * 1.24, FontStyle::Normal)
}

fn bold(px: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::SansSerif, px * 1.24, FontStyle::Bold)
}

/// A rough width of `text` at `px` pixels in a sans-serif face, for layout
/// only. Without the `ttf` feature plotters cannot measure text (the SVG
/// renderer lays it out), so the chart leaves room by this estimate.
fn text_width(text: &str, px: f64) -> i32 {
    (text.chars().count() as f64 * px * 0.6).ceil() as i32
}

/// Row geometry, in pixels.
const ROW: u32 = 34;
const WIDTH: u32 = 1260;
/// Title and a one-line subtitle; each further subtitle line adds
/// [`SUB_LINE`].
const TITLE_H: u32 = 62;
const SUB_LINE: u32 = 17;
/// The subtitle's size, and the width it may take before it wraps.
const SUB_PX: f64 = 12.5;
const SUB_MAX: i32 = WIDTH as i32 - 40;
/// The axes with their tick labels and descriptions.
const AXIS_H: u32 = 50;
/// Two legend lines.
const LEGEND_H: u32 = 52;
/// Where the throughput panel ends and the efficiency panel begins.
const SPLIT: i32 = 700;
/// The efficiency panel's width; the latency panel takes the rest.
const EFFICIENCY_W: i32 = 270;

/// Writes the chart: a horizontal bar per server, best on top.
pub fn write_svg(report: &Report, path: &Path) -> io::Result<()> {
    std::fs::write(path, svg(report)?)
}

/// The chart as an SVG document, `WIDTH` × (the title's height + `AXIS_H` +
/// 34 px a server + `LEGEND_H`).
///
/// Three panels share the rows: throughput bars on the left (the question
/// most readers ask first), requests per server CPU-second in the middle,
/// p99 latency marks on the right on their own log scale. Putting the p99
/// marks on the bars with a second axis made them collide with the value
/// labels and invited reading one scale against the other. plotters draws
/// axes, grid and shapes; the row names, the value labels, the legend and
/// the hatching are placed in pixels.
fn svg(report: &Report) -> io::Result<String> {
    let n = report.servers.len().max(1) as u32;
    let height = title_height(report) + 8 + ROW * n + AXIS_H + LEGEND_H;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        draw(report, &root).map_err(|e| io::Error::other(e.to_string()))?;
        root.present()
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(buf)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(report: &Report, root: &DrawingArea<SVGBackend, Shift>) -> DrawResult {
    root.fill(&WHITE)?;
    let servers = &report.servers;
    let n = servers.len().max(1);
    let ties = ties(report);
    let (_, height) = root.dim_in_pixel();
    let ok = |s: &&ServerResult| !has_errors(s);

    title(report, root)?;

    let body = root.margin(title_height(report), LEGEND_H, 12, 24);
    let (left, rest) = body.split_horizontally(SPLIT - 12);
    let (middle, right) = rest.split_horizontally(EFFICIENCY_W);
    let by = report.ranked_by;

    // Throughput panel. Headroom right of the longest bar for its label.
    let max_rate = servers
        .iter()
        .filter(ok)
        .map(|s| s.rate_range.1.max(s.median_rate))
        .fold(0.0, f64::max);
    let x_max = if max_rate > 0.0 { max_rate * 1.16 } else { 1.0 };
    let name_w = servers
        .iter()
        .map(|s| text_width(&s.name, 13.0))
        .max()
        .unwrap_or(60)
        .min(320) // a very long --spawn name must not squeeze the bars away
        + 14;
    let mut bars = ChartBuilder::on(&left)
        .margin_top(8)
        .margin_right(20)
        .x_label_area_size(AXIS_H)
        .y_label_area_size(name_w)
        .build_cartesian_2d(0f64..x_max, 0f64..n as f64)?;

    // Efficiency panel, with the same headroom for the labels.
    let max_efficiency = servers
        .iter()
        .filter(ok)
        .map(|s| range(&run_figures(s, Ranking::Efficiency)).1)
        .fold(0.0, f64::max);
    let e_max = if max_efficiency > 0.0 {
        max_efficiency * 1.3
    } else {
        1.0
    };
    let mut eff = ChartBuilder::on(&middle)
        .margin_top(8)
        .margin_left(22)
        .margin_right(14)
        .x_label_area_size(AXIS_H)
        .build_cartesian_2d(0f64..e_max, 0f64..n as f64)?;

    // Latency panel: p99 on a log scale, because the serial server's p99
    // can be a thousand times the reactor's and a linear axis would flatten
    // everyone else. Ticks on the 1-2-5 sequence.
    let p99s: Vec<f64> = servers
        .iter()
        .filter(ok)
        .map(|s| s.median_p99_us / 1e3)
        .filter(|v| *v > 0.0)
        .collect();
    let (p_lo, p_hi) = log_bounds(&p99s);
    let mut lat = ChartBuilder::on(&right)
        .margin_top(8)
        .margin_left(22)
        .x_label_area_size(AXIS_H)
        .build_cartesian_2d(
            (p_lo..p_hi)
                .log_scale()
                .with_key_points(log_ticks(p_lo, p_hi)),
            0f64..n as f64,
        )?;

    // Row i (0 = best) occupies [n-1-i, n-i] on the y axis, so the best is
    // on top. Every other row gets a faint band across both panels, so the
    // eye can follow a row from its name to its latency.
    let centre = |i: usize| (n - i) as f64 - 0.5;
    let (bars_x, _) = bars.plotting_area().get_pixel_range();
    let (lat_x, _) = lat.plotting_area().get_pixel_range();
    for i in (1..servers.len()).step_by(2) {
        let top = bars.backend_coord(&(0.0, (n - i) as f64)).1;
        let bottom = bars.backend_coord(&(0.0, (n - i - 1) as f64)).1;
        root.draw(&Rectangle::new(
            [(8, top), (lat_x.end, bottom)],
            RGBColor(0xF4, 0xF4, 0xF4).filled(),
        ))?;
    }

    let rate_desc = if report.repeat > 1 {
        format!("requests per second (median of {} runs)", report.repeat)
    } else {
        "requests per second".to_string()
    };
    let si = |v: &f64| fmt_tick(*v);
    bars.configure_mesh()
        .y_labels(0)
        .disable_y_mesh()
        .x_labels(8)
        .x_label_formatter(&si)
        .x_desc(rate_desc)
        .label_style(font(12.0).color(&INK))
        .axis_desc_style(font(13.0).color(&INK))
        .bold_line_style(RGBColor(0xD8, 0xD8, 0xD8))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED)
        .draw()?;
    eff.configure_mesh()
        .y_labels(0)
        .disable_y_mesh()
        .x_labels(4)
        .x_label_formatter(&si)
        .x_desc("requests per server CPU-second")
        .label_style(font(12.0).color(&INK))
        .axis_desc_style(font(13.0).color(&INK))
        .bold_line_style(RGBColor(0xD8, 0xD8, 0xD8))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED)
        .draw()?;
    let ms = |v: &f64| fmt_ms(*v);
    lat.configure_mesh()
        .y_labels(0)
        .disable_y_mesh()
        .x_label_formatter(&ms)
        .x_desc("p99 latency (ms, log scale)")
        .label_style(font(12.0).color(&INK))
        .axis_desc_style(font(13.0).color(&INK))
        .bold_line_style(RGBColor(0xD8, 0xD8, 0xD8))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED)
        .draw()?;

    let label_style = font(12.0)
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in servers.iter().enumerate() {
        let y = centre(i);
        let (_, py) = bars.backend_coord(&(0.0, y));
        root.draw(&Text::new(
            s.name.clone(),
            (bars_x.start - 8, py),
            font(13.0)
                .color(&INK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;

        if has_errors(s) {
            // No bar: a short hatched grey stub and the errors in words, so
            // the row cannot be read as a (slow) rate.
            let a = bars.backend_coord(&(0.0, y + 0.3));
            let b = bars.backend_coord(&(x_max * 0.08, y - 0.3));
            hatch(root, a, b)?;
            let label = format!("errors: {} — no rate", error_kinds(&total_errors(s)));
            root.draw(&Text::new(label, (b.0 + 8, py), label_style.clone()))?;
            continue;
        }

        bars.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y - 0.3), (s.median_rate, y + 0.3)],
            family_colour(s.family).filled(),
        )))?;
        let mut label_x = s.median_rate;
        if s.runs.len() > 1 {
            let (lo, hi) = s.rate_range;
            whiskers(&mut bars, lo, hi, y)?;
            label_x = label_x.max(hi);
        }
        let mut label = String::new();
        if ties[i] && by == Ranking::Rate {
            label.push_str("≈ ");
        }
        let _ = write!(label, "{}/s", fmt_si(s.median_rate));
        let (lx, _) = bars.backend_coord(&(label_x, y));
        root.draw(&Text::new(label, (lx + 6, py), label_style.clone()))?;

        // The efficiency bar, or a dash where there is no CPU figure.
        match s.median_efficiency {
            Some(e) => {
                eff.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.3), (e, y + 0.3)],
                    family_colour(s.family).mix(0.75).filled(),
                )))?;
                let mut label_x = e;
                let per_run = run_figures(s, Ranking::Efficiency);
                if per_run.len() > 1 {
                    let (lo, hi) = range(&per_run);
                    whiskers(&mut eff, lo, hi, y)?;
                    label_x = label_x.max(hi);
                }
                let mut label = String::new();
                if ties[i] && by == Ranking::Efficiency {
                    label.push_str("≈ ");
                }
                label.push_str(&fmt_si(e));
                let (lx, _) = eff.backend_coord(&(label_x, y));
                root.draw(&Text::new(label, (lx + 6, py), label_style.clone()))?;
            }
            None => {
                let (lx, _) = eff.backend_coord(&(0.0, y));
                root.draw(&Text::new(
                    "— no CPU figure",
                    (lx + 6, py),
                    font(12.0)
                        .color(&MUTED)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
        }

        // The p99 mark and its value: right of the mark, or left of it when
        // it sits near the panel's right edge.
        if s.median_p99_us > 0.0 {
            let p = (s.median_p99_us / 1e3).clamp(p_lo, p_hi);
            let (mx, _) = lat.backend_coord(&(p, y));
            p99_mark(root, (mx, py))?;
            let text = fmt_us(s.median_p99_us);
            let room = lat_x.end - mx;
            let (x, h) = if room > text_width(&text, 12.0) + 14 {
                (mx + 10, HPos::Left)
            } else {
                (mx - 10, HPos::Right)
            };
            root.draw(&Text::new(
                text,
                (x, py),
                font(12.0).color(&INK).pos(Pos::new(h, VPos::Center)),
            ))?;
        }
    }

    legend(report, root, 20, height as i32 - LEGEND_H as i32 + 14)?;
    Ok(())
}

/// A min–max whisker at row centre `y` of a linear panel.
fn whiskers(
    chart: &mut ChartContext<'_, SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    lo: f64,
    hi: f64,
    y: f64,
) -> DrawResult {
    let whisker = ShapeStyle::from(&INK).stroke_width(1);
    let mut lines = vec![vec![(lo, y), (hi, y)]];
    for x in [lo, hi] {
        lines.push(vec![(x, y - 0.17), (x, y + 0.17)]);
    }
    chart.draw_series(lines.into_iter().map(|l| PathElement::new(l, whisker)))?;
    Ok(())
}

/// The title (what was run) and the subtitle (how, and how far to trust it).
fn title(report: &Report, root: &DrawingArea<SVGBackend, Shift>) -> DrawResult {
    let title = format!(
        "muse bench: {} {} — {} clients, {} s per run",
        report.protocol,
        report.scenario,
        report.clients,
        fmt_num(report.duration_seconds)
    );
    root.draw(&Text::new(title, (20, 14), bold(18.0).color(&INK)))?;
    for (i, line) in subtitle(report).into_iter().enumerate() {
        let y = 40 + (i as u32 * SUB_LINE) as i32;
        root.draw(&Text::new(line, (20, y), font(SUB_PX).color(&MUTED)))?;
    }
    Ok(())
}

/// The subtitle's parts joined by " · ", wrapped between parts into lines
/// that fit the chart's width.
fn subtitle(report: &Report) -> Vec<String> {
    let mut parts = Vec::new();
    if !report.summary.is_empty() {
        parts.push(report.summary.clone());
    }
    parts.push(match report.rate {
        Some(r) => format!("open loop at {} req/s", fmt_tick(r)),
        None => "closed loop".to_string(),
    });
    if report.repeat > 1 {
        parts.push(format!("median of {} interleaved runs", report.repeat));
        parts.push(if noise_known(report) {
            format!(
                "noise {} (≈: a tie with the bar above)",
                fmt_percent(report.noise)
            )
        } else {
            "run-to-run noise unknown".to_string()
        });
    } else {
        parts.push("one run per server: run-to-run noise unknown".to_string());
    }
    if report.ranked_by == Ranking::Efficiency {
        let (saturated, runs) = saturated_runs(report);
        parts.push(format!(
            "ranked by requests per server CPU-second: the load generator was the limit in {saturated} of {runs} runs"
        ));
    }
    parts.push(format!("{} CPUs", report.cpus));
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line} · {part}"), SUB_PX) <= SUB_MAX => {
                let _ = write!(line, " · {part}");
            }
            _ => lines.push(part),
        }
    }
    lines
}

/// The height of the title and its subtitle.
fn title_height(report: &Report) -> u32 {
    let extra = subtitle(report).len().saturating_sub(1) as u32;
    TITLE_H + SUB_LINE * extra
}

/// Decades around the values: [10^floor(log min), 10^ceil(log max)].
fn log_bounds(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.1, 10.0);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo * 1.0001 {
        hi = lo * 10.0;
    }
    (lo, hi)
}

/// Ticks for a log axis: 1-2-5 in each decade when there are at most three
/// decades, powers of ten beyond (the labels would crowd).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10().round() as i32;
    let steps: &[f64] = if decades <= 3 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut out = Vec::new();
    let mut d = lo;
    while d <= hi * 1.0001 {
        for m in steps {
            let v = d * m;
            if v <= hi * 1.0001 {
                out.push(v);
            }
        }
        d *= 10.0;
    }
    out
}

/// Milliseconds for the log axis: "0.1", "2", "50"; from a second on,
/// seconds with their unit ("1 s", "10 s"), shorter than "10,000" at the
/// crowded end of a wide scale.
fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 {
        return format!("{} s", fmt_num(v / 1000.0));
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The p99 mark: a dark diamond with a white rim, visible on any band.
/// The p99 mark at a pixel: a dark diamond with a white rim, visible on
/// any band.
fn p99_mark(root: &DrawingArea<SVGBackend, Shift>, at: (i32, i32)) -> DrawResult {
    let shape = |r: i32| {
        diamond(r)
            .into_iter()
            .map(|(x, y)| (at.0 + x, at.1 + y))
            .collect::<Vec<_>>()
    };
    root.draw(&Polygon::new(shape(7), WHITE.filled()))?;
    root.draw(&Polygon::new(shape(5), INK.filled()))?;
    Ok(())
}

fn diamond(r: i32) -> Vec<(i32, i32)> {
    vec![(0, -r), (r, 0), (0, r), (-r, 0)]
}

/// A grey rectangle with diagonal hatching between two pixel corners.
fn hatch(root: &DrawingArea<SVGBackend, Shift>, a: (i32, i32), b: (i32, i32)) -> DrawResult {
    let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
    let (y0, y1) = (a.1.min(b.1), a.1.max(b.1));
    root.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        RGBColor(0xEE, 0xEE, 0xEE).filled(),
    ))?;
    // Lines x + y = c, clipped to the rectangle.
    let line = ShapeStyle::from(&ERROR_GREY).stroke_width(2);
    let mut c = x0 + y0 + 4;
    while c < x1 + y1 {
        let xa = x0.max(c - y1);
        let xb = x1.min(c - y0);
        if xa < xb {
            root.draw(&PathElement::new(vec![(xa, c - xa), (xb, c - xb)], line))?;
        }
        c += 7;
    }
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], ERROR_GREY))?;
    Ok(())
}

/// Two lines at the bottom: a swatch per family present; then the marks
/// (p99, whiskers, errors) that appear in this chart.
fn legend(report: &Report, root: &DrawingArea<SVGBackend, Shift>, x0: i32, y: i32) -> DrawResult {
    let mut families: Vec<Family> = report
        .servers
        .iter()
        .filter(|s| !has_errors(s))
        .map(|s| s.family)
        .collect();
    families.sort();
    families.dedup();

    let style = font(12.5)
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let text = |x: &mut i32, y: i32, s: &str| -> DrawResult {
        root.draw(&Text::new(s.to_string(), (*x, y), style.clone()))?;
        *x += text_width(s, 12.5) + 22;
        Ok(())
    };

    let mut x = x0;
    for f in families {
        root.draw(&Rectangle::new(
            [(x, y - 6), (x + 14, y + 6)],
            family_colour(f).filled(),
        ))?;
        x += 20;
        text(&mut x, y, family_name(f))?;
    }

    let (mut x, y) = (x0, y + 22);
    p99_mark(root, (x + 7, y))?;
    x += 20;
    text(&mut x, y, "p99 latency (right panel)")?;
    if report.repeat > 1 {
        let whisker = ShapeStyle::from(&INK).stroke_width(1);
        root.draw(&PathElement::new(vec![(x, y), (x + 18, y)], whisker))?;
        root.draw(&PathElement::new(vec![(x, y - 5), (x, y + 5)], whisker))?;
        root.draw(&PathElement::new(
            vec![(x + 18, y - 5), (x + 18, y + 5)],
            whisker,
        ))?;
        x += 24;
        text(&mut x, y, "min–max over runs")?;
    }
    if report.servers.iter().any(has_errors) {
        hatch(root, (x, y - 6), (x + 18, y + 6))?;
        x += 24;
        text(&mut x, y, "errors: answers wrong or missing, no rate shown")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::archs::Arch;
    use crate::bench::model::{Latency, LoadResult, ProcessShare, ServerStats, SCHEMA_VERSION};

    fn run(repeat: usize, rate: f64, p99_us: f64, errors: Errors, workers: &[f64]) -> Run {
        let seconds = 10.0;
        Run {
            repeat,
            load: LoadResult {
                requests: (rate * seconds) as u64,
                bytes: (rate * seconds) as u64 * 64,
                seconds,
                latency: Latency {
                    p50_us: p99_us / 4.0,
                    p99_us,
                    p999_us: p99_us * 2.5,
                    max_us: p99_us * 10.0,
                },
                errors,
                client_cpu_seconds: 12.0,
                client_threads: 4,
                idle_held: 0,
                histogram: None,
            },
            server: Some(ServerStats {
                cpu_seconds: 9.5,
                peak_rss_kib: 8 * 1024 + workers.len() as u64 * 3 * 1024,
                peak_processes: 1 + workers.len(),
                peak_threads: 1 + workers.len(),
                workers: workers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ProcessShare {
                        pid: 1000 + i as i32,
                        cpu_seconds: *c,
                    })
                    .collect(),
            }),
        }
    }

    /// A server with `repeat` runs spread ±`spread` around `rate`.
    fn server(name: &str, family: Family, rate: f64, spread: f64, repeat: usize) -> ServerResult {
        let runs = (0..repeat)
            .map(|k| {
                let f = if repeat > 1 {
                    1.0 - spread + 2.0 * spread * k as f64 / (repeat - 1) as f64
                } else {
                    1.0
                };
                run(k, rate * f, 200.0, Errors::default(), &[])
            })
            .collect();
        server_result(name.to_string(), family, runs)
    }

    fn report(servers: Vec<ServerResult>, repeat: usize) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            protocol: "echo".into(),
            scenario: "rr".into(),
            summary: "64-byte request/response".into(),
            clients: 64,
            duration_seconds: 10.0,
            rate: None,
            repeat,
            cpus: 8,
            noise: 0.0,
            ranked_by: Ranking::Rate,
            servers,
            notes: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Every architecture and two baselines, as a bench might see them:
    /// serial stalls clients, prefork spreads unevenly, one baseline ties.
    fn full_report() -> Report {
        let rates = [
            21_000.0, 61_000.0, 148_000.0, 139_000.0, 152_000.0, 171_000.0, 118_000.0, 322_000.0,
            335_000.0, 205_000.0, 286_000.0, 121_000.0, 199_000.0, 178_000.0,
        ];
        let p99s = [
            95_000.0, 2_900.0, 1_150.0, 640.0, 610.0, 540.0, 760.0, 290.0, 270.0, 480.0, 330.0,
            700.0, 420.0, 450.0,
        ];
        let mut servers = Vec::new();
        for (k, arch) in Arch::ALL.iter().enumerate() {
            let workers: &[f64] = match arch {
                Arch::Prefork => &[3.1, 2.4, 1.6, 0.9],
                Arch::PreforkThreads => &[2.6, 2.4],
                Arch::PreforkReactor => &[1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.7],
                _ => &[],
            };
            let runs = (0..3)
                .map(|r| {
                    let f = [0.98, 1.0, 1.03][r];
                    let errors = if *arch == Arch::Serial {
                        Errors {
                            stalled: 41 + r as u64,
                            ..Errors::default()
                        }
                    } else {
                        Errors::default()
                    };
                    run(r, rates[k] * f, p99s[k] * f, errors, workers)
                })
                .collect();
            servers.push(server_result(
                format!("muse/{}", arch.name()),
                crate::bench::target::family(*arch),
                runs,
            ));
        }
        let mut c = server("c-epoll", Family::Baseline, 330_000.0, 0.02, 3);
        c.runs
            .iter_mut()
            .for_each(|r| r.load.latency.p99_us = 260.0);
        c.median_p99_us = 260.0;
        servers.push(c);
        servers.push(server("tokio", Family::Baseline, 301_000.0, 0.03, 3));
        let mut rep = report(servers, 3);
        rank(&mut rep);
        rep
    }

    /// `s` with run k's server CPU seconds set to `cpu[k]` (None: no
    /// server figures, as for `--against`), summarised again.
    fn with_cpu(s: ServerResult, cpu: &[Option<f64>]) -> ServerResult {
        let mut runs = s.runs;
        for (r, c) in runs.iter_mut().zip(cpu) {
            match c {
                Some(c) => r.server.as_mut().unwrap().cpu_seconds = *c,
                None => r.server = None,
            }
        }
        server_result(s.name, s.family, runs)
    }

    /// `s` with the load generator saturated in its first `n` runs.
    fn saturated(mut s: ServerResult, n: usize) -> ServerResult {
        for r in s.runs.iter_mut().take(n) {
            r.load.client_cpu_seconds = 39.5; // 4 threads × 10 s
        }
        s
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_int(412_345.4), "412,345");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_si(61_000.0), "61.0k");
        assert_eq!(fmt_si(1_234_000.0), "1.23M");
        assert_eq!(fmt_tick(20_000.0), "20k");
        assert_eq!(fmt_tick(1_500_000.0), "1.5M");
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_us(87.2), "87 µs");
        assert_eq!(fmt_us(1_234.0), "1.23 ms");
        assert_eq!(fmt_us(2_100_000.0), "2.10 s");
        assert_eq!(fmt_ms(0.1), "0.1");
        assert_eq!(fmt_ms(10_000.0), "10 s");
        assert_eq!(log_ticks(0.1, 10.0), [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]);
        assert_eq!(fmt_shares(&[51.0, 49.0]), "51/49%");
    }

    #[test]
    fn server_result_takes_medians_and_range() {
        let runs = vec![
            run(0, 100.0, 300.0, Errors::default(), &[]),
            run(1, 120.0, 100.0, Errors::default(), &[]),
            run(2, 90.0, 200.0, Errors::default(), &[]),
        ];
        let s = server_result("x".into(), Family::Async, runs);
        assert!((s.median_rate - 100.0).abs() < 1e-9);
        assert!((s.rate_range.0 - 90.0).abs() < 1e-9);
        assert!((s.rate_range.1 - 120.0).abs() < 1e-9);
        assert!((s.median_p99_us - 200.0).abs() < 1e-9);
    }

    #[test]
    fn efficiency_is_the_median_of_each_runs_requests_per_cpu_second() {
        // Runs of 100, 120 and 90 req/s over 10 s: 1,000, 1,200 and 900
        // requests, over 2, 4 and 1.5 CPU seconds: 500, 300 and 600 per
        // CPU-second. The median of those is 500, not 1,000 / 2 (the
        // median run's) nor the median requests over the median CPU
        // (1,000 / 2 = 500 by chance: hence the third case below).
        let runs = vec![
            run(0, 100.0, 200.0, Errors::default(), &[]),
            run(1, 120.0, 200.0, Errors::default(), &[]),
            run(2, 90.0, 200.0, Errors::default(), &[]),
        ];
        let s = with_cpu(
            server_result("x".into(), Family::Async, runs),
            &[Some(2.0), Some(4.0), Some(1.5)],
        );
        assert_eq!(s.median_efficiency, Some(500.0));
        // Per run: 1,000/1 = 1,000, 1,200/6 = 200, 900/3 = 300. Median of
        // the runs: 300; median requests / median CPU would be 333.
        let s = with_cpu(s, &[Some(1.0), Some(6.0), Some(3.0)]);
        assert_eq!(s.median_efficiency, Some(300.0));
        // Runs without a CPU figure (or a zero one) are left out; none at
        // all is None, not 0.
        let s = with_cpu(s, &[Some(4.0), None, Some(0.0)]);
        assert_eq!(s.median_efficiency, Some(250.0));
        let s = with_cpu(s, &[None, None, None]);
        assert_eq!(s.median_efficiency, None);
    }

    #[test]
    fn table_shows_efficiency_with_its_ratio_to_the_most_efficient_baseline() {
        // 10 s runs at 100k, 80k and 60k req/s: 1M, 800k and 600k requests.
        let mut rep = report(
            vec![
                with_cpu(
                    server("muse/reactor", Family::Evented, 100_000.0, 0.0, 1),
                    &[Some(5.0)],
                ), // 200k/CPU-s
                with_cpu(
                    server("c-epoll", Family::Baseline, 80_000.0, 0.0, 1),
                    &[Some(10.0)],
                ), // 80k/CPU-s
                with_cpu(
                    server("tokio", Family::Baseline, 60_000.0, 0.0, 1),
                    &[Some(4.0)],
                ), // 150k/CPU-s: the most efficient baseline
            ],
            1,
        );
        rank(&mut rep);
        assert_eq!(rep.ranked_by, Ranking::Rate);
        let t = table(&rep);
        let header = t.lines().find(|l| l.contains("req/CPU-s")).unwrap();
        assert!(header.contains("req/CPU-s"), "{t}");
        assert!(t.contains("vs tokio"), "{t}");
        let row = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_string();
        // 200k / 150k; req/s against the fastest baseline, c-epoll: 1.25×.
        assert!(row("muse/reactor").contains(" 200k 1.33×"), "{t}");
        assert!(row("muse/reactor").contains("1.25×"), "{t}");
        assert!(row("c-epoll").contains("80.0k 0.53×"), "{t}");
        assert!(row("tokio").contains(" 150k 1.00×"), "{t}");
        assert!(
            t.contains("vs tokio: ratio to the most efficient baseline"),
            "{t}"
        );
        assert!(t.contains("\nranked by req/s\n"), "{t}");
        assert!(
            t.lines().all(|l| l.chars().count() <= 170),
            "too wide:\n{t}"
        );
    }

    #[test]
    fn a_saturated_load_generator_switches_the_ranking_to_efficiency() {
        // Three runs each; the load generator the limit in 5 of 9 runs.
        let servers = || {
            vec![
                // The most requests, at the highest cost: 3M / 30 = 100k.
                saturated(
                    with_cpu(
                        server("muse/multi-reactor", Family::Evented, 300_000.0, 0.0, 3),
                        &[Some(30.0); 3],
                    ),
                    2,
                ),
                // 2.9M / 10 = 290k.
                saturated(
                    with_cpu(
                        server("muse/reactor", Family::Evented, 290_000.0, 0.0, 3),
                        &[Some(10.0); 3],
                    ),
                    2,
                ),
                // No CPU figure: last by efficiency, first-but-one by rate.
                saturated(
                    with_cpu(
                        server("redis", Family::Baseline, 295_000.0, 0.0, 3),
                        &[None; 3],
                    ),
                    1,
                ),
            ]
        };
        let mut rep = report(servers(), 3);
        rank(&mut rep);
        assert_eq!(rep.ranked_by, Ranking::Efficiency);
        let names: Vec<&str> = rep.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["muse/reactor", "muse/multi-reactor", "redis"]);
        assert!(rep.notes.iter().any(|n| n.starts_with(
            "ranked by requests per server CPU-second (req/CPU-s), not req/s: \
             the load generator was the limit in 5 of 9 runs"
        )));
        let t = table(&rep);
        assert!(
            t.contains(
                "ranked by req/CPU-s, not req/s: the load generator was the limit in 5 of 9 runs"
            ),
            "{t}"
        );
        let redis = t.lines().find(|l| l.starts_with("redis")).unwrap();
        assert!(redis.contains("295,000"), "{redis}");
        assert!(redis.contains('—'), "{redis}");
        let cells: Vec<&str> = redis.split_whitespace().collect();
        let after_ratio = cells.iter().position(|c| *c == "1.00×").unwrap() + 1;
        assert_eq!(cells[after_ratio], "—", "no efficiency figure: {redis}");
        assert!(t.contains("—: no CPU figure"), "{t}");
        // No baseline has a CPU figure: no efficiency ratio.
        assert!(
            t.contains("no baseline with a CPU figure, so no ratio"),
            "{t}"
        );
        let reactor = t.lines().find(|l| l.starts_with("muse/reactor")).unwrap();
        let cells: Vec<&str> = reactor.split_whitespace().collect();
        let after_ratio = cells.iter().position(|c| *c == "0.98×").unwrap() + 1;
        // The efficiency, and no ratio after it: the p50 comes next.
        assert_eq!(cells[after_ratio..after_ratio + 3], ["290k", "50", "µs"]);
        // Ranking again changes nothing.
        let notes = rep.notes.len();
        rank(&mut rep);
        assert_eq!(rep.notes.len(), notes);

        // Saturated in 4 of 9 runs, a minority: ranked by req/s.
        let mut servers = servers();
        servers[0] = saturated(
            with_cpu(
                server("muse/multi-reactor", Family::Evented, 300_000.0, 0.0, 3),
                &[Some(30.0); 3],
            ),
            1,
        );
        let mut rep = report(servers, 3);
        rank(&mut rep);
        assert_eq!(rep.ranked_by, Ranking::Rate);
        let names: Vec<&str> = rep.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["muse/multi-reactor", "redis", "muse/reactor"]);
        assert!(!rep.notes.iter().any(|n| n.starts_with("ranked by")));
        assert!(table(&rep).contains("\nranked by req/s\n"));
    }

    #[test]
    fn ties_follow_the_ranked_figure() {
        // Ranked by efficiency, each server's efficiency spread 4%: a and b
        // (3% apart) tie in req/CPU-s, though their req/s differ by half.
        let mk = |name: &str, rate: f64, cpu: f64| {
            let s = server(name, Family::Evented, rate, 0.0, 3);
            let cpu: Vec<Option<f64>> = [1.02, 1.0, 0.98].iter().map(|f| Some(cpu * f)).collect();
            saturated(with_cpu(s, &cpu), 3)
        };
        let mut rep = report(
            vec![
                mk("a", 100_000.0, 10.0),
                mk("b", 50_000.0, 5.15),
                mk("c", 90_000.0, 12.0),
            ],
            3,
        );
        rank(&mut rep);
        assert_eq!(rep.ranked_by, Ranking::Efficiency);
        let names: Vec<&str> = rep.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(ties(&rep), [false, true, false]);
        let t = table(&rep);
        assert!(t.contains("≈ 97.1k"), "{t}");
        assert!(!t.contains("≈ 50,000"), "{t}");
        assert!(
            t.contains("req/CPU-s differences within it are ties"),
            "{t}"
        );
    }

    #[test]
    fn rank_puts_best_first_and_errors_last() {
        let mut bad = server("muse/serial", Family::Serial, 900_000.0, 0.0, 1);
        bad.runs[0].load.errors.mismatch = 12;
        let mut bad2 = server("muse/broken", Family::Threads, 5.0, 0.0, 1);
        bad2.runs[0].load.errors.stalled = 1;
        let mut rep = report(
            vec![
                bad,
                server("slow", Family::Threads, 10_000.0, 0.0, 1),
                bad2,
                server("fast", Family::Evented, 50_000.0, 0.0, 1),
                server("c-epoll", Family::Baseline, 40_000.0, 0.0, 1),
            ],
            1,
        );
        rank(&mut rep);
        let names: Vec<&str> = rep.servers.iter().map(|s| s.name.as_str()).collect();
        // The erroring ones last, in the order they came, whatever their rate.
        assert_eq!(
            names,
            ["fast", "c-epoll", "slow", "muse/serial", "muse/broken"]
        );
        assert_eq!(rep.noise, 0.0);
        assert!(rep
            .notes
            .iter()
            .any(|n| n == "muse/serial: 12 errors (12 mismatch): reported without a rate"));
        // Ranking twice adds nothing.
        let notes = rep.notes.len();
        rank(&mut rep);
        assert_eq!(rep.notes.len(), notes);
    }

    #[test]
    fn rank_notes_a_saturated_load_generator() {
        let mut s = server("muse/reactor", Family::Evented, 10_000.0, 0.0, 1);
        s.runs[0].load.client_cpu_seconds = 39.5; // 4 threads × 10 s
        let mut rep = report(vec![s], 1);
        rank(&mut rep);
        assert!(rep
            .notes
            .iter()
            .any(|n| n
                == "the load generator was the limit for muse/reactor: its numbers are a floor"));
    }

    #[test]
    fn ties_within_noise_and_not_outside() {
        // Each server's spread is 4% ((max − min) / median), so noise = 4%.
        let mut rep = report(
            vec![
                server("a", Family::Evented, 100_000.0, 0.02, 3),
                server("b", Family::Evented, 97_000.0, 0.02, 3), // 3% below a: tie
                server("c", Family::Evented, 80_000.0, 0.02, 3), // 17.5% below b: not
                server("c-epoll", Family::Baseline, 79_000.0, 0.02, 3), // 1.25%: tie
            ],
            3,
        );
        rank(&mut rep);
        assert!((rep.noise - 0.04).abs() < 1e-9, "noise {}", rep.noise);
        assert_eq!(ties(&rep), [false, true, false, true]);
        let t = table(&rep);
        assert!(t.contains("≈ 97,000"), "{t}");
        assert!(t.contains("≈ 79,000"), "{t}");
        assert!(!t.contains("≈ 80,000"), "{t}");
        assert!(t.contains("run-to-run noise 4.0%"), "{t}");
    }

    #[test]
    fn one_run_means_unknown_noise_and_no_ties() {
        let mut rep = report(
            vec![
                server("a", Family::Evented, 100_000.0, 0.0, 1),
                server("b", Family::Evented, 100_000.0, 0.0, 1),
            ],
            1,
        );
        rank(&mut rep);
        assert_eq!(ties(&rep), [false, false]);
        let t = table(&rep);
        assert!(t.contains("noise unknown: one run per server"), "{t}");
        assert!(!t.contains('≈'), "{t}");
    }

    #[test]
    fn table_has_every_server_ratio_and_errors() {
        let rep = full_report();
        let t = table(&rep);
        for s in &rep.servers {
            assert!(t.contains(&s.name), "{} missing:\n{t}", s.name);
        }
        assert!(t.contains("c-epoll"), "{t}");
        assert!(t.contains("1.00×"), "{t}");
        // multi-reactor over c-epoll: 335k / 330k.
        assert!(t.contains("1.02×"), "{t}");
        let serial = t.lines().find(|l| l.contains("muse/serial")).unwrap();
        assert!(serial.contains("errors"), "{serial}");
        assert!(serial.contains("stalled"), "{serial}");
        assert!(!serial.contains('×'), "{serial}");
        let prefork = t.lines().find(|l| l.contains("muse/prefork ")).unwrap();
        assert!(prefork.contains("39/30/20/11%"), "{prefork}");
        let pr = t
            .lines()
            .find(|l| l.contains("muse/prefork-reactor"))
            .unwrap();
        assert!(pr.contains("8×: 16–8%"), "{pr}");
        assert!(
            t.lines().all(|l| l.chars().count() <= 170),
            "too wide:\n{t}"
        );
        println!("{t}");
    }

    #[test]
    fn table_without_baseline_has_no_ratio() {
        let mut rep = report(vec![server("a", Family::Evented, 1_000.0, 0.0, 1)], 1);
        rank(&mut rep);
        let t = table(&rep);
        assert!(t.contains("no baseline ran"), "{t}");
        assert!(!t.contains('×'), "{t}");
    }

    #[test]
    fn json_is_valid_and_versioned() {
        let rep = full_report();
        let path = std::env::temp_dir().join(format!("muse-report-{}.json", std::process::id()));
        write_json(&rep, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema_version"], 1);
        let names: Vec<&str> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), rep.servers.len());
        for s in &rep.servers {
            assert!(names.contains(&s.name.as_str()));
        }
        assert_eq!(v["servers"][0]["family"], "evented");
        assert_eq!(v["ranked_by"], "rate");
        // multi-reactor: 3.35M requests per run over 9.5 CPU seconds.
        assert_eq!(v["servers"][0]["name"], "muse/multi-reactor");
        let e = v["servers"][0]["median_efficiency"].as_f64().unwrap();
        assert!((e - 335_000.0 * 10.0 / 9.5).abs() < 1.0, "{e}");
        // A server without a CPU figure: null, not 0 nor missing.
        let mut rep = report(
            vec![with_cpu(
                server("redis", Family::Baseline, 1_000.0, 0.0, 1),
                &[None],
            )],
            1,
        );
        rank(&mut rep);
        let v = serde_json::to_value(&rep).unwrap();
        assert!(v["servers"][0]
            .as_object()
            .unwrap()
            .contains_key("median_efficiency"));
        assert!(v["servers"][0]["median_efficiency"].is_null());
        assert!(v["servers"][0]["rate_range"].as_array().unwrap().len() == 2);
        assert!(v["servers"][0]["runs"][0]["load"]["latency"]["p99_us"].is_number());
    }

    #[test]
    fn svg_is_well_formed() {
        let rep = full_report();
        let svg = svg(&rep).unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for s in &rep.servers {
            assert!(svg.contains(&s.name), "{} missing", s.name);
        }
        assert!(svg.contains("requests per second"));
        assert!(svg.contains("requests per server CPU-second"));
        // multi-reactor's efficiency label: 3.35M requests / 9.5 CPU s.
        assert!(svg.contains("\n353k\n</text>"), "efficiency label");
        assert!(!svg.contains("ranked by"));
        assert!(svg.contains("p99 latency (ms"));
        assert!(svg.contains("errors: "));
        // A minimal well-formedness check: tags balance.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn svg_says_when_it_is_ranked_by_efficiency() {
        let mut rep = report(
            vec![
                saturated(
                    server("muse/reactor", Family::Evented, 100_000.0, 0.0, 1),
                    1,
                ),
                saturated(
                    with_cpu(server("redis", Family::Baseline, 90_000.0, 0.0, 1), &[None]),
                    1,
                ),
            ],
            1,
        );
        rank(&mut rep);
        assert_eq!(rep.ranked_by, Ranking::Efficiency);
        let svg = svg(&rep).unwrap();
        assert!(svg.contains(
            "ranked by requests per server CPU-second: the load generator was the limit in 2 of 2 runs"
        ));
        // 1M requests / 9.5 CPU s; redis has no CPU figure.
        assert!(svg.contains("\n105k\n</text>"), "efficiency label");
        assert!(svg.contains("— no CPU figure"));
    }

    #[test]
    fn svg_copes_with_an_empty_or_failed_bench() {
        let mut bad = server("muse/serial", Family::Serial, 10.0, 0.0, 1);
        bad.runs[0].load.errors.closed = 3;
        bad.runs[0].load.requests = 0;
        for servers in [vec![], vec![bad]] {
            let mut rep = report(servers, 1);
            rank(&mut rep);
            let svg = svg(&rep).unwrap();
            assert!(svg.trim_start().starts_with("<svg"));
            let _ = table(&rep);
        }
    }

    #[test]
    fn a_long_subtitle_wraps_and_the_chart_grows_for_it() {
        let mut rep = full_report();
        rep.summary = "short".into();
        assert_eq!(subtitle(&rep).len(), 1);
        assert_eq!(title_height(&rep), TITLE_H);
        let one = svg(&rep).unwrap();
        rep.summary =
            "16 clients, each a whole session at a time: login, EPSV, RETR 64 KiB, quit".into();
        rep.noise = 0.19;
        let lines = subtitle(&rep);
        assert!(lines.len() >= 2, "{lines:?}");
        for line in &lines {
            assert!(text_width(line, SUB_PX) <= SUB_MAX, "{line}");
        }
        // Nothing is lost in the wrapping.
        let joined = lines.join(" · ");
        assert!(joined.starts_with("16 clients"), "{joined}");
        assert!(
            joined.contains("noise 19%") && joined.ends_with("CPUs"),
            "{joined}"
        );
        assert_eq!(
            title_height(&rep),
            TITLE_H + SUB_LINE * (lines.len() as u32 - 1)
        );
        let two = svg(&rep).unwrap();
        let height = |svg: &str| -> u32 {
            let at = svg.find("height=\"").unwrap() + 8;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert_eq!(height(&two), height(&one) + title_height(&rep) - TITLE_H);
    }

    /// Writes sample charts for a person to look at:
    /// `cargo test --lib bench::report -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sample_svg_for_eyes() {
        let dir = std::env::temp_dir();
        let path = dir.join("muse-report-sample.svg");
        write_svg(&full_report(), &path).unwrap();
        println!("{}", path.display());

        // One run each, open loop, no baseline, latencies over five decades.
        let mut servers = vec![
            server("muse/reactor", Family::Evented, 50_000.0, 0.0, 1),
            server(
                "muse/thread-per-connection",
                Family::Threads,
                49_000.0,
                0.0,
                1,
            ),
            server(
                "muse/process-per-connection",
                Family::Processes,
                12_000.0,
                0.0,
                1,
            ),
        ];
        servers[0].median_p99_us = 35.0;
        servers[2].median_p99_us = 4_200_000.0;
        let mut broken = server("muse/serial", Family::Serial, 800.0, 0.0, 1);
        broken.runs[0].load.errors = Errors {
            connect: 12,
            mismatch: 3,
            closed: 40,
            io: 1,
            stalled: 7,
            tls: 0,
        };
        servers.push(broken);
        let mut rep = report(servers, 1);
        rep.rate = Some(50_000.0);
        rank(&mut rep);
        let path = dir.join("muse-report-single.svg");
        write_svg(&rep, &path).unwrap();
        println!("{}", path.display());
        println!("{}", table(&rep));
    }
}
