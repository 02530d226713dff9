// The sending side of durable commands (`nex cmd`, `nex devrun --queue`): signs each message and
// files it on NEX_COMMANDS, one per addressed node, and reads what nodes filed back. Reading
// goes through JetStream, so a sender that was offline while a command ran still gets its result.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "commands/command.h"
#include "commands/store.h"
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
// it has none. It is sent now and expires `lifetime` later (unless the draft says when).
Result<std::vector<Signed>> sign_for_nodes(Command draft, const crypto::KeyPair& issuer,
                                           std::chrono::seconds lifetime = kDefaultRetention);

// How long a command waits for its node by default: as long as NEX_COMMANDS keeps it (30 days
// when the stream cannot be read, or keeps messages forever).
std::chrono::seconds default_lifetime(const nats::JetStream& js);

// Signs `draft` for each node and files it. Filing is retried until `retry_for` passes: a server
// that is restarting or a link that is down for a while does not lose the command. A node does
// not run it after `lifetime` (default: default_lifetime).
Result<std::vector<Command>> send_command(
    const nats::JetStream& js, Command draft, const crypto::KeyPair& issuer,
    std::chrono::milliseconds retry_for,
    std::optional<std::chrono::seconds> lifetime = std::nullopt);

// Whether a result comes from the node it names: signed by its node_id, and that node_id is one
// that signed a record of the name in NEX_NODES. A name passes from a dead node to a new one
// (a node refuses a name a live node holds), so each holder's results stay its own: matched by
// command id and node id, never by name alone. Should someone else have filed the newest record,
// `warn` is told so once. A node without a signed record has no results that can be checked.
// Lookups are remembered.
class ResultVerifier {
 public:
  explicit ResultVerifier(nats::JetStream js,
                          std::function<void(const std::string&)> warn = nullptr)
      : js_(std::move(js)), warn_(std::move(warn)) {}
  Status check(const CommandResult& r);

 private:
  nats::JetStream js_;
  std::function<void(const std::string&)> warn_;
  // node name -> the ids that held it, newest first, or why none
  std::map<std::string, Result<std::vector<std::string>>> holders_;
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

// Calls `each` for every message on `filter` of `stream` filed since `since_ns` (0: from the
// start), with its time of filing.
Status for_each_filed(const nats::JetStream& js, const std::string& stream,
                      const std::string& filter, int64_t since_ns,
                      const std::function<void(const nats::Message&, int64_t)>& each);

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
  ResultWatch(nats::JetStream js, std::string id, nats::SyncSubscription sub);
  void take(CommandResult r);
  // What the stream holds for `node`: every result filed for the command, so a forged one filed
  // after the node's own hides nothing.
  void read_filed(const std::string& node);
  nats::JetStream js_;
  // What was said about ignored results and records (shared with verifier_'s warnings, which
  // outlive a move of the watch).
  std::shared_ptr<std::set<std::string>> warned_ = std::make_shared<std::set<std::string>>();
  ResultVerifier verifier_;
  std::string id_;
  nats::SyncSubscription sub_;
  std::map<std::string, CommandResult> latest_;  // by node
};

// A watch started now: for results that may have been filed already.
Result<std::vector<CommandResult>> wait_for_results(const nats::JetStream& js,
                                                    const std::string& id,
                                                    const std::vector<std::string>& nodes,
                                                    std::chrono::steady_clock::time_point deadline);

}  // namespace nex::commands
