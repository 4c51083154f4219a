# ftd's network buffer (libnl-route-3) and Xen guest, and xl-ftsync.
#
# libnl is linked statically into ftd so that a dom0 needs no libnl package;
# the Xen libraries are linked the weak way of XEN_LIBS (see the Makefile):
# ftd runs on hosts without Xen, and `--hypervisor xen` then says so.
NL_CFLAGS := $(shell pkg-config --cflags libnl-route-3.0 2>/dev/null || echo -I/usr/include/libnl3)
NL_LIBS   := -Wl,-Bstatic -lnl-route-3 -lnl-3 -Wl,-Bdynamic -lm

$(BUILD)/ftd/%.o: FT_CXXFLAGS += $(NL_CFLAGS)
$(BUILD)/test/ftd/%.o: FT_CXXFLAGS += $(NL_CFLAGS)
$(FTD): FT_LIBS += $(NL_LIBS) $(XEN_LIBS)
$(FTD_TESTS): FT_LIBS += $(NL_LIBS)

# xl-ftsync (xl-plugin/): the command, and its argument tests.
XL_FTSYNC := $(BUILD)/bin/xl-ftsync
XL_FTSYNC_TESTS := $(BUILD)/bin/xl_ftsync_tests
XL_PLUGIN_OBJS := $(BUILD)/xl-plugin/xl_args.o
$(XL_FTSYNC): $(BUILD)/xl-plugin/xl_ftsync.o $(XL_PLUGIN_OBJS) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $^ $(FT_LIBS)
$(XL_FTSYNC_TESTS): $(BUILD)/xl-plugin/xl_args_test.o $(XL_PLUGIN_OBJS) $(BUILD)/test/unit/main.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $^ $(FT_LIBS)
all: $(XL_FTSYNC) $(XL_FTSYNC_TESTS)

# Argument tests, then xl-ftsync driving ftd's fake hypervisor on this host.
.PHONY: check-xl
check-xl: $(XL_FTSYNC) $(XL_FTSYNC_TESTS) $(FTD)
	$(XL_FTSYNC_TESTS)
	test/integration/ftd/xl-ftsync-test.sh $(BUILD)

install: install-xl-ftsync
.PHONY: install-xl-ftsync
install-xl-ftsync: $(XL_FTSYNC)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(XL_FTSYNC) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 xl-plugin/xl-ftsync.1 $(DESTDIR)$(PREFIX)/share/man/man1/
