/*-------------------------------------------------------------------------
 *
 * chunkbatch.h
 *	  Shared declarations of chunkbatch: shared-memory state, the job and
 *	  run descriptors, and the entry points of each module.
 *
 * Layering: the run worker (worker.c) uses chunk.c, grouplock.c,
 * throttle.c and catalog.c; none of those call back into the worker.
 * catalog.c is the only file that knows the SQL of chunkbatch's tables.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/chunkbatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHUNKBATCH_H
#define CHUNKBATCH_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/elog.h"

#define CB_EXTENSION_NAME	"chunkbatch"
#define CB_SCHEMA_NAME		"chunkbatch"
#define CB_SCHEMA_VERSION	"1.1"	/* the SQL objects this library uses */
#define CB_PAUSE_FILE		"chunkbatch_pause_all"	/* in the data directory */
#define CB_MAX_DATABASES	64
#define CB_NAME_MAXLEN		63	/* job and group names, in bytes */
#define CB_RATE_SAMPLES		16	/* chunk completions kept for the rate */

/* GUCs (chunkbatch.c) */
extern int	cb_max_workers;
extern int	cb_naptime;
extern int	cb_scheduler_idle_exit;
extern int	cb_history_retention;

/* ----------------------------------------------------------------
 * Shared memory (shmem.c)
 * ----------------------------------------------------------------
 */
typedef enum CbSlotState
{
	CB_SLOT_FREE = 0,
	CB_SLOT_STARTING,			/* claimed by a scheduler, worker not yet up */
	CB_SLOT_RUNNING,			/* worker attached */
	CB_SLOT_START_FAILED		/* worker exited before it attached */
} CbSlotState;

typedef enum CbPhase
{
	CB_PHASE_STARTING = 0,
	CB_PHASE_WAITING,			/* waiting for its group lock */
	CB_PHASE_CHUNK,				/* inside a chunk transaction */
	CB_PHASE_SLEEPING,			/* between chunks */
	CB_PHASE_FINISHING
} CbPhase;

/* One run worker slot: identity, live progress and control flags. */
typedef struct CbSlot
{
	slock_t		mutex;			/* protects the fields below */
	CbSlotState state;
	uint64		generation;		/* bumped on every claim, against ABA */
	int64		run_id;
	Oid			dboid;
	Oid			owner;
	pid_t		pid;
	Latch	   *latch;
	CbPhase		phase;
	TimestampTz worker_started_at;
	TimestampTz chunk_started_at;	/* 0 when not in a chunk */
	int64		rows_done;		/* whole run, including earlier workers */
	int64		chunks_done;
	int64		rows_this_worker;
	int32		batch_size;
	bool		cancel_requested;
	bool		pause_requested;
	/* recent progress, for the rate and ETA: a ring of chunk completions */
	int			nsamples;
	TimestampTz sample_at[CB_RATE_SAMPLES];
	int64		sample_rows[CB_RATE_SAMPLES];
	int64		sample_throttled_us[CB_RATE_SAMPLES];
	int64		throttled_us;	/* time spent throttled, this worker */
	TimestampTz throttled_since;	/* 0 when not throttled */
} CbSlot;

typedef enum CbDbState
{
	CB_DB_NONE = 0,
	CB_DB_STARTING,				/* launcher registered a scheduler */
	CB_DB_RUNNING				/* scheduler attached */
} CbDbState;

/* A database that has, or may have, work: its scheduler and wake flag. */
typedef struct CbDatabase
{
	Oid			dboid;			/* InvalidOid: entry unused */
	bool		wake;			/* new work committed since the last scan */
	bool		died;			/* its scheduler exited with work left */
	CbDbState	state;
	pid_t		pid;
	Latch	   *latch;
} CbDatabase;

/*
 * A run(..., wait => true) request.  A function cannot commit, so the
 * waiting caller hands the run to its database's scheduler, which inserts
 * and commits the run row and hands back the run id.
 */
#define CB_MAX_REQUESTS			16
#define CB_REQUEST_PARAMS_MAX	8192

