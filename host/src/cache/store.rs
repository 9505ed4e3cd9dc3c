//! The on-disk store: one redb table of entries and one of lifetime counters.
//! Every write is its own committed transaction (durable on return), so a
//! crash mid-write loses at most the write in flight.

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// First line of an export file.
const EXPORT_HEADER: &str = "mmsr-tool-cache";
const EXPORT_VERSION: u32 = 1;
/// Entry layout: created (u64 LE secs) | expires (u64 LE secs, 0 = never) | payload.
const HEADER_LEN: usize = 16;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters of this process, added to the stored lifetime totals on flush.
#[derive(Default, Debug)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Callers that waited on an identical call in flight instead of calling upstream.
    pub coalesced: AtomicU64,
    pub writes: AtomicU64,
    pub expired: AtomicU64,
}

const COUNTER_NAMES: [&str; 5] = ["hits", "misses", "coalesced", "writes", "expired"];

impl Counters {
    fn all(&self) -> [&AtomicU64; 5] {
        [
            &self.hits,
            &self.misses,
            &self.coalesced,
            &self.writes,
            &self.expired,
        ]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub path: PathBuf,
    pub entries: u64,
    pub expired_entries: u64,
    pub file_bytes: u64,
    /// Lifetime totals, this process included.
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub writes: u64,
    pub expired: u64,
}

/// One exported entry (a line of the export file).
#[derive(Serialize, Deserialize)]
struct ExportLine {
    key: String,
    created: u64,
    expires: Option<u64>,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct ExportHeaderLine {
    format: String,
    version: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub added: u64,
    pub replaced: u64,
    /// Already present with the same or a newer timestamp.
    pub kept: u64,
    pub expired: u64,
}

pub struct CacheStore {
    db: Database,
    path: PathBuf,
    pub counters: Counters,
    /// Set when a write failed on I/O (a full disk): redb then refuses every
    /// write until the file is reopened, which repairs it, so the rest of
    /// the run writes nothing new rather than failing each call.
    failed: OnceLock<String>,
}

/// A stored value and its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub created: u64,
    pub expires: Option<u64>,
    pub payload: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(&self.expires.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(raw: &[u8]) -> Option<Self> {
        if raw.len() < HEADER_LEN {
            return None;
        }
        let created = u64::from_le_bytes(raw[..8].try_into().ok()?);
        let expires = u64::from_le_bytes(raw[8..16].try_into().ok()?);
        Some(Self {
            created,
            expires: (expires != 0).then_some(expires),
            payload: raw[HEADER_LEN..].to_vec(),
        })
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

impl CacheStore {
    /// Opens (or creates) the store at `path`. redb allows one process per file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Self::init(open_db(path)?, path)
    }

    fn init(db: Database, path: &Path) -> anyhow::Result<Self> {
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(COUNTERS)?;
        txn.commit().context("initialising the cache tables")?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            counters: Counters::default(),
            failed: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the store stopped writing (a write failed on I/O), if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// A live entry for `key`; expired entries read as absent. After a
    /// failed write, redb still serves the pages it holds in memory; a read
    /// it refuses for the earlier I/O failure is a miss, that failure
    /// having been named once.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Entry>> {
        match self.read_entry(key) {
            Err(err) if self.failed.get().is_some() && is_io_failure(&err) => Ok(None),
            read => read.with_context(|| format!("reading tool cache {}", self.path.display())),
        }
    }

    fn read_entry(&self, key: &str) -> anyhow::Result<Option<Entry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let Some(raw) = table.get(key)? else {
            return Ok(None);
        };
        match Entry::decode(raw.value()) {
            Some(e) if e.is_expired(now_secs()) => {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Some(e) => Ok(Some(e)),
            None => bail!(
                "cache entry {key:?} is corrupt ({} bytes)",
                raw.value().len()
            ),
        }
    }

    /// Stores an entry. The first write that fails on I/O stops the store
    /// (see `failed`) and is the one error; later puts do nothing.
    pub fn put(&self, key: &str, payload: &[u8], ttl: Option<Duration>) -> anyhow::Result<()> {
        if self.failed.get().is_some() {
            return Ok(());
        }
        match self.write_entry(key, payload, ttl) {
            Ok(()) => Ok(()),
            Err(err) if is_io_failure(&err) => {
                if self.failed.set(format!("{err:#}")).is_err() {
                    return Ok(());
                }
                Err(err.context(format!(
                    "writing tool cache {}: the rest of this run stores no new results \
                     (the file is repaired when next opened)",
                    self.path.display()
                )))
            }
            Err(err) => Err(err.context(format!("writing tool cache {}", self.path.display()))),
        }
    }

    fn write_entry(&self, key: &str, payload: &[u8], ttl: Option<Duration>) -> anyhow::Result<()> {
        let created = now_secs();
        let entry = Entry {
            created,
            expires: ttl.map(|t| created + t.as_secs().max(1)),
            payload: payload.to_vec(),
        };
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(ENTRIES)?;
            table.insert(key, entry.encode().as_slice())?;
        }
        txn.commit()
            .with_context(|| format!("committing cache entry {key:?}"))?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Adds this process's counters to the stored totals and zeroes them.
    pub fn flush_counters(&self) -> anyhow::Result<()> {
        let deltas: Vec<u64> = self
            .counters
            .all()
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        if deltas.iter().all(|&d| d == 0) || self.failed.get().is_some() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(COUNTERS)?;
            for (name, delta) in COUNTER_NAMES.iter().zip(deltas) {
                let old = table.get(*name)?.map(|v| v.value()).unwrap_or(0);
                table.insert(*name, old + delta)?;
            }
        }
        txn.commit().context("committing cache counters")?;
        Ok(())
    }

    pub fn stats(&self) -> anyhow::Result<CacheStats> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let now = now_secs();
        let mut expired_entries = 0;
        for item in entries.iter()? {
            let (_, v) = item?;
            if Entry::decode(v.value()).is_none_or(|e| e.is_expired(now)) {
                expired_entries += 1;
            }
        }
        let counters = txn.open_table(COUNTERS)?;
        let mut totals = [0u64; 5];
        for (i, (name, live)) in COUNTER_NAMES.iter().zip(self.counters.all()).enumerate() {
            totals[i] =
                counters.get(*name)?.map(|v| v.value()).unwrap_or(0) + live.load(Ordering::Relaxed);
        }
        let [hits, misses, coalesced, writes, expired] = totals;
        Ok(CacheStats {
            path: self.path.clone(),
            entries: entries.len()?,
            expired_entries,
            file_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            hits,
            misses,
            coalesced,
            writes,
            expired,
        })
    }

