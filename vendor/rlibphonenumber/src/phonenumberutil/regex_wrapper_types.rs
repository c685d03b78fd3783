use std::sync::OnceLock;

use crate::{
    NumberFormat, PhoneMetadata, PhoneNumberDesc, errors::InvalidRegexError, regexp::Regex,
};

#[derive(Debug, Clone)]
pub struct RegexTriplets {
    pub pattern_base: Option<String>,

    pub original: OnceLock<Result<Option<Regex>, crate::regexp::Error>>,
    pub anchor_start: OnceLock<Result<Option<Regex>, crate::regexp::Error>>,
    pub anchor_full: OnceLock<Result<Option<Regex>, crate::regexp::Error>>,
    /// deskport patch: the `anchor_start` and `anchor_full` patterns as lazy DFAs, for
    /// [`RegexTriplets::matches_start`] and [`RegexTriplets::matches_full`]. Boxed: every
    /// region's metadata holds thousands of these, and a DFA is ~1 KB inline.
    #[cfg(feature = "regex")]
    dfa_start: OnceLock<Option<Box<Dfa>>>,
    #[cfg(feature = "regex")]
    dfa_full: OnceLock<Option<Box<Dfa>>>,
}

/// deskport patch: a lazy DFA of an ASCII metadata pattern (`^(?:…)` or `^(?:…)$`), and
/// its number among them, which indexes each thread's caches ([`CACHES`]). Matching walks
/// one cached transition per byte with no per-call setup, where `Regex::is_match` on a
/// ten-digit number spends most of its time choosing an engine and fetching a cache. Byte
/// semantics are those of the ASCII regex that [`compile`] builds.
#[cfg(feature = "regex")]
#[derive(Debug, Clone)]
struct Dfa {
    dfa: regex_automata::hybrid::dfa::DFA,
    id: usize,
}

#[cfg(feature = "regex")]
static DFAS_BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(feature = "regex")]
thread_local! {
    /// This thread's lazy-DFA caches, by [`Dfa::id`], made on first use.
    static CACHES: std::cell::RefCell<Vec<Option<Box<regex_automata::hybrid::dfa::Cache>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Builds the DFA of an ASCII pattern, or `None` (then the regex is used): a pattern that
/// is not ASCII or that needs Unicode mode.
#[cfg(feature = "regex")]
fn build_dfa(pattern: &str) -> Option<Box<Dfa>> {
    use regex_automata::{hybrid::dfa, nfa::thompson, util::syntax};
    if !pattern.is_ascii() || regex::RegexBuilder::new(pattern).unicode(false).build().is_err() {
        return None;
    }
    let dfa = dfa::DFA::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build(pattern)
        .ok()?;
    let id = DFAS_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(Box::new(Dfa { dfa, id }))
}

/// Whether the DFA matches at the start of `haystack`; `None` when it gave up (a quit
/// state or a cache it could not use), and the regex is asked.
#[cfg(feature = "regex")]
fn dfa_matches(d: &Dfa, haystack: &str) -> Option<bool> {
    use regex_automata::{util::start, Anchored};
    CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        if caches.len() <= d.id {
            caches.resize_with(d.id + 1, || None);
        }
        let cache = caches[d.id].get_or_insert_with(|| Box::new(d.dfa.create_cache()));
        let dfa = &d.dfa;
        let mut state = dfa
            .start_state(cache, &start::Config::new().anchored(Anchored::Yes))
            .ok()?;
        for &byte in haystack.as_bytes() {
            state = dfa.next_state(cache, state, byte).ok()?;
            if state.is_tagged() {
                // Matches are reported one byte late: a match state here means a match
                // ended before this byte (only `^(?:…)` patterns end before the haystack).
                if state.is_match() {
                    return Some(true);
                }
                if state.is_dead() {
                    return Some(false);
                }
                if state.is_quit() || state.is_unknown() {
                    return None;
                }
            }
        }
        Some(dfa.next_eoi_state(cache, state).ok()?.is_match())
    })
}

