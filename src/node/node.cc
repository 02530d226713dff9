#include "node/node.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "api/events.h"
#include "api/host_services.h"
#include "api/json_fields.h"
#include "api/subject.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/elf_info.h"
#include "core/encoding.h"
#include "core/nuid.h"
#include "crypto/jwt.h"
#include "nats/object_store.h"
#include "node/sandbox_setup.h"

namespace nex::node {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kDeployTimeout = 10s;
// How long the node remembers a trigger's caller: beyond the function's time limit (5 s).
constexpr auto kTriggerAnswerWindow = std::chrono::seconds(30);
constexpr auto kUndeployGrace = 5s;
constexpr auto kHealthInterval = 5s;
constexpr auto kHeartbeatInterval = 30s;
constexpr int kMaxRestarts = 5;
constexpr int kMaxConcurrentDeploys = 64;  // control API deploys under way at once  // an essential
                                           // workload that fails more often is a crash loop
const std::vector<std::string> kAlwaysDenied = {"$SYS.>", "$JS.>", "$NEX.>"};

void log_line(const std::string& text) {
  std::fprintf(stderr, "%s %s\n",
               rfc3339_nano(std::chrono::system_clock::now()).substr(0, 19).c_str(), text.c_str());
}

// Token i of "$NEX.DEPLOY.{ns}.{node}" style subjects.
std::string token(std::string_view subject, size_t i) {
  auto t = api::subject_tokens(subject);
  return i < t.size() ? std::string(t[i]) : std::string();
}

std::string go_arch() {
  utsname u{};
  uname(&u);
  const std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

json meminfo() {
  std::ifstream in("/proc/meminfo");
  json out = {{"total", 0}, {"free", 0}, {"available", 0}};
  for (std::string key, unit; in >> key;) {
    int64_t value = 0;
    in >> value;
    std::getline(in, unit);
    if (key == "MemTotal:") out["total"] = value;
    if (key == "MemFree:") out["free"] = value;
    if (key == "MemAvailable:") out["available"] = value;
  }
  return out;
}

int64_t seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t)
      .count();
}

Result<std::map<std::string, std::string>> open_environment(const api::DeployRequest& req,
                                                            const crypto::XKey& node_xkey) {
  std::map<std::string, std::string> env;
  if (req.environment.empty()) return env;
  auto sealed = base64_decode(req.environment, Base64::kStandard);
  if (!sealed)
    return fail(ErrorCode::kInvalidArgument, "field 'environment' must be base64 of an xkey seal");
  auto plain = node_xkey.open(*sealed, req.sender_public_key);
  if (!plain) {
    return fail(ErrorCode::kPermissionDenied,
                "the environment could not be decrypted: seal it to this node's xkey " +
                    node_xkey.public_key() + " (" + plain.error().message + ")");
  }
  auto j = api::FieldReader::parse_object(as_chars(*plain), "decrypted environment");
  if (!j) return fail(j.error());
  for (auto it = j->begin(); it != j->end(); ++it) {
    if (!it->is_string()) {
      return fail(ErrorCode::kInvalidArgument,
                  "decrypted environment: value of '" + it.key() + "' must be a string");
    }
    env[it.key()] = it->get<std::string>();
  }
  return env;
}

// The agent's {accepted, message} answer to a deploy: ok, or its reason for refusing.
Status agent_accepted(std::string_view reply) {
  auto j = api::FieldReader::parse_object(reply, "agent deploy response");
  if (!j) return fail(j.error());
  api::FieldReader f(*j, "agent deploy response");
  bool accepted = false;
  std::string message = "no reason given";
  f.boolean("accepted", accepted);
  f.string("message", message);
  NEX_RETURN_IF_ERROR(f.status());
  if (!accepted)
    return fail(ErrorCode::kInvalidArgument, "the agent refused the workload: " + message);
  return {};
}

}  // namespace

struct Node::Workload {
  std::string id;
  std::string ns;
  std::string name;
  std::string description;
  api::WorkloadType type = api::WorkloadType::kNative;
  std::string issuer;
  std::string deploy_jti;
  std::string hash;
  int64_t bytes = 0;
  bool essential = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  WarmAgent agent;
  api::AgentDeployRequest request;  // kept to restart an essential workload
  bool healthy = true;
  bool stopping = false;
  int restarts = 0;
  std::optional<std::chrono::steady_clock::time_point> restart_at;
  std::vector<nats::Subscription> triggers;  // functions: the trigger subjects, on control NATS
  std::atomic<int64_t> invocations{0};       // functions: answered triggers
  std::atomic<int64_t> runtime_ns{0};        // functions: their total run time in the agent
};

// A deploy's claim on the node's limits while it is under way (see Node::deploy).
class Node::Reservation {
 public:
  explicit Reservation(Node& node) : node_(node) {}
  ~Reservation() {
    std::lock_guard lock(node_.mu_);
    release_locked();
  }
  // These three with node_.mu_ held.
  void take_slot() {
    slot_ = true;
    ++node_.reserved_slots_;
  }
  void take_bytes(int64_t bytes) {
    bytes_ = bytes;
    node_.reserved_bytes_ += bytes;
  }
  void release_locked() {
    if (slot_) --node_.reserved_slots_;
    node_.reserved_bytes_ -= bytes_;
    slot_ = false;
    bytes_ = 0;
  }

 private:
  Node& node_;
  bool slot_ = false;
  int64_t bytes_ = 0;
};

Node::Node(NodeOptions options, NodeIdentity identity)
    : options_(std::move(options)), identity_(std::move(identity)) {
  if (options_.config.node_name.empty()) options_.config.node_name = commands::default_node_name();
}

