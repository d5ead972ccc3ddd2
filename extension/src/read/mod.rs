//! `read_jsonl()`: a file as rows for SQL. The same engine as a load (reader and parse
//! threads, exact PostgreSQL values), through [`RowSource`]; no COPY.
//!
//! Two ways to run, one source of rows:
//! - in `FROM` with no lateral reference, a custom scan ([`scan`]) hands the rows up one at a
//!   time: `LIMIT 10` reads ten rows and stops the threads, and nothing is materialised;
//! - anywhere else (a lateral call, the select list), the function fills a tuplestore as
//!   set-returning functions do (spilling to disk past `work_mem`).

pub mod scan;

use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, JsonB, PgSqlErrorCode};

use crate::error::IngestError;
use crate::ingest::rows::{RowSource, RowType};
use crate::ingest::{self, LoadOptions};

pgrx::extension_sql!(
    r#"
-- read_jsonl(path, NULL::rowtype, …): the file's values as rows of a table's or composite type's row type;
-- read_jsonl(path, …) AS (col type, …): as rows of a column definition list. The options are ingest_jsonl's.
CREATE FUNCTION read_jsonl(path text, rowtype anyelement, columns jsonb DEFAULT NULL, rest text DEFAULT NULL,
                           epoch_unit text DEFAULT 's', on_error text DEFAULT 'stop', max_errors bigint DEFAULT NULL,
                           threads integer DEFAULT NULL, format text DEFAULT 'auto')
RETURNS SETOF anyelement LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
AS 'MODULE_PATHNAME', 'read_jsonl_rows';

CREATE FUNCTION read_jsonl(path text, columns jsonb DEFAULT NULL, rest text DEFAULT NULL,
                           epoch_unit text DEFAULT 's', on_error text DEFAULT 'stop', max_errors bigint DEFAULT NULL,
                           threads integer DEFAULT NULL, format text DEFAULT 'auto')
RETURNS SETOF record LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
AS 'MODULE_PATHNAME', 'read_jsonl_rows';
"#,
    name = "read_jsonl",
    requires = ["bootstrap"]
);

pgrx::extension_sql!(
    r#"
-- The rows ingest_jsonl(…, on_conflict => …) prepared for the INSERT it runs (only that INSERT can take them).
CREATE FUNCTION ingest.prepared_rows(token bigint, rowtype anyelement)
RETURNS SETOF anyelement LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 100000
AS 'MODULE_PATHNAME', 'prepared_rows';
"#,
    name = "prepared_rows",
    requires = ["bootstrap"]
);

/// Arguments after `path` (and `rowtype`), in their SQL order.
const OPTION_ARGS: usize = 7;

/// The file and the options from the call's arguments: `args` are all of them, the row type
/// argument included when there is one (told by their number).
pub fn read_args(args: &[(Datum, bool)]) -> (String, LoadOptions) {
    let with_rowtype = args.len() == OPTION_ARGS + 2;
    let o = if with_rowtype { 2 } else { 1 };
    unsafe {
        let text = |i: usize| String::from_datum(args[i].0, args[i].1);
        let path = text(0).unwrap_or_else(|| {
            IngestError::new(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "read_jsonl needs a path, not NULL")
                .raise()
        });
        let opts = LoadOptions {
            columns: JsonB::from_datum(args[o].0, args[o].1).map(|j| j.0),
            rest: text(o + 1),
            epoch_unit: text(o + 2).unwrap_or_else(|| "s".into()),
            on_error: text(o + 3).unwrap_or_else(|| "stop".into()),
            max_errors: i64::from_datum(args[o + 4].0, args[o + 4].1),
            threads: i32::from_datum(args[o + 5].0, args[o + 5].1),
            force: false,
            on_conflict: None,
            format: ingest::parse_format(&text(o + 6).unwrap_or_else(|| "auto".into())),
        };
        (path, opts)
    }
}

/// The row type is not a row type: what to do instead.
pub fn not_a_row_type() -> ! {
    IngestError::new(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, "read_jsonl needs a row type")
        .hint(
            "Pass one as the second argument, NULL::table_or_type, or call it with a column definition list: \
             read_jsonl(path) AS (id int, name text).",
        )
        .raise()
}

/// Version-1 calling convention record of [`read_jsonl_rows`].
#[no_mangle]
pub extern "C" fn pg_finfo_read_jsonl_rows() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Version-1 calling convention record of [`prepared_rows`].
#[no_mangle]
pub extern "C" fn pg_finfo_prepared_rows() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `read_jsonl` called as a function (not planned as a custom scan): every row into a
/// tuplestore, handed over in materialize mode.
///
/// # Safety
/// Called by the function manager.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn read_jsonl_rows(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    unsafe { materialize(fcinfo, false) }
}

/// `ingest.prepared_rows(token, rowtype)` called as a function.
///
/// # Safety
/// Called by the function manager.
#[no_mangle]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn prepared_rows(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    unsafe { materialize(fcinfo, true) }
}

/// The token argument of `ingest.prepared_rows`.
pub fn token_arg(args: &[(Datum, bool)]) -> i64 {
    unsafe { i64::from_datum(args[0].0, args[0].1) }.unwrap_or(0)
}

unsafe fn materialize(fcinfo: pg_sys::FunctionCallInfo, prepared: bool) -> Datum {
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null()
            || (*rsinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo
            || (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 == 0
        {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "read_jsonl is a set-returning function, called where a set is not accepted",
            )
            .raise()
        }
        let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut tupdesc)
            != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
        {
            not_a_row_type()
        }
        let nargs = (*fcinfo).nargs as usize;
        let args: Vec<(Datum, bool)> =
            (0..nargs).map(|i| *(*fcinfo).args.as_ptr().add(i)).map(|a| (a.value, a.isnull)).collect();

        let per_query = (*(*rsinfo).econtext).ecxt_per_query_memory;
        let old = pg_sys::MemoryContextSwitchTo(per_query);
        let tupdesc = pg_sys::CreateTupleDescCopy(tupdesc);
        let random = (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32 != 0;
        let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
        pg_sys::MemoryContextSwitchTo(old);

        let rowtype = RowType::of(tupdesc);
        let natts = rowtype.natts;
        let mut own = None;
        let rows = if prepared {
            crate::ingest::upsert::take_prepared(token_arg(&args), tupdesc)
        } else {
            let (path, opts) = read_args(&args);
            crate::ingest::upsert::PreparedRows::Source(own.insert(RowSource::open_file(&path, &rowtype, &opts)))
        };
        let (mut values, mut nulls) = (vec![Datum::from(0); natts], vec![true; natts]);
        while rows.next(values.as_mut_ptr(), nulls.as_mut_ptr(), natts) {
            pg_sys::tuplestore_putvalues(store, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = store;
        (*rsinfo).setDesc = tupdesc;
        (*fcinfo).isnull = true;
        Datum::from(0)
    }
}
