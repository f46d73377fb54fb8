//! The archive: closed auctions moved out of the in-memory book, on disk, on every node.
//!
//! A committed `Housekeeping` command moves every auction closed longer than the
//! configured time out of the [`crate::AuctionBook`]; `apply` encodes each one as an
//! archive record and keeps a running digest of them (so the state hash covers the
//! archive), and the state machine appends the records here, in apply order. The archive
//! is therefore a pure function of the applied log, identical on every replica: record
//! `n` is the `n`-th auction archived by the cluster.
//!
//! # Why append-only files and not a sled tree
//!
//! - Records are written once and never change: append-only segments are the simplest
//!   structure with that shape, and a torn tail is easy to recognise and cut.
//! - They can be read while the node runs (`gavel archive verify|dump`, backups) and
//!   copied or streamed byte for byte to a node that catches up, with no lock held.
//! - sled stores values over ~128 KiB in blob files it never fsyncs (NOTES), and an
//!   auction with thousands of bids is larger than that; sled's page cache would also
//!   hold archived pages in memory, which is what archiving is meant to release.
//!
//! # Files (`<data_dir>/archive/`)
//!
//! Segments `arch-<first_seq:016x>.seg`, each a sequence of records:
//!
//! ```text
//! offset  size  field
//! 0       4     len         u32 LE: bytes of the payload
//! 4       4     crc         u32 LE: CRC-32 of the payload
//! 8       len   payload:
//!                 0   8  seq         u64 LE: the record's number, from 1, gapless
//!                 8   8  auction_id  u64 LE
//!                 16  …  bincode [`ArchivedAuction`]
//! ```
//!
//! A segment is sealed once it passes [`SEGMENT_BYTES_MAX`]: it is fsynced and gets an
//! index file `arch-<first_seq:016x>.idx` (written to a temporary file, fsynced, renamed,
//! directory fsynced):
//!
//! ```text
//! 0   8   magic b"GAVELAIX"    8   2   version u16 LE (1)
//! 10  8   first_seq u64 LE     18  8   records u64 LE      26  8   segment_len u64 LE
//! 34  32  digest after the segment's last record
//! 66  20×records  (auction_id u64 LE, offset u64 LE, len u32 LE)
//! end 4   crc32 of everything before
//! ```
//!
//! At start sealed segments are indexed from their `.idx` (a missing or bad one is
//! rebuilt by scanning the segment); the last segment is scanned up to its first frame
//! that is torn or fails its checksum (a write cut short by a crash, or damage). The state
//! machine then calls [`Archive::truncate_to`] with its snapshot's record count: if the
//! whole records before that point cover it, everything after is cut (records the node
//! applied after the snapshot: the log holds them and applying it writes them again);
//! if not, it is an error and nothing is cut. A sealed segment that fails a check is an
//! error, never skipped.
//!
//! # Durability and the digest
//!
//! Appends are plain writes. [`Archive::sync`] makes them durable (fdatasync of the
//! segment, and of the directory after a new file); the state machine calls it before
//! writing a snapshot, since a snapshot no longer holds the auctions it archived and the
//! log before it is purged. The digest after record `n` is
//! `sha256(digest(n-1) || payload(n))`, from 32 zero bytes; the book carries the count
//! and digest it expects, and the archive is checked against them at start and when a
//! snapshot is installed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::book::formats::Format;
use crate::book::rounds::Rounds;
use crate::error::IoContext;
use crate::fsutil::{create_dir_durably, sync_dir, write_durably};
use crate::{bincode_config, Auction, AuctionId, Error, Result, TimestampMs};

/// A segment is sealed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// Largest record payload accepted on read (a sanity bound against a garbage length):
/// an auction with about a million bids.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Most bytes decoding one record may allocate.
pub const RECORD_DECODE_MAX_BYTES: usize = 2 * RECORD_PAYLOAD_MAX_BYTES;
/// Frame header: `len` and `crc`.
pub const FRAME_HEADER_LEN: usize = 8;
/// Payload header: `seq` and `auction_id`.
pub const PAYLOAD_HEADER_LEN: usize = 16;
const INDEX_MAGIC: &[u8; 8] = b"GAVELAIX";
const INDEX_VERSION: u16 = 1;
const INDEX_FIXED_LEN: usize = 66;
const INDEX_ENTRY_LEN: usize = 20;
const SEGMENT_PREFIX: &str = "arch-";
const SEGMENT_SUFFIX: &str = ".seg";
const INDEX_SUFFIX: &str = ".idx";

