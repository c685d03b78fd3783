//! CSV rows: header cleaning, line numbers, ragged rows, bad bytes, unterminated quotes.
//!
//! The `csv` crate does the parsing. In front of it, [`CsvByteFilter`] turns lone CR and CRLF
//! outside quoted fields into LF (so the crate's line counter, which counts LF, is right for
//! every line ending; inside quotes a CR is data and is kept)
//! and follows the quoting state, so a quote still open at the end of the input is reported
//! on the row where it was opened instead of silently swallowing the rest of the file.

use super::InputError;
use crate::model::{Issue, IssueCode, RawRow, RowBatch};
use csv::{ByteRecord, StringRecord};
use std::io::{self, Read};
use std::sync::Arc;

/// Quoting state of a CSV byte stream, as csv-core sees it with the default `"` quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Normalizes line endings to LF and tracks whether the stream ends inside a quoted field.
pub struct CsvByteFilter<R> {
    inner: R,
    delimiter: u8,
    previous_was_cr: bool,
    state: QuoteState,
}

impl<R: Read> CsvByteFilter<R> {
    /// Wraps a UTF-8 (or ASCII-compatible) byte stream.
    pub fn new(inner: R, delimiter: u8) -> Self {
        CsvByteFilter {
            inner,
            delimiter,
            previous_was_cr: false,
            state: QuoteState::FieldStart,
        }
    }

    /// True when everything read so far ends inside an open quoted field.
    pub fn inside_quotes(&self) -> bool {
        self.state == QuoteState::Quoted
    }

    fn track(&mut self, b: u8) {
        use QuoteState::*;
        self.state = match (self.state, b) {
            (FieldStart, b'"') => Quoted,
            (FieldStart | Unquoted | QuoteInQuoted, b'\n') => FieldStart,
            (FieldStart | Unquoted | QuoteInQuoted, d) if d == self.delimiter => FieldStart,
            (FieldStart | Unquoted, _) => Unquoted,
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (QuoteInQuoted, b'"') => Quoted,
            (QuoteInQuoted, _) => Unquoted,
        };
    }
}

impl<R: Read> Read for CsvByteFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut out = 0;
            for i in 0..n {
                let b = buf[i];
                let quoted = self.state == QuoteState::Quoted;
                if b == b'\n' && self.previous_was_cr && !quoted {
                    self.previous_was_cr = false;
                    continue;
                }
                // Inside quotes a CR is data and stays as it is; outside, it ends a line.
                self.previous_was_cr = b == b'\r' && !quoted;
                let b = if self.previous_was_cr { b'\n' } else { b };
                self.track(b);
                buf[out] = b;
                out += 1;
            }
            if out > 0 {
                return Ok(out);
            }
        }
    }
}

/// Streams the rows of a CSV source.
pub struct CsvRows {
    reader: csv::Reader<CsvByteFilter<Box<dyn Read + Send>>>,
    columns: Arc<Vec<String>>,
    max_field_bytes: usize,
    /// The last row read, held back until we know whether it is the final one.
    pending: Option<RawRow>,
    record: ByteRecord,
    finished: bool,
}

impl CsvRows {
    /// Reads the header line and prepares to stream rows.
    pub fn new(
        input: Box<dyn Read + Send>,
        delimiter: u8,
        max_field_bytes: usize,
    ) -> Result<Self, InputError> {
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(CsvByteFilter::new(input, delimiter));
        let mut rows = CsvRows {
            reader,
            columns: Arc::new(Vec::new()),
            max_field_bytes,
            pending: None,
            record: ByteRecord::new(),
            finished: false,
        };
        if rows.read_record()? {
            let names: Vec<String> = rows
                .record
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            rows.columns = Arc::new(clean_headers(names));
        } else {
            rows.finished = true;
        }
        Ok(rows)
    }

    /// The cleaned header names.
    pub fn columns(&self) -> Arc<Vec<String>> {
        self.columns.clone()
    }

    fn read_record(&mut self) -> Result<bool, InputError> {
        self.reader.read_byte_record(&mut self.record).map_err(|e| {
            let line = self.reader.position().line();
            let source = match e.into_kind() {
                csv::ErrorKind::Io(io) => io,
                other => io::Error::other(format!("{other:?}")),
            };
            InputError::Read { line, source }
        })
    }

    /// Reads up to `max_rows` rows; `None` once the input is exhausted.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, InputError> {
        if self.finished && self.pending.is_none() {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(max_rows.min(8192));
        while rows.len() < max_rows && !self.finished {
            if !self.read_record()? {
                self.finished = true;
                if let Some(last) = self.pending.as_mut() {
                    if self.reader.get_ref().inside_quotes() && last.read_issue.is_none() {
                        last.read_issue = Some(Issue::error(
                            IssueCode::CsvUnterminatedQuote,
                            format!(
                                "a quoted field opened on line {} is never closed, so the rest of the file was read into it",
                                last.line
                            ),
                        ));
                    }
                }
                break;
            }
            let row = self.convert();
            if let Some(previous) = self.pending.replace(row) {
                rows.push(previous);
            }
        }
        if self.finished {
            rows.extend(self.pending.take());
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(RowBatch {
            columns: self.columns.clone(),
            rows,
        }))
    }

