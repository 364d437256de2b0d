// FHIR R4 over HTTP, base /fhir/r4 (docs/fhir.md): referrals in as a
// transaction Bundle, a message Bundle or a ServiceRequest, through the same
// intake as the JSON API (channel "fhir"); the ServiceRequest, Task and
// Patient back; the CapabilityStatement. The API's keys and scopes; every
// error an OperationOutcome with the status the JSON API would give.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "http/api.hpp"
#include "http/message.hpp"
#include "intake/submission.hpp"
#include "store/writer.hpp"

namespace referrald::http {

class Fhir final : public Handler {
 public:
  static constexpr std::string_view base_path = "/fhir/r4";

  // Keys, scopes and intake counts are the API's.
  Fhir(Api& api, IntakeService& intake, store::ReaderPool& readers);

  boost::asio::awaitable<Response> handle(const Request& request) override;
  std::optional<Response> check(const Request& request) const override;
  Response rate_limited(const Request& request, long long retry_after) const override;
  Response too_large(const Request& request, std::size_t limit) const override;

  // Another handler for paths below no FHIR base (the web form).
  void set_fallback(Handler* fallback) { fallback_ = fallback; }

 private:
  bool serves(const Request& request) const;
  boost::asio::awaitable<Response> submit(const Request& request, const Caller& caller);
  boost::asio::awaitable<Response> read(std::string_view type, const std::string& id, const Caller& caller);
  boost::asio::awaitable<Response> search_tasks(const Request& request, const Caller& caller);

  Api& api_;
  IntakeService& intake_;
  store::ReaderPool& readers_;
  Handler* fallback_ = nullptr;
};

}  // namespace referrald::http
