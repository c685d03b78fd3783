//! First-seen store for the in-file duplicate check: 64-bit key → the line it was first seen on,
//! in memory that stays bounded whatever the file size.
//!
//! Keys live in an in-memory table until it is full, then the table is sorted and written to a
//! run file in a temporary directory (a small log-structured merge tree):
//!
//! - a run is a sorted array of `(key, line)` records of 16 bytes, cut into blocks of
//!   [`BLOCK_RECORDS`]; memory keeps the first key of every block and a Bloom filter;
//! - a lookup asks the table, then every run whose filter says "maybe", reading one block;
//! - [`FANOUT`] runs of the same level are merged into one of the next level, so there are
//!   few runs to ask;
//! - all filters share a fixed bit budget: as the key count grows each run gets fewer bits per
//!   key (more "maybe" answers, more block reads) instead of more memory.
//!
//! Memory is the table (sorted in place when written out), the block index (8 bytes per
//! [`BLOCK_RECORDS`] keys), the filter budget and the I/O buffers of one merge; the disk holds
//! 16 bytes per key.

use fastbloom::BloomFilter;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Records per block: one block read (2 KiB) per "maybe" from a run's filter.
pub const BLOCK_RECORDS: usize = 128;
const RECORD_BYTES: usize = 16;
const BLOCK_BYTES: usize = BLOCK_RECORDS * RECORD_BYTES;
/// Runs of one level merged into one run of the next.
pub const FANOUT: usize = 4;
/// Most filter bits one key gets (false "maybe" ≈ 0.05% at 16).
const MAX_BITS_PER_KEY: u64 = 16;
const IO_BUFFER: usize = 64 * 1024;

/// How big the in-memory parts may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Slots of the in-memory table once keys are on disk (rounded up to a power of two,
    /// 12 bytes each); it is written out as a run when 7/8 full.
    pub table_slots: usize,
    /// Slots the table may grow to before anything is on disk: a file whose keys fit never
    /// touches the disk, and once one does the table is this size only for the first run,
    /// so its memory and the filters' are never held together.
    pub first_table_slots: usize,
    /// Bits shared by the Bloom filters of all runs.
    pub filter_bits: u64,
}

impl Limits {
    /// Limits that keep at most about `keys` keys in memory (at least 7), before the first
    /// run and after: the table does not grow.
    pub fn with_memory_keys(self, keys: usize) -> Self {
        let table_slots = (keys.max(7) * 8).div_ceil(7).next_power_of_two();
        Limits {
            table_slots,
            first_table_slots: table_slots,
            ..self
        }
    }

    /// Keys kept in memory before a run is written, once keys are on disk.
    pub fn memory_keys(&self) -> usize {
        Table::capacity(self.table_slots)
    }

    /// Keys kept in memory before the first run is written.
    pub fn first_memory_keys(&self) -> usize {
        Table::capacity(self.first_table_slots.max(self.table_slots))
    }
}

impl Default for Limits {
    /// A table of 2^19 slots (6 MiB, written out every 458,752 keys) that may grow to 2^22
    /// slots (48 MiB, 3,670,016 keys: a 1,000,000-row file's ~2.9 M keys) before the first
    /// run, and 16 MiB of filters once runs exist.
    fn default() -> Self {
        Limits {
            table_slots: 1 << 19,
            first_table_slots: 1 << 22,
            filter_bits: 16 * 1024 * 1024 * 8,
        }
    }
}

/// Counters that show how much of the work went to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpillStats {
    /// Keys stored (ids, emails and phones of clean rows).
    pub keys: u64,
    /// Keys the in-memory table holds before a run is written.
    pub memory_keys: u64,
    /// Run files written (flushes and merges).
    pub runs_written: u64,
    /// Merges of [`FANOUT`] runs.
    pub merges: u64,
    /// Blocks read to answer lookups.
    pub block_reads: u64,
    /// Filters rebuilt with fewer bits to stay within the budget.
    pub filter_rebuilds: u64,
}