    /// Writes every live entry as JSON lines; returns how many.
    pub fn export(&self, out: &mut dyn Write) -> anyhow::Result<u64> {
        let header = ExportHeaderLine {
            format: EXPORT_HEADER.into(),
            version: EXPORT_VERSION,
        };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let now = now_secs();
        let mut n = 0;
        for item in table.iter()? {
            let (k, v) = item?;
            let Some(entry) = Entry::decode(v.value()).filter(|e| !e.is_expired(now)) else {
                continue;
            };
            let line = ExportLine {
                key: k.value().to_string(),
                created: entry.created,
                expires: entry.expires,
                value: B64.encode(&entry.payload),
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }

    /// Merges an export: newer entries win. The whole file is checked and
    /// committed in one transaction, so a bad line imports nothing.
    pub fn import(&self, input: &mut dyn BufRead, source: &str) -> anyhow::Result<ImportReport> {
        let mut lines = input.lines();
        let first = lines
            .next()
            .with_context(|| format!("{source}: empty file"))?
            .with_context(|| format!("{source} line 1"))?;
        let header: ExportHeaderLine = serde_json::from_str(&first)
            .ok()
            .filter(|h: &ExportHeaderLine| h.format == EXPORT_HEADER)
            .with_context(|| format!("{source} line 1: not an mmsr tool-cache export"))?;
        if header.version != EXPORT_VERSION {
            bail!(
                "{source} line 1: export version {} (this build reads {EXPORT_VERSION})",
                header.version
            );
        }
        let now = now_secs();
        let mut report = ImportReport::default();
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(ENTRIES)?;
            for (i, line) in lines.enumerate() {
                let at = || format!("{source} line {}", i + 2);
                let line = line.with_context(at)?;
                if line.trim().is_empty() {
                    continue;
                }
                let parsed: ExportLine = serde_json::from_str(&line).with_context(at)?;
                let payload = B64
                    .decode(parsed.value.as_bytes())
                    .with_context(|| format!("{}: `value`", at()))?;
                let entry = Entry {
                    created: parsed.created,
                    expires: parsed.expires,
                    payload,
                };
                if entry.is_expired(now) {
                    report.expired += 1;
                    continue;
                }
                let existing = table
                    .get(parsed.key.as_str())?
                    .and_then(|v| Entry::decode(v.value()));
                match existing {
                    Some(old) if old.created >= entry.created && !old.is_expired(now) => {
                        report.kept += 1
                    }
                    old => {
                        table.insert(parsed.key.as_str(), entry.encode().as_slice())?;
                        if old.is_some() {
                            report.replaced += 1
                        } else {
                            report.added += 1
                        }
                    }
                }
            }
        }
        txn.commit().context("committing the import")?;
        Ok(report)
    }
}

impl Drop for CacheStore {
    fn drop(&mut self) {
        if let Err(err) = self.flush_counters() {
            tracing::warn!(error = %format!("{err:#}"), "could not save cache counters");
        }
    }
}

/// Whether redb failed on the disk (and so refuses all that follows).
fn is_io_failure(err: &anyhow::Error) -> bool {
    use redb::{CommitError, StorageError, TableError, TransactionError};
    let io = |s: &StorageError| matches!(s, StorageError::Io(_) | StorageError::PreviousIo);
    err.chain().any(|e| {
        e.downcast_ref::<StorageError>().is_some_and(io)
            || matches!(e.downcast_ref::<CommitError>(), Some(CommitError::Storage(s)) if io(s))
            || matches!(e.downcast_ref::<TransactionError>(), Some(TransactionError::Storage(s)) if io(s))
            || matches!(e.downcast_ref::<TableError>(), Some(TableError::Storage(s)) if io(s))
    })
}

/// Opens (or creates) the redb file, naming what is wrong with it. redb
/// panics on some truncated files instead of returning an error, so that
/// panic becomes one too: a broken cache must not take a run down unnamed.
fn open_db(path: &Path) -> anyhow::Result<Database> {
    let broken = |why: String| {
        anyhow::anyhow!(
            "tool cache {} is damaged or not a cache ({why}); it holds only search results: \
             move it away to start a new one",
            path.display()
        )
    };
    // The default hook would print the panic (and a backtrace) before the
    // error below says the same plainly. The hook is process-wide, so this
    // mutes other threads' panic messages too, for this one call at start-up.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Database::create(path)));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => bail!(
            "tool cache {} is in use by another mmsr-host process",
            path.display()
        ),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() != std::io::ErrorKind::InvalidData =>
        {
            Err(e).with_context(|| format!("opening tool cache {}", path.display()))
        }
        Ok(Err(e)) => Err(broken(e.to_string())),
        Err(panic) => Err(broken(format!(
            "the store refused its layout: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// A file cut short (redb panics on it), garbage and a cache in use are
    /// errors that name the file; a whole cache still opens.
    #[test]
    fn a_broken_cache_file_is_named_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        {
            let store = CacheStore::open(&path).unwrap();
            store.put("a", &[7u8; 4096], None).unwrap();
            let err = format!("{:#}", CacheStore::open(&path).err().unwrap());
            assert!(err.contains("in use by another"), "{err}");
        }
        let whole = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.redb");
        std::fs::write(&cut, &whole[..3000]).unwrap();
        // redb's panic reaches no hook (the user would see it printed before
        // the error), and the hook in place before is back afterwards.
        use std::sync::atomic::{AtomicUsize, Ordering};
        static REDB: AtomicUsize = AtomicUsize::new(0);
        static PROBE: AtomicUsize = AtomicUsize::new(0);
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            if info.location().is_some_and(|l| l.file().contains("redb")) {
                REDB.fetch_add(1, Ordering::SeqCst);
            }
            if info.payload().downcast_ref::<&str>() == Some(&"probe") {
                PROBE.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let err = format!("{:#}", CacheStore::open(&cut).err().unwrap());
        let _ = std::panic::catch_unwind(|| panic!("probe"));
        std::panic::set_hook(before);
        assert_eq!(
            (REDB.load(Ordering::SeqCst), PROBE.load(Ordering::SeqCst)),
            (0, 1)
        );
        assert!(
            err.contains("cut.redb is damaged or not a cache")
                && err.contains("move it away")
                && err.contains("refused its layout"),
            "{err}"
        );
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, b"garbage\n").unwrap();
        let err = format!("{:#}", CacheStore::open(&junk).err().unwrap());
        assert!(err.contains("junk.redb is damaged or not a cache"), "{err}");
        assert!(CacheStore::open(&path).is_ok());
    }

    #[test]
    fn put_get_expire_and_counters_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        {
            let store = CacheStore::open(&path).unwrap();
            store.put("a", b"alpha", None).unwrap();
            store
                .put("b", b"beta", Some(Duration::from_secs(3600)))
                .unwrap();
            assert_eq!(store.get("a").unwrap().unwrap().payload, b"alpha");
            assert!(store.get("zz").unwrap().is_none());
            store.counters.hits.fetch_add(3, Ordering::Relaxed);
        }
        let store = CacheStore::open(&path).unwrap();
        assert_eq!(store.get("b").unwrap().unwrap().payload, b"beta");
        let stats = store.stats().unwrap();
        assert_eq!((stats.entries, stats.hits, stats.writes), (2, 3, 2));
    }

    #[test]
    fn expired_entries_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::open(&dir.path().join("c.redb")).unwrap();
        let old = Entry {
            created: 1,
            expires: Some(2),
            payload: b"x".to_vec(),
        };
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert("k", old.encode().as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(store.get("k").unwrap().is_none());
        assert_eq!(store.stats().unwrap().expired_entries, 1);
    }

    #[test]
    fn export_import_round_trip_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let a = CacheStore::open(&dir.path().join("a.redb")).unwrap();
        a.put("k1", &[0, 1, 2, 255], None).unwrap();
        a.put("k2", b"two", Some(Duration::from_secs(60))).unwrap();
        let mut file = Vec::new();
        assert_eq!(a.export(&mut file).unwrap(), 2);

        let b = CacheStore::open(&dir.path().join("b.redb")).unwrap();
        b.put("k2", b"newer", None).unwrap();
        let report = b.import(&mut file.as_slice(), "export.jsonl").unwrap();
        assert_eq!((report.added, report.kept), (1, 1));
        assert_eq!(b.get("k1").unwrap().unwrap().payload, vec![0, 1, 2, 255]);
        assert_eq!(b.get("k2").unwrap().unwrap().payload, b"newer");
    }

