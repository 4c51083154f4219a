#include "blackhole.h"

#include "stream/format.h"
#include "stream/record_reader.h"
#include "stream/record_writer.h"
#include "stream/records.h"

namespace ftd {
namespace fi = ftsync::internal;

Blackhole::Blackhole() : reader_([this] { Run(); }) {}

Blackhole::~Blackhole() {
  stream_.CloseReader();
  (void)stream_.sink().Close();
  if (reader_.joinable()) reader_.join();
}

void Blackhole::Run() {
  fi::RecordReader reader(&stream_.source(), false);
  fi::RecordWriter writer(&back_.sink());
  auto h = reader.ReadHeader();
  if (h.ok()) {
    fi::StreamHeader back = *h;
    back.back_channel = true;
    if (writer.WriteHeader(back).ok()) {
      for (;;) {
        auto r = reader.Next();
        if (!r.ok()) break;
        discarded_ = reader.bytes_read();
        if (r->type == fi::kEnd) break;
        if (r->type != fi::kEpochCommit) continue;
        auto c = fi::ParseEpochCommit(r->body);
        if (!c.ok() || !writer.Ack(c->epoch).ok()) break;
        ++acked_;
      }
    }
  }
  (void)back_.sink().Close();  // the primary sees the end of the back channel
}

}  // namespace ftd
