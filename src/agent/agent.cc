#include "agent/agent.h"
#include "triggers/subscription_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "api/events.h"
#include "api/host_services.h"
#include "api/json_fields.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "core/file_io.h"
#include "crypto/digest.h"

namespace nex::agent {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Connects, trying again until `patience` runs out: after `first_wait`, doubling up to
// `max_wait`. With `only_unreachable`, a refused login is final at once.
Result<nats::Connection> connect_patiently(const nats::ConnectOptions& options,
                                           std::chrono::milliseconds patience,
                                           std::chrono::milliseconds first_wait,
                                           std::chrono::milliseconds max_wait,
                                           bool only_unreachable) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (auto wait = first_wait;; wait = std::min(wait * 2, max_wait)) {
    auto conn = nats::Connection::connect(options);
    if (conn || (only_unreachable && conn.error().code != ErrorCode::kUnavailable) ||
        std::chrono::steady_clock::now() + wait >= deadline)
      return conn;
    std::this_thread::sleep_for(wait);
  }
}

// The user's NATS may be restarting or failing over while a deploy runs: a server that cannot be
// reached is tried again, with backoff, for up to this long.
constexpr auto kTriggerConnectPatience = std::chrono::seconds(5);

}  // namespace

Result<nats::Connection> connect_to_node(const nats::ConnectOptions& options,
                                         std::chrono::milliseconds patience) {
  using std::chrono::milliseconds;
  return connect_patiently(options, patience, milliseconds(10), milliseconds(10), false);
}

namespace {

Result<std::string> file_sha256(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorCode::kNotFound, "artifact not found at " + path.string());
  crypto::Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(
        std::span(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount())));
  }
  return hex_encode(sha.finish());
}

}  // namespace

Agent::Agent(nats::Connection conn, nats::ConnectOptions options, std::string workload_id,
             fs::path artifact_path, VmSetting vm, int trigger_channel)
    : conn_(std::move(conn)),
      options_(std::move(options)),
      id_(std::move(workload_id)),
      artifact_path_(std::move(artifact_path)),
      trigger_channel_(trigger_channel),
      vm_(std::move(vm)) {}

Result<std::string> Agent::fetch_artifact(int64_t total_bytes) {
  std::ofstream out(artifact_path_, std::ios::binary | std::ios::trunc);
  if (!out) return std::unexpected(file_error("write", artifact_path_, errno));
  crypto::Sha256 sha;  // as it arrives: reading it back costs a TCG guest as much again
  for (int64_t offset = 0; offset < total_bytes;) {
    auto chunk = conn_.request(api::agent_subject::artifact(id_), api::dump({{"offset", offset}}),
                               std::chrono::seconds(10));
    if (!chunk) return fail(chunk.error().wrap("fetch the artifact from the node"));
    if (chunk->data().empty())
      return fail(ErrorCode::kIo, "the node sent " + std::to_string(offset) + " of " +
                                      std::to_string(total_bytes) + " artifact bytes");
    out.write(chunk->data().data(), static_cast<std::streamsize>(chunk->data().size()));
    sha.update(
        std::span(reinterpret_cast<const uint8_t*>(chunk->data().data()), chunk->data().size()));
    offset += static_cast<int64_t>(chunk->data().size());
  }
  out.close();
  if (!out) return std::unexpected(file_error("write", artifact_path_, errno));
  return hex_encode(sha.finish());
}

Status Agent::forward_loopback(const std::vector<std::string>& urls) {
  if (vm_.loopback_gateway.empty()) return {};
  const size_t colon = vm_.loopback_gateway.rfind(':');
  const std::string host = vm_.loopback_gateway.substr(0, colon);
  const int gateway_port = std::atoi(vm_.loopback_gateway.c_str() + colon + 1);
  for (const auto& url : urls) {
    auto port = sandbox::loopback_port(url);
    if (!port) continue;
    auto f = sandbox::LoopbackForwarder::start(-1, *port, host, gateway_port,
                                               std::to_string(*port) + "\n");
    if (!f) return fail(f.error().wrap("the workload's loopback NATS " + url));
    forwarders_.push_back(std::move(*f));
  }
  return {};
}

Status Agent::start() {
  auto deploy = conn_.subscribe(api::agent_subject::deploy(id_),
                                [this](nats::Message m) { on_deploy(std::move(m)); });
  if (!deploy) return fail(deploy.error());
  subs_.push_back(std::move(*deploy));
  auto undeploy = conn_.subscribe(api::agent_subject::undeploy(id_),
                                  [this](nats::Message m) { on_undeploy(std::move(m)); });
  if (!undeploy) return fail(undeploy.error());
  subs_.push_back(std::move(*undeploy));
  auto ping =
      conn_.subscribe(api::agent_subject::ping(id_), [this](nats::Message m) { reply(m, "{}"); });
  if (!ping) return fail(ping.error());
  subs_.push_back(std::move(*ping));
  NEX_RETURN_IF_ERROR(conn_.flush());

  const json hello = {{"id", id_},
                      {"start_time", rfc3339_nano(std::chrono::system_clock::now())},
                      {"message", "Host-supervisor started"}};
  auto ack =
      conn_.request(api::agent_subject::handshake(id_), api::dump(hello), std::chrono::seconds(5));
  if (!ack) return fail(ack.error().wrap("handshake"));
  return {};
}

