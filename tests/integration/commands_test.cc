// Durable commands end to end, as a user runs them: real nats-server processes (a hub with
// JetStream, and a leaf server for the edge), nodes run as `nex node up` processes (so they can be
// killed), and the `nex cmd` CLI. What is asserted is what the sender and the node's operator
// see: results and exit codes, the order in the node's audit log, files a command wrote.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "commands/command.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "core/subprocess.h"
#include "crypto/nkeys.h"
#include "crypto/xkeys.h"
#include "nats/connection.h"
#include "nats/jetstream.h"
#include "nats/key_value.h"
#include "nats/local_server.h"
#include "nats/object_store.h"
#include "testing/nats_server_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ::nex::testing::slurp;
using nlohmann::json;

const fs::path kBinDir = fs::path(NEX_BINARY).parent_path();

struct CliResult {
  int code;
  std::string out;  // stdout
  std::string err;  // stderr
};

// One node process (`nex node up`), killed with SIGKILL or stopped with SIGTERM.
struct NodeProcess {
  Subprocess process;
  fs::path log;
};

// A small tmpfs the test mounts (as root), to fill up as a full disk; unmounted when it goes.
// `error` says why it could not be mounted (the test then skips).
struct SmallDisk {
  fs::path dir;
  std::string error;
  explicit SmallDisk(fs::path where, const std::string& size = "512k") : dir(std::move(where)) {
    fs::create_directories(dir);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0)
      error = std::string("cannot mount a tmpfs: ") + std::strerror(errno);
  }
  ~SmallDisk() {
    if (error.empty()) ::umount2(dir.c_str(), MNT_DETACH);
  }
  // Takes every byte left on it.
  void fill() const {
    std::ofstream out(dir / "filler", std::ios::binary);
    const std::string block(4096, 'x');
    while (out.write(block.data(), block.size())) out.flush();
  }
  void free_space() const { fs::remove(dir / "filler"); }
};

// Every line of an audit log that is not a whole JSON object.
std::vector<std::string> broken_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!json::parse(line, nullptr, false).is_object()) out.push_back(line);
  }
  if (!text.empty() && text.back() != '\n') out.push_back("(no newline at the end)");
  return out;
}

