// Fax through a commercial HTTP fax API (Phaxio v2's shape by default; field
// names and JSON paths configurable): the referral PDF as multipart/form-data
// over HTTPS with "Idempotency-Key: <delivery identity>", then, with a
// status_url, polling the fax until it is final. Outcomes are classified
// here, once. The request, the status lists, the outcome table, how repeats
// are recognised and the target keys: docs/channels.md#http-fax.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/curl/http_client.hpp"
#include "adapters/document/fax_document.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"
#include "util/clock.hpp"

namespace referrald {

enum class FaxAuth { none, basic, header };

// What a provider's status value means.
enum class FaxStatus { delivered, pending, retry, failed, unknown };

struct HttpFaxSettings {
  std::string target;
  std::string url;
  FaxAuth auth = FaxAuth::none;
  std::string username;
  std::string header_name;
  std::string secret;                  // the password (basic) or the header's value (header)
  std::optional<std::string> problem;  // set: every send is misconfigured
  std::string to;
  std::string to_field = "to";
  std::string file_field = "file";
  std::string id_path = "data.id";
  std::string id_pointer = "/data/id";
  std::string success_path;  // empty: no success test
  std::string success_pointer;
  std::string status_url;  // empty: no polling
  std::string status_path;
  std::string status_pointer;
  std::vector<std::string> status_delivered{"success"};
  std::vector<std::string> status_pending{"queued", "pendingbatch", "inprogress"};
  std::vector<std::string> status_retry{"failure"};
  std::vector<std::string> status_failed{"partialsuccess"};
  Duration poll_interval{std::chrono::seconds(10)};
  std::string ca_file;
  Duration budget{std::chrono::seconds(54)};
};

// Reads and checks a [[target]] of type "http-fax"; throws std::runtime_error
// naming the target for settings that can never work.
HttpFaxSettings http_fax_settings(const TargetConfig& target);

// One named field of a multipart/form-data body.
struct FormPart {
  std::string name;
  std::string value;
  std::string filename;      // set: a file part
  std::string content_type;  // for a file part
};

// The body (CRLF line ends) for the boundary; the boundary must not occur in
// any value. Names and file names must be free of '"', CR and LF (checked
// when the settings are read).
std::string multipart_body(const std::string& boundary, const std::vector<FormPart>& parts);

// A boundary that occurs in none of the parts' values.
std::string multipart_boundary(const std::vector<FormPart>& parts);

// The submit's answer: delivered with external_id set when the provider
// took the fax and named its id; anything else is final for this attempt.
Outcome classify_fax_submit(const HttpFaxSettings& settings, const http_client::Reply& reply);

// The status value at status_path of a status reply; nullopt with the reason
// in *problem when the reply is not JSON or has no value there.
std::optional<std::string> fax_status_value(const HttpFaxSettings& settings, const std::string& body,
                                            std::string* problem);
FaxStatus classify_fax_status(const HttpFaxSettings& settings, const std::string& value);

// The status URL for a provider id ("{id}" replaced, percent-encoded).
std::string fax_status_url(const HttpFaxSettings& settings, const std::string& provider_id);

class HttpFaxAdapter final : public Adapter {
 public:
  HttpFaxAdapter(HttpFaxSettings settings, FaxRenderer render, CurlPool& curl);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

 private:
  // What an earlier attempt of a delivery left behind.
  struct Memory {
    std::optional<std::string> pending_id;  // submitted, not yet final: poll it
    std::string key;                        // the Idempotency-Key to submit under (empty: the identity)
  };

  boost::asio::awaitable<Outcome> submit(const Delivery& delivery, const std::string& key,
                                         std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<Outcome> poll(const Delivery& delivery, const std::string& provider_id,
                                       std::chrono::steady_clock::time_point deadline);
  http_client::Request base_request(std::chrono::steady_clock::time_point deadline) const;

  std::optional<Memory> recall(const std::string& identity);
  void remember(const std::string& identity, Memory memory);
  void forget(const std::string& identity);

  HttpFaxSettings settings_;
  FaxRenderer render_;
  CurlPool& curl_;
  std::mutex memory_mutex_;
  std::map<std::string, Memory> memory_;
};

}  // namespace referrald
