// RFC 3339 times as the wire formats write them, read back to the nanosecond, and the forms
// that are not RFC 3339 refused with the field named.
#include "core/clock.h"

#include <gtest/gtest.h>

namespace nex {
namespace {

using namespace std::chrono_literals;

TEST(ClockTest, Rfc3339TimesReadBackToTheNanosecond) {
  const auto t = std::chrono::system_clock::time_point(1'796'282'821'123'456'789ns);
  auto back = parse_rfc3339(rfc3339_nano(t), "sentAt");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, t);
  EXPECT_EQ(*parse_rfc3339("2026-12-03T07:27:01Z", "t"),
            *parse_rfc3339("2026-12-03T09:27:01+02:00", "t"));
  EXPECT_EQ(
      *parse_rfc3339("2026-12-03T07:27:01.5Z", "t") - *parse_rfc3339("2026-12-03T07:27:01Z", "t"),
      500ms);
  EXPECT_EQ(parse_rfc3339("2099-01-01T00:00:00Z", "t")->time_since_epoch(), 4'070'908'800s);
}

TEST(ClockTest, WhatIsNotRfc3339IsRefusedNamingTheField) {
  for (const char* bad :
       {"", "tomorrow", "2026-12-03", "2026-12-03 07:27:01Z", "2026-12-03T07:27:01",
        "2026-12-03T07:27:01.Z", "2026-12-03T07:27:01Zjunk", "2026-12-03T07:27:01+0200",
        "26-12-03T07:27:01Z"}) {
    auto t = parse_rfc3339(bad, "expiresAt");
    ASSERT_FALSE(t) << bad;
    EXPECT_NE(t.error().message.find("field 'expiresAt' must be an RFC 3339 time"),
              std::string::npos)
        << t.error().message;
  }
}

}  // namespace
}  // namespace nex
