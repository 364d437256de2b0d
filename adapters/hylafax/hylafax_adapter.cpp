#include "adapters/hylafax/hylafax_adapter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

#include "adapters/hylafax/hfaxd_session.hpp"
#include "adapters/hylafax/hylafax_protocol.hpp"
#include "adapters/protocol/connection.hpp"
#include "adapters/protocol/settings.hpp"
#include "dispatch/offload.hpp"
#include "util/duration.hpp"

namespace referrald {

namespace asio = boost::asio;
using protocol::Connection;
using protocol::printable;
using protocol::Reply;
using Steady = std::chrono::steady_clock;  // not referrald::Clock (the dates on documents)

namespace {

// How long HylaFAX keeps trying a job (JPARM LASTTIME, DDHHMM) and how often
// it dials: a referral fax that cannot get through in 3 hours is better
// reported than still queued tomorrow.
constexpr std::string_view job_lifetime = "000300";
constexpr int max_dials = 12;

// One client session with hfaxd that submits a fax (or finds the one an
// earlier attempt submitted). Every I/O step keeps to the session's deadline;
// a failed step returns the outcome to report.
class FaxSession {
 public:
  FaxSession(asio::any_io_executor executor, const HylafaxSettings& settings, const Delivery& delivery,
             Steady::time_point deadline)
      : executor_(executor),
        settings_(settings),
        delivery_(delivery),
        session_(executor, login_of(settings), deadline),
        tag_(hylafax::job_tag(delivery.identity)),
        dial_(settings.to_referrer ? fax_dial_string(delivery.recipient.value_or("")) : settings.dial) {}

  asio::awaitable<Outcome> run(const std::string& pdf) {
    if (auto failed = co_await session_.open()) co_return std::move(*failed);
    if (delivery_.attempt > 1) {
      // A repeat: the previous attempt may have submitted the job before
      // its reply was lost. Find it by its tag instead of faxing twice. A
      // server that refuses the listing (PublicJobQ false, an old hfaxd)
      // cannot be checked: the attempt goes on and faxes, as at-least-once
      // delivery allows. Only a broken connection is an outcome.
      hylafax::JobSearch search;
      if (auto failed = co_await session_.find_job(hylafax::JobKey::tag, tag_, search)) co_return std::move(*failed);
      if (!search.skipped.empty()) {
        spdlog::warn("hylafax.repeat_check_skipped id={} target={} reason=\"{}\"", delivery_.referral_id,
                     delivery_.target, search.skipped);
      }
      if (search.job) {
        const auto& existing = *search.job;
        spdlog::info("hylafax.repeat_recognised id={} target={} job={} state={}", delivery_.referral_id,
                     delivery_.target, existing.id, hylafax::to_string(existing.state));
        if (!settings_.wait_until_done) {
          co_return Outcome::delivered("HylaFAX job " + existing.id + " was already submitted (" +
                                           std::string(hylafax::to_string(existing.state)) + ")",
                                       existing.id);
        }
        co_return co_await wait_for_job(existing.id);
      }
    }
    std::string job_id;
    if (auto failed = co_await submit(pdf, job_id)) co_return std::move(*failed);
    if (!settings_.wait_until_done) {
      co_return Outcome::delivered("queued as HylaFAX job " + job_id, job_id);
    }
    co_return co_await wait_for_job(job_id);
  }

  asio::awaitable<void> quit() { co_await session_.quit(); }

 private:
  static hylafax::Login login_of(const HylafaxSettings& s) {
    return {s.host, s.port, s.user, s.password, s.io_timeout};
  }

  Connection& control() { return session_.control(); }
  protocol::Timeout step_timeout() const { return session_.step_timeout(); }
  Outcome io_failure(const Connection& c) const { return session_.io_failure(c); }

  template <typename Accept>
  asio::awaitable<std::optional<Reply>> exchange(std::string line, Accept ok, std::optional<Outcome>& failed,
                                                 OutcomeClass on_5xx = OutcomeClass::permanent) {
    co_return co_await session_.exchange(std::move(line), ok, failed, on_5xx);
  }

