// The node's workloads: deploy (every check of docs/wire.md, in its order, then an agent
// from the pool), stop, restore after a restart (WorkloadStore keeps each deploy request as
// received), essential restarts, and what agents report for them (logs, exits, invocations).
#include <fmt/format.h>

#include <fstream>

#include "api/events.h"
#include "api/json_fields.h"
#include "api/signed_request.h"
#include "core/clock.h"
#include "core/elf_info.h"
#include "core/encoding.h"
#include "core/nuid.h"
#include "core/wait_status.h"
#include "crypto/jwt.h"
#include "nats/object_store.h"
#include "node/node_internals.h"
#include "node/sandbox_setup.h"

namespace nex::node {

using namespace std::chrono_literals;

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr auto kDeployTimeout = 10s;   // the agent's answer to a deploy
constexpr auto kFetchAllowance = 30s;  // an artifact's download
constexpr auto kUndeployGrace = 5s;
// A replaced workload's stop: its triggers drained, its agent's answer and last reports.
constexpr auto kReplaceAllowance = kUndeployGrace + 4s + api::kTriggerDrainTimeout;
// An essential workload that fails more often is in a crash loop.
constexpr int kMaxRestarts = 5;

// The levels workloads log at (the agent's, and those of Nex's own agents); any other is "info",
// so that what a workload sends as a level cannot be text of its own in the log stream.
bool known_log_level(const std::string& level) {
  for (const char* l : {"trace", "debug", "info", "warn", "error"}) {
    if (level == l) return true;
  }
  return false;
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
  // Sealed, so only checked now: a NUL or '=' would change what the workload sees.
  NEX_RETURN_IF_ERROR(api::check_environment(env, "decrypted environment"));
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
  // Replaces what this reservation held before (a download tried again may find another size).
  void take_bytes(int64_t bytes) {
    node_.reserved_bytes_ += bytes - bytes_;
    bytes_ = bytes;
  }
  int64_t bytes() const { return bytes_; }
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

Result<json> Node::deploy(const std::string& ns, std::string_view body, DeployOrigin origin) {
  static constexpr const char* kOrigins[] = {"request", "restore", "autostart"};
  auto checked = verify_deploy(ns, body, origin);
  if (!checked) {
    metrics_.deploy(kOrigins[static_cast<int>(origin)], false);
    return fail(checked.error());
  }
  // A signed request is used once. The same request again (a client retrying after a lost
  // reply) gets the first one's answer; nothing is deployed twice.
  const bool once = origin == DeployOrigin::kRequest && checked->claims.exp.has_value();
  if (once) {
    if (auto repeated = take_once(checked->claims, checked->fingerprint)) return *repeated;
  }
  // Restored and autostarted workloads replace nothing: what they would replace is theirs.
  auto r = origin == DeployOrigin::kRequest && checked->req.replace
               ? deploy_replacing(ns, body, *checked)
               : try_deploy(ns, body, *checked, origin);
  if (once) answer_once(checked->claims, r);
  metrics_.deploy(kOrigins[static_cast<int>(origin)], r.has_value());
  return r;
}

std::chrono::milliseconds Node::deploy_deadline() const {
  return std::chrono::milliseconds(options_.config.agent_handshake_timeout_ms) +
         driver_->boot_allowance() + kFetchAllowance + kDeployTimeout + kReplaceAllowance;
}

Result<json> Node::deploy_replacing(const std::string& ns, std::string_view body,
                                    const VerifiedDeploy& checked) {
  auto previous = replaced_by(ns, checked);
  if (!previous) return fail(previous.error());
  auto r = try_deploy(ns, body, checked, DeployOrigin::kRequest);
  if (!r) return r;
  json replaced = json::array();
  for (const auto& w : *previous) {
    if (stop_running(w, "workload replaced by " + r->value("id", ""))) replaced.push_back(w->id);
  }
  (*r)["replaced"] = std::move(replaced);
  return r;
}

Result<std::vector<std::shared_ptr<Node::Workload>>> Node::replaced_by(
    const std::string& ns, const VerifiedDeploy& checked) {
  std::vector<std::shared_ptr<Workload>> out;
  std::lock_guard lock(mu_);
  for (const auto& [wid, w] : workloads_) {
    if (w->ns != ns || w->name != checked.name || w->issuer != checked.issuer || w->state.leaving())
      continue;
    if (w->type != checked.req.type) {
      return fail(ErrorCode::kAlreadyExists,
                  fmt::format("a {} workload named '{}' runs on this node ({}); this {} deploy "
                              "would replace it: give it another name (nex devrun --name NAME), "
                              "or stop that one first (nex stop {} {})",
                              api::to_string(w->type), w->name, w->id,
                              api::to_string(checked.req.type), id(), w->id));
    }
    out.push_back(w);
  }
  return out;
}

Result<Node::VerifiedDeploy> Node::verify_deploy(const std::string& ns, std::string_view body,
                                                 DeployOrigin origin) {
  const NodeConfig& cfg = options_.config;
  NEX_RETURN_IF_ERROR(api::validate_namespace(ns));
  NEX_RETURN_IF_ERROR(api::check_body_size(body, api::kMaxRequestBytes, "deploy request"));
  auto object = api::FieldReader::parse_object(body, "deploy request");
  if (!object) return fail(object.error());
  // Signed by whom, for what, and still valid: checked before anything else is looked at. The
  // config's autostart requests are the operator's own; a restored one was checked when it came.
  auto checked = api::check_request(
      *object, {.action = api::action::kDeploy,
                .ns = ns,
                .node_id = id(),
                .allow_unbound = cfg.allow_unbound_requests || origin == DeployOrigin::kAutostart,
                .check_times = origin == DeployOrigin::kRequest});
  if (!checked) return fail(checked.error());
  const std::string issuer = checked->jwt.claims.iss;
  if (!cfg.valid_issuers.empty() && std::find(cfg.valid_issuers.begin(), cfg.valid_issuers.end(),
                                              issuer) == cfg.valid_issuers.end()) {
    return fail(ErrorCode::kPermissionDenied,
                "issuer " + issuer + " is not allowed on this node (valid_issuers)");
  }
  auto req = api::parse_deploy_request(body);
  if (!req) return fail(req.error());
  const auto& claims = checked->jwt.claims;
  VerifiedDeploy v{.req = std::move(*req),
                   .issuer = issuer,
                   .claims = claims,
                   .fingerprint = api::request_fingerprint(*object)};
  v.name = v.req.workload_name.empty() ? claims.sub : v.req.workload_name;
  NEX_RETURN_IF_ERROR(api::validate_workload_name(v.name));
  if (!v.req.workload_name.empty() && !claims.sub.empty() && claims.sub != v.req.workload_name) {
    return fail(ErrorCode::kPermissionDenied,
                "workload_name '" + v.req.workload_name +
                    "' differs from the name the JWT was signed for ('" + claims.sub + "')");
  }
  v.claimed_hash = v.req.hash;
  if (auto h = claims.nats.find("hash");
      h != claims.nats.end() && h->is_string() && !h->get<std::string>().empty()) {
    if (!v.claimed_hash.empty() && v.claimed_hash != h->get<std::string>()) {
      return fail(ErrorCode::kPermissionDenied,
                  "field 'hash' differs from the hash the JWT was signed for");
    }
    v.claimed_hash = h->get<std::string>();
  }
  return v;
}

// A sandboxed workload reaches a NATS on the host's loopback through a port the node forwards
// into its sandbox. Only the NATS servers the node itself connects to, or its config names
// (sandbox_nats_ports), are forwarded: a deployer could otherwise list any loopback service of
// the host (the node's metrics, a database) and reach it from inside. A sandbox that reaches no
// other host (a microVM) cannot reach a NATS elsewhere either: said now, rather than leave the
// service retrying a connection that can never be made.
Status Node::check_sandbox_nats(const std::map<std::string, std::string>& env) const {
  if (!driver_->sandboxed()) return {};
  const auto& cfg = options_.config;
  std::vector<int> ports = cfg.sandbox_nats_ports;
  auto add = [&](const std::vector<std::string>& urls) {
    for (const auto& url : urls)
      if (auto port = loopback_port(url)) ports.push_back(*port);
  };
  add(options_.control.urls);
  add(sandbox::nats_urls({{"NATS_URL", cfg.host_services.nats_url}}));
  std::erase(ports, internal_->port());  // reached by agents only, on the gateway
  for (const auto& url : sandbox::nats_urls(env)) {
    const auto port = loopback_port(url);
    if (!port && !driver_->reaches_other_hosts())
      return fail(ErrorCode::kInvalidArgument,
                  "environment NATS_URL: a workload in a " + std::string(driver_->name()) +
                      " sandbox reaches NATS only on the host's loopback "
                      "(nats://127.0.0.1:PORT); got " +
                      url);
    if (port && std::find(ports.begin(), ports.end(), *port) == ports.end()) {
      std::string known;
      for (int p : ports) known += (known.empty() ? "" : ", ") + std::to_string(p);
      return fail(ErrorCode::kPermissionDenied,
                  "environment NATS_URL: port " + std::to_string(*port) +
                      " on the host's loopback is not a NATS server this node uses (" +
                      (known.empty() ? "none" : known) +
                      "); the node config's sandbox_nats_ports names others");
    }
  }
  return {};
}

// The agent a deploy took from the pool: its sandbox is stopped unless the workload's record
// takes it (Node::register_workload).
class Node::AgentLease {
 public:
  AgentLease(Node& node, WarmAgent agent) : node_(node), agent_(std::move(agent)) {}
  AgentLease(const AgentLease&) = delete;
  AgentLease& operator=(const AgentLease&) = delete;
  ~AgentLease() {
    if (!held_) return;
    agent_.sandbox->stop(1s);
    (void)node_.internal_->remove_workload(agent_.id);
  }
  WarmAgent* operator->() { return &agent_; }
  WarmAgent take() {
    held_ = false;
    return std::move(agent_);
  }

 private:
  Node& node_;
  WarmAgent agent_;
  bool held_ = true;
};

// A workload registered before its agent starts it (in workloads_, and in the store unless it
// was autostarted): unless the deploy completes, it is unregistered, marked failed, and its
// sandbox released.
class Node::Registration {
 public:
  Registration(Node& node, std::shared_ptr<Workload> w, bool kept)
      : node_(node), w_(std::move(w)), kept_(kept) {}
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration() {
    if (committed_) return;
    {
      std::lock_guard lock(node_.mu_);
      node_.workloads_.erase(w_->id);
      if (!w_->state.ended()) node_.move_to(*w_, WorkloadPhase::kFailed);
    }
    if (kept_) (void)node_.store_->erase(w_->id);
    w_->agent.sandbox->stop(1s);
    (void)node_.internal_->remove_workload(w_->id);
    if (node_.host_services_) node_.host_services_->forget(w_->id);
  }
  void commit() { committed_ = true; }

 private:
  Node& node_;
  std::shared_ptr<Workload> w_;
  bool kept_;
  bool committed_ = false;
};

// A workload its agent accepted: the agent is asked to undeploy it if a later step fails.
class Node::AgentAccepted {
 public:
  AgentAccepted(Node& node, std::string workload_id) : node_(node), id_(std::move(workload_id)) {}
  AgentAccepted(const AgentAccepted&) = delete;
  AgentAccepted& operator=(const AgentAccepted&) = delete;
  ~AgentAccepted() {
    if (!committed_)
      (void)node_.internal_->request_agent(id_, api::agent_subject::undeploy(id_), "", 2s);
  }
  void commit() { committed_ = true; }

 private:
  Node& node_;
  std::string id_;
  bool committed_ = false;
};

// One deploy going through the pipeline (Node::try_deploy): what each step found, and the
// guards of the steps taken so far, declared in step order so that a failure undoes them in
// reverse (the agent's undeploy, then the registration, the agent, the reservation).
struct Node::DeployRun {
  DeployRun(Node& node, const std::string& ns, std::string_view body, const VerifiedDeploy& checked,
            DeployOrigin origin, const Workload* replaces)
      : ns(ns),
        body(body),
        checked(checked),
        req(checked.req),
        origin(origin),
        replaces(replaces),
        reserved(node) {}
  const std::string& ns;
  std::string_view body;
  const VerifiedDeploy& checked;
  const api::DeployRequest& req;
  DeployOrigin origin;
  const Workload* replaces;  // an essential workload deployed again in a new agent
  WorkloadState state;       // reserved, fetching; then the record's (register_workload)
  std::map<std::string, std::string> env;  // admit: the decrypted environment
  int64_t size = 0;                        // fetch: the artifact's bytes
  std::string hash;                        // fetch: its SHA-256
  api::AgentDeployRequest areq;            // prepare: what the agent is asked to run
  std::string direct_login;     // prepare: how a function's agent logs in to take its triggers
  std::shared_ptr<Workload> w;  // register_workload: the record

  Reservation reserved;
  std::optional<AgentLease> agent;
  std::optional<Registration> registration;
  std::optional<AgentAccepted> accepted;
};

// The deploy pipeline. Each step is a function below; each one that takes something (a place,
// an agent, a registration, the agent's yes) leaves a guard in the run that gives it back if a
// later step fails, so no step cleans up after another.
Result<json> Node::try_deploy(const std::string& ns, std::string_view body,
                              const VerifiedDeploy& checked, DeployOrigin origin,
                              const Workload* replaces) {
  DeployRun run(*this, ns, body, checked, origin, replaces);
  NEX_RETURN_IF_ERROR(reserve(run));         // a place under the node's limits
  NEX_RETURN_IF_ERROR(admit(run));           // what this node accepts; the sealed environment
  NEX_RETURN_IF_ERROR(take_agent(run));      // a warm agent from the pool
  NEX_RETURN_IF_ERROR(fetch(run));           // the artifact, its size, hash and format checked
  NEX_RETURN_IF_ERROR(prepare(run));         // the agent's deploy request
  register_workload(run);                    // before the start: its first logs find it
  NEX_RETURN_IF_ERROR(start_in_agent(run));  // the agent starts it
  NEX_RETURN_IF_ERROR(route_triggers(run));  // a relayed function's trigger subscriptions
  return announce(run);                      // running: logged, workload_deployed, answered
}

Status Node::reserve(DeployRun& run) {
  const NodeConfig& cfg = options_.config;
  if (lameduck_ && !run.replaces)  // a workload it runs keeps running
    return fail(ErrorCode::kUnavailable, "node is in lame duck mode and accepts no new workloads");
  // Deploys run in parallel; the limits hold because each one reserves its place (and, once
  // its size is known, its bytes) until it is registered or has failed.
  std::lock_guard lock(mu_);
  // Deploys under way hold places too, and may still fail: both are said.
  const size_t taken = workloads_.size() + reserved_slots_;
  if (cfg.node_limits.max_workloads > 0 &&
      static_cast<int64_t>(taken) >= cfg.node_limits.max_workloads) {
    return fail(ErrorCode::kUnavailable,
                fmt::format("node is full (node_limits.max_workloads {}): {} running, {} being "
                            "deployed",
                            cfg.node_limits.max_workloads, workloads_.size(), reserved_slots_));
  }
  run.reserved.take_slot();
  return {};
}

Status Node::admit(DeployRun& run) {
  const NodeConfig& cfg = options_.config;
  const api::DeployRequest& req = run.req;
  const auto& allowed = cfg.workload_types;
  if (std::find(allowed.begin(), allowed.end(), req.type) == allowed.end()) {
    std::string list;
    for (auto t : allowed) list += (list.empty() ? "" : ", ") + std::string(api::to_string(t));
    return fail(ErrorCode::kInvalidArgument,
                "workload type '" + std::string(api::to_string(req.type)) +
                    "' is not accepted by this node (workload_types: " + list + ")");
  }
  if (!api::is_function(req.type) && !req.trigger_subjects.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "trigger_subjects are only for function workloads (v8, wasm), not native services");
  }
  if (api::is_function(req.type) && req.trigger_subjects.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "function workloads need at least one trigger subject");
  }
  for (const auto& s : req.trigger_subjects) {
    if (auto why = cfg.subject_policy.refusal(s); !why.empty())
      return fail(ErrorCode::kPermissionDenied, "trigger subject " + why);
    for (const auto& d : cfg.deny_trigger_subjects) {
      if (api::subjects_overlap(s, d)) {
        return fail(
            ErrorCode::kPermissionDenied,
            "trigger subject '" + s + "' is not allowed: it overlaps the denied '" + d + "'");
      }
    }
  }
  auto env = open_environment(req, identity_.xkey());
  if (!env) return fail(env.error());
  run.env = std::move(*env);
  return check_sandbox_nats(run.env);
}

