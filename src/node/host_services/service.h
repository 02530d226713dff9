// Host services, node side: what one service sees of a call and what it answers. The wire is
// docs/wire.md "Host services": parameters in headers, the value in the body; the answer
// carries x-nex-hs-code and x-nex-hs-msg.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/host_services.h"
#include "nats/connection.h"
#include "nats/msg.h"
#include "node/host_services/settings.h"

namespace nex::node::host_services {

// The wire's answer codes and header names, as the services write them.
using api::host_services::kBadRequest;
using api::host_services::kFailed;
using api::host_services::kForbidden;
using api::host_services::kHeaderCode;
using api::host_services::kHeaderHttpHeaders;
using api::host_services::kHeaderKey;
using api::host_services::kHeaderMessage;
using api::host_services::kHeaderObjectName;
using api::host_services::kHeaderSubject;
using api::host_services::kHeaderUrl;
using api::host_services::kHttp;
using api::host_services::kKeyValue;
using api::host_services::kMessaging;
using api::host_services::kNotFound;
using api::host_services::kObjectStore;
using api::host_services::kOk;
using api::host_services::kTimedOut;
using api::host_services::kUnavailable;

struct Reply {
  int code = kOk;
  std::string message;  // why it failed; empty on success
  std::string body;
  // A refusal by policy: the node logs it as the workload's attempt.
  bool denied = false;
};
inline Reply ok(std::string body = {}) { return {kOk, {}, std::move(body)}; }
inline Reply error(int code, std::string message) { return {code, std::move(message), {}}; }
// A request without the parameter header the method needs.
inline Reply missing_header(const char* header) {
  return error(kBadRequest, std::string("header ") + header + " is required");
}
inline Reply denied(std::string message) { return {kForbidden, std::move(message), {}, true}; }

// The answer for a failed operation: its message, with the code its kind of error maps to.
Reply reply_for(const Error& e);

struct Call {
  std::string ns;
  std::string workload;  // the workload's name
  std::string method;
  const nats::Message& msg;
  const nats::Connection& nc;  // the workload's host-services NATS connection
  std::string header(const char* name) const { return msg.header(name).value_or(""); }
};

// One host service; called from several threads at once.
class Service {
 public:
  virtual ~Service() = default;
  virtual Reply handle(const Call& call) = 0;
};

// The workload's own bucket for `kind` ("kv" or "obj"): hs_{ns}_{workload}_{kind} when neither
// part holds '_' (the name buckets have always had), else hs_{ns}_{workload}_{hash}_{kind} with
// 16 hex digits of SHA-256(ns NUL workload). Joined with '_' alone, "a_b"+"c" and "a"+"b_c" would
// share a bucket; the suffixed form has at least five '_' and the plain one three, so no two
// (namespace, workload) pairs get the same name.
std::string bucket_name(std::string_view ns, std::string_view workload, std::string_view kind);

// What the NATS user the node signs for one workload's messaging may do (operator mode), as the
// "pub"/"sub" claims of its JWT: the allowed subjects and grants, never a reserved subject no
// grant opens; replies reach it under `inbox` only. The server then enforces what the node's
// policy checks first. (Buckets need no such user: the node names them, never the workload.)
nlohmann::json messaging_permissions(const MessagingSettings& settings, const std::string& inbox);

std::unique_ptr<Service> make_kv_service(const BucketSettings& settings);
std::unique_ptr<Service> make_object_store_service(const BucketSettings& settings);
std::unique_ptr<Service> make_messaging_service(const MessagingSettings& settings);
// `node_ports`: the node's own (internal NATS, metrics), which HTTP requests never reach on this
// host.
std::unique_ptr<Service> make_http_service(const HttpSettings& settings,
                                           std::vector<NodePort> node_ports);

}  // namespace nex::node::host_services
