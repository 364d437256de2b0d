// Fills a referrald database with N referrals (default 1,000,000) and their
// reasons, deliveries, attempts and audit rows, as two years of a busy
// referral office would leave them: for referralctl's benchmark
// (bench/run-cli). The schema comes from the store's own migrations.
//
//   fill_referrals FILE [COUNT]
//
// Distribution (deterministic, seed 42): received evenly over the last 730
// days; decisions 55% accepted, 33% review, 12% declined; urgency 80%
// routine, 15% urgent, 5% emergent; 30% arrive after hours; routes as in
// config/referrald.toml (accepted/review -> office-email + office-fax;
// urgent, emergent or after hours -> office-pager). Older than two days,
// 99.8% of deliveries are delivered, 0.15% dead, 0.05% cancelled; in the
// last three hours office-fax is failing (its deliveries wait in retry); a
// few deliveries are pending, sending or held. Documents are ~700-byte
// referrals like tests/data/asps-routine.json.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "store/audit_chain.hpp"
#include "store/database.hpp"
#include "store/store.hpp"
#include "util/ids.hpp"

using namespace referrald;
using namespace referrald::store;

namespace {

constexpr std::int64_t minute = 60'000, hour = 60 * minute, day = 24 * hour;

std::string document(std::mt19937_64& rng, const char* urgency) {
  static const char* given[] = {"Ava", "Mateo", "Liam", "Sofia", "Noah", "Mia", "Elijah", "Amara", "Kai", "Zoe"};
  static const char* family[] = {"Nguyen", "Ortiz", "Smith", "Okafor", "Haddad", "Kowalski", "Tanaka", "Brown"};
  std::uniform_int_distribution<int> pick(0, 7), year(2006, 2024), month(1, 12), dayd(1, 28);
  char birth[16];
  std::snprintf(birth, sizeof birth, "%04d-%02d-%02d", year(rng), month(rng), dayd(rng));
  return std::string(R"({"patient":{"given_name":")") + given[pick(rng)] + R"(","family_name":")" + family[pick(rng)] +
         R"(","birth_date":")" + birth +
         R"(","sex":"female","postal_code":"72401","guardian":{"name":"Linh Nguyen","phone":"+1 870 555 0142",)"
         R"("relationship":"mother"}},"diagnosis":{"name":"Alveolar soft part sarcoma","code":{"system":"icd-o-3",)"
         R"("value":"9581/3"},"diagnosed_on":"2026-10-02","pathology_confirmed":true},"referrer":{"name":)"
         R"("Dana Whitfield","credential":"MD","npi":"1234567893","organization":"Delta Pediatrics","phone":)"
         R"("+1 870 555 0100","fax":"+1 870 555 0101","email":"dwhitfield@example.org"},"urgency":")" +
         urgency + R"(","notes":"Painless mass in the left thigh for 5 months. MRI and pathology report available."})";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: fill_referrals FILE [COUNT]\n";
    return 2;
  }
  const std::filesystem::path file = argv[1];
  const std::int64_t count = argc > 2 ? std::stoll(argv[2]) : 1'000'000;
  std::filesystem::remove(file);
  std::filesystem::remove(file.string() + "-wal");
  std::filesystem::remove(file.string() + "-shm");

  Database db(file, OpenMode::read_write_create);
  migrate(db);
  db.exec("PRAGMA synchronous=OFF");
  db.exec("PRAGMA cache_size=-1000000");  // 1 GB: the indexes stay in memory while filling
  db.exec("BEGIN");

  Statement referral = db.prepare(
      "INSERT INTO referrals (id, received_ms, decision, urgency, disease, channel, client, idempotency_key, "
      "request_hash, document, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, ?10)");
  Statement reason =
      db.prepare("INSERT INTO referral_reasons (referral_id, position, code, message) VALUES (?1, 0, ?2, ?3)");
  Statement delivery = db.prepare(
      "INSERT INTO deliveries (referral_id, target, state, attempts, created_ms, next_attempt_ms, lease_until_ms, "
      "updated_ms, last_error, external_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)");
  Statement attempt = db.prepare(
      "INSERT INTO attempts (delivery_id, attempt, started_ms, finished_ms, outcome, code, message) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  Statement audit = db.prepare(
      "INSERT INTO audit (at_ms, referral_id, delivery_id, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");

  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::int64_t now = to_millis(std::chrono::system_clock::now());
  const std::int64_t span = 730 * day;
  const std::int64_t step = span / count;
  std::int64_t deliveries = 0, attempts = 0, audits = 0;

  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t received = now - span + i * step + static_cast<std::int64_t>(u(rng) * static_cast<double>(step));
    const double d = u(rng), g = u(rng);
    const char* decision = d < 0.55 ? "accepted" : d < 0.88 ? "review" : "declined";
    const char* urgency = g < 0.80 ? "routine" : g < 0.95 ? "urgent" : "emergent";
    const bool after_hours = u(rng) < 0.30;
    const bool unrecognised = std::string(decision) == "review" && u(rng) < 0.25;
    const char* code =
        std::string(decision) == "accepted" ? (u(rng) < 0.5 ? "WITHIN_SERVICE_AREA" : "OPEN_TRIAL_AVAILABLE")
        : std::string(decision) == "review" ? (unrecognised ? "DIAGNOSIS_UNRECOGNIZED" : "NO_OPEN_TRIAL")
                                            : (u(rng) < 0.5 ? "AGE_OVER_LIMIT" : "REFERRER_NOT_QUALIFIED");
    const std::string id = new_referral_id(from_millis(received));
    const std::string doc = document(rng, urgency);

    referral.bind(1, std::string_view(id))
        .bind(2, received)
        .bind(3, std::string_view(decision))
        .bind(4, std::string_view(urgency));
    if (unrecognised) {
      referral.bind_null(5);
    } else {
      referral.bind(5, std::string_view("asps"));
    }
    referral.bind(6, std::string_view(u(rng) < 0.7 ? "api" : "form"))
        .bind(7, std::string_view("key:f01d2474"))
        .bind(8, std::string_view("0000000000000000000000000000000000000000000000000000000000000000"))
        .bind_blob(9, doc)
        .bind(10, std::string_view(R"({"id":")" + id + R"(","decision":")" + decision + R"("})"));
    referral.run();
    reason.bind(1, std::string_view(id))
        .bind(2, std::string_view(code))
        .bind(3, std::string_view("A sentence for a person about why the decision was made, as the rules word it."));
    reason.run();

    std::vector<const char*> targets;
    if (std::string(decision) != "declined") {
      targets.push_back("office-email");
      targets.push_back("office-fax");
    }
    if (std::string(urgency) != "routine" || after_hours) targets.push_back("office-pager");

    audit.bind(1, received)
        .bind(2, std::string_view(id))
        .bind_null(3)
        .bind(4, std::string_view("referrald"))
        .bind(5, std::string_view("received"))
        .bind(6, std::string_view(std::string("decision=") + decision + " targets=" + std::to_string(targets.size())));
    audit.run();
    ++audits;

    const std::int64_t age = now - received;
    for (const char* target : targets) {
      const bool fax = std::string(target) == "office-fax";
      std::string state = "delivered";
      int tries = u(rng) < 0.03 ? 2 : 1;
      const double r = u(rng);
      if (age < 3 * hour && fax) {
        state = "retry";  // the fax line has been busy for three hours
        tries = 1 + static_cast<int>(age / (40 * minute));
      } else if (age < 2 * minute) {
        state = r < 0.7 ? "pending" : "sending";
        tries = state == "sending" ? 1 : 0;
      } else if (age < 2 * day && r < 0.01) {
        state = "held";
      } else if (r < 0.0015) {
        state = "dead";
        tries = 3;
      } else if (r < 0.002) {
        state = "cancelled";
      }
      const std::int64_t finished = received + 1500 + tries * 30'000;
      const std::int64_t next = state == "retry" ? now + 5 * minute : received;
      delivery.bind(1, std::string_view(id))
          .bind(2, std::string_view(target))
          .bind(3, std::string_view(state))
          .bind(4, std::int64_t{tries})
          .bind(5, received)
          .bind(6, next);
      if (state == "sending") {
        delivery.bind(7, now + 5 * minute);
      } else {
        delivery.bind_null(7);
      }
      delivery.bind(8, std::min(finished, now));
      if (state == "retry" || state == "dead") {
        delivery.bind(9, std::string_view("421 line busy"));
      } else {
        delivery.bind_null(9);
      }
      delivery.run();
      const std::int64_t delivery_id = db.last_insert_rowid();
      ++deliveries;

      for (int a = 1; a <= tries && state != "sending"; ++a) {
        const bool last = a == tries;
        const bool ok = last && state == "delivered";
        const std::int64_t at = std::min(received + 1000 + (a - 1) * 30'000, now);
        attempt.bind(1, delivery_id)
            .bind(2, std::int64_t{a})
            .bind(3, at - 500)
            .bind(4, at)
            .bind(5, std::string_view(ok ? "delivered" : "transient"));
        if (ok) {
          attempt.bind_null(6).bind(7, std::string_view("250 2.0.0 queued"));
        } else {
          attempt.bind(6, std::string_view("421")).bind(7, std::string_view("line busy"));
        }
        attempt.run();
        ++attempts;
        audit.bind(1, at)
            .bind(2, std::string_view(id))
            .bind(3, delivery_id)
            .bind(4, std::string_view("referrald"))
            .bind(5, std::string_view(ok                          ? "delivered"
                                      : (last && state == "dead") ? "dead"
                                                                  : "retry"))
            .bind(6, std::string_view(std::string("target=") + target + " attempt=" + std::to_string(a)));
        audit.run();
        ++audits;
      }
    }
    if ((i + 1) % 100'000 == 0) std::cerr << "  " << (i + 1) << " referrals\n";
  }
  // The rows above skip the chain for speed; give them their hashes in one
  // pass, so `referralctl audit verify` holds on the filled database too.
  chain_unhashed_audit_rows(db);
  db.exec("COMMIT");
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  std::cout << count << " referrals, " << deliveries << " deliveries, " << attempts << " attempts, " << audits
            << " audit rows in " << file.string() << "\n";
  return 0;
}
