//! `deskport export`: the platform's customers to CSV, JSONL or Parquet, resumable; also
//! in parts (`--split-rows`) and with the changes since a previous export ([`changes`]).
//!
//! ```text
//! source task (pages in order, each with its cursor) ─► writer: skip ids already written,
//!   flatten + guard ─► OUT.partial ─► fsync ─► checkpoint (atomic) … ─► rename to OUT
//! ```
//!
//! A resume truncates `OUT.partial` to the checkpointed length, rebuilds the ids written from
//! it, and continues from the cursor; its final file is byte-identical to an uninterrupted
//! export of the same data. A run lock on `OUT.lock` keeps two exports off one file.

pub mod changes;
pub mod checkpoint;
pub mod compress;
pub mod parquet;
pub mod record;
pub mod sorted;
pub mod source;

use crate::fields::FieldDefs;
use crate::import::Stop;
use crate::platform::omnidesk::Omnidesk;
use crate::platform::udesk::{ListFilter, Udesk};
use crate::platform::CallError;
use crate::progress::Progress;
use checkpoint::{now_ms, sync_dir, Checkpoint, CheckpointError, Cursor, Params};
use compress::Compression;
use record::{guard, header, id_of, Record};
use rustc_hash::FxHashSet;
use serde::Serialize;
use serde_json::Value;
use source::{Item, OmnideskPaging, Page};
use std::fs::File;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// One row per customer, fixed columns.
    Csv,
    /// The platform's object, one per line.
    Jsonl,
    /// Typed columns ([`parquet::SCHEMA`]); staged as JSONL for resuming.
    Parquet,
}

impl OutFormat {
    /// The name used in flags and checkpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            OutFormat::Csv => "csv",
            OutFormat::Jsonl => "jsonl",
            OutFormat::Parquet => "parquet",
        }
    }

    /// What `OUT.partial` holds while the export runs (Parquet is staged as JSONL).
    pub fn staged(self) -> OutFormat {
        match self {
            OutFormat::Parquet => OutFormat::Jsonl,
            other => other,
        }
    }

    /// From the file name: `.jsonl`/`.ndjson` → JSONL, else CSV (after a `.gz`/`.zst`).
    pub fn from_path(path: &Path) -> OutFormat {
        match Compression::inner_path(path)
            .extension()
            .and_then(|e| e.to_str())
        {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => {
                OutFormat::Jsonl
            }
            Some(e) if e.eq_ignore_ascii_case("parquet") => OutFormat::Parquet,
            _ => OutFormat::Csv,
        }
    }
}

/// How Udesk is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UdeskSource {
    /// The scroll export: 1,000 customers a call.
    Scroll,
    /// The customer list: 100 a call, 10,000 at most, no expiry.
    List,
}

/// The platform to read, with its client.
#[derive(Debug, Clone)]
pub enum Client {
    /// Omnidesk.
    Omnidesk(Arc<Omnidesk>),
    /// Udesk.
    Udesk(Arc<Udesk>),
}

impl Client {
    /// The client's transport, for its counters.
    pub fn transport(&self) -> &crate::platform::transport::Transport {
        use crate::platform::Target;
        match self {
            Client::Omnidesk(c) => c.transport(),
            Client::Udesk(c) => c.transport(),
        }
    }
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The final file.
    pub out: PathBuf,
    /// The checkpoint file (default `OUT.checkpoint`).
    pub checkpoint: PathBuf,
    /// Output format.
    pub format: OutFormat,
    /// How the file is compressed (from its name).
    pub compression: Compression,
    /// What is exported (checked against the checkpoint on resume).
    pub params: Params,
    /// Continue from the checkpoint (a fresh export when there is none).
    pub resume: bool,
    /// Throw an earlier checkpoint and partial file away and start over.
    pub restart: bool,
    /// Omnidesk pages in flight at most.
    pub window: usize,
    /// Udesk: how long a scroll id lives.
    pub scroll_ttl: Duration,
    /// Checkpoint at most this often (and always at the end, on Ctrl-C and on errors).
    pub checkpoint_every: Duration,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// The account's custom fields, for `--labels` and `--headers titles`.
    pub fields: Option<Arc<FieldDefs>>,
    /// `--changes-since`/`--state`: the baseline, checked before any request.
    pub changes: Option<Arc<changes::Prepared>>,
}

impl ExportConfig {
    /// Defaults for `out`: checkpoint beside it, format from the extension.
    pub fn new(out: PathBuf, params: Params) -> Self {
        ExportConfig {
            checkpoint: suffixed(&out, ".checkpoint"),
            format: OutFormat::from_path(&out),
            compression: Compression::from_path(&out),
            out,
            params,
            resume: false,
            restart: false,
            window: 8,
            scroll_ttl: crate::platform::documented::UDESK_SCROLL_TTL,
            checkpoint_every: Duration::from_millis(200),
            progress: false,
            fields: None,
            changes: None,
        }
    }

