/*-------------------------------------------------------------------------
 *
 * range.c
 *	  Range mode: a job's driving table, key and filter, checked when the
 *	  job is created, and each chunk's key range, found by an index scan.
 *
 * A range-mode job names a table, a key column with a unique single-column
 * btree index, and optionally a filter (a boolean SQL expression over the
 * table's columns that may read the run's parameters as $3, which the
 * job's statement applies).  Before each chunk the worker reads the next
 * batch_size keys past the checkpoint, in key order, by an index-only scan
 * of the key's index; the first and the last of them are the chunk's
 * bounds, $1 and $2 of the job's statement, and the last one becomes the
 * checkpoint.  The run ends when no key is left.
 *
 * With a filter, the run first finds its span: the first and the last key
 * the filter matches (by a short walk from each end of the key, else one
 * read of the matching rows), committed in the run's row before its first
 * chunk.  The key search then stays within the span, so the stretches
 * before the first match and after the last one (the newer half of a
 * table purged of its older half) are never walked.
 *
 * The key search does not apply the filter: it would read each row's heap
 * tuple once to find the keys and the statement a second time to process
 * them, and where nothing matches over a long stretch of keys a filtered
 * search would scan the whole stretch in one chunk (past any
 * statement_timeout).  Unfiltered, each chunk's work is bounded by
 * batch_size keys, every row is read once (by the statement), and the
 * search costs the same at the first chunk as at the last.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/range.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/gramparse.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "chunkbatch.h"

struct CbRange
{
	const CbJob *job;
	SPIPlanPtr	plans[4];		/* the key search: first chunk or later ones,
								 * without or within the span */
	Oid			argtypes[5];	/* int4 size, key lower bound, jsonb, span */
	int16		typlen;
	bool		typbyval;
	/* the span: the keys the filter matched at the run's first start */
	bool		bounded;		/* search only within span_first..span_last */
	bool		empty;			/* the filter matched no row */
	Datum		span_first;
	Datum		span_last;
};

/*
 * A filter is one boolean expression: its parentheses balance, so that
 * inside "... AND (filter)" it cannot close the parenthesis around it.
 * Checked with PostgreSQL's own scanner, which knows strings, quoted
 * identifiers, dollar quotes and comments.
 */
static void
check_balanced(const char *what, const char *sql)
{
	core_yy_extra_type extra;
	core_yyscan_t scanner = scanner_init(sql, &extra, &ScanKeywords,
										 ScanKeywordTokens);
	core_YYSTYPE val;
	YYLTYPE		loc;
	int			depth = 0;
	int			tok;

	while ((tok = core_yylex(&val, &loc, scanner)) != 0)
	{
		if (tok == '(' || tok == '[')
			depth++;
		else if (tok == ')' || tok == ']')
			depth--;
		if (depth < 0 || tok == ';')
			break;
	}
	scanner_finish(scanner);
	if (depth != 0 || tok == ';')
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s must be one SQL expression", what),
				 errdetail("Its parentheses do not balance, or it contains a semicolon.")));
}

/* Does the filter refer to a parameter other than $3? */
static bool
refers_to_chunk_param(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, ParamRef))
		return ((ParamRef *) node)->number != 3;
	return raw_expression_tree_walker(node, refers_to_chunk_param, context);
}

/* The filter parses as a WHERE condition and reads only $3. */
static void
check_filter(const CbJob *job)
{
	List	   *raw;
	SelectStmt *sel;

	check_balanced("range_filter", job->range_filter);
	raw = raw_parser(psprintf("SELECT FROM t WHERE (\n%s\n)", job->range_filter),
					 RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("range_filter must be one SQL expression")));
	sel = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
	if (!IsA(sel, SelectStmt) ||
		sel->op != SETOP_NONE || list_length(sel->fromClause) != 1 ||
		sel->groupClause != NIL || sel->havingClause != NULL ||
		sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->lockingClause != NIL || sel->windowClause != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("range_filter must be one SQL expression")));
	if (refers_to_chunk_param(sel->whereClause, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("range_filter of job \"%s\" may refer only to $3, the run's parameters",
						job->job_name),
				 errdetail("$1 and $2 mean different things in the key search and in the statement.")));
}

