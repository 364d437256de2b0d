// The HTTP layer's request and response as plain values, so handlers are
// testable and Beast stays inside server.cpp.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace referrald::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-encoding kept
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;  // client address, for rate limits and logs
  bool secure = false; // arrived over TLS

  // First value of a header (name in lower case), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A short note for the request's log line (e.g. "id=R-…"), never PHI.
  std::string log_note;

  static Response json(unsigned status, std::string body);
  // {"error": {"status": N, "message": "..."}} — one shape for every error.
  static Response error(unsigned status, std::string_view message);
};

class Handler {
 public:
  virtual ~Handler() = default;
  virtual boost::asio::awaitable<Response> handle(const Request& request) = 0;
};

}  // namespace referrald::http
