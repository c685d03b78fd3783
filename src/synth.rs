//! Synthetic customers: a deterministic generator of messy customer files for benchmarks,
//! tests, demos and the sandbox's seeded data.
//!
//! Mixed phone formats from six countries (~3% bad phones), ~2% bad emails, accented and
//! hyphenated names, quoted notes with commas, quotes and newlines, a custom column, and a
//! few duplicate ids. The same `(rows, seed)` always gives the same bytes.

use std::io::{self, Write};

/// splitmix64: tiny, fast, deterministic.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// One of the items.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    /// True `p` times in 100.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    /// `n` random digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    /// `n` digits, the first from 2 to 5 (a leading digit every region here accepts).
    pub fn lead(&mut self, n: usize) -> String {
        let first = char::from(b'2' + self.below(4) as u8);
        format!("{first}{}", self.digits(n - 1))
    }
}

/// First names the generator draws from.
pub const FIRST: &[&str] = &[
    "Jan",
    "Anne-Marie",
    "José",
    "Zoë",
    "François",
    "Jürgen",
    "Søren",
    "Émilie",
    "Łukasz",
    "Siobhán",
    "O'Neil",
    "Mary",
    "John",
    "Wei",
    "Fatima",
    "Ångström",
    "Renée",
    "Noël",
    "Björn",
    "Ana",
    "Šimon",
    "Chloé",
    "Günther",
];
/// Last names the generator draws from.
pub const LAST: &[&str] = &[
    "Jansen",
    "de Vries",
    "van der Berg",
    "Müller",
    "O'Brien",
    "Smith",
    "García",
    "Dubois",
    "Nowak",
    "Zhang",
    "Kowalski",
    "Lefèvre",
    "Øster",
    "Schäfer",
    "Núñez",
    "Martin",
    "Johnson",
    "Brown",
    "Li",
    "Petit",
];
const DOMAINS: &[&str] = &[
    "example.nl",
    "Mail.com",
    "example.de",
    "example.co.uk",
    "example.fr",
    "EXAMPLE.CN",
    "test.org",
];
const COUNTRIES: &[&str] = &[
    "NL",
    "Netherlands",
    "DE",
    "Germany",
    "GB",
    "United Kingdom",
    "US",
    "USA",
    "FR",
    "France",
    "CN",
    "China",
    "",
];
const TAGS: &[&str] = &["vip", "newsletter", "b2b", "churn-risk", "beta", ""];
const NOTES: &[&str] = &[
    "",
    "",
    "Prefers email",
    "Called on 2024-03-01, asked for \"gold\" plan",
    "Moved office, new address:\nKeizersgracht 1, Amsterdam",
    "Order #1234, #1235, and #1236 refunded",
    "Speaks FR, NL; invoices in EUR",
];

