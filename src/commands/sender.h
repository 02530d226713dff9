// The sending side of durable commands (`nex cmd`, `nex devrun --queue`): signs each message and
// files it on NEX_COMMANDS, one per addressed node, and reads what nodes filed back. Reading
// goes through JetStream, so a sender that was offline while a command ran still gets its result.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "commands/command.h"
#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/jetstream.h"

namespace nex::commands {

// A message signed for one node, ready to file (Nats-Msg-Id {id}.{node}, so a copy filed again
// is stored once).
struct Signed {
  Command command;
  nats::Message message;
};
// `draft` signed for each node it names (toNode, or every one of toNodes); an id is given when
// it has none.
Result<std::vector<Signed>> sign_for_nodes(Command draft, const crypto::KeyPair& issuer);

// Signs `draft` for each node and files it. Filing is retried until `retry_for` passes: a server
// that is restarting or a link that is down for a while does not lose the command.
Result<std::vector<Command>> send_command(const nats::JetStream& js, Command draft,
                                          const crypto::KeyPair& issuer,
                                          std::chrono::milliseconds retry_for);

// Whether a result comes from the node it names: signed by its node_id, and that node_id is the
// one the node filed under its name in NEX_NODES (a node never filed there is taken at its
// word). Lookups are remembered.
class ResultVerifier {
 public:
  explicit ResultVerifier(nats::JetStream js) : js_(std::move(js)) {}
  Status check(const CommandResult& r);

 private:
  nats::JetStream js_;
  std::map<std::string, std::string> ids_;  // node name -> id, "" when not in the directory
};

// The message as filed, by stream order; with its time of filing.
struct Filed {
  Command command;
  int64_t filed_ns = 0;
};
struct FiledResult {
  CommandResult result;
  int64_t filed_ns = 0;
};

// Everything filed on `filter` of the stream (since `since_ns`, 0: from the start); results
// that fail ResultVerifier are left out (`rejected` counts them).
Result<std::vector<Filed>> read_commands(const nats::JetStream& js, const std::string& filter,
                                         int64_t since_ns = 0);
// Results that fail ResultVerifier are left out (`rejected` counts them).
Result<std::vector<FiledResult>> read_results(const nats::JetStream& js, const std::string& filter,
                                              int64_t since_ns = 0, size_t* rejected = nullptr);

// Waits for the results of one command. Started before the command is filed, it sees each
// result as the node files it; what was filed before it started (a sender that was offline),
// or while its connection was down, it reads from the stream.
class ResultWatch {
 public:
  static Result<ResultWatch> start(const nats::JetStream& js, const std::string& id);
  // Until every node in `nodes` has a final result, or `deadline`: the latest result of each
  // node that sent one (a `received` when nothing final came).
  std::vector<CommandResult> wait(const std::vector<std::string>& nodes,
                                  std::chrono::steady_clock::time_point deadline);

 private:
  ResultWatch(nats::JetStream js, std::string id, nats::SyncSubscription sub)
      : js_(js), verifier_(std::move(js)), id_(std::move(id)), sub_(std::move(sub)) {}
  void take(CommandResult r);
  nats::JetStream js_;
  ResultVerifier verifier_;
  std::string id_;
  nats::SyncSubscription sub_;
  std::map<std::string, CommandResult> latest_;  // by node
  std::set<std::string> warned_;                 // what was said about ignored results
};

// A watch started now: for results that may have been filed already.
Result<std::vector<CommandResult>> wait_for_results(const nats::JetStream& js,
                                                    const std::string& id,
                                                    const std::vector<std::string>& nodes,
                                                    std::chrono::steady_clock::time_point deadline);

}  // namespace nex::commands
