//! One integration-test binary (faster to build and link than one per file). Each module
//! runs the real `deskport` binary, or the library, against fixtures and loopback servers.

mod check;
mod cli;
mod common;
mod export;
mod fields;
mod hostile;
mod import;
mod platform_docs;
mod properties;
mod report;
mod sandbox;
mod validate;
