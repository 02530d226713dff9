// The agent's trigger subscription as a function's source of invocations, against a real
// nats-server: several workers wait at once, and each trigger reaches one of them promptly.
#include "triggers/subscription_source.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "testing/nats_server_fixture.h"

namespace nex::triggers {
namespace {

using namespace std::chrono_literals;
using Next = runtime::InvocationSource::Next;
using TriggerSourceTest = testing::NatsServerTest;

// What one worker's next() returned, and how long it waited.
struct Taken {
  Next next;
  std::string payload;
  std::chrono::steady_clock::duration waited;
};

std::future<Taken> take(TriggerSource& source, std::chrono::milliseconds wait) {
  return std::async(std::launch::async, [&source, wait] {
    const auto start = std::chrono::steady_clock::now();
    runtime::Invocation invocation;
    const Next next = source.next(wait, invocation);
    return Taken{next, invocation.payload, std::chrono::steady_clock::now() - start};
  });
}

// A source on `subject`, subscribed at the server by the time it returns.
std::unique_ptr<TriggerSource> make_source(const nats::Connection& conn,
                                           const std::string& subject) {
  auto sub = conn.subscribe_sync(subject);
  if (!sub) throw std::runtime_error(sub.error().message);
  if (auto flushed = conn.flush(); !flushed) throw std::runtime_error(flushed.error().message);
  return std::make_unique<TriggerSource>(std::move(*sub), [](nats::Message m) {
    return runtime::Invocation{std::string(m.subject()), std::string(m.data()), nullptr};
  });
}

// Whether two workers wait in `source` within 5 s.
bool both_waiting(TriggerSource& source) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (source.waiting() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  return source.waiting() == 2;
}

// Publishes `payloads` and waits (up to 2 s) until the source holds them all.
void publish_and_wait_for_backlog(const nats::Connection& conn, TriggerSource& source,
                                  const std::string& subject,
                                  std::initializer_list<const char*> payloads) {
  for (const char* p : payloads) ASSERT_OK(conn.publish(subject, p));
  ASSERT_OK(conn.flush());
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (source.backlog() < payloads.size() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
}

// libnats wakes a waiting thread only when a message arrives to an empty queue: two triggers
// sent together must still reach the two waiting workers, not leave one asleep with the second.
TEST_F(TriggerSourceTest, TwoWaitingWorkersEachTakeOneOfTwoTriggersAtOnce) {
  auto conn = connect();
  auto source_ptr = make_source(conn, "fn.triggers");
  TriggerSource& source = *source_ptr;
  auto first = take(source, 5000ms);
  auto second = take(source, 5000ms);
  ASSERT_TRUE(both_waiting(source));
  ASSERT_OK(conn.publish("fn.triggers", "a"));
  ASSERT_OK(conn.publish("fn.triggers", "b"));
  ASSERT_OK(conn.flush());
  const Taken a = first.get(), b = second.get();
  ASSERT_EQ(a.next, Next::kInvocation);
  ASSERT_EQ(b.next, Next::kInvocation);
  EXPECT_TRUE(a.payload + b.payload == "ab" || a.payload + b.payload == "ba")
      << a.payload << b.payload;
  EXPECT_LT(std::max(a.waited, b.waited), 2s) << "a trigger waited for a busy worker";
}

TEST_F(TriggerSourceTest, TriggersWaitingForAWorkerAreTheBacklog) {
  auto conn = connect();
  auto source_ptr = make_source(conn, "fn.backlog");
  TriggerSource& source = *source_ptr;
  publish_and_wait_for_backlog(conn, source, "fn.backlog", {"1", "2", "3"});
  EXPECT_EQ(source.backlog(), 3u);
  EXPECT_EQ(take(source, 1000ms).get().payload, "1");
  EXPECT_EQ(source.backlog(), 2u);
}

TEST_F(TriggerSourceTest, ClosingEndsEveryWaitAndLaterOnes) {
  auto conn = connect();
  auto source_ptr = make_source(conn, "fn.closing");
  TriggerSource& source = *source_ptr;
  auto receiving = take(source, 10000ms);
  auto queued = take(source, 10000ms);
  ASSERT_TRUE(both_waiting(source));
  source.close();
  const Taken a = receiving.get(), b = queued.get();
  EXPECT_EQ(a.next, Next::kClosed);
  EXPECT_EQ(b.next, Next::kClosed);
  EXPECT_LT(std::max(a.waited, b.waited), 2s);
  EXPECT_EQ(take(source, 10000ms).get().next, Next::kClosed);
}

// Stopping a function must not strand triggers it already received: their callers get an
// answer (the function's refusal) instead of a time-out.
TEST_F(TriggerSourceTest, TriggersReceivedBeforeClosingAreStillTaken) {
  auto conn = connect();
  auto source_ptr = make_source(conn, "fn.draining");
  TriggerSource& source = *source_ptr;
  publish_and_wait_for_backlog(conn, source, "fn.draining", {"1", "2", "3"});
  ASSERT_EQ(source.backlog(), 3u);
  source.close();
  ASSERT_OK(conn.publish("fn.draining", "after"));  // the server no longer sends it
  ASSERT_OK(conn.flush());
  for (const char* p : {"1", "2", "3"}) {
    const Taken t = take(source, 1000ms).get();
    ASSERT_EQ(t.next, Next::kInvocation);
    EXPECT_EQ(t.payload, p);
  }
  const Taken end = take(source, 10000ms).get();
  EXPECT_EQ(end.next, Next::kClosed);
  EXPECT_LT(end.waited, 1s);
}

TEST_F(TriggerSourceTest, NothingArrivingIsATimeout) {
  auto conn = connect();
  auto source_ptr = make_source(conn, "fn.quiet");
  TriggerSource& source = *source_ptr;
  const Taken t = take(source, 50ms).get();
  EXPECT_EQ(t.next, Next::kTimeout);
  EXPECT_GE(t.waited, 40ms);  // it waited (libnats' timer is a millisecond clock)
}

}  // namespace
}  // namespace nex::triggers
