//! Opening the RocksDB instance and the handles that share it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use idreg_core::{Kek, SealedSecret};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use tokio::sync::{broadcast, watch};

use crate::codec::{decode, encode};
use crate::events::RegistryEvent;
use crate::keys::{ALL_CFS, CF_SM_META, SM_KEK_CHECK};
use crate::log_store::LogStore;
use crate::log_tail::LogTail;
use crate::reader::RegistryReader;
use crate::snapshot::SnapshotKey;
use crate::state_machine::StateMachine;
use crate::store_metrics::{StoreMeasures, StoreMetrics};
use crate::types::NodeId;
use crate::waiting_callers::WaitingCallers;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("cannot decode stored {what}: {source}")]
    Decode {
        what: &'static str,
        source: crate::codec::CodecError,
    },
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key-encryption key (id {given}) is not the one this data directory was written with; \
         start with the original --kek-file, or use a fresh --data-dir"
    )]
    WrongKek { given: String },
    #[error(
        "this data directory holds data format {found}, written by a newer idreg; this build \
         reads format {supported} and older. Run the newer idreg on it (nothing was changed), \
         or give this one a fresh --data-dir to join the cluster from a snapshot"
    )]
    NewerFormat { found: u32, supported: u32 },
    #[error("the data directory's format marker is unreadable ({len} bytes, 4 expected)")]
    BadFormatMarker { len: usize },
    #[error(
        "this data directory holds data format {found}; this build writes format {current}. \
         Start a node on it (`idreg serve`) once to migrate it, then open it here"
    )]
    OlderFormat { found: u32, current: u32 },
    #[error(
        "cannot migrate the data directory: the value under {key:?} in {column_family} does not \
         decode ({source}). Nothing was lost: migrated values are kept and the rest is \
         untouched; this build cannot go on with it"
    )]
    Migration {
        column_family: &'static str,
        key: String,
        source: crate::codec::CodecError,
    },
}

/// The on-disk format this build writes and reads: the layout of the column
/// families and the encoding of every stored value. Data directories from
/// before the marker existed hold format 1. A build that changes either
/// raises it and migrates older directories on open
/// (`format_migration`); an older build refuses a newer directory instead
/// of misreading it.
///
/// 1: bincode 1 values. 2: postcard values (bincode is unmaintained).
pub const DATA_FORMAT: u32 = 2;

pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// The opened data directory. Cheap handles to it are made with the methods
/// below; they share one `DB`.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    dir: PathBuf,
    events: broadcast::Sender<RegistryEvent>,
    /// The last applied log index, for watchers to wait on.
    applied: Arc<watch::Sender<u64>>,
    /// Snapshots installed from a leader since start-up.
    installs: Arc<watch::Sender<u64>>,
    /// Revisions of change history kept for watchers.
    history_keep: u64,
    /// Keys snapshot MACs; `None` only for a read-only open.
    snapshot_key: Option<SnapshotKey>,
    metrics: Arc<StoreMetrics>,
    /// The newest log entries, shared by every [`LogStore`] of this store so
    /// that all of them see every append, truncation and purge.
    log_tail: Arc<Mutex<LogTail>>,
    /// Batches proposed here whose callers the apply answers.
    waiting: WaitingCallers,
    /// The options the database was opened with: they hold RocksDB's
    /// statistics.
    opts: Arc<Options>,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// RocksDB's tickers (block cache hits and misses, write stalls) for
    /// `/metrics`; a node without metrics turns them off.
    pub rocksdb_statistics: bool,
    /// The most write-ahead log kept live: past it, RocksDB flushes the
    /// memtables that pin the oldest file. It bounds what a restart replays.
    pub wal_limit_bytes: u64,
}

/// `OpenOptions::wal_limit_bytes` by default, in MiB. RocksDB's own bound
/// is four times every column family's memtables, ~8.7 GiB here, and a
/// barely written family pins old files until then.
pub const DEFAULT_WAL_LIMIT_MB: u64 = 256;

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            rocksdb_statistics: true,
            wal_limit_bytes: DEFAULT_WAL_LIMIT_MB << 20,
        }
    }
}

/// Options every open shares: point lookups dominate (handshakes), so bloom
/// filters on every column family and one block cache.
fn read_options(statistics: bool) -> Options {
    let mut opts = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 << 20));
    opts.set_block_based_table_factory(&table);
    if statistics {
        crate::store_metrics::enable_statistics(&mut opts);
    }
    opts
}

