//! Names: trimmed, inner whitespace collapsed, Unicode NFC; and the Omnidesk name pattern.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Trims, collapses runs of whitespace to one space and composes to NFC.
pub fn normalize(raw: &str) -> String {
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
