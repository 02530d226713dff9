// Which way a function's triggers take, and the users a node signs for the direct route.
#include "triggers/route.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "crypto/jwt.h"

namespace nex::triggers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TriggerRoute : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nex-trigger-route-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    // The node's own user, of the account `account_`, signed by `signer_` (a signing key).
    auto user = *crypto::KeyPair::create(crypto::KeyType::kUser);
    const std::string jwt = crypto::encode_jwt(
        {.sub = user.public_key(),
         .nats = {{"type", "user"}, {"version", 2}, {"issuer_account", account_.public_key()}}},
        signer_);
    std::ofstream(dir_ / "node.creds") << "-----BEGIN NATS USER JWT-----\n"
                                       << jwt << "\n------END NATS USER JWT------\n";
    std::ofstream(dir_ / "signer.nk") << signer_.seed() << "\n";
    config_.trigger_signing_key_file = dir_ / "signer.nk";
    creds_control_ = {.urls = {"nats://127.0.0.1:4222"}, .creds_file = (dir_ / "node.creds")};
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  crypto::KeyPair account_ = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  crypto::KeyPair signer_ = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  RouteConfig config_;
  nats::ConnectOptions creds_control_;
};

TEST_F(TriggerRoute, AMintedUserMayOnlySubscribeToItsTriggersAndAnswerThem) {
  auto creds = TriggerCredentials::load(config_, creds_control_);
  ASSERT_TRUE(creds && *creds) << (creds ? "" : creds.error().message);
  const auto user = (*creds)->mint("w1", {"fn.a", "fn.b.*"}, 35s);
  auto decoded = crypto::decode_jwt(user.jwt);
  ASSERT_TRUE(decoded) << decoded.error().message;
  const auto& c = decoded->claims;
  EXPECT_EQ(c.iss, signer_.public_key());
  EXPECT_EQ(c.sub, crypto::KeyPair::from_seed(user.seed)->public_key());
  EXPECT_EQ(c.nats["issuer_account"], account_.public_key());
  EXPECT_EQ(c.nats["sub"], (nlohmann::json{{"allow", {"fn.a", "fn.b.*"}}}));
  EXPECT_EQ(c.nats["pub"], (nlohmann::json{{"deny", {">"}}}));
  EXPECT_EQ(c.nats["resp"]["max"], 1);
  EXPECT_EQ(c.nats["resp"]["ttl"], int64_t{35'000'000'000});
  EXPECT_EQ(c.nats["subs"], 2);
}

TEST_F(TriggerRoute, DirectOnlyWithoutCredentialsOrWithAUserOfItsOwn) {
  auto creds = *TriggerCredentials::load(config_, creds_control_);
  const nats::ConnectOptions open = {.urls = {"nats://127.0.0.1:4222"}};
  auto route = [&](const nats::ConnectOptions& c, bool sandboxed, const TriggerCredentials* k) {
    return direct_triggers(config_, c, sandboxed, k, "w1", {"fn.a"}, 35s);
  };
  auto plain = route(open, false, nullptr);
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->user.jwt.empty()) << "nothing to hand over";
  EXPECT_FALSE(route(open, true, nullptr)) << "a sandbox never logs in unrestricted";
  EXPECT_FALSE(route(creds_control_, false, nullptr)) << "the node's credentials stay its own";
  auto minted = route(creds_control_, false, &*creds);
  ASSERT_TRUE(minted);
  EXPECT_FALSE(minted->user.jwt.empty());
  EXPECT_TRUE(minted->loopback_ports.empty());
  auto sandboxed = route(creds_control_, true, &*creds);
  ASSERT_TRUE(sandboxed);
  EXPECT_EQ(sandboxed->loopback_ports, std::vector<int>{4222});
  nats::ConnectOptions remote = creds_control_;
  remote.urls = {"nats://10.1.2.3:4222"};
  EXPECT_FALSE(route(remote, true, &*creds)) << "a sandbox reaches the host's loopback only";
  nats::ConnectOptions password = {.urls = {"nats://127.0.0.1:4222"}, .user = "u", .password = "p"};
  EXPECT_FALSE(route(password, false, &*creds)) << "users are minted in operator mode only";
  config_.function_triggers = "relay";
  EXPECT_FALSE(route(open, false, nullptr));
}

TEST_F(TriggerRoute, AKeyFileThatCannotServeIsRefusedNamingIt) {
  std::ofstream(dir_ / "user.nk") << crypto::KeyPair::create(crypto::KeyType::kUser)->seed();
  config_.trigger_signing_key_file = dir_ / "user.nk";
  auto wrong_type = TriggerCredentials::load(config_, creds_control_);
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().message.find("must hold an account seed"), std::string::npos);
  config_.trigger_signing_key_file = dir_ / "signer.nk";
  auto no_creds = TriggerCredentials::load(config_, {.urls = {"nats://127.0.0.1:4222"}});
  ASSERT_FALSE(no_creds);
  EXPECT_NE(no_creds.error().message.find("needs the node to log in with a creds file"),
            std::string::npos);
  config_.trigger_signing_key_file.clear();
  auto none = TriggerCredentials::load(config_, creds_control_);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

}  // namespace
}  // namespace nex::triggers
