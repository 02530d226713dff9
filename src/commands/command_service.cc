#include "commands/command_service.h"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>

#include "api/json_fields.h"
#include "api/subject.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/subprocess.h"
#include "nats/jetstream.h"
#include "nats/pull_consumer.h"

namespace nex::commands {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kAckWait = 30s;    // a delivery not acked by then comes again...
constexpr auto kHeartbeat = 10s;  // ...so a running command says it is alive this often
constexpr auto kPullWait = 2s;
constexpr auto kRetryMin = 200ms;  // JetStream away: try again, doubling up to
constexpr auto kRetryMax = 5s;
const char* kSafePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string now() { return rfc3339_nano(std::chrono::system_clock::now()); }

// Appends `text` to `out` up to `limit` bytes; says whether anything was cut.
void keep(std::string& out, std::string_view text, size_t limit, bool& truncated) {
  const size_t room = out.size() < limit ? limit - out.size() : 0;
  if (text.size() > room) truncated = true;
  out.append(text.substr(0, room));
}

// Processes a command of a node that died left running (the ones its own child started: that
// child died with the node). They carry NEX_COMMAND_ID={id} in their environment, which is how
// they are told apart from anything else on the host.
void kill_leftovers(const std::string& id) {
  const std::string marker = "NEX_COMMAND_ID=" + id;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
    std::ifstream in(entry.path() / "environ", std::ios::binary);
    for (std::string var; std::getline(in, var, '\0');) {
      if (var == marker) {
        ::kill(std::stoi(pid), SIGKILL);
        break;
      }
    }
  }
}

}  // namespace

Status parse_commands_config(const json& j, CommandsConfig& c) {
  api::FieldReader r(j, "node config: commands");
  r.no_unknown_fields({"enabled", "retention_days", "default_timeout_s", "max_timeout_s",
                       "output_limit_bytes", "cli_command", "text_log_file", "jetstream_domain"});
  r.string("jetstream_domain", c.jetstream_domain);
  r.boolean("enabled", c.enabled);
  r.integer("retention_days", c.retention_days);
  r.integer("default_timeout_s", c.default_timeout_s);
  r.integer("max_timeout_s", c.max_timeout_s);
  r.integer("output_limit_bytes", c.output_limit_bytes);
  std::string log_file;
  if (r.string("text_log_file", log_file); !log_file.empty()) c.text_log_file = log_file;
  if (c.retention_days < 1) r.fail_field("retention_days", "must be at least 1");
  if (c.default_timeout_s < 1) r.fail_field("default_timeout_s", "must be at least 1");
  if (c.max_timeout_s < c.default_timeout_s)
    r.fail_field("max_timeout_s", "must be at least default_timeout_s");
  if (c.output_limit_bytes < 0 || c.output_limit_bytes > 512 * 1024)
    r.fail_field("output_limit_bytes", "must be 0 to 524288 (results must fit a NATS message)");
  NEX_RETURN_IF_ERROR(r.status());
  if (const json* cli = r.raw("cli_command")) {
    if (!cli->is_object())
      return fail(ErrorCode::kInvalidArgument,
                  "node config: commands: field 'cli_command' must be an object");
    api::FieldReader f(*cli, "node config: commands.cli_command");
    f.no_unknown_fields({"enabled", "allow", "user"});
    f.boolean("enabled", c.cli_command.enabled);
    f.string_list("allow", c.cli_command.allow);
    f.string("user", c.cli_command.user);
    if (c.cli_command.enabled && c.cli_command.allow.empty())
      f.fail_field("allow", "must list the commands (argv[0]) that may run when enabled");
    NEX_RETURN_IF_ERROR(f.status());
    if (!c.cli_command.user.empty() && ::getpwnam(c.cli_command.user.c_str()) == nullptr)
      return fail(ErrorCode::kInvalidArgument,
                  "node config: commands.cli_command: field 'user' names no user on this host: '" +
                      c.cli_command.user + "'");
  }
  return {};
}

// One method's consumer and the thread that works through it.
struct CommandService::Worker {
  std::string method;  // empty: the consumer that refuses unknown methods
  std::string durable;
  std::string filter;
  std::thread thread;
  std::mutex mu;  // guards consumer (interrupted from stop())
  nats::PullConsumer* consumer = nullptr;
  std::condition_variable cv;  // wakes a retry wait on stop
  // The ack subject and id of what runs now (empty when nothing does), for the next start of
  // the node should this one die. Rewritten in place: a file made and removed per command
  // costs more than the command.
  fs::path inflight;
  void set_inflight(const std::string& ack_subject, const std::string& id) {
    std::ofstream out(inflight, std::ios::trunc);
    if (!ack_subject.empty()) out << ack_subject << "\n" << id << "\n";
  }
};

