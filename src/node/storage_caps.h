// The caps a node keeps on a bucket it creates (its kept workloads, host services' buckets): how
// many bytes it holds, how large one value may be, and how long a value lives. Configurable in
// the node config, shown by `nex node info`, and set again on a bucket that has other caps.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "api/json_fields.h"
#include "nats/jetstream.h"

namespace nex::node {

struct StorageCaps {
  int64_t max_bytes = 0;
  int64_t max_message_bytes = 0;
  int64_t retention_days = 0;  // 0: values live until removed
  nats::StreamCaps stream_caps() const;
  // {"max_bytes": ..., "max_message_bytes": ..., "retention_days": ...}
  nlohmann::json to_json() const;
};

// Reads the three fields of `caps` from `r`; `smallest_message` is the least max_message_bytes
// that still lets the bucket work (an object store's chunk).
void read_storage_caps(api::FieldReader& r, StorageCaps& caps, int64_t smallest_message);

}  // namespace nex::node
