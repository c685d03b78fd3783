//! Writers for what `validate` produces: the clean file (CSV or JSONL, canonical columns)
//! and the rejects file (the original fields plus line number and issues, so it can be
//! fixed and fed back as input: the `deskport_*` columns are ignored by the mapping).

use crate::input::Format;
use crate::mapping::{ResolvedMapping, Target};
use crate::model::{CheckedRow, Customer, Issue, RawRow};
use csv::ByteRecord;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A write to an output file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

fn csv_to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// The output format a path's extension asks for: `.jsonl`/`.ndjson`/`.json` → JSONL, else CSV.
pub fn format_for(path: &Path) -> Format {
    Format::from_path(path)
}

/// The canonical columns of a clean CSV, before the custom ones.
pub const CANONICAL_COLUMNS: [&str; 12] = [
    "external_id",
    "firstname",
    "lastname",
    "nick_name",
    "email",
    "other_emails",
    "phones",
    "country",
    "level",
    "tags",
    "description",
    "brand_id",
];

/// Joins multi-valued fields in CSV cells.
pub const LIST_SEPARATOR: &str = ";";

/// The clean CSV's column after the canonical ones: the extensions phone numbers had
/// (`+13637170669 x0743`), which the platforms cannot store.
pub const PHONE_EXTENSIONS_COLUMN: &str = "phone_extensions";

/// Appends the canonical cells of a customer to `record`, aligned with
/// [`CANONICAL_COLUMNS`]; lists are joined with [`LIST_SEPARATOR`].
pub fn push_canonical_cells(c: &Customer, record: &mut ByteRecord) {
    fn opt(v: &Option<String>) -> &[u8] {
        v.as_deref().unwrap_or("").as_bytes()
    }
    record.push_field(c.external_id.as_bytes());
    record.push_field(opt(&c.firstname));
    record.push_field(opt(&c.lastname));
    record.push_field(opt(&c.nick_name));
    record.push_field(opt(&c.email));
    push_list(record, &c.other_emails);
    push_list(record, &c.phones);
    record.push_field(opt(&c.country));
    record.push_field(opt(&c.level));
    push_list(record, &c.tags);
    record.push_field(opt(&c.description));
    match c.brand_id {
        Some(b) => record.push_field(b.to_string().as_bytes()),
        None => record.push_field(b""),
    }
}

/// Appends one cell holding `items` joined with [`LIST_SEPARATOR`]; no or one item is
/// copied as it is, without a joined string.
fn push_list(record: &mut ByteRecord, items: &[String]) {
    match items {
        [] => record.push_field(b""),
        [one] => record.push_field(one.as_bytes()),
        _ => record.push_field(items.join(LIST_SEPARATOR).as_bytes()),
    }
}

/// Writes clean customers.
pub enum CleanWriter {
    /// Canonical columns, one column per custom field known from the mapping, and — for
    /// sources whose columns can grow (JSONL) — `custom_fields_json` for keys seen later.
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV writer.
        writer: Box<csv::Writer<BufWriter<OutputFile>>>,
        /// Custom field keys with their own column.
        custom: Vec<String>,
        /// Whether the `custom_fields_json` column exists.
        extra_json: bool,
        /// Source columns kept as they are (`--keep-unmapped`), by index, at the end.
        kept: Vec<usize>,
        /// The record being written, kept to reuse its buffers.
        record: ByteRecord,
    },
    /// One JSON object per customer.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// The buffered file.
        writer: BufWriter<OutputFile>,
    },
}

/// An output file that appears under its name only when complete: rows go to a hidden
/// temporary file beside it, renamed over the name by [`OutputFile::commit`] and removed
/// if the run fails (a full disk never leaves a truncated file that looks finished). A
/// path that exists and is not a regular file (`/dev/stdout`, a pipe) is written directly.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    staged: Option<(tempfile::TempPath, PathBuf)>,
}

