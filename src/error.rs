//! The library's error type and the process exit codes.

use crate::input::InputError;
use crate::mapping::MappingError;
use crate::output::OutputError;

/// Process exit codes, documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went well.
    Ok = 0,
    /// Finished, but some rows were rejected or failed.
    RowsRejected = 1,
    /// Usage or configuration error: nothing was done.
    Usage = 2,
    /// The run was aborted (I/O failure, credentials refused, …).
    Aborted = 3,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input could not be opened or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The mapping file is wrong.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// An output file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A flag or setting is wrong.
    #[error("{0}")]
    Usage(String),
    /// The in-file duplicate index could not write or read its spill files (see `TMPDIR`).
    #[error("duplicate check: cannot use its temporary files under {dir}: {0}", dir = std::env::temp_dir().display())]
    DuplicateIndex(#[source] std::io::Error),
    /// A worker thread died; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Input(InputError::Open { .. })
            | Error::Input(InputError::UnknownEncoding(_))
            | Error::Input(InputError::BadDelimiter(_))
            | Error::Mapping(_)
            | Error::Usage(_) => Exit::Usage,
            Error::Input(InputError::Read { .. })
            | Error::Output(_)
            | Error::DuplicateIndex(_)
            | Error::Internal(_) => Exit::Aborted,
        }
    }
}
