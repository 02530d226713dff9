// Workloads' logs through a real node and nats-server: a function that floods its log is held to
// the node's rate limit (node config workload_logs), its log says how many lines were dropped,
// Prometheus counts them, and a quiet workload beside it loses nothing; a line longer than the
// bound is cut and marked.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <regex>

#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Collector;

constexpr int64_t kRate = 50;    // lines per second
constexpr int64_t kBurst = 100;  // lines at once
constexpr int64_t kMaxLineBytes = 1024;
constexpr int kFloodLines = 3000;

// The body of GET `url`, as Prometheus scrapes it ("" when it fails).
std::string http_get(const std::string& url) {
  std::string body;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  if (curl_easy_perform(curl) != CURLE_OK) body.clear();
  curl_easy_cleanup(curl);
  return body;
}

// The value of the series written exactly as `series` (name{labels}), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

class WorkloadLogsTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_OK(files_->put_bytes("flood.js",
                                "(subject, payload) => {\n  for (let i = 0; i < " +
                                    std::to_string(kFloodLines) +
                                    "; i++) console.log('flood ' + i);\n  return 'done';\n}"));
    // Payloads are bytes (a Uint8Array).
    ASSERT_OK(files_->put_bytes(
        "quiet.js",
        "(subject, payload) => {\n  console.log('quiet ' + String.fromCharCode(...payload));\n"
        "  return payload;\n}"));
    ASSERT_OK(files_->put_bytes(
        "long.js",
        "(subject, payload) => {\n  console.log('x'.repeat(5000) + 'END');\n  return 'ok';\n}"));
    NodeConfig config;
    config.workload_logs = {
        .lines_per_second = kRate, .burst = kBurst, .max_line_bytes = kMaxLineBytes};
    metrics_listen_ = "127.0.0.1:0";
    start_node(config);
  }
  std::string deployed(const std::string& name, const std::string& key) {
    json r = deploy(function_request(name, key, {"logs." + name}));
    EXPECT_TRUE(r["error"].is_null()) << r.dump();
    return r["data"].value("id", "");
  }
};

// The lines the node's notices say it dropped, summed.
int64_t dropped_in(const std::vector<std::string>& notices) {
  int64_t sum = 0;
  const std::regex count(
      "dropped ([0-9]+) log lines? in the last [0-9.]+ s: over the log rate "
      "limit of 50 lines/s with bursts of 100 \\(node config workload_logs");
  for (const auto& body : notices) {
    std::smatch m;
    const std::string text = json::parse(body).value("text", "");
    if (std::regex_search(text, m, count)) sum += std::stoll(m[1]);
  }
  return sum;
}

TEST_F(WorkloadLogsTest, AFloodIsHeldToTheRateTheDropsAreToldAndCountedAndOthersLoseNothing) {
  Collector flood_logs(*conn_, "$NEX.logs.default.*.flood.*");
  Collector quiet_logs(*conn_, "$NEX.logs.default.*.quiet.*");
  const std::string flood = deployed("flood", "flood.js");
  ASSERT_FALSE(deployed("quiet", "quiet.js").empty());
  ASSERT_FALSE(flood.empty());

  const auto start = std::chrono::steady_clock::now();
  auto done = conn_->request("logs.flood", "", 10s);
  ASSERT_TRUE(done) << done.error().message;
  constexpr int kQuiet = 5;
  for (int i = 0; i < kQuiet; ++i) ASSERT_TRUE(conn_->request("logs.quiet", std::to_string(i), 5s));

  // The flood's log says what it lost, within a second or so.
  ASSERT_TRUE(flood_logs.wait_for("over the log rate limit", 5s))
      << "no notice of dropped lines; " << flood_logs.bodies_with("\"flood ").size() << " of "
      << kFloodLines << " lines went out";
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto passed = static_cast<int64_t>(flood_logs.bodies_with("\"flood ").size());
  EXPECT_LE(passed, kBurst + static_cast<int64_t>(kRate * seconds) + 1)
      << passed << " of " << kFloodLines << " lines went out in " << seconds << " s";
  EXPECT_GE(passed, kBurst) << "the burst goes out whole";
  EXPECT_EQ(quiet_logs.wait_for_count("\"quiet ", kQuiet), static_cast<size_t>(kQuiet))
      << "the quiet function beside the flood lost lines";

  // Once it is stopped the last drops are told too: every line is accounted for.
  ASSERT_TRUE(stop(flood, "flood")["error"].is_null());
  const auto notices = flood_logs.bodies_with("over the log rate limit");
  const int64_t dropped = dropped_in(notices);
  EXPECT_EQ(passed + dropped, kFloodLines) << notices.size() << " notices";
  for (const auto& n : notices) EXPECT_EQ(json::parse(n).value("level", ""), "warn") << n;

  const std::string scraped = http_get(node_->metrics_url());
  EXPECT_EQ(sample(scraped,
                   "nex_workload_log_lines_dropped_total{namespace=\"default\","
                   "workload=\"flood\",type=\"v8\"}"),
            static_cast<double>(dropped))
      << scraped;
  EXPECT_EQ(sample(scraped,
                   "nex_workload_log_lines_dropped_total{namespace=\"default\","
                   "workload=\"quiet\",type=\"v8\"}"),
            0)
      << scraped;
}

TEST_F(WorkloadLogsTest, ALineLongerThanTheBoundIsCutAndMarked) {
  Collector logs(*conn_, "$NEX.logs.default.*.long.*");
  ASSERT_FALSE(deployed("long", "long.js").empty());
  ASSERT_TRUE(conn_->request("logs.long", "", 5s));
  auto line = logs.wait_for("xxxx");
  ASSERT_TRUE(line);
  const std::string text = json::parse(line->second).value("text", "");
  EXPECT_EQ(text, std::string(kMaxLineBytes, 'x') +
                      " [nex: line cut at 1024 of its 5003 bytes (node config "
                      "workload_logs.max_line_bytes)]");
}

}  // namespace
}  // namespace nex::node
