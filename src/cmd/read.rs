//! Flags for reading, mapping and checking an input file: shared by `validate`, `import`
//! and `reconcile`.

use super::usage;
use crate::fields::{DateOrder, FieldDefs};
use crate::input::{self, Format, InputOptions, InputPath, DEFAULT_MAX_FIELD_BYTES};
use crate::mapping::Mapping;
use crate::validate::first_seen::Limits as DuplicateLimits;
use crate::validate::{phone, DuplicatePolicy, ExtensionPolicy, Platform, Rules};
use crate::Error;
use clap::Args;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

/// How the input is read, mapped and checked.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Input format; by default from the extension (.jsonl/.ndjson/.json → jsonl, else csv).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Input encoding (utf-8, windows-1252, iso-8859-1, utf-16le, …); by default detected.
    #[arg(long)]
    encoding: Option<String>,
    /// CSV delimiter (, ; | or \t); by default sniffed.
    #[arg(long)]
    delimiter: Option<String>,
    /// TOML mapping file: [columns] "Source column" = "field" | "custom.<name>" | "ignore".
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// The account's custom field definitions (saved by `deskport fields --out`, or a saved
    /// Udesk custom_fields reply): values are checked by type, options named by title, and
    /// columns matched by title. Udesk imports read them from the account when not given.
    #[arg(long, value_name = "FILE")]
    fields: Option<PathBuf>,
    /// A phone number with an extension (+1-363-717-0669x0743): keep it without the
    /// extension (a warning; the extension goes to the clean file's phone_extensions column)
    /// or reject the row.
    #[arg(long, value_enum, default_value_t = ExtensionPolicy::Keep)]
    phone_extensions: ExtensionPolicy,
    /// Read phone numbers in --default-region whatever the row's country column says (when
    /// the country describes the customer, not the phone; validate's summary suggests it).
    #[arg(long, requires = "default_region")]
    phones_ignore_country: bool,
    /// How custom date fields written 02/04/2024 are read: strict (refuse as ambiguous), dmy or mdy.
    #[arg(long, value_enum, default_value_t = DateOrder::Strict)]
    date_order: DateOrder,
    /// Region (ISO code, e.g. NL) for phone numbers without +country code when the row has no country.
    #[arg(long, value_name = "CC")]
    default_region: Option<String>,
    /// Emails and phones already used by an earlier row: warn (keep), error (reject) or off.
    #[arg(long, value_enum, default_value_t = DuplicatePolicy::Warn)]
    duplicates: DuplicatePolicy,
    /// Most keys (ids, emails, phones) the duplicate check keeps in memory, 12 bytes each,
    /// before it spills sorted runs of that many to a temporary directory under TMPDIR.
    /// Default: up to 3,670,016 until the first run (a ~1.2M-row file never touches the
    /// disk), then runs of 458,752.
    #[arg(long, value_name = "KEYS")]
    duplicate_memory_keys: Option<usize>,
    /// Reject rows with a field larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FIELD_BYTES, value_name = "BYTES")]
    max_field_bytes: usize,
    /// Worker threads for checking (default: one per core but one, at least one).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

impl ReadArgs {
    /// What to read and how: `input` is a path, or `-` for standard input.
    pub fn input(&self, input: &str) -> anyhow::Result<InputOptions> {
        let mut options = InputOptions::new(InputPath::parse(input));
        options.format = self.format;
        options.encoding = self
            .encoding
            .as_deref()
            .map(input::parse_encoding)
            .transpose()
            .map_err(Error::from)?;
        options.delimiter = self
            .delimiter
            .as_deref()
            .map(input::parse_delimiter)
            .transpose()
            .map_err(Error::from)?;
        if self.max_field_bytes == 0 {
            return Err(usage("--max-field-bytes must be greater than zero"));
        }
        options.max_field_bytes = self.max_field_bytes;
        Ok(options)
    }

    /// The `--map` file, or the built-in header synonyms, with the `--fields` definitions.
    pub fn mapping(&self) -> anyhow::Result<Mapping> {
        let mapping = match &self.map {
            Some(path) => Mapping::from_file(path).map_err(Error::from)?,
            None => Mapping::builtin(),
        };
        Ok(match &self.fields {
            Some(path) => mapping.with_fields(Arc::new(
                FieldDefs::from_file(path).map_err(|e| usage(e.to_string()))?,
            )),
            None => mapping,
        })
    }

    /// The rule set, with `platform`'s rules when one is given.
    pub fn rules(&self, platform: Option<Platform>) -> anyhow::Result<Rules> {
        let default_region = match &self.default_region {
            Some(code) => Some(phone::region_from_code(code).ok_or_else(|| {
                usage(format!(
                    "--default-region {code:?} is not an ISO 3166 two-letter country code"
                ))
            })?),
            None => None,
        };
        Ok(Rules {
            platform,
            default_region,
            duplicates: self.duplicates,
            duplicate_limits: match self.duplicate_memory_keys {
                Some(keys) => DuplicateLimits::default().with_memory_keys(keys),
                None => DuplicateLimits::default(),
            },
            date_order: self.date_order,
            required_fields: true,
            phone_extensions: self.phone_extensions,
            phones_ignore_country: self.phones_ignore_country,
        })
    }

    /// Checking threads: `--threads`, else one per core but one.
    pub fn threads(&self) -> usize {
        self.threads
            .map_or_else(crate::pipeline::default_check_threads, NonZeroUsize::get)
    }
}
