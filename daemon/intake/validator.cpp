#include "intake/validator.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <valijson/adapters/boost_json_adapter.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "attachments/inspect.hpp"
#include "intake/npi.hpp"
#include "util/dates.hpp"
#include "util/json_stream.hpp"
#include "util/strings.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {
namespace {

// The schema is read with nlohmann (valijson's schema parser, and the
// limits and enums the messages quote); each referral is Boost.JSON's
// document, built in one arena (util/json_stream.hpp).
using nlohmann::json;
using Doc = boost::json::value;
using Files = std::map<std::string, std::optional<DecodedFile>>;

// ---------------------------------------------------------------------------
// JSON Pointer (RFC 6901)

std::string pointer(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += '/' + json_pointer_token(t);
  return out;
}

// ---------------------------------------------------------------------------
// UTF-8. The parser has already rejected ill-formed UTF-8, so decoding here
// can trust the lead bytes.

// Each code point of s to f, in order, without a copy (this runs on every
// text field of every referral).
template <class F>
void for_each_code_point(std::string_view s, F f) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    char32_t cp = lead;
    if (lead >= 0xF0) {
      extra = 3;
      cp = lead & 0x07u;
    } else if (lead >= 0xE0) {
      extra = 2;
      cp = lead & 0x0Fu;
    } else if (lead >= 0xC0) {
      extra = 1;
      cp = lead & 0x1Fu;
    }
    ++i;
    for (std::size_t k = 0; k < extra && i < s.size(); ++k, ++i) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3Fu);
    }
    f(cp);
  }
}

std::size_t count_code_points(std::string_view s) {
  std::size_t n = 0;
  for_each_code_point(s, [&n](char32_t) { ++n; });
  return n;
}

bool is_control(char32_t cp) noexcept { return cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F); }

// Free text may break lines; nothing else below U+0020 or in C1.
bool is_free_text_control(char32_t cp) noexcept { return is_control(cp) && cp != '\t' && cp != '\n' && cp != '\r'; }

// Characters that reorder what follows them on screen (bidirectional
// embeddings, overrides and isolates): in a name they can make it read as
// another name on a fax cover or in referralctl.
bool is_bidi_control(char32_t cp) noexcept { return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069); }

// Unicode White_Space plus the zero-width characters a pasted name may carry.
bool is_space(char32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000 || cp == 0xFEFF;
}

// ---------------------------------------------------------------------------
// Turning valijson's results into FieldErrors.

// Lower rank wins when several problems are found at one path.
enum class Rank { duplicate, structure, pattern, enumeration, min_length, max_length, semantic, other };

struct Problem {
  Rank rank;
  std::string message;
};

class ErrorSet {
 public:
  void add(const std::string& path, Rank rank, std::string message) {
    auto [it, inserted] = by_path_.try_emplace(path, Problem{rank, message});
    if (!inserted && rank < it->second.rank) it->second = Problem{rank, std::move(message)};
  }

  bool has(const std::string& path) const { return by_path_.count(path) != 0; }
  bool empty() const { return by_path_.empty(); }

  // Sorted by path (std::map order); a vague problem is dropped when a more
  // precise one was found at or below the same place.
  std::vector<FieldError> finish() const {
    std::vector<FieldError> out;
    for (const auto& [path, problem] : by_path_) {
      if (problem.rank == Rank::other && has_descendant(path)) continue;
      out.push_back(FieldError{path, problem.message});
    }
    return out;
  }

 private:
  bool has_descendant(const std::string& path) const {
    const std::string prefix = path + '/';
    auto it = by_path_.lower_bound(prefix);
    return it != by_path_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  }

