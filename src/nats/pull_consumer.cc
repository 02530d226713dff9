#include "nats/pull_consumer.h"

#include <nlohmann/json.hpp>

#include "core/nuid.h"
#include "nats/nats_status.h"

namespace nex::nats {

using namespace std::chrono_literals;

Result<PullConsumer> PullConsumer::create(const JetStream& js, const PullConsumerConfig& config) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = config.durable.c_str();
  if (!config.description.empty()) cc.Description = config.description.c_str();
  cc.FilterSubject = config.filter_subject.c_str();
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(config.ack_wait).count();
  cc.MaxAckPending = config.max_ack_pending;
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = js.timeout().count();
  natsStatus s = js_AddConsumer(&ci, js.raw(), config.stream.c_str(), &cc, &o, &jerr);
  if (s != NATS_OK && jerr == JSConsumerNameExistErr) {
    jerr = static_cast<jsErrCode>(0);
    s = js_UpdateConsumer(&ci, js.raw(), config.stream.c_str(), &cc, &o, &jerr);
  }
  if (s != NATS_OK) {
    return fail(to_error(s, "consumer " + config.durable + " on stream " + config.stream, jerr));
  }
  jsConsumerInfo_Destroy(ci);

  const std::string inbox = "_INBOX." + next_nuid();
  auto sub = js.connection().subscribe_sync(inbox + ".*");
  if (!sub) return fail(sub.error());
  return PullConsumer(
      js.connection(),
      js.api_prefix() + ".CONSUMER.MSG.NEXT." + config.stream + "." + config.durable, inbox,
      std::move(*sub));
}

Result<std::optional<Message>> PullConsumer::next(std::chrono::milliseconds wait) {
  wait = std::max(wait, std::chrono::milliseconds(100));
  const std::string reply = inbox_ + "." + std::to_string(++pulls_);
  // The server expires the pull a little before we stop waiting, so its 408 always comes first
  // and no message is ever sent to a pull nobody waits for.
  const auto expires = std::chrono::duration_cast<std::chrono::nanoseconds>(wait - wait / 5);
  const std::string body = nlohmann::json{{"batch", 1}, {"expires", expires.count()}}.dump();
  NEX_RETURN_IF_ERROR(connection_.publish(next_subject_, body, reply));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return std::nullopt;
    auto m = sub_->next(left);
    if (!m) {
      if (m.error().code == ErrorCode::kTimeout) return std::nullopt;
      return fail(m.error());
    }
    // Status messages (404 no messages, 408 expired, 409 ...) end their own pull only; one
    // for an earlier pull is stale. A real message is taken whichever pull it answers.
    if (auto status = m->header("Status"); status && m->data().empty()) {
      if (m->subject() == reply) return std::nullopt;
      continue;
    }
    return std::optional<Message>(std::move(*m));
  }
}

void PullConsumer::interrupt() { sub_->unsubscribe(); }

Status PullConsumer::ack(std::string_view ack_subject) const {
  // A request, so the server says it recorded the ack before we report the work settled.
  auto r = connection_.request(ack_subject, "+ACK", 5s);
  if (!r) return std::unexpected(r.error().wrap("acknowledge"));
  return {};
}

Status PullConsumer::nak(std::string_view ack_subject) const {
  return connection_.publish(ack_subject, "-NAK");
}

Status PullConsumer::in_progress(std::string_view ack_subject) const {
  return connection_.publish(ack_subject, "+WPI");
}

}  // namespace nex::nats
