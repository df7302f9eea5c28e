/*-------------------------------------------------------------------------
 *
 * steps.c
 *	  A run's steps: statements run once per run, as the job's owner under
 *	  the run's group lock, before its first chunk and after its last.
 *
 * A run's steps are fixed when it first starts and kept in its row of
 * chunkbatch.runs (runs.steps, runs.steps_before): the job's before_sql,
 * then for rebuild_indexes one DROP INDEX CONCURRENTLY per non-unique
 * secondary index of the tables its chunk SQL writes; after the chunks,
 * the CREATE INDEX CONCURRENTLY of each dropped index (its definition was
 * saved with the steps, in a transaction committed before any index was
 * dropped), VACUUM and/or ANALYZE of the range table, then the job's
 * after_sql.
 *
 * Each step runs as a top-level statement, the way a client's simple query
 * does, so that statements that cannot run in a transaction block (CREATE
 * INDEX CONCURRENTLY, VACUUM, ...) work.  runs.steps_done counts the
 * completed steps; it is written at the end of the step's (last)
 * transaction, so a step that runs in one transaction is never repeated
 * after a crash, and one that commits as it goes is run again from its
 * start.  A CREATE INDEX CONCURRENTLY step whose index exists is done if
 * the index is valid; an invalid one (left by an interrupted build) is
 * dropped and built again.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/steps.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "chunkbatch.h"

/* Each step is one statement, and no transaction control. */
void
cb_steps_check(const CbJob *job)
{
	List	   *lists[2] = {job->before_sql, job->after_sql};
	const char *names[2] = {"before_sql", "after_sql"};
	int			k;

	for (k = 0; k < 2; k++)
	{
		ListCell   *lc;

		foreach(lc, lists[k])
		{
			List	   *raw = raw_parser((char *) lfirst(lc), RAW_PARSE_DEFAULT);

			if (list_length(raw) != 1)
				ereport(ERROR,
						(errcode(ERRCODE_SYNTAX_ERROR),
						 errmsg("each step of %s must be exactly one statement", names[k]),
						 errdetail("Step %d contains %d statements.",
								   foreach_current_index(lc) + 1, list_length(raw))));
			if (IsA(linitial_node(RawStmt, raw)->stmt, TransactionStmt))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("a step of %s cannot be a transaction control statement",
								names[k]),
						 errdetail("chunkbatch runs each step in a transaction of its own.")));
		}
	}
}

/* The tables a statement writes: its target, and those of its WITH. */
static void
add_written(Query *q, List **oids)
{
	ListCell   *lc;

	if (q->commandType != CMD_SELECT && q->resultRelation > 0)
		*oids = list_append_unique_oid(*oids, rt_fetch(q->resultRelation, q->rtable)->relid);
	foreach(lc, q->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query))
			add_written((Query *) cte->ctequery, oids);
	}
}

