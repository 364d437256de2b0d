// The one seam between the dispatcher and the channels. An adapter is handed
// a delivery (a value) and returns an outcome; it never touches the store, the
// HTTP layer or another adapter. Outcomes are classified once, here.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/outcome.hpp"
#include "model/referral.hpp"

namespace referrald {

// What a channel needs to send one notification about one referral.
struct Delivery {
  std::int64_t id = 0;
  std::string identity;  // stable per (referral, target): Message-ID, job tags
  std::string referral_id;
  std::string target;
  int attempt = 1;  // 1 for the first try
  std::chrono::system_clock::time_point received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::vector<Reason> reasons;
  std::string document;  // the referral JSON (PHI: never logged)
};

using OutcomeClass = AttemptOutcome;

struct Outcome {
  OutcomeClass kind = OutcomeClass::transient;
  std::optional<std::string> code;  // protocol reply code, e.g. "451"
  std::string message;              // for operators; no PHI
  std::optional<std::string> external_id;

  static Outcome delivered(std::string message, std::optional<std::string> external_id = {}) {
    return {OutcomeClass::delivered, std::nullopt, std::move(message), std::move(external_id)};
  }
  static Outcome transient(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::transient, std::move(code), std::move(message), std::nullopt};
  }
  static Outcome permanent(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::permanent, std::move(code), std::move(message), std::nullopt};
  }
  static Outcome misconfigured(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::misconfigured, std::move(code), std::move(message), std::nullopt};
  }
};

class Adapter {
 public:
  virtual ~Adapter() = default;
  // Runs on the dispatcher's executor; must not block it (offload blocking
  // work) and must finish within the target's timeout or report transient.
  virtual boost::asio::awaitable<Outcome> send(const Delivery& delivery) = 0;
};

}  // namespace referrald
