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
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

/// Quoting state of a CSV byte stream, as csv-core sees it with the default `"` quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Normalizes line endings to LF, tracks whether the stream ends inside a quoted field, and
/// bounds what a record can hold: a field keeps at most `max_field` bytes, a record at most
/// `max_record` bytes and `MAX_FIELDS` fields. Bytes past a bound are dropped here, before
/// the CSV parser buffers them, and the record is noted in [`Truncations`] so the row is
/// rejected (`field.too_large`) with the prefix it kept and correct line numbers after it.
pub struct CsvByteFilter<R> {
    inner: R,
    delimiter: u8,
    previous_was_cr: bool,
    state: QuoteState,
    limits: Limits,
    /// Content bytes of the current field and record, fields of the current record.
    field_bytes: usize,
    record_bytes: usize,
    fields: usize,
    /// LFs passed on (the parser's line count) and where the current record started.
    lines: u64,
    record_start: u64,
    /// Whether the current record lost bytes.
    truncating: bool,
    /// A `"` inside an over-long quoted field, held back until the next byte tells whether
    /// it closes the field (pass it on) or escapes a quote (drop the pair).
    held_quote: bool,
    truncations: Truncations,
    scratch: Vec<u8>,
}

/// Most fields one CSV record may have; further delimiters are dropped (the row is rejected).
pub const MAX_FIELDS: usize = 1 << 16;

/// How much of a record the filter passes on.
#[derive(Debug, Clone, Copy)]
struct Limits {
    field: usize,
    record: usize,
}

/// A record the filter cut: where it starts (in the parser's line count) and how many line
/// breaks inside its dropped bytes the parser never saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    start: u64,
    dropped_lines: u64,
}

/// The records cut so far, oldest first; shared by the filter and the row reader.
pub type Truncations = Arc<Mutex<VecDeque<Truncation>>>;

impl<R: Read> CsvByteFilter<R> {
    /// Wraps a UTF-8 (or ASCII-compatible) byte stream; fields over `max_field_bytes` are
    /// cut to `max_field_bytes + 1` bytes (so the row reader sees that they are too large),
    /// records to 64 times that.
    pub fn new(inner: R, delimiter: u8, max_field_bytes: usize) -> Self {
        let field = max_field_bytes.saturating_add(1);
        CsvByteFilter {
            inner,
            delimiter,
            previous_was_cr: false,
            state: QuoteState::FieldStart,
            limits: Limits {
                field,
                record: max_field_bytes.saturating_mul(64).max(field),
            },
            field_bytes: 0,
            record_bytes: 0,
            fields: 0,
            lines: 0,
            record_start: 1,
            truncating: false,
            held_quote: false,
            truncations: Arc::default(),
            scratch: Vec::new(),
        }
    }

    /// The records this filter cut, for the row reader.
    pub fn truncations(&self) -> Truncations {
        self.truncations.clone()
    }

    /// True when everything read so far ends inside an open quoted field.
    pub fn inside_quotes(&self) -> bool {
        self.state == QuoteState::Quoted
    }

    fn next_state(&self, b: u8) -> QuoteState {
        use QuoteState::*;
        match (self.state, b) {
            (FieldStart, b'"') => Quoted,
            (FieldStart | Unquoted | QuoteInQuoted, b'\n') => FieldStart,
            (FieldStart | Unquoted | QuoteInQuoted, d) if d == self.delimiter => FieldStart,
            (FieldStart | Unquoted, _) => Unquoted,
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (QuoteInQuoted, b'"') => Quoted,
            (QuoteInQuoted, _) => Unquoted,
        }
    }

    #[inline]
    fn over(&self) -> bool {
        self.field_bytes >= self.limits.field || self.record_bytes >= self.limits.record
    }

    /// Notes that the current record lost a byte (a line break when `line`).
    fn drop_byte(&mut self, line: bool) {
        let mut cut = self.truncations.lock().unwrap_or_else(|e| e.into_inner());
        if !self.truncating {
            self.truncating = true;
            cut.push_back(Truncation {
                start: self.record_start,
                dropped_lines: 0,
            });
        }
        if line {
            if let Some(last) = cut.back_mut() {
                last.dropped_lines += 1;
            }
        }
    }

