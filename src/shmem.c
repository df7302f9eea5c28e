/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared-memory state of chunkbatch, and the only code that touches it:
 *	  run worker slots with live progress, the per-database scheduler
 *	  table, the run(..., wait => true) requests, the wake-up paths and the
 *	  emergency stop.
 *
 * Tables hold the truth about runs; shared memory holds what only live
 * processes know: which worker runs which run, its progress between
 * checkpoints, and the latches to wake the launcher and the schedulers.
 * The one cluster-wide setting, the emergency stop (pause_all), lives here
 * too, mirrored in a file of the data directory so that it survives a
 * restart.
 *
 * Locking, as autovacuum.c's WorkerInfo does it: CbShared.lock (an
 * LWLock) protects everything except a slot's live progress, which its
 * own spinlock protects, so that a worker publishes progress after every
 * chunk without touching the LWLock.  Every field says which lock it
 * needs; the functions Assert that they hold it.  Nothing here reports
 * above DEBUG while it holds the LWLock.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "chunkbatch.h"

#define CB_RATE_SAMPLES		16	/* chunk completions kept for the rate */

typedef enum CbSlotState
{
	CB_SLOT_FREE = 0,
	CB_SLOT_STARTING,			/* claimed by a scheduler, worker not yet up */
	CB_SLOT_RUNNING,			/* worker connected */
	CB_SLOT_START_FAILED		/* worker exited before it connected */
} CbSlotState;

/* One run worker slot: identity, live progress and control flags. */
struct CbSlot
{
	/* identity: written under the LWLock (exclusive), read under it */
	CbSlotState state;
	uint64		generation;		/* bumped on every claim, against ABA */
	int64		run_id;
	Oid			dboid;
	Oid			owner;
	bool		slice;			/* a helper that processes slices of the run */
	pid_t		pid;			/* 0 until the worker attaches */
	Latch	   *latch;
	int			start_errcode;	/* the worker could not claim its run: */
	char		start_error[256];	/* ... why (its scheduler records it) */

	/* live progress and requests: under mutex */
	slock_t		mutex;
	CbPhase		phase;
	TimestampTz worker_started_at;
	TimestampTz chunk_started_at;	/* 0 when not in a chunk */
	int64		rows_done;		/* whole run, including earlier workers */
	int64		chunks_done;
	int64		rows_this_worker;
	int32		batch_size;
	bool		cancel_requested;
	bool		pause_requested;
	bool		stopping;		/* a run's worker stops its run: helpers stop */
	bool		slice_failed;	/* a helper's slice failed: the run stops */
	/* recent progress, for the rate: a ring of chunk completions */
	int			nsamples;
	TimestampTz sample_at[CB_RATE_SAMPLES];
	int64		sample_rows[CB_RATE_SAMPLES];
	int64		sample_throttled_us[CB_RATE_SAMPLES];
	int64		throttled_us;	/* time spent throttled, this worker */
	TimestampTz throttled_since;	/* 0 when not throttled */
};

/* A database that has, or may have, work: its scheduler.  Under the LWLock. */
typedef struct CbDatabase
{
	CbDbEntry	e;
	pid_t		pid;			/* its scheduler, once attached */
	Latch	   *latch;
} CbDatabase;

typedef enum CbRequestState
{
	CB_REQ_FREE = 0,
	CB_REQ_PENDING,				/* filled in by the caller */
	CB_REQ_INSERTING,			/* taken by the scheduler */
	CB_REQ_DONE,				/* run_id is committed */
	CB_REQ_FAILED				/* error says why */
} CbRequestState;

/*
 * A run(..., wait => true) request.  A function cannot commit, so the
 * waiting caller hands the run to its database's scheduler, which inserts
 * and commits the run row and hands back the run id.  Under the LWLock.
 */
typedef struct CbRunRequest
{
	CbRequestState state;
	bool		abandoned;		/* the caller stopped waiting */
	Oid			dboid;
	int64		job_id;
	Oid			queued_by;
	char		trigger[NAMEDATALEN * 2];
	int32		parallel;		/* 0: the job's */
	pid_t		pid;			/* the caller's */
	Latch	   *latch;
	int64		run_id;
	char		error[256];
	int32		params_len;
	char		params[CB_REQUEST_PARAMS_MAX];	/* a jsonb varlena */
} CbRunRequest;

typedef struct CbShared
{
	LWLock	   *lock;			/* protects all but the slots' progress */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		probe_requested;	/* launcher: look at every database */
	bool		wake_overflow;	/* a wake found no free database entry */
	/* the emergency stop (pause_all), mirrored in CB_PAUSE_FILE */
	bool		all_paused;
	TimestampTz paused_at;
	char		paused_by[NAMEDATALEN];
	char		pause_reason[CB_PAUSE_REASON_MAX];
	CbDatabase	dbs[CB_MAX_DATABASES];
	CbRunRequest requests[CB_MAX_REQUESTS];
	int			nslots;			/* constant after startup */
	CbSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} CbShared;

