#include "node/agent_pool.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdio>

#include "api/agent.h"
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

void AgentPool::on_handshake(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = starting_.find(id);
  if (it == starting_.end()) {
    early_handshakes_.insert(id);
    return;
  }
  ready_.push_back(std::move(it->second.agent));
  starting_.erase(it);
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

Result<WarmAgent> AgentPool::take(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    if (!cv_.wait_until(lock, deadline, [this] { return !ready_.empty() || stopping_; }) ||
        ready_.empty()) {
      return fail(ErrorCode::kUnavailable, "no warm agent became available in time");
    }
    WarmAgent agent = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();  // the refiller starts a replacement
    auto status = agent.sandbox->wait(std::chrono::milliseconds(0));
    if (!status) return agent;
    // An agent that died while idle is reported and replaced, never handed out.
    std::fprintf(stderr, "nex node: agent %s exited while idle in the pool (%s %d); replacing it\n",
                 agent.id.c_str(), WIFSIGNALED(*status) ? "signal" : "exit code",
                 WIFSIGNALED(*status) ? WTERMSIG(*status) : WEXITSTATUS(*status));
    lock.unlock();
    agent.sandbox->stop(std::chrono::seconds(1));
    (void)internal_.remove_workload(agent.id);
    lock.lock();
  }
}

void AgentPool::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Discard agents that missed their handshake.
    const auto now = std::chrono::steady_clock::now();
    for (auto it = starting_.begin(); it != starting_.end();) {
      if (it->second.deadline < now) {
        std::fprintf(stderr,
                     "nex node: agent %s did not complete its handshake in time (see %s); "
                     "replacing it\n",
                     it->first.c_str(), (options_.work_dir / (it->first + ".agent.log")).c_str());
        it->second.agent.sandbox->stop(std::chrono::seconds(1));
        (void)internal_.remove_workload(it->first);
        it = starting_.erase(it);
      } else {
        ++it;
      }
    }
    const size_t have = ready_.size() + starting_.size();
    if (have < options_.size) {
      std::vector<std::string> ids;
      for (size_t i = have; i < options_.size; ++i) ids.push_back(next_xid());
      lock.unlock();
      auto seeds = internal_.add_workloads(ids);
      std::vector<Pending> started;
      if (seeds) {
        for (const auto& id : ids) {
          const auto dir = options_.work_dir / id;
          // The trigger channel: the agent's end goes with it, the node keeps the other.
          int ends[2] = {-1, -1};
          if (driver_.passes_descriptors() &&
              ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
            ends[0] = ends[1] = -1;
          UniqueFd node_end(ends[0]), agent_end(ends[1]);
          auto sandbox =
              driver_.start({.workload_id = id,
                             .agent_binary = options_.agent_binary,
                             .work_dir = dir,
                             .artifact_name = "workload",
                             .env = {std::string(api::kEnvWorkloadId) + "=" + id,
                                     std::string(api::kEnvNatsSeed) + "=" + seeds->at(id)},
                             .log_file = options_.work_dir / (id + ".agent.log"),
                             .internal_nats_port = internal_.port(),
                             .trigger_channel_fd = agent_end.get()});
          if (!sandbox) {
            std::fprintf(stderr, "nex node: cannot start an agent's sandbox: %s\n",
                         sandbox.error().message.c_str());
            (void)internal_.remove_workload(id);
            continue;
          }
          const auto artifact = (*sandbox)->artifact_path();
          started.push_back({WarmAgent{id, artifact, std::move(*sandbox), std::move(node_end)},
                             std::chrono::steady_clock::now() + options_.handshake_timeout});
        }
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
      cv_.notify_all();
      if (!seeds || started.size() < ids.size()) {
        cv_.wait_for(lock, std::chrono::seconds(1),
                     [this] { return stopping_; });  // don't spin on failure
      }
      continue;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(250));
  }
}

size_t AgentPool::ready() {
  std::lock_guard lock(mu_);
  return ready_.size();
}

}  // namespace nex::node
