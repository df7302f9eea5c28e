/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Pacing a run: the wait between chunks (interruptible by cancel), the
 *	  next chunk's size, and throttling on replica lag or throttle_sql.
 *
 * Every wait of a run worker goes through here, so that a cancel or pause
 * request (a flag in the worker's slot plus a latch wake-up), a SIGTERM or
 * the postmaster's death ends it at once.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/throttle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "chunkbatch.h"

static volatile sig_atomic_t terminate_pending = false;

/*
 * SIGTERM handler of the run worker.  Unlike die(), it does not end the
 * process from the next CHECK_FOR_INTERRUPTS: it cancels the running chunk
 * (only that chunk rolls back) and lets the worker record the run as
 * 'interrupted' before it exits, so that the run resumes later.
 */
void
cb_worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	terminate_pending = true;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

bool
cb_terminate_pending(void)
{
	return terminate_pending;
}

/* Has the run been asked to stop: cancel, pause or SIGTERM? */
bool
cb_throttle_stop_requested(CbSlot *slot)
{
	bool		cancel;
	bool		pause;

	cb_slot_stop_flags(slot, &cancel, &pause);
	return cancel || pause || terminate_pending || cb_slot_run_stopping(slot);
}

/*
 * Wait for the latch or the timeout, outside any transaction.  A query
 * cancel that arrives here has no statement to cancel: it is consumed
 * (chunkbatch's own cancel also sets the slot flag, checked by callers).
 * Returns false if the run was asked to stop.
 */
bool
cb_throttle_wait_once(CbSlot *slot, long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	return !cb_throttle_stop_requested(slot);
}

/*
 * Sleep sleep_ms between chunks; false if the run was asked to stop.  A
 * configuration reload is processed here even without a sleep, so that a
 * run at full speed still sees a reloaded postgresql.conf between chunks.
 */
bool
cb_throttle_sleep(CbSlot *slot, int sleep_ms)
{
	TimestampTz end;

	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (sleep_ms <= 0)
		return !cb_throttle_stop_requested(slot);

	end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms);
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		/* The emergency stop ends the sleep: the throttle gate holds the run. */
		if (left <= 0 || cb_all_paused(NULL))
			return !cb_throttle_stop_requested(slot);
		if (!cb_throttle_wait_once(slot, left))
			return false;
	}
}

/* ----------------------------------------------------------------
 * Chunk sizing
 * ----------------------------------------------------------------
 */

/* Adaptive sizing: the weight of the past in the decaying averages */
#define CB_PAST_WEIGHT		0.75
/* A knee: a bigger chunk at less than this share of the last one's rate ... */
#define CB_KNEE_SLOWDOWN	0.5
/* ... that took at least this share of the target */
#define CB_KNEE_MIN_SHARE	0.25

/*
 * Learn from a chunk of res->sized rows (or keys, in range mode) that took
 * res->elapsed_ms: the
 * decaying averages of rows and of milliseconds per chunk, whose ratio is
 * the run's rate, and the last chunk's size and rate.  Kept in fixed mode
 * too, so that a switch to adaptive sizing by alter_job starts from them.
 */
static void
rate_learn(CbRun *run, const CbChunkResult *res)
{
	double		rows = (double) res->sized;
	double		ms = res->elapsed_ms;

	if (res->sized == 0 || ms <= 0)
		return;
	if (run->avg_ms > 0)
	{
		run->avg_rows = CB_PAST_WEIGHT * run->avg_rows + (1 - CB_PAST_WEIGHT) * rows;
		run->avg_ms = CB_PAST_WEIGHT * run->avg_ms + (1 - CB_PAST_WEIGHT) * ms;
	}
	else
	{
		run->avg_rows = rows;
		run->avg_ms = ms;
	}
	run->last_rate = rows / ms;
	run->last_rows = res->sized;
}

/*
 * Adaptive mode: is this chunk past a knee?  That is a chunk bigger than the
 * last one that ran at less than half the last one's rows per millisecond
 * (and took a real share of the target).  Past that size the statement's
 * cost grows faster than its rows, typically because its plan switches (an
 * "IN (SELECT ... LIMIT $1)" that becomes a sequential scan above a few
 * thousand rows).  A slow chunk may also be noise: a checkpoint, another
 * session's burst, autovacuum on a busy server.  So the first one only
 * makes the size suspect, and the next chunk tries that size again
 * (CB_KNEE_SUSPECT).  If it is slow again, the next chunk goes back to the
 * last efficient size (CB_KNEE_CHECK): if that runs at least twice as fast
 * as the slow ones, the slowness came with the size, and that is a knee
 * (CB_KNEE): growing further would only make chunks slower per row, so the
 * last efficient size becomes the ceiling of the run's chunks in this
 * worker, and the averages restart from it.  If it runs as slowly, the
 * server slowed down, not the size: nothing is learned but the new rate.
 */
typedef enum CbKnee
{
	CB_KNEE_NONE,
	CB_KNEE_SUSPECT,
	CB_KNEE_CHECK,
	CB_KNEE
} CbKnee;

