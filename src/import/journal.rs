//! The import journal: an append-only JSON-lines file, one record per event, fsynced per
//! group of records. It is the truth about every row: `sent` before a write leaves,
//! `pending` when a bulk import accepted it, `done` with the final outcome. A resume reads it
//! back: rows with `done` are skipped, rows `sent` or `pending` without `done` are *in doubt*
//! and are looked up on the platform before anything is created again.
//!
//! A torn line (the process died mid-write) is ignored where a crash leaves one: last in the
//! file, or just before the `run` record a resume starts with. A broken line anywhere else,
//! a journal whose first record is not a `run` header, or a record naming a line beyond
//! the input means the file is damaged or not ours, and the run refuses it. The journal
//! never holds credentials.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Journal format version.
pub const VERSION: u32 = 1;

/// What a run was started with; the first one in a journal fixes its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    /// Format version.
    pub v: u32,
    /// Hash and size of the input file.
    pub fingerprint: String,
    /// The input as given.
    pub input: String,
    /// `omnidesk` or `udesk`.
    pub target: String,
    /// `create`, `upsert` or `update`.
    pub mode: String,
    /// `csv` or `jsonl`: how `row` values of failures are stored.
    pub format: String,
    /// The CSV header (empty for JSONL).
    pub columns: Vec<String>,
    /// Where rows go: the platform's origin, or `sandbox`. (Absent in journals of older
    /// versions, which are then not checked for it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The Omnidesk brand for rows without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<u64>,
    /// How rows are judged: platform rules, default region, duplicate policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// The column mapping: `builtin`, or a hash of the `--map` file's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
}

/// The final outcome of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Created by this import.
    Created,
    /// Updated by this import.
    Updated,
    /// Create mode: a customer with this external id was already there; left alone.
    Exists,
    /// The platform refused the row, or (update mode) there is no such customer.
    Failed,
    /// Refused by the validator; nothing was sent.
    Invalid,
}

impl Outcome {
    /// The text form used in results files.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Exists => "exists",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
        }
    }
}

/// A row's final record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// Source line where the row starts.
    pub line: u64,
    /// The row's external id (may be empty for invalid rows).
    #[serde(default)]
    pub external_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The platform's id for the customer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
    /// A stable reason code for failures and notes (`not_found`, `platform_rejected`, `id.missing;email.invalid`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The platform's or validator's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The original fields (failed and invalid rows only): a list for CSV, an object or
    /// `{"raw": text}` for JSONL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Value>,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// A run started.
    Run(RunHeader),
    /// These rows are about to be sent.
    Sent {
        /// Source lines.
        lines: Vec<u64>,
    },
    /// These rows were marked sent but never left (a clean stop).
    Unsent {
        /// Source lines.
        lines: Vec<u64>,
    },
    /// A bulk import accepted these rows; not confirmed yet.
    Pending {
        /// Source lines.
        lines: Vec<u64>,
    },
    /// A row's final outcome.
    Done(Done),
}

/// A set of line numbers (a bitset: one bit per line up to the largest).
#[derive(Debug, Clone, Default)]
pub struct LineSet {
    words: Vec<u64>,
    len: usize,
}

impl LineSet {
    /// Adds a line; true when it was not there.
    pub fn insert(&mut self, line: u64) -> bool {
        let (w, b) = ((line / 64) as usize, line % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        self.len += usize::from(fresh);
        fresh
    }

    /// Removes a line; true when it was there.
    pub fn remove(&mut self, line: u64) -> bool {
        let (w, b) = ((line / 64) as usize, line % 64);
        let present = self.words.get(w).is_some_and(|x| x & (1 << b) != 0);
        if present {
            self.words[w] &= !(1 << b);
            self.len -= 1;
        }
        present
    }

    /// Whether the line is in the set.
    pub fn contains(&self, line: u64) -> bool {
        let (w, b) = ((line / 64) as usize, line % 64);
        self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a journal says, read back for a resume.
#[derive(Debug, Default)]
pub struct JournalState {
    /// The first run's header.
    pub header: Option<RunHeader>,
    /// Rows with a final outcome.
    pub finals: LineSet,
    /// Rows sent or pending without a final outcome: look them up before creating.
    pub in_doubt: LineSet,
    /// Rows a bulk import accepted and nobody confirmed yet (a subset of `in_doubt`).
    pub pending: LineSet,
}

/// A journal that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line of the file is not a journal record (nor a torn one).
    #[error("journal {path} line {line} is not a deskport journal record (damaged, or not a deskport journal); check the --journal directory, or --restart to set it aside and start over")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// The first record is not the run header that fixes the journal's input and settings.
    #[error("journal {path} has no run header (its first line is damaged or missing), so it cannot be checked against this input; --restart to set it aside and start over")]
    NoHeader {
        /// The file.
        path: PathBuf,
    },
    /// A record names an input line the input does not have.
    #[error("journal {path} line {line} names input line {input_line}, but the input has only {input_lines} lines: the journal is damaged or for another file; --restart to set it aside")]
    BeyondInput {
        /// The file.
        path: PathBuf,
        /// The 1-based journal line.
        line: usize,
        /// The input line it names.
        input_line: u64,
        /// Lines in the input.
        input_lines: u64,
    },
}

impl Record {
    /// The input lines a record names.
    fn lines(&self) -> &[u64] {
        match self {
            Record::Run(_) => &[],
            Record::Sent { lines } | Record::Unsent { lines } | Record::Pending { lines } => lines,
            Record::Done(d) => std::slice::from_ref(&d.line),
        }
    }
}

/// The header of a journal's first run, read alone (before [`load`], so a journal for
/// another input is named as such rather than by the first line number it lacks).
pub fn first_header(path: &Path) -> Result<Option<RunHeader>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return Ok(match serde_json::from_slice(&line) {
            Ok(Record::Run(h)) => Some(h),
            _ => None,
        });
    }
    Ok(None)
}

