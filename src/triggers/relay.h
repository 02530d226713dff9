// TriggerRelay: how a function's triggers reach its agent when the agent cannot take them from the
// control NATS itself (see route.h). The relay subscribes to the trigger subjects on the
// control NATS (queue group = the subject, so copies share the load) and forwards each request to
// the agent: over the agent's trigger channel when it has one (ChannelNodeEnd, which answers the
// callers itself), else over the internal NATS (microVMs), where the agent's answer comes back on
// hostint.{id}.trigger_reply.{token} and goes to the caller. Only tokens the relay issued are
// answered, once, so an agent cannot make the node publish elsewhere.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "nats/connection.h"
#include "nats/subscription.h"
#include "triggers/channel_node_end.h"

namespace nex::triggers {

class TriggerRelay {
 public:
  // Both connections must outlive the relay.
  TriggerRelay(const nats::Connection& control, const nats::Connection& internal)
      : control_(control), internal_(internal) {}

  // Subscribes to `subjects` for the function `workload_id`, whose callers wait `answer_window`
  // for an answer; dropping the subscriptions stops the relay for it (drain them to let requests
  // already received through).
  Result<std::vector<nats::Subscription>> subscribe(const std::string& workload_id,
                                                    const std::vector<std::string>& subjects,
                                                    std::chrono::milliseconds answer_window,
                                                    const std::shared_ptr<ChannelNodeEnd>& channel);
  // An agent's answer, on hostint.{id}.trigger_reply.{token}.
  void on_reply(const nats::Message& msg);
  // Forgets callers whose answer window (beyond any function's time limit) has passed.
  void expire(std::chrono::steady_clock::time_point now);

 private:
  void forward(const std::string& workload_id, std::chrono::milliseconds answer_window,
               const nats::Message& msg);

  struct Pending {
    std::string workload_id;
    std::string reply;  // the caller's inbox
    std::chrono::steady_clock::time_point expires;
  };
  const nats::Connection& control_;
  const nats::Connection& internal_;
  std::mutex mu_;  // guards pending_
  std::unordered_map<std::string, Pending> pending_;
};

}  // namespace nex::triggers
