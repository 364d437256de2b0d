#include "fhir/mapping.hpp"

#include <algorithm>
#include <stdexcept>
#include <array>
#include <sstream>

#include <date/date.h>

#include "attachments/inspect.hpp"
#include "util/dates.hpp"
#include "util/strings.hpp"

namespace referrald::fhir {

namespace {

constexpr std::size_t max_nesting = 32;  // deeper nesting is not a referral: refused while parsing

// A resource type as a sentence may name it: a FHIR type name (letters, as
// long as the longest), never other text from the submission.
std::string type_words(const std::string& type) {
  const bool name = !type.empty() && type.size() <= 40 && std::all_of(type.begin(), type.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  });
  if (name) return type;
  return type.empty() ? "resource without a resourceType" : "resource of an unknown type";
}

// ---- reading ----

// One resource of the submission and the FHIRPath it is reached by.
struct Resource {
  const json* body = nullptr;
  std::string path;      // "Bundle.entry[2].resource", "ServiceRequest.contained[0]"
  std::string full_url;  // a Bundle entry's fullUrl
  const Resource* container = nullptr;
  std::string type() const {
    const auto it = body->find("resourceType");
    return it != body->end() && it->is_string() ? it->get<std::string>() : std::string();
  }
};

// The files a parsed body's "data" strings were decoded to, by the node
// that stands in for each.
using FileTable = std::map<const json*, const std::optional<DecodedFile>*>;

class Mapper {
 public:
  // `decoded`: the parsed body's files.
  explicit Mapper(const FileTable& decoded) : decoded_(decoded) {}

  std::vector<Issue> issues;
  json out = json::object();
  std::map<std::string, std::string> paths;
  std::vector<Attachment> files;  // the files of out's "attachments", in order

  // The file of the string "data" of `owner` (at `path`), into `files` when
  // the body was parsed with its files; false (and an issue) when it is not
  // base64 or was not kept.
  bool take_file(const json& owner, const std::string& path) {
    Attachment file;
    const auto node = owner.find("data");
    const auto found = node == owner.end() ? decoded_.end() : decoded_.find(&*node);
    if (found == decoded_.end()) {
      // parse() decodes every "data" string as it reads it.
      throw std::logic_error("fhir mapping: a data string that was not decoded while parsing");
    }
    if (const auto& decoded = *found->second; !decoded) {
      issue("value", path, std::string(not_base64_message));
      return false;
    } else if (decoded->dropped) {
      issue("too-costly", path,
            "is one file too many: a submission may hold at most " + std::to_string(max_attachments_ceiling) +
                " base64 data elements");
      return false;
    } else {
      file.data = decoded->bytes;
      file.spooled = decoded->spooled;
    }
    files.push_back(std::move(file));
    return true;
  }

  void issue(std::string code, std::string expression, std::string diagnostics) {
    issues.push_back({"error", std::move(code), std::move(diagnostics), std::move(expression)});
  }

  // The string at key, or nullopt; a value of another type is an issue.
  std::optional<std::string> text(const json& object, std::string_view key, const std::string& path) {
    if (!object.is_object()) return std::nullopt;
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) {
      issue("structure", path + "." + std::string(key), "must be a string");
      return std::nullopt;
    }
    return it->get<std::string>();
  }

  // The array at key (empty when absent); another type is an issue.
  const json& array(const json& object, std::string_view key, const std::string& path) {
    static const json empty = json::array();
    if (!object.is_object()) return empty;
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return empty;
    if (!it->is_array()) {
      issue("structure", path + "." + std::string(key), "must be an array");
      return empty;
    }
    return *it;
  }

  const json* object(const json& parent, std::string_view key, const std::string& path) {
    if (!parent.is_object()) return nullptr;
    const auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return nullptr;
    if (!it->is_object()) {
      issue("structure", path + "." + std::string(key), "must be an object");
      return nullptr;
    }
    return &*it;
  }

  // Sets a v1 field and notes where it came from.
  void set(const std::string& pointer, const std::string& value, const std::string& expression) {
    out[json::json_pointer(pointer)] = value;
    paths[pointer] = expression;
  }
  void from(const std::string& pointer, const std::string& expression) { paths[pointer] = expression; }

 private:
  const FileTable& decoded_;
};

// HumanName as one string: text, else the given names and the family name.
std::optional<std::string> human_name(Mapper& m, const json& name, const std::string& path) {
  if (auto t = m.text(name, "text", path); t && !trim(*t).empty()) return t;
  std::vector<std::string> parts;
  for (std::size_t i = 0; const auto& g : m.array(name, "given", path)) {
    if (g.is_string())
      parts.push_back(g.get<std::string>());
    else
      m.issue("structure", path + ".given[" + std::to_string(i) + "]", "must be a string");
    ++i;
  }
  if (auto f = m.text(name, "family", path)) parts.push_back(*f);
  if (parts.empty()) return std::nullopt;
  return join(parts, " ");
}

// The index of the entry with use "official", else the first; nullopt if none.
std::optional<std::size_t> preferred(const json& items, std::string_view use) {
  if (items.empty()) return std::nullopt;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    if (item.is_object() && item.value("use", json()) == use) return i;
  }
  return 0;
}

std::string indexed(const std::string& path, std::string_view key, std::size_t i) {
  return path + "." + std::string(key) + "[" + std::to_string(i) + "]";
}

// The first telecom with `system`: its value and FHIRPath.
std::optional<std::pair<std::string, std::string>> telecom(Mapper& m, const json& owner, const std::string& path,
                                                           std::string_view system) {
  const auto& items = m.array(owner, "telecom", path);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto here = indexed(path, "telecom", i);
    if (m.text(items[i], "system", here) != std::optional<std::string>(std::string(system))) continue;
    if (auto value = m.text(items[i], "value", here)) return std::pair{*value, here + ".value"};
  }
  return std::nullopt;
}

class Resolver {
 public:
  // `top` outlives the resolver: what it returns points into it.
  Resolver(Mapper& m, const std::vector<Resource>& top) : m_(m), top_(top) {
    for (const auto& r : top_) add_contained(r);
  }

