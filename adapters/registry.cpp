#include "adapters/registry.hpp"

#include <stdexcept>
#include <string>

#include "adapters/smtp/smtp_adapter.hpp"
#include "adapters/document/referral_pdf.hpp"
#include "adapters/hylafax/hylafax_adapter.hpp"
#include "adapters/snpp/snpp_adapter.hpp"
#include "adapters/spool/spool_adapter.hpp"
#include "adapters/http_fax/http_fax_adapter.hpp"
#include "adapters/wctp/wctp_adapter.hpp"
#include "config/target_keys.hpp"

namespace referrald {

std::shared_ptr<Adapter> make_adapter(const TargetConfig& target, const AdapterContext& context) {
  // One line per type; each adapter validates what only it understands and
  // throws std::runtime_error naming the target.
  if (target.type == "spool") return std::make_shared<SpoolAdapter>(target, context.blocking_executor);
  // smtp:
  if (target.type == "smtp") return std::make_shared<SmtpAdapter>(target, *context.curl, *context.office);

  // hylafax, snpp:
  if (target.type == "hylafax") {
    // The fax is the referral document (cover sheet + referral), dated when it is sent.
    FaxDocumentRenderer render = [office = *context.office](const Delivery& d) {
      return render_referral_pdf(d, office, std::chrono::system_clock::now());
    };
    return std::make_shared<HylafaxAdapter>(hylafax_settings(target), std::move(render), context.blocking_executor);
  }
  if (target.type == "snpp") return std::make_shared<SnppAdapter>(snpp_settings(target, *context.office));

  // wctp, http-fax:
  if (target.type == "wctp") return std::make_shared<WctpAdapter>(wctp_settings(target, *context.office), *context.curl);
  if (target.type == "http-fax") {
    return std::make_shared<HttpFaxAdapter>(http_fax_settings(target), referral_fax_renderer(*context.office),
                                            *context.curl);
  }

  // The configuration loader refuses unknown types first; this guards a type
  // added to the key tables without an adapter here.
  std::string known;
  for (const auto& t : known_target_types()) known += (known.empty() ? "" : ", ") + t;
  throw std::runtime_error("target \"" + target.name + "\": unknown type \"" + target.type + "\" (known: " + known + ")");
}

}  // namespace referrald
