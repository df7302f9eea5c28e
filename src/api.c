/*-------------------------------------------------------------------------
 *
 * api.c
 *	  SQL-callable functions: job definitions, runs, waiting, cancelling
 *	  and live progress.
 *
 * These functions run as the caller and check, as the caller, that it may
 * act for the job's owner (has_privs_of_role).  They write chunkbatch's
 * tables only through catalog.c, which switches to the extension owner
 * around its fixed statements.  run() wakes the launcher only after the
 * caller's transaction commits, so no worker can miss a run row.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/wait_event.h"

#include "chunkbatch.h"

PG_FUNCTION_INFO_V1(chunkbatch_create_job);
PG_FUNCTION_INFO_V1(chunkbatch_alter_job);
PG_FUNCTION_INFO_V1(chunkbatch_drop_job);
PG_FUNCTION_INFO_V1(chunkbatch_run);
PG_FUNCTION_INFO_V1(chunkbatch_run_and_wait);
PG_FUNCTION_INFO_V1(chunkbatch_wait);
PG_FUNCTION_INFO_V1(chunkbatch_cancel);
PG_FUNCTION_INFO_V1(chunkbatch_pause);
PG_FUNCTION_INFO_V1(chunkbatch_resume);
PG_FUNCTION_INFO_V1(chunkbatch_progress);
PG_FUNCTION_INFO_V1(chunkbatch_pause_all);
PG_FUNCTION_INFO_V1(chunkbatch_resume_all);
PG_FUNCTION_INFO_V1(chunkbatch_pause_all_state);
PG_FUNCTION_INFO_V1(chunkbatch_wake_after_update);

/* Set when this transaction queued a run: wake the launcher at commit. */
static bool wake_at_commit = false;

static void
cb_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				cb_request_wake(MyDatabaseId);
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

void
cb_api_init(void)
{
	RegisterXactCallback(cb_xact_callback, NULL);
}

/*
 * A standby never queues, changes or executes anything: its copy of the
 * tables is read-only, and a request made there must not turn into a run
 * after a promotion.  Reading (wait(), the views) works.
 */
void
cb_require_primary(const char *action)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s on a standby server", action),
				 errdetail("Runs can only be queued and controlled on the primary server; a standby never executes them."),
				 errhint("Connect to the primary server.")));
}

/* ----------------------------------------------------------------
 * Argument checks
 * ----------------------------------------------------------------
 */
static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	require_arg(fcinfo, argno, name);
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Job and group names: 1 to 63 bytes of letters, digits, '_', '-', '.'
 * and ':', starting with a letter, digit or '_' (non-ASCII letters are
 * allowed), so they read well in logs, application_name and pg_locks.
 */
static void
check_name(const char *what, const char *name)
{
	size_t		len = strlen(name);
	const unsigned char *p;

	if (len == 0 || len > CB_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 1 and %d bytes long", what, CB_NAME_MAXLEN)));
	for (p = (const unsigned char *) name; *p; p++)
	{
		if (IS_HIGHBIT_SET(*p) || isalnum(*p) || *p == '_' ||
			(p != (const unsigned char *) name &&
			 (*p == '-' || *p == '.' || *p == ':')))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid %s \"%s\"", what, name),
				 errdetail("Names consist of letters, digits, \"_\", \"-\", \".\" and \":\", and start with a letter, a digit or \"_\".")));
	}
}

static void
check_positive(const char *what, int32 value)
{
	if (value <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be greater than zero", what)));
}

static void
check_not_negative(const char *what, int32 value)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", what)));
}

/* A keyset cursor type needs a default btree ordering. */
static void
check_cursor_type(Oid typid)
{
	TypeCacheEntry *tce;

	if (get_typtype(typid) == TYPTYPE_PSEUDO)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cursor type cannot be the pseudo-type %s",
						format_type_be(typid))));
	tce = lookup_type_cache(typid, TYPECACHE_CMP_PROC);
	if (!OidIsValid(tce->cmp_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("cursor type %s has no default btree ordering",
						format_type_be(typid)),
				 errhint("Use a type with a default btree operator class, such as bigint, timestamptz or text.")));
}

/*
 * Can the role be the identity of a run worker in this database?  Workers
 * connect as the job's owner, which PostgreSQL 15 allows only for LOGIN
 * roles with CONNECT privilege.
 */
static void
check_owner_can_connect(Oid owner)
{
	HeapTuple	tup;
	bool		canlogin;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner role of this job no longer exists")));
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!canlogin)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("role \"%s\" cannot own chunkbatch jobs because it does not have the LOGIN attribute",
						GetUserNameFromId(owner, false)),
				 errdetail("Run workers connect to the database as the job's owner."),
				 errhint("Create the job as a role with LOGIN, or grant it with ALTER ROLE ... LOGIN.")));
	if (pg_database_aclcheck(MyDatabaseId, owner, ACL_CONNECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" has no CONNECT privilege on database \"%s\"",
						GetUserNameFromId(owner, false),
						get_database_name(MyDatabaseId)),
				 errdetail("Run workers connect to the database as the job's owner.")));
}