/// The digest of an empty archive.
pub const EMPTY_DIGEST: [u8; 32] = [0; 32];

/// One archived auction: everything the book held about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedAuction {
    /// Command time of the `Housekeeping` that archived it.
    pub archived_at_ms: TimestampMs,
    pub auction: Auction,
    /// Its format, if not English.
    pub format: Option<Format>,
    /// A multi-round auction's rounds.
    pub rounds: Option<Rounds>,
}

/// The payload of record `seq` (header and bincode body), as `apply` produces it.
pub fn encode_payload(seq: u64, record: &ArchivedAuction) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_HEADER_LEN + 256);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&record.auction.id.to_le_bytes());
    bincode::serde::encode_into_std_write(record, &mut out, bincode_config())
        .expect("an archived auction holds only maps, vectors, strings and integers, which always encode");
    out
}

/// `(seq, auction_id)` of a payload, if it is long enough to have them.
pub fn payload_header(payload: &[u8]) -> Option<(u64, AuctionId)> {
    let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let id = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, id))
}

/// Decodes a payload's record.
pub fn decode_payload(payload: &[u8], what: &dyn Fn() -> String) -> Result<ArchivedAuction> {
    let body = payload
        .get(PAYLOAD_HEADER_LEN..)
        .ok_or_else(|| Error::corrupt(what(), "payload shorter than its header"))?;
    let (record, read) = crate::decode_limited::<ArchivedAuction, RECORD_DECODE_MAX_BYTES>(body)
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    if read != body.len() {
        return Err(Error::corrupt(what(), format!("{} trailing bytes", body.len() - read)));
    }
    let (_, id) = payload_header(payload).expect("checked above");
    if record.auction.id != id {
        return Err(Error::corrupt(
            what(),
            format!("header says auction {id}, record holds {}", record.auction.id),
        ));
    }
    Ok(record)
}

/// The digest after appending `payload` to an archive whose digest was `before`.
pub fn chain(before: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(before);
    h.update(payload);
    h.finalize().into()
}

/// Frames a payload: `[len][crc][payload]`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// `(auction_id, offset, payload length)` of a record in its segment.
type Entry = (AuctionId, u64, u32);

/// Where a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    /// Position of its segment in `Inner::segments`.
    segment: usize,
    /// Offset of its frame in the segment.
    offset: u64,
    /// Payload length.
    len: u32,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    file: File,
    /// Bytes of whole records.
    len: u64,
    records: u64,
    /// Digest after its last record.
    end_digest: [u8; 32],
    /// `(auction_id, offset, len)` of each record, in order (written to the `.idx`).
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    segments: Vec<Segment>,
    index: BTreeMap<AuctionId, Loc>,
    /// Writes since the last [`Archive::sync`] (file data, and whether a file was created).
    unsynced: bool,
    new_file: bool,
    /// Refuse writes (a read-only inspection).
    read_only: bool,
    /// Seal a segment once it holds this many bytes ([`SEGMENT_BYTES_MAX`]).
    segment_bytes_max: u64,
    /// The last segment has bytes after its last whole record (a write cut short, or
    /// damage); they are cut by [`Archive::truncate_to`].
    tail_damaged: bool,
}

/// What the archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStats {
    pub records: u64,
    pub auctions: u64,
    pub bytes: u64,
    pub segments: u64,
    pub digest: [u8; 32],
}

/// The archive of one node (see the module documentation). Clones share it.
#[derive(Debug, Clone)]
pub struct Archive(Arc<RwLock<Inner>>);

fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:016x}{SEGMENT_SUFFIX}")
}

fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension(&INDEX_SUFFIX[1..])
}

/// Reads one frame at `offset` of `file`; `None` at the end of `len` bytes. A frame
/// that does not fit, or fails its checksum, is an error naming where.
fn read_frame(file: &File, path: &Path, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
    if offset >= len {
        return Ok(None);
    }
    let what = || format!("archive {} at byte {offset}", path.display());
    if len - offset < FRAME_HEADER_LEN as u64 {
        return Err(Error::corrupt(what(), "torn frame header"));
    }
    let mut header = [0u8; FRAME_HEADER_LEN];
    file.read_exact_at(&mut header, offset).at(path)?;
    let payload_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if !(PAYLOAD_HEADER_LEN..=RECORD_PAYLOAD_MAX_BYTES).contains(&payload_len) {
        return Err(Error::corrupt(
            what(),
            format!("implausible payload length {payload_len}"),
        ));
    }
    if len - offset - (FRAME_HEADER_LEN as u64) < payload_len as u64 {
        return Err(Error::corrupt(what(), "torn frame: shorter than its length"));
    }
    let mut payload = vec![0u8; payload_len];
    file.read_exact_at(&mut payload, offset + FRAME_HEADER_LEN as u64)
        .at(path)?;
    if crc32fast::hash(&payload) != crc {
        return Err(Error::corrupt(what(), "checksum mismatch"));
    }
    Ok(Some(payload))
}

