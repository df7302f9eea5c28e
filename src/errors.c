/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  The one way chunkbatch's background processes survive an error.
 *
 * A run worker or scheduler must not die of an error in one transaction:
 * each catch site (a chunk, a throttle check, the claim of a run, a
 * scheduler pass, ...) copies the error, reports it to the server log,
 * aborts the transaction and goes on.  cb_catch_error() is that sequence,
 * done the same way everywhere.  (The run worker adds an error context
 * naming its run, chunk and job: worker.c.)
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/errors.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timeout.h"

#include "chunkbatch.h"

/*
 * Call first thing in a PG_CATCH block.  The statement timeout is
 * disabled (it must not fire in the next transaction), the error is copied
 * into mcxt (if keep) and reported to the server log (if report), and
 * every open transaction is aborted.  Returns the copy, or NULL.  The
 * current memory context is mcxt afterwards.
 */
ErrorData *
cb_catch_error(MemoryContext mcxt, bool keep, bool report)
{
	ErrorData  *edata = NULL;

	MemoryContextSwitchTo(mcxt);
	HOLD_INTERRUPTS();
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (keep)
		edata = CopyErrorData();
	if (report)
		EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	RESUME_INTERRUPTS();
	MemoryContextSwitchTo(mcxt);
	return edata;
}
