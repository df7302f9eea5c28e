/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Catalog access: reading jobs, writing runs and checkpoints.
 *
 * This is the one file that knows the SQL of chunkbatch.jobs and
 * chunkbatch.runs.  Every statement here is fixed text with parameters,
 * runs as the extension owner (users have no DML rights on the tables)
 * and with search_path pinned to pg_catalog, so neither the caller's nor
 * a job owner's search_path can redirect it.  Callers provide the
 * transaction and an active snapshot.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/catalog.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "chunkbatch.h"

/* Kept plan of the per-chunk checkpoint statement (hot path). */
static SPIPlanPtr checkpoint_plan = NULL;

/* Owner of the chunkbatch extension in this database. */
Oid
cb_extension_owner(void)
{
	static Oid	cached_ext = InvalidOid;
	static Oid	cached_owner = InvalidOid;
	Oid			ext = get_extension_oid(CB_EXTENSION_NAME, false);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;

	if (ext == cached_ext)
		return cached_owner;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "could not find extension %u", ext);
	cached_owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	cached_ext = ext;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return cached_owner;
}

/*
 * Is chunkbatch installed in this database, and at the version whose
 * tables this library knows?  *version (if asked) gets the installed one.
 * After a package update and a restart, a database stays at its old
 * version until ALTER EXTENSION chunkbatch UPDATE: the library must not
 * touch its tables meanwhile.
 */
CbSchemaState
cb_catalog_schema_state(char **version)
{
	Oid			ext = get_extension_oid(CB_EXTENSION_NAME, true);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	CbSchemaState result = CB_SCHEMA_OLD;

	if (!OidIsValid(ext))
		return CB_SCHEMA_ABSENT;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *v = isnull ? pstrdup("") : TextDatumGetCString(d);

		if (strcmp(v, CB_SCHEMA_VERSION) == 0)
			result = CB_SCHEMA_OK;
		if (version != NULL)
			*version = v;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Refuse to work on a schema of another version.  Once the schema was
 * seen at the right version, a process does not look again (this is on
 * the path of every checkpoint): an extension is not downgraded in place.
 */
void
cb_catalog_require_schema(void)
{
	static bool checked = false;
	char	   *version = NULL;

	if (checked)
		return;
	switch (cb_catalog_schema_state(&version))
	{
		case CB_SCHEMA_OK:
			checked = true;
			return;
		case CB_SCHEMA_ABSENT:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("extension \"%s\" is not installed in database \"%s\"",
							CB_EXTENSION_NAME, get_database_name(MyDatabaseId))));
			break;
		case CB_SCHEMA_OLD:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("chunkbatch in database \"%s\" is at version %s, but the loaded library needs version %s",
							get_database_name(MyDatabaseId), version, CB_SCHEMA_VERSION),
					 errdetail("No run starts in this database until its chunkbatch objects are updated."),
					 errhint("Run ALTER EXTENSION chunkbatch UPDATE in this database.")));
			break;
	}
}

/* Become the extension owner, with a safe search_path, for bookkeeping. */
void
cb_catalog_enter(CbAsOwner *s)
{
	Oid			owner;

	cb_catalog_require_schema();
	owner = cb_extension_owner();
	GetUserIdAndSecContext(&s->save_uid, &s->save_sec);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	s->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	/* Names written into the catalog (runs.cursor_kind) read the same. */
	(void) set_config_option("quote_all_identifiers", "off",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
cb_catalog_leave(CbAsOwner *s)
{
	SPI_finish();
	AtEOXact_GUC(true, s->nestlevel);
	SetUserIdAndSecContext(s->save_uid, s->save_sec);
}

/* Run one fixed statement; complain unless it returns the expected code. */
static void
cb_exec(const char *sql, int nargs, Oid *types, Datum *values,
		const char *nulls, int expected)
{
	int			rc;

	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "chunkbatch catalog statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Run one fixed statement of the scheduler's every pass, planned once per
 * process: "plan" keeps the plan (re-planned by PostgreSQL when the tables
 * change).
 */
static void
cb_exec_saved(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types,
			  Datum *values, const char *nulls, int expected)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "chunkbatch could not prepare catalog statement (%s): %s",
				 SPI_result_code_string(SPI_result), sql);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "chunkbatch catalog statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Run one fixed statement whose only parameter, $1, is an id (of a run or
 * a job), as the extension owner; returns how many rows it affected.
 */
static uint64
cb_exec_id(const char *sql, int64 id, int expected)
{
	CbAsOwner	s;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	uint64		n;

	cb_catalog_enter(&s);
	cb_exec(sql, 1, types, values, NULL, expected);
	n = SPI_processed;
	cb_catalog_leave(&s);
	return n;
}

/* Column helpers over SPI_tuptable, row "row", 1-based column "col". */
static bool
col_isnull(int row, int col)
{
	bool		isnull;

	(void) SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, &isnull);
	return isnull;
}

static Datum
col_datum(int row, int col)
{
	bool		isnull;

	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, &isnull);
}

/* ----------------------------------------------------------------
 * Jobs
 * ----------------------------------------------------------------
 */
/*
 * The columns of a job that are not settings, first in every SELECT of a
 * job; the settings follow in the order of cb_job_settings().
 */
#define JOB_FIXED_COLUMNS \
	"job_id, job_name, owner_oid, owner, search_path, " \
	"COALESCE(altered_at, created_at)"
#define JOB_NFIXED	6

/* SELECT list of a job: the fixed columns, then every setting's. */
static const char *
job_columns(void)
{
	static char *columns = NULL;

	if (columns == NULL)
	{
		int			n;
		const CbJobSetting *set = cb_job_settings(&n);
		StringInfoData buf;
		int			i;

		initStringInfo(&buf);
		appendStringInfoString(&buf, JOB_FIXED_COLUMNS);
		for (i = 0; i < n; i++)
			appendStringInfo(&buf, ", %s%s", set[i].name,
							 set[i].kind == CB_SET_TYPE ? "::pg_catalog.oid" : "");
		columns = MemoryContextStrdup(TopMemoryContext, buf.data);
		pfree(buf.data);
	}
	return columns;
}

/* "SELECT <job columns> FROM chunkbatch.jobs <rest>" */
static char *
job_select(const char *rest)
{
	return psprintf("SELECT %s FROM chunkbatch.jobs %s", job_columns(), rest);
}

/* Fill *job from row 0 of SPI_tuptable, copying into memory context mcxt. */
static void
job_from_row(CbJob *job, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	int			n;
	const CbJobSetting *set = cb_job_settings(&n);
	int			i;

	memset(job, 0, sizeof(CbJob));
	job->job_id = DatumGetInt64(col_datum(0, 1));
	job->job_name = SPI_getvalue(tup, desc, 2);
	job->owner = DatumGetObjectId(col_datum(0, 3));
	job->owner_name = SPI_getvalue(tup, desc, 4);
	job->search_path = SPI_getvalue(tup, desc, 5);
	job->altered_at = DatumGetTimestampTz(col_datum(0, 6));
	for (i = 0; i < n; i++)
	{
		int			col = JOB_NFIXED + 1 + i;

		cb_setting_from_datum(&set[i], job, col_datum(0, col), col_isnull(0, col),
							  SPI_getvalue(tup, desc, col));
	}
	MemoryContextSwitchTo(old);
}

/* Look a job up by name, locking its row as asked. */
bool
cb_catalog_find_job(const char *job_name, CbJob *job, CbJobLock lock)
{
	static const char *const rest[] = {
		"WHERE job_name OPERATOR(pg_catalog.=) $1",
		"WHERE job_name OPERATOR(pg_catalog.=) $1 FOR KEY SHARE",
		"WHERE job_name OPERATOR(pg_catalog.=) $1 FOR UPDATE"
	};
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job_name)};
	bool		found;

	cb_catalog_enter(&s);
	cb_exec(job_select(rest[lock]), 1, types, values, NULL, SPI_OK_SELECT);
	found = (SPI_processed == 1);
	if (found)
		job_from_row(job, mcxt);
	cb_catalog_leave(&s);
	return found;
}

/*
 * The parameters of a job's settings, numbered from $first on, in the
 * order of cb_job_settings(): their values, nulls and types.
 */
static void
job_setting_params(const CbJob *job, int first, Datum *values, char *nulls,
				   Oid *types)
{
	int			n;
	const CbJobSetting *set = cb_job_settings(&n);
	int			i;

	for (i = 0; i < n; i++)
	{
		bool		isnull;

		values[first - 1 + i] = cb_setting_to_datum(&set[i], job, &isnull);
		nulls[first - 1 + i] = isnull ? 'n' : ' ';
		types[first - 1 + i] = cb_setting_sqltype(&set[i]);
	}
}

/* A setting's parameter in a statement: $k, cast to its column's type. */
static const char *
setting_param(const CbJobSetting *s, int k)
{
	return psprintf("$%d%s", k, s->kind == CB_SET_TYPE ? "::pg_catalog.regtype" : "");
}

#define JOB_MAX_PARAMS 64

int64
cb_catalog_insert_job(const CbJob *job)
{
	CbAsOwner	s;
	Datum		values[JOB_MAX_PARAMS];
	char		nulls[JOB_MAX_PARAMS];
	Oid			types[JOB_MAX_PARAMS];
	int			n;
	const CbJobSetting *set = cb_job_settings(&n);
	StringInfoData cols;
	StringInfoData params;
	int64		job_id;
	int			i;

	Assert(n + 3 <= JOB_MAX_PARAMS);
	/* $1 job_name, $2 owner_oid, $3 search_path, then the settings */
	values[0] = CStringGetTextDatum(job->job_name);
	values[1] = ObjectIdGetDatum(job->owner);
	values[2] = CStringGetTextDatum(job->search_path);
	types[0] = TEXTOID;
	types[1] = OIDOID;
	types[2] = TEXTOID;
	nulls[0] = nulls[1] = nulls[2] = ' ';
	job_setting_params(job, 4, values, nulls, types);
	initStringInfo(&cols);
	initStringInfo(&params);
	for (i = 0; i < n; i++)
	{
		appendStringInfo(&cols, ", %s", set[i].name);
		appendStringInfo(&params, ", %s", setting_param(&set[i], 4 + i));
	}

	cb_catalog_enter(&s);
	cb_exec(psprintf("INSERT INTO chunkbatch.jobs (job_name, owner_oid, owner,"
					 " search_path%s) VALUES ($1, $2, pg_catalog.pg_get_userbyid($2),"
					 " $3%s) RETURNING job_id", cols.data, params.data),
			n + 3, types, values, nulls, SPI_OK_INSERT_RETURNING);
	job_id = DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	return job_id;
}

