#include "triggers/relay.h"

#include "api/agent.h"
#include "api/subject.h"
#include "core/nuid.h"

namespace nex::triggers {

Result<std::vector<nats::Subscription>> TriggerRelay::subscribe(
    const std::string& workload_id, const std::vector<std::string>& subjects,
    std::chrono::milliseconds answer_window, const std::shared_ptr<ChannelNodeEnd>& channel) {
  std::vector<nats::Subscription> subs;
  for (const auto& subject : subjects) {
    nats::MessageHandler handler =
        channel ? nats::MessageHandler([channel](nats::Message m) { channel->forward(m); })
                : [this, workload_id, answer_window](nats::Message m) {
                    forward(workload_id, answer_window, m);
                  };
    auto sub = control_.subscribe(subject, std::move(handler), subject);
    if (!sub) return fail(sub.error().wrap(subject));
    subs.push_back(std::move(*sub));
  }
  return subs;
}

void TriggerRelay::forward(const std::string& workload_id, std::chrono::milliseconds answer_window,
                           const nats::Message& msg) {
  const std::string token = next_nuid();
  if (!msg.reply().empty()) {
    std::lock_guard lock(mu_);
    pending_[token] = {workload_id, std::string(msg.reply()),
                       std::chrono::steady_clock::now() + answer_window};
  }
  auto out = nats::Message::create(api::agent_subject::trigger(workload_id), msg.data(),
                                   api::agent_subject::trigger_reply(workload_id, token));
  if (!out) return;
  (void)out->set_header(api::kHeaderTriggerSubject, std::string(msg.subject()));
  (void)internal_.publish(*out);
}

void TriggerRelay::on_reply(const nats::Message& msg) {
  // hostint.{id}.trigger_reply.{token}
  const auto tokens = api::subject_tokens(msg.subject());
  if (tokens.size() != 4) return;
  const std::string id(tokens[1]), token(tokens[3]);
  Pending pending;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(token);
    if (it == pending_.end() || it->second.workload_id != id) return;
    pending = std::move(it->second);
    pending_.erase(it);
  }
  // The agent checked the size against this NATS's limit; here for a server that changed under
  // a reconnect, and so that the caller hears why rather than nothing.
  if (auto why = api::reply_too_large(msg.data().size(), control_.max_payload()); !why.empty()) {
    auto error = api::function_reply(pending.reply, why, /*failed=*/true, std::nullopt,
                                     control_.max_payload());
    if (error) (void)control_.publish(*error);
    return;
  }
  auto answer = nats::Message::create(pending.reply, msg.data());
  if (!answer) return;
  // The agent's headers as they are, but the run time only if it fits this NATS's limit.
  for (const char* h : {api::kHeaderServiceError, api::kHeaderServiceErrorCode})
    if (auto v = msg.header(h)) (void)answer->set_header(h, *v);
  if (auto ns = msg.header(api::kHeaderRuntimeNs);
      ns && api::runtime_header_fits(msg.data().size(), control_.max_payload()))
    (void)answer->set_header(api::kHeaderRuntimeNs, *ns);
  (void)control_.publish(*answer);
}

void TriggerRelay::expire(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  std::erase_if(pending_, [now](const auto& entry) { return entry.second.expires < now; });
}

}  // namespace nex::triggers
