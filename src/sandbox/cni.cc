#include "sandbox/cni.h"

#include <unistd.h>

#include <fstream>

#include "core/subprocess.h"

namespace nex::sandbox {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Plugins that only make sense for a microVM's tap device.
bool vm_only(const std::string& type) { return type == "tc-redirect-tap"; }

// Runs a plugin with `input` on stdin and collects stdout (CNI's protocol), with only the CNI
// variables and a PATH in its environment. Plugins answer within moments; one that hangs is
// ended rather than left holding a deploy.
Result<ProgramRun> run_plugin(const fs::path& binary, std::vector<std::string> env,
                              const std::string& input) {
  env.push_back("PATH=/usr/sbin:/usr/bin:/sbin:/bin");  // ipMasq runs iptables
  return run_program({.argv = {binary.string()}, .env = std::move(env), .clear_env = true}, input,
                     std::chrono::minutes(2));
}

std::string join_paths(const std::vector<std::string>& paths) {
  std::string s;
  for (const auto& p : paths) s += (s.empty() ? "" : ":") + p;
  return s;
}

Result<json> invoke(const CniSettings& settings, const CniNetwork& network, const json& plugin,
                    const std::string& command, const std::string& container_id,
                    const fs::path& netns, const json& prev_result) {
  const std::string type = plugin.value("type", "");
  auto binary = find_cni_plugin(settings, type);
  if (!binary) return fail(binary.error());
  json conf = plugin;
  conf["name"] = network.conflist["name"];
  conf["cniVersion"] = network.conflist["cniVersion"];
  if (!prev_result.is_null()) conf["prevResult"] = prev_result;
  auto run = run_plugin(
      *binary,
      {"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + container_id, "CNI_NETNS=" + netns.string(),
       "CNI_IFNAME=" + settings.interface_name, "CNI_PATH=" + join_paths(settings.bin_path)},
      conf.dump());
  if (!run) return fail(run.error().wrap("CNI plugin " + type + " " + command));
  if (!run->succeeded()) {
    std::string why = run->out;
    if (auto err = json::parse(run->out, nullptr, false); err.is_object() && err.contains("msg")) {
      why = err.value("msg", "");
      if (err.contains("details") && err["details"].is_string())
        why += ": " + err["details"].get<std::string>();
    }
    // Its stderr says why when it printed no CNI error (it could not start its work at all).
    if (why.empty()) why = run->err;
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return fail(ErrorCode::kInternal, "CNI plugin " + type + " " + command + " failed: " + why);
  }
  if (command == "DEL" || run->out.empty()) return prev_result;
  auto result = json::parse(run->out, nullptr, false);
  if (result.is_discarded())
    return fail(ErrorCode::kInternal, "CNI plugin " + type + " printed a result that is not JSON");
  return result;
}

}  // namespace

std::vector<std::string> CniNetwork::plugin_types() const {
  std::vector<std::string> types;
  for (const auto& p : conflist["plugins"]) {
    const std::string type = p.value("type", "");
    if (vm_only(type)) continue;
    types.push_back(type);
    if (p.contains("ipam") && p["ipam"].is_object() && p["ipam"].contains("type"))
      types.push_back(p["ipam"].value("type", ""));
  }
  return types;
}

json default_conflist(const std::string& network_name) {
  return {{"name", network_name},
          {"cniVersion", "0.4.0"},
          {"plugins", json::array({{{"type", "ptp"},
                                    {"ipMasq", true},
                                    {"ipam",
                                     {{"type", "host-local"},
                                      {"subnet", "192.168.127.0/24"},
                                      {"routes", json::array({{{"dst", "0.0.0.0/0"}}})},
                                      {"resolvConf", "/etc/resolv.conf"}}}}})}};
}

