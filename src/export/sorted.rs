//! A bounded-memory sort for the change comparison: entries are held in memory up to a byte
//! budget, then written as sorted runs into a temporary directory and merged on the way out.
//!
//! The sort is exact (no sampling) and its order is the entries' `Ord`, so the result is the
//! same whatever the budget; only how much touches the disk differs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An entry that can be sorted through disk.
pub trait Entry: Ord + Sized {
    /// Roughly the bytes it holds in memory (for the budget).
    fn size(&self) -> usize;
    /// Appends its encoding.
    fn write_to(&self, out: &mut impl Write) -> io::Result<()>;
    /// Reads one entry; `None` at the end of the input.
    fn read_from(input: &mut impl BufRead) -> io::Result<Option<Self>>;
}

/// Collects entries, spilling sorted runs when the budget is reached.
pub struct Sorter<T> {
    budget: usize,
    held: Vec<T>,
    held_bytes: usize,
    parent: PathBuf,
    dir: Option<tempfile::TempDir>,
    runs: Vec<PathBuf>,
    spilled: u64,
}

impl<T: Entry> Sorter<T> {
    /// An empty sorter holding about `budget` bytes, spilling under `parent`.
    pub fn new(parent: &Path, budget: usize) -> Self {
        Sorter {
            budget: budget.max(1),
            held: Vec::new(),
            held_bytes: 0,
            parent: parent.to_path_buf(),
            dir: None,
            runs: Vec::new(),
            spilled: 0,
        }
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: T) -> io::Result<()> {
        self.held_bytes += entry.size() + std::mem::size_of::<T>();
        self.held.push(entry);
        if self.held_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Entries written to disk so far.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        if self.dir.is_none() {
            self.dir = Some(
                tempfile::Builder::new()
                    .prefix("deskport-changes-")
                    .tempdir_in(&self.parent)?,
            );
        }
        let dir = self.dir.as_ref().expect("made above").path();
        let path = dir.join(format!("run-{}", self.runs.len()));
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        self.held.sort_unstable();
        for entry in self.held.drain(..) {
            entry.write_to(&mut out)?;
        }
        out.flush()?;
        self.spilled += self.held_bytes as u64;
        self.held_bytes = 0;
        self.runs.push(path);
        Ok(())
    }

    /// The entries in order.
    pub fn finish(mut self) -> io::Result<Sorted<T>> {
        self.held.sort_unstable();
        let mut sources: Vec<Source<T>> = Vec::with_capacity(self.runs.len() + 1);
        for path in &self.runs {
            sources.push(Source::Run(BufReader::with_capacity(
                1 << 16,
                File::open(path)?,
            )));
        }
        sources.push(Source::Memory(std::mem::take(&mut self.held).into_iter()));
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(entry) = source.next()? {
                heap.push(Reverse((entry, i)));
            }
        }
        Ok(Sorted {
            sources,
            heap,
            _dir: self.dir,
        })
    }
}

enum Source<T> {
    Run(BufReader<File>),
    Memory(std::vec::IntoIter<T>),
}

impl<T: Entry> Source<T> {
    fn next(&mut self) -> io::Result<Option<T>> {
        match self {
            Source::Run(r) => T::read_from(r),
            Source::Memory(m) => Ok(m.next()),
        }
    }
}

/// The merged runs, smallest first.
pub struct Sorted<T> {
    sources: Vec<Source<T>>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
    _dir: Option<tempfile::TempDir>,
}

impl<T: Entry> Iterator for Sorted<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        let Reverse((entry, i)) = self.heap.pop()?;
        match self.sources[i].next() {
            Ok(Some(next)) => self.heap.push(Reverse((next, i))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(entry))
    }
}

/// Little-endian helpers for entry encodings.
pub mod codec {
    use std::io::{self, BufRead, Write};

    /// Writes a u64.
    pub fn put_u64(out: &mut impl Write, v: u64) -> io::Result<()> {
        out.write_all(&v.to_le_bytes())
    }

    /// Writes a length-prefixed byte string.
    pub fn put_bytes(out: &mut impl Write, b: &[u8]) -> io::Result<()> {
        put_u64(out, b.len() as u64)?;
        out.write_all(b)
    }

    /// Reads a u64; `None` at a clean end of input.
    pub fn get_u64_or_end(input: &mut impl BufRead) -> io::Result<Option<u64>> {
        if input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        get_u64(input).map(Some)
    }

    /// Reads a u64.
    pub fn get_u64(input: &mut impl BufRead) -> io::Result<u64> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a length-prefixed byte string (at most 16 MiB).
    pub fn get_bytes(input: &mut impl BufRead) -> io::Result<Vec<u8>> {
        let len = get_u64(input)?;
        if len > 1 << 24 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "entry longer than 16 MiB",
            ));
        }
        let mut b = vec![0u8; len as usize];
        input.read_exact(&mut b)?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct N(u64);

    impl Entry for N {
        fn size(&self) -> usize {
            8
        }
        fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
            codec::put_u64(out, self.0)
        }
        fn read_from(input: &mut impl BufRead) -> io::Result<Option<Self>> {
            Ok(codec::get_u64_or_end(input)?.map(N))
        }
    }

    fn sorted(values: &[u64], budget: usize) -> (Vec<u64>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), budget);
        for v in values {
            s.push(N(*v)).unwrap();
        }
        let spilled = s.spilled();
        let out = s.finish().unwrap().map(|n| n.unwrap().0).collect();
        (out, spilled)
    }

    #[test]
    fn the_order_is_the_same_whatever_the_budget() {
        let values: Vec<u64> = (0..5_000u64).map(|i| (i * 7_919) % 5_003).collect();
        let mut expected = values.clone();
        expected.sort();
        let (in_memory, none) = sorted(&values, 1 << 30);
        assert_eq!(none, 0);
        assert_eq!(in_memory, expected);
        let (spilled, some) = sorted(&values, 1_000);
        assert!(some > 0);
        assert_eq!(spilled, expected);
        assert_eq!(sorted(&[], 10).0, Vec::<u64>::new());
    }
}
