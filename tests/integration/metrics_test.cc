// `nex node up --metrics ADDR`: what Prometheus reads when it scrapes the node, after workloads,
// functions, host services, an essential restart, durable commands and a NATS restart.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <sstream>

#include "commands/sender.h"
#include "testing/node_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

struct HttpAnswer {
  int status = 0;
  std::string content_type;
  std::string body;
};

// A connection to the metrics endpoint on loopback; -1 when it cannot be made within 10 s.
// Reads and writes on it give up after 10 s too, so a server that never answers fails a test
// instead of hanging it.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `data` on `fd`; false when the peer stopped taking it.
bool send_all(int fd, const std::string& data) {
  for (size_t at = 0; at < data.size();) {
    const ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends on `fd` until it closes the connection, then closes `fd`.
HttpAnswer read_answer(int fd) {
  HttpAnswer a;
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) raw.append(buf, static_cast<size_t>(n));
  ::close(fd);
  std::smatch m;
  if (std::regex_search(raw, m, std::regex("^HTTP/1.1 ([0-9]{3})"))) a.status = std::stoi(m[1]);
  if (std::regex_search(raw, m, std::regex("Content-Type: ([^\r]*)"))) a.content_type = m[1];
  if (auto end = raw.find("\r\n\r\n"); end != std::string::npos) a.body = raw.substr(end + 4);
  return a;
}

// GET `path` from the node's metrics endpoint on loopback, as a scraper does.
HttpAnswer http_get(int port, const std::string& path) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  return read_answer(fd);
}

// The value of the series written exactly as `series` (name{labels}), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class MetricsTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_OK(files_->put_bytes("echo.js", "(subject, payload) => payload"));
    ASSERT_OK(files_->put_bytes("fails.js", "(subject, payload) => { throw new Error('no'); }"));
    ASSERT_OK(files_->put_bytes(
        "hs.js", testing::slurp(fs::path(NEX_SOURCE_DIR) / "tests/fixtures/js/host_services.js")));
    NodeConfig config;
    node_name_ = unique("metrics");
    config.node_name = node_name_;
    config.valid_issuers = {issuer_.public_key()};
    config.commands.cli_command = {.enabled = true, .allow = {"sleep"}};
    metrics_listen_ = "127.0.0.1:0";
    start_node(config);
    std::smatch m;
    const std::string url = node_->metrics_url();
    ASSERT_TRUE(std::regex_search(url, m, std::regex("^http://127\\.0\\.0\\.1:([0-9]+)/metrics$")))
        << url;
    port_ = std::stoi(m[1]);
  }

  // Scrapes until `series` reads at least `want` (counts reach the node in batches).
  double scrape_until(const std::string& series, double want) {
    double v = -1;
    for (int i = 0; i < 100 && (v = sample(http_get(port_, "/metrics").body, series)) < want; ++i)
      std::this_thread::sleep_for(50ms);
    return v;
  }

  int port_ = 0;
  std::string node_name_;
};

