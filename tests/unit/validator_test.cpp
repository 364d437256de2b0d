#include "attachments/inspect.hpp"
#include "intake/validator.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

void PrintTo(const FieldError& e, std::ostream* os) { *os << "{\"" << e.path << "\", \"" << e.message << "\"}"; }

namespace {

using nlohmann::json;
using std::chrono::day;
using std::chrono::month;
using std::chrono::year;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::Not;
using testing::StartsWith;

const std::string schema_path = REFERRALD_SOURCE_DIR "/schemas/referral.v1.schema.json";

// Fixed, so that the sample cases' dates (diagnosed 2026-10-02) stay in the past.
const Date today{year{2026}, month{11}, day{28}};

// tests/data/asps-routine.json
const char* const asps_routine = R"({
  "patient": {"given_name": "Ava", "family_name": "Nguyen", "birth_date": "2014-03-09",
              "sex": "female", "postal_code": "72401",
              "guardian": {"name": "Linh Nguyen", "phone": "+1 870 555 0142", "relationship": "mother"}},
  "diagnosis": {"name": "Alveolar soft part sarcoma",
                "code": {"system": "icd-o-3", "value": "9581/3"},
                "diagnosed_on": "2026-10-02", "pathology_confirmed": true},
  "referrer": {"name": "Dana Whitfield", "credential": "MD", "npi": "1234567893",
               "organization": "Delta Pediatrics", "phone": "+1 870 555 0100",
               "fax": "+1 870 555 0101", "email": "dwhitfield@example.org"},
  "urgency": "routine",
  "notes": "Painless mass in the left thigh for 5 months. MRI and pathology report available."
})";

// tests/data/asps-urgent.json
const char* const asps_urgent = R"({
  "patient": {"given_name": "Mateo", "family_name": "Ortiz", "birth_date": "2011-07-21", "sex": "male"},
  "diagnosis": {"name": "ASPS, metastatic to lung", "pathology_confirmed": true},
  "referrer": {"name": "Priya Raman", "credential": "NP", "npi": "1003000126",
               "organization": "Gulf Coast Children's Oncology", "phone": "+1 251 555 0190",
               "email": "praman@example.org"},
  "urgency": "urgent"
})";

// tests/data/invalid-npi.json
const char* const invalid_npi = R"({
  "patient": {"given_name": "Ava", "family_name": "Nguyen", "birth_date": "2014-03-09", "sex": "female"},
  "diagnosis": {"name": "Alveolar soft part sarcoma"},
  "referrer": {"name": "Dana Whitfield", "credential": "MD", "npi": "1234567890",
               "organization": "Delta Pediatrics", "phone": "+1 870 555 0100",
               "email": "dwhitfield@example.org"},
  "urgency": "routine"
})";

class ValidatorTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { validator_ = new ReferralValidator(schema_path); }
  static void TearDownTestSuite() {
    delete validator_;
    validator_ = nullptr;
  }

  static ValidationResult run(std::string_view text) { return validator_->validate(text, today); }

  static ValidationResult run_doc(const json& doc) { return run(std::string_view(doc.dump())); }

  // The full routine case, to be changed one field at a time.
  static json routine() { return json::parse(asps_routine); }

  static Referral accepted(const ValidationResult& r) {
    if (const auto* ok = std::get_if<Referral>(&r)) return *ok;
    ADD_FAILURE() << "expected a Referral, got " << describe(r);
    return {};
  }

  static std::vector<FieldError> errors(const ValidationResult& r) {
    if (const auto* bad = std::get_if<InvalidReferral>(&r)) return bad->errors;
    ADD_FAILURE() << "expected InvalidReferral, got " << describe(r);
    return {};
  }

  static std::string malformed(const ValidationResult& r) {
    if (const auto* bad = std::get_if<MalformedInput>(&r)) return bad->message;
    ADD_FAILURE() << "expected MalformedInput, got " << describe(r);
    return {};
  }

  static std::string describe(const ValidationResult& r) {
    if (std::holds_alternative<Referral>(r)) return "a Referral";
    if (const auto* m = std::get_if<MalformedInput>(&r)) return "MalformedInput: " + m->message;
    std::string out = "InvalidReferral:";
    for (const auto& e : std::get<InvalidReferral>(r).errors) out += " [" + e.path + ": " + e.message + "]";
    return out;
  }

  // Errors for the routine case with one change applied.
  static std::vector<FieldError> errors_after(const std::function<void(json&)>& change) {
    json doc = routine();
    change(doc);
    return errors(run_doc(doc));
  }

  static Referral accepted_after(const std::function<void(json&)>& change) {
    json doc = routine();
    change(doc);
    return accepted(run_doc(doc));
  }

  static ReferralValidator* validator_;
};

ReferralValidator* ValidatorTest::validator_ = nullptr;

std::string repeat(std::string_view unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += unit;
  return out;
}

// ---------------------------------------------------------------------------
// The sample cases (tests/data/)

