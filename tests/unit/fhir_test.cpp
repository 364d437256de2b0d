// FHIR R4 in and out (daemon/fhir/mapping.*): each row of docs/fhir.md's
// mapping, each error with the FHIRPath it names (through the real v1
// schema and validator), and the Task's status for each office status.
#include "fhir/mapping.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "intake/validator.hpp"

namespace referrald::fhir {
namespace {

using namespace std::chrono;

json sample(const std::string& name) {
  std::ifstream in(std::string(REFERRALD_SOURCE_DIR) + "/tests/data/fhir/" + name);
  std::ostringstream s;
  s << in.rdbuf();
  return json::parse(s.str());
}

const ReferralValidator& validator() {
  static const ReferralValidator v(std::string(REFERRALD_SOURCE_DIR) + "/schemas/referral.v1.schema.json");
  return v;
}

constexpr Date test_today{year{2026}, December, day{6}};

// A resource as the daemon reads one: its text parsed (each file decoded
// as it is read), then mapped.
MapResult map_json(const json& resource, Form form) {
  std::string error;
  const auto parsed = parse(resource.dump(), error);
  if (!parsed) {
    ADD_FAILURE() << "not parsed: " << error;
    return std::vector<Issue>{};
  }
  return map_submission(*parsed, form);
}

json mapped_json(const json& resource, Form form) {
  const auto result = map_json(resource, form);
  const auto* mapped = std::get_if<Mapped>(&result);
  if (mapped == nullptr) {
    ADD_FAILURE() << "not mapped: " << operation_outcome(std::get<std::vector<Issue>>(result)).dump();
    return json();
  }
  return json::parse(mapped->referral);
}

// The issues a submission gets: from the mapping, else from the validator
// with the files beside the referral, as plan_intake has it (translated
// back to FHIR elements).
std::vector<Issue> issues_of(const json& resource, Form form) {
  const auto result = map_json(resource, form);
  if (const auto* issues = std::get_if<std::vector<Issue>>(&result)) return *issues;
  const auto& mapped = std::get<Mapped>(result);
  const auto validated = validator().validate(mapped.referral, test_today, mapped.files);
  if (const auto* invalid = std::get_if<InvalidReferral>(&validated)) return translate(invalid->errors, mapped);
  return {};
}

std::vector<std::string> expressions(const std::vector<Issue>& issues) {
  std::vector<std::string> out;
  for (const auto& i : issues) out.push_back(i.expression);
  return out;
}

using Expressions = std::vector<std::string>;

TEST(FhirIn, TransactionBundleMapsEveryRow) {
  const auto v1 = mapped_json(sample("transaction.json"), Form::transaction);
  const auto expected = json::parse(R"({
    "patient": {"given_name": "Ava", "family_name": "Nguyen", "birth_date": "2014-03-09", "sex": "female",
                "postal_code": "72401",
                "guardian": {"name": "Linh Nguyen", "phone": "+1 870 555 0142", "relationship": "mother"}},
    "diagnosis": {"name": "Alveolar soft part sarcoma", "code": {"system": "icd-o-3", "value": "9581/3"},
                  "diagnosed_on": "2026-10-02", "pathology_confirmed": true},
    "referrer": {"name": "Dana Whitfield", "npi": "1234567893", "credential": "MD",
                 "organization": "Delta Pediatrics", "phone": "+1 870 555 0100", "fax": "+1 870 555 0101",
                 "email": "dwhitfield@example.org"},
    "urgency": "routine",
    "notes": "Painless mass in the left thigh for 5 months. MRI and pathology report available."
  })");
  EXPECT_EQ(json::diff(expected, v1), json::array()) << v1.dump(2);
  // And the validator takes it as it is.
  const auto result = map_json(sample("transaction.json"), Form::transaction);
  const auto& mapped = std::get<Mapped>(result);
  EXPECT_TRUE(std::holds_alternative<Referral>(validator().validate(mapped.referral, test_today, mapped.files)));
  EXPECT_EQ(mapped.identifier, "urn:oid:2.16.840.1.113883.3.1234.5|DP-REF-20261201-17");
  EXPECT_EQ(mapped.if_none_exist, "identifier=urn:oid:2.16.840.1.113883.3.1234.5|DP-REF-20261201-17");
  EXPECT_EQ(mapped.entry_types, (std::vector<std::string>{"ServiceRequest", "Patient", "PractitionerRole",
                                                          "Practitioner", "Organization", "Condition"}));
}

TEST(FhirIn, MessageBundleFindsTheServiceRequestThroughTheTask) {
  const auto v1 = mapped_json(sample("message.json"), Form::message);
  EXPECT_EQ(v1["urgency"], "urgent");
  EXPECT_EQ(v1["patient"]["given_name"], "Ava");
  EXPECT_EQ(v1["referrer"]["npi"], "1234567893");
  const auto result = map_json(sample("message.json"), Form::message);
  EXPECT_EQ(std::get<Mapped>(result).message_id, "msg-1");
  EXPECT_EQ(std::get<Mapped>(result).identifier, "urn:oid:2.16.840.1.113883.3.1234.5|DP-REF-20261201-19");
}

TEST(FhirIn, MessageHeaderMayFocusTheServiceRequestItself) {
  auto message = sample("message.json");
  message["entry"][0]["resource"]["focus"][0]["reference"] = "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0001";
  EXPECT_EQ(mapped_json(message, Form::message)["urgency"], "urgent");
}

TEST(FhirIn, ContainedResourcesMapLikeBundleEntries) {
  const auto v1 = mapped_json(sample("service-request.json"), Form::service_request);
  const auto expected = json::parse(R"({
    "patient": {"given_name": "Ava", "family_name": "Nguyen", "birth_date": "2014-03-09", "sex": "female",
                "postal_code": "72401"},
    "diagnosis": {"name": "Alveolar soft part sarcoma", "code": {"system": "icd-10-cm", "value": "C49.22"},
                  "diagnosed_on": "2026-10-02"},
    "referrer": {"name": "Dana Whitfield", "npi": "1234567893", "credential": "MD",
                 "organization": "Delta Pediatrics", "phone": "+1 870 555 0100",
                 "email": "dwhitfield@example.org"},
    "urgency": "emergent"
  })");
  EXPECT_EQ(json::diff(expected, v1), json::array()) << v1.dump(2);
}

