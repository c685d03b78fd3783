//! Compressed export files, chosen by the name (`.gz`, `.zst`). Every flush of the writer
//! is one complete gzip member or zstd frame, so the byte count a checkpoint records is
//! always a frame boundary: a resume truncates there and appends, and every reader (`zcat`,
//! `zstdcat`, the gzip and zstd libraries, deskport's own reader) reads the concatenation
//! as one stream.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// zstd's level: its default, a good trade of speed for size.
const ZSTD_LEVEL: i32 = 3;

/// How an export file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Compression {
    /// From the file name's last extension.
    pub fn from_path(path: &Path) -> Compression {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("gz" | "gzip") => Compression::Gzip,
            Some("zst" | "zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The name with the compression extension taken off (`a.csv.gz` → `a.csv`), which
    /// tells the format.
    pub fn inner_path(path: &Path) -> PathBuf {
        match Compression::from_path(path) {
            Compression::None => path.to_path_buf(),
            _ => path.with_extension(""),
        }
    }

    /// The name used in reports.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// `plain` as one complete member/frame (itself when not compressed).
    pub fn frame(self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(plain.to_vec()),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(plain.len() / 4),
                    flate2::Compression::default(),
                );
                encoder.write_all(plain)?;
                encoder.finish()
            }
            Compression::Zstd => zstd::bulk::compress(plain, ZSTD_LEVEL),
        }
    }

    /// Reads the plain text of a file of concatenated members/frames.
    pub fn reader<'a>(self, inner: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(inner),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_the_compression_and_the_format() {
        for (name, compression, inner) in [
            ("a.csv", Compression::None, "a.csv"),
            ("a.csv.gz", Compression::Gzip, "a.csv"),
            ("a.JSONL.GZ", Compression::Gzip, "a.JSONL"),
            ("dir/a.jsonl.zst", Compression::Zstd, "dir/a.jsonl"),
        ] {
            assert_eq!(
                Compression::from_path(Path::new(name)),
                compression,
                "{name}"
            );
            assert_eq!(Compression::inner_path(Path::new(name)), Path::new(inner));
        }
    }

    #[test]
    fn concatenated_frames_read_back_as_one_text() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut file = Vec::new();
            for part in ["id,name\n", "", "1,Ann\n2,Bo\n", "3,Cy\n"] {
                file.extend(c.frame(part.as_bytes()).unwrap());
            }
            let mut text = String::new();
            c.reader(&file[..])
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "id,name\n1,Ann\n2,Bo\n3,Cy\n", "{c:?}");
        }
    }
}