CommandService::CommandService(CommandServiceOptions options)
    : options_(std::move(options)), dir_(options_.state_dir / "commands") {}

Result<std::unique_ptr<CommandService>> CommandService::start(CommandServiceOptions options) {
  NEX_RETURN_IF_ERROR(validate_name(options.node_name, "node_name"));
  if (!options.node_key || options.node_key->type() != crypto::KeyType::kServer)
    return fail(ErrorCode::kInvalidArgument, "commands: the node's server key is required");
  std::unique_ptr<CommandService> s(new CommandService(std::move(options)));
  s->node_id_ = s->options_.node_key->public_key();
  std::error_code ec;
  fs::create_directories(s->dir_ / "inflight", ec);
  if (ec) return fail(ErrorCode::kIo, "cannot create " + s->dir_.string() + ": " + ec.message());
  auto js = nats::JetStream::create(s->options_.connection,
                                    {.domain = s->options_.config.jetstream_domain});
  if (!js) return fail(js.error());
  s->js_ = std::move(*js);
  if (s->options_.config.text_log_file.empty())
    s->options_.config.text_log_file = s->dir_ / "textlog.txt";
  const std::string& node = s->options_.node_name;
  for (const auto& m : kMethods) {
    auto w = std::make_unique<Worker>();
    w->method = m.name;
    w->durable = "nexcmd-" + node + "-" + m.name;
    w->filter = "$NEX.cmd." + node + ".*." + m.name;
    w->inflight = s->dir_ / "inflight" / m.name;
    s->workers_.push_back(std::move(w));
  }
  auto unknown = std::make_unique<Worker>();
  unknown->durable = "nexcmd-" + node + "-unknown-methods";
  unknown->filter = "$NEX.cmd." + node + ".*.*";
  s->workers_.push_back(std::move(unknown));
  for (auto& w : s->workers_) {
    Worker* raw = w.get();
    w->thread = std::thread([svc = s.get(), raw] { svc->run(*raw); });
  }
  return s;
}

CommandService::~CommandService() { stop(); }

std::map<std::string, uint64_t> CommandService::queue_depths() const {
  std::map<std::string, uint64_t> out;
  for (const auto& w : workers_) {
    if (w->method.empty()) continue;  // unknown methods are refused at once
    auto info = js_->consumer_info(kCommandStream, w->durable);
    if (!info) break;  // not created yet, or JetStream away: the next scrape tries again
    out[w->method] = info->num_pending + info->num_ack_pending;
  }
  return out;
}