/// Reads a journal; `None` when there is none (or it holds nothing but a torn first
/// record). `input_lines` bounds the line numbers records may name.
pub fn load(path: &Path, input_lines: u64) -> Result<Option<JournalState>, JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let corrupt = |line: usize| JournalError::Corrupt {
        path: path.to_path_buf(),
        line,
    };
    let mut state = JournalState::default();
    let mut any = false;
    // A line that did not parse but looks like the start of one of ours: torn by a crash
    // if it is the last line, or if the next record is a resumed run's header.
    let mut torn: Option<usize> = None;
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io_err)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Record = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(_) if torn.is_none() && line.starts_with(b"{\"t\":\"") => {
                torn = Some(n + 1);
                continue;
            }
            Err(_) => return Err(corrupt(torn.unwrap_or(n + 1))),
        };
        if let Some(at) = torn.take() {
            if !matches!(record, Record::Run(_)) {
                return Err(corrupt(at));
            }
        }
        if !any && !matches!(record, Record::Run(_)) {
            return Err(JournalError::NoHeader {
                path: path.to_path_buf(),
            });
        }
        if let Some(&beyond) = record.lines().iter().find(|&&l| l == 0 || l > input_lines) {
            return Err(JournalError::BeyondInput {
                path: path.to_path_buf(),
                line: n + 1,
                input_line: beyond,
                input_lines,
            });
        }
        any = true;
        apply(&mut state, record);
    }
    Ok(any.then_some(state))
}

/// Folds one record into the state.
pub fn apply(state: &mut JournalState, record: Record) {
    match record {
        Record::Run(h) => {
            if state.header.is_none() {
                state.header = Some(h);
            }
        }
        Record::Sent { lines } => {
            for l in lines {
                if !state.finals.contains(l) {
                    state.in_doubt.insert(l);
                }
            }
        }
        Record::Unsent { lines } => {
            for l in lines {
                if !state.pending.contains(l) {
                    state.in_doubt.remove(l);
                }
            }
        }
        Record::Pending { lines } => {
            for l in lines {
                if !state.finals.contains(l) {
                    state.in_doubt.insert(l);
                    state.pending.insert(l);
                }
            }
        }
        Record::Done(d) => {
            state.finals.insert(d.line);
            state.in_doubt.remove(d.line);
            state.pending.remove(d.line);
        }
    }
}

/// Streams every `done` record of a journal, in the order written.
pub fn for_each_done(
    path: &Path,
    mut f: impl FnMut(Done) -> io::Result<()>,
) -> Result<(), JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io_err)?;
        if let Ok(Record::Done(d)) = serde_json::from_slice::<Record>(&line) {
            f(d).map_err(io_err)?;
        }
    }
    Ok(())
}

type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Message {
    Append(Vec<Record>, Option<Ack>),
}

/// The appending side: records go to a writer thread that writes whatever has queued up,
/// fsyncs once, and then acknowledges (group commit).
#[derive(Debug)]
pub struct JournalWriter {
    tx: Option<std::sync::mpsc::Sender<Message>>,
    thread: Option<std::thread::JoinHandle<Result<(), JournalError>>>,
}

