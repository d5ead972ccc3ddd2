/*
 * COPY FROM's state, compiled against the server's own headers so that the struct layout is
 * always the installed one: two read-only accessors that name the line and column of an error
 * raised inside CopyFrom(), and the receive functions made independent of client_encoding.
 */
#include "postgres.h"

#include "fmgr.h"
#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

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

/* The tags of pg_ingest's fields: pg_ingest_core::encode's TAG_* constants. */
#define TAG_DATUM	0
#define TAG_RECEIVE	1
#define TAG_INPUT	2
#define TAG_LOCAL	3

static void
bad_field(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("incorrect binary data format")));
}

/*
 * One field of pg_ingest's stream (buf: its bytes, NUL-terminated as COPY and rows.rs leave
 * them), by its tag:
 *   0: a finished datum built by the parse threads (varlena header included), copied;
 *   1: the type's binary COPY form, for its receive function (which applies the typmod and a
 *      domain's checks);
 *   2: text for the type's input function: PostgreSQL decides, and raises its own errors;
 *   3: (timestamptz) a wall-clock time without an offset, 8 bytes of microseconds since
 *      2000-01-01, then its text: placed in the session's TimeZone as timestamptz_in places
 *      it (DetermineTimeZoneOffset, then tm2timestamp), else the text goes to the input
 *      function.
 * The one reader of the tags, for COPY (through the wrapper below) and for rows.rs.
 */
Datum
pg_ingest_field(FmgrInfo *receive, FmgrInfo *input, Oid typioparam, int32 typmod, StringInfo buf)
{
	char	   *data;
	int			len;

	if (buf->cursor >= buf->len)
		bad_field();
	data = buf->data + buf->cursor + 1;
	len = buf->len - buf->cursor - 1;
	switch (buf->data[buf->cursor])
	{
		case TAG_DATUM:
			{
				char	   *datum;

				if (len < VARHDRSZ)
					bad_field();
				datum = palloc(len);
				memcpy(datum, data, len);
				SET_VARSIZE(datum, len);
				buf->cursor = buf->len;
				return PointerGetDatum(datum);
			}
		case TAG_RECEIVE:
			{
				Datum		result;

				buf->cursor++;
				result = ReceiveFunctionCall(receive, buf, typioparam, typmod);
				if (buf->cursor != buf->len)
					bad_field();
				return result;
			}
		case TAG_INPUT:
			buf->cursor = buf->len;
			if ((int) strlen(data) != len)
				bad_field();
			return InputFunctionCall(input, data, typioparam, typmod);
		case TAG_LOCAL:
			{
				int64		local;
				struct pg_tm tm;
				fsec_t		fsec;
				int			tz;
				TimestampTz result;

				if (len < (int) sizeof(int64) || (int) strlen(data + sizeof(int64)) != len - (int) sizeof(int64))
					bad_field();
				buf->cursor = buf->len;
				memcpy(&local, data, sizeof(int64));
				if (timestamp2tm(local, NULL, &tm, &fsec, NULL, NULL) == 0)
				{
					tz = DetermineTimeZoneOffset(&tm, session_timezone);
					if (tm2timestamp(&tm, fsec, &tz, &result) == 0 && IS_VALID_TIMESTAMP(result))
						return TimestampTzGetDatum(result);
				}
				return InputFunctionCall(input, data + sizeof(int64), typioparam, typmod);
			}
		default:
			bad_field();
	}
	return (Datum) 0;			/* not reached */
}

typedef struct IngestField
{
	IngestRecv	recv;
	FmgrInfo	input;
} IngestField;

/*
 * A column of pg_ingest's stream: its fields are tagged (pg_ingest_field). Only pg_ingest's
 * own stream reaches it: it is installed in the COPY that pg_ingest begins.
 */
static Datum
pg_ingest_recv_tagged(PG_FUNCTION_ARGS)
{
	IngestField *x = (IngestField *) fcinfo->flinfo->fn_extra;
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);

	if (buf == NULL)
	{
		/* a NULL still goes to the receive function: a domain's NOT NULL and CHECKs run */
		(void) ReceiveFunctionCall(&x->recv.orig, NULL, PG_GETARG_OID(1), PG_GETARG_INT32(2));
		PG_RETURN_NULL();
	}
	return pg_ingest_field(&x->recv.orig, &x->input, PG_GETARG_OID(1), PG_GETARG_INT32(2), buf);
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

/*
 * Puts pg_ingest_recv_tagged in front of every column's receive function of a COPY just begun
 * (before any other wrapper), with the column type's input function beside it.
 */
void
pg_ingest_copy_recv_tagged(CopyFromState cstate)
{
	ListCell   *lc;

	foreach(lc, cstate->attnumlist)
	{
		int			attnum = lfirst_int(lc);
		FmgrInfo   *f = &cstate->in_functions[attnum - 1];
		IngestField *x = MemoryContextAlloc(cstate->copycontext, sizeof(IngestField));
		Oid			typid = TupleDescAttr(RelationGetDescr(cstate->rel), attnum - 1)->atttypid;
		Oid			input_fn,
					typioparam;

		getTypeInputInfo(typid, &input_fn, &typioparam);
		fmgr_info_cxt(input_fn, &x->input, cstate->copycontext);
		x->recv.orig = *f;
		f->fn_addr = pg_ingest_recv_tagged;
		f->fn_extra = x;
	}
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
