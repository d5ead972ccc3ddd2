/*
 * Read-only accessors for COPY FROM's state, compiled against the server's own headers so
 * that the struct layout is always the installed one. Used only to name the line and column
 * of an error raised inside CopyFrom().
 */
#include "postgres.h"

#if PG_VERSION_NUM >= 140000
#include "commands/copyfrom_internal.h"

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
#endif
