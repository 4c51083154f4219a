# ftsync top-level build.
#   make            build the library, tools and tests
#   make check      install missing Debian packages, build, run every test
#   make check-fast the same without the slow (integration) tests
#   make bench      micro and macro benchmarks; results in bench/results/
#   make demo       a QEMU guest protected end to end (see README.md)
#   make install    PREFIX=/usr/local

CXX      ?= g++
CC       ?= gcc
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
CXXFLAGS ?= $(OPT) -g
CFLAGS   ?= $(OPT) -g
FT_CXXFLAGS := -std=c++20 -Wall -Wextra -Wno-unused-parameter -fPIC -fvisibility-inlines-hidden -pthread \
               -Ilibftsync/include -Ilibftsync/src -Ilibftsync -Itest/unit -Iftd
FT_LIBS  := -lxxhash -lz -lzstd -pthread
VERSION  := 0.1.0
SONAME   := libftsync.so.0

LIB_SRCS     := $(sort $(shell find libftsync/src -name '*.cc'))
TESTING_SRCS := $(sort $(wildcard libftsync/testing/*.cc))
TEST_SRCS    := $(sort $(shell find test/unit -name '*.cc'))
BENCH_SRCS   := $(sort $(wildcard bench/*.cc))

LIB_OBJS     := $(LIB_SRCS:%.cc=$(BUILD)/%.o)
TESTING_OBJS := $(TESTING_SRCS:%.cc=$(BUILD)/%.o)
TEST_OBJS    := $(TEST_SRCS:%.cc=$(BUILD)/%.o)
BENCH_OBJS   := $(BENCH_SRCS:%.cc=$(BUILD)/%.o)

LIB_SO   := $(BUILD)/lib/$(SONAME)
LIB_A    := $(BUILD)/lib/libftsync.a
TESTING_A := $(BUILD)/lib/libftsync_testing.a
UNIT     := $(BUILD)/bin/ftsync_unit_tests
CAPI_TEST := $(BUILD)/bin/ftsync_capi_test
VERIFY   := $(BUILD)/bin/ftsync-verify-stream
BENCH    := $(BUILD)/bin/ftsync_bench
LOCAL_DEMO := $(BUILD)/bin/ftsync-local-demo
FTD      := $(BUILD)/bin/ftd
PRELOAD  := $(BUILD)/lib/libftsync_qemu_preload.so
FTD_SRCS := $(sort $(wildcard ftd/*.cc))
FTD_OBJS := $(FTD_SRCS:%.cc=$(BUILD)/%.o)
FTD_LIB_OBJS := $(filter-out $(BUILD)/ftd/main.o,$(FTD_OBJS))
FTD_TEST_SRCS := $(sort $(wildcard test/ftd/*.cc))
FTD_TESTS := $(BUILD)/bin/ftd_tests
PC       := $(BUILD)/lib/pkgconfig/libftsync.pc

.PHONY: all deps check check-xen check-fast bench bench-diff bench-qemu demo demo-local install clean guest check-guest
all: $(LIB_SO) $(LIB_A) $(UNIT) $(CAPI_TEST) $(VERIFY) $(PC) $(LOCAL_DEMO) $(FTD) $(FTD_TESTS) $(PRELOAD)

deps:
	@scripts/install-deps.sh build

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(FT_CXXFLAGS) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(LIB_SO): $(LIB_OBJS) libftsync/libftsync.map
	@mkdir -p $(dir $@)
	$(CXX) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libftsync/libftsync.map \
	  -Wl,--no-undefined -o $@ $(LIB_OBJS) $(FT_LIBS)
	ln -sf $(SONAME) $(BUILD)/lib/libftsync.so

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(TESTING_A): $(TESTING_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Unit tests link the static archive: they may reach internals that the
# shared library's version script hides.
$(UNIT): $(TEST_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(TEST_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS)

# The C API test is plain C and links the installed-style shared library
# through its pkg-config file, as another toolstack would.
$(CAPI_TEST): test/capi/capi_test.c $(LIB_SO) $(PC) libftsync/include/ftsync/ftsync.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror $(CFLAGS) \
	  $$(PKG_CONFIG_PATH=$(BUILD)/lib/pkgconfig pkg-config --cflags libftsync) \
	  -o $@ $< \
	  $$(PKG_CONFIG_PATH=$(BUILD)/lib/pkgconfig pkg-config --libs libftsync) \
	  -Wl,-rpath,$(abspath $(BUILD)/lib) -lpthread

# The independent verifier: C, shares no code with libftsync's decoder.
$(VERIFY): xen-tools/ftsync-verify-stream.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror $(CFLAGS) -o $@ $< -lxxhash -lz -lzstd

$(PC): libftsync/libftsync.pc.in Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|; s|@INCLUDEDIR@|$(abspath libftsync/include)|; s|@LIBDIR@|$(abspath $(BUILD)/lib)|; s|@VERSION@|$(VERSION)|' $< > $@

# The LD_PRELOAD object that registers QEMU's guest RAM for dirty tracking;
# it exports only mmap and mmap64.
$(PRELOAD): libftsync/preload/qemu_preload.cc $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) $(FT_CXXFLAGS) $(CXXFLAGS) -MMD -MP -shared -Wl,--exclude-libs,ALL -Wl,--no-undefined \
	  -o $@ $< $(LIB_A) -ldl

# The daemon links the static library; the in-memory domain of
# libftsync_testing.a backs `--hypervisor fake`.
$(FTD): $(FTD_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(FTD_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS) -lssl -lcrypto -ldl

# The daemon's own unit tests (one Catch2 main, ftd's objects but main.o).
$(FTD_TESTS): $(FTD_TEST_SRCS:%.cc=$(BUILD)/%.o) $(BUILD)/test/unit/main.o $(FTD_LIB_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $^ $(FT_LIBS) -lssl -lcrypto

$(LOCAL_DEMO): $(BUILD)/test/demo/local_demo.o $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $< $(TESTING_A) $(LIB_A) $(FT_LIBS)

$(BENCH): $(BENCH_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(BENCH_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS)

check: deps
	$(MAKE) all guest
	test/run-tests $(BUILD) full

check-fast: deps
	$(MAKE) all
	test/run-tests $(BUILD) fast

DIFF_BENCH := $(BUILD)/bin/ftsync_diff_bench
$(DIFF_BENCH): $(BUILD)/bench/diff/diff_bench.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $< $(LIB_A) $(FT_LIBS)

QEMU_BENCH := $(BUILD)/bin/ftsync_qemu_bench
QEMU_BENCH_OBJS := $(BUILD)/bench/qemu/epoch_pause_bench.o $(BUILD)/bench/report.o
$(QEMU_BENCH): $(QEMU_BENCH_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(QEMU_BENCH_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS) -ldl

# Core benchmark (in-memory domain, tracker), then the QEMU one (pause
# breakdown against the emit-while-paused baseline; guest throughput
# unprotected vs protected). See bench/README.md.
bench: deps
	$(MAKE) OPT=-O3 $(BENCH)
	$(BENCH) --json bench/results/core.json
	$(MAKE) bench-diff
	$(MAKE) bench-qemu

# Page-delta codecs (groundwork of issue 5) against memcpy and the Remus
# XOR+RLE and XBZRLE-style baselines.
bench-diff: deps
	$(MAKE) OPT=-O3 $(DIFF_BENCH)
	$(DIFF_BENCH)

bench-qemu: deps
	$(MAKE) $(FTD) $(PRELOAD) guest
	$(MAKE) OPT=-O3 $(QEMU_BENCH)
	bench/qemu/run.sh $(BUILD) bench/results/qemu.json

demo: deps
	$(MAKE) all guest
	test/integration/demo/demo.sh $(BUILD)

# The same story on the in-memory domain, in three processes, no QEMU.
demo-local: deps
	$(MAKE) $(LOCAL_DEMO)
	$(LOCAL_DEMO)

# The small QEMU guest (Debian kernel + busybox initramfs + counterd),
# cached under $(BUILD)/guest; see test/guest/README.md.
GUEST_SRCS := $(wildcard test/guest/*.sh test/guest/*.c)
$(BUILD)/guest/initrd.gz: $(GUEST_SRCS)
	test/guest/build-guest.sh $(BUILD)/guest
guest: $(BUILD)/guest/initrd.gz
check-guest: guest
	test/guest/smoke-test.sh $(BUILD)/guest

# Real Xen 4.17 nested under QEMU/TCG with a Debian dom0 built by
# debootstrap (cached in XEN_CACHE); see test/integration/xen/README.md.
# Not yet part of `make check`: it joins .ci/run with the Xen backend.
XEN_CACHE ?= /var/cache/ftsync/xen
# Programs that drive Xen link its libraries themselves: libftsync refers to
# them weakly, so hosts without Xen need none of them (libxenguest: resume
# and CPU policy; libxenstore: cooperative suspend). --no-as-needed keeps
# a library that only satisfies weak references.
XEN_LIBS := -Wl,--push-state,--no-as-needed -lxenctrl -lxenforeignmemory -lxenguest -lxenstore \
            -Wl,--pop-state
XEN_TEST := $(BUILD)/bin/xen_replication_test
$(XEN_TEST): test/integration/xen/xen_replication_test.cc $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) $(FT_CXXFLAGS) $(CXXFLAGS) -o $@ $< $(LIB_A) $(FT_LIBS) $(XEN_LIBS) -static-libstdc++ -static-libgcc
check-xen: all $(XEN_TEST)
	test/integration/xen/run-xen-test.sh $(XEN_CACHE) $(BUILD)

install: $(LIB_SO) $(LIB_A) $(FTD) $(PRELOAD)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/ftsync
	install -m 644 libftsync/include/ftsync/*.h $(DESTDIR)$(PREFIX)/include/ftsync/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libftsync.so
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(FTD) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(PRELOAD) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 ftd/ftd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@INCLUDEDIR@|$(PREFIX)/include|; s|@LIBDIR@|$(PREFIX)/lib|; s|@VERSION@|$(VERSION)|' \
	  libftsync/libftsync.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libftsync.pc

clean:
	rm -rf $(BUILD)

# Build fragments of sub-projects (bench/workloads, xl-plugin, ...).
-include $(sort $(wildcard mk/*.mk))

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
