/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The run worker: one background worker per run, connected as the
 *	  job's owner, that executes the run chunk after chunk.
 *
 * The worker attaches to the slot its scheduler claimed, connects to the
 * database as the job owner (so the chunk SQL never has more privilege
 * than its owner), claims its run, takes the run's group lock and then
 * loops: one chunk, its own transaction and checkpoint, then throttle.
 * Everything else lives in chunk.c, grouplock.c, throttle.c and
 * catalog.c.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chunkbatch.h"

static CbSlot *MySlot = NULL;

/* Slot release at exit; a worker that never connected reports that. */
static void
worker_detach(int code, Datum arg)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (MySlot->pid == MyProcPid)
	{
		MySlot->state = (MySlot->state == CB_SLOT_STARTING) ?
			CB_SLOT_START_FAILED : CB_SLOT_FREE;
		MySlot->pid = 0;
		MySlot->latch = NULL;
	}
	LWLockRelease(cb_shared->lock);
	cb_wake_schedulers();
	grouplock_wake_waiters();
}

static void
worker_attach(int slotno, const CbWorkerArgs *args)
{
	if (cb_shared == NULL || slotno < 0 || slotno >= cb_shared->nslots)
		proc_exit(0);
	MySlot = &cb_shared->slots[slotno];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (MySlot->state != CB_SLOT_STARTING ||
		MySlot->generation != args->generation ||
		MySlot->run_id != args->run_id)
	{
		LWLockRelease(cb_shared->lock);
		proc_exit(0);
	}
	MySlot->pid = MyProcPid;
	MySlot->latch = MyLatch;
	MySlot->phase = CB_PHASE_STARTING;
	MySlot->worker_started_at = GetCurrentTimestamp();
	LWLockRelease(cb_shared->lock);
	before_shmem_exit(worker_detach, (Datum) 0);
}

/* Publish progress after a committed chunk, or the current phase. */
static void
worker_publish(const CbRun *run, CbPhase phase, uint64 processed)
{
	SpinLockAcquire(&MySlot->mutex);
	MySlot->phase = phase;
	MySlot->rows_done = run->rows_done;
	MySlot->chunks_done = run->chunks_done;
	MySlot->rows_this_worker += processed;
	MySlot->batch_size = run->batch_size;
	MySlot->chunk_started_at = (phase == CB_PHASE_CHUNK) ? GetCurrentTimestamp() : 0;
	SpinLockRelease(&MySlot->mutex);
}

/* Run fn(arg) in a short transaction of its own, shielded from cancel. */
static void
worker_bookkeeping(void (*fn) (CbRun *run, const char *state, ErrorData *edata),
				   CbRun *run, const char *state, ErrorData *edata)
{
	HOLD_CANCEL_INTERRUPTS();
	QueryCancelPending = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	fn(run, state, edata);
	PopActiveSnapshot();
	CommitTransactionCommand();
	RESUME_CANCEL_INTERRUPTS();
}

static void
finish_fn(CbRun *run, const char *state, ErrorData *edata)
{
	catalog_finish_run(run, state, edata);
}

static void
mark_started_fn(CbRun *run, const char *state, ErrorData *edata)
{
	catalog_mark_started(run->run_id);
}

static void
mark_waiting_fn(CbRun *run, const char *state, ErrorData *edata)
{
	catalog_mark_waiting(run->run_id);
}

static void
skip_fn(CbRun *run, const char *reason, ErrorData *edata)
{
	catalog_skip_run(run->run_id, reason);
}

/*
 * Take the run's group.  Another backend holds it only if an outside
 * session took the lock after the scheduler saw the group free: then the
 * run waits ('waiting'), or ends as skipped by its job's group policy.
 * Returns false if the run ended (cancelled or skipped) instead.
 */
static bool
worker_take_group(CbRun *run)
{
	TimestampTz since = GetCurrentTimestamp();
	bool		marked = false;

	while (!grouplock_try(run))
	{
		if (run->job.skip_if_busy && run->chunks_done == 0)
		{
			worker_bookkeeping(skip_fn, run, "its group was busy", NULL);
			return false;
		}
		if (run->job.group_wait_timeout != NULL &&
			TimestampDifferenceExceeds(since, GetCurrentTimestamp(),
									   (int) cb_interval_ms(run->job.group_wait_timeout)))
		{
			worker_bookkeeping(skip_fn, run, "it waited for its group longer than group_wait_timeout", NULL);
			return false;
		}
		if (!marked)
			worker_bookkeeping(mark_waiting_fn, run, NULL, NULL);
		marked = true;
		cb_slot_set_phase(MySlot, CB_PHASE_WAITING);
		if (!throttle_wait_once(MySlot, 1000L))
		{
			worker_bookkeeping(finish_fn, run, "cancelled", NULL);
			return false;
		}
	}
	return true;
}

/* End the run as cancelled or failed after an unsuccessful chunk. */
static void
worker_fail(CbRun *run, ErrorData *edata)
{
	/* A cancel request wins over whatever error the chunk ended with. */
	if (cb_slot_cancel_requested(MySlot))
	{
		worker_bookkeeping(finish_fn, run, "cancelled", NULL);
		elog(LOG, "chunkbatch run %lld of job \"%s\" cancelled in chunk %lld",
			 (long long) run->run_id, run->job.job_name,
			 (long long) run->chunks_done + 1);
		return;
	}
	worker_bookkeeping(finish_fn, run, "failed", edata);
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" failed in chunk %lld: %s",
					(long long) run->run_id, run->job.job_name,
					(long long) run->chunks_done + 1, edata->message),
			 errdetail("SQLSTATE %s; the checkpoint is kept at %lld rows.",
					   unpack_sql_state(edata->sqlerrcode),
					   (long long) run->rows_done)));
}

