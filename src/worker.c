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
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "chunkbatch.h"

/* The run this worker executes, once claimed (see run_context()). */
CbRun	   *cb_current_run = NULL;

/* A run fails as a crash loop when this many workers died on it in a row. */
#define CB_MAX_START_ATTEMPTS	3

static CbSlot *MySlot = NULL;
static CbPhase MyPhase = CB_PHASE_STARTING;	/* as last published */
static MemoryContext RunContext = NULL;	/* lives as long as the run */
static bool MySliced = false;	/* the run's chunks are in slices */
static ErrorContextCallback MyErrorContext;	/* see worker_error_context() */

/* Slot release at exit; a worker that never connected reports that. */
static void
worker_detach(int code, Datum arg)
{
	/* Terminated while connecting is no failure of the run's. */
	cb_slot_detach(MySlot, cb_terminate_pending());
	cb_wake_schedulers();
	cb_grouplock_wake_waiters();
}

static void
worker_attach(int slotno, const CbWorkerArgs *args)
{
	MySlot = cb_slot_attach(slotno, args);
	if (MySlot == NULL)
		proc_exit(0);
	before_shmem_exit(worker_detach, (Datum) 0);
}

/* Publish progress after a committed chunk, or the current phase. */
static void
worker_publish(const CbRun *run, CbPhase phase, uint64 processed)
{
	MyPhase = phase;
	cb_slot_publish(MySlot, phase, run->rows_done, run->chunks_done,
					processed, run->batch_size);
}

/*
 * The context line of every message of the worker (a chunk's error, a
 * retry, a throttle's failure): which run, chunk and job it comes from.
 */
static void
worker_error_context(void *arg)
{
	const CbRun *run = (const CbRun *) arg;

	if (run->job.job_name == NULL)
		errcontext("chunkbatch run %lld", (long long) run->run_id);
	else if (MyPhase == CB_PHASE_CHUNK && run->slice_no >= 0)
		errcontext("chunkbatch run %lld, chunk %lld of slice %d of job \"%s\"",
				   (long long) run->run_id, (long long) run->chunks_done + 1,
				   run->slice_no, run->job.job_name);
	else if (MyPhase == CB_PHASE_CHUNK)
		errcontext("chunkbatch run %lld, chunk %lld of job \"%s\"",
				   (long long) run->run_id, (long long) run->chunks_done + 1,
				   run->job.job_name);
	else
		errcontext("chunkbatch run %lld of job \"%s\", after chunk %lld",
				   (long long) run->run_id, run->job.job_name,
				   (long long) run->chunks_done);
}

/*
 * Bookkeeping runs in short transactions of its own, shielded from query
 * cancels: a cancel aimed at a chunk must not abort the record of it.
 */
static void
bookkeeping_begin(void)
{
	HOLD_CANCEL_INTERRUPTS();
	QueryCancelPending = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
bookkeeping_end(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	RESUME_CANCEL_INTERRUPTS();
}

static void
worker_end_run(CbRun *run, CbRunState state, ErrorData *edata,
			   const char *reason)
{
	bookkeeping_begin();
	cb_catalog_finish_run(run, state, edata, reason);
	bookkeeping_end();
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" %s at %lld rows in %lld chunks%s%s",
					(long long) run->run_id, run->job.job_name,
					cb_run_state_name(state),
					(long long) run->rows_done, (long long) run->chunks_done,
					reason ? ": " : "", reason ? reason : "")));
}

/* Why the run must stop at this chunk boundary, if it must. */
typedef enum CbStop
{
	CB_GO = 0,
	CB_STOP_TERMINATE,			/* SIGTERM: interrupted, resumes later */
	CB_STOP_CANCEL,
	CB_STOP_PAUSE,
	CB_STOP_RUNTIME,			/* max_runtime reached: stopped */
	CB_STOP_RUN					/* slices: the run stops (see worker_slices) */
} CbStop;

static CbStop
worker_should_stop(const CbRun *run, TimestampTz began)
{
	bool		cancel;
	bool		pause;

	if (cb_terminate_pending())
		return CB_STOP_TERMINATE;
	cb_slot_stop_flags(MySlot, &cancel, &pause);
	if (cancel)
		return CB_STOP_CANCEL;
	if (pause)
		return CB_STOP_PAUSE;
	if (MySliced && cb_slot_run_stopping(MySlot))
		return CB_STOP_RUN;
	if (run->job.max_runtime != NULL &&
		cb_elapsed_exceeds(began, GetCurrentTimestamp(), run->job.max_runtime))
		return CB_STOP_RUNTIME;
	return CB_GO;
}

