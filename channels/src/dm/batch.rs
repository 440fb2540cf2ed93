//! The print batch writer: direct-mail jobs become rows of CSV files a print
//! vendor collects from `ready/`.
//!
//! Each campaign has at most one open batch at a time. A batch closes when it
//! has `batch_max_rows` rows, when it is older than `batch_max_age` (checked by
//! [`Channel::tick`]) or at [`Channel::shutdown`]; closing moves it whole to
//! `ready/` and writes its manifest last. The file layout and the crash-safe
//! steps are described in [`super::disk`].
//!
//! # Exactly once
//!
//! `send` returns `Ok` only once the row is on disk (fsynced), and a job id
//! already written in one of its campaign's batches is not written again: the
//! send answers with the batch it is in. That holds across restarts, because
//! closed batches are listed in the campaign's index and leftover open ones are
//! recovered (and indexed) by [`PrintBatches::open`]. So a job redelivered after
//! a crash — its row written, its acknowledgement lost — is printed once.
//!
//! # Group commit
//!
//! One fsync per row would cap a disk at a few hundred rows a second. Instead
//! rows are appended to the open batch's in-memory buffer, and whichever waiting
//! send takes the batch's sync lock first writes the whole buffer and fsyncs
//! once, on a blocking thread; the sends queued behind it find their rows
//! already durable and return. Under load one fsync covers as many rows as
//! arrived while the previous one ran.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex as AsyncMutex;

use super::disk::{self, Dirs, Journal, Manifest, JOURNAL};
use super::encoding::{TextEncoding, Unmappable};
use super::row::{default_columns, Column, RowEncoder};
use crate::file::file_stem;
use crate::{Channel, Message, SendError, Sent};

/// The campaign of jobs that have none.
const DEFAULT_CAMPAIGN: &str = "default";

/// `[channels.dm]` as the writer needs it.
#[derive(Debug, Clone)]
pub struct PrintSettings {
    /// Holds `open/`, `ready/` and `index/`.
    pub dir: PathBuf,
    pub encoding: TextEncoding,
    pub unmappable: Unmappable,
    /// A batch closes when it has this many rows.
    pub batch_max_rows: usize,
    /// A batch closes at the first tick after it is this old (counted from its first row).
    pub batch_max_age: Duration,
    /// Must include [`Column::JobId`].
    pub columns: Vec<Column>,
}

impl PrintSettings {
    /// The documented defaults: UTF-8, failing on unencodable characters, 5,000
    /// rows or 10 minutes a batch, [`default_columns`].
    pub fn new(dir: impl Into<PathBuf>) -> PrintSettings {
        PrintSettings {
            dir: dir.into(),
            encoding: TextEncoding::Utf8,
            unmappable: Unmappable::Fail,
            batch_max_rows: 5000,
            batch_max_age: Duration::from_secs(600),
            columns: default_columns(),
        }
    }
}