/*
 * A btree index that makes the key a range key: valid, unique, on the key
 * column alone, with no predicate or expression, and in the column's
 * default ordering (opclass and collation), which is the order the key
 * search and the checkpoint use.
 */
static Oid
index_am(Oid indexoid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Oid			am = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		am = ((Form_pg_class) GETSTRUCT(tup))->relam;
		ReleaseSysCache(tup);
	}
	return am;
}

static bool
index_fits(Oid indexoid, AttrNumber attnum, Oid keytype, Oid keycoll)
{
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Form_pg_index idx;
	bool		fits;
	bool		isnull;
	Datum		d;

	if (!HeapTupleIsValid(tup))
		return false;
	idx = (Form_pg_index) GETSTRUCT(tup);
	fits = idx->indisunique && idx->indisvalid && idx->indnkeyatts == 1 &&
		idx->indkey.values[0] == attnum &&
		heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
		index_am(indexoid) == BTREE_AM_OID;
	if (fits)
	{
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull);
		fits = ((oidvector *) DatumGetPointer(d))->values[0] ==
			GetDefaultOpClass(keytype, BTREE_AM_OID);
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indcollation, &isnull);
		fits = fits && ((oidvector *) DatumGetPointer(d))->values[0] == keycoll;
	}
	ReleaseSysCache(tup);
	return fits;
}

/*
 * Resolve a range-mode job's table and key, as its owner with its
 * search_path: the table is kept as a qualified name, and the cursor type
 * becomes the key's type.  With validate, the filter is also checked
 * against the table (columns, types, privileges).
 */
void
cb_range_resolve(CbJob *job, bool validate)
{
	CbAsRole	r;
	Oid			relid;
	Relation	rel;
	AttrNumber	attnum;
	Form_pg_attribute att;
	List	   *indexes;
	ListCell   *lc;
	bool		found = false;

	if (job->range_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a range-mode job needs range_key, the key column of range_table")));
	if (job->range_filter != NULL)
		check_filter(job);

	cb_as_role_enter(&r, job->owner, job->search_path);
	relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(job->range_table)),
							 AccessShareLock, false);
	rel = relation_open(relid, NoLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("range_table \"%s\" is not a table", job->range_table)));
	job->range_table = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));

	attnum = get_attnum(relid, job->range_key);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist",
						job->range_key, job->range_table)));
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
		found = found || index_fits(lfirst_oid(lc), attnum, att->atttypid,
									att->attcollation);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("range_key \"%s\" of table %s has no unique btree index of its own",
						job->range_key, job->range_table),
				 errdetail("Range mode finds each chunk's keys by an index scan and needs every key to be unique."),
				 errhint("Use the primary key, or create a unique index on that column alone.")));
	job->cursor_type = att->atttypid;
	relation_close(rel, NoLock);

	if (validate && job->range_filter != NULL)
	{
		char	   *sql = psprintf("SELECT FROM %s WHERE (\n%s\n)", job->range_table,
								   job->range_filter);
		Oid			argtypes[3] = {INT4OID, job->cursor_type, JSONBOID};
		Query	   *query;

		query = parse_analyze_fixedparams(linitial_node(RawStmt, pg_parse_query(sql)),
										  sql, argtypes, 3, NULL);
		(void) ExecCheckRTPerms(query->rtable, true);
	}
	cb_as_role_leave(&r);
}

/*
 * The key search: the next "size" keys past $2, or from $4 on (the span's
 * first key) for the first chunk, up to $5 (its last key) when bounded.
 * $3 is unused.
 */
static char *
range_search_sql(const CbJob *job, bool first, bool bounded)
{
	const char *key = quote_identifier(job->range_key);
	const char *from;

	if (first)
		from = bounded ? "OPERATOR(pg_catalog.>=) $4" : "IS NOT NULL";
	else
		from = "OPERATOR(pg_catalog.>) $2";
	return psprintf("SELECT %s FROM %s WHERE %s %s%s%s%s ORDER BY %s LIMIT $1",
					key, job->range_table, key, from,
					bounded ? " AND " : "", bounded ? key : "",
					bounded ? " OPERATOR(pg_catalog.<=) $5" : "", key);
}

