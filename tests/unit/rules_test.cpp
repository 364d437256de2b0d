#include "rules/rules.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "rules/eligibility.hpp"
#include "rules/matching.hpp"
#include "util/config_error.hpp"

namespace referrald {

void PrintTo(const Reason& r, std::ostream* os) { *os << "{" << r.code << ", \"" << r.message << "\"}"; }

namespace {

using std::chrono::day;
using std::chrono::days;
using std::chrono::month;
using std::chrono::sys_days;
using std::chrono::year;
using std::chrono::years;
using testing::ElementsAre;
using testing::HasSubstr;

const Date today{year{2026}, month{11}, day{28}};

// Born on this day `age` years ago: exactly `age` today.
Date birthday_years_ago(int age) { return Date{today.year() - years{age}, today.month(), today.day()}; }

// Turns `age + 1` tomorrow: still `age` today.
Date day_before_turning(int age) { return Date{sys_days{birthday_years_ago(age + 1)} + days{1}}; }

// ---------------------------------------------------------------------------
// Parsing rules files

std::vector<std::string> problems_of(std::string_view text, const std::string& file = "rules.toml") {
  try {
    parse_rules(text, file);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& p : e.problems()) out.push_back(p.to_string());
    return out;
  }
  ADD_FAILURE() << "expected a ConfigError";
  return {};
}

const char* const minimal_general = R"([general]
qualified_credentials = ["MD"]
default_max_age = 21
service_area_postal_prefixes = []
)";

TEST(RulesParse, ValidFileIsRead) {
  const RuleSet rules = parse_rules(R"([general]
qualified_credentials = ["MD", "do"]
default_max_age = 19
service_area_postal_prefixes = ["381", "38002"]

[[disease]]
id = "asps"
name = "Alveolar soft part sarcoma"
aliases = ["ASPS"]
codes = [{ system = "icd-o-3", value = "9581/3" }]
max_age = 25
open_trials = 2

[[disease]]
id = "other"
name = "Other"
open_trials = 0
)",
                                    "rules.toml");
  EXPECT_EQ(rules.qualified_credentials, (std::vector<std::string>{"MD", "do"}));
  EXPECT_EQ(rules.default_max_age, 19);
  EXPECT_EQ(rules.service_area_postal_prefixes, (std::vector<std::string>{"381", "38002"}));
  ASSERT_EQ(rules.diseases.size(), 2u);
  const Disease& asps = rules.diseases[0];
  EXPECT_EQ(asps.id, "asps");
  EXPECT_EQ(asps.name, "Alveolar soft part sarcoma");
  EXPECT_EQ(asps.aliases, (std::vector<std::string>{"ASPS"}));
  ASSERT_EQ(asps.codes.size(), 1u);
  EXPECT_EQ(asps.codes[0].system, "icd-o-3");
  EXPECT_EQ(asps.codes[0].value, "9581/3");
  EXPECT_EQ(asps.max_age, 25);
  EXPECT_EQ(asps.open_trials, 2);
  EXPECT_FALSE(rules.diseases[1].max_age.has_value());
  EXPECT_TRUE(rules.diseases[1].aliases.empty());
}

TEST(RulesParse, EveryProblemIsReportedWithFileLineAndKey) {
  EXPECT_THAT(problems_of(R"([general]
qualified_credentials = ["MD"]
default_max_age = "21"
service_area_postal_prefixes = []
colour = "blue"

[[disease]]
id = "asps"
aliases = ["ASPS"]
open_trials = 0
max_agee = 30
)"),
              ElementsAre("rules.toml:3: general.default_max_age: expected an integer, got string",
                          "rules.toml:5: general.colour: unknown key (known: qualified_credentials, "
                          "default_max_age, service_area_postal_prefixes)",
                          "rules.toml:7: disease[0].name: required",
                          "rules.toml:11: disease[0].max_agee: unknown key (known: id, name, aliases, codes, "
                          "max_age, open_trials)"));
}

TEST(RulesParse, ConfigErrorMessageListsEveryProblem) {
  try {
    parse_rules("colour = 1\n[general]\nqualified_credentials = []\ndefault_max_age = 21\n", "r.toml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "r.toml:1: colour: unknown key (known: general, disease)\n"
                 "r.toml:2: general.service_area_postal_prefixes: required");
  }
}

