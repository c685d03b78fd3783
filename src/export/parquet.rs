//! `export --format parquet`: the customers as a Parquet file with a fixed schema.
//!
//! The export is staged as JSONL in `OUT.partial` — checkpointed and resumed exactly as a
//! JSONL export is — while every customer also goes into the Parquet file being written
//! (`OUT.converting`: row groups of [`ROW_GROUP_ROWS`] customers, Zstandard-compressed
//! pages), which is renamed to `OUT` at the end. A Parquet file cannot be appended to once
//! its writer is gone, so a resume writes it anew from the staged rows and goes on: the
//! file depends only on the sequence of customers, and a resumed export gives the same
//! bytes as an uninterrupted one wherever the JSONL is the same.
//!
//! The schema ([`SCHEMA`]) is the CSV's columns, typed: ids as 64-bit integers, times as
//! UTC milliseconds, lists as lists of strings, and the custom fields as one map, so it
//! does not change when the account's fields do.

use super::record::Record;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Customers per row group.
pub const ROW_GROUP_ROWS: usize = 50_000;

/// The file's schema, in Parquet's message syntax.
pub const SCHEMA: &str = "message customer {
  required int64 platform_id;
  optional binary external_id (STRING);
  optional int64 brand_id;
  optional binary brand_name (STRING);
  optional binary firstname (STRING);
  optional binary lastname (STRING);
  optional binary nick_name (STRING);
  optional binary email (STRING);
  optional group other_emails (LIST) { repeated group list { optional binary element (STRING); } }
  optional group phones (LIST) { repeated group list { optional binary element (STRING); } }
  optional group channels (LIST) { repeated group list { optional binary element (STRING); } }
  optional binary level (STRING);
  optional group tags (LIST) { repeated group list { optional binary element (STRING); } }
  optional binary description (STRING);
  optional int64 created_at (TIMESTAMP(MILLIS,true));
  optional int64 updated_at (TIMESTAMP(MILLIS,true));
  optional int64 first_contact_at (TIMESTAMP(MILLIS,true));
  optional int64 last_contact_at (TIMESTAMP(MILLIS,true));
  optional group custom_fields (MAP) {
    repeated group key_value { required binary key (STRING); optional binary value (STRING); }
  }
}";

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// Reading the staged text or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A value does not fit its typed column (nothing is dropped silently).
    #[error("customer {id}: {field} {value:?} is not {expected}; export this account as CSV or JSONL, which keep the text as it is")]
    Value {
        /// The customer's id.
        id: String,
        /// The column.
        field: &'static str,
        /// The value as the platform gave it.
        value: String,
        /// What the column holds.
        expected: &'static str,
    },
    /// The Parquet writer failed.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// One leaf column's values and levels for the row group being built.
#[derive(Default)]
struct Leaf {
    bytes: Vec<ByteArray>,
    ints: Vec<i64>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

impl Leaf {
    fn optional_text(&mut self, value: String) {
        if value.is_empty() {
            self.def.push(0);
        } else {
            self.def.push(1);
            self.bytes.push(value.into_bytes().into());
        }
    }

    fn optional_int(&mut self, value: Option<i64>) {
        match value {
            None => self.def.push(0),
            Some(v) => {
                self.def.push(1);
                self.ints.push(v);
            }
        }
    }

