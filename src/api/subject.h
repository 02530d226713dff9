// NATS subjects as tokens: "$NEX.logs.default.N1.echo.id" -> {"$NEX", "logs", "default", ...}.
#pragma once

#include <string>
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

// Why `subject` is not one NATS takes, or empty when it is: NATS refuses (libnats before
// sending, or the server after) an empty subject, an empty token ("a..b", ".a", "a."),
// whitespace or another control character, and '>' anywhere but as the last token. With
// `wildcards` false (publishing), '*' and '>' tokens are refused too.
inline std::string subject_problem(std::string_view subject, bool wildcards) {
  if (subject.empty()) return "it is empty";
  const auto tokens = subject_tokens(subject);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto t = tokens[i];
    if (t.empty()) return "it has an empty token (a dot at an end, or two in a row)";
    for (unsigned char c : t) {
      if (c <= ' ' || c == 0x7f) return "it holds whitespace or a control character";
    }
    if ((t == "*" || t == ">") && !wildcards)
      return "it holds the wildcard '" + std::string(t) + "'";
    if (t == ">" && i + 1 != tokens.size()) return "'>' may only be its last token";
  }
  return {};
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