Result<std::unique_ptr<Node>> Node::start(NodeOptions options) {
  if (options.agent_binary.empty()) {
    options.agent_binary = fs::read_symlink("/proc/self/exe").parent_path() / "nex-agent";
  }
  if (access(options.agent_binary.c_str(), X_OK) != 0) {
    return fail(ErrorCode::kNotFound, "nex-agent not found at " + options.agent_binary.string());
  }
  auto identity = NodeIdentity::claim(options.state_dir);
  if (!identity) return fail(identity.error());
  std::unique_ptr<Node> node(new Node(std::move(options), std::move(*identity)));
  Node& n = *node;

  // A previous run killed with SIGKILL may have left sandboxes' files: the pid lock says no
  // other node uses this directory, so start clean.
  n.run_dir_ = n.options_.state_dir / "run";
  std::error_code ec;
  fs::remove_all(n.run_dir_, ec);
  fs::create_directories(n.run_dir_, ec);

  nats::ConnectOptions control = n.options_.control;
  if (control.name.empty()) control.name = "nex-node " + n.id();
  control.send_asap = true;  // function replies go out at once
  auto conn = nats::Connection::connect(control);
  if (!conn) return fail(conn.error());
  n.control_ = std::move(*conn);
  control.name += " events";
  control.send_asap = false;
  auto bulk = nats::Connection::connect(control);
  if (!bulk) return fail(bulk.error());
  n.control_bulk_ = std::move(*bulk);
  log_line("Established node NATS connection to: " + n.control_->connected_url());

  auto driver = make_sandbox_driver(n.options_.config, n.options_.agent_binary, n.id());
  if (!driver) return fail(driver.error().wrap("node config"));
  n.driver_ = std::move(*driver);
  log_line("Sandbox driver: " + std::string(n.driver_->name()));
  auto internal = InternalServer::start(n.run_dir_ / "internal", n.driver_->internal_listen_host());
  if (!internal) return fail(internal.error());
  n.internal_ = std::move(*internal);
  log_line(fmt::format("Internal NATS server started client_url=nats://{}:{}",
                       n.driver_->internal_listen_host(), n.internal_->port()));

  // Logs and events share one subscription, so they are handled in the order the agent sent
  // them: a crashing workload's last lines are republished before its exit removes it.
  auto agent_traffic = n.internal_->connection().subscribe("hostint.*.>", [&n](nats::Message m) {
    const std::string kind = token(m.subject(), 2);
    if (kind == "logs") {
      n.on_agent_log(std::move(m));
    } else if (kind == "events") {
      n.on_agent_event(std::move(m));
    } else if (kind == "invocations") {
      n.on_agent_invocations(std::move(m));
    }  // handshakes belong to the pool, replies to their requests
  });
  if (!agent_traffic) return fail(agent_traffic.error());
  n.agent_subscriptions_.push_back(std::move(*agent_traffic));
  // Function answers have their own subscription (and delivery thread), so they never queue
  // behind the logs and events of busy workloads.
  auto answers = n.internal_->connection().subscribe(
      "hostint.*.trigger_reply.*", [&n](nats::Message m) { n.on_trigger_reply(std::move(m)); });
  if (!answers) return fail(answers.error());
  n.agent_subscriptions_.push_back(std::move(*answers));
  auto host_services = hs::Server::start(
      {.settings = n.options_.config.host_services_settings,
       .node_connection = n.options_.config.host_services,
       .control = *n.control_,
       .creds_dir = n.run_dir_,
       .internal_port = n.internal_->port(),
       .find_caller = [&n](const std::string& wid) -> std::optional<hs::Caller> {
         auto w = n.find_workload(wid);
         if (!w) return std::nullopt;
         return hs::Caller{w->ns, w->name, w->request.host_services};
       },
       .on_denied =
           [&n](const std::string& wid, const hs::Caller& caller, const std::string& text) {
             log_line("Workload " + caller.name + " (" + wid + "): " + text);
             n.publish_workload_log(caller.ns, caller.name, wid, "warn", text);
           }},
      n.internal_->connection());
  if (!host_services) return fail(host_services.error());
  n.host_services_ = std::move(*host_services);
  auto pool = AgentPool::start(*n.internal_, *n.driver_,
                               {.size = static_cast<size_t>(n.options_.config.machine_pool_size),
                                .agent_binary = n.options_.agent_binary,
                                .work_dir = n.run_dir_ / "sandboxes",
                                .handshake_timeout = std::chrono::milliseconds(
                                    n.options_.config.agent_handshake_timeout_ms)});
  if (!pool) return fail(pool.error());
  n.pool_ = std::move(*pool);

  std::string kept_in;
  n.store_ = WorkloadStore::open(*n.control_, n.id(), n.options_.state_dir, kept_in);
  log_line("Workloads are kept in " + kept_in + " to come back after a restart");
  n.restore_workloads();

  const std::string id = n.id();
  n.serve("$NEX.PING", &Node::on_ping);
  n.serve("$NEX.PING." + id, &Node::on_ping);
  n.serve("$NEX.AUCTION", &Node::on_auction);
  n.serve("$NEX.WPING.>", &Node::on_wping);
  n.serve("$NEX.INFO.*." + id, &Node::on_info);
  n.serve("$NEX.DEPLOY.*." + id, &Node::on_deploy);
  n.serve("$NEX.STOP.*." + id, &Node::on_stop);
  n.serve("$NEX.LAMEDUCK." + id, &Node::on_lameduck);
  if (auto st = n.control_->flush(); !st) return fail(st.error());

  if (n.options_.config.commands.enabled) {
    auto commands = commands::CommandService::start(
        {.node_name = n.name(),
         .node_key = n.identity_.server_key(),
         .node_xkey = n.xkey(),
         .connection = *n.control_,
         .config = n.options_.config.commands,
         .valid_issuers = n.options_.config.valid_issuers,
         .state_dir = n.options_.state_dir,
         .deploy = [&n](const std::string& ns,
                        std::string_view body) { return n.deploy(ns, body); },
         .log = log_line});
    if (!commands) return fail(commands.error().wrap("commands"));
    n.commands_ = std::move(*commands);
    log_line("Taking durable commands on $NEX.cmd." + n.name() + ".> (stream " +
             commands::kCommandStream + ")");
  }

  n.maintenance_ = std::thread([&n] { n.maintenance_loop(); });
  log_line("Use this key as the recipient for encrypted run requests public_xkey=" + n.xkey());
  log_line("NATS execution engine awaiting commands id=" + id + " version=" + n.options_.version);
  n.publish_event(api::kSystemNamespace, api::event_type::kNodeStarted,
                  {{"version", n.options_.version}, {"id", id}, {"tags", n.tags()}});

  for (const auto& req : n.options_.config.autostart) {
    auto r = n.deploy("default", api::dump(api::to_json(req)), DeployOrigin::kAutostart);
    log_line(r ? "Autostarted workload " + (*r)["name"].get<std::string>()
               : "Autostart failed: " + r.error().message);
  }
  return node;
}

