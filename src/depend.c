/*-------------------------------------------------------------------------
 *
 * depend.c
 *	  Jobs as dependents of their owner role and of their cursor type, as
 *	  PostgreSQL's own objects are.
 *
 * Owner roles.  pg_shdepend, the one catalog that every database of the
 * cluster consults on DROP ROLE, holds one entry per distinct job owner of
 * each database: a privilege-type ('a') dependency of the owner_oid column
 * of chunkbatch.jobs on the role.  A row trigger on chunkbatch.jobs keeps
 * the entries in step with the table (changes of one role's jobs are
 * serialized by a lock on that role only), and every scheduler checks them
 * when it starts (a restore with triggers disabled, or pg_upgrade, brings
 * the jobs back without them).  So:
 *
 * - DROP ROLE of a job owner fails in every database, as for the owner of
 *   a table: elsewhere with PostgreSQL's "1 object in database app", in the
 *   jobs' own database with the jobs named (the ProcessUtility hook looks
 *   first, after the same privilege checks DROP ROLE makes);
 * - REASSIGN OWNED BY a TO b gives a's jobs, runs and dead letters of the
 *   current database to b (after PostgreSQL's own reassignment, which
 *   checked the privileges); the next runs run as b;
 * - DROP OWNED BY a drops a's jobs of the current database, their runs
 *   cancelled, before PostgreSQL's own DROP OWNED (which would otherwise
 *   try to revoke a's privileges on chunkbatch.jobs).
 *
 * Cursor types.  Types live in one database, so the hook is enough: DROP
 * TYPE or DROP DOMAIN of a job's cursor type fails unless CASCADE, which
 * drops the job (its runs cancelled) with a notice.  A type dropped
 * indirectly (with its schema or its extension) leaves its jobs without a
 * cursor type: they refuse to run (42704) until alter_job gives them one.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/depend.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_shdepend.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "chunkbatch.h"

PG_FUNCTION_INFO_V1(chunkbatch_jobs_changed);

static Oid
jobs_relid(void)
{
	Oid			nsp = get_namespace_oid(CB_SCHEMA_NAME, true);

	return OidIsValid(nsp) ? get_relname_relid("jobs", nsp) : InvalidOid;
}

/*
 * Changes of one role's jobs are serialized by a transaction lock on the
 * role, in a lock space of chunkbatch's own (no SQL function can take it),
 * so that one role's open transaction never holds up another role.
 * Returns false if dontWait and another transaction holds it.
 */
static bool
lock_owner(Oid role, bool dontWait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, role, CB_LOCKSPACE_OWNER);
	if (LockAcquire(&tag, ExclusiveLock, false, dontWait) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	/* See what the transaction that held it committed. */
	InvalidateCatalogSnapshot();
	return true;
}

/*
 * A scan of this database's pg_shdepend entries on the owner_oid column of
 * chunkbatch.jobs (every role's).
 */
static SysScanDesc
owner_entries_scan(Relation sdep, Oid relid, AttrNumber attnum)
{
	ScanKeyData key[4];

	ScanKeyInit(&key[0], Anum_pg_shdepend_dbid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(MyDatabaseId));
	ScanKeyInit(&key[1], Anum_pg_shdepend_classid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationRelationId));
	ScanKeyInit(&key[2], Anum_pg_shdepend_objid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&key[3], Anum_pg_shdepend_objsubid, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(attnum));
	return systable_beginscan(sdep, SharedDependDependerIndexId, true, NULL, 4, key);
}

/*
 * Make pg_shdepend hold exactly one entry for the role if it owns jobs of
 * this database, none if not.  Returns false (having done nothing) if
 * dontWait and another transaction is changing the role's jobs.
 */
