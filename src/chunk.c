/*-------------------------------------------------------------------------
 *
 * chunk.c
 *	  Execution of one chunk: the job's SQL and the run's checkpoint in one
 *	  transaction, and the capture of the error when it fails.
 *
 * The chunk statement is prepared once per run and kept across
 * transactions: in keyset and repeat mode always with custom plans, so that
 * "$2 IS NULL OR key > $2" becomes a plain range scan; in range mode, whose
 * bounds are never NULL, the plan may be generic.  In keyset mode the
 * greatest key the chunk returned, by the cursor type's default btree
 * ordering, becomes the next cursor; the returned rows go to a receiver
 * that keeps only that key, so a chunk's result is never materialized.  In
 * range mode range.c finds the chunk's bounds before the statement.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/chunk.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "chunkbatch.h"

struct CbChunkState
{
	CbRun	   *run;
	MemoryContext run_ctx;		/* holds the cursor value */
	SPIPlanPtr	plan;
	SPIPlanPtr	keys_plan;		/* keys_sql, for on_error => 'isolate' */
	Oid			argtypes[3];	/* size, cursor, params: count_sql, keys_sql */
	Oid			stmt_argtypes[3];	/* the chunk statement's */
	bool		keyset;			/* the cursor is a key (keyset or range mode) */
	CbRange    *range;			/* range mode: the key search */
	Datum		cursor;			/* $2, in run_ctx */
	bool		cursor_null;
	int16		typlen;
	bool		typbyval;
	Oid			collation;
	FmgrInfo	cmp;			/* btree comparison of the cursor type */
	FmgrInfo	output;
};

static void chunk_slice_end(CbChunkState *cs);

/* Set up a run's chunk execution; call inside a transaction. */
CbChunkState *
cb_chunk_begin(CbRun *run, MemoryContext run_ctx)
{
	CbChunkState *cs = MemoryContextAllocZero(run_ctx, sizeof(CbChunkState));
	Oid			cursor_type = run->job.cursor_type;

	cs->run = run;
	cs->run_ctx = run_ctx;
	cs->keyset = OidIsValid(cursor_type);
	cs->argtypes[0] = INT4OID;
	cs->argtypes[1] = cs->keyset ? cursor_type : TEXTOID;
	cs->argtypes[2] = JSONBOID;
	memcpy(cs->stmt_argtypes, cs->argtypes, sizeof(cs->argtypes));
	cs->cursor_null = true;
	if (run->job.range_table != NULL)
	{
		cs->range = cb_range_begin(&run->job, run_ctx);
		cs->stmt_argtypes[0] = cursor_type;
	}

	if (cs->keyset)
	{
		TypeCacheEntry *tce;
		Oid			func;
		bool		isvarlena;
		Oid			ioparam;
		MemoryContext old;

		tce = lookup_type_cache(cursor_type, TYPECACHE_CMP_PROC);
		if (!OidIsValid(tce->cmp_proc))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("cursor type %s has no default btree ordering",
							format_type_be(cursor_type))));
		fmgr_info_cxt(tce->cmp_proc, &cs->cmp, run_ctx);
		cs->collation = tce->typcollation;
		get_typlenbyval(cursor_type, &cs->typlen, &cs->typbyval);
		getTypeOutputInfo(cursor_type, &func, &isvarlena);
		fmgr_info_cxt(func, &cs->output, run_ctx);

		if (run->cursor != NULL)
		{
			getTypeInputInfo(cursor_type, &func, &ioparam);
			old = MemoryContextSwitchTo(run_ctx);
			cs->cursor = OidInputFunctionCall(func, run->cursor, ioparam, -1);
			cs->cursor_null = false;
			MemoryContextSwitchTo(old);
		}
	}
	if (cs->range != NULL)
		cs->collation = cb_range_key_collation(cs->range);
	if (cs->range != NULL && run->range_first != NULL &&
		(run->job.range_filter != NULL || run->slice_no >= 0))
		cb_range_set_span(cs->range, run->range_first, run->range_last, run_ctx);
	return cs;
}

/*
 * The run's cursor and span changed under the chunk state (a worker took
 * another slice of the run): take them over.  Call inside a transaction.
 */
void
cb_chunk_retarget(CbChunkState *cs)
{
	CbRun	   *run = cs->run;

	/* Past its first cursor, a slice's first key is of no use. */
	if (run->range_first == NULL && run->range_last != NULL)
		run->range_first = MemoryContextStrdup(cs->run_ctx, run->cursor);

	Assert(cs->range != NULL);
	if (!cs->cursor_null && !cs->typbyval)
		pfree(DatumGetPointer(cs->cursor));
	cs->cursor_null = true;
	if (run->cursor != NULL)
	{
		Oid			func;
		Oid			ioparam;
		MemoryContext old = MemoryContextSwitchTo(cs->run_ctx);

		getTypeInputInfo(run->job.cursor_type, &func, &ioparam);
		cs->cursor = OidInputFunctionCall(func, run->cursor, ioparam, -1);
		cs->cursor_null = false;
		MemoryContextSwitchTo(old);
	}
	cb_range_set_span(cs->range, run->range_first, run->range_last, cs->run_ctx);
}