Node::~Node() { stop(); }

void Node::serve(const std::string& subject, void (Node::*handler)(nats::Message)) {
  auto sub = control_->subscribe(subject, [this, handler](nats::Message m) {
    if (!stopped_) (this->*handler)(std::move(m));
  });
  if (sub) {
    subscriptions_.push_back(std::move(*sub));
  } else {
    log_line("cannot subscribe to " + subject + ": " + sub.error().message);
  }
}

void Node::reply(const nats::Message& msg, const std::string& body) {
  if (!msg.reply().empty()) (void)control_->publish(msg.reply(), body);
}

api::Tags Node::tags() {
  api::Tags t = options_.config.tags;
  t.emplace("node_name", name());
  t["nex.os"] = "linux";
  t["nex.arch"] = go_arch();
  t["nex.cpucount"] = std::to_string(std::thread::hardware_concurrency());
  t["nex.unsafe"] = driver_ && driver_->sandboxed() ? "false" : "true";
  if (lameduck_) t["nex.lameduck"] = "true";
  return t;
}

std::vector<api::WorkloadType> Node::supported_types() const {
  // What the configuration allows and this build can run.
  std::vector<api::WorkloadType> out;
  for (auto t : options_.config.workload_types) {
    out.push_back(t);  // native services, and JavaScript and WebAssembly functions
  }
  return out;
}

json Node::ping_data() {
  std::lock_guard lock(mu_);
  return {{"node_id", id()},
          {"nexus", ""},
          {"version", options_.version},
          {"uptime", api::format_uptime(seconds_since(started_))},
          {"target_xkey", xkey()},
          {"tags", tags()},
          {"running_machines", workloads_.size()}};
}

void Node::publish_event(const std::string& ns, const std::string& type, const json& data,
                         const std::string& source, bool batched) {
  (void)(batched ? control_bulk_ : control_)
      ->publish(api::events_subject(ns, type),
                api::cloud_event(source.empty() ? id() : source, type, data, ns));
}

void Node::on_ping(nats::Message msg) { reply(msg, api::envelope("ping", ping_data())); }

void Node::on_auction(nats::Message msg) {
  auto req = api::parse_auction_request(msg.data());
  if (!req) return;  // a malformed auction is simply not answered, like a non-match
  const api::Tags mine = tags();
  if (!req->os.empty() && req->os != "linux") return;
  if (!req->arch.empty() && req->arch != mine.at("nex.arch")) return;
  if (req->sandboxed && *req->sandboxed && !driver_->sandboxed()) return;
  if (lameduck_) return;
  for (const auto& [k, v] : req->tags) {
    auto it = mine.find(k);
    if (it == mine.end() || it->second != v) return;
  }
  const auto types = supported_types();
  for (const auto& t : req->workload_types) {
    auto parsed = api::parse_workload_type(t);
    if (!parsed || std::find(types.begin(), types.end(), *parsed) == types.end()) return;
  }
  reply(msg, api::envelope("auction", ping_data()));
}

void Node::on_wping(nats::Message msg) {
  // $NEX.WPING.{ns} or $NEX.WPING.{ns}.{idOrName}
  const std::string ns = token(msg.subject(), 2);
  const std::string which = token(msg.subject(), 3);
  json machines = json::array();
  {
    std::lock_guard lock(mu_);
    for (const auto& [wid, w] : workloads_) {
      if (w->ns != ns || (!which.empty() && which != w->id && which != w->name)) continue;
      machines.push_back({{"id", w->id},
                          {"namespace", w->ns},
                          {"name", w->name},
                          {"type", api::to_string(w->type)}});
    }
  }
  if (machines.empty()) return;  // only nodes holding a match answer
  json data = ping_data();
  data["running_machines"] = machines;
  data.erase("nexus");
  reply(msg, api::envelope("ping", data));
}

void Node::on_info(nats::Message msg) {
  const std::string ns = token(msg.subject(), 2);
  json machines = json::array();
  {
    std::lock_guard lock(mu_);
    for (const auto& [wid, w] : workloads_) {
      if (w->ns != ns) continue;
      const std::string runtime = api::format_uptime(seconds_since(w->started));
      json machine = {{"id", w->id},
                      {"healthy", w->healthy},
                      {"uptime", runtime},
                      {"namespace", w->ns},
                      {"workload",
                       {{"name", w->name},
                        {"description", w->description},
                        {"runtime", runtime},
                        {"type", api::to_string(w->type)},
                        {"hash", w->hash}}}};
      if (api::is_function(w->type)) {  // ours: what the function has done so far
        machine["function_invocations"] = w->invocations.load();
        machine["function_runtime_ns"] = w->runtime_ns.load();
      }
      machines.push_back(std::move(machine));
    }
  }
  json types = json::array();
  for (auto t : supported_types()) types.push_back(api::to_string(t));
  reply(msg, api::envelope("info", {{"version", options_.version},
                                    {"uptime", api::format_uptime(seconds_since(started_))},
                                    {"public_xkey", xkey()},
                                    {"tags", tags()},
                                    {"memory", meminfo()},
                                    {"machines", machines},
                                    {"supported_workload_types", types}}));
}

