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
#include "executor/spi.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
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
PG_FUNCTION_INFO_V1(chunkbatch_run_context);
PG_FUNCTION_INFO_V1(chunkbatch_dry_run);

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

/*
 * May a run of the job be queued?  Its owner must be able to connect, and
 * must not have chunkbatch.max_queued_runs_per_role (its own value, if a
 * DBA set one with ALTER ROLE) queued or active runs in this database
 * already: one role cannot flood the queue that every role's runs go
 * through.  The count is taken once per transaction and owner and then
 * kept up to date here, so that queueing many runs in one statement costs
 * one count, not one per run.
 */
static Oid	queue_count_owner = InvalidOid;
static LocalTransactionId queue_count_lxid = InvalidLocalTransactionId;
static int	queue_limit;
static int64 queue_count;

/*
 * A job whose cursor type was dropped with its schema or extension (a
 * direct DROP TYPE is refused while a job uses it) needs a new one.
 */
static void
check_cursor_type_exists(const CbJob *job)
{
	if (OidIsValid(job->cursor_type) &&
		!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(job->cursor_type)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the cursor type of job \"%s\" no longer exists", job->job_name),
				 errhint("Give the job a cursor type with chunkbatch.alter_job(job_name, cursor_type => ...), or drop it.")));
}

static void
check_can_queue(const CbJob *job)
{
	check_owner_can_connect(job->owner);
	check_cursor_type_exists(job);
	if (queue_count_owner != job->owner || queue_count_lxid != MyProc->lxid)
	{
		queue_limit = cb_catalog_role_limit(job->owner, "chunkbatch.max_queued_runs_per_role",
											cb_max_queued_per_role);
		queue_count = queue_limit > 0 ?
			cb_catalog_count_owner_active_runs(job->owner, queue_limit) : 0;
		queue_count_owner = job->owner;
		queue_count_lxid = MyProc->lxid;
	}
	if (queue_limit > 0 && queue_count >= queue_limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" already has %lld queued or active runs in this database",
						job->owner_name, (long long) queue_count),
				 errdetail("chunkbatch.max_queued_runs_per_role is %d for this role.", queue_limit),
				 errhint("Wait for some of them to finish, or ask the administrator to raise chunkbatch.max_queued_runs_per_role.")));
	queue_count++;
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
	if (!cb_catalog_find_job(job_name, job, lock))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" does not exist", job_name)));

	/*
	 * A job restored from a dump where its owner role did not exist has no
	 * owner until a role of that name exists; then it is linked to it.
	 */
	if (!OidIsValid(job->owner) && !RecoveryInProgress())
	{
		cb_catalog_relink_owners();
		(void) cb_catalog_find_job(job_name, job, lock);
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

/*
 * A lock group belongs to the owner of its oldest job: a job may join it
 * only if its owner has the privileges of that role (is a member of it),
 * so that no role can stall another role's jobs by squatting their group.
 * Jobs joining the same group name wait for each other's transactions,
 * so that two roles cannot both found it.
 */
static void
check_group_owner(const CbJob *job)
{
	char	   *first_job = NULL;
	Oid			owner;

	cb_grouplock_lock_name(job->lock_group);
	owner = cb_catalog_group_owner(job->lock_group, &first_job);

	if (OidIsValid(owner) && !has_privs_of_role(job->owner, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("lock group \"%s\" belongs to role \"%s\"", job->lock_group,
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "?"),
				 errdetail("Its oldest job, \"%s\", is owned by that role; only the jobs of its members may join the group.",
						   first_job),
				 errhint("Choose another lock_group.")));
}

/*
 * Argument positions of create_job and alter_job that this file uses; the
 * settings' positions are in settings.c.
 */
#define ARG_NAME		0
#define ARG_SQL			1
#define ARG_CURSOR_TYPE	4
#define ARG_VALIDATE	7
#define ARG_COUNT_SQL	24
#define ARG_RANGE_TABLE	25
#define ARG_RANGE_KEY	26
#define ARG_RANGE_FILTER 27
#define ARG_RESET		35		/* alter_job only */

/*
 * A range-mode job's table and key, resolved as the owner: the cursor
 * type is the key's type, so a cursor_type given with them must be it.
 */
static void
resolve_range(FunctionCallInfo fcinfo, CbJob *job, bool validate)
{
	cb_range_resolve(job, validate);
	if (!PG_ARGISNULL(ARG_CURSOR_TYPE) &&
		PG_GETARG_OID(ARG_CURSOR_TYPE) != job->cursor_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cursor_type %s of job \"%s\" is not the type of its range_key, %s",
						format_type_be(PG_GETARG_OID(ARG_CURSOR_TYPE)),
						job->job_name, format_type_be(job->cursor_type)),
				 errhint("Leave cursor_type out: a range-mode job takes its key's type.")));
}

