// Crash faults: kill -9 of the real referrald at random moments while
// referrals pour in through the API and mails go out to a real SMTP server
// (tests/peers/smtp_server.py: aiosmtpd, STARTTLS + AUTH, a Maildir) and to a
// spool directory, restarting it each time on the same database.
//
// What must hold afterwards, checked at the peer and in the database file:
// - every referral that got a 202 is stored, with its deliveries, and none
//   is stored twice for one Idempotency-Key (submitters retry with the same
//   key after a connection error, like an EHR does);
// - after every kill, before the restart, a fresh read-only connection finds
//   every referral acknowledged so far (the WAL is recovered) and
//   PRAGMA integrity_check says ok;
// - after the last restart the queue drains: every delivery `delivered`,
//   every mail's Message-ID at the peer, every spool file written;
// - a Message-ID at the peer more than once belongs to a delivery that was
//   'sending' (in flight) at one of the kills: at-least-once, and a repeat
//   only where the daemon could not know the send had finished.
//
// One program for CI and for the long run of the report, scaled by
// environment variables (defaults are CI's reduced run):
//   CRASH_REFERRALS (1000)  CRASH_KILLS (5)  CRASH_SUBMITTERS (4)
//   CRASH_SEED (random; printed)  CRASH_DRAIN_TIMEOUT_S (120)
//   REFERRALD_BINARY (another build of the daemon, e.g. Release)
// The kills fall at random points of the whole run's work (each 202 and each
// delivered delivery is one unit), so they hit intake and the drain alike
// however fast the build under test is.
// bench/run-crash runs the full run (10,000 referrals, 20 kills).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

long env_number(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::stol(v) : fallback;
}

double ms_since(steady::time_point start) {
  return std::chrono::duration<double, std::milli>(steady::now() - start).count();
}

struct CrashSettings {
  int referrals = static_cast<int>(env_number("CRASH_REFERRALS", 1000));
  int kills = static_cast<int>(env_number("CRASH_KILLS", 5));
  int submitters = static_cast<int>(env_number("CRASH_SUBMITTERS", 4));
  std::uint64_t seed = static_cast<std::uint64_t>(env_number("CRASH_SEED", std::random_device{}()));
  std::chrono::seconds drain_timeout{env_number("CRASH_DRAIN_TIMEOUT_S", 120)};
};

// What the write-ahead log holds at a kill: frames of the current generation
// (their salts match the header's) and how many of them follow the last
// commit frame: a transaction the kill cut off while it wrote its pages,
// which recovery must ignore. (File format: sqlite.org/fileformat2.html#walformat.)
struct WalTail {
  std::uint64_t frames = 0;
  std::uint64_t uncommitted = 0;
};

std::uint32_t big_endian(const std::string& bytes, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

WalTail inspect_wal(const fs::path& wal) {
  constexpr std::size_t header_bytes = 32, frame_header_bytes = 24;
  const std::string bytes = read_file(wal);
  WalTail tail;
  if (bytes.size() < header_bytes) return tail;
  const std::uint32_t page_size = big_endian(bytes, 8);
  const std::uint32_t salt1 = big_endian(bytes, 16), salt2 = big_endian(bytes, 20);
  for (std::size_t at = header_bytes; at + frame_header_bytes + page_size <= bytes.size();
       at += frame_header_bytes + page_size) {
    if (big_endian(bytes, at + 8) != salt1 || big_endian(bytes, at + 12) != salt2) break;
    ++tail.frames;
    const bool commit = big_endian(bytes, at + 4) != 0;  // database size after a commit; 0 otherwise
    tail.uncommitted = commit ? 0 : tail.uncommitted + 1;
  }
  return tail;
}

// Which of SQLite's WAL locks a process holds: POSIX locks on bytes of the
// -shm file (sqlite.org/walformat.html: byte 120 is the write lock, held for
// a whole write transaction; 121 the checkpoint lock), read from /proc/locks.
struct WalLocks {
  bool writing = false;
  bool checkpointing = false;
};

WalLocks wal_locks_of(pid_t pid, const fs::path& shm) {
  constexpr long write_lock = 120, checkpoint_lock = 121;
  struct stat st {};
  WalLocks held;
  if (::stat(shm.c_str(), &st) != 0) return held;
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    // "1: POSIX  ADVISORY  WRITE 18000 fe:00:10955126 120 120"; "->" marks a waiter.
    std::istringstream in(line);
    std::string number, kind, advisory, mode, device_inode;
    long owner = 0, start = 0;
    std::string end;
    if (!(in >> number >> kind) || kind == "->") continue;
    if (!(in >> advisory >> mode >> owner >> device_inode >> start >> end)) continue;
    const auto colon = device_inode.rfind(':');
    if (owner != pid || mode != "WRITE" || colon == std::string::npos ||
        std::stoull(device_inode.substr(colon + 1)) != st.st_ino) {
      continue;
    }
    const long last = end == "EOF" ? std::numeric_limits<long>::max() : std::stol(end);
    held.writing |= start <= write_lock && write_lock <= last;
    held.checkpointing |= start <= checkpoint_lock && checkpoint_lock <= last;
  }
  return held;
}