  // The resource the Reference `ref` (at `path`, in `owner`) points to, of
  // one of `types`; an issue when it does not resolve (or is missing and
  // `required`, saying what it is needed for).
  const Resource* resolve(const json* ref, const std::string& path, const Resource& owner,
                          std::initializer_list<std::string_view> types, bool required, const std::string& needed_for) {
    if (ref == nullptr || ref->is_null()) {
      if (required) m_.issue("required", path, "is required: " + needed_for);
      return nullptr;
    }
    if (!ref->is_object()) {
      m_.issue("structure", path, "must be a Reference (an object)");
      return nullptr;
    }
    const auto target = m_.text(*ref, "reference", path);
    if (!target) {
      if (required) m_.issue("required", path + ".reference", "is required: " + needed_for);
      return nullptr;
    }
    const Resource* found = find(*target, owner);
    if (found == nullptr) {
      m_.issue("not-found", path + ".reference", "does not resolve to a resource in the submission");
      return nullptr;
    }
    const auto type = found->type();
    if (std::find(types.begin(), types.end(), type) == types.end()) {
      m_.issue("invalid", path + ".reference",
               "must refer to a " + join(types, " or ") + ", not a " + type_words(type));
      return nullptr;
    }
    return found;
  }

  // The same for the Reference at `key` of `owner`'s body.
  const Resource* resolve(const Resource& owner, std::string_view key, std::initializer_list<std::string_view> types,
                          bool required, const std::string& needed_for) {
    const auto it = owner.body->find(key);
    return resolve(it == owner.body->end() ? nullptr : &*it, owner.path + "." + std::string(key), owner, types,
                   required, needed_for);
  }

  // The resource a reference's text names, without an issue when it names
  // none; nullptr then.
  const Resource* find(const std::string& target, const Resource& owner) const {
    if (target.starts_with("#")) {
      const auto id = target.substr(1);
      const Resource& container = top_of(owner);
      for (const auto& c : contained_) {
        if (c->container == &container && c->body->value("id", json()) == id) return c.get();
      }
      return nullptr;
    }
    for (const auto& r : top_) {
      if (!r.full_url.empty() && r.full_url == target) return &r;
    }
    // "Patient/123" (or an absolute URL ending in it) against type and id.
    for (const auto& r : top_) {
      const auto id = r.body->value("id", json());
      if (!id.is_string()) continue;
      const auto relative = r.type() + "/" + id.get<std::string>();
      if (target == relative || target.ends_with("/" + relative)) return &r;
    }
    return nullptr;
  }

 private:
  void add_contained(const Resource& r) {
    const auto it = r.body->find("contained");
    if (it == r.body->end() || !it->is_array()) return;
    for (std::size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_object()) continue;
      contained_.push_back(
          std::make_unique<Resource>(Resource{&(*it)[i], indexed(r.path, "contained", i), "", &top_of(r)}));
    }
  }

  const Resource& top_of(const Resource& r) const { return r.container != nullptr ? *r.container : r; }

  Mapper& m_;
  const std::vector<Resource>& top_;
  std::vector<std::unique_ptr<Resource>> contained_;
};

// ---- the rows of the mapping ----

void map_patient(Mapper& m, const Resource& p) {
  const auto& body = *p.body;
  const auto& names = m.array(body, "name", p.path);
  if (const auto i = preferred(names, "official")) {
    const auto here = indexed(p.path, "name", *i);
    std::vector<std::string> given;
    const auto& given_items = m.array(names[*i], "given", here);
    for (std::size_t g = 0; g < given_items.size(); ++g) {
      if (given_items[g].is_string())
        given.push_back(given_items[g].get<std::string>());
      else
        m.issue("structure", indexed(here, "given", g), "must be a string");
    }
    m.from("/patient/given_name", here + ".given");
    if (!given.empty()) m.set("/patient/given_name", join(given, " "), here + ".given");
    m.from("/patient/family_name", here + ".family");
    if (auto family = m.text(names[*i], "family", here)) m.set("/patient/family_name", *family, here + ".family");
  } else {
    m.from("/patient/given_name", p.path + ".name");
    m.from("/patient/family_name", p.path + ".name");
  }
  m.from("/patient/birth_date", p.path + ".birthDate");
  if (auto birth = m.text(body, "birthDate", p.path)) m.set("/patient/birth_date", *birth, p.path + ".birthDate");
  m.from("/patient/sex", p.path + ".gender");
  if (auto gender = m.text(body, "gender", p.path)) m.set("/patient/sex", *gender, p.path + ".gender");

  const auto& addresses = m.array(body, "address", p.path);
  if (const auto i = preferred(addresses, "home")) {
    const auto here = indexed(p.path, "address", *i);
    if (auto zip = m.text(addresses[*i], "postalCode", here)) m.set("/patient/postal_code", *zip, here + ".postalCode");
  }

  const auto& contacts = m.array(body, "contact", p.path);
  if (!contacts.empty()) {
    const auto here = indexed(p.path, "contact", 0);
    const auto& contact = contacts[0];
    m.out["patient"]["guardian"] = json::object();
    m.from("/patient/guardian", here);
    m.from("/patient/guardian/name", here + ".name");
    if (const auto* name = m.object(contact, "name", here)) {
      if (auto n = human_name(m, *name, here + ".name")) m.set("/patient/guardian/name", *n, here + ".name");
    }
    m.from("/patient/guardian/phone", here + ".telecom");
    if (auto phone = telecom(m, contact, here, "phone")) m.set("/patient/guardian/phone", phone->first, phone->second);
    m.from("/patient/guardian/relationship", here + ".relationship");
    const auto& relationships = m.array(contact, "relationship", here);
    if (!relationships.empty()) {
      const auto rel = indexed(here, "relationship", 0);
      std::optional<std::string> words = m.text(relationships[0], "text", rel);
      const auto& codings = m.array(relationships[0], "coding", rel);
      if (!words && !codings.empty()) {
        words = m.text(codings[0], "display", rel + ".coding[0]");
        if (!words) words = m.text(codings[0], "code", rel + ".coding[0]");
      }
      if (words) m.set("/patient/guardian/relationship", *words, rel);
    }
  }
}

// The v1 code system of a FHIR one, or nullopt.
std::optional<std::string> v1_system(std::string_view system) {
  if (system == icd10cm_system) return "icd-10-cm";
  if (system == icdo3_system) return "icd-o-3";
  if (system == snomed_system) return "snomed-ct";
  return std::nullopt;
}

