#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "http/rate_limit.hpp"
#include "office/ack_link.hpp"
#include "http/tls.hpp"
#include "util/sealed_spool.hpp"
#include "util/strings.hpp"

namespace referrald::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

const std::string* Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::size_t Request::count(std::string_view name) const {
  return static_cast<std::size_t>(
      std::count_if(headers.begin(), headers.end(), [name](const auto& h) { return h.first == name; }));
}

Response body_too_large(std::size_t limit) {
  return Response::error(413, "request body is larger than " + std::to_string(limit) + " bytes");
}

Response Handler::too_large(const Request& request, std::size_t limit) const {
  (void)request;
  return body_too_large(limit);
}

Response Handler::rate_limited(const Request& request, long long retry_after) const {
  (void)request;
  auto response = Response::error(429, "too many requests from this address; slow down");
  response.headers.emplace_back("Retry-After", std::to_string(std::max<long long>(1, retry_after)));
  return response;
}

namespace {

std::string json_escape(std::string_view text) {
  std::string out;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (c < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

constexpr auto tls_handshake_timeout = std::chrono::seconds(10);

// The error a SpoolBody's reader reports when the spool refuses a block
// (the disk is full, the file cannot be written): a category of its own, so
// that read_body tells it from the socket's errors (an I/O error there is the
// client's connection, not our disk).
// (Boost's error_category has a protected, non-virtual destructor by
// design: a category is a static, never deleted through its base.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class SpoolErrorCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "referrald.spool"; }
  std::string message(int /*condition*/) const override { return "the request's spool could not be written"; }
};
#pragma GCC diagnostic pop

const boost::system::error_category& spool_category() {
  static const SpoolErrorCategory category;
  return category;
}

beast::error_code spool_write_failed() { return {1, spool_category()}; }

// A Beast body that seals each piece of the body into a spool as it comes
// off the socket (util/sealed_spool.hpp): an upload costs the daemon a
// block of memory, not its size.
struct SpoolBody {
  using value_type = std::shared_ptr<SealedSpool>;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>& /*head*/, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& /*length*/, beast::error_code& ec) { ec = {}; }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      try {
        for (const auto b : beast::buffers_range_ref(buffers)) {
          body_->append(std::string_view(static_cast<const char*>(b.data()), b.size()));
        }
      } catch (const std::exception& e) {
        spdlog::warn("http.spool_failed error=\"{}\"", e.what());
        ec = spool_write_failed();
        return 0;
      }
      ec = {};
      return beast::buffer_bytes(buffers);
    }

    void finish(beast::error_code& ec) {
      try {
        body_->finish();
        ec = {};
      } catch (const std::exception& e) {
        spdlog::warn("http.spool_failed error=\"{}\"", e.what());
        ec = spool_write_failed();
      }
    }

   private:
    value_type& body_;
  };
};

// The requests that take in a referral: the API's, the form's and FHIR's
// POST (which may carry attachments).
bool intake_request(std::string_view method, std::string_view path) {
  return method == "POST" &&
         (path == "/api/v1/referrals" || path == "/referrals" || path == "/fhir/r4" || path.starts_with("/fhir/r4/"));
}

// The intake requests whose bodies go to a spool: when the body may be
// larger than max_body_bytes (its Content-Length says so, or it is chunked;
// without either there is no body).
bool spooled_request(const HttpConfig& config, std::string_view method, std::string_view path, bool chunked,
                     const boost::optional<std::uint64_t>& content_length) {
  return intake_request(method, path) && (chunked || (content_length && *content_length > config.max_body_bytes));
}

using RequestHead = bhttp::request_parser<bhttp::string_body>::value_type;

// A Host value: uri-host [":" port] (RFC 3986 reg-name or IP literal); empty
// is allowed (the target had no authority), the form then refuses it.
bool is_host_value(std::string_view host) {
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("-._~!$&'()*+,;=%:[]").find(c) != std::string_view::npos;
  });
}