const MIN_LENGTH_FOR_WRAPPED_PATTERN: usize = 6; // ^(?:)$

/// Compiles a metadata pattern. Metadata patterns are ASCII and are matched against numbers
/// whose digits are already normalized to ASCII, so an ASCII pattern is compiled without
/// Unicode classes: `\d` is `[0-9]` instead of every Unicode digit, which keeps each compiled
/// automaton (and each thread's matching cache) many times smaller. A pattern that needs
/// Unicode mode (or is not ASCII) is compiled as before.
fn compile(pattern: &str) -> Result<Regex, crate::regexp::Error> {
    #[cfg(feature = "regex")]
    if pattern.is_ascii() {
        if let Ok(regex) = regex::RegexBuilder::new(pattern).unicode(false).build() {
            return Ok(regex);
        }
    }
    Regex::new(pattern)
}

impl RegexTriplets {
    pub fn new(pattern_base: Option<String>) -> Self {
        Self {
            pattern_base,
            original: OnceLock::new(),
            anchor_start: OnceLock::new(),
            anchor_full: OnceLock::new(),
            #[cfg(feature = "regex")]
            dfa_start: OnceLock::new(),
            #[cfg(feature = "regex")]
            dfa_full: OnceLock::new(),
        }
    }

    /// deskport patch: whether `anchor_start()`'s regex matches `haystack` (`false` when
    /// there is no pattern), through the pattern's lazy DFA when it has one.
    pub fn matches_start(&self, haystack: &str) -> Result<bool, InvalidRegexError> {
        #[cfg(feature = "regex")]
        if let Some(matched) = self.dfa_answer(&self.dfa_start, false, haystack) {
            return Ok(matched);
        }
        Ok(self.anchor_start()?.is_some_and(|r| r.is_match(haystack)))
    }

    /// deskport patch: whether `anchor_full()`'s regex matches `haystack` (`false` when there
    /// is no pattern), through the pattern's lazy DFA when it has one.
    pub fn matches_full(&self, haystack: &str) -> Result<bool, InvalidRegexError> {
        #[cfg(feature = "regex")]
        if let Some(matched) = self.dfa_answer(&self.dfa_full, true, haystack) {
            return Ok(matched);
        }
        Ok(self.anchor_full()?.is_some_and(|r| r.is_match(haystack)))
    }

    /// The DFA's answer, or `None` to ask the regex: no DFA for this pattern (none, the
    /// empty one, not ASCII) or one that gave up.
    #[cfg(feature = "regex")]
    fn dfa_answer(&self, cell: &OnceLock<Option<Box<Dfa>>>, full: bool, haystack: &str) -> Option<bool> {
        let dfa = cell.get_or_init(|| {
            let base = self.pattern_base.as_ref()?;
            if base.len() < MIN_LENGTH_FOR_WRAPPED_PATTERN {
                return None;
            }
            // The text `anchor_full` / `anchor_start` compile.
            build_dfa(if full { base } else { &base[..base.len() - 1] })
        });
        dfa_matches(dfa.as_ref()?, haystack)
    }

    pub fn original_base(&self) -> &str {
        self.pattern_base
            .as_ref()
            .map(|base| {
                if base.len() >= MIN_LENGTH_FOR_WRAPPED_PATTERN {
                    &base[4..base.len() - 2]
                } else {
                    ""
                }
            })
            .unwrap_or_default()
    }

    pub fn new_vec(vec: Vec<String>) -> Vec<Self> {
        vec.into_iter().map(|s| Self::new(Some(s))).collect()
    }

    pub fn original(&self) -> Result<Option<&Regex>, InvalidRegexError> {
        self.original
            .get_or_init(|| {
                self.pattern_base
                    .as_ref()
                    .map(|base| {
                        if base.len() >= MIN_LENGTH_FOR_WRAPPED_PATTERN {
                            compile(&base[1..base.len() - 1])
                        } else {
                            Regex::new("")
                        }
                    })
                    .transpose()
            })
            .as_ref()
            .map(|v| v.as_ref())
            .map_err(|e| e.clone().into())
    }

