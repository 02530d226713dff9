#include "testing/nats_server_fixture.h"

#include <atomic>
#include <fstream>
#include <sstream>

namespace nex::testing {

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<nats::LocalNatsServer> NatsServerTest::server_;
std::string NatsServerTest::skip_reason_;

void NatsServerTest::SetUpTestSuite() {
  if (auto bin = nats::LocalNatsServer::find_binary(); !bin) {
    skip_reason_ = bin.error().message;
    return;
  }
  auto server = nats::LocalNatsServer::start({});
  if (!server) {
    skip_reason_.clear();
    ADD_FAILURE() << "cannot start nats-server: " << server.error().message;
    return;
  }
  server_ = std::make_unique<nats::LocalNatsServer>(std::move(*server));
}

void NatsServerTest::TearDownTestSuite() { server_.reset(); }

void NatsServerTest::SetUp() {
  if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_NE(server_, nullptr) << "nats-server did not start";
}

nats::Connection NatsServerTest::connect() {
  auto conn = nats::Connection::connect({.urls = {server_->url()}, .name = "nex-test"});
  if (!conn) throw std::runtime_error(conn.error().message);
  return *conn;
}

nats::JetStream NatsServerTest::jetstream() {
  auto js = nats::JetStream::create(connect());
  if (!js) throw std::runtime_error(js.error().message);
  return *js;
}

std::string NatsServerTest::unique(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "_" + std::to_string(++counter);
}

}  // namespace nex::testing
