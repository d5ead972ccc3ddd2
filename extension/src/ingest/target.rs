//! The target table: found by name or from the file's stem, opened with COPY FROM's lock,
//! checked as COPY FROM checks it, and described column by column for the encoder.

use std::ffi::{CStr, CString};

use pgrx::pg_sys::{self, Oid, PgTryBuilder};
use pgrx::{PgSqlErrorCode, PgTupleDesc};

use pg_ingest_core::arrays::Element;
use pg_ingest_core::encode::{ColumnKind, DefaultValue};

use crate::error::IngestError;
use crate::pg_compat;

/// One column COPY writes (dropped and generated columns are not among them).
#[derive(Clone)]
pub struct TargetColumn {
    pub attnum: i16,
    pub name: String,
    pub typid: Oid,
    pub typmod: i32,
    pub kind: ColumnKind,
    /// The parse threads may build its datums: see [`finishes`], and `pg_ingest_field` in
    /// copy_state.c.
    pub finished: bool,
    /// An array column whose arrays the parse threads build: its element type.
    pub element: Option<Element>,
}

pub struct Target {
    pub rel: pg_sys::Relation,
    pub oid: Oid,
    /// `schema.table`, quoted where needed.
    pub name: String,
    pub columns: Vec<TargetColumn>,
    /// Citus manages it.
    pub citus: bool,
    /// Rows go through Citus's COPY routing, with the distribution column at this index of
    /// the tuple descriptor (-1: none); `None` for a Citus table: through `INSERT … SELECT`.
    pub citus_route: Option<i32>,
}

/// The table a load goes to: `target` when given, else the table named after the file's stem
/// (`/data/chat.jsonl` → `chat`), found through `search_path`.
pub fn resolve(target: Option<Oid>, path: &str) -> Oid {
    if let Some(oid) = target {
        return oid;
    }
    let stem = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n).to_owned())
        .unwrap_or_default();
    for candidate in [stem.clone(), stem.to_lowercase()] {
        if candidate.is_empty() {
            continue;
        }
        let c = CString::new(candidate).expect("a path has no NUL");
        let oid = unsafe {
            let rv = pg_sys::makeRangeVar(std::ptr::null_mut(), c.as_ptr() as *mut _, -1);
            pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as _,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            )
        };
        if oid != pg_sys::InvalidOid {
            return oid;
        }
    }
    IngestError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("no table \"{stem}\" to load \"{path}\" into"))
        .detail(format!(
            "Without target, the table is named after the file: \"{stem}\", looked up through search_path."
        ))
        .hint("Pass the table as target => 'schema.table', or create a table with that name.")
        .raise()
}

/// Reading a file on the server takes what COPY FROM a file takes.
pub fn check_file_permission() {
    let allowed = unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES))
    };
    if !allowed {
        IngestError::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "permission denied to read a file on the server")
            .detail("Only superusers and roles with privileges of the \"pg_read_server_files\" role may ingest server files, as for COPY FROM a file.")
            .hint("GRANT pg_read_server_files TO the role that loads, or load as a superuser.")
            .raise();
    }
}

/// Whether the parse threads may build this column's datums: the type itself (a domain has
/// its checks run by PostgreSQL), one whose datums they build (text, json and jsonb without a
/// typmod; varchar(n) and character(n), whose lengths they apply as `varchar_input` and
/// `bpchar_input` do, in a UTF8 database; numeric, whose typmod they apply as `apply_typmod`; timestamptz, whose
/// wall-clock times the backend places in the session's TimeZone).
pub fn finishes(typid: Oid, typmod: i32) -> bool {
    match typid {
        pg_sys::TEXTOID | pg_sys::JSONOID | pg_sys::JSONBOID => typmod < 0,
        // a length is counted in characters: UTF-8's, in a UTF8 database
        pg_sys::VARCHAROID | pg_sys::BPCHAROID => {
            typmod < 0 || unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32
        }
        pg_sys::NUMERICOID | pg_sys::TIMESTAMPTZOID => true,
        _ => array_element(typid, typmod).is_some(),
    }
}

