//! The PostgreSQL backend: several `hameau` nodes on one database (feature `postgresql`).
//!
//! The three families of records ([`crate::records`]) are tables a DBA can read
//! (`postgres/schema.sql`): `entries` (key, version, value), `blobs` and `blob_chunks`, and
//! `uploads`. The schema is created and migrated at open (sqlx's migrator, its versions in
//! `_sqlx_migrations`), under an advisory lock so that nodes starting together migrate once.
//!
//! **Commits.** One committer task per store takes every batch waiting (at most
//! `commit_group_max`) and commits them as one transaction: it locks the `clock` row, takes
//! into the group the batches that came while it waited for the lock, reads at once every
//! record the batches may read (`records::batch_reads`), checks and applies
//! them in order with the same code as every backend (`records::apply_batch`), each batch
//! over the writes of those before it, writes what the successful ones wrote, moves the
//! clock and commits. The clock's lock serializes the commits of every node, so a batch's
//! expectations and bounded counters hold against every writer, counters never repeat
//! across nodes, and versions follow the order of commits (what a snapshot and a
//! differential backup rely on). A commit returns once PostgreSQL has committed, durably
//! with its default `synchronous_commit`.
//!
//! If the transaction fails (the database went away, a failover), every batch of the group
//! fails with [`Error::Backend`]. Its outcome may be unknown when the connection broke
//! during `COMMIT`; the uploads the group took are then left registered rather than removed,
//! since they may be a committed blob's content: at worst they wait for their session's end.
//!
//! **Sessions.** Each opened store is a session, holding an advisory lock on its number on a
//! connection of its own while it is open; a task checks that connection every
//! [`SESSION_CHECK`] and, when it broke (the database restarted, a failover), connects again
//! and takes the same number back. An upload is registered with its session; a store that
//! opens removes the uploads of every session whose lock is free (ended without committing
//! or discarding them), never those of a store open on another node. The queue's leases
//! name their session too ([`crate::Store::ended_sessions`] reads `pg_locks`).
//!
//! **Snapshots** are `REPEATABLE READ, READ ONLY` transactions on a connection of their own,
//! held while the [`Snapshot`] lives; the version is the clock's as the transaction sees it.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

mod hosts;

use hosts::Hosts;

use crate::batch::Op;
use crate::blob::{BlobMeta, Discard, Upload};
use crate::changes::Remote;
use crate::records::{Family, META_BLOB, META_UPLOAD, Source, apply_batch, batch_reads, encode_value, load_records};
use crate::snapshot::SnapshotBackend;
use crate::{
    Backend, Batch, BlobHash, Committed, CounterValue, Direction, Entry, Error, Load, Options, Scan, Snapshot, Version,
};

/// The schema, version 1.
const SCHEMA_V1: &str = include_str!("postgres/schema.sql");

/// The first key of Hameau's advisory locks of upload sessions (`pg_advisory_lock(int, int)`):
/// "HAME" in ASCII, so that they are told from other programs' locks in `pg_locks`.
const SESSION_LOCK_CLASS: i32 = 0x4841_4d45;

/// How often the session's connection is checked, and taken again after it broke: while it
/// is down, the other nodes see the session as ended (they may take back its leases).
const SESSION_CHECK: Duration = Duration::from_secs(2);

/// Rows written by one statement of a load (a restore): bounds one statement's parameters.
const LOAD_ROWS_PER_STATEMENT: usize = 1000;

/// Longest payload of one `NOTIFY`: PostgreSQL's limit is 8,000 bytes.
const NOTIFY_PAYLOAD_MAX: usize = 7900;

/// Most `NOTIFY` payloads of one commit group. Past it, the group sends [`NOTIFY_MISSED`]
/// instead: every node reads its watched counters again (cheaper than a flood).
const NOTIFY_PAYLOADS_MAX: usize = 16;

/// The payload that tells listeners to read every watched counter again.
const NOTIFY_MISSED: &str = "*";

/// How often a node that cannot listen (the database away, or a pooler without `LISTEN`)
/// reads its watched counters again instead, and tries to listen again: a change on another
/// node is then seen within this time.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Notifications heard and not yet published: the listener waits past it.
const REMOTE_QUEUE: usize = 1024;

/// How long a connection of the pool is waited for before a call fails: a database that
/// went away is reported, not waited for forever.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct PgBackend {
    shared: Arc<Shared>,
    /// The connections of point reads and scans.
    readers: Readers,
    committer: Mutex<Option<Committer>>,
    /// The connection holding the session's advisory lock, while the store is open.
    session_holder: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// The task that checks it and takes the session again after it broke.
    session_keeper: tokio::task::JoinHandle<()>,
    discarder: Arc<PgDiscarder>,
    /// The task that listens to the other nodes' commits, and what it heard, until the
    /// [`crate::Store`] takes it.
    listener: tokio::task::JoinHandle<()>,
    remote: Mutex<Option<mpsc::Receiver<Remote>>>,
}

struct Shared {
    pool: PgPool,
    /// How every connection of the store is made: to the primary among `store.url`'s hosts.
    hosts: Arc<Hosts>,
    /// This store's upload session.
    session: i32,
    /// The channel of this schema's commits (`LISTEN`/`NOTIFY`).
    channel: String,
    closed: AtomicBool,
}

struct Committer {
    requests: mpsc::Sender<Request>,
    task: tokio::task::JoinHandle<()>,
}

struct Request {
    batch: Batch,
    reply: oneshot::Sender<Result<Committed, Error>>,
}

/// Removes the uploads of staged blobs dropped without a commit, on the runtime, without
/// waiting. It holds the store weakly: a staged blob outliving the store removes nothing
/// (the next open does, its session having ended).
struct PgDiscarder {
    shared: Weak<Shared>,
}

