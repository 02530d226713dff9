#include "nats/jetstream.h"

#include <mutex>
#include <optional>
#include <thread>

#include "core/nuid.h"
#include "nats/nats_status.h"

namespace nex::nats {

struct JetStream::Impl {
  Connection connection;
  jsCtx* js = nullptr;
  JetStreamOptions options;
  std::mutex mu;
  std::optional<Error> async_error;  // the first pipelined publish that failed

  explicit Impl(Connection c) : connection(std::move(c)) {}
  ~Impl() {
    if (js != nullptr) jsCtx_Destroy(js);
  }

  static void on_async_error(jsCtx*, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    std::string subject = pae->Msg ? natsMsg_GetSubject(pae->Msg) : "";
    Error err{ErrorCode::kInternal,
              "publish on '" + subject +
                  "': " + (pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err))};
    if (pae->Err == NATS_TIMEOUT) err.code = ErrorCode::kTimeout;
    std::lock_guard lock(self->mu);
    if (!self->async_error) self->async_error = std::move(err);
  }

  jsOptions api_options() const {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = options.timeout.count();
    return o;
  }
};

namespace {

StreamConfig to_stream_config(const jsStreamConfig& cfg) {
  StreamConfig c;
  if (cfg.Name != nullptr) c.name = cfg.Name;
  if (cfg.Description != nullptr) c.description = cfg.Description;
  for (int i = 0; i < cfg.SubjectsLen; ++i) c.subjects.emplace_back(cfg.Subjects[i]);
  c.storage = cfg.Storage == js_FileStorage ? Storage::kFile : Storage::kMemory;
  c.discard = cfg.Discard == js_DiscardNew ? Discard::kNew : Discard::kOld;
  c.replicas = cfg.Replicas;
  c.max_msgs = cfg.MaxMsgs;
  c.max_bytes = cfg.MaxBytes;
  c.max_msg_size = cfg.MaxMsgSize;
  c.max_msgs_per_subject = cfg.MaxMsgsPerSubject;
  c.max_age = std::chrono::nanoseconds(cfg.MaxAge);
  c.duplicate_window = std::chrono::nanoseconds(cfg.Duplicates);
  c.allow_rollup = cfg.AllowRollup;
  c.allow_direct = cfg.AllowDirect;
  c.deny_delete = cfg.DenyDelete;
  return c;
}

StreamInfo to_stream_info(const jsStreamInfo* si) {
  StreamInfo out;
  if (si->Config != nullptr) {
    out.config = to_stream_config(*si->Config);
    out.name = out.config.name;
  }
  out.messages = si->State.Msgs;
  out.bytes = si->State.Bytes;
  out.first_sequence = si->State.FirstSeq;
  out.last_sequence = si->State.LastSeq;
  return out;
}

}  // namespace

Result<JetStream> JetStream::create(const Connection& connection, const JetStreamOptions& options) {
  auto impl = std::make_shared<Impl>(connection);
  impl->options = options;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = options.timeout.count();
  if (!options.domain.empty()) o.Domain = options.domain.c_str();
  if (!options.api_prefix.empty()) o.Prefix = options.api_prefix.c_str();
  o.PublishAsync.MaxPending = options.max_pending_async;
  // With MaxPending in flight, a publish waits this long for an ack before failing as stalled.
  o.PublishAsync.StallWait = options.timeout.count();
  o.PublishAsync.ErrHandler = &Impl::on_async_error;
  o.PublishAsync.ErrHandlerClosure = impl.get();
  if (auto s = natsConnection_JetStream(&impl->js, connection.raw(), &o); s != NATS_OK) {
    return fail(to_error(s, "JetStream context"));
  }
  return JetStream(std::move(impl));
}

const Connection& JetStream::connection() const { return impl_->connection; }
std::chrono::milliseconds JetStream::timeout() const { return impl_->options.timeout; }
std::string JetStream::api_prefix() const {
  const auto& o = impl_->options;
  if (!o.domain.empty()) return "$JS." + o.domain + ".API";
  return o.api_prefix.empty() ? "$JS.API" : o.api_prefix;
}
jsCtx* JetStream::raw() const { return impl_->js; }