    fn list(&mut self, items: Vec<String>) {
        if items.is_empty() {
            self.def.push(1);
            self.rep.push(0);
        }
        for (i, item) in items.into_iter().enumerate() {
            self.def.push(3);
            self.rep.push(i16::from(i > 0));
            self.bytes.push(item.into_bytes().into());
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ints.clear();
        self.def.clear();
        self.rep.clear();
    }
}

/// Columns whose values repeat across customers (dictionary-encoded).
const DICTIONARY_COLUMNS: [&str; 5] = [
    "brand_id",
    "brand_name",
    "level",
    "tags.list.element",
    "custom_fields.key_value.key",
];

/// Leaves in schema order.
const LEAVES: usize = 20;
const INT_LEAVES: [usize; 6] = [0, 2, 14, 15, 16, 17];
const REPEATED_LEAVES: [usize; 6] = [8, 9, 10, 12, 18, 19];

/// Milliseconds since the epoch of a time as a platform may give it: RFC 3339, RFC 2822,
/// or a Unix time in seconds or milliseconds (the documents print no customer time, so
/// every unambiguous form is read; a time without a zone is not, as its zone is unknown).
fn millis(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        // Seconds until the year 5138, milliseconds after.
        return Some(if n.abs() < 100_000_000_000 {
            n * 1000
        } else {
            n
        });
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(text))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The row group being built.
struct Batch {
    leaves: Vec<Leaf>,
    rows: usize,
}

impl Batch {
    fn add(&mut self, r: Record) -> Result<(), ParquetError> {
        let bad = |field: &'static str, value: &str, expected: &'static str| ParquetError::Value {
            id: r.id.clone(),
            field,
            value: value.to_string(),
            expected,
        };
        let l = &mut self.leaves;
        let id =
            r.id.parse::<i64>()
                .map_err(|_| bad("platform_id", &r.id, "an integer"))?;
        l[0].ints.push(id);
        l[1].optional_text(r.external_id);
        let brand = match r.brand_id.as_str() {
            "" => None,
            b => Some(
                b.parse::<i64>()
                    .map_err(|_| bad("brand_id", b, "an integer"))?,
            ),
        };
        l[2].optional_int(brand);
        for (i, text) in [r.brand_name, r.firstname, r.lastname, r.nick_name, r.email]
            .into_iter()
            .enumerate()
        {
            l[3 + i].optional_text(text);
        }
        l[8].list(r.other_emails);
        l[9].list(r.phones);
        l[10].list(r.channels);
        l[11].optional_text(r.level);
        l[12].list(r.tags);
        l[13].optional_text(r.description);
        for (i, (field, text)) in [
            ("created_at", &r.created_at),
            ("updated_at", &r.updated_at),
            ("first_contact_at", &r.first_contact_at),
            ("last_contact_at", &r.last_contact_at),
        ]
        .into_iter()
        .enumerate()
        {
            let value = match text.as_str() {
                "" => None,
                t => Some(millis(t).ok_or_else(|| {
                    bad(
                        field,
                        t,
                        "a time with a zone (RFC 3339, RFC 2822) or a Unix time",
                    )
                })?),
            };
            l[14 + i].optional_int(value);
        }
        if r.custom_fields.is_empty() {
            for leaf in &mut l[18..20] {
                leaf.def.push(1);
                leaf.rep.push(0);
            }
        }
        for (i, (key, value)) in r.custom_fields.into_iter().enumerate() {
            let rep = i16::from(i > 0);
            l[18].def.push(2);
            l[18].rep.push(rep);
            l[18].bytes.push(key.into_bytes().into());
            l[19].def.push(3);
            l[19].rep.push(rep);
            l[19].bytes.push(value.into_bytes().into());
        }
        self.rows += 1;
        Ok(())
    }

    fn write(&mut self, file: &mut SerializedFileWriter<File>) -> Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = file.next_row_group()?;
        let mut i = 0;
        while let Some(mut column) = group.next_column()? {
            let leaf = &self.leaves[i];
            let def = (i != 0).then_some(leaf.def.as_slice());
            let rep = REPEATED_LEAVES.contains(&i).then_some(leaf.rep.as_slice());
            if INT_LEAVES.contains(&i) {
                column
                    .typed::<Int64Type>()
                    .write_batch(&leaf.ints, def, rep)?;
            } else {
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&leaf.bytes, def, rep)?;
            }
            column.close()?;
            i += 1;
        }
        group.close()?;
        self.leaves.iter_mut().for_each(Leaf::clear);
        self.rows = 0;
        Ok(())
    }
}

