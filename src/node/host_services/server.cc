#include "node/host_services/server.h"

#include <fcntl.h>
#include <unistd.h>

#include "api/subject.h"
#include "core/encoding.h"
#include "core/file_io.h"
#include "crypto/digest.h"

namespace nex::node::host_services {

Reply reply_for(const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return error(kBadRequest, e.message);
    case ErrorCode::kNotFound:
      return error(kNotFound, e.message);
    case ErrorCode::kPermissionDenied:
      return error(kForbidden, e.message);
    case ErrorCode::kTimeout:
      return error(kTimedOut, e.message);
    case ErrorCode::kNoResponders:
    case ErrorCode::kUnavailable:
      return error(kUnavailable, e.message);
    default:
      return error(kFailed, e.message);
  }
}

Server::Server(ServerOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<Server>> Server::start(ServerOptions options,
                                              const nats::Connection& internal) {
  std::unique_ptr<Server> s(new Server(std::move(options)));
  s->internal_ = internal;
  const Settings& set = s->options_.settings;
  if (set.kv.enabled) s->services_[kKeyValue] = make_kv_service(set.kv);
  if (set.object_store.enabled)
    s->services_[kObjectStore] = make_object_store_service(set.object_store);
  if (set.messaging.enabled) s->services_[kMessaging] = make_messaging_service(set.messaging);
  if (set.http.enabled) s->services_[kHttp] = make_http_service(set.http, s->options_.node_ports);
  for (size_t i = 0; i < kThreads; ++i) s->threads_.emplace_back([p = s.get()] { p->work(); });
  auto sub = internal.subscribe("hostint.*.rpc.>",
                                [p = s.get()](nats::Message m) { p->enqueue(std::move(m)); });
  if (!sub) return fail(sub.error().wrap("host services"));
  s->sub_ = std::move(*sub);
  return s;
}

Server::~Server() {
  if (sub_) sub_->unsubscribe_and_wait();  // no new calls, and none still being queued
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Server::enqueue(nats::Message msg) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() < kMaxQueued) {
      queue_.push_back(std::move(msg));
      cv_.notify_one();
      return;
    }
  }
  // Overloaded: say so at once rather than let the caller time out.
  auto answer = nats::Message::create(msg.reply(), "");
  if (!answer || msg.reply().empty()) return;
  (void)answer->set_header(kHeaderCode, std::to_string(kUnavailable));
  (void)answer->set_header(kHeaderMessage, "the node's host services are busy; try again");
  (void)internal_->publish(*answer);
}

void Server::work() {
  for (;;) {
    std::optional<nats::Message> msg;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      msg.emplace(std::move(queue_.front()));
      queue_.pop_front();
    }
    serve(*msg);
  }
}

void Server::serve(const nats::Message& msg) {
  // hostint.{id}.rpc.{ns}.{workload}.{service}.{method}
  const auto tokens = api::subject_tokens(msg.subject());
  const std::string id = tokens.size() > 1 ? std::string(tokens[1]) : "";
  Reply reply;
  auto caller = options_.find_caller(id);
  if (tokens.size() != 7) {
    reply = error(kBadRequest,
                  "host-service subjects are hostint.{id}.rpc.{namespace}.{workload}.{service}."
                  "{method}");
  } else if (!caller) {
    reply = error(kNotFound, "no workload " + id + " runs on this node");
  } else if (tokens[3] != caller->ns || tokens[4] != caller->name) {
    reply = denied("workload " + caller->name + " in namespace " + caller->ns +
                   " may not use the host services of " + std::string(tokens[4]) +
                   " in namespace " + std::string(tokens[3]));
  } else if (auto it = services_.find(std::string(tokens[5])); it == services_.end()) {
    reply = error(kNotFound, "no host service '" + std::string(tokens[5]) +
                                 "' on this node (it may be disabled)");
  } else if (auto nc = connection_for(id, *caller, std::string(tokens[5])); !nc) {
    reply = error(kUnavailable, "host services NATS: " + nc.error().message);
  } else {
    reply = it->second->handle({.ns = caller->ns,
                                .workload = caller->name,
                                .method = std::string(tokens[6]),
                                .msg = msg,
                                .nc = *nc});
  }
  if (options_.on_served) {
    // The workload names the service: only the node's own names are passed on, so a workload
    // cannot grow the metrics without bound.
    const bool known = tokens.size() == 7 && services_.count(std::string(tokens[5])) > 0;
    options_.on_served(known ? std::string(tokens[5]) : "unknown", reply.code);
  }
  if (reply.denied && caller && options_.on_denied)
    options_.on_denied(id, *caller, "host services refused: " + reply.message);
  if (msg.reply().empty()) return;
  auto answer = nats::Message::create(msg.reply(), reply.code == kOk ? reply.body : "");
  if (!answer) return;
  (void)answer->set_header(kHeaderCode, std::to_string(reply.code));
  (void)answer->set_header(kHeaderMessage, reply.code == kOk ? "OK" : reply.message);
  (void)internal_->publish(*answer);
}

