// Awaiting the intake from a request coroutine: the submission is planned
// and queued by IntakeService; the coroutine resumes on its own executor once
// the outcome is final (after the commit for a stored referral).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <string>
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
        intake.submit(std::move(submission), reply, [shared](SubmissionOutcome outcome) {
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, outcome = std::move(outcome)]() mutable { (*shared)(std::move(outcome)); });
        });
      },
      asio::use_awaitable);
}

}  // namespace referrald::http