/* Run parse analysis and privilege checks as another role. */
void
cb_as_role_enter(CbAsRole *r, Oid role, const char *search_path)
{
	GetUserIdAndSecContext(&r->save_uid, &r->save_sec);
	SetUserIdAndSecContext(role, r->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	r->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
cb_as_role_leave(CbAsRole *r)
{
	AtEOXact_GUC(true, r->nestlevel);
	SetUserIdAndSecContext(r->save_uid, r->save_sec);
}

/* Parse and analyze exactly one statement that is not a utility statement. */
static Query *
analyze_one(const char *what, const char *sql, Oid *argtypes, int nargs)
{
	List	   *raw = pg_parse_query(sql);
	Query	   *query;

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s must be exactly one statement", what),
				 errdetail("It contains %d statements.", list_length(raw))));
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql,
									  argtypes, nargs, NULL);
	if (query->commandType == CMD_UTILITY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot be a utility statement", what),
				 errdetail("Chunk SQL must be a SELECT, INSERT, UPDATE, DELETE or MERGE statement; chunkbatch itself commits each chunk.")));
	return query;
}

/* Table privileges of the statement, checked as the current user. */
static void
check_privileges(Query *query)
{
	ListCell   *lc;

	foreach(lc, QueryRewrite(query))
	{
		Query	   *q = lfirst_node(Query, lc);

		if (q->commandType != CMD_UTILITY)
			(void) ExecCheckRTPerms(q->rtable, true);
	}
}

/* The first result column of a statement, or NULL. */
static TargetEntry *
first_column(Query *query)
{
	List	   *tlist = (query->commandType == CMD_SELECT) ?
		query->targetList : query->returningList;
	ListCell   *lc;

	foreach(lc, tlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk)
			return tle;
	}
	return NULL;
}

/*
 * Parse, analyze and check the privileges of chunk SQL, as the role that
 * will run it, with the chunk parameter types: in keyset mode the
 * statement must return keys of the cursor type as its first column; in
 * range mode $1 and $2 are the bounds, of the key's type.
 */
void
cb_chunk_validate_sql(const CbJob *job, Oid owner)
{
	Oid			cursor_type = job->cursor_type;
	bool		range = (job->range_table != NULL);
	Oid			argtypes[3] = {range ? cursor_type : INT4OID,
		OidIsValid(cursor_type) ? cursor_type : TEXTOID, JSONBOID};
	CbAsRole	r;
	Query	   *query;

	cb_as_role_enter(&r, owner, job->search_path);
	query = analyze_one("chunk SQL", job->chunk_sql, argtypes, 3);
	if (OidIsValid(cursor_type) && !range)
	{
		TargetEntry *first = first_column(query);

		if (first == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keyset chunk SQL of job \"%s\" must return the keys it processed",
							job->job_name),
					 errhint("Return them as the first column, for example with RETURNING id.")));
		if (exprType((Node *) first->expr) != cursor_type)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("keyset chunk SQL of job \"%s\" returns keys of type %s, but the cursor type is %s",
							job->job_name,
							format_type_be(exprType((Node *) first->expr)),
							format_type_be(cursor_type))));
	}
	check_privileges(query);
	cb_as_role_leave(&r);
}

/*
 * Validate a SELECT of a job other than its chunk SQL, as the owner:
 * throttle_sql (no parameters, want_type boolean), keys_sql (the chunk
 * parameters, want_type the cursor type) or count_sql (the chunk
 * parameters, want_type InvalidOid: any number).
 */
void
cb_chunk_validate_select(const char *job_name, const char *what, const char *sql,
					  Oid cursor_type, Oid want_type, Oid owner,
					  const char *search_path)
{
	Oid			argtypes[3] = {INT4OID, OidIsValid(cursor_type) ? cursor_type : TEXTOID,
	JSONBOID};
	CbAsRole	r;
	Query	   *query;
	TargetEntry *first;
	Oid			type;
	const char *want = OidIsValid(want_type) ? format_type_be(want_type) : "number";

	cb_as_role_enter(&r, owner, search_path);
	query = analyze_one(what, sql, argtypes, want_type == BOOLOID ? 0 : 3);
	first = first_column(query);
	if (query->rowMarks != NIL || query->hasModifyingCTE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of job \"%s\" must not lock or change rows", what, job_name)));
	if (query->commandType != CMD_SELECT || first == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of job \"%s\" must be a SELECT returning a %s",
						what, job_name, want)));
	type = exprType((Node *) first->expr);
	if (OidIsValid(want_type) ? type != want_type :
		TypeCategory(type) != TYPCATEGORY_NUMERIC)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s of job \"%s\" returns %s, not a %s",
						what, job_name, format_type_be(type), want)));
	check_privileges(query);
	cb_as_role_leave(&r);
}

/* Per-chunk settings, undone at the chunk's commit or abort. */
/*
 * A chunk's statement_timeout in milliseconds (0: none): the job's own,
 * else what a session of its owner in this database gets (the server's
 * value, or ALTER ROLE / ALTER DATABASE ... SET statement_timeout, which
 * the worker took when it connected as the owner).  lock_timeout needs no
 * such care: the job's own value is set per chunk, and otherwise the
 * owner's applies by itself.
 */
