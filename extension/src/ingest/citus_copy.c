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

#include "access/tupdesc.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "tcop/dest.h"
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

/*
 * Reads every row of cstate and routes it to the shards of rel (a Citus table whose
 * distribution column is attribute partition_index, from 0; -1 for none): the rows read.
 */
uint64
pg_ingest_citus_copy(CopyFromState cstate, Relation rel, int partition_index)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	List	   *names = NIL;
	EState	   *estate;
	ExprContext *econtext;
	DestReceiver *dest;
	TupleTableSlot *slot;
	uint64		rows = 0;

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
	econtext = GetPerTupleExprContext(estate);
	dest = create_dest(relid, names, partition_index, estate, NULL, true, true);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	dest->rStartup(dest, 0, desc);

	for (;;)
	{
		MemoryContext old;
		bool		found;

		ResetPerTupleExprContext(estate);
		ExecClearTuple(slot);
		citus_phase = 1;
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		found = NextCopyFrom(cstate, econtext, slot->tts_values, slot->tts_isnull);
		MemoryContextSwitchTo(old);
		if (!found)
			break;
		ExecStoreVirtualTuple(slot);
		CHECK_FOR_INTERRUPTS();
		citus_phase = 2;
		dest->receiveSlot(slot, dest);
		rows++;
	}

	citus_phase = 3;
	dest->rShutdown(dest);
	dest->rDestroy(dest);
	citus_phase = 0;

	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	if (xact_modification_level != NULL)
		*xact_modification_level = CITUS_XACT_MODIFICATION_DATA;
	return rows;
}
