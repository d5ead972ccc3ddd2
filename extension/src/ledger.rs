//! The ledger: `ingest.loads`, `ingest.rejects` and `ingest.files`, written through SPI in the
//! caller's transaction (so they commit or roll back with the rows), as the extension's owner
//! (loaders need no privileges on them; row-level security lets each role read the rows of
//! tables it may SELECT and of its own loads). An entry moves only under its own role's load.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use pg_ingest_core::error::RowError;

use crate::identity::run_as_owner;
use crate::ingest::LoadSummary;

/// What the ledger knows of one file in one table.
#[derive(Debug, Clone)]
pub struct FileEntry {
    pub byte_offset: i64,
    pub lines: i64,
    pub head: Fingerprint,
    /// The bytes just before `byte_offset`.
    pub tail: Fingerprint,
    pub load_id: i64,
    pub loaded_at: String,
}

/// A fingerprint of `bytes` bytes of a file (at its start, or just before an offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub bytes: i32,
    pub hash: String,
}

pub(crate) fn spi_error(e: pgrx::spi::Error) -> ! {
    crate::error::IngestError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_ingest ledger: {e}")).raise()
}

/// Runs a ledger write as the extension's owner.
fn write(sql: &str, args: &[pgrx::datum::DatumWithOid]) {
    run_as_owner(|| Spi::run_with_args(sql, args)).unwrap_or_else(|e| spi_error(e));
}

/// Serializes loads of the same file (device and inode, whatever path reaches it) into the
/// same table until the end of the transaction: a second load waits for the first, then sees
/// what it did.
pub fn lock_file(target: Oid, device: u64, inode: u64) {
    lock_key(&format!("pg_ingest:{}:{device}:{inode}", u32::from(target)));
}

/// What distinguishes pg_ingest's locks from every advisory lock SQL can take: SQL's
/// `pg_advisory_*` functions set the tag's last field to 1 (one bigint key) or 2 (two int4
/// keys), never this.
const LOCK_TAG_KIND: u16 = 0x7067;

/// Takes pg_ingest's own exclusive lock on `key` to the end of the transaction, waiting for
/// it as `pg_advisory_xact_lock` waits (deadlock detection, cancel, `lock_timeout`), shown in
/// `pg_locks` as an advisory lock with `objsubid` 28775, but on a tag no SQL can produce: a
/// role cannot take or hold it to stall others' loads.
fn lock_key(key: &str) {
    // SHA-256: keys are partly a role's to choose (a client file's name), and no role may
    // find one that takes another's lock
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    let tag = pg_sys::LOCKTAG {
        locktag_field1: u32::from(unsafe { pg_sys::MyDatabaseId }),
        locktag_field2: (hash >> 32) as u32,
        locktag_field3: hash as u32,
        locktag_field4: LOCK_TAG_KIND,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as _, false, false) };
}

/// What the ledger knows of the file with this device and inode in this table, and the path
/// it was last loaded from.
pub fn file_entry(target: Oid, device: u64, inode: u64) -> Option<(String, FileEntry)> {
    let found = run_as_owner(|| {
        Spi::connect_mut(|c| {
            let rows = c.update(
                "SELECT byte_offset, lines, head_bytes, head_fingerprint, tail_bytes, tail_fingerprint, \
                        load_id, loaded_at::text, path, loaded_by::pg_catalog.oid \
                   FROM ingest.files WHERE target_oid = $1 AND device = $2 AND inode = $3",
                None,
                &[target.into(), (device as i64).into(), (inode as i64).into()],
            )?;
            let mut entry = None;
            for row in rows {
                let e = FileEntry {
                    byte_offset: row.get(1)?.unwrap_or(0),
                    lines: row.get(2)?.unwrap_or(0),
                    head: Fingerprint { bytes: row.get(3)?.unwrap_or(0), hash: row.get(4)?.unwrap_or_default() },
                    tail: Fingerprint { bytes: row.get(5)?.unwrap_or(0), hash: row.get(6)?.unwrap_or_default() },
                    load_id: row.get(7)?.unwrap_or(0),
                    loaded_at: row.get(8)?.unwrap_or_default(),
                };
                entry = Some((row.get::<String>(9)?.unwrap_or_default(), e, row.get::<Oid>(10)?.unwrap_or_default()));
            }
            Ok::<_, pgrx::spi::Error>(entry)
        })
    })
    .unwrap_or_else(|e| spi_error(e));
    found.map(|(path, e, owner)| {
        check_owner(owner);
        (path, e)
    })
}