static void
worker_stop(CbRun *run, CbStop why)
{
	switch (why)
	{
		case CB_STOP_TERMINATE:
			worker_end_run(run, CB_RUN_INTERRUPTED, NULL, "its worker was terminated");
			break;
		case CB_STOP_CANCEL:
			worker_end_run(run, CB_RUN_CANCELLED, NULL, NULL);
			break;
		case CB_STOP_PAUSE:
			worker_end_run(run, CB_RUN_PAUSED, NULL, NULL);
			break;
		case CB_STOP_RUNTIME:
			worker_end_run(run, CB_RUN_STOPPED, NULL, "max_runtime");
			break;
		case CB_STOP_RUN:
			/* a helper said its slice failed, and none did: resume */
			worker_end_run(run, CB_RUN_INTERRUPTED, NULL,
						   "a worker of its slices stopped");
			break;
		case CB_GO:
			break;
	}
}

/*
 * Whether the run did work at an earlier start: chunks of its own, or a
 * split into slices (whose chunks the run's row counts only at its end).
 * Such a run is never skipped, and its steps and estimate are not redone.
 */
static bool
run_begun(const CbRun *run)
{
	return run->chunks_done > 0 || run->has_slices;
}

/*
 * Take the run's group.  Another backend holds it only if an outside
 * session took the lock after the scheduler saw the group free: then the
 * run waits ('waiting'), or ends as skipped by its job's group policy.
 * Returns false if the run ended instead.
 */
static bool
worker_take_group(CbRun *run, TimestampTz began)
{
	bool		marked = false;

	while (!cb_grouplock_try(run))
	{
		const char *skip = NULL;
		CbStop		stop;

		if (run->job.skip_if_busy && !run_begun(run))
			skip = "its group was busy";
		else if (run->job.group_wait_timeout != NULL && !run_begun(run) &&
				 cb_elapsed_exceeds(began, GetCurrentTimestamp(),
									run->job.group_wait_timeout))
			skip = "it waited for its group longer than group_wait_timeout";
		if (skip != NULL)
		{
			bookkeeping_begin();
			cb_catalog_skip_run(run->run_id, skip);
			bookkeeping_end();
			return false;
		}
		if (!marked)
		{
			bookkeeping_begin();
			cb_catalog_mark_waiting(run->run_id);
			bookkeeping_end();
			marked = true;
		}
		cb_slot_set_phase(MySlot, CB_PHASE_WAITING);
		(void) cb_throttle_wait_once(MySlot, 1000L);
		if ((stop = worker_should_stop(run, began)) != CB_GO &&
			stop != CB_STOP_RUNTIME)
		{
			worker_stop(run, stop);
			return false;
		}
	}
	bookkeeping_begin();
	cb_catalog_mark_started(run->run_id);
	bookkeeping_end();
	return true;
}

/*
 * End the run after a chunk that did not commit: stopped as requested if
 * a cancel, pause or SIGTERM caused (or met) the error, else failed, the
 * checkpoint kept at the last committed chunk.
 */
static void
worker_fail(CbRun *run, ErrorData *edata, TimestampTz began)
{
	CbStop		stop = worker_should_stop(run, began);

	/*
	 * max_runtime ends a run that only meets transient errors: stopped.  A
	 * failed slice (CB_STOP_RUN) is what fails the run.
	 */
	if (stop != CB_GO && stop != CB_STOP_RUN &&
		(stop != CB_STOP_RUNTIME || cb_chunk_error_is_transient(edata)))
	{
		worker_stop(run, stop);
		return;
	}
	worker_end_run(run, CB_RUN_FAILED, edata, NULL);
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" failed in chunk %lld: %s",
					(long long) run->run_id, run->job.job_name,
					(long long) run->chunks_done + 1, edata->message),
			 errdetail("SQLSTATE %s; the checkpoint is kept at %lld rows.",
					   unpack_sql_state(edata->sqlerrcode),
					   (long long) run->rows_done)));
}

/*
 * Decide whether a chunk that did not commit is tried again, in a new
 * transaction.  A statement timeout halves the chunk size (down to one
 * row) without counting as a retry; a transient error (lock timeout,
 * deadlock, serialization failure) is retried after an exponential backoff
 * with jitter, up to the job's max_retries times in a row.
 */
