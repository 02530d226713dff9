#include "commands/command_service.h"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>
#include <cstring>

#include <algorithm>
#include <condition_variable>
#include <fstream>

#include "api/json_fields.h"
#include "api/subject.h"
#include "commands/sender.h"
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
constexpr auto kSetupEvery = 5s;         // the streams' limits and the record, checked again
constexpr auto kRecordCheckEvery = 60s;  // the record, looked at while the node runs
constexpr auto kDropReportEvery = 60s;   // dropped messages, summed up in the log
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
  r.no_unknown_fields({"enabled", "retention_days", "max_bytes", "max_message_bytes",
                       "default_timeout_s", "max_timeout_s", "output_limit_bytes", "cli_command",
                       "text_log_file", "jetstream_domain"});
  r.string("jetstream_domain", c.jetstream_domain);
  r.boolean("enabled", c.enabled);
  r.integer("retention_days", c.retention_days);
  r.integer("max_bytes", c.max_bytes);
  r.integer("max_message_bytes", c.max_message_bytes);
  r.integer("default_timeout_s", c.default_timeout_s);
  r.integer("max_timeout_s", c.max_timeout_s);
  r.integer("output_limit_bytes", c.output_limit_bytes);
  std::string log_file;
  if (r.string("text_log_file", log_file); !log_file.empty()) c.text_log_file = log_file;
  if (c.retention_days < 1) r.fail_field("retention_days", "must be at least 1");
  // A result with both outputs at output_limit_bytes must fit; a NATS server takes at most 64 MiB.
  if (c.max_message_bytes < 65536 || c.max_message_bytes > 64 << 20)
    r.fail_field("max_message_bytes", "must be 65536 to 67108864 bytes");
  if (c.max_bytes < c.max_message_bytes)
    r.fail_field("max_bytes", "must be at least max_message_bytes");
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
    : options_(std::move(options)),
      dir_(options_.state_dir / "commands"),
      audit_(dir_ / "audit.jsonl") {}

Result<std::unique_ptr<CommandService>> CommandService::start(CommandServiceOptions options) {
  NEX_RETURN_IF_ERROR(validate_name(options.node_name, "node_name"));
  if (!options.node_key || options.node_key->type() != crypto::KeyType::kServer)
    return fail(ErrorCode::kInvalidArgument, "commands: the node's server key is required");
  std::unique_ptr<CommandService> s(new CommandService(std::move(options)));
  s->node_id_ = s->options_.node_key->public_key();
  s->record_ = {
      .name = s->options_.node_name, .xkey = s->options_.node_xkey, .tags = s->options_.tags};
  sign(s->record_, *s->options_.node_key);
  if (s->options_.allow_unbound_requests && s->options_.log)
    s->options_.log(
        "Warning: allow_unbound_requests is set: durable commands without expiresAt (older "
        "tooling) are run, and anyone who saw one can file it again to run it where its id "
        "has no result");
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

StreamLimits CommandService::limits() const {
  const auto& c = options_.config;
  return {.max_age = std::chrono::hours(24 * c.retention_days),
          .max_bytes = c.max_bytes,
          .max_message_bytes = c.max_message_bytes,
          .replicas = c.replicas};
}

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
    // Readers check results against the record: none is filed before it is.
    if (auto st = set_up_jetstream(); !st) {
      wait_retry(st.error());
      continue;
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
      if (w.method == method::kHello) {  // chores of the node, done by one worker
        keep_record_filed();
        report_drops(false);
      }
    }
    std::lock_guard lock(w.mu);
    w.consumer = nullptr;
  }
}

