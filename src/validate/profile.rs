//! The column profile: per source column, how full it is, how many distinct values it holds
//! (estimated), its commonest values, what its values look like, and how many of them the
//! rules accepted.
//!
//! Built on the checking pool, a chunk of rows at a time, and merged in input order by the
//! writer: every piece is mergeable (counts; a HyperLogLog++ sketch; a Misra–Gries summary
//! of the frequent values), so the profile costs the writer a few merges per batch, not work
//! per cell, and its memory is fixed per column whatever the file size.

use crate::mapping::{ResolvedMapping, Target};
use crate::model::CheckedRow;
use cardinality_estimator::CardinalityEstimator;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Counters kept per column by the frequent-values summary.
const FREQUENT_SLOTS: usize = 64;

/// Commonest values reported per column.
const TOP_VALUES: usize = 5;

/// Longest value quoted back in the profile, in characters.
const MAX_VALUE_CHARS: usize = 100;

/// What a cell's text looks like (a cheap look at its characters, not a validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// Digits, with an optional sign.
    Integer,
    /// Digits with one decimal point or comma.
    Decimal,
    /// Three groups of digits, one of four, joined by the same `-`, `/` or `.`.
    Date,
    /// A date, then a time.
    DateTime,
    /// Something `@` something `.` something, no spaces.
    Email,
    /// At least 7 digits among `+ - ( ) . /` spaces and an `x`/`ext` extension.
    Phone,
    /// `http://`, `https://` or `www.`.
    Url,
    /// Anything else.
    Text,
}

const FORMATS: [ValueFormat; 8] = [
    ValueFormat::Integer,
    ValueFormat::Decimal,
    ValueFormat::Date,
    ValueFormat::DateTime,
    ValueFormat::Email,
    ValueFormat::Phone,
    ValueFormat::Url,
    ValueFormat::Text,
];

/// The format a (trimmed, non-empty) value looks like.
pub fn format_of(value: &str) -> ValueFormat {
    let bytes = value.as_bytes();
    let lower_starts = |prefix: &str| {
        bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if lower_starts("http://") || lower_starts("https://") || lower_starts("www.") {
        return ValueFormat::Url;
    }
    if let Some(at) = value.find('@') {
        let domain = &value[at + 1..];
        if at > 0 && !value.contains(char::is_whitespace) && domain.contains('.') {
            return ValueFormat::Email;
        }
        return ValueFormat::Text;
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // `+` and enough digits for a number is how phones are written, not integers.
        return if value.starts_with('+') && unsigned.len() >= 7 {
            ValueFormat::Phone
        } else {
            ValueFormat::Integer
        };
    }
    if is_decimal(unsigned) {
        return ValueFormat::Decimal;
    }
    if let Some(rest) = date_prefix(value) {
        let rest = rest.strip_prefix([' ', 'T']).unwrap_or(rest);
        if rest.is_empty() {
            return ValueFormat::Date;
        }
        let b = rest.as_bytes();
        if b.len() >= 4 && b[0].is_ascii_digit() && (b[1] == b':' || b.get(2) == Some(&b':')) {
            return ValueFormat::DateTime;
        }
        return ValueFormat::Text;
    }
    if looks_like_phone(value) {
        return ValueFormat::Phone;
    }
    ValueFormat::Text
}

fn is_decimal(text: &str) -> bool {
    let mut separators = 0;
    let mut digits = 0;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' | b',' => separators += 1,
            _ => return false,
        }
    }
    separators == 1 && digits > 0 && !text.starts_with(['.', ',']) && !text.ends_with(['.', ','])
}

/// The rest of `value` after a leading date such as `2024-04-02`, `02/04/2024`, `2.4.2024`.
fn date_prefix(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    let mut groups = [0usize; 3];
    let mut group = 0;
    let mut separator = None;
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            groups[group] += 1;
        } else if group < 2 && matches!(b, b'-' | b'/' | b'.') && separator.is_none_or(|s| s == b) {
            separator = Some(b);
            group += 1;
        } else {
            end = i;
            break;
        }
    }
    let [a, m, c] = groups;
    let fits = group == 2
        && (1..=2).contains(&m)
        && ((a == 4 && (1..=2).contains(&c)) || (c == 4 && (1..=2).contains(&a)));
    fits.then(|| &value[end..])
}

