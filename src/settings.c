/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The settings of a job, described once: one line per setting drives
 *	  the arguments of create_job/alter_job, their checks, the columns of
 *	  chunkbatch.jobs that catalog.c reads and writes, and CbJob's fields.
 *
 * Adding a setting: a column of chunkbatch.jobs and an argument of both
 * SQL functions (same name, same position), a CbJob field, and one line
 * in job_settings[] below.  Checks that involve two settings live in
 * cb_settings_check_job().
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "chunkbatch.h"

/* The field a setting is kept in, by kind. */
#define FIELD(job, s, type)	((type *) ((char *) (job) + (s)->offset))

/* Checks of one value (the argument is not NULL). */
static void
check_positive(const CbJobSetting *s, const CbJob *job)
{
	if (*FIELD(job, s, int32) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be greater than zero", s->name)));
}

static void
check_not_negative(const CbJobSetting *s, const CbJob *job)
{
	if ((s->kind == CB_SET_INT64 ? *FIELD(job, s, int64) : *FIELD(job, s, int32)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", s->name)));
}

static void
check_group_name(const CbJobSetting *s, const CbJob *job)
{
	cb_check_name(s->name, *FIELD(job, s, char *));
}

static char
get_base_type_category(Oid typid)
{
	char		category;
	bool		preferred;

	get_type_category_preferred(getBaseType(typid), &category, &preferred);
	return category;
}

/* A keyset cursor type needs a default btree ordering and a working input. */
static void
check_cursor_type(const CbJobSetting *s, const CbJob *job)
{
	Oid			typid = *FIELD(job, s, Oid);
	TypeCacheEntry *tce;

	if (get_typtype(typid) == TYPTYPE_PSEUDO)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cursor type cannot be the pseudo-type %s",
						format_type_be(typid))));
	/*
	 * Checkpoints are stored as text and read back with the type's input
	 * function; the internal-use types (pg_node_tree and the like) refuse
	 * input, so a run could not resume.
	 */
	if (get_base_type_category(typid) == TYPCATEGORY_INTERNAL &&
		getBaseType(typid) != CHAROID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cursor type %s is for PostgreSQL's internal use and cannot be read back from a checkpoint",
						format_type_be(typid)),
				 errhint("Use a type with a default btree operator class, such as bigint, timestamptz or text.")));
	tce = lookup_type_cache(typid, TYPECACHE_CMP_PROC);
	if (!OidIsValid(tce->cmp_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("cursor type %s has no default btree ordering",
						format_type_be(typid)),
				 errhint("Use a type with a default btree operator class, such as bigint, timestamptz or text.")));
}