/// Why the print directory cannot be opened or a batch not be closed.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("channels.dm: {0}")]
    Settings(String),
    #[error("{}: another process is writing print batches in this directory", path.display())]
    Locked { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A leftover file recovery cannot make sense of; an operator must look.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

impl PrintError {
    pub(crate) fn io(path: &Path, source: io::Error) -> PrintError {
        PrintError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn corrupt(path: &Path, message: impl Into<String>) -> PrintError {
        PrintError::Corrupt {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// The direct-mail channel: print batches in a directory (see the module docs).
pub struct PrintBatches {
    inner: Arc<Inner>,
}

struct Inner {
    dirs: Dirs,
    rows: RowEncoder,
    encoding: TextEncoding,
    column_names: Vec<String>,
    max_rows: u64,
    max_age: Duration,
    campaigns: Mutex<HashMap<String, Arc<Campaign>>>,
    /// Batches no longer open for rows but not yet in `ready/` (full, aged, or
    /// whose closing failed and is retried at the next tick).
    closing: Mutex<Vec<Arc<Batch>>>,
    /// Serializes appends to index files, which two closing batches of one
    /// campaign may otherwise interleave.
    index_lock: Mutex<()>,
    syncs: AtomicU64,
    /// Held for the writer's lifetime: recovery must not take over the open
    /// batches of another live process.
    _lock: File,
}

struct Campaign {
    name: String,
    stem: String,
    state: AsyncMutex<CampaignState>,
}

#[derive(Default)]
struct CampaignState {
    /// Whether `written` holds the index from disk yet (read at first use).
    loaded: bool,
    /// Every job id of the campaign's batches, and where it is.
    written: HashMap<Box<str>, Written>,
    open: Option<Arc<Batch>>,
}

enum Written {
    /// In a batch closed before this process started.
    Closed(Arc<str>),
    /// Row `seq` of a batch of this process.
    In(Arc<Batch>, u64),
}

/// What `place` decided for a job.
enum Placement {
    /// Already printed in a closed batch.
    Done(Arc<str>),
    /// Row `seq` of `batch`: wait until it is durable; close the batch after if
    /// this row filled it.
    Wait {
        batch: Arc<Batch>,
        seq: u64,
        full: bool,
    },
}

struct Batch {
    id: Arc<str>,
    journal: Journal,
    opened: Instant,
    /// Rows appended but not written yet.
    pending: Mutex<Pending>,
    /// The file side, held by the one task writing and syncing.
    io: Arc<AsyncMutex<BatchIo>>,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The previous buffer, kept for reuse.
    spare: Vec<u8>,
    ids: Vec<Box<str>>,
    /// Rows appended so far: the last row's `seq`.
    appended: u64,
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
}

struct BatchIo {
    file: Option<File>,
    /// Bytes durable in the file.
    len: u64,
    hasher: Sha256,
    /// Job ids of the rows durable in the file, in order.
    ids: Vec<Box<str>>,
    /// Every row up to this `seq` is durable.
    synced: u64,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    /// The CSV is in `ready/`; the manifest and index are still to be written.
    Moved,
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data
    // is still consistent (every update is a single push or swap).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn file_io(path: &Path, e: impl std::fmt::Display) -> SendError {
    SendError::transient("file_io", format!("{}: {e}", path.display()))
}

impl PrintBatches {
    /// Opens (creating) the print directory and recovers what a previous run
    /// left in `open/`: torn last rows are cut, leftover batches are closed to
    /// `ready/`, and manifests a crash kept from being written are written.
    pub fn open(settings: PrintSettings) -> Result<PrintBatches, PrintError> {
        if settings.batch_max_rows == 0 {
            return Err(PrintError::Settings(
                "batch_max_rows must be at least 1".into(),
            ));
        }
        let column_names = settings
            .columns
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let rows = RowEncoder::new(settings.columns, settings.encoding, settings.unmappable)
            .map_err(PrintError::Settings)?;
        let dirs = Dirs::new(&settings.dir);
        dirs.create()?;
        let lock_path = dirs.root.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| PrintError::io(&lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(PrintError::Locked { path: lock_path }),
            Err(TryLockError::Error(e)) => return Err(PrintError::io(&lock_path, e)),
        }
        let inner = Inner {
            dirs,
            rows,
            encoding: settings.encoding,
            column_names,
            max_rows: settings.batch_max_rows as u64,
            max_age: settings.batch_max_age,
            campaigns: Mutex::default(),
            closing: Mutex::default(),
            index_lock: Mutex::default(),
            syncs: AtomicU64::new(0),
            _lock: lock_file,
        };
        inner.recover()?;
        Ok(PrintBatches {
            inner: Arc::new(inner),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dirs.root
    }

    /// How many group commits (fsyncs of rows) this writer has done.
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Closes the batches older than `batch_max_age`, and retries batches whose
    /// closing failed before. What [`Channel::tick`] does, with the error.
    pub async fn close_aged(&self) -> Result<(), PrintError> {
        let max_age = self.inner.max_age;
        self.inner.detach(|b| b.opened.elapsed() >= max_age).await;
        self.inner.close_detached().await
    }

    /// Closes every batch. What [`Channel::shutdown`] does, with the error (a
    /// batch that could not be closed is recovered at the next start).
    pub async fn close_all(&self) -> Result<(), PrintError> {
        self.inner.detach(|_| true).await;
        self.inner.close_detached().await
    }
}

#[async_trait::async_trait]
impl Channel for PrintBatches {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        // Encoding (and every check) happens before any lock is taken.
        let row = self.inner.rows.row(message)?;
        let campaign = self.inner.campaign(message.campaign.as_deref());
        let batch_id = match self.inner.place(&campaign, &message.job_id, &row).await? {
            Placement::Done(id) => id,
            Placement::Wait { batch, seq, full } => {
                self.inner.wait_durable(&batch, seq).await?;
                if full {
                    // The row is durable either way; a batch whose closing
                    // fails stays listed and the next tick retries it.
                    let _ = self.inner.close(&batch).await;
                }
                batch.id.clone()
            }
        };
        let mut sent = Sent::new(batch_id.as_ref());
        sent.details.push(("batch", json!(batch_id.as_ref())));
        Ok(sent)
    }

    async fn tick(&self) {
        // Failures are retried at the next tick.
        let _ = self.close_aged().await;
    }

    async fn shutdown(&self) {
        // What cannot be closed now is recovered at the next start.
        let _ = self.close_all().await;
    }
}

impl Inner {
    fn campaign(&self, name: Option<&str>) -> Arc<Campaign> {
        let name = name.filter(|n| !n.is_empty()).unwrap_or(DEFAULT_CAMPAIGN);
        let mut campaigns = lock(&self.campaigns);
        if let Some(campaign) = campaigns.get(name) {
            return campaign.clone();
        }
        let campaign = Arc::new(Campaign {
            name: name.to_owned(),
            // Sanitized, and hashed when sanitizing changed it: `../x` stays
            // inside the directory and two campaigns never share a file.
            stem: file_stem(name),
            state: AsyncMutex::default(),
        });
        campaigns.insert(name.to_owned(), campaign.clone());
        campaign
    }

    /// Decides where the job's row goes, under the campaign's lock: nowhere if
    /// the job is already written, else the campaign's open batch (opened now if
    /// there is none).
    async fn place(
        self: &Arc<Self>,
        campaign: &Arc<Campaign>,
        job_id: &str,
        row: &[u8],
    ) -> Result<Placement, SendError> {
        let mut state = campaign.state.lock().await;
        if !state.loaded {
            let path = self.dirs.index(&campaign.stem);
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || disk::read_index(&path)).await
            };
            let pairs = read
                .map_err(|e| file_io(&path, e))?
                .map_err(|e| SendError::transient("file_io", e.to_string()))?;
            state.written = written_from_index(pairs);
            state.loaded = true;
        }
        match state.written.get(job_id) {
            Some(Written::Closed(batch)) => return Ok(Placement::Done(batch.clone())),
            Some(Written::In(batch, seq)) => {
                return Ok(Placement::Wait {
                    batch: batch.clone(),
                    seq: *seq,
                    full: false,
                });
            }
            None => {}
        }
        let batch = match &state.open {
            Some(batch) => batch.clone(),
            None => {
                let (inner, c) = (self.clone(), campaign.clone());
                let batch = tokio::task::spawn_blocking(move || inner.create_batch(&c))
                    .await
                    .map_err(|e| file_io(&self.dirs.open, e))?
                    .map_err(|e| SendError::transient("file_io", e.to_string()))?;
                let batch = Arc::new(batch);
                state.open = Some(batch.clone());
                batch
            }
        };
        let seq = batch.push(row, job_id);
        state
            .written
            .insert(job_id.into(), Written::In(batch.clone(), seq));
        let full = seq >= self.max_rows;
        if full {
            state.open = None;
            lock(&self.closing).push(batch.clone());
        }
        Ok(Placement::Wait { batch, seq, full })
    }

    /// Returns once row `seq` of `batch` is durable: either a sync that started
    /// after it was appended already covered it, or this task writes and
    /// fsyncs everything pending, for every waiting send at once.
    async fn wait_durable(self: &Arc<Self>, batch: &Arc<Batch>, seq: u64) -> Result<(), SendError> {
        let io = batch.io.clone().lock_owned().await;
        if seq <= io.synced {
            return Ok(());
        }
        let (inner, b) = (self.clone(), batch.clone());
        let flushed = tokio::task::spawn_blocking(move || {
            let mut io = io;
            io.flush(&b, &inner.syncs)
        })
        .await;
        // A flush covers every row appended before it, this one included.
        let path = self.dirs.open_csv(&batch.id);
        match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(file_io(&path, e)),
            Err(e) => Err(file_io(&path, e)),
        }
    }

    /// Opens a new batch for `campaign`: the journal first, then the CSV with
    /// its header, both durable before any row is accepted.
    fn create_batch(&self, campaign: &Campaign) -> Result<Batch, PrintError> {
        let opened_at = Timestamp::now();
        let mut id = batch_id(&campaign.stem, opened_at);
        while self.dirs.journal(&id).exists() || self.dirs.ready_csv(&id).exists() {
            id = batch_id(&campaign.stem, Timestamp::now());
        }
        let journal = Journal {
            batch: id.clone(),
            campaign: campaign.name.clone(),
            stem: campaign.stem.clone(),
            encoding: self.encoding.as_str().to_owned(),
            columns: self.column_names.clone(),
            opened_at: opened_at.to_string(),
        };
        let journal_path = self.dirs.journal(&id);
        let json = serde_json::to_vec_pretty(&journal)
            .map_err(|e| PrintError::io(&journal_path, e.into()))?;
        disk::write_atomically(&self.dirs, &journal_path, &json)?;
        let path = self.dirs.open_csv(&id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| PrintError::io(&path, e))?;
        let header = self.rows.header();
        file.write_all_at(header, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| PrintError::io(&path, e))?;
        disk::fsync_dir(&self.dirs.open)?;
        Ok(Batch::new(journal, file, header))
    }

    /// Takes the open batches `due` says to close off their campaigns: new rows
    /// go to new batches from now on.
    async fn detach(&self, due: impl Fn(&Batch) -> bool) {
        let campaigns: Vec<Arc<Campaign>> = lock(&self.campaigns).values().cloned().collect();
        for campaign in campaigns {
            let mut state = campaign.state.lock().await;
            if state.open.as_deref().is_some_and(&due) {
                if let Some(batch) = state.open.take() {
                    lock(&self.closing).push(batch);
                }
            }
        }
    }

    async fn close_detached(self: &Arc<Self>) -> Result<(), PrintError> {
        let batches = lock(&self.closing).clone();
        let mut first_error = None;
        for batch in batches {
            if let Err(e) = self.close(&batch).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn close(self: &Arc<Self>, batch: &Arc<Batch>) -> Result<(), PrintError> {
        let io = batch.io.clone().lock_owned().await;
        let (inner, b) = (self.clone(), batch.clone());
        tokio::task::spawn_blocking(move || {
            let mut io = io;
            inner.close_blocking(&mut io, &b)
        })
        .await
        .map_err(|e| PrintError::io(&self.dirs.open_csv(&batch.id), io::Error::other(e)))??;
        lock(&self.closing).retain(|b| !Arc::ptr_eq(b, batch));
        Ok(())
    }

    /// Closing, in steps that can be retried: write what is pending, move the
    /// CSV to `ready/`, then the manifest, the index, and the journal's removal.
    fn close_blocking(&self, io: &mut BatchIo, batch: &Batch) -> Result<(), PrintError> {
        let id = &batch.id;
        if io.stage == Stage::Open {
            io.flush(batch, &self.syncs)
                .map_err(|e| PrintError::io(&self.dirs.open_csv(id), e))?;
            io.file = None;
            if io.ids.is_empty() {
                // Nothing to print (a batch is opened for a row, so only if
                // the files were tampered with).
                disk::remove_if_exists(&self.dirs.open_csv(id))?;
                disk::remove_if_exists(&self.dirs.journal(id))?;
                io.stage = Stage::Closed;
                return Ok(());
            }
            self.move_to_ready(id)?;
            io.stage = Stage::Moved;
        }
        if io.stage == Stage::Moved {
            let (first_at, last_at) = batch.row_times();
            let summary = Summary {
                rows: io.ids.len() as u64,
                bytes: io.len,
                sha256: disk::hex(io.hasher.clone()),
                first_at,
                last_at,
            };
            self.publish(
                &batch.journal,
                &summary,
                io.ids.iter().map(|id| &**id),
                true,
            )?;
            io.ids = Vec::new();
            io.stage = Stage::Closed;
            // Job ids still point at the batch (deduplication); its buffers can go.
            batch.release_buffers();
        }
        Ok(())
    }

    fn move_to_ready(&self, batch: &str) -> Result<(), PrintError> {
        let (from, to) = (self.dirs.open_csv(batch), self.dirs.ready_csv(batch));
        fs::rename(&from, &to).map_err(|e| PrintError::io(&from, e))?;
        disk::fsync_dir(&self.dirs.ready)
    }

    /// The last steps of closing, shared with recovery: the manifest (which
    /// makes the batch ready), the index, and the journal's removal.
    fn publish<'a>(
        &self,
        journal: &Journal,
        summary: &Summary,
        job_ids: impl Iterator<Item = &'a str>,
        write_manifest: bool,
    ) -> Result<(), PrintError> {
        let id = journal.batch.as_str();
        if write_manifest {
            let manifest = Manifest {
                batch: id,
                campaign: &journal.campaign,
                file: format!("{id}.csv"),
                encoding: &journal.encoding,
                columns: &journal.columns,
                rows: summary.rows,
                bytes: summary.bytes,
                sha256: summary.sha256.clone(),
                first_at: &summary.first_at,
                last_at: &summary.last_at,
            };
            let path = self.dirs.manifest(id);
            let json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| PrintError::io(&path, e.into()))?;
            disk::write_atomically(&self.dirs, &path, &json)?;
        }
        {
            let _index = lock(&self.index_lock);
            disk::append_index(&self.dirs.index(&journal.stem), id, job_ids)?;
        }
        disk::remove_if_exists(&self.dirs.journal(id))
    }

    /// Finishes what a previous run left: see [`PrintBatches::open`].
    fn recover(&self) -> Result<(), PrintError> {
        // Half-written journals and manifests: rewritten below if still needed.
        for tmp in disk::files_ending(&self.dirs.open, ".tmp")? {
            disk::remove_if_exists(&tmp)?;
        }
        for index in disk::files_ending(&self.dirs.index, ".ids")? {
            disk::cut_bad_tail(&index, |line| line.contains(&b'\t'))?;
        }
        for journal in disk::files_ending(&self.dirs.open, JOURNAL)? {
            self.recover_batch(&journal)?;
        }
        if let Some(orphan) = disk::files_ending(&self.dirs.open, ".csv")?.first() {
            return Err(PrintError::corrupt(
                orphan,
                "a batch without its journal (.batch.json): move it away to start",
            ));
        }
        Ok(())
    }

    fn recover_batch(&self, journal_path: &Path) -> Result<(), PrintError> {
        let bytes = fs::read(journal_path).map_err(|e| PrintError::io(journal_path, e))?;
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| PrintError::corrupt(journal_path, e.to_string()))?;
        let encoding: TextEncoding = journal
            .encoding
            .parse()
            .map_err(|e: String| PrintError::corrupt(journal_path, e))?;
        let id = journal.batch.as_str();
        let (open_csv, ready_csv) = (self.dirs.open_csv(id), self.dirs.ready_csv(id));
        if open_csv.exists() {
            let bytes = disk::cut_bad_tail(&open_csv, csv_line_check(encoding))?;
            let job_ids = job_ids_in(&bytes, encoding, &open_csv)?;
            if job_ids.is_empty() {
                disk::remove_if_exists(&open_csv)?;
                return disk::remove_if_exists(journal_path);
            }
            // The crashed process may not have fsynced its last rows.
            File::open(&open_csv)
                .and_then(|f| f.sync_all())
                .map_err(|e| PrintError::io(&open_csv, e))?;
            let summary = Summary::of_file(&open_csv, &bytes, &journal, job_ids.len())?;
            self.move_to_ready(id)?;
            self.publish(&journal, &summary, job_ids.iter().map(String::as_str), true)
        } else if ready_csv.exists() {
            // Crashed between moving the CSV and removing the journal.
            let bytes = fs::read(&ready_csv).map_err(|e| PrintError::io(&ready_csv, e))?;
            let job_ids = job_ids_in(&bytes, encoding, &ready_csv)?;
            let summary = Summary::of_file(&ready_csv, &bytes, &journal, job_ids.len())?;
            let write_manifest = !self.dirs.manifest(id).exists();
            self.publish(
                &journal,
                &summary,
                job_ids.iter().map(String::as_str),
                write_manifest,
            )
        } else {
            // Crashed before the CSV was created.
            disk::remove_if_exists(journal_path)
        }
    }
}

/// A unique, sortable batch id: `{campaign stem}-{UTC yyyymmddThhmmssZ}-{8 hex}`.
/// The hex tag (of the time in nanoseconds, the process id and a counter) keeps
/// ids unique across restarts within one second.
fn batch_id(stem: &str, now: Timestamp) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tag = Sha256::new();
    tag.update(now.as_nanosecond().to_le_bytes());
    tag.update(std::process::id().to_le_bytes());
    tag.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let tag = disk::hex(tag);
    format!("{stem}-{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), &tag[..8])
}

fn written_from_index(pairs: Vec<(String, String)>) -> HashMap<Box<str>, Written> {
    let mut written = HashMap::with_capacity(pairs.len());
    let mut last: Option<Arc<str>> = None;
    for (job, batch) in pairs {
        // Lines of one batch are consecutive: share its id.
        let batch = match &last {
            Some(b) if **b == *batch => b.clone(),
            _ => Arc::<str>::from(batch),
        };
        last = Some(batch.clone());
        written.insert(job.into_boxed_str(), Written::Closed(batch));
    }
    written
}

/// Tells the lines of a batch file that are whole CSV records, in `encoding`,
/// with as many cells as the header (the first line).
fn csv_line_check(encoding: TextEncoding) -> impl FnMut(&[u8]) -> bool {
    let mut width = None;
    move |line| {
        if !line.ends_with(b"\r\n") {
            return false;
        }
        // A line is decoded on its own: `\n` is never part of a Shift_JIS character.
        let Some(text) = encoding.decode(line) else {
            return false;
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let Some(Ok(record)) = reader.records().next() else {
            return false;
        };
        *width.get_or_insert(record.len()) == record.len()
    }
}

/// The job ids in a batch file's `job_id` column.
fn job_ids_in(
    bytes: &[u8],
    encoding: TextEncoding,
    path: &Path,
) -> Result<Vec<String>, PrintError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let text = encoding
        .decode(bytes)
        .ok_or_else(|| PrintError::corrupt(path, format!("not valid {encoding}")))?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| PrintError::corrupt(path, e.to_string()))?;
    let column = headers
        .iter()
        .position(|h| h == Column::JobId.name())
        .ok_or_else(|| PrintError::corrupt(path, "no job_id column in the header"))?;
    let mut ids = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| PrintError::corrupt(path, e.to_string()))?;
        ids.push(record.get(column).unwrap_or_default().to_owned());
    }
    Ok(ids)
}