Status Node::take_agent(DeployRun& run) {
  auto agent = pool_->take(std::chrono::milliseconds(options_.config.agent_handshake_timeout_ms) +
                           driver_->boot_allowance());
  if (!agent) return fail(agent.error());
  run.agent.emplace(*this, std::move(*agent));
  return {};
}

// One try at the artifact: its size checked against the node's limit, its bytes in the agent's
// file, and their SHA-256 (which the object store checked against its digest) in run.hash.
Status Node::download(DeployRun& run) {
  const NodeConfig& cfg = options_.config;
  const api::DeployRequest& req = run.req;
  auto js = nats::JetStream::create(*control_, {.domain = req.jsdomain});
  if (!js) return fail(js.error());
  auto store = nats::ObjectStore::bind(*js, req.location.bucket);
  if (!store) return fail(store.error().wrap("location " + req.location.to_string()));
  auto info = store->info(req.location.key);
  if (!info) return fail(info.error().wrap("location " + req.location.to_string()));
  run.size = static_cast<int64_t>(info->size);
  if (cfg.node_limits.max_workload_bytes > 0 && run.size > cfg.node_limits.max_workload_bytes) {
    return fail(
        ErrorCode::kInvalidArgument,
        fmt::format(
            "artifact is {} bytes, over this node's limit of {} (node_limits.max_workload_bytes)",
            run.size, cfg.node_limits.max_workload_bytes));
  }
  NEX_RETURN_IF_ERROR(reserve_bytes(run));
  auto got = store->get_file(req.location.key, run.agent.value()->artifact_path);
  if (!got) return fail(got.error().wrap("download " + req.location.to_string()));
  run.hash = nats::digest_hex(got->digest);
  return {};
}

