// What referralctl's commands share (cli/commands.cpp): opening the store
// and presenting its rows. The commands by group: read.cpp (list, show,
// queue, stats), act.cpp (retry, cancel, hold, release), check.cpp (check),
// maintain.cpp (purge, rekey) and office.cpp (ack, decide, close, audit).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "store/database.hpp"
#include "store/queries.hpp"

namespace referrald::cli {

using json = nlohmann::ordered_json;

// The store c.settings names, read-only (or read-write for a command that
// changes it), waiting --wait for locks, at the current schema version and
// with the payload keys set. Throws DatabaseError or std::runtime_error with
// a sentence for the operator.
std::unique_ptr<store::Database> open_store(Context& c, bool write);

// ---- presentation ----

std::string rfc3339(TimePoint t);
json optional_time(const std::optional<TimePoint>& t);
json optional_text(const std::optional<std::string>& s);

Colour colour_of(store::DeliveryState s);
Colour colour_of(Decision d);
Colour colour_of(Urgency u);
Colour colour_of(store::AttemptOutcome o);
Colour colour_of(OfficeStatus s);

// The STATUS column: "received", or "received, dup of R-…" for a possible duplicate.
std::string status_text(OfficeStatus s, const std::optional<std::string>& duplicate_of);

std::string str(store::DeliveryState s);
// "1 delivery", "1,204 deliveries".
std::string plural(std::int64_t n, std::string_view one, std::string_view many);
// A delivery in the --json shapes (docs/referralctl.md).
json delivery_json(const store::DeliveryRow& d);
// What the queue shows in its NEXT ATTEMPT column.
std::string next_attempt_text(const store::DeliveryRow& d, TimePoint now);
// Invalid UTF-8 (from a peer's error text, say) is replaced, never a throw.
void print_json(Context& c, const json& j);
// Appends `part` after `separator`; an empty part adds nothing.
void join_into(std::string& out, const std::string& part, std::string_view separator = ", ");
// A table of label/value rows, without its (empty) header line.
void print_rows(Context& c, const Table& t);

}  // namespace referrald::cli
