#include "node/storage_caps.h"

#include <chrono>

namespace nex::node {

nats::StreamCaps StorageCaps::stream_caps() const {
  return {.max_bytes = max_bytes,
          .max_msg_size = max_message_bytes,
          .max_age = std::chrono::hours(24 * retention_days)};
}

nlohmann::json StorageCaps::to_json() const {
  return {{"max_bytes", max_bytes},
          {"max_message_bytes", max_message_bytes},
          {"retention_days", retention_days}};
}

void read_storage_caps(api::FieldReader& r, StorageCaps& caps, int64_t smallest_message) {
  r.integer("max_bytes", caps.max_bytes);
  r.integer("max_message_bytes", caps.max_message_bytes);
  r.integer("retention_days", caps.retention_days);
  if (caps.max_bytes < smallest_message) {
    r.fail_field("max_bytes", "must be at least " + std::to_string(smallest_message) + " bytes");
    return;
  }
  // A NATS server takes messages of at most 64 MiB.
  if (caps.max_message_bytes < smallest_message || caps.max_message_bytes > 64 << 20)
    r.fail_field("max_message_bytes",
                 "must be " + std::to_string(smallest_message) + " to 67108864 bytes");
  if (caps.max_bytes < caps.max_message_bytes)
    r.fail_field("max_bytes", "must be at least max_message_bytes");
  if (caps.retention_days < 0)
    r.fail_field("retention_days", "must not be negative (0 keeps values until removed)");
}

}  // namespace nex::node
