#include "adapters/document/referral_fields.hpp"

#include <date/tz.h>

#include <nlohmann/json.hpp>
#include <set>

#include "adapters/document/referral_pdf.hpp"
#include "util/dates.hpp"

namespace referrald {

namespace {

using json = nlohmann::json;

json parse_document(const Delivery& delivery) {
  json doc = json::parse(delivery.document, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) throw DocumentError("the referral document is not a JSON object");
  return doc;
}

// A scalar as a person reads it; objects and arrays as compact JSON.
std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_null()) return "";
  return v.dump();
}

// Reads the fields it is asked for and remembers which it consumed, so every
// property left over can be listed too.
class Reader {
 public:
  explicit Reader(const json& doc) : doc_(doc) {}

  const json* get(const std::string& pointer) {
    const json::json_pointer p(pointer);
    if (!doc_.contains(p)) return nullptr;
    used_.insert(pointer);
    return &doc_.at(p);
  }
  std::string str(const std::string& pointer) {
    const json* v = get(pointer);
    return v ? text_of(*v) : std::string();
  }
  void add(DocumentSection& s, std::string label, const std::string& pointer) {
    if (const json* v = get(pointer)) s.fields.push_back({std::move(label), text_of(*v)});
  }
  void mark(const std::string& pointer) { used_.insert(pointer); }

  // Scalars (and arrays) not read above, by JSON Pointer; objects are walked
  // into, so an unknown member of a known object is listed too.
  void leftovers(const json& node, const std::string& at, std::vector<DocumentField>& out) const {
    if (node.is_object()) {
      for (const auto& [key, value] : node.items()) {
        leftovers(value, at + "/" + key, out);
      }
      return;
    }
    if (used_.count(at) == 0) out.push_back({at, text_of(node)});
  }

 private:
  const json& doc_;
  std::set<std::string> used_;
};

std::string join_nonempty(std::initializer_list<std::string> parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::string sex_label(const std::string& s) {
  if (s == "female") return "Female";
  if (s == "male") return "Male";
  if (s == "other") return "Other";
  if (s == "unknown") return "Unknown";
  return s;
}

std::string code_system_label(const std::string& s) {
  if (s == "icd-10-cm") return "ICD-10-CM";
  if (s == "icd-o-3") return "ICD-O-3";
  if (s == "snomed-ct") return "SNOMED CT";
  return s;
}

}  // namespace

std::string format_office_time(const OfficeConfig& office, std::chrono::system_clock::time_point t) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(t);
  try {
    const date::time_zone* zone = date::locate_zone(office.hours.time_zone);
    return date::format("%Y-%m-%d %H:%M %Z", date::make_zoned(zone, seconds));
  } catch (const std::exception&) {
    return date::format("%Y-%m-%d %H:%M UTC", seconds);
  }
}