typedef enum CbRequestState
{
	CB_REQ_FREE = 0,
	CB_REQ_PENDING,				/* filled in by the caller */
	CB_REQ_INSERTING,			/* taken by the scheduler */
	CB_REQ_DONE,				/* run_id is committed */
	CB_REQ_FAILED				/* error says why */
} CbRequestState;

typedef struct CbRunRequest
{
	CbRequestState state;
	bool		abandoned;		/* the caller stopped waiting */
	Oid			dboid;
	int64		job_id;
	Oid			queued_by;
	char		trigger[NAMEDATALEN * 2];
	pid_t		pid;			/* the caller's */
	Latch	   *latch;
	int64		run_id;
	char		error[256];
	int32		params_len;
	char		params[CB_REQUEST_PARAMS_MAX];	/* a jsonb varlena */
} CbRunRequest;

typedef struct CbShared
{
	LWLock	   *lock;			/* protects everything but slot progress */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		probe_requested;	/* launcher: look at every database */
	bool		wake_overflow;	/* a wake found no free database entry */
	/* the emergency stop (pause_all), mirrored in CB_PAUSE_FILE */
	bool		all_paused;
	TimestampTz paused_at;
	char		paused_by[NAMEDATALEN];
	char		pause_reason[256];
	CbDatabase	dbs[CB_MAX_DATABASES];
	CbRunRequest requests[CB_MAX_REQUESTS];
	int			nslots;
	CbSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} CbShared;

/* Passed to a run worker in bgw_extra. */
typedef struct CbWorkerArgs
{
	int64		run_id;
	uint64		generation;
	Oid			dboid;
	Oid			owner;
} CbWorkerArgs;

/* Passed to a scheduler in bgw_extra. */
typedef struct CbSchedulerArgs
{
	Oid			dboid;
} CbSchedulerArgs;

extern CbShared *cb_shared;

extern void cb_shmem_install_hooks(void);
extern void cb_require_shmem(void);
extern bool cb_request_wake(Oid dboid);
extern void cb_wake_schedulers(void);
extern void cb_request_probe(void);
extern bool cb_all_paused(char **reason);
extern bool cb_set_all_paused(bool pause, const char *by, const char *reason);

/* ----------------------------------------------------------------
 * Job and run descriptors (catalog.c fills them)
 * ----------------------------------------------------------------
 */
typedef struct CbJob
{
	int64		job_id;
	char	   *job_name;
	Oid			owner;			/* InvalidOid: no role of owner_name exists */
	char	   *owner_name;
	char	   *chunk_sql;
	Oid			cursor_type;	/* InvalidOid: repeat mode */
	int32		batch_size;
	char	   *lock_group;
	int32		sleep_ms;
	bool		synchronous_commit;
	char	   *search_path;
	bool		skip_if_busy;	/* on_group_busy = 'skip' */
	Interval   *group_wait_timeout; /* NULL: wait for the group forever */
	int32		max_retries;	/* retries of one chunk after transient errors */
	Interval   *lock_timeout;	/* per chunk; NULL: none */
	Interval   *statement_timeout;	/* per chunk; NULL: none */
	Interval   *max_runtime;	/* per worker; NULL: none */
	bool		isolate;		/* on_error = 'isolate' */
	char	   *keys_sql;		/* keys the next chunk would process */
	int32		max_dead_letters;	/* -1: no limit */
	int32		target_chunk_ms;	/* 0: fixed batch size */
	int32		min_batch_size;
	int32		max_batch_size;
	double		sleep_ratio;	/* sleep = ratio x last chunk time */
	Interval   *max_replica_lag;	/* NULL: none */
	int64		max_replica_lag_bytes;	/* 0: none */
	char	   *throttle_sql;	/* true = wait before the next chunk */
	char	   *count_sql;		/* estimate of the run's rows */
	TimestampTz altered_at;		/* to notice alter_job during a run */
} CbJob;

