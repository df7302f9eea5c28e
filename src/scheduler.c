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
 * When it starts it checks the jobs' dependencies on their owners
 * (depend.c), and when it starts and then every minute it pauses runs
 * copied from another database (they belong to the database they were
 * queued in).  Each pass queues the
 * runs handed over by run(..., wait => true); then runs marked running
 * whose worker is gone become 'interrupted' (committed before any worker
 * could look at them); then queued, waiting and interrupted runs are
 * started in queue order, at most one per lock group, while worker slots
 * are free, the owner is within its share and the emergency stop
 * (pause_all) is off.  A pass looks at each owner's oldest runs only, by
 * index scans, so it costs the same with ten or a hundred thousand queued
 * runs and with one or fifty thousand groups.
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
static TimestampTz last_copy_check = 0;
static Oid	MyDb = InvalidOid;
static BackgroundWorkerHandle **worker_handles = NULL;

static void
scheduler_detach(int code, Datum arg)
{
	cb_db_detach(MyDbIndex, leaving_idle);
}

/*
 * Fail the runs whose worker exited before it could connect, and free
 * their slots.  Call inside a transaction.
 */
static void
scheduler_reap_failed_starts(void)
{
	int			i;

	for (i = 0; i < cb_slot_count(); i++)
	{
		int64		run_id;
		bool		slice;
		pid_t		pid;
		int			errcode;
		char	   *error = NULL;
		bool		stopped = (worker_handles[i] != NULL &&
							   GetBackgroundWorkerPid(worker_handles[i], &pid) == BGWH_STOPPED);

		if (!cb_slot_reap_failed_start(i, MyDb, stopped, &run_id, &slice,
									   &errcode, &error))
			continue;
		if (slice)
			ereport(LOG,
					(errmsg("chunkbatch could not start a worker for the slices of run %lld%s%s",
							(long long) run_id, error ? ": " : "", error ? error : "")));
		else if (errcode != 0)
			cb_catalog_fail_unstarted(run_id, errcode, error);
		else
			cb_catalog_fail_unstarted(run_id, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
									  "run worker exited before it could connect to the database; see the server log");
	}
}

/*
 * May the run's owner still be the identity of a worker?  If not, and if
 * "fail", fail the run with the reason.  (A helper of an executing run is
 * just not started, and its run's own worker goes on alone: a helper that
 * could not connect would be started again and again.)
 * Call inside a transaction.
 */
static bool
scheduler_owner_ok(CbRunRef *ref, bool fail)
{
	HeapTuple	tup;
	bool		canlogin;
	int			connlimit;
	int			sqlstate = 0;
	char	   *msg = NULL;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(ref->owner));
	if (!HeapTupleIsValid(tup))
	{
		if (fail)
			cb_catalog_fail_unstarted(ref->run_id, ERRCODE_UNDEFINED_OBJECT,
									  "the job's owner role no longer exists");
		return false;
	}
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	connlimit = ((Form_pg_authid) GETSTRUCT(tup))->rolconnlimit;
	ReleaseSysCache(tup);

	/*
	 * Background workers are not held to a role's CONNECTION LIMIT, but a
	 * DBA who set one means it: 0 stops the role's runs like NOLOGIN, and a
	 * limit that is reached keeps the run queued until a connection ends.
	 */
	if (canlogin && connlimit > 0 && CountUserBackends(ref->owner) >= connlimit)
		return false;
	if (canlogin && connlimit == 0)
	{
		sqlstate = ERRCODE_TOO_MANY_CONNECTIONS;
		if (fail)
			msg = psprintf("role \"%s\" owning job \"%s\" has CONNECTION LIMIT 0",
						   GetUserNameFromId(ref->owner, false), ref->job_name);
	}
	else if (!canlogin)
	{
		sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		if (fail)
			msg = psprintf("role \"%s\" owning job \"%s\" does not have the LOGIN attribute",
						   GetUserNameFromId(ref->owner, false), ref->job_name);
	}
	else if (pg_database_aclcheck(MyDb, ref->owner, ACL_CONNECT) != ACLCHECK_OK)
	{
		sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		if (fail)
			msg = psprintf("role \"%s\" owning job \"%s\" has no CONNECT privilege on this database",
						   GetUserNameFromId(ref->owner, false), ref->job_name);
	}
	if (sqlstate == 0)
		return true;
	if (fail)
		cb_catalog_fail_unstarted(ref->run_id, sqlstate, msg);
	return false;
}

