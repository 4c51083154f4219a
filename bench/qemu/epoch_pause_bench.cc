// ftsync_qemu_bench: how long the guest is paused per epoch on a real QEMU
// guest, in ftsync's mode (stage the dirty pages, resume, then send) and in
// the emit-while-paused baseline (send the epoch before resuming, as Xen
// 4.17's Remus does), alternating epoch by epoch on the same guest in the
// same run.
//
//   ftsync_qemu_bench [--build DIR] [--interval-ms N] [--epochs N] [--json PATH] ...
//
// Set-up (bench/README.md, "QEMU benchmark"):
//   - the test guest (BUILD/guest/{vmlinuz,initrd.gz}: Debian kernel,
//     busybox, counterd) under QEMU/TCG, pc-q35-7.2, 256 MiB, RAM in a
//     file under /dev/shm, dirty tracking by the preload library;
//   - a Receiver on a thread of this process, applying every epoch to a
//     replica under /dev/shm; primary and backup talk over a real TCP
//     connection on 127.0.0.1, so the cost of the network stack is real;
//   - a load: C connections through QEMU's user networking (restrict=on,
//     one hostfwd on 127.0.0.1) each keep D INCR requests in flight on
//     random keys of a key space of K, so counterd and the guest kernel
//     write memory all the time;
//   - after the guest is ready and the load runs: Start() (epoch 0), W
//     warm-up epochs, then 2 x N measured epochs, the mode alternating
//     every epoch. Epochs start on a fixed period (the interval); after
//     each Checkpoint() the program waits for its ACK, so the Receiver is
//     idle during the next pause.
//
// Figures come from the Checkpointer's EpochStats. The headline is the
// ratio baseline / ours of the paused time (median and p99).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../report.h"
#include "../timing.h"
#include "ftsync/checkpointer.h"
#include "ftsync/io.h"
#include "ftsync/linux_dirty_tracker.h"
#include "ftsync/qemu.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "testing/host_resources.h"

namespace ftsync::bench {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted = true; }

struct Config {
  std::string build;  // BUILD directory: guest/, lib/
  int interval_ms = 100;
  int epochs = 100;  // measured epochs per mode
  int warmup = 10;   // epochs after epoch 0, not measured
  int connections = 8;
  int depth = 8;     // requests in flight per connection
  int keys = 65536;  // INCR key space (counterd's limit)
  uint64_t ram_mb = 256;
  int boot_timeout_s = 180;
  std::string json_path;
};

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: ftsync_qemu_bench [options]\n"
               "  --build DIR        build directory with guest/ and lib/ [directory above this binary's]\n"
               "  --interval-ms N    epoch period in ms [100]\n"
               "  --epochs N         measured epochs per mode [100]\n"
               "  --warmup N         unmeasured epochs after epoch 0 [10]\n"
               "  --connections N    load: TCP connections to counterd [8]\n"
               "  --depth N          load: INCR requests in flight per connection [8]\n"
               "  --keys N           load: INCR key space (counterd allows 65536) [65536]\n"
               "  --ram-mb N         guest RAM in MiB [256]\n"
               "  --json PATH        also write the figures as JSON (directories are created)\n"
               "  --help             this text\n"
               "Alternates ftsync's mode (stage, resume, send) with the emit-while-paused\n"
               "baseline epoch by epoch on one QEMU guest and reports the pause of each\n"
               "(see bench/README.md).\n");
}

bool Exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string ExeDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Both ends of one TCP connection on 127.0.0.1 (Nagle off on both).
Status TcpPair(int* primary_fd, int* backup_fd) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return Status::FromErrno(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    close(l);
    return Status::FromErrno(e, "listen on 127.0.0.1");
  }
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    if (c >= 0) close(c);
    close(l);
    return Status::FromErrno(e, "connect to 127.0.0.1");
  }
  int s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  int e = errno;
  close(l);
  if (s < 0) {
    close(c);
    return Status::FromErrno(e, "accept");
  }
  NoDelay(c);
  NoDelay(s);
  *primary_fd = c;
  *backup_fd = s;
  return Status::OK();
}