fn phone(rng: &mut Rng, country: &str) -> String {
    let code = match country {
        "Netherlands" => "NL",
        "Germany" => "DE",
        "United Kingdom" => "GB",
        "USA" => "US",
        "France" => "FR",
        "China" => "CN",
        "" => "NL",
        other => other,
    };
    match (code, rng.below(3)) {
        ("NL", 0) => format!("06 {}", rng.lead(8)),
        ("NL", 1) => format!("+31 6 {} {}", rng.lead(4), rng.digits(4)),
        ("NL", _) => format!("020-{}", rng.lead(7)),
        ("DE", 0) => format!("030 {}", rng.lead(7)),
        ("DE", 1) => format!("+49 151 {}", rng.digits(8)),
        ("DE", _) => format!("0171 {}", rng.lead(7)),
        ("GB", 0) => format!("07400 1{}", rng.digits(5)),
        ("GB", 1) => format!("+44 20 7946 {}", rng.digits(4)),
        ("GB", _) => format!("020 7946 {}", rng.digits(4)),
        ("US", 0) => format!("(415) 555-{}", rng.digits(4)),
        ("US", 1) => format!("+1 212-555-{}", rng.digits(4)),
        ("US", _) => format!("202.555.{}", rng.digits(4)),
        ("FR", 0) => format!(
            "06 1{} {} {} {}",
            rng.digits(1),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        ("FR", 1) => format!(
            "+33 1 {} {} {} {}",
            rng.lead(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        ("FR", _) => format!(
            "01.{}.{}.{}.{}",
            rng.lead(2),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2)
        ),
        ("CN", 0) => format!("138 {} {}", rng.lead(4), rng.digits(4)),
        ("CN", 1) => format!("+86 139{}", rng.digits(8)),
        (_, _) => format!("+86 10 {} {}", rng.lead(4), rng.digits(4)),
    }
}

fn bad_phone(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.digits(3),
        1 => format!("+{}", rng.digits(17)),
        2 => "n/a".to_string(),
        _ => format!("06 {} ext. 12", rng.digits(8)),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One generated row, as text cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthRow {
    /// External id (`C00000001`; ~0.1% repeat an earlier id).
    pub id: String,
    /// First name.
    pub first: &'static str,
    /// Last name.
    pub last: &'static str,
    /// Email (~2% invalid).
    pub email: String,
    /// First phone (~3% invalid).
    pub phone1: String,
    /// Second phone (30% of rows), else empty.
    pub phone2: String,
    /// Country code or name, sometimes empty.
    pub country: &'static str,
    /// `normal` or `vip`.
    pub level: &'static str,
    /// Two comma-separated tags.
    pub tags: String,
    /// A note, sometimes with commas, quotes and a newline.
    pub note: &'static str,
    /// A custom field value.
    pub loyalty: &'static str,
}

/// The CSV header matching [`SynthRow`].
pub const CSV_HEADER: &str = "Customer Id,First Name,Last Name,Email,Phone 1,Phone 2,Country,Level,Tags,Notes,custom_loyalty";

/// Generates row number `i` (1-based).
pub fn row(rng: &mut Rng, i: u64) -> SynthRow {
    let id = if i > 10 && rng.percent(1) && rng.percent(10) {
        format!("C{:08}", rng.below(i - 1) + 1)
    } else {
        format!("C{i:08}")
    };
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let country = rng.pick(COUNTRIES);
    let email = if rng.percent(2) {
        format!("{}.{}@", first.to_lowercase(), i)
    } else {
        let local: String = first
            .chars()
            .filter(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_lowercase();
        format!("{local}.{i}@{}", rng.pick(DOMAINS))
    };
    let phone1 = if rng.percent(3) {
        bad_phone(rng)
    } else {
        phone(rng, country)
    };
    let phone2 = if rng.percent(30) {
        phone(rng, country)
    } else {
        String::new()
    };
    let level = if rng.percent(10) { "vip" } else { "normal" };
    let tags = format!("{},{}", rng.pick(TAGS), rng.pick(TAGS));
    let note = rng.pick(NOTES);
    let loyalty = ["bronze", "silver", "gold"][rng.below(3) as usize];
    SynthRow {
        id,
        first,
        last,
        email,
        phone1,
        phone2,
        country,
        level,
        tags,
        note,
        loyalty,
    }
}

/// Writes `rows` generated rows as CSV (with header) or JSONL.
pub fn write(rows: u64, seed: u64, jsonl: bool, out: &mut impl Write) -> io::Result<()> {
    let mut rng = Rng(seed);
    if !jsonl {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for i in 1..=rows {
        let r = row(&mut rng, i);
        if jsonl {
            writeln!(
                out,
                "{{\"external_id\":{},\"firstname\":{},\"lastname\":{},\"email\":{},\"phones\":[{}{}],\"country\":{},\"level\":\"{}\",\"tags\":{},\"description\":{},\"custom_fields\":{{\"loyalty\":\"{}\"}}}}",
                json_string(&r.id),
                json_string(r.first),
                json_string(r.last),
                json_string(&r.email),
                json_string(&r.phone1),
                if r.phone2.is_empty() { String::new() } else { format!(",{}", json_string(&r.phone2)) },
                json_string(r.country),
                r.level,
                json_string(&r.tags),
                json_string(r.note),
                r.loyalty,
            )?;
        } else {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                r.id,
                csv_cell(r.first),
                csv_cell(r.last),
                csv_cell(&r.email),
                csv_cell(&r.phone1),
                csv_cell(&r.phone2),
                csv_cell(r.country),
                r.level,
                csv_cell(&r.tags),
                csv_cell(r.note),
                r.loyalty,
            )?;
        }
    }
    out.flush()
}