Result<nats::Connection> Server::connection_for(const std::string& workload_id,
                                                const Caller& caller, const std::string& service) {
  if (service == "messaging" && caller.connection.empty() && options_.node_connection.empty() &&
      options_.sign_user)
    return messaging_connection(workload_id, caller);
  return connection_for(caller.connection);
}

Result<nats::Connection> Server::messaging_connection(const std::string& workload_id,
                                                      const Caller& caller) {
  std::lock_guard lock(conn_mu_);
  if (auto it = workload_connections_.find(workload_id); it != workload_connections_.end())
    return it->second;
  const std::string inbox = "_INBOX.nexhs." + workload_id;
  const std::string name = "nex host services messaging " + workload_id;
  const SignedUser user =
      options_.sign_user(name, messaging_permissions(options_.settings.messaging, inbox));
  nats::ConnectOptions o = options_.control_options;
  o.user.clear();
  o.password.clear();
  o.token.clear();
  o.creds_file.clear();
  o.nkey_seed = user.seed;
  o.user_jwt = user.jwt;
  o.inbox_prefix = inbox;
  o.name = name;
  o.on_disconnected = o.on_reconnected = o.on_closed = nullptr;
  o.on_async_error = nullptr;
  auto conn = nats::Connection::connect(o);
  if (!conn) return fail(conn.error().wrap("a user of " + caller.name + "'s own"));
  workload_connections_.emplace(workload_id, *conn);
  return conn;
}

void Server::forget(const std::string& workload_id) {
  std::optional<nats::Connection> closing;  // closed outside the lock
  std::lock_guard lock(conn_mu_);
  if (auto it = workload_connections_.find(workload_id); it != workload_connections_.end()) {
    closing = std::move(it->second);
    workload_connections_.erase(it);
  }
}

Result<nats::Connection> Server::connection_for(const api::HostServicesConfig& requested) {
  const api::HostServicesConfig& c = requested.empty() ? options_.node_connection : requested;
  const std::string key = c.nats_url + "\n" + c.nats_user_jwt + "\n" + c.nats_user_seed;
  std::lock_guard lock(conn_mu_);
  if (auto it = connections_.find(key); it != connections_.end()) return it->second;
  if (c.empty()) return *options_.control;
  nats::ConnectOptions o;
  if (!c.nats_url.empty()) o.urls = {c.nats_url};
  o.name = "nex-node host services";
  if (!c.nats_user_jwt.empty()) {
    // libnats reads a user JWT only from a credentials file; keep it private to the node.
    const auto digest = crypto::sha256(as_bytes(key));
    const auto path = options_.creds_dir / ("hs-" + hex_encode(digest).substr(0, 16) + ".creds");
    const std::string creds =
        "-----BEGIN NATS USER JWT-----\n" + c.nats_user_jwt +
        "\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n" + c.nats_user_seed +
        "\n------END USER NKEY SEED------\n";
    NEX_RETURN_IF_ERROR(write_file(path, creds, {.mode = 0600}));
    o.creds_file = path;
  } else if (!c.nats_user_seed.empty()) {
    o.nkey_seed = c.nats_user_seed;
  }
  auto conn = nats::Connection::connect(o);
  if (!conn) return fail(conn.error());
  connections_.emplace(key, *conn);
  return conn;
}

}  // namespace nex::node::host_services
