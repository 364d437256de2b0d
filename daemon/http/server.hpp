// HTTP/1.1 (and HTTPS) listener on Boost.Beast: deadlines on every read and
// write, header and body limits, a bound on concurrent connections and a
// per-client rate limit; one log line per request.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "http/message.hpp"

namespace referrald::http {

struct ServerStats {
  std::uint64_t connections_open = 0;
  std::uint64_t connections_refused = 0;   // over max_connections
  std::uint64_t requests = 0;              // answered
  std::uint64_t requests_in_progress = 0;  // head read, not yet answered (its body, a handler, a durable write)
};

class Server {
 public:
  // Binds every listen address now (throws std::system_error naming the
  // address if it cannot) and loads the TLS certificate when configured
  // (throws std::runtime_error naming the file).
  Server(boost::asio::any_io_executor executor, const HttpConfig& config, Handler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Where the intake requests' bodies over max_body_bytes are kept while
  // they are read (util/sealed_spool.hpp); empty (the default): in memory.
  // Before start().
  void set_spool_directory(std::filesystem::path directory);

  // Starts accepting.
  void start();
  // Stops accepting, lets requests in progress finish (up to `grace`), then
  // closes idle keep-alive connections.
  boost::asio::awaitable<void> stop(std::chrono::milliseconds grace);

  // The bound endpoints ("127.0.0.1:8080"), with real ports when 0 was asked.
  std::vector<std::string> local_endpoints() const;
  ServerStats stats() const;

  // Per-status request counts for /metrics.
  std::vector<std::pair<unsigned, std::uint64_t>> status_counts() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace referrald::http