// Waits until every thread of `pid` has stopped (SIGSTOP is delivered
// asynchronously); bounded.
void wait_stopped(pid_t pid) {
  const auto deadline = steady::now() + 2s;
  const fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
  while (steady::now() < deadline) {
    bool all = true;
    std::error_code ec;
    for (const auto& task : fs::directory_iterator(tasks, ec)) {
      const std::string stat = read_file(task.path() / "stat");
      const auto paren = stat.rfind(')');
      const char state = paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
      all &= state == 'T' || state == 't';
    }
    if (all && !ec) return;
    std::this_thread::sleep_for(100us);
  }
}

// A distinct, valid referral per index: the name spells the index in letters.
std::string referral_body(int index) {
  std::string name = "Crash";
  for (int n = index + 1; n > 0; n /= 26) name += static_cast<char>('a' + n % 26);
  return referral_json(name, "2014-03-09");
}

// Everything the run observed, shared by the submitters and the killer.
struct Ledger {
  std::mutex mutex;
  std::map<std::string, std::string> id_by_key;  // Idempotency-Key -> the id its 202 named
  std::vector<std::string> key_conflicts;        // a key whose replay named another id
  std::vector<std::string> unexpected;           // answers other than 202, 503 or no answer
  std::atomic<int> answers_202{0}, replayed{0}, retried{0}, gave_up{0};
  double submitted_ms = 0;  // when the last submitter finished, since the run started

  void submitter_done(double at_ms) {
    std::lock_guard lock(mutex);
    submitted_ms = std::max(submitted_ms, at_ms);
  }

  void acknowledged(const std::string& key, const std::string& id, bool was_replayed) {
    ++answers_202;
    if (was_replayed) ++replayed;
    std::lock_guard lock(mutex);
    const auto [it, fresh] = id_by_key.emplace(key, id);
    if (!fresh && it->second != id) key_conflicts.push_back(key + ": " + it->second + " then " + id);
  }
  std::set<std::string> ids() {
    std::lock_guard lock(mutex);
    std::set<std::string> out;
    for (const auto& [key, id] : id_by_key) out.insert(id);
    return out;
  }
};

struct KillRecord {
  double at_ms = 0;                 // since the run started
  std::size_t acknowledged = 0;     // distinct 202'd referrals when the daemon was dead
  std::size_t missing = 0;          // of those, not found by a fresh connection
  std::set<std::string> in_flight;  // deliveries the dead daemon had claimed ('sending', lease running)
  std::string integrity;
  WalTail wal;
  WalLocks locks;       // what the daemon held when it died
  bool aimed = false;   // this kill waited for a moment inside a write transaction
  double ready_ms = 0;  // restart until /healthz answered 200
};

// SIGKILL, at the moment of a SIGSTOP (so what the daemon held can be read
// first). Aimed: only at a moment when the writer is inside a write
// transaction (a group commit, a claim or an outcome being recorded),
// looking again every few milliseconds for up to 3 s.
WalLocks kill_daemon(Daemon& daemon, const fs::path& shm, bool aim, std::mt19937_64& rng) {
  Process& process = *daemon.process();
  std::uniform_int_distribution<int> pause_us(0, 3000);
  const auto give_up = steady::now() + 3s;
  WalLocks locks;
  for (;;) {
    process.signal(SIGSTOP);
    wait_stopped(process.pid());
    locks = wal_locks_of(process.pid(), shm);
    if (!aim || locks.writing || steady::now() > give_up) break;
    process.signal(SIGCONT);
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us(rng)));
  }
  daemon.kill9();
  return locks;
}

