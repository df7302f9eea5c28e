# chunkbatch: PGXS build of the extension and its tests.
MODULE_big = chunkbatch
OBJS = src/chunkbatch.o src/shmem.o src/launcher.o src/scheduler.o \
       src/worker.o src/chunk.o src/grouplock.o src/throttle.o \
       src/catalog.o src/api.o src/utility.o src/runstate.o src/errors.o \
       src/settings.o src/depend.o
EXTENSION = chunkbatch
DATA = chunkbatch--1.0.sql chunkbatch--1.1.sql chunkbatch--1.0--1.1.sql
PGFILEDESC = "chunkbatch - chunked SQL batch jobs in background workers"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=./test/chunkbatch.conf
ISOLATION = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=./test/chunkbatch.conf
TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/chunkbatch.h