void
cb_catalog_update_job(const CbJob *job)
{
	CbAsOwner	s;
	Datum		values[JOB_MAX_PARAMS];
	char		nulls[JOB_MAX_PARAMS];
	Oid			types[JOB_MAX_PARAMS];
	int			n;
	const CbJobSetting *set = cb_job_settings(&n);
	StringInfoData sets;
	int			i;

	Assert(n + 1 <= JOB_MAX_PARAMS);
	/* $1 job_id, then the settings */
	values[0] = Int64GetDatum(job->job_id);
	types[0] = INT8OID;
	nulls[0] = ' ';
	job_setting_params(job, 2, values, nulls, types);
	initStringInfo(&sets);
	for (i = 0; i < n; i++)
		appendStringInfo(&sets, "%s = %s, ", set[i].name, setting_param(&set[i], 2 + i));

	cb_catalog_enter(&s);
	cb_exec(psprintf("UPDATE chunkbatch.jobs SET %s"
					 "altered_at = pg_catalog.clock_timestamp()"
					 " WHERE job_id OPERATOR(pg_catalog.=) $1", sets.data),
			n + 1, types, values, nulls, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

void
cb_catalog_delete_job(int64 job_id)
{
	(void) cb_exec_id("DELETE FROM chunkbatch.jobs WHERE job_id OPERATOR(pg_catalog.=) $1",
					  job_id, SPI_OK_DELETE);
}

/*
 * Remove the pg_cron schedules of a job (whoever made them, in this
 * database), as the extension owner; returns how many.  Call only where
 * pg_cron is installed.
 */
int64
cb_catalog_unschedule_job(const char *job_name)
{
	CbAsOwner	s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job_name)};
	int64		n;

	cb_catalog_enter(&s);
	cb_exec("SELECT pg_catalog.count(cron.unschedule(c.jobid)) FROM cron.job c"
			" WHERE c.jobname OPERATOR(pg_catalog.=) ('chunkbatch:' OPERATOR(pg_catalog.||) $1)"
			" AND c.database OPERATOR(pg_catalog.=) pg_catalog.current_database()",
			1, types, values, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	return n;
}

/*
 * How many runs are in one of the given states and match "cond" (an SQL
 * condition on $1 of type argtype, or NULL for all), as the extension owner.
 */
static int64
count_runs(CbRunStateSet states, const char *cond, Oid argtype, Datum arg)
{
	CbAsOwner	s;
	int64		n;

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT pg_catalog.count(*) FROM chunkbatch.runs"
					 " WHERE state IN %s%s%s", cb_run_states_sql(states),
					 cond ? " AND " : "", cond ? cond : ""),
			cond ? 1 : 0, &argtype, &arg, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	return n;
}

/* Runs of the job that are not over: they keep it from being dropped. */
int64
cb_catalog_count_active_runs(int64 job_id)
{
	return count_runs(CB_STATES_LIVE, "job_id OPERATOR(pg_catalog.=) $1",
					  INT8OID, Int64GetDatum(job_id));
}

/* NOTIFY chunkbatch with the run's outcome; delivered at commit. */
static void
catalog_notify(int64 run_id, const char *state, const char *sqlstate)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(state);
	values[2] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	nulls[2] = sqlstate ? ' ' : 'n';
	cb_exec("SELECT pg_catalog.pg_notify('chunkbatch',"
			" pg_catalog.json_build_object('run_id', r.run_id,"
			" 'job_name', r.job_name, 'state', $2, 'sqlstate', $3,"
			" 'database', pg_catalog.current_database())::text)"
			" FROM chunkbatch.runs r WHERE r.run_id OPERATOR(pg_catalog.=) $1",
			3, types, values, nulls, SPI_OK_SELECT);
}

/* ----------------------------------------------------------------
 * Runs, from the SQL interface
 * ----------------------------------------------------------------
 */
/*
 * What the checkpoints of a run of job j hold, as runs.cursor_kind keeps
 * it: the cursor type, in range mode with the table and key; NULL in
 * repeat mode.  Under cb_catalog_enter's search_path, so that the text of
 * a type is the same at every look.
 */
#define CURSOR_KIND_SQL \
	"CASE WHEN j.cursor_type IS NULL THEN NULL" \
	" WHEN j.range_table IS NULL THEN pg_catalog.format('%s', j.cursor_type)" \
	" ELSE pg_catalog.format('%s.%I (%s)', j.range_table, j.range_key, j.cursor_type) END"

/*
 * Queue a run of the job with the job's current batch size, group and
 * priority.  Runs queued in one transaction are queued together: they
 * carry the first one's run_id in queued_with, and their group orders
 * them by priority (see cb_catalog_run_queue).  Returns 0 if the job does
 * not exist (any more).
 */
int64
cb_catalog_insert_run(int64 job_id, Datum params, Oid queued_by, const char *trigger,
					  int32 parallel)
{
	static LocalTransactionId first_lxid = InvalidLocalTransactionId;
	static int64 first_run_id = 0;
	bool		together = (first_lxid == MyProc->lxid);
	CbAsOwner	s;
	Oid			types[8] = {INT8OID, JSONBOID, OIDOID, TEXTOID, OIDOID, INT8OID, INT8OID,
	INT4OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		run_id = 0;

	values[0] = Int64GetDatum(job_id);
	values[1] = params;
	values[2] = ObjectIdGetDatum(queued_by);
	values[3] = CStringGetTextDatum(trigger);
	values[4] = ObjectIdGetDatum(MyDatabaseId);
	values[5] = Int64GetDatum((int64) GetSystemIdentifier());
	values[6] = Int64GetDatum(first_run_id);
	nulls[6] = together ? ' ' : 'n';
	values[7] = Int32GetDatum(parallel);
	nulls[7] = (parallel > 0) ? ' ' : 'n';
	cb_catalog_enter(&s);
	cb_exec("INSERT INTO chunkbatch.runs (job_id, job_name, owner_oid, owner,"
			" lock_group, params, queued_by, trigger, batch_size, origin_db,"
			" origin_system, priority, queued_with, parallel, cursor_kind)"
			" SELECT j.job_id, j.job_name, j.owner_oid,"
			" pg_catalog.pg_get_userbyid(j.owner_oid), j.lock_group, $2,"
			" pg_catalog.pg_get_userbyid($3), $4, j.batch_size, $5, $6, j.priority, $7,"
			" COALESCE($8, j.parallel), " CURSOR_KIND_SQL
			" FROM chunkbatch.jobs j WHERE j.job_id OPERATOR(pg_catalog.=) $1"
			" RETURNING run_id",
			8, types, values, nulls, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 1)
		run_id = DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	if (run_id != 0 && !together)
	{
		first_lxid = MyProc->lxid;
		first_run_id = run_id;
	}
	return run_id;
}

bool
cb_catalog_get_run(int64 run_id, bool for_update, CbRunRef *ref, char **state,
				char **sqlstate, char **error)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	bool		found;

	cb_catalog_enter(&s);
	cb_exec(for_update ?
			"SELECT owner_oid, state, sqlstate, error, job_name, xmin"
			" FROM chunkbatch.runs WHERE run_id OPERATOR(pg_catalog.=) $1"
			" FOR NO KEY UPDATE" :
			"SELECT owner_oid, state, sqlstate, error, job_name, xmin"
			" FROM chunkbatch.runs WHERE run_id OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, SPI_OK_SELECT);
	found = (SPI_processed == 1);
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		ref->run_id = run_id;
		ref->owner = DatumGetObjectId(col_datum(0, 1));
		*state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		*sqlstate = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
		*error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
		ref->job_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
		ref->queued_here =
			TransactionIdIsCurrentTransactionId(DatumGetTransactionId(col_datum(0, 6)));
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return found;
}

/*
 * End a run that has no worker (to skipped, failed or cancelled, from a
 * state of "from"), with a reason or an error (NULL: unchanged), and NOTIFY
 * it.  False if the run was in none of those states.
 */
static bool
end_without_worker(int64 run_id, CbRunState to, CbRunStateSet from,
				   const char *reason, const char *sqlstate, const char *error)
{
	CbAsOwner	s;
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		done;

	values[0] = Int64GetDatum(run_id);
	values[1] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[1] = reason ? ' ' : 'n';
	values[2] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	nulls[2] = sqlstate ? ' ' : 'n';
	values[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[3] = error ? ' ' : 'n';
	cb_catalog_enter(&s);
	cb_exec(psprintf("UPDATE chunkbatch.runs SET state = '%s',"
					 " reason = COALESCE($2, reason), sqlstate = COALESCE($3, sqlstate),"
					 " error = COALESCE($4, error), worker_pid = NULL,"
					 " finished_at = pg_catalog.clock_timestamp()"
					 " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state IN %s"
					 " RETURNING run_id",
					 cb_run_state_name(to), cb_run_states_from(to, from)),
			4, types, values, nulls, SPI_OK_UPDATE_RETURNING);
	done = (SPI_processed == 1);
	if (done)
		catalog_notify(run_id, cb_run_state_name(to), sqlstate);
	cb_catalog_leave(&s);
	return done;
}

/* Cancel a run that no worker executes; false if it has already ended. */
bool
cb_catalog_cancel_unowned(int64 run_id)
{
	return end_without_worker(run_id, CB_RUN_CANCELLED, CB_STATES_LIVE, NULL,
							  NULL, NULL);
}

/* ----------------------------------------------------------------
 * Runs, from the run worker
 * ----------------------------------------------------------------
 */

/* What a run worker reads of its run, in run_from_row()'s order. */
#define RUN_COLUMNS \
	"job_id, params, cursor, rows_done, chunks_done, batch_size, avg_chunk_ms," \
	" max_chunk_ms, retries, lock_group, dead_letters, start_attempts," \
	" lock_waiters_seen, queued_at, trigger, steps, steps_before, steps_done," \
	" range_first, range_last, parallel," \
	" EXISTS (SELECT FROM chunkbatch.slices s" \
	"   WHERE s.run_id OPERATOR(pg_catalog.=) $1)"

/*
 * Fill *run from row 0 of SPI_tuptable (RUN_COLUMNS) and load its job,
 * copying into mcxt.
 */
static void
run_from_row(int64 run_id, CbRun *run, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	int64		job_id;
	char	   *lock_group;

	memset(run, 0, sizeof(CbRun));
	run->run_id = run_id;
	run->slice_no = -1;
	job_id = DatumGetInt64(col_datum(0, 1));
	run->params = datumCopy(col_datum(0, 2), false, -1);
	run->cursor = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	run->rows_done = DatumGetInt64(col_datum(0, 4));
	run->chunks_done = DatumGetInt64(col_datum(0, 5));
	run->batch_size = DatumGetInt32(col_datum(0, 6));
	run->avg_chunk_ms = col_isnull(0, 7) ? 0 : DatumGetFloat8(col_datum(0, 7));
	run->max_chunk_ms = col_isnull(0, 8) ? 0 : DatumGetFloat8(col_datum(0, 8));
	run->retries = DatumGetInt32(col_datum(0, 9));
	lock_group = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 10);
	run->dead_letters = DatumGetInt64(col_datum(0, 11));
	run->start_attempts = DatumGetInt32(col_datum(0, 12));
	run->lock_waiters_seen = DatumGetInt64(col_datum(0, 13));
	run->queued_at = DatumGetTimestampTz(col_datum(0, 14));
	run->trigger = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 15);
	if (!col_isnull(0, 16))
	{
		Datum	   *elems;
		int			n;
		int			i;

		deconstruct_array(DatumGetArrayTypeP(col_datum(0, 16)), TEXTOID, -1,
						  false, TYPALIGN_INT, &elems, NULL, &n);
		for (i = 0; i < n; i++)
			run->steps = lappend(run->steps, TextDatumGetCString(elems[i]));
		run->steps_before = DatumGetInt32(col_datum(0, 17));
	}
	run->steps_done = DatumGetInt32(col_datum(0, 18));
	run->range_first = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 19);
	run->range_last = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 20);
	run->parallel = DatumGetInt32(col_datum(0, 21));
	run->has_slices = DatumGetBool(col_datum(0, 22));
	MemoryContextSwitchTo(old);

	values[0] = Int64GetDatum(job_id);
	cb_exec(job_select("WHERE job_id OPERATOR(pg_catalog.=) $1"),
			1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "job %lld of run %lld does not exist",
			 (long long) job_id, (long long) run_id);
	job_from_row(&run->job, mcxt);
	/* The run locks the group it was queued with. */
	run->job.lock_group = lock_group;
}

