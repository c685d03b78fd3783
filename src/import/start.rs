//! Starting a run: take the journal directory's lock, fingerprint the input, open it, and
//! load the journal of an earlier run (refusing one that belongs to another input or mode).

use super::journal::{self, JournalError, JournalState, JournalWriter, Record, RunHeader};
use super::{ImportConfig, ImportError};
use crate::error::Error;
use crate::input::{self, Format, InputPath, OpenedInput};
use std::fs::File;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the fingerprint pass learned about the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// `xxh3-128:HASH:SIZE` of the bytes as stored (the journal belongs to exactly these).
    pub id: String,
    /// Line feeds in the (decompressed) content: the progress bar's estimate of the rows.
    pub line_feeds: u64,
    /// An upper bound of the line numbers a row can have (LF and CR both counted, so
    /// CR-only files are covered).
    pub max_line: u64,
}

/// Hashes the input file as stored and counts its (decompressed, for gzip) line breaks.
pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    let file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut size = 0u64;
    let hashed = HashingReader {
        inner: file,
        hasher: &mut hasher,
        size: &mut size,
    };
    let mut buffered = std::io::BufReader::with_capacity(1 << 20, hashed);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let (line_feeds, carriage_returns) = if gzip {
        count_breaks(flate2::bufread::MultiGzDecoder::new(&mut buffered))?
    } else {
        count_breaks(&mut buffered)?
    };
    // Whatever the decompressor left unread is hashed too.
    std::io::copy(&mut buffered, &mut std::io::sink())?;
    drop(buffered);
    Ok(Fingerprint {
        id: format!("xxh3-128:{:032x}:{size}", hasher.digest128()),
        line_feeds,
        max_line: line_feeds + carriage_returns + 1,
    })
}

/// Feeds every byte read through the hasher.
struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut xxhash_rust::xxh3::Xxh3,
    size: &'a mut u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        *self.size += n as u64;
        Ok(n)
    }
}

/// Reads to the end, counting `\n` and `\r` bytes.
fn count_breaks(mut reader: impl Read) -> std::io::Result<(u64, u64)> {
    let mut buffer = vec![0u8; 1 << 20];
    let (mut lf, mut cr) = (0u64, 0u64);
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok((lf, cr)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buffer[..n] {
            lf += u64::from(b == b'\n');
            cr += u64::from(b == b'\r');
        }
    }
}

/// The input file's size and modification time when the run began: a run stops when they
/// change under it (rows appended, the file truncated or replaced).
#[derive(Debug, Clone)]
pub(super) struct InputWatch {
    path: PathBuf,
    stamp: (u64, Option<SystemTime>),
}

impl InputWatch {
    /// Refuses anything but a regular file (a pipe or FIFO can be read only once, and a
    /// resume must be able to prove it continues the same content).
    pub fn new(path: &Path) -> Result<Self, ImportError> {
        let meta = std::fs::metadata(path).map_err(|source| {
            Error::Input(input::InputError::Open {
                path: path.to_path_buf(),
                source,
            })
        })?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file (a pipe, FIFO or device)"
            };
            return Err(ImportError::Usage(format!(
                "{} is {what}: import reads a regular file, which it can fingerprint, read and check for changes, so that a resume provably continues the same content; save the data to a file first",
                path.display()
            )));
        }
        Ok(InputWatch {
            path: path.to_path_buf(),
            stamp: stamp(&meta),
        })
    }

    /// Whether the file's size or modification time differ from the start (or it is gone).
    pub fn changed(&self) -> bool {
        std::fs::metadata(&self.path).map_or(true, |m| stamp(&m) != self.stamp)
    }

    /// Why the run must stop, when the file changed.
    pub fn reason(&self) -> String {
        format!(
            "the input file {} changed during the run (size, modification time or content); rows read after the change were not journaled. Restore the file to continue with --resume, or --restart with the new content",
            self.path.display()
        )
    }
}

fn stamp(meta: &std::fs::Metadata) -> (u64, Option<SystemTime>) {
    (meta.len(), meta.modified().ok())
}

/// Holds the journal directory's lock until dropped (released by the OS if we die).
#[derive(Debug)]
pub struct RunLock(#[allow(dead_code)] File);

/// Takes the run lock on `dir` (created if missing).
pub fn lock(dir: &Path) -> Result<RunLock, ImportError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        ImportError::Journal(JournalError::Io {
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ImportError::Journal(JournalError::Io { path, source }))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ImportError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ImportError::Journal(JournalError::Io {
            path: dir.join("lock"),
            source,
        })),
    }
}

/// A run that may start: the lock held, the input open, the journal loaded and its header
/// for this run written (fsynced).
pub(super) struct Started {
    /// Held until the run ends.
    pub _lock: RunLock,
    /// The journal directory.
    pub dir: PathBuf,
    /// `DIR/journal.jsonl`.
    pub journal_path: PathBuf,
    /// This run's header.
    pub header: RunHeader,
    /// What earlier runs finished or left in doubt.
    pub state: JournalState,
    /// The journal, open for appending.
    pub journal: JournalWriter,
    /// The input, open at its first row.
    pub opened: OpenedInput,
    /// The input's fingerprint and line counts.
    pub print: Fingerprint,
    /// The input's size and time at the start.
    pub watch: InputWatch,
    /// Whether the input is JSONL (its failures keep objects, not lists).
    pub jsonl: bool,
}

