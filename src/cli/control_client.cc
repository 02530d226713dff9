#include "cli/control_client.h"

#include <algorithm>
#include <optional>
#include <thread>

#include "api/json_fields.h"
#include "core/nuid.h"

namespace nex::cli {

using nlohmann::json;

Result<json> unwrap_envelope(std::string_view body) {
  auto j = api::FieldReader::parse_object(body, "node reply");
  if (!j) return fail(j.error());
  auto err = j->find("error");
  if (err != j->end() && err->is_string() && !err->get<std::string>().empty()) {
    return fail(ErrorCode::kInvalidArgument, err->get<std::string>());
  }
  auto data = j->find("data");
  if (data == j->end() || !data->is_object())
    return fail(ErrorCode::kCorrupt, "node reply has no data");
  return *data;
}

Result<std::vector<json>> ControlClient::gather(const std::string& subject, const std::string& body,
                                                size_t max_answers) {
  const std::string inbox = "_INBOX." + next_nuid();
  auto sub = conn_.subscribe_sync(inbox);
  if (!sub) return fail(sub.error());
  NEX_RETURN_IF_ERROR(conn_.publish(subject, body, inbox));
  std::vector<json> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (out.size() < max_answers) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto msg = sub->next(left);
    if (!msg) break;
    if (auto data = unwrap_envelope(msg->data()); data) out.push_back(std::move(*data));
  }
  return out;
}

Result<json> ControlClient::request(const std::string& subject, const std::string& body) {
  return request(subject, body, timeout_);
}

Result<json> ControlClient::request(const std::string& subject, const std::string& body,
                                    std::chrono::milliseconds wait) {
  auto reply = conn_.request(subject, body, wait);
  if (!reply) return fail(reply.error());
  return unwrap_envelope(reply->data());
}

Result<json> ControlClient::request_resending(const std::string& subject, const std::string& body,
                                              std::chrono::milliseconds wait) {
  // How often a wait looks whether the connection came back from a reconnect.
  constexpr std::chrono::milliseconds kReconnectCheck{200};
  // How long after a reconnect "no one listens" means the node is still reconnecting too.
  constexpr std::chrono::seconds kResubscribeGrace{15};
  const std::string inbox = "_INBOX." + next_nuid();
  auto sub = conn_.subscribe_sync(inbox);
  if (!sub) return fail(sub.error());
  uint64_t sent_after = reconnects_->load();
  NEX_RETURN_IF_ERROR(conn_.publish(subject, body, inbox));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::optional<std::chrono::steady_clock::time_point> grace_ends;  // set by a reconnect
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(ErrorCode::kTimeout, "no answer on " + subject);
    auto msg = sub->next(std::min(left, kReconnectCheck));
    if (msg && !msg->data().empty()) return unwrap_envelope(msg->data());
    // The server's "no responders" status: an error, or an empty message.
    const bool no_one = msg || msg.error().code == ErrorCode::kNoResponders;
    if (!no_one && msg.error().code != ErrorCode::kTimeout) return fail(msg.error());
    const auto now = std::chrono::steady_clock::now();
    bool ask_again = false;
    if (const uint64_t n = reconnects_->load(); n != sent_after) {
      sent_after = n;
      grace_ends = now + kResubscribeGrace;
      ask_again = true;
    }
    if (no_one) {
      // Right after a reconnect the node may not have subscribed again yet: ask again shortly,
      // until the grace ends.
      if (!grace_ends || now >= *grace_ends)
        return fail(ErrorCode::kNoResponders, "no one listens on " + subject);
      std::this_thread::sleep_for(kReconnectCheck);
      ask_again = true;
    }
    if (ask_again) NEX_RETURN_IF_ERROR(conn_.publish(subject, body, inbox));
  }
}

Result<ControlClient> connect_control(const ConnectionFlags& flags, Reconnect reconnect) {
  auto options = flags.options("nex cli");
  if (!options) return fail(options.error());
  auto reconnects = std::make_shared<std::atomic<uint64_t>>(0);
  options->reconnect = reconnect == Reconnect::kYes;
  options->on_reconnected = [reconnects] { ++*reconnects; };
  auto conn = nats::Connection::connect(*options);
  if (!conn) return fail(conn.error());
  return ControlClient(std::move(*conn), flags.timeout(), std::move(reconnects));
}

}  // namespace nex::cli
