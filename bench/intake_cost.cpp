// The CPU cost of one referral's intake, stage by stage, on one thread:
// what IntakeService::submit does before the writer (validate, decide,
// route, hash) and what the writer does for it (seal and insert, in batches
// the size group commit makes under load), on bench/referral-2k.json with
// the rules in config/rules.toml. Thread CPU time (CLOCK_THREAD_CPUTIME_ID),
// so other work on the machine changes the figures little; the fsync of each
// batch's commit is waited for, not counted. As in the daemon, the patient's
// identity hash is looked up for duplicates (the default 30-day window; every
// referral here is the same patient's) and each insert runs inside the
// writer's per-job savepoint.
//
//   intake_cost DATABASE [iterations] [batch]      (default 20000, 16)
//
// CACHE_KB sets SQLite's page cache; BENCH_SQL is run on the migrated
// database before the first referral, to weigh a schema change before making
// it (e.g. BENCH_SQL="DROP INDEX audit_referral": what that index costs).
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "intake/identity.hpp"
#include "intake/pipeline.hpp"
#include "rules/rules.hpp"
#include "store/database.hpp"
#include "store/store.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/ids.hpp"

using namespace referrald;

namespace {

double thread_cpu_us() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

std::string read_all(const char* file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: intake_cost DATABASE [iterations] [batch]\n");
    return 2;
  }
  const std::filesystem::path file = argv[1];
  const long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
  const long batch = argc > 3 ? std::atol(argv[3]) : 16;
  const std::string body = read_all(REFERRALD_SOURCE_DIR "/bench/referral-2k.json");

  IntakePolicy policy;
  policy.rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  policy.routes.push_back(Route{{}, {}, std::nullopt, {"office-email"}});
  const std::string identity_secret(32, 'i');
  policy.identity_key =
      IdentityKey::derive(reinterpret_cast<const unsigned char*>(identity_secret.data()), identity_secret.size());
  policy.duplicate_window = std::chrono::hours(24 * 30);
  const ReferralValidator validator(REFERRALD_SOURCE_DIR "/schemas/referral.v1.schema.json");

  std::vector<KeyFileProblem> problems;
  const auto keys = parse_key_file("bench " + std::string(64, '7') + "\n", problems);
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file.string() + suffix);
  store::Database db(file, store::OpenMode::read_write_create);
  store::migrate(db);
  db.set_payload_keys(keys);
  if (const char* kb = std::getenv("CACHE_KB")) db.exec("PRAGMA cache_size=-" + std::string(kb));
  if (const char* sql = std::getenv("BENCH_SQL")) db.exec(sql);

  const bool ordered_ids = std::getenv("ORDERED_IDS") != nullptr;
  double validate_us = 0, plan_us = 0, hash_us = 0, insert_us = 0, rows_us = 0;
  long valid = 0;
  std::vector<store::NewReferral> rows;
  for (long i = 0; i < iterations; ++i) {
    Submission submission;
    submission.channel = "api";
    submission.client = "key:bench";
    submission.body = body;
    submission.received_at = std::chrono::system_clock::now();

    const double t0 = thread_cpu_us();
    auto checked = validator.validate(submission.body, utc_date(submission.received_at));
    const double t1 = thread_cpu_us();
    auto planned = plan_intake(policy, validator, submission);
    const double t2 = thread_cpu_us();
    store::NewReferral row;
    // ORDERED_IDS=1: ids that sort in arrival order (not referrald's, which
    // are random within the day), to measure what random index pages cost.
    if (ordered_ids) {
      char id[32];
      std::snprintf(id, sizeof id, "R-20260101-%010ld", i);
      row.id = id;
    } else {
      row.id = new_referral_id(submission.received_at);
    }
    row.request_hash = sha256_hex(submission.body);
    const double t3 = thread_cpu_us();
    validate_us += t1 - t0;
    plan_us += t2 - t1;
    hash_us += t3 - t2;
    if (!std::holds_alternative<Referral>(checked)) continue;
    auto* plan = std::get_if<IntakePlan>(&planned);
    if (!plan) continue;
    ++valid;
    row.received_at = submission.received_at;
    row.decision = plan->eligibility.decision;
    row.urgency = plan->referral.urgency;
    row.reasons = plan->eligibility.reasons;
    row.disease = plan->eligibility.disease;
    row.channel = submission.channel;
    row.client = submission.client;
    row.document = std::move(plan->referral.document);
    row.response = R"({"id":")" + row.id + R"(","status":"received","decision":"accepted"})";
    row.targets = plan->targets;
    row.identity_hash = plan->identity_hash;
    row.duplicate_window = policy.duplicate_window;
    rows.push_back(std::move(row));

    if (static_cast<long>(rows.size()) == batch || i + 1 == iterations) {
      const double w0 = thread_cpu_us();
      {
        store::WriteTransaction tx(db);
        for (const auto& r : rows) {
          db.cached("SAVEPOINT j").run();  // the writer's per-job savepoint (Writer::Impl::run_job)
          store::insert_referral(db, r);
          db.cached("RELEASE j").run();
        }
        const double w1 = thread_cpu_us();
        tx.commit();
        rows_us += w1 - w0;
      }
      insert_us += thread_cpu_us() - w0;
      rows.clear();
    }
  }
  const auto per = [&](double us) { return us / static_cast<double>(iterations); };
  std::printf("referral %zu bytes, %ld iterations (%ld valid), writer batches of %ld\n", body.size(), iterations, valid,
              batch);
  std::printf("%-52s %8.1f us\n", "validate (parse, schema, checks, typed referral)", per(validate_us));
  std::printf("%-52s %8.1f us\n", "plan_intake (validate again + decide + route)", per(plan_us));
  std::printf("%-52s %8.1f us\n", "id and request hash", per(hash_us));
  std::printf("%-52s %8.1f us\n", "writer: seal + insert (+ commit, fsync not counted)",
              insert_us / static_cast<double>(valid));
  std::printf("%-52s %8.1f us\n", "  of which insert_referral (in its savepoint)",
              rows_us / static_cast<double>(valid));
  return valid == iterations ? 0 : 1;
}
