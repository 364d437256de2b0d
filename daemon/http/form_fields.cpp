#include "http/form_fields.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace referrald::http {

using json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------
// Decoding and escaping

bool is_valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1Fu;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0Fu;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07u;
      min = 0x10000;
    } else {
      return false;  // a continuation byte without a lead, or 0xF8..0xFF
    }
    if (text.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> decode_component(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (s.size() - i < 3) return std::nullopt;  // needs two hex digits after it
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>((hi << 4) | lo);
      i += 2;
    } else {
      out += c;
    }
  }
  if (!is_valid_utf8(out)) return std::nullopt;
  return out;
}

}  // namespace

std::optional<FormData> decode_form(std::string_view body) {
  FormData out;
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('&', start);
    if (end == std::string_view::npos) end = body.size();
    const auto pair = body.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto name = decode_component(pair.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::optional<std::string>(std::string())
                                              : decode_component(pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    out.emplace_back(std::move(*name), std::move(*value));
  }
  return out;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\t':
      case '\n':
      case '\r': out += ch; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += "\xEF\xBF\xBD";  // U+FFFD
        } else {
          out += ch;
        }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The form's fields

const FieldSpec* find_field(std::string_view name) {
  for (const auto& f : form_field_specs) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::size_t field_position(std::string_view name) {
  for (std::size_t i = 0; i < form_field_specs.size(); ++i) {
    if (form_field_specs[i].name == name) return i;
  }
  return form_field_specs.size();
}

std::string field_id(std::string_view name) {
  std::string id(name);
  std::replace(id.begin(), id.end(), '.', '-');
  return id;
}

namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string normalize(const FieldSpec& spec, std::string_view value) {
  switch (spec.kind) {
    case FieldKind::line: return trim(value);
    case FieldKind::checkbox: return "yes";
    case FieldKind::text: {
      std::string out;
      out.reserve(value.size());
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\r') {
          out += '\n';
          if (i + 1 < value.size() && value[i + 1] == '\n') ++i;
        } else {
          out += value[i];
        }
      }
      return std::all_of(out.begin(), out.end(), is_space) ? std::string() : out;
    }
  }
  return std::string(value);
}

}  // namespace

std::string form_to_json(const std::map<std::string, std::string>& fields, const std::vector<Attachment>& files) {
  auto put = [&fields](json& object, const char* key, const char* field) {
    const auto it = fields.find(field);
    if (it != fields.end() && !it->second.empty()) object[key] = it->second;
  };
  json patient = json::object();
  put(patient, "given_name", "patient.given_name");
  put(patient, "family_name", "patient.family_name");
  put(patient, "birth_date", "patient.birth_date");
  put(patient, "sex", "patient.sex");
  put(patient, "postal_code", "patient.postal_code");
  json guardian = json::object();
  put(guardian, "name", "patient.guardian.name");
  put(guardian, "phone", "patient.guardian.phone");
  put(guardian, "relationship", "patient.guardian.relationship");
  if (!guardian.empty()) patient["guardian"] = std::move(guardian);

  json diagnosis = json::object();
  put(diagnosis, "name", "diagnosis.name");
  json code = json::object();
  put(code, "system", "diagnosis.code.system");
  put(code, "value", "diagnosis.code.value");
  if (!code.empty()) diagnosis["code"] = std::move(code);
  put(diagnosis, "diagnosed_on", "diagnosis.diagnosed_on");
  // Unticked means "not confirmed, or not known": left out rather than false.
  if (const auto it = fields.find("diagnosis.pathology_confirmed"); it != fields.end() && !it->second.empty()) {
    diagnosis["pathology_confirmed"] = true;
  }

  json referrer = json::object();
  put(referrer, "name", "referrer.name");
  put(referrer, "credential", "referrer.credential");
  put(referrer, "npi", "referrer.npi");
  put(referrer, "organization", "referrer.organization");
  put(referrer, "phone", "referrer.phone");
  put(referrer, "fax", "referrer.fax");
  put(referrer, "email", "referrer.email");

  json doc = json::object();
  doc["patient"] = std::move(patient);
  doc["diagnosis"] = std::move(diagnosis);
  doc["referrer"] = std::move(referrer);
  put(doc, "urgency", "urgency");
  put(doc, "notes", "notes");
  // The files as the API takes them, but for their bytes, which go beside
  // the JSON (Submission::files): the same validation and inspection.
  if (!files.empty()) {
    json& list = doc["attachments"] = json::array();
    for (const Attachment& f : files) {
      list.push_back({{"title", f.title}, {"data", std::string(attachment_data_stand_in)}});
    }
  }
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool is_file_id(std::string_view text) noexcept {
  return text.size() == 32 &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::variant<FormFields, std::string> read_form_fields(const FormData& data) {
  FormFields fields;
  std::set<std::string> seen;
  for (const auto& [name, value] : data) {
    if (name == csrf_field) continue;
    if (name == kept_file_field || name == remove_file_field) {
      if (!is_file_id(value)) return std::string("The form was sent with a damaged list of files.");
      (name == kept_file_field ? fields.kept_files : fields.removed_files).push_back(value);
      continue;
    }
    if (!seen.insert(name).second) return std::string("The form was sent with a field twice.");
    if (name == submission_field) {
      fields.submission_token = value;
      continue;
    }
    const auto* spec = find_field(name);
    if (spec == nullptr) return std::string("The form was sent with a field it does not have.");
    fields.values[name] = normalize(*spec, value);
  }
  return fields;
}

std::string field_for_pointer(std::string_view pointer) {
  std::string out;
  std::size_t i = 0;
  while (i < pointer.size()) {
    if (pointer[i] == '/') {
      if (!out.empty()) out += '.';
      ++i;
      continue;
    }
    if (pointer[i] == '~' && i + 1 < pointer.size()) {
      out += pointer[i + 1] == '1' ? '/' : '~';
      i += 2;
      continue;
    }
    out += pointer[i++];
  }
  return out;
}

}  // namespace referrald::http