TEST_F(MetricsTest, AScrapeShowsWhatTheNodeDid) {
  ASSERT_TRUE(deploy(deploy_request("echo", {{"NATS_URL", server().url()}}))["error"].is_null());
  for (const auto& [name, key] :
       {std::pair{"echojs", "echo.js"}, {"fails", "fails.js"}, {"hs", "hs.js"}}) {
    json r = deploy(function_request(name, key, {std::string("metrics.") + name}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }
  json missing = deploy_request("missing");
  missing["location"] = "nats://NEXCLIFILES/no-such-file";
  EXPECT_FALSE(deploy(missing)["error"].is_null());
  // An essential service that cannot reach its NATS exits, and is restarted.
  json crasher = deploy_request("crasher", {{"NATS_URL", "nats://127.0.0.1:1"}});
  crasher["essential"] = true;
  ASSERT_TRUE(deploy(crasher)["error"].is_null());

  for (int i = 0; i < 3; ++i) ASSERT_TRUE(conn_->request("metrics.echojs", "x", 5s));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(conn_->request("metrics.fails", "x", 5s));
  ASSERT_TRUE(conn_->request("metrics.hs", R"({"op":"kv.set","key":"k","value":"v"})", 5s));
  ASSERT_TRUE(conn_->request("metrics.hs", R"({"op":"kv.get","key":"k"})", 5s));
  // Three commands for a method that runs one at a time: one runs, two wait.
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(commands::send_command(
        *js_, {.to_node = node_->name(), .method = "cliCommand", .method_args = {"sleep", "10"}},
        issuer_, 5s));
  }

  const std::string fn = R"({namespace="default",workload="echojs",type="v8"})";
  EXPECT_EQ(scrape_until("nex_function_invocations_total" + fn, 3), 3);
  EXPECT_EQ(scrape_until("nex_command_queue_depth{method=\"cliCommand\"}", 3), 3);
  EXPECT_GE(scrape_until(R"(nex_agent_restarts_total{namespace="default",workload="crasher"})", 1),
            1);

  const HttpAnswer a = http_get(port_, "/metrics");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& t = a.body;
  EXPECT_NE(t.find("# TYPE nex_function_duration_seconds histogram"), std::string::npos) << t;
  EXPECT_EQ(sample(t, R"(nex_node_info{node_id=")" + node_->id() + R"(",node_name=")" +
                          node_->name() + R"(",version="test"})"),
            1);
  // The echo service runs. The crasher is in one of its short attempts ("running"), waiting for
  // the next ("restarting"), or being deployed again ("unhealthy" until its agent accepts).
  auto native = [&](const std::string& state) {
    return std::max(0.0, sample(t, R"(nex_workloads{namespace="default",type="native",state=")" +
                                       state + "\"}"));
  };
  EXPECT_GE(native("running"), 1);
  EXPECT_EQ(native("running") + native("restarting") + native("unhealthy"), 2);
  EXPECT_EQ(sample(t, R"(nex_workloads{namespace="default",type="v8",state="running"})"), 3);
  EXPECT_EQ(sample(t, R"(nex_deploys_total{origin="request"})"), 5);
  EXPECT_EQ(sample(t, R"(nex_deploy_failures_total{origin="request"})"), 1);
  EXPECT_EQ(
      sample(t, R"(nex_function_errors_total{namespace="default",workload="fails",type="v8"})"), 2);
  EXPECT_EQ(sample(t, "nex_function_errors_total" + fn), -1) << "echo never failed";
  EXPECT_EQ(sample(t, "nex_function_duration_seconds_count" + fn), 3);
  EXPECT_EQ(
      sample(
          t,
          R"(nex_function_duration_seconds_bucket{namespace="default",workload="echojs",type="v8",le="+Inf"})"),
      3);
  EXPECT_EQ(sample(t, R"(nex_host_service_calls_total{service="kv",code="200"})"), 2);
  EXPECT_EQ(sample(t, "nex_command_queue_depth{method=\"hello\"}"), 0);
  // The warm pool refills to its size (machine_pool_size 1) after every deploy took from it.
  EXPECT_EQ(scrape_until("nex_warm_agents", 1), 1);

  EXPECT_EQ(http_get(port_, "/").status, 404);
  EXPECT_EQ(http_get(port_, "/metrics/x").status, 404);

  // The node's NATS goes away and comes back: both its connections reconnect, and say so.
  ASSERT_OK(server().restart());
  EXPECT_EQ(scrape_until(R"(nex_nats_reconnects_total{connection="control"})", 1), 1);
  EXPECT_EQ(scrape_until(R"(nex_nats_reconnects_total{connection="control events"})", 1), 1);
}

