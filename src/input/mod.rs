//! Readers: stream CSV or JSONL from a file or stdin into [`RowBatch`]es.
//!
//! The stack, outermost last: the raw bytes (a file or stdin, counted for progress) →
//! gzip when the bytes start with its magic number → [`decode`] (BOM, encoding detection,
//! transcoding to UTF-8) → the format reader ([`csv_reader`] or [`jsonl`]).
//!
//! Invariants: nothing is loaded whole; every row carries the source line where it starts;
//! a row the reader cannot make sense of becomes a [`RawRow`] with a `read_issue`, never
//! an error that ends the run. Only I/O failures end the run.

pub mod csv_reader;
pub mod decode;
pub mod jsonl;
pub mod sniff;

use crate::model::RowBatch;
use encoding_rs::Encoding;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Errors that end a read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input could not be opened.
    #[error("cannot open input {path}: {source}")]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading failed part-way (disk error, truncated gzip stream, …).
    #[error("reading input failed near line {line}: {source}")]
    Read {
        /// The last line reached.
        line: u64,
        /// The cause.
        source: io::Error,
    },
    /// `--encoding` names no encoding we know.
    #[error("unknown encoding {0:?} (try utf-8, windows-1252, iso-8859-1, utf-16le, utf-16be)")]
    UnknownEncoding(String),
    /// `--delimiter` is not a single ASCII character.
    #[error("the delimiter must be one ASCII character such as , ; | or \\t, not {0:?}")]
    BadDelimiter(String),
}

/// The input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma (or otherwise) separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The format a path's extension suggests (`.jsonl`, `.ndjson`, `.json` → JSONL; else CSV),
    /// looking through a trailing `.gz`.
    pub fn from_path(path: &Path) -> Format {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let name = [".gz", ".zst"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .unwrap_or(&name);
        if [".jsonl", ".ndjson", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            Format::Jsonl
        } else {
            Format::Csv
        }
    }
}

/// Where the input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl InputPath {
    /// Parses the command-line form: `-` is stdin.
    pub fn parse(s: &str) -> InputPath {
        if s == "-" {
            InputPath::Stdin
        } else {
            InputPath::File(PathBuf::from(s))
        }
    }

    /// A display form for reports.
    pub fn display(&self) -> String {
        match self {
            InputPath::Stdin => "-".to_string(),
            InputPath::File(p) => p.display().to_string(),
        }
    }
}

/// How to read the input; built from the command line.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The file or stdin.
    pub path: InputPath,
    /// Forced format; else from the extension.
    pub format: Option<Format>,
    /// Forced encoding; else detected.
    pub encoding: Option<&'static Encoding>,
    /// Forced CSV delimiter; else sniffed.
    pub delimiter: Option<u8>,
    /// Fields larger than this are rejected with `field.too_large`.
    pub max_field_bytes: usize,
}

/// Default for [`InputOptions::max_field_bytes`]: 64 KiB, far above what either platform stores.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 64 * 1024;

impl InputOptions {
    /// Options with detection for everything.
    pub fn new(path: InputPath) -> Self {
        InputOptions {
            path,
            format: None,
            encoding: None,
            delimiter: None,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
        }
    }
}

/// Parses an encoding label as `--encoding` takes it.
pub fn parse_encoding(label: &str) -> Result<&'static Encoding, InputError> {
    Encoding::for_label(label.trim().as_bytes())
        .ok_or_else(|| InputError::UnknownEncoding(label.to_string()))
}

/// Parses a delimiter as `--delimiter` takes it (`,`, `;`, `|`, `\t` or `tab`).
pub fn parse_delimiter(s: &str) -> Result<u8, InputError> {
    match s {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(InputError::BadDelimiter(s.to_string())),
    }
}

/// What the reader found out about the input, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// The input as given.
    pub input: String,
    /// CSV or JSONL.
    pub format: Format,
    /// Whether the bytes were gzip-compressed.
    pub gzip: bool,
    /// Whether the bytes were Zstandard-compressed.
    pub zstd: bool,
    /// The encoding used to decode, and how it was chosen.
    pub encoding: decode::EncodingInfo,
    /// The CSV delimiter used, and whether it was sniffed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<DelimiterInfo>,
}

/// The delimiter used and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct DelimiterInfo {
    /// The character, e.g. `;` (a tab is shown as `\t`).
    pub delimiter: String,
    /// `detected` or `flag`.
    pub source: &'static str,
}

impl DelimiterInfo {
    fn new(byte: u8, forced: bool) -> Self {
        DelimiterInfo {
            delimiter: if byte == b'\t' {
                "\\t".to_string()
            } else {
                (byte as char).to_string()
            },
            source: if forced { "flag" } else { "detected" },
        }
    }
}