// A CodeableConcept as the diagnosis's name and code.
void map_diagnosis_code(Mapper& m, const json& concept_, const std::string& path) {
  m.from("/diagnosis/name", path);
  const auto& codings = m.array(concept_, "coding", path);
  std::optional<std::string> name = m.text(concept_, "text", path);
  std::string name_path = path + ".text";
  for (std::size_t i = 0; i < codings.size() && !name; ++i) {
    name = m.text(codings[i], "display", indexed(path, "coding", i));
    name_path = indexed(path, "coding", i) + ".display";
  }
  if (name) m.set("/diagnosis/name", *name, name_path);
  for (std::size_t i = 0; i < codings.size(); ++i) {
    const auto here = indexed(path, "coding", i);
    const auto system = m.text(codings[i], "system", here);
    const auto v1 = system ? v1_system(*system) : std::nullopt;
    if (!v1) continue;
    m.set("/diagnosis/code/system", *v1, here + ".system");
    m.from("/diagnosis/code", here);
    m.from("/diagnosis/code/value", here + ".code");
    if (auto code = m.text(codings[i], "code", here)) m.set("/diagnosis/code/value", *code, here + ".code");
    return;
  }
}

bool mentions_pathology(Mapper& m, const json& concept_, const std::string& path) {
  const auto says = [](const std::optional<std::string>& words) {
    if (!words) return false;
    const auto l = lower(*words);
    return l.find("patholog") != std::string::npos || l.find("histolog") != std::string::npos ||
           l.find("biopsy") != std::string::npos;
  };
  if (says(m.text(concept_, "text", path))) return true;
  const auto& codings = m.array(concept_, "coding", path);
  for (std::size_t i = 0; i < codings.size(); ++i) {
    if (says(m.text(codings[i], "display", indexed(path, "coding", i)))) return true;
  }
  return false;
}

void map_condition(Mapper& m, const Resource& c) {
  const auto& body = *c.body;
  m.from("/diagnosis", c.path);
  if (const auto* code = m.object(body, "code", c.path)) {
    map_diagnosis_code(m, *code, c.path + ".code");
  } else {
    m.out["diagnosis"] = json::object();
    m.from("/diagnosis/name", c.path + ".code");
  }
  // The day of diagnosis: onsetDateTime, else recordedDate (the date part).
  for (const std::string_view key : {"onsetDateTime", "recordedDate"}) {
    if (auto when = m.text(body, key, c.path)) {
      const auto here = c.path + "." + std::string(key);
      const auto t = when->find('T');
      m.set("/diagnosis/diagnosed_on", t == std::string::npos ? *when : when->substr(0, t), here);
      break;
    }
  }
  if (m.paths.find("/diagnosis/diagnosed_on") == m.paths.end()) m.from("/diagnosis/diagnosed_on", c.path + ".onset");

  // Confirmed by pathology: verified, and the evidence names pathology.
  if (const auto* status = m.object(body, "verificationStatus", c.path)) {
    const auto here = c.path + ".verificationStatus";
    bool confirmed = false;
    const auto& codings = m.array(*status, "coding", here);
    for (std::size_t i = 0; i < codings.size(); ++i) {
      confirmed = confirmed || m.text(codings[i], "code", indexed(here, "coding", i)) == "confirmed";
    }
    bool pathology = false;
    const auto& evidence = m.array(body, "evidence", c.path);
    for (std::size_t e = 0; e < evidence.size(); ++e) {
      const auto& codes = m.array(evidence[e], "code", indexed(c.path, "evidence", e));
      for (std::size_t k = 0; k < codes.size(); ++k) {
        pathology = pathology || mentions_pathology(m, codes[k], indexed(indexed(c.path, "evidence", e), "code", k));
      }
    }
    m.out["diagnosis"]["pathology_confirmed"] = confirmed && pathology;
    m.from("/diagnosis/pathology_confirmed", here);
  }
}

// Credentials the v1 schema names, from v2-0360 codes or a qualification's text.
std::optional<std::string> credential_of(std::string_view words) {
  const auto u = upper(trim(words));
  for (const char* known : {"MD", "DO", "NP", "PA", "RN"}) {
    if (u == known) return std::string(known);
  }
  return std::nullopt;
}

void map_practitioner(Mapper& m, const Resource& p) {
  const auto& body = *p.body;
  const auto& names = m.array(body, "name", p.path);
  m.from("/referrer/name", p.path + ".name");
  if (const auto i = preferred(names, "official")) {
    const auto here = indexed(p.path, "name", *i);
    if (auto n = human_name(m, names[*i], here)) m.set("/referrer/name", *n, here);
  }
  m.from("/referrer/npi", p.path + ".identifier");
  const auto& identifiers = m.array(body, "identifier", p.path);
  for (std::size_t i = 0; i < identifiers.size(); ++i) {
    const auto here = indexed(p.path, "identifier", i);
    if (m.text(identifiers[i], "system", here) != std::optional<std::string>(std::string(npi_system))) continue;
    m.from("/referrer/npi", here + ".value");
    if (auto npi = m.text(identifiers[i], "value", here)) m.set("/referrer/npi", *npi, here + ".value");
    break;
  }
  m.from("/referrer/credential", p.path + ".qualification");
  const auto& qualifications = m.array(body, "qualification", p.path);
  std::optional<std::string> credential;
  for (std::size_t q = 0; q < qualifications.size() && !credential; ++q) {
    const auto here = indexed(p.path, "qualification", q) + ".code";
    const auto* code = m.object(qualifications[q], "code", indexed(p.path, "qualification", q));
    if (code == nullptr) continue;
    const auto& codings = m.array(*code, "coding", here);
    for (std::size_t i = 0; i < codings.size() && !credential; ++i) {
      const auto c = indexed(here, "coding", i);
      if (m.text(codings[i], "system", c) != std::optional<std::string>(std::string(degree_system))) continue;
      if (auto value = m.text(codings[i], "code", c)) credential = credential_of(*value);
    }
    if (!credential) {
      if (auto words = m.text(*code, "text", here)) credential = credential_of(*words);
    }
  }
  if (credential)
    m.set("/referrer/credential", *credential, p.path + ".qualification");
  else if (!qualifications.empty())
    m.set("/referrer/credential", "other", p.path + ".qualification");
}

