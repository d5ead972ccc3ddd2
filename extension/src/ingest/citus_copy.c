/*
 * Rows into a Citus table through Citus's own COPY routing: the loop of Citus's
 * CopyToExistingShards (commands/multi_copy.c), fed by pg_ingest's COPY source instead of a
 * file. Each row is read with NextCopyFrom (pg_ingest's tagged fields: finished datums,
 * receive and input functions) and handed to Citus's CitusCopyDestReceiver, which sends it
 * over one connection per shard placement, in binary when the types allow. Compiled against
 * the server's headers; Citus's entry points are looked up in the loaded citus library, so
 * pg_ingest neither links to Citus nor needs its headers.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/tupdesc.h"
#include "common/hashfn.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "optimizer/optimizer.h"
#include "tcop/dest.h"
#include "lib/stringinfo.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

/* Citus 13's CreateCitusCopyDestReceiver (commands/multi_copy.h) */
typedef DestReceiver *(*CreateCitusCopyDestReceiverFn) (Oid relationId, List *columnNameList,
														int partitionColumnIndex,
														EState *executorState,
														char *intermediateResultPrefix,
														bool isPublishable,
														bool trackQueryCounters);
typedef void (*RelationCheckFn) (Oid relationId);

/* transaction_management.h: XACT_MODIFICATION_DATA */
#define CITUS_XACT_MODIFICATION_DATA 2

static CreateCitusCopyDestReceiverFn create_dest = NULL;
static RelationCheckFn ensure_modifications_can_run = NULL;
static RelationCheckFn ensure_partition_not_replicated = NULL;
static int *xact_modification_level = NULL;

/*
 * Where the last Citus COPY was (for an error raised inside it): 1 reading a row (the row is
 * COPY's current line), 2 handing it to Citus (an error of class 22 or 23 is that row's; any
 * other may come from a shard's COPY ended early), 3 ending the shards' COPYs (a shard refused
 * a row, which one is not said).
 */
static int	citus_phase = 0;

int
pg_ingest_citus_phase(void)
{
	return citus_phase;
}

void
pg_ingest_citus_reset_phase(void)
{
	citus_phase = 0;
}

/* Finds Citus's entry points in the loaded library: false when one is missing. */
bool
pg_ingest_citus_lookup(void)
{
	void	   *library = NULL;

	if (create_dest != NULL)
		return true;
	create_dest = (CreateCitusCopyDestReceiverFn)
		load_external_function("$libdir/citus", "CreateCitusCopyDestReceiver", false, &library);
	ensure_modifications_can_run = (RelationCheckFn)
		load_external_function("$libdir/citus", "EnsureModificationsCanRunOnRelation", false, NULL);
	ensure_partition_not_replicated = (RelationCheckFn)
		load_external_function("$libdir/citus", "EnsurePartitionTableNotReplicated", false, NULL);
	if (library != NULL)
		xact_modification_level = (int *) lookup_external_function(library, "XactModificationLevel");
	if (create_dest == NULL || ensure_modifications_can_run == NULL ||
		ensure_partition_not_replicated == NULL)
	{
		create_dest = NULL;
		return false;
	}
	return true;
}

/* A row the coordinator found the shards would refuse: its COPY row, SQLSTATE and message. */
typedef void (*RefusedFn) (void *arg, uint64 row, int sqlstate, const char *message);

/*
 * The checks a shard makes on every row that the coordinator can make the same way before
 * sending it: NOT NULL columns and CHECK constraints (the shards have the coordinator's).
 * Not made when a BEFORE ROW trigger on the shards may still change the row, nor on a
 * table with generated columns (computed on the shards).
 */
typedef struct RowChecks
{
	int			ncheck;
	ExprState **check;
	const char **check_name;
} RowChecks;

