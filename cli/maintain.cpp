// referralctl's maintenance: purge (old referrals) and rekey (documents to
// the current encryption key), in short batches so that intake goes on.
#include "cli/commands.hpp"

#include <functional>
#include <ostream>
#include <thread>

#include "cli/common.hpp"
#include "store/attachments.hpp"
#include "store/office.hpp"
#include "store/payload.hpp"

namespace referrald::cli {

using store::ReadTransaction;
using store::WriteTransaction;

// ---- purge ----

int purge_command(Context& c, Duration older_than, bool dry_run) {
  if (older_than <= Duration::zero()) throw UsageError("--older-than must be longer than 0s");
  const TimePoint cutoff = c.now - older_than;
  auto db = open_store(c, !dry_run);
  const std::string actor = operator_name();
  const std::string detail_base = "older_than=" + format_duration(older_than);

  // The daemon's writer waits 2 s for the write lock, and SQLite's busy
  // handler retries at most 100 ms apart. So each transaction deletes
  // batches of 50 for at most ~100 ms, and the lock is then left free for
  // 100 ms: the daemon always gets its turn, and a year of referrals is
  // purged in minutes while intake goes on.
  constexpr int batch = 50;
  constexpr auto hold_at_most = std::chrono::milliseconds(100);
  constexpr auto pause = std::chrono::milliseconds(100);
  std::int64_t purged = 0;
  std::optional<store::PurgeCandidate> after;
  for (bool more = true; more;) {
    const auto started = std::chrono::steady_clock::now();
    std::optional<ReadTransaction> read;
    std::optional<WriteTransaction> write;
    if (dry_run) {
      read.emplace(*db);
    } else {
      write.emplace(*db);
    }
    do {
      const auto candidates = store::purge_candidates(*db, cutoff, after, batch);
      if (!dry_run) {
        for (const auto& r : candidates) {
          store::purge_referral(
              *db, r, actor, c.now,
              detail_base + " received=" + rfc3339(r.received_at) + " decision=" + std::string(to_string(r.decision)));
        }
      }
      purged += static_cast<std::int64_t>(candidates.size());
      more = static_cast<int>(candidates.size()) == batch;
      if (more) after = candidates.back();
    } while (more && (dry_run || std::chrono::steady_clock::now() - started < hold_at_most));
    if (write) write->commit();
    if (more && !dry_run) std::this_thread::sleep_for(pause);
  }
  std::int64_t kept = 0;
  {
    ReadTransaction read(*db);
    kept = store::count_received_before(*db, cutoff) - (dry_run ? purged : 0);
  }
  if (c.json) {
    print_json(c, json{{"older_than", format_duration(older_than)},
                       {"cutoff", rfc3339(cutoff)},
                       {"dry_run", dry_run},
                       {"purged", purged},
                       {"kept_unfinished", kept}});
    return exit_ok;
  }
  c.out << (dry_run ? "would purge " : "purged ") << plural(purged, "referral", "referrals") << " received before "
        << local_time(cutoff);
  if (kept > 0) {
    c.out << "; kept " << grouped(kept) << " with deliveries not yet final (see referralctl queue)";
  }
  if (!dry_run && purged > 0) c.out << "; recorded as " << actor;
  c.out << '\n';
  return exit_ok;
}

int rekey_command(Context& c) {
  const auto keys = c.settings.payload_keys;
  if (!keys) throw SettingsError("rekey needs the encryption keys: " + c.settings.why_no_payload_keys());
  auto db = open_store(c, true);
  // The bytes a document is rewritten over are zeroed, not left in free
  // space: after rekeying rows stored in the clear, no plain copy stays in
  // the file (backups and old WAL frames already copied elsewhere aside).
  store::zero_freed_space(*db);
  const std::string actor = operator_name();

  // Batches like purge's: each transaction holds the write lock ~100 ms
  // and then leaves it free for 100 ms, so the running daemon keeps
  // storing referrals while a million documents are re-encrypted.
  constexpr int batch = 100;
  const auto in_short_transactions = [&db](const std::function<bool()>& next_batch) {
    constexpr auto hold_at_most = std::chrono::milliseconds(100);
    constexpr auto pause = std::chrono::milliseconds(100);
    for (bool more = true; more;) {
      const auto started = std::chrono::steady_clock::now();
      WriteTransaction write(*db);
      do {
        more = next_batch();
      } while (more && std::chrono::steady_clock::now() - started < hold_at_most);
      write.commit();
      if (more) std::this_thread::sleep_for(pause);
    }
  };
  std::int64_t examined = 0, rekeyed = 0;
  std::vector<std::string> unreadable;
  std::optional<std::string> after;
  in_short_transactions([&] {
    auto b = store::rekey_referrals(*db, after, batch, actor, c.now);
    examined += b.examined;
    rekeyed += b.rekeyed;
    unreadable.insert(unreadable.end(), b.unreadable.begin(), b.unreadable.end());
    if (b.last_id) after = b.last_id;
    return b.examined == batch;
  });
  // Then the status notes, along their own primary key.
  std::int64_t notes_examined = 0, notes_rekeyed = 0;
  std::vector<std::string> unreadable_notes;
  std::int64_t after_note = 0;
  in_short_transactions([&] {
    auto b = store::rekey_status_notes(*db, after_note, batch, actor, c.now);
    notes_examined += b.examined;
    notes_rekeyed += b.rekeyed;
    unreadable_notes.insert(unreadable_notes.end(), b.unreadable.begin(), b.unreadable.end());
    if (b.last_id) after_note = *b.last_id;
    return b.examined == batch;
  });
  // Then the attached files (and their titles), a few at a time: a file
  // may be tens of megabytes.
  constexpr int file_batch = 4;
  std::int64_t files_examined = 0, files_rekeyed = 0;
  std::vector<std::string> unreadable_files;
  std::int64_t after_file = 0;
  in_short_transactions([&] {
    auto b = store::rekey_attachments(*db, after_file, file_batch, actor, c.now);
    files_examined += b.examined;
    files_rekeyed += b.rekeyed;
    unreadable_files.insert(unreadable_files.end(), b.unreadable.begin(), b.unreadable.end());
    if (b.last_id) after_file = *b.last_id;
    return b.examined == file_batch;
  });

  const std::string& key = keys->current().id;
  const auto count = [](const std::vector<std::string>& v) { return static_cast<std::int64_t>(v.size()); };
  if (c.json) {
    std::vector<std::string> all = unreadable;
    all.insert(all.end(), unreadable_notes.begin(), unreadable_notes.end());
    all.insert(all.end(), unreadable_files.begin(), unreadable_files.end());
    print_json(c, json{{"key", key},
                       {"examined", examined},
                       {"rekeyed", rekeyed},
                       {"notes_examined", notes_examined},
                       {"notes_rekeyed", notes_rekeyed},
                       {"attachments_examined", files_examined},
                       {"attachments_rekeyed", files_rekeyed},
                       {"unreadable", all}});
  } else {
    c.out << "rekeyed " << plural(rekeyed, "referral", "referrals") << " to key \"" << key << "\"";
    c.out << " (" << grouped(examined - rekeyed - count(unreadable)) << " already under it)";
    if (notes_examined > 0) {
      c.out << ", " << plural(notes_rekeyed, "status note", "status notes") << " ("
            << grouped(notes_examined - notes_rekeyed - count(unreadable_notes)) << " already under it)";
    }
    if (files_examined > 0) {
      c.out << ", " << plural(files_rekeyed, "attachment", "attachments") << " ("
            << grouped(files_examined - files_rekeyed - count(unreadable_files)) << " already under it)";
    }
    if (rekeyed + notes_rekeyed + files_rekeyed > 0) c.out << "; recorded as " << actor;
    c.out << '\n';
  }
  unreadable.insert(unreadable.end(), unreadable_notes.begin(), unreadable_notes.end());
  unreadable.insert(unreadable.end(), unreadable_files.begin(), unreadable_files.end());
  for (const auto& message : unreadable) c.err << "referralctl: " << message << '\n';
  if (!unreadable.empty()) {
    c.err << "referralctl: " << plural(count(unreadable), "document or note", "documents and notes")
          << " left as they were: put their keys back into storage.encryption_keys and run rekey again\n";
    return exit_undecryptable;
  }
  return exit_ok;
}

}  // namespace referrald::cli