CbRange *
cb_range_begin(const CbJob *job, MemoryContext run_ctx)
{
	CbRange    *r = MemoryContextAllocZero(run_ctx, sizeof(CbRange));

	r->job = job;
	r->argtypes[0] = INT4OID;
	r->argtypes[1] = job->cursor_type;
	r->argtypes[2] = JSONBOID;
	r->argtypes[3] = job->cursor_type;
	r->argtypes[4] = job->cursor_type;
	get_typlenbyval(job->cursor_type, &r->typlen, &r->typbyval);
	return r;
}

/* Receives the keys of the search: the first and last, or all of them. */
typedef struct CbRangeReceiver
{
	DestReceiver pub;
	CbRange    *range;
	MemoryContext cxt;
	bool		collect;		/* keep every key */
	int			n;
	Datum		first;
	Datum		last;
	Datum	   *keys;
	int			nalloc;
} CbRangeReceiver;

static Datum
key_copy(CbRangeReceiver *rr, Datum key)
{
	MemoryContext old = MemoryContextSwitchTo(rr->cxt);
	Datum		copy;

	copy = rr->range->typlen == -1 ? PointerGetDatum(PG_DETOAST_DATUM_COPY(key)) :
		datumCopy(key, rr->range->typbyval, rr->range->typlen);
	MemoryContextSwitchTo(old);
	return copy;
}

static bool
range_receive(TupleTableSlot *slot, DestReceiver *self)
{
	CbRangeReceiver *rr = (CbRangeReceiver *) self;
	bool		isnull;
	Datum		key = slot_getattr(slot, 1, &isnull);

	Assert(!isnull);
	if (rr->collect)
	{
		if (rr->n == rr->nalloc)
		{
			rr->nalloc = Max(rr->nalloc * 2, 64);
			rr->keys = rr->keys == NULL ?
				MemoryContextAlloc(rr->cxt, sizeof(Datum) * rr->nalloc) :
				repalloc(rr->keys, sizeof(Datum) * rr->nalloc);
		}
		rr->keys[rr->n] = key_copy(rr, key);
	}
	else if (rr->n == 0)
		rr->first = key_copy(rr, key);
	else
	{
		/* Only the last key is needed: keep one copy at a time. */
		if (rr->n > 1 && !rr->range->typbyval)
			pfree(DatumGetPointer(rr->last));
		rr->last = key_copy(rr, key);
	}
	rr->n++;
	return true;
}

/* The key column may have changed its type since the job was created. */
static void
range_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	CbRangeReceiver *rr = (CbRangeReceiver *) self;
	const CbJob *job = rr->range->job;

	if (typeinfo->natts != 1 ||
		TupleDescAttr(typeinfo, 0)->atttypid != job->cursor_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("range_key \"%s\" of table %s is no longer of type %s",
						job->range_key, job->range_table,
						format_type_be(job->cursor_type)),
				 errhint("Set the job's range_key again with chunkbatch.alter_job().")));
}

static void
range_nothing(DestReceiver *self)
{
}

/*
 * Plan what follows as ordered scans of an index (until AtEOXact_GUC at
 * the returned nest level): a sequential scan and sort, or a bitmap scan,
 * could look cheaper to the planner for a large LIMIT, but would read the
 * whole table.
 */