/* Does this alter_job call change (or reset) the job's range? */
static bool
range_changed(FunctionCallInfo fcinfo, const CbJob *old, const CbJob *job)
{
	return !PG_ARGISNULL(ARG_RANGE_TABLE) || !PG_ARGISNULL(ARG_RANGE_KEY) ||
		!PG_ARGISNULL(ARG_RANGE_FILTER) ||
		(old->range_table == NULL) != (job->range_table == NULL) ||
		(old->range_key == NULL) != (job->range_key == NULL) ||
		(job->range_table != NULL && job->cursor_type != old->cursor_type) ||
		(old->range_filter == NULL) != (job->range_filter == NULL) ||
		(job->range_table != NULL && !PG_ARGISNULL(ARG_CURSOR_TYPE));
}

static bool
str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* throttle_sql, count_sql and keys_sql, as the owner. */
static void
validate_selects(const CbJob *job)
{
	if (job->throttle_sql != NULL)
		cb_chunk_validate_select(job->job_name, "throttle_sql", job->throttle_sql,
							  job->cursor_type, BOOLOID, job->owner, job->search_path);
	if (job->count_sql != NULL)
		cb_chunk_validate_select(job->job_name, "count_sql", job->count_sql,
							  job->cursor_type, InvalidOid, job->owner, job->search_path);
	if (job->keys_sql != NULL && OidIsValid(job->cursor_type))
		cb_chunk_validate_select(job->job_name, "keys_sql", job->keys_sql,
							  job->cursor_type, job->cursor_type, job->owner,
							  job->search_path);
}

/*
 * The arguments of create_job that must not be NULL (validate, and the
 * settings whose default is a value rather than "none"), in their order.
 */
static void
require_settings(FunctionCallInfo fcinfo)
{
	int			n;
	const CbJobSetting *set = cb_job_settings(&n);
	bool		validate_checked = false;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (!validate_checked && set[i].argno > ARG_VALIDATE)
		{
			require_arg(fcinfo, ARG_VALIDATE, "validate");
			validate_checked = true;
		}
		if (set[i].required)
			require_arg(fcinfo, set[i].argno, set[i].name);
	}
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
	cb_check_name("job name", job.job_name);
	require_settings(fcinfo);
	validate = PG_GETARG_BOOL(ARG_VALIDATE);

	job.owner = GetUserId();
	job.max_dead_letters = -1;
	job.min_batch_size = 1;
	job.max_batch_size = 1000000;
	job.lock_group = job.job_name;
	job.search_path = pstrdup(GetConfigOption("search_path", false, false));
	cb_settings_apply_args(fcinfo, &job);

	check_owner_can_connect(job.owner);
	cb_steps_check(&job);
	if (cb_catalog_find_job(job.job_name, &existing, CB_JOB_FOR_UPDATE))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("job \"%s\" already exists", job.job_name)));
	check_group_owner(&job);
	if (job.range_table != NULL)
		resolve_range(fcinfo, &job, validate);
	if (validate)
	{
		cb_chunk_validate_sql(&job, job.owner);
		validate_selects(&job);
	}

	PG_RETURN_INT64(cb_catalog_insert_job(&job));
}

