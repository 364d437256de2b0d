// Fax through a HylaFAX server, speaking its client protocol natively
// (hfaxd, port 4559; see shared PROTOCOLS.md §3): log in, upload the referral
// PDF (STOT on a passive data connection), create a job (JNEW, JPARM …),
// submit it (JSUBM) and record HylaFAX's job id as the delivery's external id.
//
// Target keys (config/target_keys.cpp): host, user, password_file, dial,
// notify_address, from_user, done_when ("queued" | "done"), poll_interval,
// and the common timeout.
//
// Every job is tagged with the delivery's identity (JPARM JOBINFO, the qfile's
// "jobtag:"). A repeated attempt first lists sendq and doneq for a job with
// that tag: when one exists (and has not failed) it is taken instead of
// submitting the fax again, so a lost reply or a crash after JSUBM does not
// send the referral twice.
//
// done_when = "queued" (default): delivered once JSUBM is accepted.
// done_when = "done": the adapter then polls the job (JOB n, JPARM STATE)
// every poll_interval: DONE -> delivered, FAILED -> permanent. The whole
// send, polling included, keeps to a budget shorter than the target's
// timeout (by a tenth, at least 1 s and at most 10 s), so the adapter
// reports "still SLEEPING" itself and QUITs cleanly before the dispatcher's
// own deadline; the next attempt finds the job by its tag and resumes
// polling. With "done", give the target a timeout of several minutes.
//
// Outcomes: connection failures, timeouts, 4xx (JSUBM 450/460 included) ->
// transient; 530 and a missing password -> misconfigured; a 5xx to a JPARM
// carrying a configured value -> misconfigured; other 5xx -> permanent; a
// document that cannot be rendered -> permanent.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

// The fax document for a delivery (PDF bytes). May throw; runs on the
// blocking executor.
using FaxDocumentRenderer = std::function<std::string(const Delivery&)>;

struct HylafaxSettings {
  std::string host;  // name or literal address, no brackets
  std::uint16_t port = 4559;
  std::string user;
  std::optional<std::string> password;
  std::string dial;
  std::string notify_address;  // empty: the server's default (user@client host)
  std::string from_user;
  bool wait_until_done = false;
  Duration poll_interval{std::chrono::seconds(30)};
  Duration budget{std::chrono::seconds(54)};  // the whole send, under the target's timeout
  Duration io_timeout{std::chrono::seconds(30)};  // one connect, read or write at most
};

// Reads and checks a [[target]] of type "hylafax"; throws std::runtime_error
// naming the target (an unreadable password file, a value that cannot be
// quoted in a JPARM).
HylafaxSettings hylafax_settings(const TargetConfig& target);

class HylafaxAdapter final : public Adapter {
 public:
  HylafaxAdapter(HylafaxSettings settings, FaxDocumentRenderer render, boost::asio::any_io_executor blocking);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

 private:
  HylafaxSettings settings_;
  FaxDocumentRenderer render_;
  boost::asio::any_io_executor blocking_;
};

}  // namespace referrald