static int
chunk_statement_timeout_ms(const CbJob *job)
{
	return job->statement_timeout != NULL ?
		(int) cb_interval_ms(job->statement_timeout) : StatementTimeout;
}

static void
chunk_apply_settings(CbChunkState *cs)
{
	CbJob	   *job = &cs->run->job;

	if (!job->synchronous_commit)
		(void) set_config_option("synchronous_commit", "off",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	(void) set_config_option("search_path", job->search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
	if (job->lock_timeout != NULL)
	{
		char		ms[32];

		snprintf(ms, sizeof(ms), "%d", (int) cb_interval_ms(job->lock_timeout));
		(void) set_config_option("lock_timeout", ms,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	}
	/* SPI in a background worker never arms statement_timeout: do it here. */
	if (chunk_statement_timeout_ms(job) > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, chunk_statement_timeout_ms(job));
}

static void
chunk_prepare(CbChunkState *cs)
{
	SPIPlanPtr	plan;

	/* Jobs created with validate => false are checked here, as the owner. */
	cb_chunk_validate_sql(&cs->run->job, GetUserId());

	/*
	 * A range statement's bounds are always given: its plan may be generic.
	 * Others get custom plans, so that "$2 IS NULL OR key > $2" becomes a
	 * plain range scan.
	 */
	plan = SPI_prepare_cursor(cs->run->job.chunk_sql, 3, cs->stmt_argtypes,
							  cs->range ? 0 : CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for chunk SQL: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	cs->plan = plan;
}

/*
 * The receiver of a chunk statement's result rows.  A run needs only the
 * greatest non-null key of the first column (keyset mode), so the rows are
 * looked at as they come and never kept: no row is copied, and a chunk of
 * any size runs in constant memory.
 */
typedef struct CbKeyReceiver
{
	DestReceiver pub;
	CbChunkState *cs;
	MemoryContext cxt;			/* where the greatest key is kept */
	bool		started;		/* the statement returns rows */
	bool		found;			/* best holds a key */
	Datum		best;
} CbKeyReceiver;

/* A keyset chunk statement that returns no column to take keys from. */
static void
key_column_missing(CbChunkState *cs)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("keyset chunk SQL of job \"%s\" returned no key column",
					cs->run->job.job_name),
			 errhint("Return the processed keys as the first column, for example with RETURNING.")));
}

static void
key_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	CbKeyReceiver *kr = (CbKeyReceiver *) self;
	CbChunkState *cs = kr->cs;

	kr->started = true;
	if (!cs->keyset || cs->range)
		return;
	if (typeinfo->natts < 1)
		key_column_missing(cs);
	if (TupleDescAttr(typeinfo, 0)->atttypid != cs->argtypes[1])
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("keyset chunk SQL of job \"%s\" returned keys of type %s, not %s",
						cs->run->job.job_name,
						format_type_be(TupleDescAttr(typeinfo, 0)->atttypid),
						format_type_be(cs->argtypes[1]))));
}

static bool
key_receive(TupleTableSlot *slot, DestReceiver *self)
{
	CbKeyReceiver *kr = (CbKeyReceiver *) self;
	CbChunkState *cs = kr->cs;
	MemoryContext old;
	bool		isnull;
	Datum		key;

	if (!cs->keyset || cs->range)
		return true;
	key = slot_getattr(slot, 1, &isnull);
	if (isnull ||
		(kr->found &&
		 DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation,
										 key, kr->best)) <= 0))
		return true;

	/* A new greatest key: keep a copy that outlives the row (and TOAST). */
	old = MemoryContextSwitchTo(kr->cxt);
	if (kr->found && !cs->typbyval)
		pfree(DatumGetPointer(kr->best));
	if (cs->typlen == -1)
		kr->best = PointerGetDatum(PG_DETOAST_DATUM_COPY(key));
	else
		kr->best = datumCopy(key, cs->typbyval, cs->typlen);
	kr->found = true;
	MemoryContextSwitchTo(old);
	return true;
}

static void
key_shutdown(DestReceiver *self)
{
}

static void
key_destroy(DestReceiver *self)
{
}

/*
 * Execute the chunk statement with $1 and $2 as given ($3 is the run's
 * parameters): the size and the cursor (which may be NULL), or in range
 * mode the bounds.  kr receives its rows.  Returns SPI_processed.
 */
