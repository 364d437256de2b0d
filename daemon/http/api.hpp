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
#include "intake/submission.hpp"
#include "store/writer.hpp"

namespace referrald::http {

// Extra lines for /metrics from parts the API does not know (dispatcher, server).
using MetricsSource = std::function<std::string()>;

class Api final : public Handler {
 public:
  Api(IntakeService& intake, store::Writer& writer, store::ReaderPool& readers,
      std::vector<Sha256> api_keys);

  boost::asio::awaitable<Response> handle(const Request& request) override;
  std::optional<Response> check(const Request& request) const override;
  Response rate_limited(const Request& request, long long retry_after) const override;

  void set_api_keys(std::vector<Sha256> keys);
  void add_metrics_source(MetricsSource source);

  // Another handler for paths the API does not serve (the web form).
  void set_fallback(Handler* fallback) { fallback_ = fallback; }

  // Stored referrals by channel; the form counts its own here too.
  IntakeCounts& intake_counts() { return intake_counts_; }

 private:
  bool serves(const Request& request) const;
  boost::asio::awaitable<Response> submit(const Request& request, const std::string& client);
  boost::asio::awaitable<Response> get_referral(const std::string& id, const std::string& client);
  Response health() const;
  boost::asio::awaitable<Response> metrics() const;
  // The caller's key fingerprint ("key:1a2b3c4d"), or empty when unauthorised.
  std::string authenticate(const Request& request) const;

  IntakeService& intake_;
  store::Writer& writer_;
  store::ReaderPool& readers_;
  mutable std::mutex keys_mutex_;
  std::vector<Sha256> api_keys_;
  std::vector<MetricsSource> metrics_sources_;
  Handler* fallback_ = nullptr;

  IntakeCounts intake_counts_;
};

}  // namespace referrald::http