typedef struct CbRun
{
	int64		run_id;
	CbJob		job;
	Datum		params;			/* jsonb */
	char	   *cursor;			/* text form of the checkpoint, or NULL */
	int64		rows_done;
	int64		chunks_done;
	int32		batch_size;
	int32		retries;		/* chunks retried after a transient error */
	double		avg_chunk_ms;
	double		max_chunk_ms;
	int64		dead_letters;
	int32		start_attempts; /* worker starts since the last checkpoint */
	int64		lock_waiters_seen;	/* chunks that made other sessions wait */
	int32		full_batch_size;	/* size to grow back to (fixed mode) */
	/* adaptive sizing: decaying averages, the last chunk, a learned ceiling */
	double		avg_rows;
	double		avg_ms;
	double		last_rate;		/* rows per ms of the last chunk with rows */
	uint64		last_rows;
	int32		ceiling;		/* largest size that ran efficiently, or 0 */
} CbRun;

/* A run's checkpoint as written with each chunk. */
typedef struct CbCheckpoint
{
	char	   *cursor;
	int64		rows_done;
	int64		chunks_done;
	int32		batch_size;
	int32		retries;
	double		avg_chunk_ms;
	double		max_chunk_ms;
	int64		dead_letters;
	int64		lock_waiters_seen;
	bool		done;			/* the run succeeded with this chunk */
} CbCheckpoint;

/* A run the scheduler (or an API call) looks at. */
typedef struct CbRunRef
{
	int64		run_id;
	Oid			owner;
	char	   *job_name;
	bool		queued_here;	/* inserted by the current transaction */
	/* filled in for the scheduler's queue scan only */
	char	   *lock_group;
	char	   *state;
	bool		skip_if_busy;	/* its job says on_group_busy = 'skip' */
	bool		wait_expired;	/* waited longer than group_wait_timeout */
	int			holder_pid;		/* backend holding its group's lock, or 0 */
} CbRunRef;

/* What one chunk did, reported by chunk.c to the worker. */
typedef struct CbChunkResult
{
	bool		ok;				/* committed */
	bool		done;			/* it was the run's last chunk */
	uint64		processed;
	double		elapsed_ms;
	ErrorData  *error;			/* when !ok, in the caller's context */
	bool		timed_out;		/* the job's statement_timeout ended it */
	bool		lock_waiters;	/* other sessions waited for its locks */
	TimestampTz job_altered_at; /* the job's altered_at, read at commit */
} CbChunkResult;

/* ----------------------------------------------------------------
 * catalog.c: the one place that knows chunkbatch's tables
 * ----------------------------------------------------------------
 */
typedef struct CbAsOwner
{
	Oid			save_uid;
	int			save_sec;
	int			nestlevel;
} CbAsOwner;

extern Oid	cb_extension_owner(void);
extern void catalog_enter(CbAsOwner *s);
extern void catalog_leave(CbAsOwner *s);

typedef enum CbJobLock
{
	CB_JOB_NO_LOCK,
	CB_JOB_KEY_SHARE,			/* queueing a run: keep the job from being dropped */
	CB_JOB_FOR_UPDATE			/* altering or dropping it */
} CbJobLock;

extern bool catalog_find_job(const char *job_name, CbJob *job, CbJobLock lock);
extern int64 catalog_insert_job(const CbJob *job);
extern void catalog_update_job(const CbJob *job);
extern void catalog_delete_job(int64 job_id);
extern int64 catalog_count_active_runs(int64 job_id);
extern int64 catalog_insert_run(int64 job_id, Datum params, Oid queued_by,
								const char *trigger);
extern void catalog_mark_waiting(int64 run_id);
extern void catalog_skip_run(int64 run_id, const char *reason);
extern bool catalog_get_run(int64 run_id, bool for_update, CbRunRef *ref,
							char **state, char **sqlstate, char **error);
extern bool catalog_cancel_unowned(int64 run_id);

extern bool catalog_claim_run(int64 run_id, CbRun *run);
extern void catalog_mark_started(int64 run_id);
extern TimestampTz catalog_checkpoint(const CbRun *run, const CbCheckpoint *cp);
extern void catalog_reload_job(CbJob *job);
extern TimestampTz catalog_set_throttled(int64 run_id, const char *reason,
								  double throttled_ms);
extern void catalog_set_estimate(int64 run_id, int64 total);
extern char *catalog_replica_lag_exceeded(double max_lag_ms, int64 max_lag_bytes);
extern void catalog_finish_run(const CbRun *run, const char *state,
							   ErrorData *edata, const char *reason);
