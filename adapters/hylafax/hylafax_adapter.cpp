#include "adapters/hylafax/hylafax_adapter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

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
using Clock = std::chrono::steady_clock;

namespace {

// How long HylaFAX keeps trying a job (JPARM LASTTIME, DDHHMM) and how often
// it dials: a referral fax that cannot get through in 3 hours is better
// reported than still queued tomorrow.
constexpr std::string_view job_lifetime = "000300";
constexpr int max_dials = 12;
constexpr std::size_t max_listing_bytes = 1 << 20;

// "JPARM DIALSTRING" for a JPARM, else the command word: what a message names.
std::string step_name(std::string_view line) {
  const auto first = line.find(' ');
  if (first != std::string_view::npos && line.substr(0, first) == "JPARM") {
    return std::string(line.substr(0, line.find(' ', first + 1)));
  }
  return std::string(line.substr(0, first));
}

std::string reply_summary(const Reply& r) { return std::to_string(r.code) + " " + printable(r.text, 160); }

// A negative (or unexpected) reply to `step`, classified once, here.
Outcome refused(std::string_view step, const Reply& r, OutcomeClass on_5xx = OutcomeClass::permanent) {
  const auto code = std::to_string(r.code);
  std::string message = std::string(step) + ": " + reply_summary(r);
  if (r.code == 530) return Outcome::misconfigured(std::move(message), code);  // not logged in / denied
  if (r.reply_class() == 5) return {on_5xx, code, std::move(message), std::nullopt};
  if (r.reply_class() == 4) return Outcome::transient(std::move(message), code);
  return Outcome::transient("unexpected reply to " + message, code);
}

// One client session with hfaxd. Every I/O step keeps to the session's
// deadline; a failed step returns the outcome to report.
class FaxSession {
 public:
  FaxSession(asio::any_io_executor executor, const HylafaxSettings& settings, const Delivery& delivery,
             Clock::time_point deadline)
      : executor_(executor),
        settings_(settings),
        delivery_(delivery),
        deadline_(deadline),
        control_(executor, protocol::Dialect::ftp),
        tag_(hylafax::job_tag(delivery.identity)) {}

  asio::awaitable<Outcome> run(const std::string& pdf) {
    if (auto failed = co_await open()) co_return std::move(*failed);
    if (delivery_.attempt > 1) {
      // A repeat: the previous attempt may have submitted the job before
      // its reply was lost. Find it by its tag instead of faxing twice.
      std::optional<hylafax::ListedJob> existing;
      if (auto failed = co_await find_tagged_job(existing)) co_return std::move(*failed);
      if (existing) {
        spdlog::info("hylafax.repeat_recognised id={} target={} job={} state={}", delivery_.referral_id,
                     delivery_.target, existing->id, hylafax::to_string(existing->state));
        if (!settings_.wait_until_done) {
          co_return Outcome::delivered("HylaFAX job " + existing->id + " was already submitted (" +
                                           std::string(hylafax::to_string(existing->state)) + ")",
                                       existing->id);
        }
        co_return co_await wait_for_job(existing->id);
      }
    }
    std::string job_id;
    if (auto failed = co_await submit(pdf, job_id)) co_return std::move(*failed);
    if (!settings_.wait_until_done) {
      co_return Outcome::delivered("queued as HylaFAX job " + job_id, job_id);
    }
    co_return co_await wait_for_job(job_id);
  }

  // Best effort: the outcome is already decided.
  asio::awaitable<void> quit() {
    if (!control_.is_open()) co_return;
    co_await control_.command("QUIT", std::chrono::seconds(2));
    control_.close();
  }

 private:
  protocol::Timeout step_timeout() const {
    const auto left = std::chrono::duration_cast<protocol::Timeout>(deadline_ - Clock::now());
    return std::clamp<protocol::Timeout>(left, protocol::Timeout(1), settings_.io_timeout);
  }

  Outcome io_failure(const Connection& c) const {
    return Outcome::transient(c.error().empty() ? std::string("connection failed") : c.error());
  }

  // Sends a command and accepts a reply for which `ok` holds; otherwise the
  // outcome to report is left in `failed`. Parameters are values: GCC 12
  // mishandles temporaries that live across a co_await.
  template <typename Accept>
  asio::awaitable<std::optional<Reply>> exchange(std::string line, Accept ok, std::optional<Outcome>& failed,
                                                 OutcomeClass on_5xx = OutcomeClass::permanent,
                                                 std::optional<std::string_view> shown = std::nullopt) {
    auto reply = co_await control_.command(line, step_timeout(), shown);
    if (!reply) {
      failed = io_failure(control_);
      co_return std::nullopt;
    }
    if (!ok(*reply)) {
      failed = refused(shown ? std::string(*shown) : step_name(line), *reply, on_5xx);
      co_return std::nullopt;
    }
    co_return reply;
  }

