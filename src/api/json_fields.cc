#include "api/json_fields.h"

namespace nex::api {

using nlohmann::json;

Status check_body_size(std::string_view body, size_t max_bytes, const std::string& what) {
  if (body.size() <= max_bytes) return {};
  return fail(ErrorCode::kInvalidArgument, what + " is " + std::to_string(body.size()) +
                                               " bytes, more than the " +
                                               std::to_string(max_bytes) + " a node accepts");
}

namespace {

// The deepest nesting of objects and arrays in `text`, counted outside strings; stops counting
// past `limit`.
int nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<json> FieldReader::parse_object(std::string_view text, const std::string& what) {
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
    return fail(ErrorCode::kInvalidArgument, what + " nests objects or arrays more than " +
                                                 std::to_string(kMaxJsonDepth) + " levels deep");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(ErrorCode::kInvalidArgument, what + " is not valid JSON");
  if (!j.is_object()) return fail(ErrorCode::kInvalidArgument, what + " must be a JSON object");
  return j;
}

const json* FieldReader::find(const char* field) const {
  auto it = j_.find(field);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

const json* FieldReader::raw(const char* field) const { return find(field); }

void FieldReader::fail_field(const char* field, const std::string& expectation) {
  if (!error_) error_ = what_ + ": field '" + field + "' " + expectation;
}

void FieldReader::string(const char* field, std::string& out, bool required) {
  const json* v = find(field);
  if (v == nullptr) {
    if (required) fail_field(field, "is required");
    return;
  }
  if (!v->is_string()) return fail_field(field, "must be a string");
  out = v->get<std::string>();
  if (required && out.empty()) fail_field(field, "must not be empty");
}

void FieldReader::boolean(const char* field, bool& out) {
  const json* v = find(field);
  if (v == nullptr) return;
  if (!v->is_boolean()) return fail_field(field, "must be true or false");
  out = v->get<bool>();
}

void FieldReader::integer(const char* field, int64_t& out) {
  const json* v = find(field);
  if (v == nullptr) return;
  if (!v->is_number_integer()) return fail_field(field, "must be an integer");
  out = v->get<int64_t>();
}

void FieldReader::optional_integer(const char* field, std::optional<int64_t>& out) {
  const json* v = find(field);
  if (v == nullptr) return;
  if (!v->is_number_integer()) return fail_field(field, "must be an integer");
  out = v->get<int64_t>();
}

void FieldReader::string_list(const char* field, std::vector<std::string>& out) {
  const json* v = find(field);
  if (v == nullptr) return;
  if (!v->is_array()) return fail_field(field, "must be an array of strings");
  out.clear();
  for (const auto& e : *v) {
    if (!e.is_string()) return fail_field(field, "must be an array of strings");
    out.push_back(e.get<std::string>());
  }
}

void FieldReader::string_map(const char* field, std::map<std::string, std::string>& out) {
  const json* v = find(field);
  if (v == nullptr) return;
  if (!v->is_object()) return fail_field(field, "must be an object of strings");
  out.clear();
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it->is_string()) return fail_field(field, "must be an object of strings");
    out[it.key()] = it->get<std::string>();
  }
}

void FieldReader::no_unknown_fields(std::initializer_list<const char*> known) {
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok && !error_) error_ = what_ + ": unknown field '" + it.key() + "'";
  }
}

Status FieldReader::status() const {
  if (error_) return fail(ErrorCode::kInvalidArgument, *error_);
  return {};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace nex::api