// Durable commands that fail verification are dropped unrun: an operator sees how many.
TEST_F(MetricsTest, DurableCommandsDroppedUnverifiedAreCounted) {
  ASSERT_EQ(scrape_until("nex_commands_unverified_dropped_total", 0), 0);
  const std::string subject = "$NEX.cmd." + node_name_ + ".command.hello";
  for (const char* body : {"{}", "not json"}) {
    auto ack = js_->publish(subject, body);
    ASSERT_TRUE(ack) << ack.error().message;
  }
  EXPECT_EQ(scrape_until("nex_commands_unverified_dropped_total", 2), 2);
}

TEST_F(MetricsTest, ABadAddressIsRefusedNamingTheFlag) {
  node_.reset();
  for (const std::string bad : {"9100", "127.0.0.1:99999", "example.org:9100"}) {
    auto n = node::Node::start({.control = {.urls = {server().url()}},
                                .state_dir = state_dir_,
                                .version = "test",
                                .metrics_listen = bad});
    ASSERT_FALSE(n) << bad;
    EXPECT_NE(n.error().message.find("--metrics: expected HOST:PORT"), std::string::npos)
        << n.error().message;
  }
}

// Clients that connect and then stall, half of them after part of a request, half sending it a
// byte at a time, as slowloris does: many more of them than the endpoint has workers. A scrape
// behind them is still answered promptly, and the endpoint lets every one of them go.
TEST_F(MetricsTest, AScrapeIsAnsweredWhileStalledClientsHoldConnections) {
  constexpr int kStalled = 32;
  std::vector<int> stalled;
  for (int i = 0; i < kStalled; ++i) {
    const int fd = connect_to(port_);
    ASSERT_GE(fd, 0) << "connection " << i;
    stalled.push_back(fd);
    if (i % 2 == 0) {
      ASSERT_TRUE(send_all(fd, "GET /metr"));
    }
  }
  std::jthread trickle([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      for (int i = 1; i < kStalled; i += 2)
        (void)::send(stalled[i], "G", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(100ms);
    }
  });

  const auto asked = std::chrono::steady_clock::now();
  const HttpAnswer a = http_get(port_, "/metrics");
  const auto took = std::chrono::steady_clock::now() - asked;
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(sample(a.body, R"(nex_node_info{node_id=")" + node_->id() + R"(",node_name=")" +
                               node_->name() + R"(",version="test"})"),
            1)
      << a.body;
  EXPECT_LT(took, 5s) << "the scrape waited behind the stalled clients";

  // The endpoint closes each stalled connection (the read sees its end, or a reset).
  for (int i = 0; i < kStalled; ++i) {
    pollfd p{stalled[i], POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1) << "stalled connection " << i << " is still open";
    char buf[512];
    ssize_t n;
    while ((n = ::recv(stalled[i], buf, sizeof buf, 0)) > 0) {
    }
    EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "connection " << i << ": " << strerror(errno);
  }
  trickle.request_stop();
  trickle.join();
  for (int fd : stalled) ::close(fd);
}

// Sends `head`, then `filler` over and over (1 MiB at most, or until the endpoint stops taking
// it), and returns the endpoint's answer.
HttpAnswer flood(int port, const std::string& head, const std::string& filler) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  if (send_all(fd, head)) {
    for (size_t sent = 0; sent < (1u << 20) && send_all(fd, filler); sent += filler.size()) {
    }
  }
  return read_answer(fd);
}

TEST_F(MetricsTest, AHeaderOrBodyFloodIsRefused) {
  const std::string header_line = "X-Flood: " + std::string(100, 'a') + "\r\n";
  const HttpAnswer headers =
      flood(port_, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n", header_line);
  EXPECT_EQ(headers.status, 431) << headers.body;
  EXPECT_NE(headers.body.find("8192 bytes"), std::string::npos) << headers.body;

  const HttpAnswer body =
      flood(port_, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 104857600\r\n\r\n",
            std::string(4096, 'b'));
  EXPECT_EQ(body.status, 413) << body.body;

  // The endpoint carries on.
  EXPECT_EQ(http_get(port_, "/metrics").status, 200);
}

}  // namespace
}  // namespace nex
