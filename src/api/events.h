// CloudEvents 1.0 (structured JSON) as Nex publishes them on $NEX.events.{ns}.{type}, and the
// event types it uses.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace nex::api {

namespace event_type {
inline constexpr const char* kNodeStarted = "node_started";
inline constexpr const char* kNodeStopped = "node_stopped";
inline constexpr const char* kLameDuck = "node_entered_lameduck";
inline constexpr const char* kHeartbeat = "heartbeat";
inline constexpr const char* kWorkloadDeployed = "workload_deployed";
inline constexpr const char* kWorkloadUndeployed = "workload_undeployed";
// ours: an essential workload kept failing and the node stopped restarting it.
inline constexpr const char* kWorkloadCrashLoop = "workload_crash_loop";
// ours: a kept workload could not be brought back after a restart ({retrying: false}: for good).
inline constexpr const char* kWorkloadRestoreFailed = "workload_restore_failed";
// ours: a workload's agent (or its sandbox: a microVM's VMM) ended; {code, message, restarting}.
inline constexpr const char* kWorkloadAgentExited = "workload_agent_exited";
inline constexpr const char* kFunctionExecSucceeded = "function_exec_succeeded";
inline constexpr const char* kFunctionExecFailed = "function_exec_failed";
inline constexpr const char* kAll[] = {
    kNodeStarted,         kNodeStopped,           kLameDuck,          kHeartbeat,
    kWorkloadDeployed,    kWorkloadUndeployed,    kWorkloadCrashLoop, kWorkloadRestoreFailed,
    kWorkloadAgentExited, kFunctionExecSucceeded, kFunctionExecFailed};
}  // namespace event_type

inline constexpr const char* kSystemNamespace = "system";

// A structured CloudEvent with a fresh id and the current time, as JSON text; `ns`, when given,
// is the `namespace` extension attribute.
std::string cloud_event(const std::string& source, const std::string& type,
                        const nlohmann::json& data, const std::string& ns = {});

inline std::string events_subject(const std::string& ns, const std::string& type) {
  return "$NEX.events." + ns + "." + type;
}
inline std::string logs_subject(const std::string& ns, const std::string& node,
                                const std::string& name, const std::string& id) {
  return "$NEX.logs." + ns + "." + node + "." + name + "." + id;
}

}  // namespace nex::api
