// libFuzzer target: a FHIR R4 body as POST /fhir/r4, /fhir/r4/$process-message
// and /fhir/r4/ServiceRequest read it, up to its plan, and the stored
// referral back out as FHIR. The same steps as the HTTP layer (http/fhir.cpp)
// without the store: fhir::parse (nesting bound, files decoded as they are
// read, in memory here), fhir::map_submission for
// each of the three forms, plan_intake on the mapped v1 referral (intake.hpp),
// fhir::translate of the validator's errors, and for a valid referral the
// ServiceRequest, Task and Patient built from its stored document.
//
// Besides "never crashes, never leaks, no UB", it checks what an EHR and the
// office rely on:
//   - a 400 message is one short line of printable ASCII (the body may hold a
//     patient's name);
//   - every issue has a code and a sentence, and the issues the validator
//     raised name a FHIR element (an expression from the submission's root);
//   - what the mapping hands on is a JSON object (the validator's input);
//   - a valid referral comes back as resources of the right types.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "fhir/mapping.hpp"
#include "intake.hpp"
#include "intake/pipeline.hpp"

namespace referrald::fuzz {
namespace {

void check_issues(const std::vector<fhir::Issue>& issues) {
  require(!issues.empty(), "refused without an issue");
  for (const auto& i : issues) {
    require(!i.code.empty() && !i.diagnostics.empty(), "an issue without a code or a sentence");
  }
}

void check_out(const Referral& referral, const Eligibility& eligibility) {
  fhir::StoredReferral stored;
  stored.id = "R-20261128-FUZZFUZZ";
  stored.received_at = std::chrono::sys_days{fuzz_today} + std::chrono::hours{12};
  stored.last_modified = stored.received_at;
  stored.decision = eligibility.decision;
  stored.reasons = eligibility.reasons;
  stored.urgency = referral.urgency;
  stored.document = referral.document;
  for (const auto status : all_office_statuses()) {
    stored.status = status;
    require(fhir::task(stored)["resourceType"] == "Task", "the Task is not a Task");
  }
  require(fhir::service_request(stored)["resourceType"] == "ServiceRequest", "the ServiceRequest is not one");
  require(fhir::patient(stored)["resourceType"] == "Patient", "the Patient is not one");
  // What goes on the wire: dumping must not throw on any stored text.
  (void)fhir::service_request(stored).dump(-1, ' ', false, fhir::json::error_handler_t::replace);
}

void run(const fhir::Parsed& parsed, fhir::Form form) {
  const auto result = fhir::map_submission(parsed, form);
  if (const auto* issues = std::get_if<std::vector<fhir::Issue>>(&result)) {
    check_issues(*issues);
    return;
  }
  const auto& mapped = std::get<fhir::Mapped>(result);
  const auto v1 = fhir::json::parse(mapped.referral, nullptr, false);
  require(v1.is_object(), "the mapped referral is not a JSON object");
  const auto& [validator, policy] = intake();
  auto submission = submission_of(mapped.referral);
  submission.files = mapped.files;
  const auto plan = plan_intake(policy, validator, submission);
  if (std::holds_alternative<MalformedInput>(plan)) fail("the mapped referral is not JSON the validator reads");
  if (const auto* invalid = std::get_if<InvalidReferral>(&plan)) {
    const auto issues = fhir::translate(invalid->errors, mapped);
    check_issues(issues);
    const std::string_view root = form == fhir::Form::service_request ? "ServiceRequest" : "Bundle";
    for (const auto& i : issues) {
      require(i.expression.starts_with(root), "a validator error that names no FHIR element");
    }
    return;
  }
  const auto& p = std::get<IntakePlan>(plan);
  check_out(p.referral, p.eligibility);
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto resource = fhir::parse(body, error);
  if (!resource) {
    require(!error.empty() && error.size() < 200 && is_printable_ascii(error), "400 message empty, long or not ASCII");
    return 0;
  }
  for (const auto form : {fhir::Form::transaction, fhir::Form::message, fhir::Form::service_request}) {
    run(*resource, form);
  }
  return 0;
}