impl Discard for PgDiscarder {
    fn discard_later(&self, upload: [u8; 16], _n_chunks: u32) {
        let Some(shared) = self.shared.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Err(e) = remove_upload(&shared.pool, &upload).await {
                tracing::warn!(error = %e, "removing a staged blob upload failed; a later open removes it");
            }
        });
    }
}

impl PgBackend {
    pub(crate) async fn open(options: &Options) -> Result<PgBackend, Error> {
        let hosts = Arc::new(connect_options(options)?);
        // The session's connection first: it finds the primary among several hosts, and
        // the pool then connects there.
        let (session_holder, session) = open_session(&hosts).await?;
        // No ping before each use of a pooled connection (sqlx's default): it doubled the round
        // trips of every read. A connection the database dropped fails its next query
        // instead (a temporary error to that client), and the pool then replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(hosts.current())
            .await
            .map_err(|e| Error::Backend(format!("connecting to PostgreSQL: {e}")))?;
        hosts.follow_with(&pool);
        migrate(&pool, &options.schema).await?;
        remove_orphan_uploads(&pool, session).await?;
        let channel = format!("hameau_{}", options.schema);
        let shared = Arc::new(Shared { pool, hosts, session, channel, closed: AtomicBool::new(false) });
        let (heard, remote) = mpsc::channel(REMOTE_QUEUE);
        let listener = tokio::spawn(listen(shared.pool.clone(), shared.channel.clone(), heard));
        let (requests, receiver) = mpsc::channel(options.limits.commit_queue_max);
        let task = tokio::spawn(run_committer(shared.clone(), receiver, options.limits.commit_group_max));
        let discarder = Arc::new(PgDiscarder { shared: Arc::downgrade(&shared) });
        let readers = Readers::new(shared.hosts.clone(), options.pool_connections as usize);
        let session_holder = Arc::new(tokio::sync::Mutex::new(Some(session_holder)));
        let session_keeper = tokio::spawn(keep_session(shared.clone(), session_holder.clone()));
        Ok(PgBackend {
            shared,
            readers,
            committer: Mutex::new(Some(Committer { requests, task })),
            session_holder,
            session_keeper,
            discarder,
            listener,
            remote: Mutex::new(Some(remote)),
        })
    }

    /// A reader connection, while the store is open.
    async fn reader(&self) -> Result<Reader<'_>, Error> {
        self.pool()?;
        self.readers.get().await
    }

    /// The pool, while the store is open.
    fn pool(&self) -> Result<&PgPool, Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(&self.shared.pool)
    }
}

/// The connections of the reads ([`Backend::get`], `get_many`, `scan`, blob chunks): a
/// fixed set, each connected at its first use and again after an error, each used by one
/// read at a time. Not sqlx's pool: it checks a connection with a round trip when it hands
/// it out and another when it takes it back, which tripled the round trips of every read.
struct Readers {
    hosts: Arc<Hosts>,
    slots: Vec<tokio::sync::Mutex<Option<PgConnection>>>,
    /// Where the next read starts looking for a free connection.
    next: std::sync::atomic::AtomicUsize,
}

/// One reader connection, held for one read.
struct Reader<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<PgConnection>>,
}

impl Readers {
    fn new(hosts: Arc<Hosts>, n: usize) -> Readers {
        let slots = (0..n.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        Readers { hosts, slots, next: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// A free connection if there is one, else the next to be freed in turn; connected.
    async fn get(&self) -> Result<Reader<'_>, Error> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|offset| self.slots[(start + offset) % n].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % n].lock().await,
        };
        if slot.is_none() {
            let connection = keyed_connection(&self.hosts).await?;
            *slot = Some(connection);
        }
        Ok(Reader { slot })
    }

    /// Closes the connections (the store is closing).
    async fn close(&self) {
        for slot in &self.slots {
            if let Some(connection) = slot.lock().await.take() {
                let _ = connection.close().await;
            }
        }
    }
}

impl Reader<'_> {
    fn connection(&mut self) -> &mut PgConnection {
        self.slot.as_mut().expect("connected by Readers::get")
    }

    /// Passes on a read's result; after an error, the connection is dropped (it may be
    /// broken, or mid-way through a reply) and the next read connects again.
    fn done<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            *self.slot = None;
        }
        result
    }
}

/// [`Backend::get_many`]'s query.
pub(crate) const GET_MANY_SQL: &str = "SELECT key, version, value FROM entries WHERE key = ANY($1)";

/// [`fetch`]'s query: every record a commit group may read.
pub(crate) const FETCH_SQL: &str = "SELECT 0::smallint, key, version, value, NULL::bigint, NULL::integer, NULL::bytea \
    FROM entries WHERE key = ANY($1) \
    UNION ALL SELECT 1::smallint, hash, refcount, NULL::bytea, size, n_chunks, location \
    FROM blobs WHERE hash = ANY($2) \
    UNION ALL SELECT 2::smallint, id, NULL::bigint, NULL::bytea, NULL::bigint, NULL::integer, NULL::bytea \
    FROM uploads WHERE id = ANY($3)";

/// [`Writes::write`]'s statement: a commit group's writes, the clock and the notifications.
pub(crate) const WRITE_SQL: &str = "WITH entries_gone AS (DELETE FROM entries WHERE key = ANY($1)), \
    entries_put AS (INSERT INTO entries (key, version, value) \
    SELECT * FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) \
    ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value), \
    chunks_gone AS (DELETE FROM blob_chunks \
    WHERE (location, idx) IN (SELECT * FROM unnest($5::bytea[], $6::integer[]))), \
    chunks_put AS (INSERT INTO blob_chunks (location, idx, data) \
    SELECT * FROM unnest($7::bytea[], $8::integer[], $9::bytea[]) \
    ON CONFLICT (location, idx) DO UPDATE SET data = EXCLUDED.data), \
    blobs_gone AS (DELETE FROM blobs WHERE hash = ANY($10)), \
    blobs_put AS (INSERT INTO blobs (hash, refcount, size, n_chunks, location) \
    SELECT * FROM unnest($11::bytea[], $12::bigint[], $13::bigint[], $14::integer[], $15::bytea[]) \
    ON CONFLICT (hash) DO UPDATE SET refcount = EXCLUDED.refcount, size = EXCLUDED.size, \
    n_chunks = EXCLUDED.n_chunks, location = EXCLUDED.location), \
    uploads_gone AS (DELETE FROM uploads WHERE id = ANY($16)), \
    clock_moved AS (UPDATE clock SET version = greatest(version, $17)) \
    SELECT count(pg_notify($18, payload)) FROM unnest($19::text[]) AS payload";