/*
 * May the run's owner take one more worker?  Not beyond
 * chunkbatch.max_workers_per_role (the owner's own value if a DBA set one
 * with ALTER ROLE; by default one less than all of them), so that one
 * role's runs never hold every worker while another role's run waits: the
 * run stays queued, and the runs of other owners behind it in the queue
 * start meanwhile.  "limits" caches each owner's limit for one pass.
 */
typedef struct OwnerLimit
{
	Oid			owner;
	int			limit;
} OwnerLimit;

static bool
scheduler_fair_share(const CbRunRef *ref, List **limits)
{
	ListCell   *lc;
	OwnerLimit *ol = NULL;

	foreach(lc, *limits)
	{
		if (((OwnerLimit *) lfirst(lc))->owner == ref->owner)
		{
			ol = lfirst(lc);
			break;
		}
	}
	if (ol == NULL)
	{
		ol = palloc(sizeof(OwnerLimit));
		ol->owner = ref->owner;
		ol->limit = cb_catalog_role_limit(ref->owner, "chunkbatch.max_workers_per_role",
										  cb_max_workers_per_role);
		if (ol->limit < 0)
			ol->limit = Max(cb_slot_count() - 1, 1);
		*limits = lappend(*limits, ol);
	}
	return cb_slots_of_owner(ref->owner) < ol->limit;
}

/*
 * Claim a free slot and start a run worker (or, with "slice", a helper
 * with the run's slices); false if none could start.
 */
static bool
scheduler_launch(CbRunRef *ref, bool slice)
{
	BackgroundWorker w;
	CbWorkerArgs args;
	MemoryContext oldcxt;
	bool		registered;
	int			i;

	i = cb_slot_claim(ref->run_id, MyDb, ref->owner, slice, &args);
	if (i < 0)
		return false;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "chunkbatch");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "chunkbatch_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "chunkbatch run %lld%s", (long long) ref->run_id,
			 slice ? " slices" : "");
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
		worker_handles[i] = NULL;
		cb_slot_unclaim(i, args.generation);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("chunkbatch could not start a worker for run %lld",
						(long long) ref->run_id),
				 errdetail("The run stays queued and starts when a background worker is free."),
				 errhint("You might need to increase \"max_worker_processes\".")));
		return false;
	}
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
	CbRequestCopy reqs[CB_MAX_REQUESTS];
	int64		run_ids[CB_MAX_REQUESTS];
	char		error[256];
	int			n;
	int			i;
	volatile bool failed = false;

	n = cb_requests_take(MyDb, reqs);
	if (n == 0)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		for (i = 0; i < n; i++)
			run_ids[i] = cb_catalog_insert_run(reqs[i].job_id, reqs[i].params,
											reqs[i].queued_by, reqs[i].trigger,
											reqs[i].parallel);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata = cb_catch_error(TopMemoryContext, true, false);

		strlcpy(error, edata->message, sizeof(error));
		FreeErrorData(edata);
		failed = true;
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
		cb_request_finish(reqs[i].idx, failed ? 0 : run_ids[i],
						  failed ? error :
						  run_ids[i] == 0 ? "the job does not exist" : NULL);
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
	if (ref->skip_if_busy && cb_run_state_in(ref->state, CB_STATE(CB_RUN_QUEUED)))
		cb_catalog_skip_run(ref->run_id, ref->holder_pid != 0 ?
						 psprintf("its group was busy (held by process %d)", ref->holder_pid) :
						 "its group was busy");
	else if (ref->wait_expired)
		cb_catalog_skip_run(ref->run_id,
						 "it waited for its group longer than group_wait_timeout");
	else if (!cb_run_state_in(ref->state, CB_STATE(CB_RUN_WAITING)))
		cb_catalog_mark_waiting(ref->run_id);
}

/* Each step of a pass is a short transaction of its own. */
static void
step_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
step_end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Is the database's chunkbatch usable (installed, at this library's
 * version)?  If so, runs copied from another database rest as paused: they
 * are not ours to start.  They are looked for when the scheduler starts and
 * then every minute (a copy appears by CREATE DATABASE ... TEMPLATE, which
 * starts a new scheduler, or by a restore); meanwhile the queue scan leaves
 * them out.
 */
