// CommandService: the node's side of durable commands. For each method it keeps a durable pull
// consumer on NEX_COMMANDS ("nexcmd-{node}-{method}", one message at a time, in the order sent),
// so commands sent while the node was down wait in the stream and run when it comes up, and a
// slow method never holds up another.
//
// Anyone who may publish on $NEX.cmd.* can file messages, so each one is first verified, before
// anything is looked up or written for it: its size, its JSON, its subject, its signature and
// issuer. What fails is acknowledged and deleted from the stream, counted, and otherwise
// ignored (no audit line, no result: an unsigned message costs next to nothing). A verified
// message whose id already has a final result of this node is a copy: audited as a duplicate,
// answered `duplicate` (so its sender hears it was not run), and deleted. Then it is audited and
// checked against the node's policy (its time, method, allow-list); a refusal is filed as its
// result (`refused`, or `expired`) and the message is deleted, so refused messages do not
// accumulate. What may run is answered `received`, run, answered with its final result on
// NEX_COMMAND_RESULTS (signed by the node, under a Nats-Msg-Id only the node can make), written to
// the audit log, and only then acknowledged: a node killed during a command runs it again after its
// restart (attempt 2) before anything newer.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands/audit_log.h"
#include "commands/command.h"
#include "commands/store.h"
#include "core/error.h"
#include "core/subprocess.h"
#include "crypto/nkeys.h"
#include "nats/connection.h"
#include "nats/jetstream.h"

namespace nex::commands {

// commands.cli_command: running programs on the node, off unless enabled.
struct CliCommandConfig {
  bool enabled = false;
  std::vector<std::string> allow;  // argv[0] as written: "uptime", "/usr/bin/systemctl"
  std::string user;                // run as; default: nobody when the node is root
};

// The node config's "commands" object.
struct CommandsConfig {
  bool enabled = true;
  // The caps of NEX_COMMANDS, NEX_COMMAND_RESULTS and the NEX_NODES bucket (each), which the node
  // sets on them; also the longest a message may live (expiresAt - sentAt).
  int64_t retention_days = 30;
  int64_t max_bytes = 256 << 20;
  int64_t max_message_bytes = 1 << 20;  // also: larger messages are dropped unread
  int64_t default_timeout_s = 60;       // a method's time limit when the message sets none
  int64_t max_timeout_s = 3600;         // the most a message may ask for
  int64_t output_limit_bytes = 65536;   // stdout and stderr kept per result, each
  CliCommandConfig cli_command;
  std::filesystem::path text_log_file;  // default: {state_dir}/commands/textlog.txt
  // The JetStream domain the streams are in, for a node on a leaf server whose JetStream is
  // its hub's ($JS.{domain}.API); empty: the connected server's own.
  std::string jetstream_domain;
  // Not read from the config: the node's choice (node config jetstream_replicas).
  nats::ReplicaPolicy replicas;
};

// Reads the "commands" object of a node config, reporting problems by field.
Status parse_commands_config(const nlohmann::json& j, CommandsConfig& out);

struct CommandServiceOptions {
  std::string node_name;
  std::optional<crypto::KeyPair> node_key;  // the node's server key: its id, signs results
  std::string node_xkey;
  nats::Connection connection;  // the control NATS, where JetStream is
  CommandsConfig config;
  std::vector<std::string> valid_issuers;  // empty: any issuer, but then no cliCommand
  // Run messages without expiresAt (older tooling), which anyone who saw one can file again.
  bool allow_unbound_requests = false;
  std::map<std::string, std::string> tags;  // filed with the node's record
  std::filesystem::path state_dir;          // commands/ holds the audit log and what runs now
  // Runs a deploy request as $NEX.DEPLOY.{ns}.{node} would.
  std::function<Result<nlohmann::json>(const std::string& ns, std::string_view body)> deploy;
  std::function<void(const std::string&)> log;
  // Called for each message dropped because it failed verification (the node counts them).
  std::function<void()> dropped_unverified;
  // Called for each audit record the disk did not take (after it was logged).
  std::function<void()> on_audit_write_failure;
};

class CommandService {
 public:
  // Starts the consumers in the background: JetStream that is unreachable now (a leaf node cut
  // off from its hub) is retried until it answers.
  static Result<std::unique_ptr<CommandService>> start(CommandServiceOptions options);
  ~CommandService();
  // Stops taking commands. One that is running is stopped and handed back to the stream (it
  // runs again, as attempt 2, when the node is back).
  void stop();

