// Wakes an idle dispatcher when another referrald instance, or referralctl,
// commits work that is due now on the same PostgreSQL database: LISTEN on
// store::due_channel over a connection of its own. The connection is opened
// (and its LISTEN sent) on the blocking pool, since libpq resolves host
// names synchronously; then the event loop reads it (the connection's
// socket in Asio, libpq's non-blocking calls: no thread, no busy loop). The
// dispatcher's poll stays as the fallback; a broken connection is opened
// again after a pause. docs/storage.md, "Waking idle dispatchers".
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>

#include "store/database.hpp"

namespace referrald::store {

class DueListener {
 public:
  // `due` runs on `executor` after each batch of notifications, and after
  // each (re)connection (what was notified while it was away is not lost:
  // the caller looks). Notifications whose payload is `own_token` (this
  // process's due_token(), whose commits wake their dispatcher themselves)
  // are ignored; an empty one ignores none. Connections are opened on
  // `blocking`, which must outlive the listener's last connect.
  DueListener(boost::asio::any_io_executor executor, boost::asio::any_io_executor blocking, PostgresTarget target,
              std::string own_token, std::function<void()> due);
  ~DueListener();
  DueListener(const DueListener&) = delete;
  DueListener& operator=(const DueListener&) = delete;

  void start();
  // Ends the connection; returns once the listener has let go of it.
  boost::asio::awaitable<void> stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace referrald::store