static bool
prepare_checks(Relation rel, EState *estate, RowChecks *checks)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;

	checks->ncheck = 0;
	if (rel->trigdesc != NULL && rel->trigdesc->trig_insert_before_row)
		return false;
	if (constr != NULL && constr->has_generated_stored)
		return false;
	if (constr == NULL)
		return true;
	checks->check = palloc0(sizeof(ExprState *) * (constr->num_check + 1));
	checks->check_name = palloc0(sizeof(char *) * (constr->num_check + 1));
	for (int i = 0; i < constr->num_check; i++)
	{
		Expr	   *e = (Expr *) stringToNode(constr->check[i].ccbin);

		checks->check[i] = ExecPrepareCheck(list_make1(e), estate);
		checks->check_name[i] = constr->check[i].ccname;
	}
	checks->ncheck = constr->num_check;
	return true;
}

/*
 * Whether the row in slot passes: when it does not, *sqlstate and *message say why, as
 * ExecConstraints would say it (the distributed table named, not the shard).
 */
static bool
row_passes(Relation rel, TupleTableSlot *slot, ExprContext *econtext, RowChecks *checks,
		   int *sqlstate, char **message)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (desc->constr != NULL && desc->constr->has_not_null)
	{
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attnotnull && !att->attisdropped && slot->tts_isnull[i])
			{
				*sqlstate = ERRCODE_NOT_NULL_VIOLATION;
				*message = psprintf("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
									NameStr(att->attname), RelationGetRelationName(rel));
				return false;
			}
		}
	}
	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < checks->ncheck; i++)
	{
		if (!ExecCheck(checks->check[i], econtext))
		{
			*sqlstate = ERRCODE_CHECK_VIOLATION;
			*message = psprintf("new row for relation \"%s\" violates check constraint \"%s\"",
								RelationGetRelationName(rel), checks->check_name[i]);
			return false;
		}
	}
	return true;
}

/*
 * Told each row's key hash (and its COPY row, from 1): true when the row is set aside, not
 * returned (its key was seen before: the shard would probably refuse it).
 */
typedef bool (*KeyFn) (void *arg, uint64 row, uint64 hash);

struct CopyRowReader;
static uint64 key_hash(struct CopyRowReader *r, TupleTableSlot *slot);

/*
 * The rows of a COPY over pg_ingest's feed, read one at a time for Citus: each row is read
 * with NextCopyFrom and checked as its shard would check it (NOT NULL, CHECK); a row that
 * fails is given to refused (and not returned) when refused is set, else raised as that
 * row's error. Read by the routing loop below, and by the INSERT … SELECT that a Citus
 * without known entry points (or with hidden ones, 16+) plans itself.
 */
typedef struct CopyRowReader
{
	CopyFromState cstate;
	Relation	rel;
	EState	   *estate;
	ExprContext *econtext;
	TupleTableSlot *slot;
	RowChecks	checks;
	bool		checking;
	RefusedFn	refused;
	void	   *refused_arg;
	uint64		rows;
	/* rows not returned: refused, or set aside */
	uint64		skipped_rows;
	bool		done;
	/* the key whose repeats are set aside (skip mode), and who decides */
	int			nkeys;
	AttrNumber *keys;
	KeyFn		repeated;
	void	   *repeated_arg;
} CopyRowReader;

CopyRowReader *
pg_ingest_copy_reader_begin(CopyFromState cstate, Relation rel, RefusedFn refused, void *refused_arg)
{
	CopyRowReader *r = palloc0(sizeof(CopyRowReader));

	r->cstate = cstate;
	r->rel = rel;
	r->estate = CreateExecutorState();
	r->econtext = GetPerTupleExprContext(r->estate);
	r->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	r->checking = prepare_checks(rel, r->estate, &r->checks);
	r->refused = refused;
	r->refused_arg = refused_arg;
	return r;
}

/*
 * The next row (valid until the next call), or NULL after the last. The phase is 2 while a
 * row returned is with Citus, 3 once every row was read (the shards' COPYs end).
 */