// What RFC 9112 requires a server to refuse from a request's head before it
// reads any body: the framing must be unambiguous (or the body would run as
// the next request) and an HTTP/1.1 request names exactly one Host. Beast has
// already refused Content-Length with Transfer-Encoding and conflicting
// Content-Lengths, and versions other than HTTP/1.x. Each refusal closes the
// connection.
// The requests that take in a referral (the API's, the form's and FHIR's
// POST) may carry attachments, up to [intake]'s limits; every other request,
// and an intake request without attachments (api.cpp, fhir.cpp),
// max_body_bytes.
std::size_t request_body_limit(const HttpConfig& config, std::string_view method, std::string_view path) {
  return intake_request(method, path) ? std::max(config.max_body_bytes, config.max_upload_body_bytes)
                                      : config.max_body_bytes;
}

std::optional<Response> framing_problem(const RequestHead& head) {
  std::size_t hosts = 0;
  bool host_ok = true;
  std::vector<std::string> codings;
  bool has_te = false;
  for (const auto& field : head) {
    if (field.name() == bhttp::field::host) {
      ++hosts;
      host_ok = host_ok && is_host_value(field.value());
    } else if (field.name() == bhttp::field::transfer_encoding) {
      has_te = true;
      std::string_view rest = field.value();
      while (true) {
        const auto comma = rest.find(',');
        auto item = rest.substr(0, comma);
        item = item.substr(0, item.find(';'));  // transfer parameters
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) codings.push_back(lower(item));
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
  }
  if (hosts > 1) return Response::error(400, "a request must not have more than one Host header");
  if (hosts == 0 && head.version() >= 11) return Response::error(400, "an HTTP/1.1 request needs a Host header");
  if (!host_ok) return Response::error(400, "the Host header is not a host name and port");
  if (has_te) {
    if (head.version() < 11) return Response::error(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (codings.empty() || codings.back() != "chunked") {
      return Response::error(400, "Transfer-Encoding must end in chunked");
    }
    if (std::count(codings.begin(), codings.end(), "chunked") > 1) {
      return Response::error(400, "Transfer-Encoding must not apply chunked twice");
    }
    if (codings.size() > 1) return Response::error(501, "only the chunked transfer coding is supported");
  }
  return std::nullopt;
}

}  // namespace

Response Response::json(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::error(unsigned status, std::string_view message) {
  // Our own fixed sentences only (never request content), so escaping is all
  // a JSON library would add here.
  return json(status, "{\"errors\":[{\"path\":\"\",\"message\":\"" + json_escape(message) + "\"}]}");
}

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::any_io_executor ex, const HttpConfig& cfg, Handler& h)
      : executor(std::move(ex)), config(cfg), handler(h), limiter(cfg.rate_limit_per_minute, cfg.rate_limit_burst) {
    if (config.tls_enabled()) {
      tls.emplace(make_server_tls_context(config.tls_certificate, config.tls_private_key));
    }
    for (const auto& endpoint : config.listen) {
      boost::system::error_code ec;
      auto address = endpoint.host == "localhost" ? asio::ip::make_address("127.0.0.1")
                                                  : asio::ip::make_address(endpoint.host, ec);
      if (ec) throw std::system_error(ec, "listen address " + endpoint.to_string());
      tcp::endpoint ep(address, endpoint.port);
      tcp::acceptor acceptor(executor);
      acceptor.open(ep.protocol());
      acceptor.set_option(asio::socket_base::reuse_address(true));
      if (ep.protocol() == tcp::v6()) acceptor.set_option(asio::ip::v6_only(true));
      acceptor.bind(ep, ec);
      if (ec) throw std::system_error(ec, "cannot listen on " + endpoint.to_string());
      acceptor.listen(asio::socket_base::max_listen_connections);
      acceptors.push_back(std::move(acceptor));
    }
  }

  asio::any_io_executor executor;
  HttpConfig config;
  Handler& handler;
  std::optional<asio::ssl::context> tls;
  std::vector<tcp::acceptor> acceptors;
  std::filesystem::path spool_directory;  // empty: bodies in memory
  RateLimiter limiter;

  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> open{0}, refused{0}, requests{0}, busy{0};
  std::mutex clients_mutex;
  std::unordered_map<std::string, std::size_t> per_client;  // open connections by address
  std::mutex status_mutex;
  std::map<unsigned, std::uint64_t> statuses;

  // Sockets of connections waiting for their next request, closed on stop.
  std::mutex idle_mutex;
  std::set<std::shared_ptr<std::function<void()>>> closers;

  void count_status(unsigned status) {
    std::lock_guard lock(status_mutex);
    ++statuses[status];
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    auto self = shared_from_this();
    while (!stopping) {
      auto [ec, socket] =
          co_await acceptor.async_accept(asio::make_strand(executor), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) break;
        spdlog::warn("http.accept_failed error=\"{}\"", ec.message());
        // EMFILE and friends: back off briefly rather than spin.
        asio::steady_timer pause(executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      boost::system::error_code rec;
      const auto remote_ep = socket.remote_endpoint(rec);
      std::string remote = rec ? std::string("unknown") : remote_ep.address().to_string();
      if (open.load() >= config.max_connections) {
        ++refused;
        asio::co_spawn(socket.get_executor(), refuse(std::move(socket), "too many open connections"), asio::detached);
        continue;
      }
      if (!claim_slot(remote)) {
        ++refused;
        asio::co_spawn(socket.get_executor(), refuse(std::move(socket), "too many open connections from this address"),
                       asio::detached);
        continue;
      }
      ++open;
      auto ex = socket.get_executor();
      asio::co_spawn(ex, serve(std::move(socket), remote), [self, remote](std::exception_ptr e) {
        self->release_slot(remote);
        --self->open;
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex2) {
          spdlog::error("http.connection_error error=\"{}\"", ex2.what());
        }
      });
    }
  }

  // One address may hold at most max_connections_per_client connections, so
  // one slow or flooding client cannot take every slot from the others.
  bool claim_slot(const std::string& remote) {
    std::lock_guard lock(clients_mutex);
    auto& n = per_client[remote];  // at least 1 when over the limit (which is at least 1)
    if (n >= config.max_connections_per_client) return false;
    ++n;
    return true;
  }

  void release_slot(const std::string& remote) {
    std::lock_guard lock(clients_mutex);
    const auto it = per_client.find(remote);
    if (it != per_client.end() && --it->second == 0) per_client.erase(it);
  }

  // Over a connection limit: a short 503 and close, never a silent hang.
  // `why` is one of our fixed sentences.
  asio::awaitable<void> refuse(tcp::socket socket, const char* why) {
    const std::string body = Response::error(503, why).body + "\n";
    const std::string reply =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        "Connection: close\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    beast::tcp_stream stream(std::move(socket));
    stream.expires_after(std::chrono::seconds(2));
    co_await asio::async_write(stream, asio::buffer(reply), asio::as_tuple(asio::use_awaitable));
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::awaitable<void> serve(tcp::socket socket, std::string remote) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    if (tls) {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls);
      beast::get_lowest_layer(stream).expires_after(tls_handshake_timeout);
      auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(asio::use_awaitable));
      if (hec) {
        spdlog::debug("http.tls_handshake_failed remote={} error=\"{}\"", remote, hec.message());
        co_return;
      }
      co_await session(stream, remote, true);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
    } else {
      beast::tcp_stream stream(std::move(socket));
      co_await session(stream, remote, false);
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  // The answer to HEAD is the answer to GET without its body (its
  // Content-Length included).
  template <class Stream>
  asio::awaitable<bool> write(Stream& stream, Response response, bool keep_alive, bool secure, bool head) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(response.status), 11};
    res.set(bhttp::field::server, "referrald");
    res.set(bhttp::field::content_type, response.content_type);
    res.set(bhttp::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    if (secure) res.set(bhttp::field::strict_transport_security, "max-age=31536000");
    for (auto& [name, value] : response.headers) res.set(name, value);
    res.body() = std::move(response.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(config.write_timeout);
    if (head) {
      bhttp::response<bhttp::empty_body> header_only{std::move(res.base())};
      auto [ec, n] = co_await bhttp::async_write(stream, header_only, asio::as_tuple(asio::use_awaitable));
      (void)n;
      co_return !ec;
    }
    auto [ec, n] = co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    (void)n;
    co_return !ec;
  }

  template <class Stream>
  asio::awaitable<void> session(Stream& stream, const std::string& remote, bool secure) {
    beast::flat_buffer buffer;
    bool first = true;
    while (!stopping) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(config.max_header_bytes));
      // No limit while the head is read (Beast would refuse a large
      // Content-Length with the head, before anyone knows the request's
      // path); the request's own limit is set, and a larger Content-Length
      // refused by its handler (the form answers with a page), once the
      // head says which request this is.
      parser.body_limit(boost::none);

      // A waiting keep-alive connection can be closed by stop().
      // The flag and the cancel both run on this connection's strand, so the
      // cancel only touches the stream while this coroutine waits for it.
      auto waiting = std::make_shared<bool>(true);
      auto closer = std::make_shared<std::function<void()>>([&stream, waiting] {
        asio::post(stream.get_executor(), [&stream, waiting] {
          if (*waiting) beast::get_lowest_layer(stream).cancel();
        });
      });
      {
        std::lock_guard lock(idle_mutex);
        closers.insert(closer);
      }
      // A kept-alive connection may wait idle_timeout for its next request;
      // from that request's first byte on, the whole request (head and body)
      // has read_timeout, as the first one has from the connection's start
      // (else a slow request could hold a slot for the longer idle deadline,
      // or for twice read_timeout).
      boost::system::error_code hec;
      if (!first && buffer.size() == 0) {
        beast::get_lowest_layer(stream).expires_after(config.idle_timeout);
        auto [iec, in] = co_await stream.async_read_some(buffer.prepare(4096), asio::as_tuple(asio::use_awaitable));
        buffer.commit(in);
        hec = iec;
      }
      const auto deadline = steady::now() + std::chrono::duration_cast<steady::duration>(config.read_timeout);
      if (!hec) {
        beast::get_lowest_layer(stream).expires_at(deadline);
        auto [rec, rn] = co_await bhttp::async_read_header(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        (void)rn;
        hec = rec;
      }
      *waiting = false;
      {
        std::lock_guard lock(idle_mutex);
        closers.erase(closer);
      }
      first = false;
      const auto started = steady::now();
      if (hec) {
        if (hec == bhttp::error::header_limit) {
          co_await finish(stream, remote, secure, "-", "-", started,
                          Response::error(431, "request headers are too large"), false);
        } else if (hec == bhttp::error::body_limit) {
          // Not while the head is read (no body limit then); kept for safety.
          co_await finish(stream, remote, secure, "-", "-", started,
                          body_too_large(std::max(config.max_body_bytes, config.max_upload_body_bytes)), false);
        } else if (hec != bhttp::error::end_of_stream && hec != beast::error::timeout &&
                   hec != asio::error::operation_aborted && hec != asio::error::connection_reset &&
                   hec != asio::error::eof && hec != asio::ssl::error::stream_truncated) {
          co_await finish(stream, remote, secure, "-", "-", started, Response::error(400, "malformed HTTP request"),
                          false);
        }
        co_return;
      }
      ++busy;
      struct BusyGuard {
        std::atomic<std::uint64_t>& n;
        ~BusyGuard() { --n; }
      } guard{busy};

      const auto& header = parser.get();
      const std::string method(header.method_string());
      std::string target(header.target());
      std::string path = target, query;
      if (auto q = target.find('?'); q != std::string::npos) {
        path = target.substr(0, q);
        query = target.substr(q + 1);
      }
      const bool keep_alive = header.keep_alive();

      // Every refusal before the body is read closes the connection: what
      // is left of the request on it cannot be told from a next request.
      if (auto problem = framing_problem(header)) {
        co_await finish(stream, remote, secure, method, path, started, std::move(*problem), false);
        co_return;
      }
      const std::size_t body_limit = request_body_limit(config, method, path);
      parser.body_limit(body_limit);
      if (parser.content_length() && *parser.content_length() > body_limit) {
        Request head_only;
        head_only.method = method;
        head_only.path = path;
        co_await finish(stream, remote, secure, method, path, started, handler.too_large(head_only, body_limit), false);
        co_return;
      }

      // The head as the handlers see it. Chunked trailers (parsed with the
      // body) are not headers: they never reach a handler.
      Request request;
      request.method = method;
      request.path = std::move(path);
      request.query = std::move(query);
      request.remote = remote;
      request.secure = secure;
      for (const auto& field : header) {
        request.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
      }

      std::optional<Response> early;  // the answer, known before the body
      const bool exempt = request.path == "/healthz" || request.path == "/metrics";
      if (!exempt) {
        if (auto wait = limiter.acquire(remote, steady::now())) early = handler.rate_limited(request, *wait);
      }
      // "Expect: 100-continue": the client waits for leave to send its body.
      // It gets it only when the head alone does not decide the answer (so
      // not without a valid key, for instance); an HTTP/1.0 client's Expect
      // is ignored (RFC 9110, 10.1.1).
      if (header.version() >= 11 && request.count("expect") > 0) {
        if (request.count("expect") > 1 || !beast::iequals(*request.header("expect"), "100-continue")) {
          co_await finish(stream, remote, secure, request.method, request.path, started,
                          Response::error(417, "the only expectation supported is 100-continue"), false);
          co_return;
        }
        if (!early) early = handler.check(request);
        if (early) {
          co_await finish(stream, remote, secure, request.method, request.path, started, std::move(*early), false);
          co_return;
        }
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
        beast::get_lowest_layer(stream).expires_after(config.write_timeout);
        auto [cec, cn] = co_await bhttp::async_write(stream, cont, asio::as_tuple(asio::use_awaitable));
        (void)cn;
        if (cec) co_return;
      }
      beast::get_lowest_layer(stream).expires_at(deadline);
      if (!spool_directory.empty() &&
          spooled_request(config, method, request.path, parser.chunked(), parser.content_length())) {
        // Nothing goes to disk for a request the head alone refuses (no
        // valid key, another site's form, the rate limit): it is answered
        // now and the connection closed, as after a refused Expect.
        if (!early) early = handler.check(request);
        if (early) {
          co_await finish(stream, remote, secure, request.method, request.path, started, std::move(*early), false);
          co_return;
        }
        bhttp::request_parser<SpoolBody> spooled(std::move(parser));
        spooled.body_limit(body_limit);
        try {
          spooled.get().body() = std::make_shared<SealedSpool>(spool_directory);
        } catch (const std::exception& e) {
          spdlog::warn("http.spool_failed error=\"{}\"", e.what());
        }
        if (!spooled.get().body()) {
          co_await finish(stream, remote, secure, request.method, request.path, started, spool_failed(), false);
          co_return;
        }
        if (!co_await read_body(stream, buffer, spooled, request, remote, secure, started, body_limit)) co_return;
        request.body_file = std::move(spooled.get().body());
      } else {
        if (!co_await read_body(stream, buffer, parser, request, remote, secure, started, body_limit)) co_return;
        request.body = std::move(parser.get().body());
      }

      Response response;
      if (early) {
        response = std::move(*early);
      } else {
        try {
          response = co_await handler.handle(request);
        } catch (const std::exception& e) {
          spdlog::error("http.handler_error method={} path={} error=\"{}\"", request.method, request.path, e.what());
          response = Response::error(500, "internal error");
        }
      }
      const bool again = keep_alive && !stopping;
      if (!co_await finish(stream, remote, secure, request.method, request.path, started, std::move(response), again)) {
        co_return;
      }
      if (!again) co_return;
    }
  }

  static Response spool_failed() {
    auto response = Response::error(503, "the request could not be kept while it was read; try again shortly");
    response.headers.emplace_back("Retry-After", "30");
    return response;
  }

  // Reads the body into `parser`; false (after answering, if there is
  // anyone to answer) when it cannot be read.
  template <class Stream, class Parser>
  asio::awaitable<bool> read_body(Stream& stream, beast::flat_buffer& buffer, Parser& parser, const Request& request,
                                  const std::string& remote, bool secure, steady::time_point started,
                                  std::size_t body_limit) {
    auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    (void)bn;
    if (!bec) co_return true;
    if (bec == bhttp::error::body_limit) {
      co_await finish(stream, remote, secure, request.method, request.path, started,
                      handler.too_large(request, body_limit), false);
    } else if (bec.category() == spool_category()) {
      co_await finish(stream, remote, secure, request.method, request.path, started, spool_failed(), false);
    } else if (bec != beast::error::timeout && bec != bhttp::error::end_of_stream && bec != asio::error::eof &&
               bec != asio::error::connection_reset) {
      co_await finish(stream, remote, secure, request.method, request.path, started,
                      Response::error(400, "malformed HTTP request"), false);
    }
    co_return false;
  }

  template <class Stream>
  asio::awaitable<bool> finish(Stream& stream, const std::string& remote, bool secure, std::string_view method,
                               std::string_view path, steady::time_point started, Response response, bool keep_alive) {
    ++requests;
    const unsigned status = response.status;
    count_status(status);
    const std::string note = std::move(response.log_note);
    const bool ok = co_await write(stream, std::move(response), keep_alive, secure, method == "HEAD");
    const double ms = std::chrono::duration<double, std::milli>(steady::now() - started).count();
    // One line per request: no query string, no body, no header values, and
    // no acknowledgement token (a credential in the path).
    if (path.starts_with(ack_path_prefix)) path = ack_path_prefix.substr(0, ack_path_prefix.size() - 1);
    spdlog::info("http.request method={} path={} status={} ms={:.2f} remote={}{}{}", method,
                 path.size() > 128 ? path.substr(0, 128) : path, status, ms, remote, note.empty() ? "" : " ", note);
    co_return ok;
  }
};

