//! `read_jsonl` in `FROM`, planned as a custom scan: PostgreSQL runs a set-returning function
//! in `FROM` to its end and materialises its rows before the first goes up; this scan hands
//! them up one at a time instead, so a `LIMIT` stops the read (and the threads) early and
//! memory stays that of a few chunks whatever the file.
//!
//! The planner hook replaces the function scan of a `read_jsonl(…)` range-table entry that
//! has no lateral reference (its arguments are known when the scan starts) and no
//! `WITH ORDINALITY`; every other call runs as a function ([`super::read_jsonl_rows`]).

use std::ffi::c_void;

use pgrx::pg_sys;

use super::{prepared_rows, read_args, read_jsonl_rows, token_arg};
use crate::ingest::copy::CopiedRows;
use crate::ingest::rows::{RowSource, RowType};
use crate::ingest::upsert::PreparedRows;
use crate::pg_compat;

const NAME: &std::ffi::CStr = c"ReadJsonl";

struct Methods {
    path: pg_sys::CustomPathMethods,
    scan: pg_sys::CustomScanMethods,
    exec: pg_sys::CustomExecMethods,
}

static mut METHODS: *const Methods = std::ptr::null();
static mut PREVIOUS_HOOK: pg_sys::set_rel_pathlist_hook_type = None;

/// Installs the planner hook; from `_PG_init`.
pub fn init() {
    unsafe {
        let methods = Box::leak(Box::new(Methods {
            path: pg_sys::CustomPathMethods {
                CustomName: NAME.as_ptr(),
                PlanCustomPath: Some(plan_path),
                ReparameterizeCustomPathByChild: None,
            },
            scan: pg_sys::CustomScanMethods { CustomName: NAME.as_ptr(), CreateCustomScanState: Some(create_state) },
            exec: pg_sys::CustomExecMethods {
                CustomName: NAME.as_ptr(),
                BeginCustomScan: Some(begin),
                ExecCustomScan: Some(exec),
                EndCustomScan: Some(end),
                ReScanCustomScan: Some(rescan),
                // a LIMIT reached shuts its input down: the threads stop then
                ShutdownCustomScan: Some(end),
                ..Default::default()
            },
        }));
        pg_sys::RegisterCustomScanMethods(&methods.scan);
        METHODS = methods;
        PREVIOUS_HOOK = pg_sys::set_rel_pathlist_hook;
        pg_sys::set_rel_pathlist_hook = Some(set_rel_pathlist);
    }
}

unsafe fn methods() -> &'static Methods {
    unsafe { &*METHODS }
}

/// Which function of this library `funcid` is: `read_jsonl`, `ingest.prepared_rows`, or
/// neither.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    Read,
    Prepared,
}

unsafe fn rows_function(funcid: pg_sys::Oid) -> Option<Rows> {
    unsafe {
        let name = pg_sys::get_func_name(funcid);
        if name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(name);
        if name != c"read_jsonl" && name != c"prepared_rows" {
            return None;
        }
        let mut f: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(funcid, &mut f);
        let addr = f.fn_addr.map(|a| a as usize);
        if addr == Some(read_jsonl_rows as *const () as usize) {
            Some(Rows::Read)
        } else if addr == Some(prepared_rows as *const () as usize) {
            Some(Rows::Prepared)
        } else {
            None
        }
    }
}

/// The row type of the range table's function: a composite type, or the column definition
/// list; `None` when it is not a row type (the function raises the error).
unsafe fn row_tupdesc(rtfunc: *mut pg_sys::RangeTblFunction) -> Option<pg_sys::TupleDesc> {
    unsafe {
        if !(*rtfunc).funccolnames.is_null() {
            return Some(pg_sys::BuildDescFromLists(
                (*rtfunc).funccolnames,
                (*rtfunc).funccoltypes,
                (*rtfunc).funccoltypmods,
                (*rtfunc).funccolcollations,
            ));
        }
        let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
        let class = pg_sys::get_expr_result_type((*rtfunc).funcexpr, std::ptr::null_mut(), &mut tupdesc);
        (class == pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE && !tupdesc.is_null()).then_some(tupdesc)
    }
}

