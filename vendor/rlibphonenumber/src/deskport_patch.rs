//! deskport patch: what deskport's tests need to hold the patched shortcuts of
//! `phonenumberutil_internal.rs` to the regexes they stand in for (PATCHED.md, the fourth
//! change).

pub use crate::phonenumberutil::phonenumberutil_internal::{
    may_hold_extension, strip_leading_plus_chars,
};

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
