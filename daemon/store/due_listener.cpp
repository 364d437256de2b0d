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

#include "dispatch/offload.hpp"
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

// Opens a connection to `target` and LISTENs on it, blocking: run on the
// blocking pool (libpq resolves a host name synchronously, and a multi-host
// url tries its hosts one after another, each within connect_timeout). The
// connection comes back non-blocking, for the event loop to read.
std::shared_ptr<PGconn> open_listening(const PostgresTarget& target) {
  const detail::ConnectParams params(target);
  std::shared_ptr<PGconn> conn(PQconnectdbParams(params.keys.data(), params.values.data(), 1), [](PGconn* c) {
    if (c != nullptr) PQfinish(c);
  });
  const auto fail = [&](const std::string& what) {
    throw ListenError(what + ": " + detail::libpq_connection_message(conn ? PQerrorMessage(conn.get()) : nullptr));
  };
  if (!conn) throw ListenError("connect: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) fail("connect");
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  const std::string listen = "LISTEN " + std::string(due_channel);
  const std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), listen.c_str()), &PQclear);
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) fail("LISTEN");
  if (PQsetnonblocking(conn.get(), 1) != 0) fail("non-blocking mode");
  return conn;
}

}  // namespace

struct DueListener::Impl : std::enable_shared_from_this<DueListener::Impl> {
  Impl(asio::any_io_executor ex, asio::any_io_executor b, PostgresTarget t, std::string own, std::function<void()> d)
      : strand(asio::make_strand(ex)),
        blocking(std::move(b)),
        target(std::move(t)),
        own_token(std::move(own)),
        due(std::move(d)),
        socket(strand),
        pause(strand) {}

  ~Impl() { close(); }

  // Everything below is touched only on `strand`.
  asio::strand<asio::any_io_executor> strand;
  const asio::any_io_executor blocking;
  const PostgresTarget target;
  const std::string own_token;
  std::function<void()> due;
  // libpq owns the socket: the descriptor is assigned for one wait at a
  // time and released after it (PQfinish closes it).
  asio::posix::stream_descriptor socket;
  asio::steady_timer pause;
  std::shared_ptr<PGconn> conn;
  bool running = false;
  bool stopping = false;
  std::optional<asio::steady_timer> ended;  // signalled when run() returns while stopping

  void close() {
    if (socket.is_open()) socket.release();
    conn.reset();
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ListenError(what + ": " + detail::libpq_connection_message(conn ? PQerrorMessage(conn.get()) : nullptr));
  }

  asio::awaitable<void> wait_readable() {
    if (stopping) throw ListenError("stopping");
    const int fd = PQsocket(conn.get());
    if (fd < 0) fail("no socket");
    socket.assign(fd);
    const auto [ec] = co_await socket.async_wait(Wait::wait_read, asio::as_tuple(asio::use_awaitable));
    socket.release();
    if (stopping) throw ListenError("stopping");
    if (ec) throw ListenError("waiting for the server: " + ec.message());
  }

  // Connects and LISTENs on the blocking pool; the event loop waits.
  asio::awaitable<void> connect() {
    // Captures a pointer only: GCC 12 destroys a coroutine lambda's captures
    // twice when they have destructors (run() keeps this Impl alive).
    const PostgresTarget* to = &target;
    conn = co_await offload(blocking,
                            [to]() -> asio::awaitable<std::shared_ptr<PGconn>> { co_return open_listening(*to); });
    if (stopping) throw ListenError("stopping");
  }

  // Until the connection breaks: each batch of notifications wakes `due`.
  asio::awaitable<void> receive() {
    for (;;) {
      co_await wait_readable();
      if (PQconsumeInput(conn.get()) == 0) fail("connection lost");
      bool notified = false;
      while (PGnotify* n = PQnotifies(conn.get())) {
        // Our own commits woke our dispatcher already.
        if (own_token.empty() || own_token != n->extra) notified = true;
        PQfreemem(n);
      }
      // An error the server sent on its own (it is shutting down) comes as a result.
      while (PQisBusy(conn.get()) == 0) {
        PGresult* res = PQgetResult(conn.get());
        if (res == nullptr) break;
        PQclear(res);
      }
      if (notified && due) due();
      if (PQstatus(conn.get()) == CONNECTION_BAD) fail("connection lost");
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
    if (socket.is_open()) socket.cancel();
    if (!running) co_return;
    ended.emplace(strand);
    ended->expires_after(std::chrono::seconds(5));
    co_await ended->async_wait(asio::as_tuple(asio::use_awaitable));
  }
};

DueListener::DueListener(asio::any_io_executor executor, asio::any_io_executor blocking, PostgresTarget target,
                         std::string own_token, std::function<void()> due)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(blocking), std::move(target), std::move(own_token),
                                   std::move(due))) {}

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
