//! Countries: ISO 3166-1 alpha-2/alpha-3 codes or common English names → alpha-2.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use super::phone::{self, Region};

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

/// Most countries a file names before [`with_region`] stops remembering new ones: a file
/// holds a few hundred short spellings at most, so this and [`REMEMBERED_LEN`] only bound the
/// memory a hostile one can take (~0.5 MB).
const REMEMBERED_COUNTRIES: usize = 4096;
/// The longest value [`with_region`] remembers.
const REMEMBERED_LEN: usize = 64;

/// A country's alpha-2 code and the phone region of that code.
pub type CountryRegion = (&'static str, Option<Region>);

thread_local! {
    /// Each checking thread's answers of [`with_region`], by the value as written.
    static KNOWN: RefCell<FxHashMap<Box<str>, Option<CountryRegion>>> =
        RefCell::new(FxHashMap::default());
}

/// [`to_alpha2`] together with the phone region of that code, remembered per thread:
/// a file repeats a few country spellings on every row, and reading one anew costs
/// ~1,000 instructions where a lookup costs ~50.
pub fn with_region(raw: &str) -> Option<CountryRegion> {
    KNOWN.with(|known| {
        if let Some(answer) = known.borrow().get(raw) {
            return *answer;
        }
        let answer = to_alpha2(raw).map(|code| (code, phone::region_from_code(code)));
        let mut known = known.borrow_mut();
        if known.len() < REMEMBERED_COUNTRIES && raw.len() <= REMEMBERED_LEN {
            known.insert(raw.into(), answer);
        }
        answer
    })
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

    #[test]
    fn remembered_answers_are_the_fresh_ones() {
        for raw in ["NL", "nld", "The Netherlands", "UK", "Atlantis", "", "NL"] {
            let expected = to_alpha2(raw).map(|code| (code, phone::region_from_code(code)));
            assert_eq!(with_region(raw), expected, "{raw}");
            assert_eq!(with_region(raw), expected, "{raw}, remembered");
        }
        assert!(with_region("Germany").unwrap().1.is_some());
    }
}
