// One session of HylaFAX's client protocol with hfaxd (port 4559): log in,
// open passive data connections, and look through the queues for a job an
// earlier attempt may have left there. The fax adapter submits its jobs in
// such a session; the pager adapter (SNPP with `hylafax = true`) opens one
// only to look for the page an earlier attempt may have queued.
// docs/hylafax.md says what each queue state means for a repeat.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/hylafax/hylafax_protocol.hpp"
#include "adapters/protocol/connection.hpp"
#include "dispatch/adapter.hpp"

namespace referrald::hylafax {

struct Login {
  std::string host;  // name or literal address, no brackets
  std::uint16_t port = 4559;
  std::string user;
  std::optional<std::string> password;
  protocol::Timeout io_timeout{std::chrono::seconds(30)};  // one connect, read or write at most
};

// Which field of a job identifies the delivery that made it.
enum class JobKey {
  tag,     // JPARM JOBINFO, the job file's "jobtag:" (the fax path)
  sender,  // SITE FROMUSER / JPARM FROMUSER, the job file's "sender:" (a page)
};

// What looking through the queues found. `job` is the best match: one that
// HylaFAX has queued or finished before one still being submitted
// (SUSPENDED); a FAILED job never matches. `skipped` says why the queues
// could not be read (the server refused the listing), empty when they were.
struct JobSearch {
  std::optional<ListedJob> job;
  std::string skipped;
};

class ClientSession {
 public:
  using Clock = std::chrono::steady_clock;
  ClientSession(boost::asio::any_io_executor executor, Login login, Clock::time_point deadline);

  // Connects and logs in; nullopt, or the outcome to report (connection
  // failures and 4xx transient, a refused login misconfigured).
  boost::asio::awaitable<std::optional<Outcome>> open();

  // Looks through sendq, then doneq, for jobs whose `key` is `value`. Only a
  // broken connection is an outcome; a refused listing is `skipped`.
  boost::asio::awaitable<std::optional<Outcome>> find_job(JobKey key, std::string value, JobSearch& search);

  // Sends a command and accepts a reply for which `ok` holds; otherwise the
  // outcome to report is left in `failed` (530 misconfigured, another 5xx
  // `on_5xx`, 4xx or a broken connection transient).
  using Accept = std::function<bool(const protocol::Reply&)>;
  boost::asio::awaitable<std::optional<protocol::Reply>> exchange(std::string line, Accept ok,
                                                                  std::optional<Outcome>& failed,
                                                                  OutcomeClass on_5xx = OutcomeClass::permanent,
                                                                  std::optional<std::string> shown = std::nullopt);

  // A passive data connection to the control connection's peer: the port
  // comes from the server, the address never does.
  boost::asio::awaitable<std::optional<Outcome>> open_data(protocol::Connection& data);

  // Best effort QUIT: the outcome is already decided.
  boost::asio::awaitable<void> quit();

  protocol::Connection& control() { return control_; }
  // What is left of the deadline, at most one I/O timeout, at least 1 ms.
  protocol::Timeout step_timeout() const;
  Outcome io_failure(const protocol::Connection& c) const;
  Clock::time_point deadline() const { return deadline_; }

 private:
  boost::asio::any_io_executor executor_;
  Login login_;
  Clock::time_point deadline_;
  protocol::Connection control_;
};

// "JPARM DIALSTRING" for a JPARM, else the command word: what a message names.
std::string step_name(std::string_view line);
// A negative (or unexpected) reply to `step`, classified once, here.
Outcome refused(std::string_view step, const protocol::Reply& r, OutcomeClass on_5xx = OutcomeClass::permanent);

}  // namespace referrald::hylafax
