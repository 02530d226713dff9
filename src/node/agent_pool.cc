#include "node/agent_pool.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdio>
#include <deque>
#include <fstream>

#include "api/agent.h"
#include "core/wait_status.h"
#include "core/xid.h"
#include "node/node_internals.h"

namespace nex::node {

Result<std::unique_ptr<AgentPool>> AgentPool::start(InternalServer& internal,
                                                    sandbox::Driver& driver,
                                                    AgentPoolOptions options) {
  // The agents' logs go here, whether or not their sandboxes keep files beside them.
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec)
    return fail(ErrorCode::kIo, "cannot create " + options.work_dir.string() + ": " + ec.message());
  std::unique_ptr<AgentPool> pool(new AgentPool(internal, driver, std::move(options)));
  AgentPool* p = pool.get();
  auto sub = internal.connection().subscribe("hostint.*.handshake", [p](nats::Message m) {
    // hostint.{id}.handshake
    const std::string subject(m.subject());
    const size_t a = subject.find('.'), b = subject.find('.', a + 1);
    if (!m.reply().empty()) (void)p->internal_.connection().publish(m.reply(), "{}");
    p->on_handshake(subject.substr(a + 1, b - a - 1));
  });
  if (!sub) return fail(sub.error());
  pool->handshakes_ = std::move(*sub);
  pool->refiller_ = std::thread([p] { p->refill_loop(); });
  return pool;
}

AgentPool::~AgentPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (refiller_.joinable()) refiller_.join();
  // A handshake being handled on the delivery thread uses the pool: it must be over before the
  // agents below are stopped, and before the pool is gone.
  handshakes_.unsubscribe_and_wait();
  for (auto& a : ready_) {
    a.sandbox->stop(std::chrono::seconds(2));
    (void)internal_.remove_workload(a.id);
  }
  for (auto& [id, p] : starting_) p.agent.sandbox->stop(std::chrono::seconds(2));
}

namespace {

// The last `n` lines of an agent's log (a VMM's own error is its last words there).
std::vector<std::string> last_lines(const std::filesystem::path& file, size_t n) {
  std::ifstream in(file);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (line.size() > 300) line = line.substr(0, 300) + "...";
    lines.push_back(std::move(line));
    if (lines.size() > n) lines.pop_front();
  }
  return {lines.begin(), lines.end()};
}

}  // namespace

void AgentPool::on_handshake(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = starting_.find(id);
  if (it == starting_.end()) {
    early_handshakes_.insert(id);
    return;
  }
  ready_.push_back(std::move(it->second.agent));
  starting_.erase(it);
  if (failures_ > 0)
    log_line("Warm pool: an agent started again after " + std::to_string(failures_) +
             " that failed");
  failures_ = 0;
  failure_.clear();
  announce_when_full();
  cv_.notify_all();
}

void AgentPool::announce_when_full() {
  if (announced_ || ready_.size() < options_.size) return;
  announced_ = true;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started_)
                      .count();
  log_line("Warm pool ready: " + std::to_string(ready_.size()) +
           " agent(s) started and handshaken in " + std::to_string(ms) + " ms");
}

void AgentPool::note_failure(const std::string& reason) {
  ++failures_;
  failure_ = reason;
  const auto delay = std::min(std::chrono::seconds(int64_t{1} << std::min(failures_ - 1, 6)),
                              std::chrono::seconds(60));
  retry_at_ = std::chrono::steady_clock::now() + delay;
  log_line("Warm pool: trying again in " + std::to_string(delay.count()) + " s (" +
           std::to_string(failures_) +
           " agent start(s) failed in a row); deploys are refused until an agent starts");
  cv_.notify_all();  // deploys waiting for an agent hear the reason now
}

Result<WarmAgent> AgentPool::take(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_until(lock, deadline,
                   [this] { return !ready_.empty() || stopping_ || failures_ > 0; });
    if (ready_.empty()) {
      if (failures_ > 0)
        return fail(ErrorCode::kUnavailable, "no agent can start on this node: " + failure_);
      return fail(ErrorCode::kUnavailable, "no warm agent became available in time");
    }
    WarmAgent agent = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();  // the refiller starts a replacement
    auto status = agent.sandbox->wait(std::chrono::milliseconds(0));
    if (!status) return agent;
    // An agent that died while idle is reported and replaced, never handed out.
    log_line("Agent " + agent.id + " exited while idle in the pool (it " +
             describe_wait_status(*status) + "); replacing it");
    lock.unlock();
    agent.sandbox->stop(std::chrono::seconds(1));
    (void)internal_.remove_workload(agent.id);
    lock.lock();
  }
}

