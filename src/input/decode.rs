//! Encoding: strip a byte-order mark, detect the encoding, and hand on UTF-8 bytes.
//!
//! UTF-8 input is passed through untouched (invalid bytes are reported per row later, by
//! the format reader). Anything else is transcoded with `encoding_rs`. Detection looks at the
//! first 64 KiB: a BOM decides; else text that is mostly valid UTF-8 is UTF-8; else
//! `chardetng` guesses the legacy encoding (typically Windows-1252).

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
use serde::Serialize;
use std::io::{self, Cursor, Read};

/// How many bytes are examined for detection (and for delimiter sniffing).
pub const PREFIX_BYTES: usize = 64 * 1024;

/// The encoding used and how it was chosen, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodingInfo {
    /// The WHATWG name, e.g. `UTF-8`, `windows-1252`, `UTF-16LE`.
    pub name: String,
    /// `bom`, `detected` or `flag`.
    pub source: &'static str,
    /// Whether a byte-order mark was found and removed.
    pub bom: bool,
}

/// A decoded stream and what was found out on the way.
pub struct Decoded {
    /// UTF-8 bytes (invalid sequences possible only when the source claimed UTF-8).
    pub reader: Box<dyn Read + Send>,
    /// The encoding and how it was chosen.
    pub info: EncodingInfo,
    /// The first bytes decoded to text (lossy), for sniffing.
    pub prefix_text: String,
    /// The encoding rows should be checked against for UTF-8 read byte by byte: set when
    /// a single-byte encoding was detected (not given).
    pub check_misread_utf8: Option<&'static Encoding>,
}

/// Whether `text`, decoded from `encoding` (a single-byte one), was really UTF-8 read byte
/// by byte — `RenÃ©e` for `Renée` — the sign of a file that turns UTF-8 after the prefix the
/// encoding was detected from. The text is encoded back to its bytes, which then hold a
/// valid non-ASCII UTF-8 sequence.
pub fn looks_like_misread_utf8(text: &str, encoding: &'static Encoding) -> bool {
    if text.is_ascii() {
        return false;
    }
    let (bytes, _, _) = encoding.encode(text);
    bytes.utf8_chunks().any(|chunk| !chunk.valid().is_ascii())
}

/// Reads the prefix, detects (or takes the forced) encoding and builds the decoding stream.
pub fn open(
    mut plain: Box<dyn Read + Send>,
    forced: Option<&'static Encoding>,
) -> io::Result<Decoded> {
    let mut prefix = Vec::with_capacity(PREFIX_BYTES);
    (&mut plain)
        .take(PREFIX_BYTES as u64)
        .read_to_end(&mut prefix)?;
    let at_eof = prefix.len() < PREFIX_BYTES;
    let (bom_encoding, bom_len) = match Encoding::for_bom(&prefix) {
        Some((enc, len)) => (Some(enc), len),
        None => (None, 0),
    };
    let (encoding, source) = match (forced, bom_encoding) {
        (Some(enc), _) => (enc, "flag"),
        (None, Some(enc)) => (enc, "bom"),
        (None, None) => (detect(&prefix, at_eof), "detected"),
    };
    // A BOM is removed only when it belongs to the encoding in use.
    let strip = if bom_encoding == Some(encoding) {
        bom_len
    } else {
        0
    };
    let prefix = prefix.split_off(strip);
    let prefix_text = if encoding == UTF_8 {
        String::from_utf8_lossy(&prefix).into_owned()
    } else {
        encoding.decode_without_bom_handling(&prefix).0.into_owned()
    };
    let stream = Cursor::new(prefix).chain(plain);
    let reader: Box<dyn Read + Send> = if encoding == UTF_8 {
        Box::new(stream)
    } else {
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                .build(stream),
        )
    };
    Ok(Decoded {
        reader,
        info: EncodingInfo {
            name: encoding.name().to_string(),
            source,
            bom: strip > 0,
        },
        prefix_text,
        check_misread_utf8: (source == "detected"
            && encoding.is_single_byte()
            && encoding != UTF_8)
            .then_some(encoding),
    })
}