Datum
chunkbatch_alter_job(PG_FUNCTION_ARGS)
{
	CbJob		job;
	char	   *name = text_arg(fcinfo, ARG_NAME, "job_name");
	bool		validate;
	bool		rewritten = false;
	CbJob		old;

	cb_require_primary("alter a job");
	require_arg(fcinfo, ARG_VALIDATE, "validate");
	validate = PG_GETARG_BOOL(ARG_VALIDATE);
	find_job(name, &job, CB_JOB_FOR_UPDATE);
	old = job;
	cb_settings_apply_args(fcinfo, &job);
	if (!PG_ARGISNULL(ARG_RESET))
		cb_settings_reset(fcinfo, ARG_RESET, &job);
	cb_steps_check(&job);
	if (job.range_table != NULL && range_changed(fcinfo, &old, &job))
		resolve_range(fcinfo, &job, validate);
	else if (job.range_table == NULL && old.range_table != NULL &&
			 PG_ARGISNULL(ARG_CURSOR_TYPE))
		job.cursor_type = InvalidOid;	/* out of range mode: repeat mode */
	if (PG_ARGISNULL(ARG_SQL) &&
		(str_differs(job.range_table, old.range_table) ||
		 str_differs(job.range_key, old.range_key) ||
		 str_differs(job.range_filter, old.range_filter)))
		rewritten = cb_range_rewrite_written(&old, &job,
											 !PG_ARGISNULL(ARG_COUNT_SQL) ||
											 str_differs(job.count_sql, old.count_sql));
	check_cursor_type_exists(&job);
	check_group_owner(&job);
	if ((job.cursor_type != old.cursor_type ||
		 str_differs(job.range_table, old.range_table) ||
		 str_differs(job.range_key, old.range_key)) &&
		cb_catalog_count_active_runs(job.job_id) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot change the cursor type or range of job \"%s\" while it has active runs",
						name),
				 errdetail("The checkpoints of those runs hold keys of the old kind."),
				 errhint("Cancel the runs or wait for them to finish.")));
	if (validate && (!PG_ARGISNULL(ARG_SQL) || rewritten || job.cursor_type != old.cursor_type ||
					 (job.range_table == NULL) != (old.range_table == NULL)))
		cb_chunk_validate_sql(&job, job.owner);
	if (validate)
		validate_selects(&job);
	cb_catalog_update_job(&job);
	if ((str_differs(job.range_filter, old.range_filter) ||
		 str_differs(job.chunk_sql, old.chunk_sql)) &&
		cb_catalog_clear_spans(job.job_id) &&
		str_differs(job.range_filter, old.range_filter))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot change the range_filter of job \"%s\" while a run of it with slices is not over",
						name),
				 errdetail("The slices of that run were split by the keys the old filter matched."),
				 errhint("Cancel the run or let it finish first.")));
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
	active = cb_catalog_count_active_runs(job.job_id);
	if (active > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("job \"%s\" has %lld active runs", name, (long long) active),
				 errhint("Cancel them with chunkbatch.cancel() or wait for them to finish.")));
	cb_catalog_delete_job(job.job_id);
	/* Its schedules go too: they could start a later job of that name. */
	if (OidIsValid(get_extension_oid("pg_cron", true)))
		(void) cb_catalog_unschedule_job(job.job_name);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * Runs
 * ----------------------------------------------------------------
 */
static bool
state_is_final(const char *state)
{
	return cb_run_state_in(state, CB_STATES_FINAL);
}

/* Final, or resting until somebody resumes it: wait() returns. */
static bool
state_is_settled(const char *state)
{
	return cb_run_state_in(state, CB_STATES_SETTLED);
}

