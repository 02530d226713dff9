// The node's life: start (identity, connections, sandbox driver, internal NATS, host services,
// the agent pool, restored workloads, then the control API and durable commands), the
// maintenance loop (essential restarts, health pings, heartbeats) and a stop that leaves
// nothing behind. The control API is in control_api.cc, workloads in workloads.cc.
#include "node/node.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <iterator>
#include <thread>

#include "api/events.h"
#include "api/json_fields.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/subprocess.h"
#include "node/name_claim.h"
#include "node/node_internals.h"
#include "node/sandbox_setup.h"

namespace nex::node {

using namespace std::chrono_literals;

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr auto kHealthInterval = 5s;
constexpr auto kHeartbeatInterval = 30s;
// How often the node looks for kept workloads whose entries are half through their retention.
constexpr auto kKeptRefreshInterval = std::chrono::hours(1);

std::string go_arch() {
  utsname u{};
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

}  // namespace

void log_line(const std::string& text) {
  std::fprintf(stderr, "%s %s\n",
               rfc3339_nano(std::chrono::system_clock::now()).substr(0, 19).c_str(), text.c_str());
}

Node::Node(NodeOptions options, NodeIdentity identity)
    : options_(std::move(options)), identity_(std::move(identity)) {
  if (options_.config.node_name.empty()) options_.config.node_name = commands::default_node_name();
}

Result<std::unique_ptr<Node>> Node::start(NodeOptions options) {
  if (options.agent_binary.empty()) {
    options.agent_binary = program_beside_self("nex-agent");
  }
  if (access(options.agent_binary.c_str(), X_OK) != 0) {
    return fail(ErrorCode::kNotFound, "nex-agent not found at " + options.agent_binary.string());
  }
  if (!options.metrics_listen.empty())
    NEX_RETURN_IF_ERROR(metrics::Endpoint::check(options.metrics_listen));
  auto trigger_credentials = triggers::TriggerCredentials::load(options.config, options.control);
  if (!trigger_credentials) return fail(trigger_credentials.error().wrap("node config"));
  auto identity = NodeIdentity::claim(options.state_dir);
  if (!identity) return fail(identity.error());
  std::unique_ptr<Node> node(new Node(std::move(options), std::move(*identity)));
  Node& n = *node;
  n.trigger_credentials_ = std::move(*trigger_credentials);
  if (n.trigger_credentials_ && n.options_.config.host_services.empty())
    log_line(
        "Host services send each workload's messaging as a NATS user the node signs for it, "
        "held by the server to the subjects that workload may use");
  // The parts, in the order they depend on each other; a failure stops the node (its
  // destructor releases what was started).
  NEX_RETURN_IF_ERROR(n.open_ledger());
  n.clean_run_dir();
  NEX_RETURN_IF_ERROR(n.connect_control());
  NEX_RETURN_IF_ERROR(n.choose_replicas());
  NEX_RETURN_IF_ERROR(n.start_sandboxes());
  NEX_RETURN_IF_ERROR(n.subscribe_agents());
  NEX_RETURN_IF_ERROR(n.start_host_services());
  NEX_RETURN_IF_ERROR(n.start_pool());
  NEX_RETURN_IF_ERROR(n.open_store());
  n.restore_workloads();
  NEX_RETURN_IF_ERROR(n.serve_api());
  NEX_RETURN_IF_ERROR(n.start_commands());
  n.go_live();
  return node;
}

Status Node::open_ledger() {
  auto ledger = RequestLedger::open(options_.state_dir / "requests.ledger");
  if (!ledger) return fail(ledger.error());
  ledger_ = std::move(*ledger);
  if (options_.config.allow_unbound_requests)
    log_line(
        "WARNING: allow_unbound_requests is on: deploys, stops and lame-duck requests whose "
        "JWT binds nothing (older Nex tooling) are accepted, and anyone who sees one can "
        "send it again");
  return {};
}

void Node::clean_run_dir() {
  // A previous run killed with SIGKILL may have left sandboxes' files: the pid lock says no
  // other node uses this directory, so start clean.
  run_dir_ = options_.state_dir / "run";
  std::error_code ec;
  fs::remove_all(run_dir_, ec);
  fs::create_directories(run_dir_, ec);
}

Status Node::connect_control() {
  nats::ConnectOptions control = options_.control;
  if (control.name.empty()) control.name = "nex-node " + id();
  control.send_asap = true;  // function replies go out at once
  auto count_reconnects = [this, then = control.on_reconnected](const std::string& which) {
    return [this, which, then] {
      metrics_.reconnect(which);
      if (then) then();
    };
  };
  control.on_reconnected = count_reconnects("control");
  auto conn = nats::Connection::connect(control);
  if (!conn) return fail(conn.error());  // it names the URLs
  // Before anything is served or filed under the name: a live node may hold it already.
  NEX_RETURN_IF_ERROR(
      check_name_free(*conn, name(), id(), options_.config.commands.jetstream_domain));
  control_ = std::move(*conn);
  control.name += " events";
  control.send_asap = false;
  control.on_reconnected = count_reconnects("control events");
  auto bulk = nats::Connection::connect(control);
  if (!bulk) return fail(bulk.error());
  control_bulk_ = std::move(*bulk);
  log_line("Established node NATS connection to: " + control_->connected_url());
  return {};
}

Status Node::start_sandboxes() {
  // A workload's VM over its gateway's cap: the node's log, and the workload's own if deployed.
  auto warn = [this](const std::string& wid, const std::string& text) {
    auto w = find_workload(wid);
    log_line("Workload " + (w ? w->name + " " : std::string()) + "(" + wid + "): " + text);
    if (w) publish_workload_log(w->ns, w->name, wid, "warn", text);
  };
  auto driver = make_sandbox_driver(options_.config, options_.agent_binary, id(), warn);
  if (!driver) return fail(driver.error().wrap("node config"));
  driver_ = std::move(*driver);
  const std::string details = driver_->details();
  log_line("Sandbox driver: " + std::string(driver_->name()) +
           (details.empty() ? "" : " (" + details + ")"));
  auto internal = InternalServer::start(run_dir_ / "internal", driver_->internal_listen_host());
  if (!internal) return fail(internal.error());
  internal_ = std::move(*internal);
  log_line(fmt::format("Internal NATS server started client_url=nats://{}:{}",
                       driver_->internal_listen_host(), internal_->port()));
  return {};
}

Status Node::subscribe_agents() {
  // Logs and events share one subscription, so they are handled in the order the agent sent
  // them: a crashing workload's last lines are republished before its exit removes it.
  auto agent_traffic = internal_->connection().subscribe("hostint.*.>", [this](nats::Message m) {
    const std::string kind = token(m.subject(), 2);
    if (kind == "logs") {
      on_agent_log(std::move(m));
    } else if (kind == "events") {
      on_agent_event(std::move(m));
    } else if (kind == "invocations") {
      on_agent_invocations(std::move(m));
    } else if (kind == "artifact") {
      on_agent_artifact(std::move(m));
    } else if (kind == "barrier") {
      std::lock_guard lock(barrier_mu_);
      barriers_.erase(token(m.subject(), 3));  // only markers waited for are there at all
      barrier_cv_.notify_all();
    }  // handshakes belong to the pool, replies to their requests
  });
  if (!agent_traffic) return fail(agent_traffic.error());
  agent_subscriptions_.push_back(std::move(*agent_traffic));
  // Function answers have their own subscription (and delivery thread), so they never queue
  // behind the logs and events of busy workloads.
  relay_ = std::make_unique<triggers::TriggerRelay>(*control_, internal_->connection());
  auto answers = internal_->connection().subscribe(
      "hostint.*.trigger_reply.*", [this](nats::Message m) { relay_->on_reply(m); });
  if (!answers) return fail(answers.error());
  agent_subscriptions_.push_back(std::move(*answers));
  return {};
}

Status Node::start_host_services() {
  // The metrics endpoint listens before host services start, so that they know its port (which
  // may have been picked by the kernel) and never reach it.
  std::vector<host_services::NodePort> own_ports = {
      {internal_->port(), "the node's internal NATS port"}};
  if (!options_.metrics_listen.empty()) {
    auto endpoint = metrics::Endpoint::start(options_.metrics_listen,
                                             [this] { return metrics_.registry().render(); });
    if (!endpoint) return fail(endpoint.error());
    metrics_endpoint_ = std::move(*endpoint);
    own_ports.push_back({metrics_endpoint_->port(), "the node's metrics port"});
  }
  auto host_services = host_services::Server::start(
      {.settings = options_.config.host_services_settings,
       .node_connection = options_.config.host_services,
       .control = control_,
       .sign_user = host_services_signer(),
       .control_options = options_.control,
       .creds_dir = run_dir_,
       .node_ports = std::move(own_ports),
       .find_caller = [this](const std::string& wid) -> std::optional<host_services::Caller> {
         auto w = find_workload(wid);
         if (!w) return std::nullopt;
         return host_services::Caller{w->ns, w->name, w->request.host_services};
       },
       .on_denied =
           [this](const std::string& wid, const host_services::Caller& caller,
                  const std::string& text) {
             log_line("Workload " + caller.name + " (" + wid + "): " + text);
             publish_workload_log(caller.ns, caller.name, wid, "warn", text);
           },
       .on_served = [this](const std::string& service,
                           int code) { metrics_.host_service_call(service, code); }},
      internal_->connection());
  if (!host_services) return fail(host_services.error());
  host_services_ = std::move(*host_services);
  return {};
}

Status Node::start_pool() {
  auto pool = AgentPool::start(
      *internal_, *driver_,
      {.size = static_cast<size_t>(options_.config.machine_pool_size),
       .agent_binary = options_.agent_binary,
       .work_dir = sandboxes_dir(),
       .handshake_timeout = std::chrono::milliseconds(options_.config.agent_handshake_timeout_ms) +
                            driver_->boot_allowance()});
  if (!pool) return fail(pool.error());
  pool_ = std::move(*pool);
  return {};
}

Status Node::open_store() {
  std::string kept_in;
  auto store = WorkloadStore::open(*control_, identity_.server_key(), options_.state_dir,
                                   options_.config.kept_workloads, replicas_, kept_in);
  if (!store) return fail(store.error());
  store_ = std::move(*store);
  log_line("Workloads are kept in " + kept_in + " to come back after a restart");
  return {};
}

Status Node::serve_api() {
  const std::string node_id = id();
  serve("$NEX.PING", &Node::on_ping);
  serve("$NEX.PING." + node_id, &Node::on_ping);
  serve("$NEX.AUCTION", &Node::on_auction);
  serve("$NEX.WPING.>", &Node::on_wping);
  serve("$NEX.INFO.*." + node_id, &Node::on_info);
  serve("$NEX.DEPLOY.*." + node_id, &Node::on_deploy);
  serve("$NEX.STOP.*." + node_id, &Node::on_stop);
  serve("$NEX.LAMEDUCK." + node_id, &Node::on_lameduck);
  return control_->flush();
}

Status Node::start_commands() {
  if (!options_.config.commands.enabled) return {};
  auto commands = commands::CommandService::start(
      {.node_name = name(),
       .node_key = identity_.server_key(),
       .node_xkey = xkey(),
       .connection = *control_,
       .config = options_.config.commands,
       .valid_issuers = options_.config.valid_issuers,
       .allow_unbound_requests = options_.config.allow_unbound_requests,
       .tags = options_.config.tags,
       .state_dir = options_.state_dir,
       .deploy = [this](const std::string& ns, std::string_view body) { return deploy(ns, body); },
       .log = log_line,
       .dropped_unverified = [this] { metrics_.command_dropped_unverified(); },
       .on_audit_write_failure = [this] { metrics_.audit_write_failure(); }});
  if (!commands) return fail(commands.error().wrap("commands"));
  commands_ = std::move(*commands);
  log_line("Taking durable commands on $NEX.cmd." + name() + ".> (stream " +
           commands::kCommandStream + ")");
  return {};
}

void Node::go_live() {
  maintenance_ = std::thread([this] { maintenance_loop(); });
  if (metrics_endpoint_) {
    // Only now, with the pool and the commands in place, do scrapes report on the node.
    metrics_.registry().collect([this](metrics::Scrape& s) { collect_metrics(s); });
    log_line("Serving Prometheus metrics on " + metrics_url());
  }
  log_line("Use this key as the recipient for encrypted run requests public_xkey=" + xkey());
  log_line("NATS execution engine awaiting commands id=" + id() + " version=" + options_.version);
  publish_event(api::kSystemNamespace, api::event_type::kNodeStarted,
                {{"version", options_.version}, {"id", id()}, {"tags", tags()}});
  for (const auto& req : options_.config.autostart) {
    auto r = deploy("default", api::dump(api::to_json(req)), DeployOrigin::kAutostart);
    log_line(r ? "Autostarted workload " + (*r)["name"].get<std::string>()
               : "Autostart failed: " + r.error().message);
  }
}

Node::~Node() { stop(); }

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

Status Node::choose_replicas() {
  NodeConfig& cfg = options_.config;
  const int wanted = cfg.jetstream_replicas == 0 ? 3 : static_cast<int>(cfg.jetstream_replicas);
  int chosen = wanted;
  std::string why;
  auto js = nats::JetStream::create(*control_, {.domain = cfg.commands.jetstream_domain});
  auto available = js ? js->replicas_available(wanted, why) : Result<int>(fail(js.error()));
  if (!available) {  // JetStream away for now: what is made later is made as configured
    why = "JetStream did not answer (" + available.error().message + ")";
    chosen = cfg.jetstream_replicas == 0 ? 1 : wanted;
  } else if (*available < wanted && cfg.jetstream_replicas != 0) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("node config: jetstream_replicas is {} but this JetStream cannot keep "
                            "{} replicas: {}",
                            wanted, wanted, why));
  } else {
    chosen = *available;
  }
  replicas_ = {.replicas = chosen, .raise = cfg.raise_jetstream_replicas};
  cfg.commands.replicas = replicas_;
  cfg.host_services_settings.kv.replicas = replicas_;
  cfg.host_services_settings.object_store.replicas = replicas_;
  log_line(fmt::format("JetStream replicas: {} ({})", chosen,
                       cfg.jetstream_replicas != 0 ? "node config jetstream_replicas"
                       : chosen > 1                ? "auto: the JetStream cluster can keep 3"
                                                   : "auto: " + why));
  return {};
}

