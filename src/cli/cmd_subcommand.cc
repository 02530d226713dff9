// `nex cmd`: durable commands to nodes by name (as steward had them). `send` files a signed command
// on JetStream and waits for its result; `inbox` sends what is appended to a file, as steward's
// inmsg.txt; `ls`, `result` and `log` read what nodes filed, even long after.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>
#include <cstring>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "api/json_fields.h"
#include "cli/control_client.h"
#include "cli/local_keys.h"
#include "cli/subcommands.h"
#include "cli/table.h"
#include "commands/sender.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/file_io.h"
#include "core/nuid.h"
#include "core/terminal_text.h"

namespace nex::cli {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace cmds = commands;

struct SendOptions {
  std::string nodes;  // NODE[,NODE...]
  std::string method;
  std::string file;
  double method_timeout = 0;
  double wait = 60;
  bool no_wait = false;
  double retry_for = 60;  // keep trying to file the command this long (server or link down)
  int64_t retries = 2;
  std::string expires;  // an age: how long the command may wait for its node
  std::vector<std::string> args;
};

// A connection that keeps trying (the server may be restarting, the link down) until `deadline`,
// saying so once on stderr: a sender that waits in silence looks hung.
Result<nats::JetStream> connect_retrying(const ConnectionFlags& flags,
                                         std::chrono::steady_clock::time_point deadline) {
  auto options = flags.options("nex cmd");
  if (!options) return fail(options.error());
  for (bool said = false;; said = true) {
    auto conn = nats::Connection::connect(*options);
    if (conn) {
      return nats::JetStream::create(
          *conn, {.domain = flags.js_domain, .timeout = std::max(flags.timeout(), 2000ms)});
    }
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= 500ms) return fail(conn.error());
    if (!said)
      std::fprintf(
          stderr, "nex: %s; trying again for up to %lld s\n", conn.error().message.c_str(),
          static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(left).count()));
    std::this_thread::sleep_for(500ms);
  }
}

Result<nats::JetStream> connect_js(const ConnectionFlags& flags) {
  auto client = connect_control(flags);
  if (!client) return fail(client.error());
  return nats::JetStream::create(
      client->connection(),
      {.domain = flags.js_domain, .timeout = std::max(flags.timeout(), 2000ms)});
}

// Node names as given, or ids (N...) turned into the names they filed in NEX_NODES.
Result<std::vector<std::string>> resolve_nodes(const nats::JetStream& js,
                                               const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const auto& n : given) {
    if (n.size() == 56 && n[0] == 'N') {
      auto rec = cmds::find_node(js, n);
      if (!rec) return fail(rec.error());
      out.push_back(rec->name);
    } else {
      NEX_RETURN_IF_ERROR(cmds::validate_name(n, "NODE"));
      out.push_back(n);
    }
  }
  return out;
}

// Points `d` at node names (ids looked up), in toNode for one, toNodes for several.
Result<std::vector<std::string>> address(const nats::JetStream& js, cmds::Command& d) {
  auto nodes = resolve_nodes(js, d.to_nodes.empty() ? std::vector{d.to_node} : d.to_nodes);
  if (!nodes) return fail(nodes.error());
  d.to_node = nodes->size() == 1 ? (*nodes)[0] : std::string();
  d.to_nodes = nodes->size() == 1 ? std::vector<std::string>{} : *nodes;
  return nodes;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

// steward's input: a JSON array of messages (or one message); several arrays may follow each
// other, as `cat msg.json >> inmsg.txt` leaves them.
Result<std::vector<cmds::Command>> parse_drafts(std::string_view text, const std::string& where) {
  std::vector<cmds::Command> out;
  std::vector<json> docs;
  try {
    std::istringstream in{std::string(text)};
    while (true) {
      in >> std::ws;
      if (in.peek() == std::char_traits<char>::eof()) break;
      json j;
      in >> j;
      docs.push_back(std::move(j));
    }
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInvalidArgument, where + " is not JSON: " + e.what());
  }
  for (const auto& doc : docs) {
    const json list = doc.is_array() ? doc : json::array({doc});
    for (size_t i = 0; i < list.size(); ++i) {
      auto c =
          cmds::parse_command_draft(list[i], where + ": message " + std::to_string(out.size() + 1));
      if (!c) return fail(c.error());
      out.push_back(std::move(*c));
    }
  }
  if (out.empty()) return fail(ErrorCode::kInvalidArgument, where + " holds no message");
  return out;
}

