/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared-memory state of chunkbatch: run worker slots with live
 *	  progress, the per-database scheduler table and the wake-up path.
 *
 * Tables hold the truth about runs; shared memory holds what only live
 * processes know: which worker runs which run, its progress between
 * checkpoints, and the latches to wake the launcher and the schedulers.
 * The one cluster-wide setting, the emergency stop (pause_all), lives here
 * too, mirrored in a file of the data directory so that it survives a
 * restart.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "chunkbatch.h"

CbShared   *cb_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Read the emergency stop left by pause_all() before a restart: its time,
 * role and reason, one per line.  Called by the postmaster while it sets
 * up shared memory; a damaged file still pauses.
 */
static void
cb_load_pause_file(void)
{
	FILE	   *f = fopen(CB_PAUSE_FILE, "r");
	char		line[256];
	int64		at = 0;

	if (f == NULL)
		return;
	cb_shared->all_paused = true;
	if (fgets(line, sizeof(line), f) != NULL)
		at = strtoi64(line, NULL, 10);
	cb_shared->paused_at = (TimestampTz) at;
	if (fgets(line, sizeof(line), f) != NULL)
	{
		line[strcspn(line, "\n")] = '\0';
		strlcpy(cb_shared->paused_by, line, sizeof(cb_shared->paused_by));
	}
	if (fgets(line, sizeof(line), f) != NULL)
	{
		line[strcspn(line, "\n")] = '\0';
		strlcpy(cb_shared->pause_reason, line, sizeof(cb_shared->pause_reason));
	}
	fclose(f);
}

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
		cb_load_pause_file();
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
 * callback: must not throw.  Returns false if every database entry is
 * taken: the launcher is then asked to look at every database again once
 * entries free up (wake_overflow), so the work is found late, not lost.
 */
bool
cb_request_wake(Oid dboid)
{
	CbDatabase *entry = NULL;
	Latch	   *latch;
	int			i;

	if (cb_shared == NULL)
		return true;

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
	else
		cb_shared->wake_overflow = true;
	if (latch != NULL)
		SetLatch(latch);
	LWLockRelease(cb_shared->lock);
	return entry != NULL;
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

/* Ask the launcher to look at every database once (for resume_all). */
void
cb_request_probe(void)
{
	if (cb_shared == NULL)
		return;
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	cb_shared->probe_requested = true;
	if (cb_shared->launcher_latch != NULL)
		SetLatch(cb_shared->launcher_latch);
	LWLockRelease(cb_shared->lock);
}

/* Is the emergency stop on?  *reason (if asked) describes it. */
bool
cb_all_paused(char **reason)
{
	bool		paused;

	if (cb_shared == NULL)
		return false;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	paused = cb_shared->all_paused;
	if (paused && reason != NULL)
		*reason = psprintf("all runs paused by chunkbatch.pause_all() at %s by %s%s%s",
						   timestamptz_to_str(cb_shared->paused_at),
						   cb_shared->paused_by,
						   cb_shared->pause_reason[0] ? ": " : "",
						   cb_shared->pause_reason);
	LWLockRelease(cb_shared->lock);
	return paused;
}

/*
 * Write the emergency stop's file, or remove it.  Returns false on failure
 * (already reported at LOG).  A reason's line breaks become spaces.
 */
static bool
cb_write_pause_file(bool pause, TimestampTz at, const char *by,
					const char *reason)
{
	char		tmp[MAXPGPATH];
	FILE	   *f;
	char	   *r;
	char	   *p;

	if (!pause)
	{
		if (unlink(CB_PAUSE_FILE) < 0 && errno != ENOENT)
		{
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", CB_PAUSE_FILE)));
			return false;
		}
		fsync_fname(".", true);
		return true;
	}
	r = pstrdup(reason ? reason : "");
	for (p = r; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", CB_PAUSE_FILE, MyProcPid);
	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
		return false;
	}
	fprintf(f, INT64_FORMAT "\n%s\n%s\n", (int64) at, by, r);
	if (FreeFile(f) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
		unlink(tmp);
		return false;
	}
	return durable_rename(tmp, CB_PAUSE_FILE, LOG) == 0;
}

/*
 * Turn the emergency stop on or off, in shared memory and in its file.
 * Returns false if it already was in that position; raises an error if
 * the file could not be written (shared memory is then left unchanged).
 */
bool
cb_set_all_paused(bool pause, const char *by, const char *reason)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		changed;
	bool		written = true;

	cb_require_shmem();
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	changed = (cb_shared->all_paused != pause);
	if (changed)
		written = cb_write_pause_file(pause, now, by, reason);
	if (changed && written)
	{
		cb_shared->all_paused = pause;
		cb_shared->paused_at = pause ? now : 0;
		strlcpy(cb_shared->paused_by, pause ? by : "", sizeof(cb_shared->paused_by));
		strlcpy(cb_shared->pause_reason, pause && reason ? reason : "",
				sizeof(cb_shared->pause_reason));
	}
	LWLockRelease(cb_shared->lock);
	if (!written)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("could not record the emergency stop in file \"%s\"",
						CB_PAUSE_FILE),
				 errdetail("See the server log for the cause; nothing was changed.")));
	return changed;
}