TupleTableSlot *
pg_ingest_copy_reader_next(CopyRowReader *r)
{
	TupleTableSlot *slot = r->slot;

	for (;;)
	{
		MemoryContext old;
		bool		found;

		ResetPerTupleExprContext(r->estate);
		ExecClearTuple(slot);
		citus_phase = 1;
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(r->estate));
		found = NextCopyFrom(r->cstate, r->econtext, slot->tts_values, slot->tts_isnull);
		MemoryContextSwitchTo(old);
		if (!found)
		{
			r->done = true;
			citus_phase = 3;
			return NULL;
		}
		ExecStoreVirtualTuple(slot);
		CHECK_FOR_INTERRUPTS();
		if (r->checking)
		{
			int			sqlstate;
			char	   *message;

			old = MemoryContextSwitchTo(GetPerTupleMemoryContext(r->estate));
			found = row_passes(r->rel, slot, r->econtext, &r->checks, &sqlstate, &message);
			MemoryContextSwitchTo(old);
			if (!found && r->refused == NULL)
				ereport(ERROR, (errcode(sqlstate), errmsg_internal("%s", message)));
			if (!found)
			{
				/* counted as COPY counts its rows, from 1 */
				r->refused(r->refused_arg, r->rows + 1 + r->skipped_rows, sqlstate, message);
				r->skipped_rows++;
				continue;
			}
		}
		if (r->nkeys > 0)
		{
			uint64		hash;

			old = MemoryContextSwitchTo(GetPerTupleMemoryContext(r->estate));
			hash = key_hash(r, slot);
			MemoryContextSwitchTo(old);
			found = !r->repeated(r->repeated_arg, r->rows + 1 + r->skipped_rows, hash);
		}
		if (!found)
		{
			r->skipped_rows++;
			continue;
		}
		citus_phase = 2;
		r->rows++;
		return slot;
	}
}

/*
 * Asks repeated about each row's key (attributes keys, from 1) before it is returned: a row
 * with a NULL in its key is not asked about (NULLs do not conflict).
 */
void
pg_ingest_copy_reader_set_aside(CopyRowReader *r, const int16 *keys, int nkeys, KeyFn repeated, void *arg)
{
	TupleDesc	desc = RelationGetDescr(r->rel);

	r->keys = palloc(sizeof(AttrNumber) * Max(nkeys, 1));
	for (int k = 0; k < nkeys; k++)
	{
		if (keys[k] < 1 || keys[k] > desc->natts)
			elog(ERROR, "pg_ingest: no attribute %d", keys[k]);
		r->keys[k] = keys[k];
	}
	r->nkeys = nkeys;
	r->repeated = repeated;
	r->repeated_arg = arg;
}

/*
 * A hash of the row's key as stored (equal bytes, equal hash; values equal but stored apart,
 * as numeric 1.0 and 1.00, hash apart: a repeat missed is left to the shard). 0 when a key
 * column is NULL.
 */
static uint64
key_hash(CopyRowReader *r, TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(r->rel);
	uint64		h = 0x9e3779b97f4a7c15;

	for (int k = 0; k < r->nkeys; k++)
	{
		int			i = r->keys[k] - 1;
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		v = slot->tts_values[i];

		if (slot->tts_isnull[i])
			return 0;
		if (att->attbyval)
			h = hash_combine64(h, hash_bytes_uint32_extended((uint32) v, (uint64) (v >> 32)));
		else if (att->attlen > 0)
			h = hash_combine64(h, hash_bytes_extended((const unsigned char *) DatumGetPointer(v), att->attlen, k));
		else if (att->attlen == -1)
		{
			struct varlena *d = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(v));

			h = hash_combine64(h, hash_bytes_extended((const unsigned char *) VARDATA_ANY(d),
													  VARSIZE_ANY_EXHDR(d), k));
		}
		else
		{
			const char *c = DatumGetCString(v);

			h = hash_combine64(h, hash_bytes_extended((const unsigned char *) c, strlen(c), k));
		}
	}
	return h == 0 ? 1 : h;
}