void Node::on_lameduck(nats::Message msg) {
  lameduck_ = true;
  log_line("Entering lame duck mode: no new workloads will be accepted");
  publish_event(api::kSystemNamespace, api::event_type::kLameDuck,
                {{"version", options_.version}, {"id", id()}});
  reply(msg, api::envelope("lameduck", {{"node_id", id()}, {"success", true}}));
}

// Replies with the envelope of `kind`: the result's data, or its error (also logged).
void Node::reply_result(const nats::Message& msg, std::string_view kind, const Result<json>& r) {
  if (r) {
    reply(msg, api::envelope(kind, *r));
  } else {
    log_line(std::string(kind == "run" ? "Deploy" : "Stop") + " refused: " + r.error().message);
    reply(msg, api::envelope_error(kind, r.error().message));
  }
}

void Node::on_deploy(nats::Message msg) {
  // Each deploy on a thread of its own, so one that waits for its artifact or its agent does
  // not hold up the next; stop() waits for those under way.
  {
    std::lock_guard lock(deploys_mu_);
    if (deploys_in_flight_ >= kMaxConcurrentDeploys) {
      reply(msg, api::envelope_error("run", fmt::format("node is busy with {} deploys; try again",
                                                        kMaxConcurrentDeploys)));
      return;
    }
    ++deploys_in_flight_;
  }
  std::thread([this, msg = std::move(msg)]() mutable {
    reply_result(msg, "run", deploy(token(msg.subject(), 2), msg.data()));
    std::lock_guard lock(deploys_mu_);
    --deploys_in_flight_;
    deploys_cv_.notify_all();
  }).detach();
}

void Node::on_stop(nats::Message msg) {
  reply_result(msg, "stop", stop_workload(token(msg.subject(), 2), msg.data()));
}

void Node::restore_workloads() {
  auto kept = store_->list();
  if (!kept) {
    log_line("Cannot read the workloads to restore: " + kept.error().message);
    return;
  }
  for (const auto& e : *kept) {
    // Deployed again under a new id, which the store keeps instead; the old entry goes only
    // after that, so a crash in between cannot lose the workload.
    auto r = deploy(e.ns, e.request, DeployOrigin::kRestore);
    (void)store_->erase(e.id);
    log_line(r ? "Restored workload " + (*r)["name"].get<std::string>() + " (was " + e.id +
                     ", now " + (*r)["id"].get<std::string>() + ")"
               : "Could not restore workload " + e.id + ": " + r.error().message);
  }
}