TEST(FhirIn, PriorityBecomesUrgency) {
  auto request = sample("service-request.json");
  for (const auto& [priority, urgency] : {std::pair{"routine", "routine"}, std::pair{"urgent", "urgent"},
                                          std::pair{"asap", "emergent"}, std::pair{"stat", "emergent"}}) {
    request["priority"] = priority;
    EXPECT_EQ(mapped_json(request, Form::service_request)["urgency"], urgency) << priority;
  }
  request.erase("priority");
  EXPECT_EQ(mapped_json(request, Form::service_request)["urgency"], "routine");
}

TEST(FhirIn, NameIsTheOfficialOneElseTheFirst) {
  auto bundle = sample("transaction.json");
  auto& names = bundle["entry"][1]["resource"]["name"];
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["patient"]["given_name"], "Ava");
  names[1]["use"] = "old";
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["patient"]["given_name"], "Avie");
  names[0]["given"] = json::array({"Mary", "Ann"});
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["patient"]["given_name"], "Mary Ann");
}

TEST(FhirIn, CodeSystemsBecomeTheV1Systems) {
  auto request = sample("service-request.json");
  auto& coding = request["contained"][3]["code"]["coding"];
  coding.insert(coding.begin(), json{{"system", "http://loinc.org"}, {"code", "x"}});
  for (const auto& [system, v1] : {std::pair{icd10cm_system, "icd-10-cm"}, std::pair{icdo3_system, "icd-o-3"},
                                   std::pair{snomed_system, "snomed-ct"}}) {
    coding[1]["system"] = system;
    EXPECT_EQ(mapped_json(request, Form::service_request)["diagnosis"]["code"]["system"], v1);
  }
  // The name: the Condition's text, else the first display.
  request["contained"][3]["code"]["text"] = "ASPS";
  EXPECT_EQ(mapped_json(request, Form::service_request)["diagnosis"]["name"], "ASPS");
}