void map_contact_points(Mapper& m, const Resource& owner) {
  const auto put = [&m, &owner](const char* pointer, std::string_view system) {
    if (m.out.contains(json::json_pointer(pointer))) return;
    if (auto found = telecom(m, *owner.body, owner.path, system)) m.set(pointer, found->first, found->second);
  };
  put("/referrer/phone", "phone");
  put("/referrer/fax", "fax");
  put("/referrer/email", "email");
}

void map_requester(Mapper& m, Resolver& resolver, const Resource& service_request) {
  m.from("/referrer", service_request.path + ".requester");
  const auto* requester = resolver.resolve(service_request, "requester", {"Practitioner", "PractitionerRole"}, true,
                                           "the referring practitioner (a Practitioner or PractitionerRole)");
  if (requester == nullptr) return;
  m.out["referrer"] = json::object();
  for (const char* field : {"/referrer/name", "/referrer/npi", "/referrer/credential", "/referrer/organization",
                            "/referrer/phone", "/referrer/email"}) {
    m.from(field, requester->path);
  }
  m.from("/referrer/phone", requester->path + ".telecom");
  m.from("/referrer/email", requester->path + ".telecom");
  const Resource* practitioner = requester;
  if (requester->type() == "PractitionerRole") {
    const auto& role = *requester->body;
    map_contact_points(m, *requester);
    m.from("/referrer/organization", requester->path + ".organization");
    if (const auto* organization =
            resolver.resolve(*requester, "organization", {"Organization"}, false, "the referrer's organization")) {
      if (auto name = m.text(*organization->body, "name", organization->path)) {
        m.set("/referrer/organization", *name, organization->path + ".name");
      } else {
        m.from("/referrer/organization", organization->path + ".name");
      }
      map_contact_points(m, *organization);
    } else if (const auto* reference = m.object(role, "organization", requester->path)) {
      if (auto display = m.text(*reference, "display", requester->path + ".organization")) {
        m.set("/referrer/organization", *display, requester->path + ".organization.display");
      }
    }
    practitioner = resolver.resolve(*requester, "practitioner", {"Practitioner"}, true, "the referring practitioner");
    if (practitioner == nullptr) return;
  } else {
    m.from("/referrer/organization", requester->path);
  }
  map_practitioner(m, *practitioner);
  map_contact_points(m, *practitioner);
}

// The title of a DocumentReference's file: the Attachment's title, else the
// DocumentReference's description, else its type's text or first display.
std::optional<std::pair<std::string, std::string>> document_title(Mapper& m, const Resource& document,
                                                                  const json& attachment, const std::string& at) {
  if (auto t = m.text(attachment, "title", at); t && !trim(*t).empty()) return std::pair{*t, at + ".title"};
  const auto& body = *document.body;
  if (auto d = m.text(body, "description", document.path); d && !trim(*d).empty())
    return std::pair{*d, document.path + ".description"};
  if (const auto* type = m.object(body, "type", document.path)) {
    const auto here = document.path + ".type";
    if (auto t = m.text(*type, "text", here); t && !trim(*t).empty()) return std::pair{*t, here + ".text"};
    const auto& codings = m.array(*type, "coding", here);
    for (std::size_t i = 0; i < codings.size(); ++i) {
      const auto c = indexed(here, "coding", i);
      if (auto d = m.text(codings[i], "display", c); d && !trim(*d).empty()) return std::pair{*d, c + ".display"};
    }
  }
  return std::nullopt;
}

// One Attachment of a DocumentReference's content as v1 attachment `n`:
// its data inline, or in a Binary of the submission its url names.
void map_document_attachment(Mapper& m, Resolver& resolver, const Resource& document, const json& attachment,
                             const std::string& at, std::size_t n) {
  const std::string pointer = "/attachments/" + std::to_string(n);
  m.from(pointer, at);
  const auto title = document_title(m, document, attachment, at);
  m.from(pointer + "/title", title ? title->second : at + ".title");
  std::optional<std::string> content_type = m.text(attachment, "contentType", at);
  std::string type_path = at + ".contentType";
  std::optional<std::string> data = m.text(attachment, "data", at);
  std::string data_path = at + ".data";
  const json* data_owner = &attachment;
  if (!data) {
    const auto url = m.text(attachment, "url", at);
    if (!url) {
      m.issue("required", at + ".data", "is required: the file, in base64 (or url naming a Binary in the submission)");
      return;
    }
    const Resource* binary = resolver.find(*url, document);
    if (binary == nullptr) {
      m.issue("not-supported", at + ".url",
              "does not resolve to a Binary in the submission: referrald fetches no file; send it as data or as a "
              "Binary entry");
      return;
    }
    if (binary->type() != "Binary") {
      m.issue("invalid", at + ".url", "must refer to a Binary, not a " + type_words(binary->type()));
      return;
    }
    data = m.text(*binary->body, "data", binary->path);
    data_path = binary->path + ".data";
    data_owner = binary->body;
    if (!data) {
      m.issue("required", data_path, "is required: the file, in base64");
      return;
    }
    if (!content_type) {
      content_type = m.text(*binary->body, "contentType", binary->path);
      type_path = binary->path + ".contentType";
    }
  }
  if (!m.take_file(*data_owner, data_path)) return;
  // A file without any title is named by its place, as the office's list would.
  json item{{"title", title ? title->first : "Document " + std::to_string(n + 1)}};
  if (content_type) {
    item["content_type"] = *content_type;
    m.from(pointer + "/content_type", type_path);
  }
  // With the files apart (Mapper::files), the stand-in the parse left.
  item["data"] = *data;
  m.from(pointer + "/data", data_path);
  m.out["attachments"].push_back(std::move(item));
}