// A command's output, as its program wrote it on the node: lines and tabs kept, other control
// characters escaped (core/terminal_text.h); `--json` has it exactly.
void print_result(const cmds::CommandResult& r, bool several) {
  const std::string node = terminal_safe(r.node);
  const std::string who = several ? "[" + node + "] " : "";
  const std::string out = terminal_safe(r.stdout_text, LineBreaks::kKeep);
  const std::string err = terminal_safe(r.stderr_text, LineBreaks::kKeep);
  if (!out.empty()) std::printf("%s%s", who.c_str(), out.c_str());
  if (r.stdout_truncated) std::printf("%s(stdout truncated)\n", who.c_str());
  if (!err.empty()) std::fprintf(stderr, "%s%s", who.c_str(), err.c_str());
  if (r.stderr_truncated) std::fprintf(stderr, "%s(stderr truncated)\n", who.c_str());
  if (r.status != cmds::status::kDone) {
    std::fprintf(stderr, "nex: %s on %s: %s%s%s\n", terminal_safe(r.status).c_str(), node.c_str(),
                 terminal_safe(r.reason).c_str(), r.attempt > 1 ? " (attempt " : "",
                 r.attempt > 1 ? (std::to_string(r.attempt) + ")").c_str() : "");
  }
}

// The exit code that stands for a set of final results: the first non-zero.
int exit_code_of(const std::vector<cmds::CommandResult>& results) {
  for (const auto& r : results) {
    if (r.status == cmds::status::kDone) continue;
    if (r.exit_code && *r.exit_code != 0) return *r.exit_code;
    return 1;
  }
  return 0;
}

// An age like 90s, 15m, 24h or 7d.
std::optional<std::chrono::seconds> parse_age(const std::string& s) {
  if (s.size() < 2 || s.size() > 12 || !std::all_of(s.begin(), s.end() - 1, ::isdigit))
    return std::nullopt;
  const char unit = s.back();
  const int64_t mult = unit == 's'   ? 1
                       : unit == 'm' ? 60
                       : unit == 'h' ? 3600
                       : unit == 'd' ? 86400
                                     : 0;
  if (mult == 0) return std::nullopt;
  return std::chrono::seconds(std::stoll(s.substr(0, s.size() - 1)) * mult);
}

// --expires: how long a filed command may wait for its node; nullopt (the default) for as long
// as the stream keeps it.
Result<std::optional<std::chrono::seconds>> command_lifetime(const std::string& expires) {
  if (expires.empty()) return std::optional<std::chrono::seconds>();
  auto lifetime = parse_age(expires);
  if (!lifetime || *lifetime <= std::chrono::seconds::zero())
    return fail(ErrorCode::kInvalidArgument,
                "--expires takes an age like 90s, 15m, 24h or 7d (got '" + expires + "')");
  return lifetime;
}

// JetStream with the command streams in place, trying until `give_up`.
Result<nats::JetStream> connect_with_streams(const ConnectionFlags& flags,
                                             std::chrono::steady_clock::time_point give_up) {
  auto js = connect_retrying(flags, give_up);
  if (!js) return fail(js.error());
  // A server that just came back may need a moment for its JetStream.
  for (auto st = cmds::ensure_streams(*js); !st; st = cmds::ensure_streams(*js)) {
    if (std::chrono::steady_clock::now() >= give_up) return fail(st.error());
    std::this_thread::sleep_for(500ms);
  }
  return js;
}

// First the acknowledgement that each node has it; a node that does not take it within
// ACKTimeout is probably offline, and we say so (the command stays filed for it). Then the
// results of the nodes that have it; the others are not waited for.
std::vector<cmds::CommandResult> wait_for_results(cmds::ResultWatch& watch,
                                                  const std::vector<std::string>& nodes,
                                                  const cmds::Command& d,
                                                  std::chrono::steady_clock::time_point start,
                                                  std::chrono::steady_clock::time_point deadline,
                                                  bool quiet) {
  const auto ack_deadline = start + std::chrono::seconds(std::max<int64_t>(d.ack_timeout, 1));
  auto got = watch.wait(nodes, std::min(ack_deadline, deadline));
  std::set<std::string> acked;
  for (const auto& r : got) acked.insert(r.node);
  if (acked.size() < nodes.size() && !quiet) {
    for (const auto& n : nodes) {
      if (!acked.count(n))
        std::fprintf(stderr,
                     "Node %s has not taken it yet (it may be offline): it runs when the node "
                     "connects.\n",
                     n.c_str());
    }
  }
  const std::vector<std::string> online(acked.begin(), acked.end());
  if (!online.empty() && std::chrono::steady_clock::now() < deadline)
    got = watch.wait(online, deadline);
  return got;
}

