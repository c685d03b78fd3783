//! Validation and normalization: a pure function from a mapped raw row to a [`Customer`]
//! and the [`Issue`]s found, plus the in-file duplicate check that needs the rows before it.
//!
//! [`check_row`] is pure and runs on chunks in parallel; [`DuplicateIndex`] runs after it,
//! in input order, because "seen before" depends on order. Platform rules are selected by
//! [`Rules::platform`]; without one, only the platform-neutral rules apply.

pub mod country;
pub mod custom;
pub mod diagnosis;
pub mod email;
pub mod file;
pub mod first_seen;
pub mod html;
pub mod name;
pub mod phone;
pub mod profile;

use crate::fields::DateOrder;
use crate::mapping::{Field, ResolvedMapping, Target};
use crate::model::{CheckedRow, Customer, Issue, IssueCode, RawRow, Severity};
use first_seen::{FirstSeen, Limits, SpillStats};
use phone::Region;
use serde::Serialize;
use std::path::PathBuf;

/// The platforms whose rules can be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Omnidesk API v2.
    Omnidesk,
    /// Udesk open API v1.
    Udesk,
}

impl Platform {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Omnidesk => "omnidesk",
            Platform::Udesk => "udesk",
        }
    }
}

/// What to do about an email or phone number that an earlier row already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Report a warning; keep the row (the default).
    Warn,
    /// Reject the row.
    Error,
    /// Do not look (external ids are still checked).
    Off,
}

/// Udesk's limit for nick_name, email, open_api_token and description.
pub const UDESK_MAX_CHARS: usize = crate::platform::documented::UDESK_MAX_CHARS;

/// The rules in force for a run.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Platform-specific rules, if a target is given.
    pub platform: Option<Platform>,
    /// Region for national phone numbers when the row has no country.
    pub default_region: Option<Region>,
    /// Email/phone duplicates: warn, reject or ignore. External-id duplicates are always errors.
    pub duplicates: DuplicatePolicy,
    /// Memory limits of the in-file duplicate index.
    pub duplicate_limits: Limits,
    /// How custom date fields written `02/04/2024` are read.
    pub date_order: DateOrder,
    /// Whether an empty required custom field rejects the row (false when rows only update
    /// customers that exist: then it is a warning).
    pub required_fields: bool,
    /// A phone number with an extension: kept without it (a warning), or rejected.
    pub phone_extensions: ExtensionPolicy,
    /// Read every phone in `default_region` (or as international), whatever the row's
    /// country says (for files whose country column does not describe the phones).
    pub phones_ignore_country: bool,
}

/// What to do with a phone number that has an extension (`+1-363-717-0669x0743`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionPolicy {
    /// Keep the number in E.164 without the extension, note the extension, and warn.
    #[default]
    Keep,
    /// Reject the row (`phone.extension` as an error).
    Reject,
}

impl Rules {
    /// What decides how rows are judged, as text a journal keeps so a resume under other
    /// rules is refused (the duplicate check's memory limits change nothing and are left out).
    pub fn identity(&self) -> String {
        format!(
            "platform={} region={} duplicates={:?}{}{}{}",
            self.platform.map_or("none", Platform::name),
            self.default_region
                .map_or_else(|| "none".to_string(), |r| format!("{r:?}")),
            self.duplicates,
            match self.date_order {
                DateOrder::Strict => String::new(),
                other => format!(" dates={other:?}"),
            },
            match self.phone_extensions {
                ExtensionPolicy::Keep => "",
                ExtensionPolicy::Reject => " extensions=reject",
            },
            if self.phones_ignore_country {
                " phones-ignore-country"
            } else {
                ""
            }
        )
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            platform: None,
            default_region: None,
            duplicates: DuplicatePolicy::Warn,
            duplicate_limits: Limits::default(),
            date_order: DateOrder::Strict,
            required_fields: true,
            phone_extensions: ExtensionPolicy::Keep,
            phones_ignore_country: false,
        }
    }
}