Result<CniNetwork> load_cni_network(const CniSettings& settings) {
  CniNetwork net;
  net.file = settings.conf_dir / (settings.network_name + ".conflist");
  std::ifstream in(net.file);
  if (!in)
    return fail(ErrorCode::kNotFound,
                "CNI configuration " + net.file.string() +
                    " not found (cni.network_name must match a {name}.conflist there; "
                    "`nex node preflight --init` writes the default)");
  net.conflist = json::parse(in, nullptr, false);
  const std::string where = "CNI configuration " + net.file.string();
  if (!net.conflist.is_object())
    return fail(ErrorCode::kInvalidArgument, where + " is not a JSON object");
  if (net.conflist.value("name", "") != settings.network_name)
    return fail(ErrorCode::kInvalidArgument,
                where + ": field 'name' must be \"" + settings.network_name + "\"");
  if (!net.conflist.contains("cniVersion") || !net.conflist["cniVersion"].is_string())
    return fail(ErrorCode::kInvalidArgument, where + ": field 'cniVersion' must be a string");
  if (!net.conflist.contains("plugins") || !net.conflist["plugins"].is_array() ||
      net.conflist["plugins"].empty())
    return fail(ErrorCode::kInvalidArgument,
                where + ": field 'plugins' must be a non-empty list of plugin objects");
  for (const auto& p : net.conflist["plugins"]) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      return fail(ErrorCode::kInvalidArgument,
                  where + ": every entry of 'plugins' needs a string field 'type'");
  }
  return net;
}

Result<fs::path> find_cni_plugin(const CniSettings& settings, const std::string& type) {
  for (const auto& dir : settings.bin_path) {
    fs::path p = fs::path(dir) / type;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return fail(ErrorCode::kNotFound, "CNI plugin '" + type + "' not found in " +
                                        join_paths(settings.bin_path) +
                                        " (cni.bin_path; Debian: containernetworking-plugins)");
}

Result<CniAttachment> cni_add(const CniSettings& settings, const CniNetwork& network,
                              const std::string& container_id, const fs::path& netns) {
  json result;
  std::vector<const json*> done;
  for (const auto& plugin : network.conflist["plugins"]) {
    if (vm_only(plugin.value("type", ""))) continue;
    auto r = invoke(settings, network, plugin, "ADD", container_id, netns, result);
    if (!r) {
      // Undo what the earlier plugins did, so a failed start leaves no address or link.
      for (auto it = done.rbegin(); it != done.rend(); ++it)
        (void)invoke(settings, network, **it, "DEL", container_id, netns, result);
      (void)invoke(settings, network, plugin, "DEL", container_id, netns, result);
      return fail(r.error());
    }
    result = std::move(*r);
    done.push_back(&plugin);
  }
  CniAttachment a;
  a.result = result;
  for (const auto& ip : result.value("ips", json::array())) {
    const std::string address = ip.value("address", "");
    if (address.find(':') != std::string::npos) continue;  // IPv6
    a.address = address.substr(0, address.find('/'));
    a.gateway = ip.value("gateway", "");
    break;
  }
  for (const auto& i : result.value("interfaces", json::array())) {
    if (i.is_object() && i.value("sandbox", "").empty() && !i.value("name", "").empty())
      a.host_interfaces.push_back(i.value("name", ""));
  }
  if (a.address.empty() || a.gateway.empty()) {
    (void)cni_del(settings, network, container_id, netns, result);
    return fail(ErrorCode::kInternal, "the CNI network " + settings.network_name +
                                          " gave the sandbox no IPv4 address with a gateway");
  }
  return a;
}

Status cni_del(const CniSettings& settings, const CniNetwork& network,
               const std::string& container_id, const fs::path& netns, const json& add_result) {
  const auto& plugins = network.conflist["plugins"];
  Status first_error;
  for (auto it = plugins.rbegin(); it != plugins.rend(); ++it) {
    if (vm_only(it->value("type", ""))) continue;
    auto r = invoke(settings, network, *it, "DEL", container_id, netns, add_result);
    if (!r && first_error) first_error = fail(r.error());
  }
  return first_error;
}

}  // namespace nex::sandbox
