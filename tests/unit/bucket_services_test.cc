// The host-service bucket names: one bucket per (namespace, workload), never shared.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/encoding.h"
#include "crypto/digest.h"
#include "nats/key_value.h"
#include "node/host_services/service.h"

namespace nex::node::host_services {
namespace {

TEST(BucketName, PlainNamesKeepTheirExistingBuckets) {
  EXPECT_EQ(bucket_name("default", "echo", "kv"), "hs_default_echo_kv");
  EXPECT_EQ(bucket_name("default", "echo-2", "obj"), "hs_default_echo-2_obj");
}

// "a_b" + "c" and "a" + "b_c" join alike: a suffix from a hash of both parts, kept apart by a
// NUL, tells them apart.
TEST(BucketName, NamesHoldingUnderscoresGetAHashSuffix) {
  const std::string ab_c = bucket_name("a_b", "c", "kv");
  const std::string a_bc = bucket_name("a", "b_c", "kv");
  EXPECT_NE(ab_c, a_bc);
  const std::string input("a_b\0c", 5);
  const std::string hash = hex_encode(crypto::sha256(as_bytes(input))).substr(0, 16);
  EXPECT_EQ(ab_c, "hs_a_b_c_" + hash + "_kv");
  EXPECT_EQ(bucket_name("a_b", "c", "obj"), "hs_a_b_c_" + hash + "_obj");
  for (const auto& name : {ab_c, a_bc}) EXPECT_TRUE(nats::validate_bucket_name(name)) << name;
}

// A plain name has exactly three '_'; a suffixed one at least five, so the two forms never meet.
TEST(BucketName, SuffixedNamesNeverEqualPlainOnes) {
  auto underscores = [](const std::string& s) { return std::count(s.begin(), s.end(), '_'); };
  EXPECT_EQ(underscores(bucket_name("ns", "w", "kv")), 3);
  EXPECT_GE(underscores(bucket_name("n_s", "w", "kv")), 5);
  EXPECT_GE(underscores(bucket_name("ns", "w_", "obj")), 5);
}

}  // namespace
}  // namespace nex::node::host_services