/// The Parquet file being written beside the staged export: every customer written to
/// `OUT.partial` is added here too, and a row group goes out every [`ROW_GROUP_ROWS`].
pub struct Sink {
    path: PathBuf,
    writer: SerializedFileWriter<File>,
    batch: Batch,
    omnidesk: bool,
    rows: u64,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Sink {
    /// A new file at `path` for customers of `platform`.
    pub fn create(path: &Path, platform: &str) -> Result<Sink, ParquetError> {
        let schema = parquet::schema::parser::parse_message_type(SCHEMA)?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by(format!("deskport {}", env!("CARGO_PKG_VERSION")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Dictionaries only where values repeat: for ids, names and addresses they
            // would be built and thrown away.
            .set_dictionary_enabled(false);
        let properties = DICTIONARY_COLUMNS
            .iter()
            .fold(properties, |p, c| {
                p.set_column_dictionary_enabled(
                    ColumnPath::new(c.split('.').map(String::from).collect()),
                    true,
                )
            })
            .build();
        let file = File::create(path).map_err(|source| ParquetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Sink {
            path: path.to_path_buf(),
            writer: SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))?,
            batch: Batch {
                leaves: (0..LEAVES).map(|_| Leaf::default()).collect(),
                rows: 0,
            },
            omnidesk: platform == "omnidesk",
            rows: 0,
        })
    }

    /// Adds one customer as the platform returned it.
    pub fn add(&mut self, value: &serde_json::Value) -> Result<(), ParquetError> {
        let record = if self.omnidesk {
            Record::from_omnidesk(value)
        } else {
            Record::from_udesk(value)
        };
        self.batch.add(record)?;
        self.rows += 1;
        if self.batch.rows == ROW_GROUP_ROWS {
            self.batch.write(&mut self.writer)?;
        }
        Ok(())
    }

    /// Writes the last row group and the footer, fsyncs; returns the file's path.
    pub fn finish(mut self) -> Result<PathBuf, ParquetError> {
        self.batch.write(&mut self.writer)?;
        let file = self.writer.into_inner()?;
        file.sync_all().map_err(|source| ParquetError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }
}

/// The Parquet files of one export: one, or with `--split-rows N` a new one every `N`
/// customers (`OUT-00001.parquet`, …), each written as `….converting` until the end.
#[derive(Debug)]
pub struct Parts {
    out: PathBuf,
    platform: String,
    split: Option<u64>,
    current: Option<Sink>,
    done: Vec<PathBuf>,
}

impl Parts {
    /// The first file of `out`.
    pub fn create(out: &Path, platform: &str, split: Option<u64>) -> Result<Parts, ParquetError> {
        let mut parts = Parts {
            out: out.to_path_buf(),
            platform: platform.to_string(),
            split,
            current: None,
            done: Vec::new(),
        };
        parts.current = Some(Sink::create(&parts.converting(1), platform)?);
        Ok(parts)
    }

    fn converting(&self, n: usize) -> PathBuf {
        let name = match self.split {
            Some(_) => super::part_path(&self.out, n),
            None => self.out.clone(),
        };
        super::suffixed(&name, ".converting")
    }

    /// Adds one customer, starting the next part when this one is full.
    pub fn add(&mut self, value: &serde_json::Value) -> Result<(), ParquetError> {
        let sink = self.current.as_mut().expect("a part is open until finish");
        sink.add(value)?;
        if self.split == Some(sink.rows) {
            let full = self.current.take().expect("open").finish()?;
            self.done.push(full);
            let next = self.converting(self.done.len() + 1);
            self.current = Some(Sink::create(&next, &self.platform)?);
        }
        Ok(())
    }

    /// Closes the last file; returns every file in order (an empty last part is dropped
    /// unless it is the only one).
    pub fn finish(mut self) -> Result<Vec<PathBuf>, ParquetError> {
        let last = self.current.take().expect("open until finish");
        if last.rows == 0 && !self.done.is_empty() {
            let path = last.path.clone();
            drop(last);
            let _ = std::fs::remove_file(path);
        } else {
            self.done.push(last.finish()?);
        }
        Ok(self.done)
    }
}

/// A customer's cells as the Parquet file holds them, by column name, as text: lists
/// joined with `;`, custom fields as `custom_<key>`, times as UTC milliseconds, empty
/// values left out. What `--changes-since`/`--state` compare for Parquet exports.
pub fn record_cells(r: Record) -> Vec<(String, String)> {
    let time = |t: String| millis(&t).map_or(t, |m| m.to_string());
    let mut cells: Vec<(String, String)> = [
        ("platform_id", r.id),
        ("external_id", r.external_id),
        ("brand_id", r.brand_id),
        ("brand_name", r.brand_name),
        ("firstname", r.firstname),
        ("lastname", r.lastname),
        ("nick_name", r.nick_name),
        ("email", r.email),
        ("other_emails", r.other_emails.join(";")),
        ("phones", r.phones.join(";")),
        ("channels", r.channels.join(";")),
        ("level", r.level),
        ("tags", r.tags.join(";")),
        ("description", r.description),
        ("created_at", time(r.created_at)),
        ("updated_at", time(r.updated_at)),
        ("first_contact_at", time(r.first_contact_at)),
        ("last_contact_at", time(r.last_contact_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    cells.extend(
        r.custom_fields
            .into_iter()
            .map(|(k, v)| (format!("{}{k}", super::record::CUSTOM_PREFIX), v)),
    );
    cells.retain(|(_, v)| !v.is_empty());
    cells
}

/// Whether `path` starts as a Parquet file does (`PAR1`).
pub fn is_parquet(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == b"PAR1")
}

/// The customers of a Parquet export as [`record_cells`] gives them, in file order.
pub fn file_cells(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<(String, String)>, ParquetError>>, ParquetError> {
    use parquet::file::reader::SerializedFileReader;
    use parquet::record::{Field, ListAccessor, MapAccessor};
    let file = File::open(path).map_err(|source| ParquetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = SerializedFileReader::new(file)?;
    let text = |f: &Field| match f {
        Field::Null => String::new(),
        Field::Str(s) => s.clone(),
        Field::Long(n) | Field::TimestampMillis(n) => n.to_string(),
        other => other.to_string(),
    };
    Ok(reader.into_iter().map(move |row| {
        let row = row?;
        let mut cells = Vec::new();
        for (name, field) in row.get_column_iter() {
            match field {
                Field::ListInternal(list) => {
                    let items: Vec<String> = (0..list.len())
                        .map(|i| list.get_string(i).cloned())
                        .collect::<Result<_, _>>()?;
                    cells.push((name.clone(), items.join(";")));
                }
                Field::MapInternal(map) => {
                    let (keys, values) = (map.get_keys(), map.get_values());
                    for i in 0..map.len() {
                        cells.push((
                            format!("{}{}", super::record::CUSTOM_PREFIX, keys.get_string(i)?),
                            values.get_string(i).cloned().unwrap_or_default(),
                        ));
                    }
                }
                other => cells.push((name.clone(), text(other))),
            }
        }
        cells.retain(|(_, v)| !v.is_empty());
        Ok(cells)
    }))
}

/// Converts a staged JSONL export `staged` of `platform` into the Parquet file `out`;
/// returns the rows written (what a resume does, for the tests).
#[cfg(test)]
fn convert(staged: &Path, out: &Path, platform: &str) -> Result<u64, ParquetError> {
    let io = |source| ParquetError::Io {
        path: staged.to_path_buf(),
        source,
    };
    use std::io::{BufRead, BufReader};
    let mut sink = Sink::create(out, platform)?;
    let reader = BufReader::with_capacity(1 << 16, File::open(staged).map_err(io)?);
    for line in reader.lines() {
        let line = line.map_err(io)?;
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        sink.add(&value)?;
    }
    let rows = sink.rows;
    sink.finish()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn staged_records_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("s.jsonl");
        std::fs::write(
            &staged,
            concat!(
                r#"{"id":7,"nick_name":"Ann","email":"a@x.io","cellphones":[[1,"+31612345678"],[2,"+31612345679"]],"tags":[],"created_at":"2006-01-02T15:04:05.000+08:00","custom_fields":{"TextField_1":"x","SelectField_2":"1"}}"#,
                "\n",
                r#"{"id":8,"nick_name":"Bo"}"#,
                "\n"
            ),
        )
        .unwrap();
        let out = dir.path().join("o.parquet");
        assert_eq!(convert(&staged, &out, "udesk").unwrap(), 2);
        let reader = SerializedFileReader::new(File::open(&out).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 2);
        let group = reader.metadata().row_group(0);
        let dictionary = |i: usize| {
            group
                .column(i)
                .encodings()
                .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY)
        };
        assert!(dictionary(12), "tags: {:?}", group.column(12));
        assert!(!dictionary(7), "email: {:?}", group.column(7));
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert!(rows[0].contains("platform_id: 7"), "{}", rows[0]);
        assert!(
            rows[0].contains(r#"phones: ["+31612345678", "+31612345679"]"#),
            "{}",
            rows[0]
        );
        assert!(
            rows[0].contains("created_at: 2006-01-02 07:04:05.000 +00:00"),
            "{}",
            rows[0]
        );
        assert!(rows[0].contains(r#""TextField_1" -> "x""#), "{}", rows[0]);
        assert!(rows[1].contains("email: null"), "{}", rows[1]);
    }

    #[test]
    fn times_are_read_in_every_unambiguous_form() {
        let at = 1_136_185_445_000; // 2006-01-02T15:04:05+08:00
        for text in [
            "2006-01-02T15:04:05.000+08:00",
            "Mon, 02 Jan 2006 07:04:05 +0000",
            "1136185445",
            "1136185445000",
        ] {
            assert_eq!(millis(text), Some(at), "{text}");
        }
        assert_eq!(millis("2006-01-02 15:04:05"), None);
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_is_an_error_not_a_null() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("s.jsonl");
        std::fs::write(&staged, "{\"id\":7,\"created_at\":\"yesterday\"}\n").unwrap();
        let err = convert(&staged, &dir.path().join("o.parquet"), "udesk").unwrap_err();
        assert!(
            err.to_string().contains("created_at \"yesterday\""),
            "{err}"
        );
    }
}
