// Message: an owned natsMsg (subject, reply, payload and headers). Payloads are bytes held in
// std::string/std::string_view, which are binary-safe.
#pragma once

#include <nats/nats.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace nex::nats {

class Message {
 public:
  static Result<Message> create(std::string_view subject, std::string_view data,
                                std::string_view reply = {});
  // Takes ownership of a message handed out by libnats.
  explicit Message(natsMsg* msg) : msg_(msg) {}

  std::string_view subject() const;
  std::string_view reply() const;
  std::string_view data() const;

  // First value of a header, if present.
  std::optional<std::string> header(const std::string& key) const;
  Status set_header(const std::string& key, const std::string& value);

  natsMsg* raw() const { return msg_.get(); }
  natsMsg* release() { return msg_.release(); }

 private:
  struct Deleter {
    void operator()(natsMsg* m) const;
  };
  std::unique_ptr<natsMsg, Deleter> msg_;
};

}  // namespace nex::nats
