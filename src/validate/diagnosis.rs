//! What a file's phone columns say about their regions: of a sample of each phone column,
//! how many numbers are valid as read (in the row's country, else `--default-region`), and
//! how many would be valid in each of the few regions the numbers themselves suggest (their
//! `+` calling code, an `00`/`011` international prefix) or the file suggests (the default
//! region, the commonest countries). When the row's country explains far fewer numbers than
//! another choice, the summary says so with the figures and the flags to use.

use super::phone::{self, Region};
use super::Rules;
use crate::mapping::{Field, ResolvedMapping, Target};
use crate::model::CheckedRow;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Rows whose phone numbers are sampled (the first ones).
pub const SAMPLE: usize = 2000;

/// One phone column's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneColumn {
    /// The source column.
    pub column: String,
    /// Numbers sampled.
    pub sampled: u64,
    /// Valid as the run read them (row country, else the default region).
    pub valid_as_read: u64,
    /// Valid when read in each candidate region (ISO code → count), best first.
    pub valid_in_region: Vec<(String, u64)>,
    /// The flags that would read more of them, when one region explains far more.
    pub suggestion: Option<String>,
}

/// How much of the country column is recognised.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CountryColumn {
    /// Rows with a country value.
    pub filled: u64,
    /// Of those, values that are no ISO code or known country name.
    pub unrecognised: u64,
    /// A few of the unrecognised values, as written.
    pub examples: Vec<String>,
}