Status Node::fetch(DeployRun& run) {
  const api::DeployRequest& req = run.req;
  (void)run.state.to(WorkloadPhase::kFetching);
  // A NATS server restarting mid-download times the download out: try again once it is back,
  // within the fetch's share of the deploy deadline.
  const auto give_up = std::chrono::steady_clock::now() + kFetchAllowance;
  Status got = download(run);
  for (auto wait = 250ms; !got && (got.error().code == ErrorCode::kTimeout ||
                                   got.error().code == ErrorCode::kUnavailable);
       wait = std::min(wait * 2, std::chrono::milliseconds(4s))) {
    if (std::chrono::steady_clock::now() + wait >= give_up) break;
    log_line("Workload " + req.workload_name + ": " + got.error().message + "; trying again");
    std::this_thread::sleep_for(wait);
    got = download(run);
  }
  if (!got) return fail(got.error());
  const fs::path& path = run.agent.value()->artifact_path;
  // Readable by the sandbox's unprivileged user (its directory is closed to everyone else).
  fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  // Compare the artifact's SHA-256 with the hash the request and its JWT vouch for.
  const std::string& claimed_hash = run.checked.claimed_hash;
  if (!claimed_hash.empty() && run.hash != claimed_hash) {
    return fail(ErrorCode::kCorrupt, "artifact hash mismatch: the request vouches for " +
                                         claimed_hash + " but the artifact's SHA-256 is " +
                                         run.hash);
  }
  if (req.type == api::WorkloadType::kNative) {
    if (auto st = check_static_executable(path); !st)
      return fail(st.error().wrap("artifact " + req.location.to_string() + " refused"));
  }
  return {};
}

