//! `deskport events FILE --target omnidesk`: one timeline entry per row
//! (`externalEvent`, 000:572-609: an order, a marketing mail…), with the import's reader,
//! journal, resume and result files.
//!
//! An event is not idempotent — every call adds one — so exactly-once rests on the
//! journal: a row is journaled `sent` (fsynced) before its call leaves and `done` after.
//! A row in doubt (sent, unanswered: a 5xx, a timeout, a kill) is looked for on the
//! customer's timeline (`timelineByCustomerExternalID`) before anything is sent again;
//! when the timeline holds an entry with its message and source URL it is done, and when
//! the timeline cannot tell (a row naming only a customer id, a reply deskport cannot read,
//! an entry not there — the timeline's shape is not documented, so absence proves
//! nothing) the row stays in doubt, listed in the failures with reason `in_doubt`, and
//! only a resume with `--resend-in-doubt` sends it again. Nothing is ever sent twice
//! without being asked.

use super::journal::{Done, Outcome, Record};
use super::results::{self, Counts, ResultFiles};
use super::row::row_value;
use super::{ImportConfig, ImportError, Mode, Stop};
use crate::error::Error;
use crate::input::InputOptions;
use crate::mapping::squash;
use crate::model::RawRow;
use crate::platform::omnidesk::{Fields, Omnidesk};
use crate::platform::CallError;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The journal header's mode for an events run (an import cannot resume it, nor it an
/// import's journal).
pub const MODE: &str = "events";

/// What an events run is asked to do.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// The file, one event a row.
    pub input: InputOptions,
    /// Where the journal and results go.
    pub journal_dir: PathBuf,
    /// The platform's origin (`sandbox` for the in-process one).
    pub origin: String,
    /// The brand for rows without a `brand_id`.
    pub brand_id: u64,
    /// Continue the journal's run.
    pub resume: bool,
    /// Set an earlier journal aside and start over.
    pub restart: bool,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Send rows in doubt again when the timeline cannot confirm them.
    pub resend_in_doubt: bool,
}

/// An event column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    ExternalId,
    CustomerId,
    BrandId,
    Message,
    SourceUrl,
    InitiatedBy,
}

/// The columns an events file may have, by squashed name.
fn column(name: &str) -> Option<Column> {
    Some(match squash(name).as_str() {
        "externalid" | "primaryid" | "externalprimaryid" | "customerexternalid" => {
            Column::ExternalId
        }
        "customerid" | "platformid" => Column::CustomerId,
        "brandid" => Column::BrandId,
        "message" => Column::Message,
        "sourceurl" | "url" => Column::SourceUrl,
        "initiatedby" => Column::InitiatedBy,
        _ => return None,
    })
}

const COLUMNS: &str =
    "external_id (or customer_id, Omnidesk's numeric id), message, source_url, initiated_by, brand_id (optional)";

/// Each event field's index in a batch's columns.
type Placed = Vec<(Column, usize)>;

/// Where each event field is in a batch's columns; an unknown column, or a required one
/// missing, is a usage error before any row is sent.
fn resolve(columns: &[String], jsonl: bool) -> Result<Placed, String> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for (i, name) in columns.iter().enumerate() {
        match column(name) {
            Some(c) if found.iter().any(|(f, _)| *f == c) => {
                return Err(format!(
                    "two columns give the same field: {name:?} and another"
                ))
            }
            Some(c) => found.push((c, i)),
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "columns deskport does not know for events: {}; an events file has {COLUMNS}",
            unknown.join(", ")
        ));
    }
    // JSONL keys appear as rows hold them: a row without one is refused on its own.
    if !jsonl {
        let has = |c| found.iter().any(|(f, _)| *f == c);
        let mut missing = Vec::new();
        if !has(Column::ExternalId) && !has(Column::CustomerId) {
            missing.push("external_id or customer_id");
        }
        for (c, name) in [
            (Column::Message, "message"),
            (Column::SourceUrl, "source_url"),
            (Column::InitiatedBy, "initiated_by"),
        ] {
            if !has(c) {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "the events file has no column for {}; it needs {COLUMNS}",
                missing.join(", ")
            ));
        }
    }
    Ok(found)
}

