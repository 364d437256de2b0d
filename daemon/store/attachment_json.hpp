// One stored file as the API's GET of a referral and `referralctl show`
// describe it: what it is, never its bytes.
#pragma once

#include <nlohmann/json.hpp>

#include "store/attachments.hpp"

namespace referrald::store {

// In the caller's JSON type (nlohmann::ordered_json in the API and referralctl).
template <class Json>
Json describe_attachment(const AttachmentInfo& a) {
  return {{"position", a.position}, {"title", a.title}, {"content_type", a.content_type},
          {"bytes", a.bytes},       {"pages", a.pages}, {"sha256", a.sha256}};
}

}  // namespace referrald::store