/* The caller must have the privileges of the job's owner. */
static void
check_job_access(const CbJob *job)
{
	if (!has_privs_of_role(GetUserId(), job->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for job \"%s\"", job->job_name),
				 errdetail("Only roles with the privileges of the job's owner can use it.")));
}

static void
find_job(const char *job_name, CbJob *job, CbJobLock lock)
{
	if (!catalog_find_job(job_name, job, lock))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" does not exist", job_name)));

	/*
	 * A job restored from a dump where its owner role did not exist has no
	 * owner until a role of that name exists; then it is linked to it.
	 */
	if (!OidIsValid(job->owner) && !RecoveryInProgress())
	{
		catalog_relink_owners();
		(void) catalog_find_job(job_name, job, lock);
	}
	if (!OidIsValid(job->owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" owning job \"%s\" does not exist",
						job->owner_name, job_name),
				 errdetail("The job was restored from a dump of a database where that role existed."),
				 errhint("Create the role (with LOGIN); the job is linked to it at its next use.")));
	check_job_access(job);
}

/* ----------------------------------------------------------------
 * Jobs
 * ----------------------------------------------------------------
 */

/* Argument positions shared by create_job and alter_job. */
#define ARG_NAME		0
#define ARG_SQL			1
#define ARG_BATCH		2
#define ARG_GROUP		3
#define ARG_CURSOR		4
#define ARG_SLEEP		5
#define ARG_SYNC		6
#define ARG_VALIDATE	7
#define ARG_BUSY		8
#define ARG_GROUP_WAIT	9
#define ARG_MAX_RETRIES 10
#define ARG_LOCK_TIMEOUT 11
#define ARG_STMT_TIMEOUT 12
#define ARG_MAX_RUNTIME 13
#define ARG_ON_ERROR	14
#define ARG_KEYS_SQL	15
#define ARG_MAX_DEAD	16
#define ARG_TARGET_MS	17
#define ARG_MIN_BATCH	18
#define ARG_MAX_BATCH	19
#define ARG_SLEEP_RATIO 20
#define ARG_MAX_LAG		21
#define ARG_MAX_LAG_BYTES 22
#define ARG_THROTTLE_SQL 23
#define ARG_COUNT_SQL	24

/* An optional SQL text argument: NULL stays unchanged, empty is refused. */
static char *
sql_arg(FunctionCallInfo fcinfo, int argno, const char *name, char *current)
{
	char	   *sql;

	if (PG_ARGISNULL(argno))
		return current;
	sql = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (sql[strspn(sql, " \t\r\n")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	return sql;
}

/*
 * A timeout setting: NULL or zero means none, like PostgreSQL's own
 * timeouts; a per-chunk timeout must fit in an int of milliseconds.
 */
static Interval *
timeout_arg(FunctionCallInfo fcinfo, int argno, const char *name, bool per_chunk)
{
	Interval   *iv = PG_GETARG_INTERVAL_P(argno);
	double		ms = cb_interval_ms(iv);

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name)));
	if (per_chunk && ms > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be less than %d milliseconds", name, INT_MAX)));
	return ms == 0 ? NULL : iv;
}

