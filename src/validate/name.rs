//! Names: trimmed, inner whitespace collapsed, Unicode NFC; and the Omnidesk name pattern.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Trims, collapses runs of whitespace to one space and composes to NFC.
pub fn normalize(raw: &str) -> String {
    if is_plain_ascii(raw) {
        return raw.to_string();
    }
    collapse_and_compose(raw)
}

/// What [`normalize`] does for any input, character by character.
fn collapse_and_compose(raw: &str) -> String {
    let mut collapsed = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    match is_nfc_quick(collapsed.chars()) {
        IsNormalized::Yes => collapsed,
        _ => collapsed.nfc().collect(),
    }
}

/// Whether `raw` is already what [`normalize`] makes of it, decided bytewise: ASCII (so
/// NFC as it is), no white space but single spaces between words.
fn is_plain_ascii(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.first().is_none_or(|&b| b != b' ')
        && bytes.last().is_none_or(|&b| b != b' ')
        && bytes
            .iter()
            .all(|&b| b.is_ascii() && !matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r'))
        && !bytes.windows(2).any(|w| w == b"  ")
}

/// Whether one character is allowed by Omnidesk's name pattern
/// `^[a-zA-ZÀ-ÖØ-Þß-öø-ÿŠš\.\-\' ]+$`.
pub fn omnidesk_allows(c: char) -> bool {
    matches!(c,
        'a'..='z' | 'A'..='Z'
        | 'À'..='Ö' | 'Ø'..='Þ' | 'ß'..='ö' | 'ø'..='ÿ'
        | 'Š' | 'š' | '.' | '-' | '\'' | ' ')
}

/// The characters of `name` that Omnidesk refuses, each once, in order of appearance.
pub fn omnidesk_refused_chars(name: &str) -> Vec<char> {
    let mut bad: Vec<char> = Vec::new();
    for c in name.chars().filter(|c| !omnidesk_allows(*c)) {
        if !bad.contains(&c) {
            bad.push(c);
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The bytewise shortcut gives what the general path gives.
        #[test]
        fn the_ascii_shortcut_agrees(raw in "[ a-zA-Z.'\t\n\r\u{0B}\u{0C}\u{A0}\u{301}é-]{0,12}") {
            proptest::prop_assert_eq!(normalize(&raw), collapse_and_compose(&raw));
        }
    }

    #[test]
    fn whitespace_and_composition() {
        assert_eq!(normalize("  Jan \t  van   der\nBerg "), "Jan van der Berg");
        // "e" + combining acute → "é"
        assert_eq!(normalize("Rene\u{301}e"), "Renée");
    }

    #[test]
    fn omnidesk_pattern() {
        for ok in [
            "José",
            "O'Brien",
            "Anne-Marie",
            "J. R. R.",
            "Šimon",
            "Zoë",
            "Øystein",
            "Ångström",
            "ß",
        ] {
            assert!(omnidesk_refused_chars(ok).is_empty(), "{ok} should pass");
        }
        assert_eq!(omnidesk_refused_chars("R2D2"), vec!['2']);
        assert_eq!(omnidesk_refused_chars("王小明"), vec!['王', '小', '明']);
        assert_eq!(omnidesk_refused_chars("Łukasz"), vec!['Ł']);
        assert_eq!(omnidesk_refused_chars("a×b"), vec!['×']);
        assert_eq!(omnidesk_refused_chars("a÷b"), vec!['÷']);
    }
}
