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
#include "utils/elog.h"

#define CB_EXTENSION_NAME	"chunkbatch"
#define CB_SCHEMA_NAME		"chunkbatch"

/*
 * Transaction locks of chunkbatch's own, in the advisory lock space of the
 * database but with a fourth key field that no SQL function uses
 * (pg_advisory_lock uses 1 and 2): whoever changes the jobs of a group
 * name, or of an owner role; the thieves of a run; the owner of a slice.
 */
#define CB_LOCKSPACE_GROUP_NAME	3
#define CB_LOCKSPACE_OWNER		4
#define CB_LOCKSPACE_STEAL		5	/* work stealing among a run's workers */
#define CB_LOCKSPACE_SLICE		6	/* the worker that owns a slice */
#define CB_SCHEMA_VERSION	"1.1"	/* the SQL objects this library uses */
#define CB_PAUSE_FILE		"chunkbatch_pause_all"	/* in the data directory */
#define CB_MAX_DATABASES	64
#define CB_NAME_MAXLEN		63	/* job and group names, in bytes */
#define CB_TICK_GRACE_MS	1000	/* pg_cron's runs of one tick arrive within it */
#define CB_MAX_PARALLEL		64	/* slices of one run, at most */

/* GUCs (chunkbatch.c) */
extern int	cb_max_workers;
extern int	cb_naptime;
extern int	cb_scheduler_idle_exit;
extern int	cb_history_retention;
extern int	cb_max_workers_per_role;
extern int	cb_max_queued_per_role;
extern char *cb_test_fault;
extern int	cb_test_fault_chunk;

/* ----------------------------------------------------------------
 * Shared memory (shmem.c)
 *
 * shmem.c owns it: the structures are private to that file, and every
 * other file goes through the functions below.  Tables hold the truth
 * about runs; shared memory holds what only live processes know.
 * ----------------------------------------------------------------
 */
typedef enum CbPhase
{
	CB_PHASE_STARTING = 0,
	CB_PHASE_WAITING,			/* waiting for its group lock */
	CB_PHASE_CHUNK,				/* inside a chunk transaction */
	CB_PHASE_SLEEPING,			/* between chunks */
	CB_PHASE_FINISHING
} CbPhase;

/* A run worker's slot (opaque outside shmem.c). */
typedef struct CbSlot CbSlot;

/* Passed to a run worker in bgw_extra. */
typedef struct CbWorkerArgs
{
	int64		run_id;
	bool		slice;			/* a helper that processes slices of the run */
	uint64		generation;
	Oid			dboid;
	Oid			owner;
} CbWorkerArgs;

/* Passed to a scheduler in bgw_extra. */
typedef struct CbSchedulerArgs
{
	Oid			dboid;
} CbSchedulerArgs;

/* A copy of a busy slot, for the progress view. */
typedef struct CbSlotView
{
	int64		run_id;
	Oid			owner;
	pid_t		pid;			/* 0 while its worker starts */
	CbPhase		phase;
	TimestampTz worker_started_at;	/* 0: not yet */
	int64		rows_done;
	int64		chunks_done;
	int64		rows_this_worker;
	int32		batch_size;
	TimestampTz chunk_started_at;	/* 0: not in a chunk */
	double		recent_rate;	/* rows/s of the last chunks, -1: unknown */
	TimestampTz throttled_since;	/* 0: not throttled */
} CbSlotView;

/* A database entry as the launcher sees it. */
typedef enum CbDbState
{
	CB_DB_NONE = 0,
	CB_DB_STARTING,				/* launcher registered a scheduler */
	CB_DB_RUNNING				/* scheduler attached */
} CbDbState;

typedef struct CbDbEntry
{
	Oid			dboid;			/* InvalidOid: entry unused */
	CbDbState	state;
	bool		wake;			/* new work committed since the last scan */
	bool		died;			/* its scheduler exited with work left */
} CbDbEntry;

#define CB_MAX_REQUESTS			16
#define CB_REQUEST_PARAMS_MAX	8192