/* Apply the non-null settings of a create_job/alter_job call to *job. */
static void
job_apply_args(FunctionCallInfo fcinfo, CbJob *job)
{
	job->chunk_sql = sql_arg(fcinfo, ARG_SQL, "chunk_sql", job->chunk_sql);
	if (!PG_ARGISNULL(ARG_BATCH))
	{
		job->batch_size = PG_GETARG_INT32(ARG_BATCH);
		check_positive("batch_size", job->batch_size);
	}
	if (!PG_ARGISNULL(ARG_GROUP))
	{
		job->lock_group = text_to_cstring(PG_GETARG_TEXT_PP(ARG_GROUP));
		check_name("lock_group", job->lock_group);
	}
	if (!PG_ARGISNULL(ARG_CURSOR))
	{
		job->cursor_type = PG_GETARG_OID(ARG_CURSOR);
		check_cursor_type(job->cursor_type);
	}
	if (!PG_ARGISNULL(ARG_SLEEP))
	{
		job->sleep_ms = PG_GETARG_INT32(ARG_SLEEP);
		check_not_negative("sleep_ms", job->sleep_ms);
	}
	if (!PG_ARGISNULL(ARG_SYNC))
		job->synchronous_commit = PG_GETARG_BOOL(ARG_SYNC);
	if (!PG_ARGISNULL(ARG_BUSY))
	{
		char	   *busy = text_to_cstring(PG_GETARG_TEXT_PP(ARG_BUSY));

		if (strcmp(busy, "wait") != 0 && strcmp(busy, "skip") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid on_group_busy \"%s\"", busy),
					 errhint("Use 'wait' or 'skip'.")));
		job->skip_if_busy = (strcmp(busy, "skip") == 0);
	}
	if (!PG_ARGISNULL(ARG_GROUP_WAIT))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(ARG_GROUP_WAIT);

		if (cb_interval_ms(iv) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("group_wait_timeout must be greater than zero")));
		job->group_wait_timeout = iv;
	}
	if (!PG_ARGISNULL(ARG_MAX_RETRIES))
	{
		job->max_retries = PG_GETARG_INT32(ARG_MAX_RETRIES);
		check_not_negative("max_retries", job->max_retries);
	}
	if (!PG_ARGISNULL(ARG_LOCK_TIMEOUT))
		job->lock_timeout = timeout_arg(fcinfo, ARG_LOCK_TIMEOUT, "lock_timeout", true);
	if (!PG_ARGISNULL(ARG_STMT_TIMEOUT))
		job->statement_timeout = timeout_arg(fcinfo, ARG_STMT_TIMEOUT,
											 "statement_timeout", true);
	if (!PG_ARGISNULL(ARG_MAX_RUNTIME))
		job->max_runtime = timeout_arg(fcinfo, ARG_MAX_RUNTIME, "max_runtime", false);
	if (!PG_ARGISNULL(ARG_ON_ERROR))
	{
		char	   *on_error = text_to_cstring(PG_GETARG_TEXT_PP(ARG_ON_ERROR));

		if (strcmp(on_error, "fail") != 0 && strcmp(on_error, "isolate") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid on_error \"%s\"", on_error),
					 errhint("Use 'fail' or 'isolate'.")));
		job->isolate = (strcmp(on_error, "isolate") == 0);
	}
	job->keys_sql = sql_arg(fcinfo, ARG_KEYS_SQL, "keys_sql", job->keys_sql);
	if (!PG_ARGISNULL(ARG_MAX_DEAD))
	{
		job->max_dead_letters = PG_GETARG_INT32(ARG_MAX_DEAD);
		check_not_negative("max_dead_letters", job->max_dead_letters);
	}
	if (!PG_ARGISNULL(ARG_TARGET_MS))
	{
		job->target_chunk_ms = PG_GETARG_INT32(ARG_TARGET_MS);
		check_not_negative("target_chunk_ms", job->target_chunk_ms);
	}
	if (!PG_ARGISNULL(ARG_MIN_BATCH))
	{
		job->min_batch_size = PG_GETARG_INT32(ARG_MIN_BATCH);
		check_positive("min_batch_size", job->min_batch_size);
	}
	if (!PG_ARGISNULL(ARG_MAX_BATCH))
	{
		job->max_batch_size = PG_GETARG_INT32(ARG_MAX_BATCH);
		check_positive("max_batch_size", job->max_batch_size);
	}
	if (job->min_batch_size > job->max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_batch_size %d is greater than max_batch_size %d",
						job->min_batch_size, job->max_batch_size)));
	if (!PG_ARGISNULL(ARG_SLEEP_RATIO))
	{
		job->sleep_ratio = PG_GETARG_FLOAT8(ARG_SLEEP_RATIO);
		if (!(job->sleep_ratio >= 0 && job->sleep_ratio <= 1000))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sleep_ratio must be between 0 and 1000")));
	}
	if (!PG_ARGISNULL(ARG_MAX_LAG))
		job->max_replica_lag = timeout_arg(fcinfo, ARG_MAX_LAG, "max_replica_lag", false);
	if (!PG_ARGISNULL(ARG_MAX_LAG_BYTES))
	{
		job->max_replica_lag_bytes = PG_GETARG_INT64(ARG_MAX_LAG_BYTES);
		if (job->max_replica_lag_bytes < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_replica_lag_bytes must not be negative")));
	}
	job->throttle_sql = sql_arg(fcinfo, ARG_THROTTLE_SQL, "throttle_sql", job->throttle_sql);
	job->count_sql = sql_arg(fcinfo, ARG_COUNT_SQL, "count_sql", job->count_sql);
	if (job->isolate && (!OidIsValid(job->cursor_type) || job->keys_sql == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_error => 'isolate' needs a keyset job with keys_sql"),
				 errdetail("Poison rows are isolated by splitting a failed chunk by its keys, which keys_sql lists in key order."),
				 errhint("Set cursor_type and keys_sql, or use on_error => 'fail'.")));
}

/* throttle_sql, count_sql and keys_sql, as the owner. */
static void
validate_selects(const CbJob *job)
{
	if (job->throttle_sql != NULL)
		chunk_validate_select(job->job_name, "throttle_sql", job->throttle_sql,
							  job->cursor_type, BOOLOID, job->owner, job->search_path);
	if (job->count_sql != NULL)
		chunk_validate_select(job->job_name, "count_sql", job->count_sql,
							  job->cursor_type, InvalidOid, job->owner, job->search_path);
	if (job->keys_sql != NULL && OidIsValid(job->cursor_type))
		chunk_validate_select(job->job_name, "keys_sql", job->keys_sql,
							  job->cursor_type, job->cursor_type, job->owner,
							  job->search_path);
}

