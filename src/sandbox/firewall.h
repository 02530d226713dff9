// SandboxFirewall: what a namespace sandbox reaches on its own host. A CNI ptp network routes a
// sandbox to every address of the host, and through the host to every other sandbox; the node
// narrows that to the one port it serves its agent on. Each node has two chains of its own in
// iptables' filter table, jumped to first from INPUT and FORWARD:
//   NEX-IN-{tag}   traffic from a sandbox's link to this host: the internal NATS on that
//                  sandbox's gateway is accepted, everything else rejected (TCP and UDP, every
//                  address of the host);
//   NEX-FWD-{tag}  traffic routed into a sandbox's link: only replies to what the sandbox
//                  itself opened pass, so neither another sandbox nor another host can open a
//                  connection to it.
// Traffic from a sandbox to other hosts is left alone (masqueraded by CNI's ipMasq, as the seeds
// intend). The rules are IPv4's: the namespace driver switches IPv6 off inside each sandbox.
//
// The node installs its chains when its driver starts and removes them, with their jumps, when
// it stops; a node that starts after a killed one with the same instance removes what that one
// left first. Each change is one iptables-restore, applied whole or not at all.
#pragma once

#include <string>

#include "core/error.h"

namespace nex::sandbox {

// One sandbox's link as its rules name it.
struct SandboxLink {
  std::string host_interface;  // the host's end of the link (ptp: a veth)
  std::string gateway;         // the host's address on it (IPv4)
  int internal_nats_port = 0;  // the one port the sandbox may reach there
};

class SandboxFirewall {
 public:
  // This node's chains (the tag derives from `instance`), fresh: what a predecessor with the
  // same instance left is removed first.
  static Result<SandboxFirewall> install(const std::string& instance);
  // Removes this instance's chains and the jumps to them, if there are any.
  static Status uninstall(const std::string& instance);
  // The names of an instance's two chains (INPUT's, then FORWARD's).
  static std::pair<std::string, std::string> chains(const std::string& instance);

  Status add(const SandboxLink& link) const;
  Status remove(const SandboxLink& link) const;

 private:
  explicit SandboxFirewall(std::string instance) : instance_(std::move(instance)) {}
  std::string rules(const SandboxLink& link, char action) const;

  std::string instance_;
};

}  // namespace nex::sandbox