/* A run(..., wait => true) request, as the scheduler takes it. */
typedef struct CbRequestCopy
{
	int			idx;
	int64		job_id;
	Oid			queued_by;
	char		trigger[NAMEDATALEN * 2];
	int32		parallel;		/* 0: the job's */
	Datum		params;			/* jsonb, palloc'd */
} CbRequestCopy;

extern bool cb_shmem_ready(void);
extern void cb_shmem_install_hooks(void);
extern void cb_require_shmem(void);

/* wake-ups */
extern bool cb_request_wake(Oid dboid);
extern void cb_wake_schedulers(void);
extern void cb_request_probe(void);

/* the launcher */
extern void cb_launcher_attach(void);
extern bool cb_launcher_take_probe(void);
extern CbDbEntry cb_db_get(int idx);
extern bool cb_db_begin_start(int idx, Oid dboid);
extern void cb_db_start_failed(int idx, Oid dboid);
extern void cb_db_forget(int idx, Oid dboid, bool only_if_idle);

/* a scheduler */
extern bool cb_db_attach(int idx, Oid dboid);
extern void cb_db_detach(int idx, bool idle);
extern void cb_db_clear_wake(int idx);
extern bool cb_db_leave_if_unwoken(int idx, bool force);
extern int	cb_slot_count(void);
extern bool cb_slot_has_run(Oid dboid, int64 run_id);
extern bool cb_slots_in_use(Oid dboid);
extern int	cb_slots_of_owner(Oid owner);
extern int	cb_slot_claim(int64 run_id, Oid dboid, Oid owner, bool slice,
						  CbWorkerArgs *args);
extern int	cb_slot_run_workers(Oid dboid, int64 run_id, int *pids, int maxpids);
extern void cb_slot_unclaim(int idx, uint64 generation);
extern bool cb_slot_reap_failed_start(int idx, Oid dboid, bool worker_stopped,
									  int64 *run_id, bool *slice, int *errcode,
									  char **error);
extern int	cb_requests_take(Oid dboid, CbRequestCopy *out);
extern void cb_request_finish(int idx, int64 run_id, const char *error);

/* a run worker */
extern CbSlot *cb_slot_attach(int idx, const CbWorkerArgs *args);
extern void cb_slot_detach(CbSlot *slot, bool terminated);
extern void cb_slot_report_start_failure(CbSlot *slot, int errcode,
										 const char *message);
extern void cb_slot_set_running(CbSlot *slot);
extern void cb_slot_set_phase(CbSlot *slot, CbPhase phase);
extern void cb_slot_start_progress(CbSlot *slot, int64 rows_done,
								   int64 chunks_done, int32 batch_size);
extern void cb_slot_publish(CbSlot *slot, CbPhase phase, int64 rows_done,
							int64 chunks_done, uint64 processed,
							int32 batch_size);
extern void cb_slot_stop_flags(CbSlot *slot, bool *cancel, bool *pause);
extern bool cb_slot_run_stopping(CbSlot *slot);
extern bool cb_slot_run_wants_helpers(Oid dboid, int64 run_id);
extern bool cb_slot_is_helper(CbSlot *slot);
extern bool cb_slot_run_throttled(CbSlot *slot);
extern void cb_slot_set_stopping(CbSlot *slot);
extern void cb_slot_slice_failed(CbSlot *slot);
extern void cb_slot_throttle_begin(CbSlot *slot, TimestampTz since);
extern void cb_slot_throttle_end(CbSlot *slot, int64 throttled_us);
extern void cb_slot_wake_group_waiters(void);

/* the SQL interface */
extern bool cb_slot_signal_run(Oid dboid, int64 run_id, bool cancel);
extern void cb_slot_wake_all(void);
extern int	cb_slot_snapshot(Oid dboid, CbSlotView **views);
extern int	cb_request_submit(Oid dboid, int64 job_id, Oid queued_by,
							  const char *trigger, int32 parallel,
							  const void *params, int params_len);
extern bool cb_request_poll(int idx, int64 *run_id, char *error, int errlen,
							bool *failed);
extern void cb_request_abandon(int idx);