    pub fn anchor_start(&self) -> Result<Option<&Regex>, InvalidRegexError> {
        self.anchor_start
            .get_or_init(|| {
                self.pattern_base
                    .as_ref()
                    .map(|base| {
                        if base.len() >= MIN_LENGTH_FOR_WRAPPED_PATTERN {
                            compile(&base[..base.len() - 1])
                        } else {
                            Regex::new("")
                        }
                    })
                    .transpose()
            })
            .as_ref()
            .map(|v| v.as_ref())
            .map_err(|e| e.clone().into())
    }

    pub fn anchor_full(&self) -> Result<Option<&Regex>, InvalidRegexError> {
        self.anchor_full
            .get_or_init(|| {
                self.pattern_base
                    .as_ref()
                    .map(|base| {
                        if base.len() >= MIN_LENGTH_FOR_WRAPPED_PATTERN {
                            compile(base)
                        } else {
                            Regex::new("")
                        }
                    })
                    .transpose()
            })
            .as_ref()
            .map(|v| v.as_ref())
            .map_err(|e| e.clone().into())
    }
}

// Tf i was writing it for, but just leave it here...
macro_rules! wrapper {
    (struct $name:ident wraps $wraps:ty{
        $(Reg:
        $($field:ident <- $field_setter:ident),+

        $(Vec:
        $($vec_field:ident),+
        )?)?

        $(Extra: $(
            $($extra:ident),*: $extra_type:ty | $extra_name:ident | { $extra_convert:expr }
        )*
        )?
    }) => {
        #[derive(Debug, Clone)]
        #[allow(dead_code)]
        pub struct $name {
            $(
            $($field: RegexTriplets,)*
            $($($vec_field: Vec<RegexTriplets>,)*)?
            )?
            $($($(pub $extra: $extra_type,)*)*)?
            pub original: $wraps,
        }

        $(
        impl $name {
            $($(
            pub fn $vec_field(&self) -> &Vec<RegexTriplets> {
                    &self.$vec_field
            }
            )*)?
            $(
            pub fn $field(&self) -> &RegexTriplets {
                &self.$field
            }
            )*
            $(
            #[allow(dead_code)]
            pub fn $field_setter(&mut self, value: RegexTriplets) {
                self.$field = value;
            }
            )*
        }
        )?

        impl From<$wraps> for $name {
            #[allow(unused_mut, deprecated)]
            fn from(mut value: $wraps) -> Self {
                Self {
                    $(
                    $($field: RegexTriplets::new(::std::mem::take(&mut value.$field).into()),)*
                    $($($vec_field: RegexTriplets::new_vec(::std::mem::take(&mut value.$vec_field)),)*)?
                    )?
                    $($($(
                        $extra: {
                            let $extra_name = ::std::mem::take(&mut value.$extra);
                            $extra_convert
                        },
                    )*)*)?
                    original: value,
                }
            }
        }

    };
}

wrapper!(struct NumberFormatWrapper wraps NumberFormat {
Reg:
    pattern <- set_pattern
Vec:
    leading_digits_pattern
});

wrapper!(struct PhoneNumberDescWrapper wraps PhoneNumberDesc {
Reg:
    national_number_pattern <- set_national_number_pattern
});

wrapper!(struct PhoneMetadataWrapper wraps PhoneMetadata {
Reg:
    leading_digits <- set_leading_digits,
    international_prefix <- set_international_prefix,
    national_prefix_for_parsing <- set_national_prefix_for_parsing
Extra:
    number_format, intl_number_format: Vec<NumberFormatWrapper> | format | {
        format.into_iter().map(| v | v.into()).collect()
    }
    general_desc, fixed_line, mobile, toll_free, premium_rate,
    shared_cost, personal_number,
    voip, pager, uan, emergency,
    voicemail, short_code, standard_rate,
    carrier_specific, sms_services,
    no_international_dialling: PhoneNumberDescWrapper | desc | {
        desc.unwrap_or_default().into()
    }
});