static uint64
chunk_run_statement(CbChunkState *cs, Datum arg1, Datum arg2, bool arg2_null,
					CbKeyReceiver *kr, MemoryContext key_ctx)
{
	ParamListInfo params = makeParamList(3);
	SPIExecuteOptions options;
	Datum		values[3];
	int			i;
	int			rc;

	values[0] = arg1;
	values[1] = arg2;
	values[2] = cs->run->params;
	for (i = 0; i < 3; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = (i == 1 && arg2_null);
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = cs->stmt_argtypes[i];
	}
	params->numParams = 3;

	memset(kr, 0, sizeof(*kr));
	kr->pub.receiveSlot = key_receive;
	kr->pub.rStartup = key_startup;
	kr->pub.rShutdown = key_shutdown;
	kr->pub.rDestroy = key_destroy;
	kr->pub.mydest = DestNone;
	kr->cs = cs;
	kr->cxt = key_ctx;

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = false;
	options.tcount = 0;
	options.dest = &kr->pub;
	rc = SPI_execute_plan_extended(cs->plan, &options);
	if (rc < 0)
		elog(ERROR, "chunk SQL failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Do other sessions wait for this chunk's transaction, i.e. for a row it
 * locked?  A session blocked on a row waits for the transaction lock of
 * the row's locker (behind it, more may queue on the tuple lock).
 */
static bool
chunk_has_lock_waiters(void)
{
	TransactionId xid = GetTopTransactionIdIfAny();
	LOCKTAG		tag;

	if (!TransactionIdIsValid(xid))
		return false;
	SET_LOCKTAG_TRANSACTION(tag, xid);
	/* The count includes this transaction's own hold of the lock. */
	return LockWaiterCount(&tag) > 1;
}

/*
 * The chunk proper: executes inside the transaction started by
 * cb_chunk_execute and fills *cp and *newkey.  Any error propagates.
 */
/*
 * Test-only fault injection (chunkbatch.test_fault): at the named point of
 * the named chunk the worker dies as in a crash, so that a test lands in a
 * window of a few microseconds every time.  A marker file makes it fire
 * once, so that the resumed run goes through.
 */
#define CB_TEST_FAULT_DONE	"chunkbatch_test_fault.done"

static void
chunk_test_fault(const char *point, const CbRun *run)
{
	int			fd;

	if (cb_test_fault == NULL || strcmp(cb_test_fault, point) != 0 ||
		(cb_test_fault_chunk > 0 && run->chunks_done + 1 != cb_test_fault_chunk))
		return;
	fd = open(CB_TEST_FAULT_DONE, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		return;					/* fired before */
	close(fd);
	ereport(LOG,
			(errmsg("chunkbatch run %lld: test fault \"%s\" at chunk %lld, the worker kills itself",
					(long long) run->run_id, point, (long long) run->chunks_done + 1)));
	(void) kill(MyProcPid, SIGKILL);
	for (;;)
		pg_usleep(1000000L);
}

/*
 * The worker is connected as the job's owner, and stays so: a role that
 * was dropped, or lost LOGIN, since the run started must not go on
 * executing chunks.  Checked at the start of every chunk transaction (the
 * role's catalog row is current there), so the run fails at its next chunk
 * boundary with a clear error.
 */
static void
chunk_check_owner(const CbRun *run)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(run->job.owner));
	bool		canlogin;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner role of job \"%s\" was dropped during its run",
						run->job.job_name)));
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!canlogin)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("role \"%s\" owning job \"%s\" lost the LOGIN attribute during its run",
						run->job.owner_name, run->job.job_name)));
}

/*
 * Keyset and repeat mode: run the statement with $1 = the chunk size and
 * $2 = the cursor; in keyset mode the greatest key it returned is the new
 * cursor.  Returns false when it processed no row (the run is done).
 */
static bool
chunk_keyset(CbChunkState *cs, MemoryContext chunk_ctx, CbChunkResult *res,
			 Datum *newkey, bool *have_key)
{
	CbRun	   *run = cs->run;
	CbKeyReceiver kr;

	res->processed = chunk_run_statement(cs, Int32GetDatum(run->batch_size),
										 cs->cursor, cs->cursor_null, &kr,
										 chunk_ctx);
	res->sized = res->processed;
	if (!cs->keyset || res->processed == 0)
		return res->processed > 0;
	if (!kr.started)
		key_column_missing(cs);
	if (!kr.found)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("keyset chunk SQL of job \"%s\" returned only NULL keys",
						run->job.job_name)));
	*have_key = true;
	*newkey = kr.best;
	if (!cs->cursor_null &&
		DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation,
										*newkey, cs->cursor)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("keyset cursor of job \"%s\" did not advance",
						run->job.job_name),
				 errdetail("The chunk returned no key greater than the cursor %s.",
						   run->cursor),
				 errhint("The chunk SQL must process only keys greater than $2.")));
	return true;
}

/*
 * Range mode: the next batch_size keys past the cursor give the bounds, $1
 * and $2 of the statement, and the last of them is the new cursor; the
 * chunk size counts keys.  Returns false when no key is left (the run is
 * done); a range whose rows the statement did not touch is no end.
 */
static bool
chunk_range(CbChunkState *cs, MemoryContext chunk_ctx, CbChunkResult *res,
			Datum *newkey, bool *have_key)
{
	CbKeyReceiver kr;
	Datum		first;

	res->sized = cb_range_bounds(cs->range, cs->run->batch_size, cs->cursor,
								 cs->cursor_null, cs->run->params, &first,
								 newkey, chunk_ctx);
	if (res->sized == 0)
		return false;
	res->processed = chunk_run_statement(cs, first, *newkey, false, &kr,
										 chunk_ctx);
	*have_key = true;
	return true;
}