static void
check_wait_positive(const CbJobSetting *s, const CbJob *job)
{
	Interval   *iv = *FIELD(job, s, Interval *);

	if (iv == NULL || cb_interval_ms(iv) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be greater than zero", s->name)));
}

static void
check_sleep_ratio(const CbJobSetting *s, const CbJob *job)
{
	double		ratio = *FIELD(job, s, double);

	if (!(ratio >= 0 && ratio <= 1000))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 0 and 1000", s->name)));
}

static void
check_priority(const CbJobSetting *s, const CbJob *job)
{
	int32		p = *FIELD(job, s, int32);

	if (p < -1000 || p > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between -1000 and 1000", s->name)));
}

static void
check_parallel(const CbJobSetting *s, const CbJob *job)
{
	int32		p = *FIELD(job, s, int32);

	if (p < 1 || p > CB_MAX_PARALLEL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 1 and %d", s->name, CB_MAX_PARALLEL)));
}

/* A setting that has a value unless set (NULL: none). */
#define OPTIONAL(name, argno, kind, field, check) \
	{name, argno, kind, offsetof(CbJob, field), check, NULL, NULL, 0, false, false}
/* A setting whose default is a value: create_job refuses NULL. */
#define REQUIRED(name, argno, kind, field, check) \
	{name, argno, kind, offsetof(CbJob, field), check, NULL, NULL, 0, false, true}
/* One of two words, kept as a bool (the second word is true). */
#define CHOICE(name, argno, field, no, yes) \
	{name, argno, CB_SET_CHOICE, offsetof(CbJob, field), NULL, no, yes, 0, false, true}
/* An integer whose NULL is kept as the value none. */
#define NULLABLE_INT(name, argno, field, none, check) \
	{name, argno, CB_SET_INT, offsetof(CbJob, field), check, NULL, NULL, none, true, false}

/*
 * The settings, in the order of create_job's arguments.  argno is the
 * position in create_job and alter_job (0 is job_name, 7 validate).
 */
static const CbJobSetting job_settings[] = {
	REQUIRED("chunk_sql", 1, CB_SET_SQL, chunk_sql, NULL),
	REQUIRED("batch_size", 2, CB_SET_INT, batch_size, check_positive),
	OPTIONAL("lock_group", 3, CB_SET_NAME, lock_group, check_group_name),
	OPTIONAL("cursor_type", 4, CB_SET_TYPE, cursor_type, check_cursor_type),
	REQUIRED("sleep_ms", 5, CB_SET_INT, sleep_ms, check_not_negative),
	REQUIRED("synchronous_commit", 6, CB_SET_BOOL, synchronous_commit, NULL),
	CHOICE("on_group_busy", 8, skip_if_busy, "wait", "skip"),
	OPTIONAL("group_wait_timeout", 9, CB_SET_INTERVAL, group_wait_timeout,
			 check_wait_positive),
	REQUIRED("max_retries", 10, CB_SET_INT, max_retries, check_not_negative),
	OPTIONAL("lock_timeout", 11, CB_SET_CHUNK_TIMEOUT, lock_timeout, NULL),
	OPTIONAL("statement_timeout", 12, CB_SET_CHUNK_TIMEOUT, statement_timeout, NULL),
	OPTIONAL("max_runtime", 13, CB_SET_TIMEOUT, max_runtime, NULL),
	CHOICE("on_error", 14, isolate, "fail", "isolate"),
	OPTIONAL("keys_sql", 15, CB_SET_SQL, keys_sql, NULL),
	NULLABLE_INT("max_dead_letters", 16, max_dead_letters, -1, check_not_negative),
	NULLABLE_INT("target_chunk_ms", 17, target_chunk_ms, 0, check_not_negative),
	REQUIRED("min_batch_size", 18, CB_SET_INT, min_batch_size, check_positive),
	REQUIRED("max_batch_size", 19, CB_SET_INT, max_batch_size, check_positive),
	REQUIRED("sleep_ratio", 20, CB_SET_FLOAT, sleep_ratio, check_sleep_ratio),
	OPTIONAL("max_replica_lag", 21, CB_SET_TIMEOUT, max_replica_lag, NULL),
	OPTIONAL("max_replica_lag_bytes", 22, CB_SET_INT64, max_replica_lag_bytes,
			 check_not_negative),
	OPTIONAL("throttle_sql", 23, CB_SET_SQL, throttle_sql, NULL),
	OPTIONAL("count_sql", 24, CB_SET_SQL, count_sql, NULL),
	OPTIONAL("range_table", 25, CB_SET_SQL, range_table, NULL),
	OPTIONAL("range_key", 26, CB_SET_SQL, range_key, NULL),
	OPTIONAL("range_filter", 27, CB_SET_SQL, range_filter, NULL),
	REQUIRED("priority", 28, CB_SET_INT, priority, check_priority),
	OPTIONAL("before_sql", 29, CB_SET_SQL_LIST, before_sql, NULL),
	OPTIONAL("after_sql", 30, CB_SET_SQL_LIST, after_sql, NULL),
	REQUIRED("rebuild_indexes", 31, CB_SET_BOOL, rebuild_indexes, NULL),
	REQUIRED("analyze_after", 32, CB_SET_BOOL, analyze_after, NULL),
	REQUIRED("vacuum_after", 33, CB_SET_BOOL, vacuum_after, NULL),
	REQUIRED("parallel", 34, CB_SET_INT, parallel, check_parallel),
};

const CbJobSetting *
cb_job_settings(int *n)
{
	*n = lengthof(job_settings);
	return job_settings;
}

/*
 * Characters that are invisible or reorder the text around them: spaces
 * other than the ASCII one, C1 controls, zero-width characters, bidi
 * controls, fillers, variation selectors, tags.  A name made with them
 * could look like another one.
 */
static bool
invisible_char(pg_wchar c)
{
	return (c >= 0x80 && c <= 0xA0) || c == 0xAD || c == 0x034F ||
		c == 0x061C || c == 0x115F || c == 0x1160 || c == 0x17B4 ||
		c == 0x17B5 || (c >= 0x180B && c <= 0x180F) ||
		(c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
		(c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0x3164 ||
		(c >= 0xFE00 && c <= 0xFE0F) || c == 0xFEFF || c == 0xFFA0 ||
		(c >= 0xFFF0 && c <= 0xFFFF) || (c >= 0xE0000 && c <= 0xE0FFF);
}

/*
 * Job and group names: 1 to 63 bytes of letters, digits, '_', '-', '.'
 * and ':', starting with a letter, digit or '_' (non-ASCII letters are
 * allowed, but no invisible or bidi control character), so they read well
 * and unambiguously in logs, application_name and pg_locks.
 */
void
cb_check_name(const char *what, const char *name)
{
	size_t		len = strlen(name);
	const unsigned char *p;

	if (len == 0 || len > CB_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 1 and %d bytes long", what, CB_NAME_MAXLEN)));
	for (p = (const unsigned char *) name; *p; p++)
	{
		if (IS_HIGHBIT_SET(*p) && GetDatabaseEncoding() == PG_UTF8)
		{
			int			n = pg_utf_mblen(p);

			if (!invisible_char(utf8_to_unicode(p)))
			{
				p += n - 1;
				continue;
			}
		}
		else if (IS_HIGHBIT_SET(*p) || isalnum(*p) || *p == '_' ||
				 (p != (const unsigned char *) name &&
				  (*p == '-' || *p == '.' || *p == ':')))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid %s \"%s\"", what, name),
				 errdetail("Names consist of letters, digits, \"_\", \"-\", \".\" and \":\", and start with a letter, a digit or \"_\"; invisible characters, spaces and bidirectional controls are not allowed.")));
	}
}

/*
 * A timeout setting: NULL or zero means none, like PostgreSQL's own
 * timeouts; a per-chunk timeout must fit in an int of milliseconds.
 */
static Interval *
timeout_value(const CbJobSetting *s, Interval *iv)
{
	double		ms = cb_interval_ms(iv);

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", s->name)));
	if (s->kind == CB_SET_CHUNK_TIMEOUT && ms > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be less than %d milliseconds", s->name, INT_MAX)));
	return ms == 0 ? NULL : iv;
}

/*
 * Steps: an array of 1 to CB_MAX_STEPS statements, none NULL or empty (an
 * empty array is none).
 */
#define CB_MAX_STEPS	32

static List *
sql_list_from_array(const CbJobSetting *s, ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *list = NIL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", s->name)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > CB_MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must have at most %d statements", s->name, CB_MAX_STEPS)));
	for (i = 0; i < n; i++)
	{
		char	   *sql = nulls[i] ? NULL : TextDatumGetCString(elems[i]);

		if (sql == NULL || sql[strspn(sql, " \t\r\n")] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain an empty or NULL statement", s->name)));
		list = lappend(list, sql);
	}
	return list;
}

/* Set one setting of *job from its (non-NULL) argument, and check it. */
static void
setting_from_arg(const CbJobSetting *s, CbJob *job, FunctionCallInfo fcinfo)
{
	Datum		arg = PG_GETARG_DATUM(s->argno);

	switch (s->kind)
	{
		case CB_SET_INT:
			*FIELD(job, s, int32) = DatumGetInt32(arg);
			break;
		case CB_SET_INT64:
			*FIELD(job, s, int64) = DatumGetInt64(arg);
			break;
		case CB_SET_BOOL:
			*FIELD(job, s, bool) = DatumGetBool(arg);
			break;
		case CB_SET_FLOAT:
			*FIELD(job, s, double) = DatumGetFloat8(arg);
			break;
		case CB_SET_TYPE:
			*FIELD(job, s, Oid) = DatumGetObjectId(arg);
			break;
		case CB_SET_NAME:
			*FIELD(job, s, char *) = TextDatumGetCString(arg);
			break;
		case CB_SET_SQL:
			{
				char	   *sql = TextDatumGetCString(arg);

				if (sql[strspn(sql, " \t\r\n")] == '\0')
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("%s must not be empty", s->name)));
				*FIELD(job, s, char *) = sql;
			}
			break;
		case CB_SET_INTERVAL:
			*FIELD(job, s, Interval *) = DatumGetIntervalP(arg);
			break;
		case CB_SET_TIMEOUT:
		case CB_SET_CHUNK_TIMEOUT:
			*FIELD(job, s, Interval *) = timeout_value(s, DatumGetIntervalP(arg));
			break;
		case CB_SET_SQL_LIST:
			*FIELD(job, s, List *) = sql_list_from_array(s, DatumGetArrayTypeP(arg));
			break;
		case CB_SET_CHOICE:
			{
				char	   *v = TextDatumGetCString(arg);

				if (strcmp(v, s->choice_no) != 0 && strcmp(v, s->choice_yes) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid %s \"%s\"", s->name, v),
							 errhint("Use '%s' or '%s'.", s->choice_no, s->choice_yes)));
				*FIELD(job, s, bool) = (strcmp(v, s->choice_yes) == 0);
			}
			break;
	}
	if (s->check != NULL)
		s->check(s, job);
}

