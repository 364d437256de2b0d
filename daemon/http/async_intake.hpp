// Awaiting the intake from a request coroutine: the submission is validated,
// decided and queued by IntakeService; the coroutine resumes on its own
// executor once the outcome is final (after the commit for a stored referral).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <utility>

#include "intake/submission.hpp"

namespace referrald::http {

inline boost::asio::awaitable<SubmissionOutcome> async_submit(IntakeService& intake, SubmissionRequest request) {
  namespace asio = boost::asio;
  return asio::async_initiate<decltype(asio::use_awaitable), void(SubmissionOutcome)>(
      [&intake, request = std::move(request)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        intake.submit(std::move(request), [shared](SubmissionOutcome outcome) {
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, outcome = std::move(outcome)]() mutable { (*shared)(std::move(outcome)); });
        });
      },
      asio::use_awaitable);
}

}  // namespace referrald::http
