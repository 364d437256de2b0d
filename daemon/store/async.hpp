// Awaiting the store from Asio code: a job runs on the writer (or a reader)
// thread and the coroutine resumes on its own executor when the outcome is
// final — after the commit, for writes. I/O threads never block on SQLite.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <string>
#include <utility>

#include "store/writer.hpp"

namespace referrald::store {

// Runs `job` in the next group commit; resumes with its JobResult.
inline boost::asio::awaitable<JobResult> async_write(Writer& writer, Writer::Job job) {
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(JobResult)>(
      [&writer, job = std::move(job)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        writer.submit(std::move(job), [shared](JobResult result) {
          auto ex = boost::asio::get_associated_executor(*shared);
          boost::asio::post(ex, [shared, result = std::move(result)]() mutable { (*shared)(std::move(result)); });
        });
      },
      boost::asio::use_awaitable);
}

// Runs a read-only `query` on a reader thread; resumes with an empty string on
// success or the failure message.
inline boost::asio::awaitable<std::string> async_read(ReaderPool& readers, ReaderPool::Query query) {
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::string)>(
      [&readers, query = std::move(query)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        auto complete = [shared](std::string error) {
          auto ex = boost::asio::get_associated_executor(*shared);
          boost::asio::post(ex, [shared, error = std::move(error)]() mutable { (*shared)(std::move(error)); });
        };
        readers.submit(
            [query = std::move(query), complete](Database& db) mutable {
              query(db);
              complete(std::string{});
            },
            complete);
      },
      boost::asio::use_awaitable);
}

}  // namespace referrald::store