// Prints a command's final results; its exit code: 1 when a node did not answer in time, else
// the results' own.
int report_results(const std::vector<cmds::CommandResult>& got, size_t nodes, const std::string& id,
                   std::chrono::steady_clock::time_point start, bool quiet) {
  std::vector<cmds::CommandResult> final;
  for (const auto& r : got) {
    if (cmds::is_final(r.status)) final.push_back(r);
  }
  if (!quiet) {
    for (const auto& r : final) print_result(r, nodes > 1);
  }
  if (final.size() < nodes) {
    if (!quiet)
      std::fprintf(stderr,
                   "nex: not every node answered within %.0fs; `nex cmd result %s` shows the "
                   "results later\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                   id.c_str());
    return 1;
  }
  return exit_code_of(final);
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ",") + n;
  return s;
}

// Files the drafts, then (unless no_wait) waits for each one's results and prints them.
int send_and_wait(const ConnectionFlags& flags, std::vector<cmds::Command> drafts,
                  const SendOptions& o) {
  auto lifetime = command_lifetime(o.expires);
  if (!lifetime) return report(lifetime.error());
  auto issuer = default_issuer();
  if (!issuer) return report(issuer.error());
  const auto retry = std::chrono::milliseconds(static_cast<int64_t>(o.retry_for * 1000));
  auto js = connect_with_streams(flags, std::chrono::steady_clock::now() + retry);
  if (!js) return report(js.error());
  json out = json::array();
  int code = 0;
  for (auto& d : drafts) {
    auto nodes = address(*js, d);
    if (!nodes) return report(nodes.error());
    if (d.id.empty()) d.id = next_nuid();
    auto watch = cmds::ResultWatch::start(*js, d.id);  // before filing: no result is missed
    if (!watch) return report(watch.error());
    auto sent = cmds::send_command(*js, d, *issuer, retry, *lifetime);
    if (!sent) return report(sent.error());
    const std::string id = d.id;
    if (!flags.json)
      std::fprintf(stderr, "Sent %s %s to %s as %s\n", d.method.c_str(), d.command_or_event.c_str(),
                   joined(*nodes).c_str(), id.c_str());
    json entry = {{"id", id}, {"nodes", *nodes}, {"method", d.method}};
    if (o.no_wait) {
      if (!flags.json) std::printf("%s\n", id.c_str());
      out.push_back(entry);
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::milliseconds(static_cast<int64_t>(o.wait * 1000));
    const auto got = wait_for_results(*watch, *nodes, d, start, deadline, flags.json);
    entry["results"] = json::array();
    for (const auto& r : got) entry["results"].push_back(cmds::to_json(r));
    out.push_back(entry);
    const int c = report_results(got, nodes->size(), id, start, flags.json);
    if (code == 0) code = c;
  }
  if (flags.json) std::printf("%s\n", out.dump(2).c_str());
  return code;
}

int cmd_send(const ConnectionFlags& flags, const SendOptions& o) {
  std::vector<cmds::Command> drafts;
  if (!o.file.empty() && (!o.nodes.empty() || !o.args.empty() || !o.method.empty()))
    return report({ErrorCode::kInvalidArgument,
                   "--file names the nodes and methods itself: give either --file or NODE -- "
                   "ARGS"});
  if (!o.file.empty()) {
    auto text = read_file(o.file);
    if (!text) return report({ErrorCode::kNotFound, text.error().message});
    auto parsed = parse_drafts(*text, o.file);
    if (!parsed) return report(parsed.error());
    drafts = std::move(*parsed);
  } else {
    if (o.nodes.empty())
      return report({ErrorCode::kInvalidArgument,
                     "name the node(s): nex cmd send NODE[,NODE...] -- ARGS..."});
    cmds::Command c;
    const auto nodes = split_commas(o.nodes);
    if (nodes.size() == 1)
      c.to_node = nodes[0];
    else
      c.to_nodes = nodes;
    c.method = o.method.empty()
                   ? (o.args.empty() ? cmds::method::kHello : cmds::method::kCliCommand)
                   : o.method;
    const auto* m = cmds::find_method(c.method);
    c.command_or_event = m && !m->command ? "event" : "command";
    c.data = o.args;
    c.method_timeout = static_cast<int64_t>(o.method_timeout);
    c.retries = o.retries;
    auto checked = cmds::parse_command_draft(cmds::to_json(c), "command");
    if (!checked) return report(checked.error());
    drafts.push_back(std::move(c));
  }
  return send_and_wait(flags, std::move(drafts), o);
}

// steward's inmsg.txt: what is appended to FILE is sent, then FILE is emptied. Results are
// printed as nodes file them. Until Ctrl-C.
int cmd_inbox(const ConnectionFlags& flags, const std::string& path) {
  auto issuer = default_issuer();
  if (!issuer) return report(issuer.error());
  auto js = connect_retrying(flags, std::chrono::steady_clock::now() + 60s);
  if (!js) return report(js.error());
  if (auto st = cmds::ensure_streams(*js); !st) return report(st.error());
  if (!std::filesystem::exists(path)) std::ofstream(path).flush();
  auto results = js->ordered_consumer(cmds::kResultStream, "$NEX.cmdresult.>", js_DeliverNew);
  if (!results) return report(results.error());
  // Said once results are followed: a message appended from now on has its result printed.
  std::fprintf(stderr, "Watching %s: append JSON command messages to send them (Ctrl-C ends)\n",
               path.c_str());
  std::set<std::string> mine;
  std::string pending;
  auto unchanged_since = std::chrono::steady_clock::now();
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  timespec poll_wait{0, 0};
  while (sigtimedwait(&signals, nullptr, &poll_wait) < 0) {
    const std::string text = read_file(path).value_or("");
    if (text.find_first_not_of(" \t\r\n") != std::string::npos) {
      if (text != pending) {
        pending = text;
        unchanged_since = std::chrono::steady_clock::now();
      }
      auto drafts = parse_drafts(text, path);
      const bool stale = std::chrono::steady_clock::now() - unchanged_since > 2s;
      if (drafts || stale) {
        std::ofstream(path, std::ios::trunc).flush();  // taken: empty the inbox, as steward does
        pending.clear();
      }
      if (!drafts && stale)
        std::fprintf(stderr, "nex: dropped: %s\n", drafts.error().message.c_str());
      for (auto& d : drafts ? *drafts : std::vector<cmds::Command>{}) {
        auto nodes = address(*js, d);
        if (!nodes) {
          report(nodes.error());
          continue;
        }
        auto sent = cmds::send_command(*js, d, *issuer, 60s);
        if (!sent) {
          report(sent.error());
          continue;
        }
        mine.insert(sent->front().id);
        std::printf("sent %s %s to %zu node(s): %s\n", d.method.c_str(), d.command_or_event.c_str(),
                    nodes->size(), sent->front().id.c_str());
        std::fflush(stdout);
      }
    }
    // Results of what this inbox sent, as they come.
    while (auto m = results->next(50ms)) {
      auto r = cmds::parse_result(m->data());
      if (!r || !mine.count(r->id) || !cmds::is_final(r->status)) continue;
      if (flags.json) {
        std::printf("%s\n", cmds::to_json(*r).dump().c_str());
      } else {
        std::printf("result %s from %s: %s%s\n", terminal_safe(r->id).c_str(),
                    terminal_safe(r->node).c_str(), terminal_safe(r->status).c_str(),
                    r->exit_code ? (" (exit " + std::to_string(*r->exit_code) + ")").c_str() : "");
        print_result(*r, true);
      }
      std::fflush(stdout);
    }
    poll_wait = {0, 200'000'000};
  }
  return 0;
}

// "2026-12-03T10:00:00Z", or an age like 90s, 15m, 2h, 7d: unix nanoseconds.
Result<int64_t> parse_since(const std::string& s) {
  if (s.empty()) return 0;
  if (auto ago = parse_age(s)) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               (std::chrono::system_clock::now() - *ago).time_since_epoch())
        .count();
  }
  std::tm tm{};
  if (const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm); end != nullptr) {
    return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
  }
  return fail(
      ErrorCode::kInvalidArgument,
      "--since takes a time (2026-12-03T10:00:00Z) or an age (90s, 15m, 2h, 7d), got '" + s + "'");
}