Result<json> Node::deploy(const std::string& ns, std::string_view body, DeployOrigin origin) {
  const NodeConfig& cfg = options_.config;
  // The checks run in the order specs/nex-wire.md lists.
  NEX_RETURN_IF_ERROR(api::validate_namespace(ns));
  if (lameduck_)
    return fail(ErrorCode::kUnavailable, "node is in lame duck mode and accepts no new workloads");
  // Deploys run in parallel; the limits hold because each one reserves its place (and, once
  // its size is known, its bytes) until it is registered or has failed.
  Reservation reserved(*this);
  {
    std::lock_guard lock(mu_);
    const size_t taken = workloads_.size() + reserved_slots_;
    if (cfg.node_limits.max_workloads > 0 &&
        static_cast<int64_t>(taken) >= cfg.node_limits.max_workloads) {
      return fail(ErrorCode::kUnavailable,
                  fmt::format("node is full: it runs {} workloads (node_limits.max_workloads {})",
                              taken, cfg.node_limits.max_workloads));
    }
    reserved.take_slot();
  }
  auto req = api::parse_deploy_request(body);
  if (!req) return fail(req.error());
  const auto& allowed = cfg.workload_types;
  if (std::find(allowed.begin(), allowed.end(), req->type) == allowed.end()) {
    std::string list;
    for (auto t : allowed) list += (list.empty() ? "" : ", ") + std::string(api::to_string(t));
    return fail(ErrorCode::kInvalidArgument,
                "workload type '" + std::string(api::to_string(req->type)) +
                    "' is not accepted by this node (workload_types: " + list + ")");
  }
  if (!api::is_function(req->type) && !req->trigger_subjects.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "trigger_subjects are only for function workloads (v8, wasm), not native services");
  }
  if (api::is_function(req->type) && req->trigger_subjects.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "function workloads need at least one trigger subject");
  }
  std::vector<std::string> denied = kAlwaysDenied;
  denied.insert(denied.end(), cfg.deny_trigger_subjects.begin(), cfg.deny_trigger_subjects.end());
  for (const auto& s : req->trigger_subjects) {
    for (const auto& d : denied) {
      if (api::subjects_overlap(s, d)) {
        return fail(
            ErrorCode::kPermissionDenied,
            "trigger subject '" + s + "' is not allowed: it overlaps the denied '" + d + "'");
      }
    }
  }
  const auto runnable = supported_types();
  if (std::find(runnable.begin(), runnable.end(), req->type) == runnable.end()) {
    return fail(ErrorCode::kInvalidArgument,
                "this node cannot run '" + std::string(api::to_string(req->type)) +
                    "' workloads yet: this build runs native services only");
  }
  auto env = open_environment(*req, identity_.xkey());
  if (!env) return fail(env.error());
  auto jwt = crypto::verify_jwt(
      req->workload_jwt, {.issuer_type = crypto::KeyType::kAccount, .clock_skew_seconds = 60});
  if (!jwt) return fail(jwt.error().code, "workload_jwt: " + jwt.error().message);
  const std::string name = req->workload_name.empty() ? jwt->claims.sub : req->workload_name;
  NEX_RETURN_IF_ERROR(api::validate_workload_name(name));
  if (!req->workload_name.empty() && !jwt->claims.sub.empty() &&
      jwt->claims.sub != req->workload_name) {
    return fail(ErrorCode::kPermissionDenied,
                "workload_name '" + req->workload_name +
                    "' differs from the name the JWT was signed for ('" + jwt->claims.sub + "')");
  }
  const std::string issuer = jwt->claims.iss;
  if (!cfg.valid_issuers.empty() && std::find(cfg.valid_issuers.begin(), cfg.valid_issuers.end(),
                                              issuer) == cfg.valid_issuers.end()) {
    return fail(ErrorCode::kPermissionDenied,
                "issuer " + issuer + " is not allowed on this node (valid_issuers)");
  }
  std::string claimed_hash = req->hash;
  if (auto h = jwt->claims.nats.find("hash");
      h != jwt->claims.nats.end() && h->is_string() && !h->get<std::string>().empty()) {
    if (!claimed_hash.empty() && claimed_hash != h->get<std::string>()) {
      return fail(ErrorCode::kPermissionDenied,
                  "field 'hash' differs from the hash the JWT was signed for");
    }
    claimed_hash = h->get<std::string>();
  }

  auto agent = pool_->take(std::chrono::milliseconds(cfg.agent_handshake_timeout_ms));
  if (!agent) return fail(agent.error());
  // From here on, a failure must release the agent: nothing is left half-started.
  auto release = [&](Error err) -> Result<json> {
    agent->sandbox->stop(1s);
    (void)internal_->remove_workload(agent->id);
    return fail(std::move(err));
  };

  auto js = nats::JetStream::create(*control_, {.domain = req->jsdomain});
  if (!js) return release(js.error());
  auto store = nats::ObjectStore::bind(*js, req->location.bucket);
  if (!store) return release(store.error().wrap("location " + req->location.to_string()));
  auto info = store->info(req->location.key);
  if (!info) return release(info.error().wrap("location " + req->location.to_string()));
  const int64_t size = static_cast<int64_t>(info->size);
  if (cfg.node_limits.max_workload_bytes > 0 && size > cfg.node_limits.max_workload_bytes) {
    return release(
        {ErrorCode::kInvalidArgument,
         fmt::format(
             "artifact is {} bytes, over this node's limit of {} (node_limits.max_workload_bytes)",
             size, cfg.node_limits.max_workload_bytes)});
  }
  bool fits = true;
  {
    std::lock_guard lock(mu_);
    int64_t total_bytes = reserved_bytes_;
    for (const auto& [wid, w] : workloads_) total_bytes += w->bytes;
    fits = cfg.node_limits.max_total_bytes == 0 ||
           total_bytes + size <= cfg.node_limits.max_total_bytes;
    if (fits) reserved.take_bytes(size);
  }
  if (!fits) {
    return release({ErrorCode::kInvalidArgument,
                    fmt::format("artifact of {} bytes would take the node past its total of {} "
                                "bytes (node_limits.max_total_bytes)",
                                size, cfg.node_limits.max_total_bytes)});
  }
  auto got = store->get_file(req->location.key, agent->artifact_path);
  if (!got) return release(got.error().wrap("download " + req->location.to_string()));
  // Readable by the sandbox's unprivileged user (its directory is closed to everyone else).
  fs::permissions(agent->artifact_path, fs::perms::owner_all | fs::perms::group_read |
                                            fs::perms::group_exec | fs::perms::others_read |
                                            fs::perms::others_exec);
  // The object store verified the content against its SHA-256 digest; compare that digest with
  // the hash the request and its JWT vouch for.
  const std::string actual_hash = nats::digest_hex(got->digest);
  if (!claimed_hash.empty() && actual_hash != claimed_hash) {
    return release({ErrorCode::kPermissionDenied,
                    "artifact hash mismatch: the request vouches for " + claimed_hash +
                        " but the artifact's SHA-256 is " + actual_hash});
  }
  if (req->type == api::WorkloadType::kNative) {
    if (auto st = check_static_executable(agent->artifact_path); !st) {
      return release(st.error().wrap("artifact " + req->location.to_string() + " refused"));
    }
  }

  api::AgentDeployRequest areq;
  areq.argv = req->argv;
  areq.description = req->description;
  areq.environment = std::move(*env);
  if (req->type == api::WorkloadType::kNative) {
    // ours: a native service reaches host services over the internal NATS, as a user that may
    // only call them for this workload (docs/host-services.md).
    areq.environment["NEX_HOSTSERVICES_NATS_URL"] =
        internal_->service_url(agent->id, agent->sandbox->internal_nats_host());
    // ours: the workload's own NATS, when it is on the host's loopback, is reached at the same
    // URL from inside a sandbox (docs/sandbox.md); no other host port is.
    for (int port : loopback_nats_ports(areq.environment)) {
      if (auto st = agent->sandbox->expose_host_port(port); !st)
        return release(st.error().wrap("environment NATS_URL"));
    }
    areq.environment["NEX_HOSTSERVICES_INBOX_PREFIX"] =
        InternalServer::service_inbox_prefix(agent->id);
    areq.environment["NEX_HOSTSERVICES_SUBJECT_PREFIX"] =
        api::host_services::rpc_prefix(agent->id, ns, name);
  }
  areq.essential = req->essential;
  areq.hash = actual_hash;
  areq.ns = ns;
  areq.retried_at = req->retried_at;
  areq.retry_count = req->retry_count.value_or(0);
  areq.total_bytes = size;
  areq.trigger_subjects = req->trigger_subjects;
  areq.workload_name = name;
  areq.workload_type = req->type;
  areq.host_services = req->host_services;
  areq.function_limits = req->function_limits;
  if (api::is_function(req->type)) areq.trigger_nats_urls = direct_trigger_urls();
  // Registered before the agent starts it, so the workload's first log lines and an early exit
  // find it.
  auto w = std::make_shared<Workload>();
  w->id = agent->id;
  w->ns = ns;
  w->name = name;
  w->description = req->description;
  w->type = req->type;
  w->issuer = issuer;
  w->deploy_jti = jwt->claims.jti;
  w->hash = actual_hash;
  w->bytes = size;
  w->essential = req->essential;
  w->request = areq;
  w->agent = std::move(*agent);
  {
    std::lock_guard lock(mu_);
    workloads_[w->id] = w;
    reserved.release_locked();  // it counts as running now
  }
  // Kept before it starts, so an exit at any moment after finds it to forget.
  const bool kept = origin != DeployOrigin::kAutostart;
  if (kept) {
    if (auto st = store_->put({w->id, ns, std::string(body)}); !st)
      log_line("Workload " + w->id + " will not come back after a restart: " + st.error().message);
  }
  auto unregister = [&](Error err) -> Result<json> {
    {
      std::lock_guard lock(mu_);
      workloads_.erase(w->id);
    }
    if (kept) (void)store_->erase(w->id);
    w->agent.sandbox->stop(1s);
    (void)internal_->remove_workload(w->id);
    return fail(std::move(err));
  };
  auto resp = internal_->request_agent(w->id, api::agent_subject::deploy(w->id),
                                       api::dump(api::to_json(areq)), kDeployTimeout);
  if (!resp) return unregister(resp.error().wrap("agent"));
  if (auto st = agent_accepted(resp->data()); !st) return unregister(st.error());
  if (api::is_function(w->type) && areq.trigger_nats_urls.empty()) {
    if (auto st = subscribe_triggers(w); !st) {
      (void)internal_->request_agent(w->id, api::agent_subject::undeploy(w->id), "", 2s);
      return unregister(st.error().wrap("trigger subjects"));
    }
  }
  log_line("Workload deployed name=" + name + " id=" + w->id + " namespace=" + ns);
  bool still_running = false;
  {
    std::lock_guard lock(mu_);
    still_running = workloads_.count(w->id) > 0;
  }
  if (still_running) {  // (an instant exit was already reported as undeployed)
    json data = {{"workload_name", name}, {"code", 0}, {"message", "workload deployed"}};
    if (origin == DeployOrigin::kRestore) {
      data["restored"] = true;  // ours: brought back by a restarted node
      data["message"] = "workload restored after the node restarted";
    }
    publish_event(ns, api::event_type::kWorkloadDeployed, data, id() + "-" + w->id);
  }
  return json{{"started", true}, {"id", w->id}, {"issuer", issuer}, {"name", name}};
}