TEST(FhirIn, PathologyConfirmedOnlyWhenTheEvidenceSaysSo) {
  auto bundle = sample("transaction.json");
  auto& condition = bundle["entry"][5]["resource"];
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["diagnosis"]["pathology_confirmed"], true);
  condition["evidence"] = json::array({{{"code", json::array({{{"text", "MRI"}}})}}});
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["diagnosis"]["pathology_confirmed"], false);
  condition["evidence"] = json::array({{{"code", json::array({{{"text", "core biopsy"}}})}}});
  condition["verificationStatus"]["coding"][0]["code"] = "provisional";
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["diagnosis"]["pathology_confirmed"], false);
  condition.erase("verificationStatus");
  EXPECT_FALSE(mapped_json(bundle, Form::transaction)["diagnosis"].contains("pathology_confirmed"));
}

TEST(FhirIn, CredentialFromV20360OrTheQualificationText) {
  auto bundle = sample("transaction.json");
  auto& qualification = bundle["entry"][3]["resource"]["qualification"];
  qualification[0]["code"]["coding"][0]["code"] = "NP";
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["referrer"]["credential"], "NP");
  qualification[0]["code"] = {{"text", "do"}};
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["referrer"]["credential"], "DO");
  qualification[0]["code"] = {{"text", "PhD"}};
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["referrer"]["credential"], "other");
}

TEST(FhirIn, OnsetDateTimeGivesItsDay) {
  auto bundle = sample("transaction.json");
  bundle["entry"][5]["resource"]["onsetDateTime"] = "2026-10-02T09:15:00+02:00";
  EXPECT_EQ(mapped_json(bundle, Form::transaction)["diagnosis"]["diagnosed_on"], "2026-10-02");
}

TEST(FhirIn, NotesJoinInOrder) {
  auto request = sample("service-request.json");
  request["note"] = json::array({{{"text", "first"}}, {{"text", " "}}, {{"text", "second"}}});
  EXPECT_EQ(mapped_json(request, Form::service_request)["notes"], "first\n\nsecond");
}

// ---- errors, each with the FHIR element it names ----

