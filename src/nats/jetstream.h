// JetStream: publishing with acknowledgements (one at a time or pipelined), stream management,
// direct message reads and ordered consumers. Copies share one jsCtx.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "nats/connection.h"
#include "nats/msg.h"
#include "nats/subscription.h"

namespace nex::nats {

struct JetStreamOptions {
  std::string domain;
  std::string api_prefix;  // default "$JS.API"
  std::chrono::milliseconds timeout{5000};
  int64_t max_pending_async = 256;  // pipelined publishes in flight before publish_async waits
};

enum class Storage { kFile, kMemory };
enum class Discard { kOld, kNew };

struct StreamConfig {
  std::string name;
  std::string description;
  std::vector<std::string> subjects;
  Storage storage = Storage::kFile;
  Discard discard = Discard::kOld;
  int64_t replicas = 1;
  int64_t max_msgs = -1;
  int64_t max_bytes = -1;
  int64_t max_msg_size = -1;
  int64_t max_msgs_per_subject = -1;
  std::chrono::nanoseconds max_age{0};           // 0 = unlimited
  std::chrono::nanoseconds duplicate_window{0};  // 0 = server default (2 min)
  bool allow_rollup = false;
  bool allow_direct = false;
  bool deny_delete = false;
};

// The caps an owner keeps on a stream (a KV bucket's stream is KV_{bucket}, an object store's
// OBJ_{bucket}): bytes, one message's size, and age. -1 bytes and 0 s mean no cap.
struct StreamCaps {
  int64_t max_bytes = -1;
  int64_t max_msg_size = -1;
  std::chrono::seconds max_age{0};
  bool operator==(const StreamCaps&) const = default;
};
std::string to_string(const StreamCaps& caps);

// How many copies of its streams an owner wants a clustered JetStream to keep, and whether it
// raises a stream found with fewer (made before, or on a single server since clustered).
struct ReplicaPolicy {
  int replicas = 1;
  bool raise = false;
  bool operator==(const ReplicaPolicy&) const = default;
};

struct StreamInfo {
  std::string name;
  StreamConfig config;  // the fields above, as the server has them
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
};

struct ConsumerInfo {
  uint64_t num_pending = 0;      // messages not yet delivered
  uint64_t num_ack_pending = 0;  // delivered, not yet acknowledged
};

struct PubAck {
  std::string stream;
  uint64_t sequence = 0;
  bool duplicate = false;
};

struct JsMetadata {
  uint64_t stream_sequence = 0;
  uint64_t num_pending = 0;    // messages left for this consumer after this one
  uint64_t num_delivered = 0;  // 1 on the first delivery, 2 on the first redelivery, ...
  int64_t timestamp_ns = 0;
};

class JetStream {
 public:
  static Result<JetStream> create(const Connection& connection,
                                  const JetStreamOptions& options = {});

  const Connection& connection() const;
  std::chrono::milliseconds timeout() const;
  // Where the JetStream API listens: "$JS.API", "$JS.{domain}.API" or the configured prefix.
  std::string api_prefix() const;

  Result<PubAck> publish(const Message& msg) const;
  Result<PubAck> publish(std::string_view subject, std::string_view data) const;
  // Pipelined publish: returns once the message is sent; failures surface from
  // publish_async_complete, which waits for every outstanding acknowledgement.
  Status publish_async(Message msg) const;
  Status publish_async_complete(std::chrono::milliseconds timeout) const;

  Result<StreamInfo> add_stream(const StreamConfig& config) const;
  Result<StreamInfo> stream_info(const std::string& stream) const;
  Result<ConsumerInfo> consumer_info(const std::string& stream, const std::string& durable) const;
  Status delete_stream(const std::string& stream) const;
  // Changes the fields of StreamConfig in the stream's config as the server has it (what
  // StreamConfig does not hold, such as a KV bucket's settings, is kept as it is).
  Result<StreamInfo> update_stream(const std::string& stream,
                                   const std::function<void(StreamConfig&)>& change) const;
  // Sets the caps of `stream` to `caps` when they differ. Returns what changed ("max_bytes 1 ->
  // 2, ..."), empty when nothing did.
  Result<std::string> set_caps(const std::string& stream, const StreamCaps& caps) const;
  // How many replicas this JetStream can give a stream, `wanted` or 1: it creates a small
  // memory stream with `wanted` replicas and removes it again. When the answer is 1 (a single
  // server, or a cluster too small), `why` holds what the server said.
  Result<int> replicas_available(int wanted, std::string& why) const;
  // Applies `policy` to an existing stream: raises its replicas when it has fewer and
  // policy.raise. Returns what a log should say: that it was raised, or that it has fewer and
  // the command that raises it; empty when it has enough.
  Result<std::string> keep_replicas(const std::string& stream, const ReplicaPolicy& policy) const;
  // Removes one message by its stream sequence (kNotFound when it is not there).
  Status delete_message(const std::string& stream, uint64_t sequence) const;
  // Purges the messages whose subject matches `subject_filter` (empty = all).
  Status purge_stream(const std::string& stream, const std::string& subject_filter = {}) const;
  // The last message stored on `subject` (kNotFound when there is none).
  Result<Message> last_message(const std::string& stream, const std::string& subject) const;

  // An ordered, ephemeral push consumer on `filter_subject` (flow controlled, gap-free, no acks).
  // With js_DeliverByStartTime, `start_time_ns` (since the epoch) says from when.
  Result<SyncSubscription> ordered_consumer(const std::string& stream,
                                            const std::string& filter_subject,
                                            jsDeliverPolicy deliver = js_DeliverAll,
                                            int64_t start_time_ns = 0) const;
  // How many messages the consumer behind `sub` delivers in all from its start: those delivered
  // so far plus those pending. Zero means there is nothing to wait for.
  Result<uint64_t> backlog(const SyncSubscription& sub) const;
  static Result<JsMetadata> metadata(const Message& msg);

  jsCtx* raw() const;

 private:
  struct Impl;
  explicit JetStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace nex::nats