/// One valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The customer's external id, when the row names one.
    pub external_id: Option<String>,
    /// Omnidesk's id of the customer, when the row names one.
    pub customer_id: Option<String>,
    /// The brand.
    pub brand_id: u64,
    /// The entry's text.
    pub message: String,
    /// Where it comes from.
    pub source_url: String,
    /// Who or what made it.
    pub initiated_by: String,
}

impl Event {
    /// The `externalEvent` form (000:592-609).
    pub fn fields(&self) -> Fields {
        let mut f = Vec::new();
        if let Some(id) = &self.customer_id {
            f.push(("customer_id".to_string(), id.clone()));
        }
        if let Some(id) = &self.external_id {
            f.push(("external_id".to_string(), id.clone()));
        }
        f.push(("brand_id".to_string(), self.brand_id.to_string()));
        f.push(("initiated_by".to_string(), self.initiated_by.clone()));
        f.push(("message".to_string(), self.message.clone()));
        f.push(("source_url".to_string(), self.source_url.clone()));
        f
    }
}

/// Reads one row into an event (pure): what is wrong, as `(reason, message)`, otherwise.
fn event_of(
    row: &RawRow,
    at: &[(Column, usize)],
    default_brand: u64,
) -> Result<Event, (String, String)> {
    if let Some(issue) = &row.read_issue {
        return Err((
            issue.code.as_str().to_string(),
            crate::output::describe(issue),
        ));
    }
    let get = |c: Column| {
        at.iter()
            .find(|(f, _)| *f == c)
            .and_then(|(_, i)| row.record.get(*i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let bad = |reason: &str, message: String| Err((reason.to_string(), message));
    let external_id = get(Column::ExternalId);
    let customer_id = get(Column::CustomerId);
    if let Some(id) = &external_id {
        if id.chars().any(char::is_control) {
            return bad(
                "id.chars",
                "the external id holds control characters".into(),
            );
        }
    }
    if let Some(id) = &customer_id {
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return bad(
                "customer_id.invalid",
                format!("customer_id {id:?} is not an Omnidesk customer id (a number)"),
            );
        }
    }
    if external_id.is_none() && customer_id.is_none() {
        return bad(
            "id.missing",
            "no external_id and no customer_id: the event names no customer".into(),
        );
    }
    let brand_id = match get(Column::BrandId) {
        None => default_brand,
        Some(b) => match b.parse::<u64>() {
            Ok(b) if b > 0 => b,
            _ => return bad("brand.invalid", format!("brand_id {b:?} is not a number")),
        },
    };
    let required = |c: Column, name: &str| {
        get(c).ok_or((
            format!("{name}.missing"),
            format!("{name} is empty (the document requires it, 000:580-589)"),
        ))
    };
    Ok(Event {
        external_id,
        customer_id,
        brand_id,
        message: required(Column::Message, "message")?,
        source_url: required(Column::SourceUrl, "source_url")?,
        initiated_by: required(Column::InitiatedBy, "initiated_by")?,
    })
}

/// Whether a timeline reply holds this event: some object in it whose text values include
/// both the message and the source URL (the reply's shape is not documented). `false`
/// when none does — which proves nothing about absence.
pub fn timeline_holds(reply: &Value, event: &Event) -> bool {
    match reply {
        Value::Array(items) => items.iter().any(|i| timeline_holds(i, event)),
        Value::Object(m) => {
            let own: Vec<&str> = m
                .values()
                .filter_map(Value::as_str)
                .map(str::trim)
                .collect();
            let here =
                own.contains(&event.message.as_str()) && own.contains(&event.source_url.as_str());
            here || m.values().any(|v| timeline_holds(v, event))
        }
        _ => false,
    }
}

/// How an events run ended.
#[derive(Debug, Clone, Serialize)]
pub struct EventsReport {
    /// Rows read in this run.
    pub rows_read: u64,
    /// Rows an earlier run finished (skipped).
    pub skipped: u64,
    /// Outcomes over the whole journal (`created`: the event is on the timeline).
    pub counts: Counts,
    /// Rows in doubt the timeline confirmed in this run.
    pub confirmed_on_timeline: u64,
    /// The result files.
    pub results: PathBuf,
    /// Failures and rows in doubt.
    pub failures: PathBuf,
    /// Invalid rows.
    pub rejects: PathBuf,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl EventsReport {
    /// The human summary.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "events: {} rows read ({} done by an earlier run): {} on the timeline, {} failed, {} invalid, {} unfinished ({:.1} s)\nresults: {}\n",
            self.rows_read,
            self.skipped,
            c.created,
            c.failed,
            c.invalid,
            c.unfinished,
            self.elapsed_seconds,
            self.results.display()
        );
        if c.failed > 0 {
            s.push_str(&format!("failures: {}\n", self.failures.display()));
        }
        if c.invalid > 0 {
            s.push_str(&format!("rejects: {}\n", self.rejects.display()));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("stopped: {why}\n"));
        }
        s
    }
}

