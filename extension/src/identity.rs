//! Who pg_ingest's work runs as. Two ways, each written once:
//!
//! - [`run_as_owner`]: the ledger and job bookkeeping, as the extension's owner, the way a
//!   SECURITY DEFINER function runs: a fixed `search_path` (`pg_catalog, pg_temp`) so that
//!   nothing the caller defines is found, and a security context in which the caller's
//!   identity cannot be taken back (`SET ROLE` and friends are refused).
//! - [`Caller`]: what a background worker needs to become the role that started it, the way
//!   PostgreSQL's parallel workers take their leader's identity: connect as the role that
//!   logged in, then take the caller's user id *and* security context, with
//!   `SECURITY_LOCAL_USERID_CHANGE` added so that `RESET ROLE` or `SET SESSION AUTHORIZATION`
//!   cannot reach the login role's rights. Batch workers, writers and jobs all use it.
//!
//! Privilege checks come before any of this, and before any lock: [`check_insert_before_lock`].

use std::ffi::CString;

use pgrx::pg_sys::{self, Oid};
use pgrx::PgSqlErrorCode;

use crate::error::IngestError;

/// The `search_path` of everything pg_ingest runs with raised rights (PostgreSQL's advice for
/// SECURITY DEFINER functions): the catalog first, the session's temporary schema last.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Sets a GUC: `GUC_ACTION_SAVE` at the current nesting level (undone by `AtEOXact_GUC`), or
/// `GUC_ACTION_LOCAL` for the rest of the transaction (`SET LOCAL`).
fn set_guc(name: &str, value: &str, action: pg_sys::GucAction::Type) {
    let (name, value) = (CString::new(name).unwrap(), CString::new(value).unwrap_or_default());
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// Sets a GUC for the rest of the current transaction (`SET LOCAL`).
pub fn set_guc_local(name: &str, value: &str) {
    set_guc(name, value, pg_sys::GucAction::GUC_ACTION_LOCAL);
}

/// Restores the user id, security context and GUC nesting level it was made with, when
/// dropped: on return, and when an ERROR unwinds through it.
struct Restore {
    user: Oid,
    context: i32,
    guc_level: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        unsafe {
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
            pg_sys::AtEOXact_GUC(true, self.guc_level);
        }
    }
}

/// The extension's owner, looked up with the fixed search_path in force.
fn extension_owner() -> Oid {
    use pgrx::prelude::*;
    Spi::get_one::<Oid>(
        "SELECT e.extowner FROM pg_catalog.pg_extension e \
          WHERE e.extname OPERATOR(pg_catalog.=) 'pg_ingest'::pg_catalog.name",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "extension \"pg_ingest\" is not created in this database",
        )
        .raise()
    })
}

/// Runs `f` with the fixed search_path and, when `as_owner`, as the extension's owner in a
/// security-restricted context; then everything is as it was (an ERROR restores it too).
fn guarded<R>(as_owner: bool, f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (Oid::INVALID, 0);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _restore = Restore { user, context, guc_level: unsafe { pg_sys::NewGUCNestLevel() } };
    set_guc("search_path", SAFE_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SAVE);
    if as_owner {
        let owner = extension_owner();
        let restricted = (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
        unsafe { pg_sys::SetUserIdAndSecContext(owner, context | restricted) };
    }
    f()
}

/// Runs `f` (statements pg_ingest runs itself as the caller) with the fixed search_path: no
/// function or operator of the caller's schemas is found.
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    guarded(false, f)
}

/// Runs `f` as the extension's owner, the way a SECURITY DEFINER function runs: the fixed
/// search_path, the owner's user id in a security-restricted context, then everything as it
/// was. The one way pg_ingest raises its rights.
pub fn run_as_owner<R>(f: impl FnOnce() -> R) -> R {
    guarded(true, f)
}

/// INSERT on the table, or on at least one of its columns, for the current user: checked
/// before the table is locked, so that a role without it cannot even queue for the lock.
/// The full column-by-column check is COPY's, once the table is open.
pub fn check_insert_before_lock(oid: Oid) {
    unsafe {
        let user = pg_sys::GetUserId();
        let name = pg_sys::get_rel_name(oid);
        if name.is_null() {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {oid:?} does not exist"),
            )
            .raise()
        }
        let table_ok = pg_sys::pg_class_aclcheck(oid, user, pg_sys::ACL_INSERT as _) == pg_sys::AclResult::ACLCHECK_OK;
        let any_column_ok = table_ok
            || pg_sys::pg_attribute_aclcheck_all(oid, user, pg_sys::ACL_INSERT as _, pg_sys::AclMaskHow::ACLMASK_ANY)
                == pg_sys::AclResult::ACLCHECK_OK;
        if !any_column_ok {
            let name = std::ffi::CStr::from_ptr(name).to_string_lossy();
            IngestError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied for table {name}"),
            )
            .raise()
        }
    }
}

/// Whether the current user has the privileges of `role` (by name): membership with
/// inheritance, as `pg_has_role(role, 'USAGE')`. False for a role that no longer exists.
pub fn has_privs_of(role: &str) -> bool {
    let Ok(c) = CString::new(role) else { return false };
    has_privs_of_role(unsafe { pg_sys::get_role_oid(c.as_ptr(), true) })
}

/// The current user (`current_user`), as ledger rows record who made them: by OID, so that a
/// role renamed keeps them and a new role with a dropped role's name does not get them.
pub fn current_user() -> Oid {
    unsafe { pg_sys::GetUserId() }
}

/// Whether the current user has the privileges of role `role` (an OID: false for one dropped).
pub fn has_privs_of_role(role: Oid) -> bool {
    role != Oid::INVALID && unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) }
}

/// Who started a worker: enough for the worker to become exactly that, and no more.
/// Fixed size, so that it fits in `bgw_extra` or shared memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub database: Oid,
    /// The role that logged in: what the worker connects as (PostgreSQL 15 lets a worker
    /// connect only as a role that can log in).
    pub login_role: Oid,
    /// The current user: what every statement of the worker runs as.
    pub user: Oid,
    /// The caller's security context (SECURITY DEFINER, security-restricted operation...).
    pub sec_context: i32,
}

impl Caller {
    /// The calling backend's identity.
    pub fn current() -> Self {
        let (mut user, mut sec_context) = (Oid::INVALID, 0);
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut sec_context);
            Self { database: pg_sys::MyDatabaseId, login_role: pg_sys::GetAuthenticatedUserId(), user, sec_context }
        }
    }

    /// In a background worker: connects to the caller's database and becomes the caller,
    /// with no way back to the login role (`SET ROLE`, `RESET ROLE`, `SET SESSION
    /// AUTHORIZATION` are refused in this context). Transactions started afterwards restore
    /// this identity when they abort.
    pub fn become_in_worker(&self) {
        unsafe {
            pg_sys::BackgroundWorkerInitializeConnectionByOid(self.database, self.login_role, 0);
            pg_sys::SetUserIdAndSecContext(self.user, self.sec_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        }
    }
}

/// The current `search_path`, for a worker to take.
pub fn current_search_path() -> String {
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetConfigOptionByName(c"search_path".as_ptr(), std::ptr::null_mut(), false))
            .to_string_lossy()
            .into_owned()
    }
}
