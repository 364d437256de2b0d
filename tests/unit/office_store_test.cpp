// The office's side of a referral in the store (store/office.hpp) against a
// real SQLite file and a real PostgreSQL server: status changes, the
// escalation ladder's rows, tokens and duplicates.
#include <gtest/gtest.h>

#include <memory>

#include "store/audit_chain.hpp"
#include "store/office.hpp"
#include "store/payload.hpp"
#include "store/queries.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"
#include "support/store_backends.hpp"
#include "util/key_ring.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;
using referrald::test::TestStore;

namespace {

const TimePoint t0 = from_millis(1'795'000'000'000);  // late 2026

class OfficeStoreTest : public ::testing::TestWithParam<Dialect> {
 protected:
  void SetUp() override {
    store = std::make_unique<TestStore>(GetParam());
    db = store->open();
    migrate(*db);
  }

  NewReferral referral(const std::string& id, TimePoint received) {
    return test::api_referral(id, received, Urgency::emergent);
  }
  InsertResult insert(const NewReferral& r) {
    db->begin_write();
    InsertResult result = insert_referral(*db, r);
    db->exec("COMMIT");
    return result;
  }
  StatusChangeResult change(const std::string& id, OfficeStatus to, TimePoint at,
                            std::optional<std::string> note = std::nullopt, std::vector<std::string> notices = {}) {
    db->begin_write();
    StatusChangeResult result = change_status(*db, {id, to, "coordinator", StatusVia::cli, note, at, notices});
    db->exec("COMMIT");
    return result;
  }
  std::vector<EscalationRow> fire(TimePoint now) {
    db->begin_write();
    auto fired = fire_due_escalations(*db, now, 100);
    db->exec("COMMIT");
    return fired;
  }
  std::int64_t count(const std::string& sql) {
    Statement st = db->prepare(sql);
    st.step();
    return st.column_int(0);
  }

  std::unique_ptr<TestStore> store;
  std::unique_ptr<Database> db;
};
INSTANTIATE_TEST_SUITE_P(Backends, OfficeStoreTest, test::store_backends, test::backend_name);

TEST_P(OfficeStoreTest, AReferralStartsReceived) {
  insert(referral("R-1", t0));
  const auto s = status_of(*db, "R-1");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->status, OfficeStatus::received);
  EXPECT_EQ(s->since, t0);
  EXPECT_FALSE(s->acknowledged_at.has_value());
  EXPECT_TRUE(status_history(*db, "R-1").empty());
  EXPECT_FALSE(status_of(*db, "R-NONE").has_value());
}

TEST_P(OfficeStoreTest, ChangesAreRecordedWithWhoWhenAndTheNote) {
  insert(referral("R-1", t0));
  EXPECT_TRUE(change("R-1", OfficeStatus::acknowledged, t0 + 5min).changed);
  const auto decided = change("R-1", OfficeStatus::needs_info, t0 + 1h, "Please fax the MRI report.");
  EXPECT_TRUE(decided.changed);
  EXPECT_EQ(decided.from, OfficeStatus::acknowledged);

  const auto s = status_of(*db, "R-1");
  EXPECT_EQ(s->status, OfficeStatus::needs_info);
  EXPECT_EQ(s->since, t0 + 1h);
  EXPECT_EQ(s->acknowledged_at, t0 + 5min);  // the first acknowledgement stays

  const auto history = status_history(*db, "R-1");
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].from, OfficeStatus::received);
  EXPECT_EQ(history[0].to, OfficeStatus::acknowledged);
  EXPECT_EQ(history[0].actor, "coordinator");
  EXPECT_EQ(history[0].via, StatusVia::cli);
  EXPECT_FALSE(history[0].note.has_value());
  EXPECT_EQ(history[1].to, OfficeStatus::needs_info);
  EXPECT_EQ(history[1].note, "Please fax the MRI report.");
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE action = 'status'"), 2);
  EXPECT_EQ(count("SELECT n FROM status_tallies WHERE status = 'needs-info'"), 1);
  EXPECT_EQ(count("SELECT n FROM status_tallies WHERE status = 'received'"), 0);
  EXPECT_FALSE(verify_audit_chain(*db).first_bad.has_value());

  // One change alone, as a notice reads it; never another referral's.
  const auto one = status_change(*db, "R-1", decided.change_id);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->to, OfficeStatus::needs_info);
  EXPECT_EQ(one->note, "Please fax the MRI report.");
  insert(referral("R-2", t0));
  EXPECT_FALSE(status_change(*db, "R-2", decided.change_id).has_value());
}

