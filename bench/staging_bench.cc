// Section 1: staging throughput.
//
// While the guest is paused the Checkpointer copies each dirty frame into
// its staging area with Domain::ReadFrames. This measures that copy on a
// FakeDomain, for dirty frames scattered every third frame, against a
// plain memcpy of the same number of bytes from one contiguous range, and
// against a per-page memcpy of the same scattered frames (no Domain call),
// which separates the cost of scattering from the cost of the seam.
#include <cstring>
#include <string>
#include <vector>

#include "benchmarks.h"
#include "testing/fake_domain.h"
#include "timing.h"

namespace ftsync::bench {

Json RunStagingBench(const BenchConfig& config) {
  PrintSection("1. Staging: dirty frames -> staging area (Domain::ReadFrames of a FakeDomain)");
  const uint64_t frames = config.quick ? 32768 : 262144;
  const uint64_t stride = 3;
  const std::vector<uint64_t> counts =
      config.quick ? std::vector<uint64_t>{1024, 8192} : std::vector<uint64_t>{1024, 65536};

  testing::FakeDomain domain(frames, kPageSize, "bench-staging");
  const uint8_t* memory = domain.memory().data();
  PrintNote("FakeDomain of " + std::to_string(frames) + " frames (" +
            std::to_string(frames * kPageSize >> 20) + " MiB); dirty frames = every " +
            std::to_string(stride) + "rd frame; median of " + std::to_string(config.reps) + " runs");

  Table table({"pages", "MiB", "memcpy GB/s", "page-wise memcpy GB/s", "ReadFrames GB/s",
               "page-wise/memcpy", "staging/memcpy"});
  Json cases = Json::Array();
  for (uint64_t n : counts) {
    const size_t bytes = n * kPageSize;
    PageBuffer staging(bytes);
    std::vector<uint64_t> pfns(n);
    for (uint64_t i = 0; i < n; ++i) pfns[i] = i * stride;
    std::vector<int> errors(n);

    double memcpy_s = MemcpySeconds(staging.data(), memory, bytes, config.reps);
    std::vector<double> pagewise = TimeRepeated(config.reps, [&] {
      for (uint64_t i = 0; i < n; ++i)
        std::memcpy(staging.data() + i * kPageSize, memory + pfns[i] * kPageSize, kPageSize);
      DoNotOptimize(staging.data()[bytes - 1]);
    });
    bool read_ok = true;
    std::vector<double> staged = TimeRepeated(config.reps, [&] {
      read_ok &= domain.ReadFrames(pfns, staging.data(), errors).ok();
    });
    for (int e : errors) read_ok &= e == 0;

    double memcpy_gbps = GBps(bytes, memcpy_s);
    double pagewise_gbps = GBps(bytes, Median(pagewise));
    double staging_gbps = GBps(bytes, Median(staged));
    table.AddRow({std::to_string(n), Fixed(bytes / 1048576.0, 0), Fixed(memcpy_gbps, 2),
                  Fixed(pagewise_gbps, 2), Fixed(staging_gbps, 2),
                  Ratio(pagewise_gbps / memcpy_gbps), Ratio(staging_gbps / memcpy_gbps)});
    Json c = Json::Object();
    c.Set("pages", n)
        .Set("bytes", static_cast<uint64_t>(bytes))
        .Set("memcpy_gbps", Round(memcpy_gbps, 3))
        .Set("pagewise_memcpy_gbps", Round(pagewise_gbps, 3))
        .Set("staging_gbps", Round(staging_gbps, 3))
        .Set("ratio_pagewise_vs_memcpy", Round(pagewise_gbps / memcpy_gbps, 4))
        .Set("ratio_staging_vs_memcpy", Round(staging_gbps / memcpy_gbps, 4))
        .Set("staging_min_max_ms", Json::Array()
                                       .Push(Round(Min(staged) * 1e3, 3))
                                       .Push(Round(Max(staged) * 1e3, 3)))
        .Set("read_ok", read_ok);
    cases.Push(std::move(c));
  }
  table.Print();
  PrintNote("ratio 1.0 = staging runs at memcpy speed; page-wise memcpy shows what scattering");
  PrintNote("alone costs, so staging/page-wise is the cost of the Domain seam itself");

  Json out = Json::Object();
  out.Set("domain_frames", frames).Set("page_size", static_cast<uint64_t>(kPageSize))
      .Set("pfn_stride", stride).Set("reps", config.reps).Set("cases", std::move(cases));
  return out;
}

}  // namespace ftsync::bench
