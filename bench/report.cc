#include "report.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace ftsync::bench {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

Json Json::Object() { return Json(Kind::kObject); }
Json Json::Array() { return Json(Kind::kArray); }
Json Json::Null() {
  Json j(Kind::kScalar);
  j.scalar_ = "null";
  return j;
}

Json::Json(double v) {
  if (!std::isfinite(v)) {
    scalar_ = "null";
    return;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  scalar_ = buf;
}
Json::Json(int64_t v) : scalar_(std::to_string(v)) {}
Json::Json(uint64_t v) : scalar_(std::to_string(v)) {}
Json::Json(bool v) : scalar_(v ? "true" : "false") {}
Json::Json(const char* v) : scalar_(Quote(v)) {}
Json::Json(const std::string& v) : scalar_(Quote(v)) {}

Json& Json::Set(const std::string& key, Json value) {
  members_.emplace_back(key, std::move(value));
  return *this;
}

Json& Json::Push(Json value) {
  members_.emplace_back(std::string(), std::move(value));
  return *this;
}

std::string Json::Dump(int indent) const {
  if (kind_ == Kind::kScalar) return scalar_;
  const bool object = kind_ == Kind::kObject;
  if (members_.empty()) return object ? "{}" : "[]";
  std::string pad(static_cast<size_t>(indent + 2), ' ');
  std::string out = object ? "{\n" : "[\n";
  for (size_t i = 0; i < members_.size(); ++i) {
    out += pad;
    if (object) out += Quote(members_[i].first) + ": ";
    out += members_[i].second.Dump(indent + 2);
    out += i + 1 < members_.size() ? ",\n" : "\n";
  }
  out += std::string(static_cast<size_t>(indent), ' ') + (object ? "}" : "]");
  return out;
}

void Table::Print() const {
  std::vector<size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  };
  widen(header_);
  for (const auto& r : rows_) widen(r);
  auto line = [&](const std::vector<std::string>& row) {
    std::string s = " ";
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      // First column left-aligned (labels), the rest right-aligned (numbers).
      if (i == 0) s += " " + cell + std::string(width[i] - cell.size(), ' ');
      else s += "  " + std::string(width[i] - cell.size(), ' ') + cell;
    }
    std::printf("%s\n", s.c_str());
  };
  line(header_);
  size_t total = 1;
  for (size_t w : width) total += w + 2;
  std::printf("  %s\n", std::string(total - 2, '-').c_str());
  for (const auto& r : rows_) line(r);
  std::fflush(stdout);
}

void PrintSection(const std::string& title) {
  std::printf("\n%s\n%s\n", title.c_str(), std::string(title.size(), '=').c_str());
  std::fflush(stdout);
}

void PrintNote(const std::string& text) {
  std::printf("  %s\n", text.c_str());
  std::fflush(stdout);
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string Ratio(double v) {
  return Fixed(v, v < 10 ? 3 : 1) + "x";
}

double Round(double v, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  return static_cast<bool>(f);
}

}  // namespace ftsync::bench