// The transaction Bundle with two records: a DocumentReference with its
// file inline (entry 6), and one whose file is a Binary (entries 7 and 8),
// both named by ServiceRequest.supportingInfo.
json with_documents() {
  auto bundle = sample("transaction.json");
  const auto post = [](const char* type) { return json{{"method", "POST"}, {"url", type}}; };
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0010"},
       {"resource",
        {{"resourceType", "DocumentReference"},
         {"status", "current"},
         {"content",
          json::array(
              {{{"attachment",
                 {{"contentType", "application/pdf"}, {"title", "Pathology report"}, {"data", "JVBERi0xLjQK"}}}}})}}},
       {"request", post("DocumentReference")}});
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0011"},
       {"resource",
        {{"resourceType", "DocumentReference"},
         {"status", "current"},
         {"description", "MRI, axial T2"},
         {"content", json::array({{{"attachment", {{"url", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0012"}}}}})}}},
       {"request", post("DocumentReference")}});
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0012"},
       {"resource", {{"resourceType", "Binary"}, {"contentType", "image/jpeg"}, {"data", "/9j/4AAQ"}}},
       {"request", post("Binary")}});
  bundle["entry"][0]["resource"]["supportingInfo"] =
      json::array({{{"reference", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0010"}},
                   {{"reference", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0006"}},  // the Condition: not a file
                   {{"reference", "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0011"}}});
  return bundle;
}

TEST(FhirIn, DocumentReferencesInSupportingInfoBecomeAttachments) {
  const auto v1 = mapped_json(with_documents(), Form::transaction);
  EXPECT_EQ(v1["attachments"], json::parse(R"j([
    {"title": "Pathology report", "content_type": "application/pdf", "data": "(file)"},
    {"title": "MRI, axial T2", "content_type": "image/jpeg", "data": "(file)"}
  ])j"))
      << v1.dump(2);
  EXPECT_TRUE(issues_of(with_documents(), Form::transaction).empty());
  // Without supportingInfo, a DocumentReference is nobody's record: no file.
  auto bundle = with_documents();
  bundle["entry"][0]["resource"].erase("supportingInfo");
  EXPECT_FALSE(mapped_json(bundle, Form::transaction).contains("attachments"));
}

TEST(FhirIn, ContainedDocumentReferenceAndBinary) {
  auto request = sample("service-request.json");
  request["contained"].push_back({{"resourceType", "DocumentReference"},
                                  {"id", "doc"},
                                  {"status", "current"},
                                  {"type", {{"coding", json::array({{{"display", "Pathology study"}}})}}},
                                  {"content", json::array({{{"attachment", {{"url", "#bin"}}}}})}});
  request["contained"].push_back(
      {{"resourceType", "Binary"}, {"id", "bin"}, {"contentType", "application/pdf"}, {"data", "JVBERi0xLjQK"}});
  request["supportingInfo"] = json::array({{{"reference", "#doc"}}});
  const auto result = map_json(request, Form::service_request);
  ASSERT_TRUE(std::holds_alternative<Mapped>(result)) << operation_outcome(std::get<std::vector<Issue>>(result));
  const auto& mapped = std::get<Mapped>(result);
  EXPECT_EQ(json::parse(mapped.referral)["attachments"],
            json::parse(R"j([{"title": "Pathology study", "content_type": "application/pdf", "data": "(file)"}])j"));
  ASSERT_EQ(mapped.files.size(), 1U);
  EXPECT_EQ(mapped.files[0].data, "%PDF-1.4\n");
}

// A body as the daemon reads it (parse, then map): each file was decoded
// while parsing and goes beside the v1 referral, in the order of its
// attachments, whose "data" only stands in for it.
TEST(FhirIn, ParsedFilesGoBesideTheReferralNotIntoItsText) {
  std::string error;
  const auto parsed = parse(with_documents().dump(), error);
  ASSERT_TRUE(parsed) << error;
  const auto result = map_submission(*parsed, Form::transaction);
  ASSERT_TRUE(std::holds_alternative<Mapped>(result)) << operation_outcome(std::get<std::vector<Issue>>(result));
  const auto& mapped = std::get<Mapped>(result);
  const auto v1 = json::parse(mapped.referral);
  EXPECT_EQ(v1["attachments"], json::parse(R"j([
    {"title": "Pathology report", "content_type": "application/pdf", "data": "(file)"},
    {"title": "MRI, axial T2", "content_type": "image/jpeg", "data": "(file)"}
  ])j"));
  ASSERT_EQ(mapped.files.size(), 2U);
  EXPECT_EQ(mapped.files[0].data, "%PDF-1.4\n");
  EXPECT_EQ(mapped.files[1].data, std::string("\xFF\xD8\xFF\xE0\x00\x10", 6));

  // Through the validator with the files beside it, as plan_intake does.
  const auto validated = validator().validate(mapped.referral, test_today, mapped.files);
  ASSERT_TRUE(std::holds_alternative<Referral>(validated));
  EXPECT_EQ(std::get<Referral>(validated).attachments.size(), 2U);
}

TEST(FhirErrors, ParsedDataThatIsNotBase64NamesItsElement) {
  auto bundle = with_documents();
  bundle["entry"][8]["resource"]["data"] = "@@@";
  std::string error;
  const auto parsed = parse(bundle.dump(), error);
  ASSERT_TRUE(parsed) << error;
  const auto result = map_submission(*parsed, Form::transaction);
  ASSERT_TRUE(std::holds_alternative<std::vector<Issue>>(result));
  const auto& issues = std::get<std::vector<Issue>>(result);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[8].resource.data"});
  EXPECT_NE(issues.at(0).diagnostics.find("is not base64"), std::string::npos);
}

TEST(FhirErrors, ARepeatedKeyNamesItsElement) {
  auto text = with_documents().dump();
  const std::string birth = "\"birthDate\":\"2014-03-09\"";
  ASSERT_NE(text.find(birth), std::string::npos);
  text.replace(text.find(birth), birth.size(), birth + ",\"birthDate\":\"2015-01-01\"");
  std::string error;
  const auto parsed = parse(text, error);
  ASSERT_TRUE(parsed) << error;
  const auto result = map_submission(*parsed, Form::transaction);
  ASSERT_TRUE(std::holds_alternative<std::vector<Issue>>(result));
  EXPECT_EQ(expressions(std::get<std::vector<Issue>>(result)), Expressions{"Bundle.entry[1].resource.birthDate"});
}

// A key is submitted text: one that is not an element name is never repeated back.
TEST(FhirErrors, ARepeatedKeyThatIsNoElementNameIsNotEchoed) {
  auto text = with_documents().dump();
  const std::string birth = "\"birthDate\":\"2014-03-09\"";
  ASSERT_NE(text.find(birth), std::string::npos);
  text.replace(text.find(birth), birth.size(), birth + R"(,"Ava Nguyen 2014":1,"Ava Nguyen 2014":2)");
  std::string error;
  const auto parsed = parse(text, error);
  ASSERT_TRUE(parsed) << error;
  const auto result = map_submission(*parsed, Form::transaction);
  ASSERT_TRUE(std::holds_alternative<std::vector<Issue>>(result));
  EXPECT_EQ(expressions(std::get<std::vector<Issue>>(result)),
            Expressions{"Bundle.entry[1].resource.(a key that is not an element name)"});
}

TEST(FhirErrors, AttachmentProblemsNameTheDocumentReferenceOrBinary) {
  auto bundle = with_documents();
  bundle["entry"][6]["resource"]["content"][0]["attachment"]["data"] = "not base64!";
  auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[6].resource.content[0].attachment.data"});
  EXPECT_NE(issues.at(0).diagnostics.find("base64"), std::string::npos);

  bundle = with_documents();
  bundle["entry"][8]["resource"]["data"] = "@@@";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)), Expressions{"Bundle.entry[8].resource.data"});

  bundle = with_documents();
  bundle["entry"][6]["resource"]["content"][0]["attachment"]["title"] = std::string(201, 'x');
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)),
            Expressions{"Bundle.entry[6].resource.content[0].attachment.title"});

  bundle = with_documents();
  bundle["entry"][7]["resource"]["content"][0]["attachment"]["url"] = "https://ehr.example.org/files/17";
  issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[7].resource.content[0].attachment.url"});
  EXPECT_EQ(issues.at(0).code, "not-supported");

  bundle = with_documents();
  bundle["entry"][7]["resource"]["content"][0]["attachment"]["url"] = "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0002";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)),
            Expressions{"Bundle.entry[7].resource.content[0].attachment.url"});

  bundle = with_documents();
  bundle["entry"][6]["resource"]["content"][0]["attachment"].erase("data");
  issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[6].resource.content[0].attachment.data"});
  EXPECT_EQ(issues.at(0).code, "required");

  bundle = with_documents();
  bundle["entry"][0]["resource"]["supportingInfo"][0]["reference"] = "DocumentReference/elsewhere";
  issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[0].resource.supportingInfo[0].reference"});
  EXPECT_EQ(issues.at(0).code, "not-found");
}

