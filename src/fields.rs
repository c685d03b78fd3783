//! Custom field definitions as the account defines them — key, title, type, options,
//! required — read from Udesk's `GET /customers/custom_fields` (003:945-1121), from a file
//! saved by `deskport fields --out`, or (Omnidesk, which publishes no definitions) from
//! the keys its records show; and [`FieldDef::check`], the one value check `validate`,
//! `import` and the dry run share.

use crate::mapping::squash;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// A field's type, from Udesk's `content_type` (003:1000-1121).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `text`: one line of text.
    Text,
    /// `area_text`: several lines of text.
    AreaText,
    /// `date`: `YYYY-MM-DD`.
    Date,
    /// `time`: `HH:MM:SS`.
    Time,
    /// `datetime`: `YYYY-MM-DD HH:MM`.
    DateTime,
    /// `link`: an http(s) URL.
    Link,
    /// `number`: a non-negative integer ("Positive integer field").
    Number,
    /// `numeric`: a decimal number.
    Numeric,
    /// `droplist`: exactly one option.
    Droplist,
    /// `radio`: exactly one option.
    Radio,
    /// `checkbox`: any number of options.
    Checkbox,
    /// A type deskport does not know: the value is sent as written.
    Other,
}

impl FieldType {
    /// The type of a `content_type` text.
    pub fn parse(content_type: &str) -> FieldType {
        match content_type.trim().to_ascii_lowercase().as_str() {
            "text" => FieldType::Text,
            "area_text" | "textarea" => FieldType::AreaText,
            "date" => FieldType::Date,
            "time" => FieldType::Time,
            "datetime" | "date_time" => FieldType::DateTime,
            "link" | "url" => FieldType::Link,
            "number" => FieldType::Number,
            "numeric" | "decimal" => FieldType::Numeric,
            "droplist" | "dropdown" | "select" => FieldType::Droplist,
            "radio" => FieldType::Radio,
            "checkbox" | "multiselect" => FieldType::Checkbox,
            _ => FieldType::Other,
        }
    }

    /// Whether the value is a choice among options.
    pub fn is_select(self) -> bool {
        matches!(
            self,
            FieldType::Droplist | FieldType::Radio | FieldType::Checkbox
        )
    }

    /// What a value of this type looks like, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            FieldType::Date => "a date YYYY-MM-DD",
            FieldType::Time => "a time HH:MM:SS",
            FieldType::DateTime => "a date and time YYYY-MM-DD HH:MM",
            FieldType::Link => "a link starting with http:// or https://",
            FieldType::Number => "a whole number, 0 or more",
            FieldType::Numeric => "a number such as 12 or -3.75",
            FieldType::Droplist | FieldType::Radio => "exactly one of the options",
            FieldType::Checkbox => "options separated by ;",
            FieldType::Text | FieldType::AreaText | FieldType::Other => "text",
        }
    }
}

/// One option of a select field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOption {
    /// The id the platform stores (`"0"` in `{"0": "option 1"}`).
    pub id: String,
    /// What people see (`"option 1"`).
    pub title: String,
}

/// One custom field of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// The key the API uses (`TextField_3`; on Omnidesk the field's name).
    pub key: String,
    /// The name people see ("Date Field"); empty when the platform does not say.
    #[serde(default)]
    pub title: String,
    /// The platform's `content_type` (`date`, `droplist`, …); `text` when unknown.
    #[serde(default = "text_type")]
    pub content_type: String,
    /// The options of a select field.
    #[serde(default)]
    pub options: Vec<FieldOption>,
    /// Whether the platform refuses a customer without it (Udesk `agent_permission` 1).
    #[serde(default)]
    pub required: bool,
}

fn text_type() -> String {
    "text".into()
}

/// How to read a date written with slashes or dots and the day and month both ≤ 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// Refuse such a date as ambiguous (the default); `2024-4-2` and `25/04/2024` still pass.
    #[default]
    Strict,
    /// Day first: `02/04/2024` is 2 April.
    Dmy,
    /// Month first: `02/04/2024` is 4 February.
    Mdy,
}

/// Why a value does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// What was expected, said to the person who wrote the value.
    pub expected: String,
}

impl FieldDef {
    /// The field's type.
    pub fn field_type(&self) -> FieldType {
        FieldType::parse(&self.content_type)
    }

