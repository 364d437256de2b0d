#include "adapters/curl/curl_pool.hpp"

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <mutex>

#include "dispatch/offload.hpp"
#include "util/threads.hpp"

namespace referrald {

namespace asio = boost::asio;

namespace {

// One easy handle per worker thread, kept across transfers for its
// connection cache; curl_easy_reset clears options but keeps connections.
struct ThreadHandle {
  CURL* handle = nullptr;
  ~ThreadHandle() {
    if (handle != nullptr) curl_easy_cleanup(handle);
  }
};

CURL* thread_handle() {
  thread_local ThreadHandle h;
  if (h.handle == nullptr) {
    h.handle = curl_easy_init();
  } else {
    curl_easy_reset(h.handle);
  }
  return h.handle;
}

}  // namespace

struct CurlPool::Impl {
  explicit Impl(unsigned threads) : size(std::max(threads, 1U)), pool(size) {
    name_pool_threads(pool, size, "rd-curl");
  }
  const unsigned size;  // before pool: it is made with this many
  asio::thread_pool pool;
};

void CurlPool::global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

CurlPool::CurlPool(unsigned threads) {
  global_init();
  impl_ = std::make_unique<Impl>(threads);
}

CurlPool::~CurlPool() { impl_->pool.join(); }

asio::awaitable<CurlResult> CurlPool::perform(Setup setup) {
  auto work = [setup = std::move(setup)]() -> asio::awaitable<CurlResult> {
    CURL* curl = thread_handle();
    if (curl == nullptr) {
      CurlResult result;
      result.code = CURLE_FAILED_INIT;
      result.error = "curl_easy_init failed";
      co_return result;
    }
    co_return perform_transfer(curl, setup);
  };
  co_return co_await offload(impl_->pool.get_executor(), std::move(work));
}

CurlResult perform_transfer(CURL* curl, const CurlPool::Setup& setup) {
  CurlResult result;
  char error[CURL_ERROR_SIZE] = {};
  setup(curl);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  result.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.response_code);
  result.error = error[0] != '\0' ? std::string(error) : std::string(curl_easy_strerror(result.code));
  // Nothing of the caller's may be referenced after this transfer.
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  return result;
}

}  // namespace referrald
