#include "core/nuid.h"

#include <gtest/gtest.h>

#include <set>

namespace nex {
namespace {

TEST(Nuid, TwentyTwoBase62CharactersAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    std::string id = next_nuid();
    ASSERT_EQ(id.size(), 22u);
    for (char c : id) ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << id;
    ASSERT_TRUE(seen.insert(id).second) << "duplicate " << id;
  }
}

}  // namespace
}  // namespace nex