/// The settings of the connections that only ever read and write rows by key (the readers
/// and the committer), sent once per connection. Their statements are prepared once and
/// then run on a generic plan (`force_generic_plan`: no parsing nor planning per query);
/// `enable_seqscan = off` makes that plan
/// the primary key's index whatever the tables' size when it was made. Without it, a
/// statement prepared while a table was small kept a plan scanning the whole table once it
/// had grown (2.9 ms a query, half the database's CPU in the MX benchmark). `jit = off`:
/// the clock's one row is still read by a sequential scan, whose cost `enable_seqscan =
/// off` makes enormous, which made PostgreSQL compile the commit's statement to machine
/// code at every execution (about 290 ms each: 52 messages/s in the MX benchmark).
pub(crate) const KEYED_SETTINGS: &str =
    "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan; SET jit = off";

/// A connection to the primary for reads and writes by key, with [`KEYED_SETTINGS`].
pub(crate) async fn keyed_connection(hosts: &Hosts) -> Result<PgConnection, Error> {
    let mut connection = hosts.connect().await.map_err(|e| Error::Backend(format!("connecting to PostgreSQL: {e}")))?;
    sqlx::raw_sql(KEYED_SETTINGS).execute(&mut connection).await.map_err(backend)?;
    Ok(connection)
}

/// The hosts of `store.url` in `store.schema` (see [`hosts`]). The URL's errors never
/// repeat the URL (it may hold a password).
pub(crate) fn connect_options(options: &Options) -> Result<Hosts, Error> {
    Hosts::parse(options.url.as_str(), &options.schema)
}

/// Creates or migrates the schema. sqlx's migrator records each migration with its checksum
/// and holds an advisory lock meanwhile, so several nodes starting at once migrate once.
async fn migrate(pool: &PgPool, schema: &str) -> Result<(), Error> {
    let mut migrator = sqlx::migrate::Migrator::new(Migrations)
        .await
        .map_err(|e| Error::Backend(format!("preparing the database schema: {e}")))?;
    if !schema.is_empty() {
        migrator.create_schema(schema.to_owned());
    }
    migrator.run(pool).await.map_err(|e| Error::Backend(format!("migrating the database schema: {e}")))
}

/// The migrations, compiled in.
#[derive(Debug)]
struct Migrations;

impl<'s> sqlx::migrate::MigrationSource<'s> for Migrations {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> + Send + 's>,
    > {
        use sqlx::migrate::{Migration, MigrationType};
        let v1 = Migration::new(
            1,
            "hameau store: entries, clock, blobs, blob chunks, uploads".into(),
            MigrationType::Simple,
            sqlx::SqlStr::from_static(SCHEMA_V1),
            false,
        );
        Box::pin(async move { Ok(vec![v1]) })
    }
}

/// Opens the session's own connection and takes the advisory lock of a session number no
/// other open store holds.
async fn open_session(hosts: &Hosts) -> Result<(PgConnection, i32), Error> {
    let mut connection = hosts.connect().await.map_err(|e| Error::Backend(format!("connecting to PostgreSQL: {e}")))?;
    loop {
        let session = rand::random::<i32>();
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
            .bind(SESSION_LOCK_CLASS)
            .bind(session)
            .fetch_one(&mut connection)
            .await
            .map_err(backend)?;
        if locked {
            return Ok((connection, session));
        }
    }
}

/// Checks the session's connection every [`SESSION_CHECK`]; when it broke, connects again
/// and takes the session's lock back (waiting while another connection holds it: a node
/// removing the uploads of what it took for an ended session, for a moment).
async fn keep_session(shared: Arc<Shared>, holder: Arc<tokio::sync::Mutex<Option<PgConnection>>>) {
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(SESSION_CHECK).await;
        let mut held = holder.lock().await;
        let alive = match held.as_mut() {
            Some(connection) => connection.ping().await.is_ok(),
            None => false,
        };
        if alive {
            continue;
        }
        if lost_since.is_none() {
            tracing::warn!("store: the session's connection to PostgreSQL broke; taking the session again");
            lost_since = Some(std::time::Instant::now());
        }
        *held = None;
        let taken = async {
            let mut connection = shared.hosts.connect().await?;
            let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
                .bind(SESSION_LOCK_CLASS)
                .bind(shared.session)
                .fetch_one(&mut connection)
                .await?;
            Ok::<_, sqlx::Error>(locked.then_some(connection))
        };
        match taken.await {
            Ok(Some(connection)) => {
                *held = Some(connection);
                let after_s = lost_since.take().map_or(0, |since| since.elapsed().as_secs());
                tracing::info!(after_s, "store: the session is held again");
            }
            Ok(None) => tracing::warn!("store: the session's lock is held by another connection; trying again"),
            Err(e) => tracing::debug!(error = %e, "store: taking the session again failed; trying again"),
        }
    }
}