Datum
chunkbatch_create_job(PG_FUNCTION_ARGS)
{
	CbJob		job;
	CbJob		existing;
	bool		validate;

	cb_require_primary("create a job");
	memset(&job, 0, sizeof(job));
	job.job_name = text_arg(fcinfo, ARG_NAME, "job_name");
	check_name("job name", job.job_name);
	require_arg(fcinfo, ARG_SQL, "chunk_sql");
	require_arg(fcinfo, ARG_BATCH, "batch_size");
	require_arg(fcinfo, ARG_SLEEP, "sleep_ms");
	require_arg(fcinfo, ARG_SYNC, "synchronous_commit");
	require_arg(fcinfo, ARG_VALIDATE, "validate");
	require_arg(fcinfo, ARG_BUSY, "on_group_busy");
	require_arg(fcinfo, ARG_MAX_RETRIES, "max_retries");
	require_arg(fcinfo, ARG_ON_ERROR, "on_error");
	require_arg(fcinfo, ARG_MIN_BATCH, "min_batch_size");
	require_arg(fcinfo, ARG_MAX_BATCH, "max_batch_size");
	require_arg(fcinfo, ARG_SLEEP_RATIO, "sleep_ratio");
	validate = PG_GETARG_BOOL(ARG_VALIDATE);

	job.owner = GetUserId();
	job.max_dead_letters = -1;
	job.min_batch_size = 1;
	job.max_batch_size = 1000000;
	job.lock_group = job.job_name;
	job.search_path = pstrdup(GetConfigOption("search_path", false, false));
	job_apply_args(fcinfo, &job);

	check_owner_can_connect(job.owner);
	if (catalog_find_job(job.job_name, &existing, CB_JOB_FOR_UPDATE))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("job \"%s\" already exists", job.job_name)));
	if (validate)
	{
		chunk_validate_sql(job.job_name, job.chunk_sql, job.cursor_type, job.owner,
						   job.search_path);
		validate_selects(&job);
	}

	PG_RETURN_INT64(catalog_insert_job(&job));
}

Datum
chunkbatch_alter_job(PG_FUNCTION_ARGS)
{
	CbJob		job;
	char	   *name = text_arg(fcinfo, ARG_NAME, "job_name");
	bool		validate;
	Oid			old_cursor_type;

	cb_require_primary("alter a job");
	require_arg(fcinfo, ARG_VALIDATE, "validate");
	validate = PG_GETARG_BOOL(ARG_VALIDATE);
	find_job(name, &job, CB_JOB_FOR_UPDATE);
	old_cursor_type = job.cursor_type;
	job_apply_args(fcinfo, &job);
	if (job.cursor_type != old_cursor_type &&
		catalog_count_active_runs(job.job_id) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot change the cursor type of job \"%s\" while it has active runs",
						name),
				 errdetail("The checkpoints of those runs hold keys of the old type."),
				 errhint("Cancel the runs or wait for them to finish.")));
	if (validate && (!PG_ARGISNULL(ARG_SQL) || !PG_ARGISNULL(ARG_CURSOR)))
		chunk_validate_sql(job.job_name, job.chunk_sql, job.cursor_type, job.owner,
						   job.search_path);
	if (validate)
		validate_selects(&job);
	catalog_update_job(&job);
	PG_RETURN_VOID();
}

Datum
chunkbatch_drop_job(PG_FUNCTION_ARGS)
{
	CbJob		job;
	char	   *name = text_arg(fcinfo, 0, "job_name");
	int64		active;

	cb_require_primary("drop a job");
	find_job(name, &job, CB_JOB_FOR_UPDATE);
	active = catalog_count_active_runs(job.job_id);
	if (active > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("job \"%s\" has %lld active runs", name, (long long) active),
				 errhint("Cancel them with chunkbatch.cancel() or wait for them to finish.")));
	catalog_delete_job(job.job_id);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * Runs
 * ----------------------------------------------------------------
 */
static bool
state_is_final(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
		strcmp(state, "cancelled") == 0 || strcmp(state, "skipped") == 0;
}

/* Final, or resting until somebody resumes it: wait() returns. */
static bool
state_is_settled(const char *state)
{
	return state_is_final(state) || strcmp(state, "paused") == 0 ||
		strcmp(state, "stopped") == 0;
}

/* Look a run up and check that the caller may act on it. */
static void
find_run(int64 run_id, bool for_update, CbRunRef *ref, char **state,
		 char **sqlstate, char **error)
{
	if (!catalog_get_run(run_id, for_update, ref, state, sqlstate, error))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run %lld does not exist", (long long) run_id)));
	/* A restored run whose owner role now exists: link it (see find_job). */
	if (!OidIsValid(ref->owner) && !RecoveryInProgress())
	{
		catalog_relink_owners();
		(void) catalog_get_run(run_id, for_update, ref, state, sqlstate, error);
	}
	if (!has_privs_of_role(GetUserId(), ref->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for run %lld", (long long) run_id),
				 errdetail("Only roles with the privileges of the job's owner can use its runs.")));
}

/* Waiting needs a new snapshot for every look at the run. */
static void
check_can_wait(void)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot wait for a run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("The transaction would never see the run's progress."),
				 errhint("Wait in a READ COMMITTED transaction.")));
}

/*
 * Wait until the run reaches a final state or the timeout (ms, -1 for
 * none) passes; returns the last state seen.  Each poll reads the run
 * with a new snapshot.
 */