void Agent::run_until_stopped() {
  // Also ends when the node's internal server goes away (the agent does not reconnect).
  std::unique_lock lock(mu_);
  while (!stop_cv_.wait_for(lock, std::chrono::milliseconds(250),
                            [this] { return stopping_ || !conn_.connected(); })) {
  }
}

void Agent::request_stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  stop_cv_.notify_all();
}

void Agent::reply(const nats::Message& msg, const std::string& body) {
  if (!msg.reply().empty()) (void)conn_.publish(msg.reply(), body);
}

void Agent::publish_log(const nats::Connection& out, const std::string& level,
                        const std::string& text) {
  (void)out.publish(api::agent_subject::logs(id_),
                    api::dump({{"source", workload_name_}, {"level", level}, {"text", text}}));
}

void Agent::publish_event(const nats::Connection& out, const std::string& type, const json& data) {
  (void)out.publish(api::agent_subject::events(id_, type), api::cloud_event(id_, type, data));
}

void Agent::on_deploy(nats::Message msg) {
  auto refuse = [&](const std::string& why) {
    reply(msg, api::dump({{"accepted", false}, {"message", why}}));
  };
  auto req = api::parse_agent_deploy_request(msg.data());
  if (!req) return refuse(req.error().message);
  std::lock_guard lock(mu_);
  if (runner_) runner_.reset();  // a redeploy after the previous run ended
  if (vm_.fetch_artifact || !req->hash.empty()) {
    auto actual =
        vm_.fetch_artifact ? fetch_artifact(req->total_bytes) : file_sha256(artifact_path_);
    if (!actual) return refuse(actual.error().message);
    if (!req->hash.empty() && *actual != req->hash)
      return refuse("artifact SHA-256 mismatch: expected " + req->hash + ", got " + *actual);
  }
  if (api::is_function(req->workload_type)) {
    if (auto st = start_function(*req); !st) return refuse(st.error().message);
    reply(msg, api::dump({{"accepted", true}, {"message", "function ready"}}));
    return;
  }
  ::chmod(artifact_path_.c_str(), 0700);
  workload_name_ = req->workload_name;
  if (auto st = forward_loopback(sandbox::nats_urls(req->environment)); !st)
    return refuse(st.error().message);
  auto runner = NativeRunner::start(
      artifact_path_, req->argv, req->environment,
      [this](bool is_stderr, const std::string& line) {
        publish_log(conn_, is_stderr ? "error" : "info", line);
      },
      [this](int code, std::string message) {
        publish_event(conn_, kWorkloadExitedEvent,
                      {{"workload_name", workload_name_}, {"code", code}, {"message", message}});
      });
  if (!runner) return refuse("cannot start the workload: " + runner.error().message);
  runner_ = std::move(*runner);
  reply(msg, api::dump({{"accepted", true}, {"message", "workload started"}}));
}

namespace {

runtime::FunctionLimits function_limits(const api::FunctionLimitsConfig& config) {
  runtime::FunctionLimits limits;
  if (config.timeout_ms) limits.timeout = std::chrono::milliseconds(config.timeout_ms);
  if (config.memory_mib) limits.memory_bytes = static_cast<size_t>(config.memory_mib) << 20;
  if (config.concurrency) limits.concurrency = static_cast<int>(config.concurrency);
  limits.reuse_global = config.global_scope == "workload";
  return limits;
}

// A direct subscription's queue group is its subject: copies of the function share the load.
std::string queue_group(bool direct, const std::string& subject) { return direct ? subject : ""; }

}  // namespace

