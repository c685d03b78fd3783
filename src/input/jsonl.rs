//! JSONL rows: one JSON object per line; blank lines skipped; a broken line is a rejected row.
//!
//! Objects are flattened into columns: nested objects give dotted names
//! (`custom_fields.TextField_1`), arrays are joined with `;`, numbers and booleans become
//! their JSON text, `null` is empty. The column list grows as new keys appear; each batch
//! carries the list as it stood when the batch was cut.

use super::InputError;
use crate::model::{Issue, IssueCode, RawRow, RowBatch};
use csv::StringRecord;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

/// A line may hold this many times the field limit before it is refused unread.
const LINE_LIMIT_FACTOR: usize = 64;

/// Most distinct keys (columns) one file may bring. Every row holds a value slot per
/// column, so without a limit a file of rows with ever new keys grows quadratically.
pub const MAX_KEYS: usize = 1024;

/// Streams the rows of a JSONL source.
pub struct JsonlRows {
    input: BufReader<Box<dyn Read + Send>>,
    line: u64,
    columns: Vec<String>,
    index: HashMap<String, usize>,
    snapshot: Arc<Vec<String>>,
    max_field_bytes: usize,
    buf: Vec<u8>,
    finished: bool,
    /// Reject rows that look like UTF-8 read as the detected single-byte encoding.
    pub check_misread_utf8: Option<&'static encoding_rs::Encoding>,
}

impl JsonlRows {
    /// Prepares to stream rows from UTF-8 bytes.
    pub fn new(input: Box<dyn Read + Send>, max_field_bytes: usize) -> Self {
        JsonlRows {
            input: BufReader::with_capacity(256 * 1024, input),
            line: 0,
            columns: Vec::new(),
            index: HashMap::new(),
            snapshot: Arc::new(Vec::new()),
            max_field_bytes,
            buf: Vec::new(),
            finished: false,
            check_misread_utf8: None,
        }
    }

    /// The keys seen so far.
    pub fn columns(&self) -> Arc<Vec<String>> {
        self.snapshot.clone()
    }

    /// Reads up to `max_rows` rows; `None` once the input is exhausted.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, InputError> {
        let mut rows = Vec::new();
        while rows.len() < max_rows && !self.finished {
            if let Some(row) = self.next_row()? {
                rows.push(row);
            }
        }
        if self.snapshot.len() != self.columns.len() {
            self.snapshot = Arc::new(self.columns.clone());
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(RowBatch {
            columns: self.snapshot.clone(),
            rows,
        }))
    }

    /// Reads one line; `Ok(None)` for a blank line or the end.
    fn next_row(&mut self) -> Result<Option<RawRow>, InputError> {
        self.buf.clear();
        let limit = (self.max_field_bytes.saturating_mul(LINE_LIMIT_FACTOR)) as u64;
        let n = (&mut self.input)
            .take(limit + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| InputError::Read {
                line: self.line + 1,
                source,
            })?;
        if n == 0 {
            self.finished = true;
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        if self.buf.len() as u64 > limit && !self.buf.ends_with(b"\n") {
            let skipped = self.skip_rest_of_line()? + self.buf.len();
            return Ok(Some(self.broken(
                line,
                Issue::error(
                    IssueCode::FieldTooLarge,
                    format!("line is {skipped} bytes, more than the limit of {limit} (64 × --max-field-bytes)"),
                ),
                None,
            )));
        }
        let mut bytes: &[u8] = &self.buf;
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let bytes = trim_ascii(bytes);
        if bytes.is_empty() {
            return Ok(None);
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                let lossy = String::from_utf8_lossy(bytes).into_owned();
                return Ok(Some(self.broken(
                    line,
                    Issue::error(
                        IssueCode::EncodingInvalid,
                        "line has bytes that are not valid UTF-8",
                    ),
                    Some(lossy),
                )));
            }
        };
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                let issue = Issue::error(
                    IssueCode::JsonNotObject,
                    format!("line is {kind}, not a JSON object"),
                );
                return Ok(Some(self.broken(line, issue, Some(text.to_string()))));
            }
            Err(e) => {
                let issue = Issue::error(IssueCode::JsonInvalid, format!("not valid JSON: {e}"));
                return Ok(Some(self.broken(line, issue, Some(text.to_string()))));
            }
        };
        let mut flat = Vec::new();
        flatten("", &object, &mut flat);
        let new_keys = flat
            .iter()
            .filter(|(k, _)| !self.index.contains_key(k))
            .count();
        if self.columns.len() + new_keys > MAX_KEYS {
            let issue = Issue::error(
                IssueCode::JsonTooManyKeys,
                format!(
                    "line brings {new_keys} new keys, past the limit of {MAX_KEYS} distinct keys a file may have ({} so far)",
                    self.columns.len()
                ),
            );
            return Ok(Some(self.broken(line, issue, Some(text.to_string()))));
        }
        let mut values: Vec<String> = vec![String::new(); self.columns.len()];
        let mut issue = None;
        for (key, value) in flat {
            if value.len() > self.max_field_bytes && issue.is_none() {
                issue = Some(
                    Issue::error(
                        IssueCode::FieldTooLarge,
                        format!(
                            "field is {} bytes, more than the limit of {} (--max-field-bytes)",
                            value.len(),
                            self.max_field_bytes
                        ),
                    )
                    .in_column(&key),
                );
            }
            let i = match self.index.get(&key) {
                Some(&i) => i,
                None => {
                    self.columns.push(key.clone());
                    self.index.insert(key, self.columns.len() - 1);
                    values.push(String::new());
                    self.columns.len() - 1
                }
            };
            values[i] = value;
        }
        if let (None, Some(encoding)) = (&issue, self.check_misread_utf8) {
            if let Some(i) = values
                .iter()
                .position(|v| super::decode::looks_like_misread_utf8(v, encoding))
            {
                issue = Some(super::csv_reader::misread_utf8(
                    self.columns.get(i).map(String::as_str),
                ));
            }
        }
        Ok(Some(RawRow {
            line,
            record: StringRecord::from(values),
            read_issue: issue,
            raw_text: None,
        }))
    }

    fn broken(&self, line: u64, issue: Issue, raw_text: Option<String>) -> RawRow {
        RawRow {
            line,
            record: StringRecord::new(),
            read_issue: Some(issue),
            raw_text,
        }
    }

    /// Consumes the remainder of an over-long line; returns how many bytes it had.
    fn skip_rest_of_line(&mut self) -> Result<usize, InputError> {
        let mut skipped = 0;
        loop {
            let chunk = self.input.fill_buf().map_err(|source| InputError::Read {
                line: self.line,
                source,
            })?;
            if chunk.is_empty() {
                return Ok(skipped);
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    self.input.consume(pos + 1);
                    return Ok(skipped + pos + 1);
                }
                None => {
                    let len = chunk.len();
                    self.input.consume(len);
                    skipped += len;
                }
            }
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// Flattens an object into `(column, text)` pairs.
pub fn flatten(prefix: &str, object: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&name, inner, out),
            other => out.push((name, scalar_text(other))),
        }
    }
}