TEST(FhirErrors, MissingBirthDate) {
  auto bundle = sample("transaction.json");
  bundle["entry"][1]["resource"].erase("birthDate");
  const auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[1].resource.birthDate"});
  EXPECT_EQ(issues.at(0).code, "required");
}

TEST(FhirErrors, MissingBirthDateOfAContainedPatient) {
  auto request = sample("service-request.json");
  request["contained"][0].erase("birthDate");
  EXPECT_EQ(expressions(issues_of(request, Form::service_request)),
            Expressions{"ServiceRequest.contained[0].birthDate"});
}

TEST(FhirErrors, PartialBirthDateNamesTheElement) {
  auto bundle = sample("transaction.json");
  bundle["entry"][1]["resource"]["birthDate"] = "2014-03";
  const auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[1].resource.birthDate"});
  EXPECT_EQ(issues.at(0).code, "value");
}

TEST(FhirErrors, BadNpi) {
  auto bundle = sample("transaction.json");
  bundle["entry"][3]["resource"]["identifier"][0]["value"] = "1234567890";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)),
            Expressions{"Bundle.entry[3].resource.identifier[0].value"});
}

TEST(FhirErrors, NoNpiIdentifier) {
  auto bundle = sample("transaction.json");
  bundle["entry"][3]["resource"]["identifier"][0]["system"] = "urn:oid:1.2.3";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)), Expressions{"Bundle.entry[3].resource.identifier"});
}

