//! `deskport reconcile`: is every valid input row on the platform, with the same values?
//!
//! The input goes through the same reader, mapping and validator (with the target's rules)
//! as `import`. The platform is then read one of two ways, whichever costs fewer calls
//! (or as `--via` says): an export of all its customers (which also finds customers that
//! are not in the input), or a lookup per row by external id. Every input row ends in
//! exactly one status: `equal`, `different` (the fields, both values), `missing` or
//! `invalid`; customers only on the platform are `extra` (export only).
//!
//! Only the fields a row carries are compared, and lists (emails, phones, tags, select
//! fields) must be contained in the platform's: a platform gains channels and tags over time.

use crate::export::record::{id_of, Record};
use crate::export::source::{self, Item, OmnideskPaging};
use crate::export::Client;
use crate::input::{self, InputOptions};
use crate::mapping::Mapping;
use crate::model::Customer;
use crate::pipeline::spawn_checked;
use crate::platform::omnidesk::MAX_ITEM_LIMIT;
use crate::platform::transport::for_each_bounded;
use crate::platform::udesk::{nick_name, ListFilter, EXPORT_BATCH};
use crate::platform::CallError;
use crate::validate::{Platform, Rules};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How the platform is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Whichever needs fewer calls.
    Auto,
    /// Export every customer (finds extra customers too).
    Export,
    /// Look each row up by external id.
    Lookups,
}

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The input file.
    pub input: InputOptions,
    /// Column mapping.
    pub mapping: Mapping,
    /// Validation rules (with the target's).
    pub rules: Rules,
    /// Checking threads.
    pub threads: usize,
    /// The report file (CSV).
    pub out: PathBuf,
    /// How to read the platform.
    pub via: Via,
    /// Lookups in flight at most.
    pub concurrency: usize,
    /// `--write-missing`: where the rows missing or different on the platform go, as a file
    /// `deskport import` takes as it is.
    pub write_missing: Option<PathBuf>,
}

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The input could not be read.
    #[error(transparent)]
    Input(#[from] crate::Error),
    /// The platform failed or refused.
    #[error("the platform: {0}")]
    Platform(#[from] CallError),
    /// The report could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ReconcileError {
    /// The process exit code for this error.
    pub fn exit(&self) -> crate::Exit {
        match self {
            ReconcileError::Input(e) => e.exit(),
            _ => crate::Exit::Aborted,
        }
    }
}

/// The counts of a reconcile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// The report file.
    pub out: PathBuf,
    /// How the platform was read.
    pub via: &'static str,
    /// Input rows read.
    pub rows_read: u64,
    /// On the platform with the same values.
    pub equal: u64,
    /// On the platform with other values.
    pub different: u64,
    /// Not on the platform.
    pub missing: u64,
    /// Not valid input (never imported).
    pub invalid: u64,
    /// On the platform but not in the input (`None` when read by lookups).
    pub extra: Option<u64>,
    /// Calls made.
    pub requests: u64,
    /// `--write-missing`: the file and the rows in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_file: Option<(PathBuf, u64)>,
}

impl ReconcileReport {
    /// True when nothing is missing or different.
    pub fn all_good(&self) -> bool {
        self.missing == 0 && self.different == 0
    }

    /// The summary for people.
    pub fn summary(&self) -> String {
        let extra = match self.extra {
            Some(n) => format!("{n} on the platform but not in the input"),
            None => "customers only on the platform not checked (read by lookups; --via export checks them)".into(),
        };
        let delta = match &self.missing_file {
            Some((path, rows)) => format!(
                "{rows} missing or different rows written to {} (deskport import takes it as it is)\n",
                path.display()
            ),
            None => String::new(),
        };
        format!(
            "reconcile: {} rows read: {} equal, {} different, {} missing, {} invalid; {extra}\nreport: {} (read the platform by {}, {} calls)\n{delta}",
            self.rows_read,
            self.equal,
            self.different,
            self.missing,
            self.invalid,
            self.out.display(),
            self.via,
            self.requests
        )
    }
}