TEST_P(OfficeStoreTest, AForbiddenChangeIsRefusedAndChangesNothing) {
  insert(referral("R-1", t0));
  const auto refused = change("R-1", OfficeStatus::accepted, t0 + 1min);
  EXPECT_FALSE(refused.changed);
  EXPECT_EQ(refused.refusal, "status is received: it can change to acknowledged or closed, not to accepted");
  EXPECT_EQ(status_of(*db, "R-1")->status, OfficeStatus::received);
  EXPECT_EQ(count("SELECT count(*) FROM status_changes"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE action = 'status'"), 0);
  db->begin_write();
  EXPECT_THROW(change_status(*db, {"R-NONE", OfficeStatus::acknowledged, "x", StatusVia::cli, {}, t0, {}}), NotFound);
  db->exec("ROLLBACK");
}

TEST_P(OfficeStoreTest, NotesAreSealedUnderTheKeysAndBoundToTheirChange) {
  std::vector<KeyFileProblem> problems;
  db->set_payload_keys(parse_key_file("k1 " + std::string(64, 'a') + "\n", problems));
  ASSERT_TRUE(problems.empty());
  insert(referral("R-1", t0));
  change("R-1", OfficeStatus::acknowledged, t0 + 1min, "Mother says the MRI is at Delta Imaging.");
  change("R-1", OfficeStatus::closed, t0 + 2min, "Withdrawn by the family.");
  Statement raw = db->prepare("SELECT note FROM status_changes ORDER BY id");
  ASSERT_TRUE(raw.step());
  EXPECT_EQ(raw.column_blob(0).find("Delta Imaging"), std::string::npos);
  EXPECT_EQ(raw.column_blob(0).rfind("RFE", 0), 0u);
  raw.reset();
  // A note copied onto another change does not open there.
  db->exec("UPDATE status_changes SET note = (SELECT note FROM status_changes WHERE id = 1) WHERE id = 2");
  EXPECT_THROW(status_history(*db, "R-1"), PayloadError);
}

TEST_P(OfficeStoreTest, RekeyReSealsNotesUnderTheCurrentKeyOnceAndReportsTheUnreadable) {
  insert(referral("R-1", t0));
  change("R-1", OfficeStatus::acknowledged, t0 + 1min, "Kept in the clear before encryption.");
  std::vector<KeyFileProblem> problems;
  const std::string k1 = "k1 " + std::string(64, 'a') + "\n";
  const std::string k2 = "k2 " + std::string(64, 'b') + "\n";
  db->set_payload_keys(parse_key_file(k1, problems));
  change("R-1", OfficeStatus::needs_info, t0 + 2min, "Sealed under k1.");
  change("R-1", OfficeStatus::acknowledged, t0 + 3min);  // no note: nothing to re-seal
  db->set_payload_keys(parse_key_file(k2 + k1, problems));
  ASSERT_TRUE(problems.empty());
  const auto rekey = [&](std::int64_t after, int limit) {
    db->begin_write();
    auto b = rekey_status_notes(*db, after, limit, "operator", t0 + 1h);
    db->exec("COMMIT");
    return b;
  };
  // In batches along the change id: the first holds one note, the second the other.
  const auto first = rekey(0, 1);
  EXPECT_EQ(first.examined, 1);
  EXPECT_EQ(first.rekeyed, 1);
  ASSERT_TRUE(first.last_id.has_value());
  const auto second = rekey(*first.last_id, 1);
  EXPECT_EQ(second.examined, 1);
  EXPECT_EQ(second.rekeyed, 1);
  EXPECT_EQ(rekey(*second.last_id, 1).examined, 0);
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE action = 'rekeyed' AND detail = 'note=1 from=plaintext to=k2'"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE action = 'rekeyed' AND detail = 'note=2 from=k1 to=k2'"), 1);
  EXPECT_EQ(rekey(0, 100).rekeyed, 0);  // all under k2 already

  // Only k2 left: both notes open.
  db->set_payload_keys(parse_key_file(k2, problems));
  const auto history = status_history(*db, "R-1");
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].note, "Kept in the clear before encryption.");
  EXPECT_EQ(history[1].note, "Sealed under k1.");
  EXPECT_FALSE(history[2].note.has_value());

  // A note under a key no longer in the file is left as it is and reported.
  db->set_payload_keys(parse_key_file(k1, problems));
  change("R-1", OfficeStatus::closed, t0 + 4min, "Under k1 again.");
  db->set_payload_keys(parse_key_file(k2, problems));
  const auto stuck = rekey(0, 100);
  EXPECT_EQ(stuck.examined, 3);
  EXPECT_EQ(stuck.rekeyed, 0);
  ASSERT_EQ(stuck.unreadable.size(), 1u);
  EXPECT_NE(stuck.unreadable[0].find("R-1/status/4"), std::string::npos) << stuck.unreadable[0];
  EXPECT_NE(stuck.unreadable[0].find("\"k1\""), std::string::npos) << stuck.unreadable[0];
}