TEST(FhirErrors, UnknownPriority) {
  auto bundle = sample("transaction.json");
  bundle["entry"][0]["resource"]["priority"] = "whenever";
  const auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[0].resource.priority"});
  EXPECT_EQ(issues.at(0).code, "code-invalid");
}

TEST(FhirErrors, UnresolvedReference) {
  auto bundle = sample("transaction.json");
  bundle["entry"][0]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000";
  const auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[0].resource.subject.reference"});
  EXPECT_EQ(issues.at(0).code, "not-found");
}

TEST(FhirErrors, UnresolvedContainedReference) {
  auto request = sample("service-request.json");
  request["reasonReference"][0]["reference"] = "#nothing";
  EXPECT_EQ(expressions(issues_of(request, Form::service_request)),
            Expressions{"ServiceRequest.reasonReference[0].reference"});
}

TEST(FhirErrors, ReferenceToTheWrongType) {
  auto bundle = sample("transaction.json");
  bundle["entry"][0]["resource"]["subject"]["reference"] = "urn:uuid:5b9c2a52-8a1e-4c35-9d1e-3f0b8f6a0005";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)),
            Expressions{"Bundle.entry[0].resource.subject.reference"});
}

TEST(FhirErrors, WrongBundleType) {
  auto bundle = sample("transaction.json");
  bundle["type"] = "batch";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)), Expressions{"Bundle.type"});
  EXPECT_EQ(expressions(issues_of(sample("transaction.json"), Form::message)), Expressions{"Bundle.type"});
}

TEST(FhirErrors, UnsupportedResource) {
  auto bundle = sample("transaction.json");
  bundle["entry"].push_back({{"fullUrl", "urn:uuid:1"},
                             {"resource", {{"resourceType", "Observation"}, {"status", "final"}}},
                             {"request", {{"method", "POST"}, {"url", "Observation"}}}});
  const auto issues = issues_of(bundle, Form::transaction);
  EXPECT_EQ(expressions(issues), Expressions{"Bundle.entry[6].resource"});
  EXPECT_EQ(issues.at(0).code, "not-supported");
  // And a resource that is not what the endpoint takes at all.
  EXPECT_EQ(expressions(issues_of(json{{"resourceType", "Patient"}}, Form::service_request)),
            Expressions{"resourceType"});
}