    #[test]
    fn bad_import_names_the_line_and_imports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::open(&dir.path().join("c.redb")).unwrap();
        let text = format!(
            "{{\"format\":\"{EXPORT_HEADER}\",\"version\":1}}\n{{\"key\":\"ok\",\"created\":5,\"expires\":null,\"value\":\"eA==\"}}\n{{\"key\":\"bad\"}}\n"
        );
        let err = format!(
            "{:#}",
            store.import(&mut text.as_bytes(), "x.jsonl").unwrap_err()
        );
        assert!(err.contains("x.jsonl line 3"), "{err}");
        assert!(store.get("ok").unwrap().is_none());
        let err = format!(
            "{:#}",
            store.import(&mut "{}\n".as_bytes(), "y.jsonl").unwrap_err()
        );
        assert!(err.contains("not an mmsr tool-cache export"), "{err}");
        let err = format!(
            "{:#}",
            store
                .import(&mut &b"\xff\xfe garbage\n"[..], "z.bin")
                .unwrap_err()
        );
        assert!(
            err.contains("z.bin line 1") && err.contains("UTF-8"),
            "{err}"
        );
    }

    /// A disk that fills up, or fails to read, on demand.
    #[derive(Debug)]
    struct FillingDisk {
        inner: redb::backends::InMemoryBackend,
        full: Arc<AtomicBool>,
        unreadable: Arc<AtomicBool>,
    }