/// Whether the query uses the row as a whole (`r`, `r.*` passed on, MERGE's source row): the
/// scan's tuple has the columns only, so such a call runs as a function.
unsafe fn wants_whole_row(rel: *mut pg_sys::RelOptInfo) -> bool {
    unsafe {
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos((*(*rel).reltarget).exprs as *mut pg_sys::Node, (*rel).relid, &mut attrs);
        let quals = pg_sys::extract_actual_clauses((*rel).baserestrictinfo, false);
        pg_sys::pull_varattnos(quals as *mut pg_sys::Node, (*rel).relid, &mut attrs);
        pg_sys::bms_is_member(-pg_sys::FirstLowInvalidHeapAttributeNumber, attrs)
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn set_rel_pathlist(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rti: pg_sys::Index,
    rte: *mut pg_sys::RangeTblEntry,
) {
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(root, rel, rti, rte);
        }
        if (*rte).rtekind != pg_sys::RTEKind::RTE_FUNCTION
            || (*rte).funcordinality
            || pg_sys::list_length((*rte).functions) != 1
            || !pg_compat::bms_is_empty((*rel).lateral_relids)
        {
            return;
        }
        let rtfunc = pg_sys::list_nth((*rte).functions, 0) as *mut pg_sys::RangeTblFunction;
        let expr = (*rtfunc).funcexpr;
        if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_FuncExpr {
            return;
        }
        let func = expr as *mut pg_sys::FuncExpr;
        if rows_function((*func).funcid).is_none() || row_tupdesc(rtfunc).is_none() || wants_whole_row(rel) {
            return;
        }
        let path = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomPath>()) as *mut pg_sys::CustomPath;
        (*path).path.type_ = pg_sys::NodeTag::T_CustomPath;
        (*path).path.pathtype = pg_sys::NodeTag::T_CustomScan;
        (*path).path.parent = rel;
        (*path).path.pathtarget = (*rel).reltarget;
        (*path).path.rows = (*rel).rows;
        // what the function scan costs, less its materialisation: it replaces that path
        let old = (*rel).pathlist;
        let (startup, total) = if old.is_null() {
            (0.0, (*rel).rows)
        } else {
            let p = pg_sys::list_nth(old, 0) as *mut pg_sys::Path;
            ((*p).startup_cost.min(1.0), (*p).total_cost)
        };
        (*path).path.startup_cost = startup;
        (*path).path.total_cost = total;
        (*path).custom_private = pg_sys::lappend(std::ptr::null_mut(), rtfunc as *mut c_void);
        (*path).methods = &methods().path;
        (*rel).pathlist = std::ptr::null_mut();
        pg_sys::add_path(rel, path as *mut pg_sys::Path);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn plan_path(
    _root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    best_path: *mut pg_sys::CustomPath,
    tlist: *mut pg_sys::List,
    clauses: *mut pg_sys::List,
    _custom_plans: *mut pg_sys::List,
) -> *mut pg_sys::Plan {
    unsafe {
        let rtfunc = pg_sys::list_nth((*best_path).custom_private, 0) as *mut pg_sys::RangeTblFunction;
        let func = (*rtfunc).funcexpr as *mut pg_sys::FuncExpr;
        let tupdesc = row_tupdesc(rtfunc).expect("checked when the path was made");
        // The scan's tuple: every attribute of the row type, as Vars of this relation, so
        // that set_customscan_references maps the plan's Vars onto it.
        let mut scan_tlist: *mut pg_sys::List = std::ptr::null_mut();
        for i in 0..(*tupdesc).natts as usize {
            let att = pg_compat::tuple_desc_attr(tupdesc, i);
            let (typid, typmod, collation) = if att.attisdropped {
                (pg_sys::INT4OID, -1, pg_sys::InvalidOid)
            } else {
                (att.atttypid, att.atttypmod, att.attcollation)
            };
            let var = pg_sys::makeVar((*rel).relid as _, (i + 1) as i16, typid, typmod, collation, 0);
            let name = pg_sys::pstrdup(att.attname.data.as_ptr());
            let entry = pg_sys::makeTargetEntry(var as *mut pg_sys::Expr, (i + 1) as i16, name, false);
            scan_tlist = pg_sys::lappend(scan_tlist, entry as *mut c_void);
        }
        let cscan = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
        (*cscan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
        (*cscan).scan.plan.targetlist = tlist;
        (*cscan).scan.plan.qual = pg_sys::extract_actual_clauses(clauses, false);
        (*cscan).scan.scanrelid = 0;
        (*cscan).custom_scan_tlist = scan_tlist;
        // the arguments, evaluated when the scan starts (setrefs fixes their Params)
        (*cscan).custom_exprs = (*func).args;
        (*cscan).custom_private = (*best_path).custom_private;
        (*cscan).methods = &methods().scan;
        cscan as *mut pg_sys::Plan
    }
}

/// The scan's state: PostgreSQL's part first.
#[repr(C)]
struct ReadScan {
    css: pg_sys::CustomScanState,
    args: *mut pg_sys::List,
    /// Started at the first row asked for (an EXPLAIN reads nothing).
    source: *mut RowSource,
    /// The source is a load's (`ingest.prepared_rows`): it owns and ends it.
    borrowed: bool,
    /// A load's rows read from its COPY (`ingest.prepared_rows` for a Citus table), instead
    /// of `source`; the load's too.
    copied: *mut CopiedRows,
    rowtype: *mut RowType,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn create_state(_cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    unsafe {
        let state = pg_sys::palloc0(std::mem::size_of::<ReadScan>()) as *mut ReadScan;
        (*state).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
        (*state).css.methods = &methods().exec;
        state as *mut pg_sys::Node
    }
}

/// Stops the threads of a scan that ends without `EndCustomScan` (an ERROR): called when the
/// query's memory goes.
unsafe extern "C-unwind" fn forget(arg: *mut c_void) {
    unsafe { drop_source(arg as *mut ReadScan, false) };
}

unsafe fn drop_source(state: *mut ReadScan, finish: bool) {
    unsafe {
        (*state).copied = std::ptr::null_mut();
        let source = std::mem::replace(&mut (*state).source, std::ptr::null_mut());
        if !source.is_null() && !(*state).borrowed {
            let mut source = Box::from_raw(source);
            if finish {
                // ExecutorEnd runs with no snapshot: the ledger's statements need one
                let pushed = !pg_sys::ActiveSnapshotSet();
                if pushed {
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
                source.end();
                if pushed {
                    pg_sys::PopActiveSnapshot();
                }
            }
        }
        let rowtype = std::mem::replace(&mut (*state).rowtype, std::ptr::null_mut());
        if !rowtype.is_null() {
            drop(Box::from_raw(rowtype));
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn begin(node: *mut pg_sys::CustomScanState, estate: *mut pg_sys::EState, _eflags: i32) {
    unsafe {
        let state = node as *mut ReadScan;
        let cscan = (*node).ss.ps.plan as *mut pg_sys::CustomScan;
        // what the executor does for a function it calls: EXECUTE, then the execute hook
        let rtfunc = pg_sys::list_nth((*cscan).custom_private, 0) as *mut pg_sys::RangeTblFunction;
        check_execute((*((*rtfunc).funcexpr as *mut pg_sys::FuncExpr)).funcid);
        (*state).args = pg_sys::ExecInitExprList((*cscan).custom_exprs, node as *mut pg_sys::PlanState);
        let callback =
            pg_sys::MemoryContextAlloc((*estate).es_query_cxt, std::mem::size_of::<pg_sys::MemoryContextCallback>())
                as *mut pg_sys::MemoryContextCallback;
        (*callback).func = Some(forget);
        (*callback).arg = state as *mut c_void;
        pg_sys::MemoryContextRegisterResetCallback((*estate).es_query_cxt, callback);
    }
}

/// The checks PostgreSQL makes of a function it is about to call (`init_sexpr`): EXECUTE
/// for the current user, then `InvokeFunctionExecuteHook` (sepgsql and the like).
unsafe fn check_execute(funcid: pg_sys::Oid) {
    unsafe {
        let acl = pg_compat::function_aclcheck(funcid, pg_sys::GetUserId(), pg_sys::ACL_EXECUTE as _);
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(acl, pg_sys::ObjectType::OBJECT_FUNCTION, pg_sys::get_func_name(funcid));
        }
        if (*std::ptr::addr_of!(pg_sys::object_access_hook)).is_some() {
            pg_sys::RunFunctionExecuteHook(funcid);
        }
    }
}

unsafe fn start(state: *mut ReadScan) {
    unsafe {
        let econtext = (*state).css.ss.ps.ps_ExprContext;
        let mut args = Vec::new();
        for i in 0..pg_sys::list_length((*state).args) {
            let expr = pg_sys::list_nth((*state).args, i) as *mut pg_sys::ExprState;
            let mut isnull = false;
            let value = pg_sys::ExecEvalExprSwitchContext(expr, econtext, &mut isnull);
            args.push((value, isnull));
        }
        let cscan = (*state).css.ss.ps.plan as *mut pg_sys::CustomScan;
        let rtfunc = pg_sys::list_nth((*cscan).custom_private, 0) as *mut pg_sys::RangeTblFunction;
        // the slot was made when the query was planned: the rows go into it only if the row
        // type is still that one (a prepared statement outlives an ALTER TABLE)
        let slot_type = (*(*state).css.ss.ss_ScanTupleSlot).tts_tupleDescriptor;
        if rows_function((*((*rtfunc).funcexpr as *mut pg_sys::FuncExpr)).funcid) == Some(Rows::Prepared) {
            (*state).borrowed = true;
            match crate::ingest::upsert::take_prepared(token_arg(&args), slot_type) {
                PreparedRows::Source(source) => (*state).source = source,
                PreparedRows::Copied(copied) => (*state).copied = copied,
            }
            return;
        }
        let (path, opts) = read_args(&args);
        let now = row_tupdesc(rtfunc).unwrap_or_else(|| super::not_a_row_type());
        crate::ingest::rows::check_row_type(now, slot_type, "read_jsonl");
        let old = pg_sys::MemoryContextSwitchTo((*(*state).css.ss.ps.state).es_query_cxt);
        let rowtype = Box::new(RowType::of(now));
        let source = Box::new(RowSource::open_file(&path, &rowtype, &opts));
        pg_sys::MemoryContextSwitchTo(old);
        (*state).rowtype = Box::into_raw(rowtype);
        (*state).source = Box::into_raw(source);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn next_row(ss: *mut pg_sys::ScanState) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let state = ss as *mut ReadScan;
        if (*state).source.is_null() && (*state).copied.is_null() {
            start(state);
        }
        let slot = (*ss).ss_ScanTupleSlot;
        pg_sys::ExecClearTuple(slot);
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let rows = match (*state).copied.is_null() {
            true => PreparedRows::Source((*state).source),
            false => PreparedRows::Copied((*state).copied),
        };
        if rows.next((*slot).tts_values, (*slot).tts_isnull, natts) {
            pg_sys::ExecStoreVirtualTuple(slot);
        }
        slot
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn recheck(_ss: *mut pg_sys::ScanState, _slot: *mut pg_sys::TupleTableSlot) -> bool {
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn exec(node: *mut pg_sys::CustomScanState) -> *mut pg_sys::TupleTableSlot {
    unsafe { pg_sys::ExecScan(&mut (*node).ss, Some(next_row), Some(recheck)) }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn end(node: *mut pg_sys::CustomScanState) {
    unsafe { drop_source(node as *mut ReadScan, true) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::CustomScanState) {
    unsafe { drop_source(node as *mut ReadScan, true) };
}
