#include "nats/nats_status.h"

#include <regex>
#include <string>

namespace nex::nats {
namespace {

// libnats prefixes its texts with where in its sources it was, "(conn.c:3028): Invalid
// Subject": of no use to a user, so it goes.
std::string without_source_locations(const char* text) {
  static const std::regex kLocation(R"(\([A-Za-z0-9_]+\.c:[0-9]+\):? ?)");
  return std::regex_replace(text, kLocation, "");
}

}  // namespace

Error to_error(natsStatus status, std::string_view context, jsErrCode js_code) {
  ErrorCode code = ErrorCode::kInternal;
  switch (status) {
    case NATS_TIMEOUT:
      code = ErrorCode::kTimeout;
      break;
    case NATS_NO_RESPONDERS:
      code = ErrorCode::kNoResponders;
      break;
    case NATS_NOT_FOUND:
      code = ErrorCode::kNotFound;
      break;
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
      code = ErrorCode::kPermissionDenied;
      break;
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
      code = ErrorCode::kUnavailable;
      break;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_QUEUE_NAME:
    case NATS_MAX_PAYLOAD:
      code = ErrorCode::kInvalidArgument;
      break;
    case NATS_IO_ERROR:
    case NATS_SYS_ERROR:
      code = ErrorCode::kIo;
      break;
    default:
      break;
  }
  if (js_code == JSStreamNotFoundErr || js_code == JSConsumerNotFoundErr ||
      js_code == JSNoMessageFoundErr) {
    code = ErrorCode::kNotFound;
  } else if (js_code == JSStreamNameExistErr) {
    code = ErrorCode::kAlreadyExists;
  }
  std::string message(context);
  message += ": ";
  // nats_GetLastError holds the detailed text (e.g. the JetStream API's description) for this
  // thread; fall back to the status text.
  natsStatus last = NATS_OK;
  const char* detail = nats_GetLastError(&last);
  if (detail != nullptr && *detail != '\0' && last == status) {
    message += without_source_locations(detail);
  } else {
    message += natsStatus_GetText(status);
  }
  if (js_code != 0)
    message += " (JetStream error " + std::to_string(static_cast<int>(js_code)) + ")";
  return Error{code, std::move(message)};
}

}  // namespace nex::nats
