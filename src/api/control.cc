#include "api/control.h"

#include <regex>

#include "api/json_fields.h"
#include "api/subject.h"
#include "core/terminal_text.h"

namespace nex::api {

using nlohmann::json;

std::string_view to_string(WorkloadType type) {
  switch (type) {
    case WorkloadType::kNative:
      return "native";
    case WorkloadType::kJavaScript:
      return "v8";
    case WorkloadType::kWasm:
      return "wasm";
  }
  return "native";
}

Result<WorkloadType> parse_workload_type(std::string_view text) {
  if (text == "native" || text == "elf") return WorkloadType::kNative;
  if (text == "v8" || text == "javascript") return WorkloadType::kJavaScript;
  if (text == "wasm") return WorkloadType::kWasm;
  return fail(ErrorCode::kInvalidArgument,
              "unknown workload type '" + std::string(text) + "': expected native, v8 or wasm");
}

Result<Location> parse_location(std::string_view url) {
  constexpr std::string_view kScheme = "nats://";
  if (url.rfind(kScheme, 0) != 0) {
    return fail(ErrorCode::kInvalidArgument,
                "location '" + std::string(url) + "' must look like nats://BUCKET/key");
  }
  const std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 >= rest.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "location '" + std::string(url) + "' must look like nats://BUCKET/key");
  }
  return Location{std::string(rest.substr(0, slash)), std::string(rest.substr(slash + 1))};
}

namespace {

// Names that end up in subjects and bucket names.
Status validate_name(std::string_view what, std::string_view value) {
  static const std::regex kName("[a-zA-Z0-9_-]+");
  if (!std::regex_match(value.begin(), value.end(), kName)) {
    return fail(ErrorCode::kInvalidArgument,
                std::string(what) + " '" + std::string(value) + "' must match ^[a-zA-Z0-9_-]+$");
  }
  return {};
}

}  // namespace

Status validate_workload_name(std::string_view name) {
  return validate_name("workload name", name);
}
Status validate_namespace(std::string_view ns) { return validate_name("namespace", ns); }

json to_json(const HostServicesConfig& h) {
  return {{"nats_url", h.nats_url},
          {"nats_user_jwt", h.nats_user_jwt},
          {"nats_user_seed", h.nats_user_seed}};
}

void read_host_services(FieldReader& parent, HostServicesConfig& out) {
  const json* hs = parent.raw("host_services");
  if (hs == nullptr) return;
  if (!hs->is_object()) return parent.fail_field("host_services", "must be an object");
  FieldReader h(*hs, "host_services");
  h.string("nats_url", out.nats_url);
  h.string("nats_user_jwt", out.nats_user_jwt);
  h.string("nats_user_seed", out.nats_user_seed);
  if (auto st = h.status(); !st)
    parent.fail_field("host_services", "is invalid: " + st.error().message);
}

json to_json(const FunctionLimitsConfig& l) {
  json j = json::object();
  if (l.timeout_ms) j["timeout_ms"] = l.timeout_ms;
  if (l.memory_mib) j["memory_mib"] = l.memory_mib;
  if (l.concurrency) j["concurrency"] = l.concurrency;
  if (!l.global_scope.empty()) j["isolation"] = l.global_scope;
  return j;
}

void read_function_limits(FieldReader& parent, FunctionLimitsConfig& out) {
  const json* fl = parent.raw("function_limits");
  if (fl == nullptr) return;
  if (!fl->is_object()) return parent.fail_field("function_limits", "must be an object");
  FieldReader l(*fl, "function_limits");
  l.no_unknown_fields({"timeout_ms", "memory_mib", "concurrency", "isolation"});
  l.string("isolation", out.global_scope);
  if (!out.global_scope.empty() && out.global_scope != "invocation" &&
      out.global_scope != "workload")
    l.fail_field("isolation", "must be \"invocation\" or \"workload\"");
  l.integer("timeout_ms", out.timeout_ms);
  l.integer("memory_mib", out.memory_mib);
  l.integer("concurrency", out.concurrency);
  struct Bound {
    const char* field;
    int64_t value, lo, hi;
  };
  for (const Bound& b : {Bound{"timeout_ms", out.timeout_ms, 1, 300000},
                         Bound{"memory_mib", out.memory_mib, 16, 65536},
                         Bound{"concurrency", out.concurrency, 1, 256}}) {
    if (b.value != 0 && (b.value < b.lo || b.value > b.hi))
      l.fail_field(b.field, "must be between " + std::to_string(b.lo) + " and " +
                                std::to_string(b.hi) + " (or absent for the default)");
  }
  if (auto st = l.status(); !st)
    parent.fail_field("function_limits", "is invalid: " + st.error().message);
}

