// Builds the adapter a [[target]] names, by its type. Every type is
// registered here, explicitly: no static self-registration, no plug-ins.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <span>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"
#include "dispatch/dispatcher.hpp"
#include "util/clock.hpp"

namespace referrald {

class CurlPool;

struct AdapterContext {
  boost::asio::any_io_executor executor;           // where adapters run their I/O
  boost::asio::any_io_executor blocking_executor;  // a thread pool for blocking work (files)
  CurlPool* curl = nullptr;                        // libcurl transfers (smtp, http-fax, wctp)
  const OfficeConfig* office = nullptr;            // contacts for cover sheets and pages
  const Clock* clock = nullptr;                    // dates on messages and documents
};

// One channel: what the configuration loader checks (type, keys, check)
// and how its adapter is made.
struct Channel {
  TargetKind kind;
  std::shared_ptr<Adapter> (*make)(const TargetConfig& target, const AdapterContext& context);
  // recipient = "referrer": which of the referral's contacts it sends to
  // (none: the channel cannot reach a referrer).
  ReferrerContact referrer_contact = ReferrerContact::none;
  // Email and fax carry one-tap acknowledgement links; pages never do.
  bool ack_links = false;
  // Email and fax carry the referral's attached files (docs/attachments.md); pages never do.
  bool attachments = false;
};

// Every channel this build sends to, in the order messages list them:
// smtp, hylafax, http-fax, snpp, wctp, spool.
std::span<const Channel> channels();

// The channels as the configuration loader takes them (LoadOptions::target_kinds).
std::span<const TargetKind> target_kinds();

// Throws std::runtime_error for a type this build cannot send to, e.g.
// target "office-fax": unknown type "fax2" (known: smtp, hylafax, http-fax, snpp, wctp, spool)
std::shared_ptr<Adapter> make_adapter(const TargetConfig& target, const AdapterContext& context);

// The dispatcher's view of a target: its adapter (make_adapter), limits,
// whether it sends to the referrer and whether it carries acknowledgement links.
DispatchTarget make_dispatch_target(const TargetConfig& target, const AdapterContext& context);

}  // namespace referrald