TEST_F(ValidatorTest, RoutineCaseFillsEveryField) {
  const Referral r = accepted(run(asps_routine));
  EXPECT_EQ(r.patient.given_name, "Ava");
  EXPECT_EQ(r.patient.family_name, "Nguyen");
  EXPECT_EQ(r.patient.birth_date, (Date{year{2014}, month{3}, day{9}}));
  EXPECT_EQ(r.patient.sex, "female");
  EXPECT_EQ(r.patient.postal_code, "72401");
  ASSERT_TRUE(r.patient.guardian.has_value());
  EXPECT_EQ(r.patient.guardian->name, "Linh Nguyen");
  EXPECT_EQ(r.patient.guardian->phone, "+1 870 555 0142");
  EXPECT_EQ(r.patient.guardian->relationship, "mother");
  EXPECT_EQ(r.diagnosis.name, "Alveolar soft part sarcoma");
  ASSERT_TRUE(r.diagnosis.code.has_value());
  EXPECT_EQ(r.diagnosis.code->system, "icd-o-3");
  EXPECT_EQ(r.diagnosis.code->value, "9581/3");
  EXPECT_EQ(r.diagnosis.diagnosed_on, (Date{year{2026}, month{10}, day{2}}));
  EXPECT_EQ(r.diagnosis.pathology_confirmed, true);
  EXPECT_EQ(r.referrer.name, "Dana Whitfield");
  EXPECT_EQ(r.referrer.credential, "MD");
  EXPECT_EQ(r.referrer.npi, "1234567893");
  EXPECT_EQ(r.referrer.organization, "Delta Pediatrics");
  EXPECT_EQ(r.referrer.phone, "+1 870 555 0100");
  EXPECT_EQ(r.referrer.fax, "+1 870 555 0101");
  EXPECT_EQ(r.referrer.email, "dwhitfield@example.org");
  EXPECT_EQ(r.urgency, Urgency::routine);
  EXPECT_EQ(r.notes, "Painless mass in the left thigh for 5 months. MRI and pathology report available.");
}

TEST_F(ValidatorTest, DocumentIsCompactAndHoldsEverythingSubmitted) {
  const Referral r = accepted(run(asps_routine));
  EXPECT_EQ(r.document.find('\n'), std::string::npos);
  EXPECT_EQ(r.document.find(": "), std::string::npos);
  EXPECT_EQ(json::parse(r.document), json::parse(asps_routine));
}

TEST_F(ValidatorTest, UrgentCaseLeavesOptionalFieldsEmpty) {
  const Referral r = accepted(run(asps_urgent));
  EXPECT_EQ(r.urgency, Urgency::urgent);
  EXPECT_EQ(r.diagnosis.name, "ASPS, metastatic to lung");
  EXPECT_EQ(r.referrer.credential, "NP");
  EXPECT_EQ(r.referrer.organization, "Gulf Coast Children's Oncology");
  EXPECT_FALSE(r.patient.postal_code.has_value());
  EXPECT_FALSE(r.patient.guardian.has_value());
  EXPECT_FALSE(r.diagnosis.code.has_value());
  EXPECT_FALSE(r.diagnosis.diagnosed_on.has_value());
  EXPECT_EQ(r.diagnosis.pathology_confirmed, true);
  EXPECT_FALSE(r.referrer.fax.has_value());
  EXPECT_FALSE(r.notes.has_value());
}

TEST_F(ValidatorTest, InvalidNpiCaseNamesTheNpi) {
  EXPECT_THAT(errors(run(invalid_npi)),
              ElementsAre(FieldError{"/referrer/npi", "is not a valid NPI: check digit does not match"}));
}

TEST_F(ValidatorTest, EmergentUrgencyIsRead) {
  EXPECT_EQ(accepted_after([](json& d) { d["urgency"] = "emergent"; }).urgency, Urgency::emergent);
}

// ---------------------------------------------------------------------------
// Not JSON at all (HTTP 400)

TEST_F(ValidatorTest, SyntaxErrorNamesTheByteOffset) {
  // Byte 12 is the '}' where a value should be.
  EXPECT_EQ(malformed(run(R"({"patient": })")), "invalid JSON at byte 12: unexpected '}'");
}

TEST_F(ValidatorTest, TruncatedInputIsMalformed) {
  EXPECT_EQ(malformed(run(R"({"urgency": "routine")")), "invalid JSON at byte 21: unexpected end of input");
  EXPECT_EQ(malformed(run("")), "invalid JSON at byte 0: unexpected end of input");
}

TEST_F(ValidatorTest, TrailingContentIsMalformed) {
  EXPECT_EQ(malformed(run(R"({} {})")), "invalid JSON at byte 3: unexpected '{'; expected end of input");
}

TEST_F(ValidatorTest, SyntaxErrorNeverEchoesTheInput) {
  // A bare word where a string belongs: nlohmann's own message would quote it.
  const std::string message = malformed(run(R"({"patient": {"given_name": Ava Nguyen}})"));
  EXPECT_EQ(message, "invalid JSON at byte 27: invalid literal");
  EXPECT_THAT(message, Not(HasSubstr("Ava")));
  EXPECT_THAT(malformed(run("{\"notes\": \"Ava\tNguyen\"}")), Not(HasSubstr("Ava")));
}

TEST_F(ValidatorTest, InvalidUtf8IsMalformedAtItsOffset) {
  // {"notes": "a<bad>"}: the bad byte is at offset 12.
  EXPECT_EQ(malformed(run("{\"notes\": \"a\xff\"}")), "invalid UTF-8 at byte 12");
  EXPECT_EQ(malformed(run("{\"notes\": \"a\xc0\xaf\"}")), "invalid UTF-8 at byte 12");      // overlong '/'
  EXPECT_EQ(malformed(run("{\"notes\": \"a\xed\xa0\x80\"}")), "invalid UTF-8 at byte 13");  // a surrogate
  EXPECT_EQ(malformed(run("{\"notes\": \"a\x80\"}")), "invalid UTF-8 at byte 12");          // lone continuation
  EXPECT_EQ(malformed(run("{\"notes\": \"a\xe2\x82\"}")), "invalid UTF-8 at byte 14");      // cut short
}

// Some HTTP clients put a UTF-8 byte-order mark before the JSON: it is let
// pass, and offsets after it still count it. Anywhere else it is not JSON.
TEST_F(ValidatorTest, AByteOrderMarkBeforeTheDocumentIsLetPass) {
  const std::string bom = "\xEF\xBB\xBF";
  const Referral r = accepted(run(bom + asps_routine));
  EXPECT_EQ(json::parse(r.document), json::parse(asps_routine));
  EXPECT_EQ(malformed(run(bom + "{}}")), "invalid JSON at byte 5: unexpected '}'; expected end of input");
  // A second mark is a character where JSON has none: well-formed UTF-8,
  // so not called bad UTF-8.
  const std::string second = malformed(run(bom + bom + "{}"));
  EXPECT_THAT(second, StartsWith("invalid JSON at byte 3"));
  EXPECT_THAT(malformed(run(bom + "\xC3\xA9{}")), StartsWith("invalid JSON at byte 3"));
  EXPECT_EQ(malformed(run(bom + "\xff{}")), "invalid UTF-8 at byte 3");
}

