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
    /// Fields of the first line (the header): a later line "reads as a row" with as many.
    expected_fields: Option<usize>,
    /// A quoted field that crossed a line break, on trial (see [`Trial`]).
    trial: Option<Box<Trial>>,
    /// Output waiting to be read (after a trial ends), in order before anything else.
    ready: VecDeque<u8>,
    recovered: Recovered,
    /// A record whose field spanned too many lines to be tried again.
    untried: Option<u64>,
    strays: Strays,
    /// Input in `scratch` not processed yet: `scratch[scratch_pos..scratch_len]`.
    scratch_pos: usize,
    scratch_len: usize,
    /// The bytes that end a run of plain content: LF, CR, `"` and the delimiter; inside a
    /// quoted field ([`Self::special_quoted`]) the delimiter is content.
    special: [bool; 256],
    special_quoted: [bool; 256],
    /// Tests: every byte through `take`, to hold the fast paths to the general one.
    #[cfg(test)]
    byte_at_a_time: bool,
}

/// Records with a quote inside a quoted field that is not doubled (`"He said "hi" then"`):
/// (parser line of the record's start, field index), for a `csv.stray_quote` warning.
pub type Strays = Arc<Mutex<VecDeque<(u64, usize)>>>;

/// Records whose quoted field was closed at the end of its first line (parser line of the
/// record's start), for the row reader to reject with `csv.unterminated_quote`.
pub type Recovered = Arc<Mutex<VecDeque<u64>>>;

/// The filter's state, so a trial can go back to the line break where it began.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    state: QuoteState,
    field_bytes: usize,
    record_bytes: usize,
    fields: usize,
    lines: u64,
    record_start: u64,
    truncating: bool,
}

/// A quoted field that runs past the end of its line. Valid CSV allows that (notes with
/// line breaks), but an opening quote that is never closed swallows the rows after it. The
/// filter holds its output back (at most the field limit) and reads each later line on its
/// own, until the field ends:
/// - closed by a quote before a delimiter or line break: a real multi-line field, the held
///   output goes on as it was;
/// - "closed" by a quote that text follows (the opening quote of a later row's field), or
///   still open at the end of the input or past the field limit with a line inside that read
///   as a complete row (the header's number of fields, its quotes balanced): unterminated —
///   closed at the end of its first line, and the held lines read again as rows of their own.
#[derive(Debug)]
struct Trial {
    snapshot: Snapshot,
    /// Normalized input bytes since the line break (included), for the line check.
    input: Vec<u8>,
    /// The input bytes after the line break as they came (line ends not yet normalized:
    /// read again outside the quotes, a CR ends a line).
    raw: Vec<u8>,
    /// What the normal reading produced from them.
    output: Vec<u8>,
    /// The line being read on its own.
    line: LineCheck,
    /// Whether a line inside the field read as a complete row.
    rows_inside: bool,
}

/// Reads one line on its own: its fields and whether every quote is a field's opening or
/// closing quote (or a doubled one inside).
#[derive(Debug, Clone, Copy)]
struct LineCheck {
    state: QuoteState,
    fields: usize,
    stray: bool,
}

impl LineCheck {
    fn new() -> Self {
        LineCheck {
            state: QuoteState::FieldStart,
            fields: 1,
            stray: false,
        }
    }

    /// Feeds one byte; at a line break outside quotes, whether the line read as a complete
    /// row of `expected` fields (then it starts over).
    fn step(&mut self, b: u8, delimiter: u8, expected: usize) -> Option<bool> {
        use QuoteState::*;
        let next = match (self.state, b) {
            (Quoted, b'\n') => {
                // The line's own quoted field runs on: not a row by itself.
                *self = LineCheck::new();
                return Some(false);
            }
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (QuoteInQuoted, b'"') => Quoted,
            (FieldStart, b'"') => Quoted,
            (_, b'\n') => {
                let clean = !self.stray && self.fields == expected;
                *self = LineCheck::new();
                return Some(clean);
            }
            (_, d) if d == delimiter => {
                self.fields += 1;
                FieldStart
            }
            (Unquoted, b'"') | (QuoteInQuoted, _) => {
                self.stray = true;
                Unquoted
            }
            _ => Unquoted,
        };
        self.state = next;
        None
    }