/// For an array type itself (not a domain over one, not int2vector or oidvector) of elements
/// that are base types with a fast path: the element, whose one-dimensional arrays the parse
/// threads build as `array_in` does. The typmod is the elements'. Not with `array_nulls` off:
/// `array_in` then reads the literal's NULL as the text "NULL", and decides.
pub fn array_element(typid: Oid, typmod: i32) -> Option<Element> {
    let elem = unsafe { pg_sys::get_element_type(typid) };
    if !unsafe { pg_sys::Array_nulls }
        || elem == pg_sys::InvalidOid
        || unsafe { pg_sys::get_array_type(elem) } != typid
        || unsafe { pg_sys::getBaseType(elem) } != elem
    {
        return None;
    }
    // of the element types with a typmod, only numeric(p,s)'s is applied here
    let kind = column_kind(elem);
    if typmod >= 0 && kind != ColumnKind::Numeric {
        return None;
    }
    Element::new(kind, elem.to_u32())
}

pub fn column_kind(typid: Oid) -> ColumnKind {
    let base = unsafe { pg_sys::getBaseType(typid) };
    match base {
        pg_sys::TEXTOID | pg_sys::VARCHAROID => ColumnKind::Text,
        pg_sys::BPCHAROID => ColumnKind::Bpchar,
        pg_sys::INT2OID => ColumnKind::Int2,
        pg_sys::INT4OID => ColumnKind::Int4,
        pg_sys::INT8OID => ColumnKind::Int8,
        pg_sys::FLOAT4OID => ColumnKind::Float4,
        pg_sys::FLOAT8OID => ColumnKind::Float8,
        pg_sys::BOOLOID => ColumnKind::Bool,
        pg_sys::JSONOID => ColumnKind::Json,
        pg_sys::JSONBOID => ColumnKind::Jsonb,
        pg_sys::TIMESTAMPTZOID => ColumnKind::Timestamptz,
        pg_sys::TIMESTAMPOID => ColumnKind::Timestamp,
        pg_sys::DATEOID => ColumnKind::Date,
        pg_sys::UUIDOID => ColumnKind::Uuid,
        pg_sys::NUMERICOID => ColumnKind::Numeric,
        _ => match unsafe { pg_sys::get_element_type(base) } {
            pg_sys::InvalidOid => ColumnKind::Other,
            pg_sys::JSONOID | pg_sys::JSONBOID => ColumnKind::JsonArray,
            _ => ColumnKind::Array,
        },
    }
}