  asio::awaitable<std::optional<Outcome>> submit(const std::string& pdf, std::string& job_id) {
    std::optional<Outcome> failed;
    const auto is_200 = [](const Reply& r) { return r.code == 200; };
    if (!co_await exchange("TYPE I", is_200, failed)) co_return failed;
    if (!co_await exchange("FORM PDF", is_200, failed)) co_return failed;

    // The document: STOT stores it under a name the server chooses. A 5xx
    // to STOT is the server's own storage failing, never this fax: hfaxd
    // answers 553 "Unable to open sequence number file docq/seqf; File
    // exists" when two sessions store the first documents of a new spool at
    // once (both find no seqf and race to create it), and the next attempt
    // goes through. A lasting fault (the spool's permissions) is retried
    // until the delivery's attempts run out, as any server fault is.
    Connection data(executor_, protocol::Dialect::ftp);
    if (auto data_failed = co_await session_.open_data(data)) co_return data_failed;
    auto stot = co_await exchange(
        "STOT", [](const Reply& r) { return r.code == 150 || r.code == 125; }, failed, OutcomeClass::transient);
    if (!stot) co_return failed;
    const auto file = hylafax::parse_stot_file(stot->text);
    if (!file) co_return Outcome::transient("STOT: no file name in \"" + protocol::reply_summary(*stot) + "\"");
    if (!co_await data.write(pdf, step_timeout())) co_return io_failure(data);
    data.close();
    auto stored = co_await control().read_reply(step_timeout());
    if (!stored) co_return io_failure(control());
    if (stored->code != 226) co_return hylafax::refused("STOT", *stored);

    auto created = co_await exchange("JNEW", is_200, failed);
    if (!created) co_return failed;
    const auto id = hylafax::parse_job_id(created->text);
    if (!id) co_return Outcome::transient("JNEW: no job id in \"" + protocol::reply_summary(*created) + "\"");
    job_id = *id;

    const auto is_2xx = [](const Reply& r) { return r.reply_class() == 2; };
    const auto quoted = [](std::string_view v) { return "\"" + std::string(v) + "\""; };
    // Values from the configuration: a refusal means the target is wrong.
    std::vector<std::string> configured{"JPARM FROMUSER " + quoted(settings_.from_user),
                                        "JPARM DIALSTRING " + quoted(dial_)};
    if (!settings_.notify_address.empty()) configured.push_back("JPARM NOTIFYADDR " + quoted(settings_.notify_address));
    for (const auto& line : configured) {
      if (!co_await exchange(line, is_2xx, failed, OutcomeClass::misconfigured)) co_return failed;
    }
    const std::vector<std::string> parameters{
        "JPARM NOTIFY \"none\"",  // referrald reports the outcome, not HylaFAX's mail
        "JPARM JOBINFO " + quoted(tag_),
        "JPARM LASTTIME " + std::string(job_lifetime),
        "JPARM MAXDIALS " + std::to_string(max_dials),
        "JPARM DOCUMENT " + *file,
    };
    for (const auto& line : parameters) {
      if (!co_await exchange(line, is_2xx, failed)) co_return failed;
    }

    auto submitted = co_await control().command("JSUBM", step_timeout());
    if (!submitted) co_return io_failure(control());
    if (submitted->code != 200) {
      // 450/460: the scheduler could not take it now. hfaxd 6.0.7 also
      // answers, now and then, "504 Cannot submit job N; null or missing
      // DIALSTRING parameter." although this session set DIALSTRING and was
      // answered 2xx (seen right after an outage, with several sessions
      // submitting at once): the server lost a value it had taken, and the
      // next attempt, with a new job, goes through. A job never submitted
      // leaves no file in sendq, so the repeat check cannot mistake it.
      const bool lost_a_value_we_set =
          submitted->code == 504 && submitted->text.find("DIALSTRING") != std::string::npos;
      co_return hylafax::refused("JSUBM (job " + job_id + ")", *submitted,
                                 lost_a_value_we_set ? OutcomeClass::transient : OutcomeClass::permanent);
    }
    spdlog::info("hylafax.submitted id={} target={} job={} attempt={}", delivery_.referral_id, delivery_.target, job_id,
                 delivery_.attempt);
    co_return std::nullopt;
  }

