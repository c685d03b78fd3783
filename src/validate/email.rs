//! Email addresses: trimmed, checked with the `email_address` crate (RFC 5321/5322), domain
//! lower-cased. A domain must have a dot: `user@localhost` is no customer address.

use email_address::EmailAddress;
use std::str::FromStr;

/// Normalizes one address, or says why it is not one.
pub fn normalize(raw: &str) -> Result<String, String> {
    // `strip_prefix`, not `trim_start_matches`: a string pattern there sets up a two-way
    // searcher on every call.
    let mut trimmed = raw.trim();
    while let Some(rest) = trimmed.strip_prefix("mailto:") {
        trimmed = rest;
    }
    if let Some(simple) = simple(trimmed) {
        return Ok(simple);
    }
    parsed(trimmed)
}

/// The common address without the parser: an ASCII dot-atom local part and ASCII
/// letter-digit-hyphen labels (at least two), within the parser's length limits. Every
/// address it accepts the parser accepts and [`parsed`] normalizes the same way (a
/// property test holds it to that); anything else goes to the parser.
fn simple(address: &str) -> Option<String> {
    let (local, domain) = address.split_once('@')?;
    if local.is_empty() || local.len() > 64 || domain.len() > 254 {
        return None;
    }
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b);
    if !local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
    {
        return None;
    }
    let mut labels = 0;
    for label in domain.split('.') {
        let b = label.as_bytes();
        let (first, last) = (b.first()?, b.last()?);
        if b.len() > 63
            || !first.is_ascii_alphanumeric()
            || !last.is_ascii_alphanumeric()
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return None;
        }
        labels += 1;
    }
    if labels < 2 {
        return None;
    }
    let mut out = String::with_capacity(address.len());
    out.push_str(local);
    out.push('@');
    let at = out.len();
    out.push_str(domain);
    out[at..].make_ascii_lowercase();
    Some(out)
}

/// Checks and normalizes an address with the `email_address` parser (RFC 5321/5322).
fn parsed(trimmed: &str) -> Result<String, String> {
    let parsed =
        EmailAddress::from_str(trimmed).map_err(|e| format!("not a valid email address: {e}"))?;
    let local = parsed.local_part();
    let domain = parsed.domain();
    if domain.starts_with('[') {
        return Err("not a valid email address: an IP address as domain".to_string());
    }
    if !domain.contains('.') || domain.ends_with('.') || domain.split('.').any(str::is_empty) {
        return Err(format!(
            "not a valid email address: domain {domain:?} is not a full domain name"
        ));
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_are_normalized() {
        assert_eq!(
            normalize("  Jan.Jansen@Example.NL ").as_deref(),
            Ok("Jan.Jansen@example.nl")
        );
        assert_eq!(
            normalize("o'brien+tag@mail.co.uk").as_deref(),
            Ok("o'brien+tag@mail.co.uk")
        );
        assert_eq!(normalize("mailto:a@b.de").as_deref(), Ok("a@b.de"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The fast path never accepts what the parser refuses, and normalizes the same.
        #[test]
        fn the_fast_path_agrees_with_the_parser(s in "[aZ9._+'!@\\-\"<> ]{0,12}(@[aB0.-]{0,10})?") {
            if let Some(fast) = simple(&s) {
                proptest::prop_assert_eq!(parsed(&s), Ok(fast));
            }
        }
    }

    #[test]
    fn the_fast_path_takes_the_common_addresses() {
        for (raw, normalized) in [
            ("Jan.Jansen@Example.NL", "Jan.Jansen@example.nl"),
            ("o'brien+tag@mail.co.uk", "o'brien+tag@mail.co.uk"),
            ("x_y-1@a-b.c0m", "x_y-1@a-b.c0m"),
        ] {
            assert_eq!(simple(raw).as_deref(), Some(normalized));
            assert_eq!(parsed(raw).as_deref(), Ok(normalized));
        }
        for other in [
            "a@b",
            "a..b@c.de",
            ".a@c.de",
            "a@-b.de",
            "a@b_.de",
            "é@x.de",
            "a@b@c.de",
            "\"q\"@x.de",
        ] {
            assert_eq!(simple(other), None, "{other}");
        }
    }

    #[test]
    fn invalid_addresses_are_refused() {
        for bad in [
            "",
            "plainaddress",
            "a@b",
            "@example.com",
            "a@@b.com",
            "a b@c.com",
            "a@[127.0.0.1]",
            "a@b..com",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