static CbKnee
adaptive_knee(CbRun *run, const CbChunkResult *res)
{
	double		ms = res->elapsed_ms;
	double		rate = ms > 0 ? (double) res->sized / ms : 0;

	if (run->knee_suspect == 2)
	{
		/* The chunk at the last efficient size, after two slow ones. */
		run->knee_suspect = 0;
		if (rate <= 0 || run->knee_rate >= CB_KNEE_SLOWDOWN * rate)
			return CB_KNEE_NONE;
		run->ceiling = (int32) Min(run->last_rows, (uint64) PG_INT32_MAX);
		run->avg_rows = (double) run->last_rows;
		run->avg_ms = run->avg_rows / run->last_rate;
		ereport(LOG,
				(errmsg("chunkbatch run %lld of job \"%s\": chunks of %llu rows ran at %.1f rows/ms, less than half the %.1f rows/ms of %llu rows (%.1f rows/ms again right after), twice; its chunks stay at most %d rows",
						(long long) run->run_id, run->job.job_name,
						(unsigned long long) run->knee_rows, run->knee_rate,
						run->last_rate, (unsigned long long) run->last_rows,
						rate, run->ceiling)));
		return CB_KNEE;
	}
	if (run->last_rate <= 0 || res->sized <= run->last_rows || ms <= 0 ||
		ms < CB_KNEE_MIN_SHARE * run->job.target_chunk_ms ||
		rate >= CB_KNEE_SLOWDOWN * run->last_rate)
	{
		run->knee_suspect = 0;
		return CB_KNEE_NONE;
	}
	run->knee_suspect++;
	run->knee_rows = res->sized;
	run->knee_rate = rate;
	return run->knee_suspect == 1 ? CB_KNEE_SUSPECT : CB_KNEE_CHECK;
}

/*
 * Adaptive mode: the size wanted after a chunk, the run's rate times the
 * target.  Growth is fast while chunks are far below the target (fourfold
 * per chunk below a quarter of it) and cautious near it (at most 1.5-fold
 * above half of it), so that a cost per row that rises with the size is met
 * in small steps.  A chunk that took more than twice the target shrinks the
 * next one at once, in proportion.
 */
static double
adaptive_size(const CbRun *run, const CbChunkResult *res)
{
	double		target = run->job.target_chunk_ms;
	double		cur = run->batch_size;
	double		ms = res->elapsed_ms;
	double		next;

	if (run->avg_ms <= 0 || res->sized == 0 || ms <= 0)
		return cur;
	next = run->avg_rows / run->avg_ms * target;
	if (ms < target / 4)
		next = Min(next, cur * 4);
	else if (ms < target / 2)
		next = Min(next, cur * 2);
	else
		next = Min(next, cur * 1.5);
	if (ms > 2 * target)
		next = Min(next, cur * target / ms);
	return next;
}

/*
 * The size of the next chunk.
 *
 * Fixed mode: the job's batch size; after a chunk that made other sessions
 * wait for its locks it is halved, then grows back (doubling per chunk).
 *
 * Adaptive mode (target_chunk_ms): see adaptive_size(), within
 * [min_batch_size, max_batch_size] and at most a knee's ceiling; after a
 * knee, the ceiling or less if that chunk ran long.  A chunk that made other
 * sessions wait halves the size in both modes.  After a chunk whose poison
 * rows were isolated the size stays.
 */
int32
cb_throttle_next_batch(CbRun *run, const CbChunkResult *res)
{
	CbJob	   *job = &run->job;
	double		cur = run->batch_size;
	double		next;
	double		lo = 1;
	double		hi = run->full_batch_size;

	/*
	 * A chunk redone without its poison rows took the time of its failed
	 * try and of the isolation: it says nothing of how fast chunks of this
	 * size are, so it is no knee and teaches no rate.
	 */
	if (res->isolated)
		return run->batch_size;
	switch (job->target_chunk_ms > 0 ? adaptive_knee(run, res) : CB_KNEE_NONE)
	{
		case CB_KNEE:
			next = cur * job->target_chunk_ms / res->elapsed_ms;
			break;
		case CB_KNEE_SUSPECT:
			next = cur;			/* once more, unlearned: noise or a knee? */
			break;
		case CB_KNEE_CHECK:
			next = run->last_rows;	/* is the last efficient size fast still? */
			break;
		default:
			rate_learn(run, res);
			next = job->target_chunk_ms > 0 ? adaptive_size(run, res) : cur * 2;
			break;
	}
	if (job->target_chunk_ms > 0)
	{
		lo = job->min_batch_size;
		hi = job->max_batch_size;
		if (run->ceiling > 0)
			hi = Min(hi, run->ceiling);
	}
	if (res->lock_waiters)
		next = Min(next, cur / 2);
	return (int32) Max(lo, Min(hi, next));
}

/*
 * The size of a chunk retried after a lock timeout, a deadlock or a
 * serialization failure: half the size that conflicted (fewer rows, fewer
 * locks to collide on).  An adaptive run stays within min_batch_size; a
 * fixed one grows back as after a lock waiter.
 */
