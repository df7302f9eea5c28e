# chunkbatch: PGXS build of the extension and its tests.
MODULE_big = chunkbatch
OBJS = src/chunkbatch.o src/shmem.o src/launcher.o src/scheduler.o \
       src/worker.o src/chunk.o src/grouplock.o src/throttle.o \
       src/catalog.o src/api.o src/utility.o src/runstate.o src/errors.o \
       src/settings.o src/depend.o src/range.o src/steps.o
EXTENSION = chunkbatch
DATA = chunkbatch--1.0.sql chunkbatch--1.1.sql chunkbatch--1.0--1.1.sql
PGFILEDESC = "chunkbatch - chunked SQL batch jobs in background workers"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror

# make installcheck runs the regress and isolation suites against the
# running server that PGHOST, PGPORT and PGUSER (a superuser) name; that
# server must have shared_preload_libraries = 'chunkbatch'.  The suites
# leave no role behind, so they can run again (pg_regress keeps its
# databases contrib_regression and isolation_regression, and recreates them
# at the next run).  With
# TEMP_INSTANCE=1 (as scripts/test.sh runs them) each suite starts a
# temporary server of its own, configured by test/chunkbatch.conf.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
ISOLATION = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ifdef TEMP_INSTANCE
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=./test/chunkbatch.conf
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=./test/chunkbatch.conf
endif
# The TAP tests (t/*.pl) start servers of their own: make installcheck
# TAP_TESTS=1 PROVE_TESTS=t/NNN_name.pl runs one (scripts/test.sh runs each).

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/chunkbatch.h