TEST(RulesParse, MissingGeneralSectionIsReported) {
  EXPECT_THAT(problems_of(""), ElementsAre("rules.toml: general: required"));
}

TEST(RulesParse, MissingDiseaseFieldsAreReportedAtTheTable) {
  EXPECT_THAT(problems_of(std::string(minimal_general) + "\n[[disease]]\naliases = [\"x\"]\n"),
              ElementsAre("rules.toml:6: disease[0].id: required", "rules.toml:6: disease[0].name: required",
                          "rules.toml:6: disease[0].open_trials: required"));
}

TEST(RulesParse, WrongTypesAreReported) {
  EXPECT_THAT(problems_of(R"([general]
qualified_credentials = "MD"
default_max_age = 21.5
service_area_postal_prefixes = [381]

[[disease]]
id = 7
name = "X"
aliases = "x"
codes = ["9581/3"]
max_age = true
open_trials = -1
)"),
              ElementsAre("rules.toml:2: general.qualified_credentials: expected an array, got string",
                          "rules.toml:3: general.default_max_age: expected an integer, got float",
                          "rules.toml:4: general.service_area_postal_prefixes[0]: expected a string, got integer",
                          "rules.toml:7: disease[0].id: expected a string, got integer",
                          "rules.toml:9: disease[0].aliases: expected an array, got string",
                          "rules.toml:10: disease[0].codes[0]: expected a table, got string",
                          "rules.toml:11: disease[0].max_age: expected an integer, got boolean",
                          "rules.toml:12: disease[0].open_trials: expected 0..10000, got -1"));
}

TEST(RulesParse, ValuesAreCheckedAgainstWhatTheIntakeAccepts) {
  EXPECT_THAT(problems_of(R"([general]
qualified_credentials = ["MD", "MBBS", ""]
default_max_age = 130
service_area_postal_prefixes = ["381", "38x", "381050"]

[[disease]]
id = "ASPS"
name = "Alveolar soft part sarcoma"
aliases = ["--"]
codes = [{ system = "icd10", value = "C49.9" }, { system = "icd-o-3" }, { system = "icd-o-3", value = "1", note = "x" }]
open_trials = 0
)"),
              ElementsAre("rules.toml:2: general.qualified_credentials[1]: expected one of MD, DO, NP, PA, RN, "
                          "other, got \"MBBS\"",
                          "rules.toml:2: general.qualified_credentials[2]: must not be empty",
                          "rules.toml:3: general.default_max_age: expected 0..120, got 130",
                          "rules.toml:4: general.service_area_postal_prefixes[1]: expected 1 to 5 digits, got "
                          "\"38x\"",
                          "rules.toml:4: general.service_area_postal_prefixes[2]: expected 1 to 5 digits, got "
                          "\"381050\"",
                          "rules.toml:7: disease[0].id: expected lower-case letters, digits, '-' or '_', got "
                          "\"ASPS\"",
                          "rules.toml:9: disease[0].aliases[0]: has no letters or digits, so it can never match",
                          "rules.toml:10: disease[0].codes[0].system: expected one of icd-10-cm, icd-o-3, "
                          "snomed-ct, got \"icd10\"",
                          "rules.toml:10: disease[0].codes[1].value: required",
                          "rules.toml:10: disease[0].codes[2].note: unknown key (known: system, value)"));
}

TEST(RulesParse, DiseaseMustBeAnArrayOfTables) {
  EXPECT_THAT(problems_of(std::string(minimal_general) + "[disease]\nid = \"asps\"\n"),
              ElementsAre("rules.toml:5: disease: expected an array of tables ([[disease]]), got table"));
}

TEST(RulesParse, DuplicatesAcrossDiseasesAreRefused) {
  EXPECT_THAT(problems_of(std::string(minimal_general) + R"(
[[disease]]
id = "asps"
name = "Alveolar soft part sarcoma"
aliases = ["ASPS"]
codes = [{ system = "icd-o-3", value = "9581/3" }]
open_trials = 0

[[disease]]
id = "asps"
name = "Soft part sarcoma, alveolar"
aliases = ["A.S.P.S.", "alveolar soft-part sarcoma"]
codes = [{ system = "icd-o-3", value = "9581/3" }]
open_trials = 0
)"),
              ElementsAre("rules.toml:13: disease[1].id: duplicate id \"asps\" (also disease[0])",
                          "rules.toml:13: disease[1].aliases: alias \"alveolar soft-part sarcoma\" also names "
                          "disease[0] (asps)",
                          "rules.toml:13: disease[1].codes: code icd-o-3 9581/3 also belongs to disease[0] (asps)"));
}

