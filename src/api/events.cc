#include "api/events.h"

#include "api/json_fields.h"
#include "core/clock.h"
#include "core/nuid.h"

namespace nex::api {

// Written out rather than built as a json object: the node republishes one of these for every
// function invocation, and building the envelope as a tree cost about as much as the rest of
// the republish (measured).
std::string cloud_event(const std::string& source, const std::string& type,
                        const nlohmann::json& data, const std::string& ns) {
  std::string out = R"({"specversion":"1.0","id":")";
  out += next_nuid();  // base62: nothing to escape
  out += R"(","source":)";
  out += dump(source);
  out += R"(,"type":)";
  out += dump(type);
  out += R"(,"time":")";
  out += rfc3339_nano(std::chrono::system_clock::now());
  out += R"(","datacontenttype":"application/json")";
  if (!ns.empty()) {
    out += R"(,"namespace":)";
    out += dump(ns);
  }
  out += R"(,"data":)";
  out += dump(data);
  out += '}';
  return out;
}

}  // namespace nex::api
