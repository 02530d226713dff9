// WorkloadStore: what a node keeps of its running workloads so that a restart (after a crash,
// SIGKILL, or a graceful stop) brings them back: each deploy request as it was received, its
// environment still sealed to the node's xkey, by workload id. In the JetStream KV bucket
// NEX_NODE_WORKLOADS (keys {node_id}.{workload_id}) when the control NATS has JetStream, else in
// {state_dir}/workloads/. A workload that was stopped, or ended, is no longer kept.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "nats/connection.h"

namespace nex::node {

class WorkloadStore {
 public:
  struct Entry {
    std::string id;
    std::string ns;
    std::string request;  // the DeployRequest JSON as received
  };

  // The KV bucket when it can be had on `control`, else the state directory; `where` says which.
  static std::unique_ptr<WorkloadStore> open(const nats::Connection& control,
                                             const std::string& node_id,
                                             const std::filesystem::path& state_dir,
                                             std::string& where);
  virtual ~WorkloadStore() = default;

  virtual Status put(const Entry& entry) = 0;
  virtual Status erase(const std::string& id) = 0;
  virtual Result<std::vector<Entry>> list() = 0;
};

}  // namespace nex::node