void AgentPool::reap(std::unique_lock<std::mutex>& lock) {
  std::vector<WarmAgent> gone;
  for (auto it = ready_.begin(); it != ready_.end();) {
    if (auto status = it->sandbox->wait(std::chrono::milliseconds(0))) {
      log_line("Agent " + it->id + " exited while idle in the pool (it " +
               describe_wait_status(*status) + "); replacing it");
      gone.push_back(std::move(*it));
      it = ready_.erase(it);
    } else {
      ++it;
    }
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto it = starting_.begin(); it != starting_.end();) {
    const auto log = options_.work_dir / (it->first + ".agent.log");
    std::string why;
    if (auto status = it->second.agent.sandbox->wait(std::chrono::milliseconds(0))) {
      why = "its sandbox " + describe_wait_status(*status) + " before the agent's handshake";
    } else if (it->second.deadline < now) {
      why = "it did not complete its handshake in time";
    }
    if (why.empty()) {
      ++it;
      continue;
    }
    const auto words = last_lines(log, 5);
    log_line("Agent " + it->first + " failed to start: " + why +
             (words.empty() ? "" : "; the last lines of " + log.string() + ":"));
    for (const auto& line : words) log_line("  | " + line);
    note_failure(why + (words.empty() ? "" : ": " + words.back()));
    gone.push_back(std::move(it->second.agent));
    it = starting_.erase(it);
  }
  if (gone.empty()) return;
  lock.unlock();
  for (auto& a : gone) {
    a.sandbox->stop(std::chrono::seconds(1));
    (void)internal_.remove_workload(a.id);
  }
  lock.lock();
}

void AgentPool::start_agents(std::unique_lock<std::mutex>& lock, size_t count) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < count; ++i) ids.push_back(next_xid());
  lock.unlock();
  auto seeds = internal_.add_workloads(ids);
  std::vector<Pending> started;
  std::string failed;
  if (!seeds) {
    failed = "cannot add agents to the internal NATS: " + seeds.error().message;
    ids.clear();
  }
  for (const auto& id : ids) {
    // The trigger channel: the agent's end goes with it, the node keeps the other.
    int ends[2] = {-1, -1};
    if (driver_.passes_descriptors() &&
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
      ends[0] = ends[1] = -1;
    UniqueFd node_end(ends[0]), agent_end(ends[1]);
    auto sandbox = driver_.start({.workload_id = id,
                                  .agent_binary = options_.agent_binary,
                                  .work_dir = options_.work_dir / id,
                                  .artifact_name = "workload",
                                  .env = {std::string(api::kEnvWorkloadId) + "=" + id,
                                          std::string(api::kEnvNatsSeed) + "=" + seeds->at(id)},
                                  .log_file = options_.work_dir / (id + ".agent.log"),
                                  .internal_nats_port = internal_.port(),
                                  .trigger_channel_fd = agent_end.get()});
    if (!sandbox) {
      failed = "cannot start an agent's sandbox: " + sandbox.error().message;
      log_line("Warm pool: " + failed);
      (void)internal_.remove_workload(id);
      continue;
    }
    const auto artifact = (*sandbox)->artifact_path();
    started.push_back({WarmAgent{id, artifact, std::move(*sandbox), std::move(node_end)},
                       std::chrono::steady_clock::now() + options_.handshake_timeout});
  }
  lock.lock();
  for (auto& p : started) {
    if (early_handshakes_.erase(p.agent.id) > 0) {
      ready_.push_back(std::move(p.agent));
      announce_when_full();
    } else {
      const std::string id = p.agent.id;
      starting_.emplace(id, std::move(p));
    }
  }
  if (!failed.empty()) note_failure(failed);
  cv_.notify_all();
}

void AgentPool::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    reap(lock);
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    const size_t have = ready_.size() + starting_.size();
    if (have < options_.size && now >= retry_at_) {
      start_agents(lock, options_.size - have);
      continue;
    }
    // Idle agents are looked at four times a second; a start put off waits its turn.
    auto next = now + std::chrono::milliseconds(250);
    if (have < options_.size && retry_at_ > now) next = std::min(next, retry_at_);
    cv_.wait_until(lock, next);
  }
}

size_t AgentPool::ready() {
  std::lock_guard lock(mu_);
  return ready_.size();
}

}  // namespace nex::node