static char *
wait_for_run(int64 run_id, long timeout_ms, char **sqlstate, char **error)
{
	TimestampTz start = GetCurrentTimestamp();
	CbRunRef	ref;
	char	   *state;
	MemoryContext poll_ctx;

	check_can_wait();
	find_run(run_id, false, &ref, &state, sqlstate, error);
	if (ref.queued_here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld was queued by the current transaction", (long long) run_id),
				 errdetail("A run starts only after the transaction that queued it commits."),
				 errhint("Commit first, or use chunkbatch.run(..., wait => true).")));

	poll_ctx = AllocSetContextCreate(CurrentMemoryContext, "chunkbatch wait",
									 ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		MemoryContext old;
		bool		finished;

		MemoryContextReset(poll_ctx);
		old = MemoryContextSwitchTo(poll_ctx);
		find_run(run_id, false, &ref, &state, sqlstate, error);
		MemoryContextSwitchTo(old);
		finished = state_is_settled(state) ||
			(timeout_ms >= 0 &&
			 TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms));
		if (finished)
		{
			state = pstrdup(state);
			*sqlstate = *sqlstate ? pstrdup(*sqlstate) : NULL;
			*error = *error ? pstrdup(*error) : NULL;
			MemoryContextDelete(poll_ctx);
			return state;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The end of a run its caller waited for: an error carrying the run's
 * SQLSTATE if it failed, a NOTICE if it was skipped, an error if it ended
 * otherwise than by success.
 */
static void
report_run_outcome(int64 run_id, const char *name, const char *state,
				   const char *sqlstate, const char *error)
{
	if (strcmp(state, "failed") == 0)
		ereport(ERROR,
				(errcode(sqlstate && strlen(sqlstate) == 5 ?
						 MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
									   sqlstate[3], sqlstate[4]) :
						 ERRCODE_INTERNAL_ERROR),
				 errmsg("run %lld of job \"%s\" failed: %s",
						(long long) run_id, name, error ? error : "unknown error"),
				 errdetail("See chunkbatch.runs for the run's checkpoint and error.")));
	if (strcmp(state, "skipped") == 0)
		ereport(NOTICE,
				(errmsg("run %lld of job \"%s\" was skipped because its group was busy",
						(long long) run_id, name)));
	else if (strcmp(state, "succeeded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("run %lld of job \"%s\" ended as %s",
						(long long) run_id, name, state)));
}

/*
 * How a run was started: the caller's label, else "pg_cron" for a call
 * from a pg_cron job, else "sql".
 */
static char *
run_trigger(FunctionCallInfo fcinfo, int argno)
{
	const char *appname;

	if (!PG_ARGISNULL(argno))
	{
		char	   *trigger = text_to_cstring(PG_GETARG_TEXT_PP(argno));
		int			len = strlen(trigger);

		if (len == 0 || len >= NAMEDATALEN * 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("trigger must be between 1 and %d bytes long",
							NAMEDATALEN * 2 - 1)));
		return trigger;
	}
	appname = GetConfigOption("application_name", true, false);
	if (appname != NULL && strcmp(appname, "pg_cron") == 0)
		return "pg_cron";
	return "sql";
}

/*
 * Hand a run to the database's scheduler, which commits its row at once
 * (this function cannot commit the caller's transaction), and return the
 * new run's id.
 */
static int64
submit_run_request(const CbJob *job, Jsonb *params, const char *trigger)
{
	CbRunRequest *req = NULL;
	int64		run_id = 0;
	char		error[256];
	bool		failed = false;
	int			i;

	if (VARSIZE(params) > CB_REQUEST_PARAMS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("params of a run with wait => true must not be larger than %d bytes",
						CB_REQUEST_PARAMS_MAX),
				 errhint("Queue the run with wait => false and call chunkbatch.wait().")));

	while (req == NULL)
	{
		LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < CB_MAX_REQUESTS; i++)
		{
			if (cb_shared->requests[i].state != CB_REQ_FREE)
				continue;
			req = &cb_shared->requests[i];
			req->state = CB_REQ_PENDING;
			req->abandoned = false;
			req->dboid = MyDatabaseId;
			req->job_id = job->job_id;
			req->queued_by = GetUserId();
			strlcpy(req->trigger, trigger, sizeof(req->trigger));
			req->pid = MyProcPid;
			req->latch = MyLatch;
			req->run_id = 0;
			req->error[0] = '\0';
			req->params_len = VARSIZE(params);
			memcpy(req->params, params, VARSIZE(params));
			break;
		}
		LWLockRelease(cb_shared->lock);
		if (req == NULL)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	cb_request_wake(MyDatabaseId);

	PG_TRY();
	{
		for (;;)
		{
			CbRequestState state;

			LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
			state = req->state;
			if (state == CB_REQ_DONE || state == CB_REQ_FAILED)
			{
				run_id = req->run_id;
				failed = (state == CB_REQ_FAILED);
				strlcpy(error, req->error, sizeof(error));
				req->state = CB_REQ_FREE;
			}
			LWLockRelease(cb_shared->lock);
			if (state == CB_REQ_DONE || state == CB_REQ_FAILED)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* Give the request up; a scheduler holding it frees it. */
		LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
		if (req->state == CB_REQ_INSERTING)
			req->abandoned = true;
		else
			req->state = CB_REQ_FREE;
		LWLockRelease(cb_shared->lock);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (failed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not queue a run of job \"%s\": %s", job->job_name, error)));
	return run_id;
}