std::string filed_time(int64_t ns) {
  return rfc3339_nano(std::chrono::system_clock::time_point(
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::nanoseconds(ns))))
      .substr(0, 19);
}

struct ListOptions {
  std::string node;
  std::string status;
  std::string since;
};

// A row of `nex cmd ls`: a command and its latest result (none: pending).
struct ListRow {
  std::string id, node, method, what;
  int64_t filed_ns = 0;
  const cmds::CommandResult* result = nullptr;
};

void print_rows(const ConnectionFlags& flags, const std::vector<ListRow>& rows,
                const std::string& node) {
  json out = json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& r : rows) {
    const std::string state = r.result ? r.result->status : "pending";
    json row = {{"id", r.id},
                {"node", r.node},
                {"method", r.method},
                {"status", state},
                {"sent", filed_time(r.filed_ns)}};
    std::string exit_text, attempt;
    if (r.result) {
      if (r.result->exit_code) {
        row["exit_code"] = *r.result->exit_code;
        exit_text = std::to_string(*r.result->exit_code);
      }
      row["attempt"] = r.result->attempt;
      attempt = std::to_string(r.result->attempt);
    }
    out.push_back(row);
    table.push_back(
        {r.id, r.node, r.what.substr(0, 40), state, exit_text, attempt, filed_time(r.filed_ns)});
  }
  if (flags.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else if (table.empty()) {
    std::printf("No commands%s.\n", node.empty() ? "" : (" for node " + node).c_str());
  } else {
    std::printf(
        "%s",
        render_table("Commands",
                     {"ID", "Node", "Command", "Status", "Exit", "Attempt", "Sent (UTC)"}, table)
            .c_str());
  }
}

