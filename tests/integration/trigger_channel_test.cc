// The trigger channel between a node and an agent on its host (triggers/frames.h), each end
// against the other played by the test: the node's end (ChannelNodeEnd, relaying callers' requests
// from a real nats-server) facing an agent that forges, breaks, stops reading or dies; and the
// agent's end (ChannelTriggerSource, ChannelAnswers) facing the node's frames.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <future>
#include <set>
#include <thread>

#include "api/agent.h"
#include "testing/nats_server_fixture.h"
#include "triggers/channel_agent_end.h"
#include "triggers/channel_node_end.h"
#include "triggers/relay.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace frames = triggers::frames;
using TriggerChannelTest = testing::NatsServerTest;
using Next = runtime::InvocationSource::Next;

// The agent's side of a channel, played by the test: it reads triggers and writes what it likes.
class FakeAgent {
 public:
  explicit FakeAgent(UniqueFd fd) : fd_(std::move(fd)) {}

  // The next trigger the node sent, waiting up to `patience`.
  std::optional<frames::Trigger> read_trigger(std::chrono::milliseconds patience = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    for (frames::Trigger t;;) {
      auto got = reader_.next(t);
      if (!got) throw std::runtime_error(got.error().message);
      if (*got) return t;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      timeval tv{0, 100 * 1000};
      ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      auto room = reader_.prepare(64 * 1024);
      const ssize_t n = ::recv(fd_.get(), room.data(), room.size(), 0);
      if (n > 0) reader_.commit(static_cast<size_t>(n));
      if (n == 0) return std::nullopt;
    }
  }
  void write(const std::string& bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void answer(uint64_t seq, const std::string& body, bool failed = false) {
    std::string frame;
    frames::append_answer(frame, seq, failed, 1234, body);
    write(frame);
  }
  void die() { fd_.reset(); }

 private:
  UniqueFd fd_;
  frames::FrameReader reader_{frames::kMaxFrame};
};

// A node's relay for one function over a channel, and the agent's end for the test to play.
struct Relayed {
  explicit Relayed(const nats::Connection& control) : relay(control, control) {}
  // The subscriptions' handlers use the relay and the channel, and the channel's thread uses the
  // test's control connection: no handler may still run (a flood of triggers can keep one busy)
  // and the channel's thread must have ended before the test's locals go, as in the node.
  ~Relayed() {
    for (auto& s : subs) s.unsubscribe_and_wait();
    if (channel) channel->close();
  }
  triggers::TriggerRelay relay;
  std::shared_ptr<triggers::ChannelNodeEnd> channel;
  std::vector<nats::Subscription> subs;
  std::unique_ptr<FakeAgent> agent;
};

std::unique_ptr<Relayed> relay_over_channel(const nats::Connection& control,
                                            const std::string& subject) {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::runtime_error("socketpair");
  auto r = std::make_unique<Relayed>(control);
  auto channel = triggers::ChannelNodeEnd::open(UniqueFd(ends[0]), control, "wl1", 10s);
  if (!channel) throw std::runtime_error(channel.error().message);
  r->channel = *channel;
  auto subs = r->relay.subscribe("wl1", {subject}, 10s, r->channel);
  if (!subs) throw std::runtime_error(subs.error().message);
  r->subs = std::move(*subs);
  if (!control.flush()) throw std::runtime_error("flush");
  r->agent = std::make_unique<FakeAgent>(UniqueFd(ends[1]));
  return r;
}

std::future<Result<nats::Message>> ask(const nats::Connection& conn, const std::string& subject,
                                       const std::string& body,
                                       std::chrono::milliseconds timeout = 5000ms) {
  return std::async(std::launch::async, [&conn, subject, body, timeout] {
    return conn.request(subject, body, timeout);
  });
}

TEST_F(TriggerChannelTest, AnswersReachTheirCallersOnceAndForgedOnesNowhere) {
  auto control = connect();
  const std::string subject = unique("channel.echo");
  auto r = relay_over_channel(control, subject);
  // The caller listens on an inbox of its own, so a second answer would be seen.
  const std::string inbox = unique("inbox");
  std::atomic<int> answers{0};
  std::promise<std::string> first;
  std::promise<void> marker;
  auto sub = control.subscribe(inbox, [&](nats::Message m) {
    if (m.data() == "marker") return marker.set_value();
    if (answers++ == 0)
      first.set_value(std::string(m.data()) + "|" + m.header("x-nex-runtime-ns").value_or(""));
  });
  ASSERT_TRUE(sub);
  ASSERT_OK(control.flush());
  ASSERT_OK(control.publish(subject, "hello", inbox));
  auto trigger = r->agent->read_trigger();
  ASSERT_TRUE(trigger);
  EXPECT_EQ(trigger->subject, subject);
  EXPECT_EQ(trigger->payload, "hello");
  EXPECT_NE(trigger->seq, 0u);
  r->agent->answer(trigger->seq + 1000, "forged");  // never issued: no one hears it
  r->agent->answer(trigger->seq, "HELLO");
  r->agent->answer(trigger->seq, "again");  // answered already
  auto got = first.get_future();
  ASSERT_EQ(got.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(got.get(), "HELLO|1234");
  // A later trigger for the same inbox, answered after those: the node forwards answers in the
  // order the agent wrote them, so once this one arrives, any forwarded before it has too.
  ASSERT_OK(control.publish(subject, "later", inbox));
  auto later = r->agent->read_trigger();
  ASSERT_TRUE(later);
  r->agent->answer(later->seq, "marker");
  ASSERT_EQ(marker.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(answers.load(), 1) << "a forged or repeated answer reached the caller";

  // A trigger without a reply subject is numbered 0, and an answer to 0 goes nowhere.
  ASSERT_OK(control.publish(subject, "no reply"));
  auto fire_and_forget = r->agent->read_trigger();
  ASSERT_TRUE(fire_and_forget);
  EXPECT_EQ(fire_and_forget->seq, 0u);

  // A failed invocation is an error as NATS micro services report one.
  auto failing = ask(control, subject, "x");
  auto t = r->agent->read_trigger();
  ASSERT_TRUE(t);
  r->agent->answer(t->seq, "TypeError: boom", /*failed=*/true);
  auto failed = failing.get();
  ASSERT_TRUE(failed) << failed.error().message;
  EXPECT_EQ(failed->header("Nats-Service-Error"), "TypeError: boom");
  EXPECT_EQ(failed->header("Nats-Service-Error-Code"), "500");
}

TEST_F(TriggerChannelTest, CallersHearAtOnceWhenTheAgentEnds) {
  auto control = connect();
  const std::string subject = unique("channel.dies");
  auto r = relay_over_channel(control, subject);
  auto waiting = ask(control, subject, "are you there", 10s);
  ASSERT_TRUE(r->agent->read_trigger());
  const auto died = std::chrono::steady_clock::now();
  r->agent->die();
  auto reply = waiting.get();
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - died, 2s);  // not its 10 s time-out
  EXPECT_EQ(reply->header("Nats-Service-Error"), api::kFunctionStopped);
  auto later = control.request(subject, "and now?", 5s);
  ASSERT_TRUE(later) << later.error().message;
  EXPECT_EQ(later->header("Nats-Service-Error-Code"), "503");
  EXPECT_EQ(later->header("Nats-Service-Error"), "the function is not running");
}

TEST_F(TriggerChannelTest, AnswersWrittenJustBeforeTheAgentEndsStillReachTheirCallers) {
  auto control = connect();
  const std::string subject = unique("channel.last");
  auto r = relay_over_channel(control, subject);
  auto first = ask(control, subject, "first", 10s);
  auto t1 = r->agent->read_trigger();
  auto second = ask(control, subject, "second", 10s);
  auto t2 = r->agent->read_trigger();
  ASSERT_TRUE(t1 && t2);
  r->agent->answer(t1->payload == "first" ? t1->seq : t2->seq, "FIRST");
  r->agent->die();
  auto answered = first.get(), left = second.get();
  ASSERT_TRUE(answered && left);
  EXPECT_EQ(answered->data(), "FIRST");
  EXPECT_EQ(left->header("Nats-Service-Error"), api::kFunctionStopped);
}

TEST_F(TriggerChannelTest, AnAgentThatBreaksTheFramesLosesItsChannelNotTheNode) {
  auto control = connect();
  const std::string subject = unique("channel.garbage");
  auto r = relay_over_channel(control, subject);
  auto waiting = ask(control, subject, "x", 10s);
  ASSERT_TRUE(r->agent->read_trigger());
  r->agent->write(std::string("\xff\xff\xff\x7f garbage", 12));  // a 2 GiB frame, it says
  auto reply = waiting.get();
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->header("Nats-Service-Error"), "the function's agent broke the trigger channel");
  r->channel->close();  // and the node carries on
  EXPECT_TRUE(control.connected());
}

// The node never blocks on an agent that stops reading: triggers wait in memory up to the
// limit, the ones beyond are refused at once as overloaded, and those that waited reach the
// agent whole and in order once it reads again.
TEST_F(TriggerChannelTest, TriggersWaitUpToTheLimitForAnAgentThatDoesNotRead) {
  auto control = connect();
  auto caller = connect();
  const std::string subject = unique("channel.stuck");
  auto r = relay_over_channel(control, subject);
  const std::string inbox = unique("inbox");
  std::atomic<int> overloaded{0};
  auto sub = caller.subscribe(inbox, [&](nats::Message m) {
    if (m.header("Nats-Service-Error-Code") == "503" &&
        m.header("Nats-Service-Error").value_or("").find("overloaded") != std::string::npos)
      overloaded++;
  });
  ASSERT_TRUE(sub);
  ASSERT_OK(caller.flush());
  const size_t payload = 1000 * 1000;  // under nats-server's default max_payload of 1 MiB
  const int sent = 80;                 // 80 MB: more than the 64 MiB that may wait
  for (int i = 0; i < sent; ++i) {
    std::string body(payload, static_cast<char>('a' + i % 26));
    std::memcpy(body.data(), &i, sizeof i);
    ASSERT_OK(caller.publish(subject, body, inbox));
  }
  ASSERT_OK(caller.flush());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (overloaded.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_GT(overloaded.load(), 0);
  // The agent reads again: every trigger not refused arrives, whole and in order.
  int expected = 0, received = 0;
  while (auto t = r->agent->read_trigger(1000ms)) {
    int i = -1;
    ASSERT_EQ(t->payload.size(), payload);
    std::memcpy(&i, t->payload.data(), sizeof i);
    EXPECT_GE(i, expected);
    EXPECT_EQ(t->payload.back(), static_cast<char>('a' + i % 26));
    expected = i + 1;
    received++;
  }
  EXPECT_EQ(received + overloaded.load(), sent);
  EXPECT_GE(static_cast<size_t>(received) * payload,
            triggers::ChannelNodeEnd::kMaxWaitingBytes / 2);
}

// ---- The agent's end.

struct AgentEnd {
  UniqueFd node, agent;
  std::unique_ptr<triggers::ChannelTriggerSource> source;
};

AgentEnd agent_end() {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::runtime_error("socketpair");
  AgentEnd e{UniqueFd(ends[0]), UniqueFd(ends[1]), nullptr};
  e.source = std::make_unique<triggers::ChannelTriggerSource>(e.agent.get(), [](frames::Trigger t) {
    return runtime::Invocation{std::move(t.subject), std::move(t.payload), nullptr};
  });
  return e;
}

void send_triggers(int fd, std::initializer_list<const char*> payloads) {
  std::string bytes;
  uint64_t seq = 1;
  for (const char* p : payloads) frames::append_trigger(bytes, seq++, "fn.subject", p);
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

std::future<std::pair<Next, std::string>> take(triggers::ChannelTriggerSource& source,
                                               std::chrono::milliseconds wait) {
  return std::async(std::launch::async, [&source, wait] {
    runtime::Invocation invocation;
    const Next next = source.next(wait, invocation);
    return std::make_pair(next, invocation.payload);
  });
}

// Two triggers written at once, read by one worker: the other waiting worker gets the second.
TEST(ChannelTriggerSourceTest, TwoWaitingWorkersEachTakeOneOfTwoTriggersAtOnce) {
  auto e = agent_end();
  auto a = take(*e.source, 5000ms);
  auto b = take(*e.source, 5000ms);
  std::this_thread::sleep_for(100ms);  // both wait
  const auto sent = std::chrono::steady_clock::now();
  send_triggers(e.node.get(), {"one", "two"});
  auto first = a.get(), second = b.get();
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 1s);
  EXPECT_EQ(first.first, Next::kInvocation);
  EXPECT_EQ(second.first, Next::kInvocation);
  std::set<std::string> got = {first.second, second.second};
  EXPECT_EQ(got, (std::set<std::string>{"one", "two"}));
}

TEST(ChannelTriggerSourceTest, WrittenBeforeClosingIsStillTakenThenTheEnd) {
  auto e = agent_end();
  EXPECT_EQ(take(*e.source, 50ms).get().first, Next::kTimeout);
  send_triggers(e.node.get(), {"a", "b", "c"});
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (e.source->backlog() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_GE(e.source->backlog(), 1u);  // unread, with no worker there: an engine is wanted
  e.source->close();
  std::vector<std::string> taken;
  for (;;) {
    auto [next, payload] = take(*e.source, 1000ms).get();
    if (next != Next::kInvocation) {
      EXPECT_EQ(next, Next::kClosed);
      break;
    }
    taken.push_back(payload);
  }
  EXPECT_EQ(taken, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(take(*e.source, 1000ms).get().first, Next::kClosed);
}

TEST(ChannelTriggerSourceTest, AnswersAreFramesTheNodeReads) {
  auto e = agent_end();
  triggers::ChannelAnswers answers(e.agent.get());
  EXPECT_TRUE(answers.answer(9, {true, "reply"}, 77));
  EXPECT_TRUE(answers.answer(0, {true, "nobody asked"}, 1));  // nothing is written for seq 0
  EXPECT_TRUE(answers.answer(10, {false, "RangeError: no"}, 88));
  frames::FrameReader reader(frames::kMaxFrame);
  auto room = reader.prepare(4096);
  const ssize_t n = ::recv(e.node.get(), room.data(), room.size(), 0);
  ASSERT_GT(n, 0);
  reader.commit(static_cast<size_t>(n));
  frames::Answer a;
  ASSERT_TRUE(*reader.next(a));
  EXPECT_EQ(a.seq, 9u);
  EXPECT_FALSE(a.failed);
  EXPECT_EQ(a.runtime_ns, 77);
  EXPECT_EQ(a.body, "reply");
  ASSERT_TRUE(*reader.next(a));
  EXPECT_EQ(a.seq, 10u);
  EXPECT_TRUE(a.failed);
  EXPECT_EQ(a.body, "RangeError: no");
  EXPECT_FALSE(*reader.next(a));
  e.node.reset();
  EXPECT_FALSE(answers.answer(11, {true, "gone"}, 1));  // the node's end is gone
}

}  // namespace
}  // namespace nex
