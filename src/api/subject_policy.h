// Which NATS subjects a workload may reach: the one policy behind the messaging host service
// (publish, request, requestMany) and function trigger subjects, for every workload type and
// sandbox.
//
// Reserved, unless a grant in the node config (`subject_grants`) names them:
// - every subject whose first token starts with '$': the server's and JetStream's APIs ($SYS,
//   $JS, $KV, $O, $SRV, ...) and nex's own control plane ($NEX);
// - reply inboxes: _INBOX (and the node's _INBOX_<id> prefixes) and _R_, so a workload can
//   neither read other clients' replies nor answer in their place;
// - a pattern whose first token is a wildcard, which would match all of the above.
// A grant can never open $SYS, $JS (the JetStream API reaches every stream), $NEX, the inboxes, or
// a bucket the node keeps for itself: KV and object buckets whose names start with "NEX" (node
// records, kept workloads, uploaded artifacts, commands) or "hs_" (host-service buckets, each
// reached only through the KV and object-store services, by its own workload).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace nex::api {

class SubjectPolicy {
 public:
  SubjectPolicy() = default;
  // Checks each grant; the error names the field and the grant.
  static Result<SubjectPolicy> with_grants(std::vector<std::string> grants,
                                           std::string_view field = "subject_grants");

  // Why a workload may not use `subject` (a literal subject or a pattern with wildcards), or
  // empty when it may. A pattern must lie wholly inside a grant to reach reserved subjects.
  std::string refusal(std::string_view subject) const;

  const std::vector<std::string>& grants() const { return grants_; }

  // The reserved space as NATS permissions can say it (they match whole tokens, so "$" tokens
  // not listed here are covered by refusal(), checked first), less what a grant opens beneath
  // it: the deny list of a workload's NATS user.
  std::vector<std::string> permission_denials() const;

 private:
  std::vector<std::string> grants_;
};

// Why `pattern` reaches reserved subjects (see above), or empty.
std::string reserved_reason(std::string_view pattern);

// True when every subject `inner` matches is matched by `outer` (both may hold wildcards).
bool subject_covers(std::string_view outer, std::string_view inner);

}  // namespace nex::api