// The state of every command: its latest result, or "pending" while none came. Commands a node
// refused (or found expired) are deleted from the stream once answered: their results stand
// for them.
int cmd_ls(const ConnectionFlags& flags, const ListOptions& o) {
  if (!o.node.empty()) {
    if (auto st = cmds::validate_name(o.node, "--node"); !st) return report(st.error());
  }
  auto js = connect_js(flags);
  if (!js) return report(js.error());
  if (auto st = cmds::ensure_streams(*js); !st) return report(st.error());
  const std::string node = o.node.empty() ? "*" : o.node;
  auto sent = cmds::read_commands(*js, "$NEX.cmd." + node + ".*.*");
  if (!sent) return report(sent.error());
  auto results = cmds::read_results(*js, "$NEX.cmdresult." + node + ".*");
  if (!results) return report(results.error());
  std::map<std::pair<std::string, std::string>, const cmds::FiledResult*> latest;
  for (const auto& r : *results) {
    auto& slot = latest[{r.result.node, r.result.id}];
    if (!slot || !cmds::is_final(slot->result.status) || cmds::is_final(r.result.status)) slot = &r;
  }
  std::vector<ListRow> rows;
  std::set<std::pair<std::string, std::string>> listed;
  for (const auto& f : *sent) {
    const auto& c = f.command;
    std::string what = c.method;
    for (const auto& a : c.argv()) what += " " + a;
    auto it = latest.find({c.to_node, c.id});
    rows.push_back({c.id, c.to_node, c.method, what, f.filed_ns,
                    it == latest.end() ? nullptr : &it->second->result});
    listed.insert({c.to_node, c.id});
  }
  for (const auto& [key, r] : latest) {
    if (!listed.count(key))
      rows.push_back(
          {key.second, key.first, r->result.method, r->result.method, r->filed_ns, &r->result});
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.filed_ns < b.filed_ns; });
  std::erase_if(rows, [&](const ListRow& r) {
    return !o.status.empty() && (r.result ? r.result->status : "pending") != o.status;
  });
  print_rows(flags, rows, o.node);
  return 0;
}