    /// Decides what happens to one (line-ending-normalized) byte: passed on, held or
    /// dropped. Returns the bytes to pass on (at most two: a held quote and this byte).
    fn filter(&mut self, b: u8, out: &mut [u8; 2]) -> usize {
        use QuoteState::*;
        let mut n = 0;
        if self.held_quote {
            self.held_quote = false;
            if b == b'"' {
                // An escaped quote inside an over-long field: drop the pair.
                self.state = Quoted;
                self.drop_byte(false);
                return 0;
            }
            out[n] = b'"';
            n += 1;
        }
        let next = self.next_state(b);
        let outside = self.state != Quoted;
        if outside && b == b'\n' {
            self.lines += 1;
            self.field_bytes = 0;
            self.record_bytes = 0;
            self.fields = 0;
            // The next record starts on the next line (moved on by blank lines).
            self.record_start = self.lines + 1;
            self.truncating = false;
        } else if outside && b == self.delimiter {
            if self.fields + 1 >= MAX_FIELDS {
                self.drop_byte(false);
                return n;
            }
            self.fields += 1;
            self.field_bytes = 0;
        } else if self.state == FieldStart && b == b'"' {
            // Opens a quoted field: structural, always passed on.
        } else if self.state == Quoted && b == b'"' && self.over() {
            self.state = QuoteInQuoted;
            self.held_quote = true;
            return n;
        } else if self.over() {
            // Content past a bound; the parser's state does not change.
            self.drop_byte(b == b'\n');
            return n;
        } else {
            self.field_bytes += 1;
            self.record_bytes += 1;
            if b == b'\n' {
                self.lines += 1;
            }
        }
        self.state = next;
        out[n] = b;
        n + 1
    }
}