std::string join(const std::vector<std::string>& items, std::size_t limit = 10) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += ", ... (" + std::to_string(items.size()) + " in all)";
  return out;
}

void submit_all(Daemon& daemon, const CrashSettings& settings, int first, Ledger& ledger, steady::time_point started,
                steady::time_point deadline) {
  HttpClient client;  // keep-alive, reconnecting after each kill
  for (int i = first; i < settings.referrals; i += settings.submitters) {
    const std::string key = "crash-" + std::to_string(settings.seed) + "-" + std::to_string(i);
    HttpRequest request;
    request.method = "POST";
    request.url = daemon.base_url() + "/api/v1/referrals";
    request.headers = {"Authorization: Bearer " + std::string(Daemon::api_token), "Content-Type: application/json",
                       "Idempotency-Key: " + key};
    request.body = referral_body(i);
    request.timeout = 30s;
    for (bool first_try = true;; first_try = false) {
      if (!first_try) ++ledger.retried;
      if (steady::now() > deadline) {
        ++ledger.gave_up;
        break;
      }
      const auto r = client.send(request);
      if (r.status == 202) {
        ledger.acknowledged(key, json::parse(r.body)["id"].get<std::string>(),
                            r.headers.count("idempotent-replayed") > 0);
        break;
      }
      if (r.status != 0 && r.status != 503) {
        std::lock_guard lock(ledger.mutex);
        ledger.unexpected.push_back(key + ": " + std::to_string(r.status) + " " + r.body);
        break;
      }
      // Connection refused or reset (the daemon is dead or restarting), or
      // 503: try again with the same key, as an EHR would.
      std::this_thread::sleep_for(20ms);
    }
  }
  ledger.submitter_done(ms_since(started));
}

std::string smtp_and_spool_config(const MailServer& server, const fs::path& secrets) {
  return "\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" + smtp_target(server, secrets) +
         "\n[[target]]\nname = \"office-spool\"\ntype = \"spool\"\ndirectory = \"spool/office-spool\"\n"
         "\n[[route]]\nnotify = [\"office-email\", \"office-spool\"]\n";
}

