#include "node/host_services/settings.h"

#include <algorithm>

namespace nex::node::host_services {

using api::FieldReader;
using nlohmann::json;

namespace {

// Reads {"enabled": bool, "config": {...}} for one service; `body` reads the config object.
Status read_service(const json& services, const char* name, bool& enabled,
                    const std::function<void(FieldReader&)>& body) {
  const std::string what = std::string("node config: host_services.services.") + name;
  auto it = services.find(name);
  if (it == services.end()) return {};
  if (!it->is_object()) return fail(ErrorCode::kInvalidArgument, what + " must be an object");
  FieldReader r(*it, what);
  r.no_unknown_fields({"enabled", "config"});
  r.boolean("enabled", enabled);
  NEX_RETURN_IF_ERROR(r.status());
  if (const json* c = r.raw("config")) {
    if (!c->is_object())
      return fail(ErrorCode::kInvalidArgument, what + ": field 'config' must be an object");
    FieldReader cr(*c, what + ".config");
    body(cr);
    return cr.status();
  }
  return {};
}

void positive(FieldReader& r, const char* field, int64_t& v) {
  r.integer(field, v);
  if (v < 1) r.fail_field(field, "must be at least 1");
}

Status read_bucket(const json& services, const char* name, BucketSettings& b) {
  return read_service(services, name, b.enabled, [&](FieldReader& r) {
    r.no_unknown_fields({"max_bytes", "max_message_bytes", "retention_days"});
    // A smaller max_bytes alone brings the message cap down with it: one value may fill it.
    if (r.raw("max_message_bytes") == nullptr) {
      r.integer("max_bytes", b.caps.max_bytes);
      b.caps.max_message_bytes = std::min(b.caps.max_message_bytes, b.caps.max_bytes);
    }
    read_storage_caps(r, b.caps, /*smallest_message=*/1024);
  });
}

}  // namespace

Status read_settings(const json& services, Settings& out) {
  if (!services.is_object())
    return fail(ErrorCode::kInvalidArgument,
                "node config: field 'host_services.services' must be an object");
  for (const auto& [name, _] : services.items()) {
    if (name != "kv" && name != "objectstore" && name != "messaging" && name != "http")
      return fail(ErrorCode::kInvalidArgument,
                  "node config: host_services.services has no service '" + name +
                      "' (known: kv, objectstore, messaging, http)");
  }
  NEX_RETURN_IF_ERROR(read_bucket(services, "kv", out.kv));
  NEX_RETURN_IF_ERROR(read_bucket(services, "objectstore", out.object_store));
  auto& m = out.messaging;
  NEX_RETURN_IF_ERROR(read_service(services, "messaging", m.enabled, [&](FieldReader& r) {
    r.no_unknown_fields(
        {"request_timeout_ms", "request_many_timeout_ms", "allow_subjects", "deny_subjects"});
    positive(r, "request_timeout_ms", m.request_timeout_ms);
    positive(r, "request_many_timeout_ms", m.request_many_timeout_ms);
    r.string_list("allow_subjects", m.allow_subjects);
    r.string_list("deny_subjects", m.deny_subjects);
  }));
  auto& h = out.http;
  return read_service(services, "http", h.enabled, [&](FieldReader& r) {
    r.no_unknown_fields(
        {"timeout_ms", "max_redirects", "max_response_bytes", "allow_hosts", "allow_networks"});
    positive(r, "timeout_ms", h.timeout_ms);
    r.integer("max_redirects", h.max_redirects);
    if (h.max_redirects < 0) r.fail_field("max_redirects", "must not be negative");
    positive(r, "max_response_bytes", h.max_response_bytes);
    r.string_list("allow_hosts", h.allow_hosts);
    std::vector<std::string> networks;
    r.string_list("allow_networks", networks);
    if (auto list = NetworkAllowList::parse(networks); list) {
      h.allow_networks = std::move(*list);
    } else {
      r.fail_field("allow_networks", list.error().message);
    }
  });
}

}  // namespace nex::node::host_services