fn looks_like_phone(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let main = match lower.find("ext").or_else(|| lower.find('x')) {
        Some(i) => &lower[..i],
        None => &lower[..],
    };
    let digits = main.bytes().filter(u8::is_ascii_digit).count();
    digits >= 7
        && main.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'(' | b')' | b'.' | b' ' | b'/')
        })
}

/// A Misra–Gries summary: every value more frequent than 1/(slots+1) of the cells is kept,
/// with a count that is low by at most cells/(slots+1); counts are exact while no value has
/// had to be dropped.
#[derive(Debug, Clone)]
struct Frequent<S> {
    hashes: Vec<u64>,
    values: Vec<S>,
    counts: Vec<u64>,
    exact: bool,
}

impl<S> Default for Frequent<S> {
    fn default() -> Self {
        Frequent {
            hashes: Vec::new(),
            values: Vec::new(),
            counts: Vec::new(),
            exact: true,
        }
    }
}

impl<S> Frequent<S> {
    fn insert(&mut self, hash: u64, value: impl FnOnce() -> S, count: u64) {
        if let Some(i) = self.hashes.iter().position(|&h| h == hash) {
            self.counts[i] += count;
        } else {
            self.hashes.push(hash);
            self.values.push(value());
            self.counts.push(count);
        }
    }

    /// Keeps at most [`FREQUENT_SLOTS`] counters by taking the (slots+1)-th largest count off
    /// every counter (one decrement step for a single insert; the mergeable form for a merge).
    fn shrink(&mut self) {
        if self.hashes.len() <= FREQUENT_SLOTS {
            return;
        }
        self.exact = false;
        let mut sorted = self.counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let cut = sorted[FREQUENT_SLOTS];
        let mut i = 0;
        while i < self.hashes.len() {
            if self.counts[i] <= cut {
                self.hashes.swap_remove(i);
                self.values.swap_remove(i);
                self.counts.swap_remove(i);
            } else {
                self.counts[i] -= cut;
                i += 1;
            }
        }
    }

    fn add(&mut self, hash: u64, value: impl FnOnce() -> S) {
        self.insert(hash, value, 1);
        self.shrink();
    }
}

/// One column's figures, mergeable.
#[derive(Debug, Clone, Default)]
struct ColumnStats<S> {
    filled: u64,
    /// Filled cells of a column the rules read.
    checked: u64,
    /// Of those, cells an error was found in.
    invalid: u64,
    formats: [u64; FORMATS.len()],
    distinct: CardinalityEstimator<str>,
    frequent: Frequent<S>,
}

impl<S> ColumnStats<S> {
    fn merge_from<T>(&mut self, other: ColumnStats<T>, own: impl Fn(T) -> S) {
        self.filled += other.filled;
        self.checked += other.checked;
        self.invalid += other.invalid;
        for (a, b) in self.formats.iter_mut().zip(other.formats) {
            *a += b;
        }
        self.distinct.merge(&other.distinct);
        self.frequent.exact &= other.frequent.exact;
        let Frequent {
            hashes,
            values,
            counts,
            ..
        } = other.frequent;
        for ((h, v), c) in hashes.into_iter().zip(values).zip(counts) {
            self.frequent.insert(h, || own(v), c);
        }
        self.frequent.shrink();
    }
}

/// One batch's profile, aligned with the batch's columns.
#[derive(Debug, Clone)]
pub struct BatchProfile {
    rows: u64,
    columns: Vec<ColumnStats<Box<str>>>,
}

