/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Waiting between chunks: the job's sleep, interruptible by cancel.
 *
 * Every wait of a run worker goes through here, so that a cancel request
 * (a flag in the worker's slot plus a latch wake-up), a SIGTERM or the
 * postmaster's death ends it at once.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/throttle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "chunkbatch.h"

bool
cb_slot_cancel_requested(CbSlot *slot)
{
	bool		cancel;

	SpinLockAcquire(&slot->mutex);
	cancel = slot->cancel_requested;
	SpinLockRelease(&slot->mutex);
	return cancel;
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
 * Returns false if the run was asked to cancel.
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

/* Sleep sleep_ms between chunks; false if the run was asked to cancel. */
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