TEST_F(ValidatorTest, DeepNestingIsMalformed) {
  std::string deep;
  for (int i = 0; i < 17; ++i) deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 17; ++i) deep += "}";
  EXPECT_EQ(malformed(run(deep)), "nesting deeper than 16 levels");

  // Far deeper than any stack would like: stopped at the limit, not parsed.
  EXPECT_EQ(malformed(run(std::string(100000, '['))), "nesting deeper than 16 levels");
}

TEST_F(ValidatorTest, NestingAtTheLimitIsParsed) {
  std::string deep;
  for (int i = 0; i < 16; ++i) deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 16; ++i) deep += "}";
  // Sixteen levels parse; the result is merely not a referral.
  EXPECT_TRUE(std::holds_alternative<InvalidReferral>(run(deep)));
}

TEST_F(ValidatorTest, DepthLimitIsConfigurable) {
  const ReferralValidator shallow(schema_path, ValidationLimits{2});
  const auto r = shallow.validate(asps_routine, today);  // guardian is the third level
  ASSERT_TRUE(std::holds_alternative<MalformedInput>(r));
  EXPECT_EQ(std::get<MalformedInput>(r).message, "nesting deeper than 2 levels");
  EXPECT_TRUE(std::holds_alternative<Referral>(ValidatorTest::run(asps_routine)));
}

// ---------------------------------------------------------------------------
// JSON, but not a referral (HTTP 422)

TEST_F(ValidatorTest, TopLevelValueMustBeAnObject) {
  const std::vector<FieldError> expected{{"", "expected a JSON object"}};
  EXPECT_EQ(errors(run(R"([{"patient": {}}])")), expected);
  EXPECT_EQ(errors(run(R"("a referral")")), expected);
  EXPECT_EQ(errors(run("42")), expected);
  EXPECT_EQ(errors(run("null")), expected);
}

TEST_F(ValidatorTest, DuplicateKeyIsReportedAtTheDuplicatedMember) {
  const std::string text = R"({
    "patient": {"given_name": "Ava", "family_name": "Nguyen", "given_name": "Eve",
                "birth_date": "2014-03-09", "sex": "female"},
    "diagnosis": {"name": "ASPS"},
    "referrer": {"name": "Dana Whitfield", "credential": "MD", "npi": "1234567893",
                 "organization": "Delta Pediatrics", "phone": "+1 870 555 0100",
                 "email": "dwhitfield@example.org"},
    "urgency": "routine", "urgency": "emergent"
  })";
  EXPECT_THAT(errors(run(text)),
              ElementsAre(FieldError{"/patient/given_name", "duplicate key"}, FieldError{"/urgency", "duplicate key"}));
}

TEST_F(ValidatorTest, DuplicateKeyIsReportedEvenWithIdenticalValues) {
  std::string text = asps_urgent;
  text.insert(text.rfind('}'), R"(, "urgency": "urgent")");
  EXPECT_THAT(errors(run(text)), ElementsAre(FieldError{"/urgency", "duplicate key"}));
}

TEST_F(ValidatorTest, DuplicateObjectIsReportedOnce) {
  std::string text = asps_urgent;
  text.insert(text.rfind('}'), R"(, "diagnosis": {"name": "ASPS", "name": "x", "bogus": 1})");
  EXPECT_THAT(errors(run(text)), ElementsAre(FieldError{"/diagnosis", "duplicate key"}));
}

TEST_F(ValidatorTest, DuplicateKeyPathEscapesPointerCharacters) {
  EXPECT_THAT(errors(run(R"({"a/b~c": 1, "a/b~c": 2})")), testing::Contains(FieldError{"/a~1b~0c", "duplicate key"}));
}

TEST_F(ValidatorTest, UnknownFieldsAreEachNamed) {
  EXPECT_THAT(
      errors_after([](json& d) {
        d["extra"] = 1;
        d["patient"]["ssn"] = "123-45-6789";
        d["patient"]["middle_name"] = "Q";
        d["diagnosis"]["code"]["version"] = "3.2";
        d["patient"]["guardian"]["email"] = "x@example.org";
      }),
      ElementsAre(FieldError{"/diagnosis/code/version", "unknown field"}, FieldError{"/extra", "unknown field"},
                  FieldError{"/patient/guardian/email", "unknown field"},
                  FieldError{"/patient/middle_name", "unknown field"}, FieldError{"/patient/ssn", "unknown field"}));
}

TEST_F(ValidatorTest, WrongTypesAreNamed) {
  EXPECT_THAT(
      errors_after([](json& d) {
        d["patient"]["birth_date"] = 20140309;
        d["diagnosis"]["pathology_confirmed"] = "yes";
        d["referrer"]["npi"] = 1234567893;
        d["urgency"] = nullptr;
        d["notes"] = json::array({"a"});
        d["diagnosis"]["code"] = "9581/3";
      }),
      ElementsAre(FieldError{"/diagnosis/code", "must be an object"},
                  FieldError{"/diagnosis/pathology_confirmed", "must be true or false"},
                  FieldError{"/notes", "must be a string"}, FieldError{"/patient/birth_date", "must be a string"},
                  FieldError{"/referrer/npi", "must be a string"}, FieldError{"/urgency", "must be a string"}));
}

TEST_F(ValidatorTest, SectionOfTheWrongTypeIsOneError) {
  EXPECT_THAT(errors_after([](json& d) { d["patient"] = "Ava Nguyen"; }),
              ElementsAre(FieldError{"/patient", "must be an object"}));
}