/*
 * After a transient error (lock timeout, deadlock, serialization failure)
 * the chunk is tried again in a new transaction, after an exponential
 * backoff with jitter, up to CB_CHUNK_MAX_RETRIES times in a row.
 * Returns false when the error must end the run instead.
 */
#define CB_CHUNK_MAX_RETRIES	10
#define CB_BACKOFF_BASE_MS		50
#define CB_BACKOFF_MAX_MS		5000

static bool
worker_retry(CbRun *run, ErrorData *edata, int *attempts)
{
	long		backoff;

	if (!chunk_error_is_transient(edata) || *attempts >= CB_CHUNK_MAX_RETRIES ||
		cb_slot_cancel_requested(MySlot))
		return false;
	backoff = Min((long) CB_BACKOFF_BASE_MS << *attempts, CB_BACKOFF_MAX_MS);
	backoff = backoff / 2 + (long) (pg_prng_double(&pg_global_prng_state) * backoff / 2);
	(*attempts)++;
	run->retries++;
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" retries chunk %lld in %ld ms (attempt %d): %s",
					(long long) run->run_id, run->job.job_name,
					(long long) run->chunks_done + 1, backoff, *attempts,
					edata->message)));
	(void) throttle_sleep(MySlot, (int) backoff);
	return true;
}

/*
 * Claim the run and prepare its execution; false if it is not ours.  A run
 * that cannot even be prepared (its checkpoint does not parse as the
 * cursor type, say) fails here instead of being restarted forever.
 */
static bool
worker_start(int64 run_id, CbRun *run, CbChunkState **cs, MemoryContext run_ctx)
{
	volatile bool claimed = false;
	ErrorData  *edata = NULL;
	char		appname[NAMEDATALEN];

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(run_ctx);
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		claimed = catalog_claim_run(run_id, run);
		if (claimed)
			*cs = chunk_begin(run, run_ctx);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(run_ctx);
		HOLD_INTERRUPTS();
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(run_ctx);

	if (edata != NULL)
	{
		/* The claim was rolled back with the error: fail the queued run. */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		catalog_fail_unstarted(run_id, unpack_sql_state(edata->sqlerrcode),
							   edata->message);
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	if (!claimed)
		return false;

	snprintf(appname, sizeof(appname), "chunkbatch run %lld: %s",
			 (long long) run_id, run->job.job_name);
	pgstat_report_appname(appname);
	SpinLockAcquire(&MySlot->mutex);
	MySlot->rows_done = run->rows_done;
	MySlot->chunks_done = run->chunks_done;
	MySlot->batch_size = run->batch_size;
	SpinLockRelease(&MySlot->mutex);
	return true;
}

void
chunkbatch_worker_main(Datum main_arg)
{
	CbWorkerArgs args;
	CbRun		run;
	CbChunkState *cs = NULL;
	MemoryContext run_ctx;
	MemoryContext chunk_ctx;
	int			attempts = 0;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	worker_attach(DatumGetInt32(main_arg), &args);

	BackgroundWorkerInitializeConnectionByOid(args.dboid, args.owner, 0);
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	MySlot->state = CB_SLOT_RUNNING;
	LWLockRelease(cb_shared->lock);
	SetConfigOption("max_parallel_workers_per_gather", "0",
					PGC_USERSET, PGC_S_SESSION);

	run_ctx = AllocSetContextCreate(TopMemoryContext, "chunkbatch run",
									ALLOCSET_DEFAULT_SIZES);
	chunk_ctx = AllocSetContextCreate(run_ctx, "chunkbatch chunk",
									  ALLOCSET_DEFAULT_SIZES);
	if (!worker_start(args.run_id, &run, &cs, run_ctx))
		proc_exit(0);
	if (!worker_take_group(&run))
		proc_exit(0);
	worker_bookkeeping(mark_started_fn, &run, NULL, NULL);

	/* The chunk loop: one committed chunk per iteration. */
	for (;;)
	{
		CbChunkResult res;

		MemoryContextReset(chunk_ctx);
		MemoryContextSwitchTo(chunk_ctx);
		if (cb_slot_cancel_requested(MySlot))
		{
			worker_bookkeeping(finish_fn, &run, "cancelled", NULL);
			break;
		}
		worker_publish(&run, CB_PHASE_CHUNK, 0);
		chunk_execute(cs, &res);
		if (!res.ok && worker_retry(&run, res.error, &attempts))
			continue;
		if (!res.ok)
		{
			worker_fail(&run, res.error);
			break;
		}
		attempts = 0;
		worker_publish(&run, CB_PHASE_SLEEPING, res.processed);
		if (res.done)
		{
			elog(LOG, "chunkbatch run %lld of job \"%s\" succeeded: %lld rows in %lld chunks",
				 (long long) run.run_id, run.job.job_name,
				 (long long) run.rows_done, (long long) run.chunks_done);
			break;
		}
		(void) throttle_sleep(MySlot, run.job.sleep_ms);
	}

	cb_slot_set_phase(MySlot, CB_PHASE_FINISHING);
	grouplock_release(&run);
	proc_exit(0);
}