static CbShared *cb_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#define AssertLockedExcl()	Assert(LWLockHeldByMeInMode(cb_shared->lock, LW_EXCLUSIVE))

/* ----------------------------------------------------------------
 * Set-up
 * ----------------------------------------------------------------
 */

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

/* Is shared memory there (the library was preloaded)? */
bool
cb_shmem_ready(void)
{
	return cb_shared != NULL;
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

/* ----------------------------------------------------------------
 * Wake-ups
 * ----------------------------------------------------------------
 */

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
		if (cb_shared->dbs[i].e.dboid == dboid)
		{
			entry = &cb_shared->dbs[i];
			break;
		}
		if (entry == NULL && cb_shared->dbs[i].e.dboid == InvalidOid)
			entry = &cb_shared->dbs[i];
	}
	latch = cb_shared->launcher_latch;
	if (entry != NULL)
	{
		entry->e.dboid = dboid;
		entry->e.wake = true;
		if (entry->e.state == CB_DB_RUNNING && entry->latch != NULL)
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

		if (db->e.state == CB_DB_RUNNING && db->latch != NULL)
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

/* ----------------------------------------------------------------
 * The launcher
 * ----------------------------------------------------------------
 */
static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (cb_shared->launcher_pid == MyProcPid)
	{
		cb_shared->launcher_pid = 0;
		cb_shared->launcher_latch = NULL;
	}
	LWLockRelease(cb_shared->lock);
}

/*
 * The launcher takes its place.  Schedulers a previous launcher was
 * starting are not its to track: those entries are reset.
 */
void
cb_launcher_attach(void)
{
	int			i;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	cb_shared->launcher_pid = MyProcPid;
	cb_shared->launcher_latch = MyLatch;
	for (i = 0; i < CB_MAX_DATABASES; i++)
		if (cb_shared->dbs[i].e.state == CB_DB_STARTING)
			cb_shared->dbs[i].e.state = CB_DB_NONE;
	LWLockRelease(cb_shared->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);
}

/* Was a look at every database asked for (resume_all, or a lost wake)? */
bool
cb_launcher_take_probe(void)
{
	bool		probe;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	probe = cb_shared->probe_requested || cb_shared->wake_overflow;
	cb_shared->probe_requested = cb_shared->wake_overflow = false;
	LWLockRelease(cb_shared->lock);
	return probe;
}

/* A copy of a database entry. */
CbDbEntry
cb_db_get(int idx)
{
	CbDbEntry	e;

	Assert(idx >= 0 && idx < CB_MAX_DATABASES);
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	e = cb_shared->dbs[idx].e;
	LWLockRelease(cb_shared->lock);
	return e;
}

/*
 * The launcher is about to start a scheduler for the entry: mark it
 * starting, unless it changed since the launcher looked.  The worker is
 * registered after this, outside the lock.
 */
bool
cb_db_begin_start(int idx, Oid dboid)
{
	CbDatabase *db = &cb_shared->dbs[idx];
	bool		ok;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	ok = (db->e.dboid == dboid && db->e.state == CB_DB_NONE && db->e.wake);
	if (ok)
	{
		db->e.state = CB_DB_STARTING;
		db->e.died = false;
	}
	LWLockRelease(cb_shared->lock);
	return ok;
}

