// Where durable commands live on JetStream: the command and result streams, created on first use
// by whoever comes first (a sender or a node), and the node directory, a KV bucket in which each
// node files its id and xkey under its name, so a sender can address and seal to a node that is
// offline now.
#pragma once

#include <chrono>
#include <string>

#include "core/error.h"
#include "nats/jetstream.h"

namespace nex::commands {

inline constexpr const char* kNodeDirectory = "NEX_NODES";
inline constexpr std::chrono::hours kDefaultRetention{24 * 30};

// Creates NEX_COMMANDS and NEX_COMMAND_RESULTS when missing, keeping messages for `retention`.
// Streams that exist are left as they are (their retention is whoever created them's).
Status ensure_streams(const nats::JetStream& js,
                      std::chrono::seconds retention = kDefaultRetention);

struct NodeRecord {
  std::string name;
  std::string id;    // N...
  std::string xkey;  // X...
};
Status announce_node(const nats::JetStream& js, const NodeRecord& node);
// By name, or by id (N...): kNotFound when no node of that name or id ever announced itself.
Result<NodeRecord> find_node(const nats::JetStream& js, const std::string& name_or_id);

}  // namespace nex::commands