Result<json> Node::stop_workload(const std::string& ns, std::string_view body) {
  auto req = api::parse_stop_request(body);
  if (!req) return fail(req.error());
  std::shared_ptr<Workload> w;
  {
    std::lock_guard lock(mu_);
    auto it = workloads_.find(req->workload_id);
    if (it != workloads_.end() && it->second->ns == ns && !it->second->stopping) w = it->second;
  }
  if (!w) return fail(ErrorCode::kNotFound, "no such workload: " + req->workload_id);
  auto jwt = crypto::verify_jwt(
      req->workload_jwt, {.issuer_type = crypto::KeyType::kAccount, .clock_skew_seconds = 60});
  if (!jwt) return fail(jwt.error().code, "workload_jwt: " + jwt.error().message);
  if (jwt->claims.iss != w->issuer) {
    return fail(ErrorCode::kPermissionDenied,
                "only the issuer that deployed workload " + w->id + " may stop it");
  }
  if (jwt->claims.sub != w->name) {
    return fail(ErrorCode::kPermissionDenied,
                "the stop JWT names workload '" + jwt->claims.sub + "', not '" + w->name + "'");
  }
  if (jwt->claims.jti == w->deploy_jti) {
    return fail(ErrorCode::kPermissionDenied,
                "the stop request replays the deploy JWT: sign a fresh one");
  }
  std::vector<nats::Subscription> triggers;
  {
    std::lock_guard lock(mu_);
    if (w->stopping) return fail(ErrorCode::kNotFound, "no such workload: " + req->workload_id);
    w->stopping = true;
    triggers = std::move(w->triggers);
  }
  // Relayed triggers already received still reach the agent, which runs them or answers that
  // the function stopped, rather than leaving their callers to time out.
  nats::Subscription::drain_and_wait(triggers, api::kTriggerDrainTimeout);
  undeploy(w, "workload stopped");
  return json{{"stopped", true}, {"id", w->id}, {"issuer", w->issuer}, {"name", w->name}};
}

void Node::undeploy(const std::shared_ptr<Workload>& w, const std::string& message) {
  (void)internal_->request_agent(w->id, api::agent_subject::undeploy(w->id), "",
                                 kUndeployGrace + 2s);
  remove_workload(w, 0, message);
}

void Node::remove_workload(const std::shared_ptr<Workload>& w, int code,
                           const std::string& message) {
  std::vector<nats::Subscription> triggers;
  {
    std::lock_guard lock(mu_);
    if (workloads_.erase(w->id) == 0) return;
    triggers = std::move(w->triggers);
  }
  // Stopped or ended: it does not come back. A node shutting down keeps them all.
  if (!stopped_) (void)store_->erase(w->id);
  triggers.clear();  // no new invocations reach the agent
  w->agent.sandbox->stop(kUndeployGrace);
  (void)internal_->remove_workload(w->id);
  log_line("Workload undeployed name=" + w->name + " id=" + w->id + " (" + message + ")");
  publish_event(w->ns, api::event_type::kWorkloadUndeployed,
                {{"workload_name", w->name}, {"code", code}, {"message", message}},
                id() + "-" + w->id);
}

std::shared_ptr<Node::Workload> Node::find_workload(const std::string& workload_id) {
  std::lock_guard lock(mu_);
  auto it = workloads_.find(workload_id);
  return it == workloads_.end() ? nullptr : it->second;
}

// Agents speak for workloads, which are not trusted: their messages are read with FieldReader,
// which never throws, and anything malformed is dropped.
void Node::on_agent_log(nats::Message msg) {
  auto w = find_workload(token(msg.subject(), 1));
  if (!w) return;
  auto j = api::FieldReader::parse_object(msg.data(), "log");
  if (!j) return;
  api::FieldReader f(*j, "log");
  std::string text;
  std::string level = "info";
  f.string("text", text);
  f.string("level", level);
  if (!f.status()) return;
  publish_workload_log(w->ns, w->name, w->id, level, text);
}

