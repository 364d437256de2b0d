// libcurl transfers off the I/O threads: a bounded pool of worker threads,
// each keeping its own easy handle (and so its connection cache) between
// transfers, so consecutive sends to one server reuse the connection.
#pragma once

#include <curl/curl.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>

namespace referrald {

struct CurlResult {
  CURLcode code = CURLE_OK;
  long response_code = 0;  // CURLINFO_RESPONSE_CODE: last SMTP/HTTP reply code, 0 if none
  std::string error;       // CURLOPT_ERRORBUFFER, or curl_easy_strerror
};

class CurlPool {
 public:
  // Sets up the transfer on the worker's (reset) easy handle. Everything it
  // points libcurl at (slists, mime, buffers) must stay alive until the
  // awaitable completes: keep it in the caller's frame. It runs on the
  // worker thread, so it may also do the CPU work of preparing the body; if
  // it throws, no transfer happens and perform() rethrows the exception.
  using Setup = std::function<void(CURL*)>;

  explicit CurlPool(unsigned threads);
  ~CurlPool();  // waits for transfers in progress
  CurlPool(const CurlPool&) = delete;
  CurlPool& operator=(const CurlPool&) = delete;

  // Runs one transfer on a worker thread; the coroutine resumes on its own
  // executor. Transfers queue when every worker is busy.
  boost::asio::awaitable<CurlResult> perform(Setup setup);

  // curl_global_init, once per process (call before starting threads).
  static void global_init();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One transfer on `curl` in the calling thread, exactly as a worker runs it:
// setup, then perform, then the result. `curl` is a fresh or reset handle.
// Exposed so that the SMTP fuzz target (fuzz/smtp_reply.cpp) drives the
// adapter's transfer without a thread pool.
CurlResult perform_transfer(CURL* curl, const CurlPool::Setup& setup);

}  // namespace referrald
