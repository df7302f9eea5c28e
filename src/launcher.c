/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one static background worker per cluster that starts a
 *	  scheduler for each database with chunkbatch work.
 *
 * The launcher connects to the shared catalogs only, so it serves every
 * database of the cluster and never keeps one from being dropped, renamed
 * or cloned.  run() marks its database in shared memory and sets the
 * launcher's latch after the caller commits; when the launcher starts
 * (after a server start, a crash or a promotion) it probes every
 * connectable database once, so that interrupted runs resume without
 * anyone acting, and again when resume_all() asks it to.  There is no
 * periodic probe: a scheduler in a database without work exits at once,
 * and one that dies with work left is started again here within a second.
 * The launcher runs only on a primary (BgWorkerStart_RecoveryFinished):
 * a standby never queues or executes anything.
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

/*
 * When each entry's scheduler was last started: a scheduler that died with
 * work left is started again at most once a second.
 */
static TimestampTz sched_started_at[CB_MAX_DATABASES];
#define CB_SCHEDULER_RESTART_MS	1000

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

/*
 * Databases the last probe could not mark yet, all CB_MAX_DATABASES
 * entries being taken: marked as entries free up.
 */
static List *pending_dbs = NIL;

/* Mark what it can of pending_dbs; keep the rest for later. */
static void
launcher_mark_pending(void)
{
	List	   *left = NIL;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	foreach(lc, pending_dbs)
		if (!cb_request_wake(lfirst_oid(lc)))
			left = lappend_oid(left, lfirst_oid(lc));
	list_free(pending_dbs);
	pending_dbs = left;
	MemoryContextSwitchTo(old);
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
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		pending_dbs = list_append_unique_oid(pending_dbs, lfirst_oid(lc));
		MemoryContextSwitchTo(old);
	}
	list_free(dbs);
	launcher_mark_pending();
	if (pending_dbs != NIL)
		ereport(LOG,
				(errmsg("chunkbatch: %d databases wait for a scheduler visit until one of the %d database entries is free",
						list_length(pending_dbs), CB_MAX_DATABASES)));
}

static bool
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
		sched_handles[idx] = NULL;
	return registered;
}

/*
 * Start a scheduler for every database with pending work and none running;
 * forget databases whose scheduler died before it attached.  Returns the
 * time in ms until a start that had to wait for its restart delay, or -1.
 */
static long
launcher_dispatch(void)
{
	int			i;
	long		retry_ms = -1;
	TimestampTz now = GetCurrentTimestamp();
	int			not_started = 0;
	static TimestampTz last_warning = 0;

	for (i = 0; i < CB_MAX_DATABASES; i++)
	{
		CbDbEntry	db = cb_db_get(i);
		pid_t		pid;
		long		wait_ms;

		/* It exited before attaching (database gone, or no access). */
		if (db.state == CB_DB_STARTING && sched_handles[i] != NULL &&
			GetBackgroundWorkerPid(sched_handles[i], &pid) == BGWH_STOPPED)
		{
			cb_db_forget(i, db.dboid, false);
			continue;
		}
		if (db.state != CB_DB_NONE || db.dboid == InvalidOid)
			continue;
		if (!db.wake)
		{
			cb_db_forget(i, db.dboid, true);
			continue;
		}
		wait_ms = !db.died ? 0 : CB_SCHEDULER_RESTART_MS -
			TimestampDifferenceMilliseconds(sched_started_at[i], now);
		if (wait_ms > 0)
			retry_ms = (retry_ms < 0) ? wait_ms : Min(retry_ms, wait_ms);
		else if (!cb_db_begin_start(i, db.dboid))
			continue;			/* it changed meanwhile */
		else if (launcher_start_scheduler(i, db.dboid))
			sched_started_at[i] = now;
		else
		{
			cb_db_start_failed(i, db.dboid);
			not_started++;
		}
	}

	/* Tried again at the next wake-up or naptime; said once a minute. */
	if (not_started > 0 &&
		TimestampDifferenceExceeds(last_warning, now, 60 * 1000))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("chunkbatch could not start schedulers for %d databases", not_started),
				 errdetail("No background worker slot was free; their runs wait."),
				 errhint("You might need to increase \"max_worker_processes\".")));
		last_warning = now;
	}
	if (not_started > 0)
		retry_ms = (retry_ms < 0) ? 1000 : Min(retry_ms, 1000);
	return retry_ms;
}

void
chunkbatch_launcher_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("chunkbatch launcher");

	cb_launcher_attach();
	elog(LOG, "chunkbatch launcher started");

	launcher_probe_databases();

	for (;;)
	{
		bool		probe;
		long		retry_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* resume_all(), or a wake that found every database entry taken */
		probe = cb_launcher_take_probe();
		if (probe)
			launcher_probe_databases();
		else if (pending_dbs != NIL)
			launcher_mark_pending();
		retry_ms = launcher_dispatch();
		if (pending_dbs != NIL)
			retry_ms = (retry_ms < 0) ? 1000 : Min(retry_ms, 1000);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 retry_ms >= 0 ? Max(retry_ms, 10) : cb_naptime * 1000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