/// Scans a segment from its start: its records, digest, entries; and where the last
/// whole record ends with the error that stopped the scan, if one did.
struct Scan {
    len: u64,
    records: u64,
    digest: [u8; 32],
    entries: Vec<Entry>,
    stopped: Option<Error>,
}

fn scan(file: &File, path: &Path, first_seq: u64, start_digest: [u8; 32]) -> Result<Scan> {
    let file_len = file.metadata().at(path)?.len();
    let mut s = Scan {
        len: 0,
        records: 0,
        digest: start_digest,
        entries: Vec::new(),
        stopped: None,
    };
    loop {
        let payload = match read_frame(file, path, s.len, file_len) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(s),
            Err(e @ Error::Corrupt { .. }) => {
                s.stopped = Some(e);
                return Ok(s);
            }
            Err(e) => return Err(e),
        };
        let (seq, id) = payload_header(&payload).expect("length checked");
        let want = first_seq + s.records;
        if seq != want {
            s.stopped = Some(Error::corrupt(
                format!("archive {} at byte {}", path.display(), s.len),
                format!("record number {seq}, expected {want}"),
            ));
            return Ok(s);
        }
        s.entries.push((id, s.len, payload.len() as u32));
        s.digest = chain(&s.digest, &payload);
        s.records += 1;
        s.len += (FRAME_HEADER_LEN + payload.len()) as u64;
    }
}

fn encode_index(seg: &Segment) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_FIXED_LEN + seg.entries.len() * INDEX_ENTRY_LEN + 4);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&seg.first_seq.to_le_bytes());
    out.extend_from_slice(&seg.records.to_le_bytes());
    out.extend_from_slice(&seg.len.to_le_bytes());
    out.extend_from_slice(&seg.end_digest);
    for (id, offset, len) in &seg.entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A sealed segment's index, if its file is whole and matches the segment.
fn read_index(path: &Path, first_seq: u64, segment_len: u64) -> Option<(u64, [u8; 32], Vec<Entry>)> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() < INDEX_FIXED_LEN + 4 {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) || &body[0..8] != INDEX_MAGIC {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if u16::from_le_bytes(body[8..10].try_into().ok()?) != INDEX_VERSION
        || u64_at(10) != first_seq
        || u64_at(26) != segment_len
    {
        return None;
    }
    let records = u64_at(18);
    let digest: [u8; 32] = body[34..66].try_into().ok()?;
    let entries_bytes = &body[INDEX_FIXED_LEN..];
    if entries_bytes.len() as u64 != records * INDEX_ENTRY_LEN as u64 {
        return None;
    }
    let entries = entries_bytes
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| {
            (
                u64::from_le_bytes(e[0..8].try_into().expect("8")),
                u64::from_le_bytes(e[8..16].try_into().expect("8")),
                u32::from_le_bytes(e[16..20].try_into().expect("4")),
            )
        })
        .collect();
    Some((records, digest, entries))
}

/// The segment files in `dir`, by first record number.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(hex) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        if let Ok(first) = u64::from_str_radix(hex, 16) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