/// The facts of a closed batch file for its manifest.
struct Summary {
    rows: u64,
    bytes: u64,
    sha256: String,
    first_at: String,
    last_at: String,
}

impl Summary {
    /// For a recovered file: row times are not stored per row, so the batch's
    /// opening time (its first row opened it) and the file's modification time
    /// (its last write) stand for them.
    fn of_file(
        path: &Path,
        bytes: &[u8],
        journal: &Journal,
        rows: usize,
    ) -> Result<Summary, PrintError> {
        let modified = fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| PrintError::io(path, e))?;
        // File times are coarse (a few milliseconds): never before the opening.
        let opened_at = journal.opened_at.parse::<Timestamp>().ok();
        let last_at = Timestamp::try_from(modified)
            .ok()
            .max(opened_at)
            .map_or_else(|| journal.opened_at.clone(), |t| t.to_string());
        Ok(Summary {
            rows: rows as u64,
            bytes: bytes.len() as u64,
            sha256: disk::hex(disk::sha256_of(bytes)),
            first_at: journal.opened_at.clone(),
            last_at,
        })
    }
}

impl BatchIo {
    /// Writes the rows pending in `batch` with one write and one fsync.
    ///
    /// On failure the rows go back to the front of the pending buffer: the sends
    /// waiting for them fail (and the daemon retries them), and the next flush
    /// writes them again at the same offset, over whatever the failed write left
    /// (rewriting, not just fsyncing again: after a failed fsync the kernel may
    /// have dropped the data). A retried job finds its row already placed and
    /// waits for that flush, so it is still written once.
    fn flush(&mut self, batch: &Batch, syncs: &AtomicU64) -> io::Result<()> {
        let (buf, ids, upto) = batch.take_pending();
        if ids.is_empty() {
            return Ok(());
        }
        let Some(file) = self.file.as_ref() else {
            batch.put_back(buf, ids);
            return Err(io::Error::other("the batch file is already closed"));
        };
        let result = file
            .write_all_at(&buf, self.len)
            .and_then(|()| file.sync_data());
        syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.hasher.update(&buf);
                self.len += buf.len() as u64;
                self.ids.extend(ids);
                self.synced = upto;
                batch.recycle(buf);
                Ok(())
            }
            Err(e) => {
                batch.put_back(buf, ids);
                Err(e)
            }
        }
    }
}