/// One input row's result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Equal(String),
    Different(String, BTreeMap<String, (String, String)>),
    Missing,
    Invalid(String),
}

struct Row {
    line: u64,
    external_id: String,
    expected: Option<Customer>,
    status: Option<Status>,
}

fn lower_set<'a>(items: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn split_set(value: &str) -> BTreeSet<String> {
    value
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The fields in which the platform's record differs from the row: field → (input, platform).
pub fn differences(
    platform: Platform,
    expected: &Customer,
    actual: &Record,
) -> BTreeMap<String, (String, String)> {
    let mut diff = BTreeMap::new();
    let mut text = |field: &str, want: Option<&str>, got: &str| {
        if let Some(want) = want {
            if want != got {
                diff.insert(field.to_string(), (want.to_string(), got.to_string()));
            }
        }
    };
    match platform {
        Platform::Omnidesk => {
            text(
                "firstname",
                expected.firstname.as_deref(),
                &actual.firstname,
            );
            text("lastname", expected.lastname.as_deref(), &actual.lastname);
        }
        Platform::Udesk => {
            text("nick_name", Some(&nick_name(expected)), &actual.nick_name);
            text("email", expected.email.as_deref(), &actual.email);
            text("level", expected.level.as_deref(), &actual.level);
            text(
                "description",
                expected.description.as_deref(),
                &actual.description,
            );
        }
    }
    let mut contained = |field: &str, want: BTreeSet<String>, got: BTreeSet<String>| {
        if !want.is_subset(&got) {
            let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(";");
            diff.insert(field.to_string(), (join(&want), join(&got)));
        }
    };
    let want_emails = lower_set(expected.email.iter().chain(&expected.other_emails));
    let got_emails = lower_set(std::iter::once(&actual.email).chain(&actual.other_emails));
    contained("emails", want_emails, got_emails);
    contained(
        "phones",
        expected.phones.iter().cloned().collect(),
        actual.phones.iter().cloned().collect(),
    );
    if platform == Platform::Udesk {
        contained(
            "tags",
            expected.tags.iter().cloned().collect(),
            actual.tags.iter().cloned().collect(),
        );
    }
    for (name, want) in &expected.custom_fields {
        let got = actual
            .custom_fields
            .get(name)
            .map(String::as_str)
            .unwrap_or("");
        let same = if name.starts_with("SelectField_") {
            split_set(want) == split_set(got)
        } else {
            want.trim() == got.trim()
        };
        if !same {
            diff.insert(format!("custom.{name}"), (want.clone(), got.to_string()));
        }
    }
    diff
}

fn platform_of(client: &Client) -> Platform {
    match client {
        Client::Omnidesk(_) => Platform::Omnidesk,
        Client::Udesk(_) => Platform::Udesk,
    }
}

fn record_of(platform: Platform, value: &Value) -> Record {
    match platform {
        Platform::Omnidesk => Record::from_omnidesk(value),
        Platform::Udesk => Record::from_udesk(value),
    }
}

fn judge(platform: Platform, expected: &Customer, value: &Value) -> Status {
    let actual = record_of(platform, value);
    let diff = differences(platform, expected, &actual);
    if diff.is_empty() {
        Status::Equal(actual.id)
    } else {
        Status::Different(actual.id, diff)
    }
}

/// Reads and checks the input: every row, valid or not, in order.
async fn read_input(config: &ReconcileConfig) -> Result<Vec<Row>, ReconcileError> {
    let opened = input::open(&config.input).map_err(crate::Error::from)?;
    let (thread, mut rx) = spawn_checked(
        opened.reader,
        config.mapping.clone(),
        config.rules.clone(),
        config.threads,
        crate::validate::file::DEFAULT_BATCH_ROWS,
    );
    let mut rows = Vec::new();
    while let Some(batch) = rx.recv().await {
        for checked in batch?.rows {
            let line = checked.raw.line;
            match checked.into_clean() {
                Ok((_, customer)) => rows.push(Row {
                    line,
                    external_id: customer.external_id.clone(),
                    expected: Some(customer),
                    status: None,
                }),
                Err(row) => {
                    let reasons: Vec<String> = row
                        .issues
                        .iter()
                        .filter(|i| i.is_error())
                        .map(|i| format!("{}: {}", i.code, i.message))
                        .collect();
                    rows.push(Row {
                        line,
                        external_id: row
                            .customer
                            .as_ref()
                            .map(|c| c.external_id.clone())
                            .unwrap_or_default(),
                        expected: None,
                        status: Some(Status::Invalid(reasons.join("; "))),
                    });
                }
            }
        }
    }
    thread
        .join()
        .map_err(|_| crate::Error::Internal("the checking thread died".into()))?;
    Ok(rows)
}

