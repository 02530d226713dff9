// The node end to end, against real nats-server processes: deploy the static echo service over
// $NEX.DEPLOY, use it, watch its logs and events, stop it, and every refusal the spec lists.
#include "node/node.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "api/control.h"
#include "api/events.h"
#include "core/clock.h"
#include "core/subprocess.h"
#include "crypto/digest.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"
#include "node/internal_server.h"
#include "testing/nats_server_fixture.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Collector;
using testing::kBinDir;
using testing::NatsServerTest;
using testing::NodeTest;
namespace fs = std::filesystem;

using ::nex::testing::slurp;

TEST_F(NodeTest, DeploysUsesAndStopsTheEchoService) {
  start_node();
  Collector logs(*conn_, "$NEX.logs.default.*.echoservice.*");
  Collector events(*conn_, "$NEX.events.default.*");
  json req = deploy_request("echoservice",
                            {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.test"}});
  req["argv"] = {"--greeting", "hello world"};
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  EXPECT_EQ(r["type"], "io.nats.nex.v1.run_response");
  const std::string id = r["data"]["id"];
  EXPECT_EQ(r["data"]["name"], "echoservice");
  EXPECT_EQ(r["data"]["issuer"], issuer_.public_key());
  EXPECT_TRUE(r["data"]["started"]);

  ASSERT_TRUE(echo_answers("svc.echo.test")) << "the deployed service never answered";
  auto line = logs.wait_for("Echo service using NATS url");
  EXPECT_TRUE(logs.wait_for("Arguments: --greeting hello world"))
      << "argv did not reach the service";
  ASSERT_TRUE(line) << "no log line from the service";
  EXPECT_EQ(line->first, "$NEX.logs.default." + node_->id() + ".echoservice." + id);
  EXPECT_EQ(json::parse(line->second)["level"], "info");
  EXPECT_EQ(json::parse(line->second)["id"], id);
  auto deployed = events.wait_for("workload_deployed");
  ASSERT_TRUE(deployed);
  json ev = json::parse(deployed->second);
  EXPECT_EQ(ev["specversion"], "1.0");
  EXPECT_EQ(ev["source"], node_->id() + "-" + id);
  EXPECT_EQ(ev["data"]["workload_name"], "echoservice");

  json in = info();
  ASSERT_EQ(in["data"]["machines"].size(), 1u) << in.dump();
  EXPECT_EQ(in["data"]["machines"][0]["id"], id);
  EXPECT_EQ(in["data"]["machines"][0]["healthy"], true);
  EXPECT_EQ(in["data"]["machines"][0]["workload"]["name"], "echoservice");
  EXPECT_EQ(in["data"]["machines"][0]["workload"]["hash"],
            hex_encode(crypto::sha256(as_bytes(slurp(kBinDir / "echoservice")))));
  EXPECT_EQ(info("other")["data"]["machines"].size(), 0u);  // filtered by namespace

  json s = stop(id, "echoservice");
  ASSERT_TRUE(s["error"].is_null()) << s.dump();
  EXPECT_EQ(s["type"], "io.nats.nex.v1.stop_response");
  EXPECT_TRUE(s["data"]["stopped"]);
  EXPECT_TRUE(events.wait_for("workload_undeployed"));
  EXPECT_EQ(info()["data"]["machines"].size(), 0u);
  auto gone = conn_->request("svc.echo.test", "x", 500ms);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNoResponders);
}

}  // namespace
}  // namespace nex::node

namespace nex::node {
namespace {

TEST_F(NodeTest, StopIsRefusedToOtherIssuersReplaysAndOtherNamespaces) {
  start_node();
  json req = deploy_request("echoservice",
                            {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.stop"}});
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  auto other = *crypto::KeyPair::create(crypto::KeyType::kAccount);

  json s1 = stop_signed_by(id, "echoservice", other);
  EXPECT_EQ(s1["data"], "");
  EXPECT_NE(s1["error"].get<std::string>().find("only the issuer that deployed"), std::string::npos)
      << s1.dump();
  // The deploy's own JWT, sent as a stop: it was signed for the deploy, not for this.
  json s2 = control("$NEX.STOP.default." + node_->id(),
                    json{{"workload_id", id},
                         {"target_node", node_->id()},
                         {"workload_jwt", signed_deploy(req)["workload_jwt"]}}
                        .dump());
  EXPECT_NE(s2["error"].get<std::string>().find("signed for another request"), std::string::npos)
      << s2.dump();
  json s3 = stop(id, "echoservice", "elsewhere");
  EXPECT_NE(s3["error"].get<std::string>().find("no such workload"), std::string::npos)
      << s3.dump();
  json s4 = stop(id, "othername");
  EXPECT_NE(s4["error"].get<std::string>().find("names workload 'othername'"), std::string::npos)
      << s4.dump();
  json s5 = control("$NEX.STOP.default." + node_->id(),
                    json{{"workload_id", id}, {"workload_jwt", "not.a.jwt"}}.dump());
  EXPECT_NE(s5["error"].get<std::string>().find("workload_jwt"), std::string::npos) << s5.dump();
  // After all that, it still runs, and its own issuer can stop it.
  EXPECT_TRUE(echo_answers("svc.echo.stop"));
  EXPECT_TRUE(stop(id, "echoservice")["error"].is_null());
}

TEST_F(NodeTest, EnvironmentSealedToAnotherNodeIsRefused) {
  start_node();
  json req = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  auto elsewhere = crypto::XKey::create();
  auto sealed = publisher_.seal(as_bytes(R"({"NATS_URL":"x"})"), elsewhere.public_key());
  req["environment"] = base64_encode(*sealed, Base64::kStandard);
  json r = deploy(req);
  EXPECT_EQ(r["data"], "");
  EXPECT_NE(r["error"].get<std::string>().find("could not be decrypted"), std::string::npos)
      << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find(node_->xkey()), std::string::npos);
}

}  // namespace
}  // namespace nex::node

namespace nex::node {
namespace {

// Processes whose executable path contains `exe_substring` and, when `environ_substring` is
// given, whose initial environment mentions it (agents carry their sandbox's paths there): so
// tests running in parallel count only their own node's processes.
int processes_running(const std::string& exe_substring, const std::string& environ_substring = {}) {
  int count = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::error_code ec2;
    const fs::path exe = fs::read_symlink(e.path() / "exe", ec2);
    if (ec2 || exe.string().find(exe_substring) == std::string::npos) continue;
    if (!environ_substring.empty() &&
        slurp(e.path() / "environ").find(environ_substring) == std::string::npos)
      continue;
    ++count;
  }
  return count;
}

class NodeRefusals : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_OK(files_->put_file("dynamic", "/bin/true"));  // dynamically linked
    ASSERT_OK(files_->put_bytes("script", "#!/bin/sh\necho not an ELF\n"));
    std::string arm = slurp(kBinDir / "echoservice");
    arm[18] = static_cast<char>(183);  // e_machine = EM_AARCH64
    arm[19] = 0;
    ASSERT_OK(files_->put_bytes("arm64", arm));
  }