Result<PubAck> JetStream::publish(const Message& msg) const {
  jsPubAck* ack = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = impl_->options.timeout.count();
  // No responders: no stream took the subject at that moment, which also happens for a moment
  // while a stream is being created or moved. The Go client tries twice more, 250 ms apart, by
  // default; so do we (the message was not stored, so sending it again cannot duplicate it).
  natsStatus s = NATS_OK;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(250));
    s = js_PublishMsg(&ack, impl_->js, msg.raw(), &po, &jerr);
    if (s != NATS_NO_RESPONDERS) break;
  }
  if (s != NATS_OK) {
    return fail(to_error(s, "JetStream publish on '" + std::string(msg.subject()) + "'", jerr));
  }
  PubAck out{ack->Stream ? ack->Stream : "", ack->Sequence, ack->Duplicate};
  jsPubAck_Destroy(ack);
  return out;
}

Result<PubAck> JetStream::publish(std::string_view subject, std::string_view data) const {
  auto msg = Message::create(subject, data);
  if (!msg) return fail(msg.error());
  return publish(*msg);
}

Status JetStream::publish_async(Message msg) const {
  natsMsg* raw = msg.release();
  if (auto s = js_PublishMsgAsync(impl_->js, &raw, nullptr); s != NATS_OK) {
    Error err = to_error(
        s, "JetStream publish on '" + std::string(raw ? natsMsg_GetSubject(raw) : "") + "'");
    natsMsg_Destroy(raw);  // still ours on failure
    return std::unexpected(std::move(err));
  }
  return {};
}

Status JetStream::publish_async_complete(std::chrono::milliseconds timeout) const {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout.count();
  natsStatus s = js_PublishAsyncComplete(impl_->js, &po);
  std::lock_guard lock(impl_->mu);
  if (impl_->async_error) {
    Error err = std::move(*impl_->async_error);
    impl_->async_error.reset();
    return std::unexpected(std::move(err));
  }
  return check(s, "waiting for JetStream acknowledgements");
}

namespace {

// The limits of StreamConfig, as libnats takes them (for a new stream and for an update).
void set_limits(jsStreamConfig& cfg, const StreamConfig& c) {
  cfg.Discard = c.discard == Discard::kNew ? js_DiscardNew : js_DiscardOld;
  cfg.Replicas = c.replicas;
  cfg.MaxMsgs = c.max_msgs;
  cfg.MaxBytes = c.max_bytes;
  cfg.MaxMsgSize = static_cast<int32_t>(c.max_msg_size);
  cfg.MaxMsgsPerSubject = c.max_msgs_per_subject;
  cfg.MaxAge = c.max_age.count();
  cfg.Duplicates = c.duplicate_window.count();
}

}  // namespace

Result<StreamInfo> JetStream::add_stream(const StreamConfig& c) const {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  std::vector<const char*> subjects;
  for (const auto& s : c.subjects) subjects.push_back(s.c_str());
  cfg.Name = c.name.c_str();
  if (!c.description.empty()) cfg.Description = c.description.c_str();
  cfg.Subjects = subjects.data();
  cfg.SubjectsLen = static_cast<int>(subjects.size());
  cfg.Storage = c.storage == Storage::kFile ? js_FileStorage : js_MemoryStorage;
  set_limits(cfg, c);
  cfg.AllowRollup = c.allow_rollup;
  cfg.AllowDirect = c.allow_direct;
  cfg.DenyDelete = c.deny_delete;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_AddStream(&si, impl_->js, &cfg, &o, &jerr); s != NATS_OK) {
    return fail(to_error(s, "create stream " + c.name, jerr));
  }
  StreamInfo out = to_stream_info(si);
  jsStreamInfo_Destroy(si);
  return out;
}

Result<StreamInfo> JetStream::stream_info(const std::string& stream) const {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_GetStreamInfo(&si, impl_->js, stream.c_str(), &o, &jerr); s != NATS_OK) {
    return fail(to_error(s, "stream " + stream, jerr));
  }
  StreamInfo out = to_stream_info(si);
  jsStreamInfo_Destroy(si);
  return out;
}

