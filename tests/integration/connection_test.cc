// Connection, messaging and authentication against a real nats-server.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include "crypto/nkeys.h"
#include "testing/nats_server_fixture.h"
#include "testing/operator_chain.h"

namespace nex::nats {
namespace {

using namespace std::chrono_literals;
using testing::NatsServerTest;
namespace fs = std::filesystem;

// Waits for a counter to reach a value (events arrive on libnats' threads).
class Latch {
 public:
  void add(int n = 1) {
    std::lock_guard l(mu_);
    count_ += n;
    cv_.notify_all();
  }
  bool wait_for(int n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return count_ >= n; });
  }
  int count() {
    std::lock_guard l(mu_);
    return count_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

class ConnectionTest : public NatsServerTest {};

TEST_F(ConnectionTest, PublishSubscribeWithHeaders) {
  auto conn = connect();
  Latch got;
  std::string subject, data, header;
  ASSERT_OK_AND_ASSIGN(sub, conn.subscribe("greet.*", [&](Message m) {
    subject = m.subject();
    data = m.data();
    header = m.header("X-Who").value_or("");
    got.add();
  }));
  ASSERT_OK_AND_ASSIGN(msg, Message::create("greet.world", std::string("hi\0there", 8)));
  ASSERT_OK(msg.set_header("X-Who", "tester"));
  ASSERT_OK(conn.publish(msg));
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(subject, "greet.world");
  EXPECT_EQ(data, std::string("hi\0there", 8));  // binary-safe
  EXPECT_EQ(header, "tester");
}

TEST_F(ConnectionTest, RequestReplyAndNoResponders) {
  auto server_conn = connect();
  auto client = connect();
  ASSERT_OK_AND_ASSIGN(sub, server_conn.subscribe("svc.echo", [&](Message m) {
    (void)server_conn.publish(m.reply(), "echo: " + std::string(m.data()));
  }));
  ASSERT_OK(server_conn.flush());
  ASSERT_OK_AND_ASSIGN(reply, client.request("svc.echo", "ping", 2s));
  EXPECT_EQ(reply.data(), "echo: ping");

  auto none = client.request("svc.nobody", "ping", 2s);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNoResponders);
  EXPECT_NE(none.error().message.find("svc.nobody"), std::string::npos);
}

TEST_F(ConnectionTest, QueueSubscribersShareTheLoad) {
  auto conn = connect();
  std::atomic<int> a{0}, b{0};
  Latch total;
  ASSERT_OK_AND_ASSIGN(s1, conn.subscribe(
                               "work",
                               [&](Message) {
                                 ++a;
                                 total.add();
                               },
                               "workers"));
  ASSERT_OK_AND_ASSIGN(s2, conn.subscribe(
                               "work",
                               [&](Message) {
                                 ++b;
                                 total.add();
                               },
                               "workers"));
  ASSERT_OK(conn.flush());
  constexpr int kMessages = 400;
  for (int i = 0; i < kMessages; ++i) ASSERT_OK(conn.publish("work", "job"));
  ASSERT_TRUE(total.wait_for(kMessages));
  // Once the server has answered a PING it has sent every message, and a drain hands each one
  // received to its handler: any second copy would be counted now.
  ASSERT_OK(conn.flush());
  std::vector<nats::Subscription> subs;
  subs.push_back(std::move(s1));
  subs.push_back(std::move(s2));
  nats::Subscription::drain_and_wait(subs, 5s);
  EXPECT_EQ(a + b, kMessages);  // each message delivered exactly once
  EXPECT_GT(a, 0);
  EXPECT_GT(b, 0);
}

TEST_F(ConnectionTest, SyncSubscriptionTimesOut) {
  auto conn = connect();
  ASSERT_OK_AND_ASSIGN(sub, conn.subscribe_sync("quiet"));
  auto r = sub.next(50ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
  ASSERT_OK(conn.publish("quiet", "now"));
  ASSERT_OK_AND_ASSIGN(m, sub.next(2s));
  EXPECT_EQ(m.data(), "now");
}

TEST_F(ConnectionTest, UnsubscribeStopsDeliveryEvenFromInsideTheHandler) {
  auto conn = connect();
  Latch seen;
  Subscription sub;
  ASSERT_OK_AND_ASSIGN(s, conn.subscribe("once", [&](Message) {
    seen.add();
    if (seen.count() == 1) sub.unsubscribe();
  }));
  sub = std::move(s);
  // A witness on the same subject: once it has every message, the connection has handed each
  // to the unsubscribed handler too, if it still would.
  Latch witnessed;
  ASSERT_OK_AND_ASSIGN(witness, conn.subscribe("once", [&](Message) { witnessed.add(); }));
  for (int i = 0; i < 50; ++i) ASSERT_OK(conn.publish("once", "x"));
  ASSERT_OK(conn.flush());
  ASSERT_TRUE(seen.wait_for(1));
  ASSERT_TRUE(witnessed.wait_for(50));
  EXPECT_EQ(seen.count(), 1) << "messages were delivered after the handler unsubscribed";
  for (int i = 0; i < 50; ++i) ASSERT_OK(conn.publish("once", "x"));
  ASSERT_OK(conn.flush());
  ASSERT_TRUE(witnessed.wait_for(100));
  EXPECT_EQ(seen.count(), 1);
}

// What a handler uses may be destroyed once unsubscribe_and_wait returns (the node's pool and
// control handlers rely on it); plain unsubscribe does not wait.
TEST_F(ConnectionTest, UnsubscribeAndWaitReturnsOnlyAfterTheRunningHandler) {
  auto conn = connect();
  for (const bool wait : {true, false}) {
    Latch entered;
    std::atomic<bool> finished{false};
    ASSERT_OK_AND_ASSIGN(sub, conn.subscribe("slow", [&](Message) {
      entered.add();
      std::this_thread::sleep_for(300ms);
      finished = true;
    }));
    ASSERT_OK(conn.publish("slow", "x"));
    ASSERT_TRUE(entered.wait_for(1)) << "the handler never ran";
    if (wait) {
      sub.unsubscribe_and_wait();
      EXPECT_TRUE(finished) << "returned while the handler was still running";
    } else {
      sub.unsubscribe();
      EXPECT_FALSE(finished) << "plain unsubscribe waited for the handler";
      for (int i = 0; i < 100 && !finished; ++i) std::this_thread::sleep_for(10ms);
      ASSERT_TRUE(finished);  // `finished` must outlive the handler
    }
  }
}

TEST_F(ConnectionTest, DestroyingSubscriptionsUnderLoadIsSafe) {
  // Guards the libnats 3.4.1 race between delivery and destruction (specs §9): subscriptions
  // are destroyed while messages for them are arriving.
  auto pub = connect();
  auto conn = connect();
  std::atomic<bool> stop{false};
  std::thread flood([&] {  // bounded in count and time
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (int i = 0; i < 5'000'000 && !stop && std::chrono::steady_clock::now() < deadline; ++i) {
      (void)pub.publish("flood", "payload");
    }
  });
  // Destroying a Subscription does not wait for a handler call in progress, so what the
  // handlers count lives on the heap, shared with them, not on this stack.
  struct Counts {
    Latch flowing;
    std::atomic<int> got{0};
    std::atomic<long> delivered{0};
  };
  auto counts = std::make_shared<Counts>();
  {
    ASSERT_OK_AND_ASSIGN(probe,
                         conn.subscribe("flood", [counts](Message) { counts->flowing.add(); }));
    ASSERT_TRUE(counts->flowing.wait_for(1, 10s)) << "the flood never reached the subscriber";
  }
  for (int i = 0; i < 200; ++i) {
    counts->got = 0;
    auto sub = conn.subscribe("flood", [counts](Message) {
      ++counts->got;
      ++counts->delivered;
      std::this_thread::yield();
    });
    ASSERT_TRUE(sub);
    // Destroy it while it is receiving (or after 50 ms, whichever comes first).
    for (int w = 0; w < 50 && counts->got == 0; ++w) std::this_thread::sleep_for(1ms);
  }
  stop = true;
  flood.join();
  EXPECT_GT(counts->delivered, 0);
}

TEST_F(ConnectionTest, ReconnectsAfterServerRestartAndCallsBack) {
  Latch disconnected, reconnected;
  ASSERT_OK_AND_ASSIGN(conn, Connection::connect({.urls = {server().url()},
                                                  .reconnect_wait_min = 20ms,
                                                  .reconnect_wait_max = 200ms,
                                                  .on_disconnected = [&] { disconnected.add(); },
                                                  .on_reconnected = [&] { reconnected.add(); }}));
  Latch got;
  ASSERT_OK_AND_ASSIGN(sub, conn.subscribe("after.restart", [&](Message) { got.add(); }));
  ASSERT_OK(conn.flush());
  ASSERT_OK(server().restart());
  ASSERT_TRUE(disconnected.wait_for(1, 10s));
  ASSERT_TRUE(reconnected.wait_for(1, 20s));
  EXPECT_TRUE(conn.connected());
  // The subscription was re-established by the reconnect.
  auto other = connect();
  ASSERT_OK(other.publish("after.restart", "x"));
  EXPECT_TRUE(got.wait_for(1));
}

// Whether a socket of anyone else's may be bound to 127.0.0.1:`port` now.
bool port_is_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return bound;
}

// While a server is stopped for a restart, another one started meanwhile (a parallel test's)
// must not be given its port: clients reconnecting to its URL would file their messages there.
TEST(LocalServerTest, AStoppedServersPortsStayReservedUntilItRestarts) {
  NEX_REQUIRE_NATS_SERVER();
  const fs::path dir = fs::temp_directory_path() / ("nex-ports-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "leaf.conf") << "leafnodes { listen: \"127.0.0.1:-1\" }\n";
  // Its work directory holds the config too, and goes with the server.
  auto s = LocalNatsServer::start({.work_dir = dir, .config_file = dir / "leaf.conf"});
  ASSERT_TRUE(s) << s.error().message;
  std::smatch m;
  const std::string log = testing::slurp(s->log_file());
  ASSERT_TRUE(std::regex_search(log, m, std::regex("leafnode connections on [0-9.]+:([0-9]+)")))
      << log;
  const int leaf_port = std::stoi(m[1]);
  const std::string url = s->url();

  s->stop();
  EXPECT_FALSE(port_is_free(s->port()));
  EXPECT_FALSE(port_is_free(leaf_port));
  auto refused = Connection::connect({.urls = {url}, .connect_timeout = 500ms});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);

  // Rewritten with the leaf port it had, as a test that restarts a hub does.
  std::ofstream(dir / "leaf.conf") << "leafnodes { listen: \"127.0.0.1:" << leaf_port << "\" }\n";
  ASSERT_OK(s->restart());
  EXPECT_EQ(s->url(), url);
  EXPECT_TRUE(Connection::connect({.urls = {url}}));
  EXPECT_NE(testing::slurp(s->log_file())
                .find("leafnode connections on 127.0.0.1:" + std::to_string(leaf_port)),
            std::string::npos);
}

TEST(ConnectionErrors, UnreachableServerNamesTheUrl) {
  auto conn = Connection::connect({.urls = {"nats://127.0.0.1:1"}, .connect_timeout = 500ms});
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(conn.error().message.find("nats://127.0.0.1:1"), std::string::npos);
}

// --- Authentication: each test runs its own server with a config file. ---

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override { NEX_REQUIRE_NATS_SERVER(); }

  void start_with_config(const std::string& config) {
    dir_ = fs::temp_directory_path() /
           ("nex-auth-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "server.conf") << config;
    auto s = LocalNatsServer::start({.jetstream = false, .config_file = dir_ / "server.conf"});
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::make_unique<LocalNatsServer>(std::move(*s));
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string url() const { return server_->url(); }

  fs::path dir_;
  std::unique_ptr<LocalNatsServer> server_;
};

TEST_F(AuthTest, UserAndPassword) {
  start_with_config("authorization { user: alice, password: \"s3cr3t pw\" }\n");
  EXPECT_TRUE(Connection::connect({.urls = {url()}, .user = "alice", .password = "s3cr3t pw"}));
  auto bad = Connection::connect({.urls = {url()}, .user = "alice", .password = "wrong"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kPermissionDenied);
}

// A login in the URL works as the flags do, and never shows in what is reported about it.
TEST_F(AuthTest, ALoginInTheUrlWorksAndStaysOutOfMessages) {
  start_with_config("authorization { user: alice, password: \"s3cr3tpw\" }\n");
  const std::string host = url().substr(std::string("nats://").size());
  auto good = Connection::connect({.urls = {"nats://alice:s3cr3tpw@" + host}});
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(good->connected_url(), "nats://***@" + host);
  auto bad = Connection::connect({.urls = {"nats://alice:wr0ngpw@" + host}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(bad.error().message.find("nats://***@" + host), std::string::npos)
      << bad.error().message;
  EXPECT_EQ(bad.error().message.find("wr0ngpw"), std::string::npos) << bad.error().message;
  EXPECT_EQ(redacted_url("nats://t0ken@h:1,nats://h:2"), "nats://***@h:1,nats://h:2");
  EXPECT_EQ(redacted_url("tls://h:4222"), "tls://h:4222");
}

TEST_F(AuthTest, Token) {
  start_with_config("authorization { token: \"t0ken\" }\n");
  EXPECT_TRUE(Connection::connect({.urls = {url()}, .token = "t0ken"}));
  EXPECT_FALSE(Connection::connect({.urls = {url()}, .token = "nope"}));
}

TEST_F(AuthTest, NkeyLoginSucceedsEveryTime) {
  // 512 logins with fresh keys: without the retry, libnats 3.4.1 fails ~1 in 256 of them.
  std::string users;
  std::vector<std::string> seeds;
  for (int i = 0; i < 16; ++i) {
    auto kp = crypto::KeyPair::create(crypto::KeyType::kUser);
    users += "{ nkey: " + kp->public_key() + " }\n";
    seeds.push_back(kp->seed());
  }
  start_with_config("authorization { users: [\n" + users + "] }\n");
  for (int i = 0; i < 512; ++i) {
    auto conn = Connection::connect({.urls = {url()}, .nkey_seed = seeds[i % seeds.size()]});
    ASSERT_TRUE(conn) << "login " << i << ": " << conn.error().message;
  }
  auto stranger = crypto::KeyPair::create(crypto::KeyType::kUser);
  auto denied = Connection::connect({.urls = {url()}, .nkey_seed = stranger->seed()});
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied);
  EXPECT_FALSE(Connection::connect({.urls = {url()}, .nkey_seed = "SUNOTASEED"}));
}

TEST_F(AuthTest, CredsFileInOperatorMode) {
  // A whole decentralized-auth chain signed by our JWT code, accepted by the real server.
  testing::OperatorChain chain;
  const auto acct = chain.account("acct");
  start_with_config(chain.server_config());
  const fs::path creds = dir_ / "user.creds";
  acct.user("user").write_creds(creds);
  for (int i = 0; i < 256; ++i) {
    auto conn = Connection::connect({.urls = {url()}, .creds_file = creds.string()});
    ASSERT_TRUE(conn) << conn.error().message;
    if (i == 0) {
      ASSERT_OK_AND_ASSIGN(sub, conn->subscribe_sync("creds.check"));
      ASSERT_OK(conn->publish("creds.check", "ok"));
      ASSERT_OK_AND_ASSIGN(m, sub.next(2s));
      EXPECT_EQ(m.data(), "ok");
    }
  }
  EXPECT_FALSE(Connection::connect({.urls = {url()}}));  // no credentials
}

TEST_F(AuthTest, TlsWithCustomCa) {
  // A throwaway CA and server certificate for 127.0.0.1, made with the openssl CLI.
  dir_ = fs::temp_directory_path() / ("nex-tls-" + std::to_string(getpid()));
  fs::create_directories(dir_);
  const std::string d = dir_.string();
  const std::string script = "cd '" + d +
                             "' && "
                             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
                             "-days 1 -subj /CN=nex-test-ca 2>/dev/null && "
                             "openssl req -newkey rsa:2048 -nodes -keyout server.key -out "
                             "server.csr -subj /CN=127.0.0.1 2>/dev/null && "
                             "printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
                             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
                             "-CAcreateserial -out server.pem -days 1 -extfile san.ext 2>/dev/null";
  if (std::system(script.c_str()) != 0)
    GTEST_SKIP() << "openssl CLI unavailable to make test certificates";
  const fs::path conf = dir_ / "server.conf";
  std::ofstream(conf) << "tls { cert_file: '" << d << "/server.pem', key_file: '" << d
                      << "/server.key' }\n";
  auto s = LocalNatsServer::start({.jetstream = false, .config_file = conf});
  ASSERT_TRUE(s) << s.error().message;
  server_ = std::make_unique<LocalNatsServer>(std::move(*s));
  const std::string tls_url = "tls://127.0.0.1:" + std::to_string(server_->port());

  auto good = Connection::connect({.urls = {tls_url}, .tls = TlsOptions{.ca_file = d + "/ca.pem"}});
  ASSERT_TRUE(good) << good.error().message;
  ASSERT_OK_AND_ASSIGN(sub, good->subscribe_sync("tls.check"));
  ASSERT_OK(good->publish("tls.check", "secure"));
  ASSERT_OK_AND_ASSIGN(m, sub.next(2s));
  EXPECT_EQ(m.data(), "secure");
  // Without trusting the CA, verification fails.
  EXPECT_FALSE(Connection::connect({.urls = {tls_url}, .tls = TlsOptions{}}));
}

}  // namespace
}  // namespace nex::nats
