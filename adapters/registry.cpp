#include "adapters/registry.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "adapters/document/fax_document.hpp"
#include "adapters/http_fax/http_fax_adapter.hpp"
#include "adapters/http_fax/http_fax_keys.hpp"
#include "adapters/hylafax/hylafax_adapter.hpp"
#include "adapters/hylafax/hylafax_keys.hpp"
#include "adapters/smtp/smtp_adapter.hpp"
#include "adapters/smtp/smtp_keys.hpp"
#include "adapters/snpp/snpp_adapter.hpp"
#include "adapters/snpp/snpp_keys.hpp"
#include "adapters/spool/spool_adapter.hpp"
#include "adapters/spool/spool_keys.hpp"
#include "adapters/wctp/wctp_adapter.hpp"
#include "adapters/wctp/wctp_keys.hpp"

namespace referrald {
namespace {

using Made = std::shared_ptr<Adapter>;

// One entry per type: its keys, the checks only it understands (each throws
// a TargetSettingError naming the setting), and how its adapter is made.
const Channel all_channels[] = {
    {{"smtp", smtp_keys, check_smtp_target},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<SmtpAdapter>(t, *c.curl, *c.office, *c.clock);
     },
     ReferrerContact::email,
     true,
     true},
    {{"hylafax", hylafax_keys, [](const TargetConfig& t, const OfficeConfig&) { hylafax_settings(t); }},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<HylafaxAdapter>(hylafax_settings(t), fax_renderer(*c.office, *c.clock, max_fax_pages(t)),
                                               c.blocking_executor);
     },
     ReferrerContact::fax,
     true,
     true},
    {{"http-fax", http_fax_keys, [](const TargetConfig& t, const OfficeConfig&) { http_fax_settings(t); }},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<HttpFaxAdapter>(http_fax_settings(t),
                                               fax_renderer(*c.office, *c.clock, max_fax_pages(t)), *c.curl);
     },
     ReferrerContact::none,
     true,
     true},
    {{"snpp", snpp_keys, [](const TargetConfig& t, const OfficeConfig& o) { snpp_settings(t, o); }},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<SnppAdapter>(snpp_settings(t, *c.office));
     }},
    {{"wctp", wctp_keys, [](const TargetConfig& t, const OfficeConfig& o) { wctp_settings(t, o); }},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<WctpAdapter>(wctp_settings(t, *c.office), *c.curl, *c.clock);
     }},
    {{"spool", spool_keys, nullptr},
     [](const TargetConfig& t, const AdapterContext& c) -> Made {
       return std::make_shared<SpoolAdapter>(t, c.blocking_executor);
     },
     ReferrerContact::email_or_fax,
     false},
};

}  // namespace

std::span<const Channel> channels() { return all_channels; }

std::span<const TargetKind> target_kinds() {
  static const std::vector<TargetKind> kinds = [] {
    std::vector<TargetKind> out;
    for (const auto& c : all_channels) out.push_back(c.kind);
    return out;
  }();
  return kinds;
}

namespace {

const Channel* find_channel(const std::string& type) {
  const auto found = std::find_if(std::begin(all_channels), std::end(all_channels),
                                  [&](const Channel& c) { return c.kind.type == type; });
  return found == std::end(all_channels) ? nullptr : &*found;
}

}  // namespace

DispatchTarget make_dispatch_target(const TargetConfig& target, const AdapterContext& context) {
  DispatchTarget out{target.name, make_adapter(target, context), target.concurrency, target.timeout};
  const Channel* channel = find_channel(target.type);
  if (channel != nullptr) {
    out.referrer = target.to_referrer() ? channel->referrer_contact : ReferrerContact::none;
    out.ack_links = channel->ack_links && !target.to_referrer();
    out.attachments = channel->attachments && !target.to_referrer();
  }
  return out;
}

std::shared_ptr<Adapter> make_adapter(const TargetConfig& target, const AdapterContext& context) {
  if (const Channel* channel = find_channel(target.type)) return channel->make(target, context);
  // The configuration loader refuses unknown types first; this guards a
  // configuration loaded without the channels.
  std::string known;
  for (const auto& c : all_channels) known += (known.empty() ? "" : ", ") + std::string(c.kind.type);
  throw std::runtime_error("target \"" + target.name + "\": unknown type \"" + target.type + "\" (known: " + known +
                           ")");
}

}  // namespace referrald
