//! Phone numbers → E.164, with `rlibphonenumber` (a port of Google's libphonenumber).
//!
//! All phone code lives here so the choice of library is made in one place. We chose
//! rlibphonenumber over the `phonenumber` crate by measurement (see the README): identical
//! results to libphonenumber on a million messy numbers at a fraction of the time.

use crate::model::IssueCode;
use rlibphonenumber::{ParseError, PhoneNumberFormat, ValidationError, PHONE_NUMBER_UTIL};

pub use rlibphonenumber::Region;

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneProblem {
    /// Not a phone number, or not a valid one for its region.
    Invalid,
    /// Fewer digits than any number of the region.
    TooShort,
    /// More digits than any number of the region.
    TooLong,
    /// A length between the shortest and longest that matches no number of the region.
    InvalidLength,
    /// `+` followed by an unknown country calling code.
    CountryCode,
    /// A national number with no region to read it in.
    NoRegion,
    /// The number carries an extension, which E.164 cannot hold.
    Extension(String),
}

impl PhoneProblem {
    /// The issue code for this problem.
    pub fn code(&self) -> IssueCode {
        match self {
            PhoneProblem::Invalid => IssueCode::PhoneInvalid,
            PhoneProblem::TooShort => IssueCode::PhoneTooShort,
            PhoneProblem::TooLong => IssueCode::PhoneTooLong,
            PhoneProblem::InvalidLength => IssueCode::PhoneInvalidLength,
            PhoneProblem::CountryCode => IssueCode::PhoneCountryCode,
            PhoneProblem::NoRegion => IssueCode::PhoneNoRegion,
            PhoneProblem::Extension(_) => IssueCode::PhoneExtension,
        }
    }

    /// A human explanation.
    pub fn message(&self, region: Option<Region>) -> String {
        let region_text = region.map_or_else(
            || "its region".to_string(),
            |r| r.as_region_str().to_string(),
        );
        match self {
            PhoneProblem::Invalid => format!("not a valid phone number for {region_text}"),
            PhoneProblem::TooShort => format!("too few digits for a phone number of {region_text}"),
            PhoneProblem::TooLong => format!("too many digits for a phone number of {region_text}"),
            PhoneProblem::InvalidLength => format!("no phone number of {region_text} has this many digits"),
            PhoneProblem::CountryCode => "unknown country calling code after +".to_string(),
            PhoneProblem::NoRegion => {
                "national number with no country to read it in: add a country column, --default-region, or a +country code".to_string()
            }
            PhoneProblem::Extension(ext) => {
                format!("has extension {ext}, which the platforms cannot store (E.164 has no extensions)")
            }
        }
    }
}

/// Parses a region code such as `NL`; `None` for codes that are no country.
pub fn region_from_code(code: &str) -> Option<Region> {
    let code = code.trim();
    if code.len() != 2 || celes::Country::from_alpha2(code).is_err() {
        return None;
    }
    Region::from_code(&code.to_ascii_uppercase()).ok()
}

/// Normalizes one phone number to E.164 (`+31612345678`); a number with an extension is
/// refused ([`PhoneProblem::Extension`]).
pub fn to_e164(raw: &str, region: Option<Region>) -> Result<String, PhoneProblem> {
    match parse(raw, region)? {
        (e164, None) => Ok(e164),
        (_, Some(ext)) => Err(PhoneProblem::Extension(ext)),
    }
}

/// Normalizes one phone number to E.164 and gives its extension apart (`+1 363-717-0669
/// x0743` → `+13637170669`, `0743`); the number itself must be valid.
///
/// A number that is not valid as written and starts with `00` is read once more with the
/// `00` as the international prefix (ITU's recommended one, `001-201-555-0123` → `+1…`),
/// since no national number starts so: this reads it under regions whose own prefix is
/// another (`011` in North America) or with no region at all. A number valid as written
/// is never read the other way.
pub fn parse(raw: &str, region: Option<Region>) -> Result<(String, Option<String>), PhoneProblem> {
    let raw = raw.trim();
    let as_written = parse_as_written(raw, region);
    if as_written.is_err() {
        if let Some(rest) = raw.strip_prefix("00").filter(|r| !r.starts_with('0')) {
            if let Ok(parsed) = parse_as_written(&format!("+{rest}"), region) {
                return Ok(parsed);
            }
        }
    }
    as_written
}