TEST(Crash, KillNineAtRandomMomentsLosesNoReferralAndNoDelivery) {
  const CrashSettings settings;
  std::cout << "crash.settings referrals=" << settings.referrals << " kills=" << settings.kills
            << " submitters=" << settings.submitters << " seed=" << settings.seed
            << " daemon=" << referrald_binary().string() << std::endl;
  RecordProperty("seed", std::to_string(settings.seed));

  MailServer server({});
  TempDir work;
  Daemon::Options options;
  options.with_default_targets = false;
  options.extra_http = "rate_limit_per_minute = 0\n";
  options.extra_config = smtp_and_spool_config(server, work / "secrets");
  Daemon daemon(options);
  daemon.start();
  const auto db = daemon.database();
  const fs::path wal = db.string() + "-wal";
  const fs::path shm = db.string() + "-shm";

  Ledger ledger;
  const auto started = steady::now();
  // Bounded: a run that cannot finish fails instead of hanging CI.
  const auto run_deadline = started + settings.drain_timeout + std::chrono::seconds(settings.referrals / 20);
  std::vector<std::thread> submitters;
  for (int s = 0; s < settings.submitters; ++s) {
    submitters.emplace_back([&, s] { submit_all(daemon, settings, s, ledger, started, run_deadline); });
  }

  // Where the kills fall: sorted random points of the run's work, N 202s
  // and 2N deliveries; then a random few milliseconds more.
  std::mt19937_64 rng(settings.seed);
  const long long work_units = 3LL * settings.referrals;
  std::vector<long long> kill_points;
  std::uniform_int_distribution<long long> point(work_units / 50, work_units - work_units / 50);
  for (int k = 0; k < settings.kills; ++k) kill_points.push_back(point(rng));
  std::sort(kill_points.begin(), kill_points.end());
  std::uniform_int_distribution<int> jitter_ms(0, 50);
  const auto progress = [&] {
    return static_cast<long long>(ledger.answers_202.load()) +
           count_rows(db, "SELECT n FROM tallies WHERE kind = 'state' AND value = 'delivered'");
  };
  constexpr auto least_uptime = 200ms;  // each run of the daemon does some work before it is killed

  std::vector<KillRecord> kills;
  for (int k = 0; k < settings.kills; ++k) {
    const auto up_since = steady::now();
    while (progress() < kill_points[static_cast<std::size_t>(k)] && steady::now() < run_deadline) {
      std::this_thread::sleep_for(10ms);
    }
    std::this_thread::sleep_until(std::max(steady::now(), up_since + least_uptime));
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter_ms(rng)));
    KillRecord record;
    record.at_ms = ms_since(started);
    // Every other kill waits for a write transaction: a kill -9 in the middle
    // of a group commit is the case durability hinges on, and purely random
    // moments may miss it in a short run.
    record.aimed = k % 2 == 0;
    record.locks = kill_daemon(daemon, shm, record.aimed, rng);
    // The daemon is dead: what the files hold now is what a restart finds.
    const auto acknowledged = ledger.ids();
    record.acknowledged = acknowledged.size();
    record.wal = inspect_wal(wal);
    const auto stored_ids = query_column(db, "SELECT id FROM referrals");
    const std::set<std::string> stored(stored_ids.begin(), stored_ids.end());
    for (const auto& id : acknowledged) record.missing += stored.count(id) == 0 ? 1U : 0U;
    // Claimed by the daemon that died: its lease runs past now. ('sending'
    // rows with an expired lease were released by a restart and wait
    // behind the backlog; nobody was sending them.)
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    for (auto& d : query_column(db,
                                "SELECT referral_id || '.' || target FROM deliveries "
                                "WHERE state = 'sending' AND lease_until_ms > " +
                                    std::to_string(now_ms))) {
      record.in_flight.insert(std::move(d));
    }
    record.integrity = query_column(db, "PRAGMA integrity_check").at(0);
    const auto restart = steady::now();
    daemon.start();
    record.ready_ms = ms_since(restart);
    std::cout << "crash.kill n=" << k + 1 << " at_ms=" << static_cast<long>(record.at_ms)
              << " acknowledged=" << record.acknowledged << " missing=" << record.missing
              << " in_flight=" << record.in_flight.size() << " wal_frames=" << record.wal.frames
              << " wal_uncommitted_frames=" << record.wal.uncommitted << " aimed=" << record.aimed
              << " in_write_transaction=" << record.locks.writing << " checkpointing=" << record.locks.checkpointing
              << " integrity=" << record.integrity << " ready_ms=" << static_cast<long>(record.ready_ms) << std::endl;
    kills.push_back(std::move(record));
  }
  for (auto& t : submitters) t.join();

  // Drain: every planned delivery delivered, within a bound.
  const auto drain_started = steady::now();
  const long long expected_deliveries = 2LL * settings.referrals;
  const auto drained = [&] {
    return count_rows(db, "SELECT count(*) FROM deliveries WHERE state = 'delivered'") >= expected_deliveries;
  };
  wait_until(drained, settings.drain_timeout);
  const double drain_ms = ms_since(drain_started);  // after the last kill and the last 202
  const double total_ms = ms_since(started);
  EXPECT_EQ(daemon.stop(), 0) << "a graceful stop after the run";

  // ---- What a user would check ----
  EXPECT_TRUE(ledger.unexpected.empty()) << join(ledger.unexpected);
  EXPECT_EQ(ledger.gave_up.load(), 0) << "submissions still unanswered at the deadline";
  EXPECT_TRUE(ledger.key_conflicts.empty()) << "a replay named another referral: " << join(ledger.key_conflicts);
  const auto acknowledged = ledger.ids();
  EXPECT_EQ(acknowledged.size(), static_cast<std::size_t>(settings.referrals));

  std::set<std::string> in_flight_ever;
  std::size_t in_flight_total = 0, kills_mid_commit = 0, kills_in_transaction = 0, kills_in_checkpoint = 0;
  for (const auto& k : kills) {
    EXPECT_EQ(k.missing, 0U) << "a 202'd referral was not in the file after the kill at " << k.at_ms << " ms";
    EXPECT_EQ(k.integrity, "ok") << "after the kill at " << k.at_ms << " ms";
    in_flight_total += k.in_flight.size();
    in_flight_ever.insert(k.in_flight.begin(), k.in_flight.end());
    kills_mid_commit += k.wal.uncommitted > 0 ? 1U : 0U;
    kills_in_transaction += k.locks.writing ? 1U : 0U;
    kills_in_checkpoint += k.locks.checkpointing ? 1U : 0U;
  }
  if (!kills.empty()) {
    EXPECT_GE(kills_in_transaction, 1U) << "no kill landed inside a write transaction: the run proves less";
  }
  EXPECT_EQ(query_column(db, "PRAGMA integrity_check").at(0), "ok");

  // Stored once each, and nothing else stored.
  const auto stored_ids = query_column(db, "SELECT id FROM referrals");
  const std::set<std::string> stored(stored_ids.begin(), stored_ids.end());
  EXPECT_EQ(stored, acknowledged);
  EXPECT_EQ(count_rows(db,
                       "SELECT count(*) FROM (SELECT idempotency_key FROM referrals GROUP BY client, "
                       "idempotency_key HAVING count(*) > 1 OR idempotency_key IS NULL)"),
            0);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM deliveries"), expected_deliveries);
  const auto undelivered = query_column(
      db, "SELECT referral_id || '.' || target || ' ' || state FROM deliveries WHERE state <> 'delivered'");
  EXPECT_TRUE(undelivered.empty()) << "not delivered within " << settings.drain_timeout.count()
                                   << " s: " << join(undelivered) << "\n"
                                   << daemon.log();

  // At the peers: every delivery, and repeats only of in-flight sends.
  const auto copies = server.message_ids();
  std::vector<std::string> missing_mail, unexplained_repeats, missing_spool;
  std::size_t repeats = 0, repeated_messages = 0;
  for (const auto& id : acknowledged) {
    const auto it = copies.find(id + ".office-email@referrald");
    if (it == copies.end()) {
      missing_mail.push_back(id);
      continue;
    }
    if (it->second > 1) {
      repeats += static_cast<std::size_t>(it->second - 1);
      ++repeated_messages;
      if (in_flight_ever.count(id + ".office-email") == 0) unexplained_repeats.push_back(it->first);
    }
    if (!fs::exists(daemon.spool("office-spool") / (id + ".office-spool.json"))) missing_spool.push_back(id);
  }
  EXPECT_TRUE(missing_mail.empty()) << "no mail at the peer for " << join(missing_mail);
  EXPECT_TRUE(missing_spool.empty()) << "no spool file for " << join(missing_spool);
  EXPECT_TRUE(unexplained_repeats.empty()) << "sent twice but not in flight at any kill: " << join(unexplained_repeats);
  EXPECT_EQ(copies.size(), acknowledged.size()) << "mails at the peer that belong to no acknowledged referral";

  std::vector<double> ready;
  for (const auto& k : kills) ready.push_back(k.ready_ms);
  std::sort(ready.begin(), ready.end());
  const auto ready_at = [&](double q) {
    return ready.empty() ? 0.0 : ready[static_cast<std::size_t>(q * static_cast<double>(ready.size() - 1))];
  };
  std::cout << "crash.summary referrals=" << settings.referrals << " kills=" << kills.size()
            << " acknowledged=" << acknowledged.size() << " answers_202=" << ledger.answers_202
            << " replayed_202=" << ledger.replayed << " retried_submissions=" << ledger.retried
            << " in_flight_at_kills=" << in_flight_total << " repeated_mails=" << repeats
            << " repeated_messages=" << repeated_messages << " kills_in_write_transaction=" << kills_in_transaction
            << " kills_in_checkpoint=" << kills_in_checkpoint
            << " kills_with_uncommitted_wal_frames=" << kills_mid_commit
            << " submit_ms=" << static_cast<long>(ledger.submitted_ms) << " drain_ms=" << static_cast<long>(drain_ms)
            << " total_ms=" << static_cast<long>(total_ms) << " ready_ms_min=" << static_cast<long>(ready_at(0))
            << " ready_ms_median=" << static_cast<long>(ready_at(0.5))
            << " ready_ms_max=" << static_cast<long>(ready_at(1)) << " seed=" << settings.seed << std::endl;
  RecordProperty("repeated_mails", static_cast<int>(repeats));
  RecordProperty("in_flight_at_kills", static_cast<int>(in_flight_total));
  RecordProperty("retried_submissions", ledger.retried.load());
}

}  // namespace
}  // namespace referrald::test