Status Node::reserve_bytes(DeployRun& run) {
  const NodeConfig& cfg = options_.config;
  std::lock_guard lock(mu_);
  int64_t total_bytes = reserved_bytes_ - run.reserved.bytes();  // a retry's own counts once
  for (const auto& [wid, w] : workloads_) total_bytes += w->bytes;
  if (cfg.node_limits.max_total_bytes != 0 &&
      total_bytes + run.size > cfg.node_limits.max_total_bytes) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("artifact of {} bytes would take the node past its total of {} "
                            "bytes (node_limits.max_total_bytes)",
                            run.size, cfg.node_limits.max_total_bytes));
  }
  run.reserved.take_bytes(run.size);
  return {};
}

Status Node::prepare(DeployRun& run) {
  const api::DeployRequest& req = run.req;
  api::AgentDeployRequest& areq = run.areq;
  areq.argv = req.argv;
  areq.description = req.description;
  areq.environment = std::move(run.env);
  if (req.type == api::WorkloadType::kNative) NEX_RETURN_IF_ERROR(prepare_native(run));
  areq.essential = req.essential;
  areq.hash = run.hash;
  areq.ns = run.ns;
  areq.retried_at = req.retried_at;
  areq.retry_count = req.retry_count.value_or(0);
  areq.total_bytes = run.size;
  areq.trigger_subjects = req.trigger_subjects;
  areq.workload_name = run.checked.name;
  areq.workload_type = req.type;
  areq.host_services = req.host_services;
  areq.function_limits = req.function_limits;
  if (api::is_function(req.type)) NEX_RETURN_IF_ERROR(prepare_triggers(run));
  return {};
}

