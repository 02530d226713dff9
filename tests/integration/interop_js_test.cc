// Interoperability with a client nobody here wrote: the official JavaScript client (npm `nats`
// v2, run with the machine's Node.js) reads objects and KV entries that nex wrote, and writes
// ones nex reads. Names with '/', '?', spaces and unicode; sizes 0, 1, 131072, 131073, 20 MiB.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/subprocess.h"
#include "nats/key_value.h"
#include "nats/object_store.h"
#include "testing/nats_server_fixture.h"

namespace nex::nats {
namespace {

using testing::NatsServerTest;
namespace fs = std::filesystem;

const std::vector<std::pair<std::string, size_t>> kObjects = {
    {"with/slash", 0},
    {"what?", 1},
    {"with space", 131072},
    {"ünïcødé ✓", 131073},
    {"big/file? ü", size_t{20} << 20},
};
const std::vector<std::pair<std::string, size_t>> kKvEntries = {
    {"nex.interop.text", 5}, {"a/b=c_d-e", 1000}, {"empty", 0}};

using ::nex::testing::slurp;

class InteropJsTest : public NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (std::system("node --version > /dev/null 2>&1") != 0)
      GTEST_SKIP() << "node (Node.js) is not installed";
    ASSERT_TRUE(fs::exists(fs::path(NEX_INTEROP_DIR) / "node_modules" / "nats"))
        << "the npm client is missing: run `npm ci` in " << NEX_INTEROP_DIR
        << " (scripts/test.sh does this)";
    dir_ = fs::temp_directory_path() / ("nex-interop-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Writes deterministic contents for every object and KV entry; returns the manifest path.
  fs::path write_manifest(const std::string& object_bucket, const std::string& kv_bucket) {
    nlohmann::json m = {{"object_bucket", object_bucket},
                        {"kv_bucket", kv_bucket},
                        {"objects", nlohmann::json::array()},
                        {"kv", nlohmann::json::array()}};
    std::mt19937 rng(42);
    auto make = [&](const std::string& tag, size_t size) {
      const fs::path f = dir_ / (object_bucket + "-" + tag + ".bin");
      std::string data(size, '\0');
      for (char& c : data) c = static_cast<char>(rng());
      std::ofstream(f, std::ios::binary) << data;
      return f;
    };
    int i = 0;
    for (const auto& [name, size] : kObjects) {
      m["objects"].push_back(
          {{"name", name}, {"file", make("o" + std::to_string(i++), size).string()}});
    }
    for (const auto& [key, size] : kKvEntries) {
      m["kv"].push_back({{"key", key}, {"file", make("k" + std::to_string(i++), size).string()}});
    }
    const fs::path path = dir_ / (object_bucket + ".json");
    std::ofstream(path) << m.dump(2);
    return path;
  }

  void run_node(const std::string& mode, const fs::path& manifest) {
    const fs::path log = dir_ / ("node-" + mode + ".log");
    auto p = Subprocess::spawn({.argv = {"node", std::string(NEX_INTEROP_DIR) + "/interop.mjs",
                                         server().url(), mode, manifest.string()},
                                .stdout_path = log.string(),
                                .stderr_path = log.string()});
    ASSERT_TRUE(p) << p.error().message;
    auto status = p->wait_for(std::chrono::minutes(3));
    ASSERT_TRUE(status) << "node did not finish";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "node " << mode << ":\n"
                                                                 << slurp(log);
  }

  fs::path dir_;
};

TEST_F(InteropJsTest, JavaScriptClientReadsWhatNexWrote) {
  auto js = jetstream();
  const std::string ob = unique("interop_nex_obj"), kb = unique("interop_nex_kv");
  ASSERT_OK_AND_ASSIGN(os, ObjectStore::create(js, {.bucket = ob}));
  ASSERT_OK_AND_ASSIGN(kv, KeyValue::create(js, {.bucket = kb}));
  const fs::path manifest = write_manifest(ob, kb);
  const auto m = nlohmann::json::parse(slurp(manifest));
  for (const auto& o : m["objects"])
    ASSERT_OK(os.put_file(o["name"], o["file"].get<std::string>()));
  for (const auto& e : m["kv"])
    ASSERT_OK(kv.put(e["key"].get<std::string>(), slurp(e["file"].get<std::string>())));
  run_node("read", manifest);
}

TEST_F(InteropJsTest, NexReadsWhatTheJavaScriptClientWrote) {
  const std::string ob = unique("interop_js_obj"), kb = unique("interop_js_kv");
  const fs::path manifest = write_manifest(ob, kb);
  run_node("write", manifest);
  ASSERT_FALSE(HasFailure());
  auto js = jetstream();
  ASSERT_OK_AND_ASSIGN(os, ObjectStore::bind(js, ob));
  ASSERT_OK_AND_ASSIGN(kv, KeyValue::bind(js, kb));
  const auto m = nlohmann::json::parse(slurp(manifest));
  for (const auto& o : m["objects"]) {
    const std::string name = o["name"];
    ASSERT_OK_AND_ASSIGN(got, os.get_bytes(name));  // size and digest verified inside
    EXPECT_TRUE(got == slurp(o["file"].get<std::string>())) << name;
  }
  ASSERT_OK_AND_ASSIGN(listed, os.list());
  EXPECT_EQ(listed.size(), kObjects.size());
  for (const auto& e : m["kv"]) {
    ASSERT_OK_AND_ASSIGN(entry, kv.get(e["key"].get<std::string>()));
    EXPECT_EQ(entry.value, slurp(e["file"].get<std::string>())) << e["key"];
  }
}

}  // namespace
}  // namespace nex::nats
