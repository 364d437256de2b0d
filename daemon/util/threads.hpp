// Names for the daemon's threads, so that `top -H`, `ps -L`, perf and a core
// dump say which thread is the writer, which an HTTP thread, and so on
// (docs/architecture.md, "Threads").
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstddef>

namespace referrald {

// Names the calling thread: at most 15 bytes (the kernel's limit; longer
// names are cut). Best effort: a refusal changes nothing else.
void name_this_thread(const char* name) noexcept;

// Names every thread of `pool`: one job each, held until all have started,
// so that no thread takes two. Returns once they are named. `threads` must
// be the pool's number of threads and the pool idle (call it right after
// making the pool): with fewer threads, or one busy for good, this would
// wait for ever.
void name_pool_threads(boost::asio::thread_pool& pool, std::size_t threads, const char* name);

}  // namespace referrald