/// Splits a multi-valued cell (`a@x.nl; b@y.nl`) into trimmed, non-empty parts.
fn split_multi<'a>(value: &'a str, separators: &'a [char]) -> impl Iterator<Item = &'a str> {
    value
        .split(separators)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

const PHONE_SEPARATORS: &[char] = &[';', ',', '|', '\n'];
const EMAIL_SEPARATORS: &[char] = &[';', ',', '|', '\n', ' ', '\t'];
const TAG_SEPARATORS: &[char] = &[';', ',', '|', '\n'];

/// The first non-empty value of a single-valued field, with its column.
struct Picked<'a> {
    column: &'a str,
    value: &'a str,
}

/// Validates and normalizes one row. Pure: the same input gives the same output.
pub fn check_row(raw: RawRow, mapping: &ResolvedMapping, rules: &Rules) -> CheckedRow {
    let read_warning = match &raw.read_issue {
        Some(issue) if issue.is_error() => {
            return CheckedRow {
                customer: None,
                issues: vec![issue.clone()],
                raw,
            };
        }
        other => other.clone(),
    };
    let (customer, mut issues) = normalize(&raw, mapping, rules);
    if let Some(warning) = read_warning {
        issues.insert(0, warning);
    }
    CheckedRow {
        raw,
        customer: Some(customer),
        issues,
    }
}