static bool
sync_owner(Oid relid, AttrNumber attnum, Oid role, bool dontWait)
{
	bool		wanted;
	bool		recorded = false;
	Relation	sdep;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(role) || IsPinnedObject(AuthIdRelationId, role))
		return true;			/* nothing to record: no role, or one never dropped */
	if (!lock_owner(role, dontWait))
		return false;
	wanted = cb_catalog_jobs_depending_on(role, false) != NIL &&
		SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role));

	sdep = table_open(SharedDependRelationId, RowExclusiveLock);
	scan = owner_entries_scan(sdep, relid, attnum);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_shdepend dep = (Form_pg_shdepend) GETSTRUCT(tup);

		if (dep->refclassid != AuthIdRelationId || dep->refobjid != role ||
			dep->deptype != SHARED_DEPENDENCY_ACL)
			continue;
		if (wanted && !recorded)
			recorded = true;
		else
			CatalogTupleDelete(sdep, &tup->t_self);
	}
	systable_endscan(scan);

	if (wanted && !recorded)
	{
		Datum		values[Natts_pg_shdepend];
		bool		nulls[Natts_pg_shdepend];

		shdepLockAndCheckObject(AuthIdRelationId, role);
		memset(nulls, false, sizeof(nulls));
		values[Anum_pg_shdepend_dbid - 1] = ObjectIdGetDatum(MyDatabaseId);
		values[Anum_pg_shdepend_classid - 1] = ObjectIdGetDatum(RelationRelationId);
		values[Anum_pg_shdepend_objid - 1] = ObjectIdGetDatum(relid);
		values[Anum_pg_shdepend_objsubid - 1] = Int32GetDatum(attnum);
		values[Anum_pg_shdepend_refclassid - 1] = ObjectIdGetDatum(AuthIdRelationId);
		values[Anum_pg_shdepend_refobjid - 1] = ObjectIdGetDatum(role);
		values[Anum_pg_shdepend_deptype - 1] = CharGetDatum(SHARED_DEPENDENCY_ACL);
		tup = heap_form_tuple(RelationGetDescr(sdep), values, nulls);
		CatalogTupleInsert(sdep, tup);
		heap_freetuple(tup);
	}
	table_close(sdep, RowExclusiveLock);
	return true;
}

/* The roles that have an entry for this database's jobs. */
static List *
recorded_owners(Oid relid, AttrNumber attnum)
{
	List	   *roles = NIL;
	Relation	sdep;
	SysScanDesc scan;
	HeapTuple	tup;

	sdep = table_open(SharedDependRelationId, AccessShareLock);
	scan = owner_entries_scan(sdep, relid, attnum);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_shdepend dep = (Form_pg_shdepend) GETSTRUCT(tup);

		if (dep->refclassid == AuthIdRelationId && dep->deptype == SHARED_DEPENDENCY_ACL)
			roles = list_append_unique_oid(roles, dep->refobjid);
	}
	systable_endscan(scan);
	table_close(sdep, AccessShareLock);
	return roles;
}

static bool
jobs_owner_column(Oid *relid, AttrNumber *attnum)
{
	*relid = jobs_relid();
	*attnum = OidIsValid(*relid) ? get_attnum(*relid, "owner_oid") : InvalidAttrNumber;
	return *attnum != InvalidAttrNumber;
}

/*
 * Check every job owner's entry (and drop entries of roles that own no
 * jobs any more), for a scheduler that starts: a restore with triggers
 * disabled, or pg_upgrade, brings jobs back without them.  Never waits: a
 * role whose jobs another transaction is changing is left to it.
 */
void
cb_depend_sync_owners(void)
{
	Oid			relid;
	AttrNumber	attnum;
	ListCell   *lc;

	if (!jobs_owner_column(&relid, &attnum))
		return;
	foreach(lc, list_concat_unique_oid(cb_catalog_job_owners(),
									   recorded_owners(relid, attnum)))
		(void) sync_owner(relid, attnum, lfirst_oid(lc), true);
}

/*
 * The row trigger of chunkbatch.jobs (AFTER INSERT, UPDATE OF owner_oid,
 * DELETE): the entries of the old and the new owner follow.
 */
Datum
chunkbatch_jobs_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			relid;
	AttrNumber	attnum;
	bool		isnull;
	Datum		d;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!jobs_owner_column(&relid, &attnum) ||
		RelationGetRelid(trigdata->tg_relation) != relid)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("chunkbatch.jobs_changed() must be called as an AFTER row trigger of chunkbatch.jobs")));
	d = heap_getattr(trigdata->tg_trigtuple, attnum,
					 RelationGetDescr(trigdata->tg_relation), &isnull);
	if (!isnull)
		(void) sync_owner(relid, attnum, DatumGetObjectId(d), false);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		d = heap_getattr(trigdata->tg_newtuple, attnum,
						 RelationGetDescr(trigdata->tg_relation), &isnull);
		if (!isnull)
			(void) sync_owner(relid, attnum, DatumGetObjectId(d), false);
	}
	PG_RETURN_POINTER(NULL);
}

/* "owner of chunkbatch job a\nowner of chunkbatch job b", for a detail. */
static char *
job_lines(List *jobs, const char *what)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, jobs)
	{
		if (buf.len > 0)
			appendStringInfoChar(&buf, '\n');
		appendStringInfo(&buf, "%s chunkbatch job %s", what,
						 ((CbRunRef *) lfirst(lc))->job_name);
	}
	return buf.data;
}

/*
 * Drop the jobs, cancelling their runs: those without a worker at once,
 * and the running ones' workers (at their next chunk boundary) through
 * *signal, which the caller hands to cb_depend_signal() once the
 * statement has succeeded.
 */
