//! Domain types shared by every stage: the row as read, the normalized [`Customer`],
//! and the [`Issue`]s found on the way.
//!
//! Invariant: a [`RawRow`] keeps the 1-based line of the source where it starts, and
//! every issue about it is reported with that line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One row as read from the source, before mapping.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// 1-based line of the source where the row starts.
    pub line: u64,
    /// Field values, aligned with the batch's column names (missing trailing values are empty).
    pub record: csv::StringRecord,
    /// A problem the reader found (ragged row, bad encoding, broken JSON…); such a row is rejected.
    pub read_issue: Option<Issue>,
    /// The original source text for rows that could not be split into fields (broken JSON lines).
    pub raw_text: Option<String>,
}

/// A run of rows that share one column list; the unit passed between pipeline stages.
#[derive(Debug, Clone)]
pub struct RowBatch {
    /// Column names for every row of the batch (JSONL sources grow this list as keys appear).
    pub columns: Arc<Vec<String>>,
    /// The rows, in source order.
    pub rows: Vec<RawRow>,
}

/// A customer after validation and normalization: what the targets write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The external (primary) id: Omnidesk `primary_id`, Udesk `open_api_token`.
    pub external_id: String,
    /// Given name, trimmed, inner whitespace collapsed, NFC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstname: Option<String>,
    /// Family name, normalized as `firstname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lastname: Option<String>,
    /// Display name (Udesk `nick_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    /// Primary email, domain lower-cased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Further emails, normalized as `email`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_emails: Vec<String>,
    /// Phone numbers in E.164, first is primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// Extensions the phone numbers had, which E.164 and the platforms cannot hold:
    /// `+13637170669 x0743` (kept for the clean file; never sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_extensions: Vec<String>,
    /// ISO 3166-1 alpha-2 country code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Customer level (Udesk `normal` or `vip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Tags, trimmed, without empties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Omnidesk brand id, when the row carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<u64>,
    /// Custom fields by name (Omnidesk `custom_<name>`, Udesk `TextField_N`/`SelectField_N`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
}

/// How serious an issue is: errors reject the row, warnings keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The row is kept; the issue is reported.
    Warning,
    /// The row is rejected.
    Error,
}

/// Stable issue codes; their text form (`phone.invalid`, …) is part of the public interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IssueCode {
    /// A CSV row with more or fewer fields than the header.
    CsvRagged,
    /// A quoted CSV field that is never closed.
    CsvUnterminatedQuote,
    /// A quote inside a quoted field that is not doubled: the value may not be what was meant.
    CsvStrayQuote,
    /// A row whose bytes are not valid in the source encoding.
    EncodingInvalid,
    /// A JSONL line that is not valid JSON.
    JsonInvalid,
    /// A JSONL line that is valid JSON but not an object.
    JsonNotObject,
    /// A JSONL line whose keys would take the file past the distinct-key limit.
    JsonTooManyKeys,
    /// Text that looks like UTF-8 read as a single-byte encoding (a file mixing encodings).
    EncodingMixed,
    /// A field larger than `--max-field-bytes`.
    FieldTooLarge,
    /// No external id.
    IdMissing,
    /// The external id appeared on an earlier row.
    IdDuplicate,
    /// The external id is longer than the platform allows.
    IdTooLong,
    /// The external id holds control characters (NUL, escape sequences, line breaks).
    IdChars,
    /// A phone number that is not a valid number for its region.
    PhoneInvalid,
    /// A phone number with too few digits.
    PhoneTooShort,
    /// A phone number with too many digits.
    PhoneTooLong,
    /// A phone number whose length matches no number of its region.
    PhoneInvalidLength,
    /// A phone number with an unknown country calling code.
    PhoneCountryCode,
    /// A national-format phone number with no region to read it in.
    PhoneNoRegion,
    /// A phone number with an extension, which the platforms cannot store.
    PhoneExtension,
    /// The normalized phone number appeared on an earlier row.
    PhoneDuplicate,
    /// An email address that is not valid.
    EmailInvalid,
    /// An email address longer than the platform allows.
    EmailTooLong,
    /// The normalized email appeared on an earlier row.
    EmailDuplicate,
    /// A name with characters the platform refuses.
    NameChars,
    /// A name longer than the platform allows.
    NameTooLong,
    /// No name where the platform requires one.
    NameMissing,
    /// A country that is neither an ISO code nor a known English name.
    CountryUnknown,
    /// A level the platform does not know.
    LevelInvalid,
    /// A brand id that is not a positive integer.
    BrandInvalid,
    /// A custom field key the platform does not accept.
    CustomKey,
    /// A custom field value that does not fit the field's type or options.
    CustomValue,
    /// A custom field the account requires is empty.
    CustomRequired,
    /// A text longer than the platform allows.
    TextTooLong,
    /// A tag the platform cannot store.
    TagInvalid,
}

