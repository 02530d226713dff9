#include "api/subject_policy.h"

#include <algorithm>

#include "api/subject.h"

namespace nex::api {
namespace {

bool is_inbox(std::string_view token) {
  return token == "_INBOX" || token.starts_with("_INBOX_") || token == "_R_";
}

// Why a grant may never be given, or empty.
std::string never_grantable(std::string_view grant) {
  const auto t = subject_tokens(grant);
  const auto first = t.front();
  if (first == "*" || first == ">")
    return "a wildcard first token would open every reserved subject";
  if (first == "$SYS" || first == "$JS" || first == "$NEX")
    return "'" + std::string(first) + "' is the control plane of the server or of nex";
  if (is_inbox(first)) return "inboxes carry other clients' replies";
  if (first == "$KV" || first == "$O") {
    if (t.size() < 2 || t[1] == "*" || t[1] == ">")
      return "a grant under " + std::string(first) + " must name one bucket";
    if (t[1].starts_with("NEX") || t[1].starts_with("hs_"))
      return "bucket '" + std::string(t[1]) + "' is the node's own";
  }
  return {};
}

}  // namespace

bool subject_covers(std::string_view outer, std::string_view inner) {
  const auto o = subject_tokens(outer), in = subject_tokens(inner);
  for (size_t i = 0;; ++i) {
    if (i >= o.size()) return i >= in.size();
    if (o[i] == ">") return i < in.size();
    if (i >= in.size()) return false;
    if (in[i] == ">") return false;  // inner reaches further than one token can
    if (o[i] == "*") continue;
    if (in[i] == "*" || o[i] != in[i]) return false;
  }
}

std::string reserved_reason(std::string_view pattern) {
  const auto first = subject_tokens(pattern).front();
  if (first == "*" || first == ">")
    return "a wildcard first token also matches reserved subjects ($JS, $KV, $SYS, $NEX, _INBOX)";
  if (first.starts_with('$'))
    return "subjects under '" + std::string(first) + "' belong to the NATS server or to nex";
  if (is_inbox(first)) return "'" + std::string(first) + "' subjects carry other clients' replies";
  return {};
}

std::vector<std::string> SubjectPolicy::permission_denials() const {
  std::vector<std::string> deny;
  for (const char* reserved :
       {"$SYS.>", "$JS.>", "$NEX.>", "$KV.>", "$O.>", "$SRV.>", "_INBOX.>", "_R_.>"}) {
    if (std::none_of(grants_.begin(), grants_.end(),
                     [&](const std::string& g) { return subject_covers(reserved, g); }))
      deny.emplace_back(reserved);
  }
  return deny;
}

Result<SubjectPolicy> SubjectPolicy::with_grants(std::vector<std::string> grants,
                                                 std::string_view field) {
  for (const auto& g : grants) {
    std::string why;
    if (g.empty() || g.find_first_of(" \t\r\n") != std::string::npos)
      why = "is not a subject";
    else if (auto never = never_grantable(g); !never.empty())
      why = "cannot be granted: " + never;
    if (!why.empty())
      return fail(ErrorCode::kInvalidArgument,
                  "node config: field '" + std::string(field) + "': '" + g + "' " + why);
  }
  SubjectPolicy p;
  p.grants_ = std::move(grants);
  return p;
}

std::string SubjectPolicy::refusal(std::string_view subject) const {
  const std::string why = reserved_reason(subject);
  if (why.empty()) return {};
  for (const auto& g : grants_)
    if (subject_covers(g, subject)) return {};
  return "'" + std::string(subject) + "' is reserved: " + why +
         " (a node config grant in 'subject_grants' opens named ones)";
}

}  // namespace nex::api
