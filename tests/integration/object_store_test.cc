#include "nats/object_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "crypto/digest.h"
#include "testing/nats_server_fixture.h"

namespace nex::nats {
namespace {

using namespace std::chrono_literals;
using testing::NatsServerTest;
namespace fs = std::filesystem;

std::string content(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

std::string expected_digest(std::string_view data) {
  return "SHA-256=" + base64_encode(crypto::sha256(as_bytes(data)), Base64::kUrl);
}

class ObjectStoreTest : public NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    js_ = std::make_unique<JetStream>(jetstream());
    auto os = ObjectStore::create(*js_, {.bucket = unique("objects")});
    ASSERT_TRUE(os) << os.error().message;
    os_ = std::make_unique<ObjectStore>(std::move(*os));
  }
  uint64_t stream_messages() { return js_->stream_info("OBJ_" + os_->bucket())->messages; }

  std::unique_ptr<JetStream> js_;
  std::unique_ptr<ObjectStore> os_;
};

TEST_F(ObjectStoreTest, RoundTripsEverySizeAtTheChunkBoundaries) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{131072}, size_t{131073}, size_t{5} << 20}) {
    const std::string name = "object-" + std::to_string(size);
    const std::string data = content(size, static_cast<uint32_t>(size));
    ASSERT_OK_AND_ASSIGN(put, os_->put_bytes(name, data));
    EXPECT_EQ(put.size, size);
    EXPECT_EQ(put.chunks, (size + ObjectStore::kChunkSize - 1) / ObjectStore::kChunkSize);
    EXPECT_EQ(put.digest, expected_digest(data));
    EXPECT_EQ(put.nuid.size(), 22u);
    ASSERT_OK_AND_ASSIGN(got, os_->get_bytes(name));
    EXPECT_EQ(got.size(), size);
    EXPECT_TRUE(got == data) << "content differs for size " << size;
    ASSERT_OK_AND_ASSIGN(info, os_->info(name));
    EXPECT_EQ(info.digest, put.digest);
    EXPECT_EQ(info.max_chunk_size, 131072u);
    EXPECT_FALSE(info.mtime.empty());
  }
}

TEST_F(ObjectStoreTest, MetaSubjectIsPaddedBase64UrlOfTheName) {
  ASSERT_OK(os_->put_bytes("a", "x"));
  // "a" -> "YQ==": unpadded names break Go readers (specs §4).
  ASSERT_OK_AND_ASSIGN(
      meta, js_->last_message("OBJ_" + os_->bucket(), "$O." + os_->bucket() + ".M.YQ=="));
  EXPECT_EQ(meta.header("Nats-Rollup").value_or(""), "sub");
  auto info = object_info_from_json(meta.data());
  ASSERT_TRUE(info);
  EXPECT_EQ(info->name, "a");
  EXPECT_EQ(info->bucket, os_->bucket());
}

TEST_F(ObjectStoreTest, OverwritePurgesThePreviousChunks) {
  ASSERT_OK(os_->put_bytes("doc", content(300 * 1024, 1)));  // 3 chunks
  EXPECT_EQ(stream_messages(), 4u);                          // 3 chunks + meta
  ASSERT_OK(os_->put_bytes("doc", "short"));
  EXPECT_EQ(stream_messages(), 2u);  // 1 chunk + the rolled-up meta
  ASSERT_OK_AND_ASSIGN(got, os_->get_bytes("doc"));
  EXPECT_EQ(got, "short");
}

TEST_F(ObjectStoreTest, DeleteLeavesATombstoneOnly) {
  ASSERT_OK(os_->put_bytes("gone", content(200000, 2)));
  ASSERT_OK(os_->remove("gone"));
  EXPECT_EQ(stream_messages(), 1u);
  auto got = os_->get_bytes("gone");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kNotFound);
  EXPECT_NE(got.error().message.find("gone"), std::string::npos);
  auto again = os_->remove("gone");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  // It can be written again after deletion.
  ASSERT_OK(os_->put_bytes("gone", "back"));
  EXPECT_EQ(*os_->get_bytes("gone"), "back");
}

