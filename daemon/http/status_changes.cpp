#include "http/status_changes.hpp"

#include <memory>

#include "office/ack_link.hpp"
#include "store/async.hpp"

namespace referrald::http {

namespace asio = boost::asio;

StatusChanges::StatusChanges(store::Writer& writer, const Clock& clock) : writer_(writer), clock_(clock) {}

void StatusChanges::set_notice_targets(NoticeTargets targets) {
  std::lock_guard lock(targets_mutex_);
  notice_targets_ = std::move(targets);
}

std::vector<std::string> StatusChanges::notice_targets(OfficeStatus to) const {
  std::lock_guard lock(targets_mutex_);
  return notice_targets_ ? notice_targets_(to) : std::vector<std::string>{};
}

asio::awaitable<ChangeOutcome> StatusChanges::change(std::string referral_id, OfficeStatus to,
                                                     std::optional<std::string> note, std::string actor) {
  auto outcome = std::make_shared<ChangeOutcome>();
  store::StatusChange change;
  change.referral_id = std::move(referral_id);
  change.to = to;
  change.actor = std::move(actor);
  change.via = store::StatusVia::api;
  change.note = std::move(note);
  change.at = clock_.now();
  change.notice_targets = notice_targets(to);
  store::Writer::Job job = [outcome, change = std::move(change)](store::Database& db) {
    const auto current = store::status_of(db, change.referral_id);
    if (!current) {
      outcome->kind = ChangeOutcome::Kind::not_found;
      return;
    }
    if (current->status == change.to) {
      // The same request again (its answer was lost): the last change is it.
      const auto history = store::status_history(db, change.referral_id);
      if (!history.empty() && history.back().to == change.to && history.back().actor == change.actor &&
          history.back().via == change.via && history.back().note == change.note) {
        outcome->kind = ChangeOutcome::Kind::replayed;
        outcome->result.from = history.back().from;
        outcome->result.change_id = history.back().id;
        return;
      }
    }
    outcome->result = store::change_status(db, change);
    outcome->kind = outcome->result.changed ? ChangeOutcome::Kind::changed : ChangeOutcome::Kind::refused;
  };
  const auto done = co_await store::async_write(writer_, std::move(job));
  if (done.status != store::JobStatus::committed) {
    outcome->kind = ChangeOutcome::Kind::unavailable;
  } else if (outcome->result.notices > 0 && deliveries_planned_) {
    deliveries_planned_();
  }
  co_return *outcome;
}

asio::awaitable<LinkOutcome> StatusChanges::acknowledge(std::string token) {
  auto outcome = std::make_shared<LinkOutcome>();
  auto notices = std::make_shared<int>(0);
  const auto now = clock_.now();
  const auto hash = ack_token_hash(token);
  auto targets = notice_targets(OfficeStatus::acknowledged);
  store::Writer::Job job = [outcome, notices, now, hash, targets = std::move(targets)](store::Database& db) {
    const auto found = store::find_ack_token(db, hash, now);
    outcome->referral_id = found.referral_id;
    switch (found.state) {
      case store::TokenState::unknown: outcome->kind = LinkOutcome::Kind::unknown; return;
      case store::TokenState::expired: outcome->kind = LinkOutcome::Kind::expired; return;
      case store::TokenState::used:
        outcome->kind = LinkOutcome::Kind::used;
        outcome->used_at = found.used_at;
        return;
      case store::TokenState::valid: break;
    }
    store::use_ack_token(db, hash, now);
    const auto current = store::status_of(db, found.referral_id);
    if (!current) {  // the token's row cascades with its referral: cannot happen, but never throw for it
      outcome->kind = LinkOutcome::Kind::unknown;
      return;
    }
    if (is_acknowledged(current->status)) {
      outcome->kind = LinkOutcome::Kind::already_acknowledged;
      outcome->status = current->status;
      store::audit(db, now, found.referral_id, std::nullopt, "link", "ack_link_used",
                   "already=" + std::string(to_string(current->status)));
      return;
    }
    store::StatusChange change;
    change.referral_id = found.referral_id;
    change.to = OfficeStatus::acknowledged;
    change.actor = "link";
    change.via = store::StatusVia::link;
    change.at = now;
    change.notice_targets = targets;
    const auto result = store::change_status(db, change);
    *notices = result.notices;
    outcome->kind = LinkOutcome::Kind::acknowledged;
    outcome->status = OfficeStatus::acknowledged;
  };
  const auto done = co_await store::async_write(writer_, std::move(job));
  if (done.status != store::JobStatus::committed) {
    outcome->kind = LinkOutcome::Kind::unavailable;
  } else if (*notices > 0 && deliveries_planned_) {
    deliveries_planned_();
  }
  co_return *outcome;
}

}  // namespace referrald::http