TEST(FhirErrors, TransactionEntryMustBeAPost) {
  auto bundle = sample("transaction.json");
  bundle["entry"][2]["request"]["method"] = "PUT";
  EXPECT_EQ(expressions(issues_of(bundle, Form::transaction)), Expressions{"Bundle.entry[2].request.method"});
}

TEST(FhirErrors, MessageBundleStartsWithItsHeader) {
  auto message = sample("message.json");
  std::swap(message["entry"][0], message["entry"][1]);
  // The header where it does not belong is a resource $process-message does not take.
  EXPECT_EQ(expressions(issues_of(message, Form::message)),
            (Expressions{"Bundle.entry[0].resource.resourceType", "Bundle.entry[1].resource"}));
}

TEST(FhirErrors, MissingRequesterAndMissingQualification) {
  auto request = sample("service-request.json");
  request.erase("requester");
  EXPECT_EQ(expressions(issues_of(request, Form::service_request)), Expressions{"ServiceRequest.requester"});
  request = sample("service-request.json");
  request["contained"][1].erase("qualification");
  EXPECT_EQ(expressions(issues_of(request, Form::service_request)),
            Expressions{"ServiceRequest.contained[1].qualification"});
}

TEST(FhirErrors, WrongJsonTypeNamesTheElement) {
  auto request = sample("service-request.json");
  request["contained"][0]["gender"] = 1;
  EXPECT_EQ(expressions(issues_of(request, Form::service_request)), Expressions{"ServiceRequest.contained[0].gender"});
}

TEST(FhirErrors, ParseRefusesDeepNestingAndBrokenJson) {
  std::string error;
  EXPECT_FALSE(parse(std::string(100, '[') + std::string(100, ']'), error));
  EXPECT_NE(error.find("deeper"), std::string::npos);
  EXPECT_FALSE(parse("{\"resourceType\": ", error));
  EXPECT_NE(error.find("invalid JSON at byte"), std::string::npos);
  EXPECT_TRUE(parse(R"({"resourceType":"Bundle"})", error));
}

TEST(FhirErrors, OperationOutcomeCarriesTheExpression) {
  const auto outcome = operation_outcome(std::vector<Issue>{{"error", "required", "is required", "Patient.birthDate"}});
  EXPECT_EQ(outcome["resourceType"], "OperationOutcome");
  EXPECT_EQ(outcome["issue"][0]["expression"], json::array({"Patient.birthDate"}));
  EXPECT_EQ(outcome["issue"][0]["severity"], "error");
}

// ---- out ----

StoredReferral stored(OfficeStatus status, std::vector<StatusEvent> history = {}) {
  StoredReferral r;
  r.id = "R-20261206-ABCDEFGH";
  r.received_at = sys_days(test_today) + hours(9);
  r.last_modified = r.received_at + minutes(5);
  r.decision = Decision::declined;
  r.reasons = {{"no_open_trial", "no open trial"}};
  r.urgency = Urgency::emergent;
  r.status = status;
  r.history = std::move(history);
  r.document = mapped_json(sample("transaction.json"), Form::transaction).dump();
  return r;
}

TEST(FhirOut, TaskStatusFollowsTheOfficeStatus) {
  EXPECT_EQ(task_status(OfficeStatus::received, {}), "received");
  EXPECT_EQ(task_status(OfficeStatus::acknowledged, {}), "received");
  EXPECT_EQ(task_status(OfficeStatus::accepted, {}), "accepted");
  EXPECT_EQ(task_status(OfficeStatus::declined, {}), "rejected");
  EXPECT_EQ(task_status(OfficeStatus::needs_info, {}), "on-hold");
  const auto closed_from = [](OfficeStatus from) {
    return task_status(OfficeStatus::closed,
                       {{{}, OfficeStatus::received, from, {}}, {{}, from, OfficeStatus::closed, {}}});
  };
  EXPECT_EQ(closed_from(OfficeStatus::accepted), "completed");
  EXPECT_EQ(closed_from(OfficeStatus::declined), "rejected");
  EXPECT_EQ(closed_from(OfficeStatus::acknowledged), "cancelled");
}

