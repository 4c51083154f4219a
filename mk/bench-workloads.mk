# make bench-workloads [WORKLOADS="oltp fileserver mail"]
#   Real workloads in a Debian guest under QEMU/TCG; every memory-sync
#   configuration evaluated on the same memory states. Results in
#   bench/results/workloads.{txt,json} and bench/results/workloads/;
#   see bench/workloads/README.md.
# make bench-workloads-check
#   The evaluator's self-check on a generated write stream (no QEMU).
# make bench-workloads-report
#   Rebuilds the table and plots from the per-workload results.
WL_DIR      := bench/workloads
WL_EVAL     := $(BUILD)/bin/ftsync_workload_eval
WL_SRCS     := $(sort $(wildcard $(WL_DIR)/evaluator/*.cc))
WL_OBJS     := $(WL_SRCS:%.cc=$(BUILD)/%.o) $(BUILD)/bench/report.o
WL_CACHE    ?= /var/cache/ftsync/workloads
WORKLOADS   ?= $(sort $(basename $(notdir $(wildcard $(WL_DIR)/*.sh))))

.PHONY: bench-workloads bench-workloads-check bench-workloads-report bench-workloads-deps

$(WL_EVAL): $(WL_OBJS) $(TESTING_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(WL_OBJS) $(TESTING_A) $(LIB_A) $(FT_LIBS) -lzstd -llz4 -ldl

bench-workloads-deps:
	@$(WL_DIR)/lib/host-deps.sh

bench-workloads: bench-workloads-deps
	$(MAKE) $(WL_EVAL) $(BUILD)/lib/libftsync_qemu_preload.so
	$(WL_DIR)/lib/run.sh $(BUILD) $(WL_CACHE) $(WORKLOADS)

bench-workloads-check: bench-workloads-deps
	$(MAKE) $(WL_EVAL)
	$(WL_EVAL) --synthetic --json $(BUILD)/workloads-synthetic.json

bench-workloads-report:
	$(WL_DIR)/lib/report.py bench/results
