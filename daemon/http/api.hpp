// The JSON API, health and metrics: request in, response out.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "http/intake_counts.hpp"
#include "http/message.hpp"
#include "http/status_changes.hpp"
#include "intake/submission.hpp"
#include "store/writer.hpp"

namespace referrald::http {

// Extra lines for /metrics from parts the API does not know (dispatcher, server).
using MetricsSource = std::function<std::string()>;

// Who a request's bearer key is. A key in [http] api_keys submits referrals
// and reads its own; a key in [http] office_api_keys reads every referral
// and changes their status. A key in both lists may do both.
struct Caller {
  std::string id;  // "key:1a2b3c4d": the key's fingerprint (logs, actor, ownership)
  bool submits = false;
  bool office = false;
};

// A Content-Type of `media_type` (JSON); a charset parameter, if any, must say UTF-8.
bool is_json_content_type(std::string_view value, std::string_view media_type = "application/json");
// An Idempotency-Key referrald takes: 1 to 200 bytes of UTF-8 text without control characters.
bool is_idempotency_key(std::string_view key);

class Api final : public Handler {
 public:
  Api(IntakeService& intake, store::Writer& writer, store::ReaderPool& readers, StatusChanges& status_changes,
      std::vector<Sha256> api_keys, std::vector<Sha256> office_api_keys);

  boost::asio::awaitable<Response> handle(const Request& request) override;
  std::optional<Response> check(const Request& request) const override;
  Response rate_limited(const Request& request, long long retry_after) const override;
  Response too_large(const Request& request, std::size_t limit) const override;

  // Both lists at once (SIGHUP), so no request sees one new and one old.
  void set_api_keys(std::vector<Sha256> keys, std::vector<Sha256> office_keys);
  void add_metrics_source(MetricsSource source);
  // [http] max_body_bytes: the server lets a referral's body past it only
  // for its attachments (server.cpp); one without any is refused here (413).
  void set_plain_body_limit(std::size_t bytes) { plain_body_limit_ = bytes; }
  std::size_t plain_body_limit() const { return plain_body_limit_; }

  // Another handler for paths the API does not serve (the web form).
  void set_fallback(Handler* fallback) { fallback_ = fallback; }

  // Stored referrals by channel; the form and FHIR count their own here too.
  IntakeCounts& intake_counts() { return intake_counts_; }

  // The caller, or nullopt when the request carries no valid key (FHIR
  // takes the same keys).
  std::optional<Caller> authenticate(const Request& request) const;

 private:
  bool serves(const Request& request) const;
  boost::asio::awaitable<Response> submit(const Request& request, const Caller& caller);
  boost::asio::awaitable<Response> get_referral(const std::string& id, const Caller& caller);
  boost::asio::awaitable<Response> get_attachment(const std::string& id, int position, const Caller& caller);
  boost::asio::awaitable<Response> change_status(const Request& request, const std::string& id, const Caller& caller);
  Response health() const;
  boost::asio::awaitable<Response> metrics() const;

  IntakeService& intake_;
  store::Writer& writer_;
  store::ReaderPool& readers_;
  StatusChanges& status_changes_;
  mutable std::mutex keys_mutex_;
  std::vector<Sha256> api_keys_;
  std::vector<Sha256> office_api_keys_;
  std::vector<MetricsSource> metrics_sources_;
  Handler* fallback_ = nullptr;

  IntakeCounts intake_counts_;
  std::size_t plain_body_limit_ = static_cast<std::size_t>(-1);
};

}  // namespace referrald::http
