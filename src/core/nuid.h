// NUID: 22-character unique identifiers in the NATS style (12 random base62 characters of prefix,
// 10 of sequence). Used for object store chunk subjects and inboxes; thread-safe.
#pragma once

#include <string>

namespace nex {

std::string next_nuid();

}  // namespace nex