impl JournalWriter {
    /// Opens (creating) the journal for appending.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let path = path.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let mut buffer = Vec::with_capacity(64 * 1024);
                // A line torn by an earlier crash must not swallow our first record.
                buffer.push(b'\n');
                while let Ok(first) = rx.recv() {
                    let mut acks = Vec::new();
                    let mut take = |m: Message, buffer: &mut Vec<u8>| {
                        let Message::Append(records, ack) = m;
                        for r in records {
                            // Serializing our own types cannot fail.
                            serde_json::to_writer(&mut *buffer, &r).ok();
                            buffer.push(b'\n');
                        }
                        acks.extend(ack);
                    };
                    take(first, &mut buffer);
                    while let Ok(more) = rx.try_recv() {
                        take(more, &mut buffer);
                    }
                    let written = file.write_all(&buffer).and_then(|()| file.sync_data());
                    buffer.clear();
                    let reply = written.as_ref().map(|_| ()).map_err(|e| e.to_string());
                    for ack in acks {
                        ack.send(reply.clone()).ok();
                    }
                    if let Err(source) = written {
                        return Err(JournalError::Io { path, source });
                    }
                }
                Ok(())
            })
            .map_err(|source| JournalError::Io {
                path: PathBuf::from("journal thread"),
                source,
            })?;
        Ok(JournalWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues records; they are fsynced with the next group.
    pub fn append(&self, records: Vec<Record>) {
        if let Some(tx) = &self.tx {
            tx.send(Message::Append(records, None)).ok();
        }
    }

    /// Queues records and waits until they are on disk.
    pub async fn append_durable(&self, records: Vec<Record>) -> Result<(), String> {
        let (ack, done) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(Message::Append(records, Some(ack))).is_ok());
        if sent != Some(true) {
            return Err("the journal writer stopped".into());
        }
        done.await
            .unwrap_or_else(|_| Err("the journal writer stopped".into()))
    }

    /// Writes what is queued and closes the file.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.tx.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(JournalError::Io {
                path: PathBuf::from("journal"),
                source: io::Error::other("journal thread panicked"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(line: u64, outcome: Outcome) -> Record {
        Record::Done(Done {
            line,
            external_id: format!("X{line}"),
            outcome,
            platform_id: None,
            reason: None,
            message: None,
            row: None,
        })
    }

    #[test]
    fn line_set() {
        let mut s = LineSet::default();
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(1000));
        assert!(s.contains(1000) && s.contains(3) && !s.contains(4));
        assert_eq!(s.len(), 2);
        assert!(s.remove(3));
        assert!(!s.remove(3));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn state_folds_records_in_order() {
        let mut st = JournalState::default();
        apply(
            &mut st,
            Record::Sent {
                lines: vec![2, 3, 4, 5],
            },
        );
        apply(&mut st, done(2, Outcome::Created));
        apply(&mut st, Record::Pending { lines: vec![3] });
        apply(&mut st, Record::Unsent { lines: vec![3, 5] });
        assert!(st.finals.contains(2) && !st.in_doubt.contains(2));
        assert!(st.in_doubt.contains(3), "pending stays in doubt");
        assert!(st.in_doubt.contains(4), "sent, never answered");
        assert!(!st.in_doubt.contains(5), "unsent is not in doubt");
        apply(&mut st, done(3, Outcome::Created));
        assert!(!st.pending.contains(3) && !st.in_doubt.contains(3));
    }

    fn header() -> Record {
        Record::Run(RunHeader {
            v: VERSION,
            fingerprint: "xxh3-128:0:1".into(),
            input: "in.csv".into(),
            target: "omnidesk".into(),
            mode: "create".into(),
            format: "csv".into(),
            columns: vec![],
            origin: Some("sandbox".into()),
            brand_id: Some(1),
            rules: None,
            mapping: None,
        })
    }

    fn write(path: &Path, records: Vec<Record>) {
        let w = JournalWriter::open(path).unwrap();
        w.append(records);
        w.close().unwrap();
    }

    #[test]
    fn a_torn_line_is_ignored_where_a_crash_leaves_one_and_refused_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        write(
            &path,
            vec![
                header(),
                Record::Sent { lines: vec![7] },
                done(7, Outcome::Exists),
            ],
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"t\":\"done\",\"li");
        std::fs::write(&path, &text).unwrap();
        let st = load(&path, 100).unwrap().unwrap();
        assert!(st.finals.contains(7), "a torn last line is ignored");
        // A resume appends its header after the torn line: still fine.
        write(&path, vec![header(), done(8, Outcome::Created)]);
        let st = load(&path, 100).unwrap().unwrap();
        assert!(st.finals.contains(8));
        // The same broken line before anything but a run header is damage.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"t\":\"sent\",\"lines\":[1\n{\"t\":\"sent\",\"lines\":[2]}\n");
        std::fs::write(&path, &text).unwrap();
        let lines = text.lines().count();
        assert!(matches!(
            load(&path, 100),
            Err(JournalError::Corrupt { line, .. }) if line == lines - 1
        ));
        std::fs::write(&path, "garbage\n{\"t\":\"sent\",\"lines\":[1]}\n").unwrap();
        assert!(matches!(
            load(&path, 100),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn a_journal_without_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        write(
            &path,
            vec![Record::Sent { lines: vec![2] }, done(2, Outcome::Created)],
        );
        assert!(matches!(
            load(&path, 100),
            Err(JournalError::NoHeader { .. })
        ));
        // A header torn by a crash before anything else was written: no journal at all.
        std::fs::write(&path, "{\"t\":\"run\",\"v\":1,\"finger").unwrap();
        assert!(load(&path, 100).unwrap().is_none());
    }

    #[test]
    fn line_numbers_beyond_the_input_are_refused_before_anything_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        write(
            &path,
            vec![header(), done(99_999_999_999_999, Outcome::Created)],
        );
        let err = load(&path, 1_000).unwrap_err();
        assert!(
            matches!(
                err,
                JournalError::BeyondInput {
                    input_line: 99_999_999_999_999,
                    input_lines: 1_000,
                    ..
                }
            ),
            "{err}"
        );
        write(&path, vec![Record::Sent { lines: vec![0] }]);
        assert!(load(&path, 1_000).is_err(), "line 0 does not exist either");
    }
}