int32
cb_throttle_after_conflict(const CbRun *run)
{
	int32		lo = run->job.target_chunk_ms > 0 ? run->job.min_batch_size : 1;

	return Max(lo, Min(run->batch_size, run->batch_size / 2));
}

/* The pause after a chunk: sleep_ms plus sleep_ratio times its duration. */
int
cb_throttle_pause_ms(const CbRun *run, const CbChunkResult *res)
{
	double		ms = run->job.sleep_ms + run->job.sleep_ratio * res->elapsed_ms;

	return (int) Min(ms, (double) INT_MAX);
}

/* ----------------------------------------------------------------
 * Throttling: replica lag and the job's throttle_sql
 * ----------------------------------------------------------------
 */

/* Run throttle_sql as the job's owner: true means wait. */
static bool
throttle_sql_says_wait(CbRun *run)
{
	int			rc;
	bool		isnull;
	bool		wait = false;

	(void) set_config_option("search_path", run->job.search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute(run->job.throttle_sql, true, 1);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("throttle_sql of job \"%s\" must be a SELECT", run->job.job_name)));
	if (SPI_processed == 1 &&
		SPI_tuptable->tupdesc->natts >= 1 &&
		TupleDescAttr(SPI_tuptable->tupdesc, 0)->atttypid == BOOLOID)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		wait = !isnull && DatumGetBool(d);
	}
	SPI_finish();
	return wait;
}

/* Why the run must wait before its next chunk, or NULL; in a transaction. */
static char *
throttle_reason(CbRun *run)
{
	CbJob	   *job = &run->job;
	char	   *reason = NULL;

	if (cb_all_paused(&reason))
		return reason;
	if (job->max_replica_lag != NULL || job->max_replica_lag_bytes > 0)
		reason = cb_catalog_replica_lag_exceeded(job->max_replica_lag ?
											  cb_interval_ms(job->max_replica_lag) : 0,
											  job->max_replica_lag_bytes);
	if (reason == NULL && job->throttle_sql != NULL && throttle_sql_says_wait(run))
		reason = pstrdup("throttle_sql returned true");
	return reason;
}

/*
 * Check, in a transaction of its own, whether the run must wait; if so,
 * record it ('throttled', the reason).  An error (a broken throttle_sql, say) is returned in
 * *error, to fail the run: it must not run unthrottled.
 */
static char *
throttle_check(CbRun *run, ErrorData **error, bool *job_altered)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *volatile reason = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		reason = throttle_reason(run);
		if (reason != NULL)
			reason = MemoryContextStrdup(caller, reason);
		if (reason != NULL &&
			cb_catalog_set_throttled(run->run_id, reason, 0) != run->job.altered_at)
			*job_altered = true;
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		*error = cb_catch_error(caller, true, true);
		reason = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	return reason;
}

/*
 * A helper with a run's slices holds while the emergency stop is on or the
 * run's own worker holds for the run's throttles: the replica lag and
 * throttle_sql are checked once for all the run's workers, by that worker.
 */
static bool
helper_gate(CbSlot *slot)
{
	TimestampTz since = 0;
	bool		go = true;

	while (go && (cb_all_paused(NULL) || cb_slot_run_throttled(slot)))
	{
		if (since == 0)
		{
			since = GetCurrentTimestamp();
			cb_slot_throttle_begin(slot, since);
		}
		go = cb_throttle_wait_once(slot, 200L);
	}
	if (since != 0)
		cb_slot_throttle_end(slot, GetCurrentTimestamp() - since);
	return go;
}

/*
 * Hold the run while the emergency stop is on (pause_all), a standby lags
 * behind the job's limits or its throttle_sql says so: state 'throttled'
 * with the reason, checked five times a second.  Returns false if the run must not go on: it was asked
 * to stop, or the check failed (*error).  If alter_job changed the job
 * meanwhile, the wait ends early with *job_altered set: the caller reads
 * the job again and checks its new throttles.
 */
bool
cb_throttle_gate(CbRun *run, CbSlot *slot, ErrorData **error, bool *job_altered)
{
	TimestampTz since = 0;
	bool		go = true;

	*error = NULL;
	*job_altered = false;
	if (run->job.max_replica_lag == NULL && run->job.max_replica_lag_bytes <= 0 &&
		run->job.throttle_sql == NULL && !cb_all_paused(NULL))
		return true;
	if (cb_slot_is_helper(slot))
		return helper_gate(slot);
	while (throttle_check(run, error, job_altered) != NULL && !*job_altered)
	{
		if (since == 0)
		{
			since = GetCurrentTimestamp();
			cb_slot_throttle_begin(slot, since);
		}
		if (!(go = cb_throttle_wait_once(slot, 200L)))
			break;
	}
	if (since != 0)
	{
		int64		us = GetCurrentTimestamp() - since;

		/* Back to 'running' (or the run ends), adding the time throttled. */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		(void) cb_catalog_set_throttled(run->run_id, NULL, us / 1000.0);
		PopActiveSnapshot();
		CommitTransactionCommand();
		cb_slot_throttle_end(slot, us);
	}
	return go && *error == NULL;
}
