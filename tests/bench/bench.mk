# Benchmarks: see tests/bench/README.md
#
#   make bench                   full run (BENCH_RUNS=3, 60 s idle), writes docs/benchmarks.md
#   make bench BENCH_QUICK=1     smaller counts, one run, 10 s idle; writes bench-quick.md here
#   make bench-fleet             100 bridges of one org, one budget, 10 minutes of messages
#
# Knobs (make variables or environment): BENCH_QUICK, BENCH_RUNS, BENCH_IDLE_SECS,
# BENCH_LAT_COUNT, BENCH_DOC (where the report goes), BENCH_KEEP (keep the work dir),
# BENCH_PROFILE=strace|perf|callgrind (profile one drain instead), BENCH_PROFILE_N.

EXTRA_DIST += tests/bench/README.md tests/bench/run.sh tests/bench/fleet.sh tests/bench/budget.md tests/bench/notes.md \
	tests/bench/mcbench.c

# The benchmark's load client, drain waiter and handlers: a plain rule, so that
# neither `make` nor `make check` builds it.
tests/bench/mcbench$(EXEEXT): $(top_srcdir)/tests/bench/mcbench.c config.h
	@$(MKDIR_P) tests/bench
	$(AM_V_CC)$(CC) $(AM_CPPFLAGS) $(CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) $(CURL_CFLAGS) $(JQ_CFLAGS) \
		-o $@ $(top_srcdir)/tests/bench/mcbench.c $(AM_LDFLAGS) $(LDFLAGS) $(CURL_LIBS) $(JQ_LIBS)

.PHONY: bench
bench: molecule-connect$(EXEEXT) tests/fake-platform/fake-platform$(EXEEXT) tests/bench/mcbench$(EXEEXT)
	BENCH_QUICK='$(BENCH_QUICK)' BENCH_RUNS='$(BENCH_RUNS)' BENCH_IDLE_SECS='$(BENCH_IDLE_SECS)' \
	BENCH_LAT_COUNT='$(BENCH_LAT_COUNT)' BENCH_DOC='$(BENCH_DOC)' BENCH_KEEP='$(BENCH_KEEP)' \
	BENCH_PROFILE='$(BENCH_PROFILE)' BENCH_PROFILE_N='$(BENCH_PROFILE_N)' \
	bash $(top_srcdir)/tests/bench/run.sh '$(abs_top_builddir)' '$(abs_top_srcdir)'

# The fleet: FLEET_BRIDGES (100), FLEET_SECS (600), FLEET_GAP_MS (1000), FLEET_STAGGER_SECS, FLEET_SETTLE_SECS,
# FLEET_IDLE_SECS, FLEET_RATE_LIMIT, FLEET_DOC; about 14 minutes.
.PHONY: bench-fleet
bench-fleet: molecule-connect$(EXEEXT) tests/fake-platform/fake-platform$(EXEEXT) tests/bench/mcbench$(EXEEXT)
	FLEET_BRIDGES='$(FLEET_BRIDGES)' FLEET_SECS='$(FLEET_SECS)' FLEET_GAP_MS='$(FLEET_GAP_MS)' \
	FLEET_STAGGER_SECS='$(FLEET_STAGGER_SECS)' \
	FLEET_SETTLE_SECS='$(FLEET_SETTLE_SECS)' FLEET_IDLE_SECS='$(FLEET_IDLE_SECS)' \
	FLEET_RATE_LIMIT='$(FLEET_RATE_LIMIT)' FLEET_DOC='$(FLEET_DOC)' BENCH_KEEP='$(BENCH_KEEP)' \
	bash $(top_srcdir)/tests/bench/fleet.sh '$(abs_top_builddir)' '$(abs_top_srcdir)'