/// Removes the uploads of the sessions that ended: those whose lock is free. The lock is
/// taken while they are removed, so that a store opening with that number meanwhile waits.
async fn remove_orphan_uploads(pool: &PgPool, own_session: i32) -> Result<(), Error> {
    let sessions: Vec<(i32,)> = sqlx::query_as("SELECT DISTINCT session FROM uploads WHERE session <> $1")
        .bind(own_session)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    if sessions.is_empty() {
        return Ok(());
    }
    let mut connection = pool.acquire().await.map_err(backend)?;
    for (session,) in sessions {
        let (ended,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
            .bind(SESSION_LOCK_CLASS)
            .bind(session)
            .fetch_one(&mut *connection)
            .await
            .map_err(backend)?;
        if !ended {
            continue;
        }
        let removed = async {
            let mut tx = connection.begin().await?;
            let ids: Vec<(Vec<u8>,)> = sqlx::query_as("DELETE FROM uploads WHERE session = $1 RETURNING id")
                .bind(session)
                .fetch_all(&mut *tx)
                .await?;
            let ids: Vec<Vec<u8>> = ids.into_iter().map(|(id,)| id).collect();
            sqlx::query("DELETE FROM blob_chunks WHERE location = ANY($1)").bind(&ids).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<usize, sqlx::Error>(ids.len())
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(SESSION_LOCK_CLASS)
            .bind(session)
            .execute(&mut *connection)
            .await
            .map_err(backend)?;
        let n_uploads = removed.map_err(backend)?;
        tracing::info!(n_uploads, "removing blob uploads never committed");
    }
    Ok(())
}

/// Removes one upload: its chunks and its registration.
async fn remove_upload(pool: &PgPool, upload: &[u8; 16]) -> Result<(), Error> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("DELETE FROM blob_chunks WHERE location = $1")
        .bind(&upload[..])
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query("DELETE FROM uploads WHERE id = $1").bind(&upload[..]).execute(&mut *tx).await.map_err(backend)?;
    tx.commit().await.map_err(backend)
}

fn backend(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolClosed => Error::Closed,
        e => Error::Backend(format!("PostgreSQL: {e}")),
    }
}

fn to_version(version: i64) -> Result<Version, Error> {
    Version::try_from(version).map_err(|_| Error::Corrupt(format!("negative version {version}")))
}

fn to_i64(version: Version) -> i64 {
    i64::try_from(version).expect("versions stay below 2^63")
}

/// A chunk number as PostgreSQL's `integer` (chunk numbers are below 2^28: see `Limits`).
fn to_idx(idx: u32) -> i32 {
    i32::try_from(idx).expect("chunk numbers stay below 2^31")
}

/// A row of `blobs`: hash, refcount, size, n_chunks, location.
type BlobRow = (Vec<u8>, i64, i64, i32, Vec<u8>);

fn decode_row((key, version, value): (Vec<u8>, i64, Vec<u8>)) -> Result<Entry, Error> {
    Ok(Entry { key, version: to_version(version)?, value })
}

fn decode_blob_row((refcount, size, n_chunks, location): (i64, i64, i32, Vec<u8>)) -> Result<BlobMeta, Error> {
    let corrupt = || Error::Corrupt(format!("blob record ({refcount}, {size}, {n_chunks})"));
    Ok(BlobMeta {
        refcount: u64::try_from(refcount).map_err(|_| corrupt())?,
        size: u64::try_from(size).map_err(|_| corrupt())?,
        n_chunks: u32::try_from(n_chunks).map_err(|_| corrupt())?,
        location,
    })
}

// The reads, on the pool or on a snapshot's transaction.

async fn get<'e>(executor: impl sqlx::PgExecutor<'e>, key: &[u8]) -> Result<Option<Entry>, Error> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT version, value FROM entries WHERE key = $1")
        .bind(key)
        .fetch_optional(executor)
        .await
        .map_err(backend)?;
    row.map(|(version, value)| Ok(Entry { key: key.to_vec(), version: to_version(version)?, value })).transpose()
}

/// The entries in the scan's range: its bounds, direction and limit in SQL. `bytea` compares
/// byte by byte, as RocksDB's keys do.
async fn scan<'e>(executor: impl sqlx::PgExecutor<'e>, scan: &Scan) -> Result<Vec<Entry>, Error> {
    let mut sql = String::from("SELECT key, version, value FROM entries WHERE true");
    let mut binds: Vec<&[u8]> = Vec::new();
    for (bound, included, excluded) in [(&scan.from, ">=", ">"), (&scan.to, "<=", "<")] {
        let (op, key) = match bound {
            Bound::Included(key) => (included, key),
            Bound::Excluded(key) => (excluded, key),
            Bound::Unbounded => continue,
        };
        binds.push(key);
        sql.push_str(&format!(" AND key {op} ${}", binds.len()));
    }
    let order = match scan.direction {
        Direction::Forward => "ASC",
        Direction::Reverse => "DESC",
    };
    // The limit is a parameter, not text: a caller's page size makes no new statement.
    let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
    sql.push_str(&format!(" ORDER BY key {order} LIMIT ${}", binds.len() + 1));
    let mut query = sqlx::query_as::<_, (Vec<u8>, i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql));
    for key in binds {
        query = query.bind(key);
    }
    let query = query.bind(limit);
    let rows = query.fetch_all(executor).await.map_err(backend)?;
    rows.into_iter().map(decode_row).collect()
}

async fn blob_meta<'e>(executor: impl sqlx::PgExecutor<'e>, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
    let row: Option<(i64, i64, i32, Vec<u8>)> =
        sqlx::query_as("SELECT refcount, size, n_chunks, location FROM blobs WHERE hash = $1")
            .bind(&hash.0[..])
            .fetch_optional(executor)
            .await
            .map_err(backend)?;
    row.map(decode_blob_row).transpose()
}

async fn blob_chunk<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    location: &[u8],
    idx: u32,
) -> Result<Option<Vec<u8>>, Error> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT data FROM blob_chunks WHERE location = $1 AND idx = $2")
        .bind(location)
        .bind(to_idx(idx))
        .fetch_optional(executor)
        .await
        .map_err(backend)?;
    Ok(row.map(|(data,)| data))
}

