#include "adapters/protocol/connection.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <vector>

#include "util/duration.hpp"

namespace referrald::protocol {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto as_result = asio::as_tuple(asio::use_awaitable);

std::string format_peer(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

struct Connection::Impl {
  explicit Impl(const asio::any_io_executor& executor) : stream(executor), resolver(executor) {}
  beast::tcp_stream stream;
  tcp::resolver resolver;
  std::string buffer;  // received bytes not yet parsed into a reply
  bool open = false;
};

Connection::Connection(asio::any_io_executor executor, Dialect dialect, ReplyLimits limits)
    : impl_(std::make_unique<Impl>(executor)), dialect_(dialect), limits_(limits) {}

Connection::~Connection() { close(); }

asio::awaitable<bool> Connection::connect(std::string host, std::uint16_t port, Timeout timeout) {
  peer_name_ = format_peer(host, port);
  error_.clear();
  protocol_error_ = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  std::vector<tcp::endpoint> endpoints;
  boost::system::error_code parse_error;
  const auto address = asio::ip::make_address(host, parse_error);
  if (!parse_error) {
    endpoints.emplace_back(address, port);
  } else {
    // The resolver has no deadline of its own: race it against one.
    asio::steady_timer timer(impl_->stream.get_executor());
    timer.expires_at(deadline);
    auto raced =
        co_await (impl_->resolver.async_resolve(host, std::to_string(port), as_result) || timer.async_wait(as_result));
    if (raced.index() == 1) {
      error_ = "resolve " + host + ": timed out after " + format_duration(timeout);
      co_return false;
    }
    auto [ec, results] = std::get<0>(std::move(raced));
    if (ec) {
      error_ = "resolve " + host + ": " + ec.message();
      co_return false;
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }

  impl_->stream.expires_at(deadline);
  auto [ec, endpoint] = co_await impl_->stream.async_connect(endpoints, as_result);
  if (ec) {
    error_ = "connect " + peer_name_ + ": " +
             (ec == beast::error::timeout ? "timed out after " + format_duration(timeout) : ec.message());
    co_return false;
  }
  impl_->open = true;
  impl_->buffer.clear();
  spdlog::debug("protocol.connected peer={} address={}", peer_name_, endpoint.address().to_string());
  co_return true;
}

asio::awaitable<std::optional<Reply>> Connection::read_reply(Timeout timeout) {
  const auto waiting_for = [this] {
    return last_command_.empty() ? std::string("the greeting") : "the reply to " + last_command_;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<char, 4096> chunk{};
  while (true) {
    auto parsed = parse_reply(impl_->buffer, dialect_, limits_);
    if (parsed.status == ParseStatus::complete) {
      impl_->buffer.erase(0, parsed.consumed);
      spdlog::debug("protocol.reply peer={} code={} text=\"{}\"", peer_name_, parsed.reply.code,
                    printable(parsed.reply.text, 120));
      co_return std::move(parsed.reply);
    }
    if (parsed.status == ParseStatus::malformed) {
      error_ = "protocol error in " + waiting_for() + ": " + parsed.error;
      protocol_error_ = true;
      close();
      co_return std::nullopt;
    }
    if (!impl_->open) {
      error_ = "not connected (" + waiting_for() + ")";
      co_return std::nullopt;
    }
    impl_->stream.expires_at(deadline);
    auto [ec, n] = co_await impl_->stream.async_read_some(asio::buffer(chunk), as_result);
    if (ec) {
      protocol_error_ = false;
      if (ec == beast::error::timeout) {
        error_ = "timed out after " + format_duration(timeout) + " waiting for " + waiting_for();
      } else if (ec == asio::error::eof) {
        error_ = "connection closed by the server while waiting for " + waiting_for();
      } else {
        error_ = ec.message() + " while waiting for " + waiting_for();
      }
      close();
      co_return std::nullopt;
    }
    impl_->buffer.append(chunk.data(), n);
  }
}

asio::awaitable<std::optional<Reply>> Connection::command(std::string_view line, Timeout timeout,
                                                          std::optional<std::string_view> shown) {
  last_command_ = printable(shown.value_or(line), 80);
  if (line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    error_ = "refused to send " + last_command_ + ": the command holds a line break or NUL";
    protocol_error_ = false;
    co_return std::nullopt;
  }
  spdlog::debug("protocol.send peer={} command=\"{}\"", peer_name_, last_command_);
  std::string wire;
  wire.reserve(line.size() + 2);
  wire.append(line);
  wire.append("\r\n");
  if (!co_await write(wire, timeout)) co_return std::nullopt;
  co_return co_await read_reply(timeout);
}

asio::awaitable<bool> Connection::write(std::string_view bytes, Timeout timeout) {
  if (!impl_->open) {
    error_ = "not connected (sending " + (last_command_.empty() ? std::string("data") : last_command_) + ")";
    co_return false;
  }
  impl_->stream.expires_after(timeout);
  auto [ec, n] = co_await asio::async_write(impl_->stream, asio::buffer(bytes.data(), bytes.size()), as_result);
  if (ec) {
    protocol_error_ = false;
    error_ = (ec == beast::error::timeout ? "timed out after " + format_duration(timeout) : ec.message()) +
             " while sending " + (last_command_.empty() ? std::string("data") : last_command_);
    close();
    co_return false;
  }
  co_return true;
}

asio::awaitable<std::optional<std::string>> Connection::read_to_end(std::size_t max_bytes, Timeout timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out = std::move(impl_->buffer);
  impl_->buffer.clear();
  std::array<char, 4096> chunk{};
  while (impl_->open) {
    if (out.size() > max_bytes) {
      error_ = "more than " + std::to_string(max_bytes) + " bytes on the data connection";
      protocol_error_ = true;
      close();
      co_return std::nullopt;
    }
    impl_->stream.expires_at(deadline);
    auto [ec, n] = co_await impl_->stream.async_read_some(asio::buffer(chunk), as_result);
    if (ec == asio::error::eof) break;
    if (ec) {
      error_ = (ec == beast::error::timeout ? "timed out after " + format_duration(timeout) : ec.message()) +
               " while reading the data connection";
      close();
      co_return std::nullopt;
    }
    out.append(chunk.data(), n);
  }
  close();
  co_return out;
}

void Connection::close() noexcept {
  if (!impl_ || !impl_->open) return;
  impl_->open = false;
  boost::system::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);  // FIN: an upload ends here
  impl_->stream.socket().close(ignored);
}

bool Connection::is_open() const noexcept { return impl_->open; }

std::string Connection::remote_address() const {
  boost::system::error_code ec;
  const auto endpoint = impl_->stream.socket().remote_endpoint(ec);
  return ec ? std::string() : endpoint.address().to_string();
}

bool Connection::remote_is_v6() const noexcept {
  boost::system::error_code ec;
  const auto endpoint = impl_->stream.socket().remote_endpoint(ec);
  return !ec && endpoint.address().is_v6() && !endpoint.address().to_v6().is_v4_mapped();
}

}  // namespace referrald::protocol
