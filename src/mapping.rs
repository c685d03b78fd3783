//! Mapping: source columns → canonical customer fields.
//!
//! Common header spellings are recognised with no configuration: names are compared with
//! case, spaces, `_`, `-` and `.` ignored (`First Name` = `first_name` = `firstname`). A TOML
//! file given with `--map` takes precedence:
//!
//! ```toml
//! [columns]
//! "Klantnummer" = "external_id"
//! "Loyalty tier" = "custom.TextField_3"
//! "Internal notes" = "ignore"
//! ```
//!
//! Columns named `custom_<name>`, `custom.<name>` or `custom_fields.<name>`, and Udesk-style
//! `TextField_N`/`SelectField_N`, are custom fields. Columns starting with `deskport_` (the
//! bookkeeping columns of our own rejects file) are ignored, so a fixed rejects file can be
//! fed back as input. Every other column is listed as unmapped, never dropped silently.

use crate::fields::FieldDefs;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The canonical fields a column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The external id.
    ExternalId,
    /// Given name.
    Firstname,
    /// Family name.
    Lastname,
    /// Display name.
    NickName,
    /// Primary email.
    Email,
    /// Further emails (multi-valued).
    OtherEmails,
    /// Phone numbers (multi-valued; several columns allowed).
    Phone,
    /// Country, for reading national phone numbers.
    Country,
    /// Customer level.
    Level,
    /// Tags (multi-valued).
    Tags,
    /// Description.
    Description,
    /// Omnidesk brand id.
    BrandId,
    /// Phone extensions a clean file noted (`+13637170669 x0743`).
    PhoneExtensions,
}

impl Field {
    /// Every field, in canonical column order.
    pub const ALL: [Field; 13] = [
        Field::ExternalId,
        Field::Firstname,
        Field::Lastname,
        Field::NickName,
        Field::Email,
        Field::OtherEmails,
        Field::Phone,
        Field::Country,
        Field::Level,
        Field::Tags,
        Field::Description,
        Field::BrandId,
        Field::PhoneExtensions,
    ];

    /// The canonical name, as used in mapping files and clean output.
    pub fn name(self) -> &'static str {
        match self {
            Field::ExternalId => "external_id",
            Field::Firstname => "firstname",
            Field::Lastname => "lastname",
            Field::NickName => "nick_name",
            Field::Email => "email",
            Field::OtherEmails => "other_emails",
            Field::Phone => "phone",
            Field::Country => "country",
            Field::Level => "level",
            Field::Tags => "tags",
            Field::Description => "description",
            Field::BrandId => "brand_id",
            Field::PhoneExtensions => "phone_extensions",
        }
    }

    /// Whether several columns (and several values per cell) may feed this field.
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Field::OtherEmails | Field::Phone | Field::Tags | Field::PhoneExtensions
        )
    }

    /// Parses a canonical name (also accepting the recognised synonyms).
    pub fn parse(name: &str) -> Option<Field> {
        synonym(&squash(name))
    }
}

/// Where one source column goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Target {
    /// A canonical field.
    Field(#[serde(serialize_with = "serialize_field")] Field),
    /// A custom field with this key.
    Custom(String),
    /// Custom fields as one JSON object (`custom_fields_json`, the column an export writes
    /// for fields without a column of their own).
    CustomJson,
    /// Deliberately not used.
    Ignore,
    /// Not recognised; listed in the report.
    Unmapped,
}

fn serialize_field<S: serde::Serializer>(f: &Field, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.name())
}

impl Target {
    /// A short display form: `email`, `custom.TextField_1`, `(ignored)`, `(unmapped)`.
    pub fn display(&self) -> String {
        match self {
            Target::Field(f) => f.name().to_string(),
            Target::Custom(k) => format!("custom.{k}"),
            Target::CustomJson => "custom.* (JSON object)".to_string(),
            Target::Ignore => "(ignored)".to_string(),
            Target::Unmapped => "(unmapped)".to_string(),
        }
    }
}

/// Errors in a mapping file.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read mapping file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("mapping file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A target is neither a canonical field, `custom.<name>` nor `ignore`.
    #[error("mapping file {path}: column {column:?} maps to {target:?}, which is not a field (use one of: {fields}, custom.<name>, ignore)")]
    UnknownTarget {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The target given.
        target: String,
        /// The valid field names.
        fields: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    columns: HashMap<String, String>,
}

/// The mapping rules: explicit overrides plus the built-in synonyms, and the account's
/// custom fields when known (columns then map to them by key or title).
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    overrides: Vec<(String, Target)>,
    fields: Option<Arc<FieldDefs>>,
}

