// How an adapter runs blocking work (a libcurl transfer, rendering a PDF, a
// file write with fsync) off the dispatcher's executor and waits for it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

namespace referrald {

// Runs `work` (a coroutine function with no asynchronous steps) on `pool`
// and returns its result on the caller's executor.
//
// The dispatcher races every send against the target's timeout, and the
// race cancels the send that loses. Blocking work cannot be interrupted, so
// the cancellation must not reach it: Boost 1.81's co_spawn, handed a
// cancelled signal, throws "co_await: Operation canceled" on the pool
// thread once the work has finished, where nothing catches it, and the
// process terminates (a hung SMTP server did exactly that). Shielded, the
// work runs to its end (libcurl and the renderers have their own limits),
// its result goes to the cancelled send, and the race has already moved on.
template <typename Executor, typename Work>
auto offload(Executor pool, Work work) -> decltype(work()) {
  co_return co_await boost::asio::co_spawn(
      std::move(pool), std::move(work),
      boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(), boost::asio::use_awaitable));
}

}  // namespace referrald