/*
 * A slice's chunk first reads where the slice ends now: a worker that took
 * over the slice's upper part (work stealing) lowered it.  Call inside the
 * chunk's transaction.
 */
static void
chunk_slice_end(CbChunkState *cs)
{
	CbRun	   *run = cs->run;
	char	   *last;

	if (run->slice_no < 0)
		return;
	last = cb_catalog_slice_end(run);
	if (last == NULL || (run->range_last != NULL && strcmp(last, run->range_last) == 0))
		return;					/* an end is only ever lowered, never removed */
	run->range_last = MemoryContextStrdup(cs->run_ctx, last);
	cb_range_set_span(cs->range, run->range_first ? run->range_first : run->cursor,
					  run->range_last, cs->run_ctx);
}

/* Set when chunk_check_slice_end() undoes a chunk; see CbChunkResult. */
static bool slice_end_moved = false;

/*
 * A slice's checkpoint read the slice's end again (under the row's lock):
 * if a thief lowered it below the chunk's last key meanwhile, the chunk
 * fails as a serialization failure, so that it is undone and done again
 * within the new end, at once and without counting as a retry.  (A thief
 * leaves the victim half of its rest, at least two of its chunks' worth,
 * so this is rare.)
 */
static void
chunk_check_slice_end(CbChunkState *cs, const CbCheckpoint *cp, Datum lastkey)
{
	Oid			func;
	Oid			ioparam;
	Datum		end;

	if (cs->run->slice_no < 0 || cp->slice_end == NULL)
		return;
	getTypeInputInfo(cs->run->job.cursor_type, &func, &ioparam);
	end = OidInputFunctionCall(func, cp->slice_end, ioparam, -1);
	if (DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation, lastkey, end)) > 0)
	{
		slice_end_moved = true;
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("slice %d of run %lld now ends at key %s, before this chunk's last key %s",
						cs->run->slice_no, (long long) cs->run->run_id, cp->slice_end,
						cp->cursor),
				 errdetail("Another worker took over the keys after %s; the chunk is done again within the new end.",
						   cp->slice_end)));
	}
}

static void
chunk_body(CbChunkState *cs, MemoryContext chunk_ctx, CbChunkResult *res,
		   CbCheckpoint *cp, Datum *newkey, bool *have_key)
{
	CbRun	   *run = cs->run;
	TimestampTz start;
	bool		more;

	chunk_check_owner(run);
	chunk_apply_settings(cs);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (cs->plan == NULL)
		chunk_prepare(cs);
	chunk_slice_end(cs);

	start = GetCurrentTimestamp();
	*have_key = false;
	more = cs->range ? chunk_range(cs, chunk_ctx, res, newkey, have_key) :
		chunk_keyset(cs, chunk_ctx, res, newkey, have_key);
	disable_timeout(STATEMENT_TIMEOUT, false);
	chunk_test_fault("after_statement", run);
	res->elapsed_ms = (double) (GetCurrentTimestamp() - start) / 1000.0;

	cp->cursor = *have_key ?
		MemoryContextStrdup(chunk_ctx, OutputFunctionCall(&cs->output, *newkey)) :
		run->cursor;
	cp->rows_done = run->rows_done + (int64) res->processed;
	cp->chunks_done = run->chunks_done + 1;
	cp->batch_size = run->batch_size;
	cp->retries = run->retries;
	cp->dead_letters = run->dead_letters;
	cp->avg_chunk_ms = (run->avg_chunk_ms * run->chunks_done + res->elapsed_ms) /
		(run->chunks_done + 1);
	cp->max_chunk_ms = Max(run->max_chunk_ms, res->elapsed_ms);
	cp->last_chunk_ms = res->elapsed_ms;
	res->done = !more;
	/* With steps after the chunks, the run succeeds after them. */
	cp->done = !more && !cb_run_has_after_steps(run);
	res->lock_waiters = chunk_has_lock_waiters();
	cp->lock_waiters_seen = run->lock_waiters_seen + (res->lock_waiters ? 1 : 0);
	cp->slice_end = NULL;
	res->job_altered_at = cb_catalog_checkpoint(run, cp);
	if (*have_key)
		chunk_check_slice_end(cs, cp, *newkey);
	chunk_test_fault("before_commit", run);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	chunk_test_fault("after_commit", run);
}

/*
 * Errors after which the same chunk may simply be tried again in a new
 * transaction: lock timeouts, deadlocks and serialization failures.
 */