/* Look a run up and check that the caller may act on it. */
static void
find_run(int64 run_id, bool for_update, CbRunRef *ref, char **state,
		 char **sqlstate, char **error)
{
	if (!cb_catalog_get_run(run_id, for_update, ref, state, sqlstate, error))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("run %lld does not exist", (long long) run_id)));
	/* A restored run whose owner role now exists: link it (see find_job). */
	if (!OidIsValid(ref->owner) && !RecoveryInProgress())
	{
		cb_catalog_relink_owners();
		(void) cb_catalog_get_run(run_id, for_update, ref, state, sqlstate, error);
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
			 GetCurrentTimestamp() - start >= (int64) timeout_ms * 1000);
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
	if (cb_run_state_in(state, CB_STATE(CB_RUN_FAILED)))
		ereport(ERROR,
				(errcode(sqlstate && strlen(sqlstate) == 5 ?
						 MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
									   sqlstate[3], sqlstate[4]) :
						 ERRCODE_INTERNAL_ERROR),
				 errmsg("run %lld of job \"%s\" failed: %s",
						(long long) run_id, name, error ? error : "unknown error"),
				 errdetail("See chunkbatch.runs for the run's checkpoint and error.")));
	if (cb_run_state_in(state, CB_STATE(CB_RUN_SKIPPED)))
		ereport(NOTICE,
				(errmsg("run %lld of job \"%s\" was skipped because its group was busy",
						(long long) run_id, name)));
	else if (!cb_run_state_in(state, CB_STATE(CB_RUN_SUCCEEDED)))
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
 * The parallel argument of run() and run_and_wait(): the run's slices,
 * instead of the job's; 0 when NULL (the job's).
 */
static int32
run_parallel(FunctionCallInfo fcinfo, int argno, const CbJob *job)
{
	int32		parallel;

	if (PG_ARGISNULL(argno))
		return 0;
	parallel = PG_GETARG_INT32(argno);
	if (parallel < 1 || parallel > CB_MAX_PARALLEL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parallel must be between 1 and %d", CB_MAX_PARALLEL)));
	if (parallel > 1 && job->range_table == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parallel needs a range-mode job, and job \"%s\" is not one",
						job->job_name),
				 errdetail("A run is split into slices of the keys of its range_table.")));
	return parallel;
}

/*
 * Hand a run to the database's scheduler, which commits its row at once
 * (this function cannot commit the caller's transaction), and return the
 * new run's id.
 */
static int64
submit_run_request(const CbJob *job, Jsonb *params, const char *trigger,
				   int32 parallel)
{
	int			req;
	int64		run_id = 0;
	char		error[256];
	bool		failed = false;

	if (VARSIZE(params) > CB_REQUEST_PARAMS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("params of a run with wait => true must not be larger than %d bytes",
						CB_REQUEST_PARAMS_MAX),
				 errhint("Queue the run with wait => false and call chunkbatch.wait().")));

	while ((req = cb_request_submit(MyDatabaseId, job->job_id, GetUserId(),
									trigger, parallel, params, VARSIZE(params))) < 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	cb_request_wake(MyDatabaseId);

	PG_TRY();
	{
		while (!cb_request_poll(req, &run_id, error, sizeof(error), &failed))
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		cb_request_abandon(req);
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
		check_can_queue(&job);
		run_id = cb_catalog_insert_run(job.job_id, JsonbPGetDatum(params),
									GetUserId(), trigger,
									run_parallel(fcinfo, 4, &job));
		wake_at_commit = true;
		PG_RETURN_INT64(run_id);
	}

	check_can_wait();
	find_job(name, &job, CB_JOB_NO_LOCK);
	check_can_queue(&job);
	run_id = submit_run_request(&job, params, trigger, run_parallel(fcinfo, 4, &job));
	state = wait_for_run(run_id, -1, &sqlstate, &error);
	report_run_outcome(run_id, name, state, sqlstate, error);
	PG_RETURN_INT64(run_id);
}

