// The sending side of durable commands (`nex cmd`, `nex devrun --queue`): signs each message and
// files it on NEX_COMMANDS, one per addressed node, and reads what nodes filed back. Reading
// goes through JetStream, so a sender that was offline while a command ran still gets its result.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "commands/command.h"
#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/jetstream.h"

namespace nex::commands {

// Signs `draft` for each node it names (toNode, or every one of toNodes) and files it. Filing is
// retried (with the same Nats-Msg-Id, so it is stored once) until `retry_for` passes: a server
// that is restarting or a link that is down for a while does not lose the command.
Result<std::vector<Command>> send_command(const nats::JetStream& js, Command draft,
                                          const crypto::KeyPair& issuer,
                                          std::chrono::milliseconds retry_for);

// The message as filed, by stream order; with its time of filing.
struct Filed {
  Command command;
  int64_t filed_ns = 0;
};
struct FiledResult {
  CommandResult result;
  int64_t filed_ns = 0;
};

// Everything filed on `filter` of the stream (since `since_ns`, 0: from the start).
Result<std::vector<Filed>> read_commands(const nats::JetStream& js, const std::string& filter,
                                         int64_t since_ns = 0);
Result<std::vector<FiledResult>> read_results(const nats::JetStream& js, const std::string& filter,
                                              int64_t since_ns = 0);

// Waits until every node in `nodes` has filed a final result for `id`, or `deadline`. What came
// back by then, the latest per node (a `received` when nothing final came).
// `on_result` sees each result as it arrives.
Result<std::vector<CommandResult>> wait_for_results(
    const nats::JetStream& js, const std::string& id, const std::vector<std::string>& nodes,
    std::chrono::steady_clock::time_point deadline,
    const std::function<void(const CommandResult&)>& on_result = {});

}  // namespace nex::commands
