#include "nats/msg.h"

#include <string>

#include "nats/nats_status.h"

// Exported by libnats 3.4.1 though not declared in nats.h: what natsMsg_Destroy hands a message
// to. See Message::Deleter.
extern "C" void natsMsg_free(void* object);

namespace nex::nats {

// natsMsg_Destroy queues every message on one collector thread for the whole library, under a
// global lock, and wakes that thread when it sleeps: on a busy connection, a thread wake-up per
// message received or sent (measured: about a sixth of a function agent's CPU). Freeing in place is
// what the collector does. natsMsg_Destroy's one other case, messages libnats keeps
// ("no destroy"), only arises in JetStream push callbacks with auto-ack and in pull fetches,
// neither of which this wrapper uses: its messages come from core subscriptions, requests,
// synchronous subscriptions and js_GetLastMsg.
void Message::Deleter::operator()(natsMsg* m) const { natsMsg_free(m); }

Result<Message> Message::create(std::string_view subject, std::string_view data,
                                std::string_view reply) {
  natsMsg* msg = nullptr;
  const std::string subj(subject);
  const std::string rep(reply);
  if (auto s = natsMsg_Create(&msg, subj.c_str(), rep.empty() ? nullptr : rep.c_str(), data.data(),
                              static_cast<int>(data.size()));
      s != NATS_OK) {
    return fail(to_error(s, "create message on '" + subj + "'"));
  }
  return Message(msg);
}

std::string_view Message::subject() const {
  const char* s = natsMsg_GetSubject(msg_.get());
  return s ? s : "";
}

std::string_view Message::reply() const {
  const char* s = natsMsg_GetReply(msg_.get());
  return s ? s : "";
}

std::string_view Message::data() const {
  const char* d = natsMsg_GetData(msg_.get());
  return d ? std::string_view(d, static_cast<size_t>(natsMsg_GetDataLength(msg_.get()))) : "";
}

std::optional<std::string> Message::header(const std::string& key) const {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg_.get(), key.c_str(), &value) != NATS_OK || value == nullptr) {
    return std::nullopt;
  }
  return std::string(value);
}

Status Message::set_header(const std::string& key, const std::string& value) {
  return check(natsMsgHeader_Set(msg_.get(), key.c_str(), value.c_str()), "set header " + key);
}

}  // namespace nex::nats