/// A row on its way. Its source fields travel along and are turned into the journal's
/// form only if the row does not land.
struct Work {
    event: Event,
    raw: RawRow,
    columns: Arc<Vec<String>>,
    jsonl: bool,
    in_doubt: bool,
}

/// What became of one row.
enum End {
    Done(Done),
    /// A row in doubt the timeline showed: done, and counted as confirmed.
    Confirmed(Done),
    /// Not final: stays in doubt for a resume (retries ran out on a passing failure, or the
    /// timeline cannot tell).
    Unfinished(Done),
    /// Not final, and surely not applied (throttled, never connected, credentials refused):
    /// a resume sends it without doubt.
    Unsent(Done),
    /// The credentials were refused or the platform is unusable: stop (`unsent`: this row's
    /// call surely was not applied).
    Abort {
        why: String,
        unsent: Option<u64>,
    },
}

impl Work {
    fn landed(&self, note: Option<String>) -> Done {
        self.record(Outcome::Created, None, note)
    }

    fn failed(&self, reason: &str, message: String) -> Done {
        self.record(Outcome::Failed, Some(reason), Some(message))
    }

    fn record(&self, outcome: Outcome, reason: Option<&str>, message: Option<String>) -> Done {
        Done {
            line: self.raw.line,
            external_id: self.event.external_id.clone().unwrap_or_default(),
            outcome,
            platform_id: self.event.customer_id.clone(),
            reason: reason.map(str::to_string),
            message,
            row: (outcome != Outcome::Created)
                .then(|| row_value(&self.raw, &self.columns, self.jsonl)),
        }
    }
}

