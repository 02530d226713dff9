// CNI: networks for namespace sandboxes, configured as in the seeds by
// /etc/cni/conf.d/{network_name}.conflist and carried out by the standard plugins (Debian's
// containernetworking-plugins: ptp + host-local). We run the plugin chain the way the CNI spec
// says a runtime does: ADD in order with each plugin's result handed to the next, DEL in reverse
// with the ADD result.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nex::sandbox {

struct CniSettings {
  std::string network_name = "fcnet";
  std::string interface_name = "veth0";
  std::vector<std::string> bin_path = {"/opt/cni/bin", "/usr/lib/cni"};
  std::filesystem::path conf_dir = "/etc/cni/conf.d";
};

struct CniNetwork {
  std::filesystem::path file;
  nlohmann::json conflist;
  // Plugin types (IPAM included) that a namespace sandbox runs (microVM-only ones left out).
  std::vector<std::string> plugin_types() const;
};

// The conflist for settings.network_name, checked for the fields a runtime needs.
Result<CniNetwork> load_cni_network(const CniSettings& settings);
// The default network of the seeds (ptp + host-local on 192.168.127.0/24, ipMasq), without the
// microVM-only tc-redirect-tap, and with a default route through the host side of the link (a
// VM gets it from its boot arguments; a namespace needs it in the conflist).
nlohmann::json default_conflist(const std::string& network_name);
// Where a plugin binary is, or kNotFound naming the places searched.
Result<std::filesystem::path> find_cni_plugin(const CniSettings& settings, const std::string& type);

struct CniAttachment {
  std::string address;  // the sandbox's IPv4 address, without prefix
  std::string gateway;  // the host side of its link
  // The host's interfaces the result names (those in no sandbox): ptp's end of the veth pair.
  std::vector<std::string> host_interfaces;
  nlohmann::json result;
};

Result<CniAttachment> cni_add(const CniSettings& settings, const CniNetwork& network,
                              const std::string& container_id, const std::filesystem::path& netns);
// Releases the address and removes the link; `netns` may be gone already (then only IPAM is
// released, as the plugins do).
Status cni_del(const CniSettings& settings, const CniNetwork& network,
               const std::string& container_id, const std::filesystem::path& netns,
               const nlohmann::json& add_result);

}  // namespace nex::sandbox