bool
cb_chunk_error_is_transient(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/* After a commit, the written checkpoint becomes the run's state. */
static void
chunk_advance(CbChunkState *cs, const CbCheckpoint *cp, Datum newkey,
			  bool have_key)
{
	CbRun	   *run = cs->run;

	run->rows_done = cp->rows_done;
	run->chunks_done = cp->chunks_done;
	run->start_attempts = 0;	/* the checkpoint set it back */
	run->avg_chunk_ms = cp->avg_chunk_ms;
	run->max_chunk_ms = cp->max_chunk_ms;
	run->dead_letters = cp->dead_letters;
	run->lock_waiters_seen = cp->lock_waiters_seen;
	if (have_key)
	{
		MemoryContext old = MemoryContextSwitchTo(cs->run_ctx);

		if (!cs->cursor_null && !cs->typbyval)
			pfree(DatumGetPointer(cs->cursor));
		if (run->cursor != NULL)
			pfree(run->cursor);
		cs->cursor = datumCopy(newkey, cs->typbyval, cs->typlen);
		cs->cursor_null = false;
		run->cursor = pstrdup(cp->cursor);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Execute one chunk in its own transaction.  The caller's memory context
 * is the per-chunk context: the error, if any, is copied there.  On
 * success the run's checkpoint fields advance.
 */
void
cb_chunk_execute(CbChunkState *cs, CbChunkResult *res)
{
	MemoryContext chunk_ctx = CurrentMemoryContext;
	CbRun	   *run = cs->run;
	CbCheckpoint cp;
	Datum		newkey = (Datum) 0;
	bool		have_key = false;
	TimestampTz start;

	memset(res, 0, sizeof(CbChunkResult));
	slice_end_moved = false;
	start = GetCurrentTimestamp();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, run->job.chunk_sql);
	PG_TRY();
	{
		chunk_body(cs, chunk_ctx, res, &cp, &newkey, &have_key);
		res->ok = true;
	}
	PG_CATCH();
	{
		res->error = cb_catch_error(chunk_ctx, true, true);
		res->slice_moved = slice_end_moved;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(chunk_ctx);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (!res->ok)
	{
		int			timeout = chunk_statement_timeout_ms(&run->job);

		res->elapsed_ms = (double) (GetCurrentTimestamp() - start) / 1000.0;
		res->timed_out = (res->error->sqlerrcode == ERRCODE_QUERY_CANCELED &&
						  timeout > 0 && res->elapsed_ms >= timeout * 0.95);
		return;
	}

	chunk_advance(cs, &cp, have_key ? newkey : (Datum) 0, have_key);
}

/* ----------------------------------------------------------------
 * Poison rows: on_error => 'isolate'
 *
 * A keyset chunk that failed with a non-transient error is done again in
 * one transaction, split by the keys keys_sql lists for it: each part is
 * the chunk SQL with $2 = the key before the part and $1 = its size, in a
 * subtransaction; a failing part is halved until single keys remain,
 * which go to chunkbatch.dead_letters.  Every other row of the chunk is
 * committed with the checkpoint, past the whole chunk.  A bad row costs
 * about 2 * log2(chunk size) subtransactions.  In range mode the keys come
 * from the key search itself, and each part is the statement with the
 * part's first and last key as its bounds.
 * ----------------------------------------------------------------
 */
typedef struct CbIsolation
{
	CbChunkState *cs;
	Datum	   *keys;
	int			nkeys;
	uint64		processed;
	int64		dead;
} CbIsolation;

/* Execute the chunk SQL for keys[lo .. lo+n-1] in a subtransaction. */
static bool
isolate_try(CbIsolation *iso, int lo, int n, ErrorData **edata)
{
	CbChunkState *cs = iso->cs;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	CbKeyReceiver kr;
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		/* Each part gets the chunk's statement_timeout, not the whole split. */
		if (chunk_statement_timeout_ms(&cs->run->job) > 0)
			enable_timeout_after(STATEMENT_TIMEOUT,
								 chunk_statement_timeout_ms(&cs->run->job));
		if (cs->range)
			iso->processed += chunk_run_statement(cs, iso->keys[lo],
												  iso->keys[lo + n - 1], false,
												  &kr, oldcxt);
		else
			iso->processed += chunk_run_statement(cs, Int32GetDatum(n),
												  lo == 0 ? cs->cursor : iso->keys[lo - 1],
												  lo == 0 && cs->cursor_null,
												  &kr, oldcxt);
		disable_timeout(STATEMENT_TIMEOUT, false);
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(oldcxt);
		*edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;

	/*
	 * Only an error of the rows themselves makes a poison row.  A transient
	 * error, a timeout or a cancel (chunkbatch's own, or SIGTERM's) ends
	 * the whole isolation: its transaction rolls back, and the run handles
	 * the error as it would a chunk's.
	 */
	if (!ok && (cb_chunk_error_is_transient(*edata) ||
				(*edata)->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				(*edata)->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN))
		ReThrowError(*edata);
	return ok;
}

/* Process keys[lo .. lo+n-1], which failed together, by halves. */
static void
isolate_split(CbIsolation *iso, int lo, int n, ErrorData *edata)
{
	int			half = n / 2;
	ErrorData  *err = NULL;

	if (n == 1)
	{
		char	   *key = OutputFunctionCall(&iso->cs->output, iso->keys[lo]);

		cb_catalog_dead_letter(iso->cs->run, key, edata);
		iso->dead++;
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\" put key %s in dead_letters: %s",
						(long long) iso->cs->run->run_id,
						iso->cs->run->job.job_name, key, edata->message)));
		return;
	}
	if (!isolate_try(iso, lo, half, &err))
		isolate_split(iso, lo, half, err);
	err = NULL;
	if (!isolate_try(iso, lo + half, n - half, &err))
		isolate_split(iso, lo + half, n - half, err);
}