/* The scheduler could not be registered: the entry waits for a retry. */
void
cb_db_start_failed(int idx, Oid dboid)
{
	CbDatabase *db = &cb_shared->dbs[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (db->e.dboid == dboid && db->e.state == CB_DB_STARTING)
		db->e.state = CB_DB_NONE;
	LWLockRelease(cb_shared->lock);
}

/*
 * Forget a database entry: its scheduler exited before it attached
 * (database gone, or no access), or (only_if_idle) it has no scheduler and
 * nothing woke it.
 */
void
cb_db_forget(int idx, Oid dboid, bool only_if_idle)
{
	CbDatabase *db = &cb_shared->dbs[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (db->e.dboid == dboid &&
		(only_if_idle ? (db->e.state == CB_DB_NONE && !db->e.wake) :
		 db->e.state == CB_DB_STARTING))
	{
		db->e.state = CB_DB_NONE;
		db->e.wake = false;
		db->e.died = false;
		db->e.dboid = InvalidOid;
	}
	LWLockRelease(cb_shared->lock);
}

/* ----------------------------------------------------------------
 * A scheduler
 * ----------------------------------------------------------------
 */

/* Take over the database entry, unless another scheduler serves it. */
bool
cb_db_attach(int idx, Oid dboid)
{
	CbDatabase *db;
	bool		ok;

	if (cb_shared == NULL || idx < 0 || idx >= CB_MAX_DATABASES)
		return false;
	db = &cb_shared->dbs[idx];
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	ok = (db->e.dboid == dboid && db->e.state != CB_DB_RUNNING);
	if (ok)
	{
		db->e.state = CB_DB_RUNNING;
		db->pid = MyProcPid;
		db->latch = MyLatch;
	}
	LWLockRelease(cb_shared->lock);
	return ok;
}

/*
 * The scheduler leaves.  Unless it leaves because its database is idle, it
 * was terminated or failed with work left: the launcher starts another.
 */
void
cb_db_detach(int idx, bool idle)
{
	CbDatabase *db = &cb_shared->dbs[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (db->pid == MyProcPid)
	{
		db->e.state = CB_DB_NONE;
		db->pid = 0;
		db->latch = NULL;
		if (!idle)
			db->e.wake = db->e.died = true;
	}
	if (db->e.wake && cb_shared->launcher_latch != NULL)
		SetLatch(cb_shared->launcher_latch);
	LWLockRelease(cb_shared->lock);
}

/* A pass begins: what woke the scheduler is being looked at. */
void
cb_db_clear_wake(int idx)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	cb_shared->dbs[idx].e.wake = false;
	LWLockRelease(cb_shared->lock);
}

/*
 * May an idle scheduler leave?  Not if new work came in since its pass,
 * unless it must (force: chunkbatch is not usable in its database).
 */
bool
cb_db_leave_if_unwoken(int idx, bool force)
{
	bool		leave;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	leave = force || !cb_shared->dbs[idx].e.wake;
	if (leave)
		cb_shared->dbs[idx].e.wake = false;
	LWLockRelease(cb_shared->lock);
	return leave;
}

int
cb_slot_count(void)
{
	return cb_shared->nslots;
}

/* Is some slot executing (or starting) this run of this database? */
bool
cb_slot_has_run(Oid dboid, int64 run_id)
{
	bool		found = false;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots && !found; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		found = (slot->state != CB_SLOT_FREE && slot->dboid == dboid &&
				 slot->run_id == run_id);
	}
	LWLockRelease(cb_shared->lock);
	return found;
}

/*
 * How many slots execute (or start to) this run of this database: its own
 * worker and the helpers with its slices.  The pids of those attached go
 * to pids[maxpids].
 */
int
cb_slot_run_workers(Oid dboid, int64 run_id, int *pids, int maxpids)
{
	int			n = 0;
	int			npids = 0;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		if (slot->state == CB_SLOT_FREE || slot->state == CB_SLOT_START_FAILED ||
			slot->dboid != dboid || slot->run_id != run_id)
			continue;
		n++;
		if (slot->pid != 0 && npids < maxpids)
			pids[npids++] = slot->pid;
	}
	LWLockRelease(cb_shared->lock);
	for (i = npids; i < maxpids; i++)
		pids[i] = 0;
	return n;
}

/* Does any slot work for this database? */
bool
cb_slots_in_use(Oid dboid)
{
	bool		found = false;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots && !found; i++)
		found = (cb_shared->slots[i].state != CB_SLOT_FREE &&
				 cb_shared->slots[i].dboid == dboid);
	LWLockRelease(cb_shared->lock);
	return found;
}

/* How many slots (over all databases) work for runs of this owner? */
int
cb_slots_of_owner(Oid owner)
{
	int			n = 0;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
		if (cb_shared->slots[i].state != CB_SLOT_FREE &&
			cb_shared->slots[i].owner == owner)
			n++;
	LWLockRelease(cb_shared->lock);
	return n;
}

/* Reset a slot for a new run.  Caller holds the LWLock exclusively. */
static void
slot_reset(CbSlot *slot, int64 run_id, Oid dboid, Oid owner, bool slice)
{
	AssertLockedExcl();
	slot->state = CB_SLOT_STARTING;
	slot->generation++;
	slot->run_id = run_id;
	slot->dboid = dboid;
	slot->owner = owner;
	slot->slice = slice;
	slot->pid = 0;
	slot->latch = NULL;
	slot->start_errcode = 0;
	slot->start_error[0] = '\0';
	SpinLockAcquire(&slot->mutex);
	slot->phase = CB_PHASE_STARTING;
	slot->worker_started_at = 0;
	slot->chunk_started_at = 0;
	slot->rows_done = slot->chunks_done = slot->rows_this_worker = 0;
	slot->batch_size = 0;
	slot->cancel_requested = false;
	slot->pause_requested = false;
	slot->stopping = false;
	slot->slice_failed = false;
	slot->nsamples = 0;
	slot->throttled_us = 0;
	slot->throttled_since = 0;
	SpinLockRelease(&slot->mutex);
}

/*
 * Claim a free slot for a run (for its own worker, or for a helper with
 * its slices); returns its index and fills *args for the worker, or -1 if
 * every slot is busy.
 */
int
cb_slot_claim(int64 run_id, Oid dboid, Oid owner, bool slice, CbWorkerArgs *args)
{
	int			i;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		if (slot->state != CB_SLOT_FREE)
			continue;
		slot_reset(slot, run_id, dboid, owner, slice);
		memset(args, 0, sizeof(CbWorkerArgs));
		args->run_id = run_id;
		args->slice = slice;
		args->generation = slot->generation;
		args->dboid = dboid;
		args->owner = owner;
		LWLockRelease(cb_shared->lock);
		return i;
	}
	LWLockRelease(cb_shared->lock);
	return -1;
}