impl Target {
    /// Opens the table with RowExclusiveLock (COPY FROM's lock, held to the end of the
    /// transaction) and lists the columns COPY can write. INSERT is checked before the lock
    /// is taken, and on every column written before anything else is done.
    pub fn open(oid: Oid) -> Self {
        crate::identity::check_insert_before_lock(oid);
        let rel = unsafe { pg_sys::table_open(oid, pg_sys::RowExclusiveLock as _) };
        let name = unsafe {
            let nsp = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
            let relname = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr());
            let q = pg_sys::quote_qualified_identifier(nsp, relname.as_ptr());
            CStr::from_ptr(q).to_string_lossy().into_owned()
        };
        let tupdesc = unsafe { PgTupleDesc::from_pg_unchecked((*rel).rd_att) };
        let mut columns = Vec::new();
        for (i, att) in tupdesc.iter().enumerate() {
            if att.is_dropped() || att.attgenerated != 0 {
                continue;
            }
            columns.push(TargetColumn {
                attnum: (i + 1) as i16,
                name: att.name().to_owned(),
                typid: att.type_oid().value(),
                typmod: att.type_mod(),
                kind: column_kind(att.type_oid().value()),
                finished: finishes(att.type_oid().value(), att.type_mod()),
                element: array_element(att.type_oid().value(), att.type_mod()),
            });
        }
        let citus = crate::citus::manages(oid);
        let citus_route = if citus { crate::citus::route(oid) } else { None };
        let target = Self { rel, oid, name, columns, citus, citus_route };
        target.check_columns_and_rls();
        target
    }

    /// Whether a BEFORE ROW INSERT trigger may change the rows (on a Citus table, on its shards).
    pub fn has_before_row_triggers(&self) -> bool {
        unsafe {
            let triggers = (*self.rel).trigdesc;
            !triggers.is_null() && (*triggers).trig_insert_before_row
        }
    }

    /// The primary key's index name and columns (attribute numbers), if the table has one.
    pub fn primary_key(&self) -> Option<(String, Vec<i16>)> {
        unsafe {
            let index = crate::pg_compat::relation_primary_key_index(self.rel);
            if index == pg_sys::InvalidOid {
                return None;
            }
            let name = CStr::from_ptr(pg_sys::get_rel_name(index)).to_string_lossy().into_owned();
            let rel = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
            let info = (*rel).rd_index;
            let n = (*info).indnkeyatts as usize;
            let key = (0..n).map(|i| *(*info).indkey.values.as_ptr().add(i)).collect();
            pg_sys::index_close(rel, pg_sys::AccessShareLock as _);
            Some((name, key))
        }
    }

    /// INSERT on every column written (the table's, or each column's), and no row-level
    /// security: what COPY FROM checks, checked again by COPY itself.
    fn check_columns_and_rls(&self) {
        unsafe {
            let user = pg_sys::GetUserId();
            if pg_sys::pg_class_aclcheck(self.oid, user, pg_sys::ACL_INSERT as _) != pg_sys::AclResult::ACLCHECK_OK {
                for c in &self.columns {
                    if pg_sys::pg_attribute_aclcheck(self.oid, c.attnum, user, pg_sys::ACL_INSERT as _)
                        != pg_sys::AclResult::ACLCHECK_OK
                    {
                        IngestError::new(
                            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                            format!("permission denied for table {}", self.name),
                        )
                        .detail(format!("INSERT is needed on column \"{}\", which the load writes.", c.name))
                        .raise()
                    }
                }
            }
        }
        self.refuse_rls();
    }

    fn refuse_rls(&self) {
        if unsafe { pg_sys::check_enable_rls(self.oid, pg_sys::InvalidOid, false) }
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("cannot ingest into {}: it has row-level security enabled", self.name),
            )
            .detail("ingest_jsonl writes through COPY FROM, which is not supported with row-level security.")
            .hint("Use INSERT statements instead, or load as a role that bypasses row-level security.")
            .raise();
        }
    }

    /// INSERT privilege on every column written, and no row-level security: COPY FROM's checks.
    pub fn check_insert_permission(&self, pstate: *mut pg_sys::ParseState) -> *mut pg_sys::ParseNamespaceItem {
        unsafe {
            let nsitem = pg_sys::addRangeTableEntryForRelation(
                pstate,
                self.rel,
                pg_sys::RowExclusiveLock as _,
                std::ptr::null_mut(),
                false,
                false,
            );
            let perms = pg_compat::rte_permissions(nsitem);
            (*perms).requiredPerms = pg_sys::ACL_INSERT as _;
            for c in &self.columns {
                let bit = c.attnum as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber;
                (*perms).insertedCols = pg_sys::bms_add_member((*perms).insertedCols, bit);
            }
            pg_compat::check_range_table_permissions(pstate);
            self.refuse_rls();
            nsitem
        }
    }

    /// What a column gets when a line has no value for it, as INSERT would give it: no
    /// default → NULL; a non-volatile default → computed once here; a volatile one → per row.
    /// Returns the planned expression for per-row defaults.
    pub fn default_for(
        &self,
        col: &TargetColumn,
        mut send: impl FnMut(pg_sys::Datum) -> Vec<u8>,
    ) -> (DefaultValue, *mut pg_sys::Expr) {
        unsafe {
            let node = pg_sys::build_column_default(self.rel, col.attnum as _);
            if node.is_null() {
                return (DefaultValue::Null, std::ptr::null_mut());
            }
            let expr = pg_sys::expression_planner(node as *mut pg_sys::Expr);
            if pg_sys::contain_volatile_functions(expr as *mut pg_sys::Node) {
                return (DefaultValue::PerRow, expr);
            }
            // evaluated once, here, for every line that lacks the column; a DEFAULT that fails
            // (a domain's CHECK, `1/0`) fails only for those lines, as INSERT and COPY fail
            // only for the rows that need it: it is then evaluated per row
            let mut send = std::panic::AssertUnwindSafe(&mut send);
            let expr_addr = expr as usize;
            let once = super::skip::in_subtransaction(|| {
                PgTryBuilder::new(move || {
                    let state = pg_sys::ExecInitExpr(expr_addr as *mut pg_sys::Expr, std::ptr::null_mut());
                    let econtext = pg_sys::CreateStandaloneExprContext();
                    let mut isnull = false;
                    let datum = pg_sys::ExecEvalExprSwitchContext(state, econtext, &mut isnull);
                    let value = if isnull { None } else { Some((*send)(datum)) };
                    pg_sys::FreeExprContext(econtext, true);
                    Ok(value)
                })
                .catch_others(Err)
                .execute()
            });
            match once {
                Ok(value) => (DefaultValue::Const(value), std::ptr::null_mut()),
                Err(_) => (DefaultValue::PerRow, expr),
            }
        }
    }

    /// Closes the table, keeping the lock to the end of the transaction.
    pub fn close(self) {
        unsafe { pg_sys::table_close(self.rel, pg_sys::NoLock as _) };
    }
}