TEST(RulesParse, TomlSyntaxErrorNamesTheLine) {
  const auto problems = problems_of("[general]\nqualified_credentials = [\"MD\"\ndefault_max_age = 21\n");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], testing::StartsWith("rules.toml:3: "));
}

TEST(RulesLoad, UnreadableFileIsReported) {
  try {
    load_rules("/nonexistent/rules.toml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/rules.toml: file not found");
  }
}

// ---------------------------------------------------------------------------
// Matching

TEST(Matching, WordsIgnoreCaseHyphensAndPunctuation) {
  EXPECT_EQ(normalized_words("Alveolar soft-part SARCOMA, (metastatic)."),
            (std::vector<std::string>{"alveolar", "soft", "part", "sarcoma", "metastatic"}));
  EXPECT_EQ(normalized_words("  "), std::vector<std::string>{});
  // Unicode letters are kept as they are; typographic hyphens and dashes separate.
  EXPECT_EQ(normalized_words("Ewing\u2019s sarcoma \u2014 Zoë\u2010Ängström"),
            (std::vector<std::string>{"ewing", "s", "sarcoma", "zoë", "Ängström"}));
}

RuleSet catalogue() {
  return parse_rules(R"([general]
qualified_credentials = ["MD", "DO", "NP", "PA"]
default_max_age = 21
service_area_postal_prefixes = ["381"]

[[disease]]
id = "asps"
name = "Alveolar soft part sarcoma"
aliases = ["alveolar soft part sarcoma", "alveolar soft-part sarcoma", "ASPS"]
codes = [{ system = "icd-o-3", value = "9581/3" }]
open_trials = 0

[[disease]]
id = "sarcoma"
name = "Sarcoma, not otherwise specified"
aliases = ["sarcoma"]
codes = [{ system = "icd-10-cm", value = "C49.9" }]
open_trials = 0
)",
                     "test-rules.toml");
}

std::string matched(const RuleSet& rules, const std::string& name, std::optional<DiagnosisCode> code = {}) {
  const Disease* d = match_disease(rules, Diagnosis{name, std::move(code), {}, {}});
  return d != nullptr ? d->id : "(none)";
}

TEST(Matching, AspsAliasesMatch) {
  const RuleSet rules = catalogue();
  EXPECT_EQ(matched(rules, "Alveolar soft part sarcoma"), "asps");
  EXPECT_EQ(matched(rules, "alveolar soft-part sarcoma"), "asps");
  EXPECT_EQ(matched(rules, "ALVEOLAR SOFT PART SARCOMA of the thigh"), "asps");
  EXPECT_EQ(matched(rules, "ASPS, metastatic to lung"), "asps");
  EXPECT_EQ(matched(rules, "Suspected A.S.P.S."), "(none)");  // "a s p s" is not the word "asps"
  EXPECT_EQ(matched(rules, "asps"), "asps");
}

TEST(Matching, NeighbouringDiseasesDoNotMatchAsps) {
  const RuleSet rules = catalogue();
  EXPECT_EQ(matched(rules, "Alveolar rhabdomyosarcoma"), "(none)");
  EXPECT_EQ(matched(rules, "alveolar soft tissue sarcoma"), "sarcoma");
  EXPECT_EQ(matched(rules, "Soft tissue sarcoma"), "sarcoma");
  EXPECT_EQ(matched(rules, "aspsarcoma"), "(none)");  // whole words only
}

TEST(Matching, LongestAliasWins) {
  // Both "sarcoma" and "alveolar soft part sarcoma" appear.
  EXPECT_EQ(matched(catalogue(), "Alveolar soft part sarcoma"), "asps");
}