/* The worker of a claimed slot could not be registered: free the slot. */
void
cb_slot_unclaim(int idx, uint64 generation)
{
	CbSlot	   *slot = &cb_shared->slots[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (slot->generation == generation && slot->state == CB_SLOT_STARTING &&
		slot->pid == 0)
		slot->state = CB_SLOT_FREE;
	LWLockRelease(cb_shared->lock);
}

/*
 * Free a slot of this database whose worker exited before it connected or
 * before it could claim its run (it says so, or its handle says it stopped
 * before it attached); returns true, the run it was meant for and, if the
 * worker reported one, the error that stopped it (else *errcode is 0).
 */
bool
cb_slot_reap_failed_start(int idx, Oid dboid, bool worker_stopped,
						  int64 *run_id, bool *slice, int *errcode, char **error)
{
	CbSlot	   *slot = &cb_shared->slots[idx];
	bool		failed;
	char		message[sizeof(slot->start_error)];

	*errcode = 0;
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	failed = (slot->dboid == dboid &&
			  (slot->state == CB_SLOT_START_FAILED ||
			   (slot->state == CB_SLOT_STARTING && slot->pid == 0 &&
				worker_stopped)));
	if (failed)
	{
		*run_id = slot->run_id;
		*slice = slot->slice;
		*errcode = slot->start_errcode;
		strlcpy(message, slot->start_error, sizeof(message));
		slot->state = CB_SLOT_FREE;
	}
	LWLockRelease(cb_shared->lock);
	if (failed && *errcode != 0)
		*error = pstrdup(message);
	return failed;
}

/*
 * Take the pending run(..., wait => true) requests of a database, copying
 * them into out[CB_MAX_REQUESTS] (params in the current memory context).
 * Requests whose caller is gone are dropped: nobody would see their run.
 */
int
cb_requests_take(Oid dboid, CbRequestCopy *out)
{
	int			n = 0;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < CB_MAX_REQUESTS; i++)
	{
		CbRunRequest *req = &cb_shared->requests[i];
		PGPROC	   *caller;
		char	   *params;

		if (req->state == CB_REQ_FREE || req->dboid != dboid)
			continue;
		caller = BackendPidGetProc(req->pid);
		if (req->state != CB_REQ_INSERTING &&
			(caller == NULL || &caller->procLatch != req->latch || req->abandoned))
		{
			req->state = CB_REQ_FREE;
			continue;
		}
		if (req->state != CB_REQ_PENDING)
			continue;
		req->state = CB_REQ_INSERTING;
		params = palloc(req->params_len);
		memcpy(params, req->params, req->params_len);
		out[n].idx = i;
		out[n].job_id = req->job_id;
		out[n].queued_by = req->queued_by;
		strlcpy(out[n].trigger, req->trigger, sizeof(out[n].trigger));
		out[n].parallel = req->parallel;
		out[n].params = PointerGetDatum(params);
		n++;
	}
	LWLockRelease(cb_shared->lock);
	return n;
}

/* Hand the caller its committed run id (or the error), and wake it. */
void
cb_request_finish(int idx, int64 run_id, const char *error)
{
	CbRunRequest *req = &cb_shared->requests[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	Assert(req->state == CB_REQ_INSERTING);
	if (req->abandoned)
		req->state = CB_REQ_FREE;
	else
	{
		req->state = (error != NULL) ? CB_REQ_FAILED : CB_REQ_DONE;
		req->run_id = run_id;
		strlcpy(req->error, error ? error : "", sizeof(req->error));
		SetLatch(req->latch);
	}
	LWLockRelease(cb_shared->lock);
}

/* ----------------------------------------------------------------
 * A run worker
 * ----------------------------------------------------------------
 */

/*
 * Set the latch of every other worker of SLOT's run (caller holds the
 * shared lock).
 */
static void
wake_run_workers(CbSlot *slot)
{
	int			i;

	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *other = &cb_shared->slots[i];

		if (other != slot && other->state == CB_SLOT_RUNNING &&
			other->dboid == slot->dboid && other->run_id == slot->run_id &&
			other->latch != NULL)
			SetLatch(other->latch);
	}
}

/*
 * Attach to the slot the scheduler claimed; NULL if the slot is no longer
 * ours (the claim was given up meanwhile).  The worker registers its own
 * exit callback, which calls cb_slot_detach().
 */