// The load: `connections` TCP connections to counterd through the hostfwd
// port, each keeping `depth` "INCR kNNNNN" requests in flight on random
// keys. One thread, one poll() loop. Counts answers.
class Load {
 public:
  Load(int port, int connections, int depth, int keys)
      : port_(port), connections_(connections), depth_(depth), keys_(keys) {}
  ~Load() { Stop(); }

  // Opens the connections and starts the thread.
  Status Start() {
    for (int i = 0; i < connections_; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return Status::FromErrno(e, "load: connect to 127.0.0.1:" + std::to_string(port_));
      }
      NoDelay(fd);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      conns_.push_back(Conn{fd, 0, {}, {}});
    }
    thread_ = std::thread([this] { Run(); });
    return Status::OK();
  }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (Conn& c : conns_) close(c.fd);
    conns_.clear();
  }

  uint64_t answers() const { return answers_.load(); }
  uint64_t errors() const { return errors_.load(); }
  // Why the load stopped early ("" while it runs).
  std::string failure() const {
    std::lock_guard<std::mutex> l(mu_);
    return failure_;
  }

 private:
  struct Conn {
    int fd;
    int in_flight;
    std::string out;  // bytes not yet written
    std::string in;   // partial answer line
  };

  void Fail(const std::string& why) {
    std::lock_guard<std::mutex> l(mu_);
    if (failure_.empty()) failure_ = why;
  }

  void Run() {
    std::mt19937_64 rng(12345);
    std::uniform_int_distribution<int> key(0, keys_ - 1);
    std::vector<pollfd> pfds(conns_.size());
    char buf[65536];
    while (!stop_) {
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        while (c.in_flight < depth_) {
          char req[32];
          int n = std::snprintf(req, sizeof req, "INCR k%05d\n", key(rng));
          c.out.append(req, static_cast<size_t>(n));
          c.in_flight++;
        }
        pfds[i] = pollfd{c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0};
      }
      int r = poll(pfds.data(), pfds.size(), 50);
      if (r < 0) {
        if (errno == EINTR) continue;
        Fail(std::string("poll: ") + std::strerror(errno));
        return;
      }
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        if (pfds[i].revents & POLLOUT) {
          ssize_t w = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
          if (w > 0) c.out.erase(0, static_cast<size_t>(w));
        }
        if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          ssize_t n = recv(c.fd, buf, sizeof buf, 0);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            Fail("load: counterd closed a connection");
            return;
          }
          for (ssize_t k = 0; k < n; ++k) {
            if (buf[k] != '\n') {
              c.in += buf[k];
              continue;
            }
            // "kNNNNN N" is the answer to INCR; anything else is an error.
            if (c.in.empty() || c.in[0] != 'k') errors_++;
            c.in.clear();
            c.in_flight--;
            answers_++;
          }
        }
      }
    }
  }

  int port_, connections_, depth_, keys_;
  std::vector<Conn> conns_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> answers_{0}, errors_{0};
  mutable std::mutex mu_;
  std::string failure_;
};

