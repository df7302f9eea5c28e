/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The per-database scheduler: resumes interrupted runs and starts one
 *	  run worker per queued run while worker slots are free.
 *
 * A scheduler runs only while its database has queued or active runs
 * (plus chunkbatch.scheduler_idle_exit, 0 by default), so that it never
 * stands in the way of DROP DATABASE, ALTER DATABASE ... RENAME or CREATE
 * DATABASE ... TEMPLATE; run() wakes the launcher to start it again, and a
 * scheduler that dies while its database has work is replaced at once.
 * Each pass first pauses runs copied from another database (they belong
 * to the database they were queued in), then queues the runs handed over
 * by run(..., wait => true); then runs marked running whose worker is gone
 * become 'interrupted' (committed before any worker could look at them);
 * then queued, waiting and interrupted runs are started in queue order, at
 * most one per lock group, while worker slots are free and the emergency
 * stop (pause_all) is off.
 *
 * The scheduler connects as the bootstrap superuser and runs only the fixed
 * statements of catalog.c.  Run workers connect as the job's owner; the
 * owner's LOGIN and CONNECT rights are checked here before every start.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/scheduler.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "chunkbatch.h"

static int	MyDbIndex = -1;
static bool leaving_idle = false;	/* exiting because there is no work */
static TimestampTz last_prune = 0;
static Oid	MyDb = InvalidOid;
static BackgroundWorkerHandle **worker_handles = NULL;

static void
scheduler_detach(int code, Datum arg)
{
	CbDatabase *db = &cb_shared->dbs[MyDbIndex];
	bool		restart;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (db->pid == MyProcPid)
	{
		db->state = CB_DB_NONE;
		db->pid = 0;
		db->latch = NULL;
		/* Terminated or failed with work left: the launcher starts another. */
		if (!leaving_idle)
			db->wake = db->died = true;
	}
	restart = db->wake;
	if (restart && cb_shared->launcher_latch != NULL)
		SetLatch(cb_shared->launcher_latch);
	LWLockRelease(cb_shared->lock);
}

/* Take over the database entry, unless another scheduler serves it. */
static bool
scheduler_attach(void)
{
	CbDatabase *db = &cb_shared->dbs[MyDbIndex];
	bool		ok;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	ok = (db->dboid == MyDb && db->state != CB_DB_RUNNING);
	if (ok)
	{
		db->state = CB_DB_RUNNING;
		db->pid = MyProcPid;
		db->latch = MyLatch;
	}
	LWLockRelease(cb_shared->lock);
	return ok;
}

/* Is some slot executing (or starting) this run of this database? */
static bool
scheduler_run_has_slot(int64 run_id)
{
	bool		found = false;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots && !found; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		found = (slot->state != CB_SLOT_FREE && slot->dboid == MyDb &&
				 slot->run_id == run_id);
	}
	LWLockRelease(cb_shared->lock);
	return found;
}

static bool
scheduler_slots_in_use(void)
{
	bool		found = false;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots && !found; i++)
		found = (cb_shared->slots[i].state != CB_SLOT_FREE &&
				 cb_shared->slots[i].dboid == MyDb);
	LWLockRelease(cb_shared->lock);
	return found;
}

/*
 * Fail the runs whose worker exited before it could connect, and free
 * their slots.  Call inside a transaction.
 */
static void
scheduler_reap_failed_starts(void)
{
	int			i;

	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];
		int64		run_id = 0;
		bool		failed = false;
		pid_t		pid;

		LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
		if (slot->dboid == MyDb &&
			(slot->state == CB_SLOT_START_FAILED ||
			 (slot->state == CB_SLOT_STARTING && slot->pid == 0 &&
			  worker_handles[i] != NULL &&
			  GetBackgroundWorkerPid(worker_handles[i], &pid) == BGWH_STOPPED)))
		{
			failed = true;
			run_id = slot->run_id;
			slot->state = CB_SLOT_FREE;
		}
		LWLockRelease(cb_shared->lock);
		if (failed)
			catalog_fail_unstarted(run_id, "55000",
								   "run worker exited before it could connect to the database; see the server log");
	}
}

