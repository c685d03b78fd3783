//! One module per subcommand: each takes a typed config and returns a typed result; the
//! binary (`main.rs`) turns flags into configs and results into output and exit codes.

pub mod validate;
