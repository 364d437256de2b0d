// libFuzzer target: the body of POST /referrals (the web form) up to the
// decision, through the same functions the form handler calls:
// decode_form → read_form_fields → form_to_json → the validator and the
// decision; html_escape on every value and message the page shows again.
// The CSRF check and the store are left out (no input reaches them that the
// functions here have not already accepted or refused).
//
// Checked besides "no crash, no leak, no UB":
//   - decode_form's UTF-8 check agrees with nlohmann's (an independent
//     decoder): what the form accepts, JSON can carry, and nothing else;
//   - form_to_json carries every filled field unchanged to the JSON path its
//     name spells, and always yields JSON the validator can read (a form
//     submission is never a 400), and field_for_pointer maps each 422 path
//     back to a field name;
//   - html_escape output holds no markup character, no control character but
//     tab and line breaks, and stays valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "check.hpp"
#include "intake.hpp"
#include "http/form_fields.hpp"
#include "intake/pipeline.hpp"

namespace referrald::fuzz {
namespace {

// nlohmann refuses to serialise a string that is not well-formed UTF-8.
bool nlohmann_accepts_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

void check_utf8(const std::string& text) {
  require(http::is_valid_utf8(text) == nlohmann_accepts_utf8(text), "is_valid_utf8 disagrees with nlohmann");
}

void check_escaped(std::string_view text) {
  const std::string out = http::html_escape(text);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    require(c != '<' && c != '>' && c != '"' && c != '\'', "html_escape left a markup character");
    require(c >= 0x20 || c == '\t' || c == '\n' || c == '\r', "html_escape left a control character");
    require(c != 0x7f, "html_escape left DEL");
    if (c == '&') {
      const std::string_view rest = std::string_view(out).substr(i);
      require(rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;") ||
                  rest.starts_with("&quot;") || rest.starts_with("&#39;"),
              "html_escape left a bare '&'");
    }
  }
  if (http::is_valid_utf8(text)) require(http::is_valid_utf8(out), "html_escape broke UTF-8");
}

// The referral carries exactly what was typed: every filled field, at the
// JSON path its dotted name spells, unchanged (the checkbox as true).
void check_carried(const std::string& json, const std::map<std::string, std::string>& values) {
  const auto doc = nlohmann::json::parse(json);
  for (const auto& [name, value] : values) {
    if (value.empty()) continue;
    std::string pointer = "/" + name;
    for (auto& c : pointer) c = c == '.' ? '/' : c;
    const nlohmann::json::json_pointer at(pointer);
    require(doc.contains(at), "a filled field is missing from the referral JSON");
    if (name == "diagnosis.pathology_confirmed") {
      require(doc.at(at) == true, "the pathology checkbox did not become true");
    } else {
      require(doc.at(at).is_string() && doc.at(at).get<std::string>() == value,
              "a field's value changed on its way into the referral JSON");
    }
  }
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto decoded = http::decode_form(body);
  if (!decoded) return 0;
  for (const auto& [name, value] : *decoded) {
    check_utf8(name);
    check_utf8(value);
  }

  const auto read = http::read_form_fields(*decoded);
  if (const auto* why = std::get_if<std::string>(&read)) {
    require(!why->empty(), "a bad request without a reason");
    return 0;
  }
  const auto& fields = std::get<http::FormFields>(read);
  for (const auto& [name, value] : fields.values) check_escaped(value);

  const auto& [validator, policy] = intake();
  const std::string json = http::form_to_json(fields.values);
  check_carried(json, fields.values);
  const auto result = plan_intake(policy, validator, submission_of(json));
  require(!std::holds_alternative<MalformedInput>(result), "form_to_json produced JSON the validator cannot read");
  if (const auto* invalid = std::get_if<InvalidReferral>(&result)) {
    for (const auto& e : invalid->errors) {
      const std::string field = http::field_for_pointer(e.path);
      require(field.find('/') == std::string::npos || e.path.find("~1") != std::string::npos,
              "field_for_pointer left a '/' that was a separator");
      check_escaped(e.message);
    }
  }
  return 0;
}
