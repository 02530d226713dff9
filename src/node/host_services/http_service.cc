// The HTTP service: one request per call with libcurl, http and https only, with the node's time
// limit, response size limit and redirect limit, and never through a proxy. Redirects are
// followed here, one at a time, so every hop is checked against the allowed hosts; and every
// connection libcurl is about to open is checked against the network policy (http_policy.h) on
// the address it connects to, so neither DNS nor a redirect gets a request to loopback, a
// private network or the node's own ports unless the policy lets it.
#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "api/json_fields.h"
#include "core/encoding.h"
#include "node/host_services/http_policy.h"
#include "node/host_services/service.h"

namespace nex::node::host_services {
namespace {

using nlohmann::json;

struct Url {
  std::string scheme, host;
};

std::optional<Url> parse_url(const std::string& text) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) return {};
  Url out;
  for (auto [part, dest] :
       {std::pair{CURLUPART_SCHEME, &out.scheme}, {CURLUPART_HOST, &out.host}}) {
    char* p = nullptr;
    if (curl_url_get(u.get(), part, &p, 0) != CURLUE_OK) return {};
    *dest = p;
    curl_free(p);
  }
  std::transform(out.host.begin(), out.host.end(), out.host.begin(), ::tolower);
  return out;
}

// One transfer's state, shared with libcurl's callbacks.
struct Transfer {
  const HttpPolicy* policy = nullptr;
  std::string host;  // as in the URL, for the allow list's names
  size_t max_bytes = 0;
  // Why the first address libcurl tried was refused; libcurl may go on to another address of
  // the host, which the policy allows.
  std::optional<std::string> refused;
  bool too_large = false;
  std::string body;
  json headers = json::object();

  static curl_socket_t open_socket(void* self, curlsocktype, curl_sockaddr* address) {
    auto* t = static_cast<Transfer*>(self);
    const auto* sa = reinterpret_cast<const sockaddr*>(&address->addr);
    if (auto why = t->policy->refuse_connection(t->host, sa)) {
      if (!t->refused) t->refused = std::move(why);
      return CURL_SOCKET_BAD;  // no socket, so not a packet to that address
    }
    return ::socket(address->family, address->socktype, address->protocol);
  }
  static size_t write(char* data, size_t, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    if (t->body.size() + n > t->max_bytes) {
      t->too_large = true;
      return 0;  // aborts the transfer
    }
    t->body.append(data, n);
    return n;
  }
  static size_t header(char* data, size_t, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    std::string_view line(data, n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.starts_with("HTTP/")) {
      t->headers = json::object();  // a new response (after 100 Continue)
    } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
      std::string name(line.substr(0, colon));
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      t->headers[name].push_back(std::string(value));
    }
    return n;
  }
};