/// A ledger entry moves only under its own role's load: another role may use it only with
/// that role's privileges (a member of it, or a superuser), as for any object it owns.
///
/// The error names neither the role nor the path the entry was loaded from: the caller may not
/// be allowed to see the entry (`ingest.files`).
fn check_owner(owner: Oid) {
    if !crate::identity::has_privs_of_role(owner) {
        crate::error::IngestError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to load this file into this table: its ledger entry belongs to another role",
        )
        .detail("A load moves a file's ledger entry; only a role with the privileges of the role that made it may.")
        .hint("Load it as the role that loaded it before (or a member of that role), or into another table.")
        .raise()
    }
}

/// The latest load of another file (device and inode) from this path into this table.
pub fn other_file_at(target: Oid, path: &str, device: u64, inode: u64) -> Option<i64> {
    run_as_owner(|| {
        Spi::connect_mut(|c| {
            c.update(
                "SELECT max(load_id) FROM ingest.files WHERE target_oid = $1 AND path = $2 \
                    AND (device, inode) IS DISTINCT FROM ($3, $4)",
                None,
                &[target.into(), path.into(), (device as i64).into(), (inode as i64).into()],
            )?
            .first()
            .get_one::<i64>()
        })
    })
    .unwrap_or_else(|e| spi_error(e))
}

/// Opens a load record (status `running`); returns its id.
pub fn start_load(
    file: &str,
    target: &str,
    target_oid: Oid,
    on_error: &str,
    start_offset: i64,
    parent_load_id: Option<i64>,
) -> i64 {
    // the role that loads: current_user (after SET ROLE, in a SECURITY DEFINER function), not
    // the session's
    let loaded_by = crate::identity::current_user();
    run_as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "INSERT INTO ingest.loads (file, target, target_oid, loaded_by, started_at, status, on_error, start_offset, \
                                       parent_load_id) \
             VALUES ($1, $2, $3, $7, clock_timestamp(), 'running', $4, $5, $6) RETURNING load_id",
            &[
                file.into(),
                target.into(),
                target_oid.into(),
                on_error.into(),
                start_offset.into(),
                parent_load_id.into(),
                loaded_by.into(),
            ],
        )
    })
    .unwrap_or_else(|e| spi_error(e))
    .expect("INSERT … RETURNING returns a row")
}

/// Closes a load record with its result and the first rejected line, if any.
/// Lines of an `on_conflict` load whose row met an existing one.
pub fn record_conflicts(load_id: i64, n: i64) {
    write("UPDATE ingest.loads SET rows_conflicting = $2 WHERE load_id = $1", &[load_id.into(), n.into()]);
}

pub fn finish_load(load_id: i64, c: &LoadSummary, first_error: Option<String>) {
    write(
        "UPDATE ingest.loads SET finished_at = clock_timestamp(), status = $2, lines = $3, rows_inserted = $4, \
             rows_rejected = $5, lines_skipped = $6, bytes = $7, seconds = $8, first_error = $9 WHERE load_id = $1",
        &[
            load_id.into(),
            c.status.as_str().into(),
            c.lines.into(),
            c.rows_inserted.into(),
            c.rows_rejected.into(),
            c.lines_skipped.into(),
            c.bytes.into(),
            c.seconds.into(),
            first_error.into(),
        ],
    );
}

/// Writes rejected lines, many at a time.
pub fn record_rejects(load_id: i64, file: &str, rejects: &[RowError]) {
    if rejects.is_empty() {
        return;
    }
    let lines: Vec<i64> = rejects.iter().map(|r| r.line as i64).collect();
    let offsets: Vec<i64> = rejects.iter().map(|r| r.offset as i64).collect();
    let columns: Vec<Option<String>> = rejects.iter().map(|r| r.column.clone()).collect();
    let states: Vec<String> = rejects.iter().map(|r| r.sqlstate.to_owned()).collect();
    let messages: Vec<String> = rejects.iter().map(|r| r.message.clone()).collect();
    let details: Vec<Option<String>> = rejects.iter().map(|r| r.detail.clone()).collect();
    let raws: Vec<Option<String>> = rejects.iter().map(|r| r.raw.clone()).collect();
    write(
            "INSERT INTO ingest.rejects (load_id, file, line, byte_offset, column_name, sqlstate, message, detail, raw_line) \
             SELECT $1, $2, * FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])",
            &[
                load_id.into(),
                file.into(),
                lines.into(),
                offsets.into(),
                columns.into(),
                states.into(),
                messages.into(),
                details.into(),
                raws.into(),
            ],
    );
}