/// The text form of a non-object JSON value (arrays joined with `;`).
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(scalar_text)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(text: &str) -> Vec<(Arc<Vec<String>>, RawRow)> {
        let mut rows = JsonlRows::new(Box::new(Cursor::new(text.as_bytes().to_vec())), 1000);
        let mut all = Vec::new();
        while let Some(batch) = rows.next_batch(2).unwrap() {
            for row in batch.rows {
                all.push((batch.columns.clone(), row));
            }
        }
        all
    }

    #[test]
    fn a_file_brings_at_most_max_keys_distinct_keys() {
        let wide = |from: usize, n: usize| {
            let fields: Vec<String> = (from..from + n)
                .map(|k| format!("\"k{k}\":\"v\""))
                .collect();
            format!("{{{}}}\n", fields.join(","))
        };
        let text = format!("{}{}{}", wide(0, MAX_KEYS - 1), wide(10_000, 5), wide(0, 3));
        let rows = read_all(&text);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].1.read_issue.is_none());
        let issue = rows[1].1.read_issue.as_ref().expect("past the limit");
        assert_eq!(issue.code, IssueCode::JsonTooManyKeys);
        assert!(
            rows[1].1.raw_text.is_some(),
            "the rejects file keeps the line"
        );
        assert!(rows[2].1.read_issue.is_none(), "known keys are still fine");
        assert_eq!(rows[2].0.len(), MAX_KEYS - 1);
    }

    #[test]
    fn objects_flatten_and_columns_grow() {
        let rows = read_all(
            "{\"id\":\"1\",\"phones\":[\"+31612345678\",\"+31201234567\"]}\n\n{\"id\":2,\"custom_fields\":{\"TextField_1\":\"x\"}}\n",
        );
        assert_eq!(rows.len(), 2);
        let (cols, first) = &rows[0];
        assert_eq!(first.line, 1);
        assert_eq!(&first.record[1], "+31612345678;+31201234567");
        assert_eq!(
            cols.as_slice(),
            ["id", "phones", "custom_fields.TextField_1"]
        );
        let (_, second) = &rows[1];
        assert_eq!(second.line, 3);
        assert_eq!(&second.record[0], "2");
        assert_eq!(&second.record[2], "x");
    }

    #[test]
    fn broken_lines_are_rows_with_issues() {
        let rows = read_all("{\"id\":1}\n{\"id\":\n[1,2]\n{\"id\":4}\n");
        let codes: Vec<_> = rows
            .iter()
            .map(|(_, r)| r.read_issue.as_ref().map(|i| i.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some(IssueCode::JsonInvalid),
                Some(IssueCode::JsonNotObject),
                None
            ]
        );
        assert_eq!(rows[1].1.line, 2);
        assert_eq!(rows[1].1.raw_text.as_deref(), Some("{\"id\":"));
    }
}