/// The timeline's answer for a row in doubt: `Some(true)` it is there, `None` it cannot
/// tell.
async fn on_timeline(client: &Omnidesk, event: &Event) -> Result<Option<bool>, CallError> {
    let Some(external_id) = &event.external_id else {
        return Ok(None);
    };
    match client.timeline(event.brand_id, external_id).await {
        Ok(reply) if timeline_holds(&reply, event) => Ok(Some(true)),
        Ok(_) => Ok(None),
        Err(CallError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends one event exactly once (see the module docs).
async fn send(client: &Omnidesk, w: &Work, resend: bool) -> End {
    let mut in_doubt = w.in_doubt;
    let mut failures = 0;
    let transport = crate::platform::Target::transport(client);
    loop {
        if in_doubt {
            match on_timeline(client, &w.event).await {
                Ok(Some(true)) => {
                    let note = "on the timeline after an unanswered attempt".to_string();
                    return End::Confirmed(w.landed(Some(note)));
                }
                Ok(_) if resend => {}
                Ok(_) => {
                    let why = match &w.event.external_id {
                        Some(_) => "the customer's timeline shows no entry with this message and source URL (its shape is not documented, so that proves nothing)",
                        None => "the row names only a customer_id, and the timeline is read by external id",
                    };
                    let message = format!(
                        "sent before without an answer, so it may be on the timeline already; {why}. Check the customer, then --resume --resend-in-doubt sends it again"
                    );
                    return End::Unfinished(w.failed("in_doubt", message));
                }
                Err(e) if e.stops_run() => {
                    return End::Abort {
                        why: e.to_string(),
                        unsent: None,
                    }
                }
                Err(e) => {
                    let message = format!("reading the timeline: {e}");
                    return End::Unfinished(w.failed("unfinished", message));
                }
            }
        }
        let e = match client.external_event(&w.event.fields()).await {
            Ok(()) => return End::Done(w.landed(None)),
            Err(e) => e,
        };
        match e {
            e if e.stops_run() => {
                // A refused credential surely left nothing behind; an unusable platform
                // (a silence, a redirect) may have.
                let refused = matches!(e, CallError::Auth { .. }) && !in_doubt;
                return End::Abort {
                    why: e.to_string(),
                    unsent: refused.then_some(w.raw.line),
                };
            }
            CallError::NotFound => {
                let message = "no such customer on the platform".to_string();
                return End::Done(w.failed("not_found", message));
            }
            CallError::Rejected { message } | CallError::Conflict { message, .. } => {
                return End::Done(w.failed("platform_rejected", message))
            }
            e @ CallError::Unavailable {
                maybe_applied: true,
                ..
            } => {
                failures += 1;
                if failures >= transport.max_attempts() {
                    return End::Unfinished(
                        w.failed("unfinished", format!("retries ran out: {e}")),
                    );
                }
                in_doubt = true;
                tokio::time::sleep(transport.backoff(failures)).await;
            }
            e => {
                let d = w.failed("unfinished", format!("retries ran out: {e}"));
                // Refused before it was applied; but an earlier attempt may have been.
                return if in_doubt {
                    End::Unfinished(d)
                } else {
                    End::Unsent(d)
                };
            }
        }
    }
}

/// Runs the events of a file to the end (or a stop) and rebuilds the result files.
pub async fn run(
    config: &EventsConfig,
    client: Arc<Omnidesk>,
    stop: Arc<Stop>,
) -> Result<EventsReport, ImportError> {
    let began = Instant::now();
    let mut import = ImportConfig::new(
        config.input.clone(),
        Mode::Create,
        config.journal_dir.clone(),
    );
    import.origin = config.origin.clone();
    import.brand_id = Some(config.brand_id);
    import.resume = config.resume;
    import.restart = config.restart;
    // A file that cannot be events is refused before a journal is made for it.
    let peek = crate::input::open(&config.input).map_err(Error::from)?;
    let first = peek.reader.columns();
    let jsonl = peek.info.format == crate::input::Format::Jsonl;
    drop(peek);
    if !first.is_empty() {
        resolve(&first, jsonl).map_err(|m| ImportError::Run(Error::Usage(m)))?;
    }
    let mut run = super::start::start(&import, "omnidesk", MODE).await?;
    let probed = super::plan::probe(&*client).await;
    let mut stopped = probed.err();
    let (mut rows_read, mut skipped, mut confirmed) = (0u64, 0u64, 0u64);
    let mut unfinished: Vec<Done> = Vec::new();
    let mut columns: Option<(Arc<Vec<String>>, Placed)> = None;
    let chunk = config.concurrency.clamp(1, 64) * 2;
    while stopped.is_none() {
        if stop.requested() {
            stopped = Some("interrupted".into());
            break;
        }
        let batch = match run.opened.reader.next_batch(chunk) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                stopped = Some(format!("reading the input: {}", Error::from(e)));
                break;
            }
        };
        if columns
            .as_ref()
            .is_none_or(|(c, _)| !Arc::ptr_eq(c, &batch.columns))
        {
            let at =
                resolve(&batch.columns, jsonl).map_err(|m| ImportError::Run(Error::Usage(m)))?;
            columns = Some((batch.columns.clone(), at));
        }
        let (cols, at) = columns.as_ref().expect("resolved above");
        let mut work = Vec::new();
        let mut invalid = Vec::new();
        for raw in batch.rows {
            rows_read += 1;
            if run.state.finals.contains(raw.line) {
                skipped += 1;
                continue;
            }
            match event_of(&raw, at, config.brand_id) {
                Ok(event) => work.push(Work {
                    event,
                    in_doubt: run.state.in_doubt.contains(raw.line),
                    raw,
                    columns: cols.clone(),
                    jsonl,
                }),
                Err((reason, message)) => invalid.push(Record::Done(Done {
                    line: raw.line,
                    external_id: String::new(),
                    outcome: Outcome::Invalid,
                    platform_id: None,
                    reason: Some(reason),
                    message: Some(message),
                    row: Some(row_value(&raw, cols, jsonl)),
                })),
            }
        }
        if !invalid.is_empty() {
            run.journal.append(invalid);
        }
        if work.is_empty() {
            continue;
        }
        let lines = work.iter().map(|w| w.raw.line).collect();
        if let Err(e) = run
            .journal
            .append_durable(vec![Record::Sent { lines }])
            .await
        {
            stopped = Some(format!("cannot write the journal: {e}"));
            break;
        }
        let client = client.as_ref();
        let resend = config.resend_in_doubt;
        let ends: Vec<End> = {
            use futures_util::StreamExt;
            futures_util::stream::iter(&work)
                .map(|w| send(client, w, resend))
                .buffered(config.concurrency.max(1))
                .collect()
                .await
        };
        let mut done = Vec::new();
        for end in ends {
            match end {
                End::Done(d) => done.push(Record::Done(d)),
                End::Confirmed(d) => {
                    confirmed += 1;
                    done.push(Record::Done(d));
                }
                End::Unfinished(d) => unfinished.push(d),
                End::Unsent(d) => {
                    done.push(Record::Unsent {
                        lines: vec![d.line],
                    });
                    unfinished.push(d);
                }
                End::Abort { why, unsent } => {
                    stopped.get_or_insert(why);
                    if let Some(line) = unsent {
                        done.push(Record::Unsent { lines: vec![line] });
                    }
                }
            }
        }
        run.journal.append(done);
    }
    run.journal.close()?;
    let files = ResultFiles::in_dir(&run.dir, jsonl);
    let counts = results::write(&files, &run.journal_path, &run.header, &unfinished)?;
    Ok(EventsReport {
        rows_read,
        skipped,
        counts,
        confirmed_on_timeline: confirmed,
        results: files.results,
        failures: files.failures,
        rejects: files.rejects,
        elapsed_seconds: began.elapsed().as_secs_f64(),
        stopped,
    })
}

/// Whether a file's columns are an events file's (message, source URL and initiator):
/// `deskport reconcile` then looks for the events instead of customers.
pub fn is_events_file(columns: &[String]) -> bool {
    let has = |c| columns.iter().any(|n| column(n) == Some(c));
    has(Column::Message) && has(Column::SourceUrl) && has(Column::InitiatedBy)
}

/// What `deskport reconcile` found of an events file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeenReport {
    /// The report file.
    pub out: PathBuf,
    /// Rows read.
    pub rows_read: u64,
    /// On the customer's timeline.
    pub found: u64,
    /// Not seen: the timeline shows no such entry (missing, or held in a form deskport
    /// cannot read: the timeline's shape is not documented).
    pub not_seen: u64,
    /// Not visible to deskport: the row names only a customer id (timelines are read by
    /// external id), or the customer is not there.
    pub cannot_see: u64,
    /// Not valid input.
    pub invalid: u64,
    /// Calls made.
    pub requests: u64,
}