/// What the OS says of an open file.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// Unix epoch seconds.
    pub mtime: Option<f64>,
}

/// How far a file is loaded, to be recorded in `ingest.files`.
pub struct FileState<'a> {
    pub target_oid: Oid,
    /// The resolved path: the ledger's key.
    pub path: &'a str,
    pub target: &'a str,
    pub byte_offset: i64,
    pub lines: i64,
    pub facts: FileFacts,
    pub head: &'a Fingerprint,
    pub tail: &'a Fingerprint,
    pub load_id: i64,
}

pub fn save_file(s: &FileState) {
    write(
        "INSERT INTO ingest.files (target_oid, path, target, byte_offset, lines, size, mtime, device, inode, \
                                   head_bytes, head_fingerprint, tail_bytes, tail_fingerprint, load_id, loaded_at, \
                                   loaded_by) \
         VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), $8, $9, $10, $11, $12, $13, $14, clock_timestamp(), $15) \
         ON CONFLICT (target_oid, device, inode) DO UPDATE SET path = EXCLUDED.path, target = EXCLUDED.target, \
           byte_offset = EXCLUDED.byte_offset, lines = EXCLUDED.lines, size = EXCLUDED.size, mtime = EXCLUDED.mtime, \
           head_bytes = EXCLUDED.head_bytes, head_fingerprint = EXCLUDED.head_fingerprint, \
           tail_bytes = EXCLUDED.tail_bytes, tail_fingerprint = EXCLUDED.tail_fingerprint, \
           load_id = EXCLUDED.load_id, loaded_at = EXCLUDED.loaded_at, loaded_by = EXCLUDED.loaded_by",
        &[
            s.target_oid.into(),
            s.path.into(),
            s.target.into(),
            s.byte_offset.into(),
            s.lines.into(),
            (s.facts.size as i64).into(),
            s.facts.mtime.into(),
            (s.facts.device as i64).into(),
            (s.facts.inode as i64).into(),
            s.head.bytes.into(),
            s.head.hash.as_str().into(),
            s.tail.bytes.into(),
            s.tail.hash.as_str().into(),
            s.load_id.into(),
            crate::identity::current_user().into(),
        ],
    );
}

/// A range committed by one writer of a multi-writer load.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub start: i64,
    pub end: i64,
    pub first_line: i64,
    pub lines: i64,
    pub device: i64,
    pub inode: i64,
    pub head: Fingerprint,
    pub load_id: i64,
}

/// The committed ranges of a file (device and inode) in a table, in file order.
pub fn file_ranges(target: Oid, device: u64, inode: u64) -> Vec<FileRange> {
    let found = run_as_owner(|| {
        Spi::connect_mut(|c| {
            let rows = c.update(
                "SELECT range_start, range_end, first_line, lines, device, inode, head_bytes, head_fingerprint, load_id, \
                        loaded_by::pg_catalog.oid \
                   FROM ingest.file_ranges WHERE target_oid = $1 AND device = $2 AND inode = $3 ORDER BY range_start",
                None,
                &[target.into(), (device as i64).into(), (inode as i64).into()],
            )?;
            let mut ranges = Vec::new();
            for r in rows {
                let owner: Oid = r.get(10)?.unwrap_or_default();
                ranges.push((owner, FileRange {
                    start: r.get(1)?.unwrap_or(0),
                    end: r.get(2)?.unwrap_or(0),
                    first_line: r.get(3)?.unwrap_or(1),
                    lines: r.get(4)?.unwrap_or(0),
                    device: r.get(5)?.unwrap_or(-1),
                    inode: r.get(6)?.unwrap_or(-1),
                    head: Fingerprint { bytes: r.get(7)?.unwrap_or(0), hash: r.get(8)?.unwrap_or_default() },
                    load_id: r.get(9)?.unwrap_or(0),
                }));
            }
            Ok::<_, pgrx::spi::Error>(ranges)
        })
    })
    .unwrap_or_else(|e| spi_error(e));
    found
        .into_iter()
        .map(|(owner, range)| {
            check_owner(owner);
            range
        })
        .collect()
}