static void
drop_jobs(List *jobs, bool notice, List **signal)
{
	ListCell   *lc;
	bool		cron = OidIsValid(get_extension_oid("pg_cron", true));

	foreach(lc, jobs)
	{
		CbRunRef   *job = lfirst(lc);
		ListCell   *lr;

		foreach(lr, cb_catalog_live_runs(job->run_id))
		{
			int64		run_id = *(int64 *) lfirst(lr);

			if (cb_slot_has_run(MyDatabaseId, run_id))
			{
				int64	   *id = palloc(sizeof(int64));

				*id = run_id;
				*signal = lappend(*signal, id);
			}
			else
				(void) cb_catalog_cancel_unowned(run_id);
		}
		cb_catalog_delete_job(job->run_id);
		if (cron)
			(void) cb_catalog_unschedule_job(job->job_name);
		if (notice)
			ereport(NOTICE,
					(errmsg("drop cascades to chunkbatch job %s", job->job_name)));
	}
}

/* Cancel the running runs of jobs that a statement dropped. */
void
cb_depend_signal(List *signal)
{
	ListCell   *lc;

	foreach(lc, signal)
		(void) cb_slot_signal_run(MyDatabaseId, *(int64 *) lfirst(lc), true);
}

/*
 * DROP ROLE: refuse for a role owning jobs of this database, naming them.
 * Only for a caller whom DROP ROLE itself would let through so far: others
 * get PostgreSQL's own error, and learn nothing of anyone's jobs.
 */
void
cb_depend_check_drop_role(DropRoleStmt *stmt)
{
	ListCell   *lc;

	if (!has_createrole_privilege(GetUserId()))
		return;
	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			role;
		List	   *jobs;

		if (spec->roletype != ROLESPEC_CSTRING)
			continue;
		role = get_role_oid(spec->rolename, true);
		if (!OidIsValid(role) || (superuser_arg(role) && !superuser()))
			continue;
		jobs = cb_catalog_jobs_depending_on(role, false);
		if (jobs != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("role \"%s\" cannot be dropped because some objects depend on it",
							spec->rolename),
					 errdetail_internal("%s", job_lines(jobs, "owner of")),
					 errhint("Drop the jobs with chunkbatch.drop_job(), give them to another role with REASSIGN OWNED BY %s TO ..., or drop them with DROP OWNED BY %s.",
							 quote_identifier(spec->rolename),
							 quote_identifier(spec->rolename))));
	}
}

/*
 * DROP OWNED: drop the roles' jobs of this database first, if the caller
 * may (else PostgreSQL's own check fails the statement).
 */
List *
cb_depend_drop_owned(DropOwnedStmt *stmt)
{
	List	   *signal = NIL;
	List	   *roles = NIL;
	ListCell   *lc;

	foreach(lc, stmt->roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		if (!OidIsValid(role) || !has_privs_of_role(GetUserId(), role))
			return NIL;
		roles = lappend_oid(roles, role);
	}
	foreach(lc, roles)
		drop_jobs(cb_catalog_jobs_depending_on(lfirst_oid(lc), false), false, &signal);
	return signal;
}

/* REASSIGN OWNED, after PostgreSQL's own: the jobs follow. */
void
cb_depend_reassign_owned(ReassignOwnedStmt *stmt)
{
	Oid			to = get_rolespec_oid(stmt->newrole, false);
	ListCell   *lc;

	foreach(lc, stmt->roles)
	{
		Oid			from = get_rolespec_oid(lfirst(lc), false);

		if (from != to)
			cb_catalog_reassign_owner(from, to);
	}
}

/*
 * DROP TYPE / DROP DOMAIN of a job's cursor type: refused, or with CASCADE
 * the jobs go too.  Only for the type's owner (others get PostgreSQL's own
 * error).
 */
List *
cb_depend_drop_type(DropStmt *stmt)
{
	List	   *signal = NIL;
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Oid			typid = LookupTypeNameOid(NULL, (TypeName *) lfirst(lc), true);
		List	   *jobs;

		if (!OidIsValid(typid) || !pg_type_ownercheck(typid, GetUserId()))
			continue;
		jobs = cb_catalog_jobs_depending_on(typid, true);
		if (jobs == NIL)
			continue;
		if (stmt->behavior != DROP_CASCADE)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop type %s because other objects depend on it",
							format_type_be(typid)),
					 errdetail_internal("%s", job_lines(jobs, "cursor type of")),
					 errhint("Use DROP ... CASCADE to drop the dependent objects too.")));
		drop_jobs(jobs, true, &signal);
	}
	return signal;
}
