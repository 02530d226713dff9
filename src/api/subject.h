// NATS subjects as tokens: "$NEX.logs.default.N1.echo.id" -> {"$NEX", "logs", "default", ...}.
#pragma once

#include <string_view>
#include <vector>

namespace nex::api {

inline std::vector<std::string_view> subject_tokens(std::string_view subject) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t dot; (dot = subject.find('.', start)) != std::string_view::npos; start = dot + 1)
    out.push_back(subject.substr(start, dot - start));
  out.push_back(subject.substr(start));
  return out;
}

// True when the two subjects (with * and > wildcards) can match a common subject; for a literal
// subject and a pattern, whether the pattern matches it.
inline bool subjects_overlap(std::string_view a, std::string_view b) {
  auto ta = subject_tokens(a), tb = subject_tokens(b);
  for (size_t i = 0;; ++i) {
    const bool ea = i >= ta.size(), eb = i >= tb.size();
    if (ea || eb) return ea && eb;
    if (ta[i] == ">" || tb[i] == ">") return true;
    if (ta[i] != "*" && tb[i] != "*" && ta[i] != tb[i]) return false;
  }
}

}  // namespace nex::api