/// Profiles a chunk of checked rows (run on the checking pool).
fn profile_chunk<'a>(
    rows: &'a [CheckedRow],
    columns: &[String],
    checked: &[bool],
) -> (u64, Vec<ColumnStats<&'a str>>) {
    let mut stats: Vec<ColumnStats<&str>> =
        (0..columns.len()).map(|_| Default::default()).collect();
    let mut invalid = vec![false; columns.len()];
    for row in rows {
        for issue in row.issues.iter().filter(|i| i.is_error()) {
            if let Some(i) = issue
                .column
                .as_deref()
                .and_then(|c| columns.iter().position(|n| n == c))
            {
                invalid[i] = true;
            }
        }
        for (i, stat) in stats.iter_mut().enumerate() {
            let value = row.raw.record.get(i).unwrap_or("").trim();
            if value.is_empty() {
                invalid[i] = false;
                continue;
            }
            stat.filled += 1;
            if checked[i] {
                stat.checked += 1;
                stat.invalid += u64::from(invalid[i]);
            }
            invalid[i] = false;
            let format = format_of(value);
            stat.formats[FORMATS.iter().position(|f| *f == format).unwrap_or(7)] += 1;
            let hash = xxhash_rust::xxh3::xxh3_64(value.as_bytes());
            stat.distinct.insert_hash(hash);
            stat.frequent.add(hash, || value);
        }
    }
    (rows.len() as u64, stats)
}

/// Profiles a batch on the current rayon pool, in chunks of `chunk` rows.
pub fn profile_batch(
    rows: &[CheckedRow],
    mapping: &ResolvedMapping,
    columns: &[String],
    chunk: usize,
) -> BatchProfile {
    use rayon::prelude::*;
    let checked: Vec<bool> = (0..columns.len())
        .map(|i| {
            !matches!(
                mapping.targets.get(i),
                None | Some(Target::Unmapped) | Some(Target::Ignore)
            )
        })
        .collect();
    let chunks: Vec<_> = rows
        .par_chunks(chunk.max(1))
        .map(|c| profile_chunk(c, columns, &checked))
        .collect();
    // Merged left to right: the frequent-values summary's merge is not associative, and a
    // fixed order makes the report the same whatever the threads did.
    let (rows, stats) = chunks
        .into_iter()
        .reduce(|(rows, mut a), (more, b)| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge_from(y, |v| v);
            }
            (rows + more, a)
        })
        .unwrap_or_else(|| (0, (0..columns.len()).map(|_| Default::default()).collect()));
    // Values are copied once per batch, for the few the summaries keep.
    BatchProfile {
        rows,
        columns: stats
            .into_iter()
            .map(|s| {
                let mut own = ColumnStats::default();
                own.merge_from(s, Box::from);
                own
            })
            .collect(),
    }
}

/// The whole file's profile, merged batch by batch in input order.
#[derive(Debug, Default)]
pub struct Profile {
    rows: u64,
    names: Vec<String>,
    targets: Vec<String>,
    stats: Vec<ColumnStats<Box<str>>>,
    by_name: HashMap<String, usize>,
    /// The last batch's columns and where each sits in `stats`.
    last: Option<(Arc<Vec<String>>, Vec<usize>)>,
}

