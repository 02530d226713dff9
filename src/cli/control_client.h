// ControlClient: the CLI's side of the Nex control API. Scatter-gather requests ($NEX.PING,
// $NEX.AUCTION, $NEX.WPING) collect every answer until a timeout; the others are plain
// requests. Answers are unwrapped from the reply envelope: an `error` becomes an Error.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "nats/connection.h"

namespace nex::cli {

class ControlClient {
 public:
  ControlClient(nats::Connection conn, std::chrono::milliseconds timeout)
      : conn_(std::move(conn)), timeout_(timeout) {}

  const nats::Connection& connection() const { return conn_; }
  // The `data` of every envelope that arrives on `subject` within the timeout, or of the first
  // `max_answers` of them as soon as they arrived.
  Result<std::vector<nlohmann::json>> gather(const std::string& subject,
                                             const std::string& body = {},
                                             size_t max_answers = SIZE_MAX);
  // One request; its `data`, or the node's `error` as kInvalidArgument.
  Result<nlohmann::json> request(const std::string& subject, const std::string& body = {});

 private:
  nats::Connection conn_;
  std::chrono::milliseconds timeout_;
};

// Unwraps {"type","data","error"}.
Result<nlohmann::json> unwrap_envelope(std::string_view body);

}  // namespace nex::cli
