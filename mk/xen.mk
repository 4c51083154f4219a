# Build rules of ftsync's Xen pieces (see test/integration/xen/README.md).
#
# Diagnostic of the nested-Xen harness: log-dirty on a domain, paused
# CLEAN cycles, progress report (used to study log-dirty under nested TCG).
XEN_STRESS := $(BUILD)/bin/xen_logdirty_stress
$(XEN_STRESS): test/integration/xen/xen_logdirty_stress.cc $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) $(FT_CXXFLAGS) $(CXXFLAGS) -o $@ $< $(LIB_A) $(FT_LIBS) $(XEN_LIBS) -static-libstdc++ -static-libgcc

.PHONY: xen-logdirty-stress
xen-logdirty-stress: $(XEN_STRESS)

# The Xen comparison benchmark (bench/xen/README.md): ftsync vs `xl remus`
# on the same PVH domU, in one nested boot; results in bench/results/xen.json.
XEN_BENCH := $(BUILD)/bin/xen_bench
$(XEN_BENCH): bench/xen/xen_bench.cc $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) $(FT_CXXFLAGS) $(CXXFLAGS) -o $@ $< $(LIB_A) $(FT_LIBS) $(XEN_LIBS) -static-libstdc++ -static-libgcc
.PHONY: bench-xen
bench-xen: $(XEN_BENCH)
	bench/xen/run-xen-bench.sh $(XEN_CACHE) $(BUILD) bench/results/xen.json