/*
 * Claim a queued or interrupted run for this worker and load it with its
 * job.  Returns false when the run is no longer claimable (cancelled, or
 * already taken).  The claimed run is "waiting" until it holds its group.
 */
bool
cb_catalog_claim_run(int64 run_id, CbRun *run)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[4] = {INT8OID, INT4OID, OIDOID, INT8OID};
	Datum		values[4] = {Int64GetDatum(run_id), Int32GetDatum(MyProcPid),
		ObjectIdGetDatum(MyDatabaseId), Int64GetDatum((int64) GetSystemIdentifier())};
	bool		claimed;

	cb_catalog_enter(&s);
	/* A run copied from another database is never claimed here. */
	cb_exec(psprintf("UPDATE chunkbatch.runs SET state = '%s', worker_pid = $2,"
					 " start_attempts = start_attempts OPERATOR(pg_catalog.+) 1, reason = NULL,"
					 " throttle_reason = NULL, throttled_since = NULL"
					 " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state IN %s"
					 " AND origin_db OPERATOR(pg_catalog.=) $3"
					 " AND origin_system OPERATOR(pg_catalog.=) $4"
					 " RETURNING " RUN_COLUMNS,
					 cb_run_state_name(CB_RUN_WAITING),
					 cb_run_states_from(CB_RUN_WAITING, CB_STATES_CLAIMABLE)),
			4, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	claimed = (SPI_processed == 1);
	if (claimed)
		run_from_row(run_id, run, mcxt);
	cb_catalog_leave(&s);
	return claimed;
}

/*
 * Load an executing run with its job, for a worker that helps it with its
 * slices; false if the run is not executing.
 */
bool
cb_catalog_load_run(int64 run_id, CbRun *run)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	bool		found;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT " RUN_COLUMNS " FROM chunkbatch.runs"
					 " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state IN %s",
					 cb_run_states_sql(CB_STATES_EXECUTING)),
			1, types, values, NULL, SPI_OK_SELECT);
	found = (SPI_processed == 1);
	if (found)
		run_from_row(run_id, run, mcxt);
	cb_catalog_leave(&s);
	return found;
}

/* The steps fixed at the run's first start (see steps.c). */
void
cb_catalog_set_steps(const CbRun *run)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, TEXTARRAYOID, INT4OID};
	Datum		values[3];
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(run->steps), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, run->steps)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = Int64GetDatum(run->run_id);
	values[1] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = Int32GetDatum(run->steps_before);
	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.runs SET steps = $2, steps_before = $3, steps_done = 0"
			" WHERE run_id OPERATOR(pg_catalog.=) $1",
			3, types, values, NULL, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

/* The per-chunk timeouts the run's worker applies (0: none). */
void
cb_catalog_set_timeouts(int64 run_id, int statement_ms, int lock_ms)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, INT4OID, INT4OID};
	Datum		values[3] = {Int64GetDatum(run_id), Int32GetDatum(statement_ms),
	Int32GetDatum(lock_ms)};

	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.runs SET"
			" statement_timeout = CASE WHEN $2 OPERATOR(pg_catalog.>) 0 THEN"
			"   pg_catalog.make_interval(secs => $2 OPERATOR(pg_catalog./) 1000.0) END,"
			" lock_timeout = CASE WHEN $3 OPERATOR(pg_catalog.>) 0 THEN"
			"   pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0) END"
			" WHERE run_id OPERATOR(pg_catalog.=) $1",
			3, types, values, NULL, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

/* A step completed: written in the step's (last) transaction. */
void
cb_catalog_step_done(int64 run_id, int32 steps_done)
{
	CbAsOwner	s;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(run_id), Int32GetDatum(steps_done)};

	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.runs SET steps_done = $2, start_attempts = 0"
			" WHERE run_id OPERATOR(pg_catalog.=) $1",
			2, types, values, NULL, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

/* The run holds its group and begins its first chunk. */
void
cb_catalog_mark_started(int64 run_id)
{
	Assert(cb_run_transition_ok(CB_RUN_RUNNING, CB_STATE(CB_RUN_WAITING)));
	(void) cb_exec_id(psprintf("UPDATE chunkbatch.runs SET state = '%s',"
							   " group_wait_ms = CASE WHEN started_at IS NULL THEN"
							   "   COALESCE(extract(epoch FROM pg_catalog.clock_timestamp()"
							   "     OPERATOR(pg_catalog.-) waiting_since)::float8"
							   "     OPERATOR(pg_catalog.*) 1000, 0) ELSE group_wait_ms END,"
							   " started_at = COALESCE(started_at, pg_catalog.clock_timestamp())"
							   " WHERE run_id OPERATOR(pg_catalog.=) $1",
							   cb_run_state_name(CB_RUN_RUNNING)),
					  run_id, SPI_OK_UPDATE);
}

/*
 * The checkpoint of a slice (see cb_catalog_checkpoint: the same values,
 * the last one replaced by the slice's number), in its slice's row: the
 * run's row is not written (but by the first chunk of the run's own
 * worker), so that slices never wait for each other.  The last chunk of a
 * slice marks it done.  *slice_end: the slice's end, as committed.
 */
static TimestampTz
slice_checkpoint(const CbRun *run, Datum *values, char *nulls, char **slice_end)
{
	static SPIPlanPtr plan = NULL;
	CbAsOwner	s;
	Oid			types[13] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID,
	FLOAT8OID, FLOAT8OID, BOOLOID, INT4OID, INT8OID, INT8OID, INT4OID, BOOLOID};
	Datum		v[13];
	char		n[13];
	MemoryContext mcxt = CurrentMemoryContext;
	TimestampTz altered_at;

	memcpy(v, values, sizeof(Datum) * 12);
	memcpy(n, nulls, 12);
	v[11] = Int32GetDatum(run->slice_no);
	v[12] = BoolGetDatum(run->start_attempts > 0);
	n[11] = n[12] = ' ';
	cb_catalog_enter(&s);
	/*
	 * The run's start_attempts counts the starts of its own worker without a
	 * chunk: that worker's first chunk sets it back to 0 (run_attempts > 0).
	 */
	cb_exec_saved(&plan,
				  "WITH z AS (UPDATE chunkbatch.runs SET start_attempts = 0"
				  "   WHERE run_id OPERATOR(pg_catalog.=) $1 AND $13"
				  "   AND start_attempts OPERATOR(pg_catalog.<>) 0)"
				  " UPDATE chunkbatch.slices s SET cursor = $2,"
				  " rows_done = $3, chunks_done = $4, batch_size = $5,"
				  " avg_chunk_ms = $6, max_chunk_ms = $7, retries = $9,"
				  " dead_letters = $10, lock_waiters_seen = $11,"
				  " last_chunk_at = pg_catalog.clock_timestamp(),"
				  " state = CASE WHEN $8 THEN 'done' ELSE s.state END,"
				  " finished_at = CASE WHEN $8 THEN pg_catalog.clock_timestamp() END"
				  " FROM chunkbatch.runs r, chunkbatch.jobs j"
				  " WHERE s.run_id OPERATOR(pg_catalog.=) $1"
				  " AND s.slice_no OPERATOR(pg_catalog.=) $12"
				  " AND r.run_id OPERATOR(pg_catalog.=) $1"
				  " AND j.job_id OPERATOR(pg_catalog.=) r.job_id"
				  " RETURNING COALESCE(j.altered_at, j.created_at), s.range_last",
				  13, types, v, n, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "could not write checkpoint of slice %d of run %lld",
			 run->slice_no, (long long) run->run_id);
	altered_at = DatumGetTimestampTz(col_datum(0, 1));
	*slice_end = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (*slice_end != NULL)
		*slice_end = MemoryContextStrdup(mcxt, *slice_end);
	cb_catalog_leave(&s);
	return altered_at;
}

/*
 * Write the checkpoint in the chunk's own transaction.  When the chunk
 * was the run's last, the run succeeds in the same transaction.
 */
TimestampTz
cb_catalog_checkpoint(const CbRun *run, CbCheckpoint *cp)
{
	CbAsOwner	s;
	Oid			types[12] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT4OID,
	FLOAT8OID, FLOAT8OID, BOOLOID, INT4OID, INT8OID, INT8OID, FLOAT8OID};
	Datum		values[12];
	char		nulls[12] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;
	TimestampTz altered_at;

	values[0] = Int64GetDatum(run->run_id);
	values[1] = cp->cursor ? CStringGetTextDatum(cp->cursor) : (Datum) 0;
	nulls[1] = cp->cursor ? ' ' : 'n';
	values[2] = Int64GetDatum(cp->rows_done);
	values[3] = Int64GetDatum(cp->chunks_done);
	values[4] = Int32GetDatum(cp->batch_size);
	values[5] = Float8GetDatum(cp->avg_chunk_ms);
	values[6] = Float8GetDatum(cp->max_chunk_ms);
	values[7] = BoolGetDatum(cp->done);
	values[8] = Int32GetDatum(cp->retries);
	values[9] = Int64GetDatum(cp->dead_letters);
	values[10] = Int64GetDatum(cp->lock_waiters_seen);
	values[11] = Float8GetDatum(cp->last_chunk_ms);
	if (run->slice_no >= 0)
		return slice_checkpoint(run, values, nulls, &cp->slice_end);

	cb_catalog_enter(&s);
	if (checkpoint_plan == NULL)
	{
		SPIPlanPtr	plan;

		Assert(cb_run_transition_ok(CB_RUN_SUCCEEDED, CB_STATES_EXECUTING));
		plan = SPI_prepare(psprintf("UPDATE chunkbatch.runs r SET cursor = $2,"
									" rows_done = $3, chunks_done = $4, batch_size = $5,"
									" avg_chunk_ms = $6, max_chunk_ms = $7, retries = $9,"
									" dead_letters = $10, lock_waiters_seen = $11,"
									" start_attempts = 0,"
									" last_chunk_at = pg_catalog.clock_timestamp(),"
		/* the last 8 chunk durations, for the status view's sparkline */
									" recent_chunk_ms = CASE WHEN $12 OPERATOR(pg_catalog.>=) 0"
									"   THEN (SELECT a[GREATEST(pg_catalog.cardinality(a)"
									"     OPERATOR(pg_catalog.-) 7, 1):]"
									"     FROM (SELECT pg_catalog.array_append(COALESCE(r.recent_chunk_ms,"
									"       '{}'), $12::real) AS a) x)"
									"   ELSE r.recent_chunk_ms END,"
									" state = CASE WHEN $8 THEN '%s' ELSE r.state END,"
									" finished_at = CASE WHEN $8 THEN pg_catalog.clock_timestamp() END,"
									" worker_pid = CASE WHEN $8 THEN NULL ELSE r.worker_pid END"
									" FROM chunkbatch.jobs j"
									" WHERE r.run_id OPERATOR(pg_catalog.=) $1"
									" AND j.job_id OPERATOR(pg_catalog.=) r.job_id"
									" RETURNING COALESCE(j.altered_at, j.created_at)",
									cb_run_state_name(CB_RUN_SUCCEEDED)),
						   12, types);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare checkpoint statement: %s",
				 SPI_result_code_string(SPI_result));
		checkpoint_plan = plan;
	}
	rc = SPI_execute_plan(checkpoint_plan, values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not write checkpoint of run %lld: %s",
			 (long long) run->run_id, SPI_result_code_string(rc));
	altered_at = DatumGetTimestampTz(col_datum(0, 1));
	if (cp->done)
		catalog_notify(run->run_id, cb_run_state_name(CB_RUN_SUCCEEDED), NULL);
	cb_catalog_leave(&s);
	return altered_at;
}

