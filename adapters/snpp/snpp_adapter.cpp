#include "adapters/snpp/snpp_adapter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <cctype>
#include <stdexcept>
#include <vector>

#include "adapters/hylafax/hfaxd_session.hpp"
#include "adapters/protocol/connection.hpp"
#include "adapters/document/page_text.hpp"
#include "adapters/protocol/settings.hpp"

namespace referrald {

namespace asio = boost::asio;
using protocol::Connection;
using protocol::printable;
using protocol::Reply;
using protocol::reply_summary;
using Clock = std::chrono::steady_clock;

namespace {

// What a negative reply to one step means for the delivery.
enum class Step { logi, site, page, mess, send };

Outcome classify(Step step, std::string_view what, const Reply& r) {
  const auto code = std::to_string(r.code);
  std::string message = std::string(what) + ": " + reply_summary(r);
  if (r.code == 530) return Outcome::misconfigured(std::move(message), code);  // LOGI required or refused
  if (step == Step::logi && r.reply_class() == 5) return Outcome::misconfigured(std::move(message), code);
  if (r.reply_class() == 4 || r.code == 554) return Outcome::transient(std::move(message), code);
  if (r.reply_class() == 5) return Outcome::permanent(std::move(message), code);
  return Outcome::transient("unexpected reply to " + message, code);
}

// "... jobid: 12." in hfaxd's reply to PAGE.
std::optional<std::string> job_id_in(std::string_view text) {
  const auto at = text.find("jobid:");
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t pos = at + 6;
  while (pos < text.size() && text[pos] == ' ') ++pos;
  const std::size_t start = pos;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  if (pos == start) return std::nullopt;
  return std::string(text.substr(start, pos - start));
}

// What looking for an earlier attempt's page found: the outcome when it is
// queued already, else a note for the attempt's message when the look could
// not settle it (empty when there was nothing to find).
struct EarlierPage {
  std::optional<Outcome> queued;
  std::string note;
};

// Lists hfaxd's queues by sender (the delivery's identity, SITE FROMUSER)
// within `deadline`. Any failure leaves the question open and the attempt
// pages: a pager that is never paged is worse than one paged twice.
asio::awaitable<EarlierPage> look_for_earlier_page(const SnppSettings& s, const Delivery& delivery,
                                                   Clock::time_point deadline) {
  EarlierPage out;
  hylafax::Login login{s.host, s.hylafax_port, s.login, s.password, s.io_timeout};
  hylafax::ClientSession session(co_await asio::this_coro::executor, std::move(login), deadline);
  hylafax::JobSearch search;
  std::optional<Outcome> failed = co_await session.open();
  if (!failed) failed = co_await session.find_job(hylafax::JobKey::sender, delivery.identity, search);
  co_await session.quit();
  if (failed) search.skipped = failed->message;
  if (!search.skipped.empty()) {
    spdlog::warn("snpp.repeat_check_skipped id={} target={} reason=\"{}\"", delivery.referral_id, delivery.target,
                 search.skipped);
    out.note = "earlier page not looked for: " + search.skipped;
  } else if (search.job && search.job->state == hylafax::JobState::suspended) {
    // Its SEND has not reached the scheduler (yet): hfaxd removes such a
    // job when its session ends, unless the scheduler takes it first.
    spdlog::warn("snpp.earlier_page_unsubmitted id={} target={} job={}", delivery.referral_id, delivery.target,
                 search.job->id);
    out.note = "earlier page job " + search.job->id + " still being submitted";
  } else if (search.job) {
    spdlog::info("snpp.repeat_recognised id={} target={} job={} state={}", delivery.referral_id, delivery.target,
                 search.job->id, hylafax::to_string(search.job->state));
    out.queued = Outcome::delivered("page job " + search.job->id + " was already queued by an earlier attempt (" +
                                        std::string(hylafax::to_string(search.job->state)) + ")",
                                    search.job->id);
  }
  co_return out;
}

bool single_token(std::string_view value) {
  return !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

}  // namespace

SnppSettings snpp_settings(const TargetConfig& target, const OfficeConfig& office) {
  SnppSettings s;
  const auto where = protocol::target_host_port(target, "host");
  s.host = where.host;
  s.port = where.port;
  if (const std::string* login = target.get_string("login")) {
    if (!single_token(*login)) throw target_error(target, "login: must be one word of printable ASCII");
    s.login = *login;
  }
  s.password = protocol::read_secret(target, "password_file");
  if (s.password && !single_token(*s.password)) {
    throw target_error(target, "password_file: SNPP sends the password as one word: no spaces or control characters");
  }
  if (s.password && s.login.empty()) throw target_error(target, "password_file: set login too (LOGI login password)");
  const std::string* pager = target.get_string("pager_id");
  if (pager == nullptr || !single_token(*pager)) {
    throw target_error(target, "pager_id: must be one word of printable ASCII");
  }
  s.pager_id = *pager;
  if (auto length = target.get_integer("max_message_length")) {
    if (*length < static_cast<std::int64_t>(min_page_length)) {
      throw target_error(target, "max_message_length: must be at least " + std::to_string(min_page_length) +
                                     " (a reference number and the urgency), got " + std::to_string(*length));
    }
    s.max_message_length = static_cast<std::size_t>(*length);
  }
  s.hylafax = target.get_bool("hylafax").value_or(false);
  if (auto port = target.get_integer("hylafax_port")) {
    if (!s.hylafax) throw target_error(target, "hylafax_port: only for hfaxd: set hylafax = true too");
    if (*port < 0 || *port > 65535) {
      throw target_error(target, "hylafax_port: must be 1..65535 (0: no repeat check), got " + std::to_string(*port));
    }
    s.hylafax_port = static_cast<std::uint16_t>(*port);
  }
  s.callback_phone = office.phone;
  s.budget = protocol::send_budget(target.timeout);
  s.io_timeout = std::min<Duration>(s.budget, std::chrono::seconds(30));
  return s;
}

SnppAdapter::SnppAdapter(SnppSettings settings) : settings_(std::move(settings)) {}

asio::awaitable<Outcome> SnppAdapter::send(const Delivery& delivery) {
  const auto deadline = Clock::now() + settings_.budget;
  const auto step_timeout = [&] {
    const auto left = std::chrono::duration_cast<protocol::Timeout>(deadline - Clock::now());
    return std::clamp<protocol::Timeout>(left, protocol::Timeout(1), settings_.io_timeout);
  };
  const auto io_failure = [](const Connection& c) {
    return Outcome::transient(c.error().empty() ? std::string("connection failed") : c.error());
  };

  // A repeat to HylaFAX: the page may be queued already. The look takes
  // at most half of the budget, so the page can still go out after it.
  std::string note;
  if (settings_.hylafax && settings_.hylafax_port != 0 && delivery.attempt > 1) {
    auto earlier = co_await look_for_earlier_page(settings_, delivery, Clock::now() + settings_.budget / 2);
    if (earlier.queued) co_return std::move(*earlier.queued);
    note = std::move(earlier.note);
  }
  const auto noted = [&note](Outcome o) {
    if (!note.empty()) o.message += " (" + note + ")";
    return o;
  };

  Connection conn(co_await asio::this_coro::executor, protocol::Dialect::snpp);
  if (!co_await conn.connect(settings_.host, settings_.port, step_timeout())) co_return noted(io_failure(conn));
  auto greeting = co_await conn.read_reply(step_timeout());
  if (!greeting) co_return noted(io_failure(conn));
  if (greeting->reply_class() != 2) {
    co_return noted(
        Outcome::transient("server refused the session: " + reply_summary(*greeting), std::to_string(greeting->code)));
  }

  Outcome outcome = Outcome::transient("not sent");
  std::optional<std::string> job_id;
  // One pass; `break` leaves with `outcome` set, then QUIT.
  do {
    if (!settings_.login.empty()) {
      std::string line = "LOGI " + settings_.login;
      std::string shown = line;
      if (settings_.password) {
        line += " " + *settings_.password;
        shown += " ****";
      }
      auto r = co_await conn.command(line, step_timeout(), std::string_view(shown));
      if (!r) {
        outcome = io_failure(conn);
        break;
      }
      if (r->code != 250) {
        outcome = classify(Step::logi, "LOGI", *r);
        break;
      }
    }
    if (settings_.hylafax) {
      // Options for the page that follows; a server that does not know one
      // (500) still pages, without it.
      const std::vector<std::string> site{"SITE FROMUSER " + delivery.identity, "SITE JQUEUE yes"};
      bool ok = true;
      for (const auto& line : site) {
        auto r = co_await conn.command(line, step_timeout());
        if (!r) {
          outcome = io_failure(conn);
          ok = false;
          break;
        }
        if (r->code != 250 && r->code != 500 && r->code != 502) {
          outcome = classify(Step::site, line.substr(0, line.find(' ', 5)), *r);
          ok = false;
          break;
        }
      }
      if (!ok) break;
    }
    const std::string page = "PAGE " + settings_.pager_id;
    auto paged = co_await conn.command(page, step_timeout());
    if (!paged) {
      outcome = io_failure(conn);
      break;
    }
    if (paged->code != 250) {
      outcome = classify(Step::page, "PAGE", *paged);
      break;
    }
    job_id = job_id_in(paged->text);

    const std::string text = page_text(delivery, settings_.callback_phone, settings_.max_message_length);
    const std::string mess = "MESS " + text;
    auto accepted = co_await conn.command(mess, step_timeout(), std::string_view("MESS"));
    if (!accepted) {
      outcome = io_failure(conn);
      break;
    }
    if (accepted->code != 250) {
      outcome = classify(Step::mess, "MESS", *accepted);
      break;
    }

    // Without JQUEUE, hfaxd answers SEND only when the call is over: give
    // SEND whatever is left of the budget, not one step's timeout.
    const auto left = std::chrono::duration_cast<protocol::Timeout>(deadline - Clock::now());
    auto sent = co_await conn.command("SEND", std::max<protocol::Timeout>(left, protocol::Timeout(1)));
    if (!sent) {
      outcome = io_failure(conn);
      break;
    }
    if (sent->code != 250) {
      outcome = classify(Step::send, "SEND", *sent);
      break;
    }
    outcome = Outcome::delivered("page accepted: " + reply_summary(*sent), job_id);
  } while (false);

  if (conn.is_open()) co_await conn.command("QUIT", std::chrono::seconds(2));
  co_return noted(std::move(outcome));
}

}  // namespace referrald
