/*
 * COPY FROM's state, compiled against the server's own headers so that the struct layout is
 * always the installed one: two read-only accessors that name the line and column of an error
 * raised inside CopyFrom(), and the receive functions made independent of client_encoding.
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM >= 140000
#include "commands/copyfrom_internal.h"

/*
 * A column's own receive function, called with no client-encoding conversion. Binary COPY's
 * receive functions read text with pq_getmsgtext(), which converts from the session's
 * client_encoding; pg_ingest's stream is in the database's encoding whatever the session's,
 * so the conversion is switched off for the call (and on again, also when it fails).
 */
typedef struct IngestRecv
{
	FmgrInfo	orig;
} IngestRecv;

static Datum
pg_ingest_recv_unconverted(PG_FUNCTION_ARGS)
{
	IngestRecv *x = (IngestRecv *) fcinfo->flinfo->fn_extra;
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	Oid			typioparam = PG_GETARG_OID(1);
	int32		typmod = PG_GETARG_INT32(2);
	int			saved = pg_get_client_encoding();
	volatile Datum result = (Datum) 0;

	SetClientEncoding(GetDatabaseEncoding());
	PG_TRY();
	{
		result = ReceiveFunctionCall(&x->orig, buf, typioparam, typmod);
	}
	PG_FINALLY();
	{
		SetClientEncoding(saved);
	}
	PG_END_TRY();
	if (buf == NULL)
		PG_RETURN_NULL();
	return result;
}

/* Puts the wrapper in front of every column's receive function of a COPY just begun. */
void
pg_ingest_copy_recv_unconverted(CopyFromState cstate)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(cstate->copycontext);

	foreach(lc, cstate->attnumlist)
	{
		int			attnum = lfirst_int(lc);
		FmgrInfo   *f = &cstate->in_functions[attnum - 1];
		IngestRecv *x = palloc(sizeof(IngestRecv));

		x->orig = *f;
		f->fn_addr = pg_ingest_recv_unconverted;
		f->fn_extra = x;
	}
	MemoryContextSwitchTo(old);
}

uint64
pg_ingest_copy_cur_lineno(CopyFromState cstate)
{
	return cstate ? cstate->cur_lineno : 0;
}

const char *
pg_ingest_copy_cur_attname(CopyFromState cstate)
{
	return cstate ? cstate->cur_attname : NULL;
}
#else
/* PostgreSQL 13 keeps CopyStateData private to copy.c: no line numbers from COPY there. */
uint64
pg_ingest_copy_cur_lineno(void *cstate)
{
	return 0;
}

const char *
pg_ingest_copy_cur_attname(void *cstate)
{
	return NULL;
}

void
pg_ingest_copy_recv_unconverted(void *cstate)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("pg_ingest needs PostgreSQL 14 or later when client_encoding differs from the database's")));
}
#endif
