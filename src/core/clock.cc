#include "core/clock.h"

#include <fmt/format.h>
#include <cctype>
#include <ctime>

namespace nex {

int64_t unix_seconds_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339_nano(std::chrono::system_clock::time_point t) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:09d}Z", date, ns % 1'000'000'000);
}

Result<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text,
                                                            const char* field) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                std::string("field '") + field +
                    "' must be an RFC 3339 time like 2026-12-03T07:27:01Z (got '" +
                    std::string(text.substr(0, 64)) + "')");
  };
  const std::string s(text);
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  if (s.size() < kShape.size() + 1) return bad();
  for (size_t i = 0; i < kShape.size(); ++i) {
    const bool ok =
        kShape[i] == 'd' ? std::isdigit(static_cast<unsigned char>(s[i])) != 0 : s[i] == kShape[i];
    if (!ok) return bad();
  }
  std::tm tm{};
  const char* p = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (p != s.c_str() + kShape.size()) return bad();
  int64_t nanos = 0;
  if (*p == '.') {
    int digits = 0;
    for (++p; std::isdigit(static_cast<unsigned char>(*p)); ++p, ++digits) {
      if (digits < 9) nanos = nanos * 10 + (*p - '0');
    }
    if (digits == 0) return bad();
    for (; digits < 9; ++digits) nanos *= 10;
  }
  int64_t offset_s = 0;
  if (*p == 'Z' || *p == 'z') {
    ++p;
  } else if ((*p == '+' || *p == '-') && std::isdigit(static_cast<unsigned char>(p[1])) &&
             std::isdigit(static_cast<unsigned char>(p[2])) && p[3] == ':' &&
             std::isdigit(static_cast<unsigned char>(p[4])) &&
             std::isdigit(static_cast<unsigned char>(p[5]))) {
    const int64_t minutes =
        ((p[1] - '0') * 10 + (p[2] - '0')) * 60 + (p[4] - '0') * 10 + (p[5] - '0');
    offset_s = (*p == '+' ? 1 : -1) * minutes * 60;
    p += 6;
  } else {
    return bad();
  }
  if (*p != '\0') return bad();
  const int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset_s;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(secs) + std::chrono::nanoseconds(nanos)));
}

}  // namespace nex