Result<ConsumerInfo> JetStream::consumer_info(const std::string& stream,
                                              const std::string& durable) const {
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_GetConsumerInfo(&ci, impl_->js, stream.c_str(), durable.c_str(), &o, &jerr);
      s != NATS_OK) {
    return fail(to_error(s, "consumer " + durable + " of stream " + stream, jerr));
  }
  ConsumerInfo out{.num_pending = ci->NumPending,
                   .num_ack_pending = static_cast<uint64_t>(ci->NumAckPending)};
  jsConsumerInfo_Destroy(ci);
  return out;
}

Status JetStream::delete_stream(const std::string& stream) const {
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_DeleteStream(impl_->js, stream.c_str(), &o, &jerr); s != NATS_OK) {
    return std::unexpected(to_error(s, "delete stream " + stream, jerr));
  }
  return {};
}

Result<StreamInfo> JetStream::update_stream(
    const std::string& stream, const std::function<void(StreamConfig&)>& change) const {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_GetStreamInfo(&si, impl_->js, stream.c_str(), &o, &jerr); s != NATS_OK) {
    return fail(to_error(s, "stream " + stream, jerr));
  }
  std::unique_ptr<jsStreamInfo, void (*)(jsStreamInfo*)> held(si, jsStreamInfo_Destroy);
  if (si->Config == nullptr) return fail(ErrorCode::kInternal, "stream " + stream + ": no config");
  StreamConfig c = to_stream_config(*si->Config);
  change(c);
  jsStreamConfig& cfg = *si->Config;  // everything else stays as the server sent it
  const auto own_subjects = cfg.Subjects;
  const int own_subjects_len = cfg.SubjectsLen;
  const char* own_description = cfg.Description;
  std::vector<const char*> subjects;
  for (const auto& s : c.subjects) subjects.push_back(s.c_str());
  if (!c.description.empty()) cfg.Description = c.description.c_str();
  cfg.Subjects = subjects.data();
  cfg.SubjectsLen = static_cast<int>(subjects.size());
  set_limits(cfg, c);
  jsStreamInfo* updated = nullptr;
  const auto s = js_UpdateStream(&updated, impl_->js, &cfg, &o, &jerr);
  // Back to the info's own strings, which jsStreamInfo_Destroy frees.
  cfg.Subjects = own_subjects;
  cfg.SubjectsLen = own_subjects_len;
  cfg.Description = own_description;
  if (s != NATS_OK) return fail(to_error(s, "update stream " + stream, jerr));
  StreamInfo out = to_stream_info(updated);
  jsStreamInfo_Destroy(updated);
  return out;
}

std::string to_string(const StreamCaps& c) {
  auto bytes = [](int64_t n) { return n < 0 ? std::string("none") : std::to_string(n); };
  return "max_bytes " + bytes(c.max_bytes) + ", max_msg_size " + bytes(c.max_msg_size) +
         ", max_age " +
         (c.max_age.count() == 0 ? "none" : std::to_string(c.max_age.count()) + " s");
}

Result<std::string> JetStream::set_caps(const std::string& stream, const StreamCaps& caps) const {
  auto info = stream_info(stream);
  if (!info) return fail(info.error());
  auto caps_of = [](const StreamConfig& c) {
    return StreamCaps{.max_bytes = c.max_bytes,
                      .max_msg_size = c.max_msg_size,
                      .max_age = std::chrono::duration_cast<std::chrono::seconds>(c.max_age)};
  };
  const StreamCaps had = caps_of(info->config);
  if (had == caps) return std::string();
  auto updated = update_stream(stream, [&](StreamConfig& c) {
    c.max_bytes = caps.max_bytes;
    c.max_msg_size = caps.max_msg_size;
    c.max_age = caps.max_age;
  });
  if (!updated) return fail(updated.error());
  return to_string(had) + " -> " + to_string(caps_of(updated->config));
}