/* the emergency stop */
#define CB_PAUSE_REASON_MAX		256
extern bool cb_all_paused(char **reason);
extern bool cb_pause_state(TimestampTz *at, char **by, char **reason);
extern bool cb_set_all_paused(bool pause, const char *by, const char *reason);

/* ----------------------------------------------------------------
 * Run states (runstate.c)
 *
 * The one list of the states of chunkbatch.runs.state, in the order of
 * the table's CHECK constraint.
 * ----------------------------------------------------------------
 */
#define CB_RUN_STATES(X) \
	X(CB_RUN_QUEUED, "queued") \
	X(CB_RUN_WAITING, "waiting") \
	X(CB_RUN_RUNNING, "running") \
	X(CB_RUN_PAUSED, "paused") \
	X(CB_RUN_SUCCEEDED, "succeeded") \
	X(CB_RUN_FAILED, "failed") \
	X(CB_RUN_CANCELLED, "cancelled") \
	X(CB_RUN_SKIPPED, "skipped") \
	X(CB_RUN_INTERRUPTED, "interrupted") \
	X(CB_RUN_STOPPED, "stopped") \
	X(CB_RUN_THROTTLED, "throttled")

typedef enum CbRunState
{
#define CB_RUN_STATE_ENUM(sym, name) sym,
	CB_RUN_STATES(CB_RUN_STATE_ENUM)
#undef CB_RUN_STATE_ENUM
	CB_RUN_NSTATES
} CbRunState;

typedef uint32 CbRunStateSet;

#define CB_STATE(s)		((CbRunStateSet) 1 << (s))

/* executing in a worker */
#define CB_STATES_EXECUTING	(CB_STATE(CB_RUN_RUNNING) | CB_STATE(CB_RUN_THROTTLED))
/* a worker may claim it */
#define CB_STATES_CLAIMABLE	(CB_STATE(CB_RUN_QUEUED) | CB_STATE(CB_RUN_WAITING) | \
							 CB_STATE(CB_RUN_INTERRUPTED))
/* queued or active: chunkbatch starts or continues it by itself */
#define CB_STATES_ACTIVE	(CB_STATES_CLAIMABLE | CB_STATES_EXECUTING)
/* resting until somebody resumes it */
#define CB_STATES_RESTING	(CB_STATE(CB_RUN_PAUSED) | CB_STATE(CB_RUN_STOPPED))
/* over for good */
#define CB_STATES_FINAL		(CB_STATE(CB_RUN_SUCCEEDED) | CB_STATE(CB_RUN_FAILED) | \
							 CB_STATE(CB_RUN_CANCELLED) | CB_STATE(CB_RUN_SKIPPED))
/* not over: active or resting (its job cannot be dropped) */
#define CB_STATES_LIVE		(CB_STATES_ACTIVE | CB_STATES_RESTING)
/* wait() returns: final or resting */
#define CB_STATES_SETTLED	(CB_STATES_FINAL | CB_STATES_RESTING)
/* resume() takes it */
#define CB_STATES_RESUMABLE	(CB_STATES_RESTING | CB_STATE(CB_RUN_FAILED))
/* history retention deletes it */
#define CB_STATES_PRUNABLE	(CB_STATES_FINAL | CB_STATE(CB_RUN_STOPPED))

extern const char *cb_run_state_name(CbRunState state);
extern CbRunState cb_run_state_from_name(const char *name);
extern bool cb_run_state_in(const char *name, CbRunStateSet set);
extern char *cb_run_states_sql(CbRunStateSet set);
extern char *cb_run_states_from(CbRunState to, CbRunStateSet from);
extern bool cb_run_transition_ok(CbRunState to, CbRunStateSet from);

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
	char	   *range_table;	/* range mode: the driving table, or NULL */
	char	   *range_key;		/* its key column */
	char	   *range_filter;	/* which of its rows to process, or NULL */
	int32		priority;		/* order among runs of a group queued together */
	List	   *before_sql;		/* steps before the first chunk (char *) */
	List	   *after_sql;		/* steps after the last chunk (char *) */
	bool		rebuild_indexes;	/* range mode: drop and rebuild indexes */
	bool		analyze_after;	/* range mode: ANALYZE the table at the end */
	bool		vacuum_after;	/* range mode: VACUUM the table at the end */
	int32		parallel;		/* range mode: slices a run splits into */
	TimestampTz altered_at;		/* to notice alter_job during a run */
} CbJob;

