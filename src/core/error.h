// One error type across modules: a code a caller can branch on and a message a person can act on.
// Functions that can fail return Result<T> (std::expected); exceptions never cross module
// boundaries.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace nex {

enum class ErrorCode {
  kInvalidArgument,  // the caller's input is malformed; the message names the field
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,  // authentication or authorization failed, or a signature did not verify
  kTimeout,
  kNoResponders,
  kCorrupt,      // stored or received data failed an integrity check (CRC, digest, MAC)
  kUnavailable,  // a server or peer could not be reached
  kIo,
  kInternal,
};

const char* to_string(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  // "context: message", keeping the code, so callers can say where a lower-level error happened.
  Error wrap(std::string_view context) const {
    return Error{code, std::string(context) + ": " + message};
  }
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}
inline std::unexpected<Error> fail(Error error) { return std::unexpected(std::move(error)); }

}  // namespace nex

// Propagates the error of a Result/Status expression, otherwise yields nothing.
#define NEX_RETURN_IF_ERROR(expr)                             \
  do {                                                        \
    if (auto nex_status_ = (expr); !nex_status_) {            \
      return std::unexpected(std::move(nex_status_.error())); \
    }                                                         \
  } while (0)