void Node::publish_workload_log(const std::string& ns, const std::string& name,
                                const std::string& workload_id, const std::string& level,
                                const std::string& text) {
  (void)control_->publish(api::logs_subject(ns, id(), name, workload_id),
                          api::dump({{"text", text}, {"level", level}, {"id", workload_id}}));
}

void Node::on_agent_event(nats::Message msg) {
  auto w = find_workload(token(msg.subject(), 1));
  const std::string type = token(msg.subject(), 3);
  if (!w) return;
  auto ev = api::FieldReader::parse_object(msg.data(), "event");
  if (!ev) return;
  auto data = ev->find("data");
  if (data == ev->end() || !data->is_object()) return;
  if (type == "workload_exited") {
    api::FieldReader d(*data, "workload_exited event");
    int64_t code = 0;
    std::string message;
    d.integer("code", code);
    d.string("message", message);
    if (d.status()) on_workload_exited(w, static_cast<int>(code), message);
    return;
  }
  // An agent speaks only for its function's invocations; nothing else is republished. (Ours
  // report them in batches, on_agent_invocations; this is the spec's one event at a time.)
  const bool failed = type == api::event_type::kFunctionExecFailed;
  if (!failed && type != api::event_type::kFunctionExecSucceeded) return;
  api::InvocationReport report;
  api::FieldReader d(*data, "event data");
  d.string("trigger_subject", report.trigger_subject);
  d.integer("elapsed_nanos", report.elapsed_nanos);
  if (failed) d.string("error", report.error.emplace());
  if (d.status()) republish_invocation(*w, report);
}

void Node::on_agent_invocations(nats::Message msg) {
  auto w = find_workload(token(msg.subject(), 1));
  if (!w) return;
  auto batch = api::parse_invocation_batch(msg.data());
  if (!batch) return;  // the agent's own fault; nothing to tell anyone
  for (const auto& report : *batch) republish_invocation(*w, report);
}

void Node::republish_invocation(Workload& w, const api::InvocationReport& r) {
  w.invocations++;
  if (r.elapsed_nanos > 0) w.runtime_ns += r.elapsed_nanos;
  // The workload's name and namespace are the node's to say, not the agent's.
  json data = {{"workload_name", w.name},
               {"trigger_subject", r.trigger_subject},
               {"namespace", w.ns},
               {"elapsed_nanos", r.elapsed_nanos}};
  if (r.error) data["error"] = *r.error;
  publish_event(
      w.ns,
      r.error ? api::event_type::kFunctionExecFailed : api::event_type::kFunctionExecSucceeded,
      data, id() + "-" + w.id, /*batched=*/true);
}

void Node::on_workload_exited(const std::shared_ptr<Workload>& w, int code,
                              const std::string& message) {
  {
    std::lock_guard lock(mu_);
    if (w->stopping) return;  // a stop in progress reports the undeploy itself
    if (w->essential && code != 0 && w->restarts < kMaxRestarts) {
      // Exponential backoff: 250 ms, 500 ms, 1 s, 2 s, 4 s.
      const auto delay = std::chrono::milliseconds(250) * (1 << w->restarts);
      w->restarts += 1;
      w->healthy = false;
      w->restart_at = std::chrono::steady_clock::now() + delay;
      log_line(fmt::format("Essential workload {} {}; restarting in {} ms (attempt {} of {})",
                           w->name, message, delay.count(), w->restarts, kMaxRestarts));
      maintenance_cv_.notify_all();
      return;
    }
  }
  if (w->essential && code != 0) {
    publish_event(w->ns, api::event_type::kWorkloadCrashLoop,
                  {{"workload_name", w->name},
                   {"code", code},
                   {"restarts", w->restarts},
                   {"message", "gave up restarting after " + std::to_string(w->restarts) +
                                   " attempts: " + message}},
                  id() + "-" + w->id);
  }
  remove_workload(w, code, message);
}

std::vector<std::string> Node::direct_trigger_urls() const {
  const auto& c = options_.control;
  if (options_.config.function_triggers != "direct") return {};
  // A sandbox never reaches the control NATS: the node relays.
  if (driver_->sandboxed()) return {};
  // Credentials are never handed to an agent: with any, the node relays.
  if (!c.user.empty() || !c.password.empty() || !c.token.empty() || !c.nkey_seed.empty() ||
      !c.creds_file.empty() || c.tls)
    return {};
  return c.urls;
}

Status Node::subscribe_triggers(const std::shared_ptr<Workload>& w) {
  std::vector<nats::Subscription> triggers;
  for (const auto& subject : w->request.trigger_subjects) {
    const std::string id = w->id;
    auto sub = control_->subscribe(
        subject, [this, id](nats::Message m) { on_trigger(id, std::move(m)); }, subject);
    if (!sub) return fail(sub.error().wrap(subject));
    triggers.push_back(std::move(*sub));
  }
  {
    // A stop that began meanwhile takes the subscriptions it finds: none, so these go now.
    std::lock_guard lock(mu_);
    if (w->stopping || workloads_.count(w->id) == 0) return {};
    w->triggers = std::move(triggers);
  }
  return control_->flush();
}

void Node::on_trigger(const std::string& workload_id, nats::Message msg) {
  const std::string token = next_nuid();
  if (!msg.reply().empty()) {
    std::lock_guard lock(triggers_mu_);
    pending_triggers_[token] = {workload_id, std::string(msg.reply()),
                                std::chrono::steady_clock::now() + kTriggerAnswerWindow};
  }
  auto forward = nats::Message::create(api::agent_subject::trigger(workload_id), msg.data(),
                                       api::agent_subject::trigger_reply(workload_id, token));
  if (!forward) return;
  (void)forward->set_header(api::kHeaderTriggerSubject, std::string(msg.subject()));
  (void)internal_->connection().publish(*forward);
}