    /// Whether the export streams to standard output (`--out -`): no partial file, lock or
    /// checkpoint, so nothing to resume.
    pub fn to_stdout(&self) -> bool {
        self.out == Path::new("-")
    }

    /// `OUT.partial`.
    pub fn partial(&self) -> PathBuf {
        suffixed(&self.out, ".partial")
    }

    /// `OUT.lock`.
    pub fn lock_path(&self) -> PathBuf {
        suffixed(&self.out, ".lock")
    }
}

/// `dir/customers.csv.gz` with `infix` before its extensions: `dir/customers{infix}.csv.gz`.
pub fn with_infix(out: &Path, infix: &str) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let (body, compressed) = match Compression::from_path(out) {
        Compression::None => (name.as_ref(), ""),
        _ => name
            .rsplit_once('.')
            .map(|(b, _)| (b, &name[b.len()..]))
            .unwrap_or((name.as_ref(), "")),
    };
    let (stem, ext) = match body.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => (s, &body[s.len()..]),
        _ => (body, ""),
    };
    out.with_file_name(format!("{stem}{infix}{ext}{compressed}"))
}

/// `--split-rows`: part `n` (from 1) of `out`, `dir/customers-00003.csv.gz`.
pub fn part_path(out: &Path, n: usize) -> PathBuf {
    with_infix(out, &format!("-{n:05}"))
}

/// `path` with `suffix` appended to its file name.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Another export holds the output.
    #[error("another export is writing {out} (lock {lock} is held); wait for it to finish")]
    Locked {
        /// The output.
        out: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A checkpoint exists but neither --resume nor --restart was given.
    #[error("{checkpoint} holds an interrupted export of {out}; pass --resume to continue it, or --restart to start over")]
    Unfinished {
        /// The output.
        out: PathBuf,
        /// The checkpoint.
        checkpoint: PathBuf,
    },
    /// The checkpoint is for another export.
    #[error("the checkpoint {checkpoint} is for another export ({what}); run the same command as before, or pass --restart")]
    Mismatch {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// What differs.
        what: String,
    },
    /// The partial file does not match the checkpoint.
    #[error("{partial} does not match its checkpoint: {reason}; pass --restart to start over")]
    Partial {
        /// The partial file.
        partial: PathBuf,
        /// Why.
        reason: String,
    },
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The Parquet file could not be made from the staged export (the checkpoint is kept).
    #[error(transparent)]
    Parquet(#[from] parquet::ParquetError),
    /// The changes since the baseline could not be written (the checkpoint is kept).
    #[error("changes: {0}")]
    Changes(#[from] changes::ChangesError),
    /// The platform refused or failed (the checkpoint is written; resume later).
    #[error("the platform: {0}")]
    Platform(CallError),
}

impl ExportError {
    /// The process exit code for this error.
    pub fn exit(&self) -> crate::Exit {
        match self {
            ExportError::Locked { .. }
            | ExportError::Unfinished { .. }
            | ExportError::Mismatch { .. }
            | ExportError::Partial { .. } => crate::Exit::Usage,
            _ => crate::Exit::Aborted,
        }
    }
}

/// How an export went.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The final file (written only when the export finished).
    pub out: PathBuf,
    /// Format.
    pub format: &'static str,
    /// `gzip` or `zstd` when the file is compressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
    /// Customers in the file.
    pub rows: u64,
    /// Of those, written by earlier runs (resume).
    pub rows_before: u64,
    /// Pages read in this run.
    pub pages: u64,
    /// Customers seen again and skipped (shifted pages, restarted scrolls).
    pub duplicates_skipped: u64,
    /// Customers listed but gone before their record was fetched.
    pub vanished: u64,
    /// Customers left out by the brand filter.
    pub filtered_out: u64,
    /// New scrolls started because one expired.
    pub scroll_restarts: u64,
    /// Requests sent.
    pub requests: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Rate refusals.
    pub throttled: u64,
    /// Seconds this run took.
    pub elapsed_seconds: f64,
    /// Bytes of the file.
    pub bytes: u64,
    /// Set when the export stopped before the end (Ctrl-C or an error): why.
    pub stopped: Option<String>,
    /// How many customers the platform said the listing has (its last `itemTotal` or
    /// `total`), when it said.
    pub platform_total: Option<u64>,
    /// Set when the finished file has fewer customers than the platform reported (less
    /// those that vanished or were filtered out): the export is not to be trusted whole.
    pub short: Option<String>,
    /// What changed since the baseline (`--changes-since`/`--state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<changes::ChangesReport>,
    /// `--split-rows`: the part files written, in order (`out` itself is not written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PathBuf>,
}

impl ExportReport {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        match &self.stopped {
            None => format!(
                "exported {} customers to {} ({}{} pages, {} retries, {} throttled, {:.1} s{})\n{}{}",
                self.rows,
                match (self.parts.first(), self.parts.last()) {
                    (Some(first), Some(last)) if self.parts.len() > 1 => format!(
                        "{} parts, {} … {}",
                        self.parts.len(),
                        first.display(),
                        last.display()
                    ),
                    (Some(only), _) => only.display().to_string(),
                    _ => self.out.display().to_string(),
                },
                self.platform_total
                    .map(|t| format!("the platform reports {t}; "))
                    .unwrap_or_default(),
                self.pages,
                self.retries,
                self.throttled,
                self.elapsed_seconds,
                if self.rows_before > 0 {
                    format!(", {} from earlier runs", self.rows_before)
                } else {
                    String::new()
                },
                self.short
                    .as_ref()
                    .map(|s| format!("incomplete: {s}\n"))
                    .unwrap_or_default(),
                self.changes
                    .as_ref()
                    .map(changes::ChangesReport::summary)
                    .unwrap_or_default()
            ),
            Some(why) if self.out == Path::new("-") => format!(
                "export to standard output stopped ({why}) after {} customers ({} pages, {} retries, {:.1} s); what was written is incomplete and there is no checkpoint: run the export again\n",
                self.rows, self.pages, self.retries, self.elapsed_seconds
            ),
            Some(why) => format!(
                "export stopped ({why}) after {} customers ({} pages, {} retries, {:.1} s); the checkpoint is written\n",
                self.rows, self.pages, self.retries, self.elapsed_seconds
            ),
        }
    }
}

