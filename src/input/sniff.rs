//! Delimiter sniffing: pick among `,` `;` `\t` `|` the one that splits the first lines most
//! consistently (same non-zero count as the header line), counting only outside quotes.

/// The candidates, in order of preference when scores tie.
pub const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How many logical lines are examined.
const SAMPLE_LINES: usize = 50;

/// Picks the delimiter for a CSV prefix; `,` when nothing fits (a one-column file).
pub fn sniff_delimiter(prefix: &str) -> u8 {
    let lines = logical_lines(prefix.as_bytes());
    let mut best: Option<(usize, usize, u8)> = None; // (consistent lines, header count, delimiter)
    for &delim in &CANDIDATES {
        let counts: Vec<usize> = lines
            .iter()
            .map(|line| count_outside_quotes(line, delim))
            .collect();
        let Some(&header) = counts.first() else {
            continue;
        };
        if header == 0 {
            continue;
        }
        let consistent = counts.iter().filter(|&&c| c == header).count();
        let better = match best {
            None => true,
            Some((bc, bh, _)) => consistent > bc || (consistent == bc && header > bh),
        };
        if better {
            best = Some((consistent, header, delim));
        }
    }
    best.map_or(b',', |(_, _, d)| d)
}

/// Splits into lines at CR/LF outside quotes; the last line is dropped when the prefix was cut
/// inside it (it may be incomplete), unless it is the only one.
fn logical_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' | b'\r' if !in_quotes => {
                if i > start {
                    lines.push(&bytes[start..i]);
                }
                start = i + 1;
                if lines.len() >= SAMPLE_LINES {
                    return lines;
                }
            }
            _ => {}
        }
    }
    if start < bytes.len() && lines.is_empty() {
        lines.push(&bytes[start..]);
    }
    lines
}

fn count_outside_quotes(line: &[u8], delim: u8) -> usize {
    let mut in_quotes = false;
    let mut n = 0;
    for &b in line {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == delim && !in_quotes {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_each_candidate() {
        assert_eq!(sniff_delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(sniff_delimiter("a;b;c\n1;2,5;3\n"), b';');
        assert_eq!(sniff_delimiter("a\tb\n1\t2\n"), b'\t');
        assert_eq!(sniff_delimiter("a|b|c\n1|2|3\n"), b'|');
    }

    #[test]
    fn ignores_delimiters_inside_quotes() {
        let text = "id;note\n1;\"a, b, c, d\"\n2;\"x, y\"\n";
        assert_eq!(sniff_delimiter(text), b';');
    }

    #[test]
    fn single_column_defaults_to_comma() {
        assert_eq!(sniff_delimiter("email\na@b.nl\n"), b',');
        assert_eq!(sniff_delimiter(""), b',');
    }
}