impl Archive {
    /// Opens (creating if needed) the archive in `dir` for the node: indexes every
    /// record, and cuts a torn tail off the last segment (see the module documentation).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir.as_ref(), false, SEGMENT_BYTES_MAX)
    }

    /// [`Archive::open`] with another segment size (tests that roll segments).
    pub fn open_with_segment_bytes(dir: impl AsRef<Path>, segment_bytes_max: u64) -> Result<Self> {
        Self::open_with(dir.as_ref(), false, segment_bytes_max)
    }

    /// Opens the archive for inspection only: nothing is created, cut or written; a
    /// torn tail is reported by [`Archive::verify`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir.as_ref(), true, SEGMENT_BYTES_MAX)
    }

    fn open_with(dir: &Path, read_only: bool, segment_bytes_max: u64) -> Result<Self> {
        if !read_only {
            create_dir_durably(dir)?;
        } else if !dir.is_dir() {
            return Err(Error::NotFound(format!(
                "{} is not an archive directory",
                dir.display()
            )));
        }
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            index: BTreeMap::new(),
            unsynced: false,
            new_file: false,
            read_only,
            segment_bytes_max,
            tail_damaged: false,
        };
        let found = list_segments(dir)?;
        let last = found.len().saturating_sub(1);
        let mut digest = EMPTY_DIGEST;
        let mut next_seq = 1u64;
        for (i, (first_seq, path)) in found.into_iter().enumerate() {
            if first_seq != next_seq {
                return Err(Error::corrupt(
                    format!("archive {}", dir.display()),
                    format!(
                        "segment {} starts at record {first_seq}, expected {next_seq}",
                        path.display()
                    ),
                ));
            }
            let file = OpenOptions::new().read(true).write(!read_only).open(&path).at(&path)?;
            let file_len = file.metadata().at(&path)?.len();
            let indexed = if i < last {
                read_index(&index_path(&path), first_seq, file_len)
            } else {
                None
            };
            let (len, records, end_digest, entries) = match indexed {
                // The index is trusted for the digest only after a full verify; at start it
                // saves reading every sealed segment.
                Some((records, end_digest, entries)) => (file_len, records, end_digest, entries),
                None => {
                    let s = scan(&file, &path, first_seq, digest)?;
                    if let Some(e) = s.stopped {
                        if i < last {
                            return Err(e);
                        }
                        // Nothing is cut here: [`Archive::truncate_to`] cuts it once the
                        // snapshot shows the records past this point are not needed.
                        tracing::warn!(
                            file = %path.display(), at = s.len, error = %e,
                            "the archive's last segment ends in a torn or damaged frame"
                        );
                        inner.tail_damaged = true;
                    }
                    (s.len, s.records, s.digest, s.entries)
                }
            };
            let position = inner.segments.len();
            for (id, offset, len) in &entries {
                inner.index.insert(
                    *id,
                    Loc {
                        segment: position,
                        offset: *offset,
                        len: *len,
                    },
                );
            }
            digest = end_digest;
            next_seq = first_seq + records;
            inner.segments.push(Segment {
                first_seq,
                path,
                file,
                len,
                records,
                end_digest,
                entries,
            });
        }
        Ok(Archive(Arc::new(RwLock::new(inner))))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.0.read().expect("archive lock poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.0.write().expect("archive lock poisoned")
    }

    /// Records held (the number of the last one).
    pub fn count(&self) -> u64 {
        self.read().count()
    }

    /// The digest after the last record.
    pub fn digest(&self) -> [u8; 32] {
        self.read().segments.last().map_or(EMPTY_DIGEST, |s| s.end_digest)
    }

    pub fn stats(&self) -> ArchiveStats {
        let inner = self.read();
        ArchiveStats {
            records: inner.count(),
            auctions: inner.index.len() as u64,
            bytes: inner.segments.iter().map(|s| s.len).sum(),
            segments: inner.segments.len() as u64,
            digest: inner.segments.last().map_or(EMPTY_DIGEST, |s| s.end_digest),
        }
    }

    /// Whether auction `id` is archived.
    pub fn contains(&self, id: AuctionId) -> bool {
        self.read().index.contains_key(&id)
    }

    /// The archived auction `id`, read from disk and checked.
    pub fn get(&self, id: AuctionId) -> Result<Option<ArchivedAuction>> {
        let inner = self.read();
        let Some(loc) = inner.index.get(&id).copied() else {
            return Ok(None);
        };
        let seg = &inner.segments[loc.segment];
        let frame_end = loc.offset + (FRAME_HEADER_LEN as u64) + u64::from(loc.len);
        let payload = read_frame(&seg.file, &seg.path, loc.offset, frame_end.max(seg.len))?
            .ok_or_else(|| Error::corrupt(format!("archive {}", seg.path.display()), "record missing"))?;
        let what = || format!("archived auction {id} in {}", seg.path.display());
        decode_payload(&payload, &what).map(Some)
    }

    /// Archived auction ids after `after`, in id order, at most `limit`.
    pub fn ids_after(&self, after: AuctionId, limit: usize) -> Vec<AuctionId> {
        self.read()
            .index
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Appends payloads made by `apply` (record numbers must follow on), without syncing.
    pub fn append(&self, payloads: &[Vec<u8>]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut inner = self.write();
        for payload in payloads {
            inner.append_one(payload)?;
        }
        Ok(())
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> Result<()> {
        let mut inner = self.write();
        if inner.unsynced {
            if let Some(seg) = inner.segments.last() {
                seg.file.sync_data().at(&seg.path)?;
            }
            inner.unsynced = false;
        }
        if inner.new_file {
            sync_dir(&inner.dir)?;
            inner.new_file = false;
        }
        Ok(())
    }

    /// Cuts every record after record `count` (they belong to log entries after the
    /// snapshot the node restored, and applying the log writes them again) and checks
    /// that the digest there is `digest`. Fewer than `count` records, or another digest,
    /// is an error: the archive does not hold what the snapshot says it does.
    pub fn truncate_to(&self, count: u64, digest: &[u8; 32]) -> Result<()> {
        let mut inner = self.write();
        let have = inner.count();
        if have < count {
            return Err(Error::corrupt(
                format!("archive {}", inner.dir.display()),
                format!(
                    "it holds {have} records but the snapshot needs {count}; the node cannot serve the \
                     archived auctions it is missing. Restore this node from a backup, or empty its data \
                     dir and add it to the cluster again"
                ),
            ));
        }
        if have > count || inner.tail_damaged {
            inner.cut_after(count)?;
            inner.tail_damaged = false;
        }
        let at = inner.segments.last().map_or(EMPTY_DIGEST, |s| s.end_digest);
        if &at != digest {
            return Err(Error::corrupt(
                format!("archive {}", inner.dir.display()),
                format!(
                    "its digest after record {count} is {}, the snapshot expects {}",
                    hex::encode(at),
                    hex::encode(digest)
                ),
            ));
        }
        Ok(())
    }

    /// Framed records from number `from` on, whole records only, about `max_bytes` (at
    /// least one record if any): what a node catching up fetches.
    pub fn frames_from(&self, from: u64, max_bytes: usize) -> Result<Vec<u8>> {
        self.frames_between(from, u64::MAX, max_bytes)
    }

    /// Like [`Archive::frames_from`], stopping after record `last`.
    pub fn frames_between(&self, from: u64, last: u64, max_bytes: usize) -> Result<Vec<u8>> {
        let inner = self.read();
        let mut out = Vec::new();
        let Some(start) = inner.segments.iter().rposition(|s| s.first_seq <= from) else {
            return Ok(out);
        };
        for seg in &inner.segments[start..] {
            let skip = from.saturating_sub(seg.first_seq) as usize;
            for (i, (_, offset, len)) in seg.entries.iter().enumerate().skip(skip) {
                if seg.first_seq + i as u64 > last {
                    return Ok(out);
                }
                let frame_len = FRAME_HEADER_LEN + *len as usize;
                if !out.is_empty() && out.len() + frame_len > max_bytes {
                    return Ok(out);
                }
                let mut buf = vec![0u8; frame_len];
                seg.file.read_exact_at(&mut buf, *offset).at(&seg.path)?;
                out.extend_from_slice(&buf);
            }
        }
        Ok(out)
    }

    /// Appends framed records fetched from another node, checking each frame's checksum
    /// and number; returns how many it appended.
    pub fn append_frames(&self, frames: &[u8]) -> Result<u64> {
        let mut inner = self.write();
        let mut at = 0usize;
        let mut appended = 0;
        while at < frames.len() {
            let what = || format!("archive records received, at byte {at}");
            let rest = &frames[at..];
            if rest.len() < FRAME_HEADER_LEN {
                return Err(Error::corrupt(what(), "torn frame header"));
            }
            let len = u32::from_le_bytes(rest[0..4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4"));
            let payload = rest
                .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
                .ok_or_else(|| Error::corrupt(what(), "torn frame"))?;
            if crc32fast::hash(payload) != crc || len < PAYLOAD_HEADER_LEN {
                return Err(Error::corrupt(what(), "checksum mismatch"));
            }
            inner.append_one(payload)?;
            appended += 1;
            at += FRAME_HEADER_LEN + len;
        }
        Ok(appended)
    }

    /// Reads every record from the start, checking each frame, the numbering, the
    /// indexes against the segments and the digest chain; calls `each` per record.
    pub fn verify(&self, mut each: impl FnMut(u64, &ArchivedAuction)) -> Result<ArchiveStats> {
        let inner = self.read();
        let mut digest = EMPTY_DIGEST;
        for seg in &inner.segments {
            let file_len = seg.file.metadata().at(&seg.path)?.len();
            let s = scan(&seg.file, &seg.path, seg.first_seq, digest)?;
            if let Some(e) = s.stopped {
                return Err(e);
            }
            if s.len != file_len {
                return Err(Error::corrupt(
                    format!("archive {}", seg.path.display()),
                    format!("{} bytes after the last whole record", file_len - s.len),
                ));
            }
            if s.records != seg.records || s.digest != seg.end_digest || s.entries != seg.entries {
                return Err(Error::corrupt(
                    format!("archive index {}", index_path(&seg.path).display()),
                    "it does not match its segment",
                ));
            }
            for (i, (id, offset, len)) in s.entries.iter().enumerate() {
                let payload = read_frame(
                    &seg.file,
                    &seg.path,
                    *offset,
                    offset + FRAME_HEADER_LEN as u64 + u64::from(*len),
                )?
                .expect("scanned");
                let what = || format!("archived auction {id} in {}", seg.path.display());
                let record = decode_payload(&payload, &what)?;
                each(seg.first_seq + i as u64, &record);
            }
            digest = s.digest;
        }
        drop(inner);
        Ok(self.stats())
    }

    pub fn dir(&self) -> PathBuf {
        self.read().dir.clone()
    }
}

impl Inner {
    fn count(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.first_seq + s.records - 1)
    }

    fn append_one(&mut self, payload: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidInput("the archive is open read-only".into()));
        }
        let want = self.count() + 1;
        let (seq, id) = payload_header(payload)
            .ok_or_else(|| Error::corrupt("archive record", "payload shorter than its header"))?;
        if seq != want {
            return Err(Error::corrupt(
                "archive record",
                format!("record number {seq}, expected {want}"),
            ));
        }
        let roll = self.segments.last().is_none_or(|s| s.len >= self.segment_bytes_max);
        if roll {
            self.seal_last()?;
            let path = self.dir.join(segment_name(want));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .at(&path)?;
            let end_digest = self.segments.last().map_or(EMPTY_DIGEST, |s| s.end_digest);
            self.segments.push(Segment {
                first_seq: want,
                path,
                file,
                len: 0,
                records: 0,
                end_digest,
                entries: Vec::new(),
            });
            self.new_file = true;
        }
        let position = self.segments.len() - 1;
        let seg = self.segments.last_mut().expect("a segment");
        let framed = frame(payload);
        // At the whole-record length, so a torn tail cut at open is overwritten.
        seg.file.write_all_at(&framed, seg.len).at(&seg.path)?;
        seg.entries.push((id, seg.len, payload.len() as u32));
        self.index.insert(
            id,
            Loc {
                segment: position,
                offset: seg.len,
                len: payload.len() as u32,
            },
        );
        seg.len += framed.len() as u64;
        seg.records += 1;
        seg.end_digest = chain(&seg.end_digest, payload);
        self.unsynced = true;
        Ok(())
    }

    /// fsyncs the last segment and writes its index, before a new segment starts.
    fn seal_last(&mut self) -> Result<()> {
        let Some(seg) = self.segments.last() else {
            return Ok(());
        };
        seg.file.sync_data().at(&seg.path)?;
        write_durably(&index_path(&seg.path), &encode_index(seg))?;
        self.unsynced = false;
        Ok(())
    }

    fn cut_after(&mut self, count: u64) -> Result<()> {
        // Whole segments after the cut go; the one holding the cut is shortened and
        // becomes the last (unsealed) segment again.
        while let Some(seg) = self.segments.last() {
            if seg.first_seq > count {
                let seg = self.segments.pop().expect("a segment");
                let _ = fs::remove_file(index_path(&seg.path));
                fs::remove_file(&seg.path).at(&seg.path)?;
                continue;
            }
            break;
        }
        if let Some(seg) = self.segments.last_mut() {
            let keep = (count + 1).saturating_sub(seg.first_seq) as usize;
            let on_disk = seg.file.metadata().at(&seg.path)?.len();
            if keep < seg.entries.len() || on_disk > seg.len {
                let cut_at = seg.entries.get(keep).map_or(seg.len, |e| e.1);
                seg.file.set_len(cut_at).at(&seg.path)?;
                seg.file.sync_all().at(&seg.path)?;
                let _ = fs::remove_file(index_path(&seg.path));
                seg.entries.truncate(keep);
                seg.len = cut_at;
                seg.records = keep as u64;
                // The digest at the cut: recomputed over the segment's kept records.
                let start = {
                    let position = self.segments.len() - 1;
                    if position == 0 {
                        EMPTY_DIGEST
                    } else {
                        self.segments[position - 1].end_digest
                    }
                };
                let seg = self.segments.last_mut().expect("a segment");
                let s = scan(&seg.file, &seg.path, seg.first_seq, start)?;
                seg.end_digest = s.digest;
            }
        }
        sync_dir(&self.dir)?;
        // Rebuild the index from what is left.
        self.index.clear();
        for (position, seg) in self.segments.iter().enumerate() {
            for (id, offset, len) in &seg.entries {
                self.index.insert(
                    *id,
                    Loc {
                        segment: position,
                        offset: *offset,
                        len: *len,
                    },
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AuctionSpec, AuctionStatus, IncrementRule, Outcome};

    fn record(id: AuctionId, title_len: usize) -> ArchivedAuction {
        ArchivedAuction {
            archived_at_ms: 5_000 + id,
            auction: Auction {
                id,
                spec: AuctionSpec {
                    seller: "sam".into(),
                    title: "t".repeat(title_len),
                    starting_price: 100,
                    increment: IncrementRule::Fixed(10),
                    reserve_price: None,
                    starts_at_ms: 1,
                    ends_at_ms: 2,
                    soft_close: None,
                    buy_now_price: None,
                },
                created_at_ms: 1,
                status: AuctionStatus::Closed,
                price: 0,
                leader: None,
                ends_at_ms: 2,
                extensions: 0,
                seq: 3,
                bids: Vec::new(),
                worker: None,
                outcome: Some(Outcome::NoBids),
                closed_at_ms: Some(2),
            },
            format: None,
            rounds: None,
        }
    }

    /// Payloads of records 1..=n for auctions 10, 20, 30, …, and the digest after them.
    fn payloads(n: u64) -> (Vec<Vec<u8>>, [u8; 32]) {
        let mut digest = EMPTY_DIGEST;
        let payloads: Vec<Vec<u8>> = (1..=n)
            .map(|seq| {
                let p = encode_payload(seq, &record(seq * 10, 100));
                digest = chain(&digest, &p);
                p
            })
            .collect();
        (payloads, digest)
    }

    fn segments_in(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir).unwrap().into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn records_are_found_by_auction_and_survive_a_reopen_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (all, digest) = payloads(40);
        {
            let a = Archive::open_with_segment_bytes(dir.path(), 1_000).unwrap();
            a.append(&all[..25]).unwrap();
            a.append(&all[25..]).unwrap();
            a.sync().unwrap();
            assert_eq!((a.count(), a.digest()), (40, digest));
            assert!(a.stats().segments > 3, "small segments roll: {:?}", a.stats());
            assert_eq!(a.get(70).unwrap().unwrap(), record(70, 100));
            assert_eq!(a.get(75).unwrap(), None);
        }
        let a = Archive::open(dir.path()).unwrap();
        assert_eq!((a.count(), a.digest()), (40, digest));
        assert_eq!(a.get(400).unwrap().unwrap(), record(400, 100));
        assert_eq!(a.ids_after(380, 10), vec![390, 400]);
        let mut seen = Vec::new();
        let stats = a.verify(|seq, r| seen.push((seq, r.auction.id))).unwrap();
        assert_eq!(stats.records, 40);
        assert_eq!(seen.len(), 40);
        assert_eq!(seen[39], (40, 400));
        // Sealed segments have their index files; the last one does not.
        let segs = segments_in(dir.path());
        assert!(index_path(&segs[0]).exists());
        assert!(!index_path(segs.last().unwrap()).exists());
    }

    #[test]
    fn a_torn_tail_is_cut_at_open_and_writing_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let (all, _) = payloads(5);
        {
            let a = Archive::open(dir.path()).unwrap();
            a.append(&all[..4]).unwrap();
            a.sync().unwrap();
        }
        let seg = segments_in(dir.path()).pop().unwrap();
        let whole = fs::metadata(&seg).unwrap().len();
        // A crash in the middle of record 5: half its frame reached the disk.
        let framed = frame(&all[4]);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, &framed[..framed.len() / 2]).unwrap();
        drop(f);
        let a = Archive::open(dir.path()).unwrap();
        assert_eq!(a.count(), 4);
        assert!(fs::metadata(&seg).unwrap().len() > whole, "opening cuts nothing");
        // The snapshot needs more than the whole records: an error, and nothing is cut.
        let (_, at_4) = payloads(4);
        assert!(a.truncate_to(5, &at_4).is_err());
        assert!(fs::metadata(&seg).unwrap().len() > whole);
        a.truncate_to(4, &at_4).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), whole, "the torn frame is cut off");
        a.append(&all[4..]).unwrap();
        a.sync().unwrap();
        let (_, digest) = payloads(5);
        let a = Archive::open(dir.path()).unwrap();
        assert_eq!((a.count(), a.digest()), (5, digest));
        assert_eq!(a.get(50).unwrap().unwrap().auction.id, 50);
    }

    #[test]
    fn damage_to_a_sealed_segment_is_an_error_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (all, _) = payloads(20);
        {
            let a = Archive::open_with_segment_bytes(dir.path(), 1_000).unwrap();
            a.append(&all).unwrap();
            a.sync().unwrap();
        }
        let first = segments_in(dir.path()).remove(0);
        let mut bytes = fs::read(&first).unwrap();
        bytes[FRAME_HEADER_LEN + PAYLOAD_HEADER_LEN + 3] ^= 0x40;
        fs::write(&first, &bytes).unwrap();
        // Opening trusts the index; verifying reads every byte.
        let a = Archive::open_read_only(dir.path()).unwrap();
        let err = a.verify(|_, _| {}).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        // Without its index, the sealed segment is scanned at open, and refused.
        fs::remove_file(index_path(&first)).unwrap();
        let err = Archive::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn truncating_keeps_what_a_snapshot_holds_and_checks_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (all, _) = payloads(30);
        let a = Archive::open_with_segment_bytes(dir.path(), 1_000).unwrap();
        a.append(&all).unwrap();
        a.sync().unwrap();
        let (_, at_12) = payloads(12);
        a.truncate_to(12, &at_12).unwrap();
        assert_eq!((a.count(), a.digest()), (12, at_12));
        assert_eq!(a.get(130).unwrap(), None, "record 13 is gone");
        assert!(a.get(120).unwrap().is_some());
        // The log writes the rest again.
        a.append(&all[12..]).unwrap();
        let (_, at_30) = payloads(30);
        assert_eq!(a.digest(), at_30);
        drop(a);
        let a = Archive::open(dir.path()).unwrap();
        assert_eq!((a.count(), a.digest()), (30, at_30));
        a.verify(|_, _| {}).unwrap();
        // Asking for more than it holds, or another digest, is an error.
        assert!(a.truncate_to(31, &at_30).is_err());
        assert!(a.truncate_to(30, &at_12).is_err());
        a.truncate_to(0, &EMPTY_DIGEST).unwrap();
        assert_eq!(a.count(), 0);
    }

    #[test]
    fn records_fetched_in_chunks_rebuild_the_same_archive() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (all, digest) = payloads(25);
        let src = Archive::open_with_segment_bytes(src_dir.path(), 1_500).unwrap();
        src.append(&all).unwrap();
        let dst = Archive::open(dst_dir.path()).unwrap();
        dst.append(&all[..3]).unwrap();
        while dst.count() < src.count() {
            let chunk = src.frames_from(dst.count() + 1, 700).unwrap();
            assert!(!chunk.is_empty());
            dst.append_frames(&chunk).unwrap();
        }
        assert_eq!((dst.count(), dst.digest()), (25, digest));
        // A damaged chunk is refused whole at the bad frame, and a gap in numbering too.
        let mut bad = src.frames_from(1, 10_000).unwrap();
        bad[FRAME_HEADER_LEN + 20] ^= 1;
        let other_dir = tempfile::tempdir().unwrap();
        let other = Archive::open(other_dir.path()).unwrap();
        assert!(other.append_frames(&bad).is_err());
        assert!(other.append_frames(&src.frames_from(2, 10_000).unwrap()).is_err());
    }

    #[test]
    fn a_read_only_open_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (all, _) = payloads(3);
        {
            let a = Archive::open(dir.path()).unwrap();
            a.append(&all).unwrap();
            a.sync().unwrap();
        }
        let seg = segments_in(dir.path()).pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, b"torn").unwrap();
        drop(f);
        let before = fs::read(&seg).unwrap();
        let a = Archive::open_read_only(dir.path()).unwrap();
        assert_eq!(a.count(), 3);
        assert!(a.verify(|_, _| {}).is_err(), "the torn tail is reported");
        assert!(a.append(&all).is_err());
        assert_eq!(fs::read(&seg).unwrap(), before);
    }
}
