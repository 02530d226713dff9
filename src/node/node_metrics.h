// What a node counts for Prometheus (`nex node up --metrics ADDR`, docs/metrics.md): deploys,
// function invocations and their run times, host-service calls, essential restarts, log lines
// dropped over the rate limit, NATS reconnects and audit records lost as they happen; workloads,
// warm agents and command queues read at each scrape.
#pragma once

#include <cstdint>
#include <string>

#include "metrics/registry.h"

namespace nex::node {

class NodeMetrics {
 public:
  NodeMetrics();

  // origin: request, restore or autostart.
  void deploy(const std::string& origin, bool started);
  // A function's series, looked up once (at deploy) so an invocation only adds to them.
  // Errors are looked up when they happen: a function that never failed has no error series.
  struct Function {
    metrics::Series* invocations = nullptr;
    metrics::Series* duration = nullptr;
    metrics::Registry* registry = nullptr;
    metrics::Labels labels;
    void invocation(bool failed, int64_t elapsed_nanos) const;
  };
  Function function(const std::string& ns, const std::string& workload, const std::string& type);
  void host_service_call(const std::string& service, int code);
  void agent_restart(const std::string& ns, const std::string& workload);
  // A workload's count of log lines dropped over its rate limit, looked up once (at deploy).
  metrics::Series* log_lines_dropped(const std::string& ns, const std::string& workload,
                                     const std::string& type);
  void command_dropped_unverified();
  void reconnect(const std::string& connection);
  // A record of the durable commands' audit log that could not be written.
  void audit_write_failure();

  metrics::Registry& registry() { return registry_; }

 private:
  metrics::Registry registry_;
};

}  // namespace nex::node