#define CB_BACKOFF_BASE_MS		50
#define CB_BACKOFF_MAX_MS		5000

static bool
worker_retry(CbRun *run, const CbChunkResult *res, int *attempts,
			 TimestampTz began)
{
	long		backoff;

	if (worker_should_stop(run, began) != CB_GO)
		return false;
	if (res->slice_moved)
		return true;			/* a thief's doing, not the chunk's: at once */
	if (res->timed_out)
	{
		if (run->batch_size <= 1)
			return false;
		run->batch_size = Max(run->batch_size / 2, 1);
		/* A fixed-size job does not grow back to a size that timed out. */
		run->full_batch_size = Min(run->full_batch_size, run->batch_size);
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\" retries chunk %lld with %d rows after a statement timeout",
						(long long) run->run_id, run->job.job_name,
						(long long) run->chunks_done + 1, run->batch_size)));
		return true;
	}
	if (!cb_chunk_error_is_transient(res->error) || *attempts >= run->job.max_retries)
		return false;
	backoff = Min((long) CB_BACKOFF_BASE_MS << Min(*attempts, 16), CB_BACKOFF_MAX_MS);
	backoff = backoff / 2 + (long) (pg_prng_double(&pg_global_prng_state) * backoff / 2);
	(*attempts)++;
	run->retries++;
	run->batch_size = cb_throttle_after_conflict(run);
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" retries chunk %lld in %ld ms (attempt %d of %d): %s",
					(long long) run->run_id, run->job.job_name,
					(long long) run->chunks_done + 1, backoff, *attempts,
					run->job.max_retries, res->error->message)));
	(void) cb_throttle_sleep(MySlot, (int) backoff);
	return true;
}

/*
 * After a chunk that did not commit: true to try it again (a transient
 * error or a timeout).  With on_error => 'isolate', a chunk that failed
 * on its rows is redone without its poison rows: *res then tells how that
 * went.
 */
static bool
worker_recover(CbRun *run, CbChunkState *cs, CbChunkResult *res,
			   int *attempts, TimestampTz began)
{
	if (worker_retry(run, res, attempts, began))
		return true;
	if (run->job.isolate &&
		(run->job.keys_sql != NULL || run->job.range_table != NULL) &&
		!res->timed_out && !cb_chunk_error_is_transient(res->error) &&
		worker_should_stop(run, began) == CB_GO)
	{
		cb_chunk_isolate(cs, res);
		if (!res->ok && worker_retry(run, res, attempts, began))
			return true;
	}
	return false;
}

/*
 * alter_job changed the job during the run: its new settings (batch size,
 * target, sleeps, throttles, timeouts, retries) apply from the next chunk.
 */
static void
worker_retune(CbRun *run)
{
	MemoryContext old = MemoryContextSwitchTo(RunContext);
	int32		old_batch_size = run->job.batch_size;

	bookkeeping_begin();
	MemoryContextSwitchTo(RunContext);
	cb_catalog_reload_job(&run->job);
	bookkeeping_end();
	MemoryContextSwitchTo(old);
	run->ceiling = 0;			/* new settings: learn the knee again */
	run->knee_suspect = 0;
	if (run->job.batch_size != old_batch_size)
	{
		run->full_batch_size = run->job.batch_size;
		if (run->job.target_chunk_ms <= 0)
			run->batch_size = run->job.batch_size;
	}
	ereport(LOG,
			(errmsg("chunkbatch run %lld of job \"%s\" takes the job's new settings",
					(long long) run->run_id, run->job.job_name)));
}

/*
 * Wait while a throttle holds the run.  An alter_job seen meanwhile is
 * applied at once, so that new or removed throttles take effect while the
 * run waits.
 */
static bool
worker_gate(CbRun *run, ErrorData **error)
{
	bool		job_altered;

	for (;;)
	{
		bool		go = cb_throttle_gate(run, MySlot, error, &job_altered);

		if (!job_altered || !go)
			return go;
		worker_retune(run);
	}
}

/*
 * Between two chunks: new job settings, the next chunk's size, the pause,
 * and the throttles.  Returns false if the run must not go on; *error
 * then says why it fails (or is NULL if it was asked to stop).
 */
static bool
worker_pace(CbRun *run, const CbChunkResult *res, ErrorData **error)
{
	if (res->job_altered_at != run->job.altered_at)
		worker_retune(run);
	run->batch_size = cb_throttle_next_batch(run, res);
	*error = NULL;
	if (!cb_throttle_sleep(MySlot, cb_throttle_pause_ms(run, res)))
		return false;
	return worker_gate(run, error);
}

