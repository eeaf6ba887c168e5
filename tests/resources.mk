# Test-only build rules for tests/resources.bats.

# tests/shim/fullfs.so: an LD_PRELOAD shim that makes the state directory behave like
# a full disk on demand (see tests/shim/fullfs.c). Built with the plain compiler and
# without the sanitizer flags: it is loaded before their runtime and must not need it.
FULLFS_SHIM = tests/shim/fullfs.so
FULLFS_SRC = $(top_srcdir)/tests/shim/fullfs.c
check_DATA = $(FULLFS_SHIM)

$(FULLFS_SHIM): $(FULLFS_SRC)
	@$(MKDIR_P) tests/shim
	$(AM_V_CC)$(CC) -std=c11 $(WARN_CFLAGS) $(CPPFLAGS) $(CFLAGS) -shared -fPIC \
		-o $@ $(FULLFS_SRC) -ldl

EXTRA_DIST += tests/shim/fullfs.c
CLEANFILES += $(FULLFS_SHIM)
