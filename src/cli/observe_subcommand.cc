// `nex logs` and `nex events`: follow what workloads write and what nodes report, live, one
// line each (coloured on a terminal) until Ctrl-C; `--json` prints the messages as JSON. What
// workloads wrote is shown with its control characters escaped (core/terminal_text.h), so a
// line is one line and cannot drive the terminal; `nex logs --raw` prints the text as sent.
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "api/events.h"
#include "api/json_fields.h"
#include "api/subject.h"
#include "cli/subcommands.h"
#include "core/terminal_text.h"

namespace nex::cli {
namespace {

using nlohmann::json;

struct Palette {
  bool on = false;
  const char* code(const char* c) const { return on ? c : ""; }
  const char* red() const { return code("\033[31m"); }
  const char* green() const { return code("\033[32m"); }
  const char* yellow() const { return code("\033[33m"); }
  const char* cyan() const { return code("\033[36m"); }
  const char* dim() const { return code("\033[2m"); }
  const char* reset() const { return code("\033[0m"); }
};

// Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
Palette palette() {
  const char* no_color = std::getenv("NO_COLOR");
  return {::isatty(STDOUT_FILENO) == 1 && !(no_color && *no_color)};
}

// "14:03:07.123", local time.
std::string clock_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms));
  return buf;
}

// A message as one line of JSON, every character outside ASCII escaped: the JSON parser lets DEL
// and C1 controls through in strings, and a terminal would act on them.
void print_json(const json& j) {
  std::printf("%s\n", j.dump(-1, ' ', true, json::error_handler_t::replace).c_str());
}

// Field `key` of `j` for the terminal: a string as it is, anything else as JSON; escaped.
std::string shown(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  return terminal_safe(it->is_string() ? it->get<std::string>() : it->dump());
}

// A filter value becomes one subject token: it must not be empty or hold '.', '*', '>' or space.
Status check_token(const std::string& value, const char* flag) {
  if (value.empty() || value.find_first_of(".*> \t\r\n") != std::string::npos)
    return fail(ErrorCode::kInvalidArgument,
                std::string(flag) + " must be one word without '.', '*', '>' or spaces, got '" +
                    value + "'");
  return {};
}

// Subscribes to `subjects` and hands each message to `print` (one at a time) until SIGINT or
// SIGTERM. The connection reconnects, so a follower outlives a NATS restart.
int follow(const ConnectionFlags& flags, const std::vector<std::string>& subjects,
           const std::function<void(const nats::Message&)>& print) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each line reaches a pipe as it is printed

  auto options = flags.options("nex cli");
  if (!options) return report(options.error());
  options->on_disconnected = [] { std::fprintf(stderr, "nex: lost NATS, reconnecting...\n"); };
  options->on_reconnected = [] { std::fprintf(stderr, "nex: reconnected\n"); };
  auto conn = nats::Connection::connect(*options);
  if (!conn) return report(conn.error());
  std::mutex mu;  // subscriptions deliver on their own threads; lines must not interleave
  bool stopping = false;
  std::vector<nats::Subscription> subs;
  for (const auto& subject : subjects) {
    auto sub = conn->subscribe(subject, [&](nats::Message m) {
      std::lock_guard lock(mu);
      if (!stopping) print(m);
    });
    if (!sub) return report(sub.error());
    subs.push_back(std::move(*sub));
  }
  if (auto st = conn->flush(); !st) return report(st.error());
  std::string joined;
  for (const auto& s : subjects) joined += (joined.empty() ? "" : ", ") + s;
  std::fprintf(stderr, "Following %s on %s (Ctrl-C to stop)\n", joined.c_str(),
               conn->connected_url().c_str());
  int signo = 0;
  sigwait(&signals, &signo);
  {
    std::lock_guard lock(mu);  // a line being printed is finished first
    stopping = true;
  }
  subs.clear();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// nex logs

constexpr std::array<const char*, 5> kLevels = {"trace", "debug", "info", "warn", "error"};

// A level's rank in kLevels; Nex 0.2 agents sent logrus numbers (0 panic ... 6 trace).
int level_rank(const json& level) {
  if (level.is_number_integer()) {
    const int64_t n = level.get<int64_t>();
    return n <= 2 ? 4 : n == 3 ? 3 : n == 4 ? 2 : n == 5 ? 1 : 0;
  }
  const std::string s = level.is_string() ? level.get<std::string>() : "info";
  for (size_t i = 0; i < kLevels.size(); ++i) {
    if (s == kLevels[i]) return static_cast<int>(i);
  }
  if (s == "warning") return 3;
  if (s == "fatal" || s == "panic") return 4;
  return 2;
}

struct LogsOptions {
  std::string node = "*";
  std::string workload_name = "*";
  std::string workload_id = "*";
  std::string level = "trace";
  bool raw = false;  // the text as the workload sent it, control characters and all
};