/// The normalization proper, shared by [`check_row`] and tests.
pub fn normalize(raw: &RawRow, mapping: &ResolvedMapping, rules: &Rules) -> (Customer, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut single: [Option<Picked>; Field::ALL.len()] = Default::default();
    let mut multi: Vec<(Field, &str, &str)> = Vec::new();
    let mut customer = Customer::default();
    for (i, target) in mapping.targets.iter().enumerate() {
        let value = raw.record.get(i).unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        let column = mapping.columns[i].as_str();
        match target {
            Target::Field(field) if field.is_multi() => multi.push((*field, column, value)),
            Target::Field(field) => {
                let slot = &mut single[*field as usize];
                if slot.is_none() {
                    *slot = Some(Picked { column, value });
                }
            }
            Target::Custom(key) => custom::put(
                &mut customer,
                &mut issues,
                mapping,
                rules,
                key,
                column,
                value,
            ),
            Target::CustomJson => {
                custom::put_json(&mut customer, &mut issues, mapping, rules, column, value)
            }
            Target::Ignore | Target::Unmapped => {}
        }
    }
    let get = |field: Field| single[field as usize].as_ref();
    if let Some(fields) = &mapping.fields {
        custom::check_required(fields, mapping, raw, &customer, rules, &mut issues);
    }

    // Country first: phones are read in its region.
    let mut region = rules.default_region;
    if let Some(p) = get(Field::Country) {
        match country::with_region(p.value) {
            Some((code, code_region)) => {
                customer.country = Some(code.to_string());
                if !rules.phones_ignore_country {
                    region = code_region.or(region);
                }
            }
            None => {
                customer.country = Some(p.value.to_string());
                issues.push(
                    Issue::warning(IssueCode::CountryUnknown, "not an ISO country code or a known country name; phones read with --default-region")
                        .in_column(p.column)
                        .with_value(p.value),
                );
            }
        }
    }

    match get(Field::ExternalId) {
        Some(p) => {
            customer.external_id = p.value.to_string();
            if p.value.chars().any(char::is_control) {
                issues.push(
                    Issue::error(
                        IssueCode::IdChars,
                        "the external id holds control characters (NUL, escape, tab or line break): it would be stored as given and could not be found again reliably",
                    )
                    .in_column(p.column)
                    .with_value(&p.value.escape_default().to_string()),
                );
            }
            if rules.platform == Some(Platform::Udesk) && p.value.chars().count() > UDESK_MAX_CHARS
            {
                issues.push(too_long(IssueCode::IdTooLong, p, "open_api_token"));
            }
        }
        None => issues.push(Issue::error(
            IssueCode::IdMissing,
            "no external id: both platforms need one to find the customer again",
        )),
    }

    customer.firstname = get(Field::Firstname).map(|p| name::normalize(p.value));
    customer.lastname = get(Field::Lastname).map(|p| name::normalize(p.value));
    customer.nick_name = get(Field::NickName).map(|p| name::normalize(p.value));
    check_names(&mut customer, &get, rules, &mut issues);

    if let Some(p) = get(Field::Email) {
        match email::normalize(p.value) {
            Ok(e) => customer.email = Some(e),
            Err(message) => issues.push(
                Issue::error(IssueCode::EmailInvalid, message)
                    .in_column(p.column)
                    .with_value(p.value),
            ),
        }
    }
    for (field, column, value) in &multi {
        match field {
            Field::OtherEmails => {
                for part in split_multi(value, EMAIL_SEPARATORS) {
                    match email::normalize(part) {
                        Ok(e)
                            if customer.email.as_ref() != Some(&e)
                                && !customer.other_emails.contains(&e) =>
                        {
                            customer.other_emails.push(e)
                        }
                        Ok(_) => {}
                        Err(message) => issues.push(
                            Issue::error(IssueCode::EmailInvalid, message)
                                .in_column(column)
                                .with_value(part),
                        ),
                    }
                }
            }
            Field::Phone => {
                for part in split_multi(value, PHONE_SEPARATORS) {
                    match phone::parse(part, region) {
                        Ok((_, Some(ext))) if rules.phone_extensions == ExtensionPolicy::Reject => {
                            let problem = phone::PhoneProblem::Extension(ext);
                            issues.push(
                                Issue::error(problem.code(), problem.message(region))
                                    .in_column(column)
                                    .with_value(part),
                            );
                        }
                        Ok((e, ext)) => {
                            if let Some(ext) = ext {
                                issues.push(
                                    Issue::warning(
                                        IssueCode::PhoneExtension,
                                        format!("has extension {ext}, which E.164 and the platforms cannot store: the number is kept as {e}, the extension in the clean file's phone_extensions column"),
                                    )
                                    .in_column(column)
                                    .with_value(part),
                                );
                                let noted = format!("{e} x{ext}");
                                if !customer.phone_extensions.contains(&noted) {
                                    customer.phone_extensions.push(noted);
                                }
                            }
                            if !customer.phones.contains(&e) {
                                customer.phones.push(e);
                            }
                        }
                        Err(problem) => issues.push(
                            Issue::error(problem.code(), problem.message(region))
                                .in_column(column)
                                .with_value(part),
                        ),
                    }
                }
            }
            Field::PhoneExtensions => {
                // A clean file read again: the extensions noted before stay.
                for noted in split_multi(value, TAG_SEPARATORS) {
                    if !customer.phone_extensions.iter().any(|n| n == noted) {
                        customer.phone_extensions.push(noted.to_string());
                    }
                }
            }
            Field::Tags => {
                for tag in split_multi(value, TAG_SEPARATORS) {
                    let tag = name::normalize(tag);
                    if !customer.tags.contains(&tag) {
                        customer.tags.push(tag);
                    }
                }
            }
            _ => {}
        }
    }
    if customer.email.is_none() && !customer.other_emails.is_empty() {
        customer.email = Some(customer.other_emails.remove(0));
    }
    if rules.platform == Some(Platform::Udesk) {
        if let (Some(e), Some(p)) = (&customer.email, get(Field::Email)) {
            if e.chars().count() > UDESK_MAX_CHARS {
                issues.push(too_long(IssueCode::EmailTooLong, p, "email"));
            }
        }
    }

    if let Some(p) = get(Field::Level) {
        let level = p.value.to_lowercase();
        if rules.platform == Some(Platform::Udesk) && level != "normal" && level != "vip" {
            issues.push(
                Issue::error(IssueCode::LevelInvalid, "Udesk levels are normal or vip")
                    .in_column(p.column)
                    .with_value(p.value),
            );
        }
        customer.level = Some(level);
    }
    if let Some(p) = get(Field::Description) {
        customer.description = Some(p.value.to_string());
        if rules.platform == Some(Platform::Udesk) && p.value.chars().count() > UDESK_MAX_CHARS {
            issues.push(too_long(IssueCode::TextTooLong, p, "description"));
        }
    }
    if let Some(p) = get(Field::BrandId) {
        match p.value.parse::<u64>() {
            Ok(id) if id > 0 => customer.brand_id = Some(id),
            _ => issues.push(
                Issue::error(
                    IssueCode::BrandInvalid,
                    "brand id must be a positive whole number",
                )
                .in_column(p.column)
                .with_value(p.value),
            ),
        }
    }
    (customer, issues)
}

