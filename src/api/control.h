// The control protocol of Nex 0.2.x (docs/wire.md): request and response shapes of the
// $NEX.* subjects, their JSON, and the reply envelope. Parsing validates every field and says
// which one is wrong; serialising emits the canonical form.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::api {

class FieldReader;  // api/json_fields.h

using Tags = std::map<std::string, std::string>;

// On the wire JavaScript is "v8", the name Nex gave it; nex runs it on SpiderMonkey.
enum class WorkloadType { kNative, kJavaScript, kWasm };
std::string_view to_string(WorkloadType type);
Result<WorkloadType> parse_workload_type(std::string_view text);
inline bool is_function(WorkloadType t) { return t != WorkloadType::kNative; }

// "nats://BUCKET/key".
struct Location {
  std::string bucket;
  std::string key;
  std::string to_string() const { return "nats://" + bucket + "/" + key; }
};
Result<Location> parse_location(std::string_view url);

struct HostServicesConfig {
  std::string nats_url;
  std::string nats_user_jwt;
  std::string nats_user_seed;
  bool empty() const { return nats_url.empty() && nats_user_jwt.empty() && nats_user_seed.empty(); }
};

nlohmann::json to_json(const HostServicesConfig& h);
// Reads an optional "host_services" object field, reporting problems through `parent`.
void read_host_services(FieldReader& parent, HostServicesConfig& out);

// ours: limits of a function workload; 0 means the default (5 s, 256 MiB, as many at once as the
// host has cores, at most 4).
// A function's time limit per invocation when its request sets none.
inline constexpr int64_t kDefaultFunctionTimeoutMs = 5000;

struct FunctionLimitsConfig {
  int64_t timeout_ms = 0;   // 1 .. 300000
  int64_t memory_mib = 0;   // 16 .. 65536
  int64_t concurrency = 0;  // 1 .. 256
  // How long a JavaScript global lives (wire field "isolation", a name this code keeps for the
  // sandbox): "invocation" (the default, "" here) gives each invocation a fresh global;
  // "workload" keeps one global per engine, its built-ins frozen, so module state persists.
  std::string global_scope;
  bool empty() const {
    return timeout_ms == 0 && memory_mib == 0 && concurrency == 0 && global_scope.empty();
  }
};
nlohmann::json to_json(const FunctionLimitsConfig& l);
// Reads an optional "function_limits" object field, reporting problems through `parent`.
void read_function_limits(FieldReader& parent, FunctionLimitsConfig& out);

struct DeployRequest {
  std::vector<std::string> argv;
  std::string description;
  WorkloadType type = WorkloadType::kNative;
  Location location;
  bool essential = false;
  std::string workload_jwt;
  std::string environment;  // base64 of an xkey seal of a JSON object of strings
  std::string jsdomain;
  std::string sender_public_key;
  std::string target_node;
  std::vector<std::string> trigger_subjects;
  std::optional<int64_t> retry_count;
  std::string retried_at;
  HostServicesConfig host_services;
  std::string hash;                      // hex SHA-256 of the artifact (0.3)
  std::string workload_name;             // (0.3); else the JWT's sub
  FunctionLimitsConfig function_limits;  // ours
  // Ours: once this workload runs, the node stops the same issuer's other workloads of this name
  // in the namespace (devrun's redeploy); refused if one of them is of another type.
  bool replace = false;
};
// Accepts `location` as a string or as the marshalled Go URL object of 0.2.x clients.
Result<DeployRequest> parse_deploy_request(std::string_view json);
nlohmann::json to_json(const DeployRequest& r);
// The workload environment's keys and values are usable as KEY=VALUE strings: no NUL byte
// anywhere (it would end the string early), keys non-empty and without '='. The environment
// travels sealed, so the node checks it once opened; `what` names it in messages.
Status check_environment(const std::map<std::string, std::string>& env,
                         std::string_view what = "environment");

struct StopRequest {
  std::string workload_id;
  std::string workload_jwt;
  std::string target_node;
};
Result<StopRequest> parse_stop_request(std::string_view json);
nlohmann::json to_json(const StopRequest& r);

struct AuctionRequest {
  std::string arch;
  std::string os;
  std::optional<bool> sandboxed;
  Tags tags;
  std::vector<std::string> workload_types;
};
Result<AuctionRequest> parse_auction_request(std::string_view json);

// Workload names are used in subjects and bucket names.
Status validate_workload_name(std::string_view name);
Status validate_namespace(std::string_view ns);

// {"type": T, "data": {...}, "error": null}; on failure data is "" and error the reason.
std::string envelope(std::string_view kind, const nlohmann::json& data);
std::string envelope_error(std::string_view kind, std::string_view error);
// kind is "ping", "info", "run", "stop", "auction" or "lameduck".
std::string response_type(std::string_view kind);

// "1h2m3s" as Nex prints uptimes.
std::string format_uptime(int64_t seconds);

}  // namespace nex::api
