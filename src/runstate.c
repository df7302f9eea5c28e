/*-------------------------------------------------------------------------
 *
 * runstate.c
 *	  The states of a run, defined once: their names, the named sets the
 *	  rest of chunkbatch reasons with, and the transitions between them.
 *
 * A new state is added to CB_RUN_STATES in chunkbatch.h, to the sets and
 * transitions below, and to the CHECK constraint of chunkbatch.runs; the
 * regress test 09_run_states fails if that constraint and
 * chunkbatch.run_states() (this file) disagree.  catalog.c builds the
 * state lists of its statements from these sets, so no statement spells
 * a state list by hand.
 *
 * Copyright (c) 2026, chunkbatch developers
 *
 * IDENTIFICATION
 *	  src/runstate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "chunkbatch.h"

PG_FUNCTION_INFO_V1(chunkbatch_run_states);

static const char *const state_names[CB_RUN_NSTATES] = {
#define CB_RUN_STATE_NAME(sym, name) name,
	CB_RUN_STATES(CB_RUN_STATE_NAME)
#undef CB_RUN_STATE_NAME
};

/*
 * The states each state may be entered from.  A state entered from a set
 * that is not allowed here is a bug: cb_run_states_from() asserts it.
 */
static const CbRunStateSet allowed_from[CB_RUN_NSTATES] = {
	[CB_RUN_QUEUED] = CB_STATES_RESUMABLE,
	[CB_RUN_WAITING] = CB_STATES_CLAIMABLE,
	[CB_RUN_RUNNING] = CB_STATE(CB_RUN_WAITING) | CB_STATES_EXECUTING,
	[CB_RUN_THROTTLED] = CB_STATES_EXECUTING,
	[CB_RUN_PAUSED] = CB_STATES_ACTIVE,
	[CB_RUN_INTERRUPTED] = CB_STATES_EXECUTING | CB_STATE(CB_RUN_WAITING),
	[CB_RUN_STOPPED] = CB_STATES_EXECUTING | CB_STATE(CB_RUN_WAITING),
	[CB_RUN_SUCCEEDED] = CB_STATES_EXECUTING,
	[CB_RUN_FAILED] = CB_STATES_ACTIVE,
	[CB_RUN_CANCELLED] = CB_STATES_LIVE,
	[CB_RUN_SKIPPED] = CB_STATES_CLAIMABLE,
};

const char *
cb_run_state_name(CbRunState state)
{
	Assert(state >= 0 && state < CB_RUN_NSTATES);
	return state_names[state];
}

/* The state of a name read from chunkbatch.runs; an unknown one is a bug. */
CbRunState
cb_run_state_from_name(const char *name)
{
	int			i;

	for (i = 0; i < CB_RUN_NSTATES; i++)
		if (strcmp(state_names[i], name) == 0)
			return (CbRunState) i;
	elog(ERROR, "unknown chunkbatch run state \"%s\"", name);
	return CB_RUN_QUEUED;		/* keep compiler quiet */
}

bool
cb_run_state_in(const char *name, CbRunStateSet set)
{
	return (set & CB_STATE(cb_run_state_from_name(name))) != 0;
}

/* A set as an SQL list of literals: ('queued', 'waiting'), in enum order. */
char *
cb_run_states_sql(CbRunStateSet set)
{
	StringInfoData buf;
	int			i;

	Assert(set != 0);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (i = 0; i < CB_RUN_NSTATES; i++)
		if (set & CB_STATE(i))
			appendStringInfo(&buf, "%s'%s'", buf.len > 1 ? ", " : "",
							 state_names[i]);
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * The SQL list of the states a run may leave to enter "to": from must be
 * a subset of what the transitions allow.
 */
char *
cb_run_states_from(CbRunState to, CbRunStateSet from)
{
	Assert((from & ~allowed_from[to]) == 0);
	return cb_run_states_sql(from);
}

/* Is entering "to" from every state of "from" a known transition? */
bool
cb_run_transition_ok(CbRunState to, CbRunStateSet from)
{
	return (from & ~allowed_from[to]) == 0;
}

/*
 * chunkbatch.run_states(): every state with the sets it belongs to, for
 * DBAs and for the regress check against the table's CHECK constraint.
 */
Datum
chunkbatch_run_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < CB_RUN_NSTATES; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		CbRunStateSet s = CB_STATE(i);

		values[0] = CStringGetTextDatum(state_names[i]);
		values[1] = BoolGetDatum((s & CB_STATES_ACTIVE) != 0);
		values[2] = BoolGetDatum((s & CB_STATES_RESTING) != 0);
		values[3] = BoolGetDatum((s & CB_STATES_FINAL) != 0);
		values[4] = BoolGetDatum((s & CB_STATES_RESUMABLE) != 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
