// A deploy whose NATS server restarts while the node works on it, as the `nex` CLI user sees it:
// the CLI reconnects and asks again with the very same request, and the node answers with the
// first one's answer. The deploy succeeds once, not zero times and not twice.
#include <gtest/gtest.h>

#include <fstream>

#include "crypto/nkeys.h"
#include "crypto/xkeys.h"
#include "testing/cli.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using testing::Collector;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class DeployReconnect : public testing::NodeTest {
 protected:
  void TearDown() override {
    testing::NodeTest::TearDown();
    std::error_code ec;
    fs::remove_all(home_, ec);
  }
  // The user's home, with the keys `nex run` signs and seals with.
  testing::CliEnvironment user() {
    fs::create_directories(home_ / ".nex");
    std::ofstream(home_ / ".nex/issuer.nk")
        << crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
    std::ofstream(home_ / ".nex/publisher.xk") << crypto::XKey::create().seed();
    return {.cwd = home_, .env = {"HOME=" + home_.string()}};
  }
  // How many workloads named `name` the node runs, once it answers again.
  size_t running(const std::string& name) {
    for (int i = 0; i < 100; ++i) {
      json r = info();
      if (r.contains("data") && r["data"].is_object()) {
        size_t n = 0;
        for (const auto& m : r["data"]["machines"]) n += m["workload"]["name"] == name;
        return n;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "the node did not answer INFO after the server restarted";
    return 0;
  }

  // `nex run` of a function whose top-level code runs for 3 s, with the server restarted once
  // the node has the request: the deploy is under way when the server goes. Nothing but the
  // node listens on the deploy subject after the request arrived.
  void run_across_a_restart(const std::string& trigger) {
    ASSERT_OK(files_->put_bytes("slow.js",
                                "const t0 = Date.now();\n"
                                "while (Date.now() - t0 < 3000) {}\n"
                                "(subject, payload) => payload\n"));
    {
      Collector deploys(*conn_, "$NEX.DEPLOY.default." + node_->id());
      auto spawned =
          testing::spawn_nex({"-s", server().url(), "run", "nats://NEXCLIFILES/slow.js",
                              node_->id(), "--name", "slow", "--trigger_subject", trigger},
                             user(), out_);
      ASSERT_TRUE(spawned) << spawned.error().message;
      cli_ = std::move(*spawned);
      ASSERT_TRUE(deploys.wait_for("workload_jwt", 20s)) << testing::slurp(out_);
    }
    server().stop();
    ASSERT_OK(server().restart());
  }
  // What the user sees: the workload accepted, and it runs once.
  void expect_accepted_once() {
    auto st = cli_->wait_for(60s);
    ASSERT_TRUE(st) << "nex run did not end: " << testing::slurp(out_);
    EXPECT_EQ(WEXITSTATUS(*st), 0) << testing::slurp(out_);
    EXPECT_NE(testing::slurp(out_).find("🚀 Workload 'slow' accepted"), std::string::npos)
        << testing::slurp(out_);
    EXPECT_EQ(running("slow"), 1u);
  }

  fs::path home_ = fs::temp_directory_path() / ("nex-reconnect-" + std::to_string(getpid()));
  const fs::path out_ = home_ / "out.txt";  // what nex run printed
  std::optional<Subprocess> cli_;
};

TEST_F(DeployReconnect, TheCliAsksAgainAfterAReconnectAndTheWorkloadStartsOnce) {
  start_node();
  ASSERT_NO_FATAL_FAILURE(run_across_a_restart("slow.reconnect"));
  expect_accepted_once();
}

// The CLI is back on the restarted server before the node is: its request, asked again, finds
// no one listening yet. That is the node still reconnecting, not a node that is gone.
TEST_F(DeployReconnect, TheCliWaitsForTheNodeToComeBackAfterTheServerRestarts) {
  // The node's next try comes 3 s after its first failed one; the CLI's after 100 ms.
  std::atomic<bool> node_back = false;
  start_node({}, {.reconnect_wait_min = 3s, .reconnect_wait_max = 3s, .on_reconnected = [&] {
                    node_back = true;
                  }});
  ASSERT_NO_FATAL_FAILURE(run_across_a_restart("slow.late"));
  expect_accepted_once();
  EXPECT_TRUE(node_back) << "the node never reconnected";
}

}  // namespace
}  // namespace nex::node