fn too_long(code: IssueCode, p: &Picked, what: &str) -> Issue {
    Issue::error(
        code,
        format!("Udesk allows at most {UDESK_MAX_CHARS} characters for {what}"),
    )
    .in_column(p.column)
    .with_value(p.value)
}

fn check_names<'a>(
    customer: &mut Customer,
    get: &impl Fn(Field) -> Option<&'a Picked<'a>>,
    rules: &Rules,
    issues: &mut Vec<Issue>,
) {
    match rules.platform {
        Some(Platform::Omnidesk) => {
            for (field, value) in [
                (Field::Firstname, &customer.firstname),
                (Field::Lastname, &customer.lastname),
            ] {
                let Some(value) = value else { continue };
                let refused = name::omnidesk_refused_chars(value);
                if !refused.is_empty() {
                    let shown: String = refused.iter().take(10).collect();
                    let column = get(field).map_or("", |p| p.column);
                    issues.push(
                        Issue::error(
                            IssueCode::NameChars,
                            format!("Omnidesk names allow Latin letters, spaces and . - ' only; refused: {shown:?}"),
                        )
                        .in_column(column)
                        .with_value(value),
                    );
                }
            }
        }
        Some(Platform::Udesk) => {
            if customer.nick_name.is_none() {
                let full = [&customer.firstname, &customer.lastname]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" ");
                if !full.is_empty() {
                    customer.nick_name = Some(full);
                }
            }
            match &customer.nick_name {
                None => issues.push(Issue::error(
                    IssueCode::NameMissing,
                    "Udesk requires nick_name: give a nick_name column or first/last names",
                )),
                Some(n) if n.chars().count() > UDESK_MAX_CHARS => {
                    let column = get(Field::NickName).map_or("", |p| p.column);
                    issues.push(
                        Issue::error(
                            IssueCode::NameTooLong,
                            format!(
                                "Udesk allows at most {UDESK_MAX_CHARS} characters for nick_name"
                            ),
                        )
                        .in_column(column)
                        .with_value(n),
                    );
                }
                Some(_) => {}
            }
        }
        None => {}
    }
}

/// First-seen index of external ids, emails and phones, keyed by a 64-bit xxh3 fingerprint of
/// (kind, normalized value) and holding the first line. A false match between two different
/// values needs a fingerprint collision: about one chance in 40,000 for a whole file of ten
/// million rows (30 million keys).
///
/// Only clean rows are entered, so a row rejected for another reason does not make a later
/// good row a duplicate. The keys live in a [`FirstSeen`] store, whose memory stays bounded
/// whatever the file size: past ~460,000 keys it spills sorted runs into a temporary directory
/// under `TMPDIR` (deleted at the end).
#[derive(Debug)]
pub struct DuplicateIndex {
    policy: DuplicatePolicy,
    first_line: FirstSeen,
    /// The current row's keys not seen before (kept to reuse its allocation).
    new_keys: Vec<u64>,
}

/// What a fingerprint is of; part of the key so an email never matches a phone.
#[derive(Clone, Copy)]
enum KeyKind {
    Id = 1,
    Email = 2,
    Phone = 3,
}

/// `value` in lower case, without a copy when it already is (ASCII with no capitals).
fn lowercase(value: &str) -> std::borrow::Cow<'_, str> {
    if value
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(value.to_lowercase())
    }
}

fn fingerprint(kind: KeyKind, value: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), kind as u64)
}

impl DuplicateIndex {
    /// An empty index with the policy and limits of `rules`, spilling under the system's
    /// temporary directory (`TMPDIR`).
    pub fn new(rules: &Rules) -> Self {
        Self::with_store(
            rules.duplicates,
            std::env::temp_dir(),
            rules.duplicate_limits,
        )
    }