#[async_trait::async_trait]
impl Backend for PgBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        let mut reader = self.reader().await?;
        let read = get(reader.connection(), key).await;
        reader.done(read)
    }

    /// One query for the whole group of keys, answered in their order (prepared on its
    /// generic plan, the primary key's index: [`KEYED_SETTINGS`]).
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut reader = self.reader().await?;
        let rows: Result<Vec<(Vec<u8>, i64, Vec<u8>)>, Error> =
            sqlx::query_as(GET_MANY_SQL).bind(keys).fetch_all(reader.connection()).await.map_err(backend);
        let rows = reader.done(rows)?;
        let mut found: HashMap<Vec<u8>, Entry> = HashMap::with_capacity(rows.len());
        for row in rows {
            let entry = decode_row(row)?;
            found.insert(entry.key.clone(), entry);
        }
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    async fn scan(&self, range: &Scan) -> Result<Vec<Entry>, Error> {
        let mut reader = self.reader().await?;
        let read = scan(reader.connection(), range).await;
        reader.done(read)
    }

    async fn commit(&self, batch: Batch) -> Result<Committed, Error> {
        let requests = {
            let committer = self.committer.lock().expect("store lock poisoned");
            committer.as_ref().ok_or(Error::Closed)?.requests.clone()
        };
        let (reply, response) = oneshot::channel();
        requests.send(Request { batch, reply }).await.map_err(|_| Error::Closed)?;
        response.await.map_err(|_| Error::Closed)?
    }

    /// Chunk 0 registers the upload with this store's session, in the same transaction.
    async fn put_upload_chunk(&self, upload: &[u8; 16], idx: u32, data: &[u8]) -> Result<(), Error> {
        let mut tx = self.pool()?.begin().await.map_err(backend)?;
        if idx == 0 {
            sqlx::query("INSERT INTO uploads (id, session) VALUES ($1, $2)")
                .bind(&upload[..])
                .bind(self.shared.session)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("INSERT INTO blob_chunks (location, idx, data) VALUES ($1, $2, $3)")
            .bind(&upload[..])
            .bind(to_idx(idx))
            .bind(data)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn discard_upload(&self, upload: &[u8; 16], _n_chunks: u32) -> Result<(), Error> {
        remove_upload(self.pool()?, upload).await
    }

    fn discarder(&self) -> Arc<dyn Discard> {
        self.discarder.clone()
    }

    async fn count_uploads(&self) -> Result<u64, Error> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM uploads").fetch_one(self.pool()?).await.map_err(backend)?;
        Ok(count.unsigned_abs())
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        let mut reader = self.reader().await?;
        let read = blob_meta(reader.connection(), hash).await;
        reader.done(read)
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        let mut reader = self.reader().await?;
        let read = blob_chunk(reader.connection(), location, idx).await;
        reader.done(read)
    }

    async fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut tx = self.pool()?.begin().await.map_err(backend)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // The transaction's first read fixes what it sees: this clock and what it covers.
        let (version,): (i64,) =
            sqlx::query_as("SELECT version FROM clock").fetch_one(&mut *tx).await.map_err(backend)?;
        let backend = PgSnapshot { tx: tokio::sync::Mutex::new(tx) };
        Ok(Snapshot { version: to_version(version)?, backend: Arc::new(backend) })
    }

    /// One transaction, under the clock's lock: the records as they are, then the clock
    /// raised to the load's last version.
    async fn load(&self, load: Load, chunk_bytes: usize) -> Result<(), Error> {
        let mut tx = self.pool()?.begin().await.map_err(backend)?;
        let (last,): (i64,) =
            sqlx::query_as("SELECT version FROM clock FOR UPDATE").fetch_one(&mut *tx).await.map_err(backend)?;
        let mut writes = Writes::default();
        let version = load_records(&load, chunk_bytes, to_version(last)?, |family, key, value| {
            writes.push(family, key.to_vec(), Some(value.to_vec()));
        });
        writes.check()?;
        for part in writes.split(LOAD_ROWS_PER_STATEMENT) {
            part.write(&mut tx, version, "", Vec::new()).await?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Stops the committer after the batches already queued, ends the session (its lock
    /// goes with its connection) and closes the pool. Closing twice is harmless.
    async fn close(&self) -> Result<(), Error> {
        let committer = self.committer.lock().expect("store lock poisoned").take();
        if let Some(Committer { requests, task }) = committer {
            drop(requests);
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the store's committer task failed");
            }
        }
        self.shared.closed.store(true, Ordering::Release);
        self.listener.abort();
        self.session_keeper.abort();
        self.readers.close().await;
        if let Some(connection) = self.session_holder.lock().await.take()
            && let Err(e) = connection.close().await
        {
            tracing::warn!(error = %e, "closing the store's session connection");
        }
        self.shared.pool.close().await;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    /// The session's lock number, as `pg_locks` shows it (`objid`, unsigned).
    fn session(&self) -> u64 {
        u64::from(self.shared.session as u32)
    }

    /// The sessions whose advisory lock no connection holds, in this database.
    async fn ended_sessions(&self, sessions: &[u64]) -> Result<Vec<u64>, Error> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<i64> = sessions.iter().filter_map(|session| i64::try_from(*session).ok()).collect();
        let live: Vec<(i64,)> = sqlx::query_as(
            "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
             AND classid::int8 = $1 AND objid::int8 = ANY($2) \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .persistent(false)
        .bind(i64::from(SESSION_LOCK_CLASS))
        .bind(&numbers)
        .fetch_all(self.pool()?)
        .await
        .map_err(backend)?;
        let live: HashSet<u64> = live.into_iter().map(|(number,)| number as u64).collect();
        Ok(sessions.iter().copied().filter(|session| !live.contains(session)).collect())
    }

    fn take_remote_changes(&self) -> Option<mpsc::Receiver<Remote>> {
        self.remote.lock().expect("store lock poisoned").take()
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        self.listener.abort();
        self.session_keeper.abort();
    }
}

/// Takes the batches waiting, a group at a time, until every sender is gone. The committer
/// has a connection of its own, not the pool's: commits never wait behind reads for one. It
/// connects again for the next group after a failure (the database restarted, a failover).
async fn run_committer(shared: Arc<Shared>, mut receiver: mpsc::Receiver<Request>, group_max: usize) {
    let mut group = Vec::with_capacity(group_max);
    let mut connection: Option<PgConnection> = None;
    while receiver.recv_many(&mut group, group_max).await > 0 {
        if connection.is_none() {
            match keyed_connection(&shared.hosts).await {
                Ok(connected) => connection = Some(connected),
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed: cannot connect to PostgreSQL");
                    let problem = match &e {
                        Error::Backend(problem) => problem.clone(),
                        other => other.to_string(),
                    };
                    for request in group.drain(..) {
                        let _ = request.reply.send(Err(Error::Backend(problem.clone())));
                    }
                    continue;
                }
            }
        }
        let connected = connection.as_mut().expect("connected above");
        let last = match begin(connected).await {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                connection = None;
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(Error::Backend(e.to_string())));
                }
                continue;
            }
        };
        // The batches that came while the clock's lock was awaited (another node's commit
        // under way) join the group: with several nodes, groups stay as large as one
        // node's, instead of each node committing small ones in turn.
        while group.len() < group_max {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<Batch>, Vec<_>) =
            group.drain(..).map(|request| (request.batch, request.reply)).unzip();
        let (results, healthy) = commit_group(connected, &shared.channel, last, batches).await;
        if !healthy {
            connection = None;
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // A writer that stopped waiting does not want its answer.
            let _ = reply.send(result);
        }
    }
}