static bool
scheduler_check_database(void)
{
	CbSchemaState schema;
	char	   *version = NULL;
	uint64		copies = 0;

	step_begin();
	schema = cb_catalog_schema_state(&version);
	if (schema == CB_SCHEMA_OK &&
		TimestampDifferenceExceeds(last_copy_check, GetCurrentTimestamp(), 60 * 1000))
	{
		/* At start, also make sure that the jobs' owners cannot be dropped. */
		if (last_copy_check == 0)
			cb_depend_sync_owners();
		copies = cb_catalog_pause_copies(0);
		last_copy_check = GetCurrentTimestamp();
	}
	else if (schema == CB_SCHEMA_OLD)
		ereport(LOG,
				(errmsg("chunkbatch in database \"%s\" is at version %s; its runs wait for ALTER EXTENSION chunkbatch UPDATE",
						get_database_name(MyDb), version)));
	step_end();
	if (copies > 0)
		ereport(LOG,
				(errmsg("chunkbatch paused %llu runs copied from another database; they run here only once resumed",
						(unsigned long long) copies)));
	return schema == CB_SCHEMA_OK;
}

/* Finished runs past chunkbatch.history_retention go, every ten minutes. */
static void
scheduler_prune(void)
{
	uint64		pruned;

	if (cb_history_retention <= 0 ||
		!TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), 600 * 1000))
		return;
	step_begin();
	pruned = cb_catalog_prune_history(cb_history_retention);
	step_end();
	if (pruned > 0)
		elog(LOG, "chunkbatch deleted %llu finished runs older than chunkbatch.history_retention",
			 (unsigned long long) pruned);
	last_prune = GetCurrentTimestamp();
}

/* Running runs whose worker is gone become 'interrupted', committed first. */
static void
scheduler_mark_interrupted(void)
{
	List	   *runs;
	ListCell   *lc;

	step_begin();
	scheduler_reap_failed_starts();
	runs = cb_catalog_runs_in_states(CB_STATES_EXECUTING);
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (!cb_slot_has_run(MyDb, ref->run_id) &&
			cb_catalog_mark_interrupted(ref->run_id))
			ereport(LOG,
					(errmsg("chunkbatch run %lld of job \"%s\" was interrupted; it resumes from its checkpoint",
							(long long) ref->run_id, ref->job_name)));
	}
	step_end();
}

/*
 * How far the scheduler looks into each owner's runs: enough to find a
 * startable run of the owner behind the ones that wait for their groups,
 * while a pass costs the same with ten or a hundred thousand queued runs.
 */
#define CB_QUEUE_LOOKAHEAD	Max(64, 4 * cb_slot_count())

/*
 * Start runs in queue order, at most one per group: a group is taken by an
 * older run of the group that is not over, by a run that has a worker, or
 * by any holder of its lock.  A run that pg_cron queued is held for
 * CB_TICK_GRACE_MS, so that the other runs of its group queued at the same
 * tick arrive, and is then grouped with them to start by priority.  Runs of taken groups wait without a worker,
 * so a busy group never holds up other groups.  Only the oldest
 * CB_QUEUE_LOOKAHEAD runs of each owner are looked at.  Nothing starts
 * while everything is paused.  *queued: the queue was not empty; returns
 * true if some run waits for its group.
 */
static bool
scheduler_start_runs(bool all_paused, bool *queued)
{
	List	   *runs;
	List	   *taken = NIL;
	List	   *limits = NIL;
	ListCell   *lc;
	bool		waiting = false;
	bool		slots_full = false;

	step_begin();
	runs = cb_catalog_run_queue(CB_QUEUE_LOOKAHEAD);
	*queued = (runs != NIL);
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (cb_slot_has_run(MyDb, ref->run_id) ||
			cb_run_state_in(ref->state, CB_STATES_EXECUTING))
			taken = lappend(taken, ref->lock_group);
	}
	foreach(lc, runs)
	{
		CbRunRef   *ref = lfirst(lc);

		if (cb_slot_has_run(MyDb, ref->run_id) ||
			cb_run_state_in(ref->state, CB_STATES_EXECUTING))
			continue;
		/* pg_cron's runs of one tick: wait for them all, then group them. */
		if (ref->tick_young || ref->tick_ungrouped)
		{
			if (!ref->tick_young)
				cb_catalog_group_tick(ref->run_id);
			taken = lappend(taken, ref->lock_group);
			waiting = true;
			continue;
		}
		if (!ref->behind_older && !group_taken(taken, ref->lock_group))
			ref->holder_pid = cb_grouplock_holder(ref->lock_group);
		if (ref->behind_older || ref->holder_pid != 0 ||
			group_taken(taken, ref->lock_group))
		{
			scheduler_group_busy(ref);
			waiting = true;
			continue;
		}
		taken = lappend(taken, ref->lock_group);
		if (slots_full || all_paused || !scheduler_fair_share(ref, &limits))
			continue;
		if (scheduler_owner_ok(ref, true) && !scheduler_launch(ref, false))
			slots_full = true;
	}
	step_end();
	return waiting;
}