static int
ordered_key_scans(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * Run the key search (inside the caller's SPI connection) for up to size
 * keys past lower.  Planned always as an ordered scan of the key's index
 * (index-only where the visibility map allows): a sequential scan and sort
 * could look cheaper to the planner for a large size, but would read the
 * whole table at every chunk.
 */
static void
range_search(CbRange *r, int32 size, Datum lower, bool lower_null,
			 Datum run_params, CbRangeReceiver *rr)
{
	ParamListInfo params = makeParamList(5);
	SPIExecuteOptions options;
	int			which;
	int			nest;
	int			rc;

	if (r->empty)
		return;
	which = (lower_null ? 0 : 1) + (r->bounded ? 2 : 0);
	if (r->plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(range_search_sql(r->job, lower_null,
																 r->bounded),
											  5, r->argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the key search: %s",
				 SPI_result_code_string(SPI_result));
		r->plans[which] = plan;
	}
	params->params[0].value = Int32GetDatum(size);
	params->params[1].value = lower;
	params->params[2].value = run_params;
	params->params[3].value = r->span_first;
	params->params[4].value = r->span_last;
	for (rc = 0; rc < 5; rc++)
	{
		params->params[rc].isnull = (rc == 1 && lower_null) || (rc >= 3 && !r->bounded);
		params->params[rc].pflags = PARAM_FLAG_CONST;
		params->params[rc].ptype = r->argtypes[rc];
	}
	params->numParams = 5;

	rr->pub.receiveSlot = range_receive;
	rr->pub.rStartup = range_startup;
	rr->pub.rShutdown = range_nothing;
	rr->pub.rDestroy = range_nothing;
	rr->pub.mydest = DestNone;
	rr->range = r;

	nest = ordered_key_scans();
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = &rr->pub;
	rc = SPI_execute_plan_extended(r->plans[which], &options);
	AtEOXact_GUC(true, nest);
	if (rc < 0)
		elog(ERROR, "the key search failed: %s", SPI_result_code_string(rc));
}

/*
 * The next chunk's bounds: the first and the last of the next size keys
 * past lower, copied into cxt.  Returns how many keys there are (0: none
 * is left).
 */
int
cb_range_bounds(CbRange *r, int32 size, Datum lower, bool lower_null,
				Datum run_params, Datum *first, Datum *last, MemoryContext cxt)
{
	CbRangeReceiver rr;

	memset(&rr, 0, sizeof(rr));
	rr.cxt = cxt;
	range_search(r, size, lower, lower_null, run_params, &rr);
	if (rr.n == 0)
		return 0;
	*first = rr.first;
	*last = rr.n > 1 ? rr.last : rr.first;
	return rr.n;
}

/* All the keys of the next chunk, in order, copied into cxt. */
int
cb_range_keys(CbRange *r, int32 size, Datum lower, bool lower_null,
			  Datum run_params, Datum **keys, MemoryContext cxt)
{
	CbRangeReceiver rr;

	memset(&rr, 0, sizeof(rr));
	rr.cxt = cxt;
	rr.collect = true;
	range_search(r, size, lower, lower_null, run_params, &rr);
	*keys = rr.keys;
	return rr.n;
}

/*
 * Has the key's type a min() aggregate (through its default btree opclass,
 * so varchar finds min(text))?  uuid, for one, has none.
 */
static bool
key_has_min(Oid keytype)
{
	Oid			opclass = GetDefaultOpClass(keytype, BTREE_AM_OID);
	Oid			argtype;

	if (!OidIsValid(opclass))
		return false;
	argtype = get_opclass_input_type(opclass);
	return OidIsValid(LookupFuncName(list_make2(makeString("pg_catalog"),
												makeString("min")),
									 1, &argtype, true));
}

/*
 * How many keys the span's first look walks from each end of the key, in
 * key order, for the first and the last match, before it gives up and
 * reads every matching row instead.
 */
#define CB_SPAN_WALK	10000

/*
 * The span's first look: the first and the last match within
 * CB_SPAN_WALK keys of each end of the key, by ordered scans of its index
 * that stop at the first match.  Where matches are spread over the whole
 * key (a status flip) this finds both ends at once; where they are not
 * (a purge of the older half), it gives up after reading CB_SPAN_WALK rows
 * at that end.  True if it found both ends.
 */
static bool
span_walk(CbRange *r, Datum *values, char *nulls, char **first, char **last,
		  MemoryContext cxt)
{
	const CbJob *job = r->job;
	const char *key = quote_identifier(job->range_key);
	/* ORDER BY 1: the key's own name could be one of the aliases k and m */
	const char *walk = "(SELECT k::text FROM (SELECT %s AS k, (\n%s\n) AS m FROM %s"
		" WHERE %s IS NOT NULL ORDER BY 1%s LIMIT %d) s WHERE m LIMIT 1)";
	char	   *sql;
	int			nest;
	int			rc;
	bool		isnull[2];

	sql = psprintf("SELECT %s, %s",
				   psprintf(walk, key, job->range_filter, job->range_table, key,
							"", CB_SPAN_WALK),
				   psprintf(walk, key, job->range_filter, job->range_table, key,
							" DESC", CB_SPAN_WALK));
	nest = ordered_key_scans();
	rc = SPI_execute_with_args(sql, 3, r->argtypes, values, nulls, true, 1);
	AtEOXact_GUC(true, nest);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the key span search failed: %s", SPI_result_code_string(rc));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull[0]);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull[1]);
	if (isnull[0] || isnull[1])
		return false;
	*first = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1));
	*last = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 2));
	return true;
}