/* Re-read a job's settings, for a running run (alter_job takes effect). */
void
cb_catalog_reload_job(CbJob *job)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job->job_id)};

	cb_catalog_enter(&s);
	cb_exec(job_select("WHERE job_id OPERATOR(pg_catalog.=) $1"),
			1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		CbJob		fresh;

		job_from_row(&fresh, mcxt);
		/*
		 * Its statements, key type, range, group and on_error stay as it
		 * began, and so does its owner: the identity the worker runs as
		 * (REASSIGN OWNED takes effect at the next run).
		 */
		fresh.owner = job->owner;
		fresh.owner_name = job->owner_name;
		fresh.chunk_sql = job->chunk_sql;
		fresh.cursor_type = job->cursor_type;
		fresh.lock_group = job->lock_group;
		fresh.search_path = job->search_path;
		fresh.keys_sql = job->keys_sql;
		fresh.isolate = job->isolate;
		fresh.range_table = job->range_table;
		fresh.range_key = job->range_key;
		fresh.range_filter = job->range_filter;
		*job = fresh;
	}
	cb_catalog_leave(&s);
}

/*
 * The run waits before its next chunk (reason) or goes on (NULL).  Returns
 * its job's altered_at (or created_at), so that a run held by a throttle
 * notices alter_job.
 */
TimestampTz
cb_catalog_set_throttled(int64 run_id, const char *reason, double throttled_ms)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, TEXTOID, FLOAT8OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	TimestampTz altered_at = 0;

	values[0] = Int64GetDatum(run_id);
	values[1] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[1] = reason ? ' ' : 'n';
	values[2] = Float8GetDatum(throttled_ms);
	cb_catalog_enter(&s);
	Assert(cb_run_transition_ok(CB_RUN_THROTTLED, CB_STATES_EXECUTING));
	cb_exec(psprintf("UPDATE chunkbatch.runs r SET"
					 " state = CASE WHEN $2 IS NULL THEN '%s' ELSE '%s' END,"
					 " throttle_reason = $2,"
					 " throttled_since = CASE WHEN $2 IS NULL THEN NULL"
					 "   ELSE COALESCE(r.throttled_since, pg_catalog.clock_timestamp()) END,"
					 " throttled_ms = r.throttled_ms OPERATOR(pg_catalog.+) $3"
					 " FROM chunkbatch.jobs j"
					 " WHERE r.run_id OPERATOR(pg_catalog.=) $1"
					 " AND j.job_id OPERATOR(pg_catalog.=) r.job_id"
					 " RETURNING COALESCE(j.altered_at, j.created_at)",
					 cb_run_state_name(CB_RUN_RUNNING),
					 cb_run_state_name(CB_RUN_THROTTLED)),
			3, types, values, nulls, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 1)
		altered_at = DatumGetTimestampTz(col_datum(0, 1));
	cb_catalog_leave(&s);
	return altered_at;
}

/* Record the estimate of the run's total rows (count_sql). */
void
cb_catalog_set_estimate(int64 run_id, int64 total)
{
	CbAsOwner	s;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(run_id), Int64GetDatum(total)};

	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.runs SET total_estimate = $2"
			" WHERE run_id OPERATOR(pg_catalog.=) $1",
			2, types, values, NULL, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

/*
 * Record the key span of a filtered range-mode run (cb_range_find_span),
 * unless an alter_job committed since the worker read the job changed its
 * filter or statement: the span was found with the old ones, and the run
 * goes on over the whole key.  The job row is locked (FOR SHARE) until
 * the span commits, so such an alter_job either came first and is seen
 * here, or waits and then drops the span (cb_catalog_clear_spans).
 */
bool
cb_catalog_set_span(const CbRun *run, const char *first, const char *last)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		current;

	cb_catalog_enter(&s);
	values[0] = Int64GetDatum(run->job.job_id);
	values[1] = CStringGetTextDatum(run->job.range_filter);
	values[2] = CStringGetTextDatum(run->job.chunk_sql);
	cb_exec("SELECT FROM chunkbatch.jobs WHERE job_id OPERATOR(pg_catalog.=) $1"
			" AND range_filter OPERATOR(pg_catalog.=) $2"
			" AND chunk_sql OPERATOR(pg_catalog.=) $3 FOR SHARE",
			3, types, values, NULL, SPI_OK_SELECT);
	current = (SPI_processed == 1);
	if (current)
	{
		values[0] = Int64GetDatum(run->run_id);
		values[1] = CStringGetTextDatum(first);
		values[2] = CStringGetTextDatum(last);
		cb_exec("UPDATE chunkbatch.runs SET range_first = $2, range_last = $3"
				" WHERE run_id OPERATOR(pg_catalog.=) $1",
				3, types, values, NULL, SPI_OK_UPDATE);
	}
	cb_catalog_leave(&s);
	return current;
}

/*
 * The job's range_filter or statement changed: the spans of its runs that
 * are not over (or may be resumed) no longer bound what they must process;
 * from their next start they go on over the whole key.  Returns true if
 * one of them has slices (whose bounds come from the old ones).
 */
bool
cb_catalog_clear_spans(int64 job_id)
{
	CbAsOwner	s;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		sliced = false;
	uint64		i;

	cb_catalog_enter(&s);
	/*
	 * Every such run, with a span or not: under REPEATABLE READ a span
	 * recorded after this transaction's snapshot then makes it fail with a
	 * serialization error instead of being missed.
	 */
	cb_exec(psprintf("UPDATE chunkbatch.runs r SET range_first = NULL, range_last = NULL"
					 " WHERE job_id OPERATOR(pg_catalog.=) $1 AND state IN %s"
					 " RETURNING EXISTS (SELECT 1 FROM chunkbatch.slices s"
					 "   WHERE s.run_id OPERATOR(pg_catalog.=) r.run_id)",
					 cb_run_states_sql(CB_STATES_LIVE | CB_STATES_RESUMABLE)),
			1, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	for (i = 0; i < SPI_processed && !sliced; i++)
		sliced = DatumGetBool(col_datum(i, 1));
	cb_catalog_leave(&s);
	return sliced;
}

/*
 * Is any standby further behind than the limits (0 / NULL: no limit)?
 * A streaming standby that has caught up shows a NULL replay_lag: 0.
 * Returns the reason, or NULL.
 */
char *
cb_catalog_replica_lag_exceeded(double max_lag_ms, int64 max_lag_bytes)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[2] = {FLOAT8OID, INT8OID};
	Datum		values[2] = {Float8GetDatum(max_lag_ms), Int64GetDatum(max_lag_bytes)};
	char	   *reason = NULL;

	cb_catalog_enter(&s);
	cb_exec("SELECT pg_catalog.format('replica lag: standby %s is %s s and %s bytes behind',"
			"   x.application_name,"
			"   pg_catalog.round((x.lag_ms OPERATOR(pg_catalog./) 1000)::numeric, 1),"
			"   x.lag_bytes)"
			" FROM (SELECT r.application_name,"
			"   extract(epoch FROM COALESCE(r.replay_lag, '0'::interval))::float8"
			"     OPERATOR(pg_catalog.*) 1000 AS lag_ms,"
			"   COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),"
			"     r.replay_lsn), 0)::bigint AS lag_bytes"
			"   FROM pg_catalog.pg_stat_replication r) x"
			" WHERE ($1 OPERATOR(pg_catalog.>) 0 AND x.lag_ms OPERATOR(pg_catalog.>) $1)"
			"   OR ($2 OPERATOR(pg_catalog.>) 0 AND x.lag_bytes OPERATOR(pg_catalog.>) $2)"
			" LIMIT 1",
			2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
		reason = MemoryContextStrdup(mcxt, SPI_getvalue(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1));
	cb_catalog_leave(&s);
	return reason;
}

/*
 * Record how a run ended other than by success: failed, cancelled, skipped,
 * stopped (with a reason), paused or interrupted (both resumable, no
 * NOTIFY).  The checkpoint is kept.
 */
void
cb_catalog_finish_run(const CbRun *run, CbRunState state, ErrorData *edata,
				   const char *reason)
{
	CbAsOwner	s;
	Oid			types[8] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID,
	INT4OID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', 'n', 'n', 'n', 'n', ' ', 'n'};
	const char *sqlstate = NULL;
	CbRunStateSet resumes = CB_STATE(CB_RUN_INTERRUPTED) | CB_STATE(CB_RUN_PAUSED);
	bool		resting = (CB_STATE(state) & resumes) != 0;

	/* The worker's run is waiting for its group, or executing. */
	Assert(cb_run_transition_ok(state, CB_STATES_EXECUTING | CB_STATE(CB_RUN_WAITING)) ||
		   state == CB_RUN_CANCELLED);
	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(cb_run_state_name(state));
	values[6] = Int32GetDatum(run->retries);
	if (edata != NULL)
	{
		sqlstate = unpack_sql_state(edata->sqlerrcode);
		values[2] = CStringGetTextDatum(sqlstate);
		nulls[2] = ' ';
		values[3] = CStringGetTextDatum(edata->message ? edata->message : "");
		nulls[3] = ' ';
		if (edata->detail)
		{
			values[4] = CStringGetTextDatum(edata->detail);
			nulls[4] = ' ';
		}
		values[5] = Int64GetDatum(run->chunks_done + 1);
		nulls[5] = ' ';
	}
	if (reason != NULL)
	{
		values[7] = CStringGetTextDatum(reason);
		nulls[7] = ' ';
	}

	cb_catalog_enter(&s);
	cb_exec(psprintf("UPDATE chunkbatch.runs r SET state = $2,"
					 " finished_at = CASE WHEN $2 IN %s THEN NULL"
					 " ELSE pg_catalog.clock_timestamp() END,"
					 " worker_pid = NULL, sqlstate = $3, error = $4, error_detail = $5,"
					 " error_chunk = $6, retries = COALESCE(t.retries, $7), reason = $8,"
					 " start_attempts = CASE WHEN $2 IN %s THEN 0"
					 " ELSE start_attempts END,"
	/* a run with slices: the sums of its slices */
					 " rows_done = COALESCE(t.rows_done, r.rows_done),"
					 " chunks_done = COALESCE(t.chunks_done, r.chunks_done),"
					 " avg_chunk_ms = COALESCE(t.avg_chunk_ms, r.avg_chunk_ms),"
					 " max_chunk_ms = COALESCE(t.max_chunk_ms, r.max_chunk_ms),"
					 " dead_letters = COALESCE(t.dead_letters, r.dead_letters),"
					 " lock_waiters_seen = COALESCE(t.lock_waiters_seen, r.lock_waiters_seen),"
					 " last_chunk_at = COALESCE(t.last_chunk_at, r.last_chunk_at)"
					 " FROM (SELECT pg_catalog.sum(s.rows_done)::bigint AS rows_done,"
					 "   pg_catalog.sum(s.chunks_done)::bigint AS chunks_done,"
					 "   pg_catalog.sum(s.avg_chunk_ms OPERATOR(pg_catalog.*) s.chunks_done)"
					 "     OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(s.chunks_done), 0) AS avg_chunk_ms,"
					 "   pg_catalog.max(s.max_chunk_ms) AS max_chunk_ms,"
					 "   pg_catalog.sum(s.dead_letters)::bigint AS dead_letters,"
					 "   pg_catalog.sum(s.lock_waiters_seen)::bigint AS lock_waiters_seen,"
					 "   pg_catalog.sum(s.retries)::integer AS retries,"
					 "   pg_catalog.max(s.last_chunk_at) AS last_chunk_at"
					 "   FROM chunkbatch.slices s WHERE s.run_id OPERATOR(pg_catalog.=) $1) t"
					 " WHERE r.run_id OPERATOR(pg_catalog.=) $1",
					 cb_run_states_sql(resumes), cb_run_states_sql(resumes)),
			8, types, values, nulls, SPI_OK_UPDATE);
	if (!resting)
		catalog_notify(run->run_id, cb_run_state_name(state), sqlstate);
	cb_catalog_leave(&s);
}

/*
 * Move a run without a worker from a state of "from" to "to" (a known
 * transition); false if it was in none of them.
 */
static bool
run_transition(int64 run_id, CbRunState to, CbRunStateSet from)
{
	return cb_exec_id(psprintf("UPDATE chunkbatch.runs SET state = '%s', worker_pid = NULL"
							   " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state IN %s",
							   cb_run_state_name(to), cb_run_states_from(to, from)),
					  run_id, SPI_OK_UPDATE) == 1;
}

/* Pause a run that no worker executes; false if it is not waiting to run. */
bool
cb_catalog_pause_unowned(int64 run_id)
{
	return run_transition(run_id, CB_RUN_PAUSED, CB_STATES_CLAIMABLE);
}

/*
 * Lock the job of a run against alter_job() until the end of the
 * transaction, before the run's own row: alter_job() locks the job first
 * and then the job's runs (cb_catalog_clear_spans).
 */
void
cb_catalog_lock_job_of_run(int64 run_id)
{
	CbAsOwner	s;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};

	cb_catalog_enter(&s);
	cb_exec("SELECT FROM chunkbatch.jobs j WHERE j.job_id OPERATOR(pg_catalog.=)"
			" (SELECT r.job_id FROM chunkbatch.runs r"
			"  WHERE r.run_id OPERATOR(pg_catalog.=) $1) FOR SHARE OF j",
			1, types, values, NULL, SPI_OK_SELECT);
	cb_catalog_leave(&s);
}

