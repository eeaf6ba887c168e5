# libFuzzer targets: see tests/fuzz/README.md
#
#   make fuzz            each target FUZZ_SECONDS (60) on a copy of its seed corpus
#   make fuzz-smoke      each target FUZZ_SMOKE_SECONDS (10)
#   make fuzz-regress    replays the seeds and the saved crashes once (fast)
#
# FUZZ_RUNS=N stops each target after N executions (or FUZZ_SECONDS, whichever
# comes first). FUZZ_SANITIZERS picks the sanitizers the targets are built with
# (address,undefined by default); a long run for depth may build a second tree
# with FUZZ_SANITIZERS=undefined, about 2.5 times faster, then replay the corpus
# it grew with the default build (see tests/fuzz/README.md).
#
# The library sources are compiled again here with clang, libFuzzer's coverage
# and AddressSanitizer + UndefinedBehaviorSanitizer: libmc.a is built with the
# configured compiler and flags. Everything lands in the build tree.

FUZZ_SECONDS = 60
FUZZ_SMOKE_SECONDS = 10
FUZZ_RUNS = 0
FUZZ_SANITIZERS = address,undefined
FUZZ_NAMES = reply rows state sse
FUZZ_PROGS = tests/fuzz/fuzz_reply tests/fuzz/fuzz_rows tests/fuzz/fuzz_state tests/fuzz/fuzz_sse
FUZZ_LIB = tests/fuzz/libmc-fuzz.a
FUZZ_LIB_FILES = \
	$(top_srcdir)/src/util.c $(top_srcdir)/src/sha1.c $(top_srcdir)/src/json.c $(top_srcdir)/src/log.c $(top_srcdir)/src/state.c \
	$(top_srcdir)/src/parts.c $(top_srcdir)/src/linebuf.c $(top_srcdir)/src/reply.c $(top_srcdir)/src/timestamp.c $(top_srcdir)/src/rows.c $(top_srcdir)/src/outchan.c $(top_srcdir)/src/jqprog.c \
	$(top_srcdir)/src/platform.c $(top_srcdir)/src/inbox.c $(top_srcdir)/src/inbox_state.c $(top_srcdir)/src/http.c $(top_srcdir)/src/curlsock.c $(top_srcdir)/src/sse.c
FUZZ_SRC_INCLUDES = \
	$(top_srcdir)/src/util.h $(top_srcdir)/src/sha1.h $(top_srcdir)/src/json.h $(top_srcdir)/src/log.h $(top_srcdir)/src/state.h \
	$(top_srcdir)/src/parts.h $(top_srcdir)/src/linebuf.h $(top_srcdir)/src/reply.h $(top_srcdir)/src/timestamp.h $(top_srcdir)/src/rows.h $(top_srcdir)/src/outchan.h $(top_srcdir)/src/jqprog.h \
	$(top_srcdir)/src/platform.h $(top_srcdir)/src/inbox.h $(top_srcdir)/src/inbox_internal.h $(top_srcdir)/src/http.h \
	$(top_srcdir)/src/curlsock.h $(top_srcdir)/src/sse.h $(top_srcdir)/src/settings.h
FUZZ_CPP_FLAGS = -include $(top_builddir)/config.h -I$(top_builddir) -I$(top_srcdir)/src \
	$(CURL_CFLAGS) $(JQ_CFLAGS)
FUZZ_CC_FLAGS = -std=c11 -g -O1 -Wall -Wextra -Wno-unused-parameter \
	-fno-omit-frame-pointer -fsanitize=$(FUZZ_SANITIZERS) -fno-sanitize-recover=undefined
FUZZ_LINK_LIBS = $(CURL_LIBS) $(JQ_LIBS)
FUZZ_RUN = $(SHELL) $(top_srcdir)/tests/fuzz/fuzz-run.sh

EXTRA_DIST += tests/fuzz/README.md tests/fuzz/fuzz-run.sh tests/fuzz/json.dict \
	tests/fuzz/fuzz_reply.c tests/fuzz/fuzz_rows.c tests/fuzz/fuzz_state.c tests/fuzz/fuzz_sse.c \
	tests/fuzz/fuzz_jq.h \
	tests/fuzz/corpus tests/fuzz/regressions