/*
 * Run the run's steps up to (not including) step "upto", each in
 * transactions of its own; false if the run ended instead (stopped, or
 * failed by a step).  At the run's first start its steps are fixed first.
 */
static bool
worker_steps(CbRun *run, int upto, TimestampTz began)
{
	MemoryContext step_ctx = AllocSetContextCreate(CurrentMemoryContext,
												   "chunkbatch step",
												   ALLOCSET_DEFAULT_SIZES);
	bool		ok = true;

	while (ok && run->steps_done < upto)
	{
		MemoryContext old = MemoryContextSwitchTo(step_ctx);
		ErrorData  *error = NULL;
		CbStop		stop = worker_should_stop(run, began);

		if (stop != CB_GO)
			worker_stop(run, stop);
		else if (!cb_steps_execute(run, &error))
			worker_fail(run, error, began);
		ok = (stop == CB_GO && error == NULL);
		MemoryContextSwitchTo(old);
		MemoryContextReset(step_ctx);
	}
	MemoryContextDelete(step_ctx);
	return ok;
}

/*
 * The run's last chunk committed.  Without steps after it, that chunk's
 * checkpoint recorded the success (unless it was a slice's: "recorded"
 * false); otherwise the run succeeds after them.
 */
static void
worker_succeed(CbRun *run, TimestampTz began, bool recorded)
{
	if (!cb_run_has_after_steps(run) && !recorded)
		worker_end_run(run, CB_RUN_SUCCEEDED, NULL, NULL);
	else if (!cb_run_has_after_steps(run))
		elog(LOG, "chunkbatch run %lld of job \"%s\" succeeded: %lld rows in %lld chunks",
			 (long long) run->run_id, run->job.job_name,
			 (long long) run->rows_done, (long long) run->chunks_done);
	else if (worker_steps(run, list_length(run->steps), began))
		worker_end_run(run, CB_RUN_SUCCEEDED, NULL, NULL);
}

/* At the run's first start, fix its steps (the index definitions first). */
static bool
worker_plan_steps(CbRun *run, TimestampTz began)
{
	const CbJob *job = &run->job;
	MemoryContext old = CurrentMemoryContext;
	ErrorData  *error = NULL;

	if (run->steps != NIL || run_begun(run) ||
		(job->before_sql == NIL && job->after_sql == NIL && !job->rebuild_indexes &&
		 !job->analyze_after && !job->vacuum_after))
		return true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		cb_steps_plan(run, RunContext);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		error = cb_catch_error(old, true, true);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (error != NULL)
		worker_fail(run, error, began);
	return error == NULL;
}

/*
 * One of worker_estimate's looks, in a transaction of its own: the span,
 * or count_sql.  Returns true if the span's read also gave the estimate.
 */
static bool
worker_estimate_one(CbRun *run, CbChunkState *cs, bool span)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool counted = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int64		total = -1;
		char	   *first = NULL;
		char	   *last = NULL;
		bool		keep = span;

		PushActiveSnapshot(GetTransactionSnapshot());
		if (!span)
			total = cb_chunk_count_estimate(cs);
		else if (!cb_chunk_find_span(cs, &first, &last, &total))
			last = "";			/* nothing matches: no chunk */
		else if (!cb_catalog_set_span(run, first, last))
			keep = false;		/* the job changed meanwhile: no span */
		if (span && (!keep || !cb_range_count_is_span(&run->job)))
			total = -1;			/* the read gave no count, or not count_sql's */
		if (total >= 0)
			cb_catalog_set_estimate(run->run_id, total);
		if (span)
		{
			cb_chunk_set_span(cs, keep ? first : NULL, keep ? last : NULL);
			run->range_first = (keep && first) ? MemoryContextStrdup(RunContext, first) : NULL;
			run->range_last = (keep && last) ? MemoryContextStrdup(RunContext, last) : NULL;
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		counted = span && total >= 0;
	}
	PG_CATCH();
	{
		(void) cb_catch_error(old, false, true);
		if (span)
			cb_chunk_set_span(cs, NULL, NULL);	/* not recorded: no span */
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return counted;
}

/*
 * At the run's first start, best effort: in range mode with a filter, the
 * span of keys the filter matches (a run whose filter matches nothing has
 * no chunk), and its total from count_sql, unless the span's read made the
 * same count.
 */
