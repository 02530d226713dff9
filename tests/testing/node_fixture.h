// NodeTest: a node started in-process on a real nats-server with JetStream, with the echo service
// in the NEXCLIFILES bucket and helpers to deploy, stop and inspect as a control client does.
// Collector: what a user watching a subject would see.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "api/signed_request.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"
#include "node/node.h"
#include "testing/nats_server_fixture.h"

namespace nex::testing {

using namespace std::chrono_literals;

inline const std::filesystem::path kBinDir =
    std::filesystem::read_symlink("/proc/self/exe").parent_path();

// Collects messages on a subject, for asserting what a user watching it would see.
class Collector {
 public:
  Collector(const nats::Connection& conn, const std::string& subject) {
    sub_ = *conn.subscribe(subject, [this](nats::Message m) {
      std::lock_guard l(mu_);
      messages_.push_back({std::string(m.subject()), std::string(m.data())});
      cv_.notify_all();
    });
    (void)conn.flush();
  }
  // Waits until `n` messages' bodies contain `needle`; how many did.
  size_t wait_for_count(const std::string& needle, size_t n, std::chrono::milliseconds t = 10s) {
    std::unique_lock l(mu_);
    size_t seen = 0;
    cv_.wait_for(l, t, [&] {
      seen = std::count_if(messages_.begin(), messages_.end(), [&](const auto& m) {
        return m.second.find(needle) != std::string::npos;
      });
      return seen >= n;
    });
    return seen;
  }
  // The bodies received so far that contain `needle`.
  std::vector<std::string> bodies_with(const std::string& needle) {
    std::lock_guard l(mu_);
    std::vector<std::string> out;
    for (const auto& m : messages_) {
      if (m.second.find(needle) != std::string::npos) out.push_back(m.second);
    }
    return out;
  }
  // Waits for a message whose body contains `needle`.
  std::optional<std::pair<std::string, std::string>> wait_for(const std::string& needle,
                                                              std::chrono::milliseconds t = 10s) {
    std::unique_lock l(mu_);
    std::optional<std::pair<std::string, std::string>> found;
    cv_.wait_for(l, t, [&] {
      for (auto& m : messages_) {
        if (m.second.find(needle) != std::string::npos) {
          found = m;
          return true;
        }
      }
      return false;
    });
    return found;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, std::string>> messages_;
  nats::Subscription sub_;
};

class NodeTest : public NatsServerTest {
 protected:
  using json = nlohmann::json;
  using NodeConfig = node::NodeConfig;
  using Node = node::Node;

 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    state_dir_ = std::filesystem::temp_directory_path() /
                 ("nex-node-test-" + std::to_string(getpid()) + "-" + unique("s"));
    conn_ = std::make_unique<nats::Connection>(connect());
    js_ = std::make_unique<nats::JetStream>(jetstream());
    auto os = nats::ObjectStore::create(*js_, {.bucket = "NEXCLIFILES"});
    ASSERT_TRUE(os) << os.error().message;
    files_ = std::make_unique<nats::ObjectStore>(std::move(*os));
    ASSERT_OK(files_->put_file("echoservice", kBinDir / "echoservice"));
  }
  void TearDown() override {
    node_.reset();
    std::error_code ec;
    std::filesystem::remove_all(state_dir_, ec);
  }

  // A node with the process driver, unless `config` comes from SandboxHost (sandboxed_config),
  // connected to this test's server with `control`'s other options.
  void start_node(NodeConfig config = {}, nats::ConnectOptions control = {}) {
    if (!sandboxed_) config.no_sandbox = true;
    control.urls = {server().url()};
    auto n = Node::start({.config = config,
                          .control = control,
                          .state_dir = state_dir_,
                          .version = "test",
                          .metrics_listen = metrics_listen_});
    ASSERT_TRUE(n) << n.error().message;
    node_ = std::move(*n);
  }

  void start_sandboxed_node(NodeConfig config) {
    sandboxed_ = true;
    start_node(std::move(config));
  }

  // A JWT that binds nothing: what older tooling sends (refused unless allow_unbound_requests).
  std::string jwt_for(const std::string& name, const crypto::KeyPair& issuer,
                      std::optional<int64_t> exp = {}) {
    return crypto::encode_jwt({.sub = name, .exp = exp, .nats = {{"type", "workload"}}}, issuer);
  }
  // `req` signed by `issuer` for namespace `ns`, as the CLI signs it (api/signed_request.h).
  // `claims` are the JWT's `nats` claims besides the request digest (a "hash" vouches for the
  // artifact, as `nex run` signs it).
  json signed_deploy(json req, const std::string& ns = "default",
                     const crypto::KeyPair* issuer = nullptr, int64_t lifetime_s = 300,
                     json claims = {{"type", "workload"}}) {
    api::sign_request(req,
                      {.action = api::action::kDeploy,
                       .ns = ns,
                       .subject = req.value("workload_name", ""),
                       .expires_at = unix_seconds_now() + lifetime_s,
                       .claims = std::move(claims)},
                      issuer ? *issuer : issuer_);
    return req;
  }
  // A lame-duck request for this node, signed by `issuer` (this test's issuer by default).
  json lameduck_request(const crypto::KeyPair* issuer = nullptr) {
    json body = {{"target_node", node_->id()}};
    api::sign_request(body,
                      {.action = api::action::kLameDuck,
                       .subject = node_->id(),
                       .expires_at = unix_seconds_now() + 300,
                       .jwt_field = api::kRequestJwtField},
                      issuer ? *issuer : issuer_);
    return body;
  }
  // A signed stop request for workload `id` named `name` on node `node_id`.
  json stop_request(const std::string& node_id, const std::string& id, const std::string& name,
                    const std::string& ns, const crypto::KeyPair& issuer) {
    json body = {{"workload_id", id}, {"target_node", node_id}};
    api::sign_request(body,
                      {.action = api::action::kStop,
                       .ns = ns,
                       .subject = name,
                       .expires_at = unix_seconds_now() + 300,
                       .claims = {{"type", "workload_stop"}}},
                      issuer);
    return body;
  }