typedef struct CbRun
{
	int64		run_id;
	CbJob		job;
	Datum		params;			/* jsonb */
	TimestampTz queued_at;
	char	   *trigger;		/* what queued it: sql, pg_cron, a label */
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
	int32		knee_suspect;	/* slow chunks in a row that looked past a knee */
	uint64		knee_rows;		/* the size of the last of them */
	double		knee_rate;		/* and its rows per ms */
	/* steps: fixed at the run's first start (steps.c) */
	List	   *steps;			/* statements (char *), before steps first */
	int32		steps_before;	/* how many of them run before the chunks */
	int32		steps_done;		/* how many have completed */
	/* range mode with a filter: the keys it matched at the first start */
	char	   *range_first;	/* text forms, or NULL: no span */
	char	   *range_last;
	/* parallel slices: see worker_slices() */
	int32		parallel;		/* slices asked for when queued (1: none) */
	int32		slice_no;		/* the slice this CbRun executes, or -1 */
	bool		has_slices;		/* split at an earlier start: it has begun */
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
	double		last_chunk_ms;	/* < 0: not one timed chunk (isolation) */
	int64		dead_letters;
	int64		lock_waiters_seen;
	bool		done;			/* the run succeeded with this chunk */
	char	   *slice_end;		/* out, slices: the slice's end (NULL: none) */
} CbCheckpoint;

/* Has the run steps to run after its last chunk? */
static inline bool
cb_run_has_after_steps(const CbRun *run)
{
	return list_length(run->steps) > run->steps_before;
}

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
	bool		behind_older;	/* another run is ahead of it in its group */
	bool		tick_young;		/* queued by pg_cron less than a grace ago */
	bool		tick_ungrouped; /* ... past it, not yet grouped with its tick */
	int			holder_pid;		/* backend holding its group's lock, or 0 */
	int			workers_wanted; /* sliced runs: workers its open slices could use */
} CbRunRef;