TEST_F(ValidatorTest, MissingRequiredFieldsAreNamedByTheirOwnPath) {
  EXPECT_THAT(
      errors_after([](json& d) {
        d["patient"].erase("birth_date");
        d["patient"]["guardian"].erase("phone");
        d["diagnosis"]["code"].erase("value");
        d["referrer"].erase("email");
        d["referrer"].erase("npi");
      }),
      ElementsAre(FieldError{"/diagnosis/code/value", "is required"}, FieldError{"/patient/birth_date", "is required"},
                  FieldError{"/patient/guardian/phone", "is required"}, FieldError{"/referrer/email", "is required"},
                  FieldError{"/referrer/npi", "is required"}));
}

TEST_F(ValidatorTest, EmptyObjectNamesEverySection) {
  EXPECT_THAT(errors(run("{}")),
              ElementsAre(FieldError{"/diagnosis", "is required"}, FieldError{"/patient", "is required"},
                          FieldError{"/referrer", "is required"}, FieldError{"/urgency", "is required"}));
}

TEST_F(ValidatorTest, EnumsListTheAllowedValues) {
  EXPECT_THAT(errors_after([](json& d) {
                d["urgency"] = "asap";
                d["patient"]["sex"] = "F";
                d["referrer"]["credential"] = "MBBS";
                d["diagnosis"]["code"]["system"] = "ICD-O-3";  // enums are case-sensitive
              }),
              ElementsAre(FieldError{"/diagnosis/code/system", "must be one of: icd-10-cm, icd-o-3, snomed-ct"},
                          FieldError{"/patient/sex", "must be one of: female, male, other, unknown"},
                          FieldError{"/referrer/credential", "must be one of: MD, DO, NP, PA, RN, other"},
                          FieldError{"/urgency", "must be one of: routine, urgent, emergent"}));
}

// The part of a string before a U+0000 must not pass for the whole: an
// emergent referral with a NUL after its urgency is refused, not stored as
// routine, and a NUL cannot carry text past a pattern into a fax or a mail.
TEST_F(ValidatorTest, ANulDoesNotLetAStringPassAsItsFirstPart) {
  EXPECT_THAT(errors_after([](json& d) {
                d["urgency"] = std::string("emergent\0", 9);
                d["patient"]["sex"] = std::string("female\0\r\nBcc: x@example.org", 27);
                d["patient"]["postal_code"] = std::string("72201\0\r\nBcc: x@example.org", 26);
                d["referrer"]["npi"] = std::string("1234567893\0", 11);
              }),
              ElementsAre(FieldError{"/patient/postal_code", "must be a US ZIP code: 5 digits or ZIP+4 (12345-6789)"},
                          FieldError{"/patient/sex", "must be one of: female, male, other, unknown"},
                          FieldError{"/referrer/npi", "must be exactly 10 digits"},
                          FieldError{"/urgency", "must be one of: routine, urgent, emergent"}));
}

TEST_F(ValidatorTest, OverlongStringsNameTheirLimit) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["given_name"] = repeat("a", 101);
                d["patient"]["guardian"]["relationship"] = repeat("a", 51);
                d["diagnosis"]["name"] = repeat("a", 201);
                d["diagnosis"]["code"]["value"] = repeat("1", 21);
                d["referrer"]["organization"] = repeat("a", 201);
                d["referrer"]["phone"] = repeat("5", 33);
                d["referrer"]["email"] = repeat("a", 243) + "@example.org";  // 255
                d["notes"] = repeat("a", 4001);
              }),
              ElementsAre(FieldError{"/diagnosis/code/value", "must be at most 20 characters"},
                          FieldError{"/diagnosis/name", "must be at most 200 characters"},
                          FieldError{"/notes", "must be at most 4000 characters"},
                          FieldError{"/patient/given_name", "must be at most 100 characters"},
                          FieldError{"/patient/guardian/relationship", "must be at most 50 characters"},
                          FieldError{"/referrer/email", "must be at most 254 characters"},
                          FieldError{"/referrer/organization", "must be at most 200 characters"},
                          FieldError{"/referrer/phone", "must be at most 32 characters"}));
}

TEST_F(ValidatorTest, StringsAtTheirLimitsAreAccepted) {
  const Referral r = accepted_after([](json& d) {
    d["patient"]["given_name"] = repeat("a", 100);
    d["referrer"]["email"] = repeat("a", 242) + "@example.org";  // 254
    d["notes"] = repeat("a", 4000);
  });
  EXPECT_EQ(r.patient.given_name.size(), 100u);
  EXPECT_EQ(r.notes->size(), 4000u);
}

TEST_F(ValidatorTest, LengthsCountCodePointsNotBytes) {
  // 100 two-byte letters (200 bytes) and 100 four-byte emoji (400 bytes) fit.
  const Referral r = accepted_after([](json& d) {
    d["patient"]["given_name"] = repeat("é", 100);
    d["patient"]["family_name"] = repeat("🦄", 100);
  });
  EXPECT_EQ(r.patient.given_name, repeat("é", 100));
  EXPECT_EQ(r.patient.family_name.size(), 400u);

  EXPECT_THAT(errors_after([](json& d) { d["patient"]["family_name"] = repeat("🦄", 101); }),
              ElementsAre(FieldError{"/patient/family_name", "must be at most 100 characters"}));
}

TEST_F(ValidatorTest, LengthIsCountedPastAnEmbeddedNul) {
  EXPECT_THAT(errors_after([](json& d) { d["notes"] = std::string(1, '\0') + repeat("a", 4000); }),
              ElementsAre(FieldError{"/notes", "must be at most 4000 characters"}));
}

