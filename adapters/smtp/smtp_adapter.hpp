// Email to the referral office over SMTP with libcurl (on CurlPool's
// workers, which keep one connection per worker open between messages).
//
// TLS is the rule: smtps:// is implicit TLS; smtp:// requires STARTTLS
// (CURLUSESSL_ALL) unless the target says starttls = "none" and
// allow_plaintext = true. Certificates are verified (ca_file for a private
// CA). The message is a text part without patient data and the referral as a
// PDF attachment; its Message-ID is <delivery identity@referrald>, the same
// on every attempt, so a repeat after a crash can be recognised.
//
// Every recipient must be accepted (no CURLOPT_MAIL_RCPT_ALLOWFAILS): one
// refused address fails the whole delivery before DATA, so nobody gets a
// message that others did not, and a retry never doubles a message.
// The message, the dialogue and the target keys: docs/channels.md#smtp.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/smtp/mail_message.hpp"
#include "util/clock.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

// What libcurl reads during one SMTP transfer: the message and the envelope's
// recipients. Kept in the caller's frame until the transfer has ended.
struct SmtpTransfer {
  struct SlistDeleter {
    void operator()(curl_slist* list) const { curl_slist_free_all(list); }
  };
  MailStream message;  // CRLF, ready for DATA; read from the start by each transfer
  std::unique_ptr<curl_slist, SlistDeleter> recipients;
  std::vector<Mailbox> to;  // the envelope's recipients (SmtpAdapter::recipients); empty: the target's `to`
  // When the transfer must be over; unset: the adapter's whole send budget from now.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Why the message could not be read (a spool block that does not open):
  // the transfer was aborted before the message's end, so nothing was sent.
  std::optional<std::string> read_problem;
};

class SmtpAdapter final : public Adapter {
 public:
  // Throws std::runtime_error naming the target for settings that can never
  // work (a From or To that is not an address, "none" without
  // allow_plaintext). A password file that cannot be read is not thrown: the
  // daemon keeps taking referrals and every send reports misconfigured.
  // `clock` dates each message and its document.
  SmtpAdapter(const TargetConfig& target, CurlPool& curl, OfficeConfig office, const Clock& clock);

  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

  // The message for one attempt, for tests and send(): the referral PDF
  // rendered, each of the delivery's files still in its spool (MailStream
  // reads it as the message is sent). Throws DocumentError when the
  // referral cannot be rendered.
  MailMessage build_message(const Delivery& delivery, std::chrono::system_clock::time_point now) const;

  // Points `curl` at this target for one transfer of transfer.message from
  // its start (URL, TLS, login, envelope, timeouts, the read and seek
  // callbacks): the transfer send() performs. Also for the SMTP fuzz
  // target, which adds its own socket (fuzz/smtp_reply.cpp).
  void configure(CURL* curl, SmtpTransfer& transfer) const;

  // Set when the target cannot send at all (e.g. its password file is missing).
  const std::optional<std::string>& problem() const { return problem_; }

  // The message's recipients: the target's `to`, or with recipient =
  // "referrer" the delivery's recipient. Throws DocumentError when that is
  // not an address.
  std::vector<Mailbox> recipients(const Delivery& delivery) const;

 private:
  std::string target_name_;
  bool to_referrer_ = false;
  std::string url_;
  bool require_tls_ = true;
  std::string ca_file_;
  std::optional<std::string> username_;
  std::string password_;
  Mailbox from_;
  std::vector<Mailbox> to_;
  Duration budget_{std::chrono::seconds(54)};  // send_budget(target timeout)
  CurlPool& curl_;
  OfficeConfig office_;
  const Clock& clock_;
  std::optional<std::string> problem_;
};

// The outcome of one SMTP transfer (the table: docs/channels.md#smtp):
// OK → delivered; authentication, certificate, STARTTLS and TLS handshake
// failures → misconfigured; a 4xx reply → transient; a 5xx reply →
// permanent (530/535, authentication required or refused, → misconfigured);
// no reply code with connect, timeout or receive errors → transient.
Outcome classify_smtp_result(const CurlResult& result);

// The password file's first line (trailing CR/LF removed); nullopt with the
// reason in *problem when it cannot be read or is empty.
std::optional<std::string> read_secret_file(const std::string& path, std::string* problem);

}  // namespace referrald