    /// An empty index spilling under `spill_parent` within `limits`.
    pub fn with_store(policy: DuplicatePolicy, spill_parent: PathBuf, limits: Limits) -> Self {
        DuplicateIndex {
            policy,
            first_line: FirstSeen::new(spill_parent, limits),
            new_keys: Vec::new(),
        }
    }

    /// How much of the index went to disk.
    pub fn spill_stats(&self) -> SpillStats {
        self.first_line.stats()
    }

    /// Adds duplicate issues to a checked row and, if it stays clean, enters its new keys.
    /// Fails only when the spill files cannot be written or read.
    pub fn check(&mut self, row: &mut CheckedRow) -> std::io::Result<()> {
        let Some(customer) = &row.customer else {
            return Ok(());
        };
        let line = row.raw.line;
        let new_keys = &mut self.new_keys;
        new_keys.clear();
        if !customer.external_id.is_empty() {
            let key = fingerprint(KeyKind::Id, &customer.external_id);
            match self.first_line.get(key)? {
                Some(first) => row.issues.push(
                    Issue::error(
                        IssueCode::IdDuplicate,
                        format!("external id already used on line {first}"),
                    )
                    .with_value(&customer.external_id),
                ),
                None => new_keys.push(key),
            }
        }
        if self.policy != DuplicatePolicy::Off {
            let severity = if self.policy == DuplicatePolicy::Error {
                Severity::Error
            } else {
                Severity::Warning
            };
            let emails = customer.email.iter().chain(&customer.other_emails);
            let candidates = emails
                .map(|e| {
                    (
                        fingerprint(KeyKind::Email, &lowercase(e)),
                        IssueCode::EmailDuplicate,
                        "email",
                        e,
                    )
                })
                .chain(customer.phones.iter().map(|p| {
                    (
                        fingerprint(KeyKind::Phone, p),
                        IssueCode::PhoneDuplicate,
                        "phone number",
                        p,
                    )
                }));
            for (key, code, what, value) in candidates {
                match self.first_line.get(key)? {
                    Some(first) => {
                        let mut issue =
                            Issue::error(code, format!("{what} already used on line {first}"))
                                .with_value(value);
                        issue.severity = severity;
                        row.issues.push(issue);
                    }
                    None => new_keys.push(key),
                }
            }
        }
        if row.is_clean() {
            // A value repeated within the row (an email also among the other emails) is one key.
            new_keys.sort_unstable();
            new_keys.dedup();
            for &key in new_keys.iter() {
                self.first_line.insert(key, line)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;

    fn row(columns: &[&str], values: &[&str], rules: &Rules) -> (Customer, Vec<Issue>) {
        let cols: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
        let mapping = Mapping::builtin().resolve(&cols);
        let raw = RawRow {
            line: 2,
            record: csv::StringRecord::from(values.to_vec()),
            read_issue: None,
            raw_text: None,
        };
        normalize(&raw, &mapping, rules)
    }

    fn codes(issues: &[Issue]) -> Vec<&'static str> {
        issues.iter().map(|i| i.code.as_str()).collect()
    }

    fn nl() -> Rules {
        Rules {
            default_region: phone::region_from_code("NL"),
            ..Rules::default()
        }
    }

    #[test]
    fn external_ids_with_control_characters_are_refused() {
        for id in ["C-1\u{0}", "C-1\u{1b}[31m", "C-\n1", "C\t1"] {
            let (_, issues) = row(&["external_id", "Email"], &[id, "a@example.com"], &nl());
            assert_eq!(codes(&issues), vec!["id.chars"], "{id:?}");
        }
        let (_, issues) = row(
            &["external_id", "Email"],
            &["C-1 ü", "a@example.com"],
            &nl(),
        );
        assert!(issues.is_empty());
    }

    #[test]
    fn a_good_row_is_normalized() {
        let (c, issues) = row(
            &[
                "id",
                "customer_id",
                "First Name",
                "Last Name",
                "Email",
                "Phone 1",
                "Phone 2",
                "Country",
                "tags",
                "custom_tier",
            ],
            &[
                "x",
                " C-1 ",
                " Zoë ",
                "van  der Berg",
                "Zoe@Example.NL",
                "06 12345678",
                "+49 30 1234567; 0612345678",
                "",
                "a, b;a",
                "gold",
            ],
            &nl(),
        );
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(c.external_id, "C-1");
        assert_eq!(c.firstname.as_deref(), Some("Zoë"));
        assert_eq!(c.lastname.as_deref(), Some("van der Berg"));
        assert_eq!(c.email.as_deref(), Some("Zoe@example.nl"));
        assert_eq!(c.phones, vec!["+31612345678", "+49301234567"]);
        assert_eq!(c.tags, vec!["a", "b"]);
        assert_eq!(
            c.custom_fields.get("tier").map(String::as_str),
            Some("gold")
        );
    }

    #[test]
    fn country_column_sets_the_phone_region() {
        let (c, issues) = row(
            &["external_id", "phone", "country"],
            &["1", "020 7946 0958", "United Kingdom"],
            &nl(),
        );
        assert!(issues.is_empty());
        assert_eq!(c.phones, vec!["+442079460958"]);
        assert_eq!(c.country.as_deref(), Some("GB"));
    }

    #[test]
    fn each_problem_has_its_code() {
        let (_, issues) = row(
            &["external_id", "email", "phone"],
            &["", "not-an-email", "123"],
            &nl(),
        );
        assert_eq!(
            codes(&issues),
            vec!["id.missing", "email.invalid", "phone.too_short"]
        );
        assert_eq!(issues[1].column.as_deref(), Some("email"));
        assert_eq!(issues[1].value.as_deref(), Some("not-an-email"));
    }

    #[test]
    fn omnidesk_name_rules() {
        let rules = Rules {
            platform: Some(Platform::Omnidesk),
            ..nl()
        };
        let (_, ok) = row(
            &["external_id", "firstname", "lastname"],
            &["1", "Anne-Marie", "O'Brien"],
            &rules,
        );
        assert!(ok.is_empty());
        let (_, bad) = row(
            &["external_id", "firstname", "lastname"],
            &["1", "R2D2", "王"],
            &rules,
        );
        assert_eq!(codes(&bad), vec!["name.chars", "name.chars"]);
    }

    #[test]
    fn udesk_rules() {
        let rules = Rules {
            platform: Some(Platform::Udesk),
            ..nl()
        };
        let (c, issues) = row(
            &["external_id", "firstname", "lastname", "level"],
            &["1", "Jan", "Jansen", "VIP"],
            &rules,
        );
        assert!(issues.is_empty());
        assert_eq!(c.nick_name.as_deref(), Some("Jan Jansen"));
        assert_eq!(c.level.as_deref(), Some("vip"));
        let long = "x".repeat(256);
        let (_, issues) = row(
            &[
                "external_id",
                "nick_name",
                "level",
                "custom_loyalty",
                "TextField_1",
            ],
            &["1", &long, "gold", "x", "y"],
            &rules,
        );
        assert_eq!(
            codes(&issues),
            vec!["custom.key", "name.too_long", "level.invalid"]
        );
        let (_, issues) = row(&["external_id"], &["1"], &rules);
        assert_eq!(codes(&issues), vec!["name.missing"]);
    }

    #[test]
    fn duplicates_are_found_on_normalized_values() {
        let cols: Vec<String> = ["external_id", "email", "phone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mapping = Mapping::builtin().resolve(&cols);
        let rules = nl();
        let mut index = DuplicateIndex::new(&rules);
        let mut check = |line: u64, values: &[&str]| {
            let raw = RawRow {
                line,
                record: csv::StringRecord::from(values.to_vec()),
                read_issue: None,
                raw_text: None,
            };
            let mut checked = check_row(raw, &mapping, &rules);
            index.check(&mut checked).unwrap();
            (checked.is_clean(), codes(&checked.issues))
        };
        assert_eq!(check(2, &["A", "a@x.nl", "0612345678"]), (true, vec![]));
        assert_eq!(
            check(3, &["B", "a@X.NL", "+31 6 12345678"]),
            (true, vec!["email.duplicate", "phone.duplicate"])
        );
        assert_eq!(
            check(4, &["A", "c@x.nl", ""]),
            (false, vec!["id.duplicate"])
        );
    }
}
