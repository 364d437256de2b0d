#include "cli/commands.hpp"

#include <pwd.h>
#include <unistd.h>

#include <ctime>
#include <ostream>
#include <sstream>

#include "cli/common.hpp"
#include "store/payload.hpp"
#include "store/transfer.hpp"
#include "util/dates.hpp"

namespace referrald::cli {

namespace fs = std::filesystem;
using store::DeliveryState;

// ---- opening the store ----

std::unique_ptr<store::Database> open_store(Context& c, bool write) {
  if (c.settings.postgres) {
    auto db = std::make_unique<store::Database>(*c.settings.postgres,
                                                write ? store::OpenMode::read_write : store::OpenMode::read_only);
    db->set_busy_timeout(c.global.lock_wait);
    store::require_current_schema(*db);
    db->set_payload_keys(c.settings.payload_keys);
    return db;
  }
  const fs::path& file = c.settings.database;
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    throw store::DatabaseError::cannot_open("no database at " + file.string() + " (start referrald once to create it)");
  }
  // Reading needs read access only: the connection is opened read-only.
  std::unique_ptr<store::Database> db;
  try {
    db = std::make_unique<store::Database>(file, write ? store::OpenMode::read_write : store::OpenMode::read_only);
  } catch (const store::DatabaseError& e) {
    const fs::path shm = file.string() + "-shm";
    if (!write && (e.is_read_only() || e.is_cannot_open()) && !fs::exists(shm, ec)) {
      // WAL readers share an index in DATABASE-shm; with the daemon stopped
      // it is gone and only someone who may write the directory can make it.
      throw std::runtime_error("cannot read " + file.string() + " while referrald is stopped: SQLite must create " +
                               shm.string() + ", which needs write access to " + file.parent_path().string() +
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
  return o == store::AttemptOutcome::delivered   ? Colour::green
         : o == store::AttemptOutcome::transient ? Colour::yellow
                                                 : Colour::red;
}

Colour colour_of(OfficeStatus s) {
  switch (s) {
    case OfficeStatus::received: return Colour::yellow;
    case OfficeStatus::acknowledged: return Colour::cyan;
    case OfficeStatus::accepted: return Colour::green;
    case OfficeStatus::declined: return Colour::red;
    case OfficeStatus::needs_info: return Colour::yellow;
    case OfficeStatus::closed: return Colour::dim;
  }
  return Colour::none;
}

std::string status_text(OfficeStatus s, const std::optional<std::string>& duplicate_of) {
  std::string text(to_string(s));
  if (duplicate_of) text += ", dup of " + *duplicate_of;
  return text;
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
  j["next_attempt_at"] =
      d.state == DeliveryState::pending || d.state == DeliveryState::retry || d.state == DeliveryState::held
          ? json(rfc3339(d.next_attempt_at))
          : json(nullptr);
  j["lease_until"] = optional_time(d.lease_until);
  j["last_error"] = optional_text(d.last_error);
  j["external_id"] = optional_text(d.external_id);
  j["updated_at"] = rfc3339(d.updated_at);
  return j;
}

std::string next_attempt_text(const store::DeliveryRow& d, TimePoint now) {
  switch (d.state) {
    case DeliveryState::sending: return d.lease_until ? "sending, lease to " + local_time(*d.lease_until) : "sending";
    case DeliveryState::held: return "held";
    case DeliveryState::pending:
    case DeliveryState::retry:
      return local_time(d.next_attempt_at) + " (" + relative_time(d.next_attempt_at, now) + ")";
    default: return "-";
  }
}

void print_json(Context& c, const json& j) { c.out << j.dump(2, ' ', false, json::error_handler_t::replace) << '\n'; }

void join_into(std::string& out, const std::string& part, std::string_view separator) {
  if (part.empty()) return;
  if (!out.empty()) out += separator;
  out += part;
}

void print_rows(Context& c, const Table& t) {
  std::ostringstream buffer;
  t.print(buffer, c.style);
  const std::string text = buffer.str();
  c.out << text.substr(text.find('\n') + 1);
}

namespace {

// ---- failures ----

std::string database_message(const store::DatabaseError& e, const Context& c) {
  const std::string file = c.settings.store_name();
  if (e.is_locked()) {
    return "database " + file + " is locked: another process held it for more than " +
           format_duration(c.global.lock_wait) +
           " (a long purge, or an open sqlite3 shell?); try again, or wait longer with --wait";
  }
  if (e.is_read_only()) {
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
  } catch (const InvalidInput& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_invalid;
  } catch (const store::ImportRefused& e) {
    c.err << "referralctl: " << e.what() << '\n';
    return exit_refused;
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

}  // namespace referrald::cli
