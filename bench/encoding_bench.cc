// Section 2: encoding throughput.
//
// After the guest resumes, the Checkpointer frames the staged pages as
// PAGE_DATA records (record header, pfn list, page bytes, pad) with an
// XXH3-64 checksum of each body, and hands them to the ByteSink. This
// measures RecordWriter::PageData into a sink that only counts bytes,
// against memcpy of the same bytes and against XXH3-64 alone (the checksum
// reads every byte once, so it is the floor of encoding). A last row writes
// into a MemoryPipe instead, the sink the epoch benchmark (section 3) uses.
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks.h"
#include "ftsync/io.h"
#include "stream/format.h"
#include "stream/record_writer.h"
#include "timing.h"

namespace ftsync::bench {
namespace {

// Accepts every write and keeps only a byte count.
class DiscardSink : public ByteSink {
 public:
  Status Write(std::span<const ConstBuffer> buffers) override {
    for (ConstBuffer b : buffers) bytes_ += b.size();
    return Status::OK();
  }
  Status Close() override { return Status::OK(); }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

// Encodes `n` staged pages as PAGE_DATA records of `batch` pages, as the
// Checkpointer's EmitPages does. Returns false on a library error.
bool Encode(internal::RecordWriter* writer, const std::vector<uint64_t>& pfns,
            const uint8_t* staged, size_t batch) {
  const std::span<const uint64_t> all(pfns);
  for (size_t i = 0; i < all.size(); i += batch) {
    size_t k = std::min(batch, all.size() - i);
    if (!writer->PageData(all.subspan(i, k), staged + i * kPageSize, kPageSize).ok()) return false;
  }
  return true;
}

}  // namespace

Json RunEncodingBench(const BenchConfig& config) {
  PrintSection("2. Encoding: staged pages -> PAGE_DATA records (RecordWriter::PageData)");
  const uint64_t n = config.quick ? 8192 : 65536;
  const size_t bytes = n * kPageSize;
  const size_t max_batch = internal::kPageDataMaxBytes / kPageSize;
  PageBuffer staged(bytes);
  {
    Rng rng(config.seed);  // page contents do not change XXH3's speed, but avoid a constant
    for (size_t i = 0; i < bytes; i += 8) {
      uint64_t v = rng.Next();
      std::memcpy(staged.data() + i, &v, 8);
    }
  }
  PageBuffer copy(bytes);
  std::vector<uint64_t> pfns(n);
  for (uint64_t i = 0; i < n; ++i) pfns[i] = i * 3;
  PrintNote(std::to_string(n) + " pages (" + std::to_string(bytes >> 20) +
            " MiB) staged; median of " + std::to_string(config.reps) + " runs");

  double memcpy_s = MemcpySeconds(copy.data(), staged.data(), bytes, config.reps);
  double memcpy_gbps = GBps(bytes, memcpy_s);
  std::vector<double> hash = TimeRepeated(config.reps, [&] {
    uint64_t h = 0;
    for (size_t i = 0; i < bytes; i += max_batch * kPageSize)
      h ^= XXH3_64bits(staged.data() + i, std::min(max_batch * kPageSize, bytes - i));
    DoNotOptimize(h);
  });

  struct Row {
    std::string name;
    size_t batch;
    double seconds;
    uint64_t wire;
  };
  std::vector<Row> rows;
  bool ok = true;
  for (size_t batch : {max_batch, size_t{64}, size_t{1}}) {
    DiscardSink sink;
    internal::RecordWriter writer(&sink);
    std::vector<double> t = TimeRepeated(config.reps, [&] { ok &= Encode(&writer, pfns, staged.data(), batch); });
    rows.push_back({"PageData -> discard sink", batch, Median(t), sink.bytes() / (config.reps + 1)});
  }
  // The MemoryPipe row: a reader thread drains the pipe concurrently, as
  // the Receiver does.
  {
    const int reps = std::max(3, config.reps / 2);
    std::vector<double> t;
    uint64_t wire = 0;
    for (int r = 0; r <= reps; ++r) {
      MemoryPipe pipe;
      std::thread drain([&] {
        std::vector<uint8_t> buf(1 << 20);
        for (;;) {
          Result<size_t> got = pipe.source().ReadSome(buf);
          if (!got.ok() || *got == 0) break;
        }
      });
      internal::RecordWriter writer(&pipe.sink());
      double s = TimeOnce([&] { ok &= Encode(&writer, pfns, staged.data(), max_batch); });
      (void)pipe.sink().Close();
      drain.join();
      if (r > 0) t.push_back(s);  // run 0 is the warm-up
      wire = writer.bytes_written();
    }
    rows.push_back({"PageData -> MemoryPipe (drained)", max_batch, Median(t), wire});
  }

  Table table({"encoder", "pages/record", "GB/s (page bytes)", "vs memcpy", "vs XXH3", "wire bytes/page"});
  double hash_gbps = GBps(bytes, Median(hash));
  table.AddRow({"memcpy (baseline)", "-", Fixed(memcpy_gbps, 2), Ratio(1), "-", "-"});
  table.AddRow({"XXH3_64bits only", "-", Fixed(hash_gbps, 2), Ratio(hash_gbps / memcpy_gbps), Ratio(1), "-"});
  Json cases = Json::Array();
  for (const Row& r : rows) {
    double gbps = GBps(bytes, r.seconds);
    double per_page = static_cast<double>(r.wire) / static_cast<double>(n);
    table.AddRow({r.name, std::to_string(r.batch), Fixed(gbps, 2), Ratio(gbps / memcpy_gbps),
                  Ratio(gbps / hash_gbps), Fixed(per_page, 1)});
    Json c = Json::Object();
    c.Set("encoder", r.name)
        .Set("pages_per_record", static_cast<uint64_t>(r.batch))
        .Set("gbps", Round(gbps, 3))
        .Set("ratio_vs_memcpy", Round(gbps / memcpy_gbps, 4))
        .Set("ratio_vs_xxh3", Round(gbps / hash_gbps, 4))
        .Set("wire_bytes_per_page", Round(per_page, 2));
    cases.Push(std::move(c));
  }
  table.Print();
  PrintNote("GB/s counts page bytes only; vs memcpy 1.0 = encoding as fast as copying once");

  Json out = Json::Object();
  out.Set("pages", n)
      .Set("bytes", static_cast<uint64_t>(bytes))
      .Set("reps", config.reps)
      .Set("memcpy_gbps", Round(memcpy_gbps, 3))
      .Set("xxh3_gbps", Round(hash_gbps, 3))
      .Set("ratio_xxh3_vs_memcpy", Round(hash_gbps / memcpy_gbps, 4))
      .Set("ok", ok)
      .Set("cases", std::move(cases));
  return out;
}

}  // namespace ftsync::bench