TEST_F(ObjectStoreTest, ListShowsLiveObjectsWithAwkwardNames) {
  ASSERT_OK_AND_ASSIGN(empty, os_->list());
  EXPECT_TRUE(empty.empty());
  const std::vector<std::string> names = {"dir/sub/file.txt", "what?", "with space", "ünïcødé ✓",
                                          "deleted"};
  for (const auto& n : names) ASSERT_OK(os_->put_bytes(n, n));
  ASSERT_OK(os_->put_bytes("what?", "updated"));
  ASSERT_OK(os_->remove("deleted"));
  ASSERT_OK_AND_ASSIGN(listed, os_->list());
  std::set<std::string> got;
  for (const auto& i : listed) got.insert(i.name);
  EXPECT_EQ(got, (std::set<std::string>{"dir/sub/file.txt", "what?", "with space", "ünïcødé ✓"}));
  for (const auto& n : {"dir/sub/file.txt", "with space", "ünïcødé ✓"}) {
    EXPECT_EQ(*os_->get_bytes(n), n);
  }
}

TEST_F(ObjectStoreTest, FilesStreamInAndOut) {
  const fs::path dir = fs::temp_directory_path() / ("nex-os-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string data = content(3 * 1024 * 1024 + 17, 3);
  std::ofstream(dir / "in.bin", std::ios::binary) << data;
  ASSERT_OK_AND_ASSIGN(put, os_->put_file("file", dir / "in.bin"));
  EXPECT_EQ(put.size, data.size());
  ASSERT_OK(os_->get_file("file", dir / "out.bin"));
  std::ifstream in(dir / "out.bin", std::ios::binary);
  std::string round((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(round == data);
  auto missing = os_->put_file("nope", dir / "does-not-exist");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  fs::remove_all(dir);
}

TEST_F(ObjectStoreTest, MissingChunksAreDetectedAndNoPartialFileIsLeft) {
  ASSERT_OK_AND_ASSIGN(put, os_->put_bytes("victim", content(400000, 4)));
  ASSERT_OK(js_->purge_stream("OBJ_" + os_->bucket(), "$O." + os_->bucket() + ".C." + put.nuid));
  const fs::path out = fs::temp_directory_path() / ("nex-victim-" + std::to_string(getpid()));
  // A short JetStream timeout: the reader waits that long for a chunk that will never come.
  ASSERT_OK_AND_ASSIGN(quick_js, JetStream::create(connect(), {.timeout = 500ms}));
  ASSERT_OK_AND_ASSIGN(quick, ObjectStore::bind(quick_js, os_->bucket()));
  auto got = quick.get_file("victim", out);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kCorrupt);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));
}

TEST_F(ObjectStoreTest, DigestMismatchIsDetected) {
  ASSERT_OK_AND_ASSIGN(put, os_->put_bytes("tampered", "original bytes"));
  ObjectInfo forged = put;
  forged.digest = expected_digest("other bytes!!!");
  ASSERT_OK_AND_ASSIGN(msg, Message::create("$O." + os_->bucket() + ".M." +
                                                base64_encode(as_bytes("tampered"), Base64::kUrl),
                                            object_info_to_json(forged)));
  ASSERT_OK(msg.set_header("Nats-Rollup", "sub"));
  ASSERT_OK(js_->publish(msg));
  auto got = os_->get_bytes("tampered");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kCorrupt);
  EXPECT_NE(got.error().message.find("digest"), std::string::npos);
}

TEST_F(ObjectStoreTest, BucketErrors) {
  auto missing = ObjectStore::bind(*js_, "no_such_bucket");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("no_such_bucket"), std::string::npos);
  EXPECT_FALSE(ObjectStore::create(*js_, {.bucket = "bad name"}));
  EXPECT_FALSE(os_->put_bytes("", "x"));
  ASSERT_OK(ObjectStore::bind(*js_, os_->bucket()));
  ASSERT_OK(ObjectStore::remove_bucket(*js_, os_->bucket()));
  EXPECT_FALSE(ObjectStore::bind(*js_, os_->bucket()));
}

}  // namespace
}  // namespace nex::nats