Status Node::prepare_native(DeployRun& run) {
  WarmAgent& agent = *run.agent.value().operator->();
  auto& env = run.areq.environment;
  // ours: a native service reaches host services over the internal NATS, as a user that may
  // only call them for this workload (docs/host-services.md).
  env["NEX_HOSTSERVICES_NATS_URL"] =
      internal_->service_url(agent.id, agent.sandbox->internal_nats_host());
  // ours: the workload's own NATS, when it is on the host's loopback, is reached at the same
  // URL from inside a sandbox (docs/sandbox.md); no other host port is.
  for (int port : loopback_nats_ports(env)) {
    if (auto st = agent.sandbox->expose_host_port(port); !st)
      return fail(st.error().wrap("environment NATS_URL"));
  }
  env["NEX_HOSTSERVICES_INBOX_PREFIX"] = InternalServer::service_inbox_prefix(agent.id);
  env["NEX_HOSTSERVICES_SUBJECT_PREFIX"] =
      api::host_services::rpc_prefix(agent.id, run.ns, run.checked.name);
  return {};
}

Status Node::prepare_triggers(DeployRun& run) {
  const api::DeployRequest& req = run.req;
  api::AgentDeployRequest& areq = run.areq;
  WarmAgent& agent = *run.agent.value().operator->();
  auto direct = triggers::direct_triggers(
      options_.config, options_.control, driver_->sandboxed(),
      trigger_credentials_ ? &*trigger_credentials_ : nullptr, agent.id, req.trigger_subjects,
      triggers::answer_window(req.function_limits), areq.environment);
  if (!direct) {
    areq.trigger_channel = agent.trigger_channel.valid();  // else the internal NATS
    areq.reply_max_payload = control_->max_payload();      // the node answers its callers there
    return {};
  }
  for (int port : direct->loopback_ports) {
    if (auto st = agent.sandbox->expose_host_port(port); !st)
      return fail(st.error().wrap("the NATS for triggers"));
  }
  areq.trigger_nats_urls = direct->urls;
  areq.trigger_nats_jwt = direct->user.jwt;
  areq.trigger_nats_seed = direct->user.seed;
  run.direct_login = direct->login;
  return {};
}

// Registered before the agent starts it, so the workload's first log lines and an early exit
// find it.
void Node::register_workload(DeployRun& run) {
  const api::DeployRequest& req = run.req;
  const std::string& ns = run.ns;
  const std::string& name = run.checked.name;
  auto w = std::make_shared<Workload>();
  w->id = run.agent.value()->id;
  w->ns = ns;
  w->name = name;
  w->description = req.description;
  w->type = req.type;
  w->issuer = run.checked.issuer;
  w->deploy_jti = run.checked.claims.jti;
  w->hash = run.hash;
  w->bytes = run.size;
  if (api::is_function(w->type))
    w->metrics = metrics_.function(ns, name, std::string(api::to_string(w->type)));
  w->logs.emplace(options_.config.workload_logs, std::chrono::steady_clock::now());
  w->logs_dropped = metrics_.log_lines_dropped(ns, name, std::string(api::to_string(w->type)));
  w->essential = req.essential;
  w->request = run.areq;
  w->agent = run.agent->take();
  w->body = std::string(run.body);
  w->origin = run.origin;
  w->verified = run.checked;
  w->state = run.state;
  if (run.replaces) {
    w->state.carry_restarts(run.replaces->state);
    w->last_exit = run.replaces->last_exit;
  }
  move_to(*w, WorkloadPhase::kStarting);
  {
    std::lock_guard lock(mu_);
    workloads_[w->id] = w;
    run.reserved.release_locked();  // it counts as running now
  }
  // Kept before it starts, so an exit at any moment after finds it to forget.
  const bool kept = run.origin != DeployOrigin::kAutostart;
  if (kept) {
    if (auto st = store_->put({w->id, ns, std::string(run.body)}); !st)
      log_line("Workload " + w->id + " will not come back after a restart: " + st.error().message);
  }
  run.registration.emplace(*this, w, kept);
  run.w = std::move(w);
}

Status Node::start_in_agent(DeployRun& run) {
  const std::string& wid = run.w->id;
  auto resp = internal_->request_agent(wid, api::agent_subject::deploy(wid),
                                       api::dump(api::to_json(run.areq)), kDeployTimeout);
  if (!resp) return fail(resp.error().wrap("agent"));
  NEX_RETURN_IF_ERROR(agent_accepted(resp->data()));
  run.accepted.emplace(*this, wid);
  return {};
}

Status Node::route_triggers(DeployRun& run) {
  if (!api::is_function(run.w->type) || !run.areq.trigger_nats_urls.empty()) return {};
  if (auto st = relay_triggers(run.w); !st) return fail(st.error().wrap("trigger subjects"));
  return {};
}

