// How a node's configuration reaches the sandbox: the CNI conflist (checked field by field), the
// ports of a loopback NATS_URL that are forwarded into a sandbox, the cni.conf_dir field, and
// which driver a configuration picks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "node/node_config.h"
#include "node/sandbox_setup.h"
#include "sandbox/cni.h"

namespace nex {
namespace {

namespace fs = std::filesystem;

TEST(LoopbackNatsPorts, OnlyTheHostsLoopbackIsForwarded) {
  using node::loopback_nats_ports;
  EXPECT_EQ(loopback_nats_ports({{"NATS_URL", "nats://127.0.0.1:4222"}}), std::vector<int>{4222});
  EXPECT_EQ(loopback_nats_ports({{"NATS_URL", "nats://localhost"}}), std::vector<int>{4222});
  EXPECT_EQ(loopback_nats_ports({{"NATS_URL", "nats://u:p@127.0.0.1:4333,nats://10.0.0.1:4222"}}),
            std::vector<int>{4333});
  EXPECT_TRUE(loopback_nats_ports({{"NATS_URL", "nats://192.168.127.1:4222"}}).empty());
  EXPECT_TRUE(loopback_nats_ports({{"NATS_URL", "nats://127.0.0.1:notaport"}}).empty());
  EXPECT_TRUE(loopback_nats_ports({{"OTHER_URL", "nats://127.0.0.1:4222"}}).empty());
}

TEST(NodeConfigCni, ConfDirIsOursAndDefaultsToEtc) {
  auto c = node::parse_node_config(R"({"cni": {"network_name": "n1", "conf_dir": "/x/cni"}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->cni.conf_dir, "/x/cni");
  EXPECT_EQ(c->cni.network_name, "n1");
  EXPECT_EQ(node::parse_node_config("{}")->cni.conf_dir, "/etc/cni/conf.d");
}

// The driver is picked by name from the registry in sandbox_setup.cc.
TEST(SandboxDriverRegistry, NoSandboxPicksTheProcessDriver) {
  node::NodeConfig config;
  config.no_sandbox = true;
  auto driver = node::make_sandbox_driver(config, "/nonexistent/nex-agent", "registry-test");
  ASSERT_TRUE(driver) << driver.error().message;
  EXPECT_EQ((*driver)->name(), "process");
}

TEST(SandboxDriverRegistry, AnUnknownNameIsRefusedNamingTheDrivers) {
  node::NodeConfig config;
  config.sandbox = "jail";
  auto driver = node::make_sandbox_driver(config, "/nonexistent/nex-agent", "registry-test");
  ASSERT_FALSE(driver);
  EXPECT_EQ(driver.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(driver.error().message.find("\"jail\""), std::string::npos) << driver.error().message;
  EXPECT_NE(driver.error().message.find("\"process\", \"namespace\", \"microvm\""),
            std::string::npos)
      << driver.error().message;
}

class CniConflist : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nex-cni-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    settings_.network_name = "t";
    settings_.conf_dir = dir_;
  }
  void TearDown() override { fs::remove_all(dir_); }
  Result<sandbox::CniNetwork> load(const std::string& text) {
    std::ofstream(dir_ / "t.conflist") << text;
    return sandbox::load_cni_network(settings_);
  }
  fs::path dir_;
  sandbox::CniSettings settings_;
};

TEST_F(CniConflist, TheDefaultLoadsAndNamesItsPlugins) {
  auto net = load(sandbox::default_conflist("t").dump());
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_EQ(net->plugin_types(), (std::vector<std::string>{"ptp", "host-local"}));
}

TEST_F(CniConflist, TheSeedsTapPluginIsLeftToMicroVMs) {
  auto net = load(R"({"name": "t", "cniVersion": "0.4.0", "plugins": [
      {"type": "ptp", "ipam": {"type": "host-local", "subnet": "192.168.127.0/24"}},
      {"type": "tc-redirect-tap"}]})");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_EQ(net->plugin_types(), (std::vector<std::string>{"ptp", "host-local"}));
}

TEST_F(CniConflist, BadFilesNameTheField) {
  fs::remove(dir_ / "t.conflist");
  auto missing = sandbox::load_cni_network(settings_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nex node preflight --init"), std::string::npos);
  for (auto [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"[]", "not a JSON object"},
           {R"({"name": "other", "cniVersion": "0.4.0", "plugins": [{"type": "ptp"}]})",
            "field 'name' must be \"t\""},
           {R"({"name": "t", "plugins": [{"type": "ptp"}]})", "field 'cniVersion'"},
           {R"({"name": "t", "cniVersion": "0.4.0", "plugins": []})", "field 'plugins'"},
           {R"({"name": "t", "cniVersion": "0.4.0", "plugins": [{"ipMasq": true}]})",
            "string field 'type'"}}) {
    auto net = load(text);
    ASSERT_FALSE(net) << text;
    EXPECT_NE(net.error().message.find(expect), std::string::npos) << net.error().message;
  }
}

TEST_F(CniConflist, AMissingPluginSaysWhereItLookedAndWhatToInstall) {
  settings_.bin_path = {(dir_ / "bin").string()};
  auto p = sandbox::find_cni_plugin(settings_, "ptp");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find((dir_ / "bin").string()), std::string::npos);
  EXPECT_NE(p.error().message.find("containernetworking-plugins"), std::string::npos);
}

}  // namespace
}  // namespace nex
