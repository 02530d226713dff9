// Test fixtures around a real nats-server (Debian package) with JetStream, on a port of its own
// choosing and a temporary store that is always removed. One server per test suite keeps the
// suite fast; tests use distinct subjects and bucket names.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "nats/connection.h"
#include "nats/jetstream.h"
#include "nats/local_server.h"

namespace nex::testing {

// The whole content of a file ("" when it cannot be read).
std::string slurp(const std::filesystem::path& path);

class NatsServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  static nats::LocalNatsServer& server() { return *server_; }
  static nats::Connection connect();
  static nats::JetStream jetstream();
  // A name unique within the test binary run, for buckets and subjects.
  static std::string unique(const std::string& prefix);

 private:
  static std::unique_ptr<nats::LocalNatsServer> server_;
  static std::string skip_reason_;
};

// Skips the current test, printing why, when nats-server is not installed. A server that is
// installed but fails to start is a test failure, not a skip.
#define NEX_REQUIRE_NATS_SERVER()                                               \
  do {                                                                          \
    if (auto nex_bin_ = ::nex::nats::LocalNatsServer::find_binary(); !nex_bin_) \
      GTEST_SKIP() << nex_bin_.error().message;                                 \
  } while (0)

// Unwraps a Result in a test, failing with its error message.
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                    \
  auto lhs##_result_ = (expr);                                             \
  ASSERT_TRUE(lhs##_result_.has_value()) << lhs##_result_.error().message; \
  auto lhs = std::move(*lhs##_result_)

#define ASSERT_OK(expr)                                          \
  do {                                                           \
    auto nex_st_ = (expr);                                       \
    ASSERT_TRUE(nex_st_.has_value()) << nex_st_.error().message; \
  } while (0)

}  // namespace nex::testing
