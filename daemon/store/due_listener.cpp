#include "store/due_listener.hpp"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

#include "store/database_backend.hpp"
#include "util/logging.hpp"

namespace referrald::store {

namespace asio = boost::asio;
using Wait = asio::posix::descriptor_base::wait_type;

namespace {

// The pause before connecting again grows from the first to the last.
constexpr auto first_pause = std::chrono::milliseconds(250);
constexpr auto last_pause = std::chrono::seconds(5);

struct ListenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

struct DueListener::Impl : std::enable_shared_from_this<DueListener::Impl> {
  Impl(asio::any_io_executor ex, PostgresTarget t, std::function<void()> d)
      : strand(asio::make_strand(ex)),
        target(std::move(t)),
        due(std::move(d)),
        socket(strand),
        pause(strand),
        deadline(strand) {}

  ~Impl() { close(); }

  // Everything below is touched only on `strand`.
  asio::strand<asio::any_io_executor> strand;
  const PostgresTarget target;
  std::function<void()> due;
  // libpq owns the socket: the descriptor is assigned for one wait at a
  // time and released after it (libpq may replace the socket while it
  // connects, and closes it in PQfinish).
  asio::posix::stream_descriptor socket;
  asio::steady_timer pause;
  asio::steady_timer deadline;  // the connection attempt's
  PGconn* conn = nullptr;
  bool running = false;
  bool stopping = false;
  bool timed_out = false;
  std::optional<asio::steady_timer> ended;  // signalled when run() returns while stopping

  void close() {
    if (socket.is_open()) socket.release();
    if (conn != nullptr) PQfinish(conn);
    conn = nullptr;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ListenError(what + ": " + detail::libpq_message(conn != nullptr ? PQerrorMessage(conn) : nullptr));
  }

  asio::awaitable<void> wait(Wait what) {
    if (stopping) throw ListenError("stopping");
    if (timed_out) throw ListenError("no connection within " + std::to_string(target.connect_timeout.count()) + "s");
    const int fd = PQsocket(conn);
    if (fd < 0) fail("no socket");
    socket.assign(fd);
    const auto [ec] = co_await socket.async_wait(what, asio::as_tuple(asio::use_awaitable));
    socket.release();
    if (stopping) throw ListenError("stopping");
    if (timed_out) throw ListenError("no connection within " + std::to_string(target.connect_timeout.count()) + "s");
    if (ec) throw ListenError("waiting for the server: " + ec.message());
  }

  // Connects without blocking the event loop, then LISTENs.
  asio::awaitable<void> connect() {
    const detail::ConnectParams params(target);
    conn = PQconnectStartParams(params.keys.data(), params.values.data(), 1);
    if (conn == nullptr) throw ListenError("connect: out of memory");
    if (PQstatus(conn) == CONNECTION_BAD) fail("connect");
    timed_out = false;
    deadline.expires_after(target.connect_timeout);
    deadline.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      self->timed_out = true;
      if (self->socket.is_open()) self->socket.cancel();
    });
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED) fail("connect");
      co_await wait(state == PGRES_POLLING_READING ? Wait::wait_read : Wait::wait_write);
      state = PQconnectPoll(conn);
    }
    deadline.cancel();
    PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);
    if (PQsetnonblocking(conn, 1) != 0) fail("non-blocking mode");
    const std::string listen = "LISTEN " + std::string(due_channel);
    if (PQsendQuery(conn, listen.c_str()) == 0) fail("LISTEN");
    for (int left = PQflush(conn); left != 0; left = PQflush(conn)) {
      if (left < 0) fail("LISTEN");
      co_await wait(Wait::wait_write);
    }
    for (;;) {
      if (PQconsumeInput(conn) == 0) fail("LISTEN");
      if (PQisBusy(conn) == 0) break;
      co_await wait(Wait::wait_read);
    }
    bool listening = true;
    while (PGresult* res = PQgetResult(conn)) {
      if (PQresultStatus(res) != PGRES_COMMAND_OK) listening = false;
      PQclear(res);
    }
    if (!listening) fail("LISTEN");
  }

  // Until the connection breaks: each batch of notifications wakes `due`.
  asio::awaitable<void> receive() {
    for (;;) {
      co_await wait(Wait::wait_read);
      if (PQconsumeInput(conn) == 0) fail("connection lost");
      bool notified = false;
      while (PGnotify* n = PQnotifies(conn)) {
        notified = true;
        PQfreemem(n);
      }
      // An error the server sent on its own (it is shutting down) comes as a result.
      while (PQisBusy(conn) == 0) {
        PGresult* res = PQgetResult(conn);
        if (res == nullptr) break;
        PQclear(res);
      }
      if (notified && due) due();
      if (PQstatus(conn) == CONNECTION_BAD) fail("connection lost");
    }
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    auto wait_before_next = std::chrono::steady_clock::duration(first_pause);
    bool lost = false;  // an outage is logged once, when it starts
    while (!stopping) {
      try {
        co_await connect();
        spdlog::info("storage.listening channel={} database=\"{}\"", due_channel, detail::describe_postgres(target));
        lost = false;
        wait_before_next = first_pause;
        // What was committed while no one listened is looked for now.
        if (due) due();
        co_await receive();
      } catch (const std::exception& e) {
        if (!stopping && !lost) {
          spdlog::warn(
              "storage.listen_failed error=\"{}\" (idle dispatchers find other instances' work by polling until "
              "the connection is back)",
              e.what());
          lost = true;
        }
      }
      deadline.cancel();
      close();
      if (stopping) break;
      pause.expires_after(wait_before_next);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      wait_before_next = std::min<std::chrono::steady_clock::duration>(wait_before_next * 2, last_pause);
    }
    running = false;
    if (ended) ended->cancel();
  }

  asio::awaitable<void> stop() {
    auto self = shared_from_this();
    stopping = true;
    pause.cancel();
    deadline.cancel();
    if (socket.is_open()) socket.cancel();
    if (!running) co_return;
    ended.emplace(strand);
    ended->expires_after(std::chrono::seconds(5));
    co_await ended->async_wait(asio::as_tuple(asio::use_awaitable));
  }
};

DueListener::DueListener(asio::any_io_executor executor, PostgresTarget target, std::function<void()> due)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(target), std::move(due))) {}

DueListener::~DueListener() = default;

void DueListener::start() {
  asio::post(impl_->strand, [impl = impl_] {
    if (impl->running || impl->stopping) return;
    impl->running = true;
    asio::co_spawn(impl->strand, impl->run(), log_if_ended_by_error("storage.listen_loop_died"));
  });
}

asio::awaitable<void> DueListener::stop() {
  co_await asio::co_spawn(impl_->strand, impl_->stop(), asio::use_awaitable);
}

}  // namespace referrald::store
