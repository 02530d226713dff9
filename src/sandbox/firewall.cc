#include "sandbox/firewall.h"

#include <arpa/inet.h>

#include <cstdio>
#include <sstream>

#include "core/subprocess.h"

namespace nex::sandbox {

namespace {

// Runs an iptables tool, handing it `input` (if any) on stdin.
Result<ProgramRun> run_tool(const std::string& program, std::vector<std::string> args,
                            const std::string& input = "") {
  auto path = find_program(program);
  if (!path)
    return fail(ErrorCode::kNotFound, program +
                                          " not found (Debian: apt-get install iptables); "
                                          "the sandbox firewall needs it");
  args.insert(args.begin(), path->string());
  return run_program({.argv = args}, input, std::chrono::seconds(15));
}

// Applies an iptables-restore script to the filter table, without touching anything it does
// not name.
Status restore(const std::string& commands) {
  auto run =
      run_tool("iptables-restore", {"-w", "5", "--noflush"}, "*filter\n" + commands + "COMMIT\n");
  if (!run) return fail(run.error());
  if (!run->succeeded()) {
    std::string why = run->err;
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return fail(ErrorCode::kInternal, "iptables-restore failed: " + why);
  }
  return {};
}

// A stable short name for an instance (a node id is too long for a chain name's 28 bytes).
std::string tag(const std::string& instance) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : instance) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llX", static_cast<unsigned long long>(h));
  return text;
}

Status check(const SandboxLink& link) {
  const std::string& name = link.host_interface;
  const bool name_ok = !name.empty() && name.size() < 16 &&
                       name.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "0123456789_.-") == std::string::npos;
  if (!name_ok)
    return fail(ErrorCode::kInvalidArgument,
                "the CNI result's host interface '" + name + "' is not a network interface name");
  in_addr gateway{};
  if (inet_pton(AF_INET, link.gateway.c_str(), &gateway) != 1)
    return fail(ErrorCode::kInvalidArgument,
                "the CNI result's gateway '" + link.gateway + "' is not an IPv4 address");
  if (link.internal_nats_port <= 0 || link.internal_nats_port > 65535)
    return fail(ErrorCode::kInvalidArgument, "the internal NATS port must be 1-65535");
  return {};
}

}  // namespace

std::pair<std::string, std::string> SandboxFirewall::chains(const std::string& instance) {
  return {"NEX-IN-" + tag(instance), "NEX-FWD-" + tag(instance)};
}

Result<SandboxFirewall> SandboxFirewall::install(const std::string& instance) {
  NEX_RETURN_IF_ERROR(uninstall(instance));
  const auto [in, fwd] = chains(instance);
  NEX_RETURN_IF_ERROR(restore(":" + in + " - [0:0]\n:" + fwd + " - [0:0]\n-I INPUT 1 -j " + in +
                              "\n-I FORWARD 1 -j " + fwd + "\n"));
  return SandboxFirewall(instance);
}

Status SandboxFirewall::uninstall(const std::string& instance) {
  const auto [in, fwd] = chains(instance);
  auto listing = run_tool("iptables", {"-w", "5", "-S"});
  if (!listing) return fail(listing.error());
  std::string jumps, chains;
  std::istringstream lines(listing->out);
  for (std::string line; std::getline(lines, line);) {
    for (const std::string& chain : {in, fwd}) {
      const std::string jump = " -j " + chain;
      if ((line.rfind("-A INPUT ", 0) == 0 || line.rfind("-A FORWARD ", 0) == 0) &&
          line.size() > jump.size() &&
          line.compare(line.size() - jump.size(), jump.size(), jump) == 0)
        jumps += "-D" + line.substr(2) + "\n";
      if (line == "-N " + chain) chains += "-F " + chain + "\n-X " + chain + "\n";
    }
  }
  if (jumps.empty() && chains.empty()) return {};
  return restore(jumps + chains);
}

std::string SandboxFirewall::rules(const SandboxLink& link, char action) const {
  const auto [in, fwd] = chains(instance_);
  const std::string a = std::string("-") + action + " ";
  const std::string from = " -i " + link.host_interface;
  const std::string unasked =
      " -o " + link.host_interface + " -m conntrack ! --ctstate RELATED,ESTABLISHED";
  // TCP is refused with a reset: ICMP errors are rate-limited, resets are not.
  return a + in + from + " -d " + link.gateway + "/32 -p tcp --dport " +
         std::to_string(link.internal_nats_port) + " -j ACCEPT\n" +  //
         a + in + from + " -p tcp -j REJECT --reject-with tcp-reset\n" + a + in + from +
         " -j REJECT --reject-with icmp-port-unreachable\n" + a + fwd + unasked +
         " -p tcp -j REJECT --reject-with tcp-reset\n" + a + fwd + unasked +
         " -j REJECT --reject-with icmp-port-unreachable\n";
}

Status SandboxFirewall::add(const SandboxLink& link) const {
  NEX_RETURN_IF_ERROR(check(link));
  auto st = restore(rules(link, 'A'));
  if (!st) return fail(st.error().wrap("sandbox firewall"));
  return {};
}

Status SandboxFirewall::remove(const SandboxLink& link) const {
  NEX_RETURN_IF_ERROR(check(link));
  auto st = restore(rules(link, 'D'));
  if (!st) return fail(st.error().wrap("sandbox firewall"));
  return {};
}

}  // namespace nex::sandbox