TEST(Matching, CodeMatchesExactlyAndWinsOverAliases) {
  const RuleSet rules = catalogue();
  EXPECT_EQ(matched(rules, "Soft tissue mass", DiagnosisCode{"icd-o-3", "9581/3"}), "asps");
  EXPECT_EQ(matched(rules, "Soft tissue mass", DiagnosisCode{" ICD-O-3 ", " 9581 / 3 "}), "asps");
  EXPECT_EQ(matched(rules, "Alveolar soft part sarcoma", DiagnosisCode{"icd-10-cm", "c49.9"}), "sarcoma");
  // The system must match too, and a code is not a prefix match.
  EXPECT_EQ(matched(rules, "mass", DiagnosisCode{"icd-10-cm", "9581/3"}), "(none)");
  EXPECT_EQ(matched(rules, "mass", DiagnosisCode{"icd-o-3", "9581"}), "(none)");
  // An unknown code still lets the name match.
  EXPECT_EQ(matched(rules, "ASPS", DiagnosisCode{"snomed-ct", "404053004"}), "asps");
}

// ---------------------------------------------------------------------------
// Decisions

Referral referral(std::string diagnosis, Date birth, std::string credential = "MD",
                  std::optional<std::string> postal_code = std::nullopt) {
  Referral r;
  r.patient.given_name = "Ava";
  r.patient.family_name = "Nguyen";
  r.patient.birth_date = birth;
  r.patient.sex = "female";
  r.patient.postal_code = std::move(postal_code);
  r.diagnosis.name = std::move(diagnosis);
  r.referrer.name = "Dana Whitfield";
  r.referrer.credential = std::move(credential);
  r.referrer.npi = "1234567893";
  return r;
}

const char* const limits_rules = R"([general]
qualified_credentials = ["MD", "DO", "NP", "PA"]
default_max_age = 21
service_area_postal_prefixes = ["381"]

[[disease]]
id = "leukemia"
name = "Acute lymphoblastic leukemia"
aliases = ["acute lymphoblastic leukemia"]
max_age = 18
open_trials = 1

[[disease]]
id = "medulloblastoma"
name = "Medulloblastoma"
max_age = 25
open_trials = 3

[[disease]]
id = "asps"
name = "Alveolar soft part sarcoma"
aliases = ["ASPS"]
open_trials = 0
)";

TEST(Decide, OpenTrialAccepts) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("Medulloblastoma", birthday_years_ago(10)), today);
  EXPECT_EQ(e.decision, Decision::accepted);
  EXPECT_EQ(e.disease, "medulloblastoma");
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::open_trial_available,
                                            "Medulloblastoma has 3 open clinical trials the patient may be able "
                                            "to enroll in."}));
  EXPECT_THAT(decide(rules, referral("acute lymphoblastic leukemia", birthday_years_ago(5)), today).reasons,
              ElementsAre(Reason{reason::open_trial_available,
                                 "Acute lymphoblastic leukemia has 1 open clinical trial the patient may be "
                                 "able to enroll in."}));
}

TEST(Decide, NoTrialOutsideServiceAreaIsReviewed) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("ASPS", birthday_years_ago(12), "MD", "72401"), today);
  EXPECT_EQ(e.decision, Decision::review);
  EXPECT_EQ(e.disease, "asps");
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::no_open_trial,
                                            "Alveolar soft part sarcoma has no open clinical trials at this time; "
                                            "the referral office will review this referral."}));
  // Without a postal code there is no service area to be in.
  EXPECT_EQ(decide(rules, referral("ASPS", birthday_years_ago(12)), today).decision, Decision::review);
}

TEST(Decide, NoTrialInsideServiceAreaAccepts) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("ASPS", birthday_years_ago(12), "MD", "38105-2794"), today);
  EXPECT_EQ(e.decision, Decision::accepted);
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::within_service_area,
                                            "Alveolar soft part sarcoma has no open clinical trials at this time, "
                                            "but the patient lives within the hospital's service area."}));
}

TEST(Decide, UnqualifiedReferrerIsDeclined) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  for (const char* credential : {"RN", "other"}) {
    const auto e = decide(rules, referral("Medulloblastoma", birthday_years_ago(10), credential), today);
    EXPECT_EQ(e.decision, Decision::declined) << credential;
    EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::referrer_not_qualified,
                                              std::string("The referrer's credential (") + credential +
                                                  ") is not one of those the hospital accepts referrals from "
                                                  "(MD, DO, NP, PA)."}));
  }
}

TEST(Decide, CredentialsCompareWithoutCase) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  EXPECT_EQ(decide(rules, referral("Medulloblastoma", birthday_years_ago(10), "md"), today).decision,
            Decision::accepted);
  EXPECT_EQ(decide(rules, referral("Medulloblastoma", birthday_years_ago(10), "Np"), today).decision,
            Decision::accepted);
}