CbSlot *
cb_slot_attach(int idx, const CbWorkerArgs *args)
{
	CbSlot	   *slot;
	bool		ok;

	if (cb_shared == NULL || idx < 0 || idx >= cb_shared->nslots)
		return NULL;
	slot = &cb_shared->slots[idx];
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	ok = (slot->state == CB_SLOT_STARTING &&
		  slot->generation == args->generation &&
		  slot->run_id == args->run_id);
	if (ok)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		SpinLockAcquire(&slot->mutex);
		slot->phase = CB_PHASE_STARTING;
		slot->worker_started_at = GetCurrentTimestamp();
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(cb_shared->lock);
	return ok ? slot : NULL;
}

/*
 * The worker could not claim its run, and maybe cannot write at all (its
 * role's settings can make every transaction read-only): its scheduler,
 * which connects as a superuser, records the failure instead, once.
 */
void
cb_slot_report_start_failure(CbSlot *slot, int errcode, const char *message)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	slot->start_errcode = errcode;
	strlcpy(slot->start_error, message ? message : "", sizeof(slot->start_error));
	LWLockRelease(cb_shared->lock);
}

/*
 * The worker exits.  One that never connected, or could not claim its run,
 * tells its scheduler so (START_FAILED), unless a SIGTERM ended it (no
 * failure of the run's).
 */
void
cb_slot_detach(CbSlot *slot, bool terminated)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->state = ((slot->state == CB_SLOT_STARTING || slot->start_errcode != 0) &&
					   !terminated) ? CB_SLOT_START_FAILED : CB_SLOT_FREE;
		slot->pid = 0;
		slot->latch = NULL;
	}
	/* A run's worker may wait for its helpers to be gone. */
	wake_run_workers(slot);
	LWLockRelease(cb_shared->lock);
}

/* The worker is connected to its database. */
void
cb_slot_set_running(CbSlot *slot)
{
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	Assert(slot->pid == MyProcPid && slot->state == CB_SLOT_STARTING);
	slot->state = CB_SLOT_RUNNING;
	LWLockRelease(cb_shared->lock);
}

void
cb_slot_set_phase(CbSlot *slot, CbPhase phase)
{
	SpinLockAcquire(&slot->mutex);
	slot->phase = phase;
	SpinLockRelease(&slot->mutex);
}

/* The run's progress when this worker takes it over. */
void
cb_slot_start_progress(CbSlot *slot, int64 rows_done, int64 chunks_done,
					   int32 batch_size)
{
	SpinLockAcquire(&slot->mutex);
	slot->rows_done = rows_done;
	slot->chunks_done = chunks_done;
	slot->batch_size = batch_size;
	SpinLockRelease(&slot->mutex);
}

/*
 * Publish progress after a committed chunk (phase SLEEPING: a rate sample
 * is kept), or the start of a chunk (phase CHUNK).
 */
void
cb_slot_publish(CbSlot *slot, CbPhase phase, int64 rows_done,
				int64 chunks_done, uint64 processed, int32 batch_size)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	slot->phase = phase;
	slot->rows_done = rows_done;
	slot->chunks_done = chunks_done;
	slot->rows_this_worker += processed;
	slot->batch_size = batch_size;
	if (phase == CB_PHASE_SLEEPING)
	{
		int			i = slot->nsamples++ % CB_RATE_SAMPLES;

		slot->sample_at[i] = now;
		slot->sample_rows[i] = rows_done;
		slot->sample_throttled_us[i] = slot->throttled_us;
	}
	slot->chunk_started_at = (phase == CB_PHASE_CHUNK) ? now : 0;
	SpinLockRelease(&slot->mutex);
}

/* Has somebody asked the run to stop at its next chunk boundary? */
void
cb_slot_stop_flags(CbSlot *slot, bool *cancel, bool *pause)
{
	SpinLockAcquire(&slot->mutex);
	*cancel = slot->cancel_requested;
	*pause = slot->pause_requested;
	SpinLockRelease(&slot->mutex);
}

/* The worker of the slot's run, if it has one (caller holds the LWLock). */
static CbSlot *
slot_run_worker(const CbSlot *slot)
{
	int			i;

	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *other = &cb_shared->slots[i];

		if ((other->state == CB_SLOT_STARTING || other->state == CB_SLOT_RUNNING) &&
			!other->slice && other->dboid == slot->dboid &&
			other->run_id == slot->run_id)
			return other;
	}
	return NULL;
}

/*
 * Must this worker stop because its run stops?  A helper stops when the
 * run's own worker is gone, stops the run, or was asked to pause or
 * cancel it; the run's own worker stops when a helper's slice failed.
 */
bool
cb_slot_run_stopping(CbSlot *slot)
{
	bool		stop;

	SpinLockAcquire(&slot->mutex);
	stop = slot->slice_failed;
	SpinLockRelease(&slot->mutex);
	if (!slot->slice)
		return stop;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	{
		CbSlot	   *worker = slot_run_worker(slot);

		if (worker == NULL)
			stop = true;
		else
		{
			SpinLockAcquire(&worker->mutex);
			stop = worker->stopping || worker->cancel_requested ||
				worker->pause_requested;
			SpinLockRelease(&worker->mutex);
		}
	}
	LWLockRelease(cb_shared->lock);
	return stop;
}