// ServiceRequest.supportingInfo → v1 attachments: every DocumentReference it
// names, each content's Attachment a file. Other supporting information
// (an Observation, a Condition) is not a file and is passed over.
void map_supporting_info(Mapper& m, Resolver& resolver, const Resource& sr_resource) {
  const auto& infos = m.array(*sr_resource.body, "supportingInfo", sr_resource.path);
  m.from("/attachments", sr_resource.path + ".supportingInfo");
  for (std::size_t i = 0; i < infos.size(); ++i) {
    const auto here = indexed(sr_resource.path, "supportingInfo", i);
    if (!infos[i].is_object()) {
      m.issue("structure", here, "must be a Reference (an object)");
      continue;
    }
    const auto target = m.text(infos[i], "reference", here);
    if (!target) continue;
    const Resource* document = resolver.find(*target, sr_resource);
    if (document == nullptr) {
      // A record the referrer means to send, left behind: say so rather than
      // lose it. Anything else unresolved is not a file.
      if (target->find("DocumentReference/") != std::string::npos || target->find("Binary/") != std::string::npos) {
        m.issue("not-found", here + ".reference",
                "does not resolve to a resource in the submission: referrald fetches no record; send the "
                "DocumentReference in the Bundle or contained");
      }
      continue;
    }
    if (document->type() != "DocumentReference") continue;
    const auto& contents = m.array(*document->body, "content", document->path);
    if (contents.empty()) m.issue("required", document->path + ".content", "is required: the document's file");
    for (std::size_t c = 0; c < contents.size(); ++c) {
      const auto content = indexed(document->path, "content", c);
      const auto* attachment = m.object(contents[c], "attachment", content);
      if (attachment == nullptr) {
        m.issue("required", content + ".attachment", "is required: the document's file");
        continue;
      }
      if (!m.out.contains("attachments")) m.out["attachments"] = json::array();
      map_document_attachment(m, resolver, *document, *attachment, content + ".attachment",
                              m.out["attachments"].size());
    }
  }
}

void map_service_request(Mapper& m, Resolver& resolver, const Resource& sr_resource) {
  const auto& sr = *sr_resource.body;
  const auto& path = sr_resource.path;
  m.from("", path);
  m.from("/patient", path + ".subject");
  if (const auto* patient = resolver.resolve(sr_resource, "subject", {"Patient"}, true, "the patient referred")) {
    m.out["patient"] = json::object();
    map_patient(m, *patient);
  }

  m.from("/diagnosis", path + ".reasonReference");
  const auto& reasons = m.array(sr, "reasonReference", path);
  if (!reasons.empty()) {
    if (const auto* condition = resolver.resolve(&reasons[0], indexed(path, "reasonReference", 0), sr_resource,
                                                 {"Condition"}, true, "the diagnosis")) {
      map_condition(m, *condition);
    }
  } else {
    const auto& codes = m.array(sr, "reasonCode", path);
    if (!codes.empty()) {
      m.from("/diagnosis", indexed(path, "reasonCode", 0));
      m.out["diagnosis"] = json::object();
      map_diagnosis_code(m, codes[0], indexed(path, "reasonCode", 0));
    }
  }

  map_requester(m, resolver, sr_resource);

  m.from("/urgency", path + ".priority");
  const auto priority = m.text(sr, "priority", path).value_or("routine");
  if (priority == "routine" || priority == "urgent") {
    m.set("/urgency", priority, path + ".priority");
  } else if (priority == "asap" || priority == "stat") {
    m.set("/urgency", "emergent", path + ".priority");
  } else {
    m.issue("code-invalid", path + ".priority", "must be one of routine, urgent, asap, stat");
  }

  std::vector<std::string> notes;
  const auto& note_items = m.array(sr, "note", path);
  for (std::size_t i = 0; i < note_items.size(); ++i) {
    if (auto t = m.text(note_items[i], "text", indexed(path, "note", i)); t && !trim(*t).empty()) notes.push_back(*t);
  }
  m.from("/notes", path + ".note");
  if (!notes.empty()) m.set("/notes", join(notes, "\n\n"), path + ".note");

  map_supporting_info(m, resolver, sr_resource);
}

std::optional<std::string> identifier_of(Mapper& m, const Resource& sr) {
  const auto& identifiers = m.array(*sr.body, "identifier", sr.path);
  for (std::size_t i = 0; i < identifiers.size(); ++i) {
    const auto here = indexed(sr.path, "identifier", i);
    const auto system = m.text(identifiers[i], "system", here);
    const auto value = m.text(identifiers[i], "value", here);
    if (system && value) return *system + "|" + *value;
  }
  return std::nullopt;
}

constexpr std::array taken_types = {std::string_view("ServiceRequest"), std::string_view("Patient"),
                                    std::string_view("Practitioner"),   std::string_view("PractitionerRole"),
                                    std::string_view("Organization"),   std::string_view("Condition"),
                                    std::string_view("Task"),           std::string_view("DocumentReference"),
                                    std::string_view("Binary")};

bool takes(std::string_view type) {
  return std::find(taken_types.begin(), taken_types.end(), type) != taken_types.end();
}