/*
 * Runs with parallel > 1 get helpers for their slices from the slots that
 * queued runs left free, one slot at a time per run in run order, within
 * the owner's share: a run gets fewer workers than slices when slots are
 * short, and more join as slots free.  A run whose own worker is gone, or
 * stops the run, gets none (its helpers stop; a run whose own worker is
 * gone resumes as interrupted).
 */
static void
scheduler_start_slices(bool all_paused)
{
	List	   *runs;
	List	   *limits = NIL;
	ListCell   *lc;
	bool		added = true;

	if (all_paused)
		return;
	step_begin();
	runs = cb_catalog_sliced_runs();
	while (added)
	{
		added = false;
		foreach(lc, runs)
		{
			CbRunRef   *ref = lfirst(lc);
			int			pid;
			int			workers = cb_slot_run_workers(MyDb, ref->run_id, &pid, 1);

			if (workers == 0 || workers >= ref->workers_wanted ||
				!cb_slot_run_wants_helpers(MyDb, ref->run_id) ||
				!scheduler_owner_ok(ref, false) ||
				!scheduler_fair_share(ref, &limits))
				continue;
			if (!scheduler_launch(ref, true))
			{
				added = false;
				break;
			}
			added = true;
		}
	}
	step_end();
}

/*
 * One pass over the database's runs.  Returns -1 if chunkbatch is not
 * usable here, 0 if the database is idle, 1 if it has queued or active
 * runs, 2 if some run waits for a group (whose holder may be an outside
 * session, which nothing would wake us for).
 */
static int
scheduler_pass(void)
{
	bool		all_paused = cb_all_paused(NULL);
	bool		queued;
	bool		waiting;

	if (!scheduler_check_database())
		return -1;
	/* Runs handed over by callers that wait are queued first. */
	scheduler_take_requests();
	scheduler_prune();
	scheduler_mark_interrupted();
	waiting = scheduler_start_runs(all_paused, &queued);
	scheduler_start_slices(all_paused);

	/*
	 * While everything is paused, a database without workers has nothing to
	 * do: its scheduler leaves, and resume_all() brings it back.
	 */
	if (all_paused)
		return cb_slots_in_use(MyDb) ? 1 : 0;
	if (waiting)
		return 2;
	return (queued || cb_slots_in_use(MyDb)) ? 1 : 0;
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
	if (!cb_shmem_ready() || MyDbIndex < 0 || MyDbIndex >= CB_MAX_DATABASES)
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(MyDb, InvalidOid, 0);
	if (!cb_db_attach(MyDbIndex, MyDb))
		proc_exit(0);
	before_shmem_exit(scheduler_detach, (Datum) 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The queue scan takes each owner's oldest runs in index order; a
	 * bitmap scan (chosen when an owner's count is underestimated) would
	 * read and sort all of that owner's runs instead.
	 */
	SetConfigOption("enable_bitmapscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("chunkbatch scheduler");

	worker_handles = MemoryContextAllocZero(TopMemoryContext,
											sizeof(BackgroundWorkerHandle *) * cb_slot_count());
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

		cb_db_clear_wake(MyDbIndex);

		MemoryContextReset(pass_ctx);
		MemoryContextSwitchTo(pass_ctx);
		PG_TRY();
		{
			busy = scheduler_pass();
		}
		PG_CATCH();
		{
			/* Log it and try again later rather than exit and restart. */
			(void) cb_catch_error(pass_ctx, false, true);
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
			if (cb_db_leave_if_unwoken(MyDbIndex, busy < 0))
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