/*
 * The span of a filtered run: the first and the last key that the filter
 * matches, found once, at the run's first start (inside the caller's SPI
 * connection).  The chunks then cover only that span: a purge of the
 * older half of a table never walks the newer half.
 *
 * First a walk from each end of the key (span_walk); if it does not find
 * both ends, one read of the matching rows, planned as the planner likes.
 * In that read OFFSET 0 (or the materialized CTE, for key types without
 * min and max) keeps the planner from looking for each end by an ordered
 * scan of the key, which walks every non-matching row before the first
 * match; it also counts the matching rows (*count; -1 when the walk found
 * the ends).  Returns false when nothing matches; else the text forms of
 * the ends, in cxt.
 */
bool
cb_range_find_span(CbRange *r, Datum run_params, char **first, char **last,
				   int64 *count, MemoryContext cxt)
{
	const CbJob *job = r->job;
	const char *key = quote_identifier(job->range_key);
	char	   *sql;
	Datum		values[3] = {Int32GetDatum(0), (Datum) 0, run_params};
	char		nulls[3] = {' ', 'n', ' '};
	bool		isnull;
	int			rc;

	Assert(job->range_filter != NULL);
	*count = -1;
	if (span_walk(r, values, nulls, first, last, cxt))
		return true;
	if (key_has_min(job->cursor_type))
		sql = psprintf("SELECT pg_catalog.min(k)::text, pg_catalog.max(k)::text,"
					   " pg_catalog.count(*)"
					   " FROM (SELECT %s AS k FROM %s WHERE (\n%s\n) OFFSET 0) s",
					   key, job->range_table, job->range_filter);
	else
		sql = psprintf("WITH m AS MATERIALIZED (SELECT %s AS k FROM %s WHERE (\n%s\n))"
					   " SELECT (SELECT k::text AS t FROM m WHERE k IS NOT NULL ORDER BY k LIMIT 1),"
					   " (SELECT k::text AS t FROM m WHERE k IS NOT NULL ORDER BY k DESC LIMIT 1),"
					   " (SELECT pg_catalog.count(*) FROM m)",
					   key, job->range_table, job->range_filter);
	rc = SPI_execute_with_args(sql, 3, r->argtypes, values, nulls, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the key span search failed: %s", SPI_result_code_string(rc));
	*count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 3, &isnull));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;			/* no matching row has a key */
	*first = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1));
	*last = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 2));
	return true;
}

/*
 * Bound the key search by a span (text forms of its ends, converted into
 * cxt, in a transaction); with first NULL and last "", make it find
 * nothing (the filter matched no row); with both NULL, drop the span.
 */