/// Chooses export or lookups by the calls each needs.
async fn choose(client: &Client, rows: &[Row], via: Via) -> Result<Via, CallError> {
    if via != Via::Auto {
        return Ok(via);
    }
    let wanted = rows.iter().filter(|r| r.expected.is_some()).count() as u64;
    let export_calls = match client {
        Client::Omnidesk(c) => {
            let total = c.list_page(0, 1, None).await?.total;
            let details = rows
                .iter()
                .filter_map(|r| r.expected.as_ref())
                .any(|c| !c.custom_fields.is_empty());
            total.div_ceil(MAX_ITEM_LIMIT) + if details { total } else { 0 }
        }
        Client::Udesk(c) => c.total_customers().await?.div_ceil(EXPORT_BATCH),
    };
    Ok(if wanted < export_calls {
        Via::Lookups
    } else {
        Via::Export
    })
}

async fn by_lookups(
    client: &Client,
    rows: &mut [Row],
    concurrency: usize,
) -> Result<(), CallError> {
    let platform = platform_of(client);
    let results: Mutex<HashMap<usize, Result<Status, CallError>>> = Mutex::default();
    let work = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.expected.as_ref().map(|c| (i, c)));
    for_each_bounded(work, concurrency, |(i, customer)| {
        let results = &results;
        async move {
            let found = match client {
                Client::Omnidesk(c) => {
                    let brand = customer.brand_id.unwrap_or(c.default_brand());
                    c.find(&customer.external_id, brand).await
                }
                Client::Udesk(c) => c.find(&customer.external_id).await,
            };
            let status = found.map(|f| match f {
                Some(value) => judge(platform, customer, &value),
                None => Status::Missing,
            });
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(i, status);
        }
    })
    .await;
    for (i, status) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        rows[i].status = Some(status?);
    }
    Ok(())
}

/// Reads every customer; returns the extras as (platform id, external id).
async fn by_export(
    client: &Client,
    rows: &mut [Row],
    concurrency: usize,
) -> Result<Vec<(String, String)>, CallError> {
    let platform = platform_of(client);
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.expected.is_some() {
            index.insert(r.external_id.clone(), i);
        }
    }
    let details = rows
        .iter()
        .filter_map(|r| r.expected.as_ref())
        .any(|c| !c.custom_fields.is_empty());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(2);
    let task = match client {
        Client::Omnidesk(c) => tokio::spawn(source::omnidesk(
            c.clone(),
            OmnideskPaging {
                start: 0,
                query: None,
                details,
                brand_id: None,
                window: concurrency,
            },
            tx,
        )),
        Client::Udesk(c) => {
            tokio::spawn(source::udesk_scroll(c.clone(), ListFilter::default(), tx))
        }
    };
    let mut extras = Vec::new();
    // Shifted Omnidesk pages and restarted Udesk scrolls repeat customers.
    let mut seen = crate::export::Seen::default();
    while let Some(item) = rx.recv().await {
        let page = item?;
        for value in &page.records {
            let id = id_of(value).unwrap_or_default();
            if !seen.insert(&id) {
                continue;
            }
            let record = record_of(platform, value);
            match index.get(&record.external_id) {
                Some(&i) => {
                    let row = &mut rows[i];
                    if let Some(expected) = &row.expected {
                        row.status = Some(judge(platform, expected, value));
                    }
                }
                None => extras.push((id, record.external_id)),
            }
        }
    }
    task.abort();
    for row in rows.iter_mut() {
        if row.status.is_none() {
            row.status = Some(Status::Missing);
        }
    }
    Ok(extras)
}