// GET the node's /metrics as a scraper does (curl), from the URL its log names.
std::string scrape(const fs::path& node_log) {
  std::smatch m;
  const std::string log = slurp(node_log);
  if (!std::regex_search(log, m, std::regex("Serving Prometheus metrics on (http://[^ \n]+)")))
    return "";
  const fs::path out = node_log.string() + ".metrics";
  auto p = Subprocess::spawn({.argv = {"curl", "-s", m[1]}, .stdout_path = out.string()});
  if (!p || !p->wait_for(10s)) return "";
  return slurp(out);
}

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("nex-commands-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::create_directories(dir_ / "home/.nex");
    { std::ofstream(dir_ / "home/.nex/issuer.nk") << issuer_.seed() << "\n"; }
    fs::permissions(dir_ / "home/.nex/issuer.nk", fs::perms::owner_read | fs::perms::owner_write);
    hub_config_ = dir_ / "hub.conf";
    write_hub_config("127.0.0.1:-1");
    auto hub = nats::LocalNatsServer::start(
        {.store_dir = dir_ / "hub-js", .work_dir = dir_ / "hub", .config_file = hub_config_});
    ASSERT_TRUE(hub) << hub.error().message;
    hub_ = std::make_unique<nats::LocalNatsServer>(std::move(*hub));
    // The port it chose for leaf nodes; restarts listen there again.
    std::smatch m;
    const std::string log = slurp(hub_->log_file());
    ASSERT_TRUE(std::regex_search(
        log, m, std::regex("Listening for leafnode connections on ([0-9.]+:[0-9]+)")))
        << log;
    leafnode_listen_ = m[1];
    write_hub_config(leafnode_listen_);
  }

  void TearDown() override {
    nodes_.clear();
    leaf_.reset();
    hub_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void write_hub_config(const std::string& leaf_listen) {
    std::ofstream(hub_config_) << "jetstream { domain: hub }\nleafnodes { listen: \"" << leaf_listen
                               << "\" }\n";
  }

  // A leaf server without JetStream, linked to the hub (the edge site's local server).
  void start_leaf() {
    const fs::path conf = dir_ / "leaf.conf";
    std::ofstream(conf) << "leafnodes { remotes: [ { url: \"nats-leaf://" << leafnode_listen_
                        << "\" } ] }\n";
    auto leaf = nats::LocalNatsServer::start(
        {.jetstream = false, .work_dir = dir_ / "leaf", .config_file = conf});
    ASSERT_TRUE(leaf) << leaf.error().message;
    leaf_ = std::make_unique<nats::LocalNatsServer>(std::move(*leaf));
  }

  // The node config: cliCommand enabled for `allow`, our issuer trusted.
  json node_config(const std::string& name, const std::vector<std::string>& allow = {"echo"}) {
    json c = {{"node_name", name},
              {"no_sandbox", true},
              {"valid_issuers", {issuer_.public_key()}},
              {"commands", {{"jetstream_domain", "hub"}}}};
    if (!allow.empty()) c["commands"]["cli_command"] = {{"enabled", true}, {"allow", allow}};
    return c;
  }

  fs::path state_dir(const std::string& name) { return dir_ / ("node-" + name); }

  // Starts `nex node up` for `config` on `url` (the hub's by default) and waits until it takes
  // commands.
  NodeProcess& start_node(const json& config, std::string url = {},
                          const std::vector<std::string>& extra_args = {}) {
    const std::string name = config["node_name"];
    const fs::path conf = dir_ / (name + ".json");
    std::ofstream(conf) << config.dump();
    static int n = 0;
    const fs::path log = dir_ / (name + "-" + std::to_string(++n) + ".log");
    std::vector<std::string> argv = {NEX_BINARY,    "-s",          url.empty() ? hub_->url() : url,
                                     "node",        "up",          "--config",
                                     conf.string(), "--state-dir", state_dir(name).string()};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    auto p = Subprocess::spawn({.argv = argv,
                                .env = {"HOME=" + (dir_ / "home").string()},
                                .stdout_path = log.string(),
                                .stderr_path = log.string()});
    EXPECT_TRUE(p) << p.error().message;
    nodes_.push_back(std::make_unique<NodeProcess>(NodeProcess{std::move(*p), log}));
    for (int i = 0; i < 200 && slurp(log).find("awaiting commands") == std::string::npos; ++i)
      std::this_thread::sleep_for(50ms);
    EXPECT_NE(slurp(log).find("Taking durable commands"), std::string::npos) << slurp(log);
    // Its record in the directory, which readers check its results against, is filed.
    EXPECT_TRUE(eventually([&] { return !filed_record(name).empty(); })) << slurp(log);
    return *nodes_.back();
  }

  // Runs `nex ARGS...` as the user, against the hub unless ARGS say otherwise.
  CliResult nex(std::vector<std::string> args, std::chrono::seconds limit = 60s) {
    static int n = 0;
    const std::string stem = (dir_ / ("cli-" + std::to_string(++n))).string();
    if (args.empty() || args[0] != "-s") args.insert(args.begin(), {"-s", hub_->url()});
    args.insert(args.begin(), NEX_BINARY);
    auto p = Subprocess::spawn({.argv = args,
                                .env = {"HOME=" + (dir_ / "home").string()},
                                .stdout_path = stem + ".out",
                                .stderr_path = stem + ".err"});
    if (!p) return {-1, "", p.error().message};
    auto st = p->wait_for(limit);
    return {st ? WEXITSTATUS(*st) : -1, slurp(stem + ".out"), slurp(stem + ".err")};
  }

  // The ids `nex cmd send --no-wait` printed, one a line.
  static std::vector<std::string> ids_in(const std::string& out) {
    std::vector<std::string> ids;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) ids.push_back(line);
    }
    return ids;
  }

  // The node's audit log: the ids of final results of `status`, in the order they were filed.
  std::vector<std::string> audited(const std::string& node, const std::string& status = "done") {
    std::vector<std::string> out;
    std::istringstream in(slurp(state_dir(node) / "commands/audit.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line, nullptr, false);
      if (j.value("audit", "") == "result" && j.value("status", "") == status)
        out.push_back(j.value("id", ""));
    }
    return out;
  }

  // Waits until `node` has taken a command and filed `received` for it (it runs now).
  void wait_until_running(const std::string& node) {
    for (int i = 0; i < 200; ++i) {
      if (slurp(state_dir(node) / "commands/audit.jsonl").find("\"received\"") != std::string::npos)
        return;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << node << " did not start the command";
  }

  // Waits for the final result of `id` with `nex cmd result --json`.
  json result(const std::string& id, int wait_s = 30) {
    auto r = nex({"cmd", "result", id, "--wait", std::to_string(wait_s), "--json"});
    auto j = json::parse(r.out, nullptr, false);
    for (const auto& e : j.is_array() ? j : json::array()) {
      if (commands::is_final(e.value("status", "received"))) return e;
    }
    return json{{"status", "none"}, {"cli", r.out + r.err}};
  }

  // What `name` filed in NEX_NODES, as it is there now ("" when nothing).
  std::string filed_record(const std::string& name) {
    auto conn = nats::Connection::connect({.urls = {hub_->url()}});
    if (!conn) return "";
    auto js = nats::JetStream::create(*conn);
    if (!js) return "";
    auto kv = nats::KeyValue::bind(*js, "NEX_NODES");
    if (!kv) return "";
    auto entry = kv->get(name);
    return entry ? entry->value : "";
  }

  // The hub's JetStream, as anyone with a login may use it.
  nats::JetStream hub_js() {
    auto conn = nats::Connection::connect({.urls = {hub_->url()}});
    EXPECT_TRUE(conn) << conn.error().message;
    auto js = nats::JetStream::create(*conn);
    EXPECT_TRUE(js) << js.error().message;
    return std::move(*js);
  }

  // Files `body` on `subject` of a stream, as anyone who may publish there can.
  void publish(const std::string& subject, const std::string& body, const std::string& msg_id) {
    auto msg = nats::Message::create(subject, body);
    ASSERT_TRUE(msg);
    ASSERT_OK(msg->set_header("Nats-Msg-Id", msg_id));
    ASSERT_OK(hub_js().publish(*msg));
  }

  // A stream's config and state as the server reports them ($JS.API.STREAM.INFO).
  json stream_info(const std::string& stream) {
    auto conn = nats::Connection::connect({.urls = {hub_->url()}});
    EXPECT_TRUE(conn);
    auto r = conn->request("$JS.API.STREAM.INFO." + stream, "", 5s);
    EXPECT_TRUE(r) << r.error().message;
    return r ? json::parse(r->data(), nullptr, false) : json();
  }
  uint64_t stored(const std::string& stream) {
    return stream_info(stream)["state"].value("messages", uint64_t{0});
  }

  // A message as the protocol defines it: its JSON without "signature", keys sorted, no spaces,
  // signed with `key`.
  static json signed_message(json m, const crypto::KeyPair& key) {
    m["issuer"] = key.public_key();
    m.erase("signature");
    m["signature"] = base64_encode(key.sign(as_bytes(m.dump())), Base64::kUrlNoPad);
    return m;
  }
  // A cliCommand for `node` sent now, living an hour (fields may be changed before signing).
  // Every field a sender writes is there: the signature covers the message as the node writes
  // it back.
  static json cli_command(const std::string& id, const std::string& node,
                          std::vector<std::string> argv) {
    const auto now = std::chrono::system_clock::now();
    return {{"id", id},
            {"toNode", node},
            {"commandOrEvent", "command"},
            {"method", "cliCommand"},
            {"data", argv},
            {"methodTimeout", 0},
            {"retries", 2},
            {"ACKTimeout", 5},
            {"fromNode", "test"},
            {"sentAt", rfc3339_nano(now)},
            {"expiresAt", rfc3339_nano(now + 1h)}};
  }
  void file_command(const json& signed_msg, const std::string& msg_id = {}) {
    publish(
        "$NEX.cmd." + signed_msg.value("toNode", "") + ".command." + signed_msg.value("method", ""),
        signed_msg.dump(), msg_id.empty() ? signed_msg.value("id", "") : msg_id);
  }

  // Waits up to 10 s for `done` to hold (what a node does after filing a result, say).
  static bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 200; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return done();
  }

  // A directory that commands, run as nobody when the node is root, may write to.
  fs::path shared_dir() {
    fs::create_directories(dir_ / "shared");
    fs::permissions(dir_ / "shared", fs::perms::all);
    return dir_ / "shared";
  }

  fs::path dir_;
  fs::path hub_config_;
  std::string leafnode_listen_;  // host:port
  crypto::KeyPair issuer_ = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  std::unique_ptr<nats::LocalNatsServer> hub_;
  std::unique_ptr<nats::LocalNatsServer> leaf_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(CommandsTest, CommandsSentBeforeTheNodeEverStartedRunInOrderAndReachALateSender) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto sent = nex({"cmd", "send", "edge1", "--no-wait", "--", "echo", "n" + std::to_string(i)});
    ASSERT_EQ(sent.code, 0) << sent.err;
    ids.push_back(ids_in(sent.out).at(0));
  }
  auto pending = nex({"cmd", "ls", "--node", "edge1", "--status", "pending", "--json"});
  EXPECT_EQ(json::parse(pending.out).size(), 20u) << pending.out;

  start_node(node_config("edge1"));
  // The sender comes back only now, and reads every result.
  for (int i = 0; i < 20; ++i) {
    json r = result(ids[i]);
    EXPECT_EQ(r.value("status", ""), "done") << r.dump();
    EXPECT_EQ(r.value("stdout", ""), "n" + std::to_string(i) + "\n");
    EXPECT_EQ(r.value("exit_code", -1), 0);
  }
  EXPECT_EQ(audited("edge1"), ids);  // run in the order sent, each once
  auto done = nex({"cmd", "ls", "--node", "edge1", "--status", "done", "--json"});
  EXPECT_EQ(json::parse(done.out).size(), 20u);
}

