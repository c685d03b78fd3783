//! `--report-html`: the report as one self-contained page (inline CSS, no script, nothing
//! fetched) for a data-quality analyst: the outcome, what the file's columns say about
//! themselves, every issue code with sample rows, and the mapping. Every value from the file
//! is escaped by `maud`.

use crate::model::{IssueCode, Severity};
use crate::report::{CodeCount, ValidateReport};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The colours of the outcome bar (also what the browser test looks for in its screenshot).
pub const CLEAN_COLOUR: &str = "#2e7d32";
/// Clean rows with warnings.
pub const WARNED_COLOUR: &str = "#f9a825";
/// Rejected rows.
pub const REJECTED_COLOUR: &str = "#c62828";

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2433; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #d8dce3; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.meta { color: #5b6475; margin: 0 0 18px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 16px 0; }
.card { background: #fff; border: 1px solid #d8dce3; border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card b { display: block; font-size: 24px; }
.bar { display: flex; height: 22px; border-radius: 6px; overflow: hidden; background: #e3e6eb; }
.bar div { height: 100%; }
.legend span { margin-right: 18px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d8dce3; font-size: 14px; }
th, td { text-align: left; padding: 6px 9px; border-bottom: 1px solid #e6e9ee; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .value { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.value { white-space: pre-wrap; word-break: break-all; background: #f3f4f7; padding: 1px 4px; border-radius: 3px; }
.error { color: #b71c1c; font-weight: 600; }
.warning { color: #8d6e00; font-weight: 600; }
.fill { display: inline-block; width: 70px; height: 8px; background: #e3e6eb; border-radius: 4px; margin-right: 6px; vertical-align: 1px; }
.fill i { display: block; height: 100%; background: #3f6fb5; border-radius: 4px; }
.advice { background: #fff8e1; border: 1px solid #f0d98a; border-radius: 8px; padding: 10px 14px; margin: 10px 0; }
.muted { color: #5b6475; }
ul.plain { margin: 0; padding-left: 18px; }
"#;

/// The whole page.
pub fn render(report: &ValidateReport) -> String {
    let t = &report.tally;
    let title = format!("deskport validate: {}", report.source.input);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { "Validation of " code { (report.source.input) } }
                    p.meta { (source_line(report)) }
                    (outcome(report))
                    (advice(report))
                    h2 { "Issues" }
                    @if t.issues_by_code.is_empty() {
                        p { "No issues: every row is clean." }
                    } @else {
                        (issue_table(report))
                    }
                    h2 { "Columns" }
                    (profile_table(report))
                    @if !t.issues_by_code.is_empty() {
                        h2 { "Sample rows per issue" }
                        @for (code, count) in sorted_codes(report) {
                            (samples(*code, count))
                        }
                    }
                    h2 { "Mapping" }
                    (mapping_table(report))
                    p.muted {
                        "Written by deskport " (report.deskport_version) " in "
                        (format!("{:.2}", report.elapsed_seconds)) " s ("
                        (format!("{:.0}", report.rows_per_second)) " rows/s)."
                    }
                }
            }
        }
    };
    page.into_string()
}

fn source_line(report: &ValidateReport) -> String {
    let s = &report.source;
    let mut parts = vec![
        format!("{:?}", s.format).to_lowercase(),
        format!("{} ({})", s.encoding.name, s.encoding.source),
    ];
    if s.gzip {
        parts.push("gzip".into());
    }
    if let Some(d) = &s.delimiter {
        parts.push(format!("delimiter '{}' ({})", d.delimiter, d.source));
    }
    if let Some(target) = report.target {
        parts.push(format!("{target} rules"));
    }
    if let Some(region) = &report.default_region {
        parts.push(format!("default phone region {region}"));
    }
    parts.join(" · ")
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn width(part: u64, whole: u64) -> String {
    let share = if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    };
    format!("width: {share:.3}%")
}

fn outcome(report: &ValidateReport) -> Markup {
    let t = &report.tally;
    let plain = t.clean - t.clean_with_warnings;
    html! {
        div.cards {
            div.card { "Rows read" b { (t.rows_read) } }
            div.card { "Clean" b { (t.clean) } (percent(t.clean, t.rows_read)) }
            div.card { "…with warnings" b { (t.clean_with_warnings) } (percent(t.clean_with_warnings, t.rows_read)) }
            div.card { "Rejected" b { (t.rejected) } (percent(t.rejected, t.rows_read)) }
        }
        div.bar role="img" aria-label=(format!("{} clean, {} with warnings, {} rejected", plain, t.clean_with_warnings, t.rejected)) {
            div style=(format!("{}; background: {CLEAN_COLOUR}", width(plain, t.rows_read))) {}
            div style=(format!("{}; background: {WARNED_COLOUR}", width(t.clean_with_warnings, t.rows_read))) {}
            div style=(format!("{}; background: {REJECTED_COLOUR}", width(t.rejected, t.rows_read))) {}
        }
        p.legend {
            span { span.swatch style=(format!("background: {CLEAN_COLOUR}")) {} "clean" }
            span { span.swatch style=(format!("background: {WARNED_COLOUR}")) {} "clean with warnings" }
            span { span.swatch style=(format!("background: {REJECTED_COLOUR}")) {} "rejected" }
        }
    }
}

fn advice(report: &ValidateReport) -> Markup {
    let country = report.country_diagnosis.suggestion();
    html! {
        @if country.is_some() || !report.phone_diagnosis.is_empty() {
            h2 { "Diagnosis" }
            @if let Some(s) = &country {
                div.advice { (s) }
            }
            @for d in &report.phone_diagnosis {
                @if let Some(s) = &d.suggestion {
                    div.advice { "Phones in " code { (d.column) } ": " (s) }
                }
            }
            @if !report.phone_diagnosis.is_empty() {
                table {
                    tr { th { "Phone column" } th.num { "Sampled" } th.num { "Valid as read" } th { "Valid if read in" } }
                    @for d in &report.phone_diagnosis {
                        tr {
                            td { code { (d.column) } }
                            td.num { (d.sampled) }
                            td.num { (d.valid_as_read) " (" (percent(d.valid_as_read, d.sampled)) ")" }
                            td {
                                @for (i, (region, n)) in d.valid_in_region.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (region) " " (n) " (" (percent(*n, d.sampled)) ")"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn sorted_codes(report: &ValidateReport) -> Vec<(&IssueCode, &CodeCount)> {
    let mut codes: Vec<_> = report.tally.issues_by_code.iter().collect();
    codes.sort_by(|a, b| {
        b.1.count
            .cmp(&a.1.count)
            .then(a.0.as_str().cmp(b.0.as_str()))
    });
    codes
}

fn severity(s: Severity) -> Markup {
    match s {
        Severity::Error => html! { span.error { "error" } },
        Severity::Warning => html! { span.warning { "warning" } },
    }
}

fn issue_table(report: &ValidateReport) -> Markup {
    html! {
        table {
            tr { th { "Code" } th { "Severity" } th.num { "Count" } th { "First lines" } th { "Example" } }
            @for (code, count) in sorted_codes(report) {
                tr {
                    td { a href=(format!("#{}", code.as_str())) { code { (code.as_str()) } } }
                    td { (severity(count.severity)) }
                    td.num { (count.count) }
                    td { (count.first_lines.iter().take(5).map(u64::to_string).collect::<Vec<_>>().join(", ")) }
                    td { @if let Some(s) = count.samples.first() { (s.message) } }
                }
            }
        }
    }
}

fn profile_table(report: &ValidateReport) -> Markup {
    let rows = report.tally.rows_read;
    html! {
        table {
            tr {
                th { "Column" } th { "Mapped to" } th { "Filled" } th.num { "Distinct" }
                th { "Commonest values" } th { "Looks like" } th.num { "Valid" }
            }
            @for c in &report.column_profile {
                tr {
                    td { code { (c.column) } }
                    td { (c.target) }
                    td.num {
                        span.fill { i style=(width(c.filled, rows)) {} }
                        (percent(c.filled, rows))
                    }
                    td.num { @if c.distinct_estimate > 128 { "≈" } (c.distinct_estimate) }
                    td {
                        @if c.top_values.is_empty() && c.top_values_exact {
                            span.muted { "no value repeats" }
                        } @else if c.top_values.is_empty() {
                            span.muted { "no value is frequent" }
                        } @else {
                            ul.plain {
                                @for v in &c.top_values {
                                    li { span.value { (v.value) } " × " @if !c.top_values_exact { "≥" } (v.count) }
                                }
                            }
                        }
                    }
                    td {
                        @for (i, f) in c.formats.iter().take(3).enumerate() {
                            @if i > 0 { br; }
                            (format!("{:?}", f.format).to_lowercase()) " " (format!("{:.1}%", f.share * 100.0))
                        }
                    }
                    td.num {
                        @match c.share_valid {
                            Some(share) => (format!("{:.1}%", share * 100.0)),
                            None => span.muted { "not checked" },
                        }
                    }
                }
            }
        }
    }
}

fn samples(code: IssueCode, count: &CodeCount) -> Markup {
    html! {
        h3 id=(code.as_str()) {
            code { (code.as_str()) } " " (severity(count.severity)) " "
            span.muted { (count.count) " in all; the first " (count.samples.len()) }
        }
        table {
            tr { th.num { "Line" } th { "Column" } th { "Value as read" } th { "Message" } }
            @for s in &count.samples {
                tr {
                    td.num { (s.line) }
                    td { @if let Some(c) = &s.column { code { (c) } } }
                    td { @if let Some(v) = &s.value { span.value { (v) } } }
                    td { (s.message) }
                }
            }
        }
    }
}

fn mapping_table(report: &ValidateReport) -> Markup {
    html! {
        table {
            tr { th { "Source column" } th { "Field" } }
            @for e in &report.mapping {
                tr { td { code { (e.column) } } td { (e.target) } }
            }
        }
        @if !report.mapping_notes.is_empty() {
            ul {
                @for note in &report.mapping_notes { li { (note) } }
            }
        }
    }
}