Status Agent::start_function(const api::AgentDeployRequest& req) {
  auto read = read_file(artifact_path_);
  if (!read) return fail(ErrorCode::kNotFound, "artifact not found at " + artifact_path_.string());
  const std::string code = std::move(*read);
  workload_name_ = req.workload_name;
  namespace_ = req.ns;
  NEX_RETURN_IF_ERROR(open_bulk_connection());
  // Triggers come from the user's NATS directly (callers reach this agent with no hop through
  // the node), or through the node: over its trigger channel, or on the agent's own subject.
  const bool direct = !req.trigger_nats_urls.empty();
  auto subjects = connect_triggers(req, direct);
  if (!subjects) return fail(subjects.error());
  const nats::Connection& triggers = direct ? *trigger_conn_ : conn_;
  // Where the callers are: the user's NATS when direct, else the node's (which passes answers
  // on, and says its limit), not the internal NATS this agent answers the node on.
  reply_max_payload_ = direct                  ? trigger_conn_->max_payload()
                       : req.reply_max_payload ? req.reply_max_payload
                                               : conn_.max_payload();
  auto source = trigger_source(req, triggers, *subjects, direct);
  if (!source) return fail(source.error());
  NEX_RETURN_IF_ERROR(load_function(req, code, std::move(*source)));
  if (subjects->size() > 1) NEX_RETURN_IF_ERROR(subscribe_each(triggers, *subjects, direct));
  if (subjects->empty()) return {};
  NEX_RETURN_IF_ERROR(triggers.flush());
  // A login that may not subscribe to its triggers hears so from the server after the SUB, which
  // the flush's round trip has seen by now: refuse the deploy rather than wait for nothing.
  if (direct) {
    if (auto st = trigger_conn_->last_error(); !st) return fail(st.error().wrap("trigger NATS"));
  }
  return {};
}

Status Agent::open_bulk_connection() {
  nats::ConnectOptions bulk_options = options_;
  bulk_options.name += " events";
  bulk_options.send_asap = false;
  auto bulk = connect_to_node(bulk_options, std::chrono::seconds(2));
  if (!bulk) return fail(bulk.error().wrap("second internal connection"));
  reporter_.reset();  // it publishes on the connection being replaced
  bulk_ = std::move(*bulk);
  reporter_.emplace(*bulk_, api::agent_subject::invocations(id_));
  return {};
}

Result<std::vector<std::string>> Agent::connect_triggers(const api::AgentDeployRequest& req,
                                                         bool direct) {
  if (req.trigger_channel && trigger_channel_ < 0)
    return fail(ErrorCode::kInvalidArgument,
                "trigger_channel: this agent was started without one (" +
                    std::string(api::kEnvTriggerFd) + ")");
  NEX_RETURN_IF_ERROR(forward_loopback(req.trigger_nats_urls));
  if (req.trigger_channel) return std::vector<std::string>{};
  if (!direct) return std::vector<std::string>{api::agent_subject::trigger(id_)};
  auto conn = connect_patiently({.urls = req.trigger_nats_urls,
                                 .name = "nex-agent " + id_ + " triggers",
                                 .nkey_seed = req.trigger_nats_seed,
                                 .user_jwt = req.trigger_nats_jwt,
                                 .send_asap = true},
                                kTriggerConnectPatience, std::chrono::milliseconds(50),
                                std::chrono::milliseconds(500), /*only_unreachable=*/true);
  if (!conn) return fail(conn.error().wrap("trigger NATS"));
  trigger_conn_ = std::make_shared<nats::Connection>(std::move(*conn));
  return req.trigger_subjects;
}

Result<std::unique_ptr<runtime::InvocationSource>> Agent::trigger_source(
    const api::AgentDeployRequest& req, const nats::Connection& triggers,
    const std::vector<std::string>& subjects, bool direct) {
  std::unique_ptr<runtime::InvocationSource> source;
  if (req.trigger_channel) {
    source = std::make_unique<triggers::ChannelTriggerSource>(
        trigger_channel_, [this, answers = std::make_shared<triggers::ChannelAnswers>(
                                     trigger_channel_)](triggers::frames::Trigger t) {
          return invocation(
              std::move(t.subject), std::move(t.payload),
              [answers, seq = t.seq](const runtime::InvocationResult& r, int64_t elapsed) {
                (void)answers->answer(seq, r, elapsed);
              });
        });
  } else if (subjects.size() == 1) {
    auto sub = triggers.subscribe_sync(subjects[0], queue_group(direct, subjects[0]));
    if (!sub) return fail(sub.error().wrap(subjects[0]));
    source = std::make_unique<triggers::TriggerSource>(
        std::move(*sub), [this, direct](nats::Message m) { return invocation(m, direct); });
  }
  return source;
}

Status Agent::load_function(const api::AgentDeployRequest& req, const std::string& code,
                            std::unique_ptr<runtime::InvocationSource> source) {
  const bool js = req.workload_type == api::WorkloadType::kJavaScript;
  auto function = runtime::Function::create(
      {.language = js ? runtime::Language::kJavaScript : runtime::Language::kWasm,
       .name = req.workload_name + (js ? ".js" : ".wasm"),
       .code = code,
       .environment = req.environment,
       .host_services = [this](const runtime::HostCall& c) { return host_call(c); }},
      function_limits(req.function_limits),
      [this](std::string_view level, std::string_view text) {
        publish_log(*bulk_, std::string(level), std::string(text));
      },
      std::move(source));
  if (!function) return fail(function.error().wrap("the function does not load"));
  function_ = std::move(*function);
  return {};
}