namespace {

ReferrerSummary read_referrer(const json& doc) {
  Reader r(doc);
  ReferrerSummary s;
  s.name = join_nonempty({r.str("/referrer/name"), r.str("/referrer/credential")}, ", ");
  s.organization = r.str("/referrer/organization");
  s.phone = r.str("/referrer/phone");
  s.fax = r.str("/referrer/fax");
  s.email = r.str("/referrer/email");
  return s;
}

std::vector<DocumentSection> read_sections(const json& doc, const Delivery& delivery, const OfficeConfig& office) {
  Reader r(doc);
  std::vector<DocumentSection> out;

  DocumentSection referral{"Referral", {}};
  referral.fields.push_back({"Reference number", delivery.referral_id});
  referral.fields.push_back({"Received", format_office_time(office, delivery.received_at)});
  referral.fields.push_back({"Urgency", std::string(to_string(delivery.urgency))});
  r.mark("/urgency");
  referral.fields.push_back({"Decision", std::string(to_string(delivery.decision))});
  for (const auto& reason : delivery.reasons) {
    referral.fields.push_back({"Reason", reason.message + " (" + reason.code + ")"});
  }
  out.push_back(std::move(referral));

  DocumentSection patient{"Patient", {}};
  patient.fields.push_back({"Name", join_nonempty({r.str("/patient/given_name"), r.str("/patient/family_name")}, " ")});
  if (const json* birth = r.get("/patient/birth_date")) {
    std::string value = text_of(*birth);
    if (const auto date = parse_iso_date(value)) {
      value += " (age " + std::to_string(age_in_years(*date, utc_date(delivery.received_at))) + " at referral)";
    }
    patient.fields.push_back({"Date of birth", value});
  }
  if (const json* sex = r.get("/patient/sex")) patient.fields.push_back({"Sex", sex_label(text_of(*sex))});
  r.add(patient, "Postal code", "/patient/postal_code");
  r.add(patient, "Guardian", "/patient/guardian/name");
  r.add(patient, "Guardian's relationship", "/patient/guardian/relationship");
  r.add(patient, "Guardian's phone", "/patient/guardian/phone");
  out.push_back(std::move(patient));

  DocumentSection diagnosis{"Diagnosis", {}};
  r.add(diagnosis, "Diagnosis", "/diagnosis/name");
  if (r.get("/diagnosis/code")) {
    const std::string value =
        join_nonempty({code_system_label(r.str("/diagnosis/code/system")), r.str("/diagnosis/code/value")}, " ");
    diagnosis.fields.push_back({"Code", value});
  }
  r.add(diagnosis, "Diagnosed on", "/diagnosis/diagnosed_on");
  r.add(diagnosis, "Pathology confirmed", "/diagnosis/pathology_confirmed");
  out.push_back(std::move(diagnosis));

  DocumentSection referrer{"Referring clinician", {}};
  r.add(referrer, "Name", "/referrer/name");
  r.add(referrer, "Credential", "/referrer/credential");
  r.add(referrer, "NPI", "/referrer/npi");
  r.add(referrer, "Organization", "/referrer/organization");
  r.add(referrer, "Phone", "/referrer/phone");
  r.add(referrer, "Fax", "/referrer/fax");
  r.add(referrer, "Email", "/referrer/email");
  out.push_back(std::move(referrer));

  if (const json* notes = r.get("/notes")) {
    out.push_back({"Notes", {{"", text_of(*notes)}}});
  }

  DocumentSection other{"Other fields", {}};
  r.leftovers(doc, "", other.fields);
  if (!other.fields.empty()) out.push_back(std::move(other));
  return out;
}

}  // namespace

ReferralDocument read_referral_document(const Delivery& delivery, const OfficeConfig& office) {
  const json doc = parse_document(delivery);
  return {read_sections(doc, delivery, office), read_referrer(doc)};
}

std::vector<DocumentSection> referral_sections(const Delivery& delivery, const OfficeConfig& office) {
  return read_sections(parse_document(delivery), delivery, office);
}

ReferrerSummary referrer_summary(const Delivery& delivery) { return read_referrer(parse_document(delivery)); }

namespace {

// The first character (code point) of a name, ASCII letters in capitals.
std::string initial_of(const std::string& name) {
  std::size_t start = 0;
  while (start < name.size() && (name[start] == ' ' || name[start] == '\'' || name[start] == '-')) ++start;
  if (start == name.size()) return {};
  std::size_t end = start + 1;
  while (end < name.size() && (static_cast<unsigned char>(name[end]) & 0xC0) == 0x80) ++end;
  std::string out = name.substr(start, end - start);
  if (out.size() == 1 && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out + ".";
}

}  // namespace

PatientBrief patient_brief(const Delivery& delivery) {
  const json doc = parse_document(delivery);
  Reader r(doc);
  PatientBrief p;
  const std::string given = initial_of(r.str("/patient/given_name"));
  const std::string family = initial_of(r.str("/patient/family_name"));
  p.initials = join_nonempty({given, family}, " ");
  if (const auto date = parse_iso_date(r.str("/patient/birth_date"))) {
    p.birth_year = std::to_string(static_cast<int>(date->year()));
  }
  return p;
}

}  // namespace referrald
