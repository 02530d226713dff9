// The /metrics HTTP endpoint (`nex node up --metrics HOST:PORT`): GET /metrics answers with the
// registry's text; anything else gets 404 or 405. One thread serves one request at a time, each
// with a size cap and a time limit, so a slow or hostile client cannot hold it for long.
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
  Endpoint() = default;
  void serve();
  void answer(int fd);

  std::function<std::string()> render_;
  std::string host_;
  int port_ = 0;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: wakes serve() to stop
  std::thread thread_;
};

}  // namespace nex::metrics