  asio::awaitable<std::optional<Outcome>> open() {
    if (!co_await control_.connect(settings_.host, settings_.port, step_timeout())) co_return io_failure(control_);
    auto greeting = co_await control_.read_reply(step_timeout());
    if (!greeting) co_return io_failure(control_);
    if (greeting->code != 220) {
      co_return Outcome::transient("server refused the session: " + reply_summary(*greeting),
                                   std::to_string(greeting->code));
    }
    std::optional<Outcome> failed;
    auto user = co_await exchange(
        "USER " + settings_.user, [](const Reply& r) { return r.code == 230 || r.code == 331; }, failed,
        OutcomeClass::misconfigured);
    if (!user) co_return failed;
    if (user->code == 331) {
      if (!settings_.password) {
        co_return Outcome::misconfigured("USER: the server asks for a password and the target has no password_file",
                                         "331");
      }
      auto pass = co_await exchange(
          "PASS " + *settings_.password, [](const Reply& r) { return r.code == 230; }, failed,
          OutcomeClass::misconfigured, std::string_view("PASS ****"));
      if (!pass) co_return failed;
    }
    co_return std::nullopt;
  }

  // Opens a passive data connection to the control connection's peer: the
  // port comes from the server, the address never does.
  asio::awaitable<std::optional<Outcome>> open_data(Connection& data) {
    std::optional<Outcome> failed;
    std::optional<std::uint16_t> port;
    if (control_.remote_is_v6()) {
      auto reply = co_await exchange("EPSV", [](const Reply& r) { return r.code == 229; }, failed);
      if (!reply) co_return failed;
      port = hylafax::parse_epsv_port(reply->text);
    } else {
      auto reply = co_await exchange("PASV", [](const Reply& r) { return r.code == 227; }, failed);
      if (!reply) co_return failed;
      port = hylafax::parse_pasv_port(reply->text);
    }
    if (!port) co_return Outcome::transient("passive mode: no port in the server's reply");
    if (!co_await data.connect(control_.remote_address(), *port, step_timeout())) co_return io_failure(data);
    co_return std::nullopt;
  }

  // Looks through sendq and doneq for a job with this delivery's tag that
  // has not failed. A server that refuses the listing (PublicJobQ false, an
  // old hfaxd) cannot be checked: the attempt goes on and faxes, as
  // at-least-once delivery allows. Only a broken connection is an outcome.
  asio::awaitable<std::optional<Outcome>> find_tagged_job(std::optional<hylafax::ListedJob>& found) {
    const auto skip = [this](const std::string& why) {
      spdlog::warn("hylafax.repeat_check_skipped id={} target={} reason=\"{}\"", delivery_.referral_id,
                   delivery_.target, why);
    };
    const std::string format = "JOBFMT \"" + std::string(hylafax::job_listing_format) + "\"";
    auto formatted = co_await control_.command(format, step_timeout());
    if (!formatted) co_return io_failure(control_);
    if (formatted->reply_class() != 2) {
      skip("JOBFMT: " + reply_summary(*formatted));
      co_return std::nullopt;
    }
    static constexpr std::array<const char*, 2> queues{"sendq", "doneq"};
    for (const char* queue : queues) {
      Connection data(executor_, protocol::Dialect::ftp);
      if (auto data_failed = co_await open_data(data)) co_return data_failed;
      const std::string list = std::string("LIST ") + queue;
      auto opened = co_await control_.command(list, step_timeout());
      if (!opened) co_return io_failure(control_);
      if (opened->code != 150 && opened->code != 125) {
        skip(list + ": " + reply_summary(*opened));
        co_return std::nullopt;
      }
      auto listing = co_await data.read_to_end(max_listing_bytes, step_timeout());
      if (!listing) co_return io_failure(data);
      auto done = co_await control_.read_reply(step_timeout());
      if (!done) co_return io_failure(control_);
      if (done->code != 226) {
        skip(list + ": " + reply_summary(*done));
        co_return std::nullopt;
      }
      for (auto& job : hylafax::parse_job_listing(*listing)) {
        if (job.tag != tag_ || job.state == hylafax::JobState::failed) continue;
        found = std::move(job);
        co_return std::nullopt;
      }
    }
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<Outcome>> submit(const std::string& pdf, std::string& job_id) {
    std::optional<Outcome> failed;
    const auto is_200 = [](const Reply& r) { return r.code == 200; };
    if (!co_await exchange("TYPE I", is_200, failed)) co_return failed;
    if (!co_await exchange("FORM PDF", is_200, failed)) co_return failed;

    // The document: STOT stores it under a name the server chooses.
    Connection data(executor_, protocol::Dialect::ftp);
    if (auto data_failed = co_await open_data(data)) co_return data_failed;
    auto stot = co_await exchange("STOT", [](const Reply& r) { return r.code == 150 || r.code == 125; }, failed);
    if (!stot) co_return failed;
    const auto file = hylafax::parse_stot_file(stot->text);
    if (!file) co_return Outcome::transient("STOT: no file name in \"" + reply_summary(*stot) + "\"");
    if (!co_await data.write(pdf, step_timeout())) co_return io_failure(data);
    data.close();
    auto stored = co_await control_.read_reply(step_timeout());
    if (!stored) co_return io_failure(control_);
    if (stored->code != 226) co_return refused("STOT", *stored);

    auto created = co_await exchange("JNEW", is_200, failed);
    if (!created) co_return failed;
    const auto id = hylafax::parse_job_id(created->text);
    if (!id) co_return Outcome::transient("JNEW: no job id in \"" + reply_summary(*created) + "\"");
    job_id = *id;

    const auto is_2xx = [](const Reply& r) { return r.reply_class() == 2; };
    const auto quoted = [](std::string_view v) { return "\"" + std::string(v) + "\""; };
    // Values from the configuration: a refusal means the target is wrong.
    std::vector<std::string> configured{"JPARM FROMUSER " + quoted(settings_.from_user),
                                        "JPARM DIALSTRING " + quoted(settings_.dial)};
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

    auto submitted = co_await control_.command("JSUBM", step_timeout());
    if (!submitted) co_return io_failure(control_);
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
      co_return refused("JSUBM (job " + job_id + ")", *submitted,
                        lost_a_value_we_set ? OutcomeClass::transient : OutcomeClass::permanent);
    }
    spdlog::info("hylafax.submitted id={} target={} job={} attempt={}", delivery_.referral_id, delivery_.target,
                 job_id, delivery_.attempt);
    co_return std::nullopt;
  }