TEST_F(CommandsTest, SendWaitsPrintsTheOutputAndExitsWithTheCommandsCode) {
  start_node(node_config("edge1", {"echo", "sh"}));
  auto ok = nex({"cmd", "send", "edge1", "--", "echo", "hello", "edge"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(ok.out, "hello edge\n");
  auto bad = nex({"cmd", "send", "edge1", "--", "sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(bad.code, 3);
  EXPECT_EQ(bad.out, "out\n");
  EXPECT_NE(bad.err.find("err\n"), std::string::npos) << bad.err;
  auto slow = nex({"cmd", "send", "edge1", "--timeout", "1", "--", "sh", "-c", "sleep 30"});
  EXPECT_NE(slow.code, 0);
  EXPECT_NE(slow.err.find("timeout on edge1"), std::string::npos) << slow.err;
  auto hello = nex({"cmd", "send", "edge1", "--method", "hello"});
  EXPECT_EQ(hello.code, 0);
  EXPECT_NE(hello.out.find("hello from edge1 (N"), std::string::npos) << hello.out;
}

TEST_F(CommandsTest, OneCommandToSeveralNodesRunsOnEachAndNodesAreListedByName) {
  start_node(node_config("edge1"));
  start_node(node_config("edge2"));
  auto ls = nex({"node", "ls"});
  EXPECT_NE(ls.out.find("edge1"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("edge2"), std::string::npos) << ls.out;
  auto both = nex({"cmd", "send", "edge1,edge2", "--", "echo", "hi"});
  EXPECT_EQ(both.code, 0) << both.err;
  EXPECT_NE(both.out.find("[edge1] hi\n"), std::string::npos) << both.out;
  EXPECT_NE(both.out.find("[edge2] hi\n"), std::string::npos) << both.out;
  EXPECT_EQ(audited("edge1").size(), 1u);
  EXPECT_EQ(audited("edge2").size(), 1u);
  // By id, as the directory knows it.
  auto info = json::parse(nex({"node", "ls", "--json"}).out);
  std::string edge2_id;
  for (const auto& n : info) {
    if (n["tags"].value("node_name", "") == "edge2") edge2_id = n.value("node_id", "");
  }
  ASSERT_FALSE(edge2_id.empty());
  auto by_id = nex({"cmd", "send", edge2_id, "--", "echo", "by-id"});
  EXPECT_EQ(by_id.out, "by-id\n") << by_id.err;
}

TEST_F(CommandsTest, ANodeOfflineNowIsSaidToBeSoAndTheResultComesLater) {
  auto sent = nex({"cmd", "send", "edge9", "--wait", "2", "--", "echo", "later"});
  EXPECT_EQ(sent.code, 1);
  EXPECT_NE(sent.err.find("Node edge9 has not taken it yet (it may be offline)"), std::string::npos)
      << sent.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(sent.err, m, std::regex("`nex cmd result ([A-Za-z0-9]+)`")))
      << sent.err;
  const std::string id = m[1];
  start_node(node_config("edge9"));
  auto later = nex({"cmd", "result", id, "--wait", "30"});
  EXPECT_EQ(later.code, 0) << later.err;
  EXPECT_EQ(later.out, "later\n");
}

TEST_F(CommandsTest, AnEdgeNodeBehindALeafGetsCommandsSentWhileTheHubWasDownExactlyOnceInOrder) {
  start_leaf();
  start_node(node_config("ship1"), leaf_->url());
  auto first = nex({"cmd", "send", "ship1", "--", "echo", "before"});
  ASSERT_EQ(first.code, 0) << first.err;

  hub_->stop();
  const fs::path batch = dir_ / "batch.json";
  json msgs = json::array();
  for (int i = 0; i < 5; ++i) {
    msgs.push_back({{"toNode", "ship1"},
                    {"data", {"echo", "during-" + std::to_string(i)}},
                    {"commandOrEvent", "command"},
                    {"method", "cliCommand"}});
  }
  std::ofstream(batch) << msgs.dump();
  // The sender keeps trying while the hub is away, and says so.
  const fs::path out = dir_ / "sender.out", err = dir_ / "sender.err";
  auto sender = Subprocess::spawn({.argv = {NEX_BINARY, "-s", hub_->url(), "cmd", "send", "--file",
                                            batch.string(), "--no-wait"},
                                   .env = {"HOME=" + (dir_ / "home").string()},
                                   .stdout_path = out.string(),
                                   .stderr_path = err.string()});
  ASSERT_TRUE(sender) << sender.error().message;
  for (int i = 0; i < 300 && slurp(err).find("trying again") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(slurp(err).find("trying again for up to"), std::string::npos) << slurp(err);
  ASSERT_OK(hub_->restart());
  auto status = sender->wait_for(60s);
  ASSERT_TRUE(status) << "nex cmd send did not end after the hub came back: " << slurp(err);
  ASSERT_EQ(WEXITSTATUS(*status), 0) << slurp(err);
  const auto ids = ids_in(slurp(out));
  ASSERT_EQ(ids.size(), 5u) << slurp(out);
  for (int i = 0; i < 5; ++i) {
    json r = result(ids[i]);
    EXPECT_EQ(r.value("stdout", ""), "during-" + std::to_string(i) + "\n") << r.dump();
  }
  auto done = audited("ship1");
  ASSERT_EQ(done.size(), 6u);  // "before" and the five, each once
  EXPECT_EQ(std::vector<std::string>(done.begin() + 1, done.end()), ids);
}

// On the edge site's leaf server, which has no JetStream of its own, --js-domain reaches the
// hub's: commands go through it to a node on the same leaf.
TEST_F(CommandsTest, ASenderOnALeafReachesTheHubsJetStreamWithJsDomain) {
  start_leaf();
  start_node(node_config("ship1"), leaf_->url());
  auto sent = nex({"-s", leaf_->url(), "--js-domain", "hub", "cmd", "send", "ship1", "--", "echo",
                   "via the leaf"});
  EXPECT_EQ(sent.code, 0) << sent.out << sent.err;
  EXPECT_NE(sent.out.find("via the leaf"), std::string::npos) << sent.out << sent.err;
  auto without = nex({"-s", leaf_->url(), "--timeout", "1", "cmd", "send", "ship1", "--no-wait",
                      "--", "echo", "lost"},
                     15s);
  EXPECT_NE(without.code, 0) << without.out << without.err;
}

TEST_F(CommandsTest, ANodeKilledDuringACommandRunsItAgainFirstAfterItsRestart) {
  auto& node = start_node(node_config("edge1", {"sh", "echo"}));
  // The first attempt would run for a minute; the second, after the restart, is quick.
  auto slow = nex({"cmd", "send", "edge1", "--no-wait", "--", "sh", "-c",
                   "if [ \"$NEX_COMMAND_ATTEMPT\" = 1 ]; then sleep 60; fi; echo slow"});
  const std::string slow_id = ids_in(slow.out).at(0);
  auto next = nex({"cmd", "send", "edge1", "--no-wait", "--", "echo", "next"});
  const std::string next_id = ids_in(next.out).at(0);
  wait_until_running("edge1");
  node.process.signal(SIGKILL);
  node.process.wait_for(5s);

  start_node(node_config("edge1", {"sh", "echo"}));
  json r = result(slow_id);
  EXPECT_EQ(r.value("status", ""), "done") << r.dump();
  EXPECT_EQ(r.value("attempt", 0), 2);
  EXPECT_EQ(r.value("stdout", ""), "slow\n");
  json n = result(next_id);
  EXPECT_EQ(n.value("attempt", 0), 1);
  EXPECT_EQ(audited("edge1"), (std::vector<std::string>{slow_id, next_id}));
  // Nothing of the first attempt is left running (its sleep outlived its shell, which died with
  // the node).
  int leftovers = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    if (slurp(e.path() / "environ").find("NEX_COMMAND_ID=" + slow_id) != std::string::npos)
      ++leftovers;
  }
  EXPECT_EQ(leftovers, 0);
}

TEST_F(CommandsTest, ANodeStoppedDuringACommandHandsItBackAndRunsItWhenItReturns) {
  auto& node = start_node(node_config("edge1", {"sh"}));
  auto slow = nex({"cmd", "send", "edge1", "--no-wait", "--", "sh", "-c",
                   "if [ \"$NEX_COMMAND_ATTEMPT\" = 1 ]; then sleep 60; fi; echo back"});
  const std::string id = ids_in(slow.out).at(0);
  wait_until_running("edge1");
  // A graceful stop does not wait out the minute: it stops the command and hands it back.
  const auto t = std::chrono::steady_clock::now();
  const int status = node.process.terminate(20s);
  EXPECT_LT(std::chrono::steady_clock::now() - t, 10s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(node.log);
  EXPECT_TRUE(audited("edge1").empty());  // no result was filed for the stopped attempt

  start_node(node_config("edge1", {"sh"}));
  json r = result(id);
  EXPECT_EQ(r.value("stdout", ""), "back\n") << r.dump();
  EXPECT_EQ(r.value("attempt", 0), 2);
}

TEST_F(CommandsTest, RefusedCommandsAreAnsweredWithTheReasonAndNeverRun) {
  start_node(node_config("edge1", {"touch"}));
  start_node(node_config("edge2", {}));  // cliCommand disabled
  const fs::path marker = shared_dir() / "ran";
  auto disabled = nex({"cmd", "send", "edge2", "--", "touch", marker.string()});
  EXPECT_EQ(disabled.code, 1);
  EXPECT_NE(disabled.err.find("refused on edge2: method cliCommand is disabled"), std::string::npos)
      << disabled.err;
  auto outside = nex({"cmd", "send", "edge1", "--", "rm", "-rf", marker.string()});
  EXPECT_EQ(outside.code, 1);
  EXPECT_NE(outside.err.find("command 'rm' is not in this node's commands.cli_command.allow"),
            std::string::npos)
      << outside.err;
  auto unknown = nex({"cmd", "send", "edge1", "--method", "format_disk"});
  EXPECT_NE(unknown.err.find("refused on edge1: this node has no method 'format_disk'"),
            std::string::npos)
      << unknown.err;
  EXPECT_FALSE(fs::exists(marker));
  // The same command, properly signed, does run: the refusals were the checks, not the setup.
  auto allowed = nex({"cmd", "send", "edge1", "--", "touch", marker.string()});
  EXPECT_EQ(allowed.code, 0) << allowed.err;
  EXPECT_TRUE(fs::exists(marker));
  // Each refused one was answered, then deleted: only the command that ran is kept.
  EXPECT_TRUE(eventually([&] { return stored("NEX_COMMANDS") == 1; }))
      << stream_info("NEX_COMMANDS").dump();
}

TEST_F(CommandsTest, AResultNotSignedByTheNodeItNamesIsIgnored) {
  {
    auto& node = start_node(node_config("edge1"));  // files its id in NEX_NODES
    node.process.terminate(10s);
  }
  auto sent = nex({"cmd", "send", "edge1", "--no-wait", "--", "echo", "real"});
  const std::string id = ids_in(sent.out).at(0);
  // Someone who may publish results, but is not edge1, files a success for it.
  auto conn = nats::Connection::connect({.urls = {hub_->url()}});
  ASSERT_TRUE(conn);
  auto js = nats::JetStream::create(*conn);
  ASSERT_TRUE(js);
  commands::CommandResult fake{.id = id,
                               .node = "edge1",
                               .method = "cliCommand",
                               .status = commands::status::kDone,
                               .exit_code = 0,
                               .stdout_text = "forged\n"};
  commands::sign(fake, *crypto::KeyPair::create(crypto::KeyType::kServer));
  ASSERT_OK(js->publish(commands::result_subject("edge1", id), commands::to_json(fake).dump()));
  auto early = nex({"cmd", "result", id, "--wait", "1"});
  EXPECT_EQ(early.code, 1);
  EXPECT_EQ(early.out.find("forged"), std::string::npos) << early.out;
  auto ls = json::parse(nex({"cmd", "ls", "--json"}).out);
  EXPECT_EQ(ls.at(0).value("status", ""), "pending") << ls.dump();

  start_node(node_config("edge1"));
  auto real = nex({"cmd", "result", id, "--wait", "30"});
  EXPECT_EQ(real.code, 0) << real.err;
  EXPECT_EQ(real.out, "real\n");
}

TEST_F(CommandsTest, AMessageWithAnIdAlreadyDoneIsNotRunAgain) {
  start_node(node_config("edge1"));
  const json c = signed_message(cli_command("once", "edge1", {"echo", "once"}), issuer_);
  // The same message filed twice past JetStream's duplicate window (another Nats-Msg-Id), as a
  // sender retrying much later would.
  for (const char* msg_id : {"once.edge1", "once.edge1.later"}) file_command(c, msg_id);
  EXPECT_EQ(result("once").value("stdout", ""), "once\n");
  // A later command ran, so the copy before it was handled.
  EXPECT_EQ(nex({"cmd", "send", "edge1", "--", "echo", "after"}).out, "after\n");
  EXPECT_EQ(audited("edge1"), (std::vector<std::string>{"once", audited("edge1").back()}));
  EXPECT_NE(slurp(state_dir("edge1") / "commands/audit.jsonl").find("\"audit\":\"duplicate\""),
            std::string::npos);
}

TEST_F(CommandsTest, Seed004MessagesWorkFromAFileAndThroughAnInbox) {
  start_node(node_config("ship1", {"bash"}));
  start_node(node_config("central", {}));
  // steward's examples, with our node names.
  const std::string shell = R"([
    {
        "toNode": "ship1",
        "data": ["bash","-c","ls -l ../"],
        "commandOrEvent":"command",
        "method":"shellCommand"
    }
])";
  const std::string event = R"([
    {
        "toNode": "central",
        "data": ["some message sent from a ship for testing\n"],
        "commandOrEvent":"event",
        "method":"textLogging"
    }
])";
  std::ofstream(dir_ / "shell.json") << shell;
  std::ofstream(dir_ / "event.json") << event;
  auto ls = nex({"cmd", "send", "--file", (dir_ / "shell.json").string()});
  EXPECT_EQ(ls.code, 0) << ls.err;
  EXPECT_NE(ls.out.find("total"), std::string::npos) << ls.out;  // ls -l's first line
  auto logged = nex({"cmd", "send", "--file", (dir_ / "event.json").string()});
  EXPECT_EQ(logged.code, 0) << logged.err;
  EXPECT_EQ(slurp(state_dir("central") / "commands/textlog.txt"),
            "some message sent from a ship for testing\n");

  // The inbox: appended messages are sent, the file emptied, the results printed.
  const fs::path inbox = dir_ / "inmsg.txt";
  const std::string stem = (dir_ / "inbox").string();
  auto watcher =
      Subprocess::spawn({.argv = {NEX_BINARY, "-s", hub_->url(), "cmd", "inbox", inbox.string()},
                         .env = {"HOME=" + (dir_ / "home").string()},
                         .stdout_path = stem + ".out",
                         .stderr_path = stem + ".err"});
  ASSERT_TRUE(watcher);
  // It says so once it follows the results (before, a result could come unseen).
  for (int i = 0; i < 200 && slurp(stem + ".err").find("Watching") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(slurp(stem + ".err").find("Watching"), std::string::npos) << slurp(stem + ".err");
  std::ofstream(inbox, std::ios::app) << shell;  // `cat myfile.json >> inmsg.txt`
  std::ofstream(inbox, std::ios::app) << event;
  std::string out;
  for (int i = 0; i < 200; ++i) {
    out = slurp(stem + ".out");
    if (out.find("from ship1: done") != std::string::npos &&
        out.find("from central: done") != std::string::npos)
      break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(out.find("from ship1: done (exit 0)"), std::string::npos)
      << out << slurp(stem + ".err");
  EXPECT_NE(out.find("from central: done"), std::string::npos) << out;
  EXPECT_EQ(slurp(inbox), "");  // emptied, as steward does
  EXPECT_EQ(slurp(state_dir("central") / "commands/textlog.txt"),
            "some message sent from a ship for testing\n"
            "some message sent from a ship for testing\n");
  watcher->terminate(2s);

  // Both were audited on the node, and the log shows each message and its results.
  auto log = nex({"cmd", "log", "--node", "central"});
  EXPECT_NE(log.out.find("sent     event textLogging"), std::string::npos) << log.out;
  EXPECT_NE(log.out.find("<- central  done"), std::string::npos) << log.out;
}

TEST_F(CommandsTest, ADeployQueuedForAnOfflineNodeRunsWhenItConnects) {
  {
    // The node has been here once: it filed its id and xkey, then went away.
    auto& node = start_node(node_config("edge1"));
    node.process.terminate(10s);
  }
  fs::copy_file(kBinDir / "echoservice", dir_ / "home/echoservice");
  auto queued = nex({"devrun", "--queue", "edge1", (dir_ / "home/echoservice").string(),
                     "NATS_URL=" + hub_->url()});
  ASSERT_EQ(queued.code, 0) << queued.out << queued.err;
  EXPECT_NE(queued.out.find("Queued 'echoservice' for node edge1"), std::string::npos)
      << queued.out;

  auto& node = start_node(node_config("edge1"));
  auto conn = nats::Connection::connect({.urls = {hub_->url()}});
  ASSERT_TRUE(conn);
  bool answered = false;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!answered && std::chrono::steady_clock::now() < deadline) {
    auto r = conn->request("svc.echo", "queued hello", 200ms);
    answered = r && r->data() == "queued hello";
    if (!answered) std::this_thread::sleep_for(50ms);  // no responders yet answers at once
  }
  EXPECT_TRUE(answered) << slurp(node.log) << nex({"cmd", "ls"}).out;
}

// A queued devrun replaces the workload of the same name as a direct one does: one copy runs
// afterwards, not two answering side by side until `nex stop`.
TEST_F(CommandsTest, AQueuedDevrunReplacesTheWorkloadOfTheSameName) {
  start_node(node_config("edge1"));
  fs::copy_file(kBinDir / "echoservice", dir_ / "home/echoservice");
  const std::vector<std::string> devrun = {"devrun", "--queue", "edge1",
                                           (dir_ / "home/echoservice").string(),
                                           "NATS_URL=" + hub_->url()};
  auto first = nex(devrun);
  ASSERT_EQ(first.code, 0) << first.out << first.err;
  std::smatch m;
  const std::regex accepted("'echoservice' accepted\\. .* ID: ([a-v0-9]{20})");
  ASSERT_TRUE(std::regex_search(first.out, m, accepted)) << first.out;
  const std::string first_id = m[1];
  auto second = nex(devrun);
  ASSERT_EQ(second.code, 0) << second.out << second.err;
  EXPECT_NE(second.out.find("Stopped the previous 'echoservice' (" + first_id + ")"),
            std::string::npos)
      << second.out;
  auto probe = nex({"node", "probe", "echoservice", "--json"});
  auto found = json::parse(probe.out, nullptr, false);
  ASSERT_TRUE(found.is_array() && found.size() == 1) << probe.out << probe.err;
  EXPECT_EQ(found[0]["running_machines"].size(), 1u) << probe.out;
}

TEST_F(CommandsTest, ACommandOutsideItsTimeIsNotRunAndLeavesTheStream) {
  start_node(node_config("edge1", {"touch"}));
  const fs::path marker = shared_dir() / "ran";
  struct Case {
    std::string id, sent, expires, status, reason;
  };
  const auto now = std::chrono::system_clock::now();
  const std::vector<Case> cases = {
      {"in2001", "2001-01-01T00:00:00Z", "2001-01-02T00:00:00Z", "expired",
       "expired at 2001-01-02T00:00:00Z"},
      {"in2099", "2099-01-01T00:00:00Z", "2099-01-02T00:00:00Z", "refused",
       "ahead of this node's clock"},
      {"forever", rfc3339_nano(now), rfc3339_nano(now + 24h * 31), "refused",
       "longer than this node keeps commands (30 days"},
      {"unbound", rfc3339_nano(now), "", "refused", "allow_unbound_requests"}};
  for (const auto& c : cases) {
    json m = cli_command(c.id, "edge1", {"touch", marker.string()});
    m["sentAt"] = c.sent;
    if (c.expires.empty())
      m.erase("expiresAt");
    else
      m["expiresAt"] = c.expires;
    file_command(signed_message(m, issuer_));
  }
  for (const auto& c : cases) {
    json r = result(c.id);
    EXPECT_EQ(r.value("status", ""), c.status) << c.id << ": " << r.dump();
    EXPECT_NE(r.value("reason", "").find(c.reason), std::string::npos) << r.dump();
  }
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_TRUE(eventually([&] { return stored("NEX_COMMANDS") == 0; }))
      << stream_info("NEX_COMMANDS").dump();
  // Their results are kept, and listed.
  auto expired = json::parse(nex({"cmd", "ls", "--status", "expired", "--json"}).out);
  ASSERT_EQ(expired.size(), 1u) << expired.dump();
  EXPECT_EQ(expired[0].value("id", ""), "in2001");

  // A node that still takes messages of older tooling says so, and runs them.
  auto& old = start_node([&] {
    json c = node_config("old1");
    c["allow_unbound_requests"] = true;
    return c;
  }());
  EXPECT_NE(slurp(old.log).find("Warning: allow_unbound_requests is set"), std::string::npos)
      << slurp(old.log);
  json unbound = cli_command("unbound-old", "old1", {"echo", "still runs"});
  unbound.erase("expiresAt");
  file_command(signed_message(unbound, issuer_));
  EXPECT_EQ(result("unbound-old").value("stdout", ""), "still runs\n");
}

TEST_F(CommandsTest, TheSenderSetsHowLongACommandMayWaitForItsNode) {
  auto bad = nex({"cmd", "send", "edge9", "--expires", "soon", "--", "echo", "x"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("--expires takes an age like 90s, 15m, 24h or 7d (got 'soon')"),
            std::string::npos)
      << bad.err;
  auto brief = nex({"cmd", "send", "edge9", "--no-wait", "--expires", "1s", "--", "echo", "late"});
  ASSERT_EQ(brief.code, 0) << brief.err;
  const std::string brief_id = ids_in(brief.out).at(0);
  auto lasting = nex({"cmd", "send", "edge9", "--no-wait", "--", "echo", "in time"});
  const std::string lasting_id = ids_in(lasting.out).at(0);
  std::map<std::string, json> sent;  // what `nex cmd log` shows was filed, by id
  std::istringstream log(nex({"cmd", "log", "--json"}).out);
  for (std::string line; std::getline(log, line);) {
    const json l = json::parse(line);
    if (l.value("kind", "") == "command") sent[l["message"].value("id", "")] = l["message"];
  }
  const auto sent_at = *parse_rfc3339(sent[brief_id].value("sentAt", ""), "sentAt");
  EXPECT_EQ(*parse_rfc3339(sent[brief_id].value("expiresAt", ""), "expiresAt") - sent_at, 1s);
  // By default a command lives as long as the stream keeps it: 30 days.
  EXPECT_EQ(*parse_rfc3339(sent[lasting_id].value("expiresAt", ""), "expiresAt") -
                *parse_rfc3339(sent[lasting_id].value("sentAt", ""), "sentAt"),
            24h * 30);
  // The node comes after the first one's second has passed.
  std::this_thread::sleep_until(sent_at + 1100ms);
  start_node(node_config("edge9"));
  json r = result(brief_id);
  EXPECT_EQ(r.value("status", ""), "expired") << r.dump();
  EXPECT_EQ(r.value("stdout", "none"), "");
  EXPECT_EQ(result(lasting_id).value("stdout", ""), "in time\n");
}

TEST_F(CommandsTest, UnverifiedMessagesCostNoAuditNoResultAndLeaveTheStream) {
  auto& node = start_node(node_config("edge1", {"touch"}));
  const fs::path marker = shared_dir() / "ran";
  // 20 unsigned messages of 1 MB each on the hello queue.
  const json junk = {
      {"toNode", "edge1"}, {"method", "hello"}, {"data", {std::string(1'000'000, 'x')}}};
  for (int i = 0; i < 20; ++i)
    publish("$NEX.cmd.edge1.command.hello", junk.dump(), "junk" + std::to_string(i));
  // Signed, then changed.
  json forged = signed_message(cli_command("forged", "edge1", {"touch", marker.string()}), issuer_);
  forged["data"].push_back((dir_ / "also").string());
  file_command(forged);
  // Signed by an issuer the node does not trust.
  file_command(signed_message(cli_command("stranger", "edge1", {"touch", marker.string()}),
                              *crypto::KeyPair::create(crypto::KeyType::kAccount)));
  // Signed properly, but filed on another method's queue (so that it would be answered there
  // first, under its id).
  const json moved =
      signed_message(cli_command("moved", "edge1", {"touch", marker.string()}), issuer_);
  publish("$NEX.cmd.edge1.command.hello", moved.dump(), "moved");

  // Each queue is worked through in order: once these are answered, what came before them was
  // handled.
  auto hello = nex({"cmd", "send", "edge1", "--method", "hello"});
  EXPECT_EQ(hello.code, 0) << hello.err;
  const fs::path legit = shared_dir() / "legit";
  auto touched = nex({"cmd", "send", "edge1", "--", "touch", legit.string()});
  EXPECT_EQ(touched.code, 0) << touched.err;
  EXPECT_TRUE(fs::exists(legit));
  EXPECT_FALSE(fs::exists(marker));

  // Nothing of them is kept: the stream holds the two commands that ran.
  EXPECT_TRUE(eventually([&] { return stored("NEX_COMMANDS") == 2; }))
      << stream_info("NEX_COMMANDS").dump();
  EXPECT_LT(stream_info("NEX_COMMANDS")["state"].value("bytes", uint64_t{0}), 10'000u);
  // No line of the audit log, and no result, is theirs.
  const std::string audit = slurp(state_dir("edge1") / "commands/audit.jsonl");
  int commands_audited = 0;
  std::istringstream in(audit);
  for (std::string line; std::getline(in, line);) {
    if (json::parse(line).value("audit", "") == "command") ++commands_audited;
  }
  EXPECT_EQ(commands_audited, 2) << audit;
  for (const char* id : {"forged", "stranger", "moved"}) {
    EXPECT_EQ(audit.find(std::string("\"") + id + "\""), std::string::npos) << id;
  }
  auto log = nex({"cmd", "log", "--json"});
  for (const char* id : {"forged", "stranger", "moved"})
    EXPECT_EQ(log.out.find(std::string("\"id\":\"") + id + "\""), std::string::npos) << log.out;
  EXPECT_EQ(stored("NEX_COMMAND_RESULTS"), 4u);  // received and done, for each of the two
  // They were counted: the first drop is logged at once, the rest summed up later.
  EXPECT_TRUE(eventually([&] {
    return slurp(node.log).find("dropped 1 message(s) that failed verification") !=
           std::string::npos;
  })) << slurp(node.log);
}

TEST_F(CommandsTest, TheStreamsAreCappedAndANodeBringsOlderLimitsUpToItsOwn) {
  // The streams and the directory as an older version made them: no caps, one record a name.
  {
    auto js = hub_js();
    ASSERT_OK(js.add_stream({.name = "NEX_COMMANDS",
                             .subjects = {"$NEX.cmd.*.*.*"},
                             .max_age = std::chrono::hours(24 * 30)}));
    ASSERT_TRUE(nats::KeyValue::create(js, {.bucket = "NEX_NODES"}));
  }
  json config = node_config("edge1");
  config["commands"]["retention_days"] = 7;
  config["commands"]["max_bytes"] = 8 << 20;
  config["commands"]["max_message_bytes"] = 128 << 10;
  auto& node = start_node(config);
  const int64_t week_ns = 7LL * 24 * 3600 * 1'000'000'000;
  for (const char* name : {"NEX_COMMANDS", "NEX_COMMAND_RESULTS", "KV_NEX_NODES"}) {
    const json c = stream_info(name)["config"];
    EXPECT_EQ(c.value("max_bytes", 0), 8 << 20) << name << ": " << c.dump();
    EXPECT_EQ(c.value("max_msg_size", 0), 128 << 10) << name;
    EXPECT_EQ(c.value("max_age", int64_t{0}), week_ns) << name;
  }
  EXPECT_EQ(stream_info("NEX_COMMANDS")["config"].value("discard", ""), "new");
  EXPECT_EQ(stream_info("NEX_COMMAND_RESULTS")["config"].value("discard", ""), "old");
  EXPECT_EQ(stream_info("KV_NEX_NODES")["config"].value("max_msgs_per_subject", 0), 16);
  EXPECT_NE(slurp(node.log).find("limits changed on NEX_COMMANDS"), std::string::npos)
      << slurp(node.log);

  // What is larger than a message may be is not stored at all.
  auto msg = nats::Message::create("$NEX.cmd.edge1.command.hello", std::string(200 << 10, 'x'));
  ASSERT_TRUE(msg);
  EXPECT_FALSE(hub_js().publish(*msg));
  EXPECT_EQ(stored("NEX_COMMANDS"), 0u);
  // A sender gives its command the stream's week, which the node accepts.
  auto hi = nex({"cmd", "send", "edge1", "--", "echo", "hi"});
  EXPECT_EQ(hi.out, "hi\n") << hi.err;
}

TEST_F(CommandsTest, AResultFiledAheadOfTheNodesOwnHidesNothing) {
  {
    auto& node = start_node(node_config("edge1"));  // files its record in NEX_NODES
    node.process.terminate(10s);
  }
  auto sent = nex({"cmd", "send", "edge1", "--no-wait", "--", "echo", "real"});
  const std::string id = ids_in(sent.out).at(0);
  // Someone who may publish results files them first, under the ids the node used to use.
  auto fake = [&](const std::string& status, const std::string& msg_id) {
    commands::CommandResult r{.id = id,
                              .node = "edge1",
                              .method = "cliCommand",
                              .status = status,
                              .exit_code = 0,
                              .stdout_text = "forged\n"};
    commands::sign(r, *crypto::KeyPair::create(crypto::KeyType::kServer));
    publish(commands::result_subject("edge1", id), commands::to_json(r).dump(), msg_id);
  };
  fake("received", id + ".edge1.received.1");
  fake("done", id + ".edge1.done.1");

  start_node(node_config("edge1"));
  auto real = nex({"cmd", "result", id, "--wait", "30"});
  EXPECT_EQ(real.code, 0) << real.err;
  EXPECT_EQ(real.out, "real\n");
  // A fake filed after the node's own hides it neither from readers nor from the node: the
  // command, filed again (as a replay), does not run again.
  fake("done", "after");
  auto again = nex({"cmd", "result", id});
  EXPECT_EQ(again.out, "real\n") << again.err;
  auto filed = hub_js().last_message("NEX_COMMANDS", "$NEX.cmd.edge1.command.cliCommand");
  ASSERT_TRUE(filed);
  publish("$NEX.cmd.edge1.command.cliCommand", std::string(filed->data()), "replayed");
  auto after = nex({"cmd", "send", "edge1", "--", "echo", "after"});
  EXPECT_EQ(after.out, "after\n");
  EXPECT_EQ(audited("edge1").size(), 2u);  // the command once, and the one after it
  EXPECT_TRUE(eventually([&] { return stored("NEX_COMMANDS") == 2; }))
      << "the replayed copy is deleted: " << stream_info("NEX_COMMANDS").dump();
}

TEST_F(CommandsTest, TextLoggingWritesOneEscapedLinePerEntryAndANulInArgvIsRefused) {
  start_node(node_config("central", {"echo"}));
  const json event = json::array({{{"toNode", "central"},
                                   {"commandOrEvent", "event"},
                                   {"method", "textLogging"},
                                   {"data",
                                    {"fine\n", "a\n2026-12-03T00:00:00 forged line", "\x1b[2Jclear",
                                     "tab\tand\\n", std::string("nul\0", 4)}}}});
  std::ofstream(dir_ / "event.json") << event.dump();
  auto logged = nex({"cmd", "send", "--file", (dir_ / "event.json").string()});
  EXPECT_EQ(logged.code, 0) << logged.err;
  EXPECT_EQ(slurp(state_dir("central") / "commands/textlog.txt"),
            "fine\n"
            "a\\n2026-12-03T00:00:00 forged line\n"
            "\\x1b[2Jclear\n"
            "tab\\tand\\\\n\n"
            "nul\\x00\n");

  // `echo a\0b` would run as `echo a`: refused by the sender...
  const json nul = json::array({{{"toNode", "central"},
                                 {"method", "cliCommand"},
                                 {"data", {"echo", std::string("a\0b", 3)}}}});
  std::ofstream(dir_ / "nul.json") << nul.dump();
  auto refused = nex({"cmd", "send", "--file", (dir_ / "nul.json").string()});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("field 'data' entry 2 holds a NUL byte"), std::string::npos)
      << refused.err;
  // ...and by the node, from a sender that does not check.
  file_command(
      signed_message(cli_command("nul", "central", {"echo", std::string("a\0b", 3)}), issuer_));
  json r = result("nul");
  EXPECT_EQ(r.value("status", ""), "refused") << r.dump();
  EXPECT_NE(r.value("reason", "").find("field 'data' entry 2 holds a NUL byte"), std::string::npos)
      << r.dump();
  EXPECT_EQ(r.value("stdout", ""), "");
}

TEST_F(CommandsTest, ANodeRecordNotSignedByItsNodeIsReportedAndNeverUsed) {
  start_node(node_config("edge1"));
  auto js = hub_js();
  auto kv = nats::KeyValue::bind(js, "NEX_NODES");
  ASSERT_TRUE(kv);
  auto own = kv->get("edge1");
  ASSERT_TRUE(own);
  const json record = json::parse(own->value);
  fs::copy_file(kBinDir / "echoservice", dir_ / "home/echoservice");

  // Its xkey replaced with someone else's: a deploy's secrets would be sealed to them.
  json swapped = record;
  swapped["xkey"] = crypto::XKey::create().public_key();
  ASSERT_TRUE(kv->put("edge1", swapped.dump()));
  const uint64_t before = stored("NEX_COMMANDS");
  auto queued = nex({"devrun", "--queue", "edge1", (dir_ / "home/echoservice").string(), "SECRET=x",
                     "NATS_URL=" + hub_->url()});
  EXPECT_NE(queued.code, 0) << queued.out;
  EXPECT_NE(queued.err.find("the record of node edge1 in NEX_NODES is not signed by its node: "
                            "refusing to seal to it"),
            std::string::npos)
      << queued.err;
  EXPECT_EQ(stored("NEX_COMMANDS"), before) << "nothing was queued";

  // Replaced by a record of another id, as older nodes filed it (unsigned): the node's results
  // are still its own, and shown; the forged record is reported.
  ASSERT_TRUE(
      kv->put("edge1", json{{"name", "edge1"},
                            {"id", crypto::KeyPair::create(crypto::KeyType::kServer)->public_key()},
                            {"xkey", crypto::XKey::create().public_key()}}
                           .dump()));
  auto hi = nex({"cmd", "send", "edge1", "--", "echo", "hi"});
  EXPECT_EQ(hi.code, 0) << hi.err;
  EXPECT_EQ(hi.out, "hi\n") << hi.err;
  EXPECT_NE(hi.err.find("the newest record of node edge1 in NEX_NODES is not signed by its node"),
            std::string::npos)
      << hi.err;
}

// A disk that fills up under the audit log: no record is left cut mid-JSON, each write that
// fails is logged with its cause and counted, the log grows again once there is room, and a
// record cut by an earlier crash does not swallow the next one.
TEST_F(CommandsTest, AFullDiskCutsNoAuditRecordAndIsLoggedAndCounted) {
  SmallDisk disk(state_dir("full1"));
  if (!disk.error.empty()) GTEST_SKIP() << disk.error;
  auto& node = start_node(node_config("full1"), {}, {"--metrics", "127.0.0.1:0"});
  EXPECT_EQ(nex({"cmd", "send", "full1", "--", "echo", "before"}).out, "before\n");
  const fs::path audit = state_dir("full1") / "commands/audit.jsonl";
  disk.fill();
  // Each command adds three records (the command, received, done); the last page of the file
  // takes a few of them, then a record is cut by the full disk.
  for (int i = 0; i < 6; ++i) {
    auto r = nex({"cmd", "send", "full1", "--", "echo", "full" + std::to_string(i)});
    EXPECT_EQ(r.out, "full" + std::to_string(i) + "\n") << r.err;
  }
  EXPECT_TRUE(broken_lines(slurp(audit)).empty()) << broken_lines(slurp(audit)).front();
  EXPECT_TRUE(eventually([&] {
    return slurp(node.log).find("No space left on device") != std::string::npos;
  })) << slurp(node.log);
  EXPECT_NE(slurp(node.log).find("audit.jsonl"), std::string::npos) << slurp(node.log);
  std::smatch m;
  const std::string metrics = scrape(node.log);
  ASSERT_TRUE(
      std::regex_search(metrics, m, std::regex("nex_command_audit_write_failures_total ([0-9]+)")))
      << metrics;
  EXPECT_GT(std::stoi(m[1]), 0);

  disk.free_space();
  auto after = nex({"cmd", "send", "full1", "--no-wait", "--", "echo", "after"});
  const std::string after_id = ids_in(after.out).at(0);
  EXPECT_EQ(result(after_id).value("stdout", ""), "after\n");
  EXPECT_TRUE(eventually([&] {
    auto done = audited("full1");
    return !done.empty() && done.back() == after_id;
  })) << "the audit log did not grow again once the disk had room";

  // A crash in the middle of a record, then a restart.
  node.process.terminate(20s);
  { std::ofstream(audit, std::ios::app) << R"({"audit":"result","id":"cut-by-a-cr)"; }
  start_node(node_config("full1"));
  auto restarted = nex({"cmd", "send", "full1", "--no-wait", "--", "echo", "restarted"});
  const std::string restarted_id = ids_in(restarted.out).at(0);
  EXPECT_EQ(result(restarted_id).value("stdout", ""), "restarted\n");
  EXPECT_TRUE(eventually([&] {
    auto done = audited("full1");
    return !done.empty() && done.back() == restarted_id;
  })) << slurp(audit);
  EXPECT_TRUE(broken_lines(slurp(audit)).empty()) << broken_lines(slurp(audit)).front();
  nodes_.clear();  // before the disk goes
}

// `nex node up` on a full disk says why it cannot write its files, and leaves none behind empty.
TEST_F(CommandsTest, NodeUpOnAFullDiskSaysWhyAndLeavesNoEmptyFile) {
  SmallDisk disk(dir_ / "full", "64k");
  if (!disk.error.empty()) GTEST_SKIP() << disk.error;
  disk.fill();
  const fs::path state = dir_ / "full/state";
  auto up = nex({"node", "up", "--state-dir", state.string()}, 30s);
  EXPECT_EQ(up.code, 1) << up.out << up.err;
  EXPECT_NE(up.err.find("No space left on device"), std::string::npos) << up.err;
  for (const auto& e : fs::directory_iterator(state))
    EXPECT_GT(fs::file_size(e.path()), 0u) << e.path() << " was left empty";
}

// A command filed again under its id (a sender retrying past JetStream's duplicate window) runs
// once; `nex cmd result` prints its one result, and says the copies were refused.
TEST_F(CommandsTest, ACommandSentAgainUnderItsIdShowsOneResultAndTheRefusedCopies) {
  auto& node = start_node(node_config("edge1"));
  const json c = signed_message(cli_command("thrice", "edge1", {"echo", "thrice"}), issuer_);
  file_command(c, "thrice.edge1");
  EXPECT_EQ(result("thrice").value("stdout", ""), "thrice\n");
  node.process.terminate(20s);
  for (const char* msg_id : {"thrice.edge1.again", "thrice.edge1.and-again"})
    file_command(c, msg_id);
  // The node is away: the copies wait for it, and the result is still the one.
  auto waiting = nex({"cmd", "result", "thrice"});
  EXPECT_EQ(waiting.code, 0) << waiting.err;
  EXPECT_EQ(waiting.out, "thrice\n") << waiting.err;

  start_node(node_config("edge1"));
  EXPECT_TRUE(eventually([&] {
    const std::string log = slurp(state_dir("edge1") / "commands/audit.jsonl");
    size_t n = 0;
    for (size_t at = 0; (at = log.find("\"audit\":\"duplicate\"", at)) != std::string::npos; ++at)
      ++n;
    return n == 2;
  }));
  auto shown = nex({"cmd", "result", "thrice"});
  EXPECT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(shown.out, "thrice\n") << shown.err;
  EXPECT_TRUE(eventually([&] {
    shown = nex({"cmd", "result", "thrice"});
    return shown.err.find("2 copies") != std::string::npos;
  })) << shown.err;
  EXPECT_NE(shown.err.find("refused"), std::string::npos) << shown.err;
}

// Two nodes may not share a name: the second refuses to start while the first is alive, and
// says which node holds the name; the first keeps taking its commands. Once the holder is
// dead, the name can be taken.
TEST_F(CommandsTest, ANodeRefusesANameALiveNodeHolds) {
  auto& first = start_node(node_config("twin"));
  std::smatch m;
  const std::string first_log = slurp(first.log);
  ASSERT_TRUE(std::regex_search(first_log, m, std::regex("awaiting commands id=(N[A-Z0-9]+)")));
  const std::string first_id = m[1];
  const fs::path conf = dir_ / "twin2.json";
  std::ofstream(conf) << node_config("twin").dump();
  const fs::path log = dir_ / "twin2.log";
  auto second =
      Subprocess::spawn({.argv = {NEX_BINARY, "-s", hub_->url(), "node", "up", "--config",
                                  conf.string(), "--state-dir", (dir_ / "node-twin2").string()},
                         .env = {"HOME=" + (dir_ / "home").string()},
                         .stdout_path = log.string(),
                         .stderr_path = log.string()});
  ASSERT_TRUE(second);
  auto status = second->wait_for(30s);
  ASSERT_TRUE(status) << "the second node started under a name that is taken: " << slurp(log);
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_NE(slurp(log).find("twin"), std::string::npos) << slurp(log);
  EXPECT_NE(slurp(log).find(first_id), std::string::npos) << slurp(log);
  auto hi = nex({"cmd", "send", "twin", "--no-wait", "--", "echo", "hi"});
  ASSERT_EQ(hi.code, 0) << hi.err;
  const std::string hi_id = ids_in(hi.out).at(0);
  EXPECT_EQ(result(hi_id).value("stdout", ""), "hi\n");

  // The holder dies without a word (its record stays behind): the name is free again.
  first.process.signal(SIGKILL);
  first.process.wait_for(5s);
  auto again =
      Subprocess::spawn({.argv = {NEX_BINARY, "-s", hub_->url(), "node", "up", "--config",
                                  conf.string(), "--state-dir", (dir_ / "node-twin2").string()},
                         .env = {"HOME=" + (dir_ / "home").string()},
                         .stdout_path = log.string(),
                         .stderr_path = log.string()});
  ASSERT_TRUE(again);
  EXPECT_TRUE(eventually([&] { return slurp(log).find("awaiting commands") != std::string::npos; }))
      << slurp(log);
  auto back = nex({"cmd", "send", "twin", "--no-wait", "--", "echo", "back"});
  ASSERT_EQ(back.code, 0) << back.err;
  const json back_result = result(ids_in(back.out).at(0));
  EXPECT_EQ(back_result.value("stdout", ""), "back\n") << back_result.dump();
  // The two nodes of one name are told apart by id: each result names the node that ran it,
  // and the first one's result is still its own.
  const std::string second_id = back_result.value("node_id", "");
  EXPECT_TRUE(second_id.size() == 56 && second_id[0] == 'N') << back_result.dump();
  EXPECT_NE(second_id, first_id);
  const json hi_result = result(hi_id);
  EXPECT_EQ(hi_result.value("node_id", ""), first_id) << hi_result.dump();
  EXPECT_EQ(hi_result.value("stdout", ""), "hi\n") << hi_result.dump();
}

}  // namespace
}  // namespace nex