fn write_report(
    path: &PathBuf,
    rows: &[Row],
    extras: &[(String, String)],
) -> Result<(), ReconcileError> {
    let io = |source| ReconcileError::Io {
        path: path.clone(),
        source,
    };
    let partial = crate::export::suffixed(path, ".partial");
    let mut w = csv::Writer::from_path(&partial).map_err(|e| io(e.into()))?;
    w.write_record([
        "line",
        "external_id",
        "status",
        "platform_id",
        "fields",
        "differences",
    ])
    .map_err(|e| io(e.into()))?;
    for r in rows {
        let line = r.line.to_string();
        let record: [String; 6] = match r.status.as_ref().unwrap_or(&Status::Missing) {
            Status::Equal(id) => [
                line,
                r.external_id.clone(),
                "equal".into(),
                id.clone(),
                String::new(),
                String::new(),
            ],
            Status::Different(id, diff) => [
                line,
                r.external_id.clone(),
                "different".into(),
                id.clone(),
                diff.keys().cloned().collect::<Vec<_>>().join(";"),
                serde_json::to_string(
                    &diff
                        .iter()
                        .map(|(k, (a, b))| {
                            (k.clone(), serde_json::json!({"input": a, "platform": b}))
                        })
                        .collect::<serde_json::Map<_, _>>(),
                )
                .unwrap_or_default(),
            ],
            Status::Missing => [
                line,
                r.external_id.clone(),
                "missing".into(),
                String::new(),
                String::new(),
                String::new(),
            ],
            Status::Invalid(why) => [
                line,
                r.external_id.clone(),
                "invalid".into(),
                String::new(),
                String::new(),
                why.clone(),
            ],
        };
        w.write_record(&record).map_err(|e| io(e.into()))?;
    }
    for (id, external_id) in extras {
        w.write_record(["", external_id, "extra", id, "", ""])
            .map_err(|e| io(e.into()))?;
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&partial, path).map_err(io)
}

/// The columns of `--write-missing`'s file before the custom ones: names `deskport import`
/// maps by itself.
const MISSING_COLUMNS: [&str; 11] = [
    "external_id",
    "brand_id",
    "firstname",
    "lastname",
    "nick_name",
    "email",
    "other_emails",
    "phones",
    "level",
    "tags",
    "description",
];

/// Writes the rows missing or different on the platform, as the checks left them
/// (normalized), one `custom_<key>` column per custom field any of them has; returns how
/// many.
fn write_missing(path: &Path, rows: &[Row]) -> Result<u64, ReconcileError> {
    let io = |source| ReconcileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let wanted: Vec<&Customer> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                Some(Status::Missing | Status::Different(..)) | None
            )
        })
        .filter_map(|r| r.expected.as_ref())
        .collect();
    let custom: BTreeSet<&String> = wanted.iter().flat_map(|c| c.custom_fields.keys()).collect();
    let partial = crate::export::suffixed(path, ".partial");
    let mut w = csv::Writer::from_path(&partial).map_err(|e| io(e.into()))?;
    let mut header: Vec<String> = MISSING_COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(custom.iter().map(|k| format!("custom_{k}")));
    w.write_record(&header).map_err(|e| io(e.into()))?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    for c in &wanted {
        let mut cells = vec![
            c.external_id.clone(),
            c.brand_id.map(|b| b.to_string()).unwrap_or_default(),
            text(&c.firstname),
            text(&c.lastname),
            text(&c.nick_name),
            text(&c.email),
            c.other_emails.join(";"),
            c.phones.join(";"),
            text(&c.level),
            c.tags.join(";"),
            text(&c.description),
        ];
        cells.extend(
            custom
                .iter()
                .map(|k| c.custom_fields.get(*k).cloned().unwrap_or_default()),
        );
        w.write_record(&cells).map_err(|e| io(e.into()))?;
    }
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(wanted.len() as u64)
}

