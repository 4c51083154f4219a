// ftsync_bench: the core benchmark of `make bench`.
//
//   ftsync_bench [--quick] [--json PATH] [--only N[,N...]]
//
// Prints one table section per measurement and, with --json, writes the
// same figures with the machine's identity to PATH (bench/README.md).
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <string>

#include "benchmarks.h"
#include "timing.h"

namespace ftsync::bench {
namespace {

void Usage(FILE* f) {
  std::fprintf(f,
               "usage: ftsync_bench [--quick] [--json PATH] [--only LIST]\n"
               "  --json PATH  also write the figures as JSON to PATH (directories are created)\n"
               "  --quick      smaller sizes and fewer repetitions: a smoke run of a few seconds\n"
               "  --only LIST  run only these sections, comma-separated numbers:\n"
               "               1 staging, 2 encoding, 3 epochs, 4 Linux dirty tracker\n"
               "  --help       this text\n"
               "Every headline figure is a ratio to a baseline measured in the same run\n"
               "(see bench/README.md).\n");
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "ftsync_bench: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok &= std::fclose(f) == 0;
  if (!ok) std::fprintf(stderr, "ftsync_bench: error writing %s\n", path.c_str());
  return ok;
}

int Main(int argc, char** argv) {
  BenchConfig config;
  std::string json_path;
  std::set<int> only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    } else if (a == "--quick") {
      config.quick = true;
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      std::string list = argv[++i];
      for (char c : list) {
        if (c >= '1' && c <= '4') only.insert(c - '0');
        else if (c != ',') {
          std::fprintf(stderr, "ftsync_bench: --only takes section numbers 1-4, got '%s'\n", list.c_str());
          return 2;
        }
      }
    } else {
      std::fprintf(stderr, "ftsync_bench: unknown or incomplete argument '%s'\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  if (config.quick) {
    config.reps = 3;
    config.epochs = 3;
  }
  auto wanted = [&](int n) { return only.empty() || only.count(n) != 0; };

  utsname u{};
  uname(&u);
  const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  Json doc = Json::Object();
  doc.Set("benchmark", "ftsync core")
      .Set("date", UtcNow())
      .Set("hostname", Hostname())
      .Set("nproc", static_cast<int64_t>(nproc))
      .Set("kernel", std::string(u.sysname) + " " + u.release + " " + u.machine)
      .Set("compiler", __VERSION__)
      .Set("quick", config.quick)
      .Set("reps", config.reps)
      .Set("epochs_per_count", config.epochs);
  std::printf("ftsync core benchmark%s: %s, %s, %ld CPUs, %s %s\n", config.quick ? " (--quick)" : "",
              UtcNow().c_str(), Hostname().c_str(), nproc, u.sysname, u.release);
  std::printf("Ratios compare against baselines measured in this run; medians of repeated runs.\n");

  uint64_t t0 = NowNs();
  Json sections = Json::Object();
  if (wanted(1)) sections.Set("staging", RunStagingBench(config));
  if (wanted(2)) sections.Set("encoding", RunEncodingBench(config));
  if (wanted(3)) sections.Set("epochs", RunEpochBench(config));
  if (wanted(4)) sections.Set("linux_tracker", RunTrackerBench(config));
  double total_s = static_cast<double>(NowNs() - t0) * 1e-9;
  doc.Set("total_seconds", Round(total_s, 1)).Set("sections", std::move(sections));

  std::printf("\ntotal %.1f s\n", total_s);
  if (!json_path.empty()) {
    if (!WriteFile(json_path, doc.Dump() + "\n")) return 1;
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace ftsync::bench

int main(int argc, char** argv) { return ftsync::bench::Main(argc, argv); }