TEST_F(ValidatorTest, EmptyRequiredStringsAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["given_name"] = "";
                d["referrer"]["organization"] = "";
                d["diagnosis"]["name"] = "";
              }),
              ElementsAre(FieldError{"/diagnosis/name", "must not be empty"},
                          FieldError{"/patient/given_name", "must not be empty"},
                          FieldError{"/referrer/organization", "must not be empty"}));
}

TEST_F(ValidatorTest, BlankNamesAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["given_name"] = "   ";
                d["patient"]["family_name"] = "\u00a0\u3000";  // no-break and ideographic spaces
                d["referrer"]["name"] = " \u200b ";            // zero-width space
              }),
              ElementsAre(FieldError{"/patient/family_name", "must not be blank"},
                          FieldError{"/patient/given_name", "must not be blank"},
                          FieldError{"/referrer/name", "must not be blank"}));
}

TEST_F(ValidatorTest, ControlCharactersInNamesAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["given_name"] = "Ava\u0007";
                d["patient"]["family_name"] = std::string("Ngu\0yen", 7);
                d["patient"]["guardian"]["name"] = "Linh\u0085Nguyen";  // C1 NEXT LINE
                d["referrer"]["name"] = "Dana\r\nBcc: x@example.org";
                d["referrer"]["organization"] = "Delta\u007fPediatrics";
              }),
              ElementsAre(FieldError{"/patient/family_name", "must not contain control characters"},
                          FieldError{"/patient/given_name", "must not contain control characters"},
                          FieldError{"/patient/guardian/name", "must not contain control characters"},
                          FieldError{"/referrer/name", "must not contain control characters"},
                          FieldError{"/referrer/organization", "must not contain control characters"}));
}

TEST_F(ValidatorTest, ControlCharactersInOtherSingleLineFieldsAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["referrer"]["phone"] = "+1 870 555 0100\n";
                d["diagnosis"]["name"] = "ASPS\tlung";
              }),
              ElementsAre(FieldError{"/diagnosis/name", "must not contain control characters"},
                          FieldError{"/referrer/phone", "must not contain control characters"}));
}

TEST_F(ValidatorTest, NotesMayHaveLineBreaks) {
  const Referral r = accepted_after([](json& d) { d["notes"] = "Line one.\r\nLine two.\tIndented."; });
  EXPECT_EQ(r.notes, "Line one.\r\nLine two.\tIndented.");
}

// NUL, ESC and BEL went on into spool files and fax pages; C1 controls too.
TEST_F(ValidatorTest, OtherControlCharactersInNotesAreRefused) {
  for (const std::string& notes : {std::string("Call\0back", 10), std::string("\x1b[2JCleared"), std::string("Ring\a"),
                                   std::string("Next\u0085line"), std::string("Delete\x7f")}) {
    EXPECT_THAT(errors_after([&](json& d) { d["notes"] = notes; }),
                ElementsAre(FieldError{"/notes", "must not contain control characters other than tab and line breaks"}))
        << testing::PrintToString(notes);
  }
}

TEST_F(ValidatorTest, BidiOverridesInNamesAreRefused) {
  const std::string bidi =
      "must not contain bidirectional override or isolate characters (U+202A to U+202E, U+2066 to U+2069)";
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["given_name"] = "Ava\u202eavA";              // RIGHT-TO-LEFT OVERRIDE
                d["patient"]["family_name"] = "\u2066Nguyen\u2069";       // LEFT-TO-RIGHT ISOLATE ... POP
                d["referrer"]["name"] = "Dana\u202aLee";                  // LEFT-TO-RIGHT EMBEDDING
                d["referrer"]["organization"] = "Delta\u2068Pediatrics";  // FIRST STRONG ISOLATE
              }),
              ElementsAre(FieldError{"/patient/family_name", bidi}, FieldError{"/patient/given_name", bidi},
                          FieldError{"/referrer/name", bidi}, FieldError{"/referrer/organization", bidi}));
  // Right-to-left names themselves are fine, and so are the marks (U+200F).
  const Referral r = accepted_after([](json& d) { d["patient"]["given_name"] = "\u05d0\u05d1\u05d9\u200f"; });
  EXPECT_EQ(r.patient.given_name, "\u05d0\u05d1\u05d9\u200f");
}

TEST_F(ValidatorTest, AnyLetterEmojiAndSqlAreKeptVerbatim) {
  const std::string sql = "Robert'); DROP TABLE referrals;--";
  const Referral r = accepted_after([&](json& d) {
    d["patient"]["given_name"] = sql;
    d["patient"]["family_name"] = "O'Brien; DROP TABLE";
    d["patient"]["guardian"]["name"] = "Zoë 🦄 Nguyễn";
    d["referrer"]["name"] = "李小龍";
    d["referrer"]["organization"] = "مستشفى الأطفال \"<script>\"";
  });
  EXPECT_EQ(r.patient.given_name, sql);
  EXPECT_EQ(r.patient.family_name, "O'Brien; DROP TABLE");
  EXPECT_EQ(r.patient.guardian->name, "Zoë 🦄 Nguyễn");
  EXPECT_EQ(r.referrer.name, "李小龍");
  EXPECT_EQ(r.referrer.organization, "مستشفى الأطفال \"<script>\"");
  const json stored = json::parse(r.document);
  EXPECT_EQ(stored["patient"]["given_name"], sql);
  EXPECT_EQ(stored["patient"]["guardian"]["name"], "Zoë 🦄 Nguyễn");
}

TEST_F(ValidatorTest, EscapedCharactersAreDecoded) {
  const Referral r = accepted(run(R"({
    "patient": {"given_name": "Zo\u00eb", "family_name": "\ud83e\udd84", "birth_date": "2014-03-09", "sex": "female"},
    "diagnosis": {"name": "ASPS"},
    "referrer": {"name": "Dana", "credential": "MD", "npi": "1234567893", "organization": "Delta",
                 "phone": "1", "email": "d@example.org"},
    "urgency": "routine"})"));
  EXPECT_EQ(r.patient.given_name, "Zoë");
  EXPECT_EQ(r.patient.family_name, "🦄");
}