Status Agent::subscribe_each(const nats::Connection& triggers,
                             const std::vector<std::string>& subjects, bool direct) {
  for (const auto& subject : subjects) {
    auto sub = triggers.subscribe(
        subject,
        [this, direct](nats::Message m) {
          std::shared_ptr<runtime::Function> function;
          {
            std::lock_guard lock(mu_);
            function = function_;
          }
          runtime::Invocation i = invocation(m, direct);
          if (!function) return i.done({false, runtime::kFunctionStopped});  // undeploying
          function->invoke(std::move(i.subject), std::move(i.payload), std::move(i.done));
        },
        queue_group(direct, subject));
    if (!sub) return fail(sub.error().wrap(subject));
    trigger_subs_.push_back(std::move(*sub));
  }
  return {};
}

runtime::Invocation Agent::invocation(
    std::string subject, std::string payload,
    std::function<void(const runtime::InvocationResult&, int64_t)> answer) {
  auto done = [this, subject, answer = std::move(answer),
               start = std::chrono::steady_clock::now()](runtime::InvocationResult r) {
    const int64_t elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count();
    // A reply the callers' server would refuse never reaches them: they hear why instead, and
    // the invocation counts as failed.
    if (auto why = api::reply_too_large(r.body.size(), reply_max_payload_); r.ok && !why.empty()) {
      publish_log(*bulk_, "error", why);
      r = {false, std::move(why)};
    }
    answer(r, elapsed);
    reporter_->add({.trigger_subject = subject,
                    .elapsed_nanos = elapsed,
                    .error = r.ok ? std::nullopt : std::optional(r.body)});
  };
  return {std::move(subject), std::move(payload), std::move(done)};
}

runtime::Invocation Agent::invocation(const nats::Message& m, bool direct) {
  // Only the node sets the subject a relayed trigger was sent to; a direct caller cannot.
  std::string subject =
      direct ? std::string(m.subject())
             : m.header(api::kHeaderTriggerSubject).value_or(std::string(m.subject()));
  return invocation(
      std::move(subject), std::string(m.data()),
      [this, reply_to = std::string(m.reply()), out = direct ? trigger_conn_ : nullptr](
          const runtime::InvocationResult& r, int64_t elapsed) {
        if (!reply_to.empty()) answer(out ? *out : conn_, reply_to, r, elapsed);
      });
}

void Agent::answer(const nats::Connection& out, const std::string& reply_to,
                   const runtime::InvocationResult& r, int64_t elapsed_ns) {
  auto answer = api::function_reply(reply_to, r.body, !r.ok, elapsed_ns, out.max_payload());
  if (answer) (void)out.publish(*answer);
}

runtime::HostReply Agent::host_call(const runtime::HostCall& call) {
  namespace wire = api::host_services;
  auto msg = nats::Message::create(
      wire::rpc_subject(id_, namespace_, workload_name_, call.service, call.method), call.body);
  if (!msg) return {wire::kBadRequest, msg.error().message, {}};
  for (const auto& [name, value] : call.headers) {
    if (auto st = msg->set_header(name, value); !st)
      return {wire::kBadRequest, st.error().message, {}};
  }
  auto answer = conn_.request(*msg, std::chrono::milliseconds(wire::kClientTimeoutMs));
  if (!answer) {
    const bool timed_out = answer.error().code == ErrorCode::kTimeout;
    return {timed_out ? wire::kTimedOut : wire::kUnavailable,
            timed_out ? "the node did not answer within 5 s" : answer.error().message,
            {}};
  }
  runtime::HostReply r;
  const std::string code = answer->header(wire::kHeaderCode).value_or("");
  r.code = code.empty() ? wire::kFailed : std::atoi(code.c_str());
  r.message = answer->header(wire::kHeaderMessage).value_or("");
  r.body = std::string(answer->data());
  return r;
}

void Agent::on_undeploy(nats::Message msg) {
  std::unique_ptr<NativeRunner> runner;
  std::shared_ptr<runtime::Function> function;
  {
    std::lock_guard lock(mu_);
    runner = std::move(runner_);
    function = std::move(function_);
  }
  // No new triggers; those already received are answered that the function stopped, rather
  // than left to time out.
  nats::Subscription::drain_and_wait(trigger_subs_, api::kTriggerDrainTimeout);
  trigger_subs_.clear();
  function.reset();  // invocations in flight end with an error reply, and so do triggers
                     // received and not yet taken (once the last trigger handler lets go of it)
  if (runner) runner->stop(std::chrono::seconds(5));
  if (reporter_) reporter_->flush();  // the last invocations' events go out before the reply,
  if (bulk_) (void)bulk_->flush();
  (void)conn_.flush();  // and so does the exit event
  reply(msg, "{}");
  (void)conn_.flush();
  request_stop();
}

}  // namespace nex::agent
