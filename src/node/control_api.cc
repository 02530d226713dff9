// The node's control API (docs/wire.md): PING, AUCTION, WPING, INFO, DEPLOY, STOP and
// LAMEDUCK on the control NATS, each answered in the spec's envelope.
#include <fmt/format.h>

#include <fstream>
#include <thread>

#include "api/events.h"
#include "api/json_fields.h"
#include "api/signed_request.h"
#include "core/clock.h"
#include "node/node_internals.h"

namespace nex::node {

using nlohmann::json;

namespace {

constexpr int kMaxConcurrentDeploys = 64;  // control API deploys under way at once

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

}  // namespace

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
  json ended = json::array();  // ours: workloads that ended on their own, and how
  {
    std::lock_guard lock(mu_);
    for (const auto& [wid, w] : workloads_) {
      if (w->ns != ns) continue;
      const std::string runtime = api::format_uptime(seconds_since(w->started));
      json machine = {{"id", w->id},
                      {"healthy", w->state.healthy()},
                      {"uptime", runtime},
                      {"namespace", w->ns},
                      {"workload",
                       {{"name", w->name},
                        {"description", w->description},
                        {"runtime", runtime},
                        {"type", api::to_string(w->type)},
                        {"hash", w->hash}}}};
      if (w->state.restarts() > 0) machine["restarts"] = w->state.restarts();  // ours
      if (!w->last_exit.empty()) machine["last_exit"] = w->last_exit;  // ours: how it last ended
      if (api::is_function(w->type)) {  // ours: what the function has done so far
        machine["function_invocations"] = w->invocations.load();
        machine["function_runtime_ns"] = w->runtime_ns.load();
      }
      machines.push_back(std::move(machine));
    }
    for (const auto& e : ended_) {
      if (e.ns != ns) continue;
      ended.push_back({{"id", e.id},
                       {"name", e.name},
                       {"exit", e.exit},
                       {"code", e.code},
                       {"ended_at", rfc3339_nano(e.at)}});
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
                                    {"ended", ended},
                                    {"supported_workload_types", types},
                                    // ours: kept workloads not back yet after a restart
                                    {"restores", restores_json(ns)},
                                    // ours: how long a deploy may take here
                                    {"deploy_deadline_ms", deploy_deadline().count()},
                                    // ours: the caps of what the node keeps in JetStream
                                    {"storage", storage_json()}}));
}

json Node::storage_json() const {
  const NodeConfig& cfg = options_.config;
  json out = {
      {"NEX_NODE_WORKLOADS", cfg.kept_workloads.to_json()},
      {"hs_{namespace}_{workload}_kv", cfg.host_services_settings.kv.caps.to_json()},
      {"hs_{namespace}_{workload}_obj", cfg.host_services_settings.object_store.caps.to_json()}};
  if (commands_) {
    const auto limits = commands_->limits();
    const json caps = {{"max_bytes", limits.max_bytes},
                       {"max_message_bytes", limits.max_message_bytes},
                       {"retention_days", limits.max_age / std::chrono::hours(24)}};
    for (const char* name :
         {commands::kCommandStream, commands::kResultStream, commands::kNodeDirectory})
      out[name] = caps;
  }
  for (auto& [name, caps] : out.items()) caps["replicas"] = replicas_.replicas;
  return out;
}

void Node::on_lameduck(nats::Message msg) { reply_result(msg, "lameduck", lameduck(msg.data())); }

Result<json> Node::lameduck(std::string_view body) {
  const NodeConfig& cfg = options_.config;
  if (body.empty() && !cfg.allow_unbound_requests)
    return fail(ErrorCode::kPermissionDenied,
                "a lame-duck request must be signed by a valid issuer or an operator key "
                "(`nex node lameduck` signs it with ~/.nex/issuer.nk)");
  if (!body.empty()) {
    NEX_RETURN_IF_ERROR(api::check_body_size(body, api::kMaxRequestBytes, "lame-duck request"));
    auto object = api::FieldReader::parse_object(body, "lame-duck request");
    if (!object) return fail(object.error());
    auto checked = api::check_request(*object, {.action = api::action::kLameDuck,
                                                .node_id = id(),
                                                .jwt_field = api::kRequestJwtField,
                                                .allow_unbound = cfg.allow_unbound_requests});
    if (!checked) return fail(checked.error());
    const crypto::JwtClaims& claims = checked->jwt.claims;
    auto listed = [&](const std::vector<std::string>& keys) {
      return std::find(keys.begin(), keys.end(), claims.iss) != keys.end();
    };
    const bool anyone =
        cfg.valid_issuers.empty() && cfg.operator_keys.empty() && claims.iss.starts_with('A');
    if (!anyone && !listed(cfg.valid_issuers) && !listed(cfg.operator_keys))
      return fail(ErrorCode::kPermissionDenied,
                  "issuer " + claims.iss +
                      " may not put this node in lame duck (valid_issuers, operator_keys)");
    if (claims.exp) {
      if (auto repeated = take_once(claims, api::request_fingerprint(*object))) return *repeated;
    }
  }
  if (!lameduck_.exchange(true)) {
    log_line("Entering lame duck mode: no new workloads will be accepted");
    publish_event(api::kSystemNamespace, api::event_type::kLameDuck,
                  {{"version", options_.version}, {"id", id()}});
  }
  return json{{"node_id", id()}, {"success", true}};
}

std::optional<Result<json>> Node::take_once(const crypto::JwtClaims& claims,
                                            const std::string& fingerprint) {
  auto use = ledger_->take(claims.jti, *claims.exp, fingerprint, deploy_deadline());
  if (!use) return fail(use.error().wrap("the node's request ledger"));
  if (use->kind == RequestLedger::Use::kFirst) return std::nullopt;
  if (use->kind == RequestLedger::Use::kRepeat) {
    auto answer = json::parse(use->answer, nullptr, false);
    if (answer.is_object() && answer.contains("data")) return Result<json>(answer["data"]);
    if (answer.is_object() && answer.contains("error"))
      return fail(ErrorCode::kPermissionDenied, answer.value("error", ""));
  }
  return fail(ErrorCode::kPermissionDenied, "this signed request (jti " + claims.jti +
                                                ") was already used on this node: sign a new one");
}

void Node::answer_once(const crypto::JwtClaims& claims, const Result<json>& answer) {
  ledger_->answered(claims.jti, answer ? api::dump({{"data", *answer}})
                                       : api::dump({{"error", answer.error().message}}));
}

// Replies with the envelope of `kind`: the result's data, or its error (also logged).
void Node::reply_result(const nats::Message& msg, std::string_view kind, const Result<json>& r) {
  if (r) {
    reply(msg, api::envelope(kind, *r));
  } else {
    const std::string what = kind == "run" ? "Deploy" : kind == "stop" ? "Stop" : "Lame duck";
    log_line(what + " refused: " + r.error().message);
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

}  // namespace nex::node