  // Deploys `req` and expects a refusal containing `expect`; then checks the node still answers
  // and holds nothing but its warm pool.
  void expect_refused(const std::string& body, const std::string& expect) {
    json r = control("$NEX.DEPLOY.default." + node_->id(), body);
    EXPECT_EQ(r["type"], "io.nats.nex.v1.run_response") << r.dump();
    EXPECT_EQ(r["data"], "") << r.dump();
    ASSERT_TRUE(r["error"].is_string()) << r.dump();
    EXPECT_NE(r["error"].get<std::string>().find(expect), std::string::npos)
        << "expected an error containing \"" << expect << "\", got: " << r["error"];
    json ping = control("$NEX.PING." + node_->id(), "");
    EXPECT_TRUE(ping["error"].is_null()) << "the node stopped answering after: " << expect;
    EXPECT_EQ(info()["data"]["machines"].size(), 0u);
    EXPECT_EQ(processes_running(state_dir_.string()), 0) << "a workload process was left running";
    // The pool refills to its size; nothing else stays in the sandboxes directory (which the
    // pool creates with its first agent: a quick refusal can come before that).
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    size_t dirs = 0;
    do {
      dirs = 0;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(state_dir_ / "run" / "sandboxes", ec))
        dirs += e.is_directory();
      if (dirs == 1) break;
      std::this_thread::sleep_for(20ms);
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(dirs, 1u) << "sandbox directories left behind after: " << expect;
  }
  void expect_refused(const json& req, const std::string& expect) {
    expect_refused((req.contains("workload_jwt") ? req : signed_deploy(req)).dump(), expect);
  }
};

// Each refusal has a test of its own, so that removing one check fails the test that names it
// (and not one case among twenty).
class BadRequests : public NodeRefusals {
 protected:
  void SetUp() override {
    NodeRefusals::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    start_node();
    good_ = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  }
  json with(const char* field, json value) const {
    json r = good_;
    r[field] = std::move(value);
    return r;
  }
  json without(const char* field) const {
    json r = good_;
    r.erase(field);
    return r;
  }
  // Everything refused, the same node still deploys a good request.
  void expect_good_request_deploys() {
    json ok = deploy(good_);
    EXPECT_TRUE(ok["error"].is_null()) << ok.dump();
  }
  // The hex SHA-256 of the echo service, as the artifact is stored.
  static std::string echo_hash() {
    return hex_encode(crypto::sha256(as_bytes(slurp(kBinDir / "echoservice"))));
  }
  json good_;
};

TEST_F(BadRequests, MalformedFieldsAreNamed) {
  expect_refused(std::string("{not json"), "deploy request is not valid JSON");
  expect_refused(with("argv", "run fast"), "field 'argv' must be an array of strings");
  expect_refused(with("essential", "yes"), "field 'essential' must be true or false");
  expect_refused(without("location"), "field 'location' is required");
  expect_good_request_deploys();
}

TEST_F(BadRequests, AMissingBucketOrObjectIsNamed) {
  expect_refused(with("location", "nats://NO_SUCH_BUCKET/echoservice"),
                 "bucket 'NO_SUCH_BUCKET' does not exist");
  expect_refused(with("location", "nats://NEXCLIFILES/missing"), "object 'missing' not found");
  expect_good_request_deploys();
}

TEST_F(BadRequests, AForgedSignatureIsRefused) {
  std::string forged = signed_deploy(good_)["workload_jwt"];
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  expect_refused(with("workload_jwt", forged), "workload_jwt: invalid JWT");
  expect_refused(with("workload_jwt", "unsigned"), "workload_jwt: invalid JWT");
  expect_good_request_deploys();
}

TEST_F(BadRequests, AnExpiredJwtIsRefused) {
  // Well within the clock skew, which forgives a signer's clock running ahead, never expiry.
  expect_refused(signed_deploy(good_, "default", nullptr, -10), "workload_jwt: JWT has expired");
  expect_good_request_deploys();
}