/// Holds the output's run lock until dropped.
#[derive(Debug)]
pub struct OutputLock(#[allow(dead_code)] File);

/// Takes the run lock on `config.out` (the file `OUT.lock`, left in place).
pub fn lock(config: &ExportConfig) -> Result<OutputLock, ExportError> {
    let path = config.lock_path();
    let io = |source| ExportError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(OutputLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ExportError::Locked {
            out: config.out.clone(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Ids already written: numeric ids (both platforms use them) as 8-byte numbers, others as
/// a 128-bit hash. About 16 bytes per id at a million.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    numeric: FxHashSet<u64>,
    other: FxHashSet<u128>,
}

impl Seen {
    /// Adds `id`; false when it was there already.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        match id.parse::<u64>() {
            Ok(n) => self.numeric.insert(n),
            Err(_) => self
                .other
                .insert(xxhash_rust::xxh3::xxh3_128(id.as_bytes())),
        }
    }
}

/// The open `OUT.partial` and what it holds.
struct Writer {
    path: PathBuf,
    file: File,
    bytes: u64,
    rows: u64,
    format: OutFormat,
    compression: Compression,
    raw: bool,
    custom: Option<Vec<String>>,
    /// Option titles for select values (`--labels`).
    labels: Option<Arc<FieldDefs>>,
    /// Field titles for the custom columns' header (`--headers titles`).
    titles: Option<Arc<FieldDefs>>,
    /// Custom columns written only because the previous snapshot had them.
    kept: Vec<String>,
    /// `--format parquet`: the file(s) every staged row also goes to.
    parquet: Option<parquet::Parts>,
    /// `--split-rows`: customers per part.
    split: Option<u64>,
    /// Where parts after the first start in the partial file (bytes, on flush boundaries).
    part_starts: Vec<u64>,
    csv: csv::Writer<Vec<u8>>,
    buffer: Vec<u8>,
}

impl Writer {
    fn io(&self, source: std::io::Error) -> ExportError {
        ExportError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes the CSV header once the custom columns are known: the platform's, then those
    /// of `keep` it no longer has (CSV).
    fn start(&mut self, mut custom: Vec<String>, keep: &[String]) -> Result<(), ExportError> {
        if self.format == OutFormat::Csv {
            self.kept = keep
                .iter()
                .filter(|k| !custom.contains(k))
                .cloned()
                .collect();
            custom.extend(self.kept.iter().cloned());
            self.csv
                .write_record(header(&custom, self.titles.as_deref()))
                .map_err(|e| self.io(e.into()))?;
        }
        self.custom = Some(custom);
        self.take_csv()
    }

    /// Moves what the CSV writer holds into the buffer.
    fn take_csv(&mut self) -> Result<(), ExportError> {
        let csv = std::mem::replace(&mut self.csv, csv_writer());
        let mut bytes = csv
            .into_inner()
            .map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        self.buffer.append(&mut bytes);
        Ok(())
    }

    fn row(&mut self, value: &Value, platform: &str) -> Result<(), ExportError> {
        match self.format {
            OutFormat::Jsonl | OutFormat::Parquet => {
                serde_json::to_writer(&mut self.buffer, value).expect("JSON values serialize");
                self.buffer.push(b'\n');
                if let Some(sink) = &mut self.parquet {
                    sink.add(value)?;
                }
            }
            OutFormat::Csv => {
                let mut record = if platform == "omnidesk" {
                    Record::from_omnidesk(value)
                } else {
                    Record::from_udesk(value)
                };
                if let Some(fields) = &self.labels {
                    record::label_options(&mut record, fields);
                }
                let cells = record.cells(self.custom.as_deref().unwrap_or_default());
                let result = if self.raw {
                    self.csv.write_record(&cells)
                } else {
                    self.csv
                        .write_record(cells.iter().map(|c| guard(c).into_owned()))
                };
                result.map_err(|e| self.io(e.into()))?;
            }
        }
        self.rows += 1;
        if self.split.is_some_and(|n| self.rows.is_multiple_of(n)) {
            // A part ends here: on a flush, so also on a compressed frame's end.
            self.flush()?;
            self.part_starts.push(self.bytes);
        }
        Ok(())
    }

    /// Appends what is buffered to the file (compressed: as one complete member/frame, so
    /// every flush ends on a boundary a resume can cut at).
    fn flush(&mut self) -> Result<(), ExportError> {
        self.take_csv()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = match self.compression {
            Compression::None => {
                self.file.write_all(&self.buffer).map_err(|e| self.io(e))?;
                self.buffer.len()
            }
            c => {
                let framed = c.frame(&self.buffer).map_err(|e| self.io(e))?;
                self.file.write_all(&framed).map_err(|e| self.io(e))?;
                framed.len()
            }
        };
        self.bytes += written as u64;
        self.buffer.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), ExportError> {
        self.flush()?;
        if self.bytes == 0 && self.compression != Compression::None {
            // An empty compressed file is no valid one: an empty member/frame is.
            let empty = self.compression.frame(&[]).map_err(|e| self.io(e))?;
            self.file.write_all(&empty).map_err(|e| self.io(e))?;
            self.bytes += empty.len() as u64;
        }
        if self.path == Path::new("-") {
            // A pipe or terminal has nothing to make durable.
            return Ok(());
        }
        self.file.sync_data().map_err(|e| self.io(e))
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().from_writer(Vec::new())
}

/// The custom field columns from the first page: every name met, sorted.
fn custom_columns_of(records: &[Value]) -> Vec<String> {
    let mut names: std::collections::BTreeSet<String> = Default::default();
    for r in records {
        if let Some(Value::Object(fields)) = r.get("custom_fields") {
            names.extend(fields.keys().cloned());
        }
    }
    names.into_iter().collect()
}

/// Reads the ids of the rows in the first `bytes` of the partial file; checks the header.
fn rebuild_seen(
    path: &Path,
    bytes: u64,
    format: OutFormat,
    compression: Compression,
    custom: &[String],
    titles: Option<&FieldDefs>,
    mut on_value: impl FnMut(&Value) -> Result<(), ExportError>,
) -> Result<(Seen, u64), ExportError> {
    let io = |source| ExportError::Io {
        path: path.into(),
        source,
    };
    let bad = |reason: String| ExportError::Partial {
        partial: path.into(),
        reason,
    };
    let file = File::open(path).map_err(io)?;
    let reader = std::io::BufReader::new(compression.reader(file.take(bytes)).map_err(io)?);
    let mut seen = Seen::default();
    let mut rows = 0u64;
    match format {
        OutFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
            let head = csv.headers().map_err(|e| bad(e.to_string()))?.clone();
            if head
                .iter()
                .ne(header(custom, titles).iter().map(String::as_str))
            {
                return Err(bad(
                    "its header differs from the checkpoint's columns".into()
                ));
            }
            for record in csv.records() {
                let record = record.map_err(|e| bad(e.to_string()))?;
                seen.insert(record.get(0).unwrap_or_default());
                rows += 1;
            }
        }
        OutFormat::Jsonl | OutFormat::Parquet => {
            for line in reader.lines() {
                let line = line.map_err(io)?;
                let value: Value = serde_json::from_str(&line)
                    .map_err(|e| bad(format!("line {}: {e}", rows + 1)))?;
                if let Some(id) = id_of(&value) {
                    seen.insert(&id);
                }
                on_value(&value)?;
                rows += 1;
            }
        }
    }
    Ok((seen, rows))
}

/// `OUT.converting` (or the parts' ones), the Parquet files a `--format parquet` export
/// writes beside its staging.
fn parquet_sink(config: &ExportConfig) -> Result<parquet::Parts, ExportError> {
    Ok(parquet::Parts::create(
        &config.out,
        &config.params.target,
        config.params.split_rows,
    )?)
}

/// What to start from: a fresh file, or the checkpoint's state.
struct Start {
    writer: Writer,
    seen: Seen,
    cursor: Option<Cursor>,
    pages: u64,
}

fn open(config: &ExportConfig) -> Result<Start, ExportError> {
    let partial = if config.to_stdout() {
        config.out.clone()
    } else {
        config.partial()
    };
    let io = |source| ExportError::Io {
        path: partial.clone(),
        source,
    };
    let new_writer = |file: File| Writer {
        path: partial.clone(),
        file,
        bytes: 0,
        rows: 0,
        format: config.format.staged(),
        compression: config.compression,
        raw: config.params.raw,
        custom: None,
        labels: config.fields.clone().filter(|_| config.params.labels),
        titles: config
            .fields
            .clone()
            .filter(|_| config.params.header_titles),
        kept: Vec::new(),
        parquet: None,
        split: config.params.split_rows,
        part_starts: Vec::new(),
        csv: csv_writer(),
        buffer: Vec::new(),
    };
    if config.to_stdout() {
        use std::os::fd::AsFd;
        let stdout = std::io::stdout().as_fd().try_clone_to_owned().map_err(io)?;
        return Ok(Start {
            writer: new_writer(File::from(stdout)),
            seen: Seen::default(),
            cursor: None,
            pages: 0,
        });
    }
    let existing = Checkpoint::load(&config.checkpoint)?;
    let checkpoint = match existing {
        Some(c) if config.resume && !config.restart => c,
        Some(_) if !config.restart => {
            return Err(ExportError::Unfinished {
                out: config.out.clone(),
                checkpoint: config.checkpoint.clone(),
            })
        }
        _ => {
            let _ = std::fs::remove_file(&config.checkpoint);
            let file = File::create(&partial).map_err(io)?;
            let mut writer = new_writer(file);
            if config.format == OutFormat::Parquet {
                writer.parquet = Some(parquet_sink(config)?);
            }
            return Ok(Start {
                writer,
                seen: Seen::default(),
                cursor: None,
                pages: 0,
            });
        }
    };
    if checkpoint.params != config.params {
        let (a, b) = (&checkpoint.params, &config.params);
        let mut diffs = Vec::new();
        let pairs = [
            ("target", a.target.clone(), b.target.clone()),
            ("origin", a.origin.clone(), b.origin.clone()),
            ("format", a.format.clone(), b.format.clone()),
            ("source", a.source.clone(), b.source.clone()),
            ("query", format!("{:?}", a.query), format!("{:?}", b.query)),
            (
                "filter id",
                format!("{:?}", a.filter_id),
                format!("{:?}", b.filter_id),
            ),
            (
                "brand id",
                format!("{:?}", a.brand_id),
                format!("{:?}", b.brand_id),
            ),
            ("details", a.details.to_string(), b.details.to_string()),
            ("raw", a.raw.to_string(), b.raw.to_string()),
            (
                "split rows",
                format!("{:?}", a.split_rows),
                format!("{:?}", b.split_rows),
            ),
        ];
        for (name, then, now) in pairs {
            if then != now {
                diffs.push(format!("{name} was {then}, now {now}"));
            }
        }
        return Err(ExportError::Mismatch {
            checkpoint: config.checkpoint.clone(),
            what: diffs.join("; "),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&partial)
        .map_err(|e| ExportError::Partial {
            partial: partial.clone(),
            reason: format!("it cannot be opened ({e})"),
        })?;
    let length = file.metadata().map_err(io)?.len();
    if length < checkpoint.bytes {
        return Err(ExportError::Partial {
            partial,
            reason: format!(
                "it has {length} bytes, the checkpoint counts {}",
                checkpoint.bytes
            ),
        });
    }
    // Parquet: the file is written anew from the staged rows (a writer cannot be reopened).
    let mut sink = match config.format {
        OutFormat::Parquet => Some(parquet_sink(config)?),
        _ => None,
    };
    let (seen, rows) = rebuild_seen(
        &partial,
        checkpoint.bytes,
        config.format.staged(),
        config.compression,
        &checkpoint.custom_columns,
        config
            .fields
            .as_deref()
            .filter(|_| config.params.header_titles),
        |value| match &mut sink {
            Some(s) => Ok(s.add(value)?),
            None => Ok(()),
        },
    )?;
    if rows != checkpoint.rows {
        return Err(ExportError::Partial {
            partial,
            reason: format!(
                "it holds {rows} rows, the checkpoint counts {}",
                checkpoint.rows
            ),
        });
    }
    file.set_len(checkpoint.bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    let mut file = file;
    file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    let mut writer = new_writer(file);
    writer.bytes = checkpoint.bytes;
    writer.rows = checkpoint.rows;
    writer.custom = Some(checkpoint.custom_columns.clone());
    writer.kept = checkpoint.kept_columns.clone();
    writer.parquet = sink;
    writer.part_starts = checkpoint
        .part_starts
        .iter()
        .copied()
        .filter(|&b| b <= checkpoint.bytes)
        .collect();
    Ok(Start {
        writer,
        seen,
        cursor: Some(checkpoint.cursor),
        pages: checkpoint.pages,
    })
}

/// Runs an export to the end, to a Ctrl-C (`stop`), or to an error; the checkpoint is
/// written in every case but a usage error.
pub async fn run(
    config: &ExportConfig,
    client: Client,
    stop: Arc<Stop>,
) -> Result<ExportReport, ExportError> {
    let started = Instant::now();
    let _lock = if config.to_stdout() {
        None
    } else {
        Some(lock(config)?)
    };
    let Start {
        mut writer,
        mut seen,
        cursor,
        mut pages,
    } = open(config)?;
    let rows_before = writer.rows;
    let stats = &client.transport().stats;
    let platform = config.params.target.clone();
    let keep: Vec<String> = config
        .changes
        .as_ref()
        .map(|c| c.keep_columns.clone())
        .unwrap_or_default();

    // Udesk names its custom fields up front; Omnidesk's come with the first page.
    if writer.custom.is_none() {
        if let (Client::Udesk(udesk), OutFormat::Csv) = (&client, config.format) {
            let fields = match &config.fields {
                Some(f) => f.as_ref().clone(),
                None => udesk.custom_fields().await.map_err(ExportError::Platform)?,
            };
            writer.start(fields.fields.into_iter().map(|f| f.key).collect(), &keep)?;
        }
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(2);
    let task = match &client {
        Client::Omnidesk(c) => {
            let start = match &cursor {
                Some(Cursor::Offset { next }) => *next,
                _ => 0,
            };
            let paging = OmnideskPaging {
                start,
                query: config.params.query.clone(),
                details: config.params.details,
                brand_id: config.params.brand_id,
                window: config.window,
            };
            tokio::spawn(source::omnidesk(c.clone(), paging, tx))
        }
        Client::Udesk(c) => {
            let filter = ListFilter {
                filter_id: config.params.filter_id,
                query: config.params.query.clone(),
            };
            match (&cursor, config.params.source.as_str()) {
                (Some(Cursor::Page { next }), _) => {
                    tokio::spawn(source::udesk_list(c.clone(), filter, *next, tx))
                }
                (None, "list") => tokio::spawn(source::udesk_list(c.clone(), filter, 1, tx)),
                // A resumed scroll export starts a new scroll (the writer skips the customers
                // it has written): the checkpoint's scroll id may have been sent already by
                // the run that stopped, and a scroll id is never sent twice.
                _ => tokio::spawn(source::udesk_scroll(c.clone(), filter, tx)),
            }
        }
    };

    let mut report = ExportReport {
        out: config.out.clone(),
        format: config.format.as_str(),
        compression: config.compression.as_str(),
        rows: writer.rows,
        rows_before,
        pages: 0,
        duplicates_skipped: 0,
        vanished: 0,
        filtered_out: 0,
        scroll_restarts: 0,
        requests: 0,
        retries: 0,
        throttled: 0,
        elapsed_seconds: 0.0,
        bytes: writer.bytes,
        stopped: None,
        platform_total: None,
        short: None,
        changes: None,
        parts: Vec::new(),
    };
    let progress = Progress::rows(None, config.progress);
    let mut last_cursor = cursor;
    // The first page is checkpointed at once, later ones at most every `checkpoint_every`.
    let mut last_checkpoint: Option<Instant> = None;
    let mut failure: Option<ExportError> = None;
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.wait() => {
                report.stopped = Some("interrupted".into());
                break;
            }
            item = rx.recv() => item,
        };
        let page: Page = match item {
            None => break,
            Some(Ok(page)) => page,
            Some(Err(e)) => {
                report.stopped = Some(e.to_string());
                failure = Some(ExportError::Platform(e));
                break;
            }
        };
        if writer.custom.is_none() {
            writer.start(custom_columns_of(&page.records), &keep)?;
        }
        for value in &page.records {
            if let Some(id) = id_of(value) {
                if !seen.insert(&id) {
                    report.duplicates_skipped += 1;
                    continue;
                }
            }
            writer.row(value, &platform)?;
        }
        pages += 1;
        report.pages += 1;
        report.vanished += page.vanished;
        report.filtered_out += page.filtered;
        report.scroll_restarts += u64::from(page.restarted);
        report.platform_total = page.total.or(report.platform_total);
        last_cursor = Some(page.cursor);
        writer.flush()?;
        if last_checkpoint.is_none_or(|t| t.elapsed() >= config.checkpoint_every) {
            save_checkpoint(config, &mut writer, last_cursor.as_ref(), pages)?;
            last_checkpoint = Some(Instant::now());
        }
        progress.set(
            writer.rows,
            format!(
                "{} pages{}",
                pages,
                page.total
                    .map(|t| format!(", platform total {t}"))
                    .unwrap_or_default()
            ),
        );
    }
    progress.finish();
    task.abort();
    let finished = report.stopped.is_none();
    if finished {
        if writer.custom.is_none() {
            // Nothing came: the file still gets its header.
            writer.start(Vec::new(), &keep)?;
        }
        writer.sync()?;
        let pending = match &config.changes {
            Some(prepared) => {
                let (found, pending) = changes::write(
                    prepared,
                    &config.partial(),
                    config.format,
                    config.compression,
                    &writer.kept,
                    (&config.params.target, &config.params.origin),
                )?;
                report.changes = Some(found);
                pending
            }
            None => None,
        };
        let parts = match writer.parquet.take() {
            Some(files) => {
                let mut files = files.finish()?;
                if config.params.split_rows.is_none() {
                    // The Parquet file takes the staged JSONL's place, to be renamed like it.
                    let file = files.remove(0);
                    rename(&file, &config.partial())?;
                    report.bytes = std::fs::metadata(config.partial()).map_or(0, |m| m.len());
                }
                files
            }
            None if config.params.split_rows.is_some() => cut_parts(config, &writer)?,
            None => Vec::new(),
        };
        if !parts.is_empty() {
            report.bytes = 0;
            for (i, file) in parts.iter().enumerate() {
                let part = part_path(&config.out, i + 1);
                rename(file, &part)?;
                report.bytes += std::fs::metadata(&part).map_or(0, |m| m.len());
                report.parts.push(part);
            }
            // Parts beyond these are an earlier, longer export's: not this one's.
            for n in parts.len() + 1.. {
                if std::fs::remove_file(part_path(&config.out, n)).is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_file(config.partial());
        }
        finish(config, parts.is_empty())?;
        if let Some(state) = pending {
            // Only once the snapshot is in place: a run that dies before this compares the
            // next one with the same earlier state again.
            state.commit()?;
        }
    } else if writer.custom.is_some() {
        save_checkpoint(config, &mut writer, last_cursor.as_ref(), pages)?;
    }
    report.rows = writer.rows;
    report.bytes = writer.bytes;
    if finished {
        report.short = shortfall(&report);
    }
    report.requests = stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    report.retries = stats.retries.load(std::sync::atomic::Ordering::Relaxed);
    report.throttled = stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// What is missing from a finished export, compared with the platform's own count.
fn shortfall(report: &ExportReport) -> Option<String> {
    let total = report.platform_total?;
    let expected = total.saturating_sub(report.vanished + report.filtered_out);
    (report.rows < expected).then(|| {
        format!(
            "the file has {} customers but the platform reported {total}{}; customers were skipped (a listing that repeated pages, or a cursor that moved on): run the export again, or reconcile",
            report.rows,
            if report.vanished + report.filtered_out > 0 {
                format!(
                    " ({} vanished and {} filtered out)",
                    report.vanished, report.filtered_out
                )
            } else {
                String::new()
            }
        )
    })
}

fn save_checkpoint(
    config: &ExportConfig,
    writer: &mut Writer,
    cursor: Option<&Cursor>,
    pages: u64,
) -> Result<(), ExportError> {
    writer.sync()?;
    if config.to_stdout() {
        return Ok(());
    }
    let cursor = match cursor {
        Some(c) => c.clone(),
        // Nothing read yet: the start of the listing.
        None => match config.params.source.as_str() {
            "offset" => Cursor::Offset { next: 0 },
            "list" => Cursor::Page { next: 1 },
            _ => Cursor::Scroll {
                scroll_id: None,
                issued_at_ms: 0,
            },
        },
    };
    Checkpoint {
        version: checkpoint::VERSION,
        params: config.params.clone(),
        custom_columns: writer.custom.clone().unwrap_or_default(),
        kept_columns: writer.kept.clone(),
        part_starts: writer.part_starts.clone(),
        cursor,
        rows: writer.rows,
        bytes: writer.bytes,
        pages,
        written_at_ms: now_ms(),
    }
    .save(&config.checkpoint)?;
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), ExportError> {
    std::fs::rename(from, to).map_err(|source| ExportError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// `--split-rows` (CSV, JSONL): writes the parts `OUT-00001…` from the finished partial
/// file, cut at the recorded boundaries (flush ends, so also compressed frames' ends),
/// each CSV part after the first with the header again; returns them as `….partial`
/// files in order.
fn cut_parts(config: &ExportConfig, writer: &Writer) -> Result<Vec<PathBuf>, ExportError> {
    let partial = config.partial();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io {
            path: path.clone(),
            source,
        }
    };
    let header = match config.format {
        OutFormat::Csv => {
            let mut csv = csv_writer();
            csv.write_record(header(
                writer.custom.as_deref().unwrap_or_default(),
                writer.titles.as_deref(),
            ))
            .map_err(|e| io(&partial)(e.into()))?;
            let plain = csv
                .into_inner()
                .map_err(|e| io(&partial)(std::io::Error::other(e.to_string())))?;
            match config.compression {
                Compression::None => plain,
                c => c.frame(&plain).map_err(io(&partial))?,
            }
        }
        _ => Vec::new(),
    };
    let mut bounds = vec![0];
    bounds.extend(
        writer
            .part_starts
            .iter()
            .copied()
            .filter(|&b| b > 0 && b < writer.bytes),
    );
    bounds.push(writer.bytes);
    let mut source = File::open(&partial).map_err(io(&partial))?;
    let mut files = Vec::new();
    for (i, range) in bounds.windows(2).enumerate() {
        let path = suffixed(&part_path(&config.out, i + 1), ".partial");
        let mut file = File::create(&path).map_err(io(&path))?;
        if i > 0 {
            file.write_all(&header).map_err(io(&path))?;
        }
        source
            .seek(std::io::SeekFrom::Start(range[0]))
            .map_err(io(&partial))?;
        std::io::copy(&mut (&mut source).take(range[1] - range[0]), &mut file)
            .map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        files.push(path);
    }
    Ok(files)
}

/// The end: rename `OUT.partial` to `OUT` (atomic; unless the export went to parts), make
/// it durable, drop the checkpoint.
fn finish(config: &ExportConfig, whole: bool) -> Result<(), ExportError> {
    if config.to_stdout() {
        return Ok(());
    }
    if whole {
        rename(&config.partial(), &config.out)?;
    }
    sync_dir(&config.out).map_err(|source| ExportError::Io {
        path: config.out.clone(),
        source,
    })?;
    match std::fs::remove_file(&config.checkpoint) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExportError::Io {
            path: config.checkpoint.clone(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keeps_numeric_and_text_ids_apart() {
        let mut s = Seen::default();
        assert!(s.insert("12"));
        assert!(!s.insert("12"));
        assert!(s.insert("a12"));
        assert!(!s.insert("a12"));
        assert!(s.insert("012x"));
    }

    #[test]
    fn paths_beside_the_output() {
        let c = ExportConfig::new(PathBuf::from("dir/customers.csv"), params());
        assert_eq!(c.checkpoint, PathBuf::from("dir/customers.csv.checkpoint"));
        assert_eq!(c.partial(), PathBuf::from("dir/customers.csv.partial"));
        assert_eq!(c.lock_path(), PathBuf::from("dir/customers.csv.lock"));
        assert_eq!(c.format, OutFormat::Csv);
        assert_eq!(OutFormat::from_path(Path::new("x.JSONL")), OutFormat::Jsonl);
        assert_eq!(
            OutFormat::from_path(Path::new("x.parquet")),
            OutFormat::Parquet
        );
        assert_eq!(
            part_path(Path::new("d/c.csv.gz"), 3),
            PathBuf::from("d/c-00003.csv.gz")
        );
        assert_eq!(part_path(Path::new("c"), 12), PathBuf::from("c-00012"));
    }

    fn params() -> Params {
        Params {
            target: "omnidesk".into(),
            origin: "sandbox".into(),
            format: "csv".into(),
            source: "offset".into(),
            query: None,
            filter_id: None,
            brand_id: None,
            details: false,
            raw: false,
            labels: false,
            header_titles: false,
            split_rows: None,
        }
    }

    #[test]
    fn the_partial_file_gives_back_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let custom = vec!["tier".to_string()];
        let mut text = header(&custom, None).join(",");
        text.push('\n');
        let mut r = Record::default();
        for id in ["5", "9"] {
            r.id = id.into();
            text.push_str(&r.cells(&custom).join(","));
            text.push('\n');
        }
        let keep = text.len() as u64;
        text.push_str("7,torn");
        std::fs::write(&path, &text).unwrap();
        let (mut seen, rows) = rebuild_seen(
            &path,
            keep,
            OutFormat::Csv,
            Compression::None,
            &custom,
            None,
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(rows, 2);
        assert!(!seen.insert("5"));
        assert!(seen.insert("7"));
        assert!(rebuild_seen(
            &path,
            keep,
            OutFormat::Csv,
            Compression::None,
            &[],
            None,
            |_| Ok(())
        )
        .is_err());
    }
}
