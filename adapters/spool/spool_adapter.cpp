#include "adapters/spool/spool_adapter.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_set>
#include <utility>

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

// One delivery's file, or why it was not written: what write() does for
// each of a batch.
std::vector<Outcome> write_files(const std::filesystem::path& directory, const std::vector<const Delivery*>& batch,
                                 const std::vector<std::string>& texts) {
  std::vector<FileToReplace> files;
  files.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    files.push_back({batch[i]->identity + ".json", texts[i], "." + batch[i]->identity + ".tmp"});
  }
  const auto errors = replace_files(directory, files);
  std::vector<Outcome> outcomes;
  outcomes.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (errors[i]) {
      outcomes.push_back(io_failure(errors[i]->step(), errors[i]->code().value()));
    } else {
      outcomes.push_back(Outcome::delivered("written to " + (directory / files[i].name).string()));
    }
  }
  return outcomes;
}

}  // namespace

// Deliveries waiting to be written, and whether a write is under way on the
// blocking pool. Shared with that write, which may outlive the adapter by
// the moment between its last completion and its return.
struct SpoolAdapter::Queue {
  struct Waiting {
    const Delivery* delivery;  // the sender's, which waits for `done`
    std::function<void(std::exception_ptr, Outcome)> done;
  };

  Queue(std::filesystem::path dir, asio::any_io_executor pool) : directory(std::move(dir)), blocking(std::move(pool)) {}

  // As many as one write takes: the dispatcher's limit per target (64 at
  // most) keeps the queue shorter than this.
  static constexpr std::size_t max_batch = 256;

  const std::filesystem::path directory;
  const asio::any_io_executor blocking;
  std::mutex mutex;
  std::deque<Waiting> waiting;  // guarded by mutex
  bool writing = false;         // guarded by mutex: a drain is posted or running

  // Starts a drain on the blocking pool unless one is under way. Throws
  // nothing: with no memory to post it, what waits is taken by the drain a
  // later send starts.
  static void start(const std::shared_ptr<Queue>& self) noexcept {
    {
      std::lock_guard lock(self->mutex);
      if (std::exchange(self->writing, true)) return;
    }
    try {
      asio::post(self->blocking, [self] { drain(self); });
    } catch (...) {
      std::lock_guard lock(self->mutex);
      self->writing = false;
    }
  }

  // Moves the next batch from what waits into `batch` (empty on entry);
  // leaves it empty, and no drain under way any more, when nothing waits. A
  // delivery sent again while its first send still waits (its lease ran
  // out) goes in a later batch: one temporary file each. Whatever was moved
  // before a throw is in `batch`, for the caller to answer.
  void take(std::vector<Waiting>& batch) {
    std::lock_guard lock(mutex);
    batch.reserve(std::min(waiting.size(), max_batch));  // push_back below cannot throw
    std::unordered_set<std::string_view> identities;
    for (auto it = waiting.begin(); it != waiting.end() && batch.size() < max_batch;) {
      if (identities.insert(it->delivery->identity).second) {
        batch.push_back(std::move(*it));
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    if (batch.empty()) writing = false;
  }

  // Writes one batch and completes each of it (clearing its `done` once
  // called).
  void write(std::vector<Waiting>& batch) const {
    std::vector<const Delivery*> deliveries;
    std::vector<std::string> texts;
    std::vector<std::exception_ptr> failed(batch.size());
    std::vector<std::size_t> rendered;  // positions in batch
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        texts.push_back(render(*batch[i].delivery));
        deliveries.push_back(batch[i].delivery);
        rendered.push_back(i);
      } catch (...) {
        failed[i] = std::current_exception();
      }
    }
    std::vector<Outcome> outcomes(batch.size());
    std::exception_ptr write_failed;
    try {
      auto written = write_files(directory, deliveries, texts);
      for (std::size_t k = 0; k < rendered.size(); ++k) outcomes[rendered[k]] = std::move(written[k]);
    } catch (...) {
      write_failed = std::current_exception();  // no memory, say
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i].done(failed[i] ? failed[i] : write_failed, std::move(outcomes[i]));
      batch[i].done = nullptr;
    }
  }

  // On the blocking pool: writes what is waiting, batch after batch, until
  // nothing is. Whatever goes wrong (no memory), no sender is dropped: the
  // batch in hand learns the error (or, if even that cannot be posted,
  // waits again), and a new drain is started for what waits.
  static void drain(const std::shared_ptr<Queue>& self) {
    std::vector<Waiting> batch;
    try {
      for (self->take(batch); !batch.empty(); self->take(batch)) {
        self->write(batch);
        batch.clear();
      }
    } catch (...) {
      const auto failed = std::current_exception();
      std::lock_guard lock(self->mutex);
      for (Waiting& w : batch) {
        if (!w.done) continue;
        try {
          w.done(failed, Outcome{});
        } catch (...) {
          try {
            self->waiting.push_front(std::move(w));
          } catch (...) {
            // No memory even for that: this sender is lost to us. Its
            // delivery stays leased and is sent again when the lease ends.
          }
        }
      }
      self->writing = false;
    }
    if (!batch.empty()) start(self);
  }
};

SpoolAdapter::SpoolAdapter(const TargetConfig& target, asio::any_io_executor blocking)
    : blocking_(std::move(blocking)) {
  const auto* dir = target.get_string("directory");
  directory_ = dir != nullptr ? std::filesystem::path(*dir) : std::filesystem::path("spool");
  create_private_directories(directory_);
  std::error_code ec;
  std::filesystem::permissions(directory_, std::filesystem::perms::owner_all, ec);
  queue_ = std::make_shared<Queue>(directory_, blocking_);
}

std::string SpoolAdapter::render(const Delivery& delivery) {
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
  return doc.dump(2) + "\n";
}

std::vector<Outcome> SpoolAdapter::write(const std::vector<const Delivery*>& deliveries) const {
  std::vector<std::string> texts;
  texts.reserve(deliveries.size());
  for (const Delivery* d : deliveries) texts.push_back(render(*d));
  return write_files(directory_, deliveries, texts);
}

asio::awaitable<Outcome> SpoolAdapter::send(const Delivery& delivery) {
  // File I/O and the barrier happen on the blocking pool, never on an I/O
  // thread; the caller resumes on its own executor. Not cancellable: a
  // send the dispatcher's timeout gave up on still learns its outcome, as
  // with offload().
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, Outcome)>(
      [this, &delivery](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        {
          std::lock_guard lock(queue_->mutex);
          queue_->waiting.push_back({&delivery, [shared](std::exception_ptr e, Outcome o) {
                                       auto ex = asio::get_associated_executor(*shared);
                                       asio::post(
                                           ex, [shared, e, o = std::move(o)]() mutable { (*shared)(e, std::move(o)); });
                                     }});
        }
        Queue::start(queue_);
      },
      asio::use_awaitable);
}

}  // namespace referrald