Datum
chunkbatch_run(PG_FUNCTION_ARGS)
{
	CbJob		job;
	char	   *name = text_arg(fcinfo, 0, "job_name");
	Jsonb	   *params;
	bool		wait;
	int64		run_id;
	char	   *state;
	char	   *sqlstate;
	char	   *error;
	char	   *trigger;

	cb_require_primary("queue a run");
	require_arg(fcinfo, 1, "params");
	require_arg(fcinfo, 2, "wait");
	params = PG_GETARG_JSONB_P(1);
	wait = PG_GETARG_BOOL(2);
	trigger = run_trigger(fcinfo, 3);
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object")));
	cb_require_shmem();

	if (!wait)
	{
		find_job(name, &job, CB_JOB_KEY_SHARE);
		check_owner_can_connect(job.owner);
		run_id = catalog_insert_run(job.job_id, JsonbPGetDatum(params),
									GetUserId(), trigger);
		wake_at_commit = true;
		PG_RETURN_INT64(run_id);
	}

	check_can_wait();
	find_job(name, &job, CB_JOB_NO_LOCK);
	check_owner_can_connect(job.owner);
	run_id = submit_run_request(&job, params, trigger);
	state = wait_for_run(run_id, -1, &sqlstate, &error);
	report_run_outcome(run_id, name, state, sqlstate, error);
	PG_RETURN_INT64(run_id);
}

/*
 * CALL chunkbatch.run_and_wait(job_name, params, trigger, run_id): queue a
 * run, commit, and wait for it like run(..., wait => true), but committing
 * between its looks at the run, so that the caller holds no snapshot (and
 * does not hold back the cleanup of dead rows) while the run executes.
 */
Datum
chunkbatch_run_and_wait(PG_FUNCTION_ARGS)
{
	CallContext *call = (CallContext *) fcinfo->context;
	CbJob		job;
	char	   *name = text_arg(fcinfo, 0, "job_name");
	Jsonb	   *params;
	char	   *trigger;
	int64		run_id;
	CbRunRef	ref;
	char	   *state;
	char	   *sqlstate;
	char	   *error;
	MemoryContext poll_ctx;
	TupleDesc	tupdesc;
	Datum		result;
	bool		isnull = false;

	if (call == NULL || !IsA(call, CallContext) || call->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("chunkbatch.run_and_wait() must be called with CALL outside a transaction block"),
				 errhint("Inside a transaction, use chunkbatch.run(..., wait => true).")));
	cb_require_primary("queue a run");
	require_arg(fcinfo, 1, "params");
	params = PG_GETARG_JSONB_P(1);
	trigger = run_trigger(fcinfo, 2);
	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object")));
	cb_require_shmem();
	find_job(name, &job, CB_JOB_KEY_SHARE);
	check_owner_can_connect(job.owner);
	run_id = catalog_insert_run(job.job_id, JsonbPGetDatum(params),
								GetUserId(), trigger);
	wake_at_commit = true;

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");
	poll_ctx = AllocSetContextCreate(CurrentMemoryContext, "chunkbatch run_and_wait",
									 ALLOCSET_SMALL_SIZES);
	for (;;)
	{
		MemoryContext old;

		SPI_commit();			/* the run queued, or nothing held while waiting */
		MemoryContextReset(poll_ctx);
		old = MemoryContextSwitchTo(poll_ctx);
		find_run(run_id, false, &ref, &state, &sqlstate, &error);
		MemoryContextSwitchTo(old);
		if (state_is_settled(state))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_finish();
	report_run_outcome(run_id, name, state, sqlstate, error);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	result = Int64GetDatum(run_id);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  &result, &isnull)));
}

Datum
chunkbatch_wait(PG_FUNCTION_ARGS)
{
	int64		run_id;
	long		timeout_ms = -1;
	char	   *sqlstate;
	char	   *error;

	require_arg(fcinfo, 0, "run_id");
	run_id = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
	{
		double		ms = cb_interval_ms(PG_GETARG_INTERVAL_P(1));

		if (ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
		timeout_ms = (long) Min(ms, (double) LONG_MAX / 2);
	}
	PG_RETURN_TEXT_P(cstring_to_text(wait_for_run(run_id, timeout_ms,
												  &sqlstate, &error)));
}

/*
 * Flag the worker that executes the run, if any, to cancel or to pause at
 * its next chunk boundary, and wake it; a cancel also cancels the chunk in
 * progress.  Returns false if no worker has the run.
 */
static bool
signal_run_worker(int64 run_id, bool cancel)
{
	bool		found = false;
	int			i;

	if (cb_shared == NULL)
		return false;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		if (slot->state == CB_SLOT_FREE || slot->dboid != MyDatabaseId ||
			slot->run_id != run_id)
			continue;
		SpinLockAcquire(&slot->mutex);
		if (cancel)
			slot->cancel_requested = true;
		else
			slot->pause_requested = true;
		SpinLockRelease(&slot->mutex);
		if (slot->latch != NULL)
			SetLatch(slot->latch);
		if (cancel && slot->pid != 0 && slot->phase == CB_PHASE_CHUNK)
			(void) kill(slot->pid, SIGINT);
		found = true;
	}
	LWLockRelease(cb_shared->lock);
	return found;
}