/* What one chunk did, reported by chunk.c to the worker. */
typedef struct CbChunkResult
{
	bool		ok;				/* committed */
	bool		done;			/* it was the run's last chunk */
	uint64		processed;		/* rows: the statement's row count */
	uint64		sized;			/* what the chunk size counts: rows, or keys */
	double		elapsed_ms;
	ErrorData  *error;			/* when !ok, in the caller's context */
	bool		timed_out;		/* the job's statement_timeout ended it */
	bool		lock_waiters;	/* other sessions waited for its locks */
	bool		isolated;		/* committed without its poison rows */
	bool		slice_moved;	/* undone: a thief lowered its slice's end */
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
extern void cb_catalog_enter(CbAsOwner *s);
extern void cb_catalog_leave(CbAsOwner *s);

typedef enum CbJobLock
{
	CB_JOB_NO_LOCK,
	CB_JOB_KEY_SHARE,			/* queueing a run: keep the job from being dropped */
	CB_JOB_FOR_UPDATE			/* altering or dropping it */
} CbJobLock;

extern bool cb_catalog_find_job(const char *job_name, CbJob *job, CbJobLock lock);
extern int64 cb_catalog_insert_job(const CbJob *job);
extern void cb_catalog_update_job(const CbJob *job);
extern void cb_catalog_delete_job(int64 job_id);
extern int64 cb_catalog_unschedule_job(const char *job_name);
extern int64 cb_catalog_count_active_runs(int64 job_id);
extern int64 cb_catalog_insert_run(int64 job_id, Datum params, Oid queued_by,
								const char *trigger, int32 parallel);
extern void cb_catalog_mark_waiting(int64 run_id);
extern void cb_catalog_group_tick(int64 run_id);
extern void cb_catalog_skip_run(int64 run_id, const char *reason);
extern bool cb_catalog_get_run(int64 run_id, bool for_update, CbRunRef *ref,
							char **state, char **sqlstate, char **error);
extern bool cb_catalog_cancel_unowned(int64 run_id);

extern bool cb_catalog_claim_run(int64 run_id, CbRun *run);
extern bool cb_catalog_load_run(int64 run_id, CbRun *run);

/* A run's slices (parallel > 1), as the coordinator sees them. */
typedef struct CbSliceTotals
{
	int			slices;
	int			open;			/* pending or running */
	int			failed;
	int64		rows_done;
	int64		chunks_done;
	char	   *sqlstate;		/* of a failed slice */
	char	   *error;
} CbSliceTotals;

extern bool cb_catalog_slices_exist(int64 run_id);
extern bool cb_catalog_slices_create(const CbRun *run, char **bounds, int n,
									 const char *last);
extern void cb_catalog_slices_reopen(int64 run_id);
extern bool cb_catalog_slice_claim(const CbRun *run, CbRun *slice,
								   MemoryContext slice_cxt);
extern void cb_catalog_slice_release(const CbRun *slice, ErrorData *edata);
extern char *cb_catalog_slice_end(const CbRun *slice);
extern int64 cb_catalog_slice_others_dead(const CbRun *slice);

/* A slice another worker processes, as a thief sees it. */
typedef struct CbSliceRest
{
	int			slice_no;
	char	   *lower;			/* its cursor, or its first key if it has none */
	bool		inclusive;		/* lower is its first key, not yet done */
	char	   *last;			/* its last key, or NULL: no end */
	int32		batch_size;		/* its chunk size at its last checkpoint */
} CbSliceRest;

extern List *cb_catalog_slice_victims(int64 run_id);
extern bool cb_catalog_slice_lock_victim(const CbRun *run, const CbSliceRest *victim,
										 char **cursor);
extern void cb_catalog_slice_take(const CbRun *run, const CbSliceRest *victim,
								  const char *split, CbRun *slice);
extern void cb_catalog_slice_totals(int64 run_id, CbSliceTotals *t);
extern List *cb_catalog_sliced_runs(void);

/* The run this process executes (run workers only), for run_context(). */
extern CbRun *cb_current_run;
extern void cb_catalog_mark_started(int64 run_id);
extern void cb_catalog_set_steps(const CbRun *run);
extern void cb_catalog_set_timeouts(int64 run_id, int statement_ms, int lock_ms);
extern void cb_catalog_step_done(int64 run_id, int32 steps_done);
extern TimestampTz cb_catalog_checkpoint(const CbRun *run, CbCheckpoint *cp);
extern void cb_catalog_reload_job(CbJob *job);
extern TimestampTz cb_catalog_set_throttled(int64 run_id, const char *reason,
								  double throttled_ms);
extern void cb_catalog_set_estimate(int64 run_id, int64 total);
extern bool cb_catalog_set_span(const CbRun *run, const char *first, const char *last);
extern bool cb_catalog_clear_spans(int64 job_id);
extern char *cb_catalog_replica_lag_exceeded(double max_lag_ms, int64 max_lag_bytes);
extern void cb_catalog_finish_run(const CbRun *run, CbRunState state,
							   ErrorData *edata, const char *reason);
extern bool cb_catalog_pause_unowned(int64 run_id);
extern void cb_catalog_lock_job_of_run(int64 run_id);
extern bool cb_catalog_run_kind_changed(int64 run_id, char **was, char **now);
extern bool cb_catalog_resume_run(int64 run_id);
extern void cb_catalog_dead_letter(const CbRun *run, const char *key,
								ErrorData *edata);
extern uint64 cb_catalog_prune_history(int retention_min);

extern List *cb_catalog_runs_in_states(CbRunStateSet states);
extern List *cb_catalog_run_queue(int per_owner);
extern bool cb_catalog_mark_interrupted(int64 run_id);
extern void cb_catalog_fail_unstarted(int64 run_id, int sqlerrcode,
								   const char *message);
/* What a process finds in its database: see cb_catalog_schema_state(). */
typedef enum CbSchemaState
{
	CB_SCHEMA_ABSENT,			/* chunkbatch is not installed here */
	CB_SCHEMA_OLD,				/* installed at a version this library refuses */
	CB_SCHEMA_OK
} CbSchemaState;

extern CbSchemaState cb_catalog_schema_state(char **version);
extern void cb_catalog_require_schema(void);
extern uint64 cb_catalog_pause_copies(int64 run_id);
extern void cb_catalog_relink_owners(void);
extern int64 cb_catalog_count_all_active_runs(void);
extern int64 cb_catalog_count_owner_active_runs(Oid owner, int64 limit);
extern int	cb_catalog_role_limit(Oid role, const char *name, int dflt);
extern List *cb_catalog_job_owners(void);
extern Oid	cb_catalog_group_owner(const char *group, char **job_name);
extern List *cb_catalog_jobs_depending_on(Oid oid, bool by_type);
extern List *cb_catalog_live_runs(int64 job_id);
extern void cb_catalog_reassign_owner(Oid from, Oid to);

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

/* settings.c: the job settings, described once */
typedef enum CbSettingKind
{
	CB_SET_INT,					/* int32 (nullable: NULL <-> none) */
	CB_SET_INT64,				/* int64, NULL <-> 0 */
	CB_SET_BOOL,
	CB_SET_FLOAT,				/* double */
	CB_SET_TYPE,				/* a regtype column, an Oid field */
	CB_SET_NAME,				/* a name (char *) */
	CB_SET_SQL,					/* a statement (char *), never empty */
	CB_SET_INTERVAL,			/* Interval *, NULL: none */
	CB_SET_TIMEOUT,				/* Interval *, NULL or zero: none */
	CB_SET_CHUNK_TIMEOUT,		/* the same, below INT_MAX ms */
	CB_SET_CHOICE,				/* one of two words, a bool field */
	CB_SET_SQL_LIST				/* statements: a text[] column, a List field */
} CbSettingKind;

typedef struct CbJobSetting CbJobSetting;
struct CbJobSetting
{
	const char *name;			/* argument name = column name */
	int			argno;			/* position in create_job and alter_job */
	CbSettingKind kind;
	size_t		offset;			/* of the field in CbJob */
	void		(*check) (const CbJobSetting *s, const CbJob *job);
	const char *choice_no;		/* CB_SET_CHOICE: the word for false */
	const char *choice_yes;		/* ... and for true */
	int64		none;			/* nullable CB_SET_INT: the value for NULL */
	bool		nullable;
	bool		required;		/* create_job refuses NULL (it has a default) */
};

extern const CbJobSetting *cb_job_settings(int *n);
extern void cb_check_name(const char *what, const char *name);
extern void cb_settings_apply_args(FunctionCallInfo fcinfo, CbJob *job);
extern void cb_settings_check_job(const CbJob *job);
extern void cb_settings_reset(FunctionCallInfo fcinfo, int argno, CbJob *job);
extern Oid	cb_setting_sqltype(const CbJobSetting *s);
extern Datum cb_setting_to_datum(const CbJobSetting *s, const CbJob *job,
								 bool *isnull);
extern void cb_setting_from_datum(const CbJobSetting *s, CbJob *job, Datum d,
								  bool isnull, const char *text);

/* errors.c */
extern ErrorData *cb_catch_error(MemoryContext mcxt, bool keep, bool report);

/* chunk.c */
typedef struct CbChunkState CbChunkState;
extern CbChunkState *cb_chunk_begin(CbRun *run, MemoryContext run_ctx);
extern void cb_chunk_execute(CbChunkState *cs, CbChunkResult *res);
extern void cb_chunk_isolate(CbChunkState *cs, CbChunkResult *res);
extern bool cb_chunk_error_is_transient(ErrorData *edata);
extern int64 cb_chunk_count_estimate(CbChunkState *cs);
extern bool cb_chunk_find_span(CbChunkState *cs, char **first, char **last,
							   int64 *count);
extern int	cb_chunk_split(CbChunkState *cs, int n, char ***bounds);
extern void cb_chunk_retarget(CbChunkState *cs);
extern bool cb_chunk_steal(CbChunkState *cs, const CbRun *run, CbRun *slice);
extern void cb_chunk_set_span(CbChunkState *cs, const char *first, const char *last);
extern void cb_chunk_validate_sql(const CbJob *job, Oid owner);
extern void cb_chunk_validate_select(const char *job_name, const char *what,
								  const char *sql, Oid cursor_type,
								  Oid want_type, Oid owner,
								  const char *search_path);

/* Running as another role, with a search_path (chunk.c) */
typedef struct CbAsRole
{
	Oid			save_uid;
	int			save_sec;
	int			nestlevel;
} CbAsRole;

extern void cb_as_role_enter(CbAsRole *r, Oid role, const char *search_path);
extern void cb_as_role_leave(CbAsRole *r);

/* range.c */
typedef struct CbRange CbRange;
extern void cb_range_resolve(CbJob *job, bool validate);
extern CbRange *cb_range_begin(const CbJob *job, MemoryContext run_ctx);
extern int	cb_range_bounds(CbRange *r, int32 size, Datum lower, bool lower_null,
							Datum run_params, Datum *first, Datum *last,
							MemoryContext cxt);
extern int	cb_range_keys(CbRange *r, int32 size, Datum lower, bool lower_null,
						  Datum run_params, Datum **keys, MemoryContext cxt);
extern bool cb_range_find_span(CbRange *r, Datum run_params, char **first,
							   char **last, int64 *count, MemoryContext cxt);
extern bool cb_range_count_is_span(const CbJob *job);
extern bool cb_range_rewrite_written(const CbJob *old, CbJob *job, bool keep_count);
extern int	cb_range_split(CbRange *r, Datum run_params, int n, char ***bounds,
						   MemoryContext cxt);
extern int64 cb_range_count_keys(CbRange *r, const char *lower, bool inclusive,
								 const char *last);
extern char *cb_range_nth_key(CbRange *r, const char *lower, bool inclusive,
							  const char *last, int64 n, MemoryContext cxt);
extern Oid	cb_range_key_collation(CbRange *r);
extern void cb_range_set_span(CbRange *r, const char *first, const char *last,
							  MemoryContext cxt);

/* steps.c */
extern void cb_steps_check(const CbJob *job);
extern void cb_steps_plan(CbRun *run, MemoryContext run_ctx);
extern bool cb_steps_execute(CbRun *run, ErrorData **error);

/* grouplock.c */
extern int64 cb_group_lock_key(const char *group);
extern bool cb_grouplock_try(CbRun *run);
extern void cb_grouplock_release(CbRun *run);
extern void cb_grouplock_wake_waiters(void);
extern int	cb_grouplock_holder(const char *group);
extern void cb_grouplock_lock_name(const char *group);
extern void cb_grouplock_lock_steals(int64 run_id);
extern bool cb_grouplock_slice_try(int64 run_id, int32 slice_no);
extern void cb_grouplock_slice_release(int64 run_id, int32 slice_no);

/* throttle.c */
extern bool cb_throttle_wait_once(CbSlot *slot, long timeout_ms);
extern bool cb_throttle_sleep(CbSlot *slot, int sleep_ms);
extern bool cb_throttle_stop_requested(CbSlot *slot);
extern void cb_worker_sigterm(SIGNAL_ARGS);
extern bool cb_terminate_pending(void);
extern int32 cb_throttle_next_batch(CbRun *run, const CbChunkResult *res);
extern int32 cb_throttle_after_conflict(const CbRun *run);
extern int	cb_throttle_pause_ms(const CbRun *run, const CbChunkResult *res);
extern bool cb_throttle_gate(CbRun *run, CbSlot *slot, ErrorData **error,
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

/* depend.c */
extern void cb_depend_sync_owners(void);
extern void cb_depend_check_drop_role(DropRoleStmt *stmt);
extern List *cb_depend_drop_owned(DropOwnedStmt *stmt);
extern void cb_depend_reassign_owned(ReassignOwnedStmt *stmt);
extern List *cb_depend_drop_type(DropStmt *stmt);
extern void cb_depend_signal(List *signal);

#endif							/* CHUNKBATCH_H */
