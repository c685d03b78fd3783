//! The export checkpoint: what a resumed export needs, written atomically (temp file, fsync,
//! rename, fsync of the directory) after the rows it counts are fsynced in `OUT.partial`.
//!
//! It holds no credentials. The ids already written are not stored; they are rebuilt from
//! the partial file (its first column, or each JSONL line's `id`).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint format version; a different one is refused.
pub const VERSION: u32 = 1;

/// What the export is of: a resume must ask for exactly the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// `omnidesk` or `udesk`.
    pub target: String,
    /// The platform origin (`sandbox` for the built-in one).
    pub origin: String,
    /// `csv` or `jsonl`.
    pub format: String,
    /// How the platform is read: `offset` (Omnidesk), `scroll` or `list` (Udesk).
    pub source: String,
    /// Search keyword.
    pub query: Option<String>,
    /// Udesk customer filter.
    pub filter_id: Option<u64>,
    /// Omnidesk brand.
    pub brand_id: Option<u64>,
    /// Omnidesk: full records fetched one by one.
    pub details: bool,
    /// The formula guard is off.
    pub raw: bool,
    /// Select fields are written by option title (`--labels`), not id.
    #[serde(default)]
    pub labels: bool,
    /// Custom columns are headed by the field's title (`--headers titles`), not `custom_<key>`.
    #[serde(default)]
    pub header_titles: bool,
    /// `--split-rows`: customers per part file.
    #[serde(default)]
    pub split_rows: Option<u64>,
}

/// Where the next page comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cursor {
    /// Omnidesk: the next `itemStart`.
    Offset {
        /// The offset of the next page.
        next: u64,
    },
    /// Udesk scroll: the id that fetches the next batch, and when it was issued.
    Scroll {
        /// The scroll id (none before the first call).
        scroll_id: Option<String>,
        /// Unix milliseconds when the id was received.
        issued_at_ms: u64,
    },
    /// Udesk list: the next page number.
    Page {
        /// The next page (from 1).
        next: u64,
    },
}

/// A checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// What is exported.
    pub params: Params,
    /// The custom field columns of the CSV (fixed by the first page).
    pub custom_columns: Vec<String>,
    /// Of those, the ones kept only because the previous snapshot had them.
    #[serde(default)]
    pub kept_columns: Vec<String>,
    /// `--split-rows`: where parts after the first start in `OUT.partial` (bytes).
    #[serde(default)]
    pub part_starts: Vec<u64>,
    /// Where to continue.
    pub cursor: Cursor,
    /// Customers written.
    pub rows: u64,
    /// Bytes of `OUT.partial` that hold them (header included).
    pub bytes: u64,
    /// Pages read so far.
    pub pages: u64,
    /// Unix milliseconds when it was written.
    pub written_at_ms: u64,
}

/// A checkpoint that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system failure.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a checkpoint this version understands.
    #[error("checkpoint {path} cannot be used: {reason}; delete it (and the .partial file) to start over")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Checkpoint {
    /// Reads the checkpoint at `path`; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let unreadable = |reason: String| CheckpointError::Unreadable {
            path: path.into(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(VERSION)) {
            return Err(unreadable(format!(
                "format version {version:?}, this deskport writes {VERSION}"
            )));
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    /// Writes it atomically: `PATH.tmp`, fsync, rename over `PATH`, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.into(),
            source,
        };
        let tmp = tmp_path(path);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let mut text = serde_json::to_vec_pretty(self).expect("a checkpoint serializes");
        text.push(b'\n');
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        sync_dir(path).map_err(io)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Fsyncs the directory holding `path`, so a rename in it is durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            version: VERSION,
            params: Params {
                target: "udesk".into(),
                origin: "sandbox".into(),
                format: "csv".into(),
                source: "scroll".into(),
                query: None,
                filter_id: Some(2),
                brand_id: None,
                details: false,
                raw: false,
                labels: false,
                header_titles: false,
                split_rows: None,
            },
            custom_columns: vec!["TextField_1".into()],
            kept_columns: Vec::new(),
            part_starts: Vec::new(),
            cursor: Cursor::Scroll {
                scroll_id: Some("abc".into()),
                issued_at_ms: 5,
            },
            rows: 1000,
            bytes: 12345,
            pages: 1,
            written_at_ms: 6,
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv.checkpoint");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut c = sample();
        c.save(&path).unwrap();
        c.rows = 2000;
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(c));
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn another_version_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, r#"{"version": 99}"#).unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::Unreadable { .. })
        ));
        std::fs::write(&path, "{\"version\": 1, \"par").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
