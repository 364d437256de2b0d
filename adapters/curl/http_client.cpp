#include "adapters/curl/http_client.hpp"
#include "util/secret_file.hpp"
#include "util/strings.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace referrald::http_client {

namespace asio = boost::asio;

namespace {

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

struct Sink {
  std::string* body;
  bool* too_large;
};

size_t write_reply(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const std::size_t n = size * count;
  if (sink->body->size() + n > max_reply_bytes) {
    *sink->too_large = true;
    return 0;  // libcurl ends the transfer with CURLE_WRITE_ERROR
  }
  sink->body->append(data, n);
  return n;
}

// The host part of scheme://[userinfo@]host[:port]/...
std::string_view url_host(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    return close == std::string_view::npos ? std::string_view{} : rest.substr(1, close - 1);
  }
  return rest.substr(0, rest.find(':'));
}

}  // namespace

asio::awaitable<Reply> exchange(CurlPool& curl, Request request) {
  // Everything libcurl points at lives in this frame until perform() returns.
  Reply reply;
  Sink sink{&reply.body, &reply.too_large};
  Slist headers;
  CurlPool::Setup setup = [&](CURL* handle) {
    if (request.prepare) request.prepare(request);
    curl_slist* list = nullptr;
    for (const auto& h : request.headers) list = curl_slist_append(list, h.c_str());
    // libcurl would add "Expect: 100-continue" to large POSTs; not every
    // gateway answers it, and the wait only adds latency.
    list = curl_slist_append(list, "Expect:");
    headers.reset(list);

    curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!request.ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, request.ca_file.c_str());
    if (!request.username.empty()) {
      curl_easy_setopt(handle, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      curl_easy_setopt(handle, CURLOPT_USERNAME, request.username.c_str());
      curl_easy_setopt(handle, CURLOPT_PASSWORD, request.password.c_str());
    }
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers.get());
    if (request.method == "POST") {
      curl_easy_setopt(handle, CURLOPT_POST, 1L);
      curl_easy_setopt(handle, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    } else {
      curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_reply);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &sink);
    const long timeout_ms = std::max<long>(1000, static_cast<long>(request.timeout.count()));
    curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 30000L));
  };
  reply.transfer = co_await curl.perform(std::move(setup));
  reply.status = reply.transfer.response_code;
  co_return reply;
}

std::optional<Outcome> classify_transfer(const Reply& reply, std::string_view what) {
  const CurlResult& r = reply.transfer;
  if (r.code == CURLE_OK) return std::nullopt;
  const std::string peer(what);
  if (reply.too_large) {
    return Outcome::transient(peer + ": the reply is larger than " + std::to_string(max_reply_bytes) + " bytes");
  }
  const std::string message = peer + ": " + r.error;
  switch (r.code) {
    // What no retry fixes: the certificate does not verify against the
    // trusted CAs (set ca_file for a private CA), the CA file is unusable,
    // the URL cannot be used.
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_LOGIN_DENIED:
    case CURLE_AUTH_ERROR: return Outcome::misconfigured(message);
    default:
      // Connect, DNS, timeouts, resets, a TLS handshake that broke off: the
      // network or the peer may recover.
      return Outcome::transient(message);
  }
}

bool is_https_url(std::string_view url) { return equal_ignoring_case(url.substr(0, 8), "https://"); }

bool is_loopback_url(std::string_view url) {
  const std::string host(url_host(url));
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

std::optional<std::string> read_secret_line(const std::string& path, std::string* problem) {
  return referrald::read_secret_file(path, "", problem);
}

std::string json_pointer_from_path(std::string_view dotted) {
  if (dotted.empty()) return {};
  std::string pointer;
  std::size_t start = 0;
  while (true) {
    const auto dot = dotted.find('.', start);
    const std::string_view segment = dotted.substr(start, dot == std::string_view::npos ? dotted.npos : dot - start);
    if (segment.empty()) return {};
    pointer += '/' + json_pointer_token(segment);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return pointer;
}

std::string percent_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0x0f];
    }
  }
  return out;
}

std::string printable_excerpt(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    // A double quote would end the error="..." field of a log line.
    out += c == '"' ? '\'' : (u >= 0x20 && u < 0x7f) ? c : ' ';
  }
  return out;
}

}  // namespace referrald::http_client
