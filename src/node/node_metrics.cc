#include "node/node_metrics.h"

namespace nex::node {

NodeMetrics::NodeMetrics() {
  auto& r = registry_;
  r.gauge("nex_node_info", "The node: its id, name and version (always 1).");
  r.gauge("nex_node_uptime_seconds", "Seconds since the node started.");
  r.gauge("nex_workloads", "Workloads on the node, by namespace, type and state.");
  r.gauge("nex_warm_agents", "Agents booted and waiting for a workload (machine_pool_size).");
  r.counter("nex_deploys_total", "Deploys that started their workload, by origin.");
  r.counter("nex_deploy_failures_total", "Deploys refused or failed, by origin.");
  r.counter("nex_function_invocations_total", "Function invocations, by namespace and workload.");
  r.counter("nex_function_errors_total", "Function invocations that failed.");
  r.histogram("nex_function_duration_seconds", "Run time of function invocations in the agent.",
              {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
               2.5, 5});
  r.counter("nex_host_service_calls_total", "Host-service calls, by service and answer code.");
  r.counter("nex_agent_restarts_total", "Restarts of essential workloads that exited.");
  r.counter("nex_workload_log_lines_dropped_total",
            "Log lines of a workload dropped over the rate limit (node config workload_logs).");
  r.gauge("nex_command_queue_depth",
          "Durable commands filed for this node and not finished, by method.");
  r.counter("nex_commands_unverified_dropped_total",
            "Durable commands dropped unread or unrun: unsigned, badly signed, too large, for "
            "another node, or from an issuer not in valid_issuers.");
  r.series("nex_commands_unverified_dropped_total");  // 0 from the start, not absent
  r.counter("nex_nats_reconnects_total", "Reconnects of the node's NATS connections.");
  r.counter("nex_command_audit_write_failures_total",
            "Records of the durable commands' audit log that the disk did not take.");
  (void)r.series("nex_command_audit_write_failures_total", {});  // reported from 0
}

void NodeMetrics::deploy(const std::string& origin, bool started) {
  registry_.add(started ? "nex_deploys_total" : "nex_deploy_failures_total", {{"origin", origin}});
}

NodeMetrics::Function NodeMetrics::function(const std::string& ns, const std::string& workload,
                                            const std::string& type) {
  const metrics::Labels labels = {{"namespace", ns}, {"workload", workload}, {"type", type}};
  return {registry_.series("nex_function_invocations_total", labels),
          registry_.series("nex_function_duration_seconds", labels), &registry_, labels};
}

void NodeMetrics::Function::invocation(bool failed, int64_t elapsed_nanos) const {
  invocations->add();
  if (failed) registry->add("nex_function_errors_total", labels);
  if (elapsed_nanos > 0) duration->observe(static_cast<double>(elapsed_nanos) / 1e9);
}

void NodeMetrics::host_service_call(const std::string& service, int code) {
  registry_.add("nex_host_service_calls_total",
                {{"service", service}, {"code", std::to_string(code)}});
}

void NodeMetrics::agent_restart(const std::string& ns, const std::string& workload) {
  registry_.add("nex_agent_restarts_total", {{"namespace", ns}, {"workload", workload}});
}

metrics::Series* NodeMetrics::log_lines_dropped(const std::string& ns, const std::string& workload,
                                                const std::string& type) {
  return registry_.series("nex_workload_log_lines_dropped_total",
                          {{"namespace", ns}, {"workload", workload}, {"type", type}});
}

void NodeMetrics::command_dropped_unverified() {
  registry_.add("nex_commands_unverified_dropped_total");
}

void NodeMetrics::reconnect(const std::string& connection) {
  registry_.add("nex_nats_reconnects_total", {{"connection", connection}});
}

void NodeMetrics::audit_write_failure() {
  registry_.add("nex_command_audit_write_failures_total", {});
}

}  // namespace nex::node