    /// Turns the current byte record into a row, noting any problem with it.
    fn convert(&mut self) -> RawRow {
        let line = self.record.position().map_or(0, |p| p.line());
        let expected = self.columns.len();
        let mut issue = None;
        if self.record.len() != expected {
            issue = Some(Issue::error(
                IssueCode::CsvRagged,
                format!(
                    "row has {} field(s) but the header has {}",
                    self.record.len(),
                    expected
                ),
            ));
        }
        if let Some((i, field)) = self
            .record
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() > self.max_field_bytes)
        {
            issue.get_or_insert_with(|| {
                let column = self
                    .columns
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("field {}", i + 1));
                Issue::error(
                    IssueCode::FieldTooLarge,
                    format!(
                        "field is {} bytes, more than the limit of {} (--max-field-bytes)",
                        field.len(),
                        self.max_field_bytes
                    ),
                )
                .in_column(&column)
            });
        }
        let record = match StringRecord::from_byte_record(std::mem::take(&mut self.record)) {
            Ok(record) => record,
            Err(err) => {
                let bytes = err.into_byte_record();
                let bad_field = bytes
                    .iter()
                    .position(|f| std::str::from_utf8(f).is_err())
                    .unwrap_or(0);
                let column = self
                    .columns
                    .get(bad_field)
                    .cloned()
                    .unwrap_or_else(|| format!("field {}", bad_field + 1));
                issue.get_or_insert_with(|| {
                    Issue::error(
                        IssueCode::EncodingInvalid,
                        "bytes that are not valid UTF-8; if the file is in another encoding, pass --encoding (e.g. windows-1252)",
                    )
                    .in_column(&column)
                });
                bytes
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect()
            }
        };
        RawRow {
            line,
            record,
            read_issue: issue,
            raw_text: None,
        }
    }
}

/// Trims header names, names empty ones `column_N` and makes duplicates unique
/// (`Email`, `Email 2`, `Email 3`).
pub fn clean_headers(names: Vec<String>) -> Vec<String> {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let trimmed = name
            .trim()
            .trim_start_matches('\u{feff}')
            .trim()
            .to_string();
        let base = if trimmed.is_empty() {
            format!("column_{}", i + 1)
        } else {
            trimmed
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while seen.contains(&candidate.to_lowercase()) {
            candidate = format!("{base} {n}");
            n += 1;
        }
        seen.insert(candidate.to_lowercase());
        out.push(candidate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(text: &[u8]) -> (Vec<String>, Vec<RawRow>) {
        let mut rows = CsvRows::new(Box::new(Cursor::new(text.to_vec())), b',', 100).unwrap();
        let mut all = Vec::new();
        while let Some(batch) = rows.next_batch(2).unwrap() {
            all.extend(batch.rows);
        }
        (rows.columns().to_vec(), all)
    }

    #[test]
    fn headers_are_trimmed_and_made_unique() {
        let names = vec![" Email ".into(), "email".into(), "".into(), "Email".into()];
        assert_eq!(
            clean_headers(names),
            vec!["Email", "email 2", "column_3", "Email 3"]
        );
    }

    #[test]
    fn line_numbers_survive_every_line_ending_and_multiline_fields() {
        let (_, rows) = read_all(b"id,note\r\n1,a\r2,\"two\nlines\"\n3,\"c\r\nd\"\r\n4,d");
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 7]);
        assert_eq!(&rows[1].record[1], "two\nlines");
        assert_eq!(&rows[2].record[1], "c\r\nd");
        assert!(rows.iter().all(|r| r.read_issue.is_none()));
    }

    #[test]
    fn ragged_rows_are_reported_not_fatal() {
        let (_, rows) = read_all(b"a,b\n1,2\n1,2,3\n1\n4,5\n");
        let codes: Vec<_> = rows
            .iter()
            .map(|r| r.read_issue.as_ref().map(|i| i.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some(IssueCode::CsvRagged),
                Some(IssueCode::CsvRagged),
                None
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_reported_on_its_line() {
        let (_, rows) = read_all(b"a,b\n1,2\n3,\"open\n4,5\n");
        assert_eq!(rows.len(), 2);
        let issue = rows[1].read_issue.as_ref().unwrap();
        assert_eq!(issue.code, IssueCode::CsvUnterminatedQuote);
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn escaped_quotes_are_not_unterminated() {
        let (_, rows) = read_all(b"a,b\n1,\"say \"\"hi\"\"\"\n");
        assert!(rows[0].read_issue.is_none());
        assert_eq!(&rows[0].record[1], "say \"hi\"");
    }

    #[test]
    fn invalid_utf8_is_a_row_issue() {
        let (_, rows) = read_all(b"a,b\n1,ok\n2,bad\xff\n3,ok\n");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].read_issue.as_ref().unwrap().code,
            IssueCode::EncodingInvalid
        );
        assert_eq!(rows[1].line, 3);
        assert!(rows[2].read_issue.is_none());
    }

    #[test]
    fn oversized_field_is_a_row_issue() {
        let mut text = b"a,b\n1,".to_vec();
        text.extend(std::iter::repeat_n(b'x', 500));
        text.extend(b"\n2,ok\n");
        let (_, rows) = read_all(&text);
        assert_eq!(
            rows[0].read_issue.as_ref().unwrap().code,
            IssueCode::FieldTooLarge
        );
        assert!(rows[1].read_issue.is_none());
    }

    #[test]
    fn empty_input_has_no_rows() {
        let (cols, rows) = read_all(b"");
        assert!(cols.is_empty() && rows.is_empty());
    }
}