static int64
run_id_arg(FunctionCallInfo fcinfo)
{
	require_arg(fcinfo, 0, "run_id");
	return PG_GETARG_INT64(0);
}

/*
 * Cancel a run.  The run's row is locked first, so no worker can claim it
 * meanwhile; a worker that already has it (its slot names the run) is
 * flagged, woken, and its running chunk is cancelled; otherwise the run
 * is marked cancelled directly.  Paused and stopped runs can be cancelled.
 */
Datum
chunkbatch_cancel(PG_FUNCTION_ARGS)
{
	int64		run_id = run_id_arg(fcinfo);
	CbRunRef	ref;
	char	   *state;
	char	   *sqlstate;
	char	   *error;

	cb_require_primary("cancel a run");
	(void) catalog_pause_copies();
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (state_is_final(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld has already finished", (long long) run_id),
				 errdetail("Its state is \"%s\".", state)));
	if (!signal_run_worker(run_id, true))
		(void) catalog_cancel_unowned(run_id);
	PG_RETURN_BOOL(true);
}

/*
 * Pause a run: a worker finishes its current chunk, records 'paused' and
 * exits, freeing its slot and its group; a run without a worker is marked
 * paused at once.  resume() continues it from its checkpoint.
 */
Datum
chunkbatch_pause(PG_FUNCTION_ARGS)
{
	int64		run_id = run_id_arg(fcinfo);
	CbRunRef	ref;
	char	   *state;
	char	   *sqlstate;
	char	   *error;

	cb_require_primary("pause a run");
	(void) catalog_pause_copies();
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (state_is_settled(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld is not active", (long long) run_id),
				 errdetail("Its state is \"%s\".", state)));
	if (!signal_run_worker(run_id, false) && !catalog_pause_unowned(run_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld cannot be paused now", (long long) run_id),
				 errdetail("Its state is \"%s\" and no worker executes it.", state),
				 errhint("Try again in a moment.")));
	PG_RETURN_BOOL(true);
}

/*
 * Resume a paused, failed or stopped run from its checkpoint: it is
 * queued again and starts in its group's turn after this transaction
 * commits.
 */