void
cb_range_set_span(CbRange *r, const char *first, const char *last,
				  MemoryContext cxt)
{
	MemoryContext old;
	Oid			func;
	Oid			ioparam;

	if (first == NULL)
	{
		r->bounded = false;
		r->empty = (last != NULL);
		return;
	}
	old = MemoryContextSwitchTo(cxt);
	getTypeInputInfo(r->job->cursor_type, &func, &ioparam);
	r->span_first = OidInputFunctionCall(func, unconstify(char *, first), ioparam, -1);
	r->span_last = OidInputFunctionCall(func, unconstify(char *, last), ioparam, -1);
	r->bounded = true;
	r->empty = false;
	MemoryContextSwitchTo(old);
}

/*
 * Texts that chunkbatch.range_job_sql() writes for a table, key and filter
 * (keep them the same as there): the end of its statement, after the
 * DELETE FROM or the SET list, and its count_sql.
 */
static char *
written_where(const char *table, const char *key, const char *filter)
{
	return psprintf("\nWHERE %s.%s BETWEEN $1 AND $2 AND (\n%s\n)",
					table, quote_identifier(key), filter);
}

static char *
written_count(const char *table, const char *key, const char *filter)
{
	return psprintf("SELECT pg_catalog.count(*) FROM %s\nWHERE ($2 IS NULL OR %s"
					" OPERATOR(pg_catalog.>) $2) AND (\n%s\n)",
					table, quote_identifier(key), filter);
}

/*
 * Is the job's count_sql the one chunkbatch.range_job_sql() writes for its
 * table, key and filter?  At the run's first start that count is the one
 * the span's read makes, and need not be made again.
 */
bool
cb_range_count_is_span(const CbJob *job)
{
	return job->count_sql != NULL && job->range_filter != NULL &&
		strcmp(job->count_sql, written_count(job->range_table, job->range_key,
											 job->range_filter)) == 0;
}

/*
 * alter_job() of a job with a new range_table, range_key or range_filter
 * and no new chunk_sql: if old's statement is still the one that
 * create_purge() or create_update() wrote for old's range, write the same
 * DELETE, or UPDATE with the same SET list, for job's new range, so that
 * the statement applies the new filter to the new key's bounds.  So too
 * its count_sql, if old's was the written one and this call does not set
 * count_sql itself (keep_count).  Returns true if it rewrote the statement.
 */
bool
cb_range_rewrite_written(const CbJob *old, CbJob *job, bool keep_count)
{
	const char *sql = old->chunk_sql;
	char	   *where;
	char	   *head;
	char	   *update;
	size_t		len;

	if (sql == NULL || old->range_table == NULL || old->range_key == NULL ||
		old->range_filter == NULL || job->range_table == NULL ||
		job->range_key == NULL || job->range_filter == NULL)
		return false;
	where = written_where(old->range_table, old->range_key, old->range_filter);
	len = strlen(sql);
	if (len < strlen(where) || strcmp(sql + len - strlen(where), where) != 0)
		return false;
	head = pnstrdup(sql, len - strlen(where));
	update = psprintf("UPDATE %s SET\n", old->range_table);
	where = written_where(job->range_table, job->range_key, job->range_filter);
	if (strcmp(head, psprintf("DELETE FROM %s", old->range_table)) == 0)
		job->chunk_sql = psprintf("DELETE FROM %s%s", job->range_table, where);
	else if (strncmp(head, update, strlen(update)) == 0)
		job->chunk_sql = psprintf("UPDATE %s SET\n%s%s", job->range_table,
								  head + strlen(update), where);
	else
		return false;
	if (!keep_count && old->count_sql != NULL &&
		strcmp(old->count_sql, written_count(old->range_table, old->range_key,
											 old->range_filter)) == 0)
		job->count_sql = written_count(job->range_table, job->range_key,
									   job->range_filter);
	return true;
}

/*
 * How many keys a split samples at most: above about that many rows, the
 * split reads a sample of the table's pages (TABLESAMPLE SYSTEM) instead
 * of all of them.  Work stealing evens out what a sample misjudges.  About
 * 1,000 pages of 50 rows put a quantile within a few percent of the keys;
 * 200,000 rows took 140-300 ms of a 3.5 s run on a 1M-row table, before
 * any slice could start.
 */
#define CB_SPLIT_SAMPLE		50000