Server::Server(asio::any_io_executor executor, const HttpConfig& config, Handler& handler)
    : impl_(std::make_shared<Impl>(std::move(executor), config, handler)) {}

Server::~Server() {
  for (auto& a : impl_->acceptors) {
    boost::system::error_code ec;
    a.close(ec);
  }
}

void Server::set_spool_directory(std::filesystem::path directory) { impl_->spool_directory = std::move(directory); }

void Server::start() {
  for (auto& acceptor : impl_->acceptors) {
    asio::co_spawn(impl_->executor, impl_->accept_loop(acceptor), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("http.accept_loop_died error=\"{}\"", ex.what());
      }
    });
  }
}

asio::awaitable<void> Server::stop(std::chrono::milliseconds grace) {
  auto impl = impl_;
  impl->stopping = true;
  for (auto& a : impl->acceptors) {
    boost::system::error_code ec;
    a.close(ec);
  }
  // Requests in progress finish (their handlers wait for their commits).
  const auto deadline = steady::now() + grace;
  asio::steady_timer tick(impl->executor);
  while (impl->busy.load() > 0 && steady::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(10));
    co_await tick.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  std::vector<std::shared_ptr<std::function<void()>>> idle;
  {
    std::lock_guard lock(impl->idle_mutex);
    idle.assign(impl->closers.begin(), impl->closers.end());
  }
  for (auto& close : idle) (*close)();
}

std::vector<std::string> Server::local_endpoints() const {
  std::vector<std::string> out;
  for (const auto& a : impl_->acceptors) {
    boost::system::error_code ec;
    const auto ep = a.local_endpoint(ec);
    if (ec) continue;
    if (ep.address().is_v6()) {
      out.push_back("[" + ep.address().to_string() + "]:" + std::to_string(ep.port()));
    } else {
      out.push_back(ep.address().to_string() + ":" + std::to_string(ep.port()));
    }
  }
  return out;
}

ServerStats Server::stats() const {
  return {impl_->open.load(), impl_->refused.load(), impl_->requests.load(), impl_->busy.load()};
}

std::vector<std::pair<unsigned, std::uint64_t>> Server::status_counts() const {
  std::lock_guard lock(impl_->status_mutex);
  return {impl_->statuses.begin(), impl_->statuses.end()};
}

}  // namespace referrald::http
