// WorkloadStore: what a node keeps of its running workloads so that a restart (after a crash,
// SIGKILL, or a graceful stop) brings them back: each deploy request as it was received, its
// environment still sealed to the node's xkey, by workload id. In the JetStream KV bucket
// NEX_NODE_WORKLOADS (keys {node_id}.{workload_id}) when the control NATS has JetStream, else in
// {state_dir}/workloads/. A workload that was stopped, or ended, is no longer kept.
//
// What the node reads back is authenticated, since others may write that bucket:
// - each entry carries the node's signature (its server key) over {id, namespace, node_id,
//   request}, so an entry planted by anyone else is refused;
// - the ids the node keeps are also listed in {state_dir}/workloads.kept, which only the node
//   writes, so an entry of the node's own that was removed (a stopped workload) and written back
//   later by someone who had copied it is refused too.
// The deploy request inside is checked again when it is deployed (its JWT, issuer, namespace
// binding and artifact hash), as any deploy is.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/connection.h"
#include "node/storage_caps.h"

namespace nex::node {

class WorkloadStore {
 public:
  struct Entry {
    std::string id;
    std::string ns;
    std::string request;  // the DeployRequest JSON as received
  };

  // Where entries are written: the KV bucket or the state directory.
  class Backend {
   public:
    virtual ~Backend() = default;
    virtual Status put(const std::string& id, const std::string& value) = 0;
    virtual Status erase(const std::string& id) = 0;
    // Every entry's id and value.
    virtual Result<std::vector<std::pair<std::string, std::string>>> list() = 0;
    // Writes again the entries written longer than `age` ago, so that a store whose values
    // live a limited time keeps them while the node runs; how many it wrote.
    virtual Result<size_t> refresh(std::chrono::seconds /*age*/) { return size_t{0}; }
  };

  // The KV bucket when it can be had on `control`, else the state directory; `where` says which.
  // The bucket gets `caps` (set again when it has others) and `replicas`; `where` says so.
  static Result<std::unique_ptr<WorkloadStore>> open(const nats::Connection& control,
                                                     const crypto::KeyPair& node_key,
                                                     const std::filesystem::path& state_dir,
                                                     const StorageCaps& caps,
                                                     const nats::ReplicaPolicy& replicas,
                                                     std::string& where);

  Status put(const Entry& entry);
  Status erase(const std::string& id);

  struct Listing {
    std::vector<Entry> entries;  // signed by this node, and kept by it
    // Entries refused, with why: not signed by this node, or not one it keeps.
    std::vector<std::pair<std::string, std::string>> refused;
    // Ids the node keeps whose entry is gone from the store.
    std::vector<std::string> missing;
  };
  Result<Listing> list();
  // Keeps the entries alive in a store whose values expire: writes again those written more
  // than `age` ago (the node: half the retention). Returns how many it wrote.
  Result<size_t> refresh(std::chrono::seconds age) { return backend_->refresh(age); }

 private:
  WorkloadStore(std::unique_ptr<Backend> backend, const crypto::KeyPair& node_key,
                std::filesystem::path kept_file)
      : backend_(std::move(backend)), node_key_(node_key), kept_file_(std::move(kept_file)) {}
  Status load_kept();
  Status save_kept();
  std::string signing_bytes(const Entry& e) const;

  std::unique_ptr<Backend> backend_;
  const crypto::KeyPair& node_key_;
  std::filesystem::path kept_file_;
  std::mutex mu_;  // guards kept_ and its file
  std::set<std::string> kept_;
};

}  // namespace nex::node
