#include "api/agent.h"

#include "api/json_fields.h"

namespace nex::api {

using nlohmann::json;

json to_json(const AgentDeployRequest& r) {
  json j = {{"argv", r.argv},
            {"description", r.description},
            {"environment", r.environment},
            {"essential", r.essential},
            {"hash", r.hash},
            {"namespace", r.ns},
            {"retried_at", r.retried_at},
            {"retry_count", r.retry_count},
            {"total_bytes", r.total_bytes},
            {"trigger_subjects", r.trigger_subjects},
            {"workload_name", r.workload_name},
            {"workload_type", to_string(r.workload_type)}};
  if (!r.host_services.empty()) j["host_services"] = to_json(r.host_services);
  if (!r.function_limits.empty()) j["function_limits"] = to_json(r.function_limits);
  if (!r.trigger_nats_urls.empty()) j["trigger_nats_urls"] = r.trigger_nats_urls;
  if (!r.trigger_nats_jwt.empty()) j["trigger_nats_jwt"] = r.trigger_nats_jwt;
  if (!r.trigger_nats_seed.empty()) j["trigger_nats_seed"] = r.trigger_nats_seed;
  if (r.trigger_channel) j["trigger_channel"] = true;
  if (r.reply_max_payload > 0) j["reply_max_payload"] = r.reply_max_payload;
  return j;
}

Result<nats::Message> function_reply(std::string_view reply_to, std::string_view body, bool failed,
                                     std::optional<int64_t> runtime_ns, int64_t max_payload,
                                     const std::string& error_code) {
  auto reply = nats::Message::create(reply_to, body);
  if (!reply) return reply;
  if (runtime_ns && runtime_header_fits(body.size(), max_payload))
    NEX_RETURN_IF_ERROR(reply->set_header(kHeaderRuntimeNs, std::to_string(*runtime_ns)));
  if (failed) {
    NEX_RETURN_IF_ERROR(reply->set_header(kHeaderServiceError, std::string(body)));
    NEX_RETURN_IF_ERROR(reply->set_header(kHeaderServiceErrorCode, error_code));
  }
  return reply;
}

Result<AgentDeployRequest> parse_agent_deploy_request(std::string_view text) {
  auto j = FieldReader::parse_object(text, "agent deploy request");
  if (!j) return fail(j.error());
  FieldReader f(*j, "agent deploy request");
  AgentDeployRequest r;
  std::string type = "native";
  f.string_list("argv", r.argv);
  f.string("description", r.description);
  f.string_map("environment", r.environment);
  f.boolean("essential", r.essential);
  f.string("hash", r.hash);
  f.string("namespace", r.ns);
  f.string("retried_at", r.retried_at);
  f.integer("retry_count", r.retry_count);
  f.integer("total_bytes", r.total_bytes);
  f.string_list("trigger_subjects", r.trigger_subjects);
  f.string("workload_name", r.workload_name, /*required=*/true);
  f.string("workload_type", type);
  read_host_services(f, r.host_services);
  read_function_limits(f, r.function_limits);
  f.string_list("trigger_nats_urls", r.trigger_nats_urls);
  f.string("trigger_nats_jwt", r.trigger_nats_jwt);
  f.string("trigger_nats_seed", r.trigger_nats_seed);
  f.boolean("trigger_channel", r.trigger_channel);
  f.integer("reply_max_payload", r.reply_max_payload);
  NEX_RETURN_IF_ERROR(f.status());
  if (r.trigger_channel && !r.trigger_nats_urls.empty())
    return fail(ErrorCode::kInvalidArgument,
                "agent deploy request: trigger_channel and trigger_nats_urls exclude each other");
  auto t = parse_workload_type(type);
  if (!t) return fail(t.error());
  r.workload_type = *t;
  return r;
}

std::string invocation_batch_json(const std::vector<InvocationReport>& batch) {
  // Written by hand: this runs for every invocation of a busy function.
  std::string out = "[";
  for (const auto& r : batch) {
    if (out.size() > 1) out += ',';
    out += "{\"trigger_subject\":" + dump(r.trigger_subject) +
           ",\"elapsed_nanos\":" + std::to_string(r.elapsed_nanos);
    if (r.error) out += ",\"error\":" + dump(*r.error);
    out += '}';
  }
  out += ']';
  return out;
}

Result<std::vector<InvocationReport>> parse_invocation_batch(std::string_view text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array())
    return fail(ErrorCode::kInvalidArgument, "an invocation batch must be an array");
  std::vector<InvocationReport> batch;
  batch.reserve(j.size());
  for (const auto& item : j) {
    if (!item.is_object())
      return fail(ErrorCode::kInvalidArgument, "each invocation report must be an object");
    FieldReader f(item, "invocation report");
    InvocationReport& r = batch.emplace_back();
    f.string("trigger_subject", r.trigger_subject, /*required=*/true);
    f.integer("elapsed_nanos", r.elapsed_nanos);
    if (f.raw("error")) f.string("error", r.error.emplace());
    NEX_RETURN_IF_ERROR(f.status());
  }
  return batch;
}

}  // namespace nex::api
