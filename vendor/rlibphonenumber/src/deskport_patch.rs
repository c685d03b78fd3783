//! deskport patch: what deskport's tests need to hold the patched shortcuts of
//! `phonenumberutil_internal.rs` to the regexes and functions they stand in for (PATCHED.md,
//! the fourth and seventh changes).

pub use crate::phonenumberutil::phonenumberutil_internal::{
    may_hold_extension, may_hold_second_number, normalize_digits_only_by_chars,
    normalize_digits_only_str, strip_leading_plus_chars,
};

/// The source of `capture_up_to_second_number_start_pattern`.
pub fn second_number_start_source() -> &'static str {
    crate::phonenumberutil::helper_constants::CAPTURE_UP_TO_SECOND_NUMBER_START
}

/// The source of `extn_pattern`, the regex that `maybe_strip_extension` searches.
pub fn extn_pattern_source() -> String {
    format!(
        "(?i)(?:{})$",
        crate::phonenumberutil::helper_functions::create_extn_pattern(true)
    )
}

/// The source of `plus_chars_pattern_start`.
pub fn plus_chars_pattern_start_source() -> String {
    format!(
        "^[{}]+",
        crate::phonenumberutil::helper_constants::PLUS_CHARS
    )
}
