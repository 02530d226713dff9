// Reads fields out of a JSON object with precise errors ("field 'argv' must be an array of
// strings"): every request from the network is validated here before anything acts on it.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::api {

// What a request from the network may be: its size is checked before it is parsed, and the
// parse refuses deeper nesting, so no sender can make a node spend memory out of proportion.
inline constexpr size_t kMaxRequestBytes = 1 << 20;
inline constexpr int kMaxJsonDepth = 32;
Status check_body_size(std::string_view body, size_t max_bytes, const std::string& what);

class FieldReader {
 public:
  // `what` names the object in messages, e.g. "deploy request".
  FieldReader(const nlohmann::json& object, std::string what)
      : j_(object), what_(std::move(what)) {}

  // Parses text into an object, or returns an error naming `what`. Objects and arrays nested
  // deeper than kMaxJsonDepth are refused before parsing.
  static Result<nlohmann::json> parse_object(std::string_view text, const std::string& what);

  void string(const char* field, std::string& out, bool required = false);
  void boolean(const char* field, bool& out);
  void integer(const char* field, int64_t& out);
  void optional_integer(const char* field, std::optional<int64_t>& out);
  void string_list(const char* field, std::vector<std::string>& out);
  void string_map(const char* field, std::map<std::string, std::string>& out);
  // Any JSON value (for fields with more than one accepted form).
  const nlohmann::json* raw(const char* field) const;

  // Rejects fields not in `known`, naming the first unknown one.
  void no_unknown_fields(std::initializer_list<const char*> known);
  void fail_field(const char* field, const std::string& expectation);

  // The first problem found, if any.
  Status status() const;

 private:
  const nlohmann::json* find(const char* field) const;
  const nlohmann::json& j_;
  std::string what_;
  std::optional<std::string> error_;
};

std::string dump(const nlohmann::json& j);  // never throws on invalid UTF-8

}  // namespace nex::api
