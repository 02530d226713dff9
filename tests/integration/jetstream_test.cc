#include "nats/jetstream.h"

#include <gtest/gtest.h>

#include "testing/nats_server_fixture.h"

namespace nex::nats {
namespace {

using namespace std::chrono_literals;
using testing::NatsServerTest;

class JetStreamTest : public NatsServerTest {};

TEST_F(JetStreamTest, StreamLifecycleAndAcknowledgedPublish) {
  auto js = jetstream();
  const std::string name = unique("ORDERS");
  ASSERT_OK_AND_ASSIGN(info, js.add_stream({.name = name, .subjects = {name + ".>"}}));
  EXPECT_EQ(info.name, name);
  ASSERT_OK_AND_ASSIGN(a1, js.publish(name + ".new", "one"));
  ASSERT_OK_AND_ASSIGN(a2, js.publish(name + ".new", "two"));
  EXPECT_EQ(a1.stream, name);
  EXPECT_EQ(a2.sequence, a1.sequence + 1);
  ASSERT_OK_AND_ASSIGN(last, js.last_message(name, name + ".new"));
  EXPECT_EQ(last.data(), "two");
  ASSERT_OK_AND_ASSIGN(si, js.stream_info(name));
  EXPECT_EQ(si.messages, 2u);
  ASSERT_OK(js.purge_stream(name, name + ".new"));
  ASSERT_OK_AND_ASSIGN(purged, js.stream_info(name));
  EXPECT_EQ(purged.messages, 0u);
  auto gone = js.last_message(name, name + ".new");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  ASSERT_OK(js.delete_stream(name));
  auto missing = js.stream_info(name);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(JetStreamTest, PublishWithoutAStreamIsAnError) {
  auto js = jetstream();
  auto r = js.publish("no.stream.here", "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNoResponders);
}

TEST_F(JetStreamTest, PipelinedPublishesAreAllAcknowledged) {
  auto js = jetstream();
  const std::string name = unique("PIPE");
  ASSERT_OK(js.add_stream({.name = name, .subjects = {name}}));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK_AND_ASSIGN(m, Message::create(name, std::to_string(i)));
    ASSERT_OK(js.publish_async(std::move(m)));
  }
  ASSERT_OK(js.publish_async_complete(10s));
  ASSERT_OK_AND_ASSIGN(si, js.stream_info(name));
  EXPECT_EQ(si.messages, 1000u);
}

TEST_F(JetStreamTest, PipelinedPublishFailuresSurface) {
  auto js = jetstream();
  const std::string name = unique("SMALL");
  ASSERT_OK(
      js.add_stream({.name = name, .subjects = {name}, .discard = Discard::kNew, .max_msgs = 3}));
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(m, Message::create(name, "x"));
    ASSERT_OK(js.publish_async(std::move(m)));
  }
  auto st = js.publish_async_complete(10s);
  ASSERT_FALSE(st);  // the stream refused messages past its limit
  EXPECT_NE(st.error().message.find(name), std::string::npos);
}

TEST_F(JetStreamTest, OrderedConsumerReadsInOrder) {
  auto js = jetstream();
  const std::string name = unique("SEQ");
  ASSERT_OK(js.add_stream({.name = name, .subjects = {name + ".*"}}));
  for (int i = 0; i < 50; ++i) ASSERT_OK(js.publish(name + ".a", std::to_string(i)));
  ASSERT_OK(js.publish(name + ".b", "other"));
  ASSERT_OK_AND_ASSIGN(sub, js.ordered_consumer(name, name + ".a"));
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(m, sub.next(5s));
    EXPECT_EQ(m.data(), std::to_string(i));
    ASSERT_OK_AND_ASSIGN(meta, JetStream::metadata(m));
    EXPECT_EQ(meta.num_pending, static_cast<uint64_t>(49 - i));
  }
}

}  // namespace
}  // namespace nex::nats
