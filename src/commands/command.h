// The durable command protocol (as steward had it; docs/protocol-additions.md): a signed command
// or event addressed to a node by name, and the results the node files for it. Parsing validates
// every field and names the one that is wrong.
//
// Subjects:
//   $NEX.cmd.{node}.{command|event}.{method}   stream NEX_COMMANDS
//   $NEX.cmdresult.{node}.{id}                  stream NEX_COMMAND_RESULTS (received, then final)
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "crypto/nkeys.h"

namespace nex::commands {

inline constexpr const char* kCommandStream = "NEX_COMMANDS";
inline constexpr const char* kResultStream = "NEX_COMMAND_RESULTS";

namespace method {
inline constexpr const char* kHello = "hello";
inline constexpr const char* kCliCommand = "cliCommand";
inline constexpr const char* kShellCommand = "shellCommand";  // steward's name for cliCommand
inline constexpr const char* kTextLogging = "textLogging";
inline constexpr const char* kDeploy = "deploy";
}  // namespace method

// Every method a node runs, and whether it is a command (true) or an event.
struct MethodInfo {
  const char* name;
  bool command;
};
inline constexpr MethodInfo kMethods[] = {{method::kHello, true},
                                          {method::kCliCommand, true},
                                          {method::kShellCommand, true},
                                          {method::kTextLogging, false},
                                          {method::kDeploy, true}};
const MethodInfo* find_method(std::string_view name);

// Node names (and methods) are subject tokens and consumer names: [A-Za-z0-9_-], 1..64.
Status validate_name(std::string_view name, const char* field);
// The host name made into a node name (other characters become '-').
std::string default_node_name();

std::string command_subject(const std::string& node, bool command, const std::string& method);
std::string result_subject(const std::string& node, const std::string& id);

// One message, as steward's JSON plus what makes it durable and trusted. As sent it names one
// node (toNode); toNodes keeps the list the sender addressed, for the record.
struct Command {
  std::string id;  // unique per message; with the node, the key its results are filed under
  std::string to_node;
  std::vector<std::string> to_nodes;
  std::vector<std::string> data;             // steward: the argv of a shell command, or log lines
  std::string command_or_event = "command";  // "command" | "event"
  std::string method;
  std::vector<std::string> method_args;  // argv, when given instead of data
  int64_t method_timeout = 0;            // seconds the method may run; 0: the node's default
  int64_t retries = 2;                   // runs again after a node died during it, at most
  int64_t ack_timeout = 5;               // seconds the sender waits for `received` (ACKTimeout)
  std::string from_node;
  std::string ns = "default";  // deploy: the namespace
  nlohmann::json deploy;       // deploy: a DeployRequest
  std::string sent_at;         // RFC 3339, when the sender signed it
  // RFC 3339: after this the message is not run (status `expired`). Signed with the rest; absent
  // in messages of older tooling, which a node runs only with allow_unbound_requests.
  std::string expires_at;
  std::string issuer;     // account public key (A...)
  std::string signature;  // base64url Ed25519 over signing_bytes()

  bool is_command() const { return command_or_event == "command"; }
  // The argv a cliCommand runs: methodArgs when given, else data.
  const std::vector<std::string>& argv() const { return method_args.empty() ? data : method_args; }
};

nlohmann::json to_json(const Command& c);
// A message as a person writes it (steward's JSON): toNode or toNodes, method, data, ... The id,
// issuer, signature and sent time may be missing; everything present is checked.
Result<Command> parse_command_draft(const nlohmann::json& j, const std::string& what);
// A message as a node receives it: the draft's checks, and id, issuer, signature required.
Result<Command> parse_command(std::string_view text);

// The bytes signed: the message's JSON without "signature", keys sorted, no spaces.
std::string signing_bytes(const Command& c);
void sign(Command& c, const crypto::KeyPair& issuer);
Status verify_signature(const Command& c);

// The most a sender's clock may be ahead of the node's: a message sent later than that is refused.
inline constexpr std::chrono::seconds kMaxClockSkew{60};

// Why a message must not run now (a node's policy, after its signature was verified).
struct Refusal {
  std::string status;  // status::kRefused or status::kExpired
  std::string reason;
};
// Whether `c` may run at `now` on a node that keeps commands for `retention`: sent no more than
// kMaxClockSkew ahead of `now`, living no longer than `retention`, and not expired (expiresAt
// equal to `now` is expired). Without expiresAt (older tooling) only when `allow_unbound`.
std::optional<Refusal> check_times(const Command& c, std::chrono::system_clock::time_point now,
                                   std::chrono::seconds retention, bool allow_unbound);
// The argv a cliCommand (shellCommand) runs holds no NUL byte: exec would cut the argument there
// and run something else than was signed. Other methods pass.
Status check_argv(const Command& c);
// One entry of a textLogging event as one line of the text log: the last newline dropped, and
// every control character (C0, DEL, C1, U+2028/9), byte that is not UTF-8, and backslash escaped
// (\n, \r, \t, \xNN, \uNNNN, \\), so no entry can forge or break a line or a terminal.
std::string text_log_line(std::string_view entry);

namespace status {
inline constexpr const char* kReceived = "received";
inline constexpr const char* kDone = "done";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kRefused = "refused";
inline constexpr const char* kTimeout = "timeout";
inline constexpr const char* kExpired = "expired";  // expiresAt passed before it ran: not run
// A copy of a command already done, filed again under its id: not run. Filed beside the
// command's own final result, which it never replaces.
inline constexpr const char* kDuplicate = "duplicate";
}  // namespace status
// Whether a result is a command's last word: not `received`, nor a refused `duplicate`.
inline bool is_final(std::string_view s) {
  return s != status::kReceived && s != status::kDuplicate;
}

// What a node files for a command: first `received`, then one final status; then a `duplicate`
// for each copy sent again under its id.
struct CommandResult {
  std::string id;
  std::string node;     // the node's name
  std::string node_id;  // its server key (N...)
  std::string method;
  std::string status;
  std::string reason;  // refused / failed: why
  std::optional<int> exit_code;
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string started;  // RFC 3339
  std::string ended;
  int64_t attempt = 1;
  std::string signature;  // base64url Ed25519 by the node's key (node_id) over the rest
};

nlohmann::json to_json(const CommandResult& r);
Result<CommandResult> parse_result(std::string_view text);
void sign(CommandResult& r, const crypto::KeyPair& node_key);
// The signature is the node_id's. Which node_id a node name stands for is the reader's to check
// (the NEX_NODES directory).
Status verify_signature(const CommandResult& r);
// The Nats-Msg-Id a signed result is filed under: {id}.{node}.{status}.{attempt}.{suffix}, the
// suffix the hex of the first 8 bytes of SHA-256 of its signature. The same result filed again
// is stored once, and nobody without the node's key can file one ahead under that id (which
// JetStream would keep, dropping the node's own as a duplicate).
std::string result_msg_id(const CommandResult& r);

}  // namespace nex::commands