/// Revisions of change history kept by default.
pub const DEFAULT_HISTORY_KEEP: u64 = 100_000;

impl Store {
    /// Opens (or creates) the RocksDB under `dir/db`, checking that `kek` is
    /// the key the directory was written with (a new directory records it).
    pub fn open(dir: &Path, kek: &Kek) -> Result<Self, StoreError> {
        Self::open_with(dir, kek, OpenOptions::default())
    }

    pub fn open_with(dir: &Path, kek: &Kek, options: OpenOptions) -> Result<Self, StoreError> {
        let mut store = Self::open_unchecked(dir, options)?;
        store.verify_or_record_kek(kek)?;
        crate::state_machine::fill_status_counts(&store.db)?;
        store.snapshot_key = Some(SnapshotKey::from_kek(kek));
        Ok(store)
    }

    fn open_unchecked(dir: &Path, options: OpenOptions) -> Result<Self, StoreError> {
        let db_dir = dir.join("db");
        std::fs::create_dir_all(&db_dir).map_err(|source| StoreError::Io {
            path: db_dir.clone(),
            source,
        })?;
        let mut opts = read_options(options.rocksdb_statistics);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        opts.set_max_total_wal_size(options.wal_limit_bytes);
        // RocksDB grows a new WAL file as it writes, so every log fsync also
        // commits the file's new length to the filesystem's journal. A
        // reused file is already that long: its fsync writes the data only
        // (~50 us less per fsync here, BENCHMARKS.md). Recovery tells a
        // reused file's old records from new ones by their log number.
        opts.set_recycle_log_file_num(2);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs)?;
        crate::format_migration::bring_up_to_date(&db)?;
        crate::state_machine::recover_interrupted_install(&db)?;
        Self::around(db, dir, opts)
    }

    /// The handles around an opened database.
    fn around(db: DB, dir: &Path, opts: Options) -> Result<Self, StoreError> {
        let db = Arc::new(db);
        let applied = RegistryReader::new(db.clone()).applied_index()?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            events,
            applied: Arc::new(watch::Sender::new(applied)),
            installs: Arc::new(watch::Sender::new(0)),
            history_keep: DEFAULT_HISTORY_KEEP,
            snapshot_key: None,
            metrics: Arc::default(),
            log_tail: Arc::default(),
            waiting: WaitingCallers::default(),
            opts: Arc::new(opts),
        })
    }

    /// Opens the RocksDB under `dir/db` read-only, beside a running node
    /// (benchmarks of the lookup path). It sees the data as of the open.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let opts = read_options(false);
        let db = DB::open_cf_for_read_only(&opts, dir.join("db"), ALL_CFS, false)?;
        crate::format_migration::check_current(&db)?;
        Self::around(db, dir, opts)
    }

    /// Fills an empty data directory's registry from a snapshot file made by
    /// `idreg cluster snapshot save` (checked end to end first).
    pub fn restore(&self, snapshot_file: &Path) -> Result<(), StoreError> {
        let reader = RegistryReader::new(self.db.clone());
        if reader.applied_index()? > 0 || reader.device_count()? > 0 {
            return Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(
                    "the data directory is not empty: restore into a fresh --data-dir",
                ),
            });
        }
        let key = self.snapshot_key()?;
        crate::snapshot::verify(snapshot_file, &key)?;
        crate::snapshot::load(&self.db, snapshot_file, &key)?;
        crate::state_machine::fill_status_counts(&self.db)?;
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(&cf, crate::keys::SM_RESTORED, b"1", &wo)?;
        Ok(())
    }

    /// Whether the registry was restored from a backup and not yet snapshotted.
    pub fn restored(&self) -> Result<bool, StoreError> {
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        Ok(self.db.get_cf(&cf, crate::keys::SM_RESTORED)?.is_some())
    }

    pub fn clear_restored(&self) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        self.db.delete_cf(&cf, crate::keys::SM_RESTORED)?;
        Ok(())
    }

    /// The file of the snapshot this node currently serves, if any.
    pub fn current_snapshot_file(&self) -> Result<Option<PathBuf>, StoreError> {
        self.state_machine()?.current_snapshot_path()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_store(&self) -> LogStore {
        self.log_store_for(None)
    }

    /// The log of node `node_id`.
    pub fn log_store_of(&self, node_id: NodeId) -> LogStore {
        self.log_store_for(Some(node_id))
    }

    fn log_store_for(&self, node_id: Option<NodeId>) -> LogStore {
        LogStore::new(
            self.db.clone(),
            self.metrics.clone(),
            self.log_tail.clone(),
            node_id,
        )
    }

    fn snapshot_key(&self) -> Result<SnapshotKey, StoreError> {
        self.snapshot_key.clone().ok_or_else(|| StoreError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other("a read-only store has no snapshot key"),
        })
    }

    /// Checks a snapshot file (a backup, or one received from a peer) end to
    /// end: structure and MAC. Nothing is installed.
    pub fn verify_snapshot_file(&self, path: &Path) -> Result<(), StoreError> {
        crate::snapshot::verify(path, &self.snapshot_key()?)
    }

    /// Where snapshot files live (received ones too).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    pub fn state_machine(&self) -> Result<StateMachine, StoreError> {
        StateMachine::new(
            self.db.clone(),
            self.snapshot_key()?,
            self.snapshot_dir(),
            crate::state_machine::Notify {
                events: self.events.clone(),
                applied: self.applied.clone(),
                installs: self.installs.clone(),
                history_keep: self.history_keep,
                metrics: self.metrics.clone(),
                waiting: self.waiting.clone(),
            },
        )
    }

    /// Where this node's proposer registers the batches whose callers the
    /// apply answers ([`WaitingCallers`]).
    pub fn waiting_callers(&self) -> WaitingCallers {
        self.waiting.clone()
    }

    /// Keeps about `bytes` (encoded) of the newest log entries in memory for
    /// replication and apply to read, instead of the default 256 KiB; 0 keeps
    /// only the newest entry. The one tail of every clone of this store and
    /// every log store made from it changes, so they never disagree.
    pub fn with_log_tail_bytes(self, bytes: usize) -> Self {
        crate::log_tail::lock(&self.log_tail).set_max_bytes(bytes);
        self
    }

    /// Keeps `revisions` revisions of change history (at least 1).
    pub fn with_history_keep(mut self, revisions: u64) -> Self {
        self.history_keep = revisions.max(1);
        self
    }

    pub fn history(&self) -> crate::History {
        crate::History::new(self.db.clone())
    }

    /// The last applied log index, updated after each applied batch.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Counts snapshot installs; changes each time one completes.
    pub fn installs_watch(&self) -> watch::Receiver<u64> {
        self.installs.subscribe()
    }

    pub fn snapshots_installed(&self) -> u64 {
        *self.installs.borrow()
    }

    pub fn reader(&self) -> RegistryReader {
        RegistryReader::new(self.db.clone())
    }

    pub fn session_log(&self) -> crate::SessionLog {
        crate::SessionLog::new(self.db.clone())
    }

    /// Changes applied from now on, in log order (lagging receivers lose the
    /// oldest and are told so by the channel).
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    /// Checks `kek` against the check value kept in this data directory, or
    /// records one if there is none yet.
    fn verify_or_record_kek(&self, kek: &Kek) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        match self.db.get_cf(&cf, SM_KEK_CHECK)? {
            Some(bytes) => {
                let check: SealedSecret = decode_as("KEK check", &bytes)?;
                kek.verify_check(&check).map_err(|_| StoreError::WrongKek {
                    given: kek.id_hex(),
                })
            }
            None => {
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .put_cf_opt(&cf, SM_KEK_CHECK, encode(&kek.make_check()), &wo)?;
                Ok(())
            }
        }
    }

    /// WAL fsync, snapshot and RocksDB measures since the store opened.
    pub fn measures(&self) -> StoreMeasures {
        self.metrics.measures(&self.opts)
    }

    /// Bytes each column family holds: its SST files and memtables.
    pub fn column_family_bytes(&self) -> Vec<(&'static str, u64)> {
        ALL_CFS
            .iter()
            .map(|name| {
                let cf = self.db.cf_handle(name).expect("cf exists");
                let prop = |p: &str| {
                    self.db
                        .property_int_value_cf(&cf, p)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                (
                    *name,
                    prop("rocksdb.total-sst-files-size") + prop("rocksdb.size-all-mem-tables"),
                )
            })
            .collect()
    }

    /// Flushes memtables to SST files (tests use it to look at what is on disk).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in ALL_CFS {
            let cf = self.db.cf_handle(name).expect("cf exists");
            self.db.flush_cf(&cf)?;
        }
        Ok(())
    }
}
