//! Every difference between the PostgreSQL majors pg_ingest supports (15, 17, 18), in one place.
//! The rest of the extension calls these and never tests a major itself. The `pre_pg16`,
//! `pre_pg17` and `pre_pg18` cfg aliases come from build.rs (from the `pgNN` feature being built).

use pgrx::pg_sys;

/// COPY FROM's state.
pub type CopyFromState = pg_sys::CopyFromState;

/// The `i`-th attribute of a tuple descriptor (`TupleDescAttr`). PostgreSQL 18 puts an array of
/// `CompactAttribute`s before the `FormData_pg_attribute`s.
///
/// # Safety
/// `desc` is a valid tuple descriptor and `i < natts`.
#[inline]
pub unsafe fn tuple_desc_attr<'a>(desc: pg_sys::TupleDesc, i: usize) -> &'a pg_sys::FormData_pg_attribute {
    unsafe {
        #[cfg(pre_pg18)]
        let first = (*desc).attrs.as_ptr();
        #[cfg(not(pre_pg18))]
        let first = (*desc).compact_attrs.as_ptr().add((*desc).natts as usize) as *const pg_sys::FormData_pg_attribute;
        &*first.add(i)
    }
}

/// Is the set empty? From PostgreSQL 16 on an empty Bitmapset is always NULL (and
/// `bms_is_empty` is a macro).
///
/// # Safety
/// `set` is NULL or a valid Bitmapset.
#[inline]
pub unsafe fn bms_is_empty(set: *const pg_sys::Bitmapset) -> bool {
    #[cfg(pre_pg16)]
    return unsafe { pg_sys::bms_is_empty(set) };
    #[cfg(not(pre_pg16))]
    return set.is_null();
}

/// Installs a backend signal handler (PostgreSQL 18 names the backend's `pqsignal_be`).
///
/// # Safety
/// As `pqsignal`.
pub unsafe fn pqsignal(signo: i32, handler: pg_sys::pqsigfunc) {
    unsafe {
        #[cfg(pre_pg18)]
        pg_sys::pqsignal(signo, handler);
        #[cfg(not(pre_pg18))]
        pg_sys::pqsignal_be(signo, handler);
    }
}

/// The OID of the relation's primary key index, or InvalidOid. A deferrable primary key
/// counts as none, as it always has (PostgreSQL 18 asks; earlier majors skip it themselves).
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn relation_primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    unsafe {
        #[cfg(pre_pg18)]
        return pg_sys::RelationGetPrimaryKeyIndex(rel);
        #[cfg(not(pre_pg18))]
        return pg_sys::RelationGetPrimaryKeyIndex(rel, false);
    }
}

/// What holds the permissions a range-table entry needs: the entry itself before
/// PostgreSQL 16, its RTEPermissionInfo from 16 on.
#[cfg(pre_pg16)]
pub type RtePermissions = pg_sys::RangeTblEntry;
#[cfg(not(pre_pg16))]
pub type RtePermissions = pg_sys::RTEPermissionInfo;

/// The permissions of a range-table entry just added by `addRangeTableEntryForRelation`.
///
/// # Safety
/// `nsitem` is valid.
pub unsafe fn rte_permissions(nsitem: *mut pg_sys::ParseNamespaceItem) -> *mut RtePermissions {
    unsafe {
        #[cfg(pre_pg16)]
        return (*nsitem).p_rte;
        #[cfg(not(pre_pg16))]
        return (*nsitem).p_perminfo;
    }
}

/// Checks the permissions of every range-table entry of `pstate`, raising an ERROR.
///
/// # Safety
/// `pstate` is valid.
pub unsafe fn check_range_table_permissions(pstate: *mut pg_sys::ParseState) {
    unsafe {
        #[cfg(pre_pg16)]
        pg_sys::ExecCheckRTPerms((*pstate).p_rtable, true);
        #[cfg(not(pre_pg16))]
        pg_sys::ExecCheckPermissions((*pstate).p_rtable, (*pstate).p_rteperminfos, true);
    }
}

/// The user's privilege `mode` on a function (`pg_proc_aclcheck` before PostgreSQL 16,
/// `object_aclcheck` from 16 on).
///
/// # Safety
/// In a transaction.
pub unsafe fn function_aclcheck(
    funcid: pg_sys::Oid,
    roleid: pg_sys::Oid,
    mode: pg_sys::AclMode,
) -> pg_sys::AclResult::Type {
    unsafe {
        #[cfg(pre_pg16)]
        return pg_sys::pg_proc_aclcheck(funcid, roleid, mode);
        #[cfg(not(pre_pg16))]
        return pg_sys::object_aclcheck(pg_sys::ProcedureRelationId, funcid, roleid, mode);
    }
}

/// This backend's local transaction id (PostgreSQL 17 moved it into `PGPROC.vxid`).
///
/// # Safety
/// In a backend (MyProc is set).
pub unsafe fn local_transaction_id() -> u32 {
    unsafe {
        #[cfg(not(pre_pg17))]
        return (*pg_sys::MyProc).vxid.lxid;
        #[cfg(pre_pg17)]
        return (*pg_sys::MyProc).lxid;
    }
}