class HttpService : public Service {
 public:
  HttpService(const HttpSettings& s, std::vector<NodePort> node_ports)
      : s_(s), policy_(s.allow_hosts, s.allow_networks, std::move(node_ports)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Reply handle(const Call& call) override {
    static const std::vector<std::string> kMethods = {"get",   "post",   "put",
                                                      "patch", "delete", "head"};
    if (std::find(kMethods.begin(), kMethods.end(), call.method) == kMethods.end())
      return error(kBadRequest, "http has no method '" + call.method + "'");
    std::string url = call.header(kHeaderUrl);
    if (url.empty()) return missing_header(kHeaderUrl);
    std::vector<std::string> headers;
    if (auto h = call.msg.header(kHeaderHttpHeaders)) {
      auto parsed = json::parse(*h, nullptr, false);
      if (!parsed.is_object())
        return error(kBadRequest, std::string("header ") + kHeaderHttpHeaders +
                                      " must be a JSON object of header names and values");
      for (const auto& [name, value] : parsed.items()) {
        if (!value.is_string() || name.empty() ||
            name.find_first_of(":\r\n") != std::string::npos ||
            value.get<std::string>().find_first_of("\r\n") != std::string::npos)
          return error(kBadRequest,
                       "request header '" + name + "' must be a name and a one-line string");
        headers.push_back(name + ": " + value.get<std::string>());
      }
    }
    std::string method = call.method;
    std::string_view body = call.msg.data();
    for (int hop = 0;; ++hop) {
      auto u = parse_url(url);
      if (!u) return error(kBadRequest, "'" + url + "' is not a URL");
      if (u->scheme != "http" && u->scheme != "https")
        return error(kBadRequest, "only http and https URLs are allowed, not '" + url + "'");
      if (auto why = policy_.refuse_host(u->host)) return denied(*why);
      Transfer t{.policy = &policy_,
                 .host = u->host,
                 .max_bytes = static_cast<size_t>(s_.max_response_bytes)};
      long status = 0;
      std::string next;
      if (auto r = perform(method, url, headers, body, t, status, next); r.code != kOk) return r;
      const bool redirect =
          status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
      if (!redirect || next.empty()) return ok(response(status, t));
      if (hop >= s_.max_redirects)
        return error(kFailed,
                     "too many redirects (the limit is " + std::to_string(s_.max_redirects) + ")");
      if (status == 303 || ((status == 301 || status == 302) && method == "post")) {
        method = "get";  // as browsers do
        body = {};
      }
      url = next;
    }
  }

 private:
  Reply perform(const std::string& method, const std::string& url,
                const std::vector<std::string>& headers, std::string_view body, Transfer& t,
                long& status, std::string& redirect) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> h(curl_easy_init(), curl_easy_cleanup);
    if (!h) return error(kFailed, "cannot start an HTTP request");
    curl_slist* list = nullptr;
    for (const auto& line : headers) list = curl_slist_append(list, line.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list_owner(list,
                                                                           curl_slist_free_all);
    char errbuf[CURL_ERROR_SIZE] = {};
    CURL* c = h.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    // Never a proxy, not even one http_proxy or ALL_PROXY names: the policy is about where the
    // request goes, and a proxy would be the only address it saw.
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(s_.timeout_ms));
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, &Transfer::open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Transfer::write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &Transfer::header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "nex-host-services");
    if (method == "head") {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method != "get") {
      std::string upper = method;
      std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, upper.c_str());
      if (method != "delete" || !body.empty()) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        // Sized by POSTFIELDSIZE above: curl reads no terminator.
        curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                         body.data());  // NOLINT(bugprone-suspicious-stringview-data-usage)
      }
    }
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK && t.refused) return denied("'" + url + "' resolves to " + *t.refused);
    if (t.too_large)
      return error(kFailed, "the response is larger than " + std::to_string(s_.max_response_bytes) +
                                " bytes (the node's limit)");
    if (rc == CURLE_OPERATION_TIMEDOUT)
      return error(kTimedOut, "no response from '" + url + "' within " +
                                  std::to_string(s_.timeout_ms) + " ms");
    if (rc != CURLE_OK)
      return error(kFailed, std::string("request to '") + url +
                                "' failed: " + (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char* location = nullptr;
    if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location)
      redirect = location;
    return ok();
  }

  // {status, headers: {name: [values]}, body}, plus body_base64 when the body is not UTF-8.
  static std::string response(long status, Transfer& t) {
    json out = {{"status", status}, {"headers", std::move(t.headers)}, {"body", t.body}};
    try {
      return out.dump();
    } catch (const json::type_error&) {  // not UTF-8
      out["body_base64"] = base64_encode(as_bytes(t.body), Base64::kStandard);
      return api::dump(out);
    }
  }

  HttpSettings s_;
  HttpPolicy policy_;
};

}  // namespace

std::unique_ptr<Service> make_http_service(const HttpSettings& settings,
                                           std::vector<NodePort> node_ports) {
  return std::make_unique<HttpService>(settings, std::move(node_ports));
}

}  // namespace nex::node::host_services