/*
 * Has the job of a begun run (one with a checkpoint, planned steps or
 * slices) changed what the run's checkpoints hold since it was queued?
 * alter_job() refuses such a change only while the job has live runs, and
 * a failed run can be resumed later.  (A run without any of these starts
 * over under the new kind: cb_catalog_resume_run drops its span.)  Locks
 * the job's row against an alter_job() until the end of the transaction;
 * *was and *now name the two kinds (NULL: repeat mode).
 */
bool
cb_catalog_run_kind_changed(int64 run_id, char **was, char **now)
{
	CbAsOwner	s;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	MemoryContext mcxt = CurrentMemoryContext;
	bool		changed = false;

	cb_catalog_enter(&s);
	cb_exec("SELECT r.cursor_kind, k.now,"
			" r.cursor_kind IS DISTINCT FROM k.now"
			" AND (r.cursor IS NOT NULL OR r.steps IS NOT NULL"
			"      OR EXISTS (SELECT 1 FROM chunkbatch.slices s"
			"                 WHERE s.run_id OPERATOR(pg_catalog.=) r.run_id))"
			" FROM chunkbatch.runs r JOIN chunkbatch.jobs j"
			"   ON j.job_id OPERATOR(pg_catalog.=) r.job_id,"
			" LATERAL (SELECT " CURSOR_KIND_SQL " AS now) k"
			" WHERE r.run_id OPERATOR(pg_catalog.=) $1 FOR SHARE OF j",
			1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		char	   *w = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *n = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		changed = DatumGetBool(col_datum(0, 3));
		*was = w ? MemoryContextStrdup(mcxt, w) : NULL;
		*now = n ? MemoryContextStrdup(mcxt, n) : NULL;
	}
	cb_catalog_leave(&s);
	return changed;
}

/*
 * Queue a paused, failed or stopped run again; it continues from its
 * checkpoint.  False if the run is in another state or its job is gone.
 * The run takes its job's cursor kind, and forgets a span found under
 * another one.
 */
bool
cb_catalog_resume_run(int64 run_id)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, OIDOID, INT8OID};
	Datum		values[3] = {Int64GetDatum(run_id), ObjectIdGetDatum(MyDatabaseId),
	Int64GetDatum((int64) GetSystemIdentifier())};
	bool		done;

	/* A run copied from another database becomes this database's own. */
	cb_catalog_enter(&s);
	cb_exec(psprintf("UPDATE chunkbatch.runs r SET state = '%s', finished_at = NULL,"
					 " sqlstate = NULL, error = NULL, error_detail = NULL,"
					 " error_chunk = NULL, reason = NULL, start_attempts = 0,"
					 " waiting_since = NULL, worker_pid = NULL,"
					 " origin_db = $2, origin_system = $3, cursor_kind = k.now,"
					 " range_first = CASE WHEN r.cursor_kind IS NOT DISTINCT FROM k.now"
					 "   THEN r.range_first END,"
					 " range_last = CASE WHEN r.cursor_kind IS NOT DISTINCT FROM k.now"
					 "   THEN r.range_last END"
					 " FROM chunkbatch.jobs j, LATERAL (SELECT %s AS now) k"
					 " WHERE r.run_id OPERATOR(pg_catalog.=) $1 AND r.state IN %s"
					 " AND j.job_id OPERATOR(pg_catalog.=) r.job_id",
					 cb_run_state_name(CB_RUN_QUEUED), CURSOR_KIND_SQL,
					 cb_run_states_from(CB_RUN_QUEUED, CB_STATES_RESUMABLE)),
			3, types, values, NULL, SPI_OK_UPDATE);
	done = (SPI_processed == 1);
	cb_catalog_leave(&s);
	return done;
}

/* Record a key that a run with on_error => 'isolate' could not process. */
void
cb_catalog_dead_letter(const CbRun *run, const char *key, ErrorData *edata)
{
	CbAsOwner	s;
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];

	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	values[3] = CStringGetTextDatum(edata->message ? edata->message : "");
	cb_catalog_enter(&s);
	cb_exec("INSERT INTO chunkbatch.dead_letters (run_id, job_name, owner,"
			" owner_oid, key, sqlstate, error)"
			" SELECT r.run_id, r.job_name, r.owner, r.owner_oid, $2, $3, $4"
			" FROM chunkbatch.runs r WHERE r.run_id OPERATOR(pg_catalog.=) $1",
			4, types, values, NULL, SPI_OK_INSERT);
	cb_catalog_leave(&s);
}

/* Delete finished runs older than the retention; returns how many. */
uint64
cb_catalog_prune_history(int retention_min)
{
	CbAsOwner	s;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(retention_min)};
	uint64		n;

	cb_catalog_enter(&s);
	cb_exec(psprintf("DELETE FROM chunkbatch.runs WHERE run_id IN ("
					 " SELECT run_id FROM chunkbatch.runs WHERE state IN %s"
					 " AND finished_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
					 "     OPERATOR(pg_catalog.-) pg_catalog.make_interval(mins => $1))"
					 " LIMIT 10000)",
					 cb_run_states_sql(CB_STATES_PRUNABLE)),
			1, types, values, NULL, SPI_OK_DELETE);
	n = SPI_processed;
	cb_catalog_leave(&s);
	return n;
}

/* ----------------------------------------------------------------
 * Runs, from the scheduler
 * ----------------------------------------------------------------
 */

/* Runs in any of the given states, oldest first. */
List *
cb_catalog_runs_in_states(CbRunStateSet states)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT run_id, owner_oid, job_name FROM chunkbatch.runs"
					 " WHERE state IN %s ORDER BY run_id",
					 cb_run_states_sql(states)),
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		CbRunRef   *ref = palloc(sizeof(CbRunRef));

		ref->run_id = DatumGetInt64(col_datum(i, 1));
		ref->owner = DatumGetObjectId(col_datum(i, 2));
		ref->job_name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		result = lappend(result, ref);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return result;
}

/*
 * The scheduler's view of the queue: the oldest "per_owner" queued or
 * active runs of each owner, oldest first, each with its group, its job's
 * group policy, and whether another run is ahead of it in its group: its
 * group's queue is in run_id order, except that runs queued in one
 * transaction (the same queued_with) go by priority, higher first.  The owners are found by a skip scan of runs_owner_queue_idx and
 * each owner's runs by a range scan of it, so the cost does not grow with
 * the length of the queue or the number of groups.  Runs copied from
 * another database are left out: they are not ours to start.
 */