/*
 * May the run's owner still be the identity of a worker?  If not, fail the
 * run with the reason.  Call inside a transaction.
 */
static bool
scheduler_owner_ok(CbRunRef *ref)
{
	HeapTuple	tup;
	bool		canlogin;
	char	   *msg;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(ref->owner));
	if (!HeapTupleIsValid(tup))
	{
		catalog_fail_unstarted(ref->run_id, "42704",
							   "the job's owner role no longer exists");
		return false;
	}
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!canlogin)
	{
		msg = psprintf("role \"%s\" owning job \"%s\" does not have the LOGIN attribute",
					   GetUserNameFromId(ref->owner, false), ref->job_name);
		catalog_fail_unstarted(ref->run_id, "28000", msg);
		return false;
	}
	if (pg_database_aclcheck(MyDb, ref->owner, ACL_CONNECT) != ACLCHECK_OK)
	{
		msg = psprintf("role \"%s\" owning job \"%s\" has no CONNECT privilege on this database",
					   GetUserNameFromId(ref->owner, false), ref->job_name);
		catalog_fail_unstarted(ref->run_id, "42501", msg);
		return false;
	}
	return true;
}

/* Claim a free slot and start a run worker; false if none could start. */
static bool
scheduler_launch(CbRunRef *ref)
{
	BackgroundWorker w;
	CbWorkerArgs args;
	CbSlot	   *slot = NULL;
	MemoryContext oldcxt;
	bool		registered;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		if (cb_shared->slots[i].state == CB_SLOT_FREE)
		{
			slot = &cb_shared->slots[i];
			break;
		}
	}
	if (slot == NULL)
	{
		LWLockRelease(cb_shared->lock);
		return false;
	}
	SpinLockAcquire(&slot->mutex);
	slot->state = CB_SLOT_STARTING;
	slot->generation++;
	slot->run_id = ref->run_id;
	slot->dboid = MyDb;
	slot->owner = ref->owner;
	slot->pid = 0;
	slot->latch = NULL;
	slot->phase = CB_PHASE_STARTING;
	slot->worker_started_at = 0;
	slot->chunk_started_at = 0;
	slot->rows_done = slot->chunks_done = slot->rows_this_worker = 0;
	slot->batch_size = 0;
	slot->cancel_requested = false;
	slot->pause_requested = false;
	slot->nsamples = 0;
	slot->throttled_us = 0;
	slot->throttled_since = 0;
	SpinLockRelease(&slot->mutex);

	args.run_id = ref->run_id;
	args.generation = slot->generation;
	args.dboid = MyDb;
	args.owner = ref->owner;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "chunkbatch");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "chunkbatch_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "chunkbatch run %lld", (long long) ref->run_id);
	snprintf(w.bgw_type, BGW_MAXLEN, "chunkbatch run worker");
	w.bgw_main_arg = Int32GetDatum(i);
	memcpy(w.bgw_extra, &args, sizeof(args));
	w.bgw_notify_pid = MyProcPid;

	/* The handle must outlive this pass's memory context. */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (worker_handles[i] != NULL)
		pfree(worker_handles[i]);
	worker_handles[i] = NULL;
	registered = RegisterDynamicBackgroundWorker(&w, &worker_handles[i]);
	MemoryContextSwitchTo(oldcxt);
	if (!registered)
	{
		slot->state = CB_SLOT_FREE;
		worker_handles[i] = NULL;
		LWLockRelease(cb_shared->lock);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("chunkbatch could not start a worker for run %lld",
						(long long) ref->run_id),
				 errdetail("The run stays queued and starts when a background worker is free."),
				 errhint("You might need to increase \"max_worker_processes\".")));
		return false;
	}
	LWLockRelease(cb_shared->lock);
	return true;
}

/*
 * Insert and commit the runs that callers of run(..., wait => true) handed
 * over, then give each caller its run id.  Requests of callers that are
 * gone are dropped.
 */