int cmd_result(const ConnectionFlags& flags, const std::string& id, double wait) {
  if (auto st = cmds::validate_name(id, "ID"); !st) return report(st.error());
  auto js = connect_js(flags);
  if (!js) return report(js.error());
  if (auto st = cmds::ensure_streams(*js); !st) return report(st.error());
  auto sent = cmds::read_commands(*js, "$NEX.cmd.*.*.*");
  if (!sent) return report(sent.error());
  // Each node once, however often the command was filed for it under this id (copies sent
  // again, which the node refuses, wait in the stream while it is away).
  std::vector<std::string> nodes;
  auto add_node = [&nodes](const std::string& node) {
    if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
  };
  for (const auto& f : *sent) {
    if (f.command.id == id) add_node(f.command.to_node);
  }
  // A command refused or expired is deleted once answered: its result names the node.
  auto answered = cmds::read_results(*js, "$NEX.cmdresult.*." + id);
  if (!answered) return report(answered.error());
  std::map<std::string, int> refused_copies;  // by node
  for (const auto& r : *answered) {
    add_node(r.result.node);
    if (r.result.status == cmds::status::kDuplicate) ++refused_copies[r.result.node];
  }
  if (nodes.empty())
    return report({ErrorCode::kNotFound, "no command " + id + " in " + cmds::kCommandStream});
  auto got =
      cmds::wait_for_results(*js, id, nodes,
                             std::chrono::steady_clock::now() +
                                 std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
  if (!got) return report(got.error());
  std::vector<cmds::CommandResult> final;
  for (const auto& r : *got) {
    if (cmds::is_final(r.status)) final.push_back(r);
  }
  if (flags.json) {
    json out = json::array();
    for (const auto& r : *got) out.push_back(cmds::to_json(r));
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (const auto& r : final) print_result(r, nodes.size() > 1);
    for (const auto& [node, copies] : refused_copies) {
      std::fprintf(stderr,
                   "nex: %s refused %d %s of %s sent again under the same id: it ran once\n",
                   terminal_safe(node).c_str(), copies, copies == 1 ? "copy" : "copies",
                   terminal_safe(id).c_str());
    }
    for (const auto& n : nodes) {
      if (std::none_of(final.begin(), final.end(), [&](const auto& r) { return r.node == n; }))
        std::fprintf(
            stderr, "nex: %s has no result yet (%s)\n", n.c_str(),
            std::any_of(got->begin(), got->end(), [&](const auto& r) { return r.node == n; })
                ? "received, running"
                : "not received: the node has not connected since");
    }
  }
  if (final.size() < nodes.size()) return 1;
  return exit_code_of(final);
}

// Everything sent and filed back, in time order.
int cmd_log(const ConnectionFlags& flags, const ListOptions& o) {
  if (!o.node.empty()) {
    if (auto st = cmds::validate_name(o.node, "--node"); !st) return report(st.error());
  }
  auto since = parse_since(o.since);
  if (!since) return report(since.error());
  auto js = connect_js(flags);
  if (!js) return report(js.error());
  if (auto st = cmds::ensure_streams(*js); !st) return report(st.error());
  const std::string node = o.node.empty() ? "*" : o.node;
  auto sent = cmds::read_commands(*js, "$NEX.cmd." + node + ".*.*", *since);
  if (!sent) return report(sent.error());
  auto results = cmds::read_results(*js, "$NEX.cmdresult." + node + ".*", *since);
  if (!results) return report(results.error());
  std::vector<std::pair<int64_t, json>> lines;
  for (const auto& f : *sent) {
    json j = cmds::to_json(f.command);
    j.erase("signature");
    lines.push_back(
        {f.filed_ns, {{"at", filed_time(f.filed_ns)}, {"kind", "command"}, {"message", j}}});
  }
  for (const auto& r : *results)
    lines.push_back({r.filed_ns,
                     {{"at", filed_time(r.filed_ns)},
                      {"kind", "result"},
                      {"result", cmds::to_json(r.result)}}});
  std::stable_sort(lines.begin(), lines.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [ts, j] : lines) {
    if (flags.json) {
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    if (j["kind"] == "command") {
      const auto& m = j["message"];
      std::string args;
      for (const auto& a : m.value("methodArgs", m.value("data", json::array())))
        args += " " + a.get<std::string>();
      std::printf("%s\n",
                  terminal_safe(fmt::format("{}  {} -> {}  sent     {} {}{} (from {}, issuer {})",
                                            j["at"].get<std::string>(), m.value("id", ""),
                                            m.value("toNode", ""), m.value("commandOrEvent", ""),
                                            m.value("method", ""), args, m.value("fromNode", ""),
                                            m.value("issuer", "").substr(0, 8)))
                      .c_str());
    } else {
      const auto& r = j["result"];
      std::printf(
          "%s\n",
          terminal_safe(
              fmt::format(
                  "{}  {} <- {}  {:<8} attempt {}{}{}", j["at"].get<std::string>(),
                  r.value("id", ""), r.value("node", ""), r.value("status", ""),
                  r.value("attempt", 1LL),
                  r.contains("exit_code") ? " exit " + std::to_string(r.value("exit_code", 0)) : "",
                  r.contains("reason") ? ": " + r.value("reason", "") : ""))
              .c_str());
    }
  }
  return 0;
}

}  // namespace

void register_cmd_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags) {
  auto* cmd = app.add_subcommand(
      "cmd", "Durable commands to nodes by name: delivered even while a node is offline");
  cmd->require_subcommand(1);
  auto s = std::make_shared<SendOptions>();
  auto* send = cmd->add_subcommand("send", "Send a command to nodes and wait for its result");
  send->add_option("nodes", s->nodes, "NODE[,NODE...]: node names (or ids)");
  send->add_option("args", s->args, "the command's argv (after --)");
  send->add_option("--method", s->method,
                   "hello, cliCommand (shellCommand), textLogging or deploy (default: cliCommand "
                   "with ARGS, else hello)");
  send->add_option(
      "--file", s->file,
      "send the messages of a JSON file (steward's format: toNode, method, data, ...)");
  send->add_option("--timeout", s->method_timeout, "seconds the command may run (methodTimeout)");
  send->add_option("--wait", s->wait, "seconds to wait for the result")->capture_default_str();
  send->add_flag("--no-wait", s->no_wait, "print the id and return at once");
  send->add_option("--retry-for", s->retry_for,
                   "seconds to keep trying to file it while the server cannot be reached")
      ->capture_default_str();
  send->add_option("--retries", s->retries, "runs again after the node died during it, at most")
      ->capture_default_str();
  send->add_option("--expires", s->expires,
                   "how long it may wait for its node, as 90s, 15m, 24h or 7d; a node does not "
                   "run it later (default: as long as the stream keeps commands, 30 days)");
  send->footer(
      "Examples: nex cmd send ship1 -- uptime\n"
      "          nex cmd send ship1,ship2 --no-wait -- systemctl restart app\n"
      "          nex cmd send --file msg.json\n"
      "Exit code: the command's own when every node answered; 1 when one did not in time.");
  on_parsed(send, action, [s, &flags] { return cmd_send(flags, *s); });

  auto inbox_file = std::make_shared<std::string>();
  auto* inbox = cmd->add_subcommand(
      "inbox", "Send what is appended to FILE (steward's inmsg.txt), then empty it; until Ctrl-C");
  inbox->add_option("file", *inbox_file, "the file to watch (created when missing)")->required();
  on_parsed(inbox, action, [inbox_file, &flags] { return cmd_inbox(flags, *inbox_file); });

  auto l = std::make_shared<ListOptions>();
  auto* ls = cmd->add_subcommand("ls", "Every command and its state");
  ls->add_option("--node", l->node, "only this node's");
  ls->add_option("--status", l->status,
                 "only this state: pending, received, done, failed, refused, expired, timeout")
      ->check(CLI::IsMember(
          {"pending", "received", "done", "failed", "refused", "expired", "timeout"}));
  on_parsed(ls, action, [l, &flags] { return cmd_ls(flags, *l); });

  auto id = std::make_shared<std::string>();
  auto wait = std::make_shared<double>(0);
  auto* result = cmd->add_subcommand("result", "A command's result (exit code: the command's)");
  result->add_option("id", *id, "the command's id")->required();
  result->add_option("--wait", *wait, "seconds to wait for it when not there yet");
  on_parsed(result, action, [id, wait, &flags] { return cmd_result(flags, *id, *wait); });

  auto g = std::make_shared<ListOptions>();
  auto* log =
      cmd->add_subcommand("log", "The audit trail: every command and result, in time order");
  log->add_option("--node", g->node, "only this node's");
  log->add_option("--since", g->since,
                  "from this time (2026-12-03T10:00:00Z) or age (15m, 2h, 7d)");
  on_parsed(log, action, [g, &flags] { return cmd_log(flags, *g); });
}

}  // namespace nex::cli
