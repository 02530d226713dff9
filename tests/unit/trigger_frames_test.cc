#include "triggers/frames.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nex::triggers::frames {
namespace {

// Feeds `bytes` to `reader` in pieces of `step`, as a socket may deliver them.
void feed(FrameReader& reader, const std::string& bytes, size_t step) {
  for (size_t i = 0; i < bytes.size(); i += step) {
    const size_t n = std::min(step, bytes.size() - i);
    auto room = reader.prepare(n);
    std::memcpy(room.data(), bytes.data() + i, n);
    reader.commit(n);
  }
}

TEST(TriggerFrames, TriggersArriveWholeHoweverTheStreamIsCut) {
  std::string stream;
  append_trigger(stream, 1, "js.echo", "hello");
  append_trigger(stream, 0, "js.other", std::string("\0binary\xff", 8));
  append_trigger(stream, 7, "js.empty", "");
  for (size_t step : {size_t{1}, size_t{3}, size_t{16}, stream.size()}) {
    FrameReader reader(kMaxFrame);
    std::vector<Trigger> got;
    for (size_t i = 0; i < stream.size(); i += step) {
      feed(reader, stream.substr(i, step), step);
      for (Trigger t;;) {
        auto more = reader.next(t);
        ASSERT_TRUE(more) << more.error().message;
        if (!*more) break;
        got.push_back(t);
      }
    }
    ASSERT_EQ(got.size(), 3u) << "step " << step;
    EXPECT_EQ(got[0].seq, 1u);
    EXPECT_EQ(got[0].subject, "js.echo");
    EXPECT_EQ(got[0].payload, "hello");
    EXPECT_EQ(got[1].seq, 0u);
    EXPECT_EQ(got[1].payload, std::string("\0binary\xff", 8));
    EXPECT_EQ(got[2].subject, "js.empty");
    EXPECT_EQ(got[2].payload, "");
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(TriggerFrames, AnswersCarryTheirOutcomeAndRunTime) {
  std::string stream;
  append_answer(stream, 42, false, 12345, "reply");
  append_answer(stream, (uint64_t{1} << 40) + 3, true, -1, "TypeError: boom");
  FrameReader reader(kMaxFrame);
  feed(reader, stream, 5);
  Answer a;
  ASSERT_TRUE(*reader.next(a));
  EXPECT_EQ(a.seq, 42u);
  EXPECT_FALSE(a.failed);
  EXPECT_EQ(a.runtime_ns, 12345);
  EXPECT_EQ(a.body, "reply");
  ASSERT_TRUE(*reader.next(a));
  EXPECT_EQ(a.seq, (uint64_t{1} << 40) + 3);
  EXPECT_TRUE(a.failed);
  EXPECT_EQ(a.runtime_ns, -1);
  EXPECT_EQ(a.body, "TypeError: boom");
  EXPECT_FALSE(*reader.next(a));
}

// The peer is not trusted: what does not follow the format is an error, never a crash or a
// read past the frame.
TEST(TriggerFrames, MalformedFramesAreErrors) {
  auto first_error = [](const std::string& bytes, auto frame) {
    FrameReader reader(1024);
    feed(reader, bytes, bytes.size());
    auto r = reader.next(frame);
    return r ? std::string() : r.error().message;
  };
  std::string answer;
  append_answer(answer, 1, false, 0, "x");
  EXPECT_NE(first_error(answer, Trigger{}).find("kind 2 where 1 was expected"), std::string::npos);

  std::string huge;
  append_trigger(huge, 1, "s", std::string(2000, 'x'));
  EXPECT_NE(first_error(huge, Trigger{}).find("more than the 1024 allowed"), std::string::npos);

  const std::string short_frame("\x02\x00\x00\x00\x01\x00", 6);  // length 2: no sequence number
  EXPECT_NE(first_error(short_frame, Trigger{}).find("too short"), std::string::npos);

  std::string lying;  // a subject length beyond the frame
  append_trigger(lying, 1, "abc", "");
  lying[4 + 1 + 8] = static_cast<char>(200);
  EXPECT_NE(first_error(lying, Trigger{}).find("subject longer than its frame"), std::string::npos);

  std::string no_flags;  // an answer that ends after its sequence number
  append_trigger(no_flags, 1, "", "");
  no_flags.resize(4 + 1 + 8);
  no_flags[0] = 9;
  no_flags[4] = static_cast<char>(kAnswer);
  EXPECT_NE(first_error(no_flags, Answer{}).find("a short answer"), std::string::npos);
}

}  // namespace
}  // namespace nex::triggers::frames
