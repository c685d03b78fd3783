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