/// Guesses the encoding of a BOM-less prefix.
///
/// UTF-8 wins when there are no invalid sequences, or when valid multi-byte characters are at
/// least as common as invalid bytes (a UTF-8 file with a few broken rows stays UTF-8, so only
/// those rows are rejected). Otherwise `chardetng` picks a legacy encoding.
pub fn detect(prefix: &[u8], at_eof: bool) -> &'static Encoding {
    let mut multibyte_chars = 0usize;
    let mut invalid_bytes = 0usize;
    let mut chunks = prefix.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        multibyte_chars += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        let bad = chunk.invalid().len();
        // A character cut by the end of the prefix is not an error.
        let cut_at_end = chunks.peek().is_none()
            && !at_eof
            && bad < 4
            && chunk.invalid().first().is_some_and(|b| *b >= 0xC0);
        if !cut_at_end {
            invalid_bytes += bad;
        }
    }
    if invalid_bytes == 0 || multibyte_chars >= invalid_bytes {
        return UTF_8;
    }
    if looks_like_utf16(prefix) {
        return if prefix.iter().step_by(2).filter(|b| **b == 0).count() > prefix.len() / 4 {
            UTF_16BE
        } else {
            UTF_16LE
        };
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(prefix, at_eof);
    detector.guess(None, chardetng::Utf8Detection::Deny)
}

/// BOM-less UTF-16 shows as many NUL bytes in ASCII-heavy text.
fn looks_like_utf16(prefix: &[u8]) -> bool {
    prefix.len() >= 4 && prefix.iter().filter(|b| **b == 0).count() * 3 > prefix.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_read_as_a_single_byte_encoding_is_recognised() {
        let w1252 = encoding_rs::WINDOWS_1252;
        let misread = w1252
            .decode_without_bom_handling("Renée Müller".as_bytes())
            .0;
        assert!(looks_like_misread_utf8(&misread, w1252), "{misread}");
        assert!(!looks_like_misread_utf8("Renée Müller", w1252));
        assert!(!looks_like_misread_utf8("plain ascii", w1252));
        let w1250 = encoding_rs::WINDOWS_1250;
        let misread = w1250.decode_without_bom_handling("Łódź".as_bytes()).0;
        assert!(looks_like_misread_utf8(&misread, w1250), "{misread}");
    }

    fn decode_all(bytes: &[u8], forced: Option<&'static Encoding>) -> (String, EncodingInfo) {
        let mut d = open(Box::new(Cursor::new(bytes.to_vec())), forced).unwrap();
        let mut out = Vec::new();
        d.reader.read_to_end(&mut out).unwrap();
        (String::from_utf8_lossy(&out).into_owned(), d.info)
    }

    #[test]
    fn utf8_bom_is_stripped() {
        let (text, info) = decode_all(b"\xEF\xBB\xBFname\nJos\xC3\xA9\n", None);
        assert_eq!(text, "name\nJosé\n");
        assert_eq!(info.name, "UTF-8");
        assert_eq!(info.source, "bom");
        assert!(info.bom);
    }

    #[test]
    fn windows_1252_is_detected_and_transcoded() {
        let (text, info) = decode_all(
            b"name;city\nJos\xE9;M\xFCnchen\nFran\xE7ois;Gen\xE8ve\n",
            None,
        );
        assert_eq!(info.name, "windows-1252");
        assert!(text.contains("José") && text.contains("München") && text.contains("François"));
    }

    #[test]
    fn utf16le_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "id,name\n1,Zoë\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let (text, info) = decode_all(&bytes, None);
        assert_eq!(text, "id,name\n1,Zoë\n");
        assert_eq!(info.name, "UTF-16LE");
    }

    #[test]
    fn mostly_utf8_with_one_bad_byte_stays_utf8() {
        let (_, info) = decode_all(b"name\nJos\xC3\xA9\nRen\xC3\xA9e\nBad\xFF\n", None);
        assert_eq!(info.name, "UTF-8");
    }

    #[test]
    fn flag_wins() {
        let (text, info) = decode_all(b"Jos\xE9\n", Some(encoding_rs::WINDOWS_1252));
        assert_eq!(text, "José\n");
        assert_eq!(info.source, "flag");
    }
}