TEST_F(BadRequests, OnlyAnAccountKeyIssuesDeploys) {
  auto user = *crypto::KeyPair::create(crypto::KeyType::kUser);
  expect_refused(signed_deploy(good_, "default", &user), "JWT issuer must be an account key");
  expect_good_request_deploys();
}

TEST_F(BadRequests, TriggerSubjectsAreForFunctionsAndNeverReserved) {
  expect_refused(with("trigger_subjects", {"svc.trigger"}),
                 "trigger_subjects are only for function workloads");
  json sys = with("type", "v8");
  sys["trigger_subjects"] = {"$SYS.REQ.SERVER.PING"};
  expect_refused(sys, "trigger subject '$SYS.REQ.SERVER.PING' is reserved");
  sys["trigger_subjects"] = {">"};
  expect_refused(sys, "trigger subject '>' is reserved");
  expect_good_request_deploys();
}

// A trigger subject NATS would refuse, sent straight to a node (no CLI to stop it), is refused
// by name before the node takes its warm agent: the same agent still waits for a workload.
TEST_F(BadRequests, AnInvalidTriggerSubjectIsNamedAndTakesNoAgent) {
  auto warm_agents = [&] {
    std::set<std::string> ids;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(state_dir_ / "run" / "sandboxes", ec))
      if (e.is_directory()) ids.insert(e.path().filename());
    return ids;
  };
  for (int i = 0; i < 250 && warm_agents().size() != 1; ++i) std::this_thread::sleep_for(20ms);
  const std::set<std::string> before = warm_agents();
  ASSERT_EQ(before.size(), 1u) << "the warm pool never filled";
  json fn = with("type", "v8");
  for (const std::string subject : {"", "a b"}) {
    fn["trigger_subjects"] = {"fn.ok", subject};
    expect_refused(fn, "field 'trigger_subjects[1]' '" + subject + "' is not a valid NATS subject");
  }
  EXPECT_EQ(warm_agents(), before) << "a refused deploy took the warm agent";
  expect_good_request_deploys();
}

TEST_F(BadRequests, OnlyStaticX86ExecutablesRunAsNativeServices) {
  expect_refused(with("location", "nats://NEXCLIFILES/dynamic"), "dynamically linked");
  expect_refused(with("location", "nats://NEXCLIFILES/script"), "not an ELF binary");
  expect_refused(with("location", "nats://NEXCLIFILES/arm64"),
                 "built for arm64, but this node runs x86-64");
  expect_good_request_deploys();
}

TEST_F(BadRequests, NulBytesAndBadKeysAreRefused) {
  // A NUL byte would end the string the workload sees early ("a\0b" runs as "a").
  expect_refused(with("argv", {"-v", std::string("a\0b", 3)}), "field 'argv[1]' holds a NUL byte");
  // The environment is sealed to the node: checked once the node has opened it.
  const std::string url = server().url();
  expect_refused(deploy_request("echoservice", {{"NATS_URL", url}, {"X", std::string("a\0b", 3)}}),
                 "environment: the value of \"X\" holds a NUL byte");
  expect_refused(deploy_request("echoservice", {{"NATS_URL", url}, {std::string("X\0Y", 3), "1"}}),
                 "environment: key \"X\\u0000Y\" holds a NUL byte");
  expect_refused(deploy_request("echoservice", {{"NATS_URL", url}, {"A=B", "1"}}),
                 "environment: key \"A=B\" holds '='");
  expect_refused(deploy_request("echoservice", {{"NATS_URL", url}, {"", "1"}}),
                 "environment: a key is empty");
  expect_good_request_deploys();
}

// The node's own check: the agent checks again, but against the hash the node hands it.
TEST_F(BadRequests, AnArtifactOtherThanTheRequestsHashIsRefused) {
  expect_refused(with("hash", std::string(64, 'a')),
                 "artifact hash mismatch: the request vouches for " + std::string(64, 'a') +
                     " but the artifact's SHA-256 is " + echo_hash());
  json ok = deploy(with("hash", echo_hash()));
  EXPECT_TRUE(ok["error"].is_null()) << ok.dump();
}

// `nex run` signs the hash inside the JWT: a request whose body carries no hash is still held
// to it.
TEST_F(BadRequests, AnArtifactOtherThanTheSignedJwtsHashIsRefused) {
  const json claims = {{"type", "workload"}, {"hash", std::string(64, 'b')}};
  expect_refused(signed_deploy(good_, "default", nullptr, 300, claims),
                 "artifact hash mismatch: the request vouches for " + std::string(64, 'b'));
  json ok = deploy(
      signed_deploy(good_, "default", nullptr, 300, {{"type", "workload"}, {"hash", echo_hash()}}));
  EXPECT_TRUE(ok["error"].is_null()) << ok.dump();
}

TEST_F(BadRequests, AHashFieldOtherThanTheSignedJwtsIsRefused) {
  const json claims = {{"type", "workload"}, {"hash", std::string(64, 'b')}};
  expect_refused(signed_deploy(with("hash", echo_hash()), "default", nullptr, 300, claims),
                 "field 'hash' differs from the hash the JWT was signed for");
  expect_good_request_deploys();
}

