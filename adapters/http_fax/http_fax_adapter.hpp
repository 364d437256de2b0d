// Fax through a commercial HTTP fax API (shared PROTOCOLS.md §4, the generic
// contract; Phaxio v2's shape by default): a multipart/form-data POST of the
// referral PDF and the destination number, over HTTPS on a CurlPool worker,
// the certificate verified (ca_file for a private CA). Plain http:// is
// refused except to a loopback address: the PDF is the referral itself.
//
// Target keys (config/target_keys.cpp):
//   url, to                 where to POST; the destination fax number
//   auth                    basic (username + password_file), header
//                           (header_name: <password_file's line>) or none;
//                           by default basic with a username, header with a
//                           header_name, else none
//   file_field, to_field    the form's field names (default "file", "to")
//   id_path                 where the provider's id is in the JSON reply,
//                           dotted (default "data.id")
//   success_path            optional: a JSON value that must be true
//                           (Phaxio: "success")
//   status_url, status_path optional polling: GET status_url (its "{id}"
//                           replaced) every poll_interval (default 10s), the
//                           value at status_path looked up in
//   status_delivered        (default ["success"])
//   status_pending          (default ["queued", "pendingbatch", "inprogress"])
//   status_retry            the call failed, send again (default ["failure"])
//   status_failed           never send again (default ["partialsuccess"])
//   ca_file, and the common timeout.
//
// Every submit carries "Idempotency-Key: <delivery identity>", so a submit
// repeated after a lost reply or a crash is recognisable at the provider.
// When the provider itself reports the call failed (status_retry), the next
// attempt must fax again, so it sends "<identity>.after-<n>" instead (n: the
// attempt that saw the failure).
//
// Polling keeps to a budget shorter than the target's timeout (by a tenth,
// 1 s to 10 s), and poll_interval must fit into it twice: with polling, give
// the target a timeout of several minutes. A fax still
// pending when it runs out is a transient outcome; the adapter remembers its
// id (in memory, per delivery identity), and the next attempt resumes polling
// instead of submitting again. After a restart that memory is gone and the
// Idempotency-Key is what keeps the repeat from faxing twice.
//
// Outcomes:
//   submit: transport failure (connect, DNS, timeout)   transient
//           certificate does not verify, bad ca_file     misconfigured
//           HTTP 5xx, 408, 429                           transient
//           HTTP 401, 403, 407, 404, 405, 3xx            misconfigured (credentials or URL)
//           HTTP other 4xx                               permanent (the provider refuses this fax)
//           HTTP 2xx, success_path not true              permanent
//           HTTP 2xx without an id at id_path            misconfigured (the fax may have gone:
//                                                        id_path is wrong; never resent)
//           HTTP 2xx with an id, no status_url           delivered (external id = the provider's id)
//   status: status_delivered -> delivered; status_failed -> permanent;
//           status_retry -> transient; pending, an unknown value, 5xx/429/
//           transport failures -> poll again until the budget runs out, then
//           transient; 401/403/404 -> misconfigured.
//   a document that cannot be rendered                   permanent
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/curl/http_client.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"
#include "util/clock.hpp"

namespace referrald {

// The fax's PDF for a delivery. May throw (DocumentError); runs on a CurlPool
// worker, never on an I/O thread.
using FaxPdfRenderer = std::function<std::string(const Delivery&)>;

// The referral document (document/referral_pdf: cover sheet + referral),
// dated when it is sent (by `clock`, which must outlive the renderer).
FaxPdfRenderer referral_fax_renderer(const OfficeConfig& office, const Clock& clock);

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
  HttpFaxAdapter(HttpFaxSettings settings, FaxPdfRenderer render, CurlPool& curl);
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
  FaxPdfRenderer render_;
  CurlPool& curl_;
  std::mutex memory_mutex_;
  std::map<std::string, Memory> memory_;
};

}  // namespace referrald