impl CountryColumn {
    /// The summary line when most values are not countries.
    pub fn suggestion(&self) -> Option<String> {
        (self.filled > 0 && self.unrecognised * 2 > self.filled).then(|| {
            format!(
                "country: {} of {} values are not recognised countries (e.g. {}); phones in those rows are read with --default-region",
                percent(self.unrecognised, self.filled),
                self.filled,
                self.examples.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Collects, while rows are written, the phone sample (the first [`SAMPLE`] rows) and the
/// country column's figures (every row).
#[derive(Debug, Default)]
pub struct Diagnosis {
    /// Column → (value, the region the run read it in).
    values: BTreeMap<String, Vec<(String, Option<Region>)>>,
    rows_sampled: usize,
    /// The country column's figures.
    pub country: CountryColumn,
}

impl Diagnosis {
    /// Takes one checked row.
    pub fn add(&mut self, row: &CheckedRow, mapping: &ResolvedMapping, rules: &Rules) {
        if let Some(value) = row.customer.as_ref().and_then(|c| c.country.as_deref()) {
            self.country.filled += 1;
            if row
                .issues
                .iter()
                .any(|i| i.code == crate::model::IssueCode::CountryUnknown)
            {
                self.country.unrecognised += 1;
                if self.country.examples.len() < 3
                    && !self.country.examples.iter().any(|e| e == value)
                {
                    self.country.examples.push(value.to_string());
                }
            }
        }
        // The sample is the first rows: past them the phone cells are not looked at.
        if self.rows_sampled >= SAMPLE {
            return;
        }
        self.rows_sampled += 1;
        let country = row
            .customer
            .as_ref()
            .and_then(|c| c.country.as_deref())
            .filter(|_| !rules.phones_ignore_country)
            .and_then(phone::region_from_code);
        let region = country.or(rules.default_region);
        for (i, target) in mapping.targets.iter().enumerate() {
            let value = row.raw.record.get(i).unwrap_or("").trim();
            if *target == Target::Field(Field::Phone) && !value.is_empty() {
                self.values
                    .entry(mapping.columns[i].clone())
                    .or_default()
                    .push((value.to_string(), region));
            }
        }
    }

    /// The figures per phone column.
    pub fn phone_columns(&self, rules: &Rules) -> Vec<PhoneColumn> {
        self.values
            .iter()
            .map(|(column, values)| diagnose(column, values, rules))
            .collect()
    }
}

/// The region a number's own prefix names: `+CC`, or `00CC` / `011CC`.
fn implied_region(value: &str) -> Option<Region> {
    let digits_from = |s: &str| format!("+{}", s.trim_start_matches([' ', '-', '.']));
    let international = if value.starts_with('+') {
        value.to_string()
    } else if let Some(rest) = value.strip_prefix("011") {
        digits_from(rest)
    } else if let Some(rest) = value.strip_prefix("00") {
        digits_from(rest)
    } else {
        return None;
    };
    phone::region_of(&international)
}

fn diagnose(column: &str, values: &[(String, Option<Region>)], rules: &Rules) -> PhoneColumn {
    let valid = |v: &str, r: Option<Region>| phone::parse(v, r).is_ok();
    let valid_as_read = values.iter().filter(|(v, r)| valid(v, *r)).count() as u64;
    // Candidates: what the numbers' prefixes name, the default region, the rows' countries.
    let mut votes: HashMap<Region, u64> = HashMap::new();
    for (v, r) in values {
        if let Some(region) = implied_region(v) {
            *votes.entry(region).or_default() += 2;
        }
        if let Some(region) = r {
            *votes.entry(*region).or_default() += 1;
        }
    }
    let mut candidates: Vec<(Region, u64)> = votes.into_iter().collect();
    candidates.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(a.0.as_region_str().cmp(&b.0.as_region_str()))
    });
    let mut regions: Vec<Region> = candidates.into_iter().take(4).map(|(r, _)| r).collect();
    if let Some(d) = rules.default_region {
        if !regions.contains(&d) {
            regions.push(d);
        }
    }
    let mut valid_in_region: Vec<(String, u64)> = regions
        .iter()
        .map(|&r| {
            let n = values.iter().filter(|(v, _)| valid(v, Some(r))).count() as u64;
            (r.as_region_str().to_string(), n)
        })
        .collect();
    valid_in_region.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let sampled = values.len() as u64;
    let suggestion = valid_in_region.first().and_then(|(region, n)| {
        let far_more = *n >= 2 * valid_as_read.max(1) && *n * 10 >= sampled;
        far_more.then(|| {
            format!(
                "{column}: {} of {sampled} sampled numbers are valid as read (the row's country, else --default-region); {} would be read as {region}: try --default-region {region} --phones-ignore-country",
                percent(valid_as_read, sampled),
                percent(*n, sampled),
            )
        })
    });
    PhoneColumn {
        column: column.to_string(),
        sampled,
        valid_as_read,
        valid_in_region,
        suggestion,
    }
}

fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "0%".into();
    }
    format!("{:.0}%", n as f64 * 100.0 / of as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[(&str, Option<&str>)], rules: &Rules) -> PhoneColumn {
        let values: Vec<(String, Option<Region>)> = values
            .iter()
            .map(|(v, r)| (v.to_string(), r.and_then(phone::region_from_code)))
            .collect();
        diagnose("Phone 1", &values, rules)
    }

    #[test]
    fn north_american_numbers_in_rows_of_other_countries_are_pointed_out() {
        let rows: Vec<(&str, Option<&str>)> = [
            ("+1-201-555-0123x0743", Some("LV")),
            ("(201) 555-0124", Some("UA")),
            ("201.555.0125", Some("LV")),
            ("001-201-555-0126x8690", Some("UA")),
            ("201-555-0127", Some("UA")),
            ("(212) 555-0128", Some("LV")),
        ]
        .to_vec();
        let d = column(&rows, &Rules::default());
        assert_eq!(d.sampled, 6);
        assert!(d.valid_as_read <= 2, "{d:?}");
        assert_eq!(d.valid_in_region[0].0, "US", "{d:?}");
        assert!(d.valid_in_region[0].1 >= 5, "{d:?}");
        let s = d.suggestion.unwrap();
        assert!(
            s.contains("--default-region US --phones-ignore-country"),
            "{s}"
        );
    }

    #[test]
    fn a_column_read_well_gets_no_suggestion() {
        let rows = [("+31612345678", Some("NL")), ("0612345679", Some("NL"))];
        let d = column(&rows, &Rules::default());
        assert_eq!(d.valid_as_read, 2);
        assert!(d.suggestion.is_none(), "{d:?}");
    }
}