namespace {

void read_argv(FieldReader& f, std::vector<std::string>& argv) {
  f.string_list("argv", argv);
  for (size_t i = 0; i < argv.size(); ++i) {
    // execve() reads each argument up to its first NUL: ["echo","a\0b"] would run `echo a`.
    if (argv[i].find('\0') != std::string::npos) {
      const std::string field = "argv[" + std::to_string(i) + "]";
      f.fail_field(field.c_str(), "holds a NUL byte, which would end that argument early");
    }
  }
}

void read_trigger_subjects(FieldReader& f, std::vector<std::string>& subjects) {
  f.string_list("trigger_subjects", subjects);
  for (size_t i = 0; i < subjects.size(); ++i) {
    // Checked here, before the node takes an agent: the subscription would fail much later.
    if (auto why = subject_problem(subjects[i], /*wildcards=*/true); !why.empty()) {
      const std::string field = "trigger_subjects[" + std::to_string(i) + "]";
      f.fail_field(field.c_str(),
                   "'" + terminal_safe(subjects[i]) + "' is not a valid NATS subject: " + why);
    }
  }
}

// location: "nats://B/k", or Go's marshalled url.URL {"Scheme","Host","Path",...}.
void read_location(FieldReader& f, Location& out) {
  const json* loc = f.raw("location");
  if (loc == nullptr) {
    f.fail_field("location", "is required (nats://BUCKET/key)");
  } else if (loc->is_string()) {
    auto parsed = parse_location(loc->get<std::string>());
    if (!parsed) {
      f.fail_field("location", "must look like nats://BUCKET/key");
    } else {
      out = *parsed;
    }
  } else if (loc->is_object()) {
    const std::string scheme =
        loc->value("Scheme", json()).is_string() ? (*loc)["Scheme"].get<std::string>() : "";
    const std::string host =
        loc->value("Host", json()).is_string() ? (*loc)["Host"].get<std::string>() : "";
    std::string path =
        loc->value("Path", json()).is_string() ? (*loc)["Path"].get<std::string>() : "";
    if (!path.empty() && path[0] == '/') path.erase(0, 1);
    if (scheme != "nats" || host.empty() || path.empty()) {
      f.fail_field("location", "must look like nats://BUCKET/key");
    } else {
      out = Location{host, path};
    }
  } else {
    f.fail_field("location", "must be a string like nats://BUCKET/key");
  }
}

// What holds across the fields, once each one is read.
Status check_deploy_request(const DeployRequest& r) {
  if (r.function_limits.global_scope == "workload" && r.type != WorkloadType::kJavaScript) {
    return fail(ErrorCode::kInvalidArgument,
                "deploy request: field 'function_limits.isolation' \"workload\" is for JavaScript "
                "(v8) functions only; WebAssembly runs a fresh instance per invocation");
  }
  if (!r.workload_name.empty()) NEX_RETURN_IF_ERROR(validate_workload_name(r.workload_name));
  if (!r.hash.empty()) {
    static const std::regex kHex("[0-9a-fA-F]{64}");
    if (!std::regex_match(r.hash, kHex)) {
      return fail(
          ErrorCode::kInvalidArgument,
          "deploy request: field 'hash' must be the hex SHA-256 of the artifact (64 hex digits)");
    }
  }
  return {};
}

}  // namespace

Result<DeployRequest> parse_deploy_request(std::string_view text) {
  auto j = FieldReader::parse_object(text, "deploy request");
  if (!j) return fail(j.error());
  FieldReader f(*j, "deploy request");
  DeployRequest r;
  read_argv(f, r.argv);
  f.string("description", r.description);
  std::string type = "native";
  f.string("type", type);
  f.boolean("essential", r.essential);
  f.boolean("replace", r.replace);
  f.string("workload_jwt", r.workload_jwt, /*required=*/true);
  f.string("environment", r.environment);
  f.string("jsdomain", r.jsdomain);
  f.string("sender_public_key", r.sender_public_key, /*required=*/true);
  f.string("target_node", r.target_node);
  read_trigger_subjects(f, r.trigger_subjects);
  f.optional_integer("retry_count", r.retry_count);
  f.string("retried_at", r.retried_at);
  f.string("hash", r.hash);
  f.string("workload_name", r.workload_name);
  read_host_services(f, r.host_services);
  read_function_limits(f, r.function_limits);
  read_location(f, r.location);
  NEX_RETURN_IF_ERROR(f.status());
  auto t = parse_workload_type(type);
  if (!t)
    return fail(ErrorCode::kInvalidArgument, "deploy request: field 'type': " + t.error().message);
  r.type = *t;
  NEX_RETURN_IF_ERROR(check_deploy_request(r));
  return r;
}