pub fn save_range(target: Oid, path: &str, r: &FileRange, parent_load_id: i64) {
    write(
        "INSERT INTO ingest.file_ranges (target_oid, path, range_start, range_end, first_line, lines, device, inode, \
                                         head_bytes, head_fingerprint, load_id, parent_load_id, loaded_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            target.into(),
            path.into(),
            r.start.into(),
            r.end.into(),
            r.first_line.into(),
            r.lines.into(),
            r.device.into(),
            r.inode.into(),
            r.head.bytes.into(),
            r.head.hash.as_str().into(),
            r.load_id.into(),
            parent_load_id.into(),
            crate::identity::current_user().into(),
        ],
    );
}

/// Forgets the committed ranges of a file (device and inode) in a table.
pub fn delete_ranges(target: Oid, device: u64, inode: u64) {
    write(
        "DELETE FROM ingest.file_ranges WHERE target_oid = $1 AND device = $2 AND inode = $3",
        &[target.into(), (device as i64).into(), (inode as i64).into()],
    );
}

/// What the range loads of a multi-writer load did: (lines, inserted, rejected, skipped,
/// bytes, first error), summed.
pub fn range_totals(parent_load_id: i64) -> (i64, i64, i64, i64, i64, Option<String>) {
    run_as_owner(|| {
        Spi::connect_mut(|c| {
            let r = c
                .update(
                    "SELECT coalesce(sum(lines), 0)::bigint, coalesce(sum(rows_inserted), 0)::bigint, \
                            coalesce(sum(rows_rejected), 0)::bigint, coalesce(sum(lines_skipped), 0)::bigint, \
                            coalesce(sum(bytes), 0)::bigint, \
                            (array_agg(first_error ORDER BY start_offset) FILTER (WHERE first_error IS NOT NULL))[1] \
                       FROM ingest.loads WHERE parent_load_id = $1",
                    None,
                    &[parent_load_id.into()],
                )?
                .first();
            Ok::<_, pgrx::spi::Error>((
                r.get(1)?.unwrap_or(0),
                r.get(2)?.unwrap_or(0),
                r.get(3)?.unwrap_or(0),
                r.get(4)?.unwrap_or(0),
                r.get(5)?.unwrap_or(0),
                r.get(6)?,
            ))
        })
    })
    .unwrap_or_else(|e| spi_error(e))
}

/// What the ledger knows of a client file (`host:path`) in a table.
#[derive(Debug, Clone, Default)]
pub struct ClientFile {
    pub byte_offset: i64,
    pub lines: i64,
    pub size: i64,
    pub device: i64,
    pub inode: i64,
    pub head_fingerprint: String,
    pub tail_fingerprint: String,
    pub load_id: i64,
}

thread_local! {
    /// Client files whose state `ingest.client_file_state` handed out in this backend: which
    /// transaction, table, file and role, and whether the COPY that moves the entry ran.
    static CLIENT_GRANTS: std::cell::RefCell<Vec<ClientGrant>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Clone, PartialEq, Eq)]
struct ClientGrant {
    transaction: u32,
    target: Oid,
    source: String,
    user: Oid,
    copied: bool,
}

/// This transaction of this backend (grants of an earlier one are worthless).
fn transaction_marker() -> u32 {
    unsafe { crate::pg_compat::local_transaction_id() }
}

/// `ingest.client_file_state` told the current role what the ledger knows of `source` in
/// `target`, under the file's lock: a COPY with `LEDGER` for it may follow in this transaction.
pub fn grant_client_load(target: Oid, source: &str) {
    let grant = ClientGrant {
        transaction: transaction_marker(),
        target,
        source: source.to_owned(),
        user: unsafe { pg_sys::GetUserId() },
        copied: false,
    };
    CLIENT_GRANTS.with(|g| {
        let mut g = g.borrow_mut();
        g.retain(|x| x.transaction == grant.transaction && !(x.target == target && x.source == source));
        g.push(grant);
    });
}

/// A client's ledger moves only under the load that asked for its state: by the same role, in
/// the same transaction, after `ingest.client_file_state`; `copied`: once, after its COPY
/// ended (the client's own call comes first; a deferred trigger firing at COMMIT finds none).
pub fn check_client_grant(target: Oid, source: &str, copied: bool) {
    let ok = with_client_grant(target, source, |x| !copied || std::mem::take(&mut x.copied));
    if !ok {
        crate::error::IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the ledger of client file \"{source}\" moves only under its own load"),
        )
        .detail(if copied {
            "ingest.client_file_tail follows the COPY … (LEDGER …) of the same file, in the same transaction, by the same role."
        } else {
            "COPY … WITH (LEDGER …) follows ingest.client_file_state for the same file, in the same transaction, by the same role."
        })
        .hint("pg-ingest load FILE does this; call ingest.client_file_state first.")
        .raise()
    }
}