/// A streaming reader of either format.
pub enum RowReader {
    /// A CSV source.
    Csv(Box<csv_reader::CsvRows>),
    /// A JSONL source.
    Jsonl(jsonl::JsonlRows),
}

impl RowReader {
    /// Reads up to `max_rows` rows; `None` at the end of the input.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, InputError> {
        match self {
            RowReader::Csv(r) => r.next_batch(max_rows),
            RowReader::Jsonl(r) => r.next_batch(max_rows),
        }
    }

    /// The columns known so far (for CSV: the header; for JSONL: the keys seen so far).
    pub fn columns(&self) -> Arc<Vec<String>> {
        match self {
            RowReader::Csv(r) => r.columns(),
            RowReader::Jsonl(r) => r.columns(),
        }
    }
}

/// Counts the raw bytes read, so progress can be shown against the file size.
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened input: the row reader, what was detected, and a byte counter for progress.
pub struct OpenedInput {
    /// The rows.
    pub reader: RowReader,
    /// What was detected.
    pub info: SourceInfo,
    /// Raw bytes consumed so far (compressed bytes for gzip input).
    pub bytes_read: Arc<AtomicU64>,
    /// The raw size, when the input is a regular file.
    pub total_bytes: Option<u64>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decompressing reader whose errors say that the compressed stream is at fault: input
/// that starts with a compression format's magic number but is cut short or corrupt would
/// otherwise fail with the decoder's bare "unexpected end of file".
struct Compressed<R> {
    inner: R,
    format: &'static str,
}

impl<R: Read> Read for Compressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the input starts as {} but is not a complete {} stream ({e})",
                    self.format, self.format
                ),
            )
        })
    }
}
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Opens the input, detects compression, encoding, format and delimiter.
pub fn open(options: &InputOptions) -> Result<OpenedInput, InputError> {
    let (raw, total_bytes): (Box<dyn Read + Send>, Option<u64>) = match &options.path {
        InputPath::Stdin => (Box::new(io::stdin()), None),
        InputPath::File(path) => {
            let file = File::open(path).map_err(|source| InputError::Open {
                path: path.clone(),
                source,
            })?;
            let meta = file.metadata().ok();
            if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                return Err(InputError::Open {
                    path: path.clone(),
                    source: io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"),
                });
            }
            let len = meta.map(|m| m.len());
            (Box::new(file), len)
        }
    };
    let mut opened = open_stream(raw, options)?;
    opened.total_bytes = total_bytes;
    Ok(opened)
}

/// Reads from any byte stream (used by [`open`], tests and the fuzz target); the format is
/// `options.format`, else guessed from `options.path`.
pub fn open_stream(
    raw: Box<dyn Read + Send>,
    options: &InputOptions,
) -> Result<OpenedInput, InputError> {
    let bytes_read = Arc::new(AtomicU64::new(0));
    let counted = CountingReader {
        inner: raw,
        count: bytes_read.clone(),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, counted);
    let head = buffered
        .fill_buf()
        .map_err(|source| InputError::Read { line: 0, source })?;
    let gzip = head.starts_with(&GZIP_MAGIC);
    let zstd = head.starts_with(&ZSTD_MAGIC);
    let plain: Box<dyn Read + Send> = if gzip {
        Box::new(Compressed {
            inner: flate2::bufread::MultiGzDecoder::new(buffered),
            format: "gzip",
        })
    } else if zstd {
        Box::new(Compressed {
            inner: zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|source| InputError::Read { line: 0, source })?,
            format: "zstd",
        })
    } else {
        Box::new(buffered)
    };
    let format = options.format.unwrap_or(match &options.path {
        InputPath::Stdin => Format::Csv,
        InputPath::File(p) => Format::from_path(p),
    });
    let decoded = decode::open(plain, options.encoding)
        .map_err(|source| InputError::Read { line: 0, source })?;
    let encoding = decoded.info.clone();
    let (reader, delimiter) = match format {
        Format::Csv => {
            let delimiter = options
                .delimiter
                .unwrap_or_else(|| sniff::sniff_delimiter(&decoded.prefix_text));
            let mut rows =
                csv_reader::CsvRows::new(decoded.reader, delimiter, options.max_field_bytes)?;
            rows.check_misread_utf8 = decoded.check_misread_utf8;
            (
                RowReader::Csv(Box::new(rows)),
                Some(DelimiterInfo::new(delimiter, options.delimiter.is_some())),
            )
        }
        Format::Jsonl => (
            RowReader::Jsonl({
                let mut rows = jsonl::JsonlRows::new(decoded.reader, options.max_field_bytes);
                rows.check_misread_utf8 = decoded.check_misread_utf8;
                rows
            }),
            None,
        ),
    };
    Ok(OpenedInput {
        reader,
        info: SourceInfo {
            input: options.path.display(),
            format,
            gzip,
            zstd,
            encoding,
            delimiter,
        },
        bytes_read,
        total_bytes: None,
    })
}
