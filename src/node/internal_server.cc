#include "node/internal_server.h"

#include <signal.h>

#include <fstream>

#include <sodium.h>

#include "core/encoding.h"
#include "core/file_io.h"
#include "core/nuid.h"

namespace nex::node {
namespace fs = std::filesystem;

Result<std::unique_ptr<InternalServer>> InternalServer::start(const fs::path& work_dir,
                                                              const std::string& listen_host) {
  std::unique_ptr<InternalServer> s(new InternalServer());
  s->work_dir_ = work_dir;
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot create " + work_dir.string() + ": " + ec.message());
  NEX_RETURN_IF_ERROR(s->write_config_and_reload(/*reload=*/false));
  auto server = nats::LocalNatsServer::start({.host = listen_host,
                                              .jetstream = false,
                                              .work_dir = work_dir / "server",
                                              .config_file = work_dir / "internal-nats.conf"});
  if (!server) return fail(server.error().wrap("internal NATS server"));
  s->server_ = std::make_unique<nats::LocalNatsServer>(std::move(*server));
  auto conn = nats::Connection::connect({.urls = {"nats://127.0.0.1:" + std::to_string(s->port())},
                                         .name = "nex-node internal",
                                         .nkey_seed = s->node_user_.seed(),
                                         .send_asap = true});
  if (!conn) return fail(conn.error().wrap("internal NATS server"));
  s->conn_ = std::move(*conn);
  return s;
}

InternalServer::~InternalServer() {
  conn_.reset();
  server_.reset();
  std::error_code ec;
  fs::remove(work_dir_ / "internal-nats.conf", ec);
}

Status InternalServer::write_config_and_reload(bool reload) {
  std::string conf =
      "# Written by the nex node; rewritten as workloads come and go.\n"
      "# Function triggers carry the user's largest payload plus headers.\n"
      "max_payload: 8MB\n"
      "authorization {\n  users: [\n";
  conf += "    { nkey: " + node_user_.public_key() + " }\n";
  for (const auto& [id, user] : workload_users_) {
    conf += "    { nkey: " + user + ", permissions: { publish: { allow: [\"hostint." + id +
            ".>\"] }, subscribe: { allow: [\"agentint." + id + ".>\", \"" + inbox_prefix(id) +
            ".>\"] } } }\n";
    // Quoted: an unquoted value that looks like a number is read as one.
    conf += "    { user: \"svc_" + id + "\", password: \"" + service_passwords_.at(id) + "\"" +
            ", permissions: { publish: { allow: [\"hostint." + id +
            ".rpc.>\"] }, subscribe: { allow: [\"" + service_inbox_prefix(id) + ".>\"] } } }\n";
  }
  conf += "  ]\n}\n";
  // Write-then-rename so the server never reads a half-written file.
  const fs::path path = work_dir_ / "internal-nats.conf";
  const fs::path tmp = work_dir_ / "internal-nats.conf.tmp";
  NEX_RETURN_IF_ERROR(write_file(tmp, conf, {.mode = 0600}));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot write " + path.string() + ": " + ec.message());
  if (reload && ::kill(server_->pid(), SIGHUP) != 0) {
    return fail(ErrorCode::kUnavailable, "cannot reload the internal NATS server");
  }
  return {};
}

Result<std::map<std::string, std::string>> InternalServer::add_workloads(
    const std::vector<std::string>& ids) {
  std::map<std::string, std::string> seeds;
  std::lock_guard lock(mu_);
  for (const auto& id : ids) {
    auto user = crypto::KeyPair::create(crypto::KeyType::kUser);
    if (!user) return fail(user.error());
    workload_users_[id] = user->public_key();
    unsigned char secret[18];
    randombytes_buf(secret, sizeof secret);
    service_passwords_[id] = hex_encode(secret);
    seeds[id] = user->seed();
  }
  NEX_RETURN_IF_ERROR(write_config_and_reload(/*reload=*/true));
  return seeds;
}

Result<nats::Message> InternalServer::request_agent(const std::string& id,
                                                    const std::string& subject,
                                                    std::string_view body,
                                                    std::chrono::milliseconds timeout) const {
  const std::string reply = "hostint." + id + ".reply." + next_nuid();
  // The SUB goes out before the PUB on the same connection, so the answer cannot be missed.
  auto sub = conn_->subscribe_sync(reply);
  if (!sub) return fail(sub.error());
  NEX_RETURN_IF_ERROR(conn_->publish(subject, body, reply));
  auto answer = sub->next(timeout);
  if (!answer)
    return fail(answer.error().code, "request on '" + subject + "': " + answer.error().message);
  return answer;
}

std::string InternalServer::service_url(const std::string& id, const std::string& host) {
  std::lock_guard lock(mu_);
  auto it = service_passwords_.find(id);
  if (it == service_passwords_.end()) return {};
  return "nats://svc_" + id + ":" + it->second + "@" + host + ":" + std::to_string(port());
}

Status InternalServer::remove_workload(const std::string& id) {
  std::lock_guard lock(mu_);
  service_passwords_.erase(id);
  if (workload_users_.erase(id) == 0) return {};
  return write_config_and_reload(/*reload=*/true);
}

}  // namespace nex::node
