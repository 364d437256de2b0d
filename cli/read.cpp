// referralctl's reading commands: list, show, queue, stats. Each reads one
// snapshot of the store, opened read-only.
#include "cli/commands.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cli/common.hpp"
#include "attachments/inspect.hpp"
#include "store/attachment_json.hpp"
#include "store/attachments.hpp"
#include "store/office.hpp"
#include "store/payload.hpp"
#include "util/dates.hpp"
#include "util/private_files.hpp"
#include "util/sealed_spool.hpp"
#include "util/strings.hpp"
#include "model/reasons_json.hpp"

namespace referrald::cli {

using store::DeliveryState;
using store::ReadTransaction;

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
      row["status"] = std::string(to_string(r.status));
      row["duplicate_of"] = optional_text(r.duplicate_of);
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
  Table t({"RECEIVED", "ID", "DECISION", "URGENCY", "STATUS", "DISEASE", "DELIVERIES"});
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
           {status_text(r.status, r.duplicate_of), colour_of(r.status)},
           {r.disease.value_or("-")},
           {deliveries, Colour::none, true}});
  }
  t.print(c.out, c.style);
  if (page.next_before) {
    c.out << "more: referralctl list --before " << *page.next_before << " (with the same filters)\n";
  }
  return exit_ok;
}

int overdue_command(Context& c) {
  auto db = open_store(c, false);
  std::vector<store::OverdueReferral> overdue;
  {
    ReadTransaction read(*db);
    overdue = store::overdue_referrals(*db, c.now);
  }
  if (c.json) {
    json j;
    j["overdue"] = json::array();
    for (const auto& o : overdue) {
      j["overdue"].push_back({{"id", o.referral_id},
                              {"received_at", rfc3339(o.received_at)},
                              {"urgency", std::string(to_string(o.urgency))},
                              {"step", o.step},
                              {"due_at", rfc3339(o.due_at)}});
    }
    print_json(c, j);
    return exit_ok;
  }
  if (overdue.empty()) {
    c.out << "no referral is overdue\n";
    return exit_ok;
  }
  Table t({"RECEIVED", "ID", "URGENCY", "WAITING", "STEP DUE"});
  for (const auto& o : overdue) {
    t.add({{local_time(o.received_at)},
           {o.referral_id},
           {std::string(to_string(o.urgency)), colour_of(o.urgency)},
           {short_duration(std::chrono::duration_cast<std::chrono::milliseconds>(c.now - o.received_at))},
           {"step " + std::to_string(o.step) + " at " + local_time(o.due_at) + " (" + relative_time(o.due_at, c.now) +
            ")"}});
  }
  t.print(c.out, c.style);
  c.out << "-- " << plural(static_cast<std::int64_t>(overdue.size()), "referral", "referrals")
        << " not acknowledged past an escalation step (referralctl ack ID)\n";
  return exit_ok;
}

// ---- show ----