List *
cb_catalog_run_queue(int per_owner)
{
	static SPIPlanPtr plan = NULL;
	static char *sql = NULL;
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;
	Oid			types[3] = {INT4OID, OIDOID, INT8OID};
	Datum		values[3] = {Int32GetDatum(per_owner), ObjectIdGetDatum(MyDatabaseId),
	Int64GetDatum((int64) GetSystemIdentifier())};

	if (sql == NULL)
	{
		char	   *active = cb_run_states_sql(CB_STATES_ACTIVE);

		sql = MemoryContextStrdup(TopMemoryContext,
								  psprintf("WITH RECURSIVE o(owner_oid) AS ("
										   "   (SELECT owner_oid FROM chunkbatch.runs WHERE state IN %s"
										   "     ORDER BY owner_oid LIMIT 1)"
										   "   UNION ALL"
										   "   SELECT (SELECT r.owner_oid FROM chunkbatch.runs r"
										   "     WHERE r.state IN %s"
										   "       AND r.owner_oid OPERATOR(pg_catalog.>) o.owner_oid"
										   "     ORDER BY r.owner_oid LIMIT 1)"
										   "   FROM o WHERE o.owner_oid IS NOT NULL)"
										   " SELECT r.run_id, r.owner_oid, r.job_name, r.lock_group, r.state,"
										   "   j.on_group_busy OPERATOR(pg_catalog.=) 'skip'"
										   "   AND r.chunks_done OPERATOR(pg_catalog.=) 0"
										   "   AND NOT EXISTS (SELECT FROM chunkbatch.slices s"
										   "     WHERE s.run_id OPERATOR(pg_catalog.=) r.run_id),"
										   "   j.group_wait_timeout IS NOT NULL AND"
										   "   r.chunks_done OPERATOR(pg_catalog.=) 0 AND"
										   "   NOT EXISTS (SELECT FROM chunkbatch.slices s"
										   "     WHERE s.run_id OPERATOR(pg_catalog.=) r.run_id) AND"
										   "   (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)"
										   "    COALESCE(r.waiting_since, r.queued_at))"
										   "   OPERATOR(pg_catalog.>) j.group_wait_timeout,"
										   "   (SELECT e.run_id FROM chunkbatch.runs e"
										   "     WHERE e.lock_group OPERATOR(pg_catalog.=) r.lock_group"
										   "       AND e.state IN %s"
										   "     ORDER BY e.lock_group,"
										   "       COALESCE(e.queued_with, e.run_id), e.priority DESC,"
										   "       e.run_id LIMIT 1)"
										   "   OPERATOR(pg_catalog.<>) r.run_id,"
		/* a run pg_cron queued, in its tick's first second; not yet grouped */
										   "   r.trigger OPERATOR(pg_catalog.~~) 'pg_cron%%'"
										   "   AND r.started_at IS NULL AND r.state OPERATOR(pg_catalog.=) 'queued'"
										   "   AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.<)"
										   "       (r.queued_at OPERATOR(pg_catalog.+) '%d ms'::pg_catalog.interval),"
										   "   r.trigger OPERATOR(pg_catalog.~~) 'pg_cron%%'"
										   "   AND r.started_at IS NULL AND r.state OPERATOR(pg_catalog.=) 'queued'"
										   "   AND r.queued_with IS NULL"
										   " FROM o CROSS JOIN LATERAL"
										   "   (SELECT * FROM chunkbatch.runs q"
										   "     WHERE q.owner_oid OPERATOR(pg_catalog.=) o.owner_oid"
										   "       AND q.state IN %s"
										   "     ORDER BY q.owner_oid, q.run_id LIMIT $1) r"
										   " LEFT JOIN chunkbatch.jobs j ON j.job_id OPERATOR(pg_catalog.=) r.job_id"
										   " WHERE o.owner_oid IS NOT NULL"
										   "   AND r.origin_db OPERATOR(pg_catalog.=) $2"
										   "   AND r.origin_system OPERATOR(pg_catalog.=) $3"
										   " ORDER BY r.run_id",
										   active, active, active, CB_TICK_GRACE_MS, active));
	}
	cb_catalog_enter(&s);
	cb_exec_saved(&plan, sql, 3, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		CbRunRef   *ref = palloc0(sizeof(CbRunRef));
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ref->run_id = DatumGetInt64(col_datum(i, 1));
		ref->owner = DatumGetObjectId(col_datum(i, 2));
		ref->job_name = SPI_getvalue(tup, desc, 3);
		ref->lock_group = SPI_getvalue(tup, desc, 4);
		ref->state = SPI_getvalue(tup, desc, 5);
		ref->skip_if_busy = !col_isnull(i, 6) && DatumGetBool(col_datum(i, 6));
		ref->wait_expired = !col_isnull(i, 7) && DatumGetBool(col_datum(i, 7));
		ref->behind_older = !col_isnull(i, 8) && DatumGetBool(col_datum(i, 8));
		ref->tick_young = DatumGetBool(col_datum(i, 9));
		ref->tick_ungrouped = DatumGetBool(col_datum(i, 10));
		result = lappend(result, ref);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return result;
}

/*
 * The runs of a group that pg_cron queued in one tick (the same minute)
 * and that have not started are queued together, like runs queued in one
 * transaction: they carry the first one's run_id in queued_with, and start
 * by priority.
 */
void
cb_catalog_group_tick(int64 run_id)
{
	(void) cb_exec_id("WITH me AS (SELECT lock_group,"
					  "   pg_catalog.date_trunc('minute', queued_at) AS tick"
					  "   FROM chunkbatch.runs WHERE run_id OPERATOR(pg_catalog.=) $1),"
					  " t AS (SELECT r.run_id FROM chunkbatch.runs r, me"
					  "   WHERE r.lock_group OPERATOR(pg_catalog.=) me.lock_group"
					  "     AND r.state OPERATOR(pg_catalog.=) 'queued' AND r.started_at IS NULL"
					  "     AND r.trigger OPERATOR(pg_catalog.~~) 'pg_cron%'"
					  "     AND pg_catalog.date_trunc('minute', r.queued_at) OPERATOR(pg_catalog.=) me.tick)"
					  " UPDATE chunkbatch.runs r SET queued_with = (SELECT pg_catalog.min(run_id) FROM t)"
					  " FROM t WHERE r.run_id OPERATOR(pg_catalog.=) t.run_id",
					  run_id, SPI_OK_UPDATE);
}

/* A queued run whose group is busy waits for it (no worker yet). */
void
cb_catalog_mark_waiting(int64 run_id)
{
	(void) cb_exec_id(psprintf("UPDATE chunkbatch.runs SET state = '%s',"
							   " waiting_since = COALESCE(waiting_since, pg_catalog.clock_timestamp())"
							   " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state IN %s",
							   cb_run_state_name(CB_RUN_WAITING),
							   cb_run_states_from(CB_RUN_WAITING, CB_STATES_CLAIMABLE)),
					  run_id, SPI_OK_UPDATE);
}

/* End a run that will not run: its group was busy. */
void
cb_catalog_skip_run(int64 run_id, const char *reason)
{
	(void) end_without_worker(run_id, CB_RUN_SKIPPED, CB_STATES_CLAIMABLE, reason,
							  NULL, NULL);
}

/* A run whose worker is gone becomes 'interrupted'; it will be resumed. */
bool
cb_catalog_mark_interrupted(int64 run_id)
{
	return run_transition(run_id, CB_RUN_INTERRUPTED, CB_STATES_EXECUTING);
}

/* A run that could not start at all fails with the given reason. */
void
cb_catalog_fail_unstarted(int64 run_id, int sqlerrcode, const char *message)
{
	(void) end_without_worker(run_id, CB_RUN_FAILED, CB_STATES_ACTIVE, NULL,
							  unpack_sql_state(sqlerrcode), message);
}

/*
 * Unfinished runs that were queued in another database or cluster (copied
 * by CREATE DATABASE ... TEMPLATE, restored from a dump, or carried over by
 * pg_upgrade) rest as paused here: nobody queued them in this database.
 * Done for all runs (run_id 0) by the scheduler when it starts and every
 * minute, and for their run by cancel(), pause() and resume() first, so
 * that they never act on a copy as if it ran here.  Returns how many.
 */
uint64
cb_catalog_pause_copies(int64 run_id)
{
	CbAsOwner	s;
	Oid			types[3] = {OIDOID, INT8OID, INT8OID};
	Datum		values[3] = {ObjectIdGetDatum(MyDatabaseId),
		Int64GetDatum((int64) GetSystemIdentifier()), Int64GetDatum(run_id)};
	uint64		n;

	cb_catalog_enter(&s);
	cb_exec(psprintf("UPDATE chunkbatch.runs SET state = '%s', worker_pid = NULL,"
					 " reason = pg_catalog.format('copied from database %%s of system %%s"
					 " (CREATE DATABASE ... TEMPLATE, a dump and restore, or pg_upgrade);"
					 " it runs here only once resumed', origin_db, origin_system),"
					 " throttle_reason = NULL, throttled_since = NULL"
					 " WHERE state IN %s"
					 " AND (origin_db OPERATOR(pg_catalog.<>) $1"
					 "      OR origin_system OPERATOR(pg_catalog.<>) $2)"
					 " AND ($3 OPERATOR(pg_catalog.=) 0 OR run_id OPERATOR(pg_catalog.=) $3)",
					 cb_run_state_name(CB_RUN_PAUSED),
					 cb_run_states_from(CB_RUN_PAUSED, CB_STATES_ACTIVE)),
			3, types, values, NULL, SPI_OK_UPDATE);
	n = SPI_processed;
	cb_catalog_leave(&s);
	return n;
}

/*
 * Rows restored from a dump where their owner role did not exist have
 * owner_oid 0.  Once a role of the recorded name exists, link them (jobs,
 * runs and dead letters) to it.  Called when such a row is used.
 */
void
cb_catalog_relink_owners(void)
{
	CbAsOwner	s;

	cb_catalog_enter(&s);
	cb_exec("WITH j AS (UPDATE chunkbatch.jobs t SET owner_oid = r.oid"
			"   FROM pg_catalog.pg_roles r WHERE t.owner_oid OPERATOR(pg_catalog.=) 0"
			"   AND r.rolname OPERATOR(pg_catalog.=) t.owner RETURNING 1),"
			" u AS (UPDATE chunkbatch.runs t SET owner_oid = r.oid"
			"   FROM pg_catalog.pg_roles r WHERE t.owner_oid OPERATOR(pg_catalog.=) 0"
			"   AND r.rolname OPERATOR(pg_catalog.=) t.owner RETURNING 1),"
			" d AS (UPDATE chunkbatch.dead_letters t SET owner_oid = r.oid"
			"   FROM pg_catalog.pg_roles r WHERE t.owner_oid OPERATOR(pg_catalog.=) 0"
			"   AND r.rolname OPERATOR(pg_catalog.=) t.owner RETURNING 1)"
			" SELECT (SELECT pg_catalog.count(*) FROM j), (SELECT pg_catalog.count(*) FROM u),"
			" (SELECT pg_catalog.count(*) FROM d)",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	cb_catalog_leave(&s);
}

/* ----------------------------------------------------------------
 * Jobs as dependents of roles and types (depend.c)
 * ----------------------------------------------------------------
 */

/* The distinct owner roles of this database's jobs. */
List *
cb_catalog_job_owners(void)
{
	CbAsOwner	s;
	List	   *result = NIL;
	uint64		i;
	MemoryContext mcxt = CurrentMemoryContext;

	cb_catalog_enter(&s);
	cb_exec("SELECT DISTINCT owner_oid FROM chunkbatch.jobs"
			" WHERE owner_oid OPERATOR(pg_catalog.<>) 0",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		result = lappend_oid(result, DatumGetObjectId(col_datum(i, 1)));
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return result;
}

/*
 * The jobs (as CbRunRef: job_id in run_id, name in job_name) owned by a
 * role (by_type false) or keyed by a type (by_type true), by name.
 */
List *
cb_catalog_jobs_depending_on(Oid oid, bool by_type)
{
	CbAsOwner	s;
	List	   *result = NIL;
	uint64		i;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(oid)};

	cb_catalog_enter(&s);
	cb_exec(by_type ?
			"SELECT job_id, job_name FROM chunkbatch.jobs"
			" WHERE cursor_type::pg_catalog.oid OPERATOR(pg_catalog.=) $1 ORDER BY job_name" :
			"SELECT job_id, job_name FROM chunkbatch.jobs"
			" WHERE owner_oid OPERATOR(pg_catalog.=) $1 ORDER BY job_name",
			1, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		CbRunRef   *ref = palloc0(sizeof(CbRunRef));

		ref->run_id = DatumGetInt64(col_datum(i, 1));
		ref->job_name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		result = lappend(result, ref);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return result;
}

/* The runs of a job that are not over yet (their ids, as int64 pointers). */
List *
cb_catalog_live_runs(int64 job_id)
{
	CbAsOwner	s;
	List	   *result = NIL;
	uint64		i;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT run_id FROM chunkbatch.runs"
					 " WHERE job_id OPERATOR(pg_catalog.=) $1 AND state IN %s ORDER BY run_id",
					 cb_run_states_sql(CB_STATES_LIVE)),
			1, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(col_datum(i, 1));
		result = lappend(result, id);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return result;
}

/*
 * REASSIGN OWNED BY from TO to: the jobs of "from", their runs and their
 * dead letters now belong to "to".
 */
void
cb_catalog_reassign_owner(Oid from, Oid to)
{
	CbAsOwner	s;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(from), ObjectIdGetDatum(to)};

	cb_catalog_enter(&s);
	cb_exec("WITH j AS (UPDATE chunkbatch.jobs SET owner_oid = $2,"
			"   owner = pg_catalog.pg_get_userbyid($2)"
			"   WHERE owner_oid OPERATOR(pg_catalog.=) $1 RETURNING 1),"
			" r AS (UPDATE chunkbatch.runs SET owner_oid = $2,"
			"   owner = pg_catalog.pg_get_userbyid($2)"
			"   WHERE owner_oid OPERATOR(pg_catalog.=) $1 RETURNING 1),"
			" d AS (UPDATE chunkbatch.dead_letters SET owner_oid = $2,"
			"   owner = pg_catalog.pg_get_userbyid($2)"
			"   WHERE owner_oid OPERATOR(pg_catalog.=) $1 RETURNING 1)"
			" SELECT (SELECT pg_catalog.count(*) FROM j), (SELECT pg_catalog.count(*) FROM r),"
			" (SELECT pg_catalog.count(*) FROM d)",
			2, types, values, NULL, SPI_OK_SELECT);
	cb_catalog_leave(&s);
}

/*
 * The owner of a lock group: the owner of its oldest job (InvalidOid if it
 * has none), with that job's name.
 */
Oid
cb_catalog_group_owner(const char *group, char **job_name)
{
	CbAsOwner	s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(group)};
	Oid			owner = InvalidOid;
	MemoryContext mcxt = CurrentMemoryContext;

	cb_catalog_enter(&s);
	cb_exec("SELECT owner_oid, job_name FROM chunkbatch.jobs"
			" WHERE lock_group OPERATOR(pg_catalog.=) $1 ORDER BY job_id LIMIT 1",
			1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		owner = DatumGetObjectId(col_datum(0, 1));
		*job_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return owner;
}

/*
 * A DBA's value of one of chunkbatch's per-role limits for one role: the
 * setting of ALTER ROLE role IN DATABASE this one SET name = value, else
 * of ALTER ROLE role SET name = value.  Returns "dflt" (the server's value)
 * if the role has neither.
 */
int
cb_catalog_role_limit(Oid role, const char *name, int dflt)
{
	CbAsOwner	s;
	Oid			types[3] = {OIDOID, OIDOID, TEXTOID};
	Datum		values[3] = {ObjectIdGetDatum(role), ObjectIdGetDatum(MyDatabaseId),
	CStringGetTextDatum(name)};
	int			result = dflt;

	cb_catalog_enter(&s);
	cb_exec("SELECT pg_catalog.substr(c, pg_catalog.length($3) OPERATOR(pg_catalog.+) 2)"
			" FROM pg_catalog.pg_db_role_setting s,"
			" LATERAL pg_catalog.unnest(s.setconfig) c"
			" WHERE s.setrole OPERATOR(pg_catalog.=) $1"
			" AND s.setdatabase IN (0, $2)"
			" AND c OPERATOR(pg_catalog.^@) ($3 OPERATOR(pg_catalog.||) '=')"
			" ORDER BY s.setdatabase DESC LIMIT 1",
			3, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *end;
		long		v = strtol(value, &end, 10);

		if (*end == '\0' && end != value && v >= -1 && v <= INT_MAX)
			result = (int) v;
	}
	cb_catalog_leave(&s);
	return result;
}

/*
 * Queued or active runs of one owner in this database, counted up to
 * "limit" (the index range scan stops there).
 */
int64
cb_catalog_count_owner_active_runs(Oid owner, int64 limit)
{
	CbAsOwner	s;
	Oid			types[2] = {OIDOID, INT8OID};
	Datum		values[2] = {ObjectIdGetDatum(owner), Int64GetDatum(limit)};
	int64		n;

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT pg_catalog.count(*) FROM (SELECT 1 FROM chunkbatch.runs"
					 " WHERE owner_oid OPERATOR(pg_catalog.=) $1 AND state IN %s"
					 " LIMIT $2) s", cb_run_states_sql(CB_STATES_ACTIVE)),
			2, types, values, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	return n;
}

/*
 * Runs of this database that are queued or active, for DROP EXTENSION; the
 * table is locked first, so that no run is queued meanwhile.
 */
int64
cb_catalog_count_all_active_runs(void)
{
	CbAsOwner	s;

	cb_catalog_enter(&s);
	cb_exec("LOCK TABLE chunkbatch.runs IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, NULL, SPI_OK_UTILITY);
	cb_catalog_leave(&s);
	return count_runs(CB_STATES_ACTIVE, NULL, InvalidOid, (Datum) 0);
}

/* ----------------------------------------------------------------
 * Slices of a run with parallel > 1 (see worker.c)
 * ----------------------------------------------------------------
 */

/* Has the run been split into slices? */
bool
cb_catalog_slices_exist(int64 run_id)
{
	return cb_exec_id("SELECT 1 FROM chunkbatch.slices"
					  " WHERE run_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
					  run_id, SPI_OK_SELECT) > 0;
}

/*
 * Split the run into n slices: bounds[0] is the first key of the first
 * slice, bounds[i] the last key of slice i - 1 and the first cursor of
 * slice i; "last" is the last key of the last slice (NULL: no end).
 * False, and no slices, if the job's filter or statement changed since
 * the run's worker read them (the bounds were found with the old ones).
 */
bool
cb_catalog_slices_create(const CbRun *run, char **bounds, int n, const char *last)
{
	CbAsOwner	s;
	Oid			types[4] = {INT8OID, TEXTARRAYOID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum	   *elems = palloc(sizeof(Datum) * n);
	Oid			jtypes[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		jvalues[3];
	char		jnulls[3] = {' ', ' ', ' '};
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(bounds[i]);
	values[0] = Int64GetDatum(run->run_id);
	values[1] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = last ? CStringGetTextDatum(last) : (Datum) 0;
	nulls[2] = last ? ' ' : 'n';
	values[3] = Int32GetDatum(run->batch_size);
	cb_catalog_enter(&s);
	/* As for the span: only while the job's filter and statement are the same. */
	jvalues[0] = Int64GetDatum(run->job.job_id);
	jvalues[1] = run->job.range_filter ? CStringGetTextDatum(run->job.range_filter) : (Datum) 0;
	jnulls[1] = run->job.range_filter ? ' ' : 'n';
	jvalues[2] = CStringGetTextDatum(run->job.chunk_sql);
	cb_exec("SELECT FROM chunkbatch.jobs WHERE job_id OPERATOR(pg_catalog.=) $1"
			" AND range_filter IS NOT DISTINCT FROM $2"
			" AND chunk_sql OPERATOR(pg_catalog.=) $3 FOR SHARE",
			3, jtypes, jvalues, jnulls, SPI_OK_SELECT);
	if (SPI_processed != 1)
	{
		cb_catalog_leave(&s);
		return false;
	}
	cb_exec("INSERT INTO chunkbatch.slices (run_id, slice_no, range_first, range_last,"
			" cursor, batch_size)"
			" SELECT $1, u.i::integer OPERATOR(pg_catalog.-) 1,"
			" CASE WHEN u.i OPERATOR(pg_catalog.=) 1 THEN u.b END,"
			" COALESCE($2[u.i OPERATOR(pg_catalog.+) 1], $3),"
			" CASE WHEN u.i OPERATOR(pg_catalog.>) 1 THEN u.b END, $4"
			" FROM pg_catalog.unnest($2) WITH ORDINALITY AS u(b, i)",
			4, types, values, nulls, SPI_OK_INSERT);

	/*
	 * A new version of the run's row: an alter_job of the filter whose
	 * snapshot is older than the split (REPEATABLE READ) then fails with a
	 * serialization error when it updates the row (cb_catalog_clear_spans)
	 * instead of missing the slices.
	 */
	cb_exec("UPDATE chunkbatch.runs SET parallel = parallel"
			" WHERE run_id OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
	return true;
}

/* A resumed run: its failed slices are to be done again. */
void
cb_catalog_slices_reopen(int64 run_id)
{
	(void) cb_exec_id("UPDATE chunkbatch.slices SET state = 'pending', worker_pid = NULL,"
					  " sqlstate = NULL, error = NULL, finished_at = NULL"
					  " WHERE run_id OPERATOR(pg_catalog.=) $1 AND state = 'failed'",
					  run_id, SPI_OK_UPDATE);
}

/* Fill the fields of *slice from row "row" of a slices query (SLICE_COLUMNS). */
#define SLICE_COLUMNS \
	"s.slice_no, s.range_first, s.range_last, s.cursor, s.rows_done, s.chunks_done," \
	" s.batch_size, s.avg_chunk_ms, s.max_chunk_ms, s.retries, s.dead_letters," \
	" s.lock_waiters_seen"

static void
slice_from_row(int row, CbRun *slice, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	HeapTuple	tup = SPI_tuptable->vals[row];
	TupleDesc	desc = SPI_tuptable->tupdesc;

	slice->slice_no = DatumGetInt32(col_datum(row, 1));
	slice->range_first = SPI_getvalue(tup, desc, 2);
	slice->range_last = SPI_getvalue(tup, desc, 3);
	slice->cursor = SPI_getvalue(tup, desc, 4);
	slice->rows_done = DatumGetInt64(col_datum(row, 5));
	slice->chunks_done = DatumGetInt64(col_datum(row, 6));
	if (!col_isnull(row, 7))
		slice->batch_size = DatumGetInt32(col_datum(row, 7));
	slice->avg_chunk_ms = col_isnull(row, 8) ? 0 : DatumGetFloat8(col_datum(row, 8));
	slice->max_chunk_ms = col_isnull(row, 9) ? 0 : DatumGetFloat8(col_datum(row, 9));
	slice->retries = DatumGetInt32(col_datum(row, 10));
	slice->dead_letters = DatumGetInt64(col_datum(row, 11));
	slice->lock_waiters_seen = DatumGetInt64(col_datum(row, 12));
	MemoryContextSwitchTo(old);
}

/*
 * Take a slice of the run that no worker owns: a pending one, or a
 * running one whose lock is free (its worker died; see
 * cb_grouplock_slice_try).  The slice's lock, held from here until the
 * worker lets go of the slice, and row locks make two workers never take
 * the same slice.  Fills the slice's fields of *slice (a copy of the run,
 * strings in slice_cxt) and returns true, or returns false if there is no
 * such slice or the run no longer executes.
 */
bool
cb_catalog_slice_claim(const CbRun *run, CbRun *slice, MemoryContext slice_cxt)
{
	CbAsOwner	s;
	Oid			types[3] = {INT8OID, INT4OID, INT4OID};
	Datum		values[3];
	int32	   *candidates;
	int			n;
	int			i;
	bool		found = false;

	values[0] = Int64GetDatum(run->run_id);
	values[2] = Int32GetDatum(MyProcPid);
	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT s.slice_no FROM chunkbatch.slices s"
					 " WHERE s.run_id OPERATOR(pg_catalog.=) $1"
					 " AND s.state IN ('pending', 'running')"
					 " AND EXISTS (SELECT 1 FROM chunkbatch.runs r"
					 "   WHERE r.run_id OPERATOR(pg_catalog.=) $1 AND r.state IN %s)"
					 " ORDER BY s.state = 'running', s.slice_no",
					 cb_run_states_sql(CB_STATES_EXECUTING)),
			1, types, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	candidates = palloc(sizeof(int32) * Max(n, 1));
	for (i = 0; i < n; i++)
		candidates[i] = DatumGetInt32(col_datum(i, 1));
	for (i = 0; i < n && !found; i++)
	{
		if (!cb_grouplock_slice_try(run->run_id, candidates[i]))
			continue;			/* a live worker owns it */
		values[1] = Int32GetDatum(candidates[i]);
		cb_exec("UPDATE chunkbatch.slices s SET state = 'running', worker_pid = $3,"
				" workers = s.workers OPERATOR(pg_catalog.+) 1,"
				" started_at = COALESCE(s.started_at, pg_catalog.clock_timestamp())"
				" WHERE s.run_id OPERATOR(pg_catalog.=) $1"
				" AND s.slice_no OPERATOR(pg_catalog.=) $2"
				" AND s.state IN ('pending', 'running')"
				" RETURNING " SLICE_COLUMNS,
				3, types, values, NULL, SPI_OK_UPDATE_RETURNING);
		found = (SPI_processed == 1);
		if (found)
			slice_from_row(0, slice, slice_cxt);
		else
			cb_grouplock_slice_release(run->run_id, candidates[i]);
	}
	cb_catalog_leave(&s);
	return found;
}

/*
 * The worker lets go of its slice: pending again (its checkpoint kept),
 * or failed with the error that stopped it.
 */
void
cb_catalog_slice_release(const CbRun *slice, ErrorData *edata)
{
	CbAsOwner	s;
	Oid			types[5] = {INT8OID, INT4OID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', 'n', 'n'};

	values[0] = Int64GetDatum(slice->run_id);
	values[1] = Int32GetDatum(slice->slice_no);
	values[2] = Int32GetDatum(MyProcPid);
	if (edata != NULL)
	{
		values[3] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		values[4] = CStringGetTextDatum(edata->message ? edata->message : "");
		nulls[3] = nulls[4] = ' ';
	}
	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.slices SET"
			" state = CASE WHEN $4 IS NULL THEN 'pending' ELSE 'failed' END,"
			" sqlstate = $4, error = $5,"
			" finished_at = CASE WHEN $4 IS NOT NULL THEN pg_catalog.clock_timestamp() END"
			" WHERE run_id OPERATOR(pg_catalog.=) $1 AND slice_no OPERATOR(pg_catalog.=) $2"
			" AND state = 'running' AND worker_pid OPERATOR(pg_catalog.=) $3",
			5, types, values, nulls, SPI_OK_UPDATE);
	cb_catalog_leave(&s);
}

/* How the run's slices stand. */
void
cb_catalog_slice_totals(int64 run_id, CbSliceTotals *t)
{
	CbAsOwner	s;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	MemoryContext mcxt = CurrentMemoryContext;

	memset(t, 0, sizeof(CbSliceTotals));
	cb_catalog_enter(&s);
	cb_exec("SELECT pg_catalog.count(*)::integer,"
			" (pg_catalog.count(*) FILTER (WHERE state IN ('pending', 'running')))::integer,"
			" (pg_catalog.count(*) FILTER (WHERE state = 'failed'))::integer,"
			" COALESCE(pg_catalog.sum(rows_done), 0)::bigint,"
			" COALESCE(pg_catalog.sum(chunks_done), 0)::bigint,"
			" (pg_catalog.array_agg(sqlstate ORDER BY finished_at)"
			"   FILTER (WHERE state = 'failed'))[1],"
			" (pg_catalog.array_agg(error ORDER BY finished_at)"
			"   FILTER (WHERE state = 'failed'))[1]"
			" FROM chunkbatch.slices WHERE run_id OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, SPI_OK_SELECT);
	t->slices = DatumGetInt32(col_datum(0, 1));
	t->open = DatumGetInt32(col_datum(0, 2));
	t->failed = DatumGetInt32(col_datum(0, 3));
	t->rows_done = DatumGetInt64(col_datum(0, 4));
	t->chunks_done = DatumGetInt64(col_datum(0, 5));
	if (t->failed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		t->sqlstate = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
		t->error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
}

/*
 * Executing runs with slices that no worker processes yet, for the
 * scheduler: each with how many workers its open slices could use (at
 * most its parallel).
 */
List *
cb_catalog_sliced_runs(void)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	List	   *runs = NIL;
	uint64		i;

	cb_catalog_enter(&s);
	cb_exec(psprintf("SELECT r.run_id, r.owner_oid, r.job_name,"
					 " LEAST(r.parallel, pg_catalog.count(*))::integer"
					 " FROM chunkbatch.runs r JOIN chunkbatch.slices s"
					 " ON s.run_id OPERATOR(pg_catalog.=) r.run_id"
					 " WHERE r.state IN %s AND r.parallel OPERATOR(pg_catalog.>) 1"
					 " AND s.state IN ('pending', 'running')"
					 " GROUP BY r.run_id, r.owner_oid, r.job_name ORDER BY r.run_id",
					 cb_run_states_sql(CB_STATES_EXECUTING)),
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		CbRunRef   *ref = palloc0(sizeof(CbRunRef));

		ref->run_id = DatumGetInt64(col_datum(i, 1));
		ref->owner = DatumGetObjectId(col_datum(i, 2));
		ref->job_name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		ref->workers_wanted = DatumGetInt32(col_datum(i, 4));
		runs = lappend(runs, ref);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return runs;
}

/*
 * Where a slice ends now (NULL: no end), read by each of its chunks
 * first: a thief lowers it (cb_catalog_slice_take), and the chunk's
 * checkpoint checks it again (slice_checkpoint).
 */
char *
cb_catalog_slice_end(const CbRun *slice)
{
	static SPIPlanPtr plan = NULL;
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(slice->run_id), Int32GetDatum(slice->slice_no)};
	char	   *last;

	cb_catalog_enter(&s);
	cb_exec_saved(&plan, "SELECT range_last FROM chunkbatch.slices"
				  " WHERE run_id OPERATOR(pg_catalog.=) $1"
				  " AND slice_no OPERATOR(pg_catalog.=) $2",
				  2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "slice %d of run %lld does not exist",
			 slice->slice_no, (long long) slice->run_id);
	last = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (last != NULL)
		last = MemoryContextStrdup(mcxt, last);
	cb_catalog_leave(&s);
	return last;
}

/*
 * The dead letters the run's other slices have committed (a chunk of this
 * slice checks max_dead_letters against them and its own).
 */
int64
cb_catalog_slice_others_dead(const CbRun *slice)
{
	CbAsOwner	s;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(slice->run_id), Int32GetDatum(slice->slice_no)};
	int64		dead;

	cb_catalog_enter(&s);
	cb_exec("SELECT pg_catalog.sum(dead_letters)::bigint FROM chunkbatch.slices"
			" WHERE run_id OPERATOR(pg_catalog.=) $1"
			" AND slice_no OPERATOR(pg_catalog.<>) $2",
			2, types, values, NULL, SPI_OK_SELECT);
	dead = col_isnull(0, 1) ? 0 : DatumGetInt64(col_datum(0, 1));
	cb_catalog_leave(&s);
	return dead;
}

/* The slices of the run that workers process now (CbSliceRest each). */
List *
cb_catalog_slice_victims(int64 run_id)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	List	   *rests = NIL;
	uint64		i;

	cb_catalog_enter(&s);
	cb_exec("SELECT slice_no, COALESCE(cursor, range_first), cursor IS NULL, range_last,"
			" batch_size FROM chunkbatch.slices WHERE run_id OPERATOR(pg_catalog.=) $1"
			" AND state = 'running' AND COALESCE(cursor, range_first) IS NOT NULL"
			" ORDER BY slice_no",
			1, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		CbSliceRest *rest = palloc0(sizeof(CbSliceRest));

		rest->slice_no = DatumGetInt32(col_datum(i, 1));
		rest->lower = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		rest->inclusive = DatumGetBool(col_datum(i, 3));
		rest->last = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4);
		rest->batch_size = col_isnull(i, 5) ? 0 : DatumGetInt32(col_datum(i, 5));
		rests = lappend(rests, rest);
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
	return rests;
}

/*
 * Work stealing, first step: lock the victim's slice row, if it still
 * runs with the end the thief read, and give its checkpoint (*cursor,
 * NULL before its first chunk).  Keys stay text here: comparing them as
 * the key type would run the type's code (a domain's CHECK) as the
 * extension's owner; the thief compares them as the job's owner.  Thieves
 * of one run go one at a time (cb_grouplock_lock_steals).  False if the
 * slice changed meanwhile.
 */
bool
cb_catalog_slice_lock_victim(const CbRun *run, const CbSliceRest *victim,
							 char **cursor)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		found;

	values[0] = Int64GetDatum(run->run_id);
	values[1] = Int32GetDatum(victim->slice_no);
	values[2] = victim->last ? CStringGetTextDatum(victim->last) : (Datum) 0;
	nulls[2] = victim->last ? ' ' : 'n';
	cb_grouplock_lock_steals(run->run_id);
	cb_catalog_enter(&s);
	cb_exec("SELECT cursor FROM chunkbatch.slices"
			" WHERE run_id OPERATOR(pg_catalog.=) $1"
			" AND slice_no OPERATOR(pg_catalog.=) $2 AND state = 'running'"
			" AND range_last IS NOT DISTINCT FROM $3 FOR UPDATE",
			3, types, values, nulls, SPI_OK_SELECT);
	found = (SPI_processed == 1);
	*cursor = NULL;
	if (found && !col_isnull(0, 1))
		*cursor = MemoryContextStrdup(mcxt, SPI_getvalue(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1));
	cb_catalog_leave(&s);
	return found;
}

/*
 * Work stealing, second step, once the thief has checked that the
 * victim's checkpoint is still short of "split" (its row locked by
 * cb_catalog_slice_lock_victim): lower the victim's end to "split" and
 * take the keys after it as a new slice of this worker's (into *slice, a
 * copy of the run).  A chunk of the victim in progress read the old end;
 * its checkpoint reads the new one, and the chunk is undone and done again
 * if it went past it (see chunk_check_slice_end).
 */
void
cb_catalog_slice_take(const CbRun *run, const CbSliceRest *victim,
					  const char *split, CbRun *slice)
{
	CbAsOwner	s;
	MemoryContext mcxt = CurrentMemoryContext;
	Oid			types[6] = {INT8OID, INT4OID, TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(run->run_id);
	values[1] = Int32GetDatum(victim->slice_no);
	values[2] = CStringGetTextDatum(split);
	values[3] = victim->last ? CStringGetTextDatum(victim->last) : (Datum) 0;
	nulls[3] = victim->last ? ' ' : 'n';
	values[4] = Int32GetDatum(MyProcPid);
	values[5] = Int32GetDatum(run->batch_size);
	cb_catalog_enter(&s);
	cb_exec("UPDATE chunkbatch.slices SET range_last = $3"
			" WHERE run_id OPERATOR(pg_catalog.=) $1"
			" AND slice_no OPERATOR(pg_catalog.=) $2",
			3, types, values, nulls, SPI_OK_UPDATE);
	if (SPI_processed != 1)
		elog(ERROR, "slice %d of run %lld is gone", victim->slice_no,
			 (long long) run->run_id);
	cb_exec("INSERT INTO chunkbatch.slices (run_id, slice_no, state, cursor, range_last,"
			" batch_size, worker_pid, workers, started_at)"
			" SELECT $1, pg_catalog.max(slice_no) OPERATOR(pg_catalog.+) 1, 'running',"
			" $3, $4, $6, $5, 1, pg_catalog.clock_timestamp()"
			" FROM chunkbatch.slices WHERE run_id OPERATOR(pg_catalog.=) $1"
			" RETURNING slice_no",
			6, types, values, nulls, SPI_OK_INSERT_RETURNING);
	/* Nobody sees the new slice before this commits: its lock is free. */
	if (!cb_grouplock_slice_try(run->run_id, DatumGetInt32(col_datum(0, 1))))
		elog(ERROR, "the lock of new slice %d of run %lld is taken",
			 DatumGetInt32(col_datum(0, 1)), (long long) run->run_id);
	{
		MemoryContext old = MemoryContextSwitchTo(mcxt);

		slice->slice_no = DatumGetInt32(col_datum(0, 1));
		slice->range_first = NULL;
		slice->range_last = victim->last ? pstrdup(victim->last) : NULL;
		slice->cursor = pstrdup(split);
		slice->rows_done = slice->chunks_done = 0;
		slice->avg_chunk_ms = slice->max_chunk_ms = 0;
		slice->retries = 0;
		slice->dead_letters = slice->lock_waiters_seen = 0;
		MemoryContextSwitchTo(old);
	}
	cb_catalog_leave(&s);
}
