//! deskport moves customer bases in and out of helpdesk platforms (Omnidesk API v2,
//! Udesk open API v1).
//!
//! # Brief overview
//!
//! A row flows through one module per stage:
//!
//! ```text
//! bytes ─► input (decode, CSV/JSONL) ─► RawRow ─► mapping ─► validate (threads) ─► Customer | rejected
//!                                                                  └─► output (clean, rejects) + report
//! ```
//!
//! The library's stages never print; [`cmd`] is the command line (the only module that
//! prints and uses `anyhow`), and [`platform`] holds the clients.
//!
//! ```
//! use deskport::mapping::Mapping;
//! use deskport::model::RawRow;
//! use deskport::validate::{normalize, phone, Rules};
//!
//! let columns = vec!["Customer Id".to_string(), "Phone".to_string()];
//! let mapping = Mapping::builtin().resolve(&columns);
//! let row = RawRow { line: 2, record: csv::StringRecord::from(vec!["C-1", "06 12345678"]), read_issue: None, raw_text: None };
//! let rules = Rules { default_region: phone::region_from_code("NL"), ..Rules::default() };
//! let (customer, issues) = normalize(&row, &mapping, &rules);
//! assert!(issues.is_empty());
//! assert_eq!(customer.phones, vec!["+31612345678"]);
//! ```

pub mod check;
pub mod cmd;
pub mod delete;
pub mod error;
pub mod export;
pub mod fields;
pub mod import;
pub mod input;
pub mod mapping;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod platform;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod sandbox;
pub mod synth;
pub mod validate;

pub use error::{Error, Exit};