void Node::maintenance_loop() {
  auto next_health = std::chrono::steady_clock::now() + kHealthInterval;
  auto next_heartbeat = std::chrono::steady_clock::now() + kHeartbeatInterval;
  auto next_refresh =
      std::chrono::steady_clock::now();  // first at start: the node may have been away
  std::unique_lock lock(maintenance_mu_);
  while (!maintenance_stop_) {
    maintenance_cv_.wait_for(lock, 100ms);
    if (maintenance_stop_) break;
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Workload>> all;
    std::vector<std::shared_ptr<triggers::ChannelNodeEnd>> channels;
    {
      std::lock_guard l(mu_);
      for (auto& [wid, w] : workloads_) {
        all.push_back(w);
        if (w->channel) channels.push_back(w->channel);
      }
    }
    reap_agents(all);
    restart_due(all, now);
    for (auto& w : all) report_dropped_logs(*w, now, /*final=*/false);
    retry_restores(now);
    relay_->expire(now);
    for (auto& channel : channels) channel->expire(now);
    if (now >= next_health) {
      next_health = now + kHealthInterval;
      for (auto& w : all) {
        const bool ok =
            internal_
                ->request_agent(w->id, api::agent_subject::ping(w->id), "",
                                std::chrono::milliseconds(options_.config.agent_ping_timeout_ms))
                .has_value();
        std::lock_guard l(mu_);
        w->state.ping_answered(ok);
      }
    }
    if (now >= next_refresh) {
      next_refresh = now + kKeptRefreshInterval;
      const auto retention = options_.config.kept_workloads.stream_caps().max_age;
      if (auto kept = retention.count() > 0 ? store_->refresh(retention / 2) : Result<size_t>(0);
          !kept)
        log_line("Cannot keep the kept workloads' entries alive: " + kept.error().message);
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

void Node::collect_metrics(metrics::Scrape& s) {
  s.gauge("nex_node_info",
          {{"node_id", id()}, {"node_name", name()}, {"version", options_.version}}, 1);
  s.gauge("nex_node_uptime_seconds", {}, static_cast<double>(seconds_since(started_)));
  std::map<metrics::Labels, int> counts;
  {
    std::lock_guard lock(mu_);
    for (const auto& [wid, w] : workloads_) {
      metrics::Labels labels = {{"namespace", w->ns},
                                {"type", std::string(api::to_string(w->type))},
                                {"state", std::string(w->state.metrics_label())}};
      counts[std::move(labels)] += 1;
    }
  }
  for (const auto& [labels, count] : counts) s.gauge("nex_workloads", labels, count);
  if (pool_) s.gauge("nex_warm_agents", {}, static_cast<double>(pool_->ready()));
  if (commands_) {
    for (const auto& [method, depth] : commands_->queue_depths())
      s.gauge("nex_command_queue_depth", {{"method", method}}, static_cast<double>(depth));
  }
}

void Node::stop() {
  if (stopped_.exchange(true)) return;
  // A node whose start failed before it reached NATS has only local resources to release.
  const bool started = control_.has_value();
  if (started) log_line("Shutting down: undeploying every workload");
  metrics_endpoint_.reset();
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
      if (!w->state.leaving()) move_to(*w, WorkloadPhase::kStopping);
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
  if (started) {
    publish_event(api::kSystemNamespace, api::event_type::kNodeStopped,
                  {{"id", id()}, {"graceful", true}});
    if (control_->connected()) (void)control_->flush(2s);
  }
  host_services_.reset();
  relay_.reset();
  pool_.reset();
  internal_.reset();
  driver_.reset();  // the namespace driver releases what is left of its sandboxes
  std::error_code ec;
  fs::remove_all(run_dir_, ec);
  if (started) log_line("Node stopped");
}

std::function<host_services::SignedUser(const std::string&, const nlohmann::json&)>
Node::host_services_signer() const {
  if (!trigger_credentials_) return nullptr;
  return [this](const std::string& name, const nlohmann::json& permissions) {
    auto user = trigger_credentials_->sign(name, permissions);
    return host_services::SignedUser{std::move(user.jwt), std::move(user.seed)};
  };
}

}  // namespace nex::node
