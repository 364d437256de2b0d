// HTTP pieces the libcurl-based HTTP adapters (http-fax, wctp) share: one
// request/reply exchange over CurlPool with certificate verification, the
// reply body captured up to a limit, how a transfer that got no usable
// answer is classified, secret files, and a dotted JSON path.
#pragma once

#include <curl/curl.h>

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/curl/curl_pool.hpp"
#include "dispatch/adapter.hpp"

namespace referrald::http_client {

// A reply body larger than this is not read further (the transfer fails).
inline constexpr std::size_t max_reply_bytes = std::size_t{1} << 20;

struct Request {
  std::string method = "POST";  // "POST" or "GET"
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // POST only
  std::string ca_file;               // empty: the system's CA bundle
  std::string username;              // set: HTTP Basic authentication
  std::string password;
  std::chrono::milliseconds timeout{30000};  // the whole exchange
  // Set: called on the worker thread before the transfer, to build what is
  // CPU work (a rendered document in the body). If it throws, no transfer
  // happens and exchange() rethrows.
  std::function<void(Request&)> prepare;
};

struct Reply {
  CurlResult transfer;  // transfer.code == CURLE_OK: a complete HTTP response arrived
  long status = 0;      // HTTP status, 0 without a response
  std::string body;     // at most max_reply_bytes
  bool too_large = false;
};

// Performs one exchange on a CurlPool worker. Certificates and host names
// are always verified; redirects are not followed (a POST must not be
// replayed elsewhere); only http and https are spoken.
boost::asio::awaitable<Reply> exchange(CurlPool& curl, Request request);

// The outcome of a transfer that produced no HTTP response, classified:
// connect, DNS, timeouts, resets and TLS handshakes that break -> transient;
// a certificate that does not verify against the trusted CAs, an unusable
// CA file or a bad URL -> misconfigured. nullopt when a response arrived.
// `what` names the peer in the message ("wctp", "fax provider").
std::optional<Outcome> classify_transfer(const Reply& reply, std::string_view what);

// True for a URL whose host is a loopback address or "localhost": the one
// place plain http:// is allowed (a local gateway, the test suite).
bool is_loopback_url(std::string_view url);
bool is_https_url(std::string_view url);

// The first line of a secret file (line end removed); nullopt with the reason
// in *problem when it cannot be read, is empty or holds more than one line.
std::optional<std::string> read_secret_line(const std::string& path, std::string* problem);

// "data.id" -> "/data/id" (each segment escaped for JSON Pointer, so a
// numeric segment indexes an array). Empty for an empty path or segment.
std::string json_pointer_from_path(std::string_view dotted);

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percent_encode(std::string_view text);

// Printable ASCII (other bytes become spaces, '"' becomes '\''), at most
// max bytes and "...", for log lines and outcome messages built from what a
// peer sent.
std::string printable_excerpt(std::string_view text, std::size_t max = 200);

}  // namespace referrald::http_client