/// One sorted run on disk with its block index and filter.
struct Run {
    file: File,
    path: PathBuf,
    keys: u64,
    level: u32,
    /// First key of every block.
    fences: Vec<u64>,
    filter: BloomFilter,
    bits_per_key: u64,
}

/// Key → first line, in bounded memory (see the module docs).
pub struct FirstSeen {
    limits: Limits,
    table: Table,
    runs: Vec<Run>,
    spill_parent: PathBuf,
    dir: Option<tempfile::TempDir>,
    next_run: u64,
    block: Vec<u8>,
    stats: SpillStats,
}

impl std::fmt::Debug for FirstSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstSeen")
            .field("table_keys", &self.table.len())
            .field("runs", &self.runs.len())
            .field("spilled_keys", &self.spilled_keys())
            .field("stats", &self.stats)
            .finish()
    }
}

impl FirstSeen {
    /// An empty store that spills into a temporary directory under `spill_parent` once the
    /// in-memory table is full (nothing is written for small inputs).
    pub fn new(spill_parent: PathBuf, limits: Limits) -> Self {
        FirstSeen {
            table: Table::new(limits.table_slots),
            limits,
            runs: Vec::new(),
            spill_parent,
            dir: None,
            next_run: 0,
            block: vec![0; BLOCK_BYTES],
            stats: SpillStats::default(),
        }
    }

