// Wall-clock helpers for wire formats: unix seconds (JWT claims) and RFC 3339 timestamps
// (object store mtime, CloudEvents time).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace nex {

int64_t unix_seconds_now();
// "2026-11-22T10:04:05.123456789Z" (UTC, nanosecond precision, as Go's time.RFC3339Nano).
std::string rfc3339_nano(std::chrono::system_clock::time_point t);
// Reads an RFC 3339 time: "2026-11-22T10:04:05Z", with an optional fraction of up to nine digits
// and "Z" or an offset ("+02:00"). `field` names it in the error.
Result<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text,
                                                            const char* field);

}  // namespace nex
