#include "util/threads.hpp"

#include <pthread.h>

#include <boost/asio/post.hpp>
#include <cstring>
#include <latch>
#include <memory>

namespace referrald {

void name_this_thread(const char* name) noexcept {
  char cut[16] = {};
  std::strncpy(cut, name, sizeof cut - 1);
  (void)::pthread_setname_np(::pthread_self(), cut);
}

void name_pool_threads(boost::asio::thread_pool& pool, std::size_t threads, const char* name) {
  // Each job waits at the latch until every one has arrived, so the pool's
  // threads take one job each: every thread is named, none twice. The jobs
  // share the latch: the last may still be leaving it when this returns.
  auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
  std::size_t posted = 0;
  try {
    for (; posted < threads; ++posted) {
      boost::asio::post(pool, [started, name] {
        name_this_thread(name);
        started->arrive_and_wait();
      });
    }
  } catch (...) {
    // No memory for a job: the ones posted must not wait for it.
    started->count_down(static_cast<std::ptrdiff_t>(threads - posted));
    throw;
  }
  started->wait();
}

}  // namespace referrald
