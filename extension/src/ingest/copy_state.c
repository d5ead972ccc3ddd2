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

/*
 * A column whose values the parse threads finish (text, json, jsonb): each field is a tag
 * byte, then 0: the datum itself, its varlena header included, copied as it is; or 1: the
 * type's own binary COPY form, for its own receive function (PostgreSQL decides, and raises
 * its own errors). Only pg_ingest's own stream reaches it: it is installed in the COPY that
 * pg_ingest begins, on the columns it chose.
 */
static Datum
pg_ingest_recv_finished(PG_FUNCTION_ARGS)
{
	IngestRecv *x = (IngestRecv *) fcinfo->flinfo->fn_extra;
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	Oid			typioparam = PG_GETARG_OID(1);
	int32		typmod = PG_GETARG_INT32(2);
	int			len;
	char	   *datum;

	if (buf == NULL)
		PG_RETURN_NULL();
	if (buf->cursor >= buf->len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("incorrect binary data format")));
	if (buf->data[buf->cursor] != 0)
	{
		buf->cursor++;
		return ReceiveFunctionCall(&x->orig, buf, typioparam, typmod);
	}
	len = buf->len - buf->cursor - 1;
	if (len < VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("incorrect binary data format")));
	datum = palloc(len);
	memcpy(datum, buf->data + buf->cursor + 1, len);
	SET_VARSIZE(datum, len);
	buf->cursor = buf->len;
	PG_RETURN_POINTER(datum);
}

/* Puts `wrapper` in front of the receive function of attribute `attnum` (the original kept). */
static void
wrap_recv(CopyFromState cstate, int attnum, PGFunction wrapper)
{
	FmgrInfo   *f = &cstate->in_functions[attnum - 1];
	IngestRecv *x = MemoryContextAlloc(cstate->copycontext, sizeof(IngestRecv));

	x->orig = *f;
	f->fn_addr = wrapper;
	f->fn_extra = x;
}

/* Puts pg_ingest_recv_finished in front of the receive functions of these attributes. */
void
pg_ingest_copy_recv_finished(CopyFromState cstate, const int16 *attnums, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		wrap_recv(cstate, attnums[i], pg_ingest_recv_finished);
}

/* Puts the wrapper in front of every column's receive function of a COPY just begun. */
void
pg_ingest_copy_recv_unconverted(CopyFromState cstate)
{
	ListCell   *lc;

	foreach(lc, cstate->attnumlist)
		wrap_recv(cstate, lfirst_int(lc), pg_ingest_recv_unconverted);
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
pg_ingest_copy_recv_finished(void *cstate, const int16 *attnums, int n)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("pg_ingest's finished values need PostgreSQL 14 or later")));
}

void
pg_ingest_copy_recv_unconverted(void *cstate)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					errmsg("pg_ingest needs PostgreSQL 14 or later when client_encoding differs from the database's")));
}
#endif

/*
 * COPY FROM STDIN's side of the protocol, as copyfromparse.c's CopyGetData speaks it: the
 * CopyInResponse that starts it, then CopyData messages until CopyDone. Reading a message may
 * raise an ERROR (client gone, CopyFail, a message that has no place here): callers go through
 * pgrx's FFI guard.
 */
/*
 * libpq-be.h includes the GSSAPI headers when the server was built with GSSAPI; only its Port
 * struct uses them, which is not used here, so they are not needed to build.
 */
#undef ENABLE_GSS
#include "libpq/libpq.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"

void
pg_ingest_copy_in_begin(int natts)
{
	StringInfoData buf;
	int			i;

	/*
	 * Overall format binary: the client sends the bytes as they are (psql reads them with
	 * fread instead of line by line, so compressed input and NUL bytes go through intact).
	 */
	pq_beginmessage(&buf, 'G');
	pq_sendbyte(&buf, 1);
	pq_sendint16(&buf, natts);
	for (i = 0; i < natts; i++)
		pq_sendint16(&buf, 1);
	pq_endmessage(&buf);
	pq_flush();
}

/* The next CopyData's bytes into *buf: 1, or 0 at CopyDone. */
int
pg_ingest_copy_in_next(StringInfo buf)
{
	for (;;)
	{
		int			mtype;
		int			maxmsglen;

		HOLD_CANCEL_INTERRUPTS();
		pq_startmsgread();
		mtype = pq_getbyte();
		if (mtype == EOF)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("unexpected EOF on client connection with an open transaction")));
		switch (mtype)
		{
			case 'd':
				maxmsglen = PQ_LARGE_MESSAGE_LIMIT;
				break;
			case 'c':
			case 'f':
			case 'H':
			case 'S':
				maxmsglen = PQ_SMALL_MESSAGE_LIMIT;
				break;
			default:
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("unexpected message type 0x%02X during COPY from stdin", mtype)));
				maxmsglen = 0;	/* keep compiler quiet */
				break;
		}
		resetStringInfo(buf);
		if (pq_getmessage(buf, maxmsglen))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("unexpected EOF on client connection with an open transaction")));
		RESUME_CANCEL_INTERRUPTS();
		switch (mtype)
		{
			case 'd':
				return 1;
			case 'c':
				return 0;
			case 'f':
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("COPY from stdin failed: %s", pq_getmsgstring(buf))));
				break;
			default:
				/* Flush, Sync: ignored */
				break;
		}
	}
}