impl Mapping {
    /// `builtin`, or a hash of the overrides, which a journal keeps so a resume with
    /// another mapping is refused.
    pub fn identity(&self) -> String {
        if self.overrides.is_empty() {
            return "builtin".to_string();
        }
        let text = format!("{:?}", self.overrides);
        format!(
            "map xxh3:{:016x}",
            xxhash_rust::xxh3::xxh3_64(text.as_bytes())
        )
    }

    /// Only the built-in synonyms.
    pub fn builtin() -> Self {
        Mapping::default()
    }

    /// The same rules, with the account's custom fields: a column whose header is a field's
    /// key or title maps to it, and a custom column that names no field is a configuration
    /// error ([`ResolvedMapping::configuration_error`]).
    pub fn with_fields(mut self, fields: Arc<FieldDefs>) -> Self {
        self.fields = Some(fields);
        self
    }

    /// The account's custom fields, if known.
    pub fn fields(&self) -> Option<&Arc<FieldDefs>> {
        self.fields.as_ref()
    }

    /// Loads a TOML mapping file.
    pub fn from_file(path: &Path) -> Result<Self, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses mapping TOML (`path` is only used in messages).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, MappingError> {
        let file: MappingFile = toml::from_str(text).map_err(|e| MappingError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut overrides = Vec::new();
        let mut entries: Vec<_> = file.columns.into_iter().collect();
        entries.sort();
        for (column, target) in entries {
            let parsed = parse_target(&target).ok_or_else(|| MappingError::UnknownTarget {
                path: path.to_path_buf(),
                column: column.clone(),
                target: target.clone(),
                fields: Field::ALL.map(Field::name).join(", "),
            })?;
            overrides.push((column, parsed));
        }
        Ok(Mapping {
            overrides,
            fields: None,
        })
    }

    /// Decides where each column goes.
    pub fn resolve(&self, columns: &[String]) -> ResolvedMapping {
        let mut targets = Vec::with_capacity(columns.len());
        let mut taken: HashMap<Field, usize> = HashMap::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut custom_taken: HashMap<String, usize> = HashMap::new();
        for (i, column) in columns.iter().enumerate() {
            let mut target = self.target_for(column);
            if let Some(fields) = &self.fields {
                target = account_field(fields, column, target, &mut problems);
            }
            if let Target::Custom(key) = &target {
                if let Some(&first) = custom_taken.get(key) {
                    notes.push(format!(
                        "column {column:?} also feeds custom.{key}, which column {:?} already feeds; left unmapped",
                        columns[first]
                    ));
                    target = Target::Unmapped;
                } else {
                    custom_taken.insert(key.clone(), i);
                }
            }
            if let Target::Field(field) = target {
                if !field.is_multi() {
                    if let Some(&first) = taken.get(&field) {
                        if field == Field::Email {
                            target = Target::Field(Field::OtherEmails);
                        } else {
                            notes.push(format!(
                                "column {column:?} also looks like {}, which column {:?} already feeds; left unmapped",
                                field.name(),
                                columns[first]
                            ));
                            target = Target::Unmapped;
                        }
                    } else {
                        taken.insert(field, i);
                    }
                }
            }
            targets.push(target);
        }
        // No column is named like an external id: a plain `id` (or `ref`) column is one.
        if !targets.contains(&Target::Field(Field::ExternalId)) {
            let plain = |c: &String| {
                matches!(
                    squash(c).as_str(),
                    "id" | "identifier" | "ref" | "reference"
                )
            };
            if let Some(i) =
                (0..columns.len()).find(|&i| targets[i] == Target::Unmapped && plain(&columns[i]))
            {
                targets[i] = Target::Field(Field::ExternalId);
                notes.push(format!(
                    "column {:?} feeds external_id: no column is named like an external id",
                    columns[i]
                ));
            }
        }
        ResolvedMapping {
            columns: columns.to_vec(),
            targets,
            notes,
            problems,
            fields: self.fields.clone(),
        }
    }

    fn target_for(&self, column: &str) -> Target {
        let trimmed = column.trim();
        if let Some((_, t)) = self.overrides.iter().find(|(c, _)| c.trim() == trimmed) {
            return t.clone();
        }
        let squashed = squash(trimmed);
        if let Some((_, t)) = self.overrides.iter().find(|(c, _)| squash(c) == squashed) {
            return t.clone();
        }
        builtin_target(trimmed)
    }
}

/// Where a column goes once the account's fields are known: a custom column to the field
/// its name matches (by key or title), an unmapped one to the field its header matches; a
/// custom column that matches none (or several) is kept and described in `problems`.
fn account_field(
    fields: &FieldDefs,
    column: &str,
    target: Target,
    problems: &mut Vec<String>,
) -> Target {
    match target {
        Target::Custom(name) => match fields.find(&name).as_slice() {
            [one] => Target::Custom(one.key.clone()),
            [] => {
                let closest: Vec<String> =
                    fields.closest(&name).iter().map(|f| f.label()).collect();
                problems.push(format!(
                    "column {column:?} maps to custom field {name:?}, which the account does not have{}",
                    if closest.is_empty() {
                        " (it has no custom fields)".to_string()
                    } else {
                        format!("; the closest are {}", closest.join(", "))
                    }
                ));
                Target::Custom(name)
            }
            many => {
                let names: Vec<String> = many.iter().map(|f| f.label()).collect();
                problems.push(format!(
                    "column {column:?} matches several custom fields ({}); name one with --map",
                    names.join(", ")
                ));
                Target::Custom(name)
            }
        },
        Target::Unmapped => match fields.find(column).as_slice() {
            [one] => Target::Custom(one.key.clone()),
            _ => Target::Unmapped,
        },
        other => other,
    }
}

/// The mapping applied to one list of columns.
#[derive(Debug, Clone)]
pub struct ResolvedMapping {
    /// The source columns.
    pub columns: Vec<String>,
    /// Where each goes, aligned with `columns`.
    pub targets: Vec<Target>,
    /// Remarks for the user (e.g. a second column for the same field).
    pub notes: Vec<String>,
    /// Custom columns that name no field of the account (or several): a configuration
    /// error, reported once before any row is checked.
    pub problems: Vec<String>,
    /// The account's custom fields, when known.
    pub fields: Option<Arc<FieldDefs>>,
}

impl PartialEq for ResolvedMapping {
    fn eq(&self, other: &Self) -> bool {
        self.columns == other.columns
            && self.targets == other.targets
            && self.notes == other.notes
            && self.problems == other.problems
    }
}

/// One line of the mapping as reported.
#[derive(Debug, Clone, Serialize)]
pub struct MappingEntry {
    /// The source column.
    pub column: String,
    /// Where it goes (`email`, `custom.X`, `(ignored)`, `(unmapped)`).
    pub target: String,
}

impl ResolvedMapping {
    /// The columns no rule recognised.
    pub fn unmapped(&self) -> Vec<String> {
        self.columns
            .iter()
            .zip(&self.targets)
            .filter(|(_, t)| **t == Target::Unmapped)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Every column with its target.
    pub fn entries(&self) -> Vec<MappingEntry> {
        self.columns
            .iter()
            .zip(&self.targets)
            .map(|(c, t)| MappingEntry {
                column: c.clone(),
                target: t.display(),
            })
            .collect()
    }

    /// Whether some column feeds this field.
    pub fn has(&self, field: Field) -> bool {
        self.targets.contains(&Target::Field(field))
    }

    /// The one error a run must stop on before any row is checked: custom columns that name
    /// no field of the account, and (when `required` is true, as when rows may be created)
    /// required fields no column feeds, which would reject every row alike.
    pub fn configuration_error(&self, required: bool) -> Option<String> {
        let mut problems = self.problems.clone();
        let json_column = self.targets.contains(&Target::CustomJson);
        if let (Some(fields), true, false) = (&self.fields, required, json_column) {
            let missing: Vec<String> = fields
                .required()
                .filter(|f| !self.targets.contains(&Target::Custom(f.key.clone())))
                .map(|f| f.label())
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "the account requires custom field{} {} and no column feeds {}; add the column{} or map one with --map",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", "),
                    if missing.len() > 1 { "them" } else { "it" },
                    if missing.len() > 1 { "s" } else { "" },
                ));
            }
        }
        if problems.is_empty() {
            return None;
        }
        let source = self.fields.as_ref().map_or(String::new(), |f| {
            format!(" (custom fields from {})", f.source)
        });
        Some(format!(
            "the columns do not fit the account{source}:\n  {}\n`deskport fields` lists the account's fields",
            problems.join("\n  ")
        ))
    }

    /// A table for `--print-mapping`.
    pub fn render(&self) -> String {
        let width = self
            .columns
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = format!("{:<width$}  target\n", "column");
        for (entry, target) in self.entries().into_iter().zip(&self.targets) {
            let about = match (target, &self.fields) {
                (Target::Custom(key), Some(fields)) => fields
                    .get(key)
                    .map(|f| format!("  ({:?}, {})", f.title, f.content_type))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{:<width$}  {}{about}\n",
                entry.column, entry.target
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for problem in &self.problems {
            out.push_str(&format!("error: {problem}\n"));
        }
        if !self.has(Field::ExternalId) {
            out.push_str("note: no column feeds external_id, so every row will be rejected with id.missing; map one with --map\n");
        }
        out
    }
}

/// Lower-cases and removes spaces, `_`, `-` and `.` for comparing header spellings.
pub fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '\t'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn parse_target(target: &str) -> Option<Target> {
    let t = target.trim();
    if t.eq_ignore_ascii_case("ignore") {
        return Some(Target::Ignore);
    }
    if let Some(key) = t
        .strip_prefix("custom.")
        .or_else(|| t.strip_prefix("custom_fields."))
    {
        return (!key.is_empty()).then(|| Target::Custom(key.to_string()));
    }
    Field::parse(t).map(Target::Field)
}

fn builtin_target(column: &str) -> Target {
    let lower = column.to_ascii_lowercase();
    if lower.starts_with("deskport_") {
        return Target::Ignore;
    }
    if lower == crate::export::record::EXTRA_CUSTOM_COLUMN {
        return Target::CustomJson;
    }
    for prefix in ["custom_fields.", "custom.", "custom_"] {
        if lower.starts_with(prefix) && column.len() > prefix.len() {
            return Target::Custom(column[prefix.len()..].to_string());
        }
    }
    if is_udesk_custom_key(column) {
        return Target::Custom(column.to_string());
    }
    let squashed = squash(column);
    if let Some(field) = synonym(&squashed) {
        return Target::Field(field);
    }
    // Numbered variants: `Phone 2`, `email3`, `mobile_1`.
    let base = squashed.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() < squashed.len() {
        match synonym(base) {
            Some(Field::Phone) => return Target::Field(Field::Phone),
            Some(Field::Email) | Some(Field::OtherEmails) => {
                let n: u32 = squashed[base.len()..].parse().unwrap_or(1);
                return Target::Field(if n <= 1 {
                    Field::Email
                } else {
                    Field::OtherEmails
                });
            }
            _ => {}
        }
    }
    Target::Unmapped
}

/// Udesk custom field keys: `TextField_N` or `SelectField_N`.
pub fn is_udesk_custom_key(key: &str) -> bool {
    let rest = key
        .strip_prefix("TextField_")
        .or_else(|| key.strip_prefix("SelectField_"));
    rest.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The built-in synonyms, by squashed name.
fn synonym(squashed: &str) -> Option<Field> {
    let field = match squashed {
        "externalid" | "customerid" | "primaryid" | "externalprimaryid" | "openapitoken"
        | "clientid" | "customerno" | "customernumber" | "customerref" | "customerreference"
        | "contactid" | "accountid" | "crmid" | "uid" | "userid" | "klantnummer"
        | "kundennummer" => Field::ExternalId,
        "firstname" | "givenname" | "forename" | "first" | "fname" | "voornaam" | "vorname"
        | "prenom" => Field::Firstname,
        "lastname" | "surname" | "familyname" | "last" | "lname" | "achternaam" | "nachname"
        | "nom" => Field::Lastname,
        "nickname" | "name" | "fullname" | "displayname" | "customername" | "contactname" => {
            Field::NickName
        }
        "email" | "emailaddress" | "mail" | "primaryemail" | "emailprimary" | "eaddress" => {
            Field::Email
        }
        "otheremails" | "otheremail" | "secondaryemail" | "extraemail" | "extraemails"
        | "additionalemails" | "additionalemail" | "alternateemail" | "alternativeemail" => {
            Field::OtherEmails
        }
        "phone" | "phones" | "phonenumber" | "phonenumbers" | "telephone" | "tel" | "telefoon"
        | "telefon" | "mobile" | "mobilephone" | "mobilenumber" | "cellphone" | "cellphones"
        | "cell" | "gsm" | "mobiel" | "extratelephone" | "workphone" | "homephone"
        | "businessphone" | "phoneprimary" | "primaryphone" => Field::Phone,
        "country" | "countrycode" | "countryiso" | "countryname" | "land" | "nationality" => {
            Field::Country
        }
        "level" | "customerlevel" | "tier" => Field::Level,
        "tags" | "tag" | "labels" | "label" => Field::Tags,
        "description" | "notes" | "note" | "comment" | "comments" | "remarks" => Field::Description,
        "brandid" | "brand" => Field::BrandId,
        "phoneextensions" | "extensions" | "phoneextension" => Field::PhoneExtensions,
        _ => return None,
    };
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(columns: &[&str]) -> Vec<String> {
        let cols: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
        Mapping::builtin()
            .resolve(&cols)
            .targets
            .iter()
            .map(Target::display)
            .collect()
    }

    #[test]
    fn common_spellings_map_without_configuration() {
        assert_eq!(
            targets(&[
                "Customer Id",
                "First Name",
                "given_name",
                "E-mail",
                "Phone 1",
                "Phone 2",
                "mobile",
                "cellphone"
            ]),
            vec![
                "external_id",
                "firstname",
                "(unmapped)",
                "email",
                "phone",
                "phone",
                "phone",
                "phone"
            ]
        );
        assert_eq!(
            targets(&[
                "primary_id",
                "Last-Name",
                "email_address",
                "Email 2",
                "telephone",
                "open_api_token"
            ]),
            vec![
                "external_id",
                "lastname",
                "email",
                "other_emails",
                "phone",
                "(unmapped)"
            ]
        );
    }

    #[test]
    fn custom_columns_and_bookkeeping_columns() {
        assert_eq!(
            targets(&[
                "custom_loyalty",
                "custom.tier",
                "custom_fields.TextField_2",
                "TextField_1",
                "deskport_line",
                "Shoe size"
            ]),
            vec![
                "custom.loyalty",
                "custom.tier",
                "custom.TextField_2",
                "custom.TextField_1",
                "(ignored)",
                "(unmapped)"
            ]
        );
    }

    #[test]
    fn the_accounts_fields_map_by_title_and_a_custom_column_naming_none_is_one_error() {
        let reply = serde_json::json!({"custom_fields": [
            {"custom_field_name": "TextField_3", "title": "Signup date", "content_type": "date"},
            {"custom_field_name": "SelectField_1", "title": "Loyalty tier", "content_type": "droplist", "agent_permission": 1},
        ]});
        let fields = Arc::new(FieldDefs::from_udesk_reply(&reply, "test"));
        let mapping = Mapping::builtin().with_fields(fields);
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let resolved = mapping.resolve(&cols(&[
            "id",
            "Signup Date",
            "custom_loyalty_tier",
            "Shoe size",
        ]));
        let shown: Vec<String> = resolved.targets.iter().map(Target::display).collect();
        assert_eq!(
            shown,
            [
                "external_id",
                "custom.TextField_3",
                "custom.SelectField_1",
                "(unmapped)"
            ]
        );
        assert_eq!(resolved.configuration_error(true), None);
        // A custom column naming no field, and a required field no column feeds.
        let resolved = mapping.resolve(&cols(&["customer_id", "custom_shoe_size"]));
        let error = resolved.configuration_error(true).unwrap();
        assert!(
            error.contains("\"custom_shoe_size\" maps to custom field \"shoe_size\""),
            "{error}"
        );
        assert!(
            error.contains("requires custom field SelectField_1 (\"Loyalty tier\")"),
            "{error}"
        );
        // Updating only: the required field is no configuration error.
        let resolved = mapping.resolve(&cols(&["customer_id", "Signup date"]));
        assert_eq!(resolved.configuration_error(false), None);
        assert!(resolved.configuration_error(true).is_some());
    }

    #[test]
    fn second_email_column_becomes_other_email() {
        assert_eq!(targets(&["email", "mail"]), vec!["email", "other_emails"]);
    }

    #[test]
    fn mapping_file_overrides() {
        let m = Mapping::from_toml(
            "[columns]\n\"Klantnummer\" = \"external_id\"\n\"Loyalty\" = \"custom.TextField_3\"\n\"email\" = \"ignore\"\n",
            Path::new("m.toml"),
        )
        .unwrap();
        let cols: Vec<String> = ["Klantnummer", "loyalty", "Email"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let shown: Vec<String> = m
            .resolve(&cols)
            .targets
            .iter()
            .map(Target::display)
            .collect();
        assert_eq!(
            shown,
            vec!["external_id", "custom.TextField_3", "(ignored)"]
        );
    }

    #[test]
    fn bad_mapping_target_is_a_clear_error() {
        let err =
            Mapping::from_toml("[columns]\n\"x\" = \"emial\"\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("emial"));
    }
}