impl OutputFile {
    /// Opens the staging file for `path` (or `path` itself, when it is a device or pipe).
    pub fn create(path: &Path) -> io::Result<Self> {
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if special {
            return Ok(OutputFile {
                file: File::create(path)?,
                staged: None,
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // As `File::create` would: readable by others unless the umask says otherwise.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let (file, temp) = builder.tempfile_in(dir)?.into_parts();
        Ok(OutputFile {
            file,
            staged: Some((temp, path.to_path_buf())),
        })
    }

    /// Gives the complete file its name.
    pub fn commit(self) -> io::Result<()> {
        match self.staged {
            Some((temp, path)) => temp.persist(path).map_err(|e| e.error),
            None => Ok(()),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes a whole small file (the report) the same way: complete under its name, or not at all.
pub fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OutputFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

fn create(path: &Path) -> Result<BufWriter<OutputFile>, OutputError> {
    OutputFile::create(path)
        .map(|f| BufWriter::with_capacity(256 * 1024, f))
        .map_err(|source| OutputError {
            path: path.to_path_buf(),
            source,
        })
}

impl CleanWriter {
    /// Creates the file; custom columns come from the mapping in force at the first batch.
    pub fn create(
        path: &Path,
        mapping: &ResolvedMapping,
        columns_can_grow: bool,
        keep_unmapped: bool,
    ) -> Result<Self, OutputError> {
        let file = create(path)?;
        if format_for(path) == Format::Jsonl {
            return Ok(CleanWriter::Jsonl {
                path: path.to_path_buf(),
                writer: file,
            });
        }
        let mut custom: Vec<String> = Vec::new();
        for target in &mapping.targets {
            if let Target::Custom(key) = target {
                if !custom.contains(key) {
                    custom.push(key.clone());
                }
            }
        }
        let columns_can_grow = columns_can_grow || mapping.targets.contains(&Target::CustomJson);
        let mut writer = csv::WriterBuilder::new().from_writer(file);
        let mut header: Vec<String> = CANONICAL_COLUMNS.iter().map(|s| s.to_string()).collect();
        header.push(PHONE_EXTENSIONS_COLUMN.to_string());
        header.extend(custom.iter().map(|k| format!("custom_{k}")));
        if columns_can_grow {
            header.push("custom_fields_json".to_string());
        }
        // Unmapped source columns, in their order, under their own names (`source_` in front
        // of a name the clean file already uses).
        let kept: Vec<usize> = if keep_unmapped {
            (0..mapping.columns.len())
                .filter(|&i| mapping.targets[i] == Target::Unmapped)
                .collect()
        } else {
            Vec::new()
        };
        for &i in &kept {
            let name = &mapping.columns[i];
            let taken = header
                .iter()
                .any(|h| crate::mapping::squash(h) == crate::mapping::squash(name));
            header.push(if taken {
                format!("source_{name}")
            } else {
                name.clone()
            });
        }
        writer.write_record(&header).map_err(|e| OutputError {
            path: path.to_path_buf(),
            source: csv_to_io(e),
        })?;
        Ok(CleanWriter::Csv {
            path: path.to_path_buf(),
            writer: Box::new(writer),
            custom,
            extra_json: columns_can_grow,
            kept,
            record: ByteRecord::new(),
        })
    }

    /// Writes one customer (`source`: its row, for the kept unmapped columns).
    pub fn write(&mut self, customer: &Customer, source: &RawRow) -> Result<(), OutputError> {
        match self {
            CleanWriter::Csv {
                path,
                writer,
                custom,
                extra_json,
                kept,
                record,
            } => {
                record.clear();
                push_canonical_cells(customer, record);
                push_list(record, &customer.phone_extensions);
                for key in custom.iter() {
                    record.push_field(
                        customer
                            .custom_fields
                            .get(key)
                            .map_or(b"", |v| v.as_bytes()),
                    );
                }
                if *extra_json {
                    let extra: BTreeMap<&String, &String> = customer
                        .custom_fields
                        .iter()
                        .filter(|(k, _)| !custom.contains(k))
                        .collect();
                    if extra.is_empty() {
                        record.push_field(b"");
                    } else {
                        record.push_field(json!(extra).to_string().as_bytes());
                    }
                }
                for &i in kept.iter() {
                    record.push_field(source.record.get(i).unwrap_or("").as_bytes());
                }
                // The whole record at once: the crate copies fields that need no quotes
                // straight into its buffer.
                writer.write_byte_record(record).map_err(|e| OutputError {
                    path: path.clone(),
                    source: csv_to_io(e),
                })
            }
            CleanWriter::Jsonl { path, writer } => serde_json::to_writer(&mut *writer, customer)
                .map_err(io::Error::from)
                .and_then(|_| writer.write_all(b"\n"))
                .map_err(|source| OutputError {
                    path: path.clone(),
                    source,
                }),
        }
    }

    /// Flushes the file.
    pub fn finish(self) -> Result<(), OutputError> {
        let (path, result) = match self {
            CleanWriter::Csv { path, writer, .. } => {
                let r = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(sync);
                (path, r)
            }
            CleanWriter::Jsonl { path, writer } => (path, sync(writer)),
        };
        result.map_err(|source| OutputError { path, source })
    }
}

/// Flushes the buffer and gives the file its name. No fsync: these files are regenerable,
/// and syncing 100 MB of output made wall time depend on the disk rather than on our work.
fn sync(writer: BufWriter<OutputFile>) -> io::Result<()> {
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(OutputFile::commit)
}

/// One line of text per issue: `column: message (value "…")`.
pub fn describe(issue: &Issue) -> String {
    let mut text = String::new();
    if let Some(c) = &issue.column {
        if !c.is_empty() {
            text.push_str(c);
            text.push_str(": ");
        }
    }
    text.push_str(&issue.message);
    if let Some(v) = &issue.value {
        text.push_str(&format!(" (value {v:?})"));
    }
    text
}

/// Writes rejected rows with their original fields.
pub enum RejectsWriter {
    /// `deskport_line`, `deskport_issues`, `deskport_messages`, then the source columns
    /// (CSV sources) or `deskport_row_json` (JSONL sources).
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV writer (flexible: ragged rows keep all their fields).
        writer: Box<csv::Writer<BufWriter<OutputFile>>>,
        /// Whether the source is JSONL (rows written as one JSON cell).
        json_rows: bool,
    },
    /// One object per rejected row: line, issues, and the row (or the raw text of a broken line).
    Jsonl {
        /// The file.
        path: PathBuf,
        /// The buffered file.
        writer: BufWriter<OutputFile>,
    },
}

impl RejectsWriter {
    /// Creates the file with the source's columns.
    pub fn create(
        path: &Path,
        source_columns: &[String],
        source_format: Format,
    ) -> Result<Self, OutputError> {
        let file = create(path)?;
        if format_for(path) == Format::Jsonl {
            return Ok(RejectsWriter::Jsonl {
                path: path.to_path_buf(),
                writer: file,
            });
        }
        let json_rows = source_format == Format::Jsonl;
        let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(file);
        let mut header = vec![
            "deskport_line".to_string(),
            "deskport_issues".to_string(),
            "deskport_messages".to_string(),
        ];
        if json_rows {
            header.push("deskport_row_json".to_string());
        } else {
            header.extend(source_columns.iter().cloned());
        }
        writer.write_record(&header).map_err(|e| OutputError {
            path: path.to_path_buf(),
            source: csv_to_io(e),
        })?;
        Ok(RejectsWriter::Csv {
            path: path.to_path_buf(),
            writer: Box::new(writer),
            json_rows,
        })
    }

    /// Writes one rejected row.
    pub fn write(&mut self, row: &CheckedRow, columns: &[String]) -> Result<(), OutputError> {
        let codes: Vec<&str> = row
            .issues
            .iter()
            .filter(|i| i.is_error())
            .map(|i| i.code.as_str())
            .collect();
        let row_object = || -> serde_json::Value {
            match &row.raw.raw_text {
                Some(text) => json!({ "raw": text }),
                None => {
                    let map: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .zip(row.raw.record.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(c, v)| (c.clone(), json!(v)))
                        .collect();
                    serde_json::Value::Object(map)
                }
            }
        };
        match self {
            RejectsWriter::Csv {
                path,
                writer,
                json_rows,
            } => {
                let messages: Vec<String> = row
                    .issues
                    .iter()
                    .filter(|i| i.is_error())
                    .map(describe)
                    .collect();
                let mut record = vec![
                    row.raw.line.to_string(),
                    codes.join(";"),
                    messages.join(" | "),
                ];
                if *json_rows {
                    record.push(row_object().to_string());
                } else {
                    record.extend(row.raw.record.iter().map(str::to_string));
                }
                writer.write_record(&record).map_err(|e| OutputError {
                    path: path.clone(),
                    source: csv_to_io(e),
                })
            }
            RejectsWriter::Jsonl { path, writer } => {
                let value = json!({
                    "deskport_line": row.raw.line,
                    "deskport_issues": row.issues,
                    "row": row_object(),
                });
                serde_json::to_writer(&mut *writer, &value)
                    .map_err(io::Error::from)
                    .and_then(|_| writer.write_all(b"\n"))
                    .map_err(|source| OutputError {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    /// Flushes the file.
    pub fn finish(self) -> Result<(), OutputError> {
        let (path, result) = match self {
            RejectsWriter::Csv { path, writer, .. } => {
                let r = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(sync);
                (path, r)
            }
            RejectsWriter::Jsonl { path, writer } => (path, sync(writer)),
        };
        result.map_err(|source| OutputError { path, source })
    }
}
