/*-------------------------------------------------------------------------
 *
 * chunkbatch.c
 *	  Entry point of the chunkbatch library: GUCs, hooks and the launcher.
 *
 * When loaded through shared_preload_libraries, _PG_init defines the
 * settings, requests shared memory and registers the launcher.  Loaded any
 * other way (CREATE EXTENSION on a server without the preload), only the
 * settings exist and the SQL functions that need workers refuse to run.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/chunkbatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "chunkbatch.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			cb_max_workers = 4;
int			cb_naptime = 10;
int			cb_scheduler_idle_exit = 0;
int			cb_history_retention = 30 * 24 * 60;
int			cb_max_workers_per_role = -1;
int			cb_max_queued_per_role = 1000;
char	   *cb_test_fault = NULL;
int			cb_test_fault_chunk = 0;

/*
 * chunkbatch.max_workers = 0 is refused: at startup by _PG_init (the server
 * does not start), anywhere else (ALTER SYSTEM, a reload) by this check, so
 * that nobody writes a value that would keep the server from starting.
 */
static bool
check_max_workers(int *newval, void **extra, GucSource source)
{
	if (*newval == 0 && !process_shared_preload_libraries_in_progress)
	{
		GUC_check_errdetail("chunkbatch.max_workers must be at least 1.");
		GUC_check_errhint("To stop every run, call chunkbatch.pause_all().");
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	DefineCustomIntVariable("chunkbatch.naptime",
							"Seconds between two scans of the run queue when nothing wakes the scheduler.",
							NULL,
							&cb_naptime,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("chunkbatch.scheduler_idle_exit",
							"Seconds a database's scheduler stays after its last run ends.",
							"While it stays, the database cannot be dropped, renamed or used as a template.",
							&cb_scheduler_idle_exit,
							0, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("chunkbatch.max_workers_per_role",
							"Maximum number of run workers the runs of one owner role may use at once.",
							"Counted over all databases.  -1: chunkbatch.max_workers - 1 (at least 1), so that one role cannot take every worker.  ALTER ROLE ... SET gives one role its own value.",
							&cb_max_workers_per_role,
							-1, -1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("chunkbatch.max_queued_runs_per_role",
							"Maximum number of queued or active runs of one owner role in a database.",
							"run() beyond it fails with 54000.  0: no limit.  ALTER ROLE ... SET gives one role its own value.",
							&cb_max_queued_per_role,
							1000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("chunkbatch.history_retention",
							"How long finished runs are kept before the scheduler deletes them.",
							"0 keeps them forever.",
							&cb_history_retention,
							30 * 24 * 60, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	/*
	 * Fault injection for tests that must land in a narrow window of the
	 * chunk transaction every time: the run worker kills itself (SIGKILL)
	 * at the named point of the given chunk, once per data directory.
	 */
	DefineCustomStringVariable("chunkbatch.test_fault",
							   "Test only: where a run worker kills itself: after_statement, before_commit or after_commit.",
							   "Empty (the default) disables it.  Fires once, then leaves the file chunkbatch_test_fault.done in the data directory.",
							   &cb_test_fault,
							   "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("chunkbatch.test_fault_chunk",
							"Test only: the chunk number at which chunkbatch.test_fault fires (0: any).",
							NULL,
							&cb_test_fault_chunk,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	/*
	 * max_workers sizes shared memory, so it exists only in a preloaded
	 * library: a PGC_POSTMASTER setting cannot be defined later.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("chunkbatch.max_workers",
								"Maximum number of concurrently executing chunkbatch runs.",
								"Counted over all databases of the cluster; each run uses one "
								"background worker of max_worker_processes.",
								&cb_max_workers,
								4, 0, 1000,
								PGC_POSTMASTER, 0,
								check_max_workers, NULL, NULL);

	/*
	 * Zero would leave every run queued forever without a word: refuse it
	 * at startup rather than quietly use the default (which is what an
	 * out-of-range value in postgresql.conf would do).
	 */
	if (process_shared_preload_libraries_in_progress && cb_max_workers == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chunkbatch.max_workers must be at least 1"),
				 errdetail("With no run workers, no run could ever execute."),
				 errhint("To stop every run, call chunkbatch.pause_all(); to disable chunkbatch, remove it from \"shared_preload_libraries\".")));

	MarkGUCPrefixReserved("chunkbatch");

	cb_api_init();
	cb_utility_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	cb_shmem_install_hooks();
	cb_register_launcher();
}