int logs(const ConnectionFlags& flags, const LogsOptions& o) {
  for (auto [value, flag] : {std::pair{&o.node, "--node"},
                             {&o.workload_name, "--workload_name"},
                             {&o.workload_id, "--workload_id"}}) {
    if (*value == "*") continue;
    if (auto st = check_token(*value, flag); !st) return report(st.error());
  }
  const int min_rank = level_rank(json(o.level));
  const Palette p = palette();
  return follow(
      flags, {"$NEX.logs." + flags.ns + "." + o.node + "." + o.workload_name + "." + o.workload_id},
      [&](const nats::Message& m) {
        auto line = api::FieldReader::parse_object(m.data(), "log line");
        if (!line) return;
        const json& level = line->contains("level") ? (*line)["level"] : json("info");
        const int rank = level_rank(level);
        if (rank < min_rank) return;
        if (flags.json && o.raw) {
          std::printf("%.*s\n", static_cast<int>(m.data().size()), m.data().data());
          return;
        }
        if (flags.json) return print_json(*line);
        // $NEX.logs.{ns}.{node}.{name}.{id}; a subject token may hold control characters too.
        const auto t = api::subject_tokens(m.subject());
        if (t.size() != 6) return;
        const std::string node = terminal_safe(t[3]), name = terminal_safe(t[4]),
                          id = terminal_safe(t[5]);
        const char* colour = rank >= 4   ? p.red()
                             : rank == 3 ? p.yellow()
                             : rank == 2 ? p.green()
                                         : p.dim();
        std::string label = kLevels[static_cast<size_t>(rank)];
        for (char& c : label) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        const auto sent = line->find("text");
        const std::string text = o.raw && sent != line->end() && sent->is_string()
                                     ? sent->get<std::string>()
                                     : shown(*line, "text");
        std::printf("%s %s%-5s%s %s%s%s %s(%s on %.8s)%s %.*s\n", clock_now().c_str(), colour,
                    label.c_str(), p.reset(), p.cyan(), name.c_str(), p.reset(), p.dim(),
                    id.c_str(), node.c_str(), p.reset(), static_cast<int>(text.size()),
                    text.c_str());
      });
}

// ---------------------------------------------------------------------------------------------
// nex events

// "key=value key2='two words'" from an event's data.
std::string data_text(const json& data) {
  if (!data.is_object()) return data.is_null() ? "" : terminal_safe(data.dump());
  std::string out;
  for (auto it = data.begin(); it != data.end(); ++it) {
    std::string v = terminal_safe(it->is_string() ? it->get<std::string>() : it->dump());
    if (v.find_first_of(" \t") != std::string::npos || v.empty()) v = "'" + v + "'";
    out += (out.empty() ? "" : " ") + terminal_safe(it.key()) + "=" + v;
  }
  return out;
}

int events(const ConnectionFlags& flags, const std::string& type) {
  if (type != "*") {
    bool known = false;
    std::string list;
    for (const char* t : api::event_type::kAll) {
      known |= type == t;
      list += (list.empty() ? "" : ", ") + std::string(t);
    }
    if (!known)
      return report(
          {ErrorCode::kInvalidArgument, "--type must be one of " + list + "; got '" + type + "'"});
  }
  // Node events are in the system namespace; a user following a namespace wants them too.
  std::vector<std::string> subjects = {api::events_subject(flags.ns, type)};
  if (flags.ns != api::kSystemNamespace)
    subjects.push_back(api::events_subject(api::kSystemNamespace, type));
  const Palette p = palette();
  return follow(flags, subjects, [&](const nats::Message& m) {
    auto event = api::FieldReader::parse_object(m.data(), "event");
    if (!event) return;
    if (flags.json) return print_json(*event);
    const std::string t = shown(*event, "type");
    const bool bad = t == api::event_type::kWorkloadCrashLoop ||
                     t == api::event_type::kFunctionExecFailed ||
                     t == api::event_type::kNodeStopped;
    const bool good = t == api::event_type::kWorkloadDeployed || t == api::event_type::kNodeStarted;
    std::printf("%s %s%-23s%s %s[%s] %s%s %s\n", clock_now().c_str(),
                bad    ? p.red()
                : good ? p.green()
                       : p.yellow(),
                t.c_str(), p.reset(), p.dim(), shown(*event, "namespace").c_str(),
                shown(*event, "source").c_str(), p.reset(),
                data_text(event->value("data", json())).c_str());
  });
}

}  // namespace

void register_observe_subcommands(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags) {
  auto lo = std::make_shared<LogsOptions>();
  auto* lg = app.add_subcommand("logs", "Follow the output of workloads, live, until Ctrl-C");
  lg->add_option("--node", lo->node, "only this node's workloads (node id)");
  lg->add_option("--workload_name", lo->workload_name, "only workloads of this name");
  lg->add_option("--workload_id", lo->workload_id, "only this workload");
  lg->add_option("--level", lo->level, "lowest level shown")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  lg->add_flag("--raw", lo->raw,
               "print the text as the workload sent it; otherwise newlines, escape sequences and "
               "other control characters are shown escaped (\\n, \\x1b)");
  lg->footer("Reads $NEX.logs.{namespace}.{node}.{workload_name}.{workload_id}.");
  on_parsed(lg, action, [lo, &flags] { return logs(flags, *lo); });

  auto type = std::make_shared<std::string>("*");
  auto* ev = app.add_subcommand(
      "events", "Follow node and workload events (CloudEvents), live, until Ctrl-C");
  ev->add_option("--type", *type, "only events of this type, e.g. workload_deployed");
  ev->footer(
      "Reads $NEX.events.{namespace}.{type} and, for node events, $NEX.events.system.{type}.");
  on_parsed(ev, action, [type, &flags] { return events(flags, *type); });
}

}  // namespace nex::cli
