#include "api/events.h"

#include "core/clock.h"
#include "core/nuid.h"

namespace nex::api {

nlohmann::json cloud_event(const std::string& source, const std::string& type,
                           nlohmann::json data) {
  return {{"specversion", "1.0"},
          {"id", next_nuid()},
          {"source", source},
          {"type", type},
          {"time", rfc3339_nano(std::chrono::system_clock::now())},
          {"datacontenttype", "application/json"},
          {"data", std::move(data)}};
}

}  // namespace nex::api