/*
 * Split the run's keys into at most n slices of about as many matching
 * rows each (inside the caller's SPI connection): the first key (the
 * span's, or the key's least) and n - 1 boundaries, the quantiles of the
 * matching keys past it (and before the span's last key).  Slice 0 covers
 * the first key up to the first boundary, slice i the keys after boundary
 * i up to boundary i + 1, the last slice the keys after the last boundary
 * (up to the span's last key, or with no end).  Returns the number of
 * slices (*bounds: the first key and the boundaries, text forms in cxt),
 * 0 if there is no key at all.
 */
int
cb_range_split(CbRange *r, Datum run_params, int n, char ***bounds,
			   MemoryContext cxt)
{
	const CbJob *job = r->job;
	const char *key = quote_identifier(job->range_key);
	Oid			argtypes[6] = {INT4OID, job->cursor_type, JSONBOID,
		job->cursor_type, job->cursor_type, FLOAT8ARRAYOID};
	Datum		values[6];
	char		nulls[6] = {'n', 'n', ' ', ' ', ' ', ' '};
	Datum	   *fractions = palloc(sizeof(Datum) * n);
	double		reltuples;
	Oid			typoutput;
	bool		isvarlena;
	int			nbounds = 0;
	int			sample;
	int			nest;
	int			rc;
	int			i;

	*bounds = MemoryContextAlloc(cxt, sizeof(char *) * n);
	if (r->empty)
		return 0;
	/* the first key: the span's, else the least key there is */
	if (r->bounded)
		values[3] = r->span_first;
	else
	{
		bool		isnull;

		nest = ordered_key_scans();
		rc = SPI_execute(psprintf("SELECT %s FROM %s WHERE %s IS NOT NULL ORDER BY %s LIMIT 1",
								  key, job->range_table, key, key), true, 1);
		AtEOXact_GUC(true, nest);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "the key split failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
			return 0;
		values[3] = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull), r->typbyval, r->typlen);
	}
	getTypeOutputInfo(job->cursor_type, &typoutput, &isvarlena);
	(*bounds)[nbounds++] = MemoryContextStrdup(cxt, OidOutputFunctionCall(typoutput,
																		  values[3]));
	if (n < 2)
		return 1;

	values[2] = run_params;
	values[4] = r->bounded ? r->span_last : (Datum) 0;
	nulls[4] = r->bounded ? ' ' : 'n';
	for (i = 1; i < n; i++)
		fractions[i - 1] = Float8GetDatum((double) i / n);
	values[5] = PointerGetDatum(construct_array(fractions, n - 1, FLOAT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	rc = SPI_execute(psprintf("SELECT c.reltuples FROM pg_catalog.pg_class c"
							  " WHERE c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.regclass",
							  quote_literal_cstr(job->range_table)), true, 1);
	reltuples = -1;
	if (rc == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;

		reltuples = DatumGetFloat4(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (sample = (reltuples > CB_SPLIT_SAMPLE) ? 1 : 0; sample >= 0; sample--)
	{
		char	   *sql;
		Datum		arr;
		bool		isnull;
		Datum	   *elems;
		bool	   *elemnulls;
		int			nelems;

		sql = psprintf("SELECT (pg_catalog.percentile_disc($6) WITHIN GROUP (ORDER BY k))::text[]"
					   " FROM (SELECT %s AS k FROM %s%s WHERE %s OPERATOR(pg_catalog.>) $4"
					   " AND ($5 IS NULL OR %s OPERATOR(pg_catalog.<) $5)%s%s%s OFFSET 0) s",
					   key, job->range_table,
					   sample ? psprintf(" TABLESAMPLE SYSTEM (%g)",
										 100.0 * CB_SPLIT_SAMPLE / reltuples) : "",
					   key, key,
					   job->range_filter ? " AND (\n" : "",
					   job->range_filter ? job->range_filter : "",
					   job->range_filter ? "\n)" : "");
		rc = SPI_execute_with_args(sql, 6, argtypes, values, nulls, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "the key split failed: %s", SPI_result_code_string(rc));
		arr = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			continue;			/* the sample had no key: read them all */
		deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elemnulls, &nelems);
		for (i = 0; i < nelems; i++)
		{
			char	   *b;

			if (elemnulls[i])
				continue;
			b = TextDatumGetCString(elems[i]);
			/* quantiles come in key order: equal ones are neighbours */
			if (nbounds > 1 && strcmp((*bounds)[nbounds - 1], b) == 0)
				continue;
			(*bounds)[nbounds++] = MemoryContextStrdup(cxt, b);
		}
		break;
	}
	return nbounds;
}

/*
 * Work stealing: the keys after "lower" (from it on, if "inclusive") up to
 * "last" (NULL: no end), as "FROM ... WHERE ..." with $1 and $2 their text
 * forms.
 */
static char *
range_between_sql(CbRange *r, bool inclusive, bool bounded)
{
	const CbJob *job = r->job;
	const char *key = quote_identifier(job->range_key);
	char	   *type = format_type_be_qualified(job->cursor_type);

	return psprintf("FROM %s WHERE %s OPERATOR(pg_catalog.%s) $1::%s%s%s%s%s",
					job->range_table, key, inclusive ? ">=" : ">", type,
					bounded ? " AND " : "", bounded ? key : "",
					bounded ? " OPERATOR(pg_catalog.<=) $2::" : "",
					bounded ? type : "");
}

/*
 * A thief counts at most this many of a slice's keys: with more, it takes
 * the keys past the first half of that many, and others may take part of
 * its rest in turn.
 */
#define CB_STEAL_COUNT_MAX	1000000

/*
 * How many keys a slice has left (see range_between_sql), by a scan of the
 * key's index, inside the caller's SPI connection; at most
 * CB_STEAL_COUNT_MAX.
 */
int64
cb_range_count_keys(CbRange *r, const char *lower, bool inclusive, const char *last)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(lower), last ? CStringGetTextDatum(last) : (Datum) 0};
	char		nulls[2] = {' ', last ? ' ' : 'n'};
	int			nest = ordered_key_scans();
	int			rc;
	bool		isnull;
	int64		n;

	rc = SPI_execute_with_args(psprintf("SELECT pg_catalog.count(*) FROM (SELECT 1 %s LIMIT %d) s",
										range_between_sql(r, inclusive, last != NULL),
										CB_STEAL_COUNT_MAX),
							   2, argtypes, values, nulls, true, 1);
	AtEOXact_GUC(true, nest);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the key count failed: %s", SPI_result_code_string(rc));
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull));
	return n;
}