/// Checks the input, locks, fingerprints and opens; checks the journal against
/// `--resume`/`--restart` and this run's settings.
pub(super) async fn start(
    config: &ImportConfig,
    target: &str,
    mode: &str,
) -> Result<Started, ImportError> {
    let InputPath::File(input_path) = &config.input.path else {
        return Err(ImportError::Usage(
            "import reads a file, not standard input: the journal is tied to the file's content so a resume can check it".into(),
        ));
    };
    let watch = InputWatch::new(input_path)?;
    let dir = config.journal_dir.clone();
    let lock = lock(&dir)?;
    let journal_path = dir.join("journal.jsonl");
    let print = fingerprint(input_path).map_err(|source| {
        Error::Input(input::InputError::Open {
            path: input_path.clone(),
            source,
        })
    })?;
    if watch.changed() {
        return Err(ImportError::Usage(watch.reason()));
    }
    let opened = input::open(&config.input).map_err(Error::from)?;
    crate::pipeline::check_columns(&config.mapping, &opened.reader.columns(), &config.rules)?;
    let jsonl = opened.info.format == Format::Jsonl;
    let header = RunHeader {
        v: journal::VERSION,
        fingerprint: print.id.clone(),
        input: config.input.path.display(),
        target: target.to_string(),
        mode: mode.to_string(),
        format: if jsonl { "jsonl" } else { "csv" }.into(),
        columns: if jsonl {
            Vec::new()
        } else {
            opened.reader.columns().to_vec()
        },
        origin: Some(config.origin.clone()),
        brand_id: config.brand_id,
        rules: Some(config.rules.identity()),
        mapping: Some(config.mapping.identity()),
    };
    if config.restart && journal_path.exists() {
        let aside = set_aside_name(&dir);
        std::fs::rename(&journal_path, &aside).map_err(|source| JournalError::Io {
            path: journal_path.clone(),
            source,
        })?;
    }
    if config.resume {
        if let Some(what) = journal::first_header(&journal_path)?
            .as_ref()
            .and_then(|h| mismatch(h, &header))
        {
            return Err(ImportError::JournalMismatch { dir, what });
        }
    }
    let state = match journal::load(&journal_path, print.max_line)? {
        None => JournalState::default(),
        Some(_) if !config.resume => return Err(ImportError::JournalExists { dir }),
        Some(state) => {
            if let Some(what) = state.header.as_ref().and_then(|h| mismatch(h, &header)) {
                return Err(ImportError::JournalMismatch { dir, what });
            }
            state
        }
    };
    let journal = JournalWriter::open(&journal_path)?;
    journal
        .append_durable(vec![Record::Run(header.clone())])
        .await
        .map_err(|e| JournalError::Io {
            path: journal_path.clone(),
            source: std::io::Error::other(e),
        })?;
    Ok(Started {
        _lock: lock,
        dir,
        journal_path,
        header,
        state,
        journal,
        opened,
        print,
        watch,
        jsonl,
    })
}

/// `journal.jsonl.old`, or `.old.2`, `.old.3`, … when that is taken: a second `--restart`
/// never overwrites what the first set aside.
fn set_aside_name(dir: &Path) -> PathBuf {
    let first = dir.join("journal.jsonl.old");
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(format!("journal.jsonl.old.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// What makes an earlier run's journal not this run's, if anything: named as the flag
/// that differs, with both values. Fields that journals of older versions lack are not
/// compared.
fn mismatch(earlier: &RunHeader, now: &RunHeader) -> Option<String> {
    if earlier.fingerprint != now.fingerprint {
        return Some(format!(
            "a different input ({}, {})",
            earlier.input, earlier.fingerprint
        ));
    }
    if earlier.target != now.target || earlier.mode != now.mode {
        return Some(format!(
            "--target {} --mode {}",
            earlier.target, earlier.mode
        ));
    }
    let differs = |what: &str, a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) if a != b => {
            Some(format!("{what} (the journal's run: {a}; this run: {b})"))
        }
        _ => None,
    };
    let brand = |b: Option<u64>| b.map_or_else(|| "none".to_string(), |b| b.to_string());
    let recorded = earlier.origin.is_some();
    differs(
        "another --base-url",
        earlier.origin.clone(),
        now.origin.clone(),
    )
    .or_else(|| {
        differs(
            "another --brand-id",
            recorded.then(|| brand(earlier.brand_id)),
            Some(brand(now.brand_id)),
        )
    })
    .or_else(|| {
        differs(
            "other rules (--default-region, --duplicates)",
            earlier.rules.clone(),
            now.rules.clone(),
        )
    })
    .or_else(|| {
        differs(
            "another column mapping (--map)",
            earlier.mapping.clone(),
            now.mapping.clone(),
        )
    })
}
