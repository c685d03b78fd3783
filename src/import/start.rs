//! Starting a run: take the journal directory's lock, fingerprint the input, open it, and
//! load the journal of an earlier run (refusing one that belongs to another input or mode).

use super::journal::{self, JournalError, JournalState, JournalWriter, Record, RunHeader};
use super::{ImportConfig, ImportError};
use crate::error::Error;
use crate::input::{self, Format, InputPath, OpenedInput};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Hash and size of the input file (the journal belongs to exactly this content), and its
/// number of line breaks (an estimate of the rows, for the progress bar).
pub fn fingerprint(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((
        format!("xxh3-128:{:032x}:{size}", hasher.digest128()),
        lines,
    ))
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
    /// Line breaks in the input (the progress bar's estimate).
    pub line_breaks: u64,
    /// Whether the input is JSONL (its failures keep objects, not lists).
    pub jsonl: bool,
}

/// Locks, fingerprints and opens; checks the journal against `--resume`/`--restart`.
pub(super) async fn start(config: &ImportConfig, target: &str) -> Result<Started, ImportError> {
    let InputPath::File(input_path) = &config.input.path else {
        return Err(ImportError::Usage(
            "import reads a file, not standard input: the journal is tied to the file's content so a resume can check it".into(),
        ));
    };
    let dir = config.journal_dir.clone();
    let lock = lock(&dir)?;
    let journal_path = dir.join("journal.jsonl");
    let (fingerprint, line_breaks) = fingerprint(input_path).map_err(|source| {
        Error::Input(input::InputError::Open {
            path: input_path.clone(),
            source,
        })
    })?;
    let opened = input::open(&config.input).map_err(Error::from)?;
    let jsonl = opened.info.format == Format::Jsonl;
    let header = RunHeader {
        v: journal::VERSION,
        fingerprint,
        input: config.input.path.display(),
        target: target.to_string(),
        mode: config.mode.as_str().to_string(),
        format: if jsonl { "jsonl" } else { "csv" }.into(),
        columns: if jsonl {
            Vec::new()
        } else {
            opened.reader.columns().to_vec()
        },
    };
    if config.restart && journal_path.exists() {
        std::fs::rename(&journal_path, dir.join("journal.jsonl.old")).map_err(|source| {
            JournalError::Io {
                path: journal_path.clone(),
                source,
            }
        })?;
    }
    let state = match journal::load(&journal_path)? {
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
        line_breaks,
        jsonl,
    })
}

/// What makes an earlier run's journal not this run's, if anything.
fn mismatch(earlier: &RunHeader, now: &RunHeader) -> Option<String> {
    if earlier.fingerprint != now.fingerprint {
        Some(format!(
            "a different input ({}, {})",
            earlier.input, earlier.fingerprint
        ))
    } else if earlier.target != now.target || earlier.mode != now.mode {
        Some(format!(
            "--target {} --mode {}",
            earlier.target, earlier.mode
        ))
    } else {
        None
    }
}
