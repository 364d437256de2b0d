#include "cli/commands.hpp"

#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>

#include "intake/pipeline.hpp"
#include "store/payload.hpp"
#include "rules/rules.hpp"
#include "util/dates.hpp"

namespace referrald::cli {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using store::DeliveryState;
using store::ReadTransaction;
using store::WriteTransaction;

namespace {

// ---- opening the store ----

std::unique_ptr<store::Database> open_store(Context& c, bool write) {
  const fs::path& file = c.settings.database;
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    throw store::DatabaseError(SQLITE_CANTOPEN,
                               "no database at " + file.string() + " (start referrald once to create it)");
  }
  // Reading needs read access only: the connection is opened read-only.
  std::unique_ptr<store::Database> db;
  try {
    db = std::make_unique<store::Database>(file, write ? store::OpenMode::read_write : store::OpenMode::read_only);
  } catch (const store::DatabaseError& e) {
    const int primary = e.code() & 0xff;
    const fs::path shm = file.string() + "-shm";
    if (!write && (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) && !fs::exists(shm, ec)) {
      // WAL readers share an index in DATABASE-shm; with the daemon stopped
      // it is gone and only someone who may write the directory can make it.
      throw std::runtime_error("cannot read " + file.string() + " while referrald is stopped: SQLite must create " +
                                               shm.string() + ", which needs write access to " +
                                               file.parent_path().string() +
                                               " (run as the referrald user or root, or start referrald)");
    }
    throw;
  }
  db->set_busy_timeout(c.global.lock_wait);
  store::require_current_schema(*db);
  db->set_payload_keys(c.settings.payload_keys);
  return db;
}

// ---- presentation ----

std::string rfc3339(TimePoint t) { return format_utc_timestamp(t); }

json optional_time(const std::optional<TimePoint>& t) { return t ? json(rfc3339(*t)) : json(nullptr); }

json optional_text(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

Colour colour_of(DeliveryState s) {
  switch (s) {
    case DeliveryState::delivered: return Colour::green;
    case DeliveryState::retry: return Colour::yellow;
    case DeliveryState::dead: return Colour::red;
    case DeliveryState::held: return Colour::cyan;
    case DeliveryState::sending: return Colour::blue;
    case DeliveryState::cancelled: return Colour::dim;
    case DeliveryState::pending: return Colour::none;
  }
  return Colour::none;
}

Colour colour_of(Decision d) {
  switch (d) {
    case Decision::accepted: return Colour::green;
    case Decision::review: return Colour::yellow;
    case Decision::declined: return Colour::red;
  }
  return Colour::none;
}

Colour colour_of(Urgency u) {
  switch (u) {
    case Urgency::routine: return Colour::none;
    case Urgency::urgent: return Colour::yellow;
    case Urgency::emergent: return Colour::red;
  }
  return Colour::none;
}

Colour colour_of(store::AttemptOutcome o) {
  return o == store::AttemptOutcome::delivered ? Colour::green
         : o == store::AttemptOutcome::transient ? Colour::yellow
                                                  : Colour::red;
}

std::string str(DeliveryState s) { return std::string(store::to_string(s)); }

std::string plural(std::int64_t n, std::string_view one, std::string_view many) {
  return grouped(n) + " " + std::string(n == 1 ? one : many);
}

json delivery_json(const store::DeliveryRow& d) {
  json j;
  j["id"] = d.id;
  j["referral_id"] = d.referral_id;
  j["target"] = d.target;
  j["identity"] = d.referral_id + "." + d.target;
  j["state"] = str(d.state);
  j["attempts"] = d.attempts;
  j["created_at"] = rfc3339(d.created_at);
  j["next_attempt_at"] = d.state == DeliveryState::pending || d.state == DeliveryState::retry ||
                                 d.state == DeliveryState::held
                             ? json(rfc3339(d.next_attempt_at))
                             : json(nullptr);
  j["lease_until"] = optional_time(d.lease_until);
  j["last_error"] = optional_text(d.last_error);
  j["external_id"] = optional_text(d.external_id);
  j["updated_at"] = rfc3339(d.updated_at);
  return j;
}

// What the queue shows in its NEXT ATTEMPT column.
std::string next_attempt_text(const store::DeliveryRow& d, TimePoint now) {
  switch (d.state) {
    case DeliveryState::sending:
      return d.lease_until ? "sending, lease to " + local_time(*d.lease_until) : "sending";
    case DeliveryState::held: return "held";
    case DeliveryState::pending:
    case DeliveryState::retry:
      return local_time(d.next_attempt_at) + " (" + relative_time(d.next_attempt_at, now) + ")";
    default: return "-";
  }
}

// Invalid UTF-8 (from a peer's error text, say) is replaced, never a throw.
void print_json(Context& c, const json& j) {
  c.out << j.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
}

// A JSON Pointer lookup that yields "" for anything missing or not a string.
std::string text_at(const nlohmann::json& doc, const char* pointer) {
  const auto p = nlohmann::json::json_pointer(pointer);
  if (!doc.contains(p)) return {};
  const auto& v = doc.at(p);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return {};
}

void join_into(std::string& out, const std::string& part, std::string_view separator = ", ") {
  if (part.empty()) return;
  if (!out.empty()) out += separator;
  out += part;
}

// The referral document as a few labelled rows (no free text is dropped:
// an operator reads it to act on it).
void add_document(Table& t, const std::string& document) {
  const auto doc = nlohmann::json::parse(document, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    t.add({{"referral"}, {"(the stored document is not readable JSON)"}});
    return;
  }
  std::string patient = text_at(doc, "/patient/given_name") + " " + text_at(doc, "/patient/family_name");
  std::string born;
  join_into(born, "born " + text_at(doc, "/patient/birth_date"));
  join_into(born, text_at(doc, "/patient/sex"));
  if (const auto postal = text_at(doc, "/patient/postal_code"); !postal.empty()) join_into(born, "postal code " + postal);
  t.add({{"patient"}, {patient + " (" + born + ")"}});
  if (doc.contains(nlohmann::json::json_pointer("/patient/guardian"))) {
    std::string g = text_at(doc, "/patient/guardian/name");
    if (const auto rel = text_at(doc, "/patient/guardian/relationship"); !rel.empty()) g += " (" + rel + ")";
    join_into(g, text_at(doc, "/patient/guardian/phone"));
    t.add({{"guardian"}, {g}});
  }
  std::string diagnosis = text_at(doc, "/diagnosis/name");
  if (const auto system = text_at(doc, "/diagnosis/code/system"); !system.empty()) {
    diagnosis += " (" + system + " " + text_at(doc, "/diagnosis/code/value") + ")";
  }
  if (const auto on = text_at(doc, "/diagnosis/diagnosed_on"); !on.empty()) join_into(diagnosis, "diagnosed " + on);
  if (const auto path = text_at(doc, "/diagnosis/pathology_confirmed"); !path.empty()) {
    join_into(diagnosis, path == "yes" ? "pathology confirmed" : "pathology not confirmed");
  }
  t.add({{"diagnosis"}, {diagnosis}});
  std::string referrer = text_at(doc, "/referrer/name");
  join_into(referrer, text_at(doc, "/referrer/credential"));
  join_into(referrer, "NPI " + text_at(doc, "/referrer/npi"));
  join_into(referrer, text_at(doc, "/referrer/organization"));
  t.add({{"referrer"}, {referrer}});
  std::string contact = text_at(doc, "/referrer/phone");
  if (const auto fax = text_at(doc, "/referrer/fax"); !fax.empty()) join_into(contact, "fax " + fax);
  join_into(contact, text_at(doc, "/referrer/email"));
  t.add({{"contact"}, {contact}});
  if (const auto notes = text_at(doc, "/notes"); !notes.empty()) t.add({{"notes"}, {notes}});
}

// A table of label/value rows, without its (empty) header line.
void print_rows(Context& c, const Table& t) {
  std::ostringstream buffer;
  t.print(buffer, c.style);
  const std::string text = buffer.str();
  c.out << text.substr(text.find('\n') + 1);
}

// ---- failures ----

std::string database_message(const store::DatabaseError& e, const Context& c) {
  const int primary = e.code() & 0xff;
  const std::string file = c.settings.database.string();
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return "database " + file + " is locked: another process held it for more than " +
           format_duration(c.global.lock_wait) + " (a long purge, or an open sqlite3 shell?); try again, or wait longer with --wait";
  }
  if (primary == SQLITE_READONLY) {
    return "cannot change " + file + ": no write access (run as the referrald user or root); " + e.what();
  }
  return e.what();
}

}  // namespace

