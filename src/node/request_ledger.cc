#include "node/request_ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "core/clock.h"

namespace nex::node {

namespace fs = std::filesystem;

namespace {

std::string io_error(const std::string& what, const fs::path& path, int err) {
  return "cannot " + what + " " + path.string() + ": " + std::strerror(err);
}

Status write_all(int fd, const std::string& text, const fs::path& path) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(ErrorCode::kIo, io_error("write", path, n < 0 ? errno : ENOSPC));
    off += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<RequestLedger>> RequestLedger::open(fs::path file) {
  std::unique_ptr<RequestLedger> ledger(new RequestLedger(std::move(file)));
  NEX_RETURN_IF_ERROR(ledger->load_and_compact());
  return ledger;
}

RequestLedger::~RequestLedger() {
  if (fd_ >= 0) ::close(fd_);
}

// Reads what is still valid and writes it back alone (written whole, then renamed).
Status RequestLedger::load_and_compact() {
  const int64_t now = unix_seconds_now();
  {
    std::ifstream in(file_);
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      int64_t exp = 0;
      std::string jti;
      // A line cut short by a crash has no jti or a partial one: partial ids match nothing.
      if (fields >> exp >> jti && exp > now) expiry_[jti] = exp;
    }
  }
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  const fs::path tmp = file_.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(ErrorCode::kIo, io_error("create", tmp, errno));
  std::string text;
  for (const auto& [jti, exp] : expiry_) text += std::to_string(exp) + " " + jti + "\n";
  auto written = write_all(fd, text, tmp);
  ::close(fd);
  NEX_RETURN_IF_ERROR(written);
  if (::rename(tmp.c_str(), file_.c_str()) != 0)
    return fail(ErrorCode::kIo, io_error("replace", file_, errno));
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return fail(ErrorCode::kIo, io_error("open", file_, errno));
  lines_in_file_ = expiry_.size();
  return {};
}

Status RequestLedger::append(const std::string& jti, int64_t exp) {
  NEX_RETURN_IF_ERROR(write_all(fd_, std::to_string(exp) + " " + jti + "\n", file_));
  if (++lines_in_file_ > 2 * expiry_.size() + 1024) return load_and_compact();
  return {};
}

void RequestLedger::forget_expired(int64_t now) {
  if (now - last_sweep_ < 60) return;
  last_sweep_ = now;
  for (auto it = expiry_.begin(); it != expiry_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    answers_.erase(it->first);
    it = expiry_.erase(it);
  }
}

Result<RequestLedger::Use> RequestLedger::take(const std::string& jti, int64_t exp,
                                               const std::string& fingerprint,
                                               std::chrono::milliseconds patience) {
  std::unique_lock lock(mu_);
  forget_expired(unix_seconds_now());
  if (expiry_.count(jti) == 0) {
    // Written down before any work is done, so a crash in the middle cannot make it usable again.
    NEX_RETURN_IF_ERROR(append(jti, exp));
    expiry_[jti] = exp;
    answers_[jti] = Answer{fingerprint, std::nullopt};
    answer_order_.push_back(jti);
    while (answer_order_.size() > kMaxAnswers) {
      answers_.erase(answer_order_.front());
      answer_order_.pop_front();
    }
    return Use{Use::kFirst, {}};
  }
  auto same = answers_.find(jti);
  if (same != answers_.end() && same->second.fingerprint != fingerprint)
    return Use{Use::kSpent, {}};
  answered_cv_.wait_for(lock, patience, [&] {
    auto it = answers_.find(jti);
    return it == answers_.end() || it->second.reply.has_value();
  });
  auto it = answers_.find(jti);
  if (it == answers_.end() || !it->second.reply) return Use{Use::kSpent, {}};
  return Use{Use::kRepeat, *it->second.reply};
}

void RequestLedger::answered(const std::string& jti, std::string answer) {
  {
    std::lock_guard lock(mu_);
    auto it = answers_.find(jti);
    if (it == answers_.end()) return;  // evicted meanwhile
    it->second.reply = std::move(answer);
  }
  answered_cv_.notify_all();
}

size_t RequestLedger::size() {
  std::lock_guard lock(mu_);
  return expiry_.size();
}

}  // namespace nex::node