json Node::announce(DeployRun& run) {
  const std::shared_ptr<Workload>& w = run.w;
  const std::string& name = run.checked.name;
  log_line("Workload deployed name=" + name + " id=" + w->id + " namespace=" + run.ns);
  if (api::is_function(w->type)) {
    log_line("Function " + name +
             (run.areq.trigger_channel ? " has its triggers relayed by the node over its channel"
              : run.areq.trigger_nats_urls.empty()
                  ? " has its triggers relayed by the node over the internal NATS"
                  : " takes its triggers directly, " + run.direct_login));
  }
  bool still_running = false;
  {
    std::lock_guard lock(mu_);
    still_running = workloads_.count(w->id) > 0;
    if (auto st = w->state.agent_accepted(); !st)
      log_line("Workload " + w->id + ": " + st.error().message);
  }
  run.accepted->commit();
  run.registration->commit();
  if (still_running) {  // (an instant exit was already reported as undeployed)
    json data = {{"workload_name", name}, {"code", 0}, {"message", "workload deployed"}};
    if (run.replaces) {
      data["restarted"] = true;  // ours: deployed again in a new agent, under a new id
      data["replaces"] = run.replaces->id;
      data["message"] = "workload restarted after " + run.replaces->last_exit;
    } else if (run.origin == DeployOrigin::kRestore) {
      data["restored"] = true;  // ours: brought back by a restarted node
      data["message"] = "workload restored after the node restarted";
    }
    publish_event(run.ns, api::event_type::kWorkloadDeployed, data, id() + "-" + w->id);
  }
  return json{{"started", true}, {"id", w->id}, {"issuer", run.checked.issuer}, {"name", name}};
}

Result<json> Node::stop_workload(const std::string& ns, std::string_view body) {
  NEX_RETURN_IF_ERROR(api::check_body_size(body, api::kMaxRequestBytes, "stop request"));
  auto object = api::FieldReader::parse_object(body, "stop request");
  if (!object) return fail(object.error());
  auto checked =
      api::check_request(*object, {.action = api::action::kStop,
                                   .ns = ns,
                                   .node_id = id(),
                                   .allow_unbound = options_.config.allow_unbound_requests});
  if (!checked) return fail(checked.error());
  auto req = api::parse_stop_request(body);
  if (!req) return fail(req.error());
  const crypto::JwtClaims& claims = checked->jwt.claims;
  if (claims.exp) {
    if (auto repeated = take_once(claims, api::request_fingerprint(*object))) return *repeated;
  }
  auto r = stop_checked(ns, *req, claims);
  if (claims.exp) answer_once(claims, r);
  return r;
}

Result<json> Node::stop_checked(const std::string& ns, const api::StopRequest& req,
                                const crypto::JwtClaims& claims) {
  std::shared_ptr<Workload> w;
  {
    std::lock_guard lock(mu_);
    auto it = workloads_.find(req.workload_id);
    if (it != workloads_.end() && it->second->ns == ns && !it->second->state.leaving())
      w = it->second;
  }
  if (!w) {
    if (auto stopped = stop_pending_restore(ns, req.workload_id, claims)) return *stopped;
    return fail(ErrorCode::kNotFound, "no such workload: " + req.workload_id);
  }
  if (claims.iss != w->issuer) {
    return fail(ErrorCode::kPermissionDenied,
                "only the issuer that deployed workload " + w->id + " may stop it");
  }
  if (claims.sub != w->name) {
    return fail(ErrorCode::kPermissionDenied,
                "the stop JWT names workload '" + claims.sub + "', not '" + w->name + "'");
  }
  if (claims.jti == w->deploy_jti) {
    return fail(ErrorCode::kPermissionDenied,
                "the stop request replays the deploy JWT: sign a fresh one");
  }
  if (!stop_running(w, "workload stopped"))
    return fail(ErrorCode::kNotFound, "no such workload: " + req.workload_id);
  return json{{"stopped", true}, {"id", w->id}, {"issuer", w->issuer}, {"name", w->name}};
}

bool Node::stop_running(const std::shared_ptr<Workload>& w, const std::string& message) {
  std::vector<nats::Subscription> triggers;
  {
    std::lock_guard lock(mu_);
    if (w->state.leaving()) return false;
    move_to(*w, WorkloadPhase::kStopping);
    triggers = std::move(w->triggers);
  }
  // Relayed triggers already received still reach the agent, which runs them or answers that
  // the function stopped, rather than leaving their callers to time out.
  nats::Subscription::drain_and_wait(triggers, api::kTriggerDrainTimeout);
  undeploy(w, message);
  return true;
}

void Node::undeploy(const std::shared_ptr<Workload>& w, const std::string& message) {
  bool gone = false;
  {
    std::lock_guard lock(mu_);
    gone = w->agent_gone;  // nobody to answer: waiting for it would only delay the stop
  }
  if (!gone)
    (void)internal_->request_agent(w->id, api::agent_subject::undeploy(w->id), "",
                                   kUndeployGrace + 2s);
  // The agent sent its last reports before it answered; they are handled before it goes.
  wait_for_agent_traffic(w->id, 2s);
  remove_workload(w, 0, message);
}

void Node::wait_for_agent_traffic(const std::string& workload_id,
                                  std::chrono::milliseconds patience) {
  const std::string marker = next_nuid();
  {
    std::lock_guard lock(barrier_mu_);
    barriers_.insert(marker);
  }
  if (internal_->connection().publish("hostint." + workload_id + ".barrier." + marker, "")) {
    std::unique_lock lock(barrier_mu_);
    barrier_cv_.wait_for(lock, patience, [&] { return barriers_.count(marker) == 0; });
  }
  std::lock_guard lock(barrier_mu_);
  barriers_.erase(marker);
}

