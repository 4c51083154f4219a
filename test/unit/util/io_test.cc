// Byte sinks and sources: the in-memory pipe and file descriptors.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "ftsync/io.h"
#include "ftsync/status.h"

namespace ftsync {
namespace {

TEST_CASE("io: memory pipe carries bytes in order and reports end of stream", "[io]") {
  MemoryPipe p;
  uint8_t a[3] = {1, 2, 3}, b[2] = {4, 5};
  ConstBuffer bufs[2] = {ConstBuffer(a, 3), ConstBuffer(b, 2)};
  REQUIRE(p.sink().Write(bufs).ok());
  CHECK(p.bytes_written() == 5);
  CHECK(*p.source().WaitReadable(0));
  uint8_t got[5];
  REQUIRE(p.source().ReadExact(got).ok());
  CHECK(std::vector<uint8_t>(got, got + 5) == std::vector<uint8_t>{1, 2, 3, 4, 5});
  CHECK_FALSE(*p.source().WaitReadable(10));
  REQUIRE(p.sink().Close().ok());
  CHECK(p.source().ReadExact(std::span<uint8_t>(got, 1)).code() == Errc::kPeerGone);
}

TEST_CASE("io: a short stream is 'truncated', a closed reader breaks the writer", "[io]") {
  MemoryPipe p;
  uint8_t a[2] = {1, 2};
  REQUIRE(p.sink().Write(ConstBuffer(a, 2)).ok());
  REQUIRE(p.sink().Close().ok());
  uint8_t got[4];
  Status s = p.source().ReadExact(got);
  CHECK(s.code() == Errc::kCorruption);
  CHECK(s.context().find("truncated") != std::string::npos);
  MemoryPipe q;
  q.CloseReader();
  CHECK(q.sink().Write(ConstBuffer(a, 2)).code() == Errc::kPeerGone);
}

TEST_CASE("io: fd sink and source over a socket pair, large gathered writes", "[io]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto sink = MakeFdSink(sv[0], true);
  auto source = MakeFdSource(sv[1], true);
  std::vector<uint8_t> big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  std::vector<ConstBuffer> parts;
  for (size_t off = 0; off < big.size(); off += 4096) parts.emplace_back(big.data() + off, 4096);
  std::thread w([&] {
    REQUIRE(sink->Write(parts).ok());  // more than the socket buffer: partial writes
    REQUIRE(sink->Close().ok());
  });
  std::vector<uint8_t> got(big.size());
  REQUIRE(source->ReadExact(got).ok());
  w.join();
  CHECK(got == big);
  uint8_t one;
  CHECK(*source->ReadSome(std::span<uint8_t>(&one, 1)) == 0);
}

TEST_CASE("io: writing to a closed peer is 'peer gone'", "[io]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  ::close(sv[1]);
  auto sink = MakeFdSink(sv[0], true);
  std::vector<uint8_t> b(1 << 16);
  // No SIGPIPE: the sink reports the broken connection instead.
  Status s = sink->Write(ConstBuffer(b));
  CHECK(s.code() == Errc::kPeerGone);
  CHECK(s.IsFailover());
}

TEST_CASE("status: codes, names and errno mapping", "[io]") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status s = Status::FromErrno(ENOSPC, "write replica");
  CHECK(s.code() == Errc::kNoSpace);
  CHECK(s.ToString().find("write replica") != std::string::npos);
  CHECK(s.Annotate("epoch 3").context().rfind("epoch 3: write replica", 0) == 0);
  CHECK(Status(Errc::kProtocol, "x").IsCorruption());
  CHECK(Status::FromErrno(EPIPE, "send").IsFailover());
  CHECK(Status::FromErrno(EAGAIN, "send").IsRetryable());
  std::error_code ec = s.error_code();
  CHECK(ec.category().name() == std::string("ftsync"));
  CHECK(ec == Errc::kNoSpace);
  Result<int> r(Errc::kNotFound, "no domain");
  CHECK_FALSE(r.ok());
  CHECK(r.status().code() == Errc::kNotFound);
}

}  // namespace
}  // namespace ftsync

namespace ftsync {
namespace {

TEST_CASE("io: a memory pipe counts what waits to be read", "[io]") {
  MemoryPipe p;
  uint8_t b[10] = {};
  REQUIRE(p.sink().Write(ConstBuffer(b, 10)).ok());
  CHECK(p.buffered() == 10);
  uint8_t got[4];
  REQUIRE(p.source().ReadExact(got).ok());
  CHECK(p.buffered() == 6);
  CHECK(p.bytes_written() == 10);
}

}  // namespace
}  // namespace ftsync
