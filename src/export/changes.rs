//! `export --changes-since PREVIOUS` and `export --state DIR`: what changed between the
//! previous snapshot and this one, as a file of `insert`/`update`/`delete` rows.
//!
//! ```text
//! PREVIOUS (or DIR/digest) ─► digests sorted by id ─┐
//!                                                    ├─► merge by id ─► deletes ─► CHANGES
//! new snapshot ─► digests sorted by id ─────────────┘        └─► marks sorted by row ─► inserts
//!                                                                and updates, in file order
//! ```
//!
//! A digest is a customer's id, a 64-bit hash of its non-empty fields by name and a 32-bit
//! hash per field, so memory is bounded by the sorters' budget whatever the size (past it,
//! sorted runs go to a temporary directory). The comparison reads the finished snapshot, so
//! it is the same whether the export was interrupted and resumed or not; it runs before the
//! snapshot is renamed into place, so `PREVIOUS` may be the file the export replaces.

use super::compress::Compression;
use super::record::{BASE_COLUMNS, CUSTOM_PREFIX, EXTRA_CUSTOM_COLUMN};
use super::sorted::{codec, Entry, Sorted, Sorter};
use super::OutFormat;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Bytes each sorter holds before it spills (three are alive at most).
pub const SORT_BUDGET: usize = 24 << 20;

/// The state format version.
pub const STATE_VERSION: u32 = 1;

/// What the changes are measured against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// A previous export file of the same target and format.
    File(PathBuf),
    /// A state directory this command keeps (empty or missing on the first run).
    State(PathBuf),
}

/// `--changes-since`/`--state` as asked.
#[derive(Debug, Clone)]
pub struct ChangesConfig {
    /// What to compare with.
    pub baseline: Baseline,
    /// Where the changes go (default: `OUT` with `.changes` before its extension).
    pub out: PathBuf,
    /// Keep the previous snapshot's custom columns (empty) when the platform no longer has
    /// them (CSV).
    pub keep_removed_columns: bool,
    /// Where sorted runs spill.
    pub temp_dir: PathBuf,
    /// Bytes each sort holds in memory before it spills ([`SORT_BUDGET`]).
    pub sort_budget: usize,
}

/// `dir/customers.csv.gz` → `dir/customers.changes.csv.gz`.
pub fn default_changes_path(out: &Path) -> PathBuf {
    super::with_infix(out, ".changes")
}

/// Why the changes could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// The baseline cannot be used for this export (a configuration error).
    #[error("{path}: {reason}")]
    Baseline {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ChangesError + '_ {
    move |source| ChangesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the state directory keeps besides the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// `omnidesk` or `udesk`.
    pub target: String,
    /// The platform origin.
    pub origin: String,
    /// `csv` or `jsonl`: field names differ between them.
    pub format: String,
    /// The field names the digests' hashes are indexed by.
    pub columns: Vec<String>,
    /// Custom fields the platform had then (CSV column names, or `custom_fields.<key>`).
    pub custom_fields: Vec<String>,
    /// Customers in that snapshot.
    pub rows: u64,
    /// The snapshot file it was made from.
    pub snapshot: PathBuf,
    /// Unix milliseconds when it was written.
    pub written_at_ms: u64,
}

/// The baseline, checked before any request.
#[derive(Debug)]
pub struct Prepared {
    config: ChangesConfig,
    /// The previous state (`None` on a first run with `--state`).
    state: Option<State>,
    /// Custom field keys the CSV keeps as columns (from the previous snapshot).
    pub keep_columns: Vec<String>,
}