void Node::remove_workload(const std::shared_ptr<Workload>& w, int code,
                           const std::string& message) {
  std::vector<nats::Subscription> triggers;
  std::shared_ptr<triggers::ChannelNodeEnd> channel;
  {
    std::lock_guard lock(mu_);
    if (workloads_.erase(w->id) == 0) return;
    move_to(*w, code == 0 ? WorkloadPhase::kStopped : WorkloadPhase::kFailed);
    triggers = std::move(w->triggers);
    channel = w->channel;
  }
  // Its last lines were handled (undeploy waits for them): the last drops are told before it goes.
  report_dropped_logs(*w, std::chrono::steady_clock::now(), /*final=*/true);
  // Stopped or ended: it does not come back. A node shutting down keeps them all.
  if (!stopped_) (void)store_->erase(w->id);
  triggers.clear();  // no new invocations reach the agent
  w->agent.sandbox->stop(kUndeployGrace);
  // The answers the agent wrote before it ended go out; callers still waiting hear it stopped.
  if (channel) channel->close();
  (void)internal_->remove_workload(w->id);
  if (host_services_) host_services_->forget(w->id);
  log_line("Workload undeployed name=" + w->name + " id=" + w->id + " (" + message + ")");
  publish_event(w->ns, api::event_type::kWorkloadUndeployed,
                {{"workload_name", w->name}, {"code", code}, {"message", message}},
                id() + "-" + w->id);
}

void Node::move_to(Workload& w, WorkloadPhase phase) {
  if (auto st = w.state.to(phase); !st)
    log_line("Workload " + w.name + " (" + w.id + "): " + st.error().message);
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
  // Counted against the workload's rate before anything is read, so a flood costs the node
  // little more than this lookup per line.
  if (!w->logs->admit(std::chrono::steady_clock::now())) {
    w->logs_dropped->add();
    return;
  }
  auto j = api::FieldReader::parse_object(msg.data(), "log");
  if (!j) return;
  api::FieldReader f(*j, "log");
  std::string text;
  std::string level = "info";
  f.string("text", text);
  f.string("level", level);
  if (!f.status()) return;
  if (!known_log_level(level)) level = "info";
  w->logs->bound_line(text);
  publish_workload_log(w->ns, w->name, w->id, level, text);
}

void Node::report_dropped_logs(Workload& w, std::chrono::steady_clock::time_point now, bool final) {
  if (auto dropped = w.logs->take_dropped(now, final))
    publish_workload_log(w.ns, w.name, w.id, "warn", w.logs->notice(*dropped));
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

void Node::on_agent_artifact(nats::Message msg) {
  if (msg.reply().empty()) return;
  // The subject's id is the agent's own: its account may publish nowhere else.
  const std::string id = token(msg.subject(), 1);
  if (id.empty() ||
      id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos)
    return;
  int64_t offset = -1;
  auto body = api::FieldReader::parse_object(msg.data(), "artifact request");
  if (body) api::FieldReader(*body, "artifact request").integer("offset", offset);
  std::string chunk;
  std::ifstream in(sandboxes_dir() / id / "workload", std::ios::binary);
  if (in && offset >= 0 && in.seekg(offset)) {
    chunk.resize(api::agent_subject::kArtifactChunk);
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<size_t>(in.gcount()));
  }
  (void)internal_->connection().publish(msg.reply(), chunk);  // empty: nothing (more) to send
}

void Node::republish_invocation(Workload& w, const api::InvocationReport& r) {
  w.invocations++;
  w.metrics.invocation(r.error.has_value(), r.elapsed_nanos);
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
    if (w->state.leaving()) return;  // a stop in progress reports the undeploy itself
    w->last_exit = message;
    if (code != 0 && schedule_restart(*w, message)) return;
  }
  end_workload(w, code, message);
}

bool Node::schedule_restart(Workload& w, const std::string& how) {
  if (!w.essential || w.state.restarts() >= kMaxRestarts) return false;
  // Exponential backoff: 250 ms, 500 ms, 1 s, 2 s, 4 s.
  const auto delay = std::chrono::milliseconds(250) * (1 << w.state.restarts());
  if (auto st = w.state.restart_after(std::chrono::steady_clock::now() + delay); !st) {
    log_line("Workload " + w.name + " (" + w.id + "): " + st.error().message);
    return false;
  }
  log_line(fmt::format("Essential workload {} {}; restarting in {} ms (attempt {} of {})", w.name,
                       how, delay.count(), w.state.restarts(), kMaxRestarts));
  maintenance_cv_.notify_all();
  return true;
}

void Node::end_workload(const std::shared_ptr<Workload>& w, int code, const std::string& message) {
  if (w->essential && code != 0) {
    int restarts = 0;
    {
      std::lock_guard lock(mu_);
      restarts = w->state.restarts();
    }
    publish_event(w->ns, api::event_type::kWorkloadCrashLoop,
                  {{"workload_name", w->name},
                   {"code", code},
                   {"restarts", restarts},
                   {"message", "gave up restarting after " + std::to_string(restarts) +
                                   " attempts: " + message}},
                  id() + "-" + w->id);
  }
  {
    std::lock_guard lock(mu_);
    if (workloads_.count(w->id) == 0) return;  // a stop took it meanwhile
    remember_ended(*w, code, message);
  }
  remove_workload(w, code, message);
}

void Node::remember_ended(const Workload& w, int code, const std::string& exit) {
  constexpr size_t kEndedKept = 32;
  if (!ended_.empty() && ended_.back().id == w.id) return;  // its agent and it told both
  ended_.push_back({w.ns, w.id, w.name, exit, code, std::chrono::system_clock::now()});
  if (ended_.size() > kEndedKept) ended_.pop_front();
}

