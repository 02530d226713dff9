// ControlClient: the CLI's side of the Nex control API. Scatter-gather requests ($NEX.PING,
// $NEX.AUCTION, $NEX.WPING) collect every answer until a timeout; the others are plain
// requests. Answers are unwrapped from the reply envelope: an `error` becomes an Error.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cli/connection_flags.h"
#include "core/error.h"
#include "nats/connection.h"

namespace nex::cli {

class ControlClient {
 public:
  // `reconnects`: counted by the connection's on_reconnected, when it reconnects at all.
  ControlClient(nats::Connection conn, std::chrono::milliseconds timeout,
                std::shared_ptr<std::atomic<uint64_t>> reconnects = nullptr)
      : conn_(std::move(conn)),
        timeout_(timeout),
        reconnects_(reconnects ? std::move(reconnects)
                               : std::make_shared<std::atomic<uint64_t>>(0)) {}

  const nats::Connection& connection() const { return conn_; }
  // The `data` of every envelope that arrives on `subject` within the timeout, or of the first
  // `max_answers` of them as soon as they arrived.
  Result<std::vector<nlohmann::json>> gather(const std::string& subject,
                                             const std::string& body = {},
                                             size_t max_answers = SIZE_MAX);
  // One request; its `data`, or the node's `error` as kInvalidArgument. Without an answer within
  // the timeout (or `wait`, for requests the node may work on longer), kTimeout.
  Result<nlohmann::json> request(const std::string& subject, const std::string& body = {});
  Result<nlohmann::json> request(const std::string& subject, const std::string& body,
                                 std::chrono::milliseconds wait);
  // For a request the node may work on for long (a deploy, a stop): the very same bytes are sent
  // again each time the connection comes back from a reconnect before the answer came, since the
  // answer may have been lost meanwhile; the node answers a resend with its first answer (its
  // request ledger), never doing the work twice. For a while after a reconnect, "no one listens"
  // is the node reconnecting too, and the request is sent again shortly. Its `data`, the node's
  // `error`, kNoResponders, or kTimeout after `wait`.
  Result<nlohmann::json> request_resending(const std::string& subject, const std::string& body,
                                           std::chrono::milliseconds wait);

 private:
  nats::Connection conn_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<std::atomic<uint64_t>> reconnects_;
};

// Unwraps {"type","data","error"}.
Result<nlohmann::json> unwrap_envelope(std::string_view body);

// Connects to the control NATS the flags name. Most subcommands do not reconnect: a CLI reports
// and exits. Deploys and stops do, and send their request again once reconnected
// (ControlClient::request_resending): their answer may come long after, and a server restart
// meanwhile must not lose it.
enum class Reconnect { kNo, kYes };
Result<ControlClient> connect_control(const ConnectionFlags& flags,
                                      Reconnect reconnect = Reconnect::kNo);

}  // namespace nex::cli