fn read_state(dir: &Path) -> Result<Option<State>, ChangesError> {
    let path = dir.join("state.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&path)(e)),
    };
    let state: State = serde_json::from_slice(&text).map_err(|e| ChangesError::Baseline {
        path: path.clone(),
        reason: format!("not a deskport export state ({e})"),
    })?;
    if state.version != STATE_VERSION {
        return Err(ChangesError::Baseline {
            path,
            reason: format!(
                "state version {} is not {STATE_VERSION}; use a new --state directory",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// Opens a possibly compressed export file for reading.
fn open_text(path: &Path, compression: Compression) -> Result<Box<dyn BufRead>, ChangesError> {
    let file = File::open(path).map_err(io_at(path))?;
    let reader = compression.reader(file).map_err(io_at(path))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Checks the baseline against this export (`target`, `origin`, `format`) and reads the
/// custom columns the new CSV keeps.
pub fn prepare(
    config: ChangesConfig,
    target: &str,
    origin: &str,
    format: OutFormat,
) -> Result<Prepared, ChangesError> {
    let mut keep = Vec::new();
    let state = match &config.baseline {
        Baseline::State(dir) => {
            let state = read_state(dir)?;
            if let Some(s) = &state {
                let mut differs = Vec::new();
                for (what, then, now) in [
                    ("target", s.target.as_str(), target),
                    ("origin", s.origin.as_str(), origin),
                    ("format", s.format.as_str(), format.as_str()),
                ] {
                    if then != now {
                        differs.push(format!("{what} was {then}, now {now}"));
                    }
                }
                if !differs.is_empty() {
                    return Err(ChangesError::Baseline {
                        path: dir.clone(),
                        reason: format!(
                            "the state is of another export ({}); give this export its own --state directory",
                            differs.join("; ")
                        ),
                    });
                }
                if !dir.join("digest").exists() {
                    return Err(ChangesError::Baseline {
                        path: dir.join("digest"),
                        reason: "missing beside state.json; remove the directory to start over"
                            .into(),
                    });
                }
                keep = custom_keys(&s.columns);
            }
            state
        }
        Baseline::File(path) if format == OutFormat::Parquet => {
            if !super::parquet::is_parquet(path) {
                return Err(ChangesError::Baseline {
                    path: path.clone(),
                    reason: "it is not a Parquet file; a Parquet export compares with a previous Parquet export".into(),
                });
            }
            None
        }
        Baseline::File(path) => {
            let mut text = open_text(path, Compression::from_path(path))?;
            let bad = |reason: String| ChangesError::Baseline {
                path: path.clone(),
                reason,
            };
            let first = text.fill_buf().map_err(io_at(path))?;
            let looks = match first.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => OutFormat::Jsonl,
                None if first.is_empty() => format,
                _ => OutFormat::Csv,
            };
            if looks != format {
                return Err(bad(format!(
                    "it reads as {}, this export writes {}: compare exports of one format",
                    looks.as_str(),
                    format.as_str()
                )));
            }
            if format == OutFormat::Csv {
                let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(text);
                let head = csv
                    .headers()
                    .map_err(|e| bad(format!("its header cannot be read ({e})")))?;
                if head.get(0) != Some(BASE_COLUMNS[0]) {
                    return Err(bad(format!(
                        "it is not a deskport CSV export (its first column is not {})",
                        BASE_COLUMNS[0]
                    )));
                }
                let names: Vec<String> = head.iter().map(str::to_string).collect();
                keep = custom_keys(&names);
            }
            None
        }
    };
    if !config.keep_removed_columns {
        keep.clear();
    }
    Ok(Prepared {
        config,
        state,
        keep_columns: keep,
    })
}

/// The custom field keys of CSV columns named `custom_<key>`.
fn custom_keys(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| c.as_str() != EXTRA_CUSTOM_COLUMN)
        .filter_map(|c| c.strip_prefix(CUSTOM_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Whether a field name is a custom field's (CSV column or JSONL path).
fn is_custom(name: &str) -> bool {
    if name == EXTRA_CUSTOM_COLUMN {
        return false;
    }
    name.starts_with("custom_fields.") || !BASE_COLUMNS.contains(&name)
}

/// What the comparison found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangesReport {
    /// The changes file.
    pub file: PathBuf,
    /// What it was compared with.
    pub baseline: PathBuf,
    /// `--state` found no earlier state: every customer is an insert.
    pub first_run: bool,
    /// Customers in the baseline.
    pub previous_rows: u64,
    /// Customers new since then.
    pub inserted: u64,
    /// Customers whose fields changed.
    pub updated: u64,
    /// Customers no longer there.
    pub deleted: u64,
    /// Customers the same as then.
    pub unchanged: u64,
    /// Custom fields the platform has now and did not then.
    pub fields_added: Vec<String>,
    /// Custom fields the platform had then and not now (kept as empty CSV columns unless
    /// `--drop-removed-columns`).
    pub fields_removed: Vec<String>,
    /// Rows of the baseline with an id met before in it (the first counts).
    pub duplicate_ids: u64,
    /// Bytes the sorts wrote to disk.
    pub spilled_bytes: u64,
}

impl ChangesReport {
    /// The summary lines.
    pub fn summary(&self) -> String {
        let mut s = if self.first_run {
            format!(
                "changes: first run with this state, all {} customers are inserts → {}\n",
                self.inserted,
                self.file.display()
            )
        } else {
            format!(
                "changes since {}: {} inserted, {} updated, {} deleted, {} unchanged → {}\n",
                self.baseline.display(),
                self.inserted,
                self.updated,
                self.deleted,
                self.unchanged,
                self.file.display()
            )
        };
        if !self.fields_added.is_empty() {
            s.push_str(&format!(
                "schema: custom fields added since then: {}\n",
                self.fields_added.join(", ")
            ));
        }
        if !self.fields_removed.is_empty() {
            s.push_str(&format!(
                "schema: custom fields gone since then: {}\n",
                self.fields_removed.join(", ")
            ));
        }
        if self.duplicate_ids > 0 {
            s.push_str(&format!(
                "the baseline repeats {} ids; the first row of each was compared\n",
                self.duplicate_ids
            ));
        }
        s
    }
}

/// One customer as compared: its id (numeric ids sort as numbers), its row in its file, a
/// hash of all its non-empty fields by name, and a hash per field (0 = empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Digest {
    not_numeric: bool,
    number: u64,
    id: String,
    ordinal: u64,
    row: u64,
    fields: Vec<u32>,
}

impl Digest {
    fn same_customer(&self, other: &Digest) -> bool {
        self.not_numeric == other.not_numeric && self.number == other.number && self.id == other.id
    }
}

impl Entry for Digest {
    fn size(&self) -> usize {
        self.id.len() + self.fields.len() * 4
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        codec::put_bytes(out, self.id.as_bytes())?;
        codec::put_u64(out, self.ordinal)?;
        codec::put_u64(out, self.row)?;
        codec::put_u64(out, self.fields.len() as u64)?;
        for f in &self.fields {
            out.write_all(&f.to_le_bytes())?;
        }
        Ok(())
    }

    fn read_from(input: &mut impl BufRead) -> io::Result<Option<Self>> {
        if input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let id = String::from_utf8(codec::get_bytes(input)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let ordinal = codec::get_u64(input)?;
        let row = codec::get_u64(input)?;
        let n = codec::get_u64(input)?;
        if n > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad digest"));
        }
        let mut fields = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let mut b = [0u8; 4];
            input.read_exact(&mut b)?;
            fields.push(u32::from_le_bytes(b));
        }
        Ok(Some(Digest::new(id, ordinal, row, fields)))
    }
}

impl Digest {
    fn new(id: String, ordinal: u64, row: u64, fields: Vec<u32>) -> Digest {
        let number = id.parse::<u64>().ok();
        Digest {
            not_numeric: number.is_none(),
            number: number.unwrap_or(0),
            id,
            ordinal,
            row,
            fields,
        }
    }
}

/// An insert or update of the new snapshot's row `ordinal`, with the fields that changed
/// (indexes into the merged field names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Mark {
    ordinal: u64,
    changed: Option<Vec<u32>>,
}

impl Entry for Mark {
    fn size(&self) -> usize {
        self.changed.as_ref().map_or(0, |c| c.len() * 4)
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        codec::put_u64(out, self.ordinal)?;
        match &self.changed {
            None => codec::put_u64(out, u64::MAX),
            Some(c) => {
                codec::put_u64(out, c.len() as u64)?;
                for f in c {
                    out.write_all(&f.to_le_bytes())?;
                }
                Ok(())
            }
        }
    }

    fn read_from(input: &mut impl BufRead) -> io::Result<Option<Self>> {
        let Some(ordinal) = codec::get_u64_or_end(input)? else {
            return Ok(None);
        };
        let n = codec::get_u64(input)?;
        let changed = if n == u64::MAX {
            None
        } else {
            let mut c = Vec::with_capacity(n.min(1 << 20) as usize);
            for _ in 0..n {
                let mut b = [0u8; 4];
                input.read_exact(&mut b)?;
                c.push(u32::from_le_bytes(b));
            }
            Some(c)
        };
        Ok(Some(Mark { ordinal, changed }))
    }
}

/// Field names met in one file, numbered in the order met.
#[derive(Debug, Default)]
struct Columns {
    names: Vec<String>,
    index: FxHashMap<String, usize>,
    /// xxh3 of each name, for the row hash.
    hashes: Vec<u64>,
    /// Whether any row had a value in the column.
    filled: Vec<bool>,
}

impl Columns {
    fn of(names: Vec<String>) -> Columns {
        let mut c = Columns::default();
        for n in names {
            c.intern(&n);
        }
        c
    }

    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.hashes
            .push(xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
        self.filled.push(false);
        i
    }
}

fn field_hash(value: &[u8]) -> (u64, u32) {
    let h = xxhash_rust::xxh3::xxh3_64(value);
    let short = (h as u32) ^ ((h >> 32) as u32);
    (h, short.max(1))
}

/// Hashes one row's fields, given as (column, value hash, short hash) with empty values
/// left out, in name order; marks their columns as filled.
fn digest_row(columns: &mut Columns, fields: &mut [(usize, u64, u32)]) -> (u64, Vec<u32>) {
    fields.sort_unstable_by(|a, b| columns.names[a.0].cmp(&columns.names[b.0]));
    let mut row = xxhash_rust::xxh3::Xxh3::new();
    let mut hashes = vec![0u32; columns.names.len()];
    for &(c, long, short) in fields.iter() {
        row.update(&columns.hashes[c].to_le_bytes());
        row.update(&long.to_le_bytes());
        hashes[c] = short;
        columns.filled[c] = true;
    }
    (row.digest(), hashes)
}

/// Reads an export file into `sorter`; gives back its columns and the rows read.
fn digest_file(
    path: &Path,
    format: OutFormat,
    compression: Compression,
    platform: &str,
    sorter: &mut Sorter<Digest>,
) -> Result<(Columns, u64), ChangesError> {
    let io = io_at(path);
    let bad = |line: u64, reason: String| ChangesError::Baseline {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let text = open_text(path, compression)?;
    let mut rows = 0u64;
    let mut fields: Vec<(usize, u64, u32)> = Vec::new();
    match format {
        OutFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(text);
            let head = csv
                .byte_headers()
                .map_err(|e| bad(1, e.to_string()))?
                .clone();
            let mut columns = Columns::of(
                head.iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect(),
            );
            let id_at = columns.index.get(BASE_COLUMNS[0]).copied().unwrap_or(0);
            let mut record = csv::ByteRecord::new();
            while csv
                .read_byte_record(&mut record)
                .map_err(|e| bad(rows + 2, e.to_string()))?
            {
                fields.clear();
                for (c, value) in record.iter().enumerate().take(columns.names.len()) {
                    if !value.is_empty() {
                        let (long, short) = field_hash(value);
                        fields.push((c, long, short));
                    }
                }
                let id =
                    String::from_utf8_lossy(record.get(id_at).unwrap_or_default()).into_owned();
                let (row, hashes) = digest_row(&mut columns, &mut fields);
                sorter
                    .push(Digest::new(id, rows, row, hashes))
                    .map_err(&io)?;
                rows += 1;
            }
            Ok((columns, rows))
        }
        OutFormat::Parquet => {
            // Both sides as the Parquet file's cells: a previous Parquet file, or this
            // export's staged JSONL read as the file will hold it.
            let mut columns = Columns::default();
            let mut push = |columns: &mut Columns, cells: Vec<(String, String)>, rows: u64| {
                fields.clear();
                let mut id = String::new();
                for (name, value) in cells {
                    let (long, short) = field_hash(value.as_bytes());
                    fields.push((columns.intern(&name), long, short));
                    if name == BASE_COLUMNS[0] {
                        id = value;
                    }
                }
                let (row, hashes) = digest_row(columns, &mut fields);
                sorter.push(Digest::new(id, rows, row, hashes))
            };
            if super::parquet::is_parquet(path) {
                let cells = super::parquet::file_cells(path).map_err(|e| bad(0, e.to_string()))?;
                for row in cells {
                    let row = row.map_err(|e| bad(rows + 1, e.to_string()))?;
                    push(&mut columns, row, rows).map_err(&io)?;
                    rows += 1;
                }
            } else {
                for line in text.lines() {
                    let line = line.map_err(&io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value =
                        serde_json::from_str(&line).map_err(|e| bad(rows + 1, e.to_string()))?;
                    let record = if platform == "omnidesk" {
                        super::record::Record::from_omnidesk(&value)
                    } else {
                        super::record::Record::from_udesk(&value)
                    };
                    push(&mut columns, super::parquet::record_cells(record), rows).map_err(&io)?;
                    rows += 1;
                }
            }
            Ok((columns, rows))
        }
        OutFormat::Jsonl => {
            let mut columns = Columns::default();
            let mut value_text = Vec::new();
            for line in text.lines() {
                let line = line.map_err(&io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| bad(rows + 1, e.to_string()))?;
                let serde_json::Value::Object(object) = &value else {
                    return Err(bad(rows + 1, "not a JSON object".into()));
                };
                fields.clear();
                let mut add = |columns: &mut Columns, name: &str, v: &serde_json::Value| {
                    let c = columns.intern(name);
                    value_text.clear();
                    match v {
                        serde_json::Value::Null => return,
                        serde_json::Value::String(s) if s.is_empty() => return,
                        serde_json::Value::String(s) => value_text.extend_from_slice(s.as_bytes()),
                        other => serde_json::to_writer(&mut value_text, other)
                            .expect("JSON values serialize"),
                    }
                    let (long, short) = field_hash(&value_text);
                    fields.push((c, long, short));
                };
                for (key, v) in object {
                    match (key.as_str(), v) {
                        ("custom_fields", serde_json::Value::Object(custom)) => {
                            for (k, cv) in custom {
                                add(&mut columns, &format!("custom_fields.{k}"), cv);
                            }
                        }
                        _ => add(&mut columns, key, v),
                    }
                }
                let id = super::record::id_of(&value).unwrap_or_default();
                let (row, hashes) = digest_row(&mut columns, &mut fields);
                sorter
                    .push(Digest::new(id, rows, row, hashes))
                    .map_err(&io)?;
                rows += 1;
            }
            Ok((columns, rows))
        }
    }
}

/// The sorted digests of a state directory's `digest` file.
struct StateDigests(BufReader<File>);

impl Iterator for StateDigests {
    type Item = io::Result<Digest>;
    fn next(&mut self) -> Option<io::Result<Digest>> {
        Digest::read_from(&mut self.0).transpose()
    }
}

/// Skips digests whose id repeats the one before (counting them).
struct Unique<I> {
    inner: I,
    last: Option<Digest>,
    repeated: u64,
}

impl<I: Iterator<Item = io::Result<Digest>>> Unique<I> {
    fn next_unique(&mut self) -> io::Result<Option<Digest>> {
        loop {
            let Some(d) = self.inner.next().transpose()? else {
                return Ok(None);
            };
            if self.last.as_ref().is_some_and(|l| l.same_customer(&d)) {
                self.repeated += 1;
                continue;
            }
            self.last = Some(Digest {
                fields: Vec::new(),
                ..d.clone()
            });
            return Ok(Some(d));
        }
    }
}

/// The state to commit once the snapshot is in place.
#[derive(Debug)]
pub struct PendingState {
    dir: PathBuf,
    state: State,
}

impl PendingState {
    /// Replaces the state directory's digest and `state.json` (each by an atomic rename).
    pub fn commit(self) -> Result<(), ChangesError> {
        let next = self.dir.join("digest.next");
        let digest = self.dir.join("digest");
        std::fs::rename(&next, &digest).map_err(io_at(&digest))?;
        let json = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.next");
        let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
        f.write_all(&serde_json::to_vec_pretty(&self.state).expect("state serializes"))
            .and_then(|()| f.sync_all())
            .map_err(io_at(&tmp))?;
        std::fs::rename(&tmp, &json).map_err(io_at(&json))?;
        super::checkpoint::sync_dir(&json).map_err(io_at(&json))
    }
}

/// Writes the changes file for the finished snapshot `snapshot` (compressed as
/// `compression`); `kept` are the CSV columns kept only because the baseline had them.
pub fn write(
    prepared: &Prepared,
    snapshot: &Path,
    format: OutFormat,
    compression: Compression,
    kept: &[String],
    params: (&str, &str),
) -> Result<(ChangesReport, Option<PendingState>), ChangesError> {
    let config = &prepared.config;
    let temp = &config.temp_dir;
    let mut report = ChangesReport {
        file: config.out.clone(),
        ..ChangesReport::default()
    };

    // The baseline's digests, sorted.
    let (old_columns, old): (Columns, Box<dyn Iterator<Item = io::Result<Digest>>>) =
        match (&config.baseline, &prepared.state) {
            (Baseline::File(path), _) => {
                report.baseline = path.clone();
                let mut sorter = Sorter::new(temp, config.sort_budget);
                let (columns, rows) = digest_file(
                    path,
                    format,
                    Compression::from_path(path),
                    params.0,
                    &mut sorter,
                )?;
                report.previous_rows = rows;
                report.spilled_bytes += sorter.spilled();
                (columns, Box::new(sorter.finish().map_err(io_at(temp))?))
            }
            (Baseline::State(dir), Some(state)) => {
                report.baseline = dir.clone();
                report.previous_rows = state.rows;
                let path = dir.join("digest");
                let file = File::open(&path).map_err(io_at(&path))?;
                (
                    Columns::of(state.columns.clone()),
                    Box::new(StateDigests(BufReader::with_capacity(1 << 16, file))),
                )
            }
            (Baseline::State(dir), None) => {
                report.baseline = dir.clone();
                report.first_run = true;
                (Columns::default(), Box::new(std::iter::empty()))
            }
        };
    let mut old = Unique {
        inner: old,
        last: None,
        repeated: 0,
    };

    // This snapshot's digests, sorted.
    let mut sorter = Sorter::new(temp, config.sort_budget);
    let (new_columns, rows) = digest_file(snapshot, format, compression, params.0, &mut sorter)?;
    report.spilled_bytes += sorter.spilled();
    let new_sorted: Sorted<Digest> = sorter.finish().map_err(io_at(temp))?;
    let mut new = Unique {
        inner: new_sorted,
        last: None,
        repeated: 0,
    };

    // Schema: custom fields present then and now (columns kept only for the baseline's
    // sake do not count as present now).
    let old_custom: Vec<&String> = match &prepared.state {
        Some(s) => s.custom_fields.iter().collect(),
        // A file's custom column empty in every row may be one kept only for an earlier
        // file's sake: not counted as there then.
        None => old_columns
            .names
            .iter()
            .zip(&old_columns.filled)
            .filter(|(n, filled)| is_custom(n) && **filled)
            .map(|(n, _)| n)
            .collect(),
    };
    let kept_names: Vec<String> = kept.iter().map(|k| format!("{CUSTOM_PREFIX}{k}")).collect();
    let new_custom: Vec<String> = new_columns
        .names
        .iter()
        .filter(|n| is_custom(n) && !kept_names.contains(n))
        .cloned()
        .collect();
    if !report.first_run {
        report.fields_added = new_custom
            .iter()
            .filter(|n| !old_custom.contains(n))
            .cloned()
            .collect();
        report.fields_removed = old_custom
            .iter()
            .filter(|n| !new_custom.contains(n))
            .map(|n| n.to_string())
            .collect();
    }

    // Field names of both sides, each with its index on either side.
    let mut names: Vec<String> = new_columns.names.clone();
    for n in &old_columns.names {
        if !new_columns.index.contains_key(n) {
            names.push(n.clone());
        }
    }
    let pairs: Vec<(Option<usize>, Option<usize>)> = names
        .iter()
        .map(|n| {
            (
                old_columns.index.get(n).copied(),
                new_columns.index.get(n).copied(),
            )
        })
        .collect();

    // The state for the next run: this snapshot's digests in id order.
    let mut next_state = match &config.baseline {
        Baseline::State(dir) => {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
            let path = dir.join("digest.next");
            let file = File::create(&path).map_err(io_at(&path))?;
            Some((path, std::io::BufWriter::with_capacity(1 << 16, file)))
        }
        Baseline::File(_) => None,
    };

    let partial = super::suffixed(&config.out, ".partial");
    let head = match format {
        OutFormat::Csv => Some(
            csv::Reader::from_reader(open_text(snapshot, compression)?)
                .byte_headers()
                .map_err(|e| io_at(snapshot)(e.into()))?
                .clone(),
        ),
        OutFormat::Jsonl | OutFormat::Parquet => None,
    };
    let mut out = ChangesWriter::create(&partial, format, compression, head.as_ref())?;
    let mut marks: Sorter<Mark> = Sorter::new(temp, config.sort_budget);
    let merge_io = io_at(temp);
    let mut o = old.next_unique().map_err(&merge_io)?;
    let mut n = new.next_unique().map_err(&merge_io)?;
    loop {
        let order = match (&o, &n) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => {
                (a.not_numeric, a.number, &a.id).cmp(&(b.not_numeric, b.number, &b.id))
            }
        };
        match order {
            std::cmp::Ordering::Less => {
                let gone = o.take().expect("present");
                out.delete(&gone.id)?;
                report.deleted += 1;
                o = old.next_unique().map_err(&merge_io)?;
            }
            std::cmp::Ordering::Greater => {
                let added = n.take().expect("present");
                marks
                    .push(Mark {
                        ordinal: added.ordinal,
                        changed: None,
                    })
                    .map_err(&merge_io)?;
                report.inserted += 1;
                keep_state(&mut next_state, &added)?;
                n = new.next_unique().map_err(&merge_io)?;
            }
            std::cmp::Ordering::Equal => {
                let (then, now) = (o.take().expect("present"), n.take().expect("present"));
                if then.row == now.row {
                    report.unchanged += 1;
                } else {
                    let at = |f: &[u32], i: Option<usize>| {
                        i.and_then(|i| f.get(i)).copied().unwrap_or(0)
                    };
                    let changed: Vec<u32> = pairs
                        .iter()
                        .enumerate()
                        .filter(|(_, (oi, ni))| at(&then.fields, *oi) != at(&now.fields, *ni))
                        .map(|(i, _)| i as u32)
                        .collect();
                    marks
                        .push(Mark {
                            ordinal: now.ordinal,
                            changed: Some(changed),
                        })
                        .map_err(&merge_io)?;
                    report.updated += 1;
                }
                keep_state(&mut next_state, &now)?;
                o = old.next_unique().map_err(&merge_io)?;
                n = new.next_unique().map_err(&merge_io)?;
            }
        }
    }
    report.duplicate_ids = old.repeated;
    report.spilled_bytes += marks.spilled();

    // Inserts and updates, in the snapshot's order, with their rows as written.
    let mut marks = marks.finish().map_err(&merge_io)?.peekable();
    copy_marked(snapshot, format, compression, &names, &mut marks, &mut out)?;
    out.finish()?;
    std::fs::rename(&partial, &config.out).map_err(io_at(&config.out))?;
    super::checkpoint::sync_dir(&config.out).map_err(io_at(&config.out))?;

    let pending = match next_state {
        Some((path, mut file)) => {
            file.flush()
                .and_then(|()| file.get_ref().sync_all())
                .map_err(io_at(&path))?;
            let Baseline::State(dir) = &config.baseline else {
                unreachable!("a state file only with --state")
            };
            Some(PendingState {
                dir: dir.clone(),
                state: State {
                    version: STATE_VERSION,
                    target: params.0.to_string(),
                    origin: params.1.to_string(),
                    format: format.as_str().to_string(),
                    columns: new_columns.names.clone(),
                    custom_fields: new_custom,
                    rows,
                    snapshot: snapshot_name(snapshot),
                    written_at_ms: super::checkpoint::now_ms(),
                },
            })
        }
        None => None,
    };
    Ok((report, pending))
}

/// The snapshot's final name (it is still `OUT.partial` while compared).
fn snapshot_name(snapshot: &Path) -> PathBuf {
    let s = snapshot.to_string_lossy();
    PathBuf::from(s.strip_suffix(".partial").unwrap_or(&s))
}

fn keep_state(
    next: &mut Option<(PathBuf, std::io::BufWriter<File>)>,
    digest: &Digest,
) -> Result<(), ChangesError> {
    if let Some((path, file)) = next {
        digest.write_to(file).map_err(io_at(path))?;
    }
    Ok(())
}

/// Copies the snapshot rows that `marks` name into the changes file.
fn copy_marked(
    snapshot: &Path,
    format: OutFormat,
    compression: Compression,
    names: &[String],
    marks: &mut std::iter::Peekable<Sorted<Mark>>,
    out: &mut ChangesWriter,
) -> Result<(), ChangesError> {
    let io = io_at(snapshot);
    let mut next = |ordinal: u64| -> Result<Option<Mark>, ChangesError> {
        match marks.peek() {
            Some(Ok(m)) if m.ordinal == ordinal => Ok(marks.next().transpose().map_err(&io)?),
            Some(Err(_)) => Err(marks
                .next()
                .and_then(Result::err)
                .map(&io)
                .expect("an error")),
            _ => Ok(None),
        }
    };
    let changed_names = |m: &Mark| -> Option<Vec<&str>> {
        m.changed
            .as_ref()
            .map(|c| c.iter().map(|&i| names[i as usize].as_str()).collect())
    };
    let text = open_text(snapshot, compression)?;
    match format {
        OutFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(text);
            let mut record = csv::ByteRecord::new();
            let mut ordinal = 0u64;
            while csv
                .read_byte_record(&mut record)
                .map_err(|e| io_at(snapshot)(e.into()))?
            {
                if let Some(mark) = next(ordinal)? {
                    out.csv_row(changed_names(&mark).as_deref(), &record)?;
                }
                ordinal += 1;
            }
        }
        OutFormat::Jsonl | OutFormat::Parquet => {
            let mut ordinal = 0u64;
            for line in text.lines() {
                let line = line.map_err(io_at(snapshot))?;
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(mark) = next(ordinal)? {
                    out.json_row(changed_names(&mark).as_deref(), &line)?;
                }
                ordinal += 1;
            }
        }
    }
    Ok(())
}

/// The changes file being written (as `CHANGES.partial`, renamed when complete): the
/// header, the deletes while the merge runs, then the inserts and updates.
struct ChangesWriter {
    path: PathBuf,
    file: File,
    format: OutFormat,
    compression: Compression,
    buffer: Vec<u8>,
    /// CSV rows not yet in `buffer` (one writer a megabyte, not one a row).
    csv: csv::Writer<Vec<u8>>,
    /// Columns of the snapshot (CSV).
    width: usize,
}

impl ChangesWriter {
    /// A new file; a CSV one starts with `op,changed_fields` and the snapshot's header.
    fn create(
        path: &Path,
        format: OutFormat,
        compression: Compression,
        head: Option<&csv::ByteRecord>,
    ) -> Result<Self, ChangesError> {
        let mut w = ChangesWriter {
            path: path.to_path_buf(),
            file: File::create(path).map_err(io_at(path))?,
            format,
            compression,
            buffer: Vec::new(),
            csv: csv::Writer::from_writer(Vec::new()),
            width: head.map_or(0, |h| h.len()),
        };
        if let Some(head) = head {
            let mut row: Vec<&[u8]> = vec![b"op", b"changed_fields"];
            row.extend(head.iter());
            w.csv_record(&row)?;
        }
        Ok(w)
    }

    fn csv_record(&mut self, row: &[&[u8]]) -> Result<(), ChangesError> {
        if let Err(e) = self.csv.write_record(row) {
            return Err(io_at(&self.path)(e.into()));
        }
        if self.csv.get_ref().len() >= 1 << 20 {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves what the CSV writer holds into `buffer`.
    fn take_csv(&mut self) -> Result<(), ChangesError> {
        let csv = std::mem::replace(&mut self.csv, csv::Writer::from_writer(Vec::new()));
        match csv.into_inner() {
            Ok(bytes) => {
                self.buffer.extend(bytes);
                Ok(())
            }
            Err(e) => Err(io_at(&self.path)(io::Error::other(e.to_string()))),
        }
    }

    fn delete(&mut self, id: &str) -> Result<(), ChangesError> {
        match self.format {
            OutFormat::Jsonl | OutFormat::Parquet => {
                self.buffer.extend_from_slice(br#"{"op":"delete","id":"#);
                serde_json::to_writer(&mut self.buffer, id).expect("strings serialize");
                self.buffer.extend_from_slice(b"}\n");
                self.spill_if_full()
            }
            OutFormat::Csv => {
                let mut row: Vec<&[u8]> = vec![b"delete", b"", id.as_bytes()];
                row.resize(self.width + 2, b"");
                self.csv_record(&row)
            }
        }
    }

    fn csv_row(
        &mut self,
        changed: Option<&[&str]>,
        record: &csv::ByteRecord,
    ) -> Result<(), ChangesError> {
        let joined = changed.map(|c| c.join(";")).unwrap_or_default();
        let mut row: Vec<&[u8]> = vec![
            if changed.is_some() {
                b"update"
            } else {
                b"insert"
            },
            joined.as_bytes(),
        ];
        row.extend(record.iter());
        self.csv_record(&row)
    }

    fn json_row(&mut self, changed: Option<&[&str]>, line: &str) -> Result<(), ChangesError> {
        match changed {
            None => self
                .buffer
                .extend_from_slice(br#"{"op":"insert","record":"#),
            Some(c) => {
                self.buffer
                    .extend_from_slice(br#"{"op":"update","changed":"#);
                serde_json::to_writer(&mut self.buffer, c).expect("names serialize");
                self.buffer.extend_from_slice(br#","record":"#);
            }
        }
        self.buffer.extend_from_slice(line.trim_end().as_bytes());
        self.buffer.extend_from_slice(b"}\n");
        self.spill_if_full()
    }

    fn spill_if_full(&mut self) -> Result<(), ChangesError> {
        if self.buffer.len() >= 1 << 20 {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), ChangesError> {
        self.take_csv()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let io = io_at(&self.path);
        match self.compression {
            Compression::None => self.file.write_all(&self.buffer).map_err(io)?,
            c => {
                let framed = c.frame(&self.buffer).map_err(&io)?;
                self.file.write_all(&framed).map_err(io)?;
            }
        }
        self.buffer.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(), ChangesError> {
        self.spill()?;
        let io = io_at(&self.path);
        if self.compression != Compression::None && self.file.metadata().map_err(&io)?.len() == 0 {
            let empty = self.compression.frame(&[]).map_err(&io)?;
            self.file.write_all(&empty).map_err(&io)?;
        }
        self.file.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changes_file_sits_beside_the_snapshot() {
        for (out, changes) in [
            ("d/customers.csv", "d/customers.changes.csv"),
            ("d/customers.csv.gz", "d/customers.changes.csv.gz"),
            ("c.jsonl.zst", "c.changes.jsonl.zst"),
            ("plain", "plain.changes"),
        ] {
            assert_eq!(default_changes_path(Path::new(out)), PathBuf::from(changes));
        }
    }

    fn changes_between(format: OutFormat, old: &str, new: &str) -> (ChangesReport, String) {
        let (report, text) = changes_with_budget(format, old, new, 1 << 20);
        let (spilled, same) = changes_with_budget(format, old, new, 1);
        // Nothing to sort, nothing spilled: two empty tables.
        let empty = report.previous_rows == 0 && report.inserted == 0;
        assert!(spilled.spilled_bytes > 0 || empty);
        assert_eq!(same, text, "spilling changes nothing");
        (report, text)
    }

    fn changes_with_budget(
        format: OutFormat,
        old: &str,
        new: &str,
        sort_budget: usize,
    ) -> (ChangesReport, String) {
        let dir = tempfile::tempdir().unwrap();
        let ext = format.as_str();
        let (a, b) = (
            dir.path().join(format!("a.{ext}")),
            dir.path().join(format!("b.{ext}.partial")),
        );
        std::fs::write(&a, old).unwrap();
        std::fs::write(&b, new).unwrap();
        let out = dir.path().join(format!("b.changes.{ext}"));
        let prepared = prepare(
            ChangesConfig {
                baseline: Baseline::File(a),
                out: out.clone(),
                keep_removed_columns: true,
                temp_dir: dir.path().into(),
                sort_budget,
            },
            "omnidesk",
            "sandbox",
            format,
        )
        .unwrap();
        let (report, pending) = write(
            &prepared,
            &b,
            format,
            Compression::None,
            &[],
            ("omnidesk", "sandbox"),
        )
        .unwrap();
        assert!(pending.is_none());
        (report, std::fs::read_to_string(out).unwrap())
    }

    #[test]
    fn csv_rows_are_inserted_updated_deleted_or_unchanged() {
        let head = "platform_id,external_id,email,custom_tier,custom_fields_json\n";
        let old = format!("{head}1,a,a@x.io,gold,\n2,b,b@x.io,,\n10,c,c@x.io,,\n");
        // 2 changed its email and gained a tier, 10 is gone, 3 is new, 1 is the same.
        let new = format!("{head}3,d,d@x.io,,\n1,a,a@x.io,gold,\n2,b,b2@x.io,silver,\n");
        let (report, text) = changes_between(OutFormat::Csv, &old, &new);
        assert_eq!(
            (
                report.inserted,
                report.updated,
                report.deleted,
                report.unchanged
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(
            text,
            format!(
                "op,changed_fields,{}delete,,10,,,,\ninsert,,3,d,d@x.io,,\nupdate,email;custom_tier,2,b,b2@x.io,silver,\n",
                head
            )
        );
    }

    #[test]
    fn a_column_only_one_side_has_changes_nothing_while_it_is_empty() {
        // custom_gone was kept, empty, for a file before this one: not "removed" again.
        let old = "platform_id,email,custom_gone,custom_fields_json\n1,a@x.io,,\n2,b@x.io,,\n";
        let new = "platform_id,email,custom_vip,custom_fields_json\n1,a@x.io,,\n2,b@x.io,yes,\n";
        let (report, text) = changes_between(OutFormat::Csv, old, new);
        assert_eq!((report.unchanged, report.updated), (1, 1));
        assert_eq!(report.fields_added, vec!["custom_vip".to_string()]);
        assert!(
            report.fields_removed.is_empty(),
            "{:?}",
            report.fields_removed
        );
        assert!(
            text.ends_with("update,custom_vip,2,b@x.io,yes,\n"),
            "{text}"
        );
    }

    #[test]
    fn jsonl_changes_name_their_fields_and_embed_the_record() {
        let old = "{\"id\":1,\"email\":\"a@x.io\",\"custom_fields\":{\"tier\":\"gold\"}}\n{\"id\":2,\"email\":\"b@x.io\"}\n";
        let new = "{\"id\":1,\"email\":\"a@x.io\",\"custom_fields\":{\"tier\":\"silver\"}}\n{\"id\":3,\"email\":null}\n";
        let (report, text) = changes_between(OutFormat::Jsonl, old, new);
        assert_eq!((report.inserted, report.updated, report.deleted), (1, 1, 1));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"op":"delete","id":"2"}"#);
        assert_eq!(
            lines[1],
            r#"{"op":"update","changed":["custom_fields.tier"],"record":{"id":1,"email":"a@x.io","custom_fields":{"tier":"silver"}}}"#
        );
        assert_eq!(
            lines[2],
            r#"{"op":"insert","record":{"id":3,"email":null}}"#
        );
    }

    /// A table of customers: id → (email, tier), rendered as an export CSV.
    fn table_csv(
        rows: &std::collections::BTreeMap<u16, (String, String)>,
        order: &[u16],
    ) -> String {
        let mut text = String::from("platform_id,email,custom_tier,custom_fields_json\n");
        for id in order {
            if let Some((email, tier)) = rows.get(id) {
                text.push_str(&format!("{id},{email},{tier},\n"));
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Applying the changes to the old table gives the new one, and `changed_fields`
        /// names exactly the columns that differ — whatever the budget.
        #[test]
        fn the_changes_turn_the_old_table_into_the_new(
            old in proptest::collection::btree_map(0u16..60, ("[ab]{0,2}", "[xy]{0,1}"), 0..40),
            new in proptest::collection::btree_map(0u16..60, ("[ab]{0,2}", "[xy]{0,1}"), 0..40),
            shuffle in 0u64..1000,
        ) {
            let order = |m: &std::collections::BTreeMap<u16, (String, String)>| {
                let mut ids: Vec<u16> = m.keys().copied().collect();
                ids.sort_by_key(|id| (u64::from(*id) * 7919 + shuffle) % 61);
                ids
            };
            let (report, text) = changes_between(
                OutFormat::Csv,
                &table_csv(&old, &order(&old)),
                &table_csv(&new, &order(&new)),
            );
            let mut table = old.clone();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            for row in reader.records() {
                let row = row.unwrap();
                let id: u16 = row[2].parse().unwrap();
                match &row[0] {
                    "delete" => {
                        proptest::prop_assert!(table.remove(&id).is_some());
                    }
                    op => {
                        let cells = (row[3].to_string(), row[4].to_string());
                        if op == "update" {
                            let before = table.get(&id).cloned().unwrap();
                            let mut differ = Vec::new();
                            if before.0 != cells.0 { differ.push("email"); }
                            if before.1 != cells.1 { differ.push("custom_tier"); }
                            let named = differ.join(";");
                            proptest::prop_assert_eq!(&row[1], named.as_str());
                        } else {
                            proptest::prop_assert!(!table.contains_key(&id));
                        }
                        table.insert(id, cells);
                    }
                }
            }
            proptest::prop_assert_eq!(&table, &new);
            let same = old.iter().filter(|(id, v)| new.get(id) == Some(v)).count() as u64;
            proptest::prop_assert_eq!(report.unchanged, same);
        }
    }

    #[test]
    fn a_baseline_of_the_other_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "{\"id\":1}\n").unwrap();
        let err = prepare(
            ChangesConfig {
                baseline: Baseline::File(a),
                out: dir.path().join("c.csv"),
                keep_removed_columns: true,
                temp_dir: dir.path().into(),
                sort_budget: SORT_BUDGET,
            },
            "omnidesk",
            "sandbox",
            OutFormat::Csv,
        )
        .unwrap_err();
        assert!(err.to_string().contains("reads as jsonl"), "{err}");
    }
}
