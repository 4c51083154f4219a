# Speculative state transfer (issue 5): the policy simulation on the
# in-memory domain. `make bench-spec` prints the table and writes
# bench/results/spec_sim.json; see bench/spec/README.md.
SPEC_SIM := $(BUILD)/bin/ftsync_spec_sim
SPEC_SIM_OBJS := $(BUILD)/bench/spec/spec_sim.o $(BUILD)/bench/report.o

$(SPEC_SIM): $(SPEC_SIM_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(SPEC_SIM_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS)

.PHONY: bench-spec
bench-spec: deps
	$(MAKE) OPT=-O3 $(SPEC_SIM)
	$(SPEC_SIM) --json bench/results/spec_sim.json