MapResult map_bundle(const json& bundle, Form form, const FileTable& decoded) {
  Mapper m(decoded);
  const std::string want = form == Form::transaction ? "transaction" : "message";
  if (bundle.value("resourceType", json()) != "Bundle") {
    m.issue("not-supported", "resourceType",
            form == Form::transaction ? "this endpoint takes a transaction Bundle"
                                      : "$process-message takes a message Bundle");
    return std::move(m.issues);
  }
  const auto type = m.text(bundle, "type", "Bundle");
  if (type != want) {
    m.issue("value", "Bundle.type", "must be " + want);
    return std::move(m.issues);
  }
  const auto& entries = m.array(bundle, "entry", "Bundle");
  std::vector<Resource> top;
  Mapped mapped;
  std::optional<std::size_t> service_request;
  std::optional<std::string> focus;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto here = indexed("Bundle", "entry", i);
    const auto* resource = m.object(entries[i], "resource", here);
    if (resource == nullptr) {
      m.issue("required", here + ".resource", "is required");
      continue;
    }
    Resource r{resource, here + ".resource", m.text(entries[i], "fullUrl", here).value_or(""), nullptr};
    const auto rtype = r.type();
    mapped.entry_types.push_back(rtype);
    if (form == Form::message && i == 0) {
      if (rtype != "MessageHeader") {
        m.issue("structure", r.path + ".resourceType", "a message Bundle starts with its MessageHeader");
        continue;
      }
      mapped.message_id = m.text(*resource, "id", r.path).value_or("");
      const auto& focuses = m.array(*resource, "focus", r.path);
      if (focuses.empty()) {
        m.issue("required", r.path + ".focus", "is required: the referral's Task or ServiceRequest");
      } else {
        focus = m.text(focuses[0], "reference", r.path + ".focus[0]");
        if (!focus) m.issue("required", r.path + ".focus[0].reference", "is required");
      }
      top.push_back(r);
      continue;
    }
    if (!takes(rtype)) {
      m.issue("not-supported", r.path,
              "a " + type_words(rtype) + " is not taken here: only " + join(taken_types, ", "));
      continue;
    }
    if (form == Form::transaction) {
      const auto* request = m.object(entries[i], "request", here);
      if (request == nullptr) {
        m.issue("required", here + ".request", "is required in a transaction");
      } else if (m.text(*request, "method", here + ".request") != "POST") {
        m.issue("not-supported", here + ".request.method", "must be POST: a referral is created, not changed");
      } else if (rtype == "ServiceRequest") {
        mapped.if_none_exist = m.text(*request, "ifNoneExist", here + ".request");
      }
    }
    if (rtype == "ServiceRequest") {
      if (service_request && form == Form::transaction) {
        m.issue("not-supported", r.path, "one ServiceRequest per Bundle: one referral at a time");
      }
      if (!service_request) service_request = top.size();
    }
    top.push_back(std::move(r));
  }
  if (form == Form::message && entries.empty()) m.issue("required", "Bundle.entry", "a message Bundle needs entries");
  if (!m.issues.empty()) return std::move(m.issues);

  Resolver resolver(m, top);
  const Resource* sr = nullptr;
  if (form == Form::message) {
    // MessageHeader.focus → the Task (whose focus is the ServiceRequest) or the ServiceRequest.
    const auto& header = top.front();
    const auto* focused = resolver.resolve(&header.body->at("focus")[0], header.path + ".focus[0]", header,
                                           {"Task", "ServiceRequest"}, true, "the referral's Task or ServiceRequest");
    if (focused != nullptr && focused->type() == "Task") {
      sr = resolver.resolve(*focused, "focus", {"ServiceRequest"}, true, "the ServiceRequest the Task is about");
    } else {
      sr = focused;
    }
  } else if (service_request) {
    sr = &top[*service_request];
  } else {
    m.issue("required", "Bundle.entry", "the Bundle holds no ServiceRequest");
  }
  if (sr == nullptr) return std::move(m.issues);
  map_service_request(m, resolver, *sr);
  mapped.identifier = identifier_of(m, *sr);
  if (!m.issues.empty()) return std::move(m.issues);
  mapped.referral = m.out.dump();
  mapped.paths = std::move(m.paths);
  mapped.files = std::move(m.files);
  return mapped;
}

MapResult map_service_request_alone(const json& body, const FileTable& decoded) {
  Mapper m(decoded);
  if (body.value("resourceType", json()) != "ServiceRequest") {
    m.issue("not-supported", "resourceType", "this endpoint takes a ServiceRequest");
    return std::move(m.issues);
  }
  const std::vector<Resource> top{{&body, "ServiceRequest", "", nullptr}};
  const Resource& sr = top.front();
  Resolver resolver(m, top);
  map_service_request(m, resolver, sr);
  Mapped mapped;
  mapped.identifier = identifier_of(m, sr);
  if (!m.issues.empty()) return std::move(m.issues);
  mapped.referral = m.out.dump();
  mapped.paths = std::move(m.paths);
  mapped.files = std::move(m.files);
  return mapped;
}

}  // namespace

namespace {

MapResult map_with(const json& resource, Form form, const FileTable& decoded) {
  if (!resource.is_object()) {
    return std::vector<Issue>{{"error", "structure", "must be a JSON object (a FHIR resource)", ""}};
  }
  if (form == Form::service_request) return map_service_request_alone(resource, decoded);
  return map_bundle(resource, form, decoded);
}

// A JSON Pointer into `root` (to a member that exists) as FHIRPath from the
// root resource's type: "/entry/2/resource/birthDate" →
// "Bundle.entry[2].resource.birthDate".
std::string fhir_path(const json& root, const std::string& pointer) {
  const auto type = root.is_object() ? root.value("resourceType", json()) : json();
  std::string out;
  if (type.is_string() && type_words(type.get<std::string>()) == type.get<std::string>()) out = type.get<std::string>();
  std::vector<std::string> tokens;
  for (auto p = json::json_pointer(pointer); !p.empty(); p.pop_back()) tokens.insert(tokens.begin(), p.back());
  const json* node = &root;
  for (const auto& token : tokens) {
    if (node->is_array()) {
      out += "[" + token + "]";
      node = &node->at(std::stoul(token));
    } else {
      // An element's name as FHIR spells one (letters, digits, "_"), never
      // other submitted text: a key is not a value, but may be anything.
      const bool name = !token.empty() && token.size() <= 64 && std::all_of(token.begin(), token.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      });
      out += (out.empty() ? "" : ".") + (name ? token : std::string("(a key that is not an element name)"));
      node = &node->at(token);
    }
  }
  return out;
}

}  // namespace

MapResult map_submission(const Parsed& parsed, Form form) {
  if (!parsed.duplicates.empty()) {
    std::vector<Issue> issues;
    for (const auto& pointer : parsed.duplicates) {
      issues.push_back({"error", "structure", "is a repeated key: each element may appear once in its object",
                        fhir_path(parsed.resource, pointer)});
    }
    return issues;
  }
  FileTable decoded;
  for (const auto& [pointer, file] : parsed.files) {
    const json::json_pointer place(pointer);
    if (parsed.resource.contains(place)) decoded.emplace(&parsed.resource.at(place), &file);
  }
  return map_with(parsed.resource, form, decoded);
}

std::vector<Issue> translate(const std::vector<FieldError>& errors, const Mapped& mapped) {
  std::vector<Issue> out;
  for (const auto& e : errors) {
    // The longest pointer with an entry that is this one or a parent of it.
    std::string pointer = e.path;
    std::string expression;
    while (true) {
      if (const auto it = mapped.paths.find(pointer); it != mapped.paths.end()) {
        expression = it->second;
        break;
      }
      if (pointer.empty()) break;
      pointer = pointer.substr(0, pointer.rfind('/'));
    }
    const bool missing = e.message == "is required";
    out.push_back(
        {"error", missing ? "required" : "value", e.message + " (referral field " + e.path + ")", expression});
  }
  return out;
}