impl Profile {
    /// Adds one batch's profile (`columns` are the batch's source columns).
    pub fn add(
        &mut self,
        batch: BatchProfile,
        columns: &Arc<Vec<String>>,
        mapping: &ResolvedMapping,
    ) {
        let slots = match &self.last {
            Some((cols, slots)) if Arc::ptr_eq(cols, columns) => slots.clone(),
            _ => {
                let slots: Vec<usize> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, name)| match self.by_name.get(name) {
                        Some(&slot) => slot,
                        None => {
                            self.by_name.insert(name.clone(), self.names.len());
                            self.names.push(name.clone());
                            self.targets.push(
                                mapping
                                    .targets
                                    .get(i)
                                    .map_or("(unmapped)".into(), Target::display),
                            );
                            self.stats.push(ColumnStats::default());
                            self.names.len() - 1
                        }
                    })
                    .collect();
                self.last = Some((columns.clone(), slots.clone()));
                slots
            }
        };
        self.rows += batch.rows;
        for (stats, slot) in batch.columns.into_iter().zip(slots) {
            self.stats[slot].merge_from(stats, |v| v);
        }
    }

    /// The report's form, one entry per source column in the order they were first seen.
    pub fn columns(&self) -> Vec<ColumnProfile> {
        self.names
            .iter()
            .zip(&self.targets)
            .zip(&self.stats)
            .map(|((name, target), s)| {
                let mut top: Vec<(u64, &str)> = s
                    .frequent
                    .counts
                    .iter()
                    .zip(&s.frequent.values)
                    .filter(|(c, _)| **c > 1)
                    .map(|(c, v)| (*c, &**v))
                    .collect();
                top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                top.truncate(TOP_VALUES);
                let mut formats: Vec<FormatCount> = FORMATS
                    .iter()
                    .zip(s.formats)
                    .filter(|(_, n)| *n > 0)
                    .map(|(f, n)| FormatCount {
                        format: *f,
                        count: n,
                        share: ratio(n, s.filled),
                    })
                    .collect();
                formats.sort_by_key(|f| std::cmp::Reverse(f.count));
                let checked =
                    s.checked > 0 || !matches!(target.as_str(), "(unmapped)" | "(ignored)");
                ColumnProfile {
                    column: name.clone(),
                    target: target.clone(),
                    filled: s.filled,
                    fill_rate: ratio(s.filled, self.rows),
                    distinct_estimate: (s.distinct.estimate() as u64).min(s.filled),
                    top_values: top
                        .into_iter()
                        .map(|(count, value)| TopValue {
                            value: value.chars().take(MAX_VALUE_CHARS).collect(),
                            count,
                        })
                        .collect(),
                    top_values_exact: s.frequent.exact,
                    formats,
                    valid: checked.then_some(s.checked - s.invalid),
                    share_valid: checked.then(|| ratio(s.checked - s.invalid, s.checked)),
                }
            })
            .collect()
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A commonest value and how often it occurs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopValue {
    /// The value as written (trimmed, cut to 100 characters).
    pub value: String,
    /// Cells holding it (a lower bound when the column's `top_values_exact` is false).
    pub count: u64,
}

/// How many of a column's values look like one format.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FormatCount {
    /// The format.
    pub format: ValueFormat,
    /// Filled cells that look like it.
    pub count: u64,
    /// Their share of the filled cells.
    pub share: f64,
}