/*
 * May the run get one more helper?  Only while its own worker executes it
 * and does not stop it (see cb_slot_run_stopping).
 */
bool
cb_slot_run_wants_helpers(Oid dboid, int64 run_id)
{
	bool		wants = false;
	int			i;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];

		if (slot->state != CB_SLOT_RUNNING || slot->slice || slot->pid == 0 ||
			slot->dboid != dboid || slot->run_id != run_id)
			continue;
		SpinLockAcquire(&slot->mutex);
		wants = !(slot->stopping || slot->slice_failed || slot->cancel_requested ||
				  slot->pause_requested);
		SpinLockRelease(&slot->mutex);
		break;
	}
	LWLockRelease(cb_shared->lock);
	return wants;
}

/* Is this slot's worker a helper with the slices of another's run? */
bool
cb_slot_is_helper(CbSlot *slot)
{
	return slot->slice;
}

/*
 * Does the run's own worker hold for the run's throttles?  Its helpers
 * then hold too: it checks the replica lag and throttle_sql for them all.
 */
bool
cb_slot_run_throttled(CbSlot *slot)
{
	bool		throttled = false;
	CbSlot	   *worker;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	worker = slot_run_worker(slot);
	if (worker != NULL)
	{
		SpinLockAcquire(&worker->mutex);
		throttled = (worker->throttled_since != 0);
		SpinLockRelease(&worker->mutex);
	}
	LWLockRelease(cb_shared->lock);
	return throttled;
}

/* The run's own worker stops the run: wake its helpers, which stop too. */
void
cb_slot_set_stopping(CbSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	slot->stopping = true;
	SpinLockRelease(&slot->mutex);
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	wake_run_workers(slot);
	LWLockRelease(cb_shared->lock);
}

/* A helper's slice failed: tell the run's own worker, which stops the run. */
void
cb_slot_slice_failed(CbSlot *slot)
{
	CbSlot	   *worker;

	LWLockAcquire(cb_shared->lock, LW_SHARED);
	worker = slot_run_worker(slot);
	if (worker != NULL)
	{
		SpinLockAcquire(&worker->mutex);
		worker->slice_failed = true;
		SpinLockRelease(&worker->mutex);
		if (worker->latch != NULL)
			SetLatch(worker->latch);
	}
	LWLockRelease(cb_shared->lock);
}

void
cb_slot_throttle_begin(CbSlot *slot, TimestampTz since)
{
	SpinLockAcquire(&slot->mutex);
	slot->throttled_since = since;
	SpinLockRelease(&slot->mutex);
}

void
cb_slot_throttle_end(CbSlot *slot, int64 throttled_us)
{
	SpinLockAcquire(&slot->mutex);
	slot->throttled_since = 0;
	slot->throttled_us += throttled_us;
	SpinLockRelease(&slot->mutex);
}

/* A group lock was released: wake the workers waiting for theirs. */
void
cb_slot_wake_group_waiters(void)
{
	int			i;

	if (cb_shared == NULL)
		return;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];
		CbPhase		phase;

		if (slot->state != CB_SLOT_RUNNING || slot->latch == NULL ||
			slot->pid == MyProcPid)
			continue;
		SpinLockAcquire(&slot->mutex);
		phase = slot->phase;
		SpinLockRelease(&slot->mutex);
		if (phase == CB_PHASE_WAITING)
			SetLatch(slot->latch);
	}
	LWLockRelease(cb_shared->lock);
}

/* ----------------------------------------------------------------
 * The SQL interface
 * ----------------------------------------------------------------
 */

/*
 * Flag the workers that execute the run, if any, to cancel or to pause at
 * their next chunk boundary, and wake them; a cancel also cancels the
 * chunk in progress.  Returns false if the run has no worker of its own
 * (helpers with its slices do not end a run).
 */
bool
cb_slot_signal_run(Oid dboid, int64 run_id, bool cancel)
{
	bool		found = false;
	int			i;

	if (cb_shared == NULL)
		return false;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *slot = &cb_shared->slots[i];
		CbPhase		phase;

		if (slot->state == CB_SLOT_FREE || slot->dboid != dboid ||
			slot->run_id != run_id)
			continue;
		SpinLockAcquire(&slot->mutex);
		if (cancel)
			slot->cancel_requested = true;
		else
			slot->pause_requested = true;
		phase = slot->phase;
		SpinLockRelease(&slot->mutex);
		if (slot->latch != NULL)
			SetLatch(slot->latch);
		if (cancel && slot->pid != 0 && phase == CB_PHASE_CHUNK)
			(void) kill(slot->pid, SIGINT);
		found |= !slot->slice;
	}
	LWLockRelease(cb_shared->lock);
	return found;
}

/* Wake every run worker (the emergency stop began). */
void
cb_slot_wake_all(void)
{
	int			i;

	if (cb_shared == NULL)
		return;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
		if (cb_shared->slots[i].state != CB_SLOT_FREE &&
			cb_shared->slots[i].latch != NULL)
			SetLatch(cb_shared->slots[i].latch);
	LWLockRelease(cb_shared->lock);
}