TEST_F(NodeRefusals, DeniedTriggerSubjectsAreRefused) {
  ASSERT_OK(files_->put_bytes("fn.js", "(subject, payload) => payload"));
  NodeConfig c;
  c.deny_trigger_subjects = {"app.secret.>"};
  start_node(c);
  expect_refused(
      function_request("fn", "fn.js", {"app.secret.keys"}),
      "trigger subject 'app.secret.keys' is not allowed: it overlaps the denied 'app.secret.>'");
  // A wildcard that would take the denied subjects among others is refused too.
  expect_refused(
      function_request("fn", "fn.js", {"app.fn", "app.*.keys"}),
      "trigger subject 'app.*.keys' is not allowed: it overlaps the denied 'app.secret.>'");
  json ok = deploy(function_request("fn", "fn.js", {"app.fn"}));
  EXPECT_TRUE(ok["error"].is_null()) << ok.dump();
}

TEST_F(NodeRefusals, IssuerNotAllowed) {
  NodeConfig c;
  c.valid_issuers = {crypto::KeyPair::create(crypto::KeyType::kAccount)->public_key()};
  start_node(c);
  expect_refused(deploy_request("echoservice"), "is not allowed on this node (valid_issuers)");
}

TEST_F(NodeRefusals, ArtifactOverTheSizeLimit) {
  NodeConfig c;
  c.node_limits.max_workload_bytes = 4096;
  start_node(c);
  expect_refused(deploy_request("echoservice"),
                 "over this node's limit of 4096 (node_limits.max_workload_bytes)");
}

// Deploys run in parallel, and the limits still hold exactly: of deploys sent at once, as many
// succeed as there is room for. What `n` deploys sent at once got: {succeeded, refused naming
// `reason`}.
std::pair<int, int> deploy_at_once(const std::function<nlohmann::json(const std::string&)>& deploy,
                                   int n, const std::string& reason) {
  std::vector<nlohmann::json> replies(n);
  std::vector<std::thread> senders;
  for (int i = 0; i < n; ++i)
    senders.emplace_back([&, i] { replies[i] = deploy("at-once" + std::to_string(i)); });
  for (auto& s : senders) s.join();
  int ok = 0, refused = 0;
  for (const auto& r : replies) {
    if (r["error"].is_null())
      ++ok;
    else if (r["error"].get<std::string>().find(reason) != std::string::npos)
      ++refused;
  }
  return {ok, refused};
}

TEST_F(NodeRefusals, LimitsHoldForDeploysSentAtOnce) {
  const auto size = static_cast<int64_t>(fs::file_size(kBinDir / "echoservice"));
  NodeConfig c;
  c.machine_pool_size = 2;
  c.node_limits.max_total_bytes = size * 5 / 2;  // room for two
  start_node(c);
  auto got = deploy_at_once(
      [&](const std::string& name) {
        return deploy(deploy_request(name, {{"NATS_URL", server().url()}}));
      },
      6, "node_limits.max_total_bytes");
  EXPECT_EQ(got, std::make_pair(2, 4));
  EXPECT_EQ(info()["data"]["machines"].size(), 2u);
}

TEST_F(NodeRefusals, TheWorkloadLimitHoldsForDeploysSentAtOnce) {
  NodeConfig c;
  c.machine_pool_size = 2;
  c.node_limits.max_workloads = 3;
  start_node(c);
  auto got = deploy_at_once(
      [&](const std::string& name) {
        return deploy(deploy_request(name, {{"NATS_URL", server().url()}}));
      },
      6, "node is full");
  EXPECT_EQ(got, std::make_pair(3, 3));
  EXPECT_EQ(info()["data"]["machines"].size(), 3u);
}

TEST_F(NodeRefusals, MoreThanMaxWorkloads) {
  NodeConfig c;
  c.node_limits.max_workloads = 1;
  start_node(c);
  json first = deploy(deploy_request("echoservice", {{"NATS_URL", server().url()}}));
  ASSERT_TRUE(first["error"].is_null()) << first.dump();
  json second = deploy(deploy_request("echoservice2", {{"NATS_URL", server().url()}}));
  EXPECT_NE(second["error"].get<std::string>().find(
                "node is full (node_limits.max_workloads 1): 1 running, 0 being deployed"),
            std::string::npos)
      << second.dump();
  EXPECT_EQ(info()["data"]["machines"].size(), 1u);
}

// Deploys that hold their places while they wait for an agent, and then fail: a deploy turned
// away meanwhile says that none runs and how many are being deployed, not that the node runs
// them.
TEST_F(NodeRefusals, AFullNodeSaysHowManyRunAndHowManyAreBeingDeployed) {
  const fs::path agent = state_dir_.string() + "-agent.sh";  // an agent that never handshakes
  {
    std::ofstream script(agent);
    script << "#!/bin/sh\nexec sleep 30\n";
  }
  fs::permissions(agent, fs::perms(0755));
  NodeConfig c;
  c.no_sandbox = true;
  c.node_limits.max_workloads = 3;
  c.agent_handshake_timeout_ms = 2000;
  auto n = Node::start({.config = c,
                        .control = {.urls = {server().url()}},
                        .state_dir = state_dir_,
                        .agent_binary = agent,
                        .version = "test"});
  ASSERT_TRUE(n) << n.error().message;
  node_ = std::move(*n);
  std::vector<json> replies(6);
  std::vector<std::thread> senders;
  for (int i = 0; i < 6; ++i)
    senders.emplace_back([&, i] {
      replies[i] =
          deploy(deploy_request("full" + std::to_string(i), {{"NATS_URL", server().url()}}));
    });
  for (auto& s : senders) s.join();
  int full = 0;
  for (const auto& r : replies) {
    ASSERT_TRUE(r["error"].is_string()) << r.dump();  // no agent ever came
    const std::string error = r["error"];
    if (error.find("node is full") == std::string::npos) continue;
    ++full;
    EXPECT_NE(error.find("node is full (node_limits.max_workloads 3): 0 running, 3 being deployed"),
              std::string::npos)
        << error;
  }
  EXPECT_EQ(full, 3);
  EXPECT_EQ(info()["data"]["machines"].size(), 0u);
  node_.reset();
  fs::remove(agent);
}

}  // namespace
}  // namespace nex::node