TEST_F(ValidatorTest, FormatsAreExplained) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["birth_date"] = "03/09/2014";
                d["patient"]["postal_code"] = "3810";
                d["diagnosis"]["diagnosed_on"] = "2026-10-2";
                d["referrer"]["npi"] = "123456789";
                d["referrer"]["email"] = "dwhitfield at example.org";
              }),
              ElementsAre(FieldError{"/diagnosis/diagnosed_on", "must be a date in the form YYYY-MM-DD"},
                          FieldError{"/patient/birth_date", "must be a date in the form YYYY-MM-DD"},
                          FieldError{"/patient/postal_code", "must be a US ZIP code: 5 digits or ZIP+4 (12345-6789)"},
                          FieldError{"/referrer/email", "must be an email address"},
                          FieldError{"/referrer/npi", "must be exactly 10 digits"}));
}

TEST_F(ValidatorTest, ZipPlusFourIsAccepted) {
  EXPECT_EQ(accepted_after([](json& d) { d["patient"]["postal_code"] = "38105-2794"; }).patient.postal_code,
            "38105-2794");
  EXPECT_THAT(errors_after([](json& d) { d["patient"]["postal_code"] = "38105-27941"; }),
              ElementsAre(FieldError{"/patient/postal_code", "must be a US ZIP code: 5 digits or ZIP+4 (12345-6789)"}));
}

TEST_F(ValidatorTest, ImpossibleDatesAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["birth_date"] = "2023-02-29";
                d["diagnosis"]["diagnosed_on"] = "2026-13-01";
              }),
              ElementsAre(FieldError{"/diagnosis/diagnosed_on", "is not a real calendar date"},
                          FieldError{"/patient/birth_date", "is not a real calendar date"}));
  // A leap day is real.
  EXPECT_EQ(accepted_after([](json& d) { d["patient"]["birth_date"] = "2024-02-29"; }).patient.birth_date,
            (Date{year{2024}, month{2}, day{29}}));
}

TEST_F(ValidatorTest, FutureDatesAreRefused) {
  EXPECT_THAT(errors_after([](json& d) {
                d["patient"]["birth_date"] = "2026-11-29";  // tomorrow
                d["diagnosis"]["diagnosed_on"] = "2027-01-01";
              }),
              ElementsAre(FieldError{"/diagnosis/diagnosed_on", "must not be in the future"},
                          FieldError{"/patient/birth_date", "must not be in the future"}));
}

TEST_F(ValidatorTest, TodayIsNotTheFuture) {
  const Referral r = accepted_after([](json& d) {
    d["patient"]["birth_date"] = "2026-11-28";
    d["diagnosis"]["diagnosed_on"] = "2026-11-28";
  });
  EXPECT_EQ(r.patient.birth_date, today);
}

TEST_F(ValidatorTest, BirthDatesOver120YearsAgoAreRefused) {
  EXPECT_EQ(accepted_after([](json& d) {
              d["patient"]["birth_date"] = "1906-11-28";  // exactly 120 years
              d["diagnosis"].erase("diagnosed_on");
            }).patient.birth_date,
            (Date{year{1906}, month{11}, day{28}}));
  EXPECT_THAT(errors_after([](json& d) { d["patient"]["birth_date"] = "1906-11-27"; }),
              ElementsAre(FieldError{"/patient/birth_date", "must not be more than 120 years ago"}));
}

TEST_F(ValidatorTest, DiagnosisBeforeBirthIsRefused) {
  EXPECT_THAT(errors_after([](json& d) { d["diagnosis"]["diagnosed_on"] = "2014-03-08"; }),
              ElementsAre(FieldError{"/diagnosis/diagnosed_on", "must not be before the birth date"}));
  EXPECT_TRUE(accepted_after([](json& d) {
                d["diagnosis"]["diagnosed_on"] = "2014-03-09";
              }).diagnosis.diagnosed_on.has_value());
}

TEST_F(ValidatorTest, AllErrorsAreReportedAtOnceSortedByPath) {
  EXPECT_THAT(errors_after([](json& d) {
                d["urgency"] = "soon";
                d["referrer"]["npi"] = "1234567890";
                d["patient"]["birth_date"] = "2030-01-01";
                d["patient"]["given_name"] = "A\u0001";
                d["patient"].erase("sex");
                d["diagnosis"]["colour"] = "blue";
                d["notes"] = repeat("x", 4001);
              }),
              ElementsAre(FieldError{"/diagnosis/colour", "unknown field"},
                          FieldError{"/notes", "must be at most 4000 characters"},
                          FieldError{"/patient/birth_date", "must not be in the future"},
                          FieldError{"/patient/given_name", "must not contain control characters"},
                          FieldError{"/patient/sex", "is required"},
                          FieldError{"/referrer/npi", "is not a valid NPI: check digit does not match"},
                          FieldError{"/urgency", "must be one of: routine, urgent, emergent"}));
}

TEST_F(ValidatorTest, SemanticChecksWaitForTheSchema) {
  // A future birth date that is also badly formed gets only the format error.
  EXPECT_THAT(errors_after([](json& d) { d["patient"]["birth_date"] = "2030-1-1"; }),
              ElementsAre(FieldError{"/patient/birth_date", "must be a date in the form YYYY-MM-DD"}));
}

TEST_F(ValidatorTest, ConcurrentValidationGivesTheSameAnswers) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const auto good = validator_->validate(asps_routine, today);
        const auto npi = validator_->validate(invalid_npi, today);
        if (!std::holds_alternative<Referral>(good) || !std::holds_alternative<InvalidReferral>(npi) ||
            std::get<InvalidReferral>(npi).errors.size() != 1) {
          ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST(ValidatorSetup, MissingSchemaFileIsNamed) {
  try {
    ReferralValidator v("/nonexistent/referral.schema.json");
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/referral.schema.json"));
  }
}

TEST(ValidatorSetup, SchemaThatIsNotJsonIsNamed) {
  const std::string path = testing::TempDir() + "referrald_bad_schema.json";
  std::ofstream(path) << "{ not json";
  try {
    ReferralValidator v(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + " is not valid JSON"));
  }
}