// The backup: a Receiver on its own thread over one end of the TCP pair.
class Backup {
 public:
  Backup(ReplicaImage* replica, int fd)
      : fd_(fd), in_(MakeFdSource(fd)), back_(MakeFdSink(fd)), rx_(replica, in_.get(), back_.get()) {
    thread_ = std::thread([this] {
      status_ = rx_.Handshake();
      if (status_.ok()) status_ = rx_.Run();
      shutdown(fd_, SHUT_WR);
    });
  }
  ~Backup() {
    shutdown(fd_, SHUT_RDWR);  // a Receiver still waiting for records sees end of stream
    Join();
    close(fd_);
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  const Receiver& rx() const { return rx_; }
  const Status& status() const { return status_; }

 private:
  int fd_;
  std::unique_ptr<ByteSource> in_;
  std::unique_ptr<ByteSink> back_;
  Receiver rx_;
  Status status_;
  std::thread thread_;
};

// Nearest-rank percentile (q in (0, 1]); 0 for an empty vector.
double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// One row of the table: a field of EpochStats, how it prints.
struct Metric {
  const char* key;    // JSON name
  const char* label;  // table label
  double scale;       // divides the raw value (us -> ms: 1000)
  int digits;
  std::function<double(const EpochStats&)> get;
};

double U(uint64_t v) { return static_cast<double>(v); }

std::vector<Metric> Metrics() {
  return {
      {"paused_ms", "paused (stop .. cont returned)", 1e3, 2,
       [](const EpochStats& e) { return U(e.paused_us); }},
      {"suspend_ms", "  suspend (QMP stop)", 1e3, 2, [](const EpochStats& e) { return U(e.suspend_us); }},
      {"harvest_ms", "  harvest (dirty log)", 1e3, 2, [](const EpochStats& e) { return U(e.harvest_us); }},
      {"copy_ms", "  copy to staging", 1e3, 2, [](const EpochStats& e) { return U(e.copy_us); }},
      {"state_save_ms", "  state save (migration)", 1e3, 2,
       [](const EpochStats& e) { return U(e.state_save_us); }},
      {"emit_paused_ms", "  emit while paused", 1e3, 2,
       [](const EpochStats& e) { return U(e.emit_paused_us); }},
      {"resume_ms", "  resume (QMP cont)", 1e3, 2, [](const EpochStats& e) { return U(e.resume_us); }},
      {"rest_ms", "  rest (devices, bookkeeping)", 1e3, 2,
       [](const EpochStats& e) {
         uint64_t parts =
             e.suspend_us + e.harvest_us + e.copy_us + e.state_save_us + e.emit_paused_us + e.resume_us;
         return e.paused_us > parts ? U(e.paused_us - parts) : 0.0;
       }},
      {"emit_running_ms", "emit after resume (guest runs)", 1e3, 2,
       [](const EpochStats& e) { return e.emit_paused_us > 0 ? 0.0 : U(e.emit_us); }},
      {"ack_latency_ms", "ACK latency (emit done .. ACK)", 1e3, 2,
       [](const EpochStats& e) {
         return e.ack_latency_us < 0 ? 0.0 : static_cast<double>(e.ack_latency_us);
       }},
      {"dirty_pages", "dirty pages", 1, 0, [](const EpochStats& e) { return U(e.dirty_pages); }},
      {"wire_mb", "wire MB (epoch's records)", 1e6, 2, [](const EpochStats& e) { return U(e.bytes_wire); }},
      {"state_kb", "device state KB", 1e3, 0, [](const EpochStats& e) { return U(e.state_bytes); }},
  };
}

struct Summary {
  double median = 0, p99 = 0, mean = 0, max = 0;
};

Summary Summarise(const std::vector<EpochStats>& v, const Metric& m) {
  std::vector<double> x;
  for (const EpochStats& e : v) x.push_back(m.get(e) / m.scale);
  return Summary{Median(x), Percentile(x, 0.99), Mean(x), Max(x)};
}

int Main(int argc, char** argv) {
  Config cfg;
  cfg.build = ExeDir() + "/..";
  auto int_arg = [&](int* i, const char* name, int lo, int hi, int* out) {
    if (*i + 1 >= argc) return false;
    char* end = nullptr;
    long v = std::strtol(argv[++*i], &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
      std::fprintf(stderr, "ftsync_qemu_bench: %s takes %d..%d\n", name, lo, hi);
      std::exit(2);
    }
    *out = static_cast<int>(v);
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    int ram = 0;
    bool ok = true;
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else if (a == "--build" && i + 1 < argc) {
      cfg.build = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      cfg.json_path = argv[++i];
    } else if (a == "--interval-ms") {
      ok = int_arg(&i, "--interval-ms", 10, 10000, &cfg.interval_ms);
    } else if (a == "--epochs") {
      ok = int_arg(&i, "--epochs", 1, 100000, &cfg.epochs);
    } else if (a == "--warmup") {
      ok = int_arg(&i, "--warmup", 0, 100000, &cfg.warmup);
    } else if (a == "--connections") {
      ok = int_arg(&i, "--connections", 0, 1000, &cfg.connections);
    } else if (a == "--depth") {
      ok = int_arg(&i, "--depth", 1, 1000, &cfg.depth);
    } else if (a == "--keys") {
      ok = int_arg(&i, "--keys", 1, 65536, &cfg.keys);
    } else if (a == "--ram-mb") {
      ok = int_arg(&i, "--ram-mb", 64, 65536, &ram);
      cfg.ram_mb = static_cast<uint64_t>(ram);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "ftsync_qemu_bench: unknown or incomplete argument '%s'\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);

  auto fail = [](const std::string& why) {
    // Ctrl-C reaches QEMU as well, so what failed then is only a consequence.
    std::fprintf(stderr, "ftsync_qemu_bench: %s%s\n", g_interrupted ? "interrupted; " : "", why.c_str());
    return 1;
  };
  // What the run needs from the machine.
  Status probe = ProbeUffdWpAsync();
  if (!probe.ok())
    return fail("the kernel lacks userfaultfd write-protect / PAGEMAP_SCAN: " + probe.ToString());
  const std::string qemu = "/usr/bin/qemu-system-x86_64";
  const std::string kernel = cfg.build + "/guest/vmlinuz", initrd = cfg.build + "/guest/initrd.gz";
  const std::string preload = cfg.build + "/lib/libftsync_qemu_preload.so";
  for (const std::string& f : {qemu, kernel, initrd, preload})
    if (!Exists(f)) return fail("missing " + f + " (make all guest builds the project's parts)");

  utsname u{};
  uname(&u);
  const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  const std::string kernel_id = std::string(u.sysname) + " " + u.release + " " + u.machine;
  std::printf("ftsync QEMU pause benchmark: %s, %ld CPUs, %s %s\n", UtcNow().c_str(), nproc, u.sysname,
              u.release);
  PrintSection("1. Pause per epoch: ftsync (stage, resume, send) vs baseline (send while paused)");

  testing::ScratchDir dir("ftsync-qemu-bench", "/dev/shm");
  if (dir.path().empty()) return fail("cannot create a directory under /dev/shm");
  const int port = testing::FreeLoopbackPort();
  QemuLaunch launch;
  launch.qemu_binary = qemu;
  launch.machine = "pc-q35-7.2";
  launch.ram_bytes = cfg.ram_mb << 20;
  launch.ram_path = dir.Sub("guest-ram");
  launch.qmp_socket = dir.Sub("qmp.sock");
  launch.preload_library = preload;
  launch.log_path = dir.Sub("qemu.log");
  launch.kill_with_parent = true;
  launch.start_timeout_ms = 60000;
  const std::string serial = dir.Sub("serial.txt");
  launch.extra_args = {"-accel",
                       "tcg",
                       "-smp",
                       "1",
                       "-machine",
                       "vmport=off,sata=off,smbus=off,i8042=off,usb=off",
                       "-serial",
                       "file:" + serial,
                       "-kernel",
                       kernel,
                       "-initrd",
                       initrd,
                       "-no-reboot",
                       "-append",
                       "console=ttyS0 quiet panic=-1 ftsync.log_every=0",
                       "-netdev",
                       "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:" + std::to_string(port) + "-:7000",
                       "-device",
                       "virtio-net-pci,netdev=n0,mac=52:54:00:f7:5e:01,romfile="};
  PrintNote("guest: " + kernel + " + counterd, " + std::to_string(cfg.ram_mb) +
            " MiB, pc-q35-7.2, TCG, -smp 1; RAM and replica under " + dir.path());
  PrintNote("load: " + std::to_string(cfg.connections) + " connections x " + std::to_string(cfg.depth) +
            " INCR in flight over " + std::to_string(cfg.keys) +
            " keys (hostfwd 127.0.0.1:" + std::to_string(port) + ")");
  PrintNote("epochs every " + std::to_string(cfg.interval_ms) + " ms; " + std::to_string(cfg.warmup) +
            " warm-up, then " + std::to_string(cfg.epochs) +
            " per mode, alternating; stream over TCP 127.0.0.1");
  std::fflush(stdout);

  const uint64_t t_launch = NowNs();
  auto proc = QemuProcess::Launch(launch);
  if (!proc.ok()) return fail("QEMU: " + proc.status().ToString());
  auto dom = QemuDomain::Attach(proc->get());
  if (!dom.ok()) return fail("attach: " + dom.status().ToString());
  QemuDomain& domain = **dom;

  // Boot: the guest runs unprotected until counterd is ready.
  for (;;) {
    if (ReadWholeFile(serial).find("ftsync-guest: ready") != std::string::npos) break;
    if (g_interrupted) return fail("interrupted");
    if ((*proc)->Exited()) return fail("QEMU exited during boot: " + (*proc)->LogTail(400));
    if (NowNs() - t_launch > static_cast<uint64_t>(cfg.boot_timeout_s) * 1000000000u)
      return fail("the guest was not ready within " + std::to_string(cfg.boot_timeout_s) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double boot_s = static_cast<double>(NowNs() - t_launch) * 1e-9;
  PrintNote("guest ready after " + Fixed(boot_s, 1) + " s");

  Load load(port, cfg.connections, cfg.depth, cfg.keys);
  if (cfg.connections > 0) {
    Status s = load.Start();
    if (!s.ok()) return fail(s.ToString());
  }

  int pfd = -1, bfd = -1;
  Status s = TcpPair(&pfd, &bfd);
  if (!s.ok()) return fail(s.ToString());
  auto replica = ReplicaImage::Open(dir.Sub("replica"));
  if (!replica.ok()) return fail("replica: " + replica.status().ToString());
  Backup backup(replica->get(), bfd);
  auto out = MakeFdSink(pfd, /*own=*/false);
  auto back = MakeFdSource(pfd, /*own=*/false);

  std::map<uint64_t, bool> baseline_epoch;  // measured epoch -> baseline mode?
  uint64_t overruns = 0, answers_measured = 0;
  double measured_s = 0, epoch0_s = 0;
  {
    Checkpointer cp(&domain, out.get(), back.get());
    const uint64_t t0 = NowNs();
    s = cp.Start();
    if (s.ok()) s = cp.WaitForAck(0);
    epoch0_s = static_cast<double>(NowNs() - t0) * 1e-9;
    if (!s.ok()) return fail("epoch 0: " + s.ToString());
    PrintNote("epoch 0 (all " + std::to_string(cfg.ram_mb) + " MiB, live pre-copy) ACKed after " +
              Fixed(epoch0_s, 2) + " s");
    std::fflush(stdout);

    const auto period = std::chrono::milliseconds(cfg.interval_ms);
    auto next = std::chrono::steady_clock::now() + period;
    const int total = cfg.warmup + 2 * cfg.epochs;
    uint64_t answers_at_start = 0, t_measure = 0;
    for (int i = 0; i < total && s.ok(); ++i) {
      if (g_interrupted) return fail("interrupted");
      if (!load.failure().empty()) return fail(load.failure());
      std::this_thread::sleep_until(next);
      next += period;
      const bool measured = i >= cfg.warmup;
      if (measured && i == cfg.warmup) {
        answers_at_start = load.answers();
        t_measure = NowNs();
      }
      // Measured epochs alternate ours, baseline, ours, ...; warm-up epochs too.
      const bool baseline = (i - cfg.warmup) % 2 != 0;
      cp.set_emit_while_paused(baseline);
      const uint64_t epoch = cp.next_epoch();
      s = cp.Checkpoint();
      if (s.ok()) s = cp.WaitForAck(epoch);
      if (!s.ok()) break;
      if (measured) baseline_epoch[epoch] = baseline;
      const auto now = std::chrono::steady_clock::now();
      if (now > next) {  // the epoch took longer than the period: start the next one now
        if (measured) overruns++;
        next = now;
      }
    }
    if (!s.ok()) return fail("epoch " + std::to_string(cp.next_epoch()) + ": " + s.ToString());
    measured_s = static_cast<double>(NowNs() - t_measure) * 1e-9;
    answers_measured = load.answers() - answers_at_start;
    s = cp.Finish();
    if (!s.ok()) return fail("Finish: " + s.ToString());
    backup.Join();
    if (!backup.status().ok()) return fail("receiver: " + backup.status().ToString());
    auto done = backup.rx().last_complete_epoch();
    if (!done || *done + 1 != cp.next_epoch()) return fail("the replica is not at the last epoch");

    std::vector<EpochStats> ours, base;
    for (const EpochStats& e : cp.stats_history()) {
      auto it = baseline_epoch.find(e.epoch);
      if (it == baseline_epoch.end()) continue;
      (it->second ? base : ours).push_back(e);
    }
    load.Stop();
    if (load.errors() != 0)
      return fail("counterd answered " + std::to_string(load.errors()) + " requests with an error");
    if (ours.size() != static_cast<size_t>(cfg.epochs) || base.size() != static_cast<size_t>(cfg.epochs))
      return fail("stats history lost epochs");

    // ---- report ----
    Table t({"", "ours med", "ours p99", "baseline med", "baseline p99", "baseline/ours"});
    Json modes = Json::Object();
    Json jo = Json::Object(), jb = Json::Object();
    std::map<std::string, std::pair<Summary, Summary>> sums;
    for (const Metric& m : Metrics()) {
      Summary so = Summarise(ours, m), sb = Summarise(base, m);
      sums[m.key] = {so, sb};
      std::string ratio = so.median > 0 && sb.median > 0 ? Ratio(sb.median / so.median) : "-";
      t.AddRow({m.label, Fixed(so.median, m.digits), Fixed(so.p99, m.digits), Fixed(sb.median, m.digits),
                Fixed(sb.p99, m.digits), ratio});
      auto j = [&](const Summary& x) {
        return Json::Object()
            .Set("median", Round(x.median, 3))
            .Set("p99", Round(x.p99, 3))
            .Set("mean", Round(x.mean, 3))
            .Set("max", Round(x.max, 3));
      };
      jo.Set(m.key, j(so));
      jb.Set(m.key, j(sb));
    }
    t.Print();
    const auto& paused = sums["paused_ms"];
    const double r_med = paused.second.median / paused.first.median;
    const double r_p99 = paused.second.p99 / paused.first.p99;
    // A baseline that writes straight from guest memory (as Xen's does)
    // would not copy to a staging area first: its pause without the copy.
    std::vector<double> base_nocopy;
    for (const EpochStats& e : base)
      base_nocopy.push_back(U(e.paused_us - std::min(e.paused_us, e.copy_us)) / 1e3);
    const double r_nocopy = Median(base_nocopy) / paused.first.median;
    const double rate = measured_s > 0 ? static_cast<double>(answers_measured) / measured_s : 0;
    const double emit_gbps =
        sums["emit_paused_ms"].second.median > 0
            ? sums["wire_mb"].second.median * 1e6 / (sums["emit_paused_ms"].second.median * 1e-3) / 1e9
            : 0;
    // The same epochs over a slower link: the baseline's pause with its
    // emit replaced by the wire bytes at 1 Gbit/s. Ours does not change
    // (it sends after resuming).
    const double wire_1g_ms = sums["wire_mb"].second.median * 1e6 / 125e6 * 1e3;
    const double pause_1g_ms = paused.second.median - sums["emit_paused_ms"].second.median + wire_1g_ms;
    std::printf("\n");
    PrintNote("pause, baseline / ours: median " + Ratio(r_med) + ", p99 " + Ratio(r_p99) +
              " (baseline without its staging copy: median " + Ratio(r_nocopy) + ")");
    PrintNote("load during the measured epochs: " + Fixed(rate, 0) + " INCR answers/s; " +
              std::to_string(overruns) + " epochs overran the " + std::to_string(cfg.interval_ms) +
              " ms period; baseline emits at " + Fixed(emit_gbps, 2) + " GB/s while paused");
    PrintNote("model, not measured: at 1 Gbit/s (125 MB/s) the baseline's median epoch would take " +
              Fixed(wire_1g_ms, 1) + " ms to send while paused, its pause " + Fixed(pause_1g_ms, 1) +
              " ms = " + Ratio(pause_1g_ms / paused.first.median) + " ours");
    PrintNote("p99 is the nearest rank: the value of rank " +
              std::to_string(static_cast<int>(std::ceil(0.99 * cfg.epochs))) + " of the " +
              std::to_string(cfg.epochs) + " epochs of each mode, smallest first");

    modes.Set("ours", std::move(jo)).Set("baseline", std::move(jb));
    Json doc = Json::Object();
    doc.Set("benchmark", "ftsync QEMU epoch pause")
        .Set("date", UtcNow())
        .Set("nproc", static_cast<int64_t>(nproc))
        .Set("kernel", kernel_id)
        .Set("config", Json::Object()
                           .Set("guest", "test guest (Debian kernel, busybox, counterd)")
                           .Set("machine", "pc-q35-7.2")
                           .Set("accel", "tcg")
                           .Set("ram_mb", cfg.ram_mb)
                           .Set("interval_ms", cfg.interval_ms)
                           .Set("epochs_per_mode", cfg.epochs)
                           .Set("warmup_epochs", cfg.warmup)
                           .Set("load_connections", cfg.connections)
                           .Set("load_depth", cfg.depth)
                           .Set("load_keys", cfg.keys)
                           .Set("transport", "TCP over 127.0.0.1, Receiver in the same process"))
        .Set("boot_seconds", Round(boot_s, 2))
        .Set("epoch0_seconds_until_ack", Round(epoch0_s, 3))
        .Set("load_answers_per_s", Round(rate, 1))
        .Set("overruns", overruns)
        .Set("modes", std::move(modes))
        .Set("ratio_paused_baseline_vs_ours_median", Round(r_med, 3))
        .Set("ratio_paused_baseline_vs_ours_p99", Round(r_p99, 3))
        .Set("ratio_paused_baseline_without_copy_vs_ours_median", Round(r_nocopy, 3))
        .Set("baseline_emit_gbps_while_paused", Round(emit_gbps, 3))
        .Set("model_1gbit",
             Json::Object()
                 .Set("baseline_emit_ms", Round(wire_1g_ms, 2))
                 .Set("baseline_paused_ms", Round(pause_1g_ms, 2))
                 .Set("ratio_paused_baseline_vs_ours_median", Round(pause_1g_ms / paused.first.median, 3)));
    if (!cfg.json_path.empty()) {
      if (!WriteFile(cfg.json_path, doc.Dump() + "\n")) return fail("cannot write " + cfg.json_path);
      std::printf("wrote %s\n", cfg.json_path.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace ftsync::bench

int main(int argc, char** argv) { return ftsync::bench::Main(argc, argv); }