Status CommandService::set_up_jetstream() {
  std::lock_guard lock(setup_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (last_setup_ != std::chrono::steady_clock::time_point{} && now - last_setup_ < kSetupEvery)
    return {};
  NEX_RETURN_IF_ERROR(enforce_limits(*js_, limits(), [&](const std::string& what) {
    if (options_.log) options_.log("Commands: " + what);
  }));
  auto filed = keep_filed(*js_, record_, limits().max_age / 2);
  if (!filed)
    return fail(filed.error().wrap("cannot file this node in " + std::string(kNodeDirectory)));
  if (*filed == RecordState::kReplacedByOther && options_.log)
    options_.log("Commands: the record of this node in " + std::string(kNodeDirectory) +
                 " was not its own (someone else filed it); filed it again");
  last_setup_ = last_record_check_ = now;
  return {};
}

void CommandService::keep_record_filed() {
  std::lock_guard lock(setup_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_record_check_ < kRecordCheckEvery) return;
  last_record_check_ = now;
  auto filed = keep_filed(*js_, record_, limits().max_age / 2);
  if (!options_.log) return;
  if (!filed) {
    options_.log("Commands: cannot check this node's record in " + std::string(kNodeDirectory) +
                 ": " + filed.error().message);
  } else if (*filed == RecordState::kReplacedByOther || *filed == RecordState::kNew) {
    options_.log("Commands: the record of this node in " + std::string(kNodeDirectory) +
                 (*filed == RecordState::kNew ? " was gone" : " was replaced by someone else") +
                 "; filed it again");
  }
}

Result<Command> CommandService::verified(const nats::Message& msg) const {
  auto unverified = [](std::string why) {
    return fail(ErrorCode::kPermissionDenied, std::move(why));
  };
  const auto limit = static_cast<size_t>(options_.config.max_message_bytes);
  if (msg.data().size() > limit)
    return unverified("it is " + std::to_string(msg.data().size()) + " bytes, more than " +
                      std::to_string(limit));
  auto c = parse_command(msg.data());
  if (!c) return unverified(c.error().message);
  const auto t = api::subject_tokens(msg.subject());  // $NEX.cmd.{node}.{kind}.{method}
  // A signed message filed on another subject would be answered there, under its id.
  if (t.size() != 5 || t[2] != c->to_node || t[3] != c->command_or_event || t[4] != c->method)
    return unverified("its toNode, commandOrEvent and method do not match its subject");
  if (c->to_node != options_.node_name) return unverified("it is for node '" + c->to_node + "'");
  if (auto st = verify_signature(*c); !st) return unverified(st.error().message);
  const auto& issuers = options_.valid_issuers;
  if (!issuers.empty() && std::find(issuers.begin(), issuers.end(), c->issuer) == issuers.end())
    return unverified("issuer " + c->issuer + " is not one of this node's valid_issuers");
  return c;
}

void CommandService::drop(Worker& w, const nats::Message& msg, const Error& why) {
  settle(w, msg, /*remove=*/true);
  ++dropped_total_;
  if (options_.dropped_unverified) options_.dropped_unverified();
  {
    std::lock_guard lock(drops_mu_);
    ++dropped_unreported_;
    last_drop_reason_ = text_log_line(why.message.substr(0, 200));
  }
  report_drops(true);
}

void CommandService::report_drops(bool first) {
  std::lock_guard lock(drops_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (dropped_unreported_ == 0) return;
  if (last_drop_report_ ? now - *last_drop_report_ < kDropReportEvery : !first) return;
  if (options_.log)
    options_.log("Commands: dropped " + std::to_string(dropped_unreported_) +
                 " message(s) that failed verification " +
                 (last_drop_report_ ? "in the last minute" : "(more are summed up each minute)") +
                 ", " + std::to_string(dropped_total_) +
                 " since the start; the latest: " + last_drop_reason_);
  dropped_unreported_ = 0;
  last_drop_report_ = now;
}

bool CommandService::already_done(const Command& c) const {
  const std::string subject = result_subject(options_.node_name, c.id);
  // Only this node's own word counts: anyone else who may publish results cannot stop a
  // command from running by filing one for it.
  auto own_final = [&](const nats::Message& m) {
    auto r = parse_result(m.data());
    return r && is_final(r->status) && r->node == options_.node_name && r->node_id == node_id_ &&
           verify_signature(*r);
  };
  auto last = js_->last_message(kResultStream, subject);
  if (!last) return false;
  if (own_final(*last)) return true;
  // Someone else's result (or a `received`) is the newest: look through them all.
  bool done = false;
  (void)for_each_filed(*js_, kResultStream, subject, 0,
                       [&](const nats::Message& m, int64_t) { done = done || own_final(m); });
  return done;
}

void CommandService::refuse_duplicate(Worker& w, const nats::Message& msg, const Command& c,
                                      int64_t attempt) {
  audit("duplicate", {{"id", c.id}, {"attempt", attempt}});
  if (options_.log)
    options_.log("Command " + c.id + " (" + c.method +
                 ") was sent again under its id; it already ran: the copy is not run");
  // Filed, so that the sender hears the copy was refused rather than nothing.
  CommandResult r{.id = c.id,
                  .node = options_.node_name,
                  .node_id = node_id_,
                  .method = c.method,
                  .status = status::kDuplicate,
                  .reason =
                      "a copy sent again under the id of a command this node already ran; "
                      "not run again",
                  .started = now(),
                  .attempt = attempt};
  if (publish_result(r)) settle(w, msg, /*remove=*/true);
}

std::optional<Refusal> CommandService::refusal(const Command& c) const {
  auto refused = [](std::string why) { return Refusal{status::kRefused, std::move(why)}; };
  if (auto r = check_times(c, std::chrono::system_clock::now(),
                           std::chrono::hours(24 * options_.config.retention_days),
                           options_.allow_unbound_requests))
    return r;
  const MethodInfo* m = find_method(c.method);
  if (m == nullptr) return refused("this node has no method '" + c.method + "'");
  if (m->command != c.is_command())
    return refused("method " + c.method + " is " + (m->command ? "a command" : "an event") +
                   ", not " + (c.is_command() ? "a command" : "an event"));
  if (c.method == method::kCliCommand || c.method == method::kShellCommand) {
    const auto& cli = options_.config.cli_command;
    if (!cli.enabled)
      return refused("method " + c.method +
                     " is disabled on this node (commands.cli_command.enabled)");
    if (options_.valid_issuers.empty())
      return refused("method " + c.method +
                     " needs valid_issuers in the node config: it runs nothing for just any "
                     "issuer");
    if (c.argv().empty())
      return refused("method " + c.method + " needs the argv in data or methodArgs");
    if (auto st = check_argv(c); !st) return refused(st.error().message);
    if (std::find(cli.allow.begin(), cli.allow.end(), c.argv()[0]) == cli.allow.end())
      return refused("command '" + c.argv()[0] +
                     "' is not in this node's commands.cli_command.allow");
  }
  if (c.method == method::kDeploy && !options_.deploy) return refused("this node does not deploy");
  if (c.method_timeout > options_.config.max_timeout_s)
    return refused("methodTimeout " + std::to_string(c.method_timeout) +
                   " s is more than this node's " + std::to_string(options_.config.max_timeout_s) +
                   " s");
  return std::nullopt;
}

void CommandService::settle(Worker& w, const nats::Message& msg, bool remove) {
  if (auto st = w.consumer->ack(std::string(msg.reply())); !st) {
    if (options_.log) options_.log("Commands: " + st.error().message);
    return;  // delivered again later, and handled then
  }
  if (!remove) return;
  auto meta = nats::JetStream::metadata(msg);
  if (!meta) return;
  if (auto st = js_->delete_message(kCommandStream, meta->stream_sequence);
      !st && st.error().code != ErrorCode::kNotFound && options_.log)
    options_.log("Commands: " + st.error().message);
}

void CommandService::handle(Worker& w, const nats::Message& msg) {
  const std::string ack_subject(msg.reply());
  auto meta = nats::JetStream::metadata(msg);
  const int64_t attempt = meta ? static_cast<int64_t>(meta->num_delivered) : 1;
  const auto tokens = api::subject_tokens(msg.subject());  // $NEX.cmd.{node}.{kind}.{method}
  if (w.method.empty() && tokens.size() == 5 && find_method(tokens[4]) != nullptr) {
    settle(w, msg);  // that method's own consumer answers it
    return;
  }
  // Nothing is looked up or written for a message before it is verified.
  auto parsed = verified(msg);
  if (!parsed) return drop(w, msg, parsed.error());
  const Command& c = *parsed;
  if (already_done(c)) return refuse_duplicate(w, msg, c, attempt);
  json record = to_json(c);
  record["attempt"] = attempt;
  audit("command", record);
  CommandResult r{.id = c.id,
                  .node = options_.node_name,
                  .node_id = node_id_,
                  .method = c.method,
                  .started = now(),
                  .attempt = attempt};
  if (auto refused = refusal(c)) {
    if (options_.log)
      options_.log("Command " + c.id + " (" + c.method + ") " + refused->status + ": " +
                   refused->reason);
    r.status = refused->status;
    r.reason = refused->reason;
    r.ended = now();
    // Answered, then deleted: refused messages do not pile up in the stream.
    if (publish_result(r)) settle(w, msg, /*remove=*/true);
    return;
  }
  if (attempt > c.retries + 1) {
    r.status = status::kFailed;
    r.reason = "the node stopped during each of its " + std::to_string(attempt - 1) +
               " attempts; not run again (retries " + std::to_string(c.retries) + ")";
    r.ended = now();
    if (publish_result(r)) settle(w, msg);
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
  settle(w, msg);
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
    // One line per entry, escaped: no entry can forge a line or reach a terminal as codes.
    for (const auto& entry : c.data) out << text_log_line(entry) << "\n";
    out.flush();
    r.status = out ? status::kDone : status::kFailed;
    if (!out)
      r.reason = "cannot append to " + options_.config.text_log_file.string() + ": " +
                 std::strerror(errno);
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

Result<SpawnOptions> CommandService::cli_spawn_options(const Command& c, int64_t attempt) const {
  SpawnOptions spawn{.argv = c.argv(), .clear_env = true, .pipe_output = true};
  spawn.null_stdin = true;
  std::string user = options_.config.cli_command.user;
  if (user.empty() && ::getuid() == 0) user = "nobody";
  std::string home = "/";
  if (!user.empty()) {
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) return fail(ErrorCode::kNotFound, "no user '" + user + "' on this node");
    if (pw->pw_uid != ::getuid()) {
      spawn.uid = pw->pw_uid;
      spawn.gid = pw->pw_gid;
    }
    home = pw->pw_dir;
  }
  spawn.env = {kSafePath, "HOME=" + home, "NEX_COMMAND_ID=" + c.id,
               "NEX_COMMAND_ATTEMPT=" + std::to_string(attempt),
               "NEX_NODE_NAME=" + options_.node_name};
  return spawn;
}

CommandResult CommandService::run_cli_command(Worker& w, const Command& c,
                                              const std::string& ack_subject, CommandResult r) {
  auto spawn = cli_spawn_options(c, r.attempt);
  if (!spawn) {
    r.status = status::kFailed;
    r.reason = spawn.error().message;
    return r;
  }
  auto child = Subprocess::spawn(*spawn);
  if (!child) {
    r.status = status::kFailed;
    r.exit_code = 127;
    r.reason = child.error().message;
    return r;
  }
  const int64_t limit_s =
      c.method_timeout > 0 ? c.method_timeout : options_.config.default_timeout_s;
  const CliRun run = watch_cli_child(w, *child, std::chrono::seconds(limit_s), ack_subject, r);
  // Whatever it started in its process group goes with it.
  ::kill(-child->pid(), SIGKILL);
  const int status = run.exited ? *run.exited : child->terminate(100ms);
  if (run.interrupted) return CommandResult{};
  if (run.timed_out) {
    r.status = status::kTimeout;
    r.reason = "still running after methodTimeout " + std::to_string(limit_s) + " s; killed";
    return r;
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.status = *r.exit_code == 0 ? status::kDone : status::kFailed;
  if (*r.exit_code != 0) r.reason = "exit code " + std::to_string(*r.exit_code);
  return r;
}

CommandService::CliRun CommandService::watch_cli_child(Worker& w, Subprocess& child,
                                                       std::chrono::seconds limit,
                                                       const std::string& ack_subject,
                                                       CommandResult& r) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + limit;
  auto next_heartbeat = start + kHeartbeat;
  const size_t output_limit = static_cast<size_t>(options_.config.output_limit_bytes);
  pollfd fds[2] = {{child.stdout_fd(), POLLIN, 0}, {child.stderr_fd(), POLLIN, 0}};
  std::string* outs[2] = {&r.stdout_text, &r.stderr_text};
  bool* cut[2] = {&r.stdout_truncated, &r.stderr_truncated};
  int open_fds = 2;
  CliRun run;
  auto exited_at = std::chrono::steady_clock::time_point::max();
  while (true) {
    const auto t = std::chrono::steady_clock::now();
    if (stopping()) {
      run.interrupted = true;
      return run;
    }
    if (t >= deadline) {
      run.timed_out = true;
      return run;
    }
    // A program that left a background child holding the pipes: stop reading soon after.
    if (open_fds == 0 || (run.exited && t - exited_at > 200ms)) break;
    if (t >= next_heartbeat) {
      (void)w.consumer->in_progress(ack_subject);
      next_heartbeat = t + kHeartbeat;
    }
    if (!run.exited) {
      run.exited = child.wait_for(0ms);
      if (run.exited) exited_at = t;
    }
    if (open_fds > 0 && ::poll(fds, 2, 50) > 0) {
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buf[8192];
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          keep(*outs[i], std::string_view(buf, static_cast<size_t>(n)), output_limit, *cut[i]);
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;
          --open_fds;
        }
      }
    } else if (open_fds == 0) {
      std::this_thread::sleep_for(20ms);
    }
  }
  if (!run.exited) {
    // Its output is closed; it is exiting, or still working with nothing more to say.
    run.exited = child.wait_for(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
    run.timed_out = !run.exited;
  }
  return run;
}

namespace {

// Cuts the outputs (then the reason) of `r` until its JSON fits `limit` bytes, less room for
// the headers: the stream refuses larger messages, and a result must be filed.
void fit(CommandResult& r, size_t limit) {
  const size_t room = limit > 1024 ? limit - 1024 : limit / 2;
  while (api::dump(to_json(r)).size() > room) {
    std::string& larger =
        r.stdout_text.size() >= r.stderr_text.size() ? r.stdout_text : r.stderr_text;
    if (!larger.empty()) {
      (&larger == &r.stdout_text ? r.stdout_truncated : r.stderr_truncated) = true;
      larger.resize(larger.size() / 2);
    } else if (!r.reason.empty()) {
      r.reason.resize(r.reason.size() / 2);
    } else {
      break;
    }
  }
}

}  // namespace

bool CommandService::publish_result(const CommandResult& r, bool confirmed) {
  auto backoff = std::chrono::milliseconds(kRetryMin);
  CommandResult signed_result = r;
  fit(signed_result, static_cast<size_t>(options_.config.max_message_bytes));
  sign(signed_result, *options_.node_key);
  auto msg = nats::Message::create(result_subject(r.node, r.id), api::dump(to_json(signed_result)));
  if (!msg) return false;
  // The same result published twice (a retry after a lost ack) is stored once; nobody else can
  // file one ahead of it under that id.
  (void)msg->set_header("Nats-Msg-Id", result_msg_id(signed_result));
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
  // A line at a time, straight to the file, so a crash loses none that was written.
  auto st = audit_.append(api::dump(record));
  if (st) return;
  if (options_.log)
    options_.log("Commands: audit record (" + type + " " + record.value("id", "") +
                 ") lost: " + st.error().message);
  if (options_.on_audit_write_failure) options_.on_audit_write_failure();
}

}  // namespace nex::commands
