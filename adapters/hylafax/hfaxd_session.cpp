#include "adapters/hylafax/hfaxd_session.hpp"

#include <algorithm>
#include <array>

namespace referrald::hylafax {

namespace asio = boost::asio;
using protocol::Connection;
using protocol::printable;
using protocol::Reply;
using protocol::reply_summary;

namespace {

constexpr std::size_t max_listing_bytes = 1 << 20;

}  // namespace

std::string step_name(std::string_view line) {
  const auto first = line.find(' ');
  if (first != std::string_view::npos && line.substr(0, first) == "JPARM") {
    return std::string(line.substr(0, line.find(' ', first + 1)));
  }
  return std::string(line.substr(0, first));
}

Outcome refused(std::string_view step, const Reply& r, OutcomeClass on_5xx) {
  const auto code = std::to_string(r.code);
  std::string message = std::string(step) + ": " + reply_summary(r);
  if (r.code == 530) return Outcome::misconfigured(std::move(message), code);  // not logged in / denied
  if (r.reply_class() == 5) return {on_5xx, code, std::move(message), std::nullopt};
  if (r.reply_class() == 4) return Outcome::transient(std::move(message), code);
  return Outcome::transient("unexpected reply to " + message, code);
}

ClientSession::ClientSession(asio::any_io_executor executor, Login login, Clock::time_point deadline)
    : executor_(executor), login_(std::move(login)), deadline_(deadline), control_(executor, protocol::Dialect::ftp) {}

protocol::Timeout ClientSession::step_timeout() const {
  const auto left = std::chrono::duration_cast<protocol::Timeout>(deadline_ - Clock::now());
  return std::clamp<protocol::Timeout>(left, protocol::Timeout(1), login_.io_timeout);
}

Outcome ClientSession::io_failure(const Connection& c) const {
  return Outcome::transient(c.error().empty() ? std::string("connection failed") : c.error());
}

asio::awaitable<std::optional<Reply>> ClientSession::exchange(std::string line, Accept ok,
                                                              std::optional<Outcome>& failed, OutcomeClass on_5xx,
                                                              std::optional<std::string> shown) {
  std::optional<std::string_view> shown_view;
  if (shown) shown_view = *shown;
  auto reply = co_await control_.command(line, step_timeout(), shown_view);
  if (!reply) {
    failed = io_failure(control_);
    co_return std::nullopt;
  }
  if (!ok(*reply)) {
    failed = refused(shown ? *shown : step_name(line), *reply, on_5xx);
    co_return std::nullopt;
  }
  co_return reply;
}

asio::awaitable<std::optional<Outcome>> ClientSession::open() {
  if (!co_await control_.connect(login_.host, login_.port, step_timeout())) co_return io_failure(control_);
  auto greeting = co_await control_.read_reply(step_timeout());
  if (!greeting) co_return io_failure(control_);
  if (greeting->code != 220) {
    co_return Outcome::transient("server refused the session: " + reply_summary(*greeting),
                                 std::to_string(greeting->code));
  }
  std::optional<Outcome> failed;
  auto user = co_await exchange(
      "USER " + login_.user, [](const Reply& r) { return r.code == 230 || r.code == 331; }, failed,
      OutcomeClass::misconfigured);
  if (!user) co_return failed;
  if (user->code == 331) {
    if (!login_.password) {
      co_return Outcome::misconfigured("USER: the server asks for a password and the target has no password_file",
                                       "331");
    }
    auto pass = co_await exchange(
        "PASS " + *login_.password, [](const Reply& r) { return r.code == 230; }, failed, OutcomeClass::misconfigured,
        std::string("PASS ****"));
    if (!pass) co_return failed;
  }
  co_return std::nullopt;
}

asio::awaitable<std::optional<Outcome>> ClientSession::open_data(Connection& data) {
  std::optional<Outcome> failed;
  std::optional<std::uint16_t> port;
  if (control_.remote_is_v6()) {
    auto reply = co_await exchange(
        "EPSV", [](const Reply& r) { return r.code == 229; }, failed);
    if (!reply) co_return failed;
    port = parse_epsv_port(reply->text);
  } else {
    auto reply = co_await exchange(
        "PASV", [](const Reply& r) { return r.code == 227; }, failed);
    if (!reply) co_return failed;
    port = parse_pasv_port(reply->text);
  }
  if (!port) co_return Outcome::transient("passive mode: no port in the server's reply");
  if (!co_await data.connect(control_.remote_address(), *port, step_timeout())) co_return io_failure(data);
  co_return std::nullopt;
}

asio::awaitable<std::optional<Outcome>> ClientSession::find_job(JobKey key, std::string value, JobSearch& search) {
  const std::string_view format = key == JobKey::tag ? job_listing_format : sender_listing_format;
  const std::string jobfmt = "JOBFMT \"" + std::string(format) + "\"";
  auto formatted = co_await control_.command(jobfmt, step_timeout());
  if (!formatted) co_return io_failure(control_);
  if (formatted->reply_class() != 2) {
    search.skipped = "JOBFMT: " + reply_summary(*formatted);
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
      search.skipped = list + ": " + reply_summary(*opened);
      co_return std::nullopt;
    }
    auto listing = co_await data.read_to_end(max_listing_bytes, step_timeout());
    if (!listing) co_return io_failure(data);
    auto done = co_await control_.read_reply(step_timeout());
    if (!done) co_return io_failure(control_);
    if (done->code != 226) {
      search.skipped = list + ": " + reply_summary(*done);
      co_return std::nullopt;
    }
    for (auto& job : parse_job_listing(*listing)) {
      if (job.tag != value || job.state == JobState::failed) continue;
      if (job.state != JobState::suspended) {
        search.job = std::move(job);
        co_return std::nullopt;  // queued or finished: nothing better to find
      }
      if (!search.job) search.job = std::move(job);
    }
  }
  co_return std::nullopt;
}

asio::awaitable<void> ClientSession::quit() {
  if (!control_.is_open()) co_return;
  co_await control_.command("QUIT", std::chrono::seconds(2));
  control_.close();
}

}  // namespace referrald::hylafax