impl SeenReport {
    /// The human summary.
    pub fn summary(&self) -> String {
        format!(
            "reconcile (events): {} rows read: {} on the timeline, {} not seen, {} deskport cannot see, {} invalid ({} calls)\nreport: {}\n",
            self.rows_read,
            self.found,
            self.not_seen,
            self.cannot_see,
            self.invalid,
            self.requests,
            self.out.display()
        )
    }

    /// True when every valid event was found.
    pub fn all_good(&self) -> bool {
        self.not_seen == 0 && self.cannot_see == 0
    }
}

/// Looks for every event of an events file on its customer's timeline (one read per
/// customer) and writes `line,external_id,status,detail` to `out`: `found`, `not_seen`,
/// `cannot_see` or `invalid`.
pub async fn reconcile(
    input: &InputOptions,
    out: &std::path::Path,
    default_brand: u64,
    client: Arc<Omnidesk>,
) -> Result<SeenReport, ImportError> {
    let mut opened = crate::input::open(input).map_err(Error::from)?;
    let jsonl = opened.info.format == crate::input::Format::Jsonl;
    let mut report = SeenReport {
        out: out.to_path_buf(),
        ..SeenReport::default()
    };
    let mut rows: Vec<(u64, String, &'static str, String)> = Vec::new();
    let mut timelines: std::collections::HashMap<(u64, String), Option<Value>> =
        std::collections::HashMap::new();
    let mut at: Option<(Arc<Vec<String>>, Placed)> = None;
    while let Some(batch) = opened.reader.next_batch(1024).map_err(Error::from)? {
        if at
            .as_ref()
            .is_none_or(|(c, _)| !Arc::ptr_eq(c, &batch.columns))
        {
            let placed =
                resolve(&batch.columns, jsonl).map_err(|m| ImportError::Run(Error::Usage(m)))?;
            at = Some((batch.columns.clone(), placed));
        }
        let placed = &at.as_ref().expect("resolved above").1;
        for raw in &batch.rows {
            report.rows_read += 1;
            let event = match event_of(raw, placed, default_brand) {
                Ok(e) => e,
                Err((reason, message)) => {
                    report.invalid += 1;
                    rows.push((
                        raw.line,
                        String::new(),
                        "invalid",
                        format!("{reason}: {message}"),
                    ));
                    continue;
                }
            };
            let external_id = event.external_id.clone().unwrap_or_default();
            let Some(id) = &event.external_id else {
                report.cannot_see += 1;
                rows.push((
                    raw.line,
                    external_id,
                    "cannot_see",
                    "the row names only a customer_id; timelines are read by external id".into(),
                ));
                continue;
            };
            let key = (event.brand_id, id.clone());
            if !timelines.contains_key(&key) {
                let reply = match client.timeline(event.brand_id, id).await {
                    Ok(v) => Some(v),
                    Err(CallError::NotFound) => None,
                    Err(e) => return Err(ImportError::Refused(e)),
                };
                timelines.insert(key.clone(), reply);
            }
            match &timelines[&key] {
                None => {
                    report.cannot_see += 1;
                    rows.push((
                        raw.line,
                        external_id,
                        "cannot_see",
                        "no customer with this external id".into(),
                    ));
                }
                Some(reply) if timeline_holds(reply, &event) => {
                    report.found += 1;
                    rows.push((raw.line, external_id, "found", String::new()));
                }
                Some(_) => {
                    report.not_seen += 1;
                    rows.push((
                        raw.line,
                        external_id,
                        "not_seen",
                        "the timeline shows no entry with this message and source URL".into(),
                    ));
                }
            }
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["line", "external_id", "status", "detail"])
        .expect("writes to memory");
    for (line, id, status, detail) in rows {
        csv.write_record([line.to_string(), id, status.to_string(), detail])
            .expect("writes to memory");
    }
    let bytes = csv.into_inner().map_err(|e| {
        ImportError::Run(Error::Output(crate::output::OutputError {
            path: out.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }))
    })?;
    crate::output::write_whole(out, &bytes).map_err(|source| {
        ImportError::Run(Error::Output(crate::output::OutputError {
            path: out.to_path_buf(),
            source,
        }))
    })?;
    report.requests = crate::platform::Target::transport(client.as_ref())
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(fields: &[&str]) -> RawRow {
        RawRow {
            line: 2,
            record: csv::StringRecord::from(fields.to_vec()),
            read_issue: None,
            raw_text: None,
        }
    }

    fn cols(names: &[&str]) -> Vec<(Column, usize)> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        resolve(&names, false).unwrap()
    }

    #[test]
    fn rows_become_the_documented_form_or_say_what_is_wrong() {
        let at = cols(&["External ID", "message", "Source URL", "initiated_by"]);
        let e = event_of(
            &raw(&["C-1", "Order #1 paid", "https://shop/1", "shop"]),
            &at,
            3,
        )
        .unwrap();
        assert_eq!(
            e.fields(),
            [
                ("external_id", "C-1"),
                ("brand_id", "3"),
                ("initiated_by", "shop"),
                ("message", "Order #1 paid"),
                ("source_url", "https://shop/1")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let missing = event_of(&raw(&["C-1", " ", "https://shop/1", "shop"]), &at, 3).unwrap_err();
        assert_eq!(missing.0, "message.missing");
        let no_id = event_of(&raw(&["", "m", "u", "shop"]), &at, 3).unwrap_err();
        assert_eq!(no_id.0, "id.missing");
        let at = cols(&[
            "customer_id",
            "message",
            "source_url",
            "initiated_by",
            "brand_id",
        ]);
        assert_eq!(
            event_of(&raw(&["12x", "m", "u", "s", ""]), &at, 1)
                .unwrap_err()
                .0,
            "customer_id.invalid"
        );
        assert_eq!(
            event_of(&raw(&["12", "m", "u", "s", "two"]), &at, 1)
                .unwrap_err()
                .0,
            "brand.invalid"
        );
        assert_eq!(
            event_of(&raw(&["12", "m", "u", "s", "4"]), &at, 1)
                .unwrap()
                .brand_id,
            4
        );
    }

    #[test]
    fn a_file_that_cannot_be_events_is_refused_whole() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = resolve(
            &names(&["external_id", "message", "source_url", "initated_by"]),
            false,
        )
        .unwrap_err();
        assert!(
            err.contains("initated_by") && err.contains("initiated_by"),
            "{err}"
        );
        let err = resolve(&names(&["message", "source_url", "initiated_by"]), false).unwrap_err();
        assert!(err.contains("external_id or customer_id"), "{err}");
        assert!(
            resolve(&names(&["message"]), true).is_ok(),
            "JSONL keys come with rows"
        );
    }

    #[test]
    fn the_timeline_is_searched_in_any_shape() {
        let e = Event {
            external_id: Some("C-1".into()),
            customer_id: None,
            brand_id: 1,
            message: "Order #1 paid".into(),
            source_url: "https://shop/1".into(),
            initiated_by: "shop".into(),
        };
        for reply in [
            json!({"items": [{"type": "event", "message": "Order #1 paid", "source_url": "https://shop/1"}]}),
            json!([{"data": {"text": " Order #1 paid ", "link": "https://shop/1"}}]),
            json!({"message": {"timeline": [{"message": "x"}, {"a": "Order #1 paid", "b": "https://shop/1"}]}}),
        ] {
            assert!(timeline_holds(&reply, &e), "{reply}");
        }
        for reply in [
            json!({"items": []}),
            json!({"items": [{"message": "Order #1 paid", "source_url": "https://shop/2"}]}),
            // Message and URL in different entries are not this event.
            json!([{"message": "Order #1 paid"}, {"source_url": "https://shop/1"}]),
            json!("Order #1 paid https://shop/1"),
        ] {
            assert!(!timeline_holds(&reply, &e), "{reply}");
        }
    }
}