/// One source column's profile, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnProfile {
    /// The source column.
    pub column: String,
    /// Where the mapping sends it.
    pub target: String,
    /// Cells with a value (after trimming).
    pub filled: u64,
    /// Share of the rows read with a value.
    pub fill_rate: f64,
    /// Distinct values (exact up to 128, then a HyperLogLog++ estimate, within ~2%).
    pub distinct_estimate: u64,
    /// The commonest values that occur more than once, commonest first.
    pub top_values: Vec<TopValue>,
    /// Whether those counts are exact (else they are lower bounds, each low by at most
    /// 1/65 of the filled cells).
    pub top_values_exact: bool,
    /// What the values look like, commonest first.
    pub formats: Vec<FormatCount>,
    /// Filled cells the row checks found no error in (columns the rules read; null for the
    /// others). Duplicates across rows are counted in the issues, not here.
    pub valid: Option<u64>,
    /// Their share of the filled cells.
    pub share_valid: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        for (value, format) in [
            ("42", ValueFormat::Integer),
            ("-7", ValueFormat::Integer),
            ("79161234567", ValueFormat::Integer),
            ("+79161234567", ValueFormat::Phone),
            ("12.50", ValueFormat::Decimal),
            ("3,5", ValueFormat::Decimal),
            ("1.2.3", ValueFormat::Text),
            ("2024-04-02", ValueFormat::Date),
            ("02/04/2024", ValueFormat::Date),
            ("2.4.2024", ValueFormat::Date),
            ("2024-04-02 10:30", ValueFormat::DateTime),
            ("2024-04-02T10:30:00Z", ValueFormat::DateTime),
            ("2024-04-02 soon", ValueFormat::Text),
            ("a@b.co", ValueFormat::Email),
            ("a@b", ValueFormat::Text),
            ("a b@c.d", ValueFormat::Text),
            ("https://x.org", ValueFormat::Url),
            ("WWW.x.org", ValueFormat::Url),
            ("+1-363-717-0669x0743", ValueFormat::Phone),
            ("001-986-583-4497x8690", ValueFormat::Phone),
            ("(916) 123 45 67 ext 5", ValueFormat::Phone),
            ("123-45", ValueFormat::Text),
            ("Anna", ValueFormat::Text),
            ("Ünïcödé", ValueFormat::Text),
        ] {
            assert_eq!(format_of(value), format, "{value:?}");
        }
    }

    fn checked_rows(n: usize) -> (Vec<CheckedRow>, ResolvedMapping, Vec<String>) {
        let columns: Vec<String> = ["Customer Id", "Email", "Level", "Extra"]
            .map(String::from)
            .to_vec();
        let mapping = crate::mapping::Mapping::builtin().resolve(&columns);
        let rules = crate::validate::Rules::default();
        let rows = (0..n)
            .map(|i| {
                let email = if i % 5 == 0 {
                    "bad@".to_string()
                } else {
                    format!("u{i}@x.org")
                };
                let level = ["normal", "vip", ""][i % 3];
                let record =
                    csv::StringRecord::from(vec![format!("C{i}"), email, level.into(), " ".into()]);
                let raw = crate::model::RawRow {
                    line: i as u64 + 2,
                    record,
                    read_issue: None,
                    raw_text: None,
                };
                crate::validate::check_row(raw, &mapping, &rules)
            })
            .collect();
        (rows, mapping, columns)
    }

    #[test]
    fn a_batch_profile_is_the_same_whatever_the_chunks() {
        let (rows, mapping, columns) = checked_rows(300);
        let whole = |chunk| {
            let mut p = Profile::default();
            p.add(
                profile_batch(&rows, &mapping, &columns, chunk),
                &Arc::new(columns.clone()),
                &mapping,
            );
            p.columns()
        };
        let one = whole(1000);
        assert_eq!(one, whole(1));
        assert_eq!(one, whole(7));
        let [id, email, level, extra] = &one[..] else {
            panic!("{one:?}")
        };
        assert_eq!(
            (id.filled, id.distinct_estimate, id.top_values.len()),
            (300, 297, 0),
            "an estimate past 128"
        );
        assert_eq!((email.valid, email.share_valid), (Some(240), Some(0.8)));
        assert_eq!(level.filled, 200);
        assert_eq!(
            level.top_values,
            [
                TopValue {
                    value: "normal".into(),
                    count: 100
                },
                TopValue {
                    value: "vip".into(),
                    count: 100
                }
            ]
        );
        assert_eq!(
            (extra.filled, extra.fill_rate, extra.valid),
            (0, 0.0, None),
            "blank is empty"
        );
    }

    #[test]
    fn frequent_values_are_exact_while_they_fit_and_heavy_hitters_survive_when_not() {
        let mut f = Frequent::<u64>::default();
        for i in 0..1000u64 {
            f.add(i % 10, || i % 10);
        }
        assert!(f.exact);
        assert!(f.counts.iter().all(|&c| c == 100));
        let mut f = Frequent::<u64>::default();
        // One value is a third of the stream; the rest are all distinct.
        for i in 0..3000u64 {
            let v = if i % 3 == 0 { 0 } else { i + 1 };
            f.add(v, || v);
        }
        assert!(!f.exact);
        let i = f
            .values
            .iter()
            .position(|&v| v == 0)
            .expect("the heavy hitter is kept");
        assert!(f.counts[i] <= 1000 && f.counts[i] >= 1000 - 3000 / 65);
        assert!(f.hashes.len() <= FREQUENT_SLOTS);
    }
}