/* The key "n" keys into a slice's rest (n from 0), text form in cxt. */
char *
cb_range_nth_key(CbRange *r, const char *lower, bool inclusive, const char *last,
				 int64 n, MemoryContext cxt)
{
	const char *key = quote_identifier(r->job->range_key);
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		values[3] = {CStringGetTextDatum(lower),
		last ? CStringGetTextDatum(last) : (Datum) 0, Int64GetDatum(n)};
	char		nulls[3] = {' ', last ? ' ' : 'n', ' '};
	int			nest = ordered_key_scans();
	int			rc;
	char	   *k;

	rc = SPI_execute_with_args(psprintf("SELECT %s::text %s ORDER BY %s OFFSET $3 LIMIT 1",
										key, range_between_sql(r, inclusive, last != NULL),
										key),
							   3, argtypes, values, nulls, true, 1);
	AtEOXact_GUC(true, nest);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "the key search failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return NULL;
	k = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return k ? MemoryContextStrdup(cxt, k) : NULL;
}

/* The key column's collation (InvalidOid for a type without one). */
Oid
cb_range_key_collation(CbRange *r)
{
	Oid			relid;
	AttrNumber	attnum;
	Oid			typid;
	int32		typmod;
	Oid			collid = InvalidOid;

	relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(r->job->range_table)),
							 NoLock, false);
	attnum = get_attnum(relid, r->job->range_key);
	if (attnum != InvalidAttrNumber)
		get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &collid);
	return collid;
}