Datum
chunkbatch_resume(PG_FUNCTION_ARGS)
{
	int64		run_id = run_id_arg(fcinfo);
	CbRunRef	ref;
	char	   *state;
	char	   *sqlstate;
	char	   *error;

	cb_require_primary("resume a run");
	cb_require_shmem();
	(void) catalog_pause_copies();
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (!OidIsValid(ref.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner role of run %lld does not exist", (long long) run_id),
				 errdetail("The run was restored from a dump of a database where its owner role existed."),
				 errhint("Create the role named in chunkbatch.runs.owner (with LOGIN), then resume the run.")));
	if (strcmp(state, "paused") != 0 && strcmp(state, "failed") != 0 &&
		strcmp(state, "stopped") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld cannot be resumed", (long long) run_id),
				 errdetail("Its state is \"%s\"; only paused, failed and stopped runs can be resumed.",
						   state)));
	if (!catalog_resume_run(run_id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the job of run %lld no longer exists", (long long) run_id)));
	wake_at_commit = true;
	PG_RETURN_BOOL(true);
}

/* ----------------------------------------------------------------
 * Live progress of this database's run workers
 * ----------------------------------------------------------------
 */
static const char *
phase_name(CbPhase phase)
{
	switch (phase)
	{
		case CB_PHASE_STARTING:
			return "starting";
		case CB_PHASE_WAITING:
			return "waiting";
		case CB_PHASE_CHUNK:
			return "chunk";
		case CB_PHASE_SLEEPING:
			return "sleeping";
		case CB_PHASE_FINISHING:
			return "finishing";
	}
	return "unknown";
}

/*
 * Rows per second over the chunks of the last ten seconds (at least the
 * last two), not counting time spent throttled; -1 if unknown.
 */
static double
slot_recent_rate(const CbSlot *s)
{
	int			n = Min(s->nsamples, CB_RATE_SAMPLES);
	int			newest = (s->nsamples - 1) % CB_RATE_SAMPLES;
	int			oldest = newest;
	int			k;
	double		secs;

	if (n < 2)
		return s->rows_this_worker > 0 && s->worker_started_at != 0 ?
			s->rows_this_worker /
			Max((GetCurrentTimestamp() - s->worker_started_at) / 1e6, 0.001) : -1;
	for (k = 1; k < n; k++)
	{
		int			i = (newest - k + CB_RATE_SAMPLES) % CB_RATE_SAMPLES;

		if (k > 1 && s->sample_at[newest] - s->sample_at[i] > 10 * USECS_PER_SEC)
			break;
		oldest = i;
	}
	secs = ((s->sample_at[newest] - s->sample_at[oldest]) -
			(s->sample_throttled_us[newest] - s->sample_throttled_us[oldest])) / 1e6;
	if (secs <= 0)
		return -1;
	return (s->sample_rows[newest] - s->sample_rows[oldest]) / secs;
}

Datum
chunkbatch_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CbSlot	   *copy;
	int			n;
	int			i;
	bool		see_all;

	InitMaterializedSRF(fcinfo, 0);
	if (cb_shared == NULL)
		PG_RETURN_VOID();

	n = cb_shared->nslots;
	copy = palloc(sizeof(CbSlot) * n);
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < n; i++)
	{
		SpinLockAcquire(&cb_shared->slots[i].mutex);
		memcpy(&copy[i], &cb_shared->slots[i], sizeof(CbSlot));
		SpinLockRelease(&cb_shared->slots[i].mutex);
	}
	LWLockRelease(cb_shared->lock);

	see_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	for (i = 0; i < n; i++)
	{
		CbSlot	   *s = &copy[i];
		Datum		values[11];
		bool		nulls[11];
		double		rate;

		if (s->state == CB_SLOT_FREE || s->state == CB_SLOT_START_FAILED ||
			s->dboid != MyDatabaseId)
			continue;
		if (!see_all && !has_privs_of_role(GetUserId(), s->owner))
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum(s->run_id);
		values[1] = Int32GetDatum(s->pid);
		nulls[1] = (s->pid == 0);
		values[2] = CStringGetTextDatum(phase_name(s->phase));
		values[3] = TimestampTzGetDatum(s->worker_started_at);
		nulls[3] = (s->worker_started_at == 0);
		values[4] = Int64GetDatum(s->rows_done);
		values[5] = Int64GetDatum(s->chunks_done);
		values[6] = Int64GetDatum(s->rows_this_worker);
		values[7] = Int32GetDatum(s->batch_size);
		values[8] = TimestampTzGetDatum(s->chunk_started_at);
		nulls[8] = (s->chunk_started_at == 0);
		rate = slot_recent_rate(s);
		values[9] = Float8GetDatum(rate);
		nulls[9] = (rate < 0);
		values[10] = TimestampTzGetDatum(s->throttled_since);
		nulls[10] = (s->throttled_since == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * The emergency stop, cluster-wide
 * ----------------------------------------------------------------
 */

/*
 * pause_all(reason): every running run holds at its next chunk boundary
 * and no queued run starts, in every database, until resume_all().  It
 * takes effect at once (not at commit) and survives restarts.  EXECUTE is
 * revoked from PUBLIC: superusers, or roles a superuser granted it to.
 */
Datum
chunkbatch_pause_all(PG_FUNCTION_ARGS)
{
	char	   *reason = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		changed;
	int			i;

	cb_require_primary("pause all runs");
	if (reason != NULL && strlen(reason) >= sizeof(cb_shared->pause_reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason must be shorter than %d bytes",
						(int) sizeof(cb_shared->pause_reason))));
	changed = cb_set_all_paused(true, GetUserNameFromId(GetUserId(), false), reason);
	if (changed)
	{
		/* Wake every worker, so that a sleeping one holds at once. */
		LWLockAcquire(cb_shared->lock, LW_SHARED);
		for (i = 0; i < cb_shared->nslots; i++)
			if (cb_shared->slots[i].state != CB_SLOT_FREE &&
				cb_shared->slots[i].latch != NULL)
				SetLatch(cb_shared->slots[i].latch);
		LWLockRelease(cb_shared->lock);
		ereport(LOG,
				(errmsg("chunkbatch: all runs paused by role \"%s\"%s%s",
						GetUserNameFromId(GetUserId(), false),
						reason ? ": " : "", reason ? reason : "")));
	}
	PG_RETURN_BOOL(changed);
}

/* resume_all(): the end of the emergency stop. */
Datum
chunkbatch_resume_all(PG_FUNCTION_ARGS)
{
	bool		changed;

	cb_require_primary("resume all runs");
	changed = cb_set_all_paused(false, "", NULL);
	if (changed)
	{
		/* Held workers see it within their next check; queued runs need a scheduler. */
		cb_request_probe();
		cb_wake_schedulers();
		ereport(LOG,
				(errmsg("chunkbatch: all runs resumed by role \"%s\"",
						GetUserNameFromId(GetUserId(), false))));
	}
	PG_RETURN_BOOL(changed);
}

/* pause_all_state(): is the emergency stop on, since when, by whom, why. */
Datum
chunkbatch_pause_all_state(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(false);
	if (cb_shared != NULL)
	{
		LWLockAcquire(cb_shared->lock, LW_SHARED);
		if (cb_shared->all_paused)
		{
			values[0] = BoolGetDatum(true);
			values[1] = TimestampTzGetDatum(cb_shared->paused_at);
			values[2] = CStringGetTextDatum(cb_shared->paused_by);
			values[3] = CStringGetTextDatum(cb_shared->pause_reason);
			nulls[1] = nulls[2] = false;
			nulls[3] = (cb_shared->pause_reason[0] == '\0');
		}
		LWLockRelease(cb_shared->lock);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * Called once by the 1.0 to 1.1 update script: when the update commits,
 * this database's scheduler starts, and the runs that waited for the
 * update go on.
 */
Datum
chunkbatch_wake_after_update(PG_FUNCTION_ARGS)
{
	if (!creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("chunkbatch_wake_after_update() can only be called by the extension's update script")));
	wake_at_commit = true;
	PG_RETURN_VOID();
}