/// Commits a group of batches in one transaction: each batch's result, in their order, and
/// whether the connection is still fit for the next group.
async fn commit_group(
    connection: &mut PgConnection,
    channel: &str,
    last: Version,
    batches: Vec<Batch>,
) -> (Vec<Result<Committed, Error>>, bool) {
    let n_batches = batches.len();
    let mut uploads = Vec::new();
    match try_commit_group(connection, channel, last, batches, &mut uploads).await {
        Ok(results) => {
            uploads.into_iter().for_each(Upload::claimed);
            (results, true)
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            // The transaction may have committed if the connection broke during COMMIT: the
            // uploads it took may be a blob's content now, so they are not removed.
            uploads.into_iter().for_each(Upload::claimed);
            ((0..n_batches).map(|_| Err(Error::Backend(e.to_string()))).collect(), false)
        }
    }
}

/// Begins the group's transaction and takes the clock's lock, in one round trip (the simple
/// query protocol takes several statements): the clock's version. The transaction is this
/// connection's alone: on any error the committer drops the connection, which ends it.
async fn begin(connection: &mut PgConnection) -> Result<Version, Error> {
    let row = sqlx::raw_sql("BEGIN; SELECT version FROM clock FOR UPDATE")
        .fetch_one(&mut *connection)
        .await
        .map_err(backend)?;
    to_version(sqlx::Row::try_get::<i64, _>(&row, 0).map_err(backend)?)
}

/// The results of the batches if the transaction committed (some may have failed their own
/// checks), or the error that stopped the transaction; within the transaction [`begin`]
/// opened at the clock's version `last`.
async fn try_commit_group(
    connection: &mut PgConnection,
    channel: &str,
    last: Version,
    batches: Vec<Batch>,
    uploads: &mut Vec<Upload>,
) -> Result<Vec<Result<Committed, Error>>, Error> {
    let wanted: HashSet<(Family, Vec<u8>)> = batches.iter().flat_map(batch_reads).collect();
    let mut group = Group { fetched: fetch(connection, wanted).await?, writes: Writes::default() };
    let mut version = last;
    let mut results = Vec::with_capacity(batches.len());
    // The last value of each counter the group adds to, for the other nodes.
    let mut counters: HashMap<Vec<u8>, CounterValue> = HashMap::new();
    for batch in batches {
        let counter_keys: Vec<Vec<u8>> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Add { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let result = apply_batch(&group, batch, version + 1, uploads).map(|(committed, writes)| {
            for (family, key, value) in writes.into_ordered() {
                group.writes.push(family, key, value);
            }
            for (key, value) in counter_keys.into_iter().zip(&committed.counters) {
                counters.insert(key, CounterValue { version: committed.version, value: *value });
            }
            committed
        });
        if result.is_ok() {
            version += 1;
        }
        results.push(result);
    }
    if version == last {
        // Nothing to write: every batch failed its checks.
        sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await.map_err(backend)?;
        return Ok(results);
    }
    group.writes.check()?;
    // The notifications are sent by PostgreSQL at the commit, to every node listening, in
    // commit order.
    let payloads = if counters.is_empty() { Vec::new() } else { notify_payloads(&counters) };
    group.writes.write(connection, version, channel, payloads).await?;
    sqlx::raw_sql("COMMIT").execute(&mut *connection).await.map_err(backend)?;
    Ok(results)
}

/// The payloads that tell the other nodes the counters' values: `hexkey:value:version`
/// separated by spaces, each payload under PostgreSQL's limit; [`NOTIFY_MISSED`] alone
/// when they would be too many or a key too long for one.
fn notify_payloads(counters: &HashMap<Vec<u8>, CounterValue>) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for (key, value) in counters {
        let item = format!("{}:{}:{}", hex::encode(key), value.value, value.version);
        if item.len() > NOTIFY_PAYLOAD_MAX {
            return vec![NOTIFY_MISSED.into()];
        }
        match payloads.last_mut() {
            Some(last) if last.len() + 1 + item.len() <= NOTIFY_PAYLOAD_MAX => {
                last.push(' ');
                last.push_str(&item);
            }
            _ => payloads.push(item),
        }
        if payloads.len() > NOTIFY_PAYLOADS_MAX {
            return vec![NOTIFY_MISSED.into()];
        }
    }
    payloads
}