  std::map<std::string, Problem> by_path_;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The schema node that describes the value at tokens (nullptr if none does).
const json* schema_node(const json& schema, const std::vector<std::string>& tokens) {
  const json* node = &schema;
  for (const auto& t : tokens) {
    // An array's elements (a token of digits) share its "items" schema.
    if (const auto items = node->find("items"); items != node->end()) {
      node = &*items;
      continue;
    }
    const auto props = node->find("properties");
    if (props == node->end()) return nullptr;
    const auto child = props->find(t);
    if (child == props->end()) return nullptr;
    node = &*child;
  }
  return node;
}

const Doc* value_node(const Doc& doc, const std::vector<std::string>& tokens) {
  const Doc* node = &doc;
  for (const auto& t : tokens) {
    if (const auto* array = node->if_array()) {
      if (t.empty() || t.size() > 9 || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return nullptr;
      const auto index = static_cast<std::size_t>(std::stoul(t));
      if (index >= array->size()) return nullptr;
      node = &(*array)[index];
      continue;
    }
    const auto* object = node->if_object();
    if (object == nullptr) return nullptr;
    node = object->if_contains(t);
    if (node == nullptr) return nullptr;
  }
  return node;
}

std::string type_message(const json* node) {
  const std::string type = node != nullptr ? node->value("type", "") : "";
  if (type == "string") return "must be a string";
  if (type == "object") return "must be an object";
  if (type == "boolean") return "must be true or false";
  if (type == "integer") return "must be a whole number";
  if (type == "number") return "must be a number";
  if (type == "array") return "must be an array";
  return "has the wrong type";
}

std::string enum_message(const json* node) {
  if (node == nullptr || !node->contains("enum")) return "is not one of the allowed values";
  std::string out = "must be one of: ";
  bool first = true;
  for (const auto& v : node->at("enum")) {
    if (!first) out += ", ";
    out += v.is_string() ? v.get<std::string>() : v.dump();
    first = false;
  }
  return out;
}

std::string pattern_message(const json* node) {
  const std::string pattern = node != nullptr ? node->value("pattern", "") : "";
  if (pattern == "^[0-9]{4}-[0-9]{2}-[0-9]{2}$") return "must be a date in the form YYYY-MM-DD";
  if (pattern == "^[0-9]{10}$") return "must be exactly 10 digits";
  if (pattern == "^[0-9]{5}(-[0-9]{4})?$") return "must be a US ZIP code: 5 digits or ZIP+4 (12345-6789)";
  if (pattern == "^[^@\\s]+@[^@\\s]+$") return "must be an email address";
  return "is not in the expected format";
}

std::size_t schema_length(const json* node, const char* keyword) {
  if (node == nullptr) return 0;
  const auto it = node->find(keyword);
  return it != node->end() && it->is_number_unsigned() ? it->get<std::size_t>() : 0;
}

std::string max_length_message(const json* node) {
  return "must be at most " + std::to_string(schema_length(node, "maxLength")) + " characters";
}

std::string min_length_message(const json* node) {
  const std::size_t min = schema_length(node, "minLength");
  if (min <= 1) return "must not be empty";
  return "must be at least " + std::to_string(min) + " characters";
}

std::vector<std::string> context_tokens(const std::vector<std::string>& context) {
  // valijson's context is "<root>" followed by "[name]" or "[index]" per level.
  std::vector<std::string> tokens;
  for (std::size_t i = 1; i < context.size(); ++i) {
    const std::string& c = context[i];
    tokens.push_back(c.size() >= 2 && c.front() == '[' && c.back() == ']' ? c.substr(1, c.size() - 2) : c);
  }
  return tokens;
}

std::string child_pointer(std::vector<std::string> tokens, const std::string& name) {
  tokens.push_back(name);
  return pointer(tokens);
}

void collect_schema_errors(const json& schema, const Doc& doc, const valijson::ValidationResults& results,
                           ErrorSet& errors) {
  for (const auto& error : results) {
    const auto tokens = context_tokens(error.context);
    const std::string path = pointer(tokens);
    const json* node = schema_node(schema, tokens);
    const std::string& d = error.description;

    if (starts_with(d, "Missing required property")) {
      // Reported against the parent; name each missing member instead.
      const Doc* value = value_node(doc, tokens);
      if (node == nullptr || value == nullptr || !value->is_object()) continue;
      for (const auto& name : node->value("required", json::array())) {
        const std::string member = name.get<std::string>();
        if (!value->get_object().contains(member)) {
          errors.add(child_pointer(tokens, member), Rank::structure, "is required");
        }
      }
    } else if (starts_with(d, "Object contains a property that could not be validated")) {
      // valijson names only the first stray member; report every one.
      const Doc* value = value_node(doc, tokens);
      if (node == nullptr || value == nullptr || !value->is_object()) continue;
      const json properties = node->value("properties", json::object());
      for (const auto& member : value->get_object()) {
        const std::string key(member.key());
        if (!properties.contains(key)) errors.add(child_pointer(tokens, key), Rank::structure, "unknown field");
      }
    } else if (starts_with(d, "Value type not permitted")) {
      errors.add(path, Rank::structure, type_message(node));
    } else if (starts_with(d, "Failed to match regex")) {
      errors.add(path, Rank::pattern, pattern_message(node));
    } else if (starts_with(d, "Failed to match against any enum values")) {
      errors.add(path, Rank::enumeration, enum_message(node));
    } else if (starts_with(d, "String should be no fewer than")) {
      errors.add(path, Rank::min_length, min_length_message(node));
    } else if (starts_with(d, "String should be no more than")) {
      errors.add(path, Rank::max_length, max_length_message(node));
    } else if (starts_with(d, "Failed to validate against schema associated with property")) {
      // Context: repeats that a member below failed, which is reported itself.
    } else {
      errors.add(path, Rank::other, "is not valid");
    }
  }
}

// valijson reads a string only up to its first U+0000 (its Boost.JSON
// adapter takes the string's C form, and its length counts stop there too),
// so a string that holds one could pass a constraint on the part before it:
// "emergent\u0000..." would pass the urgency's enum. Such a string is checked
// again here, whole, against the constraints that then decided wrongly:
// enum, pattern and maxLength. (A field without either has its own check
// below, which refuses a control character.)
void check_strings_past_nul(const json& schema, const Doc& value, std::vector<std::string>& tokens, ErrorSet& errors) {
  if (const auto* object = value.if_object()) {
    for (const auto& member : *object) {
      tokens.emplace_back(member.key());
      check_strings_past_nul(schema, member.value(), tokens, errors);
      tokens.pop_back();
    }
    return;
  }
  if (const auto* array = value.if_array()) {
    for (std::size_t i = 0; i < array->size(); ++i) {
      tokens.push_back(std::to_string(i));
      check_strings_past_nul(schema, (*array)[i], tokens, errors);
      tokens.pop_back();
    }
    return;
  }
  if (!value.is_string()) return;
  const std::string_view s = value.get_string();
  if (s.find('\0') == std::string_view::npos) return;
  const json* node = schema_node(schema, tokens);
  if (node == nullptr) return;
  const std::string path = pointer(tokens);
  if (const auto values = node->find("enum"); values != node->end()) {
    const bool listed = std::any_of(values->begin(), values->end(), [&](const json& v) {
      return v.is_string() && v.get_ref<const std::string&>() == s;
    });
    if (!listed) errors.add(path, Rank::enumeration, enum_message(node));
  }
  if (const auto pattern = node->find("pattern"); pattern != node->end() && pattern->is_string()) {
    // As valijson matches a pattern: ECMAScript, anywhere in the string.
    const std::regex re(pattern->get_ref<const std::string&>());
    if (!std::regex_search(s.begin(), s.end(), re)) errors.add(path, Rank::pattern, pattern_message(node));
  }
  const std::size_t max = schema_length(node, "maxLength");
  if (max > 0 && count_code_points(s) > max && !errors.has(path)) {
    errors.add(path, Rank::max_length, max_length_message(node));
  }
}

// ---------------------------------------------------------------------------
// Checks a schema cannot express. Each runs only on a field that is present,
// has the right type and had no schema error.

class SemanticChecks {
 public:
  SemanticChecks(const Doc& doc, ErrorSet& errors, Date today, Files& decoded)
      : doc_(doc), errors_(errors), today_(today), decoded_(decoded) {}

  void run() {
    // Names: the fields a person reads aloud or prints on a fax cover.
    for (const auto& field : {"/patient/given_name", "/patient/family_name", "/patient/guardian/name", "/referrer/name",
                              "/referrer/organization"}) {
      check_text(field, /*required=*/true);
    }
    // Other single-line text: a control character there can only be an
    // injection attempt or a broken client (it would end up in mail headers,
    // fax cover pages and pager text).
    for (const auto& field : {"/patient/guardian/phone", "/patient/guardian/relationship", "/diagnosis/name",
                              "/diagnosis/code/value", "/referrer/phone"}) {
      check_text(field, /*required=*/true);
    }
    check_text("/referrer/fax", /*required=*/false);
    check_text("/referrer/email", /*required=*/false);
    // Free text: tabs and line breaks are its own, other controls are not
    // (they went on into spool files and fax pages).
    check_free_text("/notes");

    const auto birth = check_birth_date();
    check_diagnosed_on(birth);
    check_npi();
    check_attachments();
  }

  // Each attachment's bytes, decoded from base64 while parsing, once its
  // data passed (attachments whose data did not pass are left empty).
  std::vector<DecodedFile> take_attachment_bytes() { return std::move(attachment_bytes_); }

 private:
  // The string at path (a pointer without escapes), if it passed the schema.
  std::optional<std::string_view> clean_string(const std::string& path) const {
    if (errors_.has(path)) return std::nullopt;
    std::vector<std::string> tokens;
    for (std::size_t start = 1; start <= path.size();) {
      const std::size_t end = std::min(path.find('/', start), path.size());
      tokens.push_back(path.substr(start, end - start));
      start = end + 1;
    }
    const Doc* v = value_node(doc_, tokens);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return std::string_view(v->get_string());
  }

  void check_text(const std::string& path, bool required) {
    const auto s = clean_string(path);
    if (!s) return;
    bool control = false, bidi = false, blank = true;
    for_each_code_point(*s, [&](char32_t cp) {
      control = control || is_control(cp);
      bidi = bidi || is_bidi_control(cp);
      blank = blank && is_space(cp);
    });
    if (control) {
      errors_.add(path, Rank::semantic, "must not contain control characters");
    } else if (bidi) {
      errors_.add(path, Rank::semantic,
                  "must not contain bidirectional override or isolate characters (U+202A to U+202E, U+2066 to "
                  "U+2069)");
    } else if (required && blank) {
      errors_.add(path, Rank::semantic, "must not be blank");
    }
  }

  void check_free_text(const std::string& path) {
    const auto s = clean_string(path);
    if (!s) return;
    // The schema's maxLength has had its say.
    if (auto problem = free_text_problem(*s, s->size())) errors_.add(path, Rank::semantic, std::move(*problem));
  }

  std::optional<Date> check_date(const std::string& path) {
    const auto s = clean_string(path);
    if (!s) return std::nullopt;
    const auto date = parse_iso_date(*s);
    if (!date) {
      errors_.add(path, Rank::semantic, "is not a real calendar date");
    } else if (*date > today_) {
      errors_.add(path, Rank::semantic, "must not be in the future");
      return std::nullopt;
    }
    return date;
  }

  std::optional<Date> check_birth_date() {
    const std::string path = "/patient/birth_date";
    const auto birth = check_date(path);
    if (!birth) return std::nullopt;
    // Compared field by field, so that 29 February needs no special case.
    const Date oldest{today_.year() - std::chrono::years{120}, today_.month(), today_.day()};
    if (*birth < oldest) {
      errors_.add(path, Rank::semantic, "must not be more than 120 years ago");
      return std::nullopt;
    }
    return birth;
  }

  void check_diagnosed_on(std::optional<Date> birth) {
    const std::string path = "/diagnosis/diagnosed_on";
    const auto diagnosed = check_date(path);
    if (diagnosed && birth && *diagnosed < *birth) {
      errors_.add(path, Rank::semantic, "must not be before the birth date");
    }
  }

  // An attachment's title goes on the fax cover and into the email: one line
  // of text. Its data must be base64; what the bytes are is the pipeline's
  // question (attachments/inspect.hpp).
  void check_attachments() {
    const Doc* list = doc_.get_object().if_contains("attachments");
    if (list == nullptr || !list->is_array()) return;
    attachment_bytes_.resize(list->get_array().size());
    for (std::size_t i = 0; i < attachment_bytes_.size(); ++i) {
      const std::string at = "/attachments/" + std::to_string(i);
      check_text(at + "/title", /*required=*/true);
      check_text(at + "/content_type", /*required=*/false);
      if (!clean_string(at + "/data")) continue;
      // Decoded while parsing (util/json_stream.hpp).
      if (const auto file = decoded_.find(at + "/data"); file != decoded_.end() && file->second) {
        attachment_bytes_[i] = std::move(*file->second);
      } else {
        errors_.add(at + "/data", Rank::semantic, std::string(not_base64_message));
      }
    }
  }

  void check_npi() {
    const std::string path = "/referrer/npi";
    const auto s = clean_string(path);
    if (s && !npi_is_valid(*s)) {
      errors_.add(path, Rank::semantic, "is not a valid NPI: check digit does not match");
    }
  }

  const Doc& doc_;
  ErrorSet& errors_;
  Date today_;
  Files& decoded_;
  std::vector<DecodedFile> attachment_bytes_;
};

// ---------------------------------------------------------------------------
// Building the Referral once everything has passed.

using Object = boost::json::object;

std::string text(const Object& obj, const char* key) { return std::string(obj.at(key).as_string()); }

std::optional<std::string> optional_text(const Object& obj, const char* key) {
  const Doc* v = obj.if_contains(key);
  if (v == nullptr) return std::nullopt;
  return std::string(v->as_string());
}

// `doc` loses its attachments: their bytes are kept apart (`attachment_bytes`,
// decoded), and the stored document holds the referral alone.
Referral to_referral(Doc& root, std::vector<DecodedFile> attachment_bytes) {
  Referral r;
  Object& doc = root.as_object();
  const Object& p = doc.at("patient").as_object();
  r.patient.given_name = text(p, "given_name");
  r.patient.family_name = text(p, "family_name");
  r.patient.birth_date = *parse_iso_date(text(p, "birth_date"));
  r.patient.sex = text(p, "sex");
  r.patient.postal_code = optional_text(p, "postal_code");
  if (const Doc* g = p.if_contains("guardian")) {
    const Object& guardian = g->as_object();
    r.patient.guardian = Guardian{text(guardian, "name"), text(guardian, "phone"), text(guardian, "relationship")};
  }

  const Object& d = doc.at("diagnosis").as_object();
  r.diagnosis.name = text(d, "name");
  if (const Doc* c = d.if_contains("code")) {
    r.diagnosis.code = DiagnosisCode{text(c->as_object(), "system"), text(c->as_object(), "value")};
  }
  if (const auto on = optional_text(d, "diagnosed_on")) r.diagnosis.diagnosed_on = parse_iso_date(*on);
  if (const Doc* pc = d.if_contains("pathology_confirmed")) r.diagnosis.pathology_confirmed = pc->as_bool();

  const Object& f = doc.at("referrer").as_object();
  r.referrer.name = text(f, "name");
  r.referrer.credential = text(f, "credential");
  r.referrer.npi = text(f, "npi");
  r.referrer.organization = text(f, "organization");
  r.referrer.phone = text(f, "phone");
  r.referrer.fax = optional_text(f, "fax");
  r.referrer.email = text(f, "email");

  // The schema's enum has passed it: anything else is a bug, and a referral
  // must never become routine by one.
  const auto urgency = parse_urgency(text(doc, "urgency"));
  if (!urgency) throw std::logic_error("validated referral has an urgency the model does not know");
  r.urgency = *urgency;
  r.notes = optional_text(doc, "notes");
  if (const Doc* list = doc.if_contains("attachments")) {
    const auto& files = list->as_array();
    for (std::size_t i = 0; i < files.size(); ++i) {
      Attachment a;
      a.title = text(files[i].as_object(), "title");
      a.data = std::move(attachment_bytes.at(i).bytes);
      a.spooled = std::move(attachment_bytes.at(i).spooled);
      r.attachments.push_back(std::move(a));
    }
    doc.erase("attachments");
  }
  r.document = boost::json::serialize(root);
  return r;
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read schema file " + file.string() + ": " + std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

struct ReferralValidator::Impl {
  json schema_document;  // for turning errors into messages (limits, enums)
  valijson::Schema schema;
  ValidationLimits limits;

  // The parsed document against the schema and the checks it cannot express.
  // With `files_required`, JSON without a non-empty "attachments" array is
  // FilesRequired before any other check of its content.
  ValidationResult check(JsonStream<Doc>& parsed, Date today, bool files_required) const;

  JsonStreamOptions options(std::size_t files_beside, std::filesystem::path spool_directory) const {
    JsonStreamOptions o;
    o.max_depth = limits.max_depth;
    o.files = FileStrings::referral_attachments;
    o.files_beside = files_beside;
    o.spool_directory = std::move(spool_directory);
    // More files than any office takes are refused for their number
    // (inspect_attachments): none of them is worth a spool.
    o.max_files = max_attachments_ceiling;
    return o;
  }
};

ReferralValidator::ReferralValidator(const std::filesystem::path& schema_file, ValidationLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  try {
    impl_->schema_document = json::parse(read_file(schema_file));
  } catch (const json::exception& e) {
    throw std::runtime_error("schema file " + schema_file.string() + " is not valid JSON: " + e.what());
  }
  try {
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    const valijson::adapters::NlohmannJsonAdapter adapter(impl_->schema_document);
    parser.populateSchema(adapter, impl_->schema);
  } catch (const std::exception& e) {
    throw std::runtime_error("schema file " + schema_file.string() + " is not a valid JSON Schema: " + e.what());
  }
}

ReferralValidator::~ReferralValidator() = default;

ValidationResult ReferralValidator::validate(std::string_view json_text, Date today) const {
  return validate(json_text, today, {});
}

ValidationResult ReferralValidator::validate(std::string_view json_text, Date today,
                                             const std::vector<Attachment>& files, bool files_required) const {
  auto parsed = read_json<Doc>(json_text, impl_->options(files.size(), {}));
  return impl_->check(parsed, today, files_required);
}

ValidationResult ReferralValidator::validate(const SealedSpool& json_text, Date today, bool files_required,
                                             const std::filesystem::path& spool_directory) const {
  // A block that does not open throws (the caller's: nothing is accepted).
  auto parsed = read_json<Doc>(json_text, impl_->options(0, spool_directory));
  return impl_->check(parsed, today, files_required);
}

ValidationResult ReferralValidator::Impl::check(JsonStream<Doc>& parsed, Date today, bool files_required) const {
  if (parsed.too_deep) {
    return MalformedInput{"nesting deeper than " + std::to_string(limits.max_depth) + " levels"};
  }
  if (parsed.error) return MalformedInput{*parsed.error};

  const Doc& doc = parsed.root;
  if (files_required) {
    const Doc* files = doc.is_object() ? doc.get_object().if_contains("attachments") : nullptr;
    if (files == nullptr || !files->is_array() || files->get_array().empty()) return FilesRequired{};
  }
  if (!doc.is_object()) return InvalidReferral{{FieldError{"", "expected a JSON object"}}};

  ErrorSet errors;
  for (const auto& path : parsed.duplicates) errors.add(path, Rank::duplicate, "duplicate key");

  // A Validator holds the compiled-regex cache for "pattern" constraints;
  // compiling them anew per request cost more than everything else here, so
  // each thread keeps one (the cache is keyed by pattern text, so sharing it
  // between schemas is safe). The parsed Schema is only read.
  thread_local valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  const valijson::adapters::BoostJsonAdapter target(doc);
  validator.validate(schema, target, &results);
  collect_schema_errors(schema_document, doc, results, errors);
  std::vector<std::string> tokens;
  check_strings_past_nul(schema_document, doc, tokens, errors);

  SemanticChecks checks(doc, errors, today, parsed.files);
  checks.run();

  if (!errors.empty()) return InvalidReferral{errors.finish()};
  return to_referral(parsed.root, checks.take_attachment_bytes());
}

std::optional<std::string> free_text_problem(std::string_view text, std::size_t max_chars) {
  // Most free text is printable ASCII and line breaks: a character a byte
  // and no control character, known from one pass over the bytes.
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte >= 0x20 && byte < 0x7F) || c == '\t' || c == '\n' || c == '\r';
  });
  std::size_t count = text.size();
  bool control = false;
  if (!plain) {
    count = 0;
    for_each_code_point(text, [&](char32_t cp) {
      ++count;
      control = control || is_free_text_control(cp);
    });
  }
  if (count > max_chars) return "must be at most " + std::to_string(max_chars) + " characters";
  if (control) {
    return "must not contain control characters other than tab and line breaks";
  }
  return std::nullopt;
}

}  // namespace referrald