namespace {

JsonStreamOptions parse_options(const std::filesystem::path& spool_directory) {
  JsonStreamOptions o;
  o.max_depth = max_nesting;
  o.files = FileStrings::fhir_data;
  o.spool_directory = spool_directory;
  o.max_files = max_attachments_ceiling;
  return o;
}

std::optional<Parsed> parsed(JsonStream<json>&& read, std::string& error) {
  if (read.too_deep) {
    error = "JSON nested deeper than " + std::to_string(max_nesting) + " levels";
    return std::nullopt;
  }
  if (read.error) {
    error = std::move(*read.error);
    return std::nullopt;
  }
  return Parsed{std::move(read.root), std::move(read.files), std::move(read.duplicates)};
}

}  // namespace

std::optional<Parsed> parse(std::string_view text, std::string& error, const std::filesystem::path& spool_directory) {
  return parsed(read_json<json>(text, parse_options(spool_directory)), error);
}

std::optional<Parsed> parse(const SealedSpool& text, std::string& error, const std::filesystem::path& spool_directory) {
  return parsed(read_json<json>(text, parse_options(spool_directory)), error);
}

std::optional<std::string> identifier_search(std::string_view search) {
  constexpr std::string_view key = "identifier=";
  if (!search.starts_with(key)) return std::nullopt;
  search.remove_prefix(key.size());
  if (search.empty() || search.find('&') != std::string_view::npos || search.find('|') == std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(search);
}

json operation_outcome(const std::vector<Issue>& issues) {
  json out{{"resourceType", "OperationOutcome"}, {"issue", json::array()}};
  for (const auto& i : issues) {
    json item{{"severity", i.severity}, {"code", i.code}, {"diagnostics", i.diagnostics}};
    if (!i.expression.empty()) item["expression"] = json::array({i.expression});
    out["issue"].push_back(std::move(item));
  }
  return out;
}

json operation_outcome(std::string_view code, std::string_view diagnostics) {
  return operation_outcome(std::vector<Issue>{{"error", std::string(code), std::string(diagnostics), ""}});
}

// ---- out ----

namespace {

json reference(std::string_view type, const std::string& id) { return {{"reference", std::string(type) + "/" + id}}; }

json meta(const StoredReferral& r) { return {{"lastUpdated", format_utc_timestamp(r.last_modified)}}; }

json referral_identifier(const StoredReferral& r) {
  return json::array({{{"system", std::string(referral_id_system)}, {"value", r.id}}});
}

std::string_view fhir_priority(Urgency u) {
  switch (u) {
    case Urgency::routine: return "routine";
    case Urgency::urgent: return "urgent";
    case Urgency::emergent: return "asap";
  }
  return "routine";
}

std::string fhir_system(std::string_view v1) {
  if (v1 == "icd-10-cm") return std::string(icd10cm_system);
  if (v1 == "icd-o-3") return std::string(icdo3_system);
  return std::string(snomed_system);
}

json document_of(const StoredReferral& r) {
  auto doc = json::parse(r.document, nullptr, false);
  return doc.is_object() ? doc : json::object();
}

std::string str(const json& object, std::string_view key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A name in one string, as the referrer's and the guardian's are kept.
json name_text(const std::string& text) { return json::array({{{"text", text}}}); }

}  // namespace

std::string_view task_status(OfficeStatus status, const std::vector<StatusEvent>& history) {
  switch (status) {
    case OfficeStatus::received:
    case OfficeStatus::acknowledged: return "received";
    case OfficeStatus::accepted: return "accepted";
    case OfficeStatus::declined: return "rejected";
    case OfficeStatus::needs_info: return "on-hold";
    case OfficeStatus::closed:
      for (auto it = history.rbegin(); it != history.rend(); ++it) {
        if (it->to == OfficeStatus::closed) {
          if (it->from == OfficeStatus::accepted) return "completed";
          if (it->from == OfficeStatus::declined) return "rejected";
          break;
        }
      }
      return "cancelled";
  }
  return "received";
}

json service_request(const StoredReferral& r) {
  const auto doc = document_of(r);
  const auto referrer = doc.value("referrer", json::object());
  const auto diagnosis = doc.value("diagnosis", json::object());

  json practitioner{
      {"resourceType", "Practitioner"},
      {"id", "requester"},
      {"identifier", json::array({{{"system", std::string(npi_system)}, {"value", str(referrer, "npi")}}})},
      {"name", name_text(str(referrer, "name"))}};
  const auto credential = str(referrer, "credential");
  json qualification_code =
      credential == "other"
          ? json{{"text", "other"}}
          : json{{"coding", json::array({{{"system", std::string(degree_system)}, {"code", credential}}})}};
  practitioner["qualification"] = json::array({{{"code", qualification_code}}});

  json telecom = json::array();
  telecom.push_back({{"system", "phone"}, {"value", str(referrer, "phone")}});
  if (const auto fax = str(referrer, "fax"); !fax.empty()) telecom.push_back({{"system", "fax"}, {"value", fax}});
  telecom.push_back({{"system", "email"}, {"value", str(referrer, "email")}});
  json role{{"resourceType", "PractitionerRole"},
            {"id", "role"},
            {"practitioner", {{"reference", "#requester"}}},
            {"organization", {{"display", str(referrer, "organization")}}},
            {"telecom", telecom}};

  json code{{"text", str(diagnosis, "name")}};
  if (const auto c = diagnosis.find("code"); c != diagnosis.end() && c->is_object()) {
    code["coding"] = json::array({{{"system", fhir_system(str(*c, "system"))}, {"code", str(*c, "value")}}});
  }
  json condition{
      {"resourceType", "Condition"}, {"id", "diagnosis"}, {"code", code}, {"subject", reference("Patient", r.id)}};
  if (const auto on = str(diagnosis, "diagnosed_on"); !on.empty()) condition["onsetDateTime"] = on;
  // Confirmed by pathology: verified, with pathology as the evidence (as it
  // is read in). Not confirmed by pathology says nothing of the diagnosis's
  // own verification, so none is claimed.
  if (const auto p = diagnosis.find("pathology_confirmed"); p != diagnosis.end() && p->is_boolean() && p->get<bool>()) {
    condition["verificationStatus"] = {
        {"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/condition-ver-status"},
                                 {"code", "confirmed"}}})}};
    condition["evidence"] = json::array({{{"code", json::array({{{"text", "pathology"}}})}}});
  }

  std::string status = "active";
  if (r.status == OfficeStatus::declined) status = "revoked";
  if (r.status == OfficeStatus::closed)
    status = task_status(r.status, r.history) == "completed" ? "completed" : "revoked";

  json out{{"resourceType", "ServiceRequest"},
           {"id", r.id},
           {"meta", meta(r)},
           {"contained", json::array({practitioner, role, condition})},
           {"identifier", referral_identifier(r)},
           {"status", status},
           {"intent", "order"},
           {"category", json::array({{{"coding", json::array({{{"system", std::string(snomed_system)},
                                                               {"code", "3457005"},
                                                               {"display", "Patient referral"}}})}}})},
           {"priority", std::string(fhir_priority(r.urgency))},
           {"subject", reference("Patient", r.id)},
           {"authoredOn", format_utc_timestamp(r.received_at)},
           {"requester", {{"reference", "#role"}}},
           {"reasonReference", json::array({{{"reference", "#diagnosis"}}})}};
  if (const auto notes = str(doc, "notes"); !notes.empty()) out["note"] = json::array({{{"text", notes}}});
  return out;
}