    /// Keys stored.
    pub fn len(&self) -> u64 {
        self.spilled_keys() + self.table.len() as u64
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How much went to disk so far.
    pub fn stats(&self) -> SpillStats {
        SpillStats {
            keys: self.len(),
            memory_keys: self.limits.first_memory_keys() as u64,
            ..self.stats
        }
    }

    /// Bits the run filters hold now.
    pub fn filter_bits(&self) -> u64 {
        self.runs.iter().map(|r| r.filter.num_bits() as u64).sum()
    }

    /// The line `key` was first stored with.
    pub fn get(&mut self, key: u64) -> io::Result<Option<u64>> {
        let key = key.max(1);
        if let Some(line) = self.table.get(key) {
            return Ok(Some(line));
        }
        for run in self.runs.iter().rev() {
            if !run.filter.contains_hash(key) {
                continue;
            }
            self.stats.block_reads += 1;
            if let Some(line) = run.find(key, &mut self.block)? {
                return Ok(Some(line));
            }
        }
        Ok(None)
    }

    /// Stores `key` with `line` unless it is stored already. Callers look a key up with
    /// [`FirstSeen::get`] first; a key already in a run must not be inserted again.
    pub fn insert(&mut self, key: u64, line: u64) -> io::Result<()> {
        let key = key.max(1);
        self.table.insert(key, line);
        if self.table.is_full() {
            let first = self.limits.first_table_slots.max(8).next_power_of_two();
            if self.runs.is_empty() && self.table.slots.len() < first {
                // Nothing on disk yet: grow once, straight to the first table's size.
                let mut bigger = Table::new(first);
                for (key, line) in self.table.entries() {
                    bigger.insert(key, line);
                }
                self.table = bigger;
            } else {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the table out as a run (level 0, or the level of its size for the grown
    /// first table, which then gives way to one of `table_slots`), then merges and trims
    /// filters as needed.
    fn flush(&mut self) -> io::Result<()> {
        let mut table = std::mem::take(&mut self.table);
        let keys = table.len() as u64;
        let small = Table::capacity(self.limits.table_slots) as u64;
        let mut level = 0;
        while keys >= small.saturating_mul(FANOUT.pow(level + 1) as u64) {
            level += 1;
        }
        let grown = table.slots.len() > self.limits.table_slots.max(8).next_power_of_two();
        // The grown table's run gets its filter once the table is gone, so the two never
        // take memory at the same time.
        let run = self.write_run(table.sorted().map(Ok), keys, level, !grown);
        if grown {
            drop(table);
            self.table = Table::new(self.limits.table_slots);
        } else {
            table.clear();
            self.table = table;
        }
        let mut run = run?;
        if grown {
            let mut filter = new_filter(run.keys, run.bits_per_key);
            let mut reader = RunReader::new(&run.file, run.keys)?;
            while let Some((key, _)) = reader.pop()? {
                filter.insert_hash(key);
            }
            run.filter = filter;
        }
        self.runs.push(run);
        while self.runs.len() >= FANOUT {
            let tail = &self.runs[self.runs.len() - FANOUT..];
            let level = tail[0].level;
            if tail.iter().any(|r| r.level != level) {
                break;
            }
            self.merge_tail(level + 1)?;
        }
        self.keep_filters_in_budget()
    }

    /// Keys in the runs on disk.
    fn spilled_keys(&self) -> u64 {
        self.runs.iter().map(|r| r.keys).sum()
    }

    /// Bits per key a filter gets when `total` keys are on disk: the budget spread over them.
    fn bits_per_key_for(&self, total: u64) -> u64 {
        (self.limits.filter_bits / total.max(1)).clamp(1, MAX_BITS_PER_KEY)
    }

    /// Writes sorted `(key, line)` records as a new run; its filter is sized for the runs
    /// already listed plus this one.
    fn write_run(
        &mut self,
        records: impl Iterator<Item = io::Result<(u64, u64)>>,
        keys: u64,
        level: u32,
        with_filter: bool,
    ) -> io::Result<Run> {
        if self.dir.is_none() {
            self.dir = Some(
                tempfile::Builder::new()
                    .prefix("deskport-dups-")
                    .tempdir_in(&self.spill_parent)?,
            );
        }
        let path = self
            .dir
            .as_ref()
            .map(|d| d.path().join(format!("run-{}", self.next_run)))
            .unwrap_or_default();
        self.next_run += 1;
        let bits_per_key = self.bits_per_key_for(self.spilled_keys() + keys);
        let mut filter = new_filter(if with_filter { keys } else { 0 }, bits_per_key);
        let mut fences = Vec::with_capacity((keys as usize).div_ceil(BLOCK_RECORDS));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(IO_BUFFER, file);
        let mut written = 0u64;
        let mut last: Option<u64> = None;
        for record in records {
            let (key, line) = record?;
            if last == Some(key) {
                continue; // the same key from two inputs of a merge: the first line won
            }
            last = Some(key);
            if written.is_multiple_of(BLOCK_RECORDS as u64) {
                fences.push(key);
            }
            out.write_all(&key.to_le_bytes())?;
            out.write_all(&line.to_le_bytes())?;
            if with_filter {
                filter.insert_hash(key);
            }
            written += 1;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        self.stats.runs_written += 1;
        Ok(Run {
            file,
            path,
            keys: written,
            level,
            fences,
            filter,
            bits_per_key,
        })
    }

    /// Merges the last [`FANOUT`] runs into one run of `level`.
    fn merge_tail(&mut self, level: u32) -> io::Result<()> {
        let inputs: Vec<Run> = self.runs.drain(self.runs.len() - FANOUT..).collect();
        let keys = inputs.iter().map(|r| r.keys).sum();
        let mut readers = inputs
            .iter()
            .map(|r| RunReader::new(&r.file, r.keys))
            .collect::<io::Result<Vec<_>>>()?;
        let merged = MergeIter {
            readers: &mut readers,
        };
        let run = self.write_run(merged, keys, level, true)?;
        for input in inputs {
            drop(input.file);
            std::fs::remove_file(&input.path).ok();
        }
        self.runs.push(run);
        self.stats.merges += 1;
        Ok(())
    }

    /// Rebuilds the filters with the most bits per key until all fit in the budget.
    fn keep_filters_in_budget(&mut self) -> io::Result<()> {
        let target = self.bits_per_key_for(self.spilled_keys());
        while self.filter_bits() > self.limits.filter_bits {
            let Some(run) = self
                .runs
                .iter_mut()
                .filter(|r| r.bits_per_key > target)
                .max_by_key(|r| r.bits_per_key * r.keys)
            else {
                break;
            };
            // The old filter goes first, so the two never take memory at the same time (an I/O
            // error here ends the whole run, so a run is never asked with a half-built filter).
            run.filter = new_filter(0, 1);
            let mut filter = new_filter(run.keys, target);
            let mut reader = RunReader::new(&run.file, run.keys)?;
            while let Some((key, _)) = reader.pop()? {
                filter.insert_hash(key);
            }
            run.filter = filter;
            run.bits_per_key = target;
            self.stats.filter_rebuilds += 1;
        }
        Ok(())
    }
}

/// A table slot: a key and its line in 12 bytes (a line past `u32::MAX - 1` is kept in
/// [`Table::far`], marked by `u32::MAX`).
#[derive(Clone, Copy, Default)]
#[repr(C, packed(4))]
struct Slot {
    key: u64,
    line: u32,
}

/// The in-memory table: open addressing with linear probing over [`Slot`]s, key 0 meaning
/// empty ([`FirstSeen`] stores key 0 as 1, a one-in-2^64 merge). Unlike a general map it
/// can be sorted in place when it is written out, so a flush needs no second buffer.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    len: usize,
    /// Lines too large for a slot, by key.
    far: std::collections::HashMap<u64, u64>,
}

/// The slot mark of a line kept in [`Table::far`].
const FAR: u32 = u32::MAX;

impl Table {
    fn new(slots: usize) -> Self {
        Table {
            slots: vec![Slot::default(); slots.max(8).next_power_of_two()],
            len: 0,
            far: std::collections::HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Keys a table of `slots` slots holds before it is written out.
    fn capacity(slots: usize) -> usize {
        let slots = slots.max(8).next_power_of_two();
        slots / 8 * 7
    }

    fn is_full(&self) -> bool {
        self.len >= Self::capacity(self.slots.len())
    }

    /// The slot holding `key` or the empty slot where it would go.
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        // Keys are well-spread hashes; the multiply spreads clustered test keys too.
        let mut at = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & mask;
        loop {
            let k = self.slots[at].key;
            if k == key || k == 0 {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    fn line_of(&self, slot: Slot) -> u64 {
        match slot.line {
            FAR => self.far.get(&{ slot.key }).copied().unwrap_or(u64::MAX),
            line => u64::from(line),
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        let slot = self.slots[self.slot(key)];
        (slot.key == key).then(|| self.line_of(slot))
    }

    fn insert(&mut self, key: u64, line: u64) {
        let at = self.slot(key);
        if self.slots[at].key == 0 {
            let short = match u32::try_from(line) {
                Ok(l) if l != FAR => l,
                _ => {
                    self.far.insert(key, line);
                    FAR
                }
            };
            self.slots[at] = Slot { key, line: short };
            self.len += 1;
        }
    }

    /// The stored `(key, line)` pairs, in slot order.
    fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != 0)
            .map(|&s| (s.key, self.line_of(s)))
    }

    /// Sorts the slots by key in place and returns the filled ones as `(key, line)`; the
    /// table is unusable for lookups until [`Table::clear`].
    fn sorted(&mut self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots.sort_unstable_by_key(|s| s.key);
        let empty = self.slots.len() - self.len;
        self.slots[empty..]
            .iter()
            .map(|&s| (s.key, self.line_of(s)))
    }

    fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.len = 0;
        self.far.clear();
    }
}

fn new_filter(keys: u64, bits_per_key: u64) -> BloomFilter {
    let bits = (keys * bits_per_key).max(64) as usize;
    BloomFilter::with_num_bits(bits).expected_items(keys.max(1) as usize)
}

impl Run {
    /// Reads the one block that may hold `key` and searches it.
    fn find(&self, key: u64, block: &mut [u8]) -> io::Result<Option<u64>> {
        let Some(block_index) = block_of(&self.fences, key) else {
            return Ok(None);
        };
        let start = block_index * BLOCK_RECORDS;
        let records = (self.keys as usize - start).min(BLOCK_RECORDS);
        let bytes = &mut block[..records * RECORD_BYTES];
        self.file
            .read_exact_at(bytes, (start * RECORD_BYTES) as u64)?;
        let record = |i: usize| {
            let at = i * RECORD_BYTES;
            let key = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let line = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
            (key, line)
        };
        let (mut low, mut high) = (0, records);
        while low < high {
            let mid = (low + high) / 2;
            let (k, line) = record(mid);
            match k.cmp(&key) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(Some(line)),
            }
        }
        Ok(None)
    }
}

/// The block whose first key is the last one ≤ `key`, if any. Keys are well-spread hashes,
/// so the block sits near `key / 2^64` of the way through the run: start there and walk
/// (a few steps) instead of a binary search that misses the cache at every step.
fn block_of(fences: &[u64], key: u64) -> Option<usize> {
    if fences.first().is_none_or(|&first| first > key) {
        return None;
    }
    let guess = ((u128::from(key) * fences.len() as u128) >> 64) as usize;
    let mut at = guess.min(fences.len() - 1);
    while fences[at] > key {
        at -= 1;
    }
    while at + 1 < fences.len() && fences[at + 1] <= key {
        at += 1;
    }
    Some(at)
}

/// Sequential reader of one run's records, one record ahead (`head`) for merging.
struct RunReader {
    reader: BufReader<File>,
    left: u64,
    head: Option<(u64, u64)>,
}

impl RunReader {
    fn new(file: &File, keys: u64) -> io::Result<Self> {
        let mut file = file.try_clone()?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        let mut reader = RunReader {
            reader: BufReader::with_capacity(IO_BUFFER, file),
            left: keys,
            head: None,
        };
        reader.head = reader.next_record()?;
        Ok(reader)
    }

    /// The current record; the next one becomes current.
    fn pop(&mut self) -> io::Result<Option<(u64, u64)>> {
        let head = self.head;
        if head.is_some() {
            self.head = self.next_record()?;
        }
        Ok(head)
    }

    fn next_record(&mut self) -> io::Result<Option<(u64, u64)>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut record = [0u8; RECORD_BYTES];
        self.reader.read_exact(&mut record)?;
        self.left -= 1;
        let key = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
        let line = u64::from_le_bytes(record[8..].try_into().expect("8 bytes"));
        Ok(Some((key, line)))
    }
}

/// Merges sorted runs by key; on equal keys the smaller line comes first.
struct MergeIter<'a> {
    readers: &'a mut [RunReader],
}

impl Iterator for MergeIter<'_> {
    type Item = io::Result<(u64, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let best = self
            .readers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.head.map(|h| (h, i)))
            .min()?;
        Some(self.readers[best.1].pop().map(|_| best.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn tiny(dir: &std::path::Path, table_slots: usize, filter_bits: u64) -> FirstSeen {
        FirstSeen::new(
            dir.to_path_buf(),
            Limits {
                table_slots,
                first_table_slots: table_slots,
                filter_bits,
            },
        )
    }

    /// A well-spread key, as the xxh3 fingerprints are.
    fn key(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn keeps_the_first_line_across_flushes_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = tiny(dir.path(), 128, 1 << 20);
        for i in 0..10_000u64 {
            assert_eq!(store.get(key(i)).unwrap(), None);
            store.insert(key(i), i + 2).unwrap();
        }
        let stats = store.stats();
        assert!(stats.merges >= 20, "{stats:?}");
        assert!(
            store.runs.len() < 4 * 4,
            "runs stay few: {}",
            store.runs.len()
        );
        assert_eq!(store.len(), 10_000);
        for i in (0..10_000u64).step_by(7) {
            assert_eq!(store.get(key(i)).unwrap(), Some(i + 2), "key {i}");
        }
        for i in 10_000..12_000u64 {
            assert_eq!(store.get(key(i)).unwrap(), None);
        }
        // Run files live in one temporary directory that goes with the store.
        let spill = store.dir.as_ref().unwrap().path().to_path_buf();
        assert!(spill.starts_with(dir.path()));
        drop(store);
        assert!(!spill.exists());
    }

    #[test]
    fn filters_stay_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 20_000;
        let mut store = tiny(dir.path(), 256, budget);
        for i in 0..20_000u64 {
            store.insert(key(i), i).unwrap();
            assert!(store.filter_bits() <= budget + 64 * store.runs.len() as u64);
        }
        assert!(store.stats().filter_rebuilds > 0);
        // Fewer bits per key mean more block reads, never wrong answers.
        for i in (0..20_000u64).step_by(13) {
            assert_eq!(store.get(key(i)).unwrap(), Some(i));
        }
        let before = store.stats().block_reads;
        for i in 20_000..21_000u64 {
            assert_eq!(store.get(key(i)).unwrap(), None);
        }
        assert!(store.stats().block_reads > before);
    }

    #[test]
    fn small_inputs_never_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = tiny(dir.path(), 1024, 1 << 20);
        for i in 0..800 {
            store.insert(key(i), i).unwrap();
        }
        assert!(store.dir.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_table_grows_once_before_the_first_run_and_then_gives_way() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            table_slots: 64,
            first_table_slots: 1024,
            filter_bits: 1 << 16,
        };
        let mut store = FirstSeen::new(dir.path().to_path_buf(), limits);
        // 896 keys fit the grown table: nothing on disk.
        for i in 0..890u64 {
            store.insert(key(i), i).unwrap();
        }
        assert!(store.dir.is_none());
        assert_eq!(store.table.slots.len(), 1024);
        // Past it: one run of the grown table, then the small table for the rest.
        for i in 890..3000u64 {
            store.insert(key(i), i).unwrap();
        }
        assert!(store.stats().runs_written >= 1);
        assert_eq!(store.table.slots.len(), 64);
        assert_eq!(store.stats().memory_keys, 896);
        for i in 0..3000u64 {
            assert_eq!(store.get(key(i)).unwrap(), Some(i), "key {i}");
        }
        assert_eq!(store.get(key(3001)).unwrap(), None);
    }

    #[test]
    fn lines_past_u32_are_kept_whole_in_the_table_and_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = tiny(dir.path(), 64, 1 << 16);
        let far = u64::from(u32::MAX) + 7;
        store.insert(key(1), far).unwrap();
        store.insert(key(2), u64::from(u32::MAX)).unwrap();
        assert_eq!(store.get(key(1)).unwrap(), Some(far));
        assert_eq!(store.get(key(2)).unwrap(), Some(u64::from(u32::MAX)));
        for i in 3..200u64 {
            store.insert(key(i), i).unwrap();
        }
        assert!(store.stats().runs_written > 0);
        assert_eq!(store.get(key(1)).unwrap(), Some(far));
        assert_eq!(store.get(key(2)).unwrap(), Some(u64::from(u32::MAX)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any sequence of "look up, then insert if absent" agrees with a plain map, with
        /// and without a first table that grows.
        #[test]
        fn agrees_with_a_map(
            ops in prop::collection::vec(0u64..400, 1..1500),
            table in 8usize..64,
            grows in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = tiny(dir.path(), table, 300);
            if grows {
                store.limits.first_table_slots = table * 8;
            }
            let mut model: HashMap<u64, u64> = HashMap::new();
            for (line, k) in ops.into_iter().enumerate() {
                let k = key(k);
                let got = store.get(k).unwrap();
                prop_assert_eq!(got, model.get(&k).copied());
                if got.is_none() {
                    store.insert(k, line as u64).unwrap();
                    model.insert(k, line as u64);
                }
            }
            prop_assert_eq!(store.len(), model.len() as u64);
        }
    }

    proptest! {
        /// The interpolated block search agrees with a binary search on any sorted fences.
        #[test]
        fn block_of_agrees_with_binary_search(
            mut fences in prop::collection::vec(any::<u64>(), 0..200),
            key in any::<u64>(),
        ) {
            fences.sort_unstable();
            fences.dedup();
            let want = fences.partition_point(|&f| f <= key).checked_sub(1);
            prop_assert_eq!(block_of(&fences, key), want);
            for &f in &fences {
                prop_assert_eq!(block_of(&fences, f), fences.binary_search(&f).ok());
            }
        }
    }
}
