#include "triggers/frames.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace nex::triggers::frames {

namespace {

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i)
    bytes[i] = static_cast<char>(static_cast<uint64_t>(value) >> (8 * i));
  out.append(bytes, sizeof(T));
}

template <typename T>
T get(std::string_view& in) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  in.remove_prefix(sizeof(T));
  return static_cast<T>(value);
}

constexpr size_t kLengthBytes = sizeof(uint32_t);
constexpr size_t kHeadBytes = sizeof(uint8_t) + sizeof(uint64_t);  // kind, seq

void put_head(std::string& out, size_t rest, uint8_t kind, uint64_t seq) {
  put(out, static_cast<uint32_t>(kHeadBytes + rest));
  put(out, kind);
  put(out, seq);
}

Error malformed(const std::string& why) {
  return {ErrorCode::kInvalidArgument, "malformed trigger channel frame: " + why};
}

}  // namespace

void append_trigger(std::string& out, uint64_t seq, std::string_view subject,
                    std::string_view payload) {
  put_head(out, sizeof(uint16_t) + subject.size() + payload.size(), kTrigger, seq);
  put(out, static_cast<uint16_t>(subject.size()));
  out.append(subject);
  out.append(payload);
}

void append_answer(std::string& out, uint64_t seq, bool failed, int64_t runtime_ns,
                   std::string_view body) {
  put_head(out, sizeof(uint8_t) + sizeof(int64_t) + body.size(), kAnswer, seq);
  put(out, static_cast<uint8_t>(failed ? kFailed : 0));
  put(out, runtime_ns);
  out.append(body);
}

std::span<char> FrameReader::prepare(size_t n) {
  if (offset_ > 0 && (offset_ == size_ || offset_ > buffer_.size() / 2)) {
    std::memmove(buffer_.data(), buffer_.data() + offset_, size_ - offset_);
    size_ -= offset_;
    offset_ = 0;
  }
  if (buffer_.size() < size_ + n) buffer_.resize(std::max(size_ + n, buffer_.size() * 2));
  return {buffer_.data() + size_, buffer_.size() - size_};
}

bool FrameReader::read_available(int fd) {
  for (;;) {  // until a read does not fill the room: the socket is then empty
    auto room = prepare(64 * 1024);
    const ssize_t n = ::recv(fd, room.data(), room.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    commit(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < room.size()) return true;
  }
}

Result<std::string_view> FrameReader::take(uint8_t kind) {
  std::string_view in(buffer_.data() + offset_, size_ - offset_);
  if (in.size() < kLengthBytes) return std::string_view();
  const uint32_t length = get<uint32_t>(in);
  if (length > max_frame_)
    return fail(malformed(std::to_string(length) + " bytes, more than the " +
                          std::to_string(max_frame_) + " allowed"));
  if (length < kHeadBytes) return fail(malformed("too short"));
  if (in.size() < length) return std::string_view();
  in = in.substr(0, length);
  if (const auto k = get<uint8_t>(in); k != kind)
    return fail(malformed("kind " + std::to_string(k) + " where " + std::to_string(kind) +
                          " was expected"));
  offset_ += kLengthBytes + length;
  return in;  // seq and the rest
}

Result<bool> FrameReader::next(Trigger& out) {
  auto frame = take(kTrigger);
  if (!frame) return fail(frame.error());
  std::string_view in = *frame;
  if (in.empty()) return false;
  out.seq = get<uint64_t>(in);
  if (in.size() < sizeof(uint16_t)) return fail(malformed("a trigger without its subject"));
  const uint16_t subject = get<uint16_t>(in);
  if (in.size() < subject) return fail(malformed("a subject longer than its frame"));
  out.subject.assign(in.substr(0, subject));
  out.payload.assign(in.substr(subject));
  return true;
}

Result<bool> FrameReader::next(Answer& out) {
  auto frame = take(kAnswer);
  if (!frame) return fail(frame.error());
  std::string_view in = *frame;
  if (in.empty()) return false;
  out.seq = get<uint64_t>(in);
  if (in.size() < sizeof(uint8_t) + sizeof(int64_t)) return fail(malformed("a short answer"));
  out.failed = (get<uint8_t>(in) & kFailed) != 0;
  out.runtime_ns = get<int64_t>(in);
  out.body.assign(in);
  return true;
}

}  // namespace nex::triggers::frames
