// PullConsumer: a durable JetStream pull consumer with explicit acks, for work that must be done
// once and in order even when its worker was offline when the work was sent.
//
// Messages are pulled one request at a time ($JS.API.CONSUMER.MSG.NEXT with an expiry) on an
// inbox of the consumer's own, rather than through natsSubscription_Fetch: libnats 3.4.1's Fetch
// can ignore its time-out and overrun its batch (docs/wire.md "NATS formats"). The server answers
// every pull before its expiry (a message or a 408 status), so a pull never outlives next().
//
// Acknowledgements go to a message's reply subject ("$JS.ACK...."). They are plain subjects, so
// a process that kept the subject can still settle a delivery its predecessor received (a node
// restarted after a crash NAKs the command it was running, and gets it again at once).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.h"
#include "nats/connection.h"
#include "nats/jetstream.h"
#include "nats/msg.h"
#include "nats/subscription.h"

namespace nex::nats {

struct PullConsumerConfig {
  std::string stream;
  std::string durable;  // [A-Za-z0-9_-]
  std::string filter_subject;
  std::string description;
  // Unacknowledged deliveries come again after this (keep it alive with in_progress()).
  std::chrono::milliseconds ack_wait{30000};
  // 1: one message at a time, in stream order; the next waits for this one's ack.
  int64_t max_ack_pending = 1;
};

class PullConsumer {
 public:
  // Creates the durable consumer, or updates one that exists with other settings.
  static Result<PullConsumer> create(const JetStream& js, const PullConsumerConfig& config);

  PullConsumer(PullConsumer&&) noexcept = default;
  PullConsumer& operator=(PullConsumer&&) noexcept = default;

  // The next message, or nullopt when none came within `wait` (at least 100 ms).
  Result<std::optional<Message>> next(std::chrono::milliseconds wait);
  // From any thread: a next() waiting now, and every later one, fails at once.
  void interrupt();

  // Settling a delivery by its ack subject (a message's reply()).
  Status ack(std::string_view ack_subject) const;          // waits for the server to confirm it
  Status nak(std::string_view ack_subject) const;          // deliver it again now
  Status in_progress(std::string_view ack_subject) const;  // restart its ack_wait

 private:
  PullConsumer(Connection connection, std::string next_subject, std::string inbox,
               SyncSubscription sub)
      : connection_(std::move(connection)),
        next_subject_(std::move(next_subject)),
        inbox_(std::move(inbox)),
        sub_(std::make_unique<SyncSubscription>(std::move(sub))) {}
  Connection connection_;
  std::string next_subject_;  // $JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}
  std::string inbox_;         // pull n is answered on {inbox_}.{n}
  std::unique_ptr<SyncSubscription> sub_;
  uint64_t pulls_ = 0;
};

}  // namespace nex::nats