static void
worker_estimate(CbRun *run, CbChunkState *cs)
{
	bool		counted = false;

	/* Done at the first start (a run with slices has no chunk of its own). */
	if (run_begun(run) || run->range_first != NULL)
		return;
	if (run->job.range_filter != NULL)
		counted = worker_estimate_one(run, cs, true);
	if (run->job.count_sql != NULL && !counted)
		worker_estimate_one(run, cs, false);
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
		claimed = cb_catalog_claim_run(run_id, run);
		if (claimed)
		{
			*cs = cb_chunk_begin(run, run_ctx);
			cb_current_run = run;
			/* What a chunk gets: the job's, else its owner's session's. */
			cb_catalog_set_timeouts(run_id,
									run->job.statement_timeout ?
									(int) cb_interval_ms(run->job.statement_timeout) :
									StatementTimeout,
									run->job.lock_timeout ?
									(int) cb_interval_ms(run->job.lock_timeout) :
									LockTimeout);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		edata = cb_catch_error(run_ctx, true, true);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(run_ctx);

	if (edata != NULL && cb_terminate_pending())
		return false;			/* SIGTERM: the run stays queued */
	if (edata != NULL)
	{
		/*
		 * The claim was rolled back with the error.  The scheduler fails the
		 * run: this worker may not be able to write at all (its owner's
		 * settings can make every transaction read-only), and a failure it
		 * could not record would start the next worker at once.
		 */
		cb_slot_report_start_failure(MySlot, edata->sqlerrcode, edata->message);
		return false;
	}
	if (!claimed)
		return false;
	if (run->start_attempts > CB_MAX_START_ATTEMPTS)
	{
		char	   *msg = psprintf("its worker exited %d times in a row without committing a chunk",
								   CB_MAX_START_ATTEMPTS);

		bookkeeping_begin();
		cb_catalog_fail_unstarted(run_id, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, msg);
		bookkeeping_end();
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\" failed as a crash loop: %s",
						(long long) run_id, run->job.job_name, msg)));
		return false;
	}

	run->full_batch_size = run->job.batch_size;
	snprintf(appname, sizeof(appname), "chunkbatch run %lld: %s",
			 (long long) run_id, run->job.job_name);
	pgstat_report_appname(appname);
	cb_slot_start_progress(MySlot, run->rows_done, run->chunks_done,
						   run->batch_size);
	return true;
}

/* How a stretch of chunks ended: see worker_chunks(). */
typedef struct CbOutcome
{
	bool		done;			/* the last chunk committed */
	CbStop		stop;			/* else why it stopped (CB_GO: it failed) */
	ErrorData  *error;			/* the error that failed it */
} CbOutcome;

/*
 * The chunk loop: one committed chunk per iteration, until the last one,
 * a stop or a failure (*out says which).  The error is in chunk_ctx.
 */
static void
worker_chunks(CbRun *run, CbChunkState *cs, MemoryContext chunk_ctx,
			  TimestampTz began, CbOutcome *out)
{
	int			attempts = 0;

	memset(out, 0, sizeof(CbOutcome));
	for (;;)
	{
		CbChunkResult res;

		MemoryContextReset(chunk_ctx);
		MemoryContextSwitchTo(chunk_ctx);
		if ((out->stop = worker_should_stop(run, began)) != CB_GO)
			return;
		worker_publish(run, CB_PHASE_CHUNK, 0);
		cb_chunk_execute(cs, &res);
		if (!res.ok && worker_recover(run, cs, &res, &attempts, began))
			continue;
		if (!res.ok)
		{
			out->error = res.error;
			return;
		}
		attempts = 0;
		worker_publish(run, CB_PHASE_SLEEPING, res.processed);
		if (res.done)
		{
			out->done = true;
			return;
		}
		if (!worker_pace(run, &res, &out->error) && out->error != NULL)
			return;
	}
}

/* ----------------------------------------------------------------
 * Parallel slices
 *
 * A range-mode run with parallel > 1 is split at its first start, after
 * its before steps and its span, into slices of about as many matching
 * rows each (chunkbatch.slices; see cb_range_split).  Its own worker keeps
 * the group lock and processes slices itself, while the scheduler starts
 * helpers into free slots for the others (worker_help).  Each worker takes
 * a slice that no worker has, processes it chunk by chunk with the slice's
 * own checkpoint, and takes the next.  The run's worker then waits for
 * the slices of the others, runs the after steps and ends the run.  When
 * the run stops (pause, cancel, SIGTERM, a failed slice), its helpers stop
 * at their next chunk boundary, and the run's worker ends the run once
 * they are gone.
 * ----------------------------------------------------------------
 */