json task(const StoredReferral& r) {
  const auto status = task_status(r.status, r.history);
  std::string words = "referral office status: " + std::string(to_string(r.status)) + " (" +
                      std::string(plain_words(r.status)) +
                      "); automatic eligibility decision: " + std::string(to_string(r.decision));
  json out{{"resourceType", "Task"},
           {"id", r.id},
           {"meta", meta(r)},
           {"identifier", referral_identifier(r)},
           {"status", std::string(status)},
           {"businessStatus", {{"text", words}}},
           {"intent", "order"},
           {"priority", std::string(fhir_priority(r.urgency))},
           {"focus", reference("ServiceRequest", r.id)},
           {"for", reference("Patient", r.id)},
           {"authoredOn", format_utc_timestamp(r.received_at)},
           {"lastModified", format_utc_timestamp(r.last_modified)}};
  if (status == "rejected" || status == "on-hold" || status == "cancelled") {
    json reason = json::object();
    if (r.decision == Decision::declined && !r.reasons.empty()) {
      reason["coding"] = json::array();
      for (const auto& why : r.reasons) {
        reason["coding"].push_back(
            {{"system", std::string(reason_system)}, {"code", why.code}, {"display", why.message}});
      }
    }
    // The office's own words, when it gave any with the change.
    for (auto it = r.history.rbegin(); it != r.history.rend(); ++it) {
      if (it->note) {
        reason["text"] = *it->note;
        break;
      }
    }
    if (!reason.contains("text")) reason["text"] = std::string(plain_words(r.status));
    out["statusReason"] = std::move(reason);
  }
  return out;
}

json patient(const StoredReferral& r) {
  const auto doc = document_of(r);
  const auto p = doc.value("patient", json::object());
  json out{
      {"resourceType", "Patient"},
      {"id", r.id},
      {"meta", meta(r)},
      {"name",
       json::array(
           {{{"use", "official"}, {"family", str(p, "family_name")}, {"given", json::array({str(p, "given_name")})}}})},
      {"gender", str(p, "sex")},
      {"birthDate", str(p, "birth_date")}};
  if (const auto zip = str(p, "postal_code"); !zip.empty()) out["address"] = json::array({{{"postalCode", zip}}});
  if (const auto g = p.find("guardian"); g != p.end() && g->is_object()) {
    out["contact"] = json::array({{{"relationship", json::array({{{"text", str(*g, "relationship")}}})},
                                   {"name", {{"text", str(*g, "name")}}},
                                   {"telecom", json::array({{{"system", "phone"}, {"value", str(*g, "phone")}}})}}});
  }
  return out;
}

json capability_statement() {
  const json json_formats = json::array({"application/fhir+json", "json"});
  json service_request{{"type", "ServiceRequest"},
                       {"interaction", json::array({{{"code", "read"}}, {{"code", "create"}}})},
                       {"conditionalCreate", true}};
  json task{{"type", "Task"},
            {"interaction", json::array({{{"code", "read"}}, {{"code", "search-type"}}})},
            {"searchParam",
             json::array({{{"name", "focus"}, {"type", "reference"}}, {{"name", "_lastUpdated"}, {"type", "date"}}})}};
  json patient{{"type", "Patient"}, {"interaction", json::array({{{"code", "read"}}})}};
  return {{"resourceType", "CapabilityStatement"},
          {"status", "active"},
          {"date", "2026-12-06"},
          {"publisher", "referrald"},
          {"kind", "instance"},
          {"software", {{"name", "referrald"}}},
          {"implementation", {{"description", "referrald: referrals to the referral office, in FHIR R4"}}},
          {"fhirVersion", "4.0.1"},
          {"format", json_formats},
          {"rest", json::array({{{"mode", "server"},
                                 {"security",
                                  {{"description",
                                    "Authorization: Bearer <key>. A key in [http] api_keys submits referrals and reads "
                                    "its own; a key in [http] office_api_keys reads every referral."}}},
                                 {"resource", json::array({service_request, task, patient})},
                                 {"interaction", json::array({{{"code", "transaction"}}})},
                                 {"operation", json::array({{{"name", "process-message"},
                                                             {"definition",
                                                              "http://hl7.org/fhir/OperationDefinition/"
                                                              "MessageHeader-process-message"}}})}}})}};
}

json transaction_response(const Mapped& mapped, const std::string& id, bool created) {
  const std::string status = created ? "201 Created" : "200 OK";
  json out{{"resourceType", "Bundle"}, {"type", "transaction-response"}, {"entry", json::array()}};
  for (const auto& type : mapped.entry_types) {
    json response{{"status", status}};
    if (type == "ServiceRequest" || type == "Patient" || type == "Task") {
      response["location"] = type + "/" + id;
    }
    out["entry"].push_back({{"response", response}});
  }
  return out;
}

std::optional<TimePoint> parse_instant(std::string_view text) {
  if (text.size() == 10) {
    const auto day = parse_iso_date(text);
    if (!day) return std::nullopt;
    return std::chrono::sys_days(*day);
  }
  if (text.size() < 20 || text[10] != 'T') return std::nullopt;
  std::string s(text);
  if (s.back() == 'Z') s = s.substr(0, s.size() - 1) + "+00:00";
  std::istringstream in(s);
  std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds> t;
  in >> date::parse("%FT%T%Ez", t);
  if (in.fail() || in.peek() != std::char_traits<char>::eof()) return std::nullopt;
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

}  // namespace referrald::fhir
