// Where durable commands live on JetStream: the command and result streams, created on first use
// by whoever comes first (a sender or a node), and the node directory, a KV bucket in which each
// node files its id and xkey under its name, so a sender can address and seal to a node that is
// offline now.
//
// Anyone who may use these subjects may write to them, so nothing read here is taken on trust:
// a node's record is signed by the node's own key (its id) and checked by every reader before
// it seals or addresses anything to it, and the streams are capped (bytes, message size, age)
// so nobody can fill the server through them.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/jetstream.h"

namespace nex::commands {

inline constexpr const char* kNodeDirectory = "NEX_NODES";
inline constexpr const char* kNodeDirectoryStream = "KV_NEX_NODES";
inline constexpr std::chrono::hours kDefaultRetention{24 * 30};
// Records kept per node name: a reader falls back on the newest one its node signed when the
// newest was replaced by someone else.
inline constexpr int kNodeHistory = 16;

// The caps of NEX_COMMANDS, NEX_COMMAND_RESULTS and the NEX_NODES bucket (each its own).
struct StreamLimits {
  std::chrono::seconds max_age = kDefaultRetention;
  int64_t max_bytes = 256 << 20;
  int64_t max_message_bytes = 1 << 20;
  nats::ReplicaPolicy replicas;  // given to the streams a node creates, and raised to when asked
  bool operator==(const StreamLimits&) const = default;
};

// Creates the two streams when missing, with `limits`. Streams that exist are left as they are
// (a sender's view; the nodes keep the limits, with enforce_limits).
Status ensure_streams(const nats::JetStream& js, const StreamLimits& limits = {});
// A node's view: creates the streams and the bucket when missing, and changes the limits of
// those whose limits differ from `limits`, telling `changed` what it changed.
Status enforce_limits(const nats::JetStream& js, const StreamLimits& limits,
                      const std::function<void(const std::string&)>& changed);

// A node's entry in NEX_NODES, under its name.
struct NodeRecord {
  std::string name;
  std::string id;  // N..., the node's server key, which signs the record
  std::string xkey;
  std::map<std::string, std::string> tags;
  std::string signature;  // base64url Ed25519 by `id` over the record without it
};
nlohmann::json to_json(const NodeRecord& r);
Result<NodeRecord> parse_record(std::string_view text);
void sign(NodeRecord& r, const crypto::KeyPair& node_key);
// Whether `r` is what node `name` filed: it names `name`, its id is a server key (N...), and
// that key signed it as it is.
Status verify_record(const NodeRecord& r, const std::string& name);

// Files `node` (signed) under its name.
Status announce_node(const nats::JetStream& js, const NodeRecord& node);
// What keep_filed found under the node's name.
enum class RecordState { kAsItWas, kNew, kRefreshed, kReplacedByOther };
// Files `node` unless exactly it is there, filed less than `refresh` ago (the bucket's age cap
// would remove it otherwise). Says what it found.
Result<RecordState> keep_filed(const nats::JetStream& js, const NodeRecord& node,
                               std::chrono::seconds refresh);
// By name, or by id (N...): the record its node signed, and nothing else. kNotFound when no
// node of that name or id ever filed itself; kPermissionDenied when the record there is not
// signed by its node (then nothing may be sealed or addressed to it).
Result<NodeRecord> find_node(const nats::JetStream& js, const std::string& name_or_id);
// For checking what a node filed: its newest record that it signed, even when a newer one is
// someone else's (then `warning` says so). kNotFound when the node never filed one,
// kPermissionDenied when none of its records is signed by it.
Result<NodeRecord> last_signed_record(const nats::JetStream& js, const std::string& name,
                                      std::string* warning);
// Every record of `name` that its node signed, newest first, from the history the bucket keeps
// (kNodeHistory records a name): the nodes that held the name, one after another. Fails, and
// warns, as last_signed_record.
Result<std::vector<NodeRecord>> signed_records(const nats::JetStream& js, const std::string& name,
                                               std::string* warning);

}  // namespace nex::commands