/*
 * Split the run into slices at its first start; false if it has none.
 * *lost: it had slices, but they are gone (a run restored without them).
 */
static bool
worker_split(CbRun *run, CbChunkState *cs, bool *lost)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool sliced = false;
	volatile int nslices = 0;

	*lost = false;
	if (run->parallel <= 1 || run->job.range_table == NULL)
		return false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (cb_catalog_slices_exist(run->run_id))
		{
			cb_catalog_slices_reopen(run->run_id);
			sliced = true;
		}
		else if (run->chunks_done == 0)
		{
			char	  **bounds;

			nslices = cb_chunk_split(cs, run->parallel, &bounds);
			if (nslices > 1)
				sliced = cb_catalog_slices_create(run, bounds, nslices, run->range_last);
			if (!sliced)
				nslices = 0;
		}
		else if (run->cursor == NULL)
			*lost = true;		/* chunks done, but by slices that are gone */
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* Best effort: the run goes on without slices. */
		(void) cb_catch_error(old, false, true);
		sliced = false;
		nslices = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (nslices > 1)
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\" is split into %d slices",
						(long long) run->run_id, run->job.job_name, nslices)));
	return sliced;
}

/*
 * Take a slice of the run that no worker processes, or else the upper
 * half of the biggest rest of one that another worker processes (work
 * stealing), into *slice, and aim *cs at it; false if there is none (then
 * *totals, if given, says how the slices stand) or if that failed
 * (*error).
 */
static bool
worker_take_slice(CbRun *run, CbRun *slice, CbChunkState **cs,
				  CbSliceTotals *totals, ErrorData **error)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool taken = false;
	volatile bool stolen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		/* Whatever the owner's default: a thief must see the latest rows. */
		XactIsoLevel = XACT_READ_COMMITTED;
		PushActiveSnapshot(GetTransactionSnapshot());
		taken = cb_catalog_slice_claim(run, slice, RunContext);
		if (*cs == NULL)
			*cs = cb_chunk_begin(slice, RunContext);
		if (!taken && (taken = stolen = cb_chunk_steal(*cs, run, slice)))
		{
			slice->cursor = MemoryContextStrdup(RunContext, slice->cursor);
			if (slice->range_last != NULL)
				slice->range_last = MemoryContextStrdup(RunContext, slice->range_last);
		}
		else if (taken)
			cb_chunk_retarget(*cs);
		if (!taken && totals != NULL)
			cb_catalog_slice_totals(run->run_id, totals);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		*error = cb_catch_error(old, true, true);
		taken = stolen = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (stolen)
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\": this worker takes over the keys after %s as slice %d",
						(long long) run->run_id, run->job.job_name, slice->cursor,
						slice->slice_no)));
	return taken;
}

/*
 * The chunks of a slice stopped without finishing it: the slice is
 * pending again, its checkpoint kept, or it failed (when the error is not
 * one that a stop caused).
 */
static void
worker_release_slice(CbRun *run, CbRun *slice, TimestampTz began, CbOutcome *out)
{
	CbStop		stop = worker_should_stop(run, began);

	/* As in worker_fail: a stop that caused the error (not another failure). */
	if (out->error != NULL && stop != CB_GO && stop != CB_STOP_RUN &&
		(stop != CB_STOP_RUNTIME || cb_chunk_error_is_transient(out->error)))
	{
		out->stop = stop;
		out->error = NULL;
	}
	bookkeeping_begin();
	cb_catalog_slice_release(slice, out->error);
	bookkeeping_end();
	cb_grouplock_slice_release(run->run_id, slice->slice_no);
	if (out->error != NULL)
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\" failed in chunk %lld of slice %d: %s",
						(long long) run->run_id, run->job.job_name,
						(long long) slice->chunks_done + 1, slice->slice_no,
						out->error->message),
				 errdetail("SQLSTATE %s; the slice keeps its checkpoint at %lld rows.",
						   unpack_sql_state(out->error->sqlerrcode),
						   (long long) slice->rows_done)));
}

/*
 * Process slices of the run until none is left for this worker (for the
 * run's own worker, "own": until every slice is done) or the run stops.
 * *out: done, or why it stopped, or the error that failed a slice.
 */
