// WCTP 1.3 documents (docs/channels.md#wctp), pure: the enterprise
// wctp-SubmitRequest referrald sends and the wctp-Confirmation it gets back,
// both built and read with libxml2 (never by pasting text together), and
// what each answer means for the delivery.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/curl/http_client.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

inline constexpr const char* wctp_version = "wctp-dtd-v1r3";
inline constexpr const char* wctp_dtd_url = "http://dtd.wctp.org/wctp-dtd-v1r3.dtd";

struct WctpSubmit {
  std::string sender_id;
  std::optional<std::string> security_code;  // omitted when the host checks only senderID
  std::string message_id;                    // the delivery identity: the same on every attempt
  std::string recipient_id;
  std::chrono::system_clock::time_point submitted;  // written as UTC, "2025-01-31T14:05:00"
  std::string text;                                 // the page (wctp-Alphanumeric)
  bool high_priority = false;                       // deliveryPriority="HIGH" (else the default NORMAL)
};

// The UTF-8 document, in the DTD's element order:
//   wctp-Operation(wctpVersion) > wctp-SubmitRequest >
//     wctp-SubmitHeader(submitTimestamp) > wctp-Originator, wctp-MessageControl, wctp-Recipient
//     wctp-Payload > wctp-Alphanumeric
// Throws std::invalid_argument when a value is not valid UTF-8 or holds a
// control character XML 1.0 cannot carry (tab, CR and LF are escaped).
std::string build_wctp_submit(const WctpSubmit& submit);

// "2025-01-31T14:05:00" (UTC; WCTP's timestamps carry no zone).
std::string wctp_timestamp(std::chrono::system_clock::time_point t);

struct WctpConfirmation {
  bool success = false;   // wctp-Success, else wctp-Failure
  int code = 0;           // successCode / errorCode; 0 when not a number
  std::string code_text;  // the attribute as sent
  std::string text;       // successText / errorText, else the element's content
};

// Reads a wctp-Operation holding a wctp-Confirmation. nullopt with the reason
// in *problem for anything else (not XML, another operation, no code). The
// network is never consulted and no entity is expanded.
std::optional<WctpConfirmation> parse_wctp_confirmation(std::string_view xml, std::string* problem);

// What an answer means for the delivery, row by row in docs/channels.md#wctp:
// wctp-Success is delivered; a wrong senderID or securityCode (401, 402), a
// certificate that does not verify and refused HTTP access are misconfigured;
// a WCTP 6xx, and any answer the host may not have acted on, are transient;
// other failures are permanent.
Outcome classify_wctp_confirmation(const WctpConfirmation& confirmation);
Outcome classify_wctp_reply(const http_client::Reply& reply);

}  // namespace referrald