TEST_P(OfficeStoreTest, ANoticeToTheReferrerIsADeliveryOfItsOwn) {
  insert(referral("R-1", t0));
  const auto r = change("R-1", OfficeStatus::acknowledged, t0 + 1min, std::nullopt, {"referrer-email", "referrer-fax"});
  EXPECT_EQ(r.notices, 2);
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE referral_id = 'R-1' AND purpose = 'notice-" +
                  std::to_string(r.change_id) + "' AND state = 'pending'"),
            2);
  // The same target may be told again at the next change.
  const auto again = change("R-1", OfficeStatus::accepted, t0 + 2min, std::nullopt, {"referrer-email"});
  EXPECT_EQ(again.notices, 1);
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE target = 'referrer-email'"), 2);
}

TEST_P(OfficeStoreTest, AnUnacknowledgedReferralEscalatesStepByStepOnce) {
  NewReferral r = referral("R-1", t0);
  r.escalations = {{1, t0 + 15min, 15min, {"backup-pager"}},
                   {2, t0 + 45min, 45min, {"director-pager", "office-email"}}};
  insert(r);
  EXPECT_EQ(next_escalation_due(*db), t0 + 15min);
  EXPECT_TRUE(fire(t0 + 14min).empty());

  const auto first = fire(t0 + 15min);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].step, 1);
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE purpose = 'escalation-1' AND target = 'backup-pager'"), 1);
  EXPECT_TRUE(fire(t0 + 16min).empty());  // never twice
  EXPECT_EQ(next_escalation_due(*db), t0 + 45min);

  // Both remaining steps long past (the daemon was down): each fires once.
  const auto late = fire(t0 + 5h);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].step, 2);
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE purpose = 'escalation-2'"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE target = 'office-email'"), 2);  // intake and step 2
  EXPECT_FALSE(next_escalation_due(*db).has_value());
  const auto rows = escalations_of(*db, "R-1");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].state, EscalationState::fired);
  EXPECT_EQ(rows[1].targets, (std::vector<std::string>{"director-pager", "office-email"}));
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE action = 'escalated'"), 2);
}

TEST_P(OfficeStoreTest, TheFirstAcknowledgementStopsTheLadder) {
  NewReferral r = referral("R-1", t0);
  r.escalations = {{1, t0 + 15min, 15min, {"backup-pager"}}, {2, t0 + 45min, 45min, {"director-pager"}}};
  insert(r);
  EXPECT_EQ(change("R-1", OfficeStatus::acknowledged, t0 + 10min).escalations_stopped, 2);
  EXPECT_TRUE(fire(t0 + 1h).empty());
  EXPECT_FALSE(next_escalation_due(*db).has_value());
  EXPECT_EQ(count("SELECT count(*) FROM deliveries WHERE purpose <> 'intake'"), 0);
  for (const auto& row : escalations_of(*db, "R-1")) EXPECT_EQ(row.state, EscalationState::stopped);
}

TEST_P(OfficeStoreTest, OverdueMeansUnacknowledgedPastAStepWhetherOrNotTheTimerRanYet) {
  NewReferral a = referral("R-A", t0);
  a.escalations = {{1, t0 + 15min, 15min, {"backup-pager"}}, {2, t0 + 45min, 45min, {"director-pager"}}};
  insert(a);
  NewReferral b = referral("R-B", t0 + 1min);
  b.escalations = {{1, t0 + 16min, 15min, {"backup-pager"}}};
  insert(b);
  insert(referral("R-C", t0));  // no ladder covers it: never overdue

  EXPECT_TRUE(overdue_referrals(*db, t0 + 14min).empty());
  fire(t0 + 15min);
  auto overdue = overdue_referrals(*db, t0 + 50min);  // R-A's step 2 not fired yet, R-B's step 1 neither
  ASSERT_EQ(overdue.size(), 2u);
  EXPECT_EQ(overdue[0].referral_id, "R-A");
  EXPECT_EQ(overdue[0].step, 2);
  EXPECT_EQ(overdue[0].due_at, t0 + 45min);
  EXPECT_EQ(overdue[0].urgency, Urgency::emergent);
  EXPECT_EQ(overdue[1].referral_id, "R-B");
  EXPECT_EQ(overdue[1].received_at, t0 + 1min);

  change("R-A", OfficeStatus::acknowledged, t0 + 51min);
  overdue = overdue_referrals(*db, t0 + 52min);
  ASSERT_EQ(overdue.size(), 1u);
  EXPECT_EQ(overdue[0].referral_id, "R-B");
}

