/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one static background worker per cluster that starts a
 *	  scheduler for each database with chunkbatch work.
 *
 * The launcher connects to the shared catalogs only, so it serves every
 * database of the cluster.  run() marks its database in shared memory and
 * sets the launcher's latch after the caller commits; when the launcher
 * starts (after a server start or crash) it probes every connectable
 * database once, so that interrupted runs resume without anyone acting.
 * A scheduler in a database without the extension exits at once.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "chunkbatch.h"

/* Handles of schedulers this launcher started, by database entry. */
static BackgroundWorkerHandle *sched_handles[CB_MAX_DATABASES];

void
cb_register_launcher(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "chunkbatch");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "chunkbatch_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "chunkbatch launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "chunkbatch launcher");
	RegisterBackgroundWorker(&w);
}

static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (cb_shared->launcher_pid == MyProcPid)
	{
		cb_shared->launcher_pid = 0;
		cb_shared->launcher_latch = NULL;
	}
	LWLockRelease(cb_shared->lock);
}

/* Mark every connectable database for a scheduler visit. */
static void
launcher_probe_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbs = NIL;
	ListCell   *lc;
	MemoryContext caller_ctx = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate &&
			!database_is_invalid_form(db))
		{
			MemoryContext old = MemoryContextSwitchTo(caller_ctx);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, dbs)
		cb_request_wake(lfirst_oid(lc));
	list_free(dbs);
}

static void
launcher_start_scheduler(int idx, Oid dboid)
{
	BackgroundWorker w;
	CbSchedulerArgs args;
	MemoryContext oldcxt;
	bool		registered;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "chunkbatch");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "chunkbatch_scheduler_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "chunkbatch scheduler for database %u", dboid);
	snprintf(w.bgw_type, BGW_MAXLEN, "chunkbatch scheduler");
	w.bgw_main_arg = Int32GetDatum(idx);
	args.dboid = dboid;
	memcpy(w.bgw_extra, &args, sizeof(args));
	w.bgw_notify_pid = MyProcPid;

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (sched_handles[idx] != NULL)
		pfree(sched_handles[idx]);
	sched_handles[idx] = NULL;
	registered = RegisterDynamicBackgroundWorker(&w, &sched_handles[idx]);
	MemoryContextSwitchTo(oldcxt);
	if (!registered)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("chunkbatch could not start a scheduler for database %u", dboid),
				 errhint("You might need to increase \"max_worker_processes\".")));
		sched_handles[idx] = NULL;
		return;
	}
	cb_shared->dbs[idx].state = CB_DB_STARTING;
}

/*
 * Start a scheduler for every database with pending work and none running;
 * forget databases whose scheduler died before it attached.
 */
static void
launcher_dispatch(void)
{
	int			i;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < CB_MAX_DATABASES; i++)
	{
		CbDatabase *db = &cb_shared->dbs[i];
		pid_t		pid;

		if (db->state == CB_DB_STARTING && sched_handles[i] != NULL &&
			GetBackgroundWorkerPid(sched_handles[i], &pid) == BGWH_STOPPED)
		{
			/* It exited before attaching (database gone, or no access). */
			db->state = CB_DB_NONE;
			db->wake = false;
			db->dboid = InvalidOid;
		}
		if (db->state == CB_DB_NONE && db->dboid != InvalidOid)
		{
			if (db->wake)
				launcher_start_scheduler(i, db->dboid);
			else
				db->dboid = InvalidOid;
		}
	}
	LWLockRelease(cb_shared->lock);
}

void
chunkbatch_launcher_main(Datum main_arg)
{
	TimestampTz last_probe;
	int			i;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("chunkbatch launcher");

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	cb_shared->launcher_pid = MyProcPid;
	cb_shared->launcher_latch = MyLatch;
	/* Schedulers a previous launcher was starting are not ours to track. */
	for (i = 0; i < CB_MAX_DATABASES; i++)
		if (cb_shared->dbs[i].state == CB_DB_STARTING)
			cb_shared->dbs[i].state = CB_DB_NONE;
	LWLockRelease(cb_shared->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);
	elog(LOG, "chunkbatch launcher started");

	launcher_probe_databases();
	last_probe = GetCurrentTimestamp();

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* Safety net: look at every database again once in a while. */
		if (TimestampDifferenceExceeds(last_probe, GetCurrentTimestamp(),
									   cb_naptime * 60 * 1000))
		{
			launcher_probe_databases();
			last_probe = GetCurrentTimestamp();
		}
		launcher_dispatch();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 cb_naptime * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