impl Batch {
    fn new(journal: Journal, file: File, header: &[u8]) -> Batch {
        let mut hasher = Sha256::new();
        hasher.update(header);
        Batch {
            id: Arc::from(journal.batch.as_str()),
            journal,
            opened: Instant::now(),
            pending: Mutex::default(),
            io: Arc::new(AsyncMutex::new(BatchIo {
                file: Some(file),
                len: header.len() as u64,
                hasher,
                ids: Vec::new(),
                synced: 0,
                stage: Stage::Open,
            })),
        }
    }

    /// Appends a row to the pending buffer; returns its `seq` (1 for the first).
    fn push(&self, row: &[u8], job_id: &str) -> u64 {
        let now = Timestamp::now();
        let mut pending = lock(&self.pending);
        pending.buf.extend_from_slice(row);
        pending.ids.push(job_id.into());
        pending.appended += 1;
        pending.first_at.get_or_insert(now);
        pending.last_at = Some(now);
        pending.appended
    }

    /// The pending rows' bytes and job ids, and the `seq` of the last of them.
    fn take_pending(&self) -> (Vec<u8>, Vec<Box<str>>, u64) {
        let mut pending = lock(&self.pending);
        let spare = std::mem::take(&mut pending.spare);
        let buf = std::mem::replace(&mut pending.buf, spare);
        (buf, std::mem::take(&mut pending.ids), pending.appended)
    }

    fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        lock(&self.pending).spare = buf;
    }

    fn release_buffers(&self) {
        let mut pending = lock(&self.pending);
        pending.buf = Vec::new();
        pending.spare = Vec::new();
    }

    /// Returns rows a failed flush took, ahead of those appended since.
    fn put_back(&self, mut buf: Vec<u8>, mut ids: Vec<Box<str>>) {
        let mut pending = lock(&self.pending);
        buf.extend_from_slice(&pending.buf);
        ids.append(&mut pending.ids);
        pending.buf = buf;
        pending.ids = ids;
    }

    fn row_times(&self) -> (String, String) {
        let pending = lock(&self.pending);
        let first = pending.first_at.unwrap_or_else(Timestamp::now);
        let last = pending.last_at.unwrap_or(first);
        (first.to_string(), last.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_flush_keeps_its_rows_for_the_next_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.csv");
        let header = b"job_id\r\n";
        std::fs::write(&path, header).unwrap();
        let journal = Journal {
            batch: "b".into(),
            campaign: "c".into(),
            stem: "c".into(),
            encoding: "utf-8".into(),
            columns: vec!["job_id".into()],
            opened_at: Timestamp::now().to_string(),
        };
        // Writing through a read-only handle fails like a full or broken disk.
        let batch = Batch::new(journal, File::open(&path).unwrap(), header);
        batch.push(b"j1\r\n", "j1");
        batch.push(b"j2\r\n", "j2");
        let syncs = AtomicU64::new(0);
        let mut io = batch.io.try_lock().unwrap();
        assert!(io.flush(&batch, &syncs).is_err());
        assert_eq!(io.synced, 0);

        batch.push(b"j3\r\n", "j3");
        io.file = Some(OpenOptions::new().write(true).open(&path).unwrap());
        io.flush(&batch, &syncs).unwrap();
        assert_eq!(io.synced, 3);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"job_id\r\nj1\r\nj2\r\nj3\r\n"
        );
        assert_eq!(io.ids, ["j1", "j2", "j3"].map(Box::<str>::from));
        assert_eq!(io.len, std::fs::metadata(&path).unwrap().len());
        assert_eq!(syncs.load(Ordering::Relaxed), 2);
    }
}
