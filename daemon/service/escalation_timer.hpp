// The escalation ladder's timer. The steps are rows in the store
// (store/office.hpp); this only decides when to look at them: at start (a
// step whose time passed while the daemon was down fires then, once), when
// the next step is due, and when woken after an intake or a status change.
// Firing goes through the writer like every other write; after steps fire
// the dispatcher is woken, because each step planned deliveries.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>

#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/duration.hpp"

namespace referrald {

class EscalationTimer {
 public:
  // `fired` runs on the timer's strand after steps fired (wake the dispatcher).
  EscalationTimer(boost::asio::any_io_executor executor, store::Writer& writer, const Clock& clock,
                  std::function<void()> fired);
  ~EscalationTimer();

  void start();
  // Thread-safe: a step may have been planned or stopped; look again now.
  void wake();
  boost::asio::awaitable<void> stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace referrald
