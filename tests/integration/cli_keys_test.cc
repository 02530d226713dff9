// `nex keys` as a new user runs it: the public keys a node's `valid_issuers` (and so
// `cliCommand`) needs, and the files they come from, without ever printing a seed.
#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "crypto/nkeys.h"
#include "crypto/xkeys.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"

namespace nex {
namespace {

namespace fs = std::filesystem;
using ::nex::testing::slurp;

class CliKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() / ("nex-keys-" + std::to_string(getpid()));
    fs::remove_all(home_);
    fs::create_directories(home_);
  }
  void TearDown() override { fs::remove_all(home_); }
  testing::CliResult keys(std::vector<std::string> args = {}) {
    args.insert(args.begin(), "keys");
    const fs::path out = home_ / "out.txt";
    auto r = testing::run_nex(args, {.cwd = home_, .env = {"HOME=" + home_.string()}}, out);
    fs::remove(out);  // output is appended to it
    return r;
  }
  static std::string first_line(const fs::path& file) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    return line;
  }
  fs::path home_;
};

TEST_F(CliKeys, PrintsThePublicKeysAndWhereTheyLiveNeverASeed) {
  // A new user asks before ever deploying: the keys are made, as devrun would make them.
  const auto made = keys();
  ASSERT_EQ(made.code, 0) << made.out;
  const fs::path issuer_file = home_ / ".nex/issuer.nk", xkey_file = home_ / ".nex/publisher.xk";
  ASSERT_TRUE(fs::exists(issuer_file)) << made.out;
  ASSERT_TRUE(fs::exists(xkey_file)) << made.out;
  const std::string issuer_seed = first_line(issuer_file), xkey_seed = first_line(xkey_file);
  auto issuer = crypto::KeyPair::from_seed(issuer_seed);
  auto xkey = crypto::XKey::from_seed(xkey_seed);
  ASSERT_TRUE(issuer && xkey);

  const auto again = keys();
  ASSERT_EQ(again.code, 0) << again.out;
  for (const auto& r : {made, again}) {
    EXPECT_NE(r.out.find(issuer->public_key()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(issuer_file.string()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("valid_issuers"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(xkey->public_key()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(xkey_file.string()), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(issuer_seed), std::string::npos) << "a seed was printed:\n" << r.out;
    EXPECT_EQ(r.out.find(xkey_seed), std::string::npos) << "a seed was printed:\n" << r.out;
  }
  EXPECT_EQ(first_line(issuer_file), issuer_seed) << "nex keys replaced an existing key";

  const auto json_out = keys({"--json"});
  ASSERT_EQ(json_out.code, 0) << json_out.out;
  auto j = nlohmann::json::parse(json_out.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json_out.out;
  EXPECT_EQ(j["issuer"]["public_key"], issuer->public_key());
  EXPECT_EQ(j["issuer"]["file"], issuer_file.string());
  EXPECT_EQ(j["publisher_xkey"]["public_key"], xkey->public_key());
  EXPECT_EQ(j["publisher_xkey"]["file"], xkey_file.string());
}

TEST_F(CliKeys, KeysNamedByFlagAreShownNotMadeAndABadOneIsNamed) {
  const fs::path mine = home_ / "mine.nk";
  auto account = crypto::KeyPair::create(crypto::KeyType::kAccount);
  std::ofstream(mine) << account->seed() << "\n";
  const auto shown = keys({"--issuer", mine.string()});
  ASSERT_EQ(shown.code, 0) << shown.out;
  EXPECT_NE(shown.out.find(account->public_key()), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find(account->seed()), std::string::npos) << shown.out;

  const auto missing = keys({"--issuer", (home_ / "nope.nk").string()});
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_NE(missing.out.find((home_ / "nope.nk").string()), std::string::npos) << missing.out;
  EXPECT_FALSE(fs::exists(home_ / "nope.nk")) << "a key file named by a flag was made";

  const fs::path user = home_ / "user.nk";
  std::ofstream(user) << crypto::KeyPair::create(crypto::KeyType::kUser)->seed() << "\n";
  const auto wrong = keys({"--issuer", user.string()});
  EXPECT_EQ(wrong.code, 1) << wrong.out;
  EXPECT_NE(wrong.out.find("not an account seed (SA...)"), std::string::npos) << wrong.out;
}

}  // namespace
}  // namespace nex