fn parse_as_written(
    raw: &str,
    region: Option<Region>,
) -> Result<(String, Option<String>), PhoneProblem> {
    let international = raw.starts_with('+') || raw.starts_with("00");
    let number = PHONE_NUMBER_UTIL.parse(raw, region).map_err(|e| match e {
        ParseError::InvalidCountryCode if region.is_none() && !international => {
            PhoneProblem::NoRegion
        }
        ParseError::InvalidCountryCode => PhoneProblem::CountryCode,
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => PhoneProblem::TooShort,
        ParseError::TooLongNsn => PhoneProblem::TooLong,
        ParseError::NotANumber(_) => PhoneProblem::Invalid,
    })?;
    let extension = number
        .extension
        .as_deref()
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    match number.is_possible_with_reason() {
        Ok(_) => {}
        Err(ValidationError::TooShort) => return Err(PhoneProblem::TooShort),
        Err(ValidationError::TooLong) => return Err(PhoneProblem::TooLong),
        Err(ValidationError::InvalidCountryCode) => return Err(PhoneProblem::CountryCode),
        Err(_) => return Err(PhoneProblem::InvalidLength),
    }
    if !number.is_valid() {
        return Err(PhoneProblem::Invalid);
    }
    Ok((
        number.format_as(PhoneNumberFormat::E164).into_owned(),
        extension,
    ))
}

/// The region a valid international number (`+…`) belongs to.
pub fn region_of(international: &str) -> Option<Region> {
    let number = PHONE_NUMBER_UTIL.parse(international, None).ok()?;
    number
        .is_valid()
        .then(|| number.get_region_code())
        .flatten()
}