/// Runs a reconcile and writes the report.
pub async fn run(
    config: &ReconcileConfig,
    client: Client,
) -> Result<ReconcileReport, ReconcileError> {
    Ok(compare(config, client).await?.0)
}

/// Runs a reconcile, writes the report, and returns the lines whose customer the platform
/// holds with the row's values, with its platform id (`import --only-missing` skips them).
pub async fn equal_lines(
    config: &ReconcileConfig,
    client: Client,
) -> Result<(ReconcileReport, HashMap<u64, String>), ReconcileError> {
    let (report, rows) = compare(config, client).await?;
    let equal = rows
        .into_iter()
        .filter_map(|r| match r.status {
            Some(Status::Equal(id)) => Some((r.line, id)),
            _ => None,
        })
        .collect();
    Ok((report, equal))
}

async fn compare(
    config: &ReconcileConfig,
    client: Client,
) -> Result<(ReconcileReport, Vec<Row>), ReconcileError> {
    let mut rows = read_input(config).await?;
    let via = choose(&client, &rows, config.via).await?;
    let extras = match via {
        Via::Lookups => {
            by_lookups(&client, &mut rows, config.concurrency).await?;
            None
        }
        _ => Some(by_export(&client, &mut rows, config.concurrency).await?),
    };
    write_report(&config.out, &rows, extras.as_deref().unwrap_or_default())?;
    let missing_file = match &config.write_missing {
        Some(path) => Some((path.clone(), write_missing(path, &rows)?)),
        None => None,
    };
    let mut report = ReconcileReport {
        out: config.out.clone(),
        via: if via == Via::Lookups {
            "lookups"
        } else {
            "export"
        },
        rows_read: rows.len() as u64,
        extra: extras.as_ref().map(|e| e.len() as u64),
        missing_file,
        ..ReconcileReport::default()
    };
    for r in &rows {
        match r.status {
            Some(Status::Equal(_)) => report.equal += 1,
            Some(Status::Different(..)) => report.different += 1,
            Some(Status::Invalid(_)) => report.invalid += 1,
            Some(Status::Missing) | None => report.missing += 1,
        }
    }
    report.requests = client
        .transport()
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok((report, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> Customer {
        Customer {
            external_id: "C1".into(),
            firstname: Some("Anna".into()),
            lastname: Some("Berg".into()),
            email: Some("anna@example.com".into()),
            phones: vec!["+31612345678".into()],
            tags: vec!["gold".into()],
            custom_fields: BTreeMap::from([("SelectField_1".into(), "1;3".into())]),
            ..Customer::default()
        }
    }

    #[test]
    fn equal_when_the_platform_holds_at_least_the_row() {
        let actual = Record {
            firstname: "Anna".into(),
            lastname: "Berg".into(),
            nick_name: "Anna Berg".into(),
            email: "Anna@Example.com".into(),
            other_emails: vec!["extra@example.com".into()],
            phones: vec!["+31612345678".into(), "+31201234567".into()],
            tags: vec!["gold".into(), "nl".into()],
            custom_fields: BTreeMap::from([("SelectField_1".into(), "3;1".into())]),
            ..Record::default()
        };
        assert!(differences(Platform::Omnidesk, &customer(), &actual).is_empty());
        let mut udesk = actual.clone();
        udesk.email = "anna@example.com".into();
        assert!(differences(Platform::Udesk, &customer(), &udesk).is_empty());
    }

    #[test]
    fn each_differing_field_is_named_with_both_values() {
        let actual = Record {
            firstname: "Ann".into(),
            lastname: "Berg".into(),
            email: "other@example.com".into(),
            phones: vec![],
            custom_fields: BTreeMap::from([("SelectField_1".into(), "1".into())]),
            ..Record::default()
        };
        let diff = differences(Platform::Omnidesk, &customer(), &actual);
        assert_eq!(
            diff.keys().collect::<Vec<_>>(),
            ["custom.SelectField_1", "emails", "firstname", "phones"]
        );
        assert_eq!(diff["firstname"], ("Anna".into(), "Ann".into()));
        assert_eq!(diff["phones"], ("+31612345678".into(), String::new()));
    }
}