/// What a payload of [`notify_payloads`] says; a payload it cannot read counts as missed.
fn read_payload(payload: &str) -> Vec<Remote> {
    let read = |item: &str| -> Option<Remote> {
        let mut parts = item.split(':');
        let key = hex::decode(parts.next()?).ok()?;
        let value = parts.next()?.parse().ok()?;
        let version = parts.next()?.parse().ok()?;
        Some(Remote::Changed { key, value: CounterValue { version, value } })
    };
    if payload == NOTIFY_MISSED {
        return vec![Remote::Missed];
    }
    match payload.split(' ').map(read).collect::<Option<Vec<Remote>>>() {
        Some(heard) => heard,
        None => {
            tracing::warn!("store: a notification could not be read; reading every watched counter again");
            vec![Remote::Missed]
        }
    }
}

/// Listens to this schema's commits, the other nodes' and this one's, and passes on what
/// they changed. Whenever it starts listening (again), every watched counter is read again,
/// after `LISTEN`, so that nothing committed while it was not listening is missed; while it
/// cannot listen, they are read again every [`LISTEN_RETRY`] instead (the polling fallback).
/// Ends when the store stops taking what it hears.
async fn listen(pool: PgPool, channel: String, heard: mpsc::Sender<Remote>) {
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<PgListener, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(error = %e, "store: cannot listen to other nodes' commits; reading watched counters every second meanwhile");
                    failing_since = Some(std::time::Instant::now());
                }
                if heard.send(Remote::Missed).await.is_err() {
                    return;
                }
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
        };
        if let Some(since) = failing_since.take() {
            tracing::info!(after_s = since.elapsed().as_secs(), "store: listening to other nodes' commits again");
        }
        if heard.send(Remote::Missed).await.is_err() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    for remote in read_payload(notification.payload()) {
                        if heard.send(remote).await.is_err() {
                            return;
                        }
                    }
                }
                // The connection was lost: listen again.
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "store: listening to other nodes' commits failed");
                    break;
                }
            }
        }
    }
}

/// Reads every record of `wanted` in one query (one round trip, under the clock's lock):
/// each one's stored form (as `records` encodes it), or `None` when it does not exist.
///
/// Prepared once per connection, on the committer's [`KEYED_SETTINGS`].
async fn fetch(
    connection: &mut PgConnection,
    wanted: HashSet<(Family, Vec<u8>)>,
) -> Result<HashMap<(Family, Vec<u8>), Option<Vec<u8>>>, Error> {
    let mut entry_keys = Vec::new();
    let mut blob_hashes = Vec::new();
    let mut upload_ids = Vec::new();
    for (family, key) in &wanted {
        match (family, key.first()) {
            (Family::Kv, _) => entry_keys.push(key.clone()),
            (Family::Meta, Some(&META_BLOB)) => blob_hashes.push(key[1..].to_vec()),
            (Family::Meta, Some(&META_UPLOAD)) => upload_ids.push(key[1..].to_vec()),
            _ => return Err(Error::Backend(format!("no batch reads the record {family:?} {key:?}"))),
        }
    }
    let mut fetched: HashMap<(Family, Vec<u8>), Option<Vec<u8>>> =
        wanted.into_iter().map(|record| (record, None)).collect();
    if fetched.is_empty() {
        return Ok(fetched);
    }
    // One row per record found: its table (0 entries, 1 blobs, 2 uploads) and columns.
    let rows: Vec<FetchedRow> = sqlx::query_as(FETCH_SQL)
        .bind(&entry_keys)
        .bind(&blob_hashes)
        .bind(&upload_ids)
        .fetch_all(&mut *connection)
        .await
        .map_err(backend)?;
    for (table, key, first, value, size, n_chunks, location) in rows {
        let corrupt = || Error::Corrupt(format!("a record of table {table} lacks a column"));
        let (record, stored) = match table {
            0 => {
                let version = to_version(first.ok_or_else(corrupt)?)?;
                ((Family::Kv, key), encode_value(version, &value.ok_or_else(corrupt)?))
            }
            1 => {
                let columns = (first.ok_or_else(corrupt)?, size.ok_or_else(corrupt)?, n_chunks.ok_or_else(corrupt)?);
                let meta = decode_blob_row((columns.0, columns.1, columns.2, location.ok_or_else(corrupt)?))?;
                ((Family::Meta, [&[META_BLOB][..], &key].concat()), meta.encode())
            }
            _ => ((Family::Meta, [&[META_UPLOAD][..], &key].concat()), Vec::new()),
        };
        fetched.insert(record, Some(stored));
    }
    Ok(fetched)
}

/// A row of [`fetch`]'s query: table, key, version or refcount, value, size, n_chunks,
/// location.
type FetchedRow = (i16, Vec<u8>, Option<i64>, Option<Vec<u8>>, Option<i64>, Option<i32>, Option<Vec<u8>>);

/// The records as the next batch of a group sees them: the writes of the batches before it
/// over what was fetched for the group.
struct Group {
    fetched: HashMap<(Family, Vec<u8>), Option<Vec<u8>>>,
    writes: Writes,
}

impl Source for Group {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let record = (family, key.to_vec());
        if let Some(value) = self.writes.last.get(&record) {
            return Ok(value.clone());
        }
        match self.fetched.get(&record) {
            Some(value) => Ok(value.clone()),
            // `batch_reads` and `apply_batch` disagree: a bug, not the data's fault.
            None => Err(Error::Backend(format!("a batch read a record it does not list: {family:?} {key:?}"))),
        }
    }
}

/// Records to write (`None` deletes), each once with its last value, in the stored forms of
/// `records`; written table by table, one statement per table and kind.
#[derive(Default)]
struct Writes {
    last: HashMap<(Family, Vec<u8>), Option<Vec<u8>>>,
}

