//! The column profile: per source column, how full it is, how many distinct values it holds
//! (estimated), its commonest values, what its values look like, and how many of them the
//! rules accepted.
//!
//! Built by the writer stage, batch by batch in input order (so the same whatever the
//! threads), from counts, a HyperLogLog++ sketch and a Misra–Gries summary of the frequent
//! values per column: memory fixed per column whatever the file size, and per cell one
//! hash, one table look-up and, for a value the rules did not already type, a look at its
//! bytes.

use crate::mapping::{Field, ResolvedMapping, Target};
use crate::model::CheckedRow;
use cardinality_estimator::CardinalityEstimator;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Counters kept per column by the frequent-values summary.
const FREQUENT_SLOTS: usize = 256;

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
    let Some(&first) = bytes.first() else {
        return ValueFormat::Text;
    };
    let starts = |prefix: &[u8]| {
        bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if matches!(first | 0x20, b'h' | b'w')
        && (starts(b"http://") || starts(b"https://") || starts(b"www."))
    {
        return ValueFormat::Url;
    }
    // Cells are short: a plain scan beats `memchr`'s setup below a few dozen bytes.
    let at = if bytes.len() < 64 {
        bytes.iter().position(|&b| b == b'@')
    } else {
        memchr::memchr(b'@', bytes)
    };
    if let Some(at) = at {
        let email =
            at > 0 && !bytes.iter().any(u8::is_ascii_whitespace) && bytes[at + 1..].contains(&b'.');
        return if email {
            ValueFormat::Email
        } else {
            ValueFormat::Text
        };
    }
    // Most cells are words; the other formats all start with a digit or a sign.
    if !matches!(first, b'0'..=b'9' | b'+' | b'-' | b'(' | b'.' | b',') {
        return ValueFormat::Text;
    }
    // One pass: how many digits, which separators, and whether anything else is there.
    let (mut digits, mut points, mut other) = (0usize, 0usize, false);
    for &b in bytes {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' | b',' => points += 1,
            b'+' | b'-' | b'(' | b')' | b'/' | b' ' | b':' | b'x' | b'X' | b'e' | b'E' | b't'
            | b'T' | b'Z' => {}
            _ => other = true,
        }
    }
    if other || digits == 0 {
        return ValueFormat::Text;
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits == unsigned.len() {
        // `+` and enough digits for a number is how phones are written, not integers.
        return if first == b'+' && digits >= 7 {
            ValueFormat::Phone
        } else {
            ValueFormat::Integer
        };
    }
    if points == 1
        && digits + 1 == unsigned.len()
        && !unsigned.starts_with(['.', ','])
        && !unsigned.ends_with(['.', ','])
    {
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
    if looks_like_phone(bytes) {
        return ValueFormat::Phone;
    }
    ValueFormat::Text
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

/// At least 7 digits among `+ - ( ) . /` and spaces, before an `x` / `ext` extension.
fn looks_like_phone(bytes: &[u8]) -> bool {
    let main = match bytes
        .iter()
        .position(|b| matches!(b, b'x' | b'X' | b'e' | b'E'))
    {
        Some(i) => &bytes[..i],
        None => bytes,
    };
    main.iter().filter(|b| b.is_ascii_digit()).count() >= 7
        && main.iter().all(|&b| {
            b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'(' | b')' | b'.' | b' ' | b'/')
        })
}

/// A Misra–Gries summary: every value more frequent than 1/(slots+1) of the cells is kept,
/// with a count that is low by at most cells/(slots+1); counts are exact while no value has
/// had to be dropped. Values are keyed by hash; a value's text is copied only when it is
/// seen a second time (a value seen once is never reported), so a column of unique values
/// costs no allocation.
#[derive(Debug, Clone)]
struct Frequent {
    /// Hash → slot in the three vectors.
    index: rustc_hash::FxHashMap<u64, u32>,
    hashes: Vec<u64>,
    values: Vec<Option<Box<str>>>,
    counts: Vec<u64>,
    /// Values counted (the error bound is `seen / (slots + 1)`).
    seen: u64,
    exact: bool,
}

impl Default for Frequent {
    fn default() -> Self {
        Frequent {
            index: Default::default(),
            hashes: Vec::new(),
            values: Vec::new(),
            counts: Vec::new(),
            seen: 0,
            exact: true,
        }
    }
}

impl Frequent {
    /// Counts a value; true when the summary already held it.
    fn add(&mut self, hash: u64, value: &str) -> bool {
        self.seen += 1;
        if let Some(&i) = self.index.get(&hash) {
            let i = i as usize;
            self.counts[i] += 1;
            if self.values[i].is_none() {
                // Only what the report quotes: a huge field must not stay in memory.
                let end = value
                    .char_indices()
                    .nth(MAX_VALUE_CHARS)
                    .map_or(value.len(), |(i, _)| i);
                self.values[i] = Some(value[..end].into());
            }
            return true;
        }
        self.index.insert(hash, self.hashes.len() as u32);
        self.hashes.push(hash);
        self.values.push(None);
        self.counts.push(1);
        if self.hashes.len() > FREQUENT_SLOTS {
            self.decrement();
        }
        false
    }

    /// One Misra–Gries step: every counter loses the smallest count (at least the new
    /// value's 1), and those that reach zero go.
    fn decrement(&mut self) {
        self.exact = false;
        let cut = self.counts.iter().copied().min().unwrap_or(0);
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
        self.index.clear();
        for (i, &hash) in self.hashes.iter().enumerate() {
            self.index.insert(hash, i as u32);
        }
    }

    /// The values worth reporting, commonest first: held more than once, and (when the
    /// counts are lower bounds) by at least the bound's error, so noise is not listed.
    fn top(&self, n: usize) -> Vec<(u64, &str)> {
        let floor = if self.exact {
            2
        } else {
            (self.seen / (FREQUENT_SLOTS as u64 + 1)).max(2)
        };
        let mut top: Vec<(u64, &str)> = self
            .counts
            .iter()
            .zip(&self.values)
            .filter_map(|(c, v)| Some((*c, v.as_deref()?)).filter(|_| *c >= floor))
            .collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        top.truncate(n);
        top
    }
}

/// One column's figures.
#[derive(Debug, Clone, Default)]
struct ColumnStats {
    filled: u64,
    /// Filled cells of a column the rules read.
    checked: u64,
    /// Of those, cells an error was found in.
    invalid: u64,
    formats: [u64; FORMATS.len()],
    /// The format of the values the rules accept in this column, if one.
    known: Option<ValueFormat>,
    distinct: CardinalityEstimator<str>,
    frequent: Frequent,
}

impl ColumnStats {
    /// Takes column `index` of every row, in order. `known`: the format a value the rules
    /// accepted has (a phone, an email), so it need not be looked at again.
    fn add(
        &mut self,
        rows: &[CheckedRow],
        index: usize,
        name: &str,
        checked: bool,
        known: Option<ValueFormat>,
    ) {
        for row in rows {
            let value = row.raw.record.get(index).unwrap_or("");
            if value.bytes().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            // `trim` only when an end could be white space (it decodes characters).
            let ends = [value.as_bytes()[0], value.as_bytes()[value.len() - 1]];
            let value = if ends.iter().any(|b| b.is_ascii_whitespace() || *b >= 0x80) {
                value.trim()
            } else {
                value
            };
            self.filled += 1;
            let mut invalid = false;
            if checked {
                self.checked += 1;
                invalid = row
                    .issues
                    .iter()
                    .any(|i| i.is_error() && i.column.as_deref() == Some(name));
                self.invalid += u64::from(invalid);
            }
            let format = match known {
                Some(format) if checked && !invalid => format,
                _ => format_of(value),
            };
            self.formats[format as usize] += 1;
            let hash = xxhash_rust::xxh3::xxh3_64(value.as_bytes());
            // A value the summary holds has been counted in the sketch when it came in.
            if !self.frequent.add(hash, value) {
                self.distinct.insert_hash(hash);
            }
        }
    }
}

/// For each profile column, the batch column that holds it (none: not in this batch).
type Sources = Vec<Option<usize>>;

/// The whole file's profile, built batch by batch in input order.
#[derive(Debug, Default)]
pub struct Profile {
    rows: u64,
    names: Vec<String>,
    targets: Vec<String>,
    stats: Vec<ColumnStats>,
    by_name: HashMap<String, usize>,
    /// The last batch's columns, and for each profile column the batch column it is.
    last: Option<(Arc<Vec<String>>, Sources)>,
}

impl Profile {
    /// Profiles one batch, column by column, each column's rows in order.
    pub fn add(
        &mut self,
        rows: &[CheckedRow],
        columns: &Arc<Vec<String>>,
        mapping: &ResolvedMapping,
    ) {
        let sources = match &self.last {
            Some((cols, sources)) if Arc::ptr_eq(cols, columns) => sources.clone(),
            _ => {
                for (i, name) in columns.iter().enumerate() {
                    if !self.by_name.contains_key(name) {
                        self.by_name.insert(name.clone(), self.names.len());
                        self.names.push(name.clone());
                        self.targets.push(
                            mapping
                                .targets
                                .get(i)
                                .map_or("(unmapped)".into(), Target::display),
                        );
                        let known = match mapping.targets.get(i) {
                            Some(Target::Field(Field::Phone)) => Some(ValueFormat::Phone),
                            Some(Target::Field(Field::Email)) => Some(ValueFormat::Email),
                            _ => None,
                        };
                        self.stats.push(ColumnStats {
                            known,
                            ..ColumnStats::default()
                        });
                    }
                }
                let mut sources = vec![None; self.names.len()];
                for (i, name) in columns.iter().enumerate() {
                    sources[self.by_name[name]] = Some(i);
                }
                self.last = Some((columns.clone(), sources.clone()));
                sources
            }
        };
        self.rows += rows.len() as u64;
        let targets = &self.targets;
        self.stats
            .iter_mut()
            .zip(&self.names)
            .zip(sources)
            .enumerate()
            .for_each(|(slot, ((stats, name), source))| {
                if let Some(index) = source {
                    let checked = !matches!(targets[slot].as_str(), "(unmapped)" | "(ignored)");
                    let known = stats.known;
                    stats.add(rows, index, name, checked, known);
                }
            });
    }

    /// The report's form, one entry per source column in the order they were first seen.
    pub fn columns(&self) -> Vec<ColumnProfile> {
        self.names
            .iter()
            .zip(&self.targets)
            .zip(&self.stats)
            .map(|((name, target), s)| {
                let top = s.frequent.top(TOP_VALUES);
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
                let checked = !matches!(target.as_str(), "(unmapped)" | "(ignored)");
                ColumnProfile {
                    column: name.clone(),
                    target: target.clone(),
                    filled: s.filled,
                    fill_rate: ratio(s.filled, self.rows),
                    distinct_estimate: (s.distinct.estimate() as u64).min(s.filled),
                    top_values: top
                        .into_iter()
                        .map(|(count, value)| TopValue {
                            value: value.to_string(),
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
    /// Distinct values (exact up to 128, then a HyperLogLog++ estimate, standard error ~1.6%).
    pub distinct_estimate: u64,
    /// The commonest values that occur more than once, commonest first.
    pub top_values: Vec<TopValue>,
    /// Whether those counts are exact (else they are lower bounds, each low by at most
    /// 1/257 of the filled cells, and only values counted at least that often are listed).
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
        for (i, f) in FORMATS.iter().enumerate() {
            assert_eq!(*f as usize, i, "counted by position");
        }
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
    fn a_profile_is_the_same_whatever_the_batches() {
        let (rows, mapping, columns) = checked_rows(300);
        let columns = Arc::new(columns);
        let whole = |batch| {
            let mut p = Profile::default();
            for chunk in rows.chunks(batch) {
                p.add(chunk, &columns, &mapping);
            }
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
        let mut f = Frequent::default();
        for i in 0..1000u64 {
            f.add(i % 10, &(i % 10).to_string());
        }
        assert!(f.exact);
        assert!(f.counts.iter().all(|&c| c == 100));
        // A long value is kept only as far as the report quotes it.
        let long = "é".repeat(10_000);
        f.add(12_345, &long);
        f.add(12_345, &long);
        let kept = f.values.last().unwrap().as_deref().unwrap();
        assert_eq!(kept.chars().count(), MAX_VALUE_CHARS);
        let mut f = Frequent::default();
        // One value is a third of the stream; the rest are all distinct.
        for i in 0..3000u64 {
            let v = if i % 3 == 0 { 0 } else { i + 1 };
            f.add(v, &v.to_string());
        }
        assert!(!f.exact);
        let i = f
            .values
            .iter()
            .position(|v| v.as_deref() == Some("0"))
            .expect("the heavy hitter is kept");
        assert!(f.counts[i] <= 1000 && f.counts[i] >= 1000 - 3000 / 257);
        assert!(f.hashes.len() <= FREQUENT_SLOTS);
        // Only the heavy hitter is reported: what else is held is below the error bound.
        let top = f.top(5);
        assert_eq!(top.len(), 1, "{top:?}");
        assert_eq!(top[0].1, "0");
    }
}
