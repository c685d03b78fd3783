//! Row accounting: every row read is counted as clean or rejected exactly once, and every
//! issue is counted by code and by column. The JSON report and the human summary are
//! rendered from this tally.

use crate::input::SourceInfo;
use crate::mapping::MappingEntry;
use crate::model::{CheckedRow, IssueCode, Severity};
use crate::validate::first_seen::SpillStats;
use serde::Serialize;
use std::collections::BTreeMap;

/// How many example line numbers are kept per issue code.
pub const EXAMPLE_LINES: usize = 10;

/// Counts for one issue code.
#[derive(Debug, Clone, Serialize)]
pub struct CodeCount {
    /// Error or warning.
    pub severity: Severity,
    /// How many times it occurred.
    pub count: u64,
    /// The first lines it occurred on.
    pub first_lines: Vec<u64>,
    /// The first occurrences, with the column, the value as read and the message.
    pub samples: Vec<IssueSample>,
}

/// One occurrence of an issue, as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IssueSample {
    /// The line the row starts on.
    pub line: u64,
    /// The source column, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The value as read (cut to 200 characters), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// The running tally of a validation run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Rows read from the source (header and blank lines excluded).
    pub rows_read: u64,
    /// Rows with no error.
    pub clean: u64,
    /// Rows with at least one error.
    pub rejected: u64,
    /// Clean rows that carry warnings.
    pub clean_with_warnings: u64,
    /// Issue counts by code (serialized with the codes' text form).
    pub issues_by_code: BTreeMap<IssueCode, CodeCount>,
    /// Issue counts by source column.
    pub issues_by_column: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one checked row.
    pub fn add(&mut self, row: &CheckedRow) {
        self.rows_read += 1;
        if row.is_clean() {
            self.clean += 1;
            if !row.issues.is_empty() {
                self.clean_with_warnings += 1;
            }
        } else {
            self.rejected += 1;
        }
        for issue in &row.issues {
            let entry = self
                .issues_by_code
                .entry(issue.code)
                .or_insert_with(|| CodeCount {
                    severity: issue.severity,
                    count: 0,
                    first_lines: Vec::new(),
                    samples: Vec::new(),
                });
            entry.count += 1;
            if entry.samples.len() < EXAMPLE_LINES {
                entry.samples.push(IssueSample {
                    line: row.raw.line,
                    column: issue.column.clone(),
                    value: issue.value.clone(),
                    message: issue.message.clone(),
                });
            }
            if entry.first_lines.len() < EXAMPLE_LINES
                && entry.first_lines.last() != Some(&row.raw.line)
            {
                entry.first_lines.push(row.raw.line);
            }
            if let Some(column) = issue.column.as_ref().filter(|c| !c.is_empty()) {
                match self.issues_by_column.get_mut(column) {
                    Some(n) => *n += 1,
                    None => {
                        self.issues_by_column.insert(column.clone(), 1);
                    }
                }
            }
        }
    }
}

/// The `--report` file.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// The deskport version that wrote it.
    pub deskport_version: &'static str,
    /// What the reader detected.
    pub source: SourceInfo,
    /// The platform rules applied, if any.
    pub target: Option<&'static str>,
    /// The default phone region, if any.
    pub default_region: Option<String>,
    /// The counts.
    #[serde(flatten)]
    pub tally: Tally,
    /// Column → field, as applied to the first rows (JSONL: the final column list).
    pub mapping: Vec<MappingEntry>,
    /// Columns no rule recognised.
    pub unmapped_columns: Vec<String>,
    /// Remarks about the mapping.
    pub mapping_notes: Vec<String>,
    /// Wall time of the run.
    pub elapsed_seconds: f64,
    /// Rows read per second.
    pub rows_per_second: f64,
    /// Files written.
    pub outputs: BTreeMap<&'static str, String>,
    /// How the in-file duplicate check used memory and its temporary files.
    pub duplicate_index: SpillStats,
    /// Per phone column: valid as read, and in the regions the numbers suggest.
    pub phone_diagnosis: Vec<crate::validate::diagnosis::PhoneColumn>,
    /// How much of the country column is recognised.
    pub country_diagnosis: crate::validate::diagnosis::CountryColumn,
    /// Per source column: fill, distinct values, commonest values, formats, share valid.
    pub column_profile: Vec<crate::validate::profile::ColumnProfile>,
}

impl ValidateReport {
    /// The short human summary printed on stderr.
    pub fn summary(&self) -> String {
        let t = &self.tally;
        let delimiter = self
            .source
            .delimiter
            .as_ref()
            .map(|d| format!(", delimiter '{}'", d.delimiter))
            .unwrap_or_default();
        let mut out = format!(
            "{input}: {format}, {encoding}{delimiter}\n{read} rows read: {clean} clean ({warned} with warnings), {rejected} rejected — {secs:.2} s, {rate:.0} rows/s\n",
            input = self.source.input,
            format = format!("{:?}", self.source.format).to_lowercase(),
            encoding = self.source.encoding.name,
            read = t.rows_read,
            clean = t.clean,
            warned = t.clean_with_warnings,
            rejected = t.rejected,
            secs = self.elapsed_seconds,
            rate = self.rows_per_second,
        );
        let mut codes: Vec<(&IssueCode, &CodeCount)> = t.issues_by_code.iter().collect();
        codes.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then(a.0.as_str().cmp(b.0.as_str()))
        });
        for (code, count) in codes {
            let lines: Vec<String> = count
                .first_lines
                .iter()
                .take(5)
                .map(u64::to_string)
                .collect();
            out.push_str(&format!(
                "  {code:<24} {:>9} {:<7} e.g. line {}\n",
                count.count,
                format!("{:?}", count.severity).to_lowercase(),
                lines.join(", ")
            ));
        }
        if !self.unmapped_columns.is_empty() {
            out.push_str(&format!(
                "  unmapped columns (not used): {}\n",
                self.unmapped_columns.join(", ")
            ));
        }
        if let Some(s) = self.country_diagnosis.suggestion() {
            out.push_str(&format!("  {s}\n"));
        }
        for d in &self.phone_diagnosis {
            if let Some(s) = &d.suggestion {
                out.push_str(&format!("  phones: {s}\n"));
            }
        }
        for (what, path) in &self.outputs {
            out.push_str(&format!("  {what} → {path}\n"));
        }
        out
    }
}