// The schema is part of the operator contract; keep its promises checkable.
TEST(ReferralSchema, EveryStringIsBoundedAndEveryObjectClosed) {
  std::ifstream in(schema_path);
  const json schema = json::parse(in);
  EXPECT_EQ(schema.at("$schema"), "http://json-schema.org/draft-07/schema#");
  EXPECT_TRUE(schema.contains("$id"));
  EXPECT_TRUE(schema.contains("title"));

  int strings = 0;
  std::function<void(const json&, const std::string&)> walk = [&](const json& node, const std::string& path) {
    const std::string type = node.value("type", "");
    EXPECT_TRUE(node.contains("title") || path.empty()) << path << " has no title";
    if (type == "string") {
      ++strings;
      EXPECT_TRUE(node.contains("maxLength")) << path << " has no maxLength";
    }
    if (type == "object") {
      EXPECT_EQ(node.value("additionalProperties", true), false) << path << " is open";
      for (const auto& [name, child] : node.at("properties").items()) walk(child, path + "/" + name);
    }
  };
  walk(schema, "");
  EXPECT_EQ(strings, 21);
}

// ---------------------------------------------------------------------------
// A body read from its spool a block at a time (the API's large bodies):
// the same results wherever the blocks are cut, and each file decoded into
// a spool of its own as it is read.

// A directory of this test's own for spools, removed at the end.
class SpoolDirectory {
 public:
  SpoolDirectory() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("referrald-validator-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~SpoolDirectory() { std::filesystem::remove_all(path_); }
  SpoolDirectory(const SpoolDirectory&) = delete;
  SpoolDirectory& operator=(const SpoolDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// `text` in a spool, after enough spaces (JSON's whitespace) that the first
// block ends `cut` bytes into it.
std::shared_ptr<SealedSpool> spooled_body(const std::string& text, std::size_t cut, const SpoolDirectory& dir) {
  auto spool = std::make_shared<SealedSpool>(dir.path());
  spool->append(std::string(SealedSpool::block_size - cut, ' '));
  spool->append(text);
  spool->finish();
  return spool;
}

// The routine case with one attachment whose data is `data` (base64 text).
std::string with_attachment_data(const std::string& data) {
  json doc = json::parse(asps_routine);
  doc["attachments"] = json::array({{{"title", "Pathology report"}, {"data", "DATA"}}});
  std::string text = doc.dump();
  text.replace(text.find("\"DATA\""), 6, "\"" + data + "\"");
  return text;
}

std::string pseudo_random_bytes(std::size_t n) {
  std::string out(n, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xFF);
  }
  return out;
}

// What a result says, with a malformed body's byte offset moved back by
// `padding` (the spaces before a spooled text), and a file's bytes.
std::string summary(const ValidationResult& r, std::size_t padding = 0) {
  if (const auto* ok = std::get_if<Referral>(&r)) {
    std::string out = "Referral " + ok->document;
    for (const auto& a : ok->attachments) out += " [" + a.title + ": " + sha256_hex(a.bytes()) + "]";
    return out;
  }
  if (const auto* m = std::get_if<MalformedInput>(&r)) {
    const auto at = m->message.find("at byte ");
    if (at == std::string::npos) return "MalformedInput: " + m->message;
    std::size_t end = at + 8;
    while (end < m->message.size() && std::isdigit(static_cast<unsigned char>(m->message[end]))) ++end;
    const auto offset = std::stoul(m->message.substr(at + 8, end - at - 8)) - padding;
    return "MalformedInput: " + m->message.substr(0, at + 8) + std::to_string(offset) + m->message.substr(end);
  }
  if (std::holds_alternative<FilesRequired>(r)) return "FilesRequired";
  std::string out = "InvalidReferral:";
  for (const auto& e : std::get<InvalidReferral>(r).errors) out += " [" + e.path + ": " + e.message + "]";
  return out;
}

TEST_F(ValidatorTest, ABodyCutIntoBlocksAnywhereReadsAsTheWhole) {
  const SpoolDirectory dir;
  const std::string file = base64(pseudo_random_bytes(300));
  std::string escaped = with_attachment_data(file);
  // Escapes, characters of several bytes and a duplicate key, for the parts to cut through.
  escaped.replace(escaped.find("\"Ava\""), 5, R"("A\u00e9va \ud83d\ude00 Ngũyễn")");
  escaped.replace(escaped.find("\"urgency\""), 9, R"("urgency": "routine", "urgency")");
  const std::vector<std::string> texts = {
      with_attachment_data(file),
      with_attachment_data(file.substr(0, 100) + "*" + file.substr(100)),  // not base64
      with_attachment_data("QUJDQQ==QUJD"),                                // base64 after its padding
      escaped,
      R"({"patient": {"given_name": tru}})",
      "{\"notes\": \"a\xed\xa0\x80\"}",
      "{\"notes\": \"a\xe2\x82\"}",
      "{\"notes\": \"a\xff\"}",
      R"({"urgency": "routine"} {})",
      R"({"urgency": "routine")",
      R"({"a": [1, -2, 3.5, 1e999]})",
  };
  for (const auto& text : texts) {
    const std::string whole = summary(run(text));
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      const auto body = spooled_body(text, cut, dir);
      const std::size_t padding = SealedSpool::block_size - cut;
      ASSERT_EQ(summary(validator_->validate(*body, today), padding), whole)
          << "cut at " << cut << " of " << text.substr(0, 40);
      ASSERT_EQ(summary(validator_->validate(*body, today, false, dir.path()), padding), whole)
          << "cut at " << cut << " of " << text.substr(0, 40) << ", files spooled";
    }
  }
}

TEST_F(ValidatorTest, ALargeFileInASpooledBodyIsDecodedIntoASpoolOfItsOwn) {
  const SpoolDirectory dir;
  const std::string bytes = pseudo_random_bytes(3 * 1024 * 1024 + 5);
  const auto body = spooled_body(with_attachment_data(base64(bytes)), 0, dir);
  const Referral r = accepted(validator_->validate(*body, today, false, dir.path()));
  ASSERT_EQ(r.attachments.size(), 1u);
  const Attachment& a = r.attachments[0];
  ASSERT_NE(a.spooled, nullptr);
  EXPECT_TRUE(a.data.empty());
  EXPECT_EQ(a.spooled->size(), bytes.size());
  EXPECT_EQ(a.spooled->sha256_hex(), sha256_hex(bytes));
  EXPECT_EQ(a.title, "Pathology report");
  EXPECT_EQ(r.document.find("attachments"), std::string::npos);  // stored apart, never in the document
  // Without a directory for them, in memory, as an in-memory body's are.
  const Referral kept = accepted(validator_->validate(*body, today));
  ASSERT_EQ(kept.attachments.size(), 1u);
  EXPECT_EQ(kept.attachments[0].spooled, nullptr);
  EXPECT_EQ(sha256_hex(kept.attachments[0].data), sha256_hex(bytes));
}

TEST_F(ValidatorTest, BadBase64IsNamedWhereverItFallsAmongTheBlocks) {
  const SpoolDirectory dir;
  const std::string file = base64(pseudo_random_bytes(200 * 1024));
  const std::string text = with_attachment_data(file);
  const std::size_t data_at = text.find(file);
  const auto expected =
      ElementsAre(FieldError{"/attachments/0/data", "is not base64 (RFC 4648: A-Z, a-z, 0-9, +, / and = padding)"});
  // A character outside the alphabet just before, at and just after a
  // block's end, far into the file; and a file cut short by one character.
  for (const std::size_t shift : {0u, 1u, 2u, 3u, 4u, 5u}) {
    std::string bad = text;
    bad[data_at + 2 * SealedSpool::block_size + shift] = '*';
    for (const std::size_t cut : {std::size_t{0}, std::size_t{3}}) {
      const auto body = spooled_body(bad, cut, dir);
      EXPECT_THAT(errors(validator_->validate(*body, today, false, dir.path())), expected) << shift << " " << cut;
    }
  }
  const auto short_body = spooled_body(with_attachment_data(file.substr(0, file.size() - 5)), 7, dir);
  EXPECT_THAT(errors(validator_->validate(*short_body, today, false, dir.path())), expected);
}

TEST_F(ValidatorTest, ASpooledBodyKeepsTheFirstOfRepeatedDataAndItsDepthLimit) {
  const SpoolDirectory dir;
  const std::string bytes = pseudo_random_bytes(100 * 1024);
  std::string text = with_attachment_data(base64(bytes));
  text.replace(text.find("\"title\""), 7, "\"data\": \"not base64!\", \"title\"");
  // The second "data" is the duplicate now, however long: the first (not base64) is kept.
  const auto body = spooled_body(text, 5, dir);
  EXPECT_THAT(errors(validator_->validate(*body, today, false, dir.path())),
              ElementsAre(FieldError{"/attachments/0/data", "duplicate key"}));

  std::string deep;
  for (int i = 0; i < 17; ++i) deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 17; ++i) deep += "}";
  EXPECT_EQ(malformed(validator_->validate(*spooled_body(deep, 40, dir), today)), "nesting deeper than 16 levels");
}

