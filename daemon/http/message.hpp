// The HTTP layer's request and response as plain values, so handlers are
// testable and Beast stays inside server.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace referrald {
class SealedSpool;  // util/sealed_spool.hpp
}

namespace referrald::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-encoding kept
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // An intake body over max_body_bytes, kept on disk while it came in
  // (util/sealed_spool.hpp); `body` is empty then.
  std::shared_ptr<const SealedSpool> body_file;
  std::string remote;   // client address, for rate limits and logs
  bool secure = false;  // arrived over TLS

  // First value of a header (name in lower case), or nullptr.
  const std::string* header(std::string_view name) const;
  // How many times a header (name in lower case) was sent.
  std::size_t count(std::string_view name) const;
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

  // The answer a request gets from its head alone (wrong method, no valid
  // key, wrong media type, a Host the form does not answer at), or nullopt
  // when only its body can tell. handle() gives the same answer for such a
  // request; the server asks first when the client waits for
  // "100 Continue", so that it is not invited to send a body it would only
  // have refused. `request.body` is empty.
  virtual std::optional<Response> check(const Request& request) const {
    (void)request;
    return std::nullopt;
  }

  // The 429 for a client over its rate limit; `retry_after` in seconds.
  virtual Response rate_limited(const Request& request, long long retry_after) const;

  // The 413 for a body over `limit` bytes. `request` has its method and path
  // (and, once the head is read, its headers); its body is not read.
  virtual Response too_large(const Request& request, std::size_t limit) const;
};

}  // namespace referrald::http