  // A deploy request as `nex run` would build it.
  json deploy_request(const std::string& name, const std::map<std::string, std::string>& env = {}) {
    return deploy_request_to(node_->id(), node_->xkey(), name, env);
  }
  // The same, for a node this test does not run in-process.
  json deploy_request_to(const std::string& node_id, const std::string& node_xkey,
                         const std::string& name,
                         const std::map<std::string, std::string>& env = {}) {
    json env_json = json::object();
    for (auto& [k, v] : env) env_json[k] = v;
    auto sealed = publisher_.seal(as_bytes(env_json.dump()), node_xkey);
    return {{"argv", json::array()},
            {"description", "echo service under test"},
            {"type", "native"},
            {"location", "nats://NEXCLIFILES/echoservice"},
            {"essential", false},
            {"environment", base64_encode(*sealed, Base64::kStandard)},
            {"sender_public_key", publisher_.public_key()},
            {"target_node", node_id},
            {"trigger_subjects", json::array()},
            {"workload_name", name}};
  }

  // A JavaScript function's deploy request, from NEXCLIFILES/`key` (set "type" for others).
  json function_request(const std::string& name, const std::string& key,
                        const std::vector<std::string>& triggers, json limits = nullptr) {
    json req = deploy_request(name);
    req["type"] = "v8";
    req["location"] = "nats://NEXCLIFILES/" + key;
    req["trigger_subjects"] = triggers;
    if (!limits.is_null()) req["function_limits"] = limits;
    return req;
  }

  // Waits until a node answers $NEX.PING; its id, or empty when none did.
  std::string wait_for_pinged_node() {
    for (int i = 0; i < 200; ++i) {
      json p = control("$NEX.PING", "", 200ms);
      if (p.contains("data") && p["data"].is_object()) return p["data"]["node_id"];
      std::this_thread::sleep_for(50ms);
    }
    return {};
  }

  // Sends a control request and returns the envelope.
  json control(const std::string& subject, const std::string& body,
               std::chrono::milliseconds t = 20s) {
    auto r = conn_->request(subject, body, t);
    if (!r) return json{{"transport_error", r.error().message}};
    return json::parse(r->data());
  }
  // Sends `req`, signed by this test's issuer for `ns` unless it carries a JWT of its own.
  json deploy(const json& req, const std::string& ns = "default") {
    const json body = req.contains("workload_jwt") ? req : signed_deploy(req, ns);
    return control("$NEX.DEPLOY." + ns + "." + node_->id(), body.dump());
  }
  // Stops workload `id` (named `name`) as its deployer does.
  json stop(const std::string& id, const std::string& name, const std::string& ns = "default") {
    return stop_signed_by(id, name, issuer_, ns);
  }
  json stop_signed_by(const std::string& id, const std::string& name, const crypto::KeyPair& issuer,
                      const std::string& ns = "default") {
    return control("$NEX.STOP." + ns + "." + node_->id(),
                   stop_request(node_->id(), id, name, ns, issuer).dump());
  }
  json info(const std::string& ns = "default") {
    return control("$NEX.INFO." + ns + "." + node_->id(), "");
  }

  // Waits until the echo service answers on its subject.
  bool echo_answers(const std::string& subject, std::chrono::milliseconds t = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = conn_->request(subject, "hello nex", 500ms);
      if (r && r->data() == "hello nex") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // Whether nothing subscribes to `subject`: the server says "no responders" at once, a positive
  // signal, where waiting for an answer that does not come would be a guess at how long.
  bool nothing_answers(const std::string& subject) {
    auto r = conn_->request(subject, "anyone?", std::chrono::seconds(5));
    return !r && r.error().code == ErrorCode::kNoResponders;
  }

  std::filesystem::path state_dir_;
  std::unique_ptr<nats::Connection> conn_;
  std::unique_ptr<nats::JetStream> js_;
  std::unique_ptr<nats::ObjectStore> files_;  // NEXCLIFILES, where deploys find their artifacts
  std::unique_ptr<Node> node_;
  bool sandboxed_ = false;
  std::string metrics_listen_;  // Prometheus endpoint of start_node(); empty: none
  crypto::KeyPair issuer_ = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  crypto::XKey publisher_ = crypto::XKey::create();
};

}  // namespace nex::testing
