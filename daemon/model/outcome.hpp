// How one delivery attempt ended: what an adapter returns (dispatch/adapter.hpp)
// and what the store records. Here, so neither side includes the other.
#pragma once

#include <string_view>

namespace referrald {

enum class AttemptOutcome { delivered, transient, permanent, misconfigured };

constexpr std::string_view to_string(AttemptOutcome o) noexcept {
  switch (o) {
    case AttemptOutcome::delivered: return "delivered";
    case AttemptOutcome::transient: return "transient";
    case AttemptOutcome::permanent: return "permanent";
    case AttemptOutcome::misconfigured: return "misconfigured";
  }
  return "transient";
}

}  // namespace referrald