/// The COPY of a client file ended and recorded where it stopped: its tail may follow (not
/// earlier, from a trigger of the load).
pub fn mark_client_copied(target: Oid, source: &str) {
    with_client_grant(target, source, |x| {
        x.copied = true;
        true
    });
}

/// Runs `f` on this transaction's grant of (target, source) to the current role, if any.
fn with_client_grant(target: Oid, source: &str, f: impl FnOnce(&mut ClientGrant) -> bool) -> bool {
    let (transaction, user) = (transaction_marker(), unsafe { pg_sys::GetUserId() });
    CLIENT_GRANTS.with(|g| {
        let mut g = g.borrow_mut();
        g.iter_mut()
            .find(|x| x.transaction == transaction && x.target == target && x.source == source && x.user == user)
            .is_some_and(f)
    })
}

/// Serializes loads of one client file by the current role into one table to the end of the
/// transaction (another role's loads of the same name are another entry: they do not wait).
pub fn lock_client_file(target: Oid, source: &str) {
    let user = u32::from(unsafe { pg_sys::GetUserId() });
    lock_key(&format!("pg_ingest:{}:client:{user}:{source}", u32::from(target)));
}

/// The current role's entry for a client file in a table. A client file is what its client
/// says it is (name, device, inode, fingerprints: nothing the server can check), so each role
/// has entries of its own and a load trusts only its own role's: another role's, even a less
/// privileged one's, could make it skip lines that role never loaded.
pub fn client_file(target: Oid, source: &str) -> Option<ClientFile> {
    let user = crate::identity::current_user();
    run_as_owner(|| {
        Spi::connect_mut(|c| {
            let rows = c.update(
                "SELECT byte_offset, lines, size, device, inode, head_fingerprint, tail_fingerprint, load_id \
                   FROM ingest.client_files WHERE target_oid OPERATOR(pg_catalog.=) $1 AND source OPERATOR(pg_catalog.=) $2 \
                    AND loaded_by::pg_catalog.oid OPERATOR(pg_catalog.=) $3",
                None,
                &[target.into(), source.into(), user.into()],
            )?;
            let mut found = None;
            for r in rows {
                found = Some(ClientFile {
                    byte_offset: r.get(1)?.unwrap_or(0),
                    lines: r.get(2)?.unwrap_or(0),
                    size: r.get(3)?.unwrap_or(0),
                    device: r.get(4)?.unwrap_or(0),
                    inode: r.get(5)?.unwrap_or(0),
                    head_fingerprint: r.get(6)?.unwrap_or_default(),
                    tail_fingerprint: r.get(7)?.unwrap_or_default(),
                    load_id: r.get(8)?.unwrap_or(0),
                });
            }
            Ok::<_, pgrx::spi::Error>(found)
        })
    })
    .unwrap_or_else(|e| spi_error(e))
}

pub fn save_client_file(target: Oid, target_name: &str, source: &str, f: &ClientFile) {
    write(
        "INSERT INTO ingest.client_files AS f (target_oid, source, target, byte_offset, lines, size, device, inode, \
                                              head_fingerprint, tail_fingerprint, load_id, loaded_at, loaded_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, pg_catalog.clock_timestamp(), $12) \
         ON CONFLICT (target_oid, source, loaded_by) DO UPDATE SET target = EXCLUDED.target, \
           byte_offset = EXCLUDED.byte_offset, lines = EXCLUDED.lines, size = EXCLUDED.size, device = EXCLUDED.device, \
           inode = EXCLUDED.inode, head_fingerprint = EXCLUDED.head_fingerprint, \
           tail_fingerprint = EXCLUDED.tail_fingerprint, load_id = EXCLUDED.load_id, loaded_at = EXCLUDED.loaded_at",
        &[
            target.into(),
            source.into(),
            target_name.into(),
            f.byte_offset.into(),
            f.lines.into(),
            f.size.into(),
            f.device.into(),
            f.inode.into(),
            f.head_fingerprint.as_str().into(),
            f.tail_fingerprint.as_str().into(),
            f.load_id.into(),
            crate::identity::current_user().into(),
        ],
    );
}
