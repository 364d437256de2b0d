#include "adapters/spool/spool_adapter.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "dispatch/offload.hpp"
#include "util/dates.hpp"
#include "util/private_dirs.hpp"
#include "util/private_files.hpp"
#include "model/reasons_json.hpp"

namespace referrald {

namespace asio = boost::asio;

namespace {

Outcome io_failure(const char* step, int error) {
  // A full or read-only spool directory clears up on its own or by an
  // operator: retry. Anything else is a misconfigured directory.
  std::string message = std::string(step) + ": " + std::strerror(error);
  if (error == ENOSPC || error == EDQUOT || error == EIO || error == EROFS || error == EINTR) {
    return Outcome::transient(std::move(message), std::to_string(error));
  }
  return Outcome::misconfigured(std::move(message), std::to_string(error));
}

}  // namespace

SpoolAdapter::SpoolAdapter(const TargetConfig& target, asio::any_io_executor blocking)
    : blocking_(std::move(blocking)) {
  const auto* dir = target.get_string("directory");
  directory_ = dir != nullptr ? std::filesystem::path(*dir) : std::filesystem::path("spool");
  create_private_directories(directory_);
  std::error_code ec;
  std::filesystem::permissions(directory_, std::filesystem::perms::owner_all, ec);
}

Outcome SpoolAdapter::write(const Delivery& delivery) const {
  nlohmann::ordered_json doc;
  doc["delivery"] = delivery.identity;
  doc["referral_id"] = delivery.referral_id;
  doc["target"] = delivery.target;
  doc["attempt"] = delivery.attempt;
  doc["received_at"] = format_utc_timestamp(delivery.received_at);
  doc["decision"] = std::string(to_string(delivery.decision));
  doc["urgency"] = std::string(to_string(delivery.urgency));
  doc["reasons"] = reasons_json<nlohmann::ordered_json>(delivery.reasons);
  doc["purpose"] = to_string(delivery.purpose);
  if (delivery.duplicate_of) doc["duplicate_of"] = *delivery.duplicate_of;
  if (delivery.escalation) {
    doc["escalation"] = {{"step", delivery.escalation->step},
                         {"after_seconds", delivery.escalation->after.count()},
                         {"waited_seconds", delivery.escalation->waited.count()}};
  }
  if (delivery.notice) {
    nlohmann::ordered_json notice;
    notice["status"] = std::string(to_string(delivery.notice->status));
    notice["words"] = std::string(plain_words(delivery.notice->status));
    if (delivery.notice->note) notice["note"] = *delivery.notice->note;
    doc["notice"] = std::move(notice);
  }
  if (delivery.recipient) doc["recipient"] = *delivery.recipient;
  if (!delivery.ack_link.empty()) doc["ack_link"] = delivery.ack_link;
  doc["referral"] = nlohmann::ordered_json::parse(delivery.document);
  const std::string text = doc.dump(2) + "\n";

  const auto final_path = directory_ / (delivery.identity + ".json");
  try {
    replace_file(final_path, text, "." + delivery.identity + ".tmp");
  } catch (const FileWriteError& e) {
    return io_failure(e.step(), e.code().value());
  }
  return Outcome::delivered("written to " + final_path.string());
}

asio::awaitable<Outcome> SpoolAdapter::send(const Delivery& delivery) {
  // File I/O and fsync happen on the blocking pool, never on an I/O thread;
  // the caller resumes on its own executor.
  auto work = [this, &delivery]() -> asio::awaitable<Outcome> { co_return write(delivery); };
  co_return co_await offload(blocking_, std::move(work));
}

}  // namespace referrald