/*
 * Apply the non-NULL settings of a create_job/alter_job call to *job
 * (NULL leaves a setting as it is), then check the job as a whole.
 */
void
cb_settings_apply_args(FunctionCallInfo fcinfo, CbJob *job)
{
	int			i;

	for (i = 0; i < lengthof(job_settings); i++)
		if (!PG_ARGISNULL(job_settings[i].argno))
			setting_from_arg(&job_settings[i], job, fcinfo);
	cb_settings_check_job(job);
}

/*
 * alter_job(..., reset => ARRAY[...]): set the named settings back to
 * their default.  Only the settings whose default is "none" (the optional
 * ones, shown as NULL in chunkbatch.jobs) can be reset; lock_group goes
 * back to the job's name.  A setting may not be both given and reset.
 */
void
cb_settings_reset(FunctionCallInfo fcinfo, int argno, CbJob *job)
{
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;
	int			k;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false,
					  TYPALIGN_INT, &names, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name = nulls[i] ? "NULL" : TextDatumGetCString(names[i]);
		const CbJobSetting *s = NULL;

		for (k = 0; k < lengthof(job_settings); k++)
			if (!nulls[i] && strcmp(job_settings[k].name, name) == 0)
				s = &job_settings[k];
		if (s == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown job setting \"%s\" in reset", name)));
		if (s->required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("job setting \"%s\" cannot be reset", name),
					 errdetail("Only settings whose default is none can be reset."),
					 errhint("Give it a value instead, e.g. %s => ...", name)));
		if (!PG_ARGISNULL(s->argno))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("job setting \"%s\" is both given and reset", name)));
		/* Its default is what a NULL column reads as; a group's, the job's name. */
		cb_setting_from_datum(s, job, (Datum) 0, true, NULL);
		if (s->kind == CB_SET_NAME)
			*FIELD(job, s, char *) = job->job_name;
	}
	cb_settings_check_job(job);
}

