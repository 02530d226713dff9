// The messaging service: publish, request and requestMany on the workload's host-services NATS,
// to subjects the node's policy allows (api::SubjectPolicy: nothing reserved unless granted).
#include <algorithm>
#include <chrono>

#include "api/json_fields.h"
#include "api/subject.h"
#include "api/subject_policy.h"
#include "core/encoding.h"
#include "node/host_services/service.h"

namespace nex::node::host_services {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

class MessagingService : public Service {
 public:
  explicit MessagingService(const MessagingSettings& s) : s_(s) {}

  Reply handle(const Call& call) override {
    const std::string subject = call.header(kHeaderSubject);
    if (subject.empty()) return missing_header(kHeaderSubject);
    if (auto why = api::subject_problem(subject, /*wildcards=*/false); !why.empty())
      return error(kBadRequest, "'" + subject + "' is not a subject one can publish to: " + why);
    if (auto why = refusal(subject); !why.empty()) return denied(why);
    const auto data = call.msg.data();
    if (call.method == "publish") {
      auto st = call.nc.publish(subject, data);
      return st ? ok(api::dump({{"success", true}})) : reply_for(st.error());
    }
    if (call.method == "request") {
      auto answer =
          call.nc.request(subject, data, std::chrono::milliseconds(s_.request_timeout_ms));
      if (answer) return ok(std::string(answer->data()));
      if (answer.error().code == ErrorCode::kNoResponders)
        return error(kUnavailable, "no responders on '" + subject + "'");
      if (answer.error().code == ErrorCode::kTimeout)
        return error(kTimedOut, "no answer on '" + subject + "' within " +
                                    std::to_string(s_.request_timeout_ms) + " ms");
      return reply_for(answer.error());
    }
    if (call.method == "requestMany") return request_many(call, subject);
    return error(kBadRequest, "messaging has no method '" + call.method + "'");
  }

 private:
  // The reason `subject` is refused, or empty.
  std::string refusal(const std::string& subject) const {
    if (auto why = s_.policy.refusal(subject); !why.empty()) return "subject " + why;
    for (const auto& d : s_.deny_subjects)
      if (api::subjects_overlap(subject, d))
        return "subject '" + subject + "' is denied (matches '" + d + "')";
    for (const auto& a : s_.allow_subjects)
      if (api::subjects_overlap(subject, a)) return {};
    return "subject '" + subject + "' is not in the node's allowed subjects";
  }

  // Publishes once and gathers every answer until none came for the request timeout, or the
  // request-many time is up. The answer is a JSON array of the payloads, base64-encoded.
  Reply request_many(const Call& call, const std::string& subject) {
    const std::string inbox = call.nc.new_inbox();
    auto sub = call.nc.subscribe_sync(inbox);
    if (!sub) return reply_for(sub.error());
    if (auto st = call.nc.publish(subject, call.msg.data(), inbox); !st)
      return reply_for(st.error());
    json answers = json::array();
    const auto end = Clock::now() + std::chrono::milliseconds(s_.request_many_timeout_ms);
    const auto quiet = std::chrono::milliseconds(s_.request_timeout_ms);
    while (Clock::now() < end) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      auto msg = sub->next(std::min(quiet, left));
      if (!msg) break;  // quiet for the request timeout: everyone answered
      // A no-responders status arrives as an empty message with a 503 status header.
      if (msg->data().empty() && msg->header("Status").value_or("") == "503") break;
      answers.push_back(base64_encode(as_bytes(msg->data()), Base64::kStandard));
    }
    return ok(api::dump(answers));
  }

  MessagingSettings s_;
};

}  // namespace

nlohmann::json messaging_permissions(const MessagingSettings& s, const std::string& inbox) {
  json allow = s.allow_subjects;
  for (const auto& g : s.policy.grants()) allow.push_back(g);
  json deny = s.deny_subjects;
  for (const auto& d : s.policy.permission_denials()) deny.push_back(d);
  return {{"pub", {{"allow", allow}, {"deny", deny}}}, {"sub", {{"allow", {inbox + ".>"}}}}};
}

std::unique_ptr<Service> make_messaging_service(const MessagingSettings& settings) {
  return std::make_unique<MessagingService>(settings);
}

}  // namespace nex::node::host_services