TEST(FhirOut, TaskTellsStatusReasonBusinessStatusAndLastModified) {
  const auto t =
      task(stored(OfficeStatus::declined,
                  {{{}, OfficeStatus::acknowledged, OfficeStatus::declined, std::string("outside our programme")}}));
  EXPECT_EQ(t["status"], "rejected");
  EXPECT_EQ(t["focus"]["reference"], "ServiceRequest/R-20261206-ABCDEFGH");
  EXPECT_EQ(t["for"]["reference"], "Patient/R-20261206-ABCDEFGH");
  EXPECT_EQ(t["statusReason"]["coding"][0]["code"], "no_open_trial");
  EXPECT_EQ(t["statusReason"]["text"], "outside our programme");
  EXPECT_NE(t["businessStatus"]["text"].get<std::string>().find("declined"), std::string::npos);
  EXPECT_EQ(t["lastModified"], "2026-12-06T09:05:00.000Z");
  EXPECT_EQ(t["meta"]["lastUpdated"], "2026-12-06T09:05:00.000Z");
  EXPECT_FALSE(task(stored(OfficeStatus::received)).contains("statusReason"));
}

TEST(FhirOut, ServiceRequestAndPatientGiveBackWhatWasSubmitted) {
  const auto r = stored(OfficeStatus::received);
  const auto sr = service_request(r);
  EXPECT_EQ(sr["id"], r.id);
  EXPECT_EQ(sr["priority"], "asap");
  EXPECT_EQ(sr["status"], "active");
  EXPECT_EQ(sr["category"][0]["coding"][0]["code"], "3457005");
  EXPECT_EQ(sr["contained"][0]["identifier"][0]["value"], "1234567893");
  EXPECT_EQ(sr["contained"][2]["code"]["coding"][0]["system"], icdo3_system);
  EXPECT_EQ(sr["note"][0]["text"], "Painless mass in the left thigh for 5 months. MRI and pathology report available.");
  const auto p = patient(r);
  EXPECT_EQ(p["birthDate"], "2014-03-09");
  EXPECT_EQ(p["name"][0]["given"][0], "Ava");
  EXPECT_EQ(p["contact"][0]["telecom"][0]["value"], "+1 870 555 0142");
  EXPECT_EQ(p["address"][0]["postalCode"], "72401");
}

// What comes out goes back in as the same referral: the ServiceRequest with
// the Patient contained beside its own contained resources.
TEST(FhirOut, ServiceRequestAndPatientMapBackToTheSameReferral) {
  auto r = stored(OfficeStatus::received);
  r.urgency = Urgency::routine;  // as the document says
  auto request = service_request(r);
  auto p = patient(r);
  p["id"] = "patient";
  request["contained"].push_back(p);
  request["subject"] = {{"reference", "#patient"}};
  const auto again = mapped_json(request, Form::service_request);
  EXPECT_EQ(json::diff(json::parse(r.document), again), json::array()) << again.dump(2);
}

TEST(FhirOut, ParseInstant) {
  EXPECT_EQ(parse_instant("2026-12-06T09:05:00.000Z"), sys_days(test_today) + hours(9) + minutes(5));
  EXPECT_EQ(parse_instant("2026-12-06T04:05:00-05:00"), sys_days(test_today) + hours(9) + minutes(5));
  EXPECT_EQ(parse_instant("2026-12-06"), sys_days(test_today));
  EXPECT_FALSE(parse_instant("2026-12-06T09:05"));
  EXPECT_FALSE(parse_instant("yesterday"));
}

}  // namespace
}  // namespace referrald::fhir