/* Checks that involve more than one setting. */
void
cb_settings_check_job(const CbJob *job)
{
	if (job->min_batch_size > job->max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_batch_size %d is greater than max_batch_size %d",
						job->min_batch_size, job->max_batch_size)));
	if (job->isolate && job->range_table == NULL &&
		(!OidIsValid(job->cursor_type) || job->keys_sql == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_error => 'isolate' needs a range-mode job, or a keyset job with keys_sql"),
				 errdetail("Poison rows are isolated by splitting a failed chunk by its keys, which range mode finds itself and keys_sql lists for a keyset job."),
				 errhint("Set cursor_type and keys_sql, or use on_error => 'fail'.")));
	if (job->range_table == NULL && (job->analyze_after || job->vacuum_after))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("analyze_after and vacuum_after need a range-mode job"),
				 errdetail("They act on the job's range_table.")));
	if (job->range_table == NULL && (job->range_key != NULL || job->range_filter != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("range_key and range_filter need range_table")));
	if (job->range_table == NULL && job->parallel > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parallel needs a range-mode job"),
				 errdetail("A run is split into slices of the keys of its range_table.")));
}

/* The SQL type of a setting's column, as catalog.c binds it. */
Oid
cb_setting_sqltype(const CbJobSetting *s)
{
	switch (s->kind)
	{
		case CB_SET_INT:
			return INT4OID;
		case CB_SET_INT64:
			return INT8OID;
		case CB_SET_BOOL:
			return BOOLOID;
		case CB_SET_FLOAT:
			return FLOAT8OID;
		case CB_SET_TYPE:
			return OIDOID;
		case CB_SET_INTERVAL:
		case CB_SET_TIMEOUT:
		case CB_SET_CHUNK_TIMEOUT:
			return INTERVALOID;
		case CB_SET_NAME:
		case CB_SET_SQL:
		case CB_SET_CHOICE:
			return TEXTOID;
		case CB_SET_SQL_LIST:
			return TEXTARRAYOID;
	}
	return InvalidOid;			/* keep compiler quiet */
}

