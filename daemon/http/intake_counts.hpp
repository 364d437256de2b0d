// referrald_intake_total: every referral stored, by the channel it came in
// on (the JSON API, the web form or FHIR) and its decision. The API and the form
// count into one of these; /metrics shows it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "model/referral.hpp"

namespace referrald::http {

enum class Channel { api, form, fhir };

class IntakeCounts {
 public:
  void count(Channel channel, Decision decision) noexcept {
    ++counts_[static_cast<std::size_t>(channel)][static_cast<std::size_t>(decision)];
  }

  std::string metrics() const {
    std::string out;
    out += "# HELP referrald_intake_total Referrals stored, by channel and decision.\n";
    out += "# TYPE referrald_intake_total counter\n";
    for (const auto channel : {Channel::api, Channel::form, Channel::fhir}) {
      for (const auto decision : {Decision::accepted, Decision::review, Decision::declined}) {
        out += "referrald_intake_total{channel=\"" + std::string(name(channel)) + "\",decision=\"" +
               std::string(to_string(decision)) + "\"} " +
               std::to_string(counts_[static_cast<std::size_t>(channel)][static_cast<std::size_t>(decision)].load()) +
               "\n";
      }
    }
    return out;
  }

 private:
  static std::string_view name(Channel channel) {
    switch (channel) {
      case Channel::api: return "api";
      case Channel::form: return "form";
      case Channel::fhir: return "fhir";
    }
    return "api";
  }

  std::array<std::array<std::atomic<std::uint64_t>, 3>, 3> counts_{};
};

}  // namespace referrald::http
