// The node <-> agent protocol on the internal NATS server (docs/wire.md): subjects and
// JSON. The agent's subjects are agentint.{id}.*; the node's, seen by the agent, hostint.{id}.*.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/control.h"
#include "core/error.h"
#include "nats/msg.h"

namespace nex::api {

namespace agent_subject {
inline std::string deploy(const std::string& id) { return "agentint." + id + ".deploy"; }
inline std::string undeploy(const std::string& id) { return "agentint." + id + ".undeploy"; }
inline std::string ping(const std::string& id) { return "agentint." + id + ".ping"; }
inline std::string trigger(const std::string& id) { return "agentint." + id + ".trigger"; }
inline std::string handshake(const std::string& id) { return "hostint." + id + ".handshake"; }
// ours: where the agent answers a trigger; the node forwards the answer to the caller.
inline std::string trigger_reply(const std::string& id, const std::string& token) {
  return "hostint." + id + ".trigger_reply." + token;
}
inline std::string logs(const std::string& id) { return "hostint." + id + ".logs"; }
// ours: {"offset": N} -> up to kArtifactChunk bytes of the agent's artifact from N (microVMs).
inline std::string artifact(const std::string& id) { return "hostint." + id + ".artifact"; }
inline constexpr size_t kArtifactChunk = 512 * 1024;
inline std::string events(const std::string& id, const std::string& type) {
  return "hostint." + id + ".events." + type;
}
// ours: a function's invocations, reported in batches (docs/protocol-additions.md).
inline std::string invocations(const std::string& id) { return "hostint." + id + ".invocations"; }
}  // namespace agent_subject

// Function triggers (docs/wire.md): the user's subject travels in a header; the answer
// carries the run time and, for a failed invocation, the error as NATS micro services report it.
inline constexpr const char* kHeaderTriggerSubject = "x-nex-trigger-subject";
inline constexpr const char* kHeaderRuntimeNs = "x-nex-runtime-ns";
inline constexpr const char* kHeaderServiceError = "Nats-Service-Error";
inline constexpr const char* kHeaderServiceErrorCode = "Nats-Service-Error-Code";

// What a trigger's caller hears when its function stopped before answering it (the runtime's
// words, runtime::kFunctionStopped, which the node repeats when it answers for an agent).
inline constexpr const char* kFunctionStopped = "the function was stopped";

// How long a stopping function's triggers, already received, are still handed on (by the node
// to the agent when it relays, by the agent to its engines) before the rest is dropped.
inline constexpr std::chrono::milliseconds kTriggerDrainTimeout{2000};

// The run time rides along unless its header would push a maximal reply over the limit.
inline bool runtime_header_fits(size_t body_bytes, int64_t max_payload) {
  return static_cast<int64_t>(body_bytes) + 64 <= max_payload;
}

// Why a function's reply of `body_bytes` cannot reach its caller on a NATS that takes
// `max_payload` bytes, or empty when it can (a reply goes without its runtime header when that
// would not fit, see runtime_header_fits). Such a reply is answered with this error instead, and
// counted a failed invocation.
inline std::string reply_too_large(size_t body_bytes, int64_t max_payload) {
  if (static_cast<int64_t>(body_bytes) <= max_payload) return {};
  return "the function's reply of " + std::to_string(body_bytes) +
         " bytes is more than this NATS server takes (max_payload " + std::to_string(max_payload) +
         ")";
}

// A function's reply as its caller gets it, whichever way the trigger came (the agent answering
// directly, or the node for it): the body; for a failure, the body as the headers NATS micro
// services report errors with (code `error_code`); and the run time, when there is one and its
// header fits under `max_payload`.
Result<nats::Message> function_reply(std::string_view reply_to, std::string_view body, bool failed,
                                     std::optional<int64_t> runtime_ns, int64_t max_payload,
                                     const std::string& error_code = "500");

// Environment variables a process or namespace sandbox hands its agent.
inline constexpr const char* kEnvWorkloadId = "NEX_WORKLOADID";
inline constexpr const char* kEnvNatsHost = "NEX_NODE_NATS_HOST";
inline constexpr const char* kEnvNatsPort = "NEX_NODE_NATS_PORT";
inline constexpr const char* kEnvNatsSeed = "NEX_NODE_NATS_NKEY_SEED";
// ours: where a local sandbox finds the artifact the node placed for it.
inline constexpr const char* kEnvArtifactPath = "NEX_ARTIFACT_PATH";
// ours, microVMs: the artifact is not there; the agent fetches it from the node
// (hostint.{id}.artifact) to NEX_ARTIFACT_PATH.
inline constexpr const char* kEnvArtifactFetch = "NEX_ARTIFACT_FETCH";
// ours, microVMs: HOST:PORT of the VM's gateway for host loopback ports. The agent serves each
// loopback port its workload is to reach on the guest's own loopback, through this gateway.
inline constexpr const char* kEnvLoopbackGateway = "NEX_LOOPBACK_GATEWAY";
// ours, process and namespace sandboxes: the descriptor number of the agent's end of the node's
// trigger channel (triggers/frames.h).
inline constexpr const char* kEnvTriggerFd = "NEX_TRIGGER_FD";

struct AgentDeployRequest {
  std::vector<std::string> argv;
  std::string description;
  std::map<std::string, std::string> environment;  // decrypted
  bool essential = false;
  std::string hash;
  std::string ns;  // "namespace" on the wire
  std::string retried_at;
  int64_t retry_count = 0;
  int64_t total_bytes = 0;
  std::vector<std::string> trigger_subjects;
  std::string workload_name;
  WorkloadType workload_type = WorkloadType::kNative;
  HostServicesConfig host_services;
  FunctionLimitsConfig function_limits;  // ours
  // ours: when set, the agent subscribes to the trigger subjects on this NATS (no credentials)
  // and answers callers directly, instead of the node relaying.
  std::vector<std::string> trigger_nats_urls;
  // ours: with trigger_nats_urls, the user the agent logs in as there (operator mode): a JWT the
  // node signed that allows only the trigger subjects and their replies, and its seed.
  std::string trigger_nats_jwt;
  std::string trigger_nats_seed;
  // ours: the node relays the triggers over its trigger channel (triggers/frames.h) rather
  // than on agentint.{id}.trigger.
  bool trigger_channel = false;
  // ours: the most a reply may carry on the NATS its callers are on (the node's control NATS,
  // when the node passes the answers on); 0: the agent's own connection's limit.
  int64_t reply_max_payload = 0;
};
nlohmann::json to_json(const AgentDeployRequest& r);
Result<AgentDeployRequest> parse_agent_deploy_request(std::string_view json);

struct AgentDeployResponse {
  bool accepted = false;
  std::string message;
};

// One function invocation as the agent reports it; the node adds what it knows itself (the
// workload's name and namespace) when it republishes it as a function_exec_* event.
struct InvocationReport {
  std::string trigger_subject;
  int64_t elapsed_nanos = 0;
  std::optional<std::string> error;  // set when the invocation failed
};
// A batch on the wire: a JSON array of {trigger_subject, elapsed_nanos[, error]}.
std::string invocation_batch_json(const std::vector<InvocationReport>& batch);
Result<std::vector<InvocationReport>> parse_invocation_batch(std::string_view json);

struct LogLine {
  std::string source;
  std::string level;  // "info" for stdout, "error" for stderr
  std::string text;
};

}  // namespace nex::api