/*
 * Rows per second over the chunks of the last ten seconds (at least the
 * last two), not counting time spent throttled; -1 if unknown.
 */
static double
slot_recent_rate(const CbSlot *s)
{
	int			n = Min(s->nsamples, CB_RATE_SAMPLES);
	int			newest = (s->nsamples - 1) % CB_RATE_SAMPLES;
	int			oldest = newest;
	int			k;
	double		secs;

	if (n < 2)
		return s->rows_this_worker > 0 && s->worker_started_at != 0 ?
			s->rows_this_worker /
			Max((GetCurrentTimestamp() - s->worker_started_at) / 1e6, 0.001) : -1;
	for (k = 1; k < n; k++)
	{
		int			i = (newest - k + CB_RATE_SAMPLES) % CB_RATE_SAMPLES;

		if (k > 1 && s->sample_at[newest] - s->sample_at[i] > 10 * USECS_PER_SEC)
			break;
		oldest = i;
	}
	secs = ((s->sample_at[newest] - s->sample_at[oldest]) -
			(s->sample_throttled_us[newest] - s->sample_throttled_us[oldest])) / 1e6;
	if (secs <= 0)
		return -1;
	return (s->sample_rows[newest] - s->sample_rows[oldest]) / secs;
}

/*
 * Copies of the busy slots of a database (palloc'd in *views); returns how
 * many.  Each slot is copied under its spinlock, so its fields agree.
 */
int
cb_slot_snapshot(Oid dboid, CbSlotView **views)
{
	CbSlot	   *copy;
	int			n = 0;
	int			i;

	*views = NULL;
	if (cb_shared == NULL)
		return 0;
	copy = palloc(sizeof(CbSlot) * cb_shared->nslots);
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		SpinLockAcquire(&cb_shared->slots[i].mutex);
		memcpy(&copy[i], &cb_shared->slots[i], sizeof(CbSlot));
		SpinLockRelease(&cb_shared->slots[i].mutex);
	}
	LWLockRelease(cb_shared->lock);

	*views = palloc(sizeof(CbSlotView) * cb_shared->nslots);
	for (i = 0; i < cb_shared->nslots; i++)
	{
		CbSlot	   *s = &copy[i];
		CbSlotView *v = &(*views)[n];

		if (s->state == CB_SLOT_FREE || s->state == CB_SLOT_START_FAILED ||
			s->dboid != dboid)
			continue;
		v->run_id = s->run_id;
		v->owner = s->owner;
		v->pid = s->pid;
		v->phase = s->phase;
		v->worker_started_at = s->worker_started_at;
		v->rows_done = s->rows_done;
		v->chunks_done = s->chunks_done;
		v->rows_this_worker = s->rows_this_worker;
		v->batch_size = s->batch_size;
		v->chunk_started_at = s->chunk_started_at;
		v->recent_rate = slot_recent_rate(s);
		v->throttled_since = s->throttled_since;
		n++;
	}
	pfree(copy);
	return n;
}

/*
 * Hand a run request to the database's scheduler; returns the request's
 * index, or -1 if all CB_MAX_REQUESTS are taken (the caller retries).
 */
int
cb_request_submit(Oid dboid, int64 job_id, Oid queued_by, const char *trigger,
				  int32 parallel, const void *params, int params_len)
{
	int			i;

	Assert(params_len <= CB_REQUEST_PARAMS_MAX);
	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < CB_MAX_REQUESTS; i++)
	{
		CbRunRequest *req = &cb_shared->requests[i];

		if (req->state != CB_REQ_FREE)
			continue;
		req->state = CB_REQ_PENDING;
		req->abandoned = false;
		req->dboid = dboid;
		req->job_id = job_id;
		req->queued_by = queued_by;
		strlcpy(req->trigger, trigger, sizeof(req->trigger));
		req->parallel = parallel;
		req->pid = MyProcPid;
		req->latch = MyLatch;
		req->run_id = 0;
		req->error[0] = '\0';
		req->params_len = params_len;
		memcpy(req->params, params, params_len);
		LWLockRelease(cb_shared->lock);
		return i;
	}
	LWLockRelease(cb_shared->lock);
	return -1;
}

/*
 * Has the scheduler answered the request?  If so, frees it and returns
 * true with the run id, or *failed and the error.
 */
bool
cb_request_poll(int idx, int64 *run_id, char *error, int errlen, bool *failed)
{
	CbRunRequest *req = &cb_shared->requests[idx];
	bool		answered;

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	answered = (req->state == CB_REQ_DONE || req->state == CB_REQ_FAILED);
	if (answered)
	{
		*run_id = req->run_id;
		*failed = (req->state == CB_REQ_FAILED);
		strlcpy(error, req->error, errlen);
		req->state = CB_REQ_FREE;
	}
	LWLockRelease(cb_shared->lock);
	return answered;
}

