// One TCP connection of a line-oriented protocol client (SNPP, HylaFAX), with
// a deadline on every connect, read and write. Failures are values, not
// exceptions: an operation returns false / nullopt and error() says what
// happened in words fit for an operator ("connect 127.0.0.1:4559: Connection
// refused", "timed out after 30s waiting for the reply to JSUBM").
// Asio and Beast stay behind this header.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/protocol/reply.hpp"

namespace referrald::protocol {

using Timeout = std::chrono::milliseconds;  // the same type as referrald::Duration

class Connection {
 public:
  Connection(boost::asio::any_io_executor executor, Dialect dialect, ReplyLimits limits = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // `host` is a name or a literal address (IPv6 without brackets). Names are
  // resolved within the same deadline.
  boost::asio::awaitable<bool> connect(std::string host, std::uint16_t port, Timeout timeout);

  // The next reply; nullopt on a timeout, a closed connection or a protocol
  // error (see error(), protocol_error()).
  boost::asio::awaitable<std::optional<Reply>> read_reply(Timeout timeout);

  // Sends `line` + CRLF and reads the reply. A line holding CR, LF or NUL is
  // refused without sending anything (no command injection from a value).
  // `shown` replaces the line in messages and logs (for passwords).
  boost::asio::awaitable<std::optional<Reply>> command(std::string_view line, Timeout timeout,
                                                       std::optional<std::string_view> shown = std::nullopt);

  // Writes raw bytes (a data connection's payload).
  boost::asio::awaitable<bool> write(std::string_view bytes, Timeout timeout);

  // Reads until the peer closes, at most `max_bytes` (a data connection's listing).
  boost::asio::awaitable<std::optional<std::string>> read_to_end(std::size_t max_bytes, Timeout timeout);

  // Sends FIN and closes: the end of an uploaded file.
  void close() noexcept;

  bool is_open() const noexcept;
  // The peer's address as connected ("127.0.0.1", "::1"); empty when closed.
  std::string remote_address() const;
  bool remote_is_v6() const noexcept;
  // What the last failed operation did wrong.
  const std::string& error() const noexcept { return error_; }
  // True when the last failure was the peer breaking the protocol (a
  // malformed or oversized reply), not the network.
  bool protocol_error() const noexcept { return protocol_error_; }
  // "host:port" as given to connect().
  const std::string& peer_name() const noexcept { return peer_name_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Dialect dialect_;
  ReplyLimits limits_;
  std::string error_;
  bool protocol_error_ = false;
  std::string peer_name_;
  std::string last_command_;  // as shown, for messages
};

}  // namespace referrald::protocol
