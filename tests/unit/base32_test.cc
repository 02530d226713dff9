#include <gtest/gtest.h>

#include "core/encoding.h"

namespace nex {
namespace {

TEST(Base32, Rfc4648VectorsWithoutPadding) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "MY"},
                                                         {"fo", "MZXQ"},
                                                         {"foo", "MZXW6"},
                                                         {"foob", "MZXW6YQ"},
                                                         {"fooba", "MZXW6YTB"},
                                                         {"foobar", "MZXW6YTBOI"}};
  for (auto [plain, encoded] : vectors) {
    EXPECT_EQ(base32_encode(as_bytes(plain)), encoded);
    auto back = base32_decode(encoded);
    ASSERT_TRUE(back) << encoded;
    EXPECT_EQ(as_chars(*back), plain);
  }
}

TEST(Base32, RejectsBadInput) {
  EXPECT_FALSE(base32_decode("MZXW6==="));  // padding is not part of the nkey form
  EXPECT_FALSE(base32_decode("mzxw6"));     // lower case
  EXPECT_FALSE(base32_decode("MZXW1"));     // '1' is not in the alphabet
  EXPECT_FALSE(base32_decode("M"));         // impossible length
  EXPECT_FALSE(base32_decode("MZ"));        // "MY" is canonical: non-zero trailing bits
}

TEST(Base64, VariantsDifferAsSpecified) {
  const std::string name = "a";
  EXPECT_EQ(base64_encode(as_bytes(name), Base64::kUrl), "YQ==");
  EXPECT_EQ(base64_encode(as_bytes(name), Base64::kUrlNoPad), "YQ");
  const Bytes bytes = {0xfb, 0xff};
  EXPECT_EQ(base64_encode(bytes, Base64::kStandard), "+/8=");
  EXPECT_EQ(base64_encode(bytes, Base64::kUrl), "-_8=");
  EXPECT_FALSE(base64_decode("+/8=", Base64::kUrl));
  EXPECT_FALSE(base64_decode("YQ", Base64::kUrl));  // padded variant requires padding
  auto ok = base64_decode("-_8", Base64::kUrlNoPad);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, bytes);
}

}  // namespace
}  // namespace nex