/* The rows returned; -1 while rows are left to read. */
int64
pg_ingest_copy_reader_rows(CopyRowReader *r)
{
	return r->done ? (int64) r->rows : -1;
}

void
pg_ingest_copy_reader_end(CopyRowReader *r)
{
	ExecDropSingleTupleTableSlot(r->slot);
	FreeExecutorState(r->estate);
	pfree(r);
}

/*
 * Routes every row of reader to the shards of its table (a Citus table whose distribution
 * column is attribute partition_index, from 0; -1 for none): the rows sent.
 */
uint64
pg_ingest_citus_copy(CopyRowReader *reader, int partition_index)
{
	Relation	rel = reader->rel;
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	List	   *names = NIL;
	EState	   *estate;
	DestReceiver *dest;
	TupleTableSlot *slot;

	if (!pg_ingest_citus_lookup())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the loaded Citus library has no CreateCitusCopyDestReceiver")));

	/* the checks Citus's COPY makes before it starts */
	ensure_modifications_can_run(relid);
	ensure_partition_not_replicated(relid);

	/* the columns of the shards' COPY: every stored one, as Citus's COPY names them */
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated == ATTRIBUTE_GENERATED_STORED)
			continue;
		names = lappend(names, pstrdup(NameStr(att->attname)));
	}

	estate = CreateExecutorState();
	dest = create_dest(relid, names, partition_index, estate, NULL, true, true);
	dest->rStartup(dest, 0, desc);
	while ((slot = pg_ingest_copy_reader_next(reader)) != NULL)
		dest->receiveSlot(slot, dest);

	/* phase 3: the shards' COPYs end */
	dest->rShutdown(dest);
	dest->rDestroy(dest);
	citus_phase = 0;

	FreeExecutorState(estate);
	if (xact_modification_level != NULL)
		*xact_modification_level = CITUS_XACT_MODIFICATION_DATA;
	return reader->rows;
}

/*
 * Reads every row of cstate without writing it, and finds the COPY rows (from 1) whose
 * attributes attnums (from 1), each output as text and joined by ", ", read `wanted`: as a
 * unique violation's DETAIL shows a key ("Key (a, b)=(1, x) already exists."). The first goes
 * to found[0] and the last to found[max - 1]; returns how many there are.
 */
uint64
pg_ingest_copy_rows_with_key(CopyFromState cstate, Relation rel, const int16 *attnums, int nkeys,
							 const char *wanted, uint64 *found, int max)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
	FmgrInfo   *out = palloc0(sizeof(FmgrInfo) * nkeys);
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	StringInfoData key;
	uint64		row = 0;
	uint64		matches = 0;

	for (int k = 0; k < nkeys; k++)
	{
		Oid			fn;
		bool		varlena;

		if (attnums[k] < 1 || attnums[k] > desc->natts)
			elog(ERROR, "pg_ingest: no attribute %d", attnums[k]);
		getTypeOutputInfo(TupleDescAttr(desc, attnums[k] - 1)->atttypid, &fn, &varlena);
		fmgr_info(fn, &out[k]);
	}
	if (max < 1)
		elog(ERROR, "pg_ingest: no room for the rows found");
	initStringInfo(&key);
	for (;;)
	{
		MemoryContext old;

		ResetPerTupleExprContext(estate);
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		if (!NextCopyFrom(cstate, econtext, values, nulls))
		{
			MemoryContextSwitchTo(old);
			break;
		}
		row++;
		resetStringInfo(&key);
		for (int k = 0; k < nkeys; k++)
		{
			int			i = attnums[k] - 1;

			if (k > 0)
				appendStringInfoString(&key, ", ");
			appendStringInfoString(&key, nulls[i] ? "null" : OutputFunctionCall(&out[k], values[i]));
		}
		MemoryContextSwitchTo(old);
		if (strcmp(key.data, wanted) == 0)
		{
			if (matches == 0)
				found[0] = row;
			found[max - 1] = row;
			matches++;
		}
	}
	FreeExecutorState(estate);
	return matches;
}