/*
 * CALL chunkbatch.run_and_wait(job_name, params, trigger, parallel, run_id): queue a
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
	check_can_queue(&job);
	run_id = cb_catalog_insert_run(job.job_id, JsonbPGetDatum(params),
								GetUserId(), trigger, run_parallel(fcinfo, 3, &job));
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
		timeout_ms = (long) Min(ms, 1e15);	/* some 31,000 years */
	}
	PG_RETURN_TEXT_P(cstring_to_text(wait_for_run(run_id, timeout_ms,
												  &sqlstate, &error)));
}

/*
 * Flag the workers that execute the run, if any, to cancel or to pause at
 * their next chunk boundary, and wake them; a cancel also cancels the
 * chunk in progress.  Returns false if no worker of its own has the run
 * (helpers with its slices stop when that worker is gone).
 */
static bool
signal_run_worker(int64 run_id, bool cancel)
{
	return cb_slot_signal_run(MyDatabaseId, run_id, cancel);
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
	(void) cb_catalog_pause_copies(run_id);
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (state_is_final(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld has already finished", (long long) run_id),
				 errdetail("Its state is \"%s\".", state)));
	if (!signal_run_worker(run_id, true))
		(void) cb_catalog_cancel_unowned(run_id);
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
	(void) cb_catalog_pause_copies(run_id);
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (state_is_settled(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld is not active", (long long) run_id),
				 errdetail("Its state is \"%s\".", state)));
	if (!signal_run_worker(run_id, false) && !cb_catalog_pause_unowned(run_id))
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
	char	   *was;
	char	   *now;

	cb_require_primary("resume a run");
	cb_require_shmem();
	cb_catalog_lock_job_of_run(run_id);
	(void) cb_catalog_pause_copies(run_id);
	find_run(run_id, true, &ref, &state, &sqlstate, &error);
	if (!OidIsValid(ref.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner role of run %lld does not exist", (long long) run_id),
				 errdetail("The run was restored from a dump of a database where its owner role existed."),
				 errhint("Create the role named in chunkbatch.runs.owner (with LOGIN), then resume the run.")));
	if (!cb_run_state_in(state, CB_STATES_RESUMABLE))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld cannot be resumed", (long long) run_id),
				 errdetail("Its state is \"%s\"; only paused, failed and stopped runs can be resumed.",
						   state)));
	if (cb_catalog_run_kind_changed(run_id, &was, &now))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("run %lld cannot be resumed", (long long) run_id),
				 was == NULL ?
				 errdetail("It began in repeat mode, but its job now has keys of %s.", now) :
				 now == NULL ?
				 errdetail("Its checkpoints hold keys of %s, but its job is now in repeat mode.", was) :
				 errdetail("Its checkpoints hold keys of %s, but its job's keys are now of %s.",
						   was, now),
				 errhint("Run the job anew, or give it back its former cursor type and range with chunkbatch.alter_job() to resume this run.")));
	if (!cb_catalog_resume_run(run_id))
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