/* The keys the failed chunk was to process, in order, copied. */
static void
isolate_keys(CbIsolation *iso)
{
	CbChunkState *cs = iso->cs;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			rc;
	uint64		i;

	if (cs->range)
	{
		chunk_slice_end(cs);
		iso->nkeys = cb_range_keys(cs->range, cs->run->batch_size, cs->cursor,
								   cs->cursor_null, cs->run->params,
								   &iso->keys, CurrentMemoryContext);
		return;
	}
	if (cs->keys_plan == NULL)
	{
		SPIPlanPtr	plan;

		cb_chunk_validate_select(cs->run->job.job_name, "keys_sql",
							  cs->run->job.keys_sql, cs->run->job.cursor_type,
							  cs->run->job.cursor_type, GetUserId(),
							  cs->run->job.search_path);
		plan = SPI_prepare_cursor(cs->run->job.keys_sql, 3, cs->argtypes,
								  CURSOR_OPT_CUSTOM_PLAN);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare keys_sql: %s",
				 SPI_result_code_string(SPI_result));
		cs->keys_plan = plan;
	}
	values[0] = Int32GetDatum(cs->run->batch_size);
	values[1] = cs->cursor;
	nulls[1] = cs->cursor_null ? 'n' : ' ';
	values[2] = cs->run->params;
	rc = SPI_execute_plan(cs->keys_plan, values, nulls, true, cs->run->batch_size);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keys_sql of job \"%s\" must be a SELECT", cs->run->job.job_name)));
	iso->nkeys = (int) SPI_processed;
	iso->keys = palloc(sizeof(Datum) * Max(iso->nkeys, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		key = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										1, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("keys_sql of job \"%s\" returned a NULL key",
							cs->run->job.job_name)));
		iso->keys[i] = datumCopy(key, cs->typbyval, cs->typlen);
		if (i > 0 &&
			DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation,
											iso->keys[i], iso->keys[i - 1])) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("keys_sql of job \"%s\" must return keys in ascending order",
							cs->run->job.job_name)));
		/* As for chunk SQL: a key not past the cursor would never advance. */
		if (i == 0 && !cs->cursor_null &&
			DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation,
											iso->keys[0], cs->cursor)) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("keys_sql of job \"%s\" returned a key not greater than the cursor",
							cs->run->job.job_name),
					 errdetail("The cursor is %s.", cs->run->cursor),
					 errhint("keys_sql must return only keys greater than $2.")));
	}
}

/*
 * Redo a chunk that failed with "failure" by isolating its poison rows.
 * On success *res describes the committed chunk; otherwise it carries
 * the error that ends the run (the original one if keys_sql found no keys
 * to split by).
 */
void
cb_chunk_isolate(CbChunkState *cs, CbChunkResult *res)
{
	MemoryContext chunk_ctx = CurrentMemoryContext;
	CbRun	   *run = cs->run;
	ErrorData  *failure = res->error;
	CbIsolation iso;
	CbCheckpoint cp;
	Datum		lastkey = (Datum) 0;
	volatile bool ok = false;

	if (cs->plan == NULL)
		return;					/* it failed before its SQL could even run */
	memset(&iso, 0, sizeof(iso));
	iso.cs = cs;
	slice_end_moved = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		chunk_apply_settings(cs);
		disable_timeout(STATEMENT_TIMEOUT, false);	/* armed per part */
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		MemoryContextSwitchTo(chunk_ctx);
		isolate_keys(&iso);
		if (iso.nkeys > 0)
		{
			isolate_split(&iso, 0, iso.nkeys, failure);
			disable_timeout(STATEMENT_TIMEOUT, false);
			/* a slice counts the dead letters of the whole run */
			if (run->job.max_dead_letters >= 0 &&
				run->dead_letters + iso.dead +
				(run->slice_no >= 0 ? cb_catalog_slice_others_dead(run) : 0) >
				run->job.max_dead_letters)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("run %lld of job \"%s\" exceeded max_dead_letters (%d)",
								(long long) run->run_id, run->job.job_name,
								run->job.max_dead_letters),
						 errdetail("The last chunk failed with: %s", failure->message)));
			lastkey = iso.keys[iso.nkeys - 1];
			cp.cursor = MemoryContextStrdup(chunk_ctx,
											OutputFunctionCall(&cs->output, lastkey));
			cp.rows_done = run->rows_done + (int64) iso.processed;
			cp.chunks_done = run->chunks_done + 1;
			cp.batch_size = run->batch_size;
			cp.retries = run->retries;
			cp.avg_chunk_ms = run->avg_chunk_ms;
			cp.max_chunk_ms = run->max_chunk_ms;
			cp.last_chunk_ms = -1;
			cp.dead_letters = run->dead_letters + iso.dead;
			cp.lock_waiters_seen = run->lock_waiters_seen;
			cp.done = false;
			cp.slice_end = NULL;
			res->job_altered_at = cb_catalog_checkpoint(run, &cp);
			chunk_check_slice_end(cs, &cp, lastkey);
			ok = true;
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		res->error = cb_catch_error(chunk_ctx, true, true);
		res->slice_moved = slice_end_moved;
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(chunk_ctx);
	pgstat_report_stat(false);
	if (!ok)
		return;
	res->ok = true;
	res->isolated = true;
	res->error = NULL;
	res->processed = iso.processed;
	res->sized = cs->range ? (uint64) iso.nkeys : iso.processed;
	chunk_advance(cs, &cp, lastkey, true);
}