  asio::awaitable<Outcome> wait_for_job(const std::string& job_id) {
    const auto started = Clock::now();
    asio::steady_timer timer(executor_);
    std::optional<Outcome> failed;
    while (true) {
      if (!co_await exchange("JOB " + job_id, [](const Reply& r) { return r.code == 200; }, failed)) {
        co_return std::move(*failed);
      }
      auto state_reply = co_await exchange("JPARM STATE", [](const Reply& r) { return r.code == 213; }, failed);
      if (!state_reply) co_return std::move(*failed);
      const auto state = hylafax::parse_job_state(state_reply->text);
      if (state == hylafax::JobState::done) {
        co_return Outcome::delivered("HylaFAX job " + job_id + " done", job_id);
      }
      if (state == hylafax::JobState::failed) {
        std::string why;
        auto status = co_await control_.command("JPARM STATUS", step_timeout());
        if (status && status->code == 213) why = ": " + printable(status->text, 160);
        co_return Outcome::permanent("HylaFAX job " + job_id + " failed" + why);
      }
      const auto next = Clock::now() + settings_.poll_interval;
      if (next + std::chrono::seconds(1) >= deadline_) {
        const auto waited = std::chrono::duration_cast<Duration>(Clock::now() - started);
        co_return Outcome::transient("HylaFAX job " + job_id + " still " +
                                     std::string(hylafax::to_string(state)) + " after " + format_duration(waited) +
                                     " (the next attempt resumes waiting for it)");
      }
      timer.expires_at(next);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::any_io_executor executor_;
  const HylafaxSettings& settings_;
  const Delivery& delivery_;
  Clock::time_point deadline_;
  Connection control_;
  std::string tag_;
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
  s.dial = text("dial", "");
  s.from_user = text("from_user", "referrald");
  if (target.get_string("notify_address") != nullptr) s.notify_address = text("notify_address", "");
  s.password = protocol::read_secret(target, "password_file");
  if (s.password && std::any_of(s.password->begin(), s.password->end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      })) {
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

HylafaxAdapter::HylafaxAdapter(HylafaxSettings settings, FaxDocumentRenderer render, asio::any_io_executor blocking)
    : settings_(std::move(settings)), render_(std::move(render)), blocking_(std::move(blocking)) {}

asio::awaitable<Outcome> HylafaxAdapter::send(const Delivery& delivery) {
  const auto deadline = Clock::now() + settings_.budget;  // rendering counts too
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
