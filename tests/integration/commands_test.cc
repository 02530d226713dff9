// Durable commands end to end, as a user runs them: real nats-server processes (a hub with
// JetStream, and a leaf server for the edge), nodes run as `nex node up` processes (so they can be
// killed), and the `nex cmd` CLI. What is asserted is what the sender and the node's operator
// see: results and exit codes, the order in the node's audit log, files a command wrote.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "commands/command.h"
#include "core/subprocess.h"
#include "crypto/nkeys.h"
#include "nats/connection.h"
#include "nats/jetstream.h"
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
  NodeProcess& start_node(const json& config, std::string url = {}) {
    const std::string name = config["node_name"];
    const fs::path conf = dir_ / (name + ".json");
    std::ofstream(conf) << config.dump();
    static int n = 0;
    const fs::path log = dir_ / (name + "-" + std::to_string(++n) + ".log");
    auto p = Subprocess::spawn(
        {.argv = {NEX_BINARY, "-s", url.empty() ? hub_->url() : url, "node", "up", "--config",
                  conf.string(), "--state-dir", state_dir(name).string()},
         .env = {"HOME=" + (dir_ / "home").string()},
         .stdout_path = log.string(),
         .stderr_path = log.string()});
    EXPECT_TRUE(p) << p.error().message;
    nodes_.push_back(std::make_unique<NodeProcess>(NodeProcess{std::move(*p), log}));
    for (int i = 0; i < 200 && slurp(log).find("awaiting commands") == std::string::npos; ++i)
      std::this_thread::sleep_for(50ms);
    EXPECT_NE(slurp(log).find("Taking durable commands"), std::string::npos) << slurp(log);
    return *nodes_.back();
  }

  // Runs `nex ARGS...` as the user, against the hub unless ARGS say otherwise.
  CliResult nex(std::vector<std::string> args, std::chrono::seconds limit = 60s) {
    static int n = 0;
    const std::string stem = (dir_ / ("cli-" + std::to_string(++n))).string();
    args.insert(args.begin(), {NEX_BINARY, "-s", hub_->url()});
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
  // The sender keeps trying while the hub is away.
  CliResult sent;
  std::thread sender([&] { sent = nex({"cmd", "send", "--file", batch.string(), "--no-wait"}); });
  std::this_thread::sleep_for(10s);
  ASSERT_OK(hub_->restart());
  sender.join();
  ASSERT_EQ(sent.code, 0) << sent.err;
  const auto ids = ids_in(sent.out);
  ASSERT_EQ(ids.size(), 5u) << sent.out;
  for (int i = 0; i < 5; ++i) {
    json r = result(ids[i]);
    EXPECT_EQ(r.value("stdout", ""), "during-" + std::to_string(i) + "\n") << r.dump();
  }
  auto done = audited("ship1");
  ASSERT_EQ(done.size(), 6u);  // "before" and the five, each once
  EXPECT_EQ(std::vector<std::string>(done.begin() + 1, done.end()), ids);
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
  // Commands run as nobody when the node is root: let them write here.
  fs::create_directories(dir_ / "shared");
  fs::permissions(dir_ / "shared", fs::perms::all);
  const fs::path marker = dir_ / "shared/ran";
  auto js_conn = nats::Connection::connect({.urls = {hub_->url()}});
  ASSERT_TRUE(js_conn);
  auto js = nats::JetStream::create(*js_conn);
  ASSERT_TRUE(js);
  auto publish = [&](commands::Command c) {
    auto msg = nats::Message::create(commands::command_subject(c.to_node, true, c.method),
                                     commands::to_json(c).dump());
    ASSERT_TRUE(msg);
    ASSERT_OK(js->publish(*msg));
  };
  auto draft = [&](const std::string& id, const std::string& node) {
    commands::Command c;
    c.id = id;
    c.to_node = node;
    c.method = "cliCommand";
    c.data = {"touch", marker.string()};
    return c;
  };
  // Forged: signed, then changed.
  auto forged = draft("forged", "edge1");
  commands::sign(forged, issuer_);
  forged.data = {"touch", marker.string(), (dir_ / "also").string()};
  publish(forged);
  // Signed by an issuer the node does not trust.
  auto stranger = draft("stranger", "edge1");
  commands::sign(stranger, *crypto::KeyPair::create(crypto::KeyType::kAccount));
  publish(stranger);

  struct Case {
    std::string id;
    std::string reason;
  };
  std::vector<Case> cases = {{"forged", "signature does not match"},
                             {"stranger", "is not one of this node's valid_issuers"}};
  for (const auto& c : cases) {
    json r = result(c.id);
    EXPECT_EQ(r.value("status", ""), "refused") << c.id;
    EXPECT_NE(r.value("reason", "").find(c.reason), std::string::npos) << r.dump();
  }
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
  auto conn = nats::Connection::connect({.urls = {hub_->url()}});
  ASSERT_TRUE(conn);
  auto js = nats::JetStream::create(*conn);
  ASSERT_TRUE(js);
  commands::Command c;
  c.id = "once";
  c.to_node = "edge1";
  c.method = "cliCommand";
  c.data = {"echo", "once"};
  commands::sign(c, issuer_);
  // The same message filed twice past JetStream's duplicate window (another Nats-Msg-Id), as a
  // sender retrying much later would.
  for (const char* msg_id : {"once.edge1", "once.edge1.later"}) {
    auto msg = nats::Message::create(commands::command_subject("edge1", true, "cliCommand"),
                                     commands::to_json(c).dump());
    ASSERT_TRUE(msg);
    ASSERT_OK(msg->set_header("Nats-Msg-Id", msg_id));
    ASSERT_OK(js->publish(*msg));
  }
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
  // Seed 004's examples, with our node names.
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
  for (int i = 0; i < 100 && !fs::exists(inbox); ++i) std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(300ms);
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

}  // namespace
}  // namespace nex
