// CommandService: the node's side of durable commands. For each method it keeps a durable pull
// consumer on NEX_COMMANDS ("nexcmd-{node}-{method}", one message at a time, in the order sent),
// so commands sent while the node was down wait in the stream and run when it comes up, and a
// slow method never holds up another. Each command is checked (signature, issuer, method enabled,
// allow-list), answered `received`, run, answered with its final result on NEX_COMMAND_RESULTS,
// written to the audit log, and only then acknowledged: a node killed during a command runs it
// again after its restart (attempt 2) before anything newer. A command whose id already has a
// final result is acknowledged without running again.
#pragma once

#include <atomic>
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

#include "commands/command.h"
#include "core/error.h"
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
  int64_t retention_days = 30;         // of the streams, when this node creates them
  int64_t default_timeout_s = 60;      // a method's time limit when the message sets none
  int64_t max_timeout_s = 3600;        // the most a message may ask for
  int64_t output_limit_bytes = 65536;  // stdout and stderr kept per result, each
  CliCommandConfig cli_command;
  std::filesystem::path text_log_file;  // default: {state_dir}/commands/textlog.txt
  // The JetStream domain the streams are in, for a node on a leaf server whose JetStream is
  // its hub's ($JS.{domain}.API); empty: the connected server's own.
  std::string jetstream_domain;
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
  std::filesystem::path state_dir;         // commands/ holds the audit log and what runs now
  // Runs a deploy request as $NEX.DEPLOY.{ns}.{node} would.
  std::function<Result<nlohmann::json>(const std::string& ns, std::string_view body)> deploy;
  std::function<void(const std::string&)> log;
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

  std::filesystem::path audit_log() const { return dir_ / "audit.jsonl"; }
  // Per method: the commands filed and not yet finished (waiting, or running now), read from
  // the consumers. Methods whose consumer cannot be read now (JetStream away) are left out.
  std::map<std::string, uint64_t> queue_depths() const;

 private:
  struct Worker;
  explicit CommandService(CommandServiceOptions options);
  void run(Worker& w);
  void handle(Worker& w, const nats::Message& msg);
  // Why `c`, received on `subject`, must not run; empty when it may.
  std::string refusal(const Command& c, std::string_view subject) const;
  CommandResult execute(Worker& w, const Command& c, const std::string& ack_subject,
                        CommandResult result);
  CommandResult run_cli_command(Worker& w, const Command& c, const std::string& ack_subject,
                                CommandResult result);
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
  std::mutex audit_mu_;  // guards audit_
  std::ofstream audit_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace nex::commands