static void
worker_slices(CbRun *run, MemoryContext chunk_ctx, TimestampTz began,
			  bool own, CbOutcome *out)
{
	CbRun	   *slice = MemoryContextAlloc(RunContext, sizeof(CbRun));
	CbChunkState *cs = NULL;
	CbSliceTotals totals;

	MySliced = true;
	*slice = *run;
	slice->steps = NIL;			/* a slice's last chunk is only its own */
	slice->steps_before = slice->steps_done = 0;
	if (!own)
		slice->start_attempts = 0;	/* the run's own worker's count */
	memset(out, 0, sizeof(CbOutcome));
	for (;;)
	{
		MemoryContextReset(chunk_ctx);
		MemoryContextSwitchTo(chunk_ctx);
		out->done = false;		/* a slice done is not the run done */
		if ((out->stop = worker_should_stop(run, began)) != CB_GO)
			return;
		if (!worker_take_slice(run, slice, &cs, own ? &totals : NULL, &out->error))
		{
			/* A lock timeout or deadlock while taking a slice: try later. */
			bool		retry = (out->error != NULL &&
								 cb_chunk_error_is_transient(out->error));

			if (retry || (own && out->error == NULL && totals.failed == 0 &&
						  totals.open > 0))
			{
				if (!own)
					return;		/* a helper leaves; another may come */
				/*
				 * The run's worker waits for the slices of its helpers, and
				 * checks the run's throttles for them meanwhile.
				 */
				out->error = NULL;
				cb_slot_set_phase(MySlot, CB_PHASE_SLEEPING);
				(void) cb_throttle_wait_once(MySlot, 1000L);
				if (!worker_gate(run, &out->error) && out->error != NULL)
					return;		/* a broken throttle_sql fails the run */
				continue;
			}
			if (own && out->error == NULL && totals.failed > 0)
				out->stop = CB_STOP_RUN;	/* a helper's slice failed */
			out->done = (out->error == NULL && out->stop == CB_GO);
			return;
		}
		cb_current_run = slice;
		MyErrorContext.arg = (void *) slice;
		worker_chunks(slice, cs, chunk_ctx, began, out);
		MyErrorContext.arg = (void *) run;
		cb_current_run = run;
		if (out->done)
			cb_grouplock_slice_release(run->run_id, slice->slice_no);
		else
		{
			worker_release_slice(run, slice, began, out);
			if (out->error != NULL && !own)
				cb_slot_slice_failed(MySlot);
			return;
		}
	}
}

/* The first error of a failed slice, as the run's error. */
static ErrorData *
slice_error(const CbSliceTotals *totals)
{
	ErrorData  *edata = palloc0(sizeof(ErrorData));
	const char *s = totals->sqlstate ? totals->sqlstate : "XX000";

	edata->elevel = ERROR;
	edata->sqlerrcode = (strlen(s) == 5) ?
		MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]) : ERRCODE_INTERNAL_ERROR;
	edata->message = pstrdup(totals->error ? totals->error : "a slice of the run failed");
	edata->detail = pstrdup("A slice of the run failed; chunkbatch.slices shows which.");
	return edata;
}

/*
 * A run with parallel > 1: split it at its first start, process its
 * slices together with the helpers, wait for them, then end the run.
 * False if the run has no slices (its worker goes on chunk by chunk).
 */
