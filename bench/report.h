// ftsync benchmarks: the two outputs of a run, a readable table on stdout
// and a JSON document (bench/README.md describes both).
#ifndef FTSYNC_BENCH_REPORT_H_
#define FTSYNC_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ftsync::bench {

// An ordered JSON value: object members keep insertion order, so the file
// reads in the same order as the table.
class Json {
 public:
  static Json Object();
  static Json Array();
  static Json Null();
  Json(double v);                 // NOLINT: implicit by design
  Json(int v) : Json(static_cast<int64_t>(v)) {}  // NOLINT
  Json(int64_t v);                // NOLINT
  Json(uint64_t v);               // NOLINT
  Json(bool v);                   // NOLINT
  Json(const char* v);            // NOLINT
  Json(const std::string& v);     // NOLINT

  // Object: adds (or appends a duplicate of) member `key`. Returns *this.
  Json& Set(const std::string& key, Json value);
  // Array: appends `value`. Returns *this.
  Json& Push(Json value);

  // Serialises with two-space indentation.
  std::string Dump(int indent = 0) const;

 private:
  enum class Kind { kScalar, kObject, kArray };
  explicit Json(Kind kind) : kind_(kind) {}

  Kind kind_ = Kind::kScalar;
  std::string scalar_;  // kScalar: the serialised value
  std::vector<std::pair<std::string, Json>> members_;  // kObject, kArray (keys unused)
};

// A fixed-width text table; columns widen to their longest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Prints the table to stdout, each line prefixed by two spaces.
  void Print() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Prints a section title, underlined.
void PrintSection(const std::string& title);
// Prints one indented note line.
void PrintNote(const std::string& text);

// `v` with `digits` digits after the point.
std::string Fixed(double v, int digits);
// `v` as a ratio, e.g. "0.87x".
std::string Ratio(double v);

// Rounds `v` to `digits` decimal digits, for tidy JSON numbers.
double Round(double v, int digits);

// The current time as "2026-11-24T22:55:39Z", for reports.
std::string UtcNow();

// Writes `text` to `path` (creating its directory); false on any failure.
bool WriteFile(const std::string& path, const std::string& text);

}  // namespace ftsync::bench

#endif  // FTSYNC_BENCH_REPORT_H_