/* A setting's value as an SQL parameter; *isnull for the column's NULL. */
Datum
cb_setting_to_datum(const CbJobSetting *s, const CbJob *job, bool *isnull)
{
	*isnull = false;
	switch (s->kind)
	{
		case CB_SET_INT:
			*isnull = s->nullable && *FIELD(job, s, int32) == s->none;
			return Int32GetDatum(*FIELD(job, s, int32));
		case CB_SET_INT64:
			*isnull = *FIELD(job, s, int64) <= 0;
			return Int64GetDatum(*FIELD(job, s, int64));
		case CB_SET_BOOL:
			return BoolGetDatum(*FIELD(job, s, bool));
		case CB_SET_FLOAT:
			return Float8GetDatum(*FIELD(job, s, double));
		case CB_SET_TYPE:
			*isnull = !OidIsValid(*FIELD(job, s, Oid));
			return ObjectIdGetDatum(*FIELD(job, s, Oid));
		case CB_SET_INTERVAL:
		case CB_SET_TIMEOUT:
		case CB_SET_CHUNK_TIMEOUT:
			*isnull = (*FIELD(job, s, Interval *) == NULL);
			return *isnull ? (Datum) 0 : IntervalPGetDatum(*FIELD(job, s, Interval *));
		case CB_SET_NAME:
		case CB_SET_SQL:
			*isnull = (*FIELD(job, s, char *) == NULL);
			return *isnull ? (Datum) 0 : CStringGetTextDatum(*FIELD(job, s, char *));
		case CB_SET_CHOICE:
			return CStringGetTextDatum(*FIELD(job, s, bool) ? s->choice_yes : s->choice_no);
		case CB_SET_SQL_LIST:
			{
				List	   *list = *FIELD(job, s, List *);
				Datum	   *elems;
				ListCell   *lc;
				int			i = 0;

				*isnull = (list == NIL);
				if (*isnull)
					return (Datum) 0;
				elems = palloc(sizeof(Datum) * list_length(list));
				foreach(lc, list)
					elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
				return PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false,
													   TYPALIGN_INT));
			}
	}
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * Set a setting of *job from its column's value (catalog.c reads it as
 * cb_setting_sqltype(); text comes as a C string), copying into the
 * current memory context.
 */
void
cb_setting_from_datum(const CbJobSetting *s, CbJob *job, Datum d, bool isnull,
					  const char *text)
{
	switch (s->kind)
	{
		case CB_SET_INT:
			*FIELD(job, s, int32) = isnull ? (int32) s->none : DatumGetInt32(d);
			break;
		case CB_SET_INT64:
			*FIELD(job, s, int64) = isnull ? 0 : DatumGetInt64(d);
			break;
		case CB_SET_BOOL:
			*FIELD(job, s, bool) = !isnull && DatumGetBool(d);
			break;
		case CB_SET_FLOAT:
			*FIELD(job, s, double) = isnull ? 0 : DatumGetFloat8(d);
			break;
		case CB_SET_TYPE:
			*FIELD(job, s, Oid) = isnull ? InvalidOid : DatumGetObjectId(d);
			break;
		case CB_SET_INTERVAL:
		case CB_SET_TIMEOUT:
		case CB_SET_CHUNK_TIMEOUT:
			*FIELD(job, s, Interval *) = isnull ? NULL :
				DatumGetIntervalP(datumCopy(d, false, sizeof(Interval)));
			break;
		case CB_SET_NAME:
		case CB_SET_SQL:
			*FIELD(job, s, char *) = isnull ? NULL : pstrdup(text);
			break;
		case CB_SET_CHOICE:
			*FIELD(job, s, bool) = !isnull && strcmp(text, s->choice_yes) == 0;
			break;
		case CB_SET_SQL_LIST:
			*FIELD(job, s, List *) = isnull ? NIL :
				sql_list_from_array(s, DatumGetArrayTypeP(d));
			break;
	}
}