TEST(Decide, DefaultAgeLimitIsInclusive) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  // 21 today, and 21 for one more day: accepted (service area, no trial).
  for (const Date birth : {birthday_years_ago(21), day_before_turning(21)}) {
    const auto e = decide(rules, referral("ASPS", birth, "MD", "38105"), today);
    EXPECT_EQ(e.decision, Decision::accepted);
    EXPECT_EQ(e.reasons.at(0).code, reason::within_service_area);
  }
  // 22 today: declined.
  const auto e = decide(rules, referral("ASPS", birthday_years_ago(22), "MD", "38105"), today);
  EXPECT_EQ(e.decision, Decision::declined);
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::age_over_limit,
                                            "Alveolar soft part sarcoma is accepted up to age 21; the patient is "
                                            "22."}));
}

TEST(Decide, DiseaseLimitOf18) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  EXPECT_EQ(decide(rules, referral("Acute lymphoblastic leukemia", birthday_years_ago(18)), today).decision,
            Decision::accepted);
  EXPECT_EQ(decide(rules, referral("Acute lymphoblastic leukemia", day_before_turning(18)), today).decision,
            Decision::accepted);
  const auto e = decide(rules, referral("Acute lymphoblastic leukemia", birthday_years_ago(19)), today);
  EXPECT_EQ(e.decision, Decision::declined);
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::age_over_limit,
                                            "Acute lymphoblastic leukemia is accepted up to age 18; the patient "
                                            "is 19."}));
}

TEST(Decide, DiseaseLimitOf25) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  // Over the general limit but within the disease's own.
  EXPECT_EQ(decide(rules, referral("Medulloblastoma", birthday_years_ago(25)), today).decision, Decision::accepted);
  const auto e = decide(rules, referral("Medulloblastoma", birthday_years_ago(26)), today);
  EXPECT_EQ(e.decision, Decision::declined);
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::age_over_limit,
                                            "Medulloblastoma is accepted up to age 25; the patient is 26."}));
}

TEST(Decide, BothDecliningReasonsAreGiven) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("Medulloblastoma", birthday_years_ago(30), "RN"), today);
  EXPECT_EQ(e.decision, Decision::declined);
  ASSERT_EQ(e.reasons.size(), 2u);
  EXPECT_EQ(e.reasons[0].code, reason::referrer_not_qualified);
  EXPECT_EQ(e.reasons[1].code, reason::age_over_limit);
}

TEST(Decide, UnrecognizedDiagnosisIsReviewed) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("Alveolar rhabdomyosarcoma", birthday_years_ago(9), "MD", "38105"), today);
  EXPECT_EQ(e.decision, Decision::review);
  EXPECT_FALSE(e.disease.has_value());
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::diagnosis_unrecognized,
                                            "The diagnosis does not match any disease in the hospital's "
                                            "catalogue; the referral office will review this referral."}));
}

TEST(Decide, UnrecognizedDiagnosisOverTheGeneralLimitStaysInReview) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("Ependymoma", birthday_years_ago(23)), today);
  EXPECT_EQ(e.decision, Decision::review);
  EXPECT_THAT(e.reasons, ElementsAre(Reason{reason::diagnosis_unrecognized,
                                            "The diagnosis does not match any disease in the hospital's catalogue; the "
                                            "referral office will review this referral."},
                                     Reason{reason::age_over_limit,
                                            "The patient is 23, over the general age limit of 21; some diseases accept "
                                            "older patients, so the referral office will review this referral."}));
}

TEST(Decide, UnqualifiedReferrerWithUnrecognizedDiagnosisIsDeclined) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  const auto e = decide(rules, referral("Ependymoma", birthday_years_ago(5), "RN"), today);
  EXPECT_EQ(e.decision, Decision::declined);
  ASSERT_EQ(e.reasons.size(), 1u);
  EXPECT_EQ(e.reasons[0].code, reason::referrer_not_qualified);
}

