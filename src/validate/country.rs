//! Countries: ISO 3166-1 alpha-2/alpha-3 codes or common English names → alpha-2.

/// The alpha-2 code (upper case) for a country code or name, if it is one.
pub fn to_alpha2(raw: &str) -> Option<&'static str> {
    let squashed: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if squashed.is_empty() {
        return None;
    }
    let country = match squashed.as_str() {
        "uk" | "england" | "scotland" | "wales" | "britain" => {
            celes::Country::from_alpha2("gb").ok()
        }
        "deutschland" => celes::Country::from_alpha2("de").ok(),
        "nederland" => celes::Country::from_alpha2("nl").ok(),
        "america" => celes::Country::from_alpha2("us").ok(),
        "unitedstatesofamerica" => celes::Country::from_alpha2("us").ok(),
        _ => squashed.parse::<celes::Country>().ok(),
    }?;
    Some(country.alpha2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(to_alpha2("NL"), Some("NL"));
        assert_eq!(to_alpha2("nld"), Some("NL"));
        assert_eq!(to_alpha2("The Netherlands"), Some("NL"));
        assert_eq!(to_alpha2("Netherlands"), Some("NL"));
        assert_eq!(to_alpha2("Germany"), Some("DE"));
        assert_eq!(to_alpha2("United Kingdom"), Some("GB"));
        assert_eq!(to_alpha2("UK"), Some("GB"));
        assert_eq!(to_alpha2("USA"), Some("US"));
        assert_eq!(to_alpha2("United States"), Some("US"));
        assert_eq!(to_alpha2("China"), Some("CN"));
        assert_eq!(to_alpha2("France"), Some("FR"));
        assert_eq!(to_alpha2("Atlantis"), None);
        assert_eq!(to_alpha2(""), None);
    }
}