Status check_environment(const std::map<std::string, std::string>& env, std::string_view what) {
  auto refuse = [&](const std::string& problem) -> Status {
    return fail(ErrorCode::kInvalidArgument, std::string(what) + ": " + problem);
  };
  for (const auto& [key, value] : env) {
    const std::string quoted = dump(key);  // JSON-quoted: a NUL shows as \u0000
    if (key.empty()) return refuse("a key is empty");
    if (key.find('\0') != std::string::npos)
      return refuse("key " + quoted + " holds a NUL byte, which would end it early");
    if (key.find('=') != std::string::npos)
      return refuse("key " + quoted + " holds '=', which would make it another key and value");
    if (value.find('\0') != std::string::npos)
      return refuse("the value of " + quoted + " holds a NUL byte, which would end it early");
  }
  return {};
}

json to_json(const DeployRequest& r) {
  json j = {{"argv", r.argv},
            {"description", r.description},
            {"type", to_string(r.type)},
            {"location", r.location.to_string()},
            {"essential", r.essential},
            {"workload_jwt", r.workload_jwt},
            {"environment", r.environment},
            {"sender_public_key", r.sender_public_key},
            {"target_node", r.target_node},
            {"trigger_subjects", r.trigger_subjects}};
  if (!r.jsdomain.empty()) j["jsdomain"] = r.jsdomain;
  if (r.retry_count) j["retry_count"] = *r.retry_count;
  if (!r.retried_at.empty()) j["retried_at"] = r.retried_at;
  if (!r.host_services.empty()) j["host_services"] = to_json(r.host_services);
  if (!r.function_limits.empty()) j["function_limits"] = to_json(r.function_limits);
  if (!r.hash.empty()) j["hash"] = r.hash;
  if (!r.workload_name.empty()) j["workload_name"] = r.workload_name;
  if (r.replace) j["replace"] = true;  // absent otherwise: what Nex tooling sends
  return j;
}

Result<StopRequest> parse_stop_request(std::string_view text) {
  auto j = FieldReader::parse_object(text, "stop request");
  if (!j) return fail(j.error());
  FieldReader f(*j, "stop request");
  StopRequest r;
  f.string("workload_id", r.workload_id, /*required=*/true);
  f.string("workload_jwt", r.workload_jwt, /*required=*/true);
  f.string("target_node", r.target_node);
  NEX_RETURN_IF_ERROR(f.status());
  return r;
}

json to_json(const StopRequest& r) {
  return {{"workload_id", r.workload_id},
          {"workload_jwt", r.workload_jwt},
          {"target_node", r.target_node}};
}

Result<AuctionRequest> parse_auction_request(std::string_view text) {
  AuctionRequest r;
  if (text.empty()) return r;
  auto j = FieldReader::parse_object(text, "auction request");
  if (!j) return fail(j.error());
  FieldReader f(*j, "auction request");
  f.string("arch", r.arch);
  f.string("os", r.os);
  if (const json* s = f.raw("sandboxed")) {
    if (!s->is_boolean()) {
      f.fail_field("sandboxed", "must be true or false");
    } else {
      r.sandboxed = s->get<bool>();
    }
  }
  f.string_map("tags", r.tags);
  f.string_list("workload_types", r.workload_types);
  NEX_RETURN_IF_ERROR(f.status());
  return r;
}

std::string response_type(std::string_view kind) {
  return "io.nats.nex.v1." + std::string(kind) + "_response";
}

std::string envelope(std::string_view kind, const json& data) {
  return dump(json{{"type", response_type(kind)}, {"data", data}, {"error", nullptr}});
}

std::string envelope_error(std::string_view kind, std::string_view error) {
  return dump(json{{"type", response_type(kind)}, {"data", ""}, {"error", std::string(error)}});
}

std::string format_uptime(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  const int64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
                s = seconds % 60;
  std::string out;
  if (d > 0) out += std::to_string(d) + "d";
  if (d > 0 || h > 0) out += std::to_string(h) + "h";
  if (d > 0 || h > 0 || m > 0) out += std::to_string(m) + "m";
  return out + std::to_string(s) + "s";
}

}  // namespace nex::api
