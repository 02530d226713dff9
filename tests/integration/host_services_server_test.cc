// The node's host-services server on its own, against a real nats-server, called as an agent
// calls it: the policies the node config sets are enforced, not only read. A service turned off
// ("enabled": false) is not there, messaging reaches only the allowed subjects, buckets stop at
// their cap, and calls beyond the 1024 that may wait are told at once that the node is busy.
#include "node/host_services/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "testing/nats_server_fixture.h"

namespace nex::node::host_services {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kWorkloadId = "wl1";

// A call's answer: its code, its message, its body.
struct Answer {
  int code = 0;
  std::string message;
  std::string body;
};

class HostServicesServerTest : public testing::NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    workload_ = unique("w");  // buckets are per workload: each test has its own
    agent_ = std::make_unique<nats::Connection>(connect());
  }
  void TearDown() override { server_.reset(); }

  // Starts the server with the node config's host_services.services `services`.
  void start(const json& services) {
    Settings settings;
    ASSERT_OK(read_settings(services, settings));
    ServerOptions options{.settings = settings, .control = connect()};
    options.find_caller = [this](const std::string& id) -> std::optional<Caller> {
      if (id != kWorkloadId) return std::nullopt;
      return Caller{.ns = "default", .name = workload_};
    };
    auto s = Server::start(std::move(options), *agent_);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
    ASSERT_OK(agent_->flush());
  }
  // The subject of `service`.`method` for this test's workload.
  std::string subject(const std::string& service, const std::string& method) const {
    return "hostint." + std::string(kWorkloadId) + ".rpc.default." + workload_ + "." + service +
           "." + method;
  }
  Answer call(const std::string& service, const std::string& method, const std::string& header,
              const std::string& value, const std::string& body = {}) {
    auto msg = nats::Message::create(subject(service, method), body);
    if (!msg) return {0, msg.error().message, {}};
    if (!header.empty()) (void)msg->set_header(header, value);
    auto r = agent_->request(*msg, 10s);
    if (!r) return {0, r.error().message, {}};
    return answer_of(*r);
  }
  static Answer answer_of(const nats::Message& m) {
    return {std::stoi(m.header(kHeaderCode).value_or("0")), m.header(kHeaderMessage).value_or(""),
            std::string(m.data())};
  }

  std::string workload_;
  std::unique_ptr<nats::Connection> agent_;
  std::unique_ptr<Server> server_;
};

TEST_F(HostServicesServerTest, AServiceTurnedOffIsNotThereAndTheOthersAre) {
  start({{"kv", {{"enabled", false}}}});
  ASSERT_FALSE(HasFatalFailure());
  Answer kv = call(kKeyValue, "set", kHeaderKey, "k", "v");
  EXPECT_EQ(kv.code, kNotFound) << kv.message;
  EXPECT_NE(kv.message.find("no host service 'kv' on this node"), std::string::npos) << kv.message;
  // The object store, left on, works.
  Answer obj = call(kObjectStore, "put", kHeaderObjectName, "doc", "content");
  EXPECT_EQ(obj.code, kOk) << obj.message;
}

TEST_F(HostServicesServerTest, MessagingReachesOnlyTheAllowedSubjects) {
  start({{"messaging", {{"config", {{"allow_subjects", {"app.>"}}}}}}});
  ASSERT_FALSE(HasFatalFailure());
  auto listener = connect();
  ASSERT_OK_AND_ASSIGN(heard, listener.subscribe_sync(">"));
  ASSERT_OK(listener.flush());
  Answer other = call(kMessaging, "publish", kHeaderSubject, "other.topic", "x");
  EXPECT_EQ(other.code, kForbidden) << other.message;
  EXPECT_NE(other.message.find("subject 'other.topic' is not in the node's allowed subjects"),
            std::string::npos)
      << other.message;
  Answer app = call(kMessaging, "publish", kHeaderSubject, "app.topic", "y");
  EXPECT_EQ(app.code, kOk) << app.message;
  // The listener hears everything: the allowed message, and before it nothing on other.topic.
  for (;;) {
    auto m = heard.next(5s);
    ASSERT_TRUE(m) << "the allowed message never arrived";
    EXPECT_NE(m->subject(), "other.topic") << "a refused subject was published";
    if (m->subject() == "app.topic") break;
  }
}

