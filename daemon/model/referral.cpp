#include "model/referral.hpp"

#include <spdlog/spdlog.h>

#include "util/sealed_spool.hpp"

namespace referrald {

std::string_view to_string(Urgency u) noexcept {
  switch (u) {
    case Urgency::routine: return "routine";
    case Urgency::urgent: return "urgent";
    case Urgency::emergent: return "emergent";
  }
  return "routine";
}

std::string_view to_string(Decision d) noexcept {
  switch (d) {
    case Decision::accepted: return "accepted";
    case Decision::review: return "review";
    case Decision::declined: return "declined";
  }
  return "review";
}

std::optional<Urgency> parse_urgency(std::string_view s) noexcept {
  if (s == "routine") return Urgency::routine;
  if (s == "urgent") return Urgency::urgent;
  if (s == "emergent") return Urgency::emergent;
  return std::nullopt;
}

std::optional<Decision> parse_decision(std::string_view s) noexcept {
  if (s == "accepted") return Decision::accepted;
  if (s == "review") return Decision::review;
  if (s == "declined") return Decision::declined;
  return std::nullopt;
}

std::size_t Attachment::size() const { return spooled ? spooled->size() : data.size(); }

std::string Attachment::bytes() const { return spooled ? spooled->read_all() : data; }

bool Attachment::spool(const std::filesystem::path& directory) {
  if (spooled || directory.empty()) return spooled != nullptr;
  try {
    auto file = std::make_shared<SealedSpool>(directory);
    file->append(data);
    file->finish();
    spooled = std::move(file);
    std::string().swap(data);
    return true;
  } catch (const std::exception& e) {
    // Kept in memory: slower to let go of, never lost. No content in the message.
    spdlog::warn("intake.spool_failed error=\"{}\"", e.what());
    return false;
  }
}

void Attachment::unspool() {
  if (!spooled) return;
  data = spooled->read_all();
  spooled.reset();
}

}  // namespace referrald