void Node::reap_agents(const std::vector<std::shared_ptr<Workload>>& all) {
  for (const auto& w : all) {
    {
      std::lock_guard lock(mu_);
      if (!w->state.deployed() || w->state.leaving() || w->agent_gone) continue;
    }
    // Waiting for it reaps it: a dead agent is never left a zombie.
    if (auto status = w->agent.sandbox->wait(0ms)) on_agent_exited(w, *status);
  }
}

void Node::on_agent_exited(const std::shared_ptr<Workload>& w, int status) {
  const std::string how = "its agent " + describe_wait_status(status);
  const int code = wait_status_code(status);
  bool restarting = false;
  {
    std::lock_guard lock(mu_);
    // A stop in progress ends it anyway; one that removed it stopped the sandbox itself.
    if (w->state.leaving() || workloads_.count(w->id) == 0) return;
    w->agent_gone = true;
    w->state.agent_lost();
    w->last_exit = how;
    restarting = schedule_restart(*w, how);
  }
  log_line(fmt::format("Workload {} ({}): {}{}", w->name, w->id, how,
                       restarting ? "" : "; the workload is stopped"));
  publish_workload_log(w->ns, w->name, w->id, "error", "nex: " + how);
  publish_event(
      w->ns, api::event_type::kWorkloadAgentExited,
      {{"workload_name", w->name}, {"code", code}, {"message", how}, {"restarting", restarting}},
      id() + "-" + w->id);
  if (!restarting) end_workload(w, code, how);
}

void Node::restart_in_new_agent(const std::shared_ptr<Workload>& w) {
  std::vector<nats::Subscription> triggers;
  std::shared_ptr<triggers::ChannelNodeEnd> channel;
  {
    std::lock_guard lock(mu_);
    if (w->state.leaving() || workloads_.erase(w->id) == 0) return;
    triggers = std::move(w->triggers);
    channel = w->channel;
  }
  // Released as a stopped workload's sandbox is, but quietly: it is coming back.
  triggers.clear();
  w->agent.sandbox->stop(0ms);
  if (channel) channel->close();
  (void)internal_->remove_workload(w->id);
  if (host_services_) host_services_->forget(w->id);
  auto r = try_deploy(w->ns, w->body, *w->verified, w->origin, w.get());
  (void)store_->erase(w->id);  // kept again under its new id, if it came back
  {
    std::lock_guard lock(mu_);  // this record ends: it came back as another, or not at all
    move_to(*w, r ? WorkloadPhase::kStopped : WorkloadPhase::kFailed);
  }
  if (r) {
    log_line(fmt::format("Essential workload {} restarted as {} (attempt {} of {})", w->name,
                         (*r)["id"].get<std::string>(), w->state.restarts(), kMaxRestarts));
    return;
  }
  const std::string message = "restart failed: " + r.error().message;
  log_line("Essential workload " + w->name + " (" + w->id + "): " + message);
  {
    std::lock_guard lock(mu_);
    remember_ended(*w, 1, w->last_exit + "; " + message);
  }
  publish_event(w->ns, api::event_type::kWorkloadUndeployed,
                {{"workload_name", w->name}, {"code", 1}, {"message", message}},
                id() + "-" + w->id);
}

Status Node::relay_triggers(const std::shared_ptr<Workload>& w) {
  const auto window = triggers::answer_window(w->request.function_limits);
  std::shared_ptr<triggers::ChannelNodeEnd> channel;
  if (w->request.trigger_channel) {
    auto opened = triggers::ChannelNodeEnd::open(std::move(w->agent.trigger_channel), *control_,
                                                 w->id, window);
    if (!opened) return fail(opened.error());
    channel = std::move(*opened);
    std::lock_guard lock(mu_);
    w->channel = channel;
  }
  auto triggers = relay_->subscribe(w->id, w->request.trigger_subjects, window, channel);
  if (!triggers) return fail(triggers.error());
  {
    // A stop that began meanwhile takes the subscriptions it finds: none, so these go now.
    std::lock_guard lock(mu_);
    if (w->state.leaving() || workloads_.count(w->id) == 0) return {};
    w->triggers = std::move(*triggers);
  }
  return control_->flush();
}

void Node::restart_due(const std::vector<std::shared_ptr<Workload>>& all,
                       std::chrono::steady_clock::time_point now) {
  for (const auto& w : all) {
    bool new_agent = false;
    int restarts = 0;
    {
      std::lock_guard l(mu_);
      if (!w->state.restart_due(now)) continue;
      new_agent = w->agent_gone;
      // In a new agent, this record ends once its replacement is deployed (or not).
      if (!new_agent) move_to(*w, WorkloadPhase::kStarting);
      restarts = w->state.restarts();
    }
    metrics_.agent_restart(w->ns, w->name);
    if (new_agent) {
      restart_in_new_agent(w);
      continue;
    }
    w->request.retry_count = restarts;
    w->request.retried_at = rfc3339_nano(std::chrono::system_clock::now());
    auto r = internal_->request_agent(w->id, api::agent_subject::deploy(w->id),
                                      api::dump(api::to_json(w->request)), kDeployTimeout);
    if (r && agent_accepted(r->data())) {
      std::lock_guard l(mu_);
      if (auto st = w->state.agent_accepted(); !st)
        log_line("Workload " + w->id + ": " + st.error().message);
    } else {
      remove_workload(w, 1, "restart failed");
    }
  }
}

}  // namespace nex::node