/// The national forms of a valid E.164 number, for platforms that may hold it so: the
/// national format's digits (with a trunk prefix, `0612345678`) and the national significant
/// number (`612345678`); the same once when they agree (`+8613000000001` → `13000000001`).
pub fn national_forms(e164: &str) -> Vec<String> {
    let Ok(number) = PHONE_NUMBER_UTIL.parse(e164, None) else {
        return Vec::new();
    };
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let national = digits(&number.format_as(PhoneNumberFormat::National));
    let international = number.format_as(PhoneNumberFormat::International);
    let country = international
        .trim_start_matches('+')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    let significant = digits(e164)
        .strip_prefix(country)
        .map(str::to_string)
        .unwrap_or_default();
    let mut forms = Vec::new();
    for form in [national, significant] {
        if !form.is_empty() && !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Whether `value` is exactly a valid phone number in E.164 form (`+31612345678`).
pub fn is_e164(value: &str) -> bool {
    value.len() > 2
        && value.starts_with('+')
        && value[1..].bytes().all(|b| b.is_ascii_digit())
        && to_e164(value, None).is_ok_and(|e164| e164 == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_forms_with_and_without_the_trunk_prefix() {
        assert_eq!(national_forms("+31612345678"), ["0612345678", "612345678"]);
        assert_eq!(national_forms("+8613000000001"), ["13000000001"]);
        assert!(national_forms("not a number").is_empty());
    }

    fn e164(raw: &str, region: &str) -> Result<String, PhoneProblem> {
        to_e164(raw, region_from_code(region))
    }

    #[test]
    fn a_00_prefix_is_read_as_international_where_the_region_dials_out_otherwise() {
        let us = region_from_code("US");
        assert_eq!(
            parse("001-201-555-0123x77", us),
            Ok(("+12015550123".into(), Some("77".into())))
        );
        assert_eq!(
            parse("001 201 555 0123", None),
            Ok(("+12015550123".into(), None))
        );
        assert_eq!(
            parse("0031 6 12345678", us),
            Ok(("+31612345678".into(), None))
        );
        // Where 00 is the region's own prefix nothing changes; a valid national reading wins.
        assert_eq!(
            parse("0031 6 12345678", region_from_code("DE")),
            Ok(("+31612345678".into(), None))
        );
        assert_eq!(
            parse("0612345678", region_from_code("NL")),
            Ok(("+31612345678".into(), None))
        );
        assert!(parse("000 123", us).is_err());
    }

    #[test]
    fn national_and_international_formats() {
        let cases = [
            ("NL", "06 12345678", "+31612345678"),
            ("NL", "+31 (0)6-1234 5678", "+31612345678"),
            ("NL", "0031 20 123 4567", "+31201234567"),
            ("DE", "030 1234567", "+49301234567"),
            ("DE", "+49 1512 3456789", "+4915123456789"),
            ("GB", "020 7946 0958", "+442079460958"),
            ("GB", "+44 7911 123456", "+447911123456"),
            ("US", "(202) 555-0173", "+12025550173"),
            ("US", "+1 415-555-2671", "+14155552671"),
            ("FR", "01 23 45 67 89", "+33123456789"),
            ("FR", "+33 6 12 34 56 78", "+33612345678"),
            ("CN", "138 0013 8000", "+8613800138000"),
            ("CN", "+86 10 6552 9988", "+861065529988"),
        ];
        for (region, raw, want) in cases {
            assert_eq!(e164(raw, region).as_deref(), Ok(want), "{raw} in {region}");
        }
    }

    #[test]
    fn international_numbers_need_no_region() {
        assert_eq!(to_e164("+31612345678", None).as_deref(), Ok("+31612345678"));
    }

    #[test]
    fn problems_are_told_apart() {
        assert_eq!(e164("06 12", "NL"), Err(PhoneProblem::TooShort));
        assert_eq!(e164("06 1234567890123", "NL"), Err(PhoneProblem::TooLong));
        assert_eq!(e164("not a phone", "NL"), Err(PhoneProblem::Invalid));
        assert_eq!(to_e164("0612345678", None), Err(PhoneProblem::NoRegion));
        assert_eq!(
            to_e164("+999 1234 5678", None),
            Err(PhoneProblem::CountryCode)
        );
        assert!(
            matches!(e164("+1 202-555-0173 ext. 12", "US"), Err(PhoneProblem::Extension(e)) if e == "12")
        );
        assert_eq!(
            parse("+1-202-555-0173x0743", region_from_code("US")),
            Ok(("+12025550173".to_string(), Some("0743".to_string())))
        );
        assert!(
            parse("+1-555-0173x0743", region_from_code("US")).is_err(),
            "the number must be valid without its extension"
        );
    }

    #[test]
    fn region_codes() {
        assert!(region_from_code("nl").is_some());
        assert!(region_from_code("XX").is_none());
        assert!(region_from_code("NLD").is_none());
    }

    #[test]
    fn e164_is_recognised_exactly() {
        assert!(is_e164("+31612345678"));
        assert!(!is_e164("+31 6 12345678"));
        assert!(!is_e164("+3161234"));
        assert!(!is_e164("0612345678"));
        assert!(!is_e164("+"));
        assert!(!is_e164("-2+3"));
    }

    /// The vendored copy matches national numbers with lazy DFAs (PATCHED.md, the third
    /// change): every number pattern of every region, on its examples, their prefixes, one
    /// digit more and each digit changed, gives the regex's answer, whole-number and prefix;
    /// and on the same numbers its validity check (the fifth change) agrees with the type.
    #[test]
    fn the_patched_pattern_matching_answers_as_the_regexes_do() {
        use rlibphonenumber::interfaces::AsOriginal;
        let mut checked = 0u64;
        for region in PHONE_NUMBER_UTIL.get_supported_regions() {
            let m = PHONE_NUMBER_UTIL
                .as_original()
                .get_metadata_for_region(region)
                .expect("metadata of a supported region");
            let descs = [
                &m.general_desc,
                &m.fixed_line,
                &m.mobile,
                &m.toll_free,
                &m.premium_rate,
                &m.shared_cost,
                &m.personal_number,
                &m.voip,
                &m.pager,
                &m.uan,
                &m.voicemail,
                &m.no_international_dialling,
            ];
            let mut samples = vec![String::new()];
            for example in descs
                .iter()
                .filter_map(|d| d.original.example_number.as_ref())
            {
                for end in 1..=example.len() {
                    samples.push(example[..end].to_string());
                }
                samples.push(format!("{example}0"));
                for at in 0..example.len() {
                    for digit in b'0'..=b'9' {
                        let mut bytes = example.clone().into_bytes();
                        bytes[at] = digit;
                        samples.push(String::from_utf8(bytes).expect("digits"));
                    }
                }
            }
            // The sixth change: the national prefix's DFA answers as its regex does, on the
            // samples with and without the region's prefix in front.
            let prefix = m.national_prefix_for_parsing();
            let prefix_regex = prefix.anchor_start().expect("compiles");
            let national = m.original.national_prefix().to_string();
            for sample in &samples {
                for candidate in [
                    sample.clone(),
                    format!("{national}{sample}"),
                    format!("0{sample}"),
                ] {
                    assert_eq!(
                        prefix.matches_start(&candidate).expect("compiles"),
                        prefix_regex.is_some_and(|r| r.is_match(&candidate)),
                        "{region:?} national prefix on {candidate:?}"
                    );
                }
            }
            // The fifth change: validity asked in another order answers as the type does.
            let util = PHONE_NUMBER_UTIL.as_original();
            for sample in &samples {
                let known = util.get_number_type_helper(sample, m).expect("compiles")
                    != rlibphonenumber::PhoneNumberType::Unknown;
                assert_eq!(
                    util.has_known_type(sample, m).expect("compiles"),
                    known,
                    "{region:?} {sample:?}"
                );
            }
            for desc in descs {
                let pattern = desc.national_number_pattern();
                let full = pattern.anchor_full().expect("compiles");
                let start = pattern.anchor_start().expect("compiles");
                for sample in &samples {
                    assert_eq!(
                        pattern.matches_full(sample).expect("compiles"),
                        full.is_some_and(|r| r.is_match(sample)),
                        "{region:?} {:?} on {sample:?}",
                        pattern.pattern_base
                    );
                    assert_eq!(
                        pattern.matches_start(sample).expect("compiles"),
                        start.is_some_and(|r| r.is_match(sample)),
                        "{region:?} {:?} prefix of {sample:?}",
                        pattern.pattern_base
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    /// Every region's example numbers (national and international format) normalize to their
    /// E.164 form, and every region's invalid example is refused: this walks all of the
    /// metadata patterns, including our patch that compiles them without Unicode classes
    /// (vendor/rlibphonenumber/PATCHED.md).
    #[test]
    fn every_region_reads_its_own_examples() {
        use rlibphonenumber::PhoneNumberType;
        let mut checked = 0;
        for region in PHONE_NUMBER_UTIL.get_supported_regions() {
            for kind in [
                PhoneNumberType::FixedLine,
                PhoneNumberType::Mobile,
                PhoneNumberType::TollFree,
            ] {
                let Ok(example) =
                    PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(region, kind)
                else {
                    continue;
                };
                let want = example.format_as(PhoneNumberFormat::E164).into_owned();
                let national = example.format_as(PhoneNumberFormat::National).into_owned();
                let international = example
                    .format_as(PhoneNumberFormat::International)
                    .into_owned();
                assert_eq!(
                    to_e164(&national, Some(region)).as_ref(),
                    Ok(&want),
                    "{national} in {region:?}"
                );
                assert_eq!(to_e164(&international, None).as_ref(), Ok(&want));
                checked += 1;
            }
            if let Ok(invalid) = PHONE_NUMBER_UTIL.get_invalid_example_number(region) {
                let text = invalid.format_as(PhoneNumberFormat::E164).into_owned();
                assert!(to_e164(&text, None).is_err(), "{text} ({region:?})");
            }
        }
        assert!(checked > 400, "only {checked} examples");
    }

    #[test]
    fn digits_of_other_scripts_are_read() {
        // Full-width and Arabic-Indic digits are normalized before the patterns see them.
        assert_eq!(
            e164("０６ １２３４５６７８", "NL").as_deref(),
            Ok("+31612345678")
        );
        assert_eq!(e164("٠٦١٢٣٤٥٦٧٨", "NL").as_deref(), Ok("+31612345678"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8192))]
        /// The vendored copy's shortcuts (PATCHED.md, the fourth change) answer as the
        /// regexes they replace: the extension search is skipped only where `extn_pattern`
        /// cannot match, and the plus strip is `^[+＋]+`.
        #[test]
        fn the_patched_shortcuts_answer_as_the_regexes_do(
            number in "[+\u{FF0B}]{0,2}[0-9 ()./-]{0,12}([ .:\t\u{00A0},-]|ext|EXT|x|X|#|~|int|Int|anexo|ext\u{00F3}n|\u{0434}\u{043E}\u{0431}|;ext=|;|,,|\u{FF58}|\u{FF45}\u{FF58}\u{FF54}|\u{FF49}\u{FF4E}\u{FF54}|\u{FF03}|\u{FF5E}|[a-z]){0,3}[0-9]{0,7}#?",
        ) {
            use rlibphonenumber::deskport_patch as patch;
            thread_local! {
                static EXTN: regex::Regex = regex::Regex::new(&patch::extn_pattern_source()).unwrap();
                static PLUS: regex::Regex =
                    regex::Regex::new(&patch::plus_chars_pattern_start_source()).unwrap();
            }
            if !patch::may_hold_extension(&number) {
                proptest::prop_assert!(!EXTN.with(|r| r.is_match(&number)));
            }
            let by_regex = PLUS.with(|r| r.find(&number).map(|m| &number[m.end()..]));
            proptest::prop_assert_eq!(patch::strip_leading_plus_chars(&number), by_regex);
        }

        /// The seventh change: the second-number search is skipped only where its regex
        /// cannot match, and ASCII digits are normalized as the Unicode path does.
        #[test]
        fn the_second_number_and_digit_shortcuts_answer_as_before(
            number in "[0-9 +()./\\\\xX-]{0,16}|[0-9 +٠-٩０-９/x-]{0,12}",
        ) {
            use rlibphonenumber::deskport_patch as patch;
            thread_local! {
                static SECOND: regex::Regex = regex::Regex::new(patch::second_number_start_source()).unwrap();
            }
            if !patch::may_hold_second_number(&number) {
                proptest::prop_assert!(!SECOND.with(|r| r.is_match(&number)));
            }
            proptest::prop_assert_eq!(
                patch::normalize_digits_only_str(&number),
                patch::normalize_digits_only_by_chars(&number)
            );
        }
    }

    /// The shortcut's answer on numbers as files hold them, and the regex agrees on the
    /// extensions it finds.
    #[test]
    fn the_extension_shortcut_skips_only_plain_numbers() {
        use rlibphonenumber::deskport_patch as patch;
        let extn = regex::Regex::new(&patch::extn_pattern_source()).unwrap();
        for plain in [
            "+31 6 12345678",
            "(020) 555-0173",
            "06.12.34.56.78",
            "0031/612345678",
            "555-0173#",
        ] {
            let skipped = !patch::may_hold_extension(plain);
            assert_eq!(skipped, !plain.contains('#'), "{plain}");
            assert_eq!(extn.is_match(plain), plain.contains('#'), "{plain}");
        }
        for with_extension in [
            "+1 202 555 0173 ext. 12",
            "0612345678 x 3",
            "020 555;ext=1",
            "555,,12",
            "12 доб 3",
        ] {
            assert!(
                patch::may_hold_extension(with_extension),
                "{with_extension}"
            );
            assert!(extn.is_match(with_extension), "{with_extension}");
        }
    }
}