TEST(Decide, SentencesNeverNameThePatient) {
  const RuleSet rules = parse_rules(limits_rules, "t.toml");
  for (const auto& r :
       {referral("ASPS", birthday_years_ago(30), "RN", "38105"), referral("Ependymoma", birthday_years_ago(30)),
        referral("ASPS", birthday_years_ago(3)), referral("ASPS", birthday_years_ago(3), "MD", "38105"),
        referral("Medulloblastoma", birthday_years_ago(3))}) {
    for (const auto& reason : decide(rules, r, today).reasons) {
      EXPECT_THAT(reason.message, testing::Not(HasSubstr("Ava")));
      EXPECT_THAT(reason.message, testing::Not(HasSubstr("Nguyen")));
      EXPECT_THAT(reason.message, testing::Not(HasSubstr("38105")));
    }
  }
}

// ---------------------------------------------------------------------------
// The shipped catalogue

TEST(ShippedRules, LoadAndHoldOnlyAsps) {
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  EXPECT_EQ(rules.qualified_credentials, (std::vector<std::string>{"MD", "DO", "NP", "PA"}));
  EXPECT_EQ(rules.default_max_age, 21);
  ASSERT_EQ(rules.diseases.size(), 1u);
  const Disease& asps = rules.diseases[0];
  EXPECT_EQ(asps.id, "asps");
  EXPECT_EQ(asps.name, "Alveolar soft part sarcoma");
  EXPECT_EQ(asps.aliases,
            (std::vector<std::string>{"alveolar soft part sarcoma", "alveolar soft-part sarcoma", "ASPS"}));
  ASSERT_EQ(asps.codes.size(), 1u);
  EXPECT_EQ(asps.codes[0].system, "icd-o-3");
  EXPECT_EQ(asps.codes[0].value, "9581/3");
  EXPECT_FALSE(asps.max_age.has_value());
  EXPECT_EQ(asps.open_trials, 0);
}

TEST(ShippedRules, MemphisIsInTheServiceArea) {
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  const auto e = decide(rules, referral("Alveolar soft part sarcoma", birthday_years_ago(12), "MD", "38105"), today);
  EXPECT_EQ(e.decision, Decision::accepted);
  EXPECT_THAT(e.reasons, ElementsAre(testing::Field(&Reason::code, std::string(reason::within_service_area))));
}

TEST(ShippedRules, JonesboroArkansasIsInTheServiceArea) {
  // cases/asps-routine.json comes from 72401 (Jonesboro, AR, about 60 miles
  // from Memphis), well inside "about 180 miles".
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  const auto e =
      decide(rules, referral("Alveolar soft part sarcoma", Date{year{2014}, month{3}, day{9}}, "MD", "72401"), today);
  EXPECT_EQ(e.decision, Decision::accepted);
  EXPECT_THAT(e.reasons, ElementsAre(testing::Field(&Reason::code, std::string(reason::within_service_area))));
}

TEST(ShippedRules, AspsFromFarAwayIsReviewedForLackOfATrial) {
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  for (const char* zip : {"77030", "37203", "39201", "10001"}) {  // Houston, Nashville, Jackson MS, New York
    const auto e = decide(rules, referral("Alveolar soft part sarcoma", birthday_years_ago(12), "MD", zip), today);
    EXPECT_EQ(e.decision, Decision::review) << zip;
    EXPECT_THAT(e.reasons, ElementsAre(testing::Field(&Reason::code, std::string(reason::no_open_trial)))) << zip;
  }
}

TEST(ShippedRules, UrgentSampleCaseIsReviewed) {
  // cases/asps-urgent.json: no postal code, NP referrer, "ASPS, metastatic to lung".
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.toml");
  const auto e = decide(rules, referral("ASPS, metastatic to lung", Date{year{2011}, month{7}, day{21}}, "NP"), today);
  EXPECT_EQ(e.decision, Decision::review);
  EXPECT_EQ(e.disease, "asps");
  EXPECT_THAT(e.reasons, ElementsAre(testing::Field(&Reason::code, std::string(reason::no_open_trial))));
}

TEST(ShippedRules, ExampleFileLoadsWithItsLimits) {
  const RuleSet rules = load_rules(REFERRALD_SOURCE_DIR "/config/rules.example.toml");
  ASSERT_EQ(rules.diseases.size(), 3u);
  EXPECT_EQ(rules.diseases[0].max_age, 18);
  EXPECT_EQ(rules.diseases[1].max_age, 25);
  EXPECT_GT(rules.diseases[0].open_trials, 0);
}

}  // namespace
}  // namespace referrald