void Node::on_trigger_reply(nats::Message msg) {
  // hostint.{id}.trigger_reply.{token}
  const std::string id(token(msg.subject(), 1));
  const std::string tok(token(msg.subject(), 3));
  PendingTrigger pending;
  {
    std::lock_guard lock(triggers_mu_);
    auto it = pending_triggers_.find(tok);
    if (it == pending_triggers_.end() || it->second.workload_id != id) return;
    pending = std::move(it->second);
    pending_triggers_.erase(it);
  }
  auto answer = nats::Message::create(pending.reply, msg.data());
  if (!answer) return;
  // The agent's headers as they are, but the run time only if it fits this NATS's limit.
  for (const char* h : {api::kHeaderServiceError, api::kHeaderServiceErrorCode})
    if (auto v = msg.header(h)) (void)answer->set_header(h, *v);
  if (auto ns = msg.header(api::kHeaderRuntimeNs);
      ns && api::runtime_header_fits(msg.data().size(), control_->max_payload()))
    (void)answer->set_header(api::kHeaderRuntimeNs, *ns);
  (void)control_->publish(*answer);
}

void Node::expire_triggers(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(triggers_mu_);
  std::erase_if(pending_triggers_, [now](const auto& entry) { return entry.second.expires < now; });
}

void Node::maintenance_loop() {
  auto next_health = std::chrono::steady_clock::now() + kHealthInterval;
  auto next_heartbeat = std::chrono::steady_clock::now() + kHeartbeatInterval;
  std::unique_lock lock(maintenance_mu_);
  while (!maintenance_stop_) {
    maintenance_cv_.wait_for(lock, 100ms);
    if (maintenance_stop_) break;
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Workload>> all;
    {
      std::lock_guard l(mu_);
      for (auto& [wid, w] : workloads_) all.push_back(w);
    }
    for (auto& w : all) {
      bool restart = false;
      {
        std::lock_guard l(mu_);
        if (w->restart_at && *w->restart_at <= now && !w->stopping) {
          w->restart_at.reset();
          restart = true;
        }
      }
      if (!restart) continue;
      w->request.retry_count = w->restarts;
      w->request.retried_at = rfc3339_nano(std::chrono::system_clock::now());
      auto r = internal_->request_agent(w->id, api::agent_subject::deploy(w->id),
                                        api::dump(api::to_json(w->request)), kDeployTimeout);
      const bool ok = r && agent_accepted(r->data());
      if (ok) {
        std::lock_guard l(mu_);
        w->healthy = true;
      } else {
        remove_workload(w, 1, "restart failed");
      }
    }
    expire_triggers(now);
    if (now >= next_health) {
      next_health = now + kHealthInterval;
      for (auto& w : all) {
        const bool ok =
            internal_
                ->request_agent(w->id, api::agent_subject::ping(w->id), "",
                                std::chrono::milliseconds(options_.config.agent_ping_timeout_ms))
                .has_value();
        std::lock_guard l(mu_);
        if (!w->restart_at) w->healthy = ok;
      }
    }
    if (now >= next_heartbeat) {
      next_heartbeat = now + kHeartbeatInterval;
      json d = ping_data();
      publish_event(api::kSystemNamespace, api::event_type::kHeartbeat,
                    {{"version", d["version"]},
                     {"node_id", d["node_id"]},
                     {"nexus", ""},
                     {"uptime", d["uptime"]},
                     {"tags", d["tags"]},
                     {"running_machines", d["running_machines"]}});
    }
    lock.lock();
  }
}

void Node::stop() {
  if (stopped_.exchange(true)) return;
  log_line("Shutting down: undeploying every workload");
  {
    std::lock_guard lock(maintenance_mu_);
    maintenance_stop_ = true;
    maintenance_cv_.notify_all();
  }
  if (maintenance_.joinable()) maintenance_.join();
  // No more control requests; those being handled finish first (a deploy in progress would
  // otherwise start its workload after the undeploys below). The agents' traffic still flows:
  // their last logs and events, and the answers to relayed triggers, until they are undeployed.
  for (auto& sub : subscriptions_) sub.unsubscribe_and_wait();
  subscriptions_.clear();
  {
    std::unique_lock lock(deploys_mu_);
    deploys_cv_.wait(lock, [this] { return deploys_in_flight_ == 0; });
  }
  if (commands_) commands_->stop();  // a command running now is handed back to its stream
  std::vector<std::shared_ptr<Workload>> all;
  std::vector<nats::Subscription> triggers;
  {
    std::lock_guard lock(mu_);
    for (auto& [wid, w] : workloads_) {
      w->stopping = true;
      all.push_back(w);
      std::move(w->triggers.begin(), w->triggers.end(), std::back_inserter(triggers));
      w->triggers.clear();
    }
  }
  // As when one workload stops: relayed triggers already received are answered, all functions'
  // drains together.
  nats::Subscription::drain_and_wait(triggers, api::kTriggerDrainTimeout);
  for (auto& w : all) undeploy(w, "node shutting down");
  for (auto& sub : agent_subscriptions_) sub.unsubscribe_and_wait();
  agent_subscriptions_.clear();
  // The last function events go out before node_stopped (a dead server cannot be flushed to).
  if (control_bulk_ && control_bulk_->connected()) (void)control_bulk_->flush(2s);
  publish_event(api::kSystemNamespace, api::event_type::kNodeStopped,
                {{"id", id()}, {"graceful", true}});
  if (control_->connected()) (void)control_->flush(2s);
  host_services_.reset();
  pool_.reset();
  internal_.reset();
  driver_.reset();  // the namespace driver releases what is left of its sandboxes
  std::error_code ec;
  fs::remove_all(run_dir_, ec);
  log_line("Node stopped");
}

}  // namespace nex::node