impl IssueCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [IssueCode] = &[
        IssueCode::CsvRagged,
        IssueCode::CsvUnterminatedQuote,
        IssueCode::CsvStrayQuote,
        IssueCode::EncodingInvalid,
        IssueCode::JsonInvalid,
        IssueCode::JsonNotObject,
        IssueCode::JsonTooManyKeys,
        IssueCode::EncodingMixed,
        IssueCode::FieldTooLarge,
        IssueCode::IdMissing,
        IssueCode::IdDuplicate,
        IssueCode::IdTooLong,
        IssueCode::IdChars,
        IssueCode::PhoneInvalid,
        IssueCode::PhoneTooShort,
        IssueCode::PhoneTooLong,
        IssueCode::PhoneInvalidLength,
        IssueCode::PhoneCountryCode,
        IssueCode::PhoneNoRegion,
        IssueCode::PhoneExtension,
        IssueCode::PhoneDuplicate,
        IssueCode::EmailInvalid,
        IssueCode::EmailTooLong,
        IssueCode::EmailDuplicate,
        IssueCode::NameChars,
        IssueCode::NameTooLong,
        IssueCode::NameMissing,
        IssueCode::CountryUnknown,
        IssueCode::LevelInvalid,
        IssueCode::BrandInvalid,
        IssueCode::CustomKey,
        IssueCode::CustomValue,
        IssueCode::CustomRequired,
        IssueCode::TextTooLong,
        IssueCode::TagInvalid,
    ];

    /// The stable text form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::CsvRagged => "csv.ragged",
            IssueCode::CsvUnterminatedQuote => "csv.unterminated_quote",
            IssueCode::CsvStrayQuote => "csv.stray_quote",
            IssueCode::EncodingInvalid => "encoding.invalid",
            IssueCode::JsonInvalid => "json.invalid",
            IssueCode::JsonNotObject => "json.not_object",
            IssueCode::JsonTooManyKeys => "json.too_many_keys",
            IssueCode::EncodingMixed => "encoding.mixed",
            IssueCode::FieldTooLarge => "field.too_large",
            IssueCode::IdMissing => "id.missing",
            IssueCode::IdDuplicate => "id.duplicate",
            IssueCode::IdTooLong => "id.too_long",
            IssueCode::IdChars => "id.chars",
            IssueCode::PhoneInvalid => "phone.invalid",
            IssueCode::PhoneTooShort => "phone.too_short",
            IssueCode::PhoneTooLong => "phone.too_long",
            IssueCode::PhoneInvalidLength => "phone.invalid_length",
            IssueCode::PhoneCountryCode => "phone.country_code",
            IssueCode::PhoneNoRegion => "phone.no_region",
            IssueCode::PhoneExtension => "phone.extension",
            IssueCode::PhoneDuplicate => "phone.duplicate",
            IssueCode::EmailInvalid => "email.invalid",
            IssueCode::EmailTooLong => "email.too_long",
            IssueCode::EmailDuplicate => "email.duplicate",
            IssueCode::NameChars => "name.chars",
            IssueCode::NameTooLong => "name.too_long",
            IssueCode::NameMissing => "name.missing",
            IssueCode::CountryUnknown => "country.unknown",
            IssueCode::LevelInvalid => "level.invalid",
            IssueCode::BrandInvalid => "brand.invalid",
            IssueCode::CustomKey => "custom.key",
            IssueCode::CustomValue => "custom.value",
            IssueCode::CustomRequired => "custom.required",
            IssueCode::TextTooLong => "text.too_long",
            IssueCode::TagInvalid => "tag.invalid",
        }
    }
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IssueCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem found in one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Stable code, e.g. `phone.invalid`.
    pub code: IssueCode,
    /// Whether the row is rejected for it.
    pub severity: Severity,
    /// The source column the value came from, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The raw value (cut to 200 characters), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A human explanation.
    pub message: String,
}

/// Longest raw value quoted back in an issue.
const MAX_QUOTED_VALUE_CHARS: usize = 200;

impl Issue {
    /// An error (rejects the row).
    pub fn error(code: IssueCode, message: impl Into<String>) -> Self {
        Issue {
            code,
            severity: Severity::Error,
            column: None,
            value: None,
            message: message.into(),
        }
    }

    /// A warning (the row is kept).
    pub fn warning(code: IssueCode, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, message)
        }
    }

    /// Names the source column.
    pub fn in_column(mut self, column: &str) -> Self {
        self.column = Some(column.to_string());
        self
    }

    /// Quotes the raw value (cut to a readable length).
    pub fn with_value(mut self, value: &str) -> Self {
        let quoted = if value.chars().count() > MAX_QUOTED_VALUE_CHARS {
            let cut: String = value.chars().take(MAX_QUOTED_VALUE_CHARS).collect();
            format!("{cut}…")
        } else {
            value.to_string()
        };
        self.value = Some(quoted);
        self
    }

    /// True when the issue rejects the row.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// What validation made of one row.
#[derive(Debug, Clone)]
pub struct CheckedRow {
    /// The row as read, kept for the rejects file.
    pub raw: RawRow,
    /// The normalized customer (present even when the row has errors, for reporting).
    pub customer: Option<Customer>,
    /// Every issue found, errors and warnings.
    pub issues: Vec<Issue>,
}

impl CheckedRow {
    /// True when no issue rejects the row.
    pub fn is_clean(&self) -> bool {
        self.customer.is_some() && !self.issues.iter().any(Issue::is_error)
    }

    /// The source row and its customer when the row is clean; the row itself otherwise.
    pub fn into_clean(self) -> Result<(RawRow, Customer), Box<CheckedRow>> {
        match self {
            CheckedRow {
                raw,
                customer: Some(customer),
                issues,
            } if !issues.iter().any(Issue::is_error) => Ok((raw, customer)),
            rejected => Err(Box::new(rejected)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(customer: Option<Customer>, issues: Vec<Issue>) -> CheckedRow {
        CheckedRow {
            raw: RawRow {
                line: 7,
                record: csv::StringRecord::new(),
                read_issue: None,
                raw_text: None,
            },
            customer,
            issues,
        }
    }

    #[test]
    fn into_clean_gives_the_customer_only_for_clean_rows() {
        let c = Customer::default();
        let warning = Issue::warning(IssueCode::EmailDuplicate, "seen");
        let error = Issue::error(IssueCode::EmailInvalid, "bad");
        assert!(row(Some(c.clone()), vec![warning]).into_clean().is_ok());
        assert!(row(Some(c), vec![error]).into_clean().is_err());
        assert_eq!(row(None, vec![]).into_clean().unwrap_err().raw.line, 7);
    }
}