/* The tables the job's chunk SQL writes, analyzed as the owner. */
static Datum
written_tables(const CbJob *job)
{
	bool		range = (job->range_table != NULL);
	Oid			argtypes[3] = {range ? job->cursor_type : INT4OID,
		OidIsValid(job->cursor_type) ? job->cursor_type : TEXTOID, JSONBOID};
	CbAsRole	r;
	List	   *oids = NIL;
	Datum	   *elems;
	ListCell   *lc;
	int			n = 0;

	cb_as_role_enter(&r, GetUserId(), job->search_path);
	add_written(parse_analyze_fixedparams(linitial_node(RawStmt, pg_parse_query(job->chunk_sql)),
										  job->chunk_sql, argtypes, 3, NULL), &oids);
	cb_as_role_leave(&r);
	if (oids == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rebuild_indexes found no table that the chunk SQL of job \"%s\" writes",
						job->job_name),
				 errdetail("It sees the tables of INSERT, UPDATE, DELETE and MERGE statements, also in WITH, not what a function writes."),
				 errhint("Write the index steps yourself with before_sql and after_sql.")));
	elems = palloc(sizeof(Datum) * list_length(oids));
	foreach(lc, oids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/*
 * The rebuild steps of the non-unique secondary indexes of the tables the
 * chunk SQL writes: a DROP INDEX CONCURRENTLY each (into *drops) and the
 * CREATE INDEX CONCURRENTLY that rebuilds it (into *creates).  Unique,
 * primary-key and exclusion indexes stay: they enforce constraints (and
 * ON CONFLICT needs them), and the key search needs the key's.  So do the
 * indexes of a partition that belong to an index of its partitioned
 * table: they can be dropped only with it.
 */
static void
rebuild_steps(const CbJob *job, List **drops, List **creates, MemoryContext cxt)
{
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {written_tables(job)};
	uint64		i;

	if (SPI_execute_with_args("SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),"
							  " pg_catalog.pg_get_indexdef(i.indexrelid),"
							  " t.relkind OPERATOR(pg_catalog.=) 'p'"
							  " FROM pg_catalog.pg_index i"
							  " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
							  " JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) i.indrelid"
							  " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
							  " WHERE i.indrelid OPERATOR(pg_catalog.=) ANY ($1)"
							  " AND NOT i.indisunique AND NOT i.indisprimary"
							  " AND NOT i.indisexclusion AND i.indisvalid"
							  " AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits h"
							  "                 WHERE h.inhrelid OPERATOR(pg_catalog.=) i.indexrelid)"
							  " ORDER BY n.nspname, c.relname",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the indexes of the tables of job \"%s\"", job->job_name);
	/* SPI calls return in SPI's own memory context: the steps go to cxt. */
	MemoryContextSwitchTo(cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *def = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *partitioned = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		if (strcmp(partitioned, "t") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("rebuild_indexes does not support partitioned tables"),
					 errdetail("Indexes of partitioned tables cannot be built concurrently.")));
		if (strncmp(def, "CREATE INDEX ", 13) != 0)
			continue;
		*drops = lappend(*drops, psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", name));
		*creates = lappend(*creates, psprintf("CREATE INDEX CONCURRENTLY %s", def + 13));
	}
}

/*
 * Fix the run's steps at its first start, and save them (with the index
 * definitions) in its row.  Call inside a transaction, connected to SPI.
 */
void
cb_steps_plan(CbRun *run, MemoryContext run_ctx)
{
	const CbJob *job = &run->job;
	List	   *drops = NIL;
	List	   *creates = NIL;
	List	   *steps;
	MemoryContext old;

	old = MemoryContextSwitchTo(run_ctx);
	if (job->rebuild_indexes)
		rebuild_steps(job, &drops, &creates, run_ctx);
	steps = list_concat(list_copy(job->before_sql), drops);
	run->steps_before = list_length(steps);
	steps = list_concat(steps, creates);
	if (job->vacuum_after)
		steps = lappend(steps, psprintf("VACUUM %s%s", job->analyze_after ? "(ANALYZE) " : "",
										job->range_table));
	else if (job->analyze_after)
		steps = lappend(steps, psprintf("ANALYZE %s", job->range_table));
	steps = list_concat(steps, job->after_sql);
	run->steps = steps;
	run->steps_done = 0;
	MemoryContextSwitchTo(old);
	cb_catalog_set_steps(run);
}

/*
 * A CREATE INDEX CONCURRENTLY whose index exists: true if it is valid (the
 * step is done); an invalid one, left by an interrupted build, is dropped
 * first (as its own top-level statement, see step_toplevel).
 */
static void step_toplevel(const char *sql, MemoryContext cxt);

static bool
index_step_done(Node *stmt, MemoryContext cxt, const CbRun *run)
{
	IndexStmt  *is = (IndexStmt *) stmt;
	Oid			relid;
	Oid			indexoid;
	HeapTuple	tup;
	bool		valid;

	if (!IsA(stmt, IndexStmt) || !is->concurrent || is->idxname == NULL)
		return false;
	relid = RangeVarGetRelid(is->relation, NoLock, true);
	if (!OidIsValid(relid))
		return false;
	indexoid = get_relname_relid(is->idxname, get_rel_namespace(relid));
	if (!OidIsValid(indexoid))
		return false;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tup))
		return false;
	valid = ((Form_pg_index) GETSTRUCT(tup))->indisvalid;
	ReleaseSysCache(tup);
	if (valid)
		return true;
	ereport(LOG,
			(errmsg("chunkbatch run %lld drops the invalid index %s left by an interrupted build, and builds it again",
					(long long) run->run_id, is->idxname)));
	step_toplevel(psprintf("DROP INDEX CONCURRENTLY %s",
						   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
													  is->idxname)),
				  cxt);
	CommitTransactionCommand();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return false;
}

/*
 * Run one statement as a client's simple query would: parsed, analyzed,
 * planned and run through an unnamed portal as a top-level statement, so
 * that a statement that commits as it goes may do so.  Parse and plan
 * trees live in cxt, which outlives those commits.  Called inside a
 * transaction; returns inside one (maybe another).
 */
static void
step_toplevel(const char *sql, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RawStmt    *raw = linitial_node(RawStmt, pg_parse_query(sql));
	bool		snapshot = analyze_requires_snapshot(raw);
	List	   *plans;
	Portal		portal;
	DestReceiver *dest = CreateDestReceiver(DestNone);
	QueryCompletion qc;

	if (snapshot)
		PushActiveSnapshot(GetTransactionSnapshot());
	plans = pg_plan_queries(pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL),
							sql, CURSOR_OPT_PARALLEL_OK, NULL);
	if (snapshot)
		PopActiveSnapshot();
	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt), plans, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	(void) PortalRun(portal, FETCH_ALL, true, true, dest, dest, &qc);
	PortalDrop(portal, false);
	CommandCounterIncrement();
	MemoryContextSwitchTo(old);
}

/*
 * Run the run's next step and count it done; false (with *error) if it
 * failed, its work rolled back as far as it had not committed.  The caller's
 * memory context is reset after each step.
 */
bool
cb_steps_execute(CbRun *run, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	const char *sql = list_nth(run->steps, run->steps_done);
	volatile bool ok = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, sql);
	PG_TRY();
	{
		Node	   *stmt;
		List	   *raw;

		/* For the session: a step may span several transactions. */
		(void) set_config_option("search_path", run->job.search_path,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET,
								 true, 0, false);
		MemoryContextSwitchTo(cxt);
		raw = pg_parse_query(sql);
		if (list_length(raw) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("step %d of run %lld must be exactly one statement",
							run->steps_done + 1, (long long) run->run_id)));
		stmt = linitial_node(RawStmt, raw)->stmt;
		if (!index_step_done(stmt, cxt, run))
			step_toplevel(sql, cxt);
		PushActiveSnapshot(GetTransactionSnapshot());
		cb_catalog_step_done(run->run_id, run->steps_done + 1);
		PopActiveSnapshot();
		CommitTransactionCommand();
		ok = true;
	}
	PG_CATCH();
	{
		*error = cb_catch_error(cxt, true, true);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (ok)
		run->steps_done++;
	return ok;
}