extern bool catalog_pause_unowned(int64 run_id);
extern bool catalog_resume_run(int64 run_id);
extern void catalog_dead_letter(const CbRun *run, const char *key,
								ErrorData *edata);
extern uint64 catalog_prune_history(int retention_min);

extern List *catalog_runs_in_states(const char *states);
extern List *catalog_run_queue(void);
extern bool catalog_mark_interrupted(int64 run_id);
extern void catalog_fail_unstarted(int64 run_id, const char *sqlstate,
								   const char *message);
/* What a process finds in its database: see catalog_schema_state(). */
typedef enum CbSchemaState
{
	CB_SCHEMA_ABSENT,			/* chunkbatch is not installed here */
	CB_SCHEMA_OLD,				/* installed at a version this library refuses */
	CB_SCHEMA_OK
} CbSchemaState;

extern CbSchemaState catalog_schema_state(char **version);
extern void catalog_require_schema(void);
extern uint64 catalog_pause_copies(void);
extern void catalog_relink_owners(void);
extern int64 catalog_count_all_active_runs(void);

/* An interval in milliseconds, a month counted as 30 days. */
static inline double
cb_interval_ms(const Interval *iv)
{
	return (double) iv->time / 1000.0 +
		((double) iv->day + (double) iv->month * DAYS_PER_MONTH) *
		SECS_PER_DAY * 1000.0;
}

/* Has more than the interval passed since "since"? */
static inline bool
cb_elapsed_exceeds(TimestampTz since, TimestampTz now, const Interval *iv)
{
	return (double) (now - since) > cb_interval_ms(iv) * 1000.0;
}

/* ----------------------------------------------------------------
 * Other modules
 * ----------------------------------------------------------------
 */

/* chunk.c */
typedef struct CbChunkState CbChunkState;
extern CbChunkState *chunk_begin(CbRun *run, MemoryContext run_ctx);
extern void chunk_execute(CbChunkState *cs, CbChunkResult *res);
extern void chunk_isolate(CbChunkState *cs, CbChunkResult *res);
extern bool chunk_error_is_transient(ErrorData *edata);
extern int64 chunk_count_estimate(CbChunkState *cs);
extern void chunk_validate_sql(const char *job_name, const char *sql,
							   Oid cursor_type, Oid owner,
							   const char *search_path);
extern void chunk_validate_select(const char *job_name, const char *what,
								  const char *sql, Oid cursor_type,
								  Oid want_type, Oid owner,
								  const char *search_path);

/* grouplock.c */
extern int64 cb_group_lock_key(const char *group);
extern bool grouplock_try(CbRun *run);
extern void grouplock_release(CbRun *run);
extern void grouplock_wake_waiters(void);

/* throttle.c */
extern bool throttle_wait_once(CbSlot *slot, long timeout_ms);
extern bool throttle_sleep(CbSlot *slot, int sleep_ms);
extern bool cb_slot_cancel_requested(CbSlot *slot);
extern void cb_worker_sigterm(SIGNAL_ARGS);
extern bool cb_terminate_pending(void);
extern void cb_slot_set_phase(CbSlot *slot, CbPhase phase);
extern int32 throttle_next_batch(CbRun *run, const CbChunkResult *res);
extern int32 throttle_after_conflict(const CbRun *run);
extern int	throttle_pause_ms(const CbRun *run, const CbChunkResult *res);
extern bool throttle_gate(CbRun *run, CbSlot *slot, ErrorData **error,
						  bool *job_altered);

/* worker.c, launcher.c, scheduler.c: bgworker entry points */
extern PGDLLEXPORT void chunkbatch_launcher_main(Datum main_arg) pg_attribute_noreturn();
extern PGDLLEXPORT void chunkbatch_scheduler_main(Datum main_arg) pg_attribute_noreturn();
extern PGDLLEXPORT void chunkbatch_worker_main(Datum main_arg) pg_attribute_noreturn();
extern void cb_register_launcher(void);

/* api.c */
extern void cb_api_init(void);
extern void cb_require_primary(const char *action);

/* utility.c */
extern void cb_utility_init(void);

#endif							/* CHUNKBATCH_H */
