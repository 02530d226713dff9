// What the benchmarks share: a local nats-server with the workloads to deploy in its
// NEXCLIFILES bucket, and the memory of processes as /proc tells it.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/signed_request.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "cpu_time.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/local_server.h"
#include "nats/object_store.h"

namespace nex::bench {

// The source tree: fixtures, the npm packages, the Node.js peer.
inline const std::filesystem::path kSourceDir = NEX_SOURCE_DIR;

// Where the benchmark's own binary lies: build/bin, beside nex-agent and the test modules.
inline const std::filesystem::path kBinDir =
    std::filesystem::read_symlink("/proc/self/exe").parent_path();

// A duration in milliseconds.
inline double ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Signs and seals deploy requests as `nex run` does, with one issuer and one publisher key.
struct Requester {
  crypto::KeyPair issuer = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  crypto::XKey publisher = crypto::XKey::create();

  // A deploy of nats://NEXCLIFILES/`key` as workload `name`, its environment sealed to the
  // node's xkey; functions get their trigger subjects.
  nlohmann::json deploy_request(const std::string& node_xkey, const std::string& name,
                                const std::string& type, const std::string& key,
                                const nlohmann::json& env = nlohmann::json::object(),
                                const std::vector<std::string>& triggers = {}) const {
    auto sealed = publisher.seal(as_bytes(env.dump()), node_xkey);
    nlohmann::json req = {{"type", type},
                          {"location", "nats://NEXCLIFILES/" + key},
                          {"environment", base64_encode(*sealed, Base64::kStandard)},
                          {"sender_public_key", publisher.public_key()},
                          {"workload_name", name}};
    if (!triggers.empty()) req["trigger_subjects"] = triggers;
    return req;
  }
  // `request` for node `node_id`, signed as the CLI signs it (bound to it, valid 5 minutes).
  nlohmann::json sign(nlohmann::json request, const std::string& node_id) const {
    request["target_node"] = node_id;
    api::sign_request(request,
                      {.action = api::action::kDeploy,
                       .ns = "default",
                       .subject = request.value("workload_name", ""),
                       .expires_at = unix_seconds_now() + 300},
                      issuer);
    return request;
  }
  // A signed stop of workload `id` (named `name`) on node `node_id`.
  std::string stop_request(const std::string& node_id, const std::string& id,
                           const std::string& name) const {
    nlohmann::json body = {{"workload_id", id}, {"target_node", node_id}};
    api::sign_request(body,
                      {.action = api::action::kStop,
                       .ns = "default",
                       .subject = name,
                       .expires_at = unix_seconds_now() + 300},
                      issuer);
    return body.dump();
  }
};

// Sends `request` to node `node_id`'s $NEX.DEPLOY; the workload's id, or nullopt after saying
// why on stderr.
inline std::optional<std::string> deploy(const nats::Connection& conn, const std::string& node_id,
                                         const nlohmann::json& request) {
  auto r = conn.request("$NEX.DEPLOY.default." + node_id, request.dump(), std::chrono::seconds(30));
  if (!r) {
    std::fprintf(stderr, "deploy %s: %s\n", request["workload_name"].get<std::string>().c_str(),
                 r.error().message.c_str());
    return std::nullopt;
  }
  const nlohmann::json answer = nlohmann::json::parse(r->data(), nullptr, false);
  if (!answer.is_object() || !answer["error"].is_null() || !answer["data"]["id"].is_string()) {
    std::fprintf(stderr, "deploy %s refused: %s\n",
                 request["workload_name"].get<std::string>().c_str(),
                 std::string(r->data()).c_str());
    return std::nullopt;
  }
  return answer["data"]["id"].get<std::string>();
}

// A nats-server with JetStream on a free port, a connection to it, and `files` (object name ->
// path) in the NEXCLIFILES bucket; reports what failed on stderr.
struct LocalNats {
  nats::LocalNatsServer server;
  nats::Connection conn;
};

// Puts `files` (object name -> path) in the NEXCLIFILES bucket of `conn`'s server; false after
// saying why on stderr.
inline bool put_files(const nats::Connection& conn,
                      const std::map<std::string, std::filesystem::path>& files) {
  auto js = nats::JetStream::create(conn);
  auto store = js ? nats::ObjectStore::create(*js, {.bucket = "NEXCLIFILES"}) : fail(js.error());
  if (!store) {
    std::fprintf(stderr, "object store: %s\n", store.error().message.c_str());
    return false;
  }
  for (const auto& [name, path] : files) {
    if (auto put = store->put_file(name, path); !put) {
      std::fprintf(stderr, "cannot upload %s: %s\n", path.c_str(), put.error().message.c_str());
      return false;
    }
  }
  return true;
}

inline std::optional<LocalNats> start_nats_with_files(
    const std::map<std::string, std::filesystem::path>& files) {
  auto server = nats::LocalNatsServer::start({});
  if (!server) {
    std::fprintf(stderr, "nats-server: %s\n", server.error().message.c_str());
    return std::nullopt;
  }
  auto conn = nats::Connection::connect({.urls = {server->url()}});
  if (!conn) {
    std::fprintf(stderr, "connect: %s\n", conn.error().message.c_str());
    return std::nullopt;
  }
  if (!put_files(*conn, files)) return std::nullopt;
  return LocalNats{std::move(*server), std::move(*conn)};
}

// Polls `subject` until the echo service answers "ping" with "ping"; false after `patience`.
inline bool wait_for_answer(const nats::Connection& c, const std::string& subject,
                            std::chrono::seconds patience = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.request(subject, "ping", std::chrono::milliseconds(200));
    if (r && r->data() == "ping") return true;
    if (!r && r.error().code != ErrorCode::kNoResponders)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

struct Memory {
  int64_t rss = 0;       // resident, counting shared library pages in full
  int64_t pss = 0;       // shared pages divided among the processes that map them
  int64_t private_ = 0;  // pages only this process uses: what one more workload costs
};

inline Memory memory_of(pid_t pid) {
  Memory m;
  std::ifstream rollup("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(rollup, line);) {  // "Rss:   8668 kB" (after a header line)
    std::istringstream fields(line);
    std::string key;
    int64_t kb = 0;
    if (!(fields >> key >> kb)) continue;
    if (key == "Rss:") m.rss = kb * 1024;
    if (key == "Pss:") m.pss = kb * 1024;
    if (key == "Private_Clean:" || key == "Private_Dirty:") m.private_ += kb * 1024;
  }
  return m;
}

// The nex-agent process running workload `id` (its NEX_WORKLOADID), or 0.
inline pid_t agent_pid(const std::string& id) {
  const std::string needle = "NEX_WORKLOADID=" + id + '\0';
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path() / "exe", ec).filename() != "nex-agent") continue;
    std::ifstream env(e.path() / "environ");
    const std::string environ((std::istreambuf_iterator<char>(env)),
                              std::istreambuf_iterator<char>());
    if (environ.find(needle) != std::string::npos) return std::stoi(e.path().filename().string());
  }
  return 0;
}

}  // namespace nex::bench
