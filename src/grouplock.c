/*-------------------------------------------------------------------------
 *
 * grouplock.c
 *	  Group serialization: the session-level advisory lock a run holds on
 *	  its group from before its first chunk until it ends.
 *
 * The key of group G is chunkbatch.group_lock_key(G), a bigint taken in
 * the same lock space as pg_advisory_lock(bigint) in the run's database,
 * so an application joins a group with
 * pg_advisory_lock(chunkbatch.group_lock_key('G')).  The lock is a
 * session lock: it survives every chunk commit and is released when the
 * run ends or its process exits.  The worker takes it with try-locks and
 * waits on its latch in between, so that cancel still works while
 * waiting.  A run holds at most this one group lock, so group locks cannot
 * deadlock with each other.  The scheduler starts a run only when its group
 * is free, so the worker normally gets the lock at the first try; it waits
 * only for an outside session that took the lock in the meantime.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/grouplock.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/builtins.h"

#include "chunkbatch.h"

#define CB_GROUP_LOCK_SEED	UINT64CONST(0x63686b62)

PG_FUNCTION_INFO_V1(chunkbatch_group_lock_key);

int64
cb_group_lock_key(const char *group)
{
	return (int64) hash_bytes_extended((const unsigned char *) group,
									   strlen(group), CB_GROUP_LOCK_SEED);
}

Datum
chunkbatch_group_lock_key(PG_FUNCTION_ARGS)
{
	char	   *group = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT64(cb_group_lock_key(group));
}

/* The same tag as pg_advisory_lock(bigint) builds for the key. */
static void
group_locktag(LOCKTAG *tag, const char *group)
{
	int64		key = cb_group_lock_key(group);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, 1);
}

/*
 * Try once to take the run's group lock, in a short transaction of its own
 * (a lock wait needs one to be cleaned up).  Returns false if another
 * backend holds it.
 */
bool
cb_grouplock_try(CbRun *run)
{
	LOCKTAG		tag;
	LockAcquireResult result;

	group_locktag(&tag, run->job.lock_group);
	StartTransactionCommand();
	result = LockAcquire(&tag, ExclusiveLock, true, true);
	CommitTransactionCommand();
	return result != LOCKACQUIRE_NOT_AVAIL;
}

void
cb_grouplock_release(CbRun *run)
{
	LOCKTAG		tag;

	group_locktag(&tag, run->job.lock_group);
	(void) LockRelease(&tag, ExclusiveLock, true);
	cb_grouplock_wake_waiters();
}

/*
 * The process holding a group's lock in this database, or 0: one look at
 * the lock's own partition of the lock table (pg_locks would copy all of
 * it).  -1 for a holder that is not a backend (a prepared transaction).
 */
int
cb_grouplock_holder(const char *group)
{
	LOCKTAG		tag;
	VirtualTransactionId *holders;
	int			n;
	PGPROC	   *proc;

	group_locktag(&tag, group);
	holders = GetLockConflicts(&tag, ExclusiveLock, &n);
	if (n == 0 || !VirtualTransactionIdIsValid(holders[0]))
		return 0;
	proc = BackendIdGetProc(holders[0].backendId);
	return (proc != NULL && proc->pid != 0) ? proc->pid : -1;
}

/*
 * Serialize, until the end of the transaction, the changes of jobs that
 * join a group, so that two roles cannot both found it (create_job,
 * alter_job).  A lock of chunkbatch's own lock space: only jobs of this
 * group name wait for it.
 */
void
cb_grouplock_lock_name(const char *group)
{
	LOCKTAG		tag;
	int64		key = cb_group_lock_key(group);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 CB_LOCKSPACE_GROUP_NAME);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Wake every run worker waiting for a group, so it tries again now. */
void
cb_grouplock_wake_waiters(void)
{
	cb_slot_wake_group_waiters();
}

/*
 * The workers of a run that take over parts of its slices (work stealing)
 * go one at a time: a transaction lock of chunkbatch's own, per run.
 */
void
cb_grouplock_lock_steals(int64 run_id)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (run_id >> 32), (uint32) run_id,
						 CB_LOCKSPACE_STEAL);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * A worker owns a slice of a run while it holds the slice's lock, a
 * session lock of chunkbatch's own (CB_LOCKSPACE_SLICE) on the run's id and
 * the slice's number: one whose lock is free has no live worker.  Call
 * inside a transaction.  (The run's id is taken modulo 2^32: two runs
 * whose ids differ by a multiple of it would only make each other's
 * slices look owned for a while.)
 */
static void
slice_locktag(LOCKTAG *tag, int64 run_id, int32 slice_no)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) run_id, (uint32) slice_no,
						 CB_LOCKSPACE_SLICE);
}

/*
 * Take a slice's lock.  This process may hold it already, if a claim or a
 * steal failed after taking it (a session lock outlives the transaction):
 * it is then held once still, so that one release lets it go.
 */
bool
cb_grouplock_slice_try(int64 run_id, int32 slice_no)
{
	LOCKTAG		tag;
	LockAcquireResult res;

	slice_locktag(&tag, run_id, slice_no);
	res = LockAcquire(&tag, ExclusiveLock, true, true);
	if (res == LOCKACQUIRE_ALREADY_HELD || res == LOCKACQUIRE_ALREADY_CLEAR)
		(void) LockRelease(&tag, ExclusiveLock, true);
	return res != LOCKACQUIRE_NOT_AVAIL;
}

void
cb_grouplock_slice_release(int64 run_id, int32 slice_no)
{
	LOCKTAG		tag;

	slice_locktag(&tag, run_id, slice_no);
	(void) LockRelease(&tag, ExclusiveLock, true);
}
