//! The print directory on disk, and the steps that make a batch appear in
//! `ready/` all at once.
//!
//! ```text
//! {dir}/lock                          held (flock) by the one process writing here
//! {dir}/open/{batch}.csv              rows being appended
//! {dir}/open/{batch}.batch.json       the batch's journal: campaign, columns, encoding,
//!                                     opening time. Written before the CSV, removed
//!                                     last, so a crash at any step leaves a record
//!                                     recovery can finish the batch from
//! {dir}/open/.{name}.tmp              a journal or manifest being written
//! {dir}/ready/{batch}.csv             a closed batch: moved here whole, never written
//! {dir}/ready/{batch}.manifest.json   written last: a batch is ready when its
//!                                     manifest exists
//! {dir}/index/{campaign}.ids          `job_id\tbatch_id` lines of every closed batch,
//!                                     for deduplication across restarts
//! ```
//!
//! Every file is fsynced before it is renamed into place, and the directory
//! after, so what a reader sees survives a power cut too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PrintError;

pub(crate) struct Dirs {
    pub root: PathBuf,
    pub open: PathBuf,
    pub ready: PathBuf,
    pub index: PathBuf,
}

impl Dirs {
    pub fn new(root: &Path) -> Dirs {
        Dirs {
            root: root.to_owned(),
            open: root.join("open"),
            ready: root.join("ready"),
            index: root.join("index"),
        }
    }

    pub fn create(&self) -> Result<(), PrintError> {
        for dir in [&self.root, &self.open, &self.ready, &self.index] {
            fs::create_dir_all(dir).map_err(|e| PrintError::io(dir, e))?;
        }
        Ok(())
    }

    pub fn open_csv(&self, batch: &str) -> PathBuf {
        self.open.join(format!("{batch}.csv"))
    }
    pub fn ready_csv(&self, batch: &str) -> PathBuf {
        self.ready.join(format!("{batch}.csv"))
    }
    pub fn journal(&self, batch: &str) -> PathBuf {
        self.open.join(format!("{batch}{JOURNAL}"))
    }
    pub fn manifest(&self, batch: &str) -> PathBuf {
        self.ready.join(format!("{batch}.manifest.json"))
    }
    /// Temporary files live in `open/`, never in `ready/`, so a vendor listing
    /// `ready/` only ever sees finished names.
    pub fn tmp(&self, name: &str) -> PathBuf {
        self.open.join(format!(".{name}.tmp"))
    }
    pub fn index(&self, stem: &str) -> PathBuf {
        self.index.join(format!("{stem}.ids"))
    }
}

pub(crate) const JOURNAL: &str = ".batch.json";

/// What recovery needs to finish a batch the way it was begun, even if the
/// settings changed since: kept in `open/{batch}.batch.json` while it is open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub batch: String,
    pub campaign: String,
    /// The file-name stem of the campaign (its index file).
    pub stem: String,
    pub encoding: String,
    pub columns: Vec<String>,
    /// RFC 3339; a batch is opened for its first row.
    pub opened_at: String,
}

/// `ready/{batch}.manifest.json`: what a vendor checks before printing.
#[derive(Debug, Serialize)]
pub(crate) struct Manifest<'a> {
    pub batch: &'a str,
    pub campaign: &'a str,
    pub file: String,
    pub encoding: &'a str,
    pub columns: &'a [String],
    pub rows: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the CSV file's bytes.
    pub sha256: String,
    /// RFC 3339 times of the first and last row.
    pub first_at: &'a str,
    pub last_at: &'a str,
}

pub(crate) fn hex(digest: Sha256) -> String {
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), PrintError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PrintError::io(dir, e))
}

/// Writes `bytes` to `path` so that a reader sees either nothing or all of it:
/// a temporary file, fsynced, renamed into place, the directory fsynced.
pub(crate) fn write_atomically(dirs: &Dirs, path: &Path, bytes: &[u8]) -> Result<(), PrintError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dirs.tmp(&name);
    let mut file = File::create(&tmp).map_err(|e| PrintError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| PrintError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| PrintError::io(path, e))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Appends `job_id\tbatch_id` lines to a campaign's index and fsyncs it. Job ids
/// hold no tabs or newlines: they are printed verbatim and cells have no
/// control characters.
pub(crate) fn append_index<'a>(
    path: &Path,
    batch: &str,
    job_ids: impl Iterator<Item = &'a str>,
) -> Result<(), PrintError> {
    let mut lines = String::new();
    for id in job_ids {
        lines.push_str(id);
        lines.push('\t');
        lines.push_str(batch);
        lines.push('\n');
    }
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| PrintError::io(path, e))?;
    file.write_all(lines.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| PrintError::io(path, e))?;
    if created {
        if let Some(parent) = path.parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// The `(job_id, batch_id)` pairs of a campaign's index; none if it has none yet.
pub(crate) fn read_index(path: &Path) -> Result<Vec<(String, String)>, PrintError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PrintError::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(job, batch)| (job.to_owned(), batch.to_owned()))
        .collect())
}

/// Cuts a file before its first line that is torn (no `\n`) or not `good`,
/// and returns the bytes kept.
///
/// Only a crash leaves such lines, and only in the part written after the last
/// fsync: a torn last line, or after a power cut a tail of zeros or of blocks
/// that never reached the disk. Everything after the first bad line is from
/// that part too, so none of it was acknowledged; it is dropped rather than
/// read as data or glued to the next append.
pub(crate) fn cut_bad_tail(
    path: &Path,
    mut good: impl FnMut(&[u8]) -> bool,
) -> Result<Vec<u8>, PrintError> {
    let err = |e| PrintError::io(path, e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(err)?;
    let mut keep = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") || line.contains(&0) || !good(line) {
            break;
        }
        keep += line.len();
    }
    if keep < bytes.len() {
        bytes.truncate(keep);
        file.set_len(keep as u64)
            .and_then(|()| file.sync_data())
            .map_err(err)?;
    }
    Ok(bytes)
}

/// Files in `dir` whose names end with `suffix`, sorted.
pub(crate) fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, PrintError> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| PrintError::io(dir, e))? {
        let entry = entry.map_err(|e| PrintError::io(dir, e))?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), PrintError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PrintError::io(path, e)),
        _ => Ok(()),
    }
}

/// The SHA-256 of some bytes, for recovery (live batches hash as they write).
pub(crate) fn sha256_of(bytes: &[u8]) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher
}