namespace {

// A JSON Pointer lookup that yields "" for anything missing or not a string.
std::string text_at(const nlohmann::json& doc, const char* pointer) {
  const auto p = nlohmann::json::json_pointer(pointer);
  if (!doc.contains(p)) return {};
  const auto& v = doc.at(p);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return {};
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
  if (const auto postal = text_at(doc, "/patient/postal_code"); !postal.empty())
    join_into(born, "postal code " + postal);
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

}  // namespace

int show_command(Context& c, const std::string& id_text) {
  auto db = open_store(c, false);
  const std::string id = upper(id_text);
  std::optional<store::ReferralRow> referral;
  std::vector<store::DeliveryRow> deliveries;
  std::map<std::int64_t, std::vector<store::AttemptRow>> attempts;
  std::vector<store::AuditRow> audit;
  std::optional<store::ReferralStatus> status;
  std::vector<store::StatusHistoryEntry> history;
  std::vector<store::EscalationRow> escalations;
  std::vector<store::AttachmentInfo> attachments;
  {
    ReadTransaction read(*db);
    try {
      referral = store::find_referral(*db, id);
      if (referral) history = store::status_history(*db, id);
      if (referral) attachments = store::attachments_of(*db, id);
    } catch (const store::PayloadError& e) {
      if (c.settings.payload_keys) throw;
      throw store::PayloadError(std::string(e.what()) + "\n  (" + c.settings.why_no_payload_keys() + ")");
    }
    audit = store::audit_of(*db, id);
    if (referral) {
      status = store::status_of(*db, id);
      escalations = store::escalations_of(*db, id);
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
    r["reasons"] = reasons_json<json>(referral->reasons);
    r["disease"] = optional_text(referral->disease);
    r["urgency"] = std::string(to_string(referral->urgency));
    r["channel"] = referral->channel;
    r["client"] = referral->client;
    r["status"] = std::string(to_string(status->status));
    r["acknowledged_at"] = optional_time(status->acknowledged_at);
    r["duplicate_of"] = optional_text(status->duplicate_of);
    const auto doc = json::parse(referral->document, nullptr, false);
    r["document"] = doc.is_discarded() ? json(nullptr) : doc;
    j["referral"] = std::move(r);
    j["status_history"] = json::array();
    for (const auto& h : history) {
      j["status_history"].push_back({{"id", h.id},
                                     {"at", rfc3339(h.at)},
                                     {"actor", h.actor},
                                     {"via", std::string(store::to_string(h.via))},
                                     {"from", std::string(to_string(h.from))},
                                     {"to", std::string(to_string(h.to))},
                                     {"note", optional_text(h.note)}});
    }
    j["attachments"] = json::array();
    for (const auto& a : attachments) j["attachments"].push_back(store::describe_attachment<json>(a));
    j["escalations"] = json::array();
    for (const auto& e : escalations) {
      j["escalations"].push_back({{"step", e.step},
                                  {"due_at", rfc3339(e.due_at)},
                                  {"after_s", e.after.count()},
                                  {"targets", e.targets},
                                  {"state", std::string(store::to_string(e.state))},
                                  {"done_at", optional_time(e.done_at)}});
    }
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
  head.add({{"received"},
            {local_time(referral->received_at) + " (" + relative_time(referral->received_at, c.now) + ", " +
             referral->channel + ", client " + referral->client + ")"}});
  head.add({{"decision"}, {std::string(to_string(referral->decision)), colour_of(referral->decision)}});
  for (std::size_t i = 0; i < referral->reasons.size(); ++i) {
    head.add({{i == 0 ? "reasons" : ""}, {referral->reasons[i].code + ": " + referral->reasons[i].message}});
  }
  head.add({{"disease"}, {referral->disease.value_or("- (not in the catalogue)")}});
  head.add({{"urgency"}, {std::string(to_string(referral->urgency)), colour_of(referral->urgency)}});
  std::string since = status->status == OfficeStatus::received
                          ? std::string()
                          : " since " + local_time(status->since) + " (" + relative_time(status->since, c.now) + ")";
  head.add({{"status"},
            {s.paint(std::string(to_string(status->status)), colour_of(status->status)) + printable(since),
             Colour::none, true}});
  if (status->acknowledged_at) {
    head.add({{"acknowledged"},
              {local_time(*status->acknowledged_at) + " (after " +
               short_duration(std::chrono::duration_cast<std::chrono::milliseconds>(*status->acknowledged_at -
                                                                                    referral->received_at)) +
               ")"}});
  }
  if (status->duplicate_of) head.add({{"duplicate"}, {"possibly of " + *status->duplicate_of}});
  add_document(head, referral->document);
  print_rows(c, head);

  if (!attachments.empty()) {
    c.out << '\n'
          << s.paint("Attachments", Colour::bold) << "  (referralctl attachment " << referral->id
          << " N --output FILE)\n";
    Table t({"N", "TITLE", "TYPE", "SIZE", "PAGES", "SHA-256"}, "  ");
    for (const auto& a : attachments) {
      t.add({{std::to_string(a.position)},
             {a.title},
             {a.content_type},
             {describe_size(static_cast<std::size_t>(a.bytes))},
             {std::to_string(a.pages)},
             {a.sha256}});
    }
    t.print(c.out, s);
  }

  c.out << '\n' << s.paint("Status history", Colour::bold) << '\n';
  if (history.empty()) {
    c.out << "  none (received, not acknowledged yet)\n";
  } else {
    Table t({"AT", "ACTOR", "VIA", "CHANGE", "NOTE"}, "  ");
    for (const auto& h : history) {
      t.add({{local_time(h.at)},
             {h.actor},
             {std::string(store::to_string(h.via))},
             {std::string(to_string(h.from)) + " -> " + std::string(to_string(h.to))},
             {h.note.value_or("-")}});
    }
    t.print(c.out, s);
  }

  if (!escalations.empty()) {
    c.out << '\n' << s.paint("Escalation", Colour::bold) << '\n';
    Table t({"STEP", "DUE", "AFTER", "NOTIFY", "STATE"}, "  ");
    for (const auto& e : escalations) {
      std::string notify;
      for (const auto& target : e.targets) join_into(notify, target);
      std::string state(store::to_string(e.state));
      if (e.done_at) state += " " + local_time(*e.done_at);
      t.add({{std::to_string(e.step)},
             {local_time(e.due_at) + " (" + relative_time(e.due_at, c.now) + ")"},
             {short_duration(std::chrono::duration_cast<std::chrono::milliseconds>(e.after))},
             {notify},
             {state}});
    }
    t.print(c.out, s);
  }

  c.out << '\n' << s.paint("Deliveries", Colour::bold) << '\n';
  if (deliveries.empty()) c.out << "  none (no route matched)\n";
  for (const auto& d : deliveries) {
    std::string line = "  #" + std::to_string(d.id) + " " + d.target + "  " +
                       s.paint(str(d.state), colour_of(d.state)) + "  " + plural(d.attempts, "attempt", "attempts");
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
    t.add({{local_time(a.at)},
           {a.actor},
           {a.action},
           {a.delivery_id ? "#" + std::to_string(*a.delivery_id) : "-"},
           {a.detail}});
  }
  t.print(c.out, s);
  return exit_ok;
}

// ---- attachment ----

int attachment_command(Context& c, const std::string& id_text, int position, const std::filesystem::path& output) {
  auto db = open_store(c, false);
  const std::string id = upper(id_text);
  std::optional<Attachment> file;
  bool found = false;
  {
    ReadTransaction read(*db);
    found = store::status_of(*db, id).has_value();
    try {
      if (found) file = store::attachment_file(*db, id, position);
    } catch (const store::PayloadError& e) {
      if (c.settings.payload_keys) throw;
      throw store::PayloadError(std::string(e.what()) + "\n  (" + c.settings.why_no_payload_keys() + ")");
    }
  }
  if (!found) throw store::NotFound("no referral " + id_text);
  if (!file) throw store::NotFound("referral " + id + " has no attachment " + std::to_string(position));
  // The file is patient data: 0600 whatever the umask, and never over a
  // file that is already there (it could be someone else's, or a link).
  const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    throw std::runtime_error("--output: cannot create " + output.string() + ": " + std::strerror(errno) +
                             (errno == EEXIST ? " (referralctl does not overwrite a file)" : ""));
  }
  // A block at a time from the spool the store opened the file into.
  bool ok = ::fchmod(fd, 0600) == 0;
  if (file->spooled) {
    try {
      for (std::size_t i = 0; ok && i < file->spooled->blocks(); ++i) ok = write_all(fd, file->spooled->block(i));
    } catch (const std::runtime_error&) {  // the spool changed on disk under referralctl
      ok = false;
      errno = EIO;
    }
  } else {
    ok = ok && write_all(fd, file->data);
  }
  ok = ok && ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(output.c_str());
    throw std::runtime_error("--output: cannot write " + output.string() + ": " + std::strerror(error));
  }
  if (c.json) {
    print_json(c, json{{"referral", id},
                       {"position", position},
                       {"file", output.string()},
                       {"content_type", file->content_type},
                       {"bytes", file->size()},
                       {"sha256", file->sha256}});
  } else {
    c.out << "wrote attachment " << position << " of " << id << " (" << file->content_type << ", "
          << describe_size(file->size()) << ", SHA-256 " << file->sha256 << ") to " << output.string() << '\n';
  }
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
  std::int64_t overdue = 0;
  {
    ReadTransaction read(*db);
    st = store::collect_stats(*db, c.now);
    overdue = static_cast<std::int64_t>(store::overdue_referrals(*db, c.now).size());
  }
  const auto& statuses = all_office_statuses();
  if (c.json) {
    json j;
    j["generated_at"] = rfc3339(c.now);
    json by_decision;
    for (std::size_t i = 0; i < store::all_decisions.size(); ++i) {
      by_decision[std::string(to_string(store::all_decisions[i]))] = st.by_decision[i];
    }
    json by_status;
    for (std::size_t i = 0; i < statuses.size(); ++i) by_status[std::string(to_string(statuses[i]))] = st.by_status[i];
    j["referrals"] = {
        {"total", st.referrals}, {"by_decision", by_decision}, {"by_status", by_status}, {"overdue", overdue}};
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
    join_into(decisions,
              s.paint(std::string(to_string(store::all_decisions[i])), colour_of(store::all_decisions[i])) + " " +
                  grouped(st.by_decision[i]),
              "  ");
  }
  totals.add({{"referrals"}, {grouped(st.referrals)}, {decisions, Colour::none, true}});
  std::string by_status;
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    join_into(by_status,
              s.paint(std::string(to_string(statuses[i])), colour_of(statuses[i])) + " " + grouped(st.by_status[i]),
              "  ");
  }
  join_into(by_status, s.paint("overdue " + grouped(overdue), overdue > 0 ? Colour::red : Colour::none), "  ");
  totals.add({{""}, {""}, {"by status: " + by_status, Colour::none, true}});
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
    c.out << "oldest due: none; next attempt " << local_time(*st.next_due) << " (" << relative_time(*st.next_due, c.now)
          << ")\n";
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

}  // namespace referrald::cli