  asio::awaitable<Outcome> wait_for_job(const std::string& job_id) {
    const auto started = Steady::now();
    asio::steady_timer timer(executor_);
    std::optional<Outcome> failed;
    while (true) {
      if (!co_await exchange(
              "JOB " + job_id, [](const Reply& r) { return r.code == 200; }, failed)) {
        co_return std::move(*failed);
      }
      auto state_reply = co_await exchange(
          "JPARM STATE", [](const Reply& r) { return r.code == 213; }, failed);
      if (!state_reply) co_return std::move(*failed);
      const auto state = hylafax::parse_job_state(state_reply->text);
      if (state == hylafax::JobState::done) {
        co_return Outcome::delivered("HylaFAX job " + job_id + " done", job_id);
      }
      if (state == hylafax::JobState::failed) {
        std::string why;
        auto status = co_await control().command("JPARM STATUS", step_timeout());
        if (status && status->code == 213) why = ": " + printable(status->text, 160);
        co_return Outcome::permanent("HylaFAX job " + job_id + " failed" + why);
      }
      const auto next = Steady::now() + settings_.poll_interval;
      if (next + std::chrono::seconds(1) >= session_.deadline()) {
        const auto waited = std::chrono::duration_cast<Duration>(Steady::now() - started);
        co_return Outcome::transient("HylaFAX job " + job_id + " still " + std::string(hylafax::to_string(state)) +
                                     " after " + format_duration(waited) +
                                     " (the next attempt resumes waiting for it)");
      }
      timer.expires_at(next);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::any_io_executor executor_;
  const HylafaxSettings& settings_;
  const Delivery& delivery_;
  hylafax::ClientSession session_;
  std::string tag_;
  std::string dial_;  // the target's number, or the referrer's
};

}  // namespace

HylafaxSettings hylafax_settings(const TargetConfig& target) {
  HylafaxSettings s;
  const auto where = protocol::target_host_port(target, "host");
  s.host = where.host;
  s.port = where.port;
  const auto text = [&](const char* key, std::string fallback) {
    const std::string* value = target.get_string(key);
    std::string out = value != nullptr ? *value : std::move(fallback);
    if (!hylafax::quotable(out)) {
      throw target_error(target, std::string(key), "must not be empty or hold '\"', '\\' or control characters");
    }
    return out;
  };
  s.user = text("user", "");
  if (s.user.find(' ') != std::string::npos) throw target_error(target, "user", "must not hold spaces");
  s.to_referrer = target.to_referrer();
  if (target.to_referrer()) {
    if (target.get_string("dial") != nullptr) {
      throw target_error(target, "dial",
                         R"(not used with recipient = "referrer": each notice goes to the referral's fax number)");
    }
  } else if (target.get_string("dial") == nullptr) {
    throw target_error(target, "dial", R"(required (or recipient = "referrer"))");
  } else {
    s.dial = text("dial", "");
  }
  s.from_user = text("from_user", "referrald");
  if (target.get_string("notify_address") != nullptr) s.notify_address = text("notify_address", "");
  s.password = protocol::read_secret(target, "password_file");
  if (s.password && std::any_of(s.password->begin(), s.password->end(),
                                [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    throw target_error(target, "password_file", "the password must not hold control characters");
  }
  const std::string* done_when = target.get_string("done_when");
  s.wait_until_done = done_when != nullptr && *done_when == "done";
  if (auto interval = target.get_duration("poll_interval")) {
    if (*interval < std::chrono::seconds(1)) throw target_error(target, "poll_interval", "must be at least 1s");
    s.poll_interval = *interval;
  }
  s.budget = protocol::send_budget(target.timeout);
  s.io_timeout = std::min<Duration>(s.budget, std::chrono::seconds(30));
  return s;
}

HylafaxAdapter::HylafaxAdapter(HylafaxSettings settings, FaxRenderer render, asio::any_io_executor blocking)
    : settings_(std::move(settings)), render_(std::move(render)), blocking_(std::move(blocking)) {}

std::string fax_dial_string(std::string_view number) {
  std::string out;
  for (char c : number) {
    if (c >= '0' && c <= '9') out += c;
    if (c == '+' && out.empty()) out += c;
  }
  return out == "+" ? std::string() : out;
}

asio::awaitable<Outcome> HylafaxAdapter::send(const Delivery& delivery) {
  if (settings_.to_referrer && fax_dial_string(delivery.recipient.value_or("")).empty()) {
    co_return Outcome::permanent("the referrer's fax number has no digits to dial");
  }
  const auto deadline = Steady::now() + settings_.budget;  // rendering counts too
  // The PDF is CPU work (libharu): render it on the blocking pool.
  std::string pdf;
  try {
    auto work = [this, &delivery]() -> asio::awaitable<std::string> { co_return render_(delivery); };
    pdf = co_await offload(blocking_, std::move(work));
  } catch (const std::exception& e) {
    co_return Outcome::permanent(std::string("fax document: ") + e.what());
  }
  if (pdf.empty()) co_return Outcome::permanent("fax document: empty");

  FaxSession session(co_await asio::this_coro::executor, settings_, delivery, deadline);
  Outcome outcome = co_await session.run(pdf);
  co_await session.quit();
  co_return outcome;
}

}  // namespace referrald