// A body of countless tiny files: no more than any office may take are
// kept (each in a spool: an open file); the rest are only checked, and the
// referral is refused for their number later (inspect_attachments).
TEST_F(ValidatorTest, FilesPastTheMostAnyOfficeTakesAreNotKept) {
  const SpoolDirectory dir;
  json doc = json::parse(asps_routine);
  doc["attachments"] = json::array();
  const std::size_t files = max_attachments_ceiling + 150;
  for (std::size_t i = 0; i < files; ++i) doc["attachments"].push_back({{"title", "x"}, {"data", "QQ=="}});
  const auto body = spooled_body(doc.dump(), 0, dir);
  const auto open_files = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{});
  };
  const auto before = open_files();
  const Referral r = accepted(validator_->validate(*body, today, false, dir.path()));
  ASSERT_EQ(r.attachments.size(), files);
  std::size_t spooled = 0;
  for (const Attachment& a : r.attachments) spooled += a.spooled != nullptr ? 1U : 0U;
  EXPECT_EQ(spooled, max_attachments_ceiling);
  EXPECT_LE(open_files() - before, static_cast<std::ptrdiff_t>(max_attachments_ceiling));
  EXPECT_EQ(r.attachments[0].spooled->read_all(), "A");
  // Past the ceiling, bad base64 is still named.
  doc["attachments"][files - 1]["data"] = "not base64!";
  EXPECT_THAT(errors(validator_->validate(*spooled_body(doc.dump(), 0, dir), today, false, dir.path())),
              ElementsAre(FieldError{"/attachments/" + std::to_string(files - 1) + "/data",
                                     "is not base64 (RFC 4648: A-Z, a-z, 0-9, +, / and = padding)"}));
}

TEST_F(ValidatorTest, AFileThatCannotBeSpooledIsAnErrorNeverAReferral) {
  const SpoolDirectory dir;
  const auto body = spooled_body(with_attachment_data(base64("%PDF-1.4 a file")), 0, dir);
  EXPECT_ANY_THROW(validator_->validate(*body, today, false, dir.path() / "missing"));
}

}  // namespace
}  // namespace referrald