impl Writes {
    fn push(&mut self, family: Family, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.last.insert((family, key), value);
    }

    /// Every record is one this backend knows how to write.
    fn check(&self) -> Result<(), Error> {
        for ((family, key), value) in &self.last {
            let known = match family {
                Family::Kv => value.as_ref().is_none_or(|stored| stored.len() >= 8),
                Family::Blob => key.len() > 4,
                Family::Meta => match key.first() {
                    Some(&META_BLOB) => key.len() == 33,
                    // Uploads are registered by `put_upload_chunk`, never by a commit.
                    Some(&META_UPLOAD) => key.len() == 17 && value.is_none(),
                    _ => false,
                },
            };
            if !known {
                return Err(Error::Backend(format!("cannot write the record {family:?} {key:?}")));
            }
        }
        Ok(())
    }

    /// The records in parts of at most `rows` each; one empty part if there are none (its
    /// write still moves the clock).
    fn split(self, rows: usize) -> Vec<Writes> {
        let mut parts: Vec<Writes> = vec![Writes::default()];
        for (index, (record, value)) in self.last.into_iter().enumerate() {
            if index > 0 && index % rows.max(1) == 0 {
                parts.push(Writes::default());
            }
            parts.last_mut().expect("a part").last.insert(record, value);
        }
        parts
    }

    /// Writes the records (checked by [`Writes::check`]), moves the clock to `clock` and
    /// sends `payloads` on `channel`, in one statement (one round trip): one
    /// data-modifying part per table and kind of write, each a no-op when it has nothing.
    /// A key is written once ([`Writes::push`] keeps its last value), so the parts never
    /// touch the same row. Prepared, as [`fetch`]'s query.
    async fn write(
        self,
        connection: &mut PgConnection,
        clock: Version,
        channel: &str,
        payloads: Vec<String>,
    ) -> Result<(), Error> {
        let mut entries = (Vec::new(), Vec::new(), Vec::new());
        let mut entries_gone = Vec::new();
        let mut chunks = (Vec::new(), Vec::new(), Vec::new());
        let mut chunks_gone = (Vec::new(), Vec::new());
        let mut blobs = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut blobs_gone = Vec::new();
        let mut uploads_gone = Vec::new();
        for ((family, key), value) in self.last {
            match (family, value) {
                (Family::Kv, Some(stored)) => {
                    entries.1.push(to_i64(crate::records::read_version(&stored)?));
                    entries.2.push(stored[8..].to_vec());
                    entries.0.push(key);
                }
                (Family::Kv, None) => entries_gone.push(key),
                (Family::Blob, value) => {
                    let (location, idx) = key.split_at(key.len() - 4);
                    let idx = to_idx(u32::from_be_bytes(idx.try_into().expect("4 bytes")));
                    match value {
                        Some(data) => {
                            chunks.0.push(location.to_vec());
                            chunks.1.push(idx);
                            chunks.2.push(data);
                        }
                        None => {
                            chunks_gone.0.push(location.to_vec());
                            chunks_gone.1.push(idx);
                        }
                    }
                }
                (Family::Meta, value) if key[0] == META_BLOB => match value {
                    Some(stored) => {
                        let meta = BlobMeta::decode(&stored)?;
                        blobs.0.push(key[1..].to_vec());
                        blobs.1.push(i64::try_from(meta.refcount).map_err(|_| too_large("refcount"))?);
                        blobs.2.push(i64::try_from(meta.size).map_err(|_| too_large("size"))?);
                        blobs.3.push(to_idx(meta.n_chunks));
                        blobs.4.push(meta.location);
                    }
                    None => blobs_gone.push(key[1..].to_vec()),
                },
                (Family::Meta, _) => uploads_gone.push(key[1..].to_vec()),
            }
        }
        sqlx::query(WRITE_SQL)
            .bind(&entries_gone)
            .bind(&entries.0)
            .bind(&entries.1)
            .bind(&entries.2)
            .bind(&chunks_gone.0)
            .bind(&chunks_gone.1)
            .bind(&chunks.0)
            .bind(&chunks.1)
            .bind(&chunks.2)
            .bind(&blobs_gone)
            .bind(&blobs.0)
            .bind(&blobs.1)
            .bind(&blobs.2)
            .bind(&blobs.3)
            .bind(&blobs.4)
            .bind(&uploads_gone)
            .bind(to_i64(clock))
            .bind(channel)
            .bind(&payloads)
            .execute(&mut *connection)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

fn too_large(what: &str) -> Error {
    Error::Corrupt(format!("a blob's {what} is above 2^63"))
}

/// A snapshot: a `REPEATABLE READ` transaction, one query at a time.
struct PgSnapshot {
    tx: tokio::sync::Mutex<Transaction<'static, Postgres>>,
}

#[async_trait::async_trait]
impl SnapshotBackend for PgSnapshot {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        get(&mut **self.tx.lock().await, key).await
    }

    async fn scan(&self, range: &Scan) -> Result<Vec<Entry>, Error> {
        scan(&mut **self.tx.lock().await, range).await
    }

    async fn blobs(&self, after: Option<BlobHash>, limit: usize) -> Result<Vec<(BlobHash, BlobMeta)>, Error> {
        let after = after.map(|hash| hash.0.to_vec()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.tx.lock().await;
        let rows: Vec<BlobRow> = sqlx::query_as(
            "SELECT hash, refcount, size, n_chunks, location FROM blobs WHERE hash > $1 ORDER BY hash LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(hash, refcount, size, n_chunks, location)| {
                let hash: [u8; 32] =
                    hash.try_into().map_err(|_| Error::Corrupt("a blob's hash is not 32 bytes".into()))?;
                Ok((BlobHash(hash), decode_blob_row((refcount, size, n_chunks, location))?))
            })
            .collect()
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        blob_meta(&mut **self.tx.lock().await, hash).await
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        blob_chunk(&mut **self.tx.lock().await, location, idx).await
    }
}
