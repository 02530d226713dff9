// The host-services RPC (docs/wire.md "Host services"): a function or service asks the node
// on hostint.{id}.rpc.{ns}.{workload}.{service}.{method}, with parameters in headers and the
// value in the body; the answer carries x-nex-hs-code and x-nex-hs-msg. Shared by the node
// (server) and the agent (client).
#pragma once

#include <string>

namespace nex::api::host_services {

// hostint.{id}.rpc.{ns}.{workload}: the subjects of one workload's calls start so.
inline std::string rpc_prefix(const std::string& workload_id, const std::string& ns,
                              const std::string& workload) {
  return "hostint." + workload_id + ".rpc." + ns + "." + workload;
}

inline std::string rpc_subject(const std::string& workload_id, const std::string& ns,
                               const std::string& workload, const std::string& service,
                               const std::string& method) {
  return rpc_prefix(workload_id, ns, workload) + "." + service + "." + method;
}

// Services.
inline constexpr const char* kKeyValue = "kv";
inline constexpr const char* kObjectStore = "objectstore";
inline constexpr const char* kMessaging = "messaging";
inline constexpr const char* kHttp = "http";

// Answer codes (x-nex-hs-code). 403, 503 and 504 are ours (docs/protocol-additions.md).
inline constexpr int kOk = 200, kBadRequest = 400, kForbidden = 403, kNotFound = 404, kFailed = 500,
                     kUnavailable = 503, kTimedOut = 504;

inline constexpr const char* kHeaderCode = "x-nex-hs-code";
inline constexpr const char* kHeaderMessage = "x-nex-hs-msg";
// Parameters.
inline constexpr const char* kHeaderKey = "x-keyvalue-key";
inline constexpr const char* kHeaderObjectName = "x-object-name";
inline constexpr const char* kHeaderSubject = "x-subject";
inline constexpr const char* kHeaderUrl = "x-http-url";
// ours: a JSON object of request headers for HTTP calls.
inline constexpr const char* kHeaderHttpHeaders = "x-http-headers";

// The client's time limit for one call.
inline constexpr int kClientTimeoutMs = 5000;

}  // namespace nex::api::host_services
