// Turns libnats status codes (and JetStream API error codes) into nex::Error with the library's
// own explanation appended, so "what went wrong" survives to the person reading it.
#pragma once

#include <nats/nats.h>

#include <string_view>

#include "core/error.h"

namespace nex::nats {

Error to_error(natsStatus status, std::string_view context,
               jsErrCode js_code = static_cast<jsErrCode>(0));

inline Status check(natsStatus status, std::string_view context) {
  if (status == NATS_OK) return {};
  return std::unexpected(to_error(status, context));
}

}  // namespace nex::nats