    /// `TextField_3 ("Date Field")`, for messages.
    pub fn label(&self) -> String {
        if self.title.is_empty() {
            self.key.clone()
        } else {
            format!("{} ({:?})", self.key, self.title)
        }
    }

    /// Checks one value against the field and returns it as the platform stores it:
    /// dates, times and numbers in the documented form, options as their ids joined by `;`.
    pub fn check(&self, value: &str, order: DateOrder) -> Result<String, ValueError> {
        let value = value.trim();
        let kind = self.field_type();
        let fail = |hint: &str| ValueError {
            expected: format!("expected {}{hint}", kind.expected()),
        };
        match kind {
            FieldType::Text | FieldType::AreaText | FieldType::Other => Ok(value.to_string()),
            FieldType::Date => date(value, order).ok_or_else(|| fail(&date_hint(value, order))),
            FieldType::Time => time(value).ok_or_else(|| fail("")),
            FieldType::DateTime => {
                datetime(value, order).ok_or_else(|| fail(&date_hint(value, order)))
            }
            FieldType::Link => link(value).ok_or_else(|| fail("")),
            FieldType::Number => number(value).ok_or_else(|| fail("")),
            FieldType::Numeric => numeric(value).ok_or_else(|| fail("")),
            FieldType::Droplist | FieldType::Radio | FieldType::Checkbox => {
                self.options_of(value, kind == FieldType::Checkbox)
            }
        }
    }

