// The trigger channel's frames (docs/protocol-additions.md). When a node relays a function's
// triggers to an agent on this host (process and namespace sandboxes), they travel over a stream
// socket the agent inherits at start (NEX_TRIGGER_FD), not over the internal NATS: one write and
// one read per trigger and per answer, with no server in between.
//
// Every frame: u32 length of the rest, u8 kind, u64 sequence number (little-endian), then
//   kind 1, a trigger (node -> agent): u16 subject length, the subject, the payload;
//   kind 2, an answer (agent -> node): u8 flags (1: the invocation failed, the body is its
//           error), i64 run time in nanoseconds, the body.
// A trigger with sequence number 0 expects no answer (its caller gave no reply subject).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"

namespace nex::triggers::frames {

inline constexpr uint8_t kTrigger = 1;
inline constexpr uint8_t kAnswer = 2;
inline constexpr uint8_t kFailed = 1;  // answer flag
// The longest frame either end reads: a payload as large as NATS allows (64 MiB) and the rest.
inline constexpr size_t kMaxFrame = (size_t{64} << 20) + 64 * 1024;

struct Trigger {
  uint64_t seq = 0;
  std::string subject;
  std::string payload;
};

struct Answer {
  uint64_t seq = 0;
  bool failed = false;
  int64_t runtime_ns = 0;
  std::string body;
};

void append_trigger(std::string& out, uint64_t seq, std::string_view subject,
                    std::string_view payload);
void append_answer(std::string& out, uint64_t seq, bool failed, int64_t runtime_ns,
                   std::string_view body);

// Cuts a byte stream into frames. The peer is not trusted: a frame longer than `max_frame`, of
// another kind than expected, or too short for its fields is an error, after which the stream
// cannot be read further.
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame) : max_frame_(max_frame) {}
  // Room for at least `n` more bytes; say how many arrived with commit().
  std::span<char> prepare(size_t n);
  void commit(size_t n) { size_ += n; }
  // Reads what the stream socket `fd` holds now, without waiting; false once the stream has
  // ended (its peer closed it, or reading failed). What came before the end is kept.
  bool read_available(int fd);
  // The next whole frame: true when `out` holds it, false when more bytes are needed.
  Result<bool> next(Trigger& out);
  Result<bool> next(Answer& out);
  // Bytes received and not yet taken as frames.
  size_t buffered() const { return size_ - offset_; }

 private:
  // The next whole frame of `kind`, its bytes after the kind; empty when incomplete.
  Result<std::string_view> take(uint8_t kind);
  size_t max_frame_;
  std::string buffer_;
  size_t offset_ = 0;  // where the next frame starts
  size_t size_ = 0;    // bytes of buffer_ in use
};

}  // namespace nex::triggers::frames