/* The caller gives the request up; a scheduler holding it frees it. */
void
cb_request_abandon(int idx)
{
	CbRunRequest *req = &cb_shared->requests[idx];

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	if (req->state == CB_REQ_INSERTING)
		req->abandoned = true;
	else
		req->state = CB_REQ_FREE;
	LWLockRelease(cb_shared->lock);
}

/* ----------------------------------------------------------------
 * The emergency stop
 * ----------------------------------------------------------------
 */

/* Is the emergency stop on?  *reason (if asked) describes it. */
bool
cb_all_paused(char **reason)
{
	bool		paused;
	TimestampTz at;
	char		by[NAMEDATALEN];
	char		why[CB_PAUSE_REASON_MAX];

	if (cb_shared == NULL)
		return false;
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	paused = cb_shared->all_paused;
	at = cb_shared->paused_at;
	strlcpy(by, cb_shared->paused_by, sizeof(by));
	strlcpy(why, cb_shared->pause_reason, sizeof(why));
	LWLockRelease(cb_shared->lock);
	if (paused && reason != NULL)
		*reason = psprintf("all runs paused by chunkbatch.pause_all() at %s by %s%s%s",
						   timestamptz_to_str(at), by, why[0] ? ": " : "", why);
	return paused;
}

/* The emergency stop's details, for pause_all_state(); false if off. */
bool
cb_pause_state(TimestampTz *at, char **by, char **reason)
{
	bool		paused;

	if (cb_shared == NULL)
		return false;
	*by = palloc(NAMEDATALEN);
	*reason = palloc(CB_PAUSE_REASON_MAX);
	LWLockAcquire(cb_shared->lock, LW_SHARED);
	paused = cb_shared->all_paused;
	*at = cb_shared->paused_at;
	strlcpy(*by, cb_shared->paused_by, NAMEDATALEN);
	strlcpy(*reason, cb_shared->pause_reason, CB_PAUSE_REASON_MAX);
	LWLockRelease(cb_shared->lock);
	return paused;
}

/*
 * Write the emergency stop's record to a temporary file of this backend
 * (renamed into place by cb_set_all_paused); its name in tmp.  Returns
 * false, errno set, on failure.  A reason's line breaks become spaces.
 */
static bool
write_pause_tmp(char *tmp, TimestampTz at, const char *by, const char *reason)
{
	FILE	   *f;
	char	   *r = pstrdup(reason ? reason : "");
	char	   *p;
	bool		ok;

	for (p = r; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	snprintf(tmp, MAXPGPATH, "%s.%d.tmp", CB_PAUSE_FILE, MyProcPid);
	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
		return false;
	ok = fprintf(f, INT64_FORMAT "\n%s\n%s\n", (int64) at, by, r) > 0 &&
		fflush(f) == 0 && pg_fsync(fileno(f)) == 0;
	if (FreeFile(f) != 0)
		ok = false;
	if (!ok)
	{
		int			save_errno = errno;

		unlink(tmp);
		errno = save_errno;
	}
	return ok;
}

/*
 * Turn the emergency stop on or off, in shared memory and in its file.
 * Returns false if it already was in that position; raises an error if
 * the file could not be written (shared memory is then left unchanged).
 * The file is renamed into place (or removed) under the LWLock, so that
 * two calls cannot leave the file and shared memory disagreeing; errors
 * are reported after the lock is released.
 */
bool
cb_set_all_paused(bool pause, const char *by, const char *reason)
{
	TimestampTz now = GetCurrentTimestamp();
	char		tmp[MAXPGPATH];
	bool		changed;
	int			err = 0;

	cb_require_shmem();
	if (pause && !write_pause_tmp(tmp, now, by, reason))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp),
				 errdetail("The emergency stop was not changed.")));

	LWLockAcquire(cb_shared->lock, LW_EXCLUSIVE);
	changed = (cb_shared->all_paused != pause);
	if (changed &&
		(pause ? rename(tmp, CB_PAUSE_FILE) :
		 (unlink(CB_PAUSE_FILE) < 0 && errno != ENOENT ? -1 : 0)) < 0)
	{
		err = errno;
		changed = false;
	}
	if (changed)
	{
		cb_shared->all_paused = pause;
		cb_shared->paused_at = pause ? now : 0;
		strlcpy(cb_shared->paused_by, pause ? by : "", sizeof(cb_shared->paused_by));
		strlcpy(cb_shared->pause_reason, pause && reason ? reason : "",
				sizeof(cb_shared->pause_reason));
	}
	LWLockRelease(cb_shared->lock);

	if (pause && !changed)
		unlink(tmp);
	if (err != 0)
	{
		errno = err;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not %s file \"%s\": %m",
						pause ? "create" : "remove", CB_PAUSE_FILE),
				 errdetail("The emergency stop was not changed.")));
	}
	if (changed)
		fsync_fname(".", true);
	return changed;
}