  std::filesystem::path audit_log() const { return audit_.path(); }
  // Per method: the commands filed and not yet finished (waiting, or running now), read from
  // the consumers. Methods whose consumer cannot be read now (JetStream away) are left out.
  std::map<std::string, uint64_t> queue_depths() const;
  // The caps this node keeps on the streams and the bucket (from its config).
  StreamLimits limits() const;
  // Messages dropped since the start because they failed verification.
  uint64_t unverified_dropped() const { return dropped_total_; }

 private:
  struct Worker;
  explicit CommandService(CommandServiceOptions options);
  void run(Worker& w);
  // The streams made or brought to this node's limits, and its record filed (not more often
  // than every few seconds, whichever worker asks).
  Status set_up_jetstream();
  // Files the node's record again when someone else replaced it, or it grows old.
  void keep_record_filed();
  void handle(Worker& w, const nats::Message& msg);
  // The command in `msg`, when it is one: no larger than max_message_bytes, valid, filed on the
  // subject it names, signed by an issuer this node takes. The error says why not.
  Result<Command> verified(const nats::Message& msg) const;
  // Acknowledges and deletes a message that failed verification, counting it.
  void drop(Worker& w, const nats::Message& msg, const Error& why);
  void report_drops(bool first);
  // Whether this node has filed a final result for `c` (a copy of a command already handled).
  bool already_done(const Command& c) const;
  // Files a `duplicate` result for a copy of `c`, which already ran, and deletes the copy.
  void refuse_duplicate(Worker& w, const nats::Message& msg, const Command& c, int64_t attempt);
  // Why the verified `c` must not run now; nullopt when it may.
  std::optional<Refusal> refusal(const Command& c) const;
  // Acknowledges `msg`; with `remove`, deletes it from the stream too.
  void settle(Worker& w, const nats::Message& msg, bool remove = false);
  CommandResult execute(Worker& w, const Command& c, const std::string& ack_subject,
                        CommandResult result);
  CommandResult run_cli_command(Worker& w, const Command& c, const std::string& ack_subject,
                                CommandResult result);
  // How a CLI command's program runs: as cli_command.user (root's default: nobody), with a
  // clean environment; kNotFound when there is no such user.
  Result<SpawnOptions> cli_spawn_options(const Command& c, int64_t attempt) const;
  // How a CLI command's program ended, as far as the node waited for it.
  struct CliRun {
    std::optional<int> exited;  // its wait status
    bool timed_out = false;     // still running at its deadline
    bool interrupted = false;   // the service is stopping
  };
  // Reads the program's output into `r` (up to output_limit_bytes each), saying the command is
  // in progress every kHeartbeat, until it ended, its deadline passed or the service stops.
  CliRun watch_cli_child(Worker& w, Subprocess& child, std::chrono::seconds limit,
                         const std::string& ack_subject, CommandResult& r);
  // Files a result and appends it to the audit log. `confirmed`: waits for JetStream's ack,
  // retrying while JetStream is away (false only when stopping).
  bool publish_result(const CommandResult& r, bool confirmed = true);
  void audit(const std::string& type, nlohmann::json record);
  bool stopping() const { return stopping_; }

  CommandServiceOptions options_;
  std::string node_id_;        // N..., from node_key
  std::filesystem::path dir_;  // {state_dir}/commands
  std::optional<nats::JetStream> js_;
  std::atomic<bool> stopping_{false};
  AuditLog audit_;  // {dir_}/audit.jsonl
  std::vector<std::unique_ptr<Worker>> workers_;
  NodeRecord record_;    // this node's entry in NEX_NODES, signed
  std::mutex setup_mu_;  // guards last_setup_, last_record_check_
  std::chrono::steady_clock::time_point last_setup_{};
  std::chrono::steady_clock::time_point last_record_check_{};
  std::atomic<uint64_t> dropped_total_{0};
  std::mutex drops_mu_;  // guards the two below
  uint64_t dropped_unreported_ = 0;
  std::string last_drop_reason_;
  std::optional<std::chrono::steady_clock::time_point> last_drop_report_;
};

}  // namespace nex::commands