Result<int> JetStream::replicas_available(int wanted, std::string& why) const {
  if (wanted <= 1) return 1;
  const std::string name = "NEX_REPLICAS_PROBE_" + next_nuid();
  auto probe =
      add_stream({.name = name,
                  .description = "nex: can this JetStream hold replicas? (removed at once)",
                  .subjects = {"$NEX.probe." + name},
                  .storage = Storage::kMemory,
                  .replicas = wanted,
                  .max_msgs = 1});
  if (probe) {
    (void)delete_stream(name);
    return wanted;
  }
  // Not clustered ("replicas > 1 not supported in non-clustered mode"), or too few servers
  // ("insufficient resources"): the server's own words. Anything else is an error.
  const std::string& m = probe.error().message;
  if (m.find("replicas") == std::string::npos &&
      m.find("insufficient resources") == std::string::npos)
    return fail(probe.error());
  why = m;
  return 1;
}

Result<std::string> JetStream::keep_replicas(const std::string& stream,
                                             const ReplicaPolicy& policy) const {
  auto info = stream_info(stream);
  if (!info) return fail(info.error());
  const int64_t had = info->config.replicas;
  if (had >= policy.replicas) return std::string();
  const std::string raise =
      "nats stream edit " + stream + " --replicas " + std::to_string(policy.replicas);
  if (!policy.raise)
    return stream + " keeps " + std::to_string(had) + " replica(s), fewer than " +
           std::to_string(policy.replicas) + ": raise it with `" + raise +
           "`, or set raise_jetstream_replicas in the node config";
  auto raised = update_stream(stream, [&](StreamConfig& c) { c.replicas = policy.replicas; });
  if (!raised) return fail(raised.error().wrap("raising the replicas of " + stream));
  return stream + ": replicas raised from " + std::to_string(had) + " to " +
         std::to_string(policy.replicas);
}

Status JetStream::delete_message(const std::string& stream, uint64_t sequence) const {
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_DeleteMsg(impl_->js, stream.c_str(), sequence, &o, &jerr); s != NATS_OK) {
    return std::unexpected(
        to_error(s, "delete message " + std::to_string(sequence) + " of stream " + stream, jerr));
  }
  return {};
}

Status JetStream::purge_stream(const std::string& stream, const std::string& subject_filter) const {
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (!subject_filter.empty()) o.Stream.Purge.Subject = subject_filter.c_str();
  if (auto s = js_PurgeStream(impl_->js, stream.c_str(), &o, &jerr); s != NATS_OK) {
    return std::unexpected(to_error(s, "purge " + subject_filter + " from stream " + stream, jerr));
  }
  return {};
}

Result<Message> JetStream::last_message(const std::string& stream,
                                        const std::string& subject) const {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = js_GetLastMsg(&msg, impl_->js, stream.c_str(), subject.c_str(), &o, &jerr);
      s != NATS_OK) {
    return fail(to_error(s, "last message on " + subject, jerr));
  }
  return Message(msg);
}

Result<SyncSubscription> JetStream::ordered_consumer(const std::string& stream,
                                                     const std::string& filter_subject,
                                                     jsDeliverPolicy deliver,
                                                     int64_t start_time_ns) const {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Ordered = true;
  so.Stream = stream.c_str();
  so.Config.DeliverPolicy = deliver;
  so.Config.OptStartTime = start_time_ns;
  jsOptions o = impl_->api_options();
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (auto s = js_SubscribeSync(&sub, impl_->js, filter_subject.c_str(), &o, &so, &jerr);
      s != NATS_OK) {
    return fail(to_error(s, "consume " + filter_subject, jerr));
  }
  return SyncSubscription(impl_->connection.raw(), sub);
}

Result<uint64_t> JetStream::backlog(const SyncSubscription& sub) const {
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o = impl_->api_options();
  if (auto s = natsSubscription_GetConsumerInfo(&ci, sub.raw(), &o, &jerr); s != NATS_OK) {
    return fail(to_error(s, "consumer info", jerr));
  }
  const uint64_t total = ci->NumPending + ci->Delivered.Consumer;
  jsConsumerInfo_Destroy(ci);
  return total;
}

Result<JsMetadata> JetStream::metadata(const Message& msg) {
  jsMsgMetaData* meta = nullptr;
  if (auto s = natsMsg_GetMetaData(&meta, msg.raw()); s != NATS_OK) {
    return fail(to_error(s, "message metadata"));
  }
  JsMetadata out{meta->Sequence.Stream, meta->NumPending, meta->NumDelivered, meta->Timestamp};
  jsMsgMetaData_Destroy(meta);
  return out;
}

}  // namespace nex::nats