/*
 * Range mode with a filter: the span of keys the filter matches, found at
 * the run's first start, before any chunk (see cb_range_find_span).  As the
 * owner, without statement_timeout, like count_sql.  Returns false if the
 * filter matches nothing, else the text forms of the span's ends, in the
 * run's context; *count is the number of matching rows.  The run's key
 * search is bounded only by cb_chunk_set_span, once the span is committed.
 */
bool
cb_chunk_find_span(CbChunkState *cs, char **first, char **last, int64 *count)
{
	bool		found;

	Assert(cs->range != NULL && cs->run->job.range_filter != NULL);
	chunk_apply_settings(cs);
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	found = cb_range_find_span(cs->range, cs->run->params, first, last, count,
							   cs->run_ctx);
	SPI_finish();
	return found;
}

/*
 * Split the run's keys into at most n slices (see cb_range_split), as the
 * owner, without statement_timeout, like count_sql: the bounds in the
 * run's context.  The span, if any, must be set.
 */
int
cb_chunk_split(CbChunkState *cs, int n, char ***bounds)
{
	int			nbounds;

	Assert(cs->range != NULL);
	chunk_apply_settings(cs);
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nbounds = cb_range_split(cs->range, cs->run->params, n, bounds, cs->run_ctx);
	SPI_finish();
	return nbounds;
}

/*
 * Work stealing, when a worker of a run with slices finds none left to
 * take: the running slice with the most keys left (counted by index-only
 * scans, as the owner) gives the upper half of its rest to this worker,
 * as a new slice in *slice (see cb_catalog_slice_take), if it has at
 * least two chunks' worth and its checkpoint, compared here as the job's
 * owner, is still short of the split.  Aims cs at that slice.  Call inside a
 * transaction.
 */
bool
cb_chunk_steal(CbChunkState *cs, const CbRun *run, CbRun *slice)
{
	List	   *rests = cb_catalog_slice_victims(run->run_id);
	CbSliceRest *victim = NULL;
	int64		most = 0;
	char	   *split = NULL;
	char	   *cursor;
	ListCell   *lc;

	if (rests == NIL)
		return false;
	chunk_apply_settings(cs);
	disable_timeout(STATEMENT_TIMEOUT, false);
	/* The thief waits for the victim's chunk in progress, however long. */
	(void) set_config_option("lock_timeout", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, rests)
	{
		CbSliceRest *rest = lfirst(lc);
		int64		n = cb_range_count_keys(cs->range, rest->lower, rest->inclusive,
											rest->last);

		if (n > most)
		{
			most = n;
			victim = rest;
		}
	}
	if (victim != NULL &&
		most >= 2 * (int64) Max(Max(run->batch_size, victim->batch_size), 1))
		split = cb_range_nth_key(cs->range, victim->lower, victim->inclusive,
								 victim->last, most / 2 - 1, CurrentMemoryContext);
	SPI_finish();
	if (split == NULL || !cb_catalog_slice_lock_victim(run, victim, &cursor))
		return false;
	/* The victim's checkpoint must still be short of the split. */
	if (cursor != NULL)
	{
		Oid			func;
		Oid			ioparam;

		getTypeInputInfo(run->job.cursor_type, &func, &ioparam);
		if (DatumGetInt32(FunctionCall2Coll(&cs->cmp, cs->collation,
											OidInputFunctionCall(func, cursor, ioparam, -1),
											OidInputFunctionCall(func, split, ioparam, -1))) >= 0)
			return false;
	}
	cb_catalog_slice_take(run, victim, split, slice);
	cb_chunk_retarget(cs);
	return true;
}

/*
 * Bound the run's key search by its span (see cb_range_set_span: first
 * NULL and last "": nothing matched; both NULL: no span).
 */
void
cb_chunk_set_span(CbChunkState *cs, const char *first, const char *last)
{
	cb_range_set_span(cs->range, first, last, cs->run_ctx);
}

/*
 * The job's count_sql: an estimate of the rows the run will process, for
 * percent and ETA.  Same parameters as the chunk SQL; runs as the owner
 * inside the caller's transaction.  Returns -1 if it gave no number.
 */
int64
cb_chunk_count_estimate(CbChunkState *cs)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int64		total = -1;
	char	   *text;
	int			rc;

	chunk_apply_settings(cs);
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = Int32GetDatum(cs->run->batch_size);
	values[1] = cs->cursor;
	nulls[1] = cs->cursor_null ? 'n' : ' ';
	values[2] = cs->run->params;
	rc = SPI_execute_with_args(cs->run->job.count_sql, 3, cs->argtypes, values,
							   nulls, true, 1);
	if (rc == SPI_OK_SELECT && SPI_processed == 1 &&
		(text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)) != NULL)
		total = (int64) strtod(text, NULL);
	SPI_finish();
	return total;
}