namespace nex::node {
namespace {

TEST(InternalServerIsolation, AnAgentReachesOnlyItsOwnSubjects) {
  NEX_REQUIRE_NATS_SERVER();
  const fs::path dir = fs::temp_directory_path() / ("nex-internal-" + std::to_string(getpid()));
  auto internal = InternalServer::start(dir, "127.0.0.1");
  ASSERT_TRUE(internal) << internal.error().message;
  ASSERT_OK_AND_ASSIGN(seeds, (*internal)->add_workloads({"wa", "wb"}));
  const std::string url = "nats://127.0.0.1:" + std::to_string((*internal)->port());
  auto as = [&](const std::string& id) {
    Result<nats::Connection> c = fail(ErrorCode::kUnavailable, "");
    for (int i = 0; i < 100 && !c; ++i) {  // the reload is applied asynchronously
      c = nats::Connection::connect(
          {.urls = {url}, .nkey_seed = seeds.at(id), .inbox_prefix = inbox_prefix(id)});
      if (!c) std::this_thread::sleep_for(20ms);
    }
    return c;
  };
  ASSERT_OK_AND_ASSIGN(a, as("wa"));
  ASSERT_OK_AND_ASSIGN(b, as("wb"));
  const auto& node_conn = (*internal)->connection();
  // One subscription for every agent's subjects: the node sees them in the order they came, so
  // an answer to A's own request proves that whatever A sent before it has arrived, if it could.
  std::mutex mu;
  std::vector<std::string> node_got;
  ASSERT_OK_AND_ASSIGN(n1, node_conn.subscribe("hostint.>", [&](nats::Message m) {
    {
      std::lock_guard l(mu);
      node_got.emplace_back(m.subject());
    }
    if (!m.reply().empty()) (void)node_conn.publish(m.reply(), "ok");
  }));
  // The control plane answers here, so a request that fails was stopped by the permissions.
  ASSERT_OK_AND_ASSIGN(ping, node_conn.subscribe("$NEX.PING", [&](nats::Message m) {
    (void)node_conn.publish(m.reply(), "pong");
  }));
  ASSERT_OK_AND_ASSIGN(bsub, b.subscribe("agentint.wb.ping", [&](nats::Message m) {
    (void)b.publish(m.reply(), "pong-b");
  }));
  ASSERT_OK_AND_ASSIGN(asub, a.subscribe("agentint.wa.ping", [&](nats::Message m) {
    (void)a.publish(m.reply(), "pong-a");
  }));
  ASSERT_OK(node_conn.flush());
  ASSERT_OK(a.flush());
  ASSERT_OK(b.flush());
  ASSERT_OK_AND_ASSIGN(answered, node_conn.request("$NEX.PING", "", 2s));
  ASSERT_EQ(answered.data(), "pong");

  // Its own subjects work both ways.
  ASSERT_OK_AND_ASSIGN(own, a.request("hostint.wa.handshake", "{}", 2s));
  EXPECT_EQ(own.data(), "ok");
  ASSERT_OK_AND_ASSIGN(pong, (*internal)->request_agent("wb", "agentint.wb.ping", "", 2s));
  EXPECT_EQ(pong.data(), "pong-b");

  // Workload A tries workload B's subjects: publishing as B, listening to B, B's inbox. Its
  // listening subscriptions are synchronous: what reaches them waits in their queues.
  ASSERT_OK(a.publish("hostint.wb.logs", "{\"text\":\"forged\"}"));
  std::vector<nats::SyncSubscription> steals;
  for (const char* subject : {"agentint.wb.>", "_INBOX_wb.>", "hostint.>"}) {
    if (auto s = a.subscribe_sync(subject)) steals.push_back(std::move(*s));
  }
  (void)a.flush();
  ASSERT_OK_AND_ASSIGN(pong2, (*internal)->request_agent("wb", "agentint.wb.ping", "", 2s));
  EXPECT_EQ(pong2.data(), "pong-b");
  ASSERT_OK(node_conn.publish("agentint.wb.notify", "x"));  // A listens there, and must not hear it
  // Sent after everything above, on the same connections: once these are answered, the rest
  // has been delivered wherever it could go.
  ASSERT_OK_AND_ASSIGN(after_a, a.request("hostint.wa.handshake", "{}", 2s));
  ASSERT_OK_AND_ASSIGN(after_node, (*internal)->request_agent("wa", "agentint.wa.ping", "", 2s));
  EXPECT_EQ(after_node.data(), "pong-a");
  {
    std::lock_guard l(mu);
    EXPECT_EQ(std::count(node_got.begin(), node_got.end(), "hostint.wb.logs"), 0)
        << "workload A published as workload B";
  }
  for (auto& s : steals) EXPECT_EQ(s.pending(), 0u) << "workload A received B's traffic";
  // And a workload cannot talk to the control plane, which answers others.
  auto ctrl = a.request("$NEX.PING", "", 500ms);
  EXPECT_FALSE(ctrl) << "workload A reached $NEX.PING: " << ctrl->data();

  // Replying to a plain request (an _INBOX subject) is not something an agent may do: B
  // answers on agentint.wb.ping, but the answer cannot reach an inbox the node did not make
  // for it.
  EXPECT_FALSE(node_conn.request("agentint.wb.ping", "", 500ms));

  (*internal)->remove_workload("wa");
  internal->reset();
  fs::remove_all(dir);
}

TEST(InternalServerIsolation, AgentRepliesSurviveConfigurationReloads) {
  // nats-server 2.9.10 forgets allow_responses state on reload; agents' replies must not
  // depend on it (about one request in five failed across reloads before).
  NEX_REQUIRE_NATS_SERVER();
  const fs::path dir = fs::temp_directory_path() / ("nex-reload-" + std::to_string(getpid()));
  auto internal = InternalServer::start(dir, "127.0.0.1");
  ASSERT_TRUE(internal) << internal.error().message;
  ASSERT_OK_AND_ASSIGN(seeds, (*internal)->add_workloads({"steady"}));
  const std::string url = "nats://127.0.0.1:" + std::to_string((*internal)->port());
  Result<nats::Connection> agent = fail(ErrorCode::kUnavailable, "");
  for (int i = 0; i < 100 && !agent; ++i) {
    agent = nats::Connection::connect(
        {.urls = {url}, .nkey_seed = seeds.at("steady"), .inbox_prefix = inbox_prefix("steady")});
    if (!agent) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(agent) << agent.error().message;
  ASSERT_OK_AND_ASSIGN(sub, agent->subscribe("agentint.steady.ping", [&](nats::Message m) {
    (void)agent->publish(m.reply(), "pong");
  }));
  ASSERT_OK(agent->flush());
  int failures = 0;
  for (int i = 0; i < 150; ++i) {
    const std::string other = "churn" + std::to_string(i);
    ASSERT_OK((*internal)->add_workloads({other}));
    if (i % 2) std::this_thread::sleep_for(2ms);
    auto r = (*internal)->request_agent("steady", "agentint.steady.ping", "", 1s);
    failures += !r;
    ASSERT_OK((*internal)->remove_workload(other));
  }
  EXPECT_EQ(failures, 0);
  internal->reset();
  fs::remove_all(dir);
}

TEST_F(NodeTest, AutostartDeploysConfiguredWorkloads) {
  // The environment is sealed to the node's xkey, so learn it from a first start.
  start_node();
  const std::string xkey = node_->xkey();
  node_.reset();
  auto sealed = publisher_.seal(
      as_bytes(json{{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.auto"}}.dump()), xkey);
  auto req = api::parse_deploy_request(json{
      {"type", "native"},
      {"location", "nats://NEXCLIFILES/echoservice"},
      {"workload_jwt", jwt_for("autoecho", issuer_)},
      {"environment", base64_encode(*sealed, Base64::kStandard)},
      {"sender_public_key", publisher_.public_key()},
      {"workload_name", "autoecho"}}.dump());
  ASSERT_TRUE(req) << req.error().message;
  NodeConfig config;
  config.autostart = {*req};
  start_node(config);
  EXPECT_TRUE(echo_answers("svc.echo.auto"));
  json in = info();
  ASSERT_EQ(in["data"]["machines"].size(), 1u) << in.dump();
  EXPECT_EQ(in["data"]["machines"][0]["workload"]["name"], "autoecho");
}

TEST_F(NodeTest, IdentityPersistsAndOneNodePerStateDirectory) {
  start_node();
  const std::string first_id = node_->id();
  const std::string first_xkey = node_->xkey();
  auto second = Node::start({.config = {.no_sandbox = true},
                             .control = {.urls = {server().url()}},
                             .state_dir = state_dir_});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("another nex node (pid " + std::to_string(getpid()) +
                                        ") is running"),
            std::string::npos)
      << second.error().message;
  node_.reset();
  EXPECT_EQ(fs::status(state_dir_ / "node.nk").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  start_node();
  EXPECT_EQ(node_->id(), first_id);
  EXPECT_EQ(node_->xkey(), first_xkey);
  EXPECT_EQ(first_id[0], 'N');
}

TEST_F(NodeTest, EssentialWorkloadIsRestartedWithBackoffThenReportedAsCrashLoop) {
  start_node();
  Collector events(*conn_, "$NEX.events.default.*");
  // The echo service exits with status 1 when it cannot reach NATS.
  json req = deploy_request("crasher", {{"NATS_URL", "nats://127.0.0.1:1"}});
  req["essential"] = true;
  const auto start = std::chrono::steady_clock::now();
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto crash = events.wait_for("workload_crash_loop", 30s);
  ASSERT_TRUE(crash) << "no crash-loop event";
  const auto elapsed = std::chrono::steady_clock::now() - start;
  json data = json::parse(crash->second)["data"];
  EXPECT_EQ(data["workload_name"], "crasher");
  EXPECT_EQ(data["restarts"], 5);
  EXPECT_EQ(data["code"], 1);
  // Backoff 250 ms + 500 ms + 1 s + 2 s + 4 s: not retried at full speed.
  EXPECT_GE(elapsed, 7s);
  auto undeployed = events.wait_for("workload_undeployed");
  ASSERT_TRUE(undeployed);
  EXPECT_EQ(json::parse(undeployed->second)["data"]["code"], 1);
  EXPECT_EQ(info()["data"]["machines"].size(), 0u);
}

TEST_F(NodeTest, NonEssentialExitIsReportedWithItsCode) {
  start_node();
  Collector events(*conn_, "$NEX.events.default.*");
  Collector logs(*conn_, "$NEX.logs.default.*.oneshot.*");
  json r = deploy(deploy_request("oneshot", {{"NATS_URL", "nats://127.0.0.1:1"}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto undeployed = events.wait_for("workload_undeployed");
  ASSERT_TRUE(undeployed);
  json d = json::parse(undeployed->second)["data"];
  EXPECT_EQ(d["code"], 1);
  EXPECT_EQ(d["workload_name"], "oneshot");
  EXPECT_NE(d["message"].get<std::string>().find("exited with code 1"), std::string::npos);
  // What it wrote to stderr arrives as an error-level log line.
  auto err = logs.wait_for("cannot connect");
  ASSERT_TRUE(err);
  EXPECT_EQ(json::parse(err->second)["level"], "error");
}

TEST_F(NodeTest, PingAuctionWpingAndLameDuck) {
  NodeConfig config;
  config.workload_types = {api::WorkloadType::kNative, api::WorkloadType::kJavaScript};
  start_node(config);  // this node does not take wasm, so it does not bid for it
  json ping = control("$NEX.PING", "");
  EXPECT_EQ(ping["type"], "io.nats.nex.v1.ping_response");
  EXPECT_EQ(ping["data"]["node_id"], node_->id());
  EXPECT_EQ(ping["data"]["target_xkey"], node_->xkey());
  EXPECT_EQ(ping["data"]["tags"]["nex.os"], "linux");
  EXPECT_EQ(ping["data"]["tags"]["nex.unsafe"], "true");
  EXPECT_EQ(control("$NEX.PING." + node_->id(), "")["data"]["node_id"], node_->id());

  EXPECT_EQ(
      control("$NEX.AUCTION", R"({"os":"linux","workload_types":["native"]})")["data"]["node_id"],
      node_->id());
  for (const char* miss : {R"({"os":"windows"})", R"({"sandboxed":true})",
                           R"({"tags":{"zone":"mars"}})", R"({"workload_types":["wasm"]})"}) {
    EXPECT_TRUE(control("$NEX.AUCTION", miss, 300ms).contains("transport_error"))
        << "answered " << miss;
  }

  EXPECT_TRUE(
      control("$NEX.WPING.default", "", 300ms).contains("transport_error"));  // nothing running
  json r = deploy(deploy_request("echoservice", {{"NATS_URL", server().url()}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  json wping = control("$NEX.WPING.default.echoservice", "");
  ASSERT_EQ(wping["data"]["running_machines"].size(), 1u) << wping.dump();
  EXPECT_EQ(wping["data"]["running_machines"][0]["id"], r["data"]["id"]);
  EXPECT_TRUE(control("$NEX.WPING.other", "", 300ms).contains("transport_error"));

  json duck = control("$NEX.LAMEDUCK." + node_->id(), lameduck_request().dump());
  EXPECT_EQ(duck["data"]["success"], true);
  EXPECT_EQ(control("$NEX.PING", "")["data"]["tags"]["nex.lameduck"], "true");
  json refused = deploy(deploy_request("late", {{"NATS_URL", server().url()}}));
  EXPECT_NE(refused["error"].get<std::string>().find("lame duck"), std::string::npos)
      << refused.dump();
  EXPECT_EQ(info()["data"]["machines"].size(), 1u);  // running workloads keep running
}

TEST_F(NodeTest, GracefulStopUndeploysEverythingAndCleansUp) {
  Collector events(*conn_, "$NEX.events.>");
  start_node();
  auto started = events.wait_for("node_started");
  ASSERT_TRUE(started);
  EXPECT_EQ(started->first, "$NEX.events.system.node_started");
  EXPECT_EQ(json::parse(started->second)["data"]["id"], node_->id());
  json r = deploy(deploy_request(
      "echoservice", {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.graceful"}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  ASSERT_TRUE(echo_answers("svc.echo.graceful"));
  node_->stop();
  auto stopped = events.wait_for("node_stopped");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(json::parse(stopped->second)["data"]["graceful"], true);
  EXPECT_TRUE(events.wait_for("workload_undeployed"));
  EXPECT_TRUE(nothing_answers("svc.echo.graceful"));
  EXPECT_EQ(processes_running(state_dir_.string()), 0);
  EXPECT_EQ(processes_running("nex-agent", state_dir_.string()), 0);
  EXPECT_FALSE(fs::exists(state_dir_ / "run"));
}

TEST_F(NodeTest, NothingOutlivesANodeKilledWithSigkill) {
  // The process driver, named: without a config the node would pick the namespace sandbox on
  // a host prepared with `nex node preflight --init`, whose workloads this test cannot see by
  // their command lines (sandbox_test covers a sandboxed node's death).
  const std::string config = state_dir_.string() + ".json";
  { std::ofstream(config) << R"({"no_sandbox": true})"; }
  auto node =
      Subprocess::spawn({.argv = {(kBinDir / "nex").string(), "node", "up", "-s", server().url(),
                                  "--config", config, "--state-dir", state_dir_.string()},
                         .stdout_path = (state_dir_.string() + ".log"),
                         .stderr_path = (state_dir_.string() + ".log")});
  ASSERT_TRUE(node) << node.error().message;
  // Find it, deploy the echo service to it, and check it answers.
  const std::string node_id = wait_for_pinged_node();
  ASSERT_FALSE(node_id.empty()) << slurp(state_dir_.string() + ".log");
  const std::string xkey = control("$NEX.PING." + node_id, "")["data"]["target_xkey"];
  json req = deploy_request_to(node_id, xkey, "echoservice",
                               {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.kill"}});
  json r = control("$NEX.DEPLOY.default." + node_id, signed_deploy(req).dump());
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  ASSERT_TRUE(echo_answers("svc.echo.kill"));
  ASSERT_GT(processes_running(state_dir_.string()), 0);

  ASSERT_TRUE(node->signal(SIGKILL));
  node->wait_for(5s);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline &&
         (processes_running(state_dir_.string()) > 0 ||
          processes_running("nex-agent", state_dir_.string()) > 0)) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(processes_running(state_dir_.string()), 0) << "a workload outlived the node";
  EXPECT_EQ(processes_running("nex-agent", state_dir_.string()), 0) << "an agent outlived the node";
  EXPECT_TRUE(nothing_answers("svc.echo.kill"));
  fs::remove(state_dir_.string() + ".log");
  fs::remove(config);
}

// A node killed with SIGKILL, or stopped, comes back with its workloads (native, JavaScript,
// WebAssembly); one that was stopped on purpose stays stopped.
TEST_F(NodeTest, ARestartedNodeBringsBackItsWorkloadsButNotAStoppedOne) {
  const fs::path wasm = fs::path(NEX_WASM_DIR) / "echo.wasm";
  if (!fs::exists(wasm)) GTEST_SKIP() << "no " << wasm << " (clang for wasm32-wasi is missing)";
  ASSERT_OK(files_->put_file("restore.js", fs::path(NEX_EXAMPLES_DIR) / "echofunction/echo.js"));
  ASSERT_OK(files_->put_file("restore.wasm", wasm));
  const std::string config = state_dir_.string() + ".json";
  { std::ofstream(config) << R"({"no_sandbox": true})"; }
  const std::string log = state_dir_.string() + ".log";
  auto start = [&] {
    auto p =
        Subprocess::spawn({.argv = {(kBinDir / "nex").string(), "node", "up", "-s", server().url(),
                                    "--config", config, "--state-dir", state_dir_.string()},
                           .stdout_path = log,
                           .stderr_path = log});
    EXPECT_TRUE(p) << p.error().message;
    return std::move(*p);
  };
  auto answers = [&](const std::string& subject, const std::string& body,
                     const std::string& expected) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = conn_->request(subject, body, 500ms);
      if (r && r->data() == expected) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };
  auto all_answer = [&] {
    return std::vector<bool>{answers("svc.echo.restore", "native", "native"),
                             answers("js.restore", "heya", "heya"),
                             answers("wasm.restore", "hello", "hellowasm.restore")};
  };

  Subprocess node = start();
  const std::string node_id = wait_for_pinged_node();
  ASSERT_FALSE(node_id.empty()) << slurp(log);
  const std::string xkey = control("$NEX.PING." + node_id, "")["data"]["target_xkey"];
  json native =
      deploy_request_to(node_id, xkey, "echoservice",
                        {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.restore"}});
  json js = deploy_request_to(node_id, xkey, "echojs");
  js["type"] = "v8";
  js["location"] = "nats://NEXCLIFILES/restore.js";
  js["trigger_subjects"] = {"js.restore"};
  json wa = deploy_request_to(node_id, xkey, "echowasm");
  wa["type"] = "wasm";
  wa["location"] = "nats://NEXCLIFILES/restore.wasm";
  wa["trigger_subjects"] = {"wasm.restore"};
  for (const json* req : {&native, &js, &wa}) {
    json r = control("$NEX.DEPLOY.default." + node_id, signed_deploy(*req).dump());
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }
  ASSERT_EQ(all_answer(), (std::vector<bool>{true, true, true}));

  Collector events(*conn_, "$NEX.events.>");
  ASSERT_TRUE(node.signal(SIGKILL));
  node.wait_for(5s);
  node = start();
  EXPECT_EQ(wait_for_pinged_node(), node_id);  // the same identity
  EXPECT_EQ(all_answer(), (std::vector<bool>{true, true, true})) << slurp(log);
  EXPECT_EQ(events.wait_for_count("\"restored\":true", 3), 3u);

  // Stopped on purpose: it stays stopped through the next restart (a graceful one this time).
  std::string native_id;
  const json info = control("$NEX.INFO.default." + node_id, "");
  for (const auto& m : info["data"]["machines"]) {
    if (m["workload"]["name"] == "echoservice") native_id = m["id"];
  }
  ASSERT_FALSE(native_id.empty()) << info.dump();
  json stopped =
      control("$NEX.STOP.default." + node_id,
              stop_request(node_id, native_id, "echoservice", "default", issuer_).dump());
  ASSERT_TRUE(stopped["error"].is_null()) << stopped.dump();
  node.terminate(15s);
  node = start();
  ASSERT_EQ(wait_for_pinged_node(), node_id);
  EXPECT_TRUE(answers("js.restore", "again", "again"));
  EXPECT_TRUE(answers("wasm.restore", "hello", "hellowasm.restore"));
  json machines = control("$NEX.INFO.default." + node_id, "")["data"]["machines"];
  EXPECT_EQ(machines.size(), 2u) << machines.dump();
  for (const auto& m : machines) EXPECT_NE(m["workload"]["name"], "echoservice");
  node.terminate(15s);
  fs::remove(config);
  fs::remove(log);
}

}  // namespace
}  // namespace nex::node
