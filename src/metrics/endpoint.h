// The /metrics HTTP endpoint (`nex node up --metrics HOST:PORT`): GET /metrics answers with the
// registry's text; other paths get 404, other methods 405, a request with a body 413. cpp-httplib
// parses and answers; this endpoint bounds what a client can take from it: a few worker threads,
// one request per connection, a time limit from accept to the request's last byte, a size limit
// on the request and a time limit on writing the answer. A client that connects and stalls is
// let go when its time is up, and one whose time ran out while it waited for a worker is let go
// at once, so a scrape waits behind stalled clients for about one time limit, however many there
// are (docs/metrics.md gives the figures).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/error.h"

namespace nex::metrics {

class Endpoint {
 public:
  // `listen`: "HOST:PORT" with an IPv4 HOST or "localhost", or ":PORT" for every interface;
  // port 0 picks a free one.
  static Result<std::unique_ptr<Endpoint>> start(const std::string& listen,
                                                 std::function<std::string()> render);
  // Whether `listen` is such an address (start() checks it too).
  static Status check(const std::string& listen);
  ~Endpoint();
  int port() const { return port_; }
  // http://HOST:PORT/metrics, as a scraper would be configured.
  std::string url() const;

 private:
  class Server;  // cpp-httplib's server with the bounds above

  Endpoint() = default;

  std::string host_;
  int port_ = 0;
  std::unique_ptr<Server> server_;
  std::thread thread_;  // accepts connections and hands them to the workers
};

}  // namespace nex::metrics