    /// The option ids a select value names, by id or by title.
    fn options_of(&self, value: &str, many: bool) -> Result<String, ValueError> {
        let names = || {
            self.options
                .iter()
                .map(|o| format!("{} = {:?}", o.id, o.title))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The whole value first: an option's title may hold a separator.
        let parts: Vec<&str> = match self.option(value) {
            Ok(Some(_)) => vec![value],
            _ => value
                .split([';', ',', '|', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let mut ids: Vec<&str> = Vec::new();
        for part in &parts {
            match self.option(part) {
                Ok(Some(o)) => {
                    if !ids.contains(&o.id.as_str()) {
                        ids.push(&o.id);
                    }
                }
                Ok(None) => {
                    return Err(ValueError {
                        expected: format!(
                            "{:?} is not an option; the options are {}",
                            part,
                            names()
                        ),
                    })
                }
                Err(why) => return Err(ValueError { expected: why }),
            }
        }
        if !many && ids.len() > 1 {
            return Err(ValueError {
                expected: format!(
                    "takes exactly one option, not {}; the options are {}",
                    ids.len(),
                    names()
                ),
            });
        }
        Ok(ids.join(";"))
    }

    /// The option with this id or title (titles compared without case and spaces); an error
    /// when the text is one option's id and another's title.
    fn option(&self, text: &str) -> Result<Option<&FieldOption>, String> {
        let text = text.trim();
        let by_id = self.options.iter().find(|o| o.id == text);
        let wanted = loose(text);
        let by_title = self.options.iter().find(|o| loose(&o.title) == wanted);
        match (by_id, by_title) {
            (Some(a), Some(b)) if a.id != b.id => Err(format!(
                "{text:?} is ambiguous: the id of option {:?} and the title of option {} ({:?}); write the id",
                a.title, b.id, b.title
            )),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    }

    /// An option's title by id (for `export --labels`).
    pub fn option_title(&self, id: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.title.as_str())
    }
}

/// The lower-case words of a name, split at anything not a letter or digit.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && *w != "custom")
        .map(str::to_lowercase)
        .collect()
}

fn loose(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn date_hint(value: &str, order: DateOrder) -> String {
    if order == DateOrder::Strict
        && split_date(value).is_some_and(|(_, a, b, _)| a <= 12 && b <= 12)
    {
        " (day and month could be either way round: pass --date-order dmy or mdy)".into()
    } else {
        String::new()
    }
}

/// `(y, first, second, year_first)` of a date written `Y-M-D`, `D/M/Y`, `M/D/Y`, `D.M.Y`…
fn split_date(value: &str) -> Option<(u32, u32, u32, bool)> {
    let parts: Vec<&str> = value.split(['-', '/', '.']).collect();
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    let num = |s: &str| {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let (a_n, b_n, c_n) = (num(a)?, num(b)?, num(c)?);
    if a.len() == 4 && b.len() <= 2 && c.len() <= 2 {
        Some((a_n, b_n, c_n, true))
    } else if c.len() == 4 && a.len() <= 2 && b.len() <= 2 {
        Some((c_n, a_n, b_n, false))
    } else {
        None
    }
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => return false,
    };
    (1000..=9999).contains(&y) && (1..=days).contains(&d)
}

/// `YYYY-MM-DD`, from `2024-04-02`, `2024-4-2`, `2024/04/02`, and day-first or month-first
/// spellings when `order` (or a part above 12) settles which is which.
fn date(value: &str, order: DateOrder) -> Option<String> {
    let (y, a, b, year_first) = split_date(value)?;
    let (m, d) = if year_first {
        (a, b)
    } else {
        match order {
            DateOrder::Dmy => (b, a),
            DateOrder::Mdy => (a, b),
            DateOrder::Strict if a > 12 && b <= 12 => (b, a),
            DateOrder::Strict if b > 12 && a <= 12 => (a, b),
            DateOrder::Strict => return None,
        }
    };
    valid_date(y, m, d).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// `(h, m, s)` of `H:MM`, `HH:MM` or `HH:MM:SS`.
fn clock(value: &str) -> Option<(u32, u32, u32)> {
    let parts: Vec<&str> = value.split(':').collect();
    let num = |s: &str, max: u32, width: std::ops::RangeInclusive<usize>| {
        (width.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|n| *n <= max)
    };
    match parts.as_slice() {
        [h, m] => Some((num(h, 23, 1..=2)?, num(m, 59, 2..=2)?, 0)),
        [h, m, s] => Some((num(h, 23, 1..=2)?, num(m, 59, 2..=2)?, num(s, 59, 2..=2)?)),
        _ => None,
    }
}

fn time(value: &str) -> Option<String> {
    let (h, m, s) = clock(value)?;
    Some(format!("{h:02}:{m:02}:{s:02}"))
}

/// `YYYY-MM-DD HH:MM` (the field keeps minutes: seconds other than 00 are refused, not cut).
fn datetime(value: &str, order: DateOrder) -> Option<String> {
    let (d, t) = value.split_once(['T', ' '])?;
    let day = date(d.trim(), order)?;
    let t = t.trim().trim_end_matches('Z');
    let (h, m, s) = clock(t)?;
    (s == 0).then(|| format!("{day} {h:02}:{m:02}"))
}

/// An http(s) URL with a host; `www.example.com` gains `https://`.
fn link(value: &str) -> Option<String> {
    let candidate = if value.len() > 4
        && value
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("www."))
    {
        format!("https://{value}")
    } else {
        value.to_string()
    };
    let url = url::Url::parse(&candidate).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && !candidate.contains(char::is_whitespace);
    ok.then_some(candidate)
}

/// Digits only (a leading `+` dropped).
fn number(value: &str) -> Option<String> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_string())
}

/// `-12.5`; a decimal comma (`3,5`) becomes a point, but `1,234` (thousands?) is refused.
fn numeric(value: &str) -> Option<String> {
    let (sign, rest) = match value.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", value.strip_prefix('+').unwrap_or(value)),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let normal = match (rest.split_once('.'), rest.split_once(',')) {
        (None, None) if digits(rest) => rest.to_string(),
        (Some((i, f)), None) if digits(i) && digits(f) => rest.to_string(),
        (None, Some((i, f))) if digits(i) && digits(f) && f.len() != 3 => format!("{i}.{f}"),
        _ => return None,
    };
    Some(format!("{sign}{normal}"))
}

/// Errors reading definitions.
#[derive(Debug, thiserror::Error)]
pub enum FieldsError {
    /// The file could not be read.
    #[error("cannot read --fields {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is neither a saved definitions file nor a custom_fields reply.
    #[error("--fields {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The account's custom fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDefs {
    /// Where they came from (`udesk GET /customers/custom_fields`, a file, …).
    pub source: String,
    /// The fields, in the platform's order.
    pub fields: Vec<FieldDef>,
}

impl FieldDefs {
    /// Reads Udesk's `custom_fields` reply leniently: options as the documented one-key
    /// objects (`{"0": "option 1"}`), `{id, title}` / `{value, label}` objects, plain
    /// strings (ids by position) or one object of id → title; required when
    /// `agent_permission` is 1 (number or text).
    pub fn from_udesk_reply(reply: &Value, source: &str) -> FieldDefs {
        let items = reply
            .get("custom_fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let fields = items
            .iter()
            .filter_map(|f| {
                let key = text(f.get("custom_field_name").or_else(|| f.get("key")));
                if key.is_empty() {
                    return None;
                }
                let required = text(f.get("agent_permission")) == "1";
                let content_type = Some(text(f.get("content_type")))
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(text_type);
                Some(FieldDef {
                    key,
                    title: text(f.get("title")),
                    content_type,
                    options: options_of(f.get("options")),
                    required,
                })
            })
            .collect();
        FieldDefs {
            source: source.to_string(),
            fields,
        }
    }

    /// Reads a file saved by `deskport fields --out`, or a saved `custom_fields` reply.
    pub fn from_file(path: &Path) -> Result<FieldDefs, FieldsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FieldsError::Read {
            path: shown.clone(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| FieldsError::Parse {
            path: shown.clone(),
            message: format!("not JSON: {e}"),
        })?;
        if value.get("custom_fields").is_some() {
            return Ok(FieldDefs::from_udesk_reply(
                &value,
                &format!("file {shown}"),
            ));
        }
        let mut defs: FieldDefs =
            serde_json::from_value(value).map_err(|e| FieldsError::Parse {
                path: shown.clone(),
                message: format!(
                    "expected the output of `deskport fields --out` or a custom_fields reply: {e}"
                ),
            })?;
        defs.source = format!("file {shown} ({})", defs.source);
        Ok(defs)
    }

    /// The field with this key.
    pub fn get(&self, key: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// The fields a header (or a `custom.<name>` target) names: by key, exactly or loosely,
    /// else by title loosely (case, spaces, `_`, `-`, `.` ignored), with a `custom_`,
    /// `custom.` or `custom_fields.` prefix allowed. More than one means ambiguous.
    pub fn find(&self, name: &str) -> Vec<&FieldDef> {
        let name = name.trim();
        if let Some(f) = self.get(name) {
            return vec![f];
        }
        let mut wanted = vec![squash(name)];
        let lower = name.to_ascii_lowercase();
        for prefix in ["custom_fields.", "custom.", "custom_"] {
            if lower.starts_with(prefix) && name.len() > prefix.len() {
                wanted.push(squash(&name[prefix.len()..]));
            }
        }
        let by_key: Vec<&FieldDef> = self
            .fields
            .iter()
            .filter(|f| wanted.contains(&squash(&f.key)))
            .collect();
        if !by_key.is_empty() {
            return by_key;
        }
        self.fields
            .iter()
            .filter(|f| !f.title.is_empty() && wanted.contains(&squash(&f.title)))
            .collect()
    }

    /// Up to three fields whose key or title is closest to `name`, for "did you mean".
    pub fn closest(&self, name: &str) -> Vec<&FieldDef> {
        let words_of_name = words(name);
        let mut name = squash(name);
        for prefix in ["customfields", "custom"] {
            if let Some(rest) = name.strip_prefix(prefix).filter(|r| !r.is_empty()) {
                name = rest.to_string();
                break;
            }
        }
        let mut scored: Vec<(f64, &FieldDef)> = self
            .fields
            .iter()
            .map(|f| {
                let by_title = strsim::normalized_levenshtein(&name, &squash(&f.title));
                let by_key = strsim::normalized_levenshtein(&name, &squash(&f.key));
                // A shared word ("signup_date" and "Date Field") counts for more than spelling.
                let shared = words(&f.title)
                    .iter()
                    .filter(|w| words_of_name.contains(w))
                    .count();
                let by_words = if shared > 0 {
                    0.5 + 0.1 * shared as f64
                } else {
                    0.0
                };
                (by_title.max(by_key).max(by_words), f)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(3).map(|(_, f)| f).collect()
    }

    /// The required fields.
    pub fn required(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.required)
    }

    /// A table for people: key, title, type, required, options.
    pub fn render(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .fields
            .iter()
            .map(|f| {
                [
                    f.key.clone(),
                    f.title.clone(),
                    f.content_type.clone(),
                    if f.required { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        let head = ["key", "title", "type", "required"];
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([head[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 4], options: &str| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
            s.push_str(options);
            s.trim_end().to_string() + "\n"
        };
        let mut out = format!("custom fields: {}\n", self.source);
        out.push_str(&line(head, "options"));
        for (f, r) in self.fields.iter().zip(&rows) {
            let options = f
                .options
                .iter()
                .map(|o| format!("{}={}", o.id, o.title))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&line(
                [r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str()],
                &options,
            ));
        }
        if self.fields.is_empty() {
            out.push_str("(none)\n");
        }
        out
    }
}

/// Options in any of the shapes [`FieldDefs::from_udesk_reply`] reads.
fn options_of(value: Option<&Value>) -> Vec<FieldOption> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::Object(o) if o.len() == 1 => {
                    let (id, title) = o.iter().next()?;
                    Some(FieldOption {
                        id: id.clone(),
                        title: text(title)?,
                    })
                }
                Value::Object(o) => {
                    let id = ["id", "value", "key"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(text))?;
                    let title = ["title", "label", "name", "text"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(text))
                        .unwrap_or_else(|| id.clone());
                    Some(FieldOption { id, title })
                }
                other => Some(FieldOption {
                    id: i.to_string(),
                    title: text(other)?,
                }),
            })
            .collect(),
        Some(Value::Object(o)) => o
            .iter()
            .filter_map(|(id, title)| {
                Some(FieldOption {
                    id: id.clone(),
                    title: text(title)?,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(content_type: &str) -> FieldDef {
        FieldDef {
            key: "TextField_1".into(),
            title: "Field".into(),
            content_type: content_type.into(),
            options: vec![
                FieldOption {
                    id: "0".into(),
                    title: "option 1".into(),
                },
                FieldOption {
                    id: "1".into(),
                    title: "Gold, plus".into(),
                },
                FieldOption {
                    id: "2".into(),
                    title: "option 3".into(),
                },
            ],
            required: false,
        }
    }

    fn ok(t: &str, v: &str) -> String {
        def(t).check(v, DateOrder::Strict).unwrap()
    }

    fn bad(t: &str, v: &str) -> String {
        def(t).check(v, DateOrder::Strict).unwrap_err().expected
    }

    #[test]
    fn dates_in_the_documented_form_and_unambiguous_spellings() {
        assert_eq!(ok("date", "2024-04-02"), "2024-04-02");
        assert_eq!(ok("date", "2024-4-2"), "2024-04-02");
        assert_eq!(ok("date", "2024/04/02"), "2024-04-02");
        assert_eq!(ok("date", "25/04/2024"), "2024-04-25");
        assert_eq!(ok("date", "04/25/2024"), "2024-04-25");
        assert_eq!(ok("date", "2024-02-29"), "2024-02-29");
        assert!(bad("date", "02/04/2024").contains("--date-order"));
        assert!(bad("date", "not a date").contains("YYYY-MM-DD"));
        bad("date", "2023-02-29");
        bad("date", "2024-13-01");
        bad("date", "2024-04-02 10:00");
        let d = def("date");
        assert_eq!(d.check("02/04/2024", DateOrder::Dmy).unwrap(), "2024-04-02");
        assert_eq!(d.check("02/04/2024", DateOrder::Mdy).unwrap(), "2024-02-04");
        assert_eq!(d.check("02.04.2024", DateOrder::Dmy).unwrap(), "2024-04-02");
    }

    #[test]
    fn times_and_datetimes() {
        assert_eq!(ok("time", "09:30:15"), "09:30:15");
        assert_eq!(ok("time", "9:30"), "09:30:00");
        bad("time", "24:00:00");
        bad("time", "9.30");
        assert_eq!(ok("datetime", "2024-04-02 10:30"), "2024-04-02 10:30");
        assert_eq!(ok("datetime", "2024-04-02T10:30:00Z"), "2024-04-02 10:30");
        assert_eq!(ok("datetime", "2024-4-2 9:05"), "2024-04-02 09:05");
        // The field keeps minutes: seconds would be lost, so they are refused.
        bad("datetime", "2024-04-02 10:30:15");
        bad("datetime", "2024-04-02");
    }

    #[test]
    fn links_and_numbers() {
        assert_eq!(
            ok("link", "https://example.com/a?b=1"),
            "https://example.com/a?b=1"
        );
        assert_eq!(ok("link", "www.example.com"), "https://www.example.com");
        bad("link", "example");
        bad("link", "ftp://example.com");
        bad("link", "javascript:alert(1)");
        // Not a byte slice in the middle of a character.
        bad("link", "wwé.x");
        assert_eq!(ok("number", "42"), "42");
        assert_eq!(ok("number", "+7"), "7");
        bad("number", "-1");
        bad("number", "1.5");
        assert_eq!(ok("numeric", "-3.75"), "-3.75");
        assert_eq!(ok("numeric", "3,5"), "3.5");
        bad("numeric", "1,234");
        bad("numeric", "1.2.3");
        bad("numeric", "abc");
    }

    #[test]
    fn options_by_id_or_title_written_as_ids() {
        assert_eq!(ok("droplist", "0"), "0");
        assert_eq!(ok("droplist", "OPTION 3"), "2");
        assert_eq!(ok("radio", "  option1 "), "0");
        // A title holding a separator is one option.
        assert_eq!(ok("droplist", "gold, plus"), "1");
        assert!(bad("droplist", "0;2").contains("exactly one"));
        assert!(bad("droplist", "platinum").contains("\"platinum\" is not an option"));
        assert_eq!(ok("checkbox", "option 1; option 3"), "0;2");
        assert_eq!(ok("checkbox", "2,0,2"), "2;0");
        assert_eq!(ok("checkbox", ""), "");
    }

    #[test]
    fn an_id_that_is_another_options_title_is_ambiguous() {
        let mut d = def("droplist");
        d.options[2].title = "0".into();
        let e = d.check("0", DateOrder::Strict).unwrap_err().expected;
        assert!(e.contains("ambiguous"), "{e}");
    }

    #[test]
    fn the_documented_reply_reads_with_types_options_and_required() {
        let reply = json!({"code": 1000, "custom_fields": [
            {"id": 3, "agent_permission": 1, "customer_permission": 3, "title": "Date Field", "comment": "", "content_type": "date", "custom_field_name": "TextField_3", "options": null},
            {"id": 1, "agent_permission": 2, "customer_permission": 2, "custom_field_name": "SelectField_1", "title": "Drop List Field", "content_type": "droplist", "comment": null,
             "options": [{"0": "option 1"}, {"1": "option 2"}]},
            {"custom_field_name": "SelectField_9", "agent_permission": "1", "content_type": "radio", "options": [{"id": 4, "title": "a"}, "b"]},
        ]});
        let defs = FieldDefs::from_udesk_reply(&reply, "test");
        assert_eq!(defs.fields.len(), 3);
        assert!(defs.fields[0].required);
        assert_eq!(defs.fields[0].field_type(), FieldType::Date);
        assert!(!defs.fields[1].required);
        assert_eq!(
            defs.fields[1].options[1],
            FieldOption {
                id: "1".into(),
                title: "option 2".into()
            }
        );
        assert!(defs.fields[2].required);
        assert_eq!(defs.fields[2].options[0].id, "4");
        assert_eq!(
            defs.fields[2].options[1],
            FieldOption {
                id: "1".into(),
                title: "b".into()
            }
        );
    }

    #[test]
    fn headers_find_fields_by_key_or_title() {
        let defs = FieldDefs {
            source: "t".into(),
            fields: vec![
                FieldDef {
                    key: "TextField_3".into(),
                    title: "Signup date".into(),
                    content_type: "date".into(),
                    options: vec![],
                    required: false,
                },
                FieldDef {
                    key: "SelectField_1".into(),
                    title: "Loyalty tier".into(),
                    content_type: "droplist".into(),
                    options: vec![],
                    required: false,
                },
            ],
        };
        let keys = |n: &str| {
            defs.find(n)
                .iter()
                .map(|f| f.key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("custom_loyalty_tier"), ["SelectField_1"]);
        assert_eq!(keys("Signup Date"), ["TextField_3"]);
        assert_eq!(keys("textfield_3"), ["TextField_3"]);
        assert_eq!(keys("custom.SelectField_1"), ["SelectField_1"]);
        assert!(keys("custom_shoe_size").is_empty());
        assert_eq!(defs.closest("custom_loyalty")[0].key, "SelectField_1");
        assert_eq!(defs.closest("custom_date_of_signup")[0].key, "TextField_3");
    }
}
