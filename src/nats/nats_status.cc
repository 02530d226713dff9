#include "nats/nats_status.h"

#include <string>

namespace nex::nats {

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
    message += detail;
  } else {
    message += natsStatus_GetText(status);
  }
  if (js_code != 0)
    message += " (JetStream error " + std::to_string(static_cast<int>(js_code)) + ")";
  return Error{code, std::move(message)};
}

}  // namespace nex::nats
