#include "util/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace referrald {
namespace {

// "%*" prints the sd-daemon(3) priority prefix for the message's level.
class PriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* prefix = "<6>";
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: prefix = "<7>"; break;
      case spdlog::level::info: prefix = "<6>"; break;
      case spdlog::level::warn: prefix = "<4>"; break;
      case spdlog::level::err: prefix = "<3>"; break;
      case spdlog::level::critical: prefix = "<2>"; break;
      default: break;
    }
    dest.append(prefix, prefix + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<PriorityFlag>(); }
};

}  // namespace

LogTarget detect_log_target() noexcept {
  // systemd sets JOURNAL_STREAM to "device:inode" of the stream it connected.
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return LogTarget::console;
  struct stat st {};
  if (fstat(fileno(stderr), &st) != 0) return LogTarget::console;
  const std::string expected = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return expected == stream ? LogTarget::journal : LogTarget::console;
}

void setup_logging(std::string_view level, LogTarget target) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("referrald", sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (target == LogTarget::journal) {
    formatter->add_flag<PriorityFlag>('*').set_pattern("%*%v");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

void log_loop_error(const char* event, std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::critical("{} error=\"{}\"", event, ex.what());
  } catch (...) {
    spdlog::critical("{} error=\"unknown exception\"", event);
  }
}

}  // namespace referrald