    impl FillingDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for FillingDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
            if self.unreadable.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(5)); // EIO
            }
            self.inner.read(offset, len)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
            self.check()?;
            self.inner.sync_data(eventual)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    /// A store on a [`FillingDisk`] with its two switches (full, unreadable);
    /// without a read cache every read reaches the disk.
    fn on_filling_disk(read_cache: bool) -> (CacheStore, Arc<AtomicBool>, Arc<AtomicBool>) {
        let (full, unreadable) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let mut builder = Database::builder();
        if !read_cache {
            builder.set_cache_size(0);
        }
        let db = builder
            .create_with_backend(FillingDisk {
                inner: redb::backends::InMemoryBackend::new(),
                full: Arc::clone(&full),
                unreadable: Arc::clone(&unreadable),
            })
            .unwrap();
        let store = CacheStore::init(db, Path::new("/runs/x/tool-cache.redb")).unwrap();
        (store, full, unreadable)
    }

    #[test]
    fn a_full_disk_stops_the_cache_once_and_names_it() {
        let (store, full, _) = on_filling_disk(true);
        store.put("a", b"one", None).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().payload, b"one");
        full.store(true, Ordering::SeqCst);
        let err = format!("{:#}", store.put("b", &[7; 1 << 16], None).unwrap_err());
        assert!(
            err.contains("/runs/x/tool-cache.redb") && err.contains("stores no new results"),
            "{err}"
        );
        assert!(store.failed().is_some());
        // redb refuses every write from now on, even with room again.
        full.store(false, Ordering::SeqCst);
        let again = format!("{:#}", store.write_entry("c", b"x", None).unwrap_err());
        assert!(again.contains("Previous I/O error"), "{again}");
        // So writes are skipped, not an error per call; reads still serve.
        store.put("c", b"three", None).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().payload, b"one");
        store.counters.hits.fetch_add(1, Ordering::Relaxed);
        store.flush_counters().unwrap();
    }

    #[test]
    fn after_a_failed_write_a_refused_read_is_a_miss() {
        // A read the disk refuses is an error naming the cache...
        let (store, _, unreadable) = on_filling_disk(false);
        store.put("a", b"one", None).unwrap();
        unreadable.store(true, Ordering::SeqCst);
        let err = format!("{:#}", store.get("a").unwrap_err());
        assert!(
            err.contains("reading tool cache /runs/x/tool-cache.redb"),
            "{err}"
        );
        // ...but once a failed write was named, redb refuses the reads it
        // cannot serve from memory (here: all), and each is a miss.
        let (store, full, _) = on_filling_disk(false);
        store.put("a", b"one", None).unwrap();
        full.store(true, Ordering::SeqCst);
        store.put("b", &[7; 1 << 16], None).unwrap_err();
        full.store(false, Ordering::SeqCst);
        assert!(store.read_entry("a").is_err(), "redb refuses the read");
        assert!(store.get("a").unwrap().is_none());
    }
}
