//! Backup files: one snapshot and the archive records it refers to, in one file, as
//! `GET /v1/admin/backup` streams it and `gavel snapshot restore` reads it.
//!
//! ```text
//! offset  size  field
//! 0       8     magic           b"GAVELBAK"
//! 8       2     version         u16 LE (1)
//! 10      8     snapshot_len    u64 LE
//! 18      S     snapshot        a whole snapshot file (crate::snapshot), with its checks
//! 18+S    8     records         u64 LE: archive records that follow (the snapshot's count)
//! 26+S    …     records         each framed as in an archive segment (crate::archive)
//! end-36  32    digest          the archive digest after the last record
//! end-4   4     crc32           CRC-32 of every byte before it
//! ```
//!
//! The reader checks the snapshot, every record's frame and numbering, the digest
//! against the snapshot's, and the whole file's CRC, and fails on the first problem.

use std::io::Read;

use crate::archive::{chain, payload_header, EMPTY_DIGEST, FRAME_HEADER_LEN, RECORD_PAYLOAD_MAX_BYTES};
use crate::snapshot::{decode_snapshot, SnapshotFile, SNAPSHOT_FILE_MAX_BYTES};
use crate::{AuctionBook, Error, Result};

pub const BACKUP_MAGIC: &[u8; 8] = b"GAVELBAK";
pub const BACKUP_VERSION: u16 = 1;

/// The bytes before the records: magic, version, the snapshot, the record count.
pub fn encode_head(snapshot: &[u8], records: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(26 + snapshot.len());
    out.extend_from_slice(BACKUP_MAGIC);
    out.extend_from_slice(&BACKUP_VERSION.to_le_bytes());
    out.extend_from_slice(&(snapshot.len() as u64).to_le_bytes());
    out.extend_from_slice(snapshot);
    out.extend_from_slice(&records.to_le_bytes());
    out
}

/// The bytes after the records: the digest, then the CRC of everything before the CRC
/// (`crc` must already have taken in every byte before the digest).
pub fn encode_trailer(digest: &[u8; 32], mut crc: crc32fast::Hasher) -> Vec<u8> {
    crc.update(digest);
    let mut out = digest.to_vec();
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out
}

/// Whether `bytes` start like a backup file.
pub fn is_backup(prefix: &[u8]) -> bool {
    prefix.starts_with(BACKUP_MAGIC)
}

/// Reads a backup file as a stream, checking as it goes.
pub struct BackupReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    /// The snapshot file's bytes and what they decode to.
    pub snapshot: Vec<u8>,
    pub file: SnapshotFile,
    /// Records the file holds, and the count and digest the snapshot's book expects.
    pub records: u64,
    pub expected_digest: [u8; 32],
    read: u64,
    digest: [u8; 32],
    /// Bytes read so far (for messages).
    offset: u64,
}

impl<R: Read> BackupReader<R> {
    /// Reads and checks the head and the snapshot.
    pub fn open(mut input: R) -> Result<Self> {
        let mut crc = crc32fast::Hasher::new();
        let mut head = [0u8; 18];
        read_exact(&mut input, &mut head, &mut crc, 0)?;
        if &head[0..8] != BACKUP_MAGIC {
            return Err(Error::corrupt("backup file", "it does not start with GAVELBAK"));
        }
        let version = u16::from_le_bytes(head[8..10].try_into().expect("2"));
        if version != BACKUP_VERSION {
            return Err(Error::corrupt("backup file", format!("unsupported version {version}")));
        }
        let snapshot_len = u64::from_le_bytes(head[10..18].try_into().expect("8"));
        if snapshot_len > SNAPSHOT_FILE_MAX_BYTES {
            return Err(Error::corrupt(
                "backup file",
                format!("a snapshot of {snapshot_len} bytes"),
            ));
        }
        let mut snapshot = vec![0u8; snapshot_len as usize];
        read_exact(&mut input, &mut snapshot, &mut crc, 18)?;
        let file = decode_snapshot(&snapshot, "the backup's snapshot")?;
        let book = AuctionBook::decode(file.payload(&snapshot))?;
        let (expected_records, expected_digest) = book.archive_ref();
        let mut count = [0u8; 8];
        read_exact(&mut input, &mut count, &mut crc, 18 + snapshot_len)?;
        let records = u64::from_le_bytes(count);
        if records != expected_records {
            return Err(Error::corrupt(
                "backup file",
                format!("it holds {records} archive records, its snapshot refers to {expected_records}"),
            ));
        }
        Ok(BackupReader {
            input,
            crc,
            snapshot,
            file,
            records,
            expected_digest,
            read: 0,
            digest: EMPTY_DIGEST,
            offset: 26 + snapshot_len,
        })
    }

    /// The next records, framed, about `max_bytes` of them (at least one); `None` once
    /// every record is read.
    pub fn next_frames(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>> {
        if self.read == self.records {
            return Ok(None);
        }
        let mut out = Vec::new();
        while self.read < self.records && (out.is_empty() || out.len() < max_bytes) {
            let at = self.offset;
            let what = || format!("backup file, archive record {} at byte {at}", self.read + 1);
            let mut header = [0u8; FRAME_HEADER_LEN];
            read_exact(&mut self.input, &mut header, &mut self.crc, at)?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4")) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4"));
            if len > RECORD_PAYLOAD_MAX_BYTES {
                return Err(Error::corrupt(what(), format!("implausible length {len}")));
            }
            let mut payload = vec![0u8; len];
            read_exact(
                &mut self.input,
                &mut payload,
                &mut self.crc,
                at + FRAME_HEADER_LEN as u64,
            )?;
            if crc32fast::hash(&payload) != crc {
                return Err(Error::corrupt(what(), "checksum mismatch"));
            }
            if payload_header(&payload).map(|(seq, _)| seq) != Some(self.read + 1) {
                return Err(Error::corrupt(what(), "out of order"));
            }
            self.digest = chain(&self.digest, &payload);
            self.read += 1;
            self.offset += (FRAME_HEADER_LEN + len) as u64;
            out.extend_from_slice(&header);
            out.extend_from_slice(&payload);
        }
        Ok(Some(out))
    }

    /// Reads the trailer and checks the digest and the CRC; nothing may follow.
    pub fn finish(mut self) -> Result<()> {
        while self.next_frames(usize::MAX)?.is_some() {}
        let mut digest = [0u8; 32];
        read_exact(&mut self.input, &mut digest, &mut self.crc, self.offset)?;
        let mut crc_bytes = [0u8; 4];
        self.input
            .read_exact(&mut crc_bytes)
            .map_err(|e| Error::corrupt("backup file", format!("truncated before its checksum: {e}")))?;
        if digest != self.digest || digest != self.expected_digest {
            return Err(Error::corrupt(
                "backup file",
                "the archive records do not match the digest the snapshot expects",
            ));
        }
        if self.crc.finalize() != u32::from_le_bytes(crc_bytes) {
            return Err(Error::corrupt("backup file", "checksum mismatch over the whole file"));
        }
        let mut rest = [0u8; 1];
        if self.input.read(&mut rest).unwrap_or(0) != 0 {
            return Err(Error::corrupt("backup file", "bytes after its checksum"));
        }
        Ok(())
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], crc: &mut crc32fast::Hasher, at: u64) -> Result<()> {
    input
        .read_exact(buf)
        .map_err(|e| Error::corrupt("backup file", format!("truncated at byte {at}: {e}")))?;
    crc.update(buf);
    Ok(())
}