impl<R: Read> Read for CsvByteFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if buf.len() < 2 {
                // Room for a held quote and the byte after it.
                let mut two = [0u8; 2];
                let n = self.read(&mut two)?;
                let n = n.min(buf.len());
                buf[..n].copy_from_slice(&two[..n]);
                return Ok(n);
            }
            // Read into our own buffer: the output may run one byte ahead of the input (a
            // held quote passed on with the byte after it).
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.resize(buf.len() - 1, 0);
            let n = self.inner.read(&mut scratch);
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.scratch = scratch;
                    return Err(e);
                }
            };
            if n == 0 {
                self.scratch = scratch;
                if self.held_quote {
                    self.held_quote = false;
                    buf[0] = b'"';
                    return Ok(1);
                }
                return Ok(0);
            }
            let mut out = 0;
            let mut pending = [0u8; 2];
            let delimiter = self.delimiter;
            for &b in &scratch[..n] {
                // Most bytes are plain content of a field within its bounds.
                if b != b'\n'
                    && b != b'\r'
                    && b != b'"'
                    && b != delimiter
                    && !self.held_quote
                    && !self.over()
                {
                    self.previous_was_cr = false;
                    self.field_bytes += 1;
                    self.record_bytes += 1;
                    if self.state != QuoteState::Quoted {
                        self.state = QuoteState::Unquoted;
                    }
                    buf[out] = b;
                    out += 1;
                    continue;
                }
                let quoted = self.state == QuoteState::Quoted;
                if b == b'\n' && self.previous_was_cr && !quoted {
                    self.previous_was_cr = false;
                    continue;
                }
                // Inside quotes a CR is data and stays as it is; outside, it ends a line.
                self.previous_was_cr = b == b'\r' && !quoted;
                let b = if self.previous_was_cr { b'\n' } else { b };
                let k = self.filter(b, &mut pending);
                buf[out..out + k].copy_from_slice(&pending[..k]);
                out += k;
            }
            self.scratch = scratch;
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
    /// Records the byte filter cut, and the line breaks the parser did not see because
    /// they were in cut bytes (added to the lines of every later row).
    truncations: Truncations,
    line_shift: u64,
    /// Reject rows that look like UTF-8 read as the detected single-byte encoding.
    pub check_misread_utf8: Option<&'static encoding_rs::Encoding>,
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
            .from_reader(CsvByteFilter::new(input, delimiter, max_field_bytes));
        let truncations = reader.get_ref().truncations();
        let mut rows = CsvRows {
            reader,
            columns: Arc::new(Vec::new()),
            max_field_bytes,
            pending: None,
            record: ByteRecord::new(),
            finished: false,
            truncations,
            line_shift: 0,
            check_misread_utf8: None,
        };
        if rows.read_record()? {
            rows.place(rows.record.position().map_or(1, |p| p.line()));
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

    /// The true line of the record the parser puts at `parsed_line`, and whether the byte
    /// filter cut it.
    fn place(&mut self, parsed_line: u64) -> (u64, bool) {
        let mut cut = self.truncations.lock().unwrap_or_else(|e| e.into_inner());
        while cut.front().is_some_and(|t| t.start < parsed_line) {
            if let Some(t) = cut.pop_front() {
                self.line_shift += t.dropped_lines;
            }
        }
        let line = parsed_line + self.line_shift;
        match cut.front() {
            Some(t) if t.start == parsed_line => {
                self.line_shift += t.dropped_lines;
                cut.pop_front();
                (line, true)
            }
            _ => (line, false),
        }
    }

    /// Turns the current byte record into a row, noting any problem with it.
    fn convert(&mut self) -> RawRow {
        let (line, cut) = self.place(self.record.position().map_or(0, |p| p.line()));
        let expected = self.columns.len();
        let mut issue = None;
        if cut {
            issue = Some(Issue::error(
                IssueCode::FieldTooLarge,
                format!(
                    "the row has a field over {} bytes (--max-field-bytes), or more than {} bytes or {MAX_FIELDS} fields in all; it was cut while reading and the rejects file keeps what fits",
                    self.max_field_bytes,
                    self.max_field_bytes.saturating_mul(64)
                ),
            ));
        }
        if issue.is_none() && self.record.len() != expected {
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
        if let (None, Some(encoding)) = (&issue, self.check_misread_utf8) {
            if let Some(i) = record
                .iter()
                .position(|f| super::decode::looks_like_misread_utf8(f, encoding))
            {
                issue = Some(misread_utf8(self.columns.get(i).map(String::as_str)));
            }
        }
        RawRow {
            line,
            record,
            read_issue: issue,
            raw_text: None,
        }
    }
}

/// The issue of a field that looks like UTF-8 read as a single-byte encoding.
pub fn misread_utf8(column: Option<&str>) -> Issue {
    let issue = Issue::error(
        IssueCode::EncodingMixed,
        "looks like UTF-8 read as the encoding detected from the start of the file (\"Ã©\" for \"é\"): the file mixes encodings; pass --encoding utf-8 if it is UTF-8, or fix these rows",
    );
    match column {
        Some(c) => issue.in_column(c),
        None => issue,
    }
}

/// Trims header names, names empty ones `column_N` and makes duplicates unique
/// (`Email`, `Email 2`, `Email 3`).
pub fn clean_headers(names: Vec<String>) -> Vec<String> {
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    // The next suffix to try per base name, so many equal names stay linear.
    let mut next: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
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
        let key = base.to_lowercase();
        let mut candidate = base.clone();
        if seen.contains(&key) {
            let n = next.entry(key.clone()).or_insert(2);
            loop {
                candidate = format!("{base} {n}");
                *n += 1;
                if !seen.contains(&candidate.to_lowercase()) {
                    break;
                }
            }
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
    fn many_equal_headers_are_made_unique_in_linear_time() {
        let names = vec!["x".to_string(); 100_000];
        let cleaned = clean_headers(names);
        assert_eq!(cleaned[0], "x");
        assert_eq!(cleaned[99_999], "x 100000");
        let distinct: std::collections::HashSet<_> = cleaned.iter().collect();
        assert_eq!(distinct.len(), 100_000);
        // A later literal name that an earlier suffix took is suffixed again.
        assert_eq!(
            clean_headers(vec!["a".into(), "a".into(), "a 2".into()]),
            vec!["a", "a 2", "a 2 2"]
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

    fn read_with_limit(text: &[u8], max: usize) -> Vec<RawRow> {
        let mut rows = CsvRows::new(Box::new(Cursor::new(text.to_vec())), b',', max).unwrap();
        let mut all = Vec::new();
        while let Some(batch) = rows.next_batch(3).unwrap() {
            all.extend(batch.rows);
        }
        all
    }

    fn code(row: &RawRow) -> Option<IssueCode> {
        row.read_issue.as_ref().map(|i| i.code)
    }

    #[test]
    fn an_oversized_field_is_cut_while_reading_and_keeps_a_prefix() {
        let mut text = b"a,b\n1,".to_vec();
        text.extend(std::iter::repeat_n(b'x', 100_000));
        text.extend(b"\n2,ok\n");
        let rows = read_with_limit(&text, 100);
        assert_eq!(rows.len(), 2);
        assert_eq!(code(&rows[0]), Some(IssueCode::FieldTooLarge));
        assert_eq!(
            rows[0].record[1].len(),
            101,
            "the prefix the rejects file keeps"
        );
        assert_eq!((rows[1].line, code(&rows[1])), (3, None));
    }

    #[test]
    fn an_unterminated_quote_swallows_the_rest_in_bounded_memory() {
        let mut text = b"a,b\n1,2\n3,\"open\n".to_vec();
        for i in 0..10_000 {
            text.extend(format!("{i},row\n").as_bytes());
        }
        let rows = read_with_limit(&text, 100);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
        assert!(rows[1].record[1].len() <= 101 + 2);
        assert!(code(&rows[1]).is_some());
    }

    #[test]
    fn lines_after_a_cut_multiline_field_stay_exact() {
        let mut text = b"a,b\n1,\"".to_vec();
        for _ in 0..200 {
            text.extend(b"xx\n");
        }
        text.extend(b"\"\n2,ok\n3,\"say \"\"hi\"\"\"\n");
        let rows = read_with_limit(&text, 50);
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 203, 204]);
        assert_eq!(code(&rows[0]), Some(IssueCode::FieldTooLarge));
        assert_eq!((code(&rows[1]), code(&rows[2])), (None, None));
        assert_eq!(&rows[2].record[1], "say \"hi\"");
    }

    #[test]
    fn escaped_quotes_past_the_limit_do_not_open_or_close_anything() {
        let mut text = b"a,b\n1,\"".to_vec();
        for _ in 0..5_000 {
            text.extend(b"\"\"");
        }
        text.extend(b"\"\n2,ok\n");
        let rows = read_with_limit(&text, 64);
        assert_eq!(rows.len(), 2);
        assert_eq!(code(&rows[0]), Some(IssueCode::FieldTooLarge));
        assert!(rows[0].record[1].len() <= 65);
        assert_eq!(
            (rows[1].line, code(&rows[1]), &rows[1].record[1]),
            (3, None, "ok")
        );
    }

    #[test]
    fn too_many_fields_are_cut_too() {
        let mut text = b"a,b\n".to_vec();
        text.extend(std::iter::repeat_n(b',', 200_000));
        text.extend(b"\n2,ok\n");
        let rows = read_with_limit(&text, 1000);
        assert_eq!(rows.len(), 2);
        assert_eq!(code(&rows[0]), Some(IssueCode::FieldTooLarge));
        assert!(rows[0].record.len() <= MAX_FIELDS);
        assert_eq!((rows[1].line, code(&rows[1])), (3, None));
    }

    #[test]
    fn empty_input_has_no_rows() {
        let (cols, rows) = read_all(b"");
        assert!(cols.is_empty() && rows.is_empty());
    }
}
