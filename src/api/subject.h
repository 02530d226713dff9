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

}  // namespace nex::api