static void
scheduler_take_requests(void)
{
	int			taken[CB_MAX_REQUESTS];
	int64		run_ids[CB_MAX_REQUESTS];
	char		error[256];
	int			n = 0;
	int			i;
	volatile bool failed = false;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < CB_MAX_REQUESTS; i++)
	{
		CbRunRequest *req = &cb_shared->requests[i];

		PGPROC	   *caller;

		if (req->state == CB_REQ_FREE || req->dboid != MyDb)
			continue;
		/* A request never outlives its caller: nobody would see its run. */
		caller = BackendPidGetProc(req->pid);
		if (req->state != CB_REQ_INSERTING &&
			(caller == NULL || &caller->procLatch != req->latch || req->abandoned))
			req->state = CB_REQ_FREE;
		else if (req->state == CB_REQ_PENDING)
		{
			req->state = CB_REQ_INSERTING;
			taken[n++] = i;
		}
	}
	LWLockRelease(cb_shared->lock);
	if (n == 0)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		for (i = 0; i < n; i++)
		{
			CbRunRequest *req = &cb_shared->requests[taken[i]];
			char	   *params = palloc(req->params_len);

			memcpy(params, req->params, req->params_len);
			run_ids[i] = catalog_insert_run(req->job_id, PointerGetDatum(params),
											req->queued_by, req->trigger);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		strlcpy(error, edata->message, sizeof(error));
		FreeErrorData(edata);
		failed = true;
	}
	PG_END_TRY();

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		CbRunRequest *req = &cb_shared->requests[taken[i]];

		if (req->abandoned)
		{
			req->state = CB_REQ_FREE;
			continue;
		}
		if (failed || run_ids[i] == 0)
		{
			req->state = CB_REQ_FAILED;
			strlcpy(req->error, failed ? error : "the job does not exist",
					sizeof(req->error));
		}
		else
		{
			req->state = CB_REQ_DONE;
			req->run_id = run_ids[i];
		}
		SetLatch(req->latch);
	}
	LWLockRelease(cb_shared->lock);
}

static bool
group_taken(List *groups, const char *group)
{
	ListCell   *lc;

	foreach(lc, groups)
		if (strcmp((const char *) lfirst(lc), group) == 0)
			return true;
	return false;
}

/*
 * A run whose group is busy: it is skipped if its job says so (or it has
 * waited longer than group_wait_timeout), else it waits, without a worker.
 */
static void
scheduler_group_busy(CbRunRef *ref)
{
	if (ref->skip_if_busy && strcmp(ref->state, "queued") == 0)
		catalog_skip_run(ref->run_id, ref->holder_pid != 0 ?
						 psprintf("its group was busy (held by process %d)", ref->holder_pid) :
						 "its group was busy");
	else if (ref->wait_expired)
		catalog_skip_run(ref->run_id,
						 "it waited for its group longer than group_wait_timeout");
	else if (strcmp(ref->state, "waiting") != 0)
		catalog_mark_waiting(ref->run_id);
}

/*
 * One pass over the database's runs.  Returns -1 if chunkbatch is not
 * installed, 0 if the database is idle, 1 if it has queued or active runs,
 * 2 if some run waits for a group (whose holder may be an outside session,
 * which nothing would wake us for).
 */
