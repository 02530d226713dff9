// Bringing back the workloads a node kept (WorkloadStore) when it starts again. Each entry is
// authenticated by the store, then deployed again under a new id like any request (its JWT,
// issuer, namespace binding and artifact hash checked again). What happens then:
// - deployed: the old entry goes (the new one was kept by the deploy);
// - refused for a reason that holds (a bad signature, an issuer no longer allowed, a type the
//   node no longer takes): the entry goes, said in the log and a workload_restore_failed event;
// - failed for a reason that may pass (NATS or the artifact away for now, no agent in time; or
//   the artifact changed, shown as "failed"): the entry stays, `nex node info` shows it under
//   `restores`, and it is tried again with backoff (1 s doubling to 5 min) until it comes back
//   or its deployer stops it (`nex stop NODE ID` with the id it had).
#include <fmt/format.h>

#include "api/events.h"
#include "api/json_fields.h"
#include "crypto/jwt.h"
#include "node/node_internals.h"

namespace nex::node {

using namespace std::chrono_literals;

using nlohmann::json;

namespace {

constexpr auto kFirstRetry = 1s;
constexpr auto kLongestRetry = std::chrono::minutes(5);

// Refusals that hold whatever happens next: the request itself is wrong for this node.
bool refused_for_good(ErrorCode code) {
  return code == ErrorCode::kPermissionDenied || code == ErrorCode::kInvalidArgument ||
         code == ErrorCode::kAlreadyExists;
}

std::chrono::milliseconds retry_delay(int attempts) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(kFirstRetry) *
           (1 << std::min(attempts - 1, 16));
  return std::min<std::chrono::milliseconds>(d, kLongestRetry);
}

// The workload's name and its deployer, as the kept request says (for INFO, events and stops).
void describe(PendingRestore& p) {
  auto j = json::parse(p.entry.request, nullptr, false);
  if (!j.is_object()) return;
  p.name = j.value("workload_name", "");
  auto jwt = crypto::decode_jwt(j.value("workload_jwt", ""));
  if (!jwt) return;
  p.issuer = jwt->claims.iss;
  if (p.name.empty()) p.name = jwt->claims.sub;
}

}  // namespace

void Node::restore_workloads() {
  auto listing = store_->list();
  if (!listing) {
    log_line("Cannot read the workloads to restore (trying again): " + listing.error().message);
    std::lock_guard lock(restore_mu_);
    relist_at_ = std::chrono::steady_clock::now() + kFirstRetry;
    return;
  }
  {
    std::lock_guard lock(restore_mu_);
    relist_at_.reset();
  }
  for (const auto& [id, why] : listing->refused) {
    log_line("Refused to restore workload entry " + id + ": " + why);
    (void)store_->erase(id);
  }
  for (const auto& id : listing->missing) {
    log_line("Workload " + id +
             " was kept, but its entry is gone from the store: it cannot "
             "come back");
    (void)store_->erase(id);
  }
  for (const auto& entry : listing->entries) {
    PendingRestore p{.entry = entry};
    describe(p);
    restore(std::move(p));
  }
}

void Node::restore(PendingRestore p) {
  // Deployed again under a new id, which the store keeps instead; the old entry goes only after
  // that, so a crash in between cannot lose the workload.
  auto r = deploy(p.entry.ns, p.entry.request, DeployOrigin::kRestore);
  if (r) {
    (void)store_->erase(p.entry.id);
    log_line("Restored workload " + (*r)["name"].get<std::string>() + " (was " + p.entry.id +
             ", now " + (*r)["id"].get<std::string>() + ")");
    std::lock_guard lock(restore_mu_);
    restores_.erase(p.entry.id);
    return;
  }
  const Error& e = r.error();
  const bool for_good = refused_for_good(e.code);
  json data = {{"workload_name", p.name},
               {"id", p.entry.id},
               {"reason", e.message},
               {"retrying", !for_good}};
  if (for_good) {
    log_line("Refused to restore workload " + p.name + " (" + p.entry.id + "): " + e.message);
    (void)store_->erase(p.entry.id);
    {
      std::lock_guard lock(restore_mu_);
      restores_.erase(p.entry.id);
    }
    publish_event(p.entry.ns, api::event_type::kWorkloadRestoreFailed, data);
    return;
  }
  const bool news = p.reason != e.message;  // said once per reason, not at every attempt
  p.attempts += 1;
  p.reason = e.message;
  p.state = e.code == ErrorCode::kCorrupt ? "failed" : "retrying";
  const auto delay = retry_delay(p.attempts);
  p.next = std::chrono::steady_clock::now() + delay;
  if (news) {
    log_line(fmt::format("Could not restore workload {} ({}): {}; trying again in {} s", p.name,
                         p.entry.id, e.message, delay.count() / 1000.0));
    publish_event(p.entry.ns, api::event_type::kWorkloadRestoreFailed, data);
  }
  std::lock_guard lock(restore_mu_);
  restores_[p.entry.id] = std::move(p);
}

void Node::retry_restores(std::chrono::steady_clock::time_point now) {
  std::vector<PendingRestore> due;
  bool relist = false;
  {
    std::lock_guard lock(restore_mu_);
    if (relist_at_ && *relist_at_ <= now) {
      relist = true;
      relist_at_ = now + kLongestRetry;  // until this attempt says otherwise
    }
    for (auto& [id, p] : restores_) {
      if (p.next > now || p.in_progress) continue;
      p.in_progress = true;
      due.push_back(p);
    }
  }
  if (!relist && due.empty()) return;
  // On a deploy thread of their own (stop() waits for them), not holding up the maintenance.
  std::lock_guard lock(deploys_mu_);
  ++deploys_in_flight_;
  std::thread([this, relist, due = std::move(due)]() mutable {
    if (relist) restore_workloads();
    for (auto& p : due) {
      p.in_progress = false;
      restore(std::move(p));
    }
    std::lock_guard l(deploys_mu_);
    --deploys_in_flight_;
    deploys_cv_.notify_all();
  }).detach();
}

json Node::restores_json(const std::string& ns) {
  json out = json::array();
  std::lock_guard lock(restore_mu_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, p] : restores_) {
    if (p.entry.ns != ns) continue;
    out.push_back(
        {{"id", id},
         {"name", p.name},
         {"state", p.state},
         {"reason", p.reason},
         {"attempts", p.attempts},
         {"next_attempt_s",
          std::max<int64_t>(
              0, std::chrono::duration_cast<std::chrono::seconds>(p.next - now).count())}});
  }
  return out;
}

std::optional<Result<json>> Node::stop_pending_restore(const std::string& ns, const std::string& id,
                                                       const crypto::JwtClaims& claims) {
  std::lock_guard lock(restore_mu_);
  auto it = restores_.find(id);
  if (it == restores_.end() || it->second.entry.ns != ns) return std::nullopt;
  const PendingRestore& p = it->second;
  if (claims.iss != p.issuer)
    return fail(ErrorCode::kPermissionDenied,
                "only the issuer that deployed workload " + id + " may stop it");
  if (claims.sub != p.name)
    return fail(ErrorCode::kPermissionDenied,
                "the stop JWT names workload '" + claims.sub + "', not '" + p.name + "'");
  (void)store_->erase(id);
  json answer = {{"stopped", true}, {"id", id}, {"issuer", p.issuer}, {"name", p.name}};
  log_line("Workload " + p.name + " (" + id + ") will not be restored: stopped by its deployer");
  restores_.erase(it);
  return Result<json>(answer);
}

}  // namespace nex::node
