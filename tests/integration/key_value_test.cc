#include "nats/key_value.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "testing/nats_server_fixture.h"

namespace nex::nats {
namespace {

using namespace std::chrono_literals;
using testing::NatsServerTest;

class KeyValueTest : public NatsServerTest {
 protected:
  KeyValue bucket(int history = 5) {
    auto kv = KeyValue::create(jetstream(), {.bucket = unique("kv"), .history = history});
    if (!kv) throw std::runtime_error(kv.error().message);
    return *kv;
  }
};

TEST_F(KeyValueTest, PutGetDeletePurge) {
  auto kv = bucket();
  ASSERT_OK_AND_ASSIGN(r1, kv.put("config.db", std::string("v\0one", 5)));
  ASSERT_OK_AND_ASSIGN(e, kv.get("config.db"));
  EXPECT_EQ(e.value, std::string("v\0one", 5));
  EXPECT_EQ(e.revision, r1);
  EXPECT_EQ(e.key, "config.db");
  ASSERT_OK(kv.erase("config.db"));
  auto deleted = kv.get("config.db");
  ASSERT_FALSE(deleted);
  EXPECT_EQ(deleted.error().code, ErrorCode::kNotFound);
  ASSERT_OK(kv.put("config.db", "two"));
  ASSERT_OK_AND_ASSIGN(hist, kv.history("config.db"));
  ASSERT_EQ(hist.size(), 3u);
  EXPECT_EQ(hist[1].operation, KvOperation::kDelete);
  ASSERT_OK(kv.purge("config.db"));
  EXPECT_FALSE(kv.get("config.db"));
  auto missing = kv.get("never.set");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(KeyValueTest, CreateAndCompareAndSet) {
  auto kv = bucket();
  ASSERT_OK_AND_ASSIGN(rev, kv.create("lock", "me"));
  auto again = kv.create("lock", "you");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_NE(again.error().message.find("already has a value"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(rev2, kv.update("lock", "me2", rev));
  EXPECT_GT(rev2, rev);
  EXPECT_FALSE(kv.update("lock", "stale", rev));
}

TEST_F(KeyValueTest, KeysListsLiveKeys) {
  auto kv = bucket();
  ASSERT_OK_AND_ASSIGN(empty, kv.keys());
  EXPECT_TRUE(empty.empty());
  ASSERT_OK(kv.put("a", "1"));
  ASSERT_OK(kv.put("b/c", "2"));
  ASSERT_OK(kv.put("d", "3"));
  ASSERT_OK(kv.erase("d"));
  ASSERT_OK_AND_ASSIGN(keys, kv.keys());
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b/c"}));
}

TEST_F(KeyValueTest, WatchSeesCurrentValuesThenUpdates) {
  auto kv = bucket();
  ASSERT_OK(kv.put("w.one", "1"));
  ASSERT_OK_AND_ASSIGN(watcher, kv.watch("w.>"));
  ASSERT_OK_AND_ASSIGN(first, watcher.next(5s));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->value, "1");
  ASSERT_OK_AND_ASSIGN(marker, watcher.next(5s));
  EXPECT_FALSE(marker);  // end of initial values
  ASSERT_OK(kv.put("w.two", "2"));
  ASSERT_OK_AND_ASSIGN(update, watcher.next(5s));
  ASSERT_TRUE(update);
  EXPECT_EQ(update->key, "w.two");
  EXPECT_EQ(update->value, "2");
}

TEST_F(KeyValueTest, InvalidNamesAreClearErrors) {
  auto kv = bucket();
  for (const char* key : {"", ".lead", "trail.", "dou..ble", "sp ace", "wild*", "ünï"}) {
    auto r = kv.put(key, "x");
    ASSERT_FALSE(r) << key;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find("invalid key"), std::string::npos);
  }
  auto bad_bucket = KeyValue::create(jetstream(), {.bucket = "no.dots"});
  ASSERT_FALSE(bad_bucket);
  EXPECT_NE(bad_bucket.error().message.find("invalid bucket name"), std::string::npos);
  auto bad_history = KeyValue::create(jetstream(), {.bucket = unique("h"), .history = 65});
  ASSERT_FALSE(bad_history);
  EXPECT_NE(bad_history.error().message.find("1..64"), std::string::npos);
  auto missing = KeyValue::bind(jetstream(), "does_not_exist");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace nex::nats
