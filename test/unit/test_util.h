// Helpers shared by ftsync's unit tests: byte sinks/sources over vectors,
// temporary directories, a stream builder for rule tests.
#ifndef FTSYNC_TEST_UNIT_TEST_UTIL_H_
#define FTSYNC_TEST_UNIT_TEST_UTIL_H_

#include <unistd.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ftsync/io.h"
#include "stream/record_writer.h"
#include "testing/host_resources.h"

namespace ftsync::test {

// Appends everything written to a vector.
class VectorSink : public ByteSink {
 public:
  explicit VectorSink(std::vector<uint8_t>* out) : out_(out) {}
  Status Write(std::span<const ConstBuffer> bufs) override {
    for (ConstBuffer b : bufs) out_->insert(out_->end(), b.begin(), b.end());
    return Status::OK();
  }
  Status Close() override { return Status::OK(); }

 private:
  std::vector<uint8_t>* out_;
};

// Reads a fixed byte string, in chunks of at most `chunk` bytes.
class BufferSource : public ByteSource {
 public:
  explicit BufferSource(std::vector<uint8_t> bytes, size_t chunk = 1 << 20)
      : bytes_(std::move(bytes)), chunk_(chunk) {}
  Result<size_t> ReadSome(std::span<uint8_t> buf) override {
    size_t n = std::min({buf.size(), bytes_.size() - pos_, chunk_});
    std::memcpy(buf.data(), bytes_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  Result<bool> WaitReadable(int) override { return true; }

 private:
  std::vector<uint8_t> bytes_;
  size_t pos_ = 0;
  size_t chunk_;
};

// A fresh directory under /tmp, removed with its contents at scope end.
class TempDir : public testing::ScratchDir {
 public:
  TempDir() : ScratchDir("ftsync-test", "/tmp") {}
};

// The content of frame `pfn` in stream-builder epoch `epoch`.
inline std::vector<uint8_t> PatternPage(uint64_t pfn, uint64_t epoch, uint32_t page_size = 4096) {
  std::vector<uint8_t> p(page_size);
  for (size_t i = 0; i < page_size; ++i) p[i] = static_cast<uint8_t>(pfn * 131 + epoch * 17 + i);
  return p;
}

// Builds forward streams record by record with the library's writer.
struct StreamBuilder {
  std::vector<uint8_t> bytes;
  VectorSink sink{&bytes};
  internal::RecordWriter w{&sink};
  internal::StreamHeader h;

  explicit StreamBuilder(uint64_t frames = 8, uint64_t session = 0x5e55) {
    h.frame_count = frames;
    h.session = session;
  }
  StreamBuilder& Header() {
    (void)w.WriteHeader(h);
    return *this;
  }
  StreamBuilder& Pages(uint64_t epoch, const std::vector<uint64_t>& pfns) {
    std::vector<uint8_t> data;
    for (uint64_t p : pfns) {
      auto page = PatternPage(p, epoch, h.page_size);
      data.insert(data.end(), page.begin(), page.end());
    }
    (void)w.PageData(pfns, data.data(), h.page_size);
    return *this;
  }
  StreamBuilder& State(uint64_t epoch) {
    std::string s = "state of epoch " + std::to_string(epoch);
    (void)w.DeviceState(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    return *this;
  }
  // A whole valid epoch: begin, `pfns` (epoch 0: all frames), state, commit.
  StreamBuilder& Epoch(uint64_t epoch, std::vector<uint64_t> pfns = {}) {
    if (epoch == 0 && pfns.empty())
      for (uint64_t p = 0; p < h.frame_count; ++p) pfns.push_back(p);
    (void)w.EpochBegin(epoch);
    if (!pfns.empty()) Pages(epoch, pfns);
    State(epoch);
    (void)w.EpochCommit(epoch, pfns.size());
    return *this;
  }
  size_t size() const { return bytes.size(); }
};

// Recomputes the stream header's checksum after a test edited its fields.
inline void RechecksumHeader(std::vector<uint8_t>* b) {
  uint64_t c = XXH3_64bits(b->data(), 40);
  for (int i = 0; i < 8; ++i) (*b)[40 + i] = static_cast<uint8_t>(c >> (8 * i));
}

}  // namespace ftsync::test

#endif  // FTSYNC_TEST_UNIT_TEST_UTIL_H_
