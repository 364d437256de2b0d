// Awaiting the intake from a request coroutine: the submission is planned
// and queued by IntakeService; the coroutine resumes on its own executor once
// the outcome is final (after the commit for a stored referral).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "intake/submission.hpp"

namespace referrald::http {

// The API's 202 body, which the store keeps for replays:
// {"id", "decision", "reasons":[{"code","message"}], "status_url"}.
std::string accepted_response(const std::string& id, const Eligibility& eligibility);

inline boost::asio::awaitable<SubmissionOutcome> async_submit(IntakeService& intake, Submission submission,
                                                              IntakeService::AcceptedReply reply) {
  namespace asio = boost::asio;
  return asio::async_initiate<decltype(asio::use_awaitable), void(SubmissionOutcome)>(
      [&intake, submission = std::move(submission), reply = std::move(reply)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        intake.submit(std::move(submission), reply, [shared, &intake](SubmissionOutcome outcome) {
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, &intake, outcome = std::move(outcome)]() mutable {
            if (outcome.stored_at) intake.stages().resume.record(std::chrono::steady_clock::now() - *outcome.stored_at);
            (*shared)(std::move(outcome));
          });
        });
      },
      asio::use_awaitable);
}

// Runs `work` where the intake does its file work (IntakeService::
// run_file_work: the daemon's blocking pool, not this I/O thread) and
// resumes the coroutine on its own executor with work's result (default-
// constructible); an exception from `work` is rethrown in the coroutine.
template <class Work>
boost::asio::awaitable<std::invoke_result_t<Work&>> async_file_work(IntakeService& intake, Work work) {
  namespace asio = boost::asio;
  using Result = std::invoke_result_t<Work&>;
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, Result)>(
      [&intake, work = std::move(work)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        intake.run_file_work([shared, work = std::move(work)]() mutable {
          std::exception_ptr failed;
          Result result{};
          try {
            result = work();
          } catch (...) {
            failed = std::current_exception();
          }
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex,
                     [shared, failed, result = std::move(result)]() mutable { (*shared)(failed, std::move(result)); });
        });
      },
      asio::use_awaitable);
}

}  // namespace referrald::http
