// RequestLedger: the signed requests a node has taken, by JWT id (jti), each remembered until
// its JWT expires, across restarts (a file in the node's state directory), so that a signed
// request is used once. The answers to recent ones are kept too: the same request sent again
// (a client retrying after a reply lost in a reconnect) gets the first one's answer, never a
// second copy of the work. "The same request" is told by a fingerprint of its content, not by
// its jti alone: another request carrying the same JWT (an unbound one of older tooling can be
// put on any body) is refused, not handed the first one's answer.
//
// The file is appended to, a line "EXP JTI" per request, and rewritten without the expired ones
// when the ledger opens and when it has grown to twice what is live. Appends are not synced: a
// node that crashes keeps them (the kernel has them); a host losing power may forget the last.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.h"

namespace nex::node {

class RequestLedger {
 public:
  static Result<std::unique_ptr<RequestLedger>> open(std::filesystem::path file);
  ~RequestLedger();

  struct Use {
    enum Kind {
      kFirst,   // new: the caller does the work, then calls answered()
      kRepeat,  // seen, and `answer` is what the first use answered
      kSpent,   // seen, but its answer is no longer known (an earlier run of the node), or
                // the jti came with another request
    } kind;
    std::string answer;
  };
  // Takes `jti` (valid until `exp`, unix seconds) for the request whose content has
  // `fingerprint`. A repeat of a request still being worked on waits for its answer, at most
  // `patience`; past that it is reported spent.
  Result<Use> take(const std::string& jti, int64_t exp, const std::string& fingerprint,
                   std::chrono::milliseconds patience);
  // What the first use of `jti` answered, for its repeats.
  void answered(const std::string& jti, std::string answer);

  size_t size();  // requests remembered

 private:
  explicit RequestLedger(std::filesystem::path file) : file_(std::move(file)) {}
  Status load_and_compact();
  Status append(const std::string& jti, int64_t exp);
  void forget_expired(int64_t now);

  static constexpr size_t kMaxAnswers = 4096;

  std::filesystem::path file_;
  int fd_ = -1;
  std::mutex mu_;
  std::condition_variable answered_cv_;
  std::map<std::string, int64_t> expiry_;  // jti -> exp
  struct Answer {
    std::string fingerprint;           // of the request that took the jti
    std::optional<std::string> reply;  // nullopt: being worked on
  };
  std::map<std::string, Answer> answers_;
  std::deque<std::string> answer_order_;  // oldest first, for eviction
  size_t lines_in_file_ = 0;
  int64_t last_sweep_ = 0;
};

}  // namespace nex::node