    /// At the end of the input: whether an unfinished last line reads as a complete row.
    fn at_end(&self, expected: usize) -> bool {
        !matches!(self.state, QuoteState::Quoted | QuoteState::FieldStart)
            && !self.stray
            && self.fields == expected
    }
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
            expected_fields: None,
            trial: None,
            ready: VecDeque::new(),
            recovered: Arc::default(),
            untried: None,
            strays: Arc::default(),
            scratch_pos: 0,
            scratch_len: 0,
            special: {
                let mut special = [false; 256];
                for b in [b'\n', b'\r', b'"', delimiter] {
                    special[usize::from(b)] = true;
                }
                special
            },
            special_quoted: {
                let mut special = [false; 256];
                for b in [b'\n', b'\r', b'"'] {
                    special[usize::from(b)] = true;
                }
                special
            },
            #[cfg(test)]
            byte_at_a_time: false,
        }
    }

    /// The records with a stray quote, for the row reader.
    pub fn strays(&self) -> Strays {
        self.strays.clone()
    }

    /// The records whose unterminated quote was closed at their line's end, for the row reader.
    pub fn recovered(&self) -> Recovered {
        self.recovered.clone()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            field_bytes: self.field_bytes,
            record_bytes: self.record_bytes,
            fields: self.fields,
            lines: self.lines,
            record_start: self.record_start,
            truncating: self.truncating,
        }
    }

    fn restore(&mut self, s: Snapshot) {
        self.state = s.state;
        self.field_bytes = s.field_bytes;
        self.record_bytes = s.record_bytes;
        self.fields = s.fields;
        self.lines = s.lines;
        self.record_start = s.record_start;
        self.truncating = s.truncating;
    }

    /// Takes one normalized byte: through a trial when one is open (or this byte opens one),
    /// else through [`Self::filter`]. Output goes to `buf` at `out` while nothing waits in
    /// `ready`, else to `ready`.
    fn feed(&mut self, b: u8, buf: &mut [u8], out: &mut usize) {
        if self.trial.is_none()
            && b == b'\n'
            && self.state == QuoteState::Quoted
            && self.expected_fields.is_some()
            && self.untried != Some(self.record_start)
            && !self.held_quote
            && !self.over()
        {
            self.trial = Some(Box::new(Trial {
                snapshot: self.snapshot(),
                input: Vec::new(),
                raw: Vec::new(),
                output: Vec::new(),
                line: LineCheck::new(),
                rows_inside: false,
            }));
        }
        let mut pending = [0u8; 2];
        if self.trial.is_none() {
            if self.expected_fields.is_none() && b == b'\n' && self.state != QuoteState::Quoted {
                // The first record (the header) ends here: its width.
                self.expected_fields = Some(self.fields + 1);
            }
            let k = self.filter(b, &mut pending);
            self.put(&pending[..k], buf, out);
            return;
        }
        if self.over() {
            // The field outgrew the limit still open. With lines that read as rows inside it
            // is an unclosed quote swallowing them; else a field too large, cut as usual.
            if self.trial.as_ref().is_some_and(|t| t.rows_inside) {
                // `take` put this byte in the trial's raw bytes: read again with them.
                return self.recover();
            }
            self.untried = Some(self.record_start);
            self.accept();
            return self.feed(b, buf, out);
        }
        let before = self.state;
        let k = self.filter(b, &mut pending);
        if before == QuoteState::QuoteInQuoted && self.state == QuoteState::Unquoted {
            // The field "closes" on a quote that text follows: that quote opened a field of a
            // later row, so the field was never closed (the byte is in the trial's raw
            // bytes already: `take` put it there).
            return self.recover();
        }
        let closed = before == QuoteState::QuoteInQuoted && self.state == QuoteState::FieldStart;
        let expected = self.expected_fields.unwrap_or(0);
        let delimiter = self.delimiter;
        let trial = self.trial.as_mut().expect("a trial is open");
        trial.input.push(b);
        trial.output.extend_from_slice(&pending[..k]);
        if closed {
            // Closed by a quote before a delimiter or line break: a real multi-line field.
            return self.accept();
        }
        if trial.input.len() > 1 && trial.line.step(b, delimiter, expected) == Some(true) {
            trial.rows_inside = true;
        }
    }

    /// Puts output bytes where they belong in order: `buf` while nothing waits, else `ready`.
    fn put(&mut self, bytes: &[u8], buf: &mut [u8], out: &mut usize) {
        if self.ready.is_empty() && *out + bytes.len() <= buf.len() {
            buf[*out..*out + bytes.len()].copy_from_slice(bytes);
            *out += bytes.len();
        } else {
            self.ready.extend(bytes);
        }
    }

    /// The field was a real multi-line one: what the normal reading produced goes on.
    fn accept(&mut self) {
        if let Some(trial) = self.trial.take() {
            self.ready.extend(&trial.output);
        }
    }

    /// The field was never closed: close it at the end of its first line, note the record,
    /// and read the held lines again as rows of their own.
    fn recover(&mut self) {
        let Some(trial) = self.trial.take() else {
            return;
        };
        self.restore(trial.snapshot);
        self.recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(self.record_start);
        // Everything from here on waits in `ready` (no room in an empty buffer), behind
        // what already does.
        self.ready.push_back(b'"');
        self.state = QuoteState::QuoteInQuoted;
        self.previous_was_cr = false;
        let mut out = 0;
        self.feed(b'\n', &mut [], &mut out);
        for &b in &trial.raw {
            self.take(b, &mut [], &mut out);
        }
    }

    /// Takes one input byte as it came: line ends outside quotes normalized to LF (CRLF and
    /// a lone CR), then [`Self::feed`].
    fn take(&mut self, b: u8, buf: &mut [u8], out: &mut usize) {
        if let Some(trial) = self.trial.as_mut() {
            trial.raw.push(b);
        }
        let quoted = self.state == QuoteState::Quoted;
        if b == b'\n' && self.previous_was_cr && !quoted {
            self.previous_was_cr = false;
            return;
        }
        // Inside quotes a CR is data and stays as it is; outside, it ends a line.
        self.previous_was_cr = b == b'\r' && !quoted;
        let b = if self.previous_was_cr { b'\n' } else { b };
        self.feed(b, buf, out);
    }

    /// At the end of the input, an open trial is decided on the last (unfinished) line.
    fn end_trials(&mut self) {
        while let Some(trial) = &self.trial {
            let expected = self.expected_fields.unwrap_or(0);
            if trial.rows_inside || (trial.input.len() > 1 && trial.line.at_end(expected)) {
                self.recover();
            } else {
                self.accept();
            }
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

    /// Notes a stray quote in the current field, for the row reader's warning.
    fn note_stray(&self) {
        self.strays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((self.record_start, self.fields));
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
        if self.state == QuoteInQuoted && next == Unquoted {
            // A quote closed the field and text goes on: the quote was meant as data.
            self.note_stray();
        }
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
            if !self.ready.is_empty() {
                let (front, _) = self.ready.as_slices();
                let n = buf.len().min(front.len());
                buf[..n].copy_from_slice(&front[..n]);
                self.ready.drain(..n);
                return Ok(n);
            }
            if buf.len() < 2 {
                // Room for a held quote and the byte after it.
                let mut two = [0u8; 2];
                let n = self.read(&mut two)?;
                let n = n.min(buf.len());
                buf[..n].copy_from_slice(&two[..n]);
                return Ok(n);
            }
            // Read into our own buffer: the output may run one byte ahead of the input (a
            // held quote passed on with the byte after it). Input left over from the last
            // call (cut short when output had to wait in `ready`) comes first.
            let mut scratch = std::mem::take(&mut self.scratch);
            if self.scratch_pos >= self.scratch_len {
                scratch.resize(buf.len() - 1, 0);
                let n = match self.inner.read(&mut scratch) {
                    Ok(n) => n,
                    Err(e) => {
                        self.scratch = scratch;
                        return Err(e);
                    }
                };
                self.scratch_pos = 0;
                self.scratch_len = n;
            }
            let start = self.scratch_pos;
            let end = self.scratch_len.min(start + buf.len() - 1);
            if start == end {
                self.scratch = scratch;
                if self.trial.is_some() {
                    self.end_trials();
                    continue;
                }
                if self.held_quote {
                    self.held_quote = false;
                    buf[0] = b'"';
                    return Ok(1);
                }
                return Ok(0);
            }
            let mut out = 0;
            let mut used = end;
            let mut i = start;
            while i < end {
                // Most bytes are plain content of a field within its bounds: a run of them
                // up to the next structural byte (or bound) is passed on at once.
                #[cfg(test)]
                let general = self.byte_at_a_time;
                #[cfg(not(test))]
                let general = false;
                if !general && !self.held_quote && self.trial.is_none() {
                    let special = if self.state == QuoteState::Quoted {
                        &self.special_quoted
                    } else {
                        &self.special
                    };
                    let run = scratch[i..end]
                        .iter()
                        .position(|&b| special[usize::from(b)])
                        .unwrap_or(end - i);
                    let room = self
                        .limits
                        .field
                        .saturating_sub(self.field_bytes)
                        .min(self.limits.record.saturating_sub(self.record_bytes));
                    let n = run.min(room);
                    if n > 0 {
                        self.previous_was_cr = false;
                        self.field_bytes += n;
                        self.record_bytes += n;
                        if self.state == QuoteState::QuoteInQuoted {
                            // Text right after a closing quote: the quote was meant as data.
                            self.note_stray();
                        }
                        if self.state != QuoteState::Quoted {
                            self.state = QuoteState::Unquoted;
                        }
                        buf[out..out + n].copy_from_slice(&scratch[i..i + n]);
                        out += n;
                        i += n;
                        continue;
                    }
                    // A delimiter or LF outside quotes ends a field or record: what
                    // `take` → `feed` → `filter` does for it, without their general cases.
                    let b = scratch[i];
                    let outside = self.state != QuoteState::Quoted;
                    if outside && b == self.delimiter && self.fields + 1 < MAX_FIELDS {
                        self.previous_was_cr = false;
                        self.fields += 1;
                        self.field_bytes = 0;
                        self.state = QuoteState::FieldStart;
                        buf[out] = b;
                        out += 1;
                        i += 1;
                        continue;
                    }
                    // A quote that opens a field, ends one or is the first of a doubled
                    // pair, within the bounds: what `filter` does for it.
                    if b == b'"' && (self.state == QuoteState::FieldStart || !self.over()) {
                        let next = match self.state {
                            QuoteState::FieldStart => Some(QuoteState::Quoted),
                            QuoteState::Quoted => Some(QuoteState::QuoteInQuoted),
                            QuoteState::QuoteInQuoted => Some(QuoteState::Quoted),
                            QuoteState::Unquoted => None,
                        };
                        if let Some(next) = next {
                            if self.state != QuoteState::FieldStart {
                                self.field_bytes += 1;
                                self.record_bytes += 1;
                            }
                            self.previous_was_cr = false;
                            self.state = next;
                            buf[out] = b;
                            out += 1;
                            i += 1;
                            continue;
                        }
                    }
                    if outside
                        && b == b'\n'
                        && !self.previous_was_cr
                        && self.expected_fields.is_some()
                    {
                        self.lines += 1;
                        self.field_bytes = 0;
                        self.record_bytes = 0;
                        self.fields = 0;
                        self.record_start = self.lines + 1;
                        self.truncating = false;
                        self.state = QuoteState::FieldStart;
                        buf[out] = b;
                        out += 1;
                        i += 1;
                        continue;
                    }
                }
                self.take(scratch[i], buf, &mut out);
                i += 1;
                if !self.ready.is_empty() {
                    // A trial ended: its output goes first; the rest of the input waits.
                    used = i;
                    break;
                }
            }
            self.scratch_pos = used;
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
    /// Records whose unterminated quote the byte filter closed at the end of its line.
    recovered: Recovered,
    strays: Strays,
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
        let recovered = reader.get_ref().recovered();
        let strays = reader.get_ref().strays();
        let mut rows = CsvRows {
            reader,
            columns: Arc::new(Vec::new()),
            max_field_bytes,
            pending: None,
            record: ByteRecord::new(),
            finished: false,
            truncations,
            line_shift: 0,
            recovered,
            strays,
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
                    if self.reader.get_ref().inside_quotes()
                        && last.read_issue.as_ref().is_none_or(|i| !i.is_error())
                    {
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
        let parsed_line = self.record.position().map_or(0, |p| p.line());
        let unterminated = {
            let mut closed = self.recovered.lock().unwrap_or_else(|e| e.into_inner());
            while closed.front().is_some_and(|&l| l < parsed_line) {
                closed.pop_front();
            }
            closed.front() == Some(&parsed_line) && closed.pop_front().is_some()
        };
        let stray = {
            let mut strays = self.strays.lock().unwrap_or_else(|e| e.into_inner());
            while strays.front().is_some_and(|&(l, _)| l < parsed_line) {
                strays.pop_front();
            }
            let field = strays
                .front()
                .filter(|(l, _)| *l == parsed_line)
                .map(|&(_, f)| f);
            while strays.front().is_some_and(|&(l, _)| l == parsed_line) {
                strays.pop_front();
            }
            field
        };
        let (line, cut) = self.place(parsed_line);
        let expected = self.columns.len();
        let mut issue = None;
        if unterminated {
            issue = Some(Issue::error(
                IssueCode::CsvUnterminatedQuote,
                "a quoted field opens on this line and is never closed (the lines after it read as rows of their own): it was closed at the end of the line",
            ));
        }
        if cut && issue.is_none() {
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
        // The next row's record starts with room for a row like this one and a quarter
        // more: a record grown from empty was reallocated ~8 times a row.
        let room = ByteRecord::with_capacity(
            self.record.as_slice().len() * 5 / 4 + 16,
            self.record.len() + 2,
        );
        let record = match StringRecord::from_byte_record(std::mem::replace(&mut self.record, room))
        {
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
        if let (None, Some(field)) = (&issue, stray) {
            let column = self
                .columns
                .get(field)
                .cloned()
                .unwrap_or_else(|| format!("field {}", field + 1));
            issue = Some(
                Issue::warning(
                    IssueCode::CsvStrayQuote,
                    "a quote inside a quoted field is not doubled, so the field was read as shown; write \"\" for a quote inside quotes",
                )
                .in_column(&column)
                .with_value(record.get(field).unwrap_or("")),
            );
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
    use proptest::prelude::*;
    use std::io::Cursor;

    /// Everything a filter passes on and notes, read through buffers of `chunk` bytes.
    fn filtered(input: &[u8], max_field: usize, chunk: usize, general: bool) -> String {
        let mut f = CsvByteFilter::new(Cursor::new(input.to_vec()), b';', max_field);
        f.byte_at_a_time = general;
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        format!(
            "{:?} cut={:?} strays={:?} recovered={:?} quoted={}",
            String::from_utf8_lossy(&out),
            f.truncations.lock().unwrap(),
            f.strays.lock().unwrap(),
            f.recovered.lock().unwrap(),
            f.inside_quotes()
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// The run and delimiter/LF fast paths pass on and note exactly what the general
        /// byte-by-byte path does: every line ending, quote, bound and buffer size.
        #[test]
        fn the_fast_paths_do_what_the_general_path_does(
            input in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b';'), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'x')],
                0..120,
            ),
            max_field in 1usize..12,
            chunk in 2usize..40,
        ) {
            let fast = filtered(&input, max_field, chunk, false);
            let general = filtered(&input, max_field, chunk, true);
            prop_assert_eq!(fast, general);
        }
    }

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
        // The line after it reads as a row: the quote is closed at the end of its line.
        let (_, rows) = read_all(b"a,b\n1,2\n3,\"open\n4,5\n");
        assert_eq!(rows.len(), 3);
        let issue = rows[1].read_issue.as_ref().unwrap();
        assert_eq!(issue.code, IssueCode::CsvUnterminatedQuote);
        assert_eq!(rows[1].line, 3);
        assert_eq!((rows[2].line, &rows[2].record[0]), (4, "4"));
        // Nothing after it that reads as a row: the rest of the file went into it.
        let (_, rows) = read_all(b"a,b\n1,2\n3,\"open\nno row here\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(code(&rows[1]), Some(IssueCode::CsvUnterminatedQuote));
    }

    fn fields(row: &RawRow) -> Vec<&str> {
        row.record.iter().collect()
    }

    #[test]
    fn an_unclosed_quote_no_longer_swallows_the_rows_after_it() {
        let text = b"id,name,note\n1,Anna,\"broken note\n2,Bram,\"fine, really\"\n3,Cees,plain\n";
        let (_, rows) = read_all(text);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].line, 2);
        assert_eq!(code(&rows[0]), Some(IssueCode::CsvUnterminatedQuote));
        assert_eq!(fields(&rows[0]), ["1", "Anna", "broken note"]);
        assert_eq!(
            (rows[1].line, fields(&rows[1])),
            (3, vec!["2", "Bram", "fine, really"])
        );
        assert!(rows[1].read_issue.is_none());
        assert_eq!(
            (rows[2].line, fields(&rows[2])),
            (4, vec!["3", "Cees", "plain"])
        );
        // Also when it is never closed at all, and the file has no final line break, and
        // with CRLF line ends.
        let (_, rows) = read_all(b"id,name\r\n1,\"never closed\r\n2,Bram\r\n3,Cees");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(code(&rows[0]), Some(IssueCode::CsvUnterminatedQuote));
        assert_eq!((rows[2].line, fields(&rows[2])), (4, vec!["3", "Cees"]));
        // Two broken rows in a row.
        let (_, rows) = read_all(b"a,b\n1,\"x\n2,\"y\n3,z\n");
        let codes: Vec<_> = rows.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                Some(IssueCode::CsvUnterminatedQuote),
                Some(IssueCode::CsvUnterminatedQuote),
                None
            ]
        );
        assert_eq!(rows[2].line, 4);
    }

    #[test]
    fn real_multiline_fields_stay_whole() {
        let text = b"id,name,note\n1,Anna,\"line one\nline two, still \"\"the\"\" note\"\n2,Bram,\"a\n\nb\"\n3,Cees,x\n";
        let (_, rows) = read_all(text);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.read_issue.is_none()), "{rows:?}");
        assert_eq!(rows[0].record[2], *"line one\nline two, still \"the\" note");
        assert_eq!(rows[1].record[2], *"a\n\nb");
        assert_eq!((rows[1].line, rows[2].line), (4, 7));
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
        // Lines that do not read as rows of their own (one field, the header has two).
        let mut text = b"a,b\n1,2\n3,\"open\n".to_vec();
        for i in 0..10_000 {
            text.extend(format!("{i} row\n").as_bytes());
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