// Writes values of `size` bytes under new keys until one is refused; how many were stored.
int fill(const std::function<Answer(const std::string& key, const std::string& value)>& put,
         size_t size, int at_most, Answer& refused) {
  for (int i = 0; i < at_most; ++i) {
    Answer a = put("k" + std::to_string(i), std::string(size, 'x'));
    if (a.code != kOk) {
      refused = a;
      return i;
    }
  }
  return at_most;
}

TEST_F(HostServicesServerTest, BucketsStopAtTheirCap) {
  start({{"kv", {{"config", {{"max_bytes", 8192}}}}},
         {"objectstore", {{"config", {{"max_bytes", 16384}}}}}});
  ASSERT_FALSE(HasFatalFailure());
  Answer refused;
  // Each stored value also takes its subject and headers: fewer than 8 of 1000 bytes fit.
  const int kv_stored =
      fill([&](const std::string& k,
               const std::string& v) { return call(kKeyValue, "set", kHeaderKey, k, v); },
           1000, 20, refused);
  EXPECT_GE(kv_stored, 4);
  EXPECT_LT(kv_stored, 9) << "the key-value bucket took more than its 8192 bytes";
  EXPECT_NE(refused.code, kOk);
  EXPECT_FALSE(refused.message.empty());
  const int obj_stored =
      fill([&](const std::string& k,
               const std::string& v) { return call(kObjectStore, "put", kHeaderObjectName, k, v); },
           4000, 20, refused);
  EXPECT_GE(obj_stored, 2);
  EXPECT_LT(obj_stored, 5) << "the object store took more than its 16384 bytes";
  EXPECT_NE(refused.code, kOk);
}

// Eight workers, each held by a request nobody answers yet; 1024 calls wait; the next one is
// answered at once with 503, and once the workers are free the waiting calls are all served.
TEST_F(HostServicesServerTest, CallsBeyondTheWaitingLimitAreToldTheNodeIsBusy) {
  start({{"messaging", {{"config", {{"request_timeout_ms", 20000}}}}}});
  ASSERT_FALSE(HasFatalFailure());
  auto responder = connect();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> held;  // reply subjects of the requests holding the workers
  ASSERT_OK_AND_ASSIGN(hold, responder.subscribe("hold.it", [&](nats::Message m) {
    std::lock_guard l(mu);
    held.emplace_back(m.reply());
    cv.notify_all();
  }));
  ASSERT_OK_AND_ASSIGN(echo, responder.subscribe("echo.it", [&](nats::Message m) {
    (void)responder.publish(m.reply(), m.data());
  }));
  ASSERT_OK(responder.flush());

  // Answers to the calls, by the inbox token each was sent with.
  std::atomic<int> ok{0}, busy{0}, other{0};
  const std::string inbox = agent_->new_inbox();
  ASSERT_OK_AND_ASSIGN(answers, agent_->subscribe(inbox + ".*", [&](nats::Message m) {
    const Answer a = answer_of(m);
    std::lock_guard l(mu);  // so that a waiter cannot miss the notification
    if (a.code == kOk)
      ++ok;
    else if (a.code == kUnavailable && a.message.find("busy") != std::string::npos)
      ++busy;
    else
      ++other;
    cv.notify_all();
  }));
  ASSERT_OK(agent_->flush());
  auto send = [&](const std::string& to, int n) {
    auto msg =
        nats::Message::create(subject(kMessaging, "request"), "x", inbox + "." + std::to_string(n));
    ASSERT_TRUE(msg);
    ASSERT_OK(msg->set_header(kHeaderSubject, to));
    ASSERT_OK(agent_->publish(*msg));
  };
  constexpr int kWorkers = 8, kWaiting = 1024;
  for (int i = 0; i < kWorkers; ++i) send("hold.it", i);
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 10s, [&] { return held.size() == kWorkers; }))
        << held.size() << " workers took a request";
  }
  // The server queues calls in the order they came: the last one finds the queue full.
  for (int i = 0; i < kWaiting + 1; ++i) send("echo.it", kWorkers + i);
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 10s, [&] { return busy + ok + other > 0; }));
  }
  EXPECT_EQ(busy, 1);
  EXPECT_EQ(ok, 0) << "a call was served while every worker was held";
  {
    std::lock_guard l(mu);
    for (const auto& reply : held) ASSERT_OK(responder.publish(reply, "released"));
  }
  std::unique_lock l(mu);
  EXPECT_TRUE(cv.wait_for(l, 30s, [&] { return ok == kWorkers + kWaiting; }))
      << ok << " calls served";
  EXPECT_EQ(busy, 1);
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace nex::node::host_services
