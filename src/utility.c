/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  The ProcessUtility hook: DROP EXTENSION chunkbatch (or DROP SCHEMA
 *	  chunkbatch CASCADE) is refused while the database has queued or
 *	  active runs; DROP ROLE, DROP OWNED, REASSIGN OWNED, DROP TYPE and
 *	  DROP DOMAIN treat jobs as dependents of their owner and cursor type
 *	  (depend.c).
 *
 * Dropping the extension under a running worker would end the run in the
 * middle, with nothing left to say how far it got.  Paused, stopped and
 * finished runs do not stand in the way: a DBA pauses or cancels the
 * active ones first.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/utility.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/snapmgr.h"

#include "chunkbatch.h"

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* Does the statement drop chunkbatch (directly or with its schema)? */
static bool
drops_chunkbatch(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType == OBJECT_EXTENSION)
	{
		foreach(lc, stmt->objects)
			if (strcmp(strVal(lfirst(lc)), CB_EXTENSION_NAME) == 0)
				return true;
	}
	else if (stmt->removeType == OBJECT_SCHEMA && stmt->behavior == DROP_CASCADE)
	{
		foreach(lc, stmt->objects)
			if (strcmp(strVal(lfirst(lc)), CB_SCHEMA_NAME) == 0)
				return true;
	}
	return false;
}

static void
check_no_active_runs(void)
{
	int64		active;
	bool		snapshot = !ActiveSnapshotSet();

	if (cb_catalog_schema_state(NULL) != CB_SCHEMA_OK)
		return;					/* absent, or a version no worker executes */
	if (snapshot)
		PushActiveSnapshot(GetTransactionSnapshot());
	active = cb_catalog_count_all_active_runs();
	if (snapshot)
		PopActiveSnapshot();
	if (active > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg_plural("cannot drop extension chunkbatch because %lld run is queued or active",
							   "cannot drop extension chunkbatch because %lld runs are queued or active",
							   active, (long long) active),
				 errdetail("Dropping it would end them in the middle of their work."),
				 errhint("Cancel them (or pause them) first, e.g. SELECT chunkbatch.cancel(run_id) FROM chunkbatch.runs WHERE state IN %s.",
						 cb_run_states_sql(CB_STATES_ACTIVE))));
}

/* Is this a statement that depend.c must see, in a database using chunkbatch? */
static bool
concerns_jobs(Node *parsetree)
{
	if (!(IsA(parsetree, DropRoleStmt) || IsA(parsetree, DropOwnedStmt) ||
		  IsA(parsetree, ReassignOwnedStmt) ||
		  (IsA(parsetree, DropStmt) &&
		   (((DropStmt *) parsetree)->removeType == OBJECT_TYPE ||
			((DropStmt *) parsetree)->removeType == OBJECT_DOMAIN))))
		return false;
	return IsTransactionState() && !RecoveryInProgress() &&
		cb_catalog_schema_state(NULL) == CB_SCHEMA_OK;
}

static void
cb_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		jobs = concerns_jobs(parsetree);
	List	   *signal = NIL;
	bool		snapshot = false;

	if (drops_chunkbatch(parsetree) && IsTransactionState())
		check_no_active_runs();
	if (jobs)
	{
		snapshot = !ActiveSnapshotSet();
		if (snapshot)
			PushActiveSnapshot(GetTransactionSnapshot());
		if (IsA(parsetree, DropRoleStmt))
			cb_depend_check_drop_role((DropRoleStmt *) parsetree);
		else if (IsA(parsetree, DropOwnedStmt))
			signal = cb_depend_drop_owned((DropOwnedStmt *) parsetree);
		else if (IsA(parsetree, DropStmt))
			signal = cb_depend_drop_type((DropStmt *) parsetree);
		if (snapshot)
			PopActiveSnapshot();
		CommandCounterIncrement();
	}

	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (jobs && IsA(parsetree, ReassignOwnedStmt))
	{
		if (snapshot)
			PushActiveSnapshot(GetTransactionSnapshot());
		cb_depend_reassign_owned((ReassignOwnedStmt *) parsetree);
		if (snapshot)
			PopActiveSnapshot();
	}
	cb_depend_signal(signal);
}

void
cb_utility_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = cb_process_utility;
}