static bool
worker_coordinate(CbRun *run, CbChunkState *cs, MemoryContext chunk_ctx,
				  TimestampTz began)
{
	CbOutcome	out;
	CbSliceTotals totals;
	int			pid;
	bool		lost;

	if (!worker_split(run, cs, &lost) && !lost)
		return false;
	if (lost)
	{
		ErrorData  *edata = palloc0(sizeof(ErrorData));

		/* Going on without them would do its done rows again. */
		edata->elevel = ERROR;
		edata->sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		edata->message = psprintf("the slices of run %lld are missing",
								  (long long) run->run_id);
		edata->detail = pstrdup("The run did chunks in slices, but chunkbatch.slices has none of them; it cannot tell which rows are done.");
		worker_end_run(run, CB_RUN_FAILED, edata, NULL);
		return true;
	}
	cb_wake_schedulers();		/* to start the helpers */
	worker_slices(run, chunk_ctx, began, true, &out);
	MemoryContextSwitchTo(RunContext);
	if (!out.done)
	{
		/* The helpers stop at their next chunk boundary. */
		cb_slot_set_stopping(MySlot);
		cb_slot_set_phase(MySlot, CB_PHASE_FINISHING);
		while (cb_slot_run_workers(MyDatabaseId, run->run_id, &pid, 1) > 1)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	bookkeeping_begin();
	MemoryContextSwitchTo(RunContext);	/* the totals outlive the transaction */
	cb_catalog_slice_totals(run->run_id, &totals);
	bookkeeping_end();
	run->rows_done = totals.rows_done;
	run->chunks_done = totals.chunks_done;
	/*
	 * Failed: with its own error, unless another slice failed too; then with
	 * the first slice's, the cause (a slice that fails while the run stops,
	 * at a row it would have isolated, say, only followed it).
	 */
	if (out.done)
		worker_succeed(run, began, false);
	else if (out.error != NULL && totals.failed <= 1)
		worker_fail(run, out.error, began);
	else if (totals.failed > 0)
		worker_fail(run, slice_error(&totals), began);
	else
		worker_stop(run, out.stop);
	return true;
}

/*
 * A helper: a worker that the scheduler started for the slices of a run
 * that another worker executes.  It takes no group lock and runs no step.
 */
static void
worker_help(CbRun *run, MemoryContext chunk_ctx, TimestampTz began)
{
	CbOutcome	out;
	volatile bool found = false;
	char		appname[NAMEDATALEN];

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(RunContext);
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		found = cb_catalog_load_run(run->run_id, run);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		(void) cb_catch_error(RunContext, false, true);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(RunContext);
	if (!found)
		return;
	run->full_batch_size = run->job.batch_size;
	cb_current_run = run;
	snprintf(appname, sizeof(appname), "chunkbatch run %lld slices: %s",
			 (long long) run->run_id, run->job.job_name);
	pgstat_report_appname(appname);
	cb_slot_start_progress(MySlot, 0, 0, run->batch_size);
	/* Its throttles hold a helper before its first chunk too. */
	if (worker_gate(run, &out.error))
		worker_slices(run, chunk_ctx, began, false, &out);
}

void
chunkbatch_worker_main(Datum main_arg)
{
	CbWorkerArgs args;
	CbRun		run;
	CbChunkState *cs = NULL;
	MemoryContext run_ctx;
	MemoryContext chunk_ctx;
	TimestampTz began = GetCurrentTimestamp();
	ErrorData  *error;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, cb_worker_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	worker_attach(DatumGetInt32(main_arg), &args);

	BackgroundWorkerInitializeConnectionByOid(args.dboid, args.owner, 0);
	cb_slot_set_running(MySlot);
	/*
	 * Chunks are short statements repeated many times: no parallel workers
	 * (they come from the same max_worker_processes pool), and no JIT, whose
	 * compilation would cost each chunk planned above jit_above_cost tens of
	 * milliseconds (and load the LLVM libraries into the worker).
	 */
	SetConfigOption("max_parallel_workers_per_gather", "0",
					PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);

	run_ctx = AllocSetContextCreate(TopMemoryContext, "chunkbatch run",
									ALLOCSET_DEFAULT_SIZES);
	chunk_ctx = AllocSetContextCreate(run_ctx, "chunkbatch chunk",
									  ALLOCSET_DEFAULT_SIZES);
	RunContext = run_ctx;
	memset(&run, 0, sizeof(run));
	run.run_id = args.run_id;
	MyErrorContext.callback = worker_error_context;
	MyErrorContext.arg = (void *) &run;
	MyErrorContext.previous = error_context_stack;
	error_context_stack = &MyErrorContext;
	if (args.slice)
	{
		worker_help(&run, chunk_ctx, began);
		proc_exit(0);
	}
	if (!worker_start(args.run_id, &run, &cs, run_ctx) ||
		!worker_take_group(&run, began) ||
		!worker_plan_steps(&run, began) ||
		!worker_steps(&run, run.steps_before, began))
		proc_exit(0);
	worker_estimate(&run, cs);
	if (!worker_gate(&run, &error) && error != NULL)
	{
		worker_fail(&run, error, began);
		proc_exit(0);
	}

	if (!worker_coordinate(&run, cs, chunk_ctx, began))
	{
		CbOutcome	out;

		worker_chunks(&run, cs, chunk_ctx, began, &out);
		if (out.done)
			worker_succeed(&run, began, true);
		else if (out.error != NULL)
			worker_fail(&run, out.error, began);
		else
			worker_stop(&run, out.stop);
	}

	cb_slot_set_phase(MySlot, CB_PHASE_FINISHING);
	cb_grouplock_release(&run);
	proc_exit(0);
}