int report_failure(Context& c, const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const store::NotFound& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_not_found;
  } catch (const UsageError& e) {
    c.err << "referralctl: " << e.what() << "\nRun with --help for more information.\n";
    return exit_usage;
  } catch (const store::IncompatibleSchema& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_unavailable;
  } catch (const store::PayloadError& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_undecryptable;
  } catch (const store::DatabaseError& e) {
    c.err << "referralctl: " << database_message(e, c) << '\n';
    return exit_unavailable;
  } catch (const SettingsError& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_unavailable;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) c.err << p.to_string() << '\n';
    c.err << "referralctl: the configuration or rules file is not valid\n";
    return exit_unavailable;
  } catch (const std::exception& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_unavailable;
  }
}

std::string operator_name() {
  const uid_t uid = ::geteuid();
  std::string name = "uid " + std::to_string(uid);
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    name = found->pw_name;
  }
  const char* sudo_user = std::getenv("SUDO_USER");
  if (sudo_user != nullptr && sudo_user[0] != '\0' && name != sudo_user) {
    name += " (sudo by " + std::string(sudo_user) + ")";
  }
  return name;
}

namespace {
// system_clock counts nanoseconds in 64 bits: it ends in the year 2262.
std::optional<TimePoint> representable(std::time_t t) {
  const std::time_t last = std::chrono::system_clock::to_time_t(std::chrono::system_clock::time_point::max()) - 1;
  if (t == -1 || t > last || t < -last) return std::nullopt;
  return std::chrono::system_clock::from_time_t(t);
}
}  // namespace

