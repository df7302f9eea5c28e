/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Waiting between chunks: the job's sleep, interruptible by cancel.
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

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
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
cb_slot_cancel_requested(CbSlot *slot)
{
	bool		stop;

	SpinLockAcquire(&slot->mutex);
	stop = slot->cancel_requested || slot->pause_requested;
	SpinLockRelease(&slot->mutex);
	return stop || terminate_pending;
}

void
cb_slot_set_phase(CbSlot *slot, CbPhase phase)
{
	SpinLockAcquire(&slot->mutex);
	slot->phase = phase;
	SpinLockRelease(&slot->mutex);
}

/*
 * Wait for the latch or the timeout, outside any transaction.  A query
 * cancel that arrives here has no statement to cancel: it is consumed
 * (chunkbatch's own cancel also sets the slot flag, checked by callers).
 * Returns false if the run was asked to stop.
 */
bool
throttle_wait_once(CbSlot *slot, long timeout_ms)
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
	return !cb_slot_cancel_requested(slot);
}

/* Sleep sleep_ms between chunks; false if the run was asked to stop. */
bool
throttle_sleep(CbSlot *slot, int sleep_ms)
{
	TimestampTz end;

	if (sleep_ms <= 0)
		return !cb_slot_cancel_requested(slot);

	end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms);
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		if (left <= 0)
			return !cb_slot_cancel_requested(slot);
		if (!throttle_wait_once(slot, left))
			return false;
	}
}