TEST_P(OfficeStoreTest, AnAcknowledgementTokenWorksOnceAndExpires) {
  insert(referral("R-1", t0));
  db->begin_write();
  add_ack_token(*db, "R-1", "hash-a", t0, t0 + 7 * 24h);
  add_ack_token(*db, "R-1", "hash-b", t0, t0 + 1h);
  db->exec("COMMIT");
  EXPECT_EQ(find_ack_token(*db, "hash-a", t0 + 1min).state, TokenState::valid);
  EXPECT_EQ(find_ack_token(*db, "hash-a", t0 + 1min).referral_id, "R-1");
  EXPECT_EQ(find_ack_token(*db, "hash-x", t0).state, TokenState::unknown);
  EXPECT_EQ(find_ack_token(*db, "hash-b", t0 + 1h).state, TokenState::expired);
  EXPECT_FALSE(use_ack_token(*db, "hash-b", t0 + 2h));
  EXPECT_TRUE(use_ack_token(*db, "hash-a", t0 + 2min));
  EXPECT_FALSE(use_ack_token(*db, "hash-a", t0 + 3min));
  const auto used = find_ack_token(*db, "hash-a", t0 + 3min);
  EXPECT_EQ(used.state, TokenState::used);
  EXPECT_EQ(used.used_at, t0 + 2min);
}

TEST_P(OfficeStoreTest, ASecondReferralForTheSamePatientIsMarkedAsADuplicate) {
  const auto for_patient = [&](const std::string& id, int day, const std::string& identity) {
    NewReferral r = referral(id, t0 + day * 24h);
    r.identity_hash = identity;
    r.duplicate_window = 30 * 24h;
    return insert(r).duplicate_of;
  };
  EXPECT_EQ(for_patient("R-1", 0, "patient-a"), std::nullopt);
  EXPECT_EQ(for_patient("R-2", 2, "patient-a"), "R-1");
  EXPECT_EQ(status_of(*db, "R-2")->duplicate_of, "R-1");
  EXPECT_EQ(for_patient("R-3", 3, "patient-b"), std::nullopt);
  EXPECT_EQ(for_patient("R-4", 4, "patient-a"), "R-2");  // the newest open one
  // Outside the window: not a duplicate.
  EXPECT_EQ(for_patient("R-5", 40, "patient-a"), std::nullopt);
  // Once the earlier referral is closed (or declined): not a duplicate.
  change("R-5", OfficeStatus::closed, t0 + 41 * 24h);
  EXPECT_EQ(for_patient("R-6", 42, "patient-a"), std::nullopt);
  // Without a hash nothing is compared.
  EXPECT_FALSE(insert(referral("R-7", t0 + 42 * 24h)).duplicate_of.has_value());
  EXPECT_EQ(count("SELECT count(*) FROM audit WHERE detail LIKE '%duplicate_of=R-1%'"), 1);
}

// Only an open referral (received, acknowledged, accepted or needs-info)
// makes a later one for the same patient a duplicate; a declined or closed
// one does not.
TEST_P(OfficeStoreTest, OnlyAnOpenReferralMakesADuplicate) {
  const std::vector<std::pair<std::string, bool>> statuses = {{"received", true},  {"acknowledged", true},
                                                              {"accepted", true},  {"needs-info", true},
                                                              {"declined", false}, {"closed", false}};
  for (const auto& [status, open] : statuses) {
    NewReferral first = referral("R-" + status + "-1", t0);
    first.identity_hash = "patient-" + status;
    first.duplicate_window = 30 * 24h;
    insert(first);
    db->exec("UPDATE referrals SET status = '" + status + "' WHERE id = '" + first.id + "'");
    NewReferral second = referral("R-" + status + "-2", t0 + 24h);
    second.identity_hash = first.identity_hash;
    second.duplicate_window = first.duplicate_window;
    EXPECT_EQ(insert(second).duplicate_of, open ? std::optional(first.id) : std::nullopt) << status;
  }
}

}  // namespace
