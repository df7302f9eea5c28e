/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared-memory state of chunkbatch: run worker slots with live
 *	  progress, the per-database scheduler table and the wake-up path.
 *
 * Tables hold the truth about runs; shared memory holds what only live
 * processes know: which worker runs which run, its progress between
 * checkpoints, and the latches to wake the launcher and the schedulers.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "chunkbatch.h"

CbShared   *cb_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
cb_shmem_size(void)
{
	return add_size(offsetof(CbShared, slots),
					mul_size(cb_max_workers, sizeof(CbSlot)));
}

static void
cb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(cb_shmem_size());
	RequestNamedLWLockTranche(CB_EXTENSION_NAME, 1);
}

static void
cb_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cb_shared = ShmemInitStruct(CB_EXTENSION_NAME, cb_shmem_size(), &found);
	if (!found)
	{
		int			i;

		memset(cb_shared, 0, cb_shmem_size());
		cb_shared->lock = &(GetNamedLWLockTranche(CB_EXTENSION_NAME))->lock;
		cb_shared->nslots = cb_max_workers;
		for (i = 0; i < cb_max_workers; i++)
			SpinLockInit(&cb_shared->slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
cb_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cb_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cb_shmem_startup;
}

/* Raise the documented error when the library was not preloaded. */
void
cb_require_shmem(void)
{
	if (cb_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("chunkbatch is not loaded through shared_preload_libraries"),
				 errdetail("Runs are executed by background workers that start only when the library is preloaded."),
				 errhint("Add \"chunkbatch\" to \"shared_preload_libraries\" and restart the server.")));
}

/*
 * Tell the scheduler of a database, or the launcher if the database has no
 * scheduler yet, that committed work is waiting.  Called from a commit
 * callback: must not throw.
 */
void
cb_request_wake(Oid dboid)
{
	CbDatabase *entry = NULL;
	Latch	   *latch;
	int			i;

	if (cb_shared == NULL)
		return;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < CB_MAX_DATABASES; i++)
	{
		if (cb_shared->dbs[i].dboid == dboid)
		{
			entry = &cb_shared->dbs[i];
			break;
		}
		if (entry == NULL && cb_shared->dbs[i].dboid == InvalidOid)
			entry = &cb_shared->dbs[i];
	}
	latch = cb_shared->launcher_latch;
	if (entry != NULL)
	{
		entry->dboid = dboid;
		entry->wake = true;
		if (entry->state == CB_DB_RUNNING && entry->latch != NULL)
			latch = entry->latch;
	}
	if (latch != NULL)
		SetLatch(latch);
	LWLockRelease(cb_shared->lock);
}

/* A worker slot was freed: every scheduler may now start a queued run. */
void
cb_wake_schedulers(void)
{
	int			i;

	if (cb_shared == NULL)
		return;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < CB_MAX_DATABASES; i++)
	{
		CbDatabase *db = &cb_shared->dbs[i];

		if (db->state == CB_DB_RUNNING && db->latch != NULL)
			SetLatch(db->latch);
	}
	LWLockRelease(cb_shared->lock);
}