void CommandService::stop() {
  if (stopping_.exchange(true)) return;
  for (auto& w : workers_) {
    std::lock_guard lock(w->mu);
    if (w->consumer) w->consumer->interrupt();
    w->cv.notify_all();
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void CommandService::run(Worker& w) {
  auto backoff = std::chrono::milliseconds(kRetryMin);
  std::string last_error;
  auto wait_retry = [&](const Error& e) {
    if (e.message != last_error && options_.log)
      options_.log("Commands (" + w.durable + "): " + e.message + "; retrying");
    last_error = e.message;
    std::unique_lock lock(w.mu);
    w.cv.wait_for(lock, backoff, [&] { return stopping(); });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(kRetryMax));
  };
  while (!stopping()) {
    const auto retention = std::chrono::hours(24 * options_.config.retention_days);
    if (auto st = ensure_streams(*js_, retention); !st) {
      wait_retry(st.error());
      continue;
    }
    if (w.method == method::kHello) {  // once per connection to JetStream, by one worker
      if (auto st = announce_node(*js_, {options_.node_name, node_id_, options_.node_xkey});
          !st && options_.log)
        options_.log("Commands: cannot file this node in " + std::string(kNodeDirectory) + ": " +
                     st.error().message);
    }
    auto consumer = nats::PullConsumer::create(
        *js_, {.stream = kCommandStream,
               .durable = w.durable,
               .filter_subject = w.filter,
               .description = "nex node " + options_.node_name + ": " +
                              (w.method.empty() ? "refuses unknown methods" : w.method),
               .ack_wait = kAckWait,
               .max_ack_pending = w.method.empty() ? 1024 : 1});
    if (!consumer) {
      wait_retry(consumer.error());
      continue;
    }
    {
      std::lock_guard lock(w.mu);
      if (stopping()) break;
      w.consumer = &*consumer;
    }
    // What the previous run of this node was doing when it died: hand it back to be
    // delivered again at once, ahead of anything newer.
    if (!w.inflight.empty()) {
      std::ifstream in(w.inflight);
      std::string ack_subject, id;
      std::getline(in, ack_subject);
      std::getline(in, id);
      if (!id.empty()) kill_leftovers(id);
      if (!ack_subject.empty()) (void)consumer->nak(ack_subject);
      w.set_inflight({}, {});
    }
    if (!last_error.empty() && options_.log)
      options_.log("Commands (" + w.durable + "): JetStream is back");
    last_error.clear();
    backoff = kRetryMin;
    while (!stopping()) {
      auto msg = consumer->next(kPullWait);
      if (!msg) {
        if (!stopping()) wait_retry(msg.error());
        break;  // make the consumer again: the server may have lost it, or the connection
      }
      if (*msg) handle(w, **msg);
    }
    std::lock_guard lock(w.mu);
    w.consumer = nullptr;
  }
}

std::string CommandService::refusal(const Command& c, std::string_view subject) const {
  const auto t = api::subject_tokens(subject);  // $NEX.cmd.{node}.{kind}.{method}
  if (t.size() != 5 || t[2] != c.to_node || t[3] != c.command_or_event || t[4] != c.method)
    return "the message's toNode, commandOrEvent and method do not match its subject " +
           std::string(subject);
  if (c.to_node != options_.node_name)
    return "the message is for node '" + c.to_node + "', not '" + options_.node_name + "'";
  if (auto st = verify_signature(c); !st) return st.error().message;
  const auto& issuers = options_.valid_issuers;
  if (!issuers.empty() && std::find(issuers.begin(), issuers.end(), c.issuer) == issuers.end())
    return "issuer " + c.issuer + " is not one of this node's valid_issuers";
  const MethodInfo* m = find_method(c.method);
  if (m == nullptr) return "this node has no method '" + c.method + "'";
  if (m->command != c.is_command())
    return "method " + c.method + " is " + (m->command ? "a command" : "an event") + ", not " +
           (c.is_command() ? "a command" : "an event");
  if (c.method == method::kCliCommand || c.method == method::kShellCommand) {
    const auto& cli = options_.config.cli_command;
    if (!cli.enabled)
      return "method " + c.method + " is disabled on this node (commands.cli_command.enabled)";
    if (issuers.empty())
      return "method " + c.method +
             " needs valid_issuers in the node config: it runs nothing "
             "for just any issuer";
    if (c.argv().empty()) return "method " + c.method + " needs the argv in data or methodArgs";
    if (std::find(cli.allow.begin(), cli.allow.end(), c.argv()[0]) == cli.allow.end())
      return "command '" + c.argv()[0] + "' is not in this node's commands.cli_command.allow";
  }
  if (c.method == method::kDeploy && !options_.deploy) return "this node does not deploy";
  if (c.method_timeout > options_.config.max_timeout_s)
    return "methodTimeout " + std::to_string(c.method_timeout) + " s is more than this node's " +
           std::to_string(options_.config.max_timeout_s) + " s";
  return {};
}

void CommandService::handle(Worker& w, const nats::Message& msg) {
  const std::string ack_subject(msg.reply());
  auto meta = nats::JetStream::metadata(msg);
  const int64_t attempt = meta ? static_cast<int64_t>(meta->num_delivered) : 1;
  auto settle = [&] {
    if (auto st = w.consumer->ack(ack_subject); !st && options_.log)
      options_.log("Commands: " + st.error().message);
  };
  const auto tokens = api::subject_tokens(msg.subject());  // $NEX.cmd.{node}.{kind}.{method}
  const std::string subject_method = tokens.size() == 5 ? std::string(tokens[4]) : "";
  if (w.method.empty() && find_method(subject_method) != nullptr) {
    settle();  // that method's own consumer answers it
    return;
  }
  auto parsed = parse_command(msg.data());
  CommandResult r;
  r.node = options_.node_name;
  r.node_id = node_id_;
  r.attempt = attempt;
  r.started = now();
  if (!parsed) {
    r.id = msg.header("Nats-Msg-Id")
               .value_or("seq" + std::to_string(meta ? meta->stream_sequence : 0));
    r.id = r.id.substr(0, r.id.find('.'));  // the sender's id, without the node
    r.method = subject_method;
    r.status = status::kRefused;
    r.reason = parsed.error().message;
    audit("command",
          {{"subject", msg.subject()}, {"invalid", std::string(msg.data().substr(0, 4096))}});
    r.ended = now();
    if (publish_result(r)) settle();
    return;
  }
  const Command& c = *parsed;
  r.id = c.id;
  r.method = c.method;
  // Handled once: a final result filed for this id means an earlier delivery (or a copy the
  // sender published again) already ran.
  if (auto last = js_->last_message(kResultStream, result_subject(r.node, c.id))) {
    auto prior = parse_result(last->data());
    // Only this node's own word counts: anyone else who may publish results cannot stop a
    // command from running by filing one for it.
    if (prior && is_final(prior->status) && prior->node_id == node_id_ &&
        verify_signature(*prior)) {
      audit("duplicate", {{"id", c.id}, {"attempt", attempt}});
      settle();
      return;
    }
  }
  json record = to_json(c);
  record["attempt"] = attempt;
  audit("command", record);
  if (std::string why = refusal(c, msg.subject()); !why.empty()) {
    if (options_.log) options_.log("Command " + c.id + " (" + c.method + ") refused: " + why);
    r.status = status::kRefused;
    r.reason = why;
    r.ended = now();
    if (publish_result(r)) settle();
    return;
  }
  if (attempt > c.retries + 1) {
    r.status = status::kFailed;
    r.reason = "the node stopped during each of its " + std::to_string(attempt - 1) +
               " attempts; not run again (retries " + std::to_string(c.retries) + ")";
    r.ended = now();
    if (publish_result(r)) settle();
    return;
  }
  w.set_inflight(ack_subject, c.id);
  CommandResult received = r;
  received.status = status::kReceived;
  // Not waited for: the stream stores it before the final result, which is (same connection,
  // same order), and a lost `received` only means the sender sees the final result directly.
  publish_result(received, /*confirmed=*/false);
  CommandResult done = execute(w, c, ack_subject, r);
  if (done.status.empty()) {  // interrupted by stop(): hand it back
    (void)w.consumer->nak(ack_subject);
    w.set_inflight({}, {});
    return;
  }
  done.ended = now();
  if (!publish_result(done)) return;
  settle();
  w.set_inflight({}, {});
}

CommandResult CommandService::execute(Worker& w, const Command& c, const std::string& ack_subject,
                                      CommandResult r) {
  if (c.method == method::kHello) {
    r.status = status::kDone;
    r.exit_code = 0;
    r.stdout_text = "hello from " + options_.node_name + " (" + node_id_ + ")\n";
  } else if (c.method == method::kTextLogging) {
    std::ofstream out(options_.config.text_log_file, std::ios::app);
    for (const auto& line : c.data) out << line << (line.ends_with('\n') ? "" : "\n");
    out.flush();
    r.status = out ? status::kDone : status::kFailed;
    if (!out) r.reason = "cannot append to " + options_.config.text_log_file.string();
    r.exit_code = out ? 0 : 1;
  } else if (c.method == method::kDeploy) {
    auto deployed = options_.deploy(c.ns, api::dump(c.deploy));
    r.status = deployed ? status::kDone : status::kFailed;
    r.exit_code = deployed ? 0 : 1;
    if (deployed) {
      r.stdout_text = api::dump(*deployed) + "\n";
    } else {
      r.reason = deployed.error().message;
    }
  } else {
    return run_cli_command(w, c, ack_subject, std::move(r));
  }
  return r;
}

CommandResult CommandService::run_cli_command(Worker& w, const Command& c,
                                              const std::string& ack_subject, CommandResult r) {
  const auto& cli = options_.config.cli_command;
  SpawnOptions spawn{.argv = c.argv(), .clear_env = true, .pipe_output = true};
  spawn.null_stdin = true;
  std::string user = cli.user;
  if (user.empty() && ::getuid() == 0) user = "nobody";
  std::string home = "/";
  if (!user.empty()) {
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) {
      r.status = status::kFailed;
      r.reason = "no user '" + user + "' on this node";
      return r;
    }
    if (pw->pw_uid != ::getuid()) {
      spawn.uid = pw->pw_uid;
      spawn.gid = pw->pw_gid;
    }
    home = pw->pw_dir;
  }
  spawn.env = {kSafePath, "HOME=" + home, "NEX_COMMAND_ID=" + c.id,
               "NEX_COMMAND_ATTEMPT=" + std::to_string(r.attempt),
               "NEX_NODE_NAME=" + options_.node_name};
  auto child = Subprocess::spawn(spawn);
  if (!child) {
    r.status = status::kFailed;
    r.exit_code = 127;
    r.reason = child.error().message;
    return r;
  }
  const int64_t limit_s =
      c.method_timeout > 0 ? c.method_timeout : options_.config.default_timeout_s;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(limit_s);
  auto next_heartbeat = start + kHeartbeat;
  const size_t limit = static_cast<size_t>(options_.config.output_limit_bytes);
  pollfd fds[2] = {{child->stdout_fd(), POLLIN, 0}, {child->stderr_fd(), POLLIN, 0}};
  std::string* outs[2] = {&r.stdout_text, &r.stderr_text};
  bool* cut[2] = {&r.stdout_truncated, &r.stderr_truncated};
  int open_fds = 2;
  bool timed_out = false;
  bool interrupted = false;
  std::optional<int> exited;
  auto exited_at = std::chrono::steady_clock::time_point::max();
  while (true) {
    const auto t = std::chrono::steady_clock::now();
    if (stopping()) {
      interrupted = true;
      break;
    }
    if (t >= deadline) {
      timed_out = true;
      break;
    }
    // A program that left a background child holding the pipes: stop reading soon after.
    if (open_fds == 0 || (exited && t - exited_at > 200ms)) break;
    if (t >= next_heartbeat) {
      (void)w.consumer->in_progress(ack_subject);
      next_heartbeat = t + kHeartbeat;
    }
    if (!exited) {
      exited = child->wait_for(0ms);
      if (exited) exited_at = t;
    }
    if (open_fds > 0 && ::poll(fds, 2, 50) > 0) {
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buf[8192];
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          keep(*outs[i], std::string_view(buf, static_cast<size_t>(n)), limit, *cut[i]);
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;
          --open_fds;
        }
      }
    } else if (open_fds == 0) {
      std::this_thread::sleep_for(20ms);
    }
  }
  if (!exited && !timed_out && !interrupted) {
    // Its output is closed; it is exiting, or still working with nothing more to say.
    exited = child->wait_for(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
    timed_out = !exited;
  }
  // Whatever it started in its process group goes with it.
  ::kill(-child->pid(), SIGKILL);
  const int status = exited ? *exited : child->terminate(100ms);
  if (interrupted) return CommandResult{};
  if (timed_out) {
    r.status = status::kTimeout;
    r.reason = "still running after methodTimeout " + std::to_string(limit_s) + " s; killed";
    return r;
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.status = *r.exit_code == 0 ? status::kDone : status::kFailed;
  if (*r.exit_code != 0) r.reason = "exit code " + std::to_string(*r.exit_code);
  return r;
}

bool CommandService::publish_result(const CommandResult& r, bool confirmed) {
  auto backoff = std::chrono::milliseconds(kRetryMin);
  CommandResult signed_result = r;
  sign(signed_result, *options_.node_key);
  auto msg = nats::Message::create(result_subject(r.node, r.id), api::dump(to_json(signed_result)));
  if (!msg) return false;
  // The same result published twice (a retry after a lost ack) is stored once.
  (void)msg->set_header("Nats-Msg-Id",
                        r.id + "." + r.node + "." + r.status + "." + std::to_string(r.attempt));
  if (!confirmed) {
    (void)options_.connection.publish(*msg);
    audit("result", to_json(signed_result));
    return true;
  }
  for (;;) {
    auto ack = js_->publish(*msg);
    if (ack) break;
    if (options_.log) options_.log("Commands: result of " + r.id + ": " + ack.error().message);
    if (stopping()) return false;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(kRetryMax));
  }
  audit("result", to_json(signed_result));
  return true;
}

void CommandService::audit(const std::string& type, json record) {
  record["audit"] = type;
  record["at"] = now();
  std::lock_guard lock(audit_mu_);
  if (!audit_.is_open()) audit_.open(audit_log(), std::ios::app);
  audit_ << api::dump(record) << "\n";
  audit_.flush();  // a line at a time, so a crash loses none that was written
}

}  // namespace nex::commands