static int
scheduler_pass(void)
{
	List	   *runs;
	List	   *taken = NIL;
	ListCell   *lc;
	bool		busy;
	bool		waiting = false;
	bool		slots_full = false;
	bool		all_paused = cb_all_paused(NULL);
	CbSchemaState schema;
	char	   *version = NULL;
	uint64		copies;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	schema = catalog_schema_state(&version);
	if (schema == CB_SCHEMA_OLD)
		ereport(LOG,
				(errmsg("chunkbatch in database \"%s\" is at version %s; its runs wait for ALTER EXTENSION chunkbatch UPDATE",
						get_database_name(MyDb), version)));
	if (schema != CB_SCHEMA_OK)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return -1;
	}
	/* Runs that were queued in another database are not ours to start. */
	copies = catalog_pause_copies();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (copies > 0)
		ereport(LOG,
				(errmsg("chunkbatch paused %llu runs copied from another database; they run here only once resumed",
						(unsigned long long) copies)));

	/* Runs handed over by callers that wait are queued first. */
	scheduler_take_requests();

	/* Finished runs past chunkbatch.history_retention go, every ten minutes. */
	if (cb_history_retention > 0 &&
		TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), 600 * 1000))
	{
		uint64		pruned;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pruned = catalog_prune_history(cb_history_retention);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (pruned > 0)
			elog(LOG, "chunkbatch deleted %llu finished runs older than chunkbatch.history_retention",
				 (unsigned long long) pruned);
		last_prune = GetCurrentTimestamp();
	}

	/* Running runs whose worker is gone become 'interrupted', committed first. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	scheduler_reap_failed_starts();
	runs = catalog_runs_in_states("running,throttled");
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (!scheduler_run_has_slot(ref->run_id) &&
			catalog_mark_interrupted(ref->run_id))
			ereport(LOG,
					(errmsg("chunkbatch run %lld of job \"%s\" was interrupted; it resumes from its checkpoint",
							(long long) ref->run_id, ref->job_name)));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	/*
	 * Start runs in queue order, at most one per group: a group is taken by
	 * a run that has a worker, by any holder of its lock, or by an earlier
	 * run of the queue.  Runs of taken groups wait without a worker, so a
	 * busy group never holds up other groups.
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	runs = catalog_run_queue();
	busy = (runs != NIL);
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (scheduler_run_has_slot(ref->run_id) || ref->holder_pid != 0)
			taken = lappend(taken, ref->lock_group);
	}
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (scheduler_run_has_slot(ref->run_id) ||
			strcmp(ref->state, "running") == 0 ||
			strcmp(ref->state, "throttled") == 0)
			continue;
		if (group_taken(taken, ref->lock_group))
		{
			scheduler_group_busy(ref);
			waiting = true;
			continue;
		}
		taken = lappend(taken, ref->lock_group);
		if (!slots_full && !all_paused && scheduler_owner_ok(ref) &&
			!scheduler_launch(ref))
			slots_full = true;
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	/*
	 * While everything is paused, a database without workers has nothing to
	 * do: its scheduler leaves, and resume_all() brings it back.
	 */
	if (all_paused)
		return scheduler_slots_in_use() ? 1 : 0;
	if (waiting)
		return 2;
	return (busy || scheduler_slots_in_use()) ? 1 : 0;
}

void
chunkbatch_scheduler_main(Datum main_arg)
{
	CbSchedulerArgs args;
	TimestampTz idle_since;
	MemoryContext pass_ctx;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	MyDbIndex = DatumGetInt32(main_arg);
	MyDb = args.dboid;
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (cb_shared == NULL || MyDbIndex < 0 || MyDbIndex >= CB_MAX_DATABASES)
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(MyDb, InvalidOid, 0);
	if (!scheduler_attach())
		proc_exit(0);
	before_shmem_exit(scheduler_detach, (Datum) 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("chunkbatch scheduler");

	worker_handles = MemoryContextAllocZero(TopMemoryContext,
											sizeof(BackgroundWorkerHandle *) * cb_shared->nslots);
	pass_ctx = AllocSetContextCreate(TopMemoryContext, "chunkbatch scheduler pass",
									 ALLOCSET_DEFAULT_SIZES);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		volatile int busy;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
		cb_shared->dbs[MyDbIndex].wake = false;
		LWLockRelease(cb_shared->lock);

		MemoryContextReset(pass_ctx);
		MemoryContextSwitchTo(pass_ctx);
		PG_TRY();
		{
			busy = scheduler_pass();
		}
		PG_CATCH();
		{
			/* Log it and try again later rather than exit and restart. */
			HOLD_INTERRUPTS();
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
			RESUME_INTERRUPTS();
			busy = 1;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);

		if (busy > 0)
			idle_since = GetCurrentTimestamp();
		else if (busy < 0 ||
				 TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
											cb_scheduler_idle_exit * 1000))
		{
			bool		leave;

			LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
			leave = !cb_shared->dbs[MyDbIndex].wake || busy < 0;
			if (leave)
				cb_shared->dbs[MyDbIndex].wake = false;
			LWLockRelease(cb_shared->lock);
			if (leave)
			{
				leaving_idle = true;
				proc_exit(0);
			}
			continue;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 busy == 1 ? cb_naptime * 1000L : 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