fuzz-check-clang:
	@if test "x$(CLANG)" = xno || test -z "$(CLANG)"; then \
	  echo "the fuzz targets need clang with libFuzzer (Debian: apt-get install clang), then re-run configure" >&2; \
	  exit 1; \
	fi

$(FUZZ_LIB): $(FUZZ_LIB_FILES) $(FUZZ_SRC_INCLUDES) $(top_builddir)/config.h
	@$(MAKE) $(AM_MAKEFLAGS) fuzz-check-clang
	$(AM_V_at)rm -rf tests/fuzz/obj $@
	$(AM_V_at)$(MKDIR_P) tests/fuzz/obj
	$(AM_V_GEN)for f in $(FUZZ_LIB_FILES); do \
	  $(CLANG) $(FUZZ_CPP_FLAGS) $(FUZZ_CC_FLAGS) -fsanitize=fuzzer-no-link \
	    -c "$$f" -o "tests/fuzz/obj/`basename "$$f" .c`.o" || exit 1; \
	done
	$(AM_V_at)$(AR) rc $@ tests/fuzz/obj/*.o && $(RANLIB) $@

tests/fuzz/fuzz_reply: $(top_srcdir)/tests/fuzz/fuzz_reply.c $(FUZZ_LIB) $(top_srcdir)/tests/fuzz/fuzz_jq.h
	$(AM_V_CCLD)$(CLANG) $(FUZZ_CPP_FLAGS) $(FUZZ_CC_FLAGS) -fsanitize=fuzzer \
	  -o $@ $(top_srcdir)/tests/fuzz/fuzz_reply.c $(FUZZ_LIB) $(FUZZ_LINK_LIBS)

tests/fuzz/fuzz_rows: $(top_srcdir)/tests/fuzz/fuzz_rows.c $(FUZZ_LIB) $(top_srcdir)/tests/fuzz/fuzz_jq.h
	$(AM_V_CCLD)$(CLANG) $(FUZZ_CPP_FLAGS) $(FUZZ_CC_FLAGS) -fsanitize=fuzzer \
	  -o $@ $(top_srcdir)/tests/fuzz/fuzz_rows.c $(FUZZ_LIB) $(FUZZ_LINK_LIBS)

tests/fuzz/fuzz_state: $(top_srcdir)/tests/fuzz/fuzz_state.c $(FUZZ_LIB) $(top_srcdir)/tests/fuzz/fuzz_jq.h
	$(AM_V_CCLD)$(CLANG) $(FUZZ_CPP_FLAGS) $(FUZZ_CC_FLAGS) -fsanitize=fuzzer \
	  -o $@ $(top_srcdir)/tests/fuzz/fuzz_state.c $(FUZZ_LIB) $(FUZZ_LINK_LIBS)

tests/fuzz/fuzz_sse: $(top_srcdir)/tests/fuzz/fuzz_sse.c $(FUZZ_LIB) $(top_srcdir)/tests/fuzz/fuzz_jq.h
	$(AM_V_CCLD)$(CLANG) $(FUZZ_CPP_FLAGS) $(FUZZ_CC_FLAGS) -fsanitize=fuzzer \
	  -o $@ $(top_srcdir)/tests/fuzz/fuzz_sse.c $(FUZZ_LIB) $(FUZZ_LINK_LIBS)

fuzz-build: $(FUZZ_PROGS)

fuzz: $(FUZZ_PROGS)
	FUZZ_RUNS=$(FUZZ_RUNS) $(FUZZ_RUN) fuzz '$(abs_top_srcdir)/tests/fuzz' '$(abs_top_builddir)/tests/fuzz' \
	  $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-smoke: $(FUZZ_PROGS)
	$(FUZZ_RUN) fuzz '$(abs_top_srcdir)/tests/fuzz' '$(abs_top_builddir)/tests/fuzz' \
	  $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

fuzz-regress: $(FUZZ_PROGS)
	$(FUZZ_RUN) regress '$(abs_top_srcdir)/tests/fuzz' '$(abs_top_builddir)/tests/fuzz' \
	  - $(FUZZ_NAMES)

clean-fuzz:
	-rm -rf tests/fuzz/obj tests/fuzz/work $(FUZZ_LIB) $(FUZZ_PROGS)

clean-local: clean-fuzz

.PHONY: fuzz fuzz-smoke fuzz-regress fuzz-build fuzz-check-clang clean-fuzz