Datum
chunkbatch_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CbSlotView *views;
	int			n;
	int			i;
	bool		see_all;

	InitMaterializedSRF(fcinfo, 0);
	n = cb_slot_snapshot(MyDatabaseId, &views);
	see_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	for (i = 0; i < n; i++)
	{
		CbSlotView *s = &views[i];
		Datum		values[11];
		bool		nulls[11];

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
		values[9] = Float8GetDatum(s->recent_rate);
		nulls[9] = (s->recent_rate < 0);
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

	cb_require_primary("pause all runs");
	if (reason != NULL && strlen(reason) >= CB_PAUSE_REASON_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason must be shorter than %d bytes",
						CB_PAUSE_REASON_MAX)));
	changed = cb_set_all_paused(true, GetUserNameFromId(GetUserId(), false), reason);
	if (changed)
	{
		/* Wake every worker, so that a sleeping one holds at once. */
		cb_slot_wake_all();
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
	TimestampTz at;
	char	   *by;
	char	   *reason;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(false);
	if (cb_pause_state(&at, &by, &reason))
	{
		values[0] = BoolGetDatum(true);
		values[1] = TimestampTzGetDatum(at);
		values[2] = CStringGetTextDatum(by);
		values[3] = CStringGetTextDatum(reason);
		nulls[1] = nulls[2] = false;
		nulls[3] = (reason[0] == '\0');
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

/*
 * The run that the calling chunk (or step) belongs to: its id, job, the
 * time it was queued (a pg_cron schedule's tick), what queued it, and the
 * number of the chunk in progress.  All NULL outside a run worker.
 */
Datum
chunkbatch_run_context(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {true, true, true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (cb_current_run != NULL)
	{
		values[0] = Int64GetDatum(cb_current_run->run_id);
		values[1] = CStringGetTextDatum(cb_current_run->job.job_name);
		values[2] = TimestampTzGetDatum(cb_current_run->queued_at);
		values[3] = CStringGetTextDatum(cb_current_run->trigger);
		values[4] = Int64GetDatum(cb_current_run->chunks_done + 1);
		memset(nulls, false, sizeof(nulls));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * dry_run(): chunkbatch.dry_run_steps() as the job's owner.  The job's code
 * (its filter, count_sql, the functions its statement calls) runs in the
 * caller's session, so it must not be able to act as the caller: the owner
 * is made the current user as a SECURITY DEFINER function would be, which
 * refuses SET ROLE and SET SESSION AUTHORIZATION (no RESET ROLE back to a
 * superuser), and everything it did is undone with a subtransaction that
 * is always rolled back (rows it wrote, deferred triggers it queued, temp
 * objects).  The caller needs the owner's privileges, as to run the job;
 * other callers are told that the job does not exist.
 */
Datum
chunkbatch_dry_run(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			types[3] = {TEXTOID, JSONBOID, BOOLOID};
	Datum		values[3];
	List	   *rows = NIL;
	ListCell   *lc;
	CbJob		job;
	char	   *name;
	Oid			save_uid;
	int			save_sec;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_name, params and execute must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* A job the caller may not use is one it cannot see, as in chunkbatch.jobs. */
	if (!cb_catalog_find_job(name, &job, CB_JOB_NO_LOCK) ||
		!has_privs_of_role(GetUserId(), job.owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job \"%s\" does not exist", name)));
	InitMaterializedSRF(fcinfo, 0);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_GETARG_DATUM(2);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	GetUserIdAndSecContext(&save_uid, &save_sec);
	PG_TRY();
	{
		uint64		i;

		SetUserIdAndSecContext(job.owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT item, detail FROM chunkbatch.dry_run_steps($1, $2, $3)",
								  3, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "chunkbatch.dry_run_steps() failed");
		/* Kept out of the subtransaction's memory and files until it ends. */
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *item = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			char	   *detail = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			MemoryContext cxt = MemoryContextSwitchTo(oldcxt);

			rows = lappend(rows, list_make2(item ? pstrdup(item) : NULL,
											detail ? pstrdup(detail) : NULL));
			MemoryContextSwitchTo(cxt);
		}
		SPI_finish();
		SetUserIdAndSecContext(save_uid, save_sec);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();	/* restores the user, too */
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ReThrowError(edata);
	}
	PG_END_TRY();

	foreach(lc, rows)
	{
		List	   *row = lfirst(lc);
		Datum		out[2];
		bool		nulls[2];
		int			k;

		for (k = 0; k < 2; k++)
		{
			char	   *v = list_nth(row, k);

			nulls[k] = (v == NULL);
			out[k] = v ? CStringGetTextDatum(v) : (Datum) 0;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	return (Datum) 0;
}