std::optional<TimePoint> parse_since(const std::string& text, TimePoint now) {
  if (auto d = parse_duration(text)) return now - *d;
  if (auto date = parse_iso_date(text)) {
    std::tm tm{};
    tm.tm_year = static_cast<int>(date->year()) - 1900;
    tm.tm_mon = static_cast<int>(static_cast<unsigned>(date->month())) - 1;
    tm.tm_mday = static_cast<int>(static_cast<unsigned>(date->day()));
    tm.tm_isdst = -1;
    return representable(std::mktime(&tm));
  }
  // "YYYY-MM-DDTHH:MM[:SS][Z]" or with a space.
  std::string s = text;
  const bool utc = !s.empty() && (s.back() == 'Z' || s.back() == 'z');
  if (utc) s.pop_back();
  if (s.size() > 10 && (s[10] == 'T' || s[10] == ' ')) s[10] = 'T';
  for (const char* format : {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"}) {
    std::tm tm{};
    const char* end = ::strptime(s.c_str(), format, &tm);
    if (end == nullptr || *end != '\0') continue;
    tm.tm_isdst = -1;
    return representable(utc ? ::timegm(&tm) : std::mktime(&tm));
  }
  return std::nullopt;
}

// ---- list ----

int list_command(Context& c, const store::ListFilter& filter) {
  auto db = open_store(c, false);
  store::ReferralPage page;
  {
    ReadTransaction read(*db);
    page = store::list_referrals(*db, filter);
  }
  if (c.json) {
    json j;
    j["referrals"] = json::array();
    for (const auto& r : page.referrals) {
      json row;
      row["id"] = r.id;
      row["received_at"] = rfc3339(r.received_at);
      row["decision"] = std::string(to_string(r.decision));
      row["urgency"] = std::string(to_string(r.urgency));
      row["disease"] = optional_text(r.disease);
      row["channel"] = r.channel;
      row["deliveries"] = json::array();
      for (const auto& d : r.deliveries) {
        row["deliveries"].push_back({{"id", d.id}, {"target", d.target}, {"state", str(d.state)}});
      }
      j["referrals"].push_back(std::move(row));
    }
    j["next_before"] = optional_text(page.next_before);
    print_json(c, j);
    return exit_ok;
  }
  if (page.referrals.empty()) {
    c.out << "no referrals match\n";
    return exit_ok;
  }
  Table t({"RECEIVED", "ID", "DECISION", "URGENCY", "DISEASE", "DELIVERIES"});
  for (const auto& r : page.referrals) {
    std::string deliveries;
    for (const auto& d : r.deliveries) {
      join_into(deliveries, d.target + " " + c.style.paint(str(d.state), colour_of(d.state)));
    }
    if (deliveries.empty()) deliveries = "-";
    // DELIVERIES is the last column: it is not padded, so colour inside it is safe.
    t.add({{local_time(r.received_at)},
           {r.id},
           {std::string(to_string(r.decision)), colour_of(r.decision)},
           {std::string(to_string(r.urgency)), colour_of(r.urgency)},
           {r.disease.value_or("-")},
           {deliveries, Colour::none, true}});
  }
  t.print(c.out, c.style);
  if (page.next_before) {
    c.out << "more: referralctl list --before " << *page.next_before << " (with the same filters)\n";
  }
  return exit_ok;
}

// ---- show ----

int show_command(Context& c, const std::string& id_text) {
  auto db = open_store(c, false);
  std::string id = id_text;
  for (char& ch : id) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::optional<store::ReferralRow> referral;
  std::vector<store::DeliveryRow> deliveries;
  std::map<std::int64_t, std::vector<store::AttemptRow>> attempts;
  std::vector<store::AuditRow> audit;
  {
    ReadTransaction read(*db);
    try {
      referral = store::find_referral(*db, id);
    } catch (const store::PayloadError& e) {
      if (c.settings.payload_keys) throw;
      throw store::PayloadError(std::string(e.what()) + "\n  (" + c.settings.why_no_payload_keys() + ")");
    }
    audit = store::audit_of(*db, id);
    if (referral) {
      deliveries = store::deliveries_of(*db, id);
      for (const auto& d : deliveries) attempts[d.id] = store::attempts_of(*db, d.id);
    }
  }
  if (!referral) {
    for (auto it = audit.rbegin(); it != audit.rend(); ++it) {
      if (it->action == "purged") {
        throw store::NotFound("no referral " + id_text + " (purged " + local_time(it->at) + " by " + it->actor + ")");
      }
    }
    throw store::NotFound("no referral " + id_text);
  }

  if (c.json) {
    json j;
    json r;
    r["id"] = referral->id;
    r["received_at"] = rfc3339(referral->received_at);
    r["decision"] = std::string(to_string(referral->decision));
    r["reasons"] = json::array();
    for (const auto& reason : referral->reasons) r["reasons"].push_back({{"code", reason.code}, {"message", reason.message}});
    r["disease"] = optional_text(referral->disease);
    r["urgency"] = std::string(to_string(referral->urgency));
    r["channel"] = referral->channel;
    r["client"] = referral->client;
    const auto doc = json::parse(referral->document, nullptr, false);
    r["document"] = doc.is_discarded() ? json(nullptr) : doc;
    j["referral"] = std::move(r);
    j["deliveries"] = json::array();
    for (const auto& d : deliveries) {
      json dj = delivery_json(d);
      dj["attempt_log"] = json::array();
      for (const auto& a : attempts[d.id]) {
        dj["attempt_log"].push_back({{"attempt", a.attempt},
                                     {"started_at", rfc3339(a.started_at)},
                                     {"finished_at", rfc3339(a.finished_at)},
                                     {"outcome", std::string(store::to_string(a.outcome))},
                                     {"code", optional_text(a.code)},
                                     {"message", a.message},
                                     {"external_id", optional_text(a.external_id)}});
      }
      j["deliveries"].push_back(std::move(dj));
    }
    j["audit"] = json::array();
    for (const auto& a : audit) {
      j["audit"].push_back({{"at", rfc3339(a.at)},
                            {"actor", a.actor},
                            {"action", a.action},
                            {"delivery_id", a.delivery_id ? json(*a.delivery_id) : json(nullptr)},
                            {"detail", a.detail}});
    }
    print_json(c, j);
    return exit_ok;
  }

  const Style& s = c.style;
  c.out << s.paint("Referral " + referral->id, Colour::bold) << '\n';
  Table head({"", ""}, "  ");
  head.add({{"received"}, {local_time(referral->received_at) + " (" + relative_time(referral->received_at, c.now) +
                           ", " + referral->channel + ", client " + referral->client + ")"}});
  head.add({{"decision"}, {std::string(to_string(referral->decision)), colour_of(referral->decision)}});
  for (std::size_t i = 0; i < referral->reasons.size(); ++i) {
    head.add({{i == 0 ? "reasons" : ""}, {referral->reasons[i].code + ": " + referral->reasons[i].message}});
  }
  head.add({{"disease"}, {referral->disease.value_or("- (not in the catalogue)")}});
  head.add({{"urgency"}, {std::string(to_string(referral->urgency)), colour_of(referral->urgency)}});
  add_document(head, referral->document);
  print_rows(c, head);

  c.out << '\n' << s.paint("Deliveries", Colour::bold) << '\n';
  if (deliveries.empty()) c.out << "  none (no route matched)\n";
  for (const auto& d : deliveries) {
    std::string line = "  #" + std::to_string(d.id) + " " + d.target + "  " + s.paint(str(d.state), colour_of(d.state)) +
                       "  " + plural(d.attempts, "attempt", "attempts");
    if (d.state == DeliveryState::pending || d.state == DeliveryState::retry || d.state == DeliveryState::sending) {
      line += "  next: " + next_attempt_text(d, c.now);
    }
    c.out << line << '\n';
    if (d.last_error && !is_final(d.state)) c.out << "    last error: " << printable(*d.last_error) << '\n';
    const auto& log = attempts[d.id];
    if (!log.empty()) {
      Table t({"ATTEMPT", "FINISHED", "OUTCOME", "CODE", "MESSAGE"}, "    ");
      for (const auto& a : log) {
        t.add({{std::to_string(a.attempt)},
               {local_time(a.finished_at)},
               {std::string(store::to_string(a.outcome)), colour_of(a.outcome)},
               {a.code.value_or("-")},
               {a.message}});
      }
      t.print(c.out, s);
    }
  }

  c.out << '\n' << s.paint("Audit trail", Colour::bold) << '\n';
  Table t({"AT", "ACTOR", "ACTION", "DELIVERY", "DETAIL"}, "  ");
  for (const auto& a : audit) {
    t.add({{local_time(a.at)}, {a.actor}, {a.action}, {a.delivery_id ? "#" + std::to_string(*a.delivery_id) : "-"},
           {a.detail}});
  }
  t.print(c.out, s);
  return exit_ok;
}

// ---- queue ----

int queue_command(Context& c, const store::QueueFilter& filter) {
  auto db = open_store(c, false);
  std::vector<store::QueueEntry> entries;
  std::int64_t dead = 0;
  {
    ReadTransaction read(*db);
    entries = store::queue_entries(*db, filter);
    dead = store::count_dead(*db, filter.target);
  }
  if (c.json) {
    json j;
    j["deliveries"] = json::array();
    for (const auto& e : entries) {
      json d = delivery_json(e.delivery);
      d["urgency"] = std::string(to_string(e.urgency));
      j["deliveries"].push_back(std::move(d));
    }
    j["dead"] = dead;
    print_json(c, j);
    return exit_ok;
  }
  std::map<DeliveryState, std::int64_t> counts;
  if (entries.empty()) {
    c.out << "the queue is empty";
  } else {
    Table t({"ID", "REFERRAL", "TARGET", "STATE", "ATTEMPTS", "URGENCY", "NEXT ATTEMPT", "LAST ERROR"});
    for (const auto& e : entries) {
      const auto& d = e.delivery;
      ++counts[d.state];
      t.add({{std::to_string(d.id)},
             {d.referral_id},
             {d.target},
             {str(d.state), colour_of(d.state)},
             {std::to_string(d.attempts)},
             {std::string(to_string(e.urgency)), colour_of(e.urgency)},
             {next_attempt_text(d, c.now)},
             {d.last_error.value_or("")}});
    }
    t.print(c.out, c.style);
    c.out << "-- " << plural(static_cast<std::int64_t>(entries.size()), "delivery", "deliveries") << " waiting";
    std::string parts;
    for (auto state : {DeliveryState::pending, DeliveryState::sending, DeliveryState::retry, DeliveryState::held}) {
      if (counts[state] > 0) join_into(parts, grouped(counts[state]) + " " + str(state));
    }
    c.out << " (" << parts << ")";
  }
  if (dead > 0) {
    c.out << "; " << plural(dead, "dead delivery", "dead deliveries") << " (referralctl list --state dead)";
  }
  c.out << '\n';
  return exit_ok;
}

// ---- stats ----

int stats_command(Context& c) {
  auto db = open_store(c, false);
  store::Stats st;
  {
    ReadTransaction read(*db);
    st = store::collect_stats(*db, c.now);
  }
  if (c.json) {
    json j;
    j["generated_at"] = rfc3339(c.now);
    json by_decision;
    for (std::size_t i = 0; i < store::all_decisions.size(); ++i) {
      by_decision[std::string(to_string(store::all_decisions[i]))] = st.by_decision[i];
    }
    j["referrals"] = {{"total", st.referrals}, {"by_decision", by_decision}};
    json by_state;
    for (std::size_t i = 0; i < store::all_delivery_states.size(); ++i) {
      by_state[str(store::all_delivery_states[i])] = st.by_state[i];
    }
    j["deliveries"] = {{"total", st.deliveries}, {"by_state", by_state}};
    j["oldest_due"] = st.oldest_due ? delivery_json(*st.oldest_due) : json(nullptr);
    j["next_due_at"] = optional_time(st.next_due);
    j["targets"] = json::array();
    const auto counts = [](const store::AttemptCounts& a) {
      return json{{"delivered", a.delivered},
                  {"transient", a.transient},
                  {"permanent", a.permanent},
                  {"misconfigured", a.misconfigured}};
    };
    for (const auto& t : st.targets) {
      j["targets"].push_back({{"target", t.target},
                              {"waiting", t.waiting},
                              {"attempts_last_hour", counts(t.last_hour)},
                              {"attempts_last_day", counts(t.last_day)}});
    }
    print_json(c, j);
    return exit_ok;
  }
  const Style& s = c.style;
  Table totals({"", "TOTAL", ""});
  std::string decisions;
  for (std::size_t i = 0; i < store::all_decisions.size(); ++i) {
    join_into(decisions, s.paint(std::string(to_string(store::all_decisions[i])), colour_of(store::all_decisions[i])) +
                             " " + grouped(st.by_decision[i]), "  ");
  }
  totals.add({{"referrals"}, {grouped(st.referrals)}, {decisions, Colour::none, true}});
  std::string states;
  for (std::size_t i = 0; i < store::all_delivery_states.size(); ++i) {
    const auto state = store::all_delivery_states[i];
    join_into(states, s.paint(str(state), colour_of(state)) + " " + grouped(st.by_state[i]), "  ");
  }
  totals.add({{"deliveries"}, {grouped(st.deliveries)}, {states, Colour::none, true}});
  totals.print(c.out, s);

  c.out << '\n';
  if (st.oldest_due) {
    const auto& d = *st.oldest_due;
    const TimePoint due = d.state == DeliveryState::sending && d.lease_until ? *d.lease_until : d.next_attempt_at;
    c.out << "oldest due: #" << d.id << " " << d.referral_id << " " << d.target << " (" << str(d.state)
          << "), due since " << local_time(due) << " (" << relative_time(due, c.now) << ")\n";
  } else if (st.next_due) {
    c.out << "oldest due: none; next attempt " << local_time(*st.next_due) << " ("
          << relative_time(*st.next_due, c.now) << ")\n";
  } else {
    c.out << "oldest due: none\n";
  }

  c.out << '\n';
  if (st.targets.empty()) {
    c.out << "no deliveries waiting and no attempts in the last day\n";
    return exit_ok;
  }
  Table t({"TARGET", "WAITING", "HOUR SENT", "HOUR FAILED", "DAY SENT", "DAY FAILED"});
  for (const auto& a : st.targets) {
    t.add({{a.target},
           {grouped(a.waiting)},
           {grouped(a.last_hour.delivered)},
           {grouped(a.last_hour.failed()), a.last_hour.failed() > 0 ? Colour::yellow : Colour::none},
           {grouped(a.last_day.delivered)},
           {grouped(a.last_day.failed()), a.last_day.failed() > 0 ? Colour::yellow : Colour::none}});
  }
  t.print(c.out, s);
  c.out << "(SENT: attempts that delivered; FAILED: attempts that did not, of any class)\n";
  return exit_ok;
}

// ---- actions ----

int action_command(Context& c, store::Action action, const std::vector<std::string>& names,
                   const std::optional<std::string>& target) {
  const std::string verb(store::to_string(action));
  bool all = false;
  for (const auto& n : names) {
    if (n == "ALL") {
      if (action != store::Action::retry) {
        throw UsageError(verb + " takes delivery numbers or referral ids; only retry takes ALL");
      }
      all = true;
    } else if (n == "all" || n == "All") {
      throw UsageError("\"" + n + "\" is not an id; to " + verb + " every dead and waiting delivery, write ALL in capitals");
    }
  }
  if (all && names.size() > 1) throw UsageError("ALL stands alone: retry ALL [--target NAME]");

  auto db = open_store(c, true);
  const std::string actor = operator_name();
  std::vector<store::ActionChange> changes;
  {
    WriteTransaction write(*db);
    std::vector<store::DeliveryRow> selected;
    if (all) {
      selected = store::deliveries_for_all(*db, action, target);
    } else {
      std::set<std::int64_t> seen;
      for (const auto& n : names) {
        for (auto& d : store::resolve_deliveries(*db, n)) {
          if (target && d.target != *target) continue;
          if (seen.insert(d.id).second) selected.push_back(std::move(d));
        }
      }
    }
    changes = store::apply_action(*db, action, selected, actor, c.now);
    write.commit();
  }

  std::int64_t applied = 0;
  for (const auto& ch : changes) applied += ch.applied ? 1 : 0;
  if (c.json) {
    json j;
    j["action"] = verb;
    j["actor"] = actor;
    j["changed"] = json::array();
    j["skipped"] = json::array();
    for (const auto& ch : changes) {
      json row{{"id", ch.delivery.id},
               {"referral_id", ch.delivery.referral_id},
               {"target", ch.delivery.target},
               {"from", str(ch.delivery.state)}};
      if (ch.applied) {
        row["to"] = str(ch.to);
        j["changed"].push_back(std::move(row));
      } else {
        row["reason"] = ch.refusal;
        j["skipped"].push_back(std::move(row));
      }
    }
    print_json(c, j);
    return exit_ok;
  }
  if (!changes.empty()) {
    Table t({"ID", "REFERRAL", "TARGET", "CHANGE"});
    for (const auto& ch : changes) {
      const std::string change =
          ch.applied ? str(ch.delivery.state) + " -> " + c.style.paint(str(ch.to), colour_of(ch.to))
                     : str(ch.delivery.state) + ", skipped: " + ch.refusal;
      t.add({{std::to_string(ch.delivery.id)}, {ch.delivery.referral_id}, {ch.delivery.target}, {change, Colour::none, true}});
    }
    t.print(c.out, c.style);
  }
  static const std::map<store::Action, std::pair<const char*, const char*>> done{
      {store::Action::retry, {"retried", " (the daemon sends within seconds)"}},
      {store::Action::cancel, {"cancelled", ""}},
      {store::Action::hold, {"held", " (release them to send)"}},
      {store::Action::release, {"released", " (the daemon sends within seconds)"}}};
  const auto& [past, note] = done.at(action);
  c.out << plural(applied, "delivery", "deliveries") << " " << past << (applied > 0 ? note : "");
  if (changes.size() > static_cast<std::size_t>(applied)) {
    c.out << ", " << grouped(static_cast<std::int64_t>(changes.size()) - applied) << " skipped";
  }
  if (changes.empty()) c.out << (all ? " (nothing is dead or waiting to retry)" : " (nothing matched)");
  c.out << "; recorded as " << actor << '\n';
  return exit_ok;
}

// ---- check ----

int check_command(Context& c, const fs::path& file) {
  const Settings& settings = c.settings;
  if (settings.rules_file.empty() || settings.schema_dir.empty()) {
    throw SettingsError("check needs referrald's configuration for the rules and the schema (--config FILE)");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw store::NotFound("cannot read " + file.string() + ": " + std::generic_category().message(errno));
  std::ostringstream body;
  body << in.rdbuf();

  // The daemon's intake pipeline, received now: validate against the schema
  // with today's date, decide, route. Nothing is stored. Without a valid
  // configuration there are rules but no routes or office hours to show.
  IntakePolicy policy;
  policy.rules = settings.configuration ? settings.configuration->rules : load_rules(settings.rules_file);
  if (settings.configuration) {
    policy.routes = settings.configuration->config.routes;
    policy.hours = settings.configuration->config.office.hours;
  }
  const ReferralValidator validator(settings.schema_dir / "referral.v1.schema.json");
  Submission submission;
  submission.channel = "api";  // a JSON file: what the API takes
  submission.body = body.str();
  submission.received_at = c.now;
  auto result = plan_intake(policy, validator, submission);

  std::vector<FieldError> errors;
  if (auto* malformed = std::get_if<MalformedInput>(&result)) {
    errors.push_back({"", malformed->message});
  } else if (auto* invalid = std::get_if<InvalidReferral>(&result)) {
    errors = invalid->errors;
  }
  if (!errors.empty()) {
    if (c.json) {
      json j{{"valid", false}, {"errors", json::array()}};
      for (const auto& e : errors) j["errors"].push_back({{"path", e.path}, {"message", e.message}});
      print_json(c, j);
    } else {
      c.out << file.string() << ": " << c.style.paint("not a valid referral", Colour::red) << " ("
            << plural(static_cast<std::int64_t>(errors.size()), "problem", "problems") << "; nothing stored)\n";
      Table t({"PATH", "PROBLEM"}, "  ");
      for (const auto& e : errors) t.add({{e.path.empty() ? "(document)" : e.path}, {e.message}});
      t.print(c.out, c.style);
    }
    return exit_invalid;
  }

  const auto& plan = std::get<IntakePlan>(result);
  const auto& referral = plan.referral;
  const auto& eligibility = plan.eligibility;
  std::optional<std::vector<std::string>> targets;
  std::optional<bool> after_hours;
  if (settings.configuration) {
    after_hours = plan.after_hours;
    targets = plan.targets;
  }
  if (c.json) {
    json j{{"valid", true}, {"decision", std::string(to_string(eligibility.decision))}, {"reasons", json::array()}};
    for (const auto& r : eligibility.reasons) j["reasons"].push_back({{"code", r.code}, {"message", r.message}});
    j["disease"] = optional_text(eligibility.disease);
    j["urgency"] = std::string(to_string(referral.urgency));
    j["targets"] = targets ? json(*targets) : json(nullptr);
    j["after_hours"] = after_hours ? json(*after_hours) : json(nullptr);
    print_json(c, j);
    return exit_ok;
  }
  c.out << file.string() << ": valid referral (nothing stored)\n";
  Table t({"", ""}, "  ");
  t.add({{"decision"}, {std::string(to_string(eligibility.decision)), colour_of(eligibility.decision)}});
  for (std::size_t i = 0; i < eligibility.reasons.size(); ++i) {
    t.add({{i == 0 ? "reasons" : ""}, {eligibility.reasons[i].code + ": " + eligibility.reasons[i].message}});
  }
  t.add({{"disease"}, {eligibility.disease.value_or("- (not in the catalogue)")}});
  t.add({{"urgency"}, {std::string(to_string(referral.urgency))}});
  if (targets) {
    std::string list;
    for (const auto& name : *targets) join_into(list, name);
    t.add({{"would notify"},
           {(list.empty() ? std::string("nobody (no route matches)") : list) + " (now: " +
            (*after_hours ? "after hours" : "business hours") + ")"}});
  }
  print_rows(c, t);
  if (!targets) {
    c.err << "referralctl: note: routes not shown; the configuration does not validate here:\n";
    for (const auto& p : settings.problems) c.err << "  " << p << '\n';
  }
  return exit_ok;
}

// ---- purge ----

int purge_command(Context& c, Duration older_than, bool dry_run) {
  if (older_than <= Duration::zero()) throw UsageError("--older-than must be longer than 0s");
  const TimePoint cutoff = c.now - older_than;
  auto db = open_store(c, !dry_run);
  const std::string actor = operator_name();
  const std::string detail_base = "older_than=" + format_duration(older_than);

  // The daemon's writer waits 2 s for the write lock, and SQLite's busy
  // handler retries at most 100 ms apart. So each transaction deletes
  // batches of 50 for at most ~100 ms, and the lock is then left free for
  // 100 ms: the daemon always gets its turn, and a year of referrals is
  // purged in minutes while intake goes on.
  constexpr int batch = 50;
  constexpr auto hold_at_most = std::chrono::milliseconds(100);
  constexpr auto pause = std::chrono::milliseconds(100);
  std::int64_t purged = 0;
  std::optional<store::PurgeCandidate> after;
  for (bool more = true; more;) {
    const auto started = std::chrono::steady_clock::now();
    std::optional<ReadTransaction> read;
    std::optional<WriteTransaction> write;
    if (dry_run) {
      read.emplace(*db);
    } else {
      write.emplace(*db);
    }
    do {
      const auto candidates = store::purge_candidates(*db, cutoff, after, batch);
      if (!dry_run) {
        for (const auto& r : candidates) {
          store::purge_referral(*db, r, actor, c.now,
                                detail_base + " received=" + rfc3339(r.received_at) +
                                    " decision=" + std::string(to_string(r.decision)));
        }
      }
      purged += static_cast<std::int64_t>(candidates.size());
      more = static_cast<int>(candidates.size()) == batch;
      if (more) after = candidates.back();
    } while (more && (dry_run || std::chrono::steady_clock::now() - started < hold_at_most));
    if (write) write->commit();
    if (more && !dry_run) std::this_thread::sleep_for(pause);
  }
  std::int64_t kept = 0;
  {
    ReadTransaction read(*db);
    kept = store::count_received_before(*db, cutoff) - (dry_run ? purged : 0);
  }
  if (c.json) {
    print_json(c, json{{"older_than", format_duration(older_than)},
                       {"cutoff", rfc3339(cutoff)},
                       {"dry_run", dry_run},
                       {"purged", purged},
                       {"kept_unfinished", kept}});
    return exit_ok;
  }
  c.out << (dry_run ? "would purge " : "purged ") << plural(purged, "referral", "referrals") << " received before "
        << local_time(cutoff);
  if (kept > 0) {
    c.out << "; kept " << grouped(kept) << " with deliveries not yet final (see referralctl queue)";
  }
  if (!dry_run && purged > 0) c.out << "; recorded as " << actor;
  c.out << '\n';
  return exit_ok;
}

int rekey_command(Context& c) {
  const auto keys = c.settings.payload_keys;
  if (!keys) throw SettingsError("rekey needs the encryption keys: " + c.settings.why_no_payload_keys());
  auto db = open_store(c, true);
  // The bytes a document is rewritten over are zeroed, not left in free
  // space: after rekeying rows stored in the clear, no plain copy stays in
  // the file (backups and old WAL frames already copied elsewhere aside).
  store::zero_freed_space(*db);
  const std::string actor = operator_name();

  // Batches like purge's: each transaction holds the write lock ~100 ms
  // and then leaves it free for 100 ms, so the running daemon keeps
  // storing referrals while a million documents are re-encrypted.
  constexpr int batch = 100;
  constexpr auto hold_at_most = std::chrono::milliseconds(100);
  constexpr auto pause = std::chrono::milliseconds(100);
  std::int64_t examined = 0, rekeyed = 0;
  std::vector<std::string> unreadable;
  std::optional<std::string> after;
  for (bool more = true; more;) {
    const auto started = std::chrono::steady_clock::now();
    WriteTransaction write(*db);
    do {
      auto b = store::rekey_referrals(*db, after, batch, actor, c.now);
      examined += b.examined;
      rekeyed += b.rekeyed;
      unreadable.insert(unreadable.end(), b.unreadable.begin(), b.unreadable.end());
      more = b.examined == batch;
      if (b.last_id) after = b.last_id;
    } while (more && std::chrono::steady_clock::now() - started < hold_at_most);
    write.commit();
    if (more) std::this_thread::sleep_for(pause);
  }

  const std::string& key = keys->current().id;
  if (c.json) {
    print_json(c, json{{"key", key}, {"examined", examined}, {"rekeyed", rekeyed}, {"unreadable", unreadable}});
  } else {
    c.out << "rekeyed " << plural(rekeyed, "referral", "referrals") << " to key \"" << key << "\"";
    c.out << " (" << grouped(examined - rekeyed - static_cast<std::int64_t>(unreadable.size()))
          << " already under it)";
    if (rekeyed > 0) c.out << "; recorded as " << actor;
    c.out << '\n';
  }
  for (const auto& message : unreadable) c.err << "referralctl: " << message << '\n';
  if (!unreadable.empty()) {
    c.err << "referralctl: " << plural(static_cast<std::int64_t>(unreadable.size()), "document", "documents")
          << " left as they were: put their keys back into storage.encryption_keys and run rekey again\n";
    return exit_undecryptable;
  }
  return exit_ok;
}

}  // namespace referrald::cli
