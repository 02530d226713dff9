// Wall-clock helpers for wire formats: unix seconds (JWT claims) and RFC 3339 timestamps
// (object store mtime, CloudEvents time).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nex {

int64_t unix_seconds_now();
// "2026-11-22T10:04:05.123456789Z" (UTC, nanosecond precision, as Go's time.RFC3339Nano).
std::string rfc3339_nano(std::chrono::system_clock::time_point t);

}  // namespace nex
