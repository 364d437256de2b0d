#include "http/api.hpp"
#include "http/async_intake.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/form_fields.hpp"
#include "intake/validator.hpp"
#include "office/status.hpp"
#include "attachments/inspect.hpp"
#include "store/async.hpp"
#include "store/attachment_json.hpp"
#include "store/attachments.hpp"
#include "store/figures.hpp"
#include "store/payload.hpp"
#include "store/store.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/ids.hpp"
#include "util/latency.hpp"
#include "util/sealed_spool.hpp"
#include "util/strings.hpp"
#include "model/reasons_json.hpp"

namespace referrald::http {

namespace asio = boost::asio;
using json = nlohmann::ordered_json;

namespace {

constexpr std::string_view referrals_path = "/api/v1/referrals";
constexpr std::size_t max_idempotency_key_bytes = 200;  // bytes

std::string trimmed_lower(std::string_view s) { return lower(trim(s)); }

}  // namespace

// `media_type` (application/json, or FHIR's application/fhir+json); a charset
// parameter, if any, must say UTF-8 (JSON is UTF-8, RFC 8259: a body
// declared in another charset would be misread).
bool is_json_content_type(std::string_view value, std::string_view media_type) {
  auto semi = value.find(';');
  if (trimmed_lower(value.substr(0, semi)) != media_type) return false;
  while (semi != std::string_view::npos) {
    value.remove_prefix(semi + 1);
    semi = value.find(';');
    const auto parameter = trimmed_lower(value.substr(0, semi));
    const auto eq = parameter.find('=');
    if (trimmed_lower(std::string_view(parameter).substr(0, eq)) != "charset") continue;
    auto charset = eq == std::string::npos ? std::string() : trimmed_lower(std::string_view(parameter).substr(eq + 1));
    if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"')
      charset = charset.substr(1, charset.size() - 2);
    if (charset != "utf-8") return false;
  }
  return true;
}

// An Idempotency-Key is stored and shown by referralctl: UTF-8 text without
// control characters.
bool is_idempotency_key(std::string_view key) {
  return !key.empty() && key.size() <= max_idempotency_key_bytes && is_valid_utf8(key) &&
         std::none_of(key.begin(), key.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u < 0x20 || u == 0x7F;
         });
}

namespace {

Response method_not_allowed(std::string_view allow) {
  // HEAD is allowed wherever GET is (the server leaves out the body).
  auto r = Response::error(405, "method not allowed");
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

Response unauthorized() {
  auto r = Response::error(401, "missing or invalid API key (Authorization: Bearer <key>)");
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"referrald\"");
  return r;
}

// The office's loop: status, time to acknowledge, escalation (from the
// store's trigger-kept tallies: a few rows per scrape).
std::string office_metrics(const store::OfficeFigures& f) {
  std::string out;
  out += "# HELP referrald_referrals Referrals stored, by the office's status.\n";
  out += "# TYPE referrald_referrals gauge\n";
  for (const auto& [status, n] : f.by_status) {
    out += "referrald_referrals{status=\"" + std::string(to_string(status)) + "\"} " + std::to_string(n) + "\n";
  }
  out +=
      "# HELP referrald_time_to_acknowledge_seconds Time from a referral's receipt to its first "
      "acknowledgement, by urgency.\n";
  out += "# TYPE referrald_time_to_acknowledge_seconds histogram\n";
  for (const auto& times : f.ack_times) {
    std::vector<std::pair<std::string, std::uint64_t>> buckets;
    for (const auto& b : times.buckets) {
      const bool inf = b.le_ms == std::numeric_limits<std::int64_t>::max();
      buckets.emplace_back(inf ? "+Inf" : std::to_string(b.le_ms / 1000), static_cast<std::uint64_t>(b.count));
    }
    out += histogram_text("referrald_time_to_acknowledge_seconds",
                          "urgency=\"" + std::string(to_string(times.urgency)) + "\"", buckets,
                          static_cast<double>(times.sum_ms) / 1000.0);
  }
  out +=
      "# HELP referrald_escalation_steps_fired_total Escalation steps fired (each notified its targets), by "
      "step.\n";
  out += "# TYPE referrald_escalation_steps_fired_total counter\n";
  for (const auto& [step, n] : f.escalations_fired) {
    out += "referrald_escalation_steps_fired_total{step=\"" + std::to_string(step) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# HELP referrald_referrals_overdue Referrals nobody has acknowledged with an escalation step due now.\n";
  out += "# TYPE referrald_referrals_overdue gauge\n";
  out += "referrald_referrals_overdue " + std::to_string(f.overdue) + "\n";
  return out;
}

}  // namespace

std::string accepted_response(const std::string& id, const Eligibility& eligibility) {
  json body;
  body["id"] = id;
  body["decision"] = std::string(to_string(eligibility.decision));
  body["reasons"] = reasons_json<json>(eligibility.reasons);
  // Every referral starts as received; GET status_url shows it as it moves on.
  body["status"] = std::string(to_string(OfficeStatus::received));
  body["status_url"] = std::string(referrals_path) + "/" + id;
  return body.dump();
}

Api::Api(IntakeService& intake, store::Writer& writer, store::ReaderPool& readers, StatusChanges& status_changes,
         std::vector<Sha256> api_keys, std::vector<Sha256> office_api_keys)
    : intake_(intake),
      writer_(writer),
      readers_(readers),
      status_changes_(status_changes),
      api_keys_(std::move(api_keys)),
      office_api_keys_(std::move(office_api_keys)) {}

void Api::set_api_keys(std::vector<Sha256> keys, std::vector<Sha256> office_keys) {
  std::lock_guard lock(keys_mutex_);
  api_keys_ = std::move(keys);
  office_api_keys_ = std::move(office_keys);
}

void Api::add_metrics_source(MetricsSource source) { metrics_sources_.push_back(std::move(source)); }

namespace {

// "/api/v1/referrals/<id>" → <id>; "/api/v1/referrals/<id>/status" → <id>
// with status set; "/api/v1/referrals/<id>/attachments/<n>" → <id> with
// attachment n (from 1), or no_such_attachment when <n> is not a position;
// anything else below the collection → nullopt.
struct ReferralPath {
  std::string id;
  bool status = false;
  std::optional<int> attachment;
  bool no_such_attachment = false;
};

// "1" to "999": a file's position as the GET of its referral lists it.
std::optional<int> attachment_position(std::string_view text) {
  if (text.empty() || text.size() > 3 || text.front() == '0') return std::nullopt;
  int n = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

std::optional<ReferralPath> referral_path(std::string_view path) {
  const std::string prefix = std::string(referrals_path) + "/";
  if (!path.starts_with(prefix)) return std::nullopt;
  path.remove_prefix(prefix.size());
  constexpr std::string_view status_suffix = "/status";
  constexpr std::string_view attachments_part = "/attachments/";
  ReferralPath out;
  if (path.ends_with(status_suffix)) {
    path.remove_suffix(status_suffix.size());
    out.status = true;
  } else if (const auto at = path.find(attachments_part); at != std::string_view::npos) {
    out.attachment = attachment_position(path.substr(at + attachments_part.size()));
    out.no_such_attachment = !out.attachment;
    path = path.substr(0, at);
  }
  out.id = std::string(path);
  return out;
}

Response forbidden(std::string_view why) { return Response::error(403, why); }

constexpr std::string_view needs_office_key =
    "this key may submit referrals and read its own, not change a referral's status: that needs an office key "
    "([http] office_api_keys)";
constexpr std::string_view needs_submitting_key =
    "this office key may read referrals and change their status, not submit referrals: that needs a key in "
    "[http] api_keys";

}  // namespace

bool Api::serves(const Request& request) const {
  return request.path == referrals_path || request.path.starts_with(std::string(referrals_path) + "/") ||
         request.path == "/healthz" || request.path == "/metrics" || fallback_ == nullptr;
}

std::optional<Response> Api::check(const Request& request) const {
  if (!serves(request)) return fallback_->check(request);
  const bool get = request.method == "GET" || request.method == "HEAD";
  const auto json_body = [&request]() -> std::optional<Response> {
    const auto types = request.count("content-type");
    if (types > 1) return Response::error(400, "more than one Content-Type header");
    if (types == 0 || !is_json_content_type(*request.header("content-type"))) {
      return Response::error(415, "Content-Type must be application/json (UTF-8)");
    }
    return std::nullopt;
  };
  if (request.path == referrals_path) {
    if (request.method != "POST") return method_not_allowed("POST");
    if (request.count("authorization") > 1) return Response::error(400, "more than one Authorization header");
    const auto caller = authenticate(request);
    if (!caller) return unauthorized();
    if (!caller->submits) return forbidden(needs_submitting_key);
    if (auto refused = json_body()) return refused;
    const auto keys = request.count("idempotency-key");
    if (keys > 1) return Response::error(400, "more than one Idempotency-Key header");
    if (keys == 1 && !is_idempotency_key(*request.header("idempotency-key"))) {
      return Response::error(400, "Idempotency-Key must be 1 to 200 bytes of UTF-8 text without control characters");
    }
    return std::nullopt;
  }
  if (const auto target = referral_path(request.path)) {
    if (target->status && request.method != "POST") return method_not_allowed("POST");
    if (!target->status && !get) return method_not_allowed("GET, HEAD");
    if (request.count("authorization") > 1) return Response::error(400, "more than one Authorization header");
    const auto caller = authenticate(request);
    if (!caller) return unauthorized();
    if (target->status) {
      if (!caller->office) return forbidden(needs_office_key);
      if (auto refused = json_body()) return refused;
    }
    return std::nullopt;
  }
  if ((request.path == "/healthz" || request.path == "/metrics") && !get) return method_not_allowed("GET, HEAD");
  return std::nullopt;
}

Response Api::rate_limited(const Request& request, long long retry_after) const {
  if (!serves(request)) return fallback_->rate_limited(request, retry_after);
  return Handler::rate_limited(request, retry_after);
}

Response Api::too_large(const Request& request, std::size_t limit) const {
  if (!serves(request)) return fallback_->too_large(request, limit);
  return Handler::too_large(request, limit);
}

std::optional<Caller> Api::authenticate(const Request& request) const {
  const auto* auth = request.header("authorization");
  if (auth == nullptr) return std::nullopt;
  constexpr std::string_view scheme = "Bearer ";
  if (auth->size() <= scheme.size() || !equal_ignoring_case(std::string_view(*auth).substr(0, scheme.size()), scheme)) {
    return std::nullopt;
  }
  const auto presented = sha256(std::string_view(*auth).substr(scheme.size()));
  // Compare against every key without stopping early: timing reveals nothing.
  const auto matches = [&presented](const std::vector<Sha256>& keys) {
    bool match = false;
    for (const auto& key : keys) match |= constant_time_equal(presented.data(), key.data(), key.size());
    return match;
  };
  Caller caller;
  {
    std::lock_guard lock(keys_mutex_);
    caller.submits = matches(api_keys_);
    caller.office = matches(office_api_keys_);
  }
  if (!caller.submits && !caller.office) return std::nullopt;
  caller.id = "key:" + to_hex(presented.data(), 4);
  return caller;
}

asio::awaitable<Response> Api::handle(const Request& request) {
  if (!serves(request)) co_return co_await fallback_->handle(request);
  // What the head alone decides is answered the same with or without Expect.
  if (auto refused = check(request)) co_return std::move(*refused);
  if (request.path == referrals_path) co_return co_await submit(request, *authenticate(request));
  if (const auto target = referral_path(request.path)) {
    if (!looks_like_referral_id(target->id)) co_return Response::error(404, "no such referral");
    // Not a position: answered without a look at the referral (whether it
    // exists is for the keys that may read it).
    if (target->no_such_attachment) {
      co_return Response::error(404,
                                "no such attachment: a referral's files are numbered 1, 2, 3, ... (at most 999) "
                                "as its GET lists them");
    }
    if (target->status) co_return co_await change_status(request, target->id, *authenticate(request));
    if (target->attachment) co_return co_await get_attachment(target->id, *target->attachment, *authenticate(request));
    co_return co_await get_referral(target->id, *authenticate(request));
  }
  if (request.path == "/healthz") co_return health();
  if (request.path == "/metrics") co_return co_await metrics();
  co_return Response::error(404, "not found");
}

// The head has passed check(): the key, media type and Idempotency-Key are sound.
asio::awaitable<Response> Api::submit(const Request& request, const Caller& caller) {
  // Only attachments make a body larger than max_body_bytes: every other
  // field has a bounded length in the schema. The intake's one parse of the
  // body decides it (Submission::plain_body_limit, a 413), in memory or
  // spooled alike, not a search of the text on this thread.
  Submission submission;
  if (request.body_file) {
    submission.body_file = request.body_file;
  } else {
    submission.body = request.body;
  }
  submission.plain_body_limit = plain_body_limit_;
  submission.channel = "api";
  submission.client = caller.id;
  if (const auto* key = request.header("idempotency-key")) submission.idempotency_key = *key;
  auto outcome = co_await async_submit(intake_, std::move(submission), accepted_response);
  using Kind = SubmissionOutcome::Kind;
  Response response;
  switch (outcome.kind) {
    case Kind::accepted:
    case Kind::replayed: {
      std::string body = std::move(outcome.response);
      if (outcome.duplicate_of) {
        // Known only once stored (the store compares it with the referrals
        // it holds), so not part of the stored answer: added to each.
        auto parsed = json::parse(body);
        parsed["duplicate_of"] = *outcome.duplicate_of;
        body = parsed.dump();
      }
      response = Response::json(202, std::move(body));
      response.headers.emplace_back("Location", std::string(referrals_path) + "/" + outcome.id);
      if (outcome.kind == Kind::replayed) response.headers.emplace_back("Idempotent-Replayed", "true");
      response.log_note = "id=" + outcome.id + (outcome.kind == Kind::replayed ? " replayed=true" : "");
      if (outcome.duplicate_of) response.log_note += " duplicate_of=" + *outcome.duplicate_of;
      if (outcome.eligibility) {
        response.log_note += " decision=" + std::string(to_string(outcome.eligibility->decision));
        if (outcome.kind == Kind::accepted) intake_counts_.count(Channel::api, outcome.eligibility->decision);
      }
      break;
    }
    case Kind::malformed: response = Response::error(400, outcome.message); break;
    case Kind::too_large: response = Response::error(413, outcome.message); break;
    case Kind::invalid: {
      json body;
      body["errors"] = json::array();
      for (const auto& e : outcome.errors) body["errors"].push_back({{"path", e.path}, {"message", e.message}});
      response = Response::json(422, body.dump());
      response.log_note = "errors=" + std::to_string(outcome.errors.size());
      break;
    }
    case Kind::conflict:
      response = Response::error(409, outcome.message);
      response.log_note = "id=" + outcome.id;
      break;
    case Kind::unavailable:
    case Kind::overloaded:
      response = Response::error(503, outcome.message);
      response.headers.emplace_back("Retry-After", "5");
      break;
  }
  co_return response;
}

namespace {

// The answer when a read of the store failed (`error`: the store's, or
// `unreadable`: a PayloadError's), or nullopt when it did not.
std::optional<Response> read_failure(const std::string& id, const std::string& error, const std::string& unreadable) {
  if (!unreadable.empty()) {
    // Not the store being down (a retry will not help): a key is missing
    // from storage.encryption_keys, or the row was altered.
    spdlog::error("api.referral_unreadable id={} error=\"{}\"", id, unreadable);
    return Response::error(500, "the stored referral cannot be decrypted");
  }
  if (!error.empty()) {
    auto r = Response::error(503, "the referral store cannot be read right now");
    r.headers.emplace_back("Retry-After", "5");
    return r;
  }
  return std::nullopt;
}

// A submitting key sees only the referrals it submitted; an office key every one.
bool may_read(const Caller& caller, const store::ReferralRow& row) { return caller.office || row.client == caller.id; }

}  // namespace

asio::awaitable<Response> Api::get_referral(const std::string& id, const Caller& caller) {
  struct Found {
    std::optional<store::ReferralWithStatus> referral;
    std::vector<store::DeliveryRow> deliveries;
    std::vector<store::AttachmentInfo> attachments;
    std::string unreadable;
  };
  auto found = std::make_shared<Found>();
  store::ReaderPool::Query query = [id, found](store::Database& db) {
    try {
      found->referral = store::find_referral_with_status(db, id);
      if (found->referral) found->attachments = store::attachments_of(db, id);
    } catch (const store::PayloadError& e) {
      found->unreadable = e.what();
      return;
    }
    if (found->referral) found->deliveries = store::deliveries_of(db, id);
  };
  const auto error = co_await store::async_read(readers_, std::move(query));
  if (auto failed = read_failure(id, error, found->unreadable)) co_return std::move(*failed);
  if (!found->referral || !may_read(caller, found->referral->row)) co_return Response::error(404, "no such referral");
  const auto& row = found->referral->row;
  json body;
  body["id"] = row.id;
  body["received_at"] = format_utc_timestamp(row.received_at);
  body["decision"] = std::string(to_string(row.decision));
  body["urgency"] = std::string(to_string(row.urgency));
  body["reasons"] = reasons_json<json>(row.reasons);
  if (found->referral->status) {
    body["status"] = std::string(to_string(found->referral->status->status));
    if (found->referral->status->acknowledged_at) {
      body["acknowledged_at"] = format_utc_timestamp(*found->referral->status->acknowledged_at);
    }
    if (found->referral->status->duplicate_of) body["duplicate_of"] = *found->referral->status->duplicate_of;
  }
  body["status_history"] = json::array();
  for (const auto& change : found->referral->history) {
    json item{{"at", format_utc_timestamp(change.at)},
              {"actor", change.actor},
              {"via", std::string(store::to_string(change.via))},
              {"from", std::string(to_string(change.from))},
              {"to", std::string(to_string(change.to))}};
    if (change.note) item["note"] = *change.note;
    body["status_history"].push_back(std::move(item));
  }
  body["deliveries"] = json::array();
  for (const auto& d : found->deliveries) {
    json item{{"target", d.target}, {"state", std::string(store::to_string(d.state))}, {"attempts", d.attempts}};
    if (!store::is_final(d.state)) item["next_attempt_at"] = format_utc_timestamp(d.next_attempt_at);
    if (d.last_error) item["last_error"] = *d.last_error;
    body["deliveries"].push_back(std::move(item));
  }
  // The files that came with it, described (the bytes: attachments/<position>).
  body["attachments"] = json::array();
  for (const auto& a : found->attachments) {
    auto item = store::describe_attachment<json>(a);
    item["url"] = std::string(referrals_path) + "/" + row.id + "/attachments/" + std::to_string(a.position);
    body["attachments"].push_back(std::move(item));
  }
  body["referral"] = json::parse(row.document);
  auto response = Response::json(200, body.dump());
  response.log_note = "id=" + row.id;
  co_return response;
}

// One file of a referral, byte for byte as received, to whoever may read
// the referral (the same 404 otherwise).
asio::awaitable<Response> Api::get_attachment(const std::string& id, int position, const Caller& caller) {
  struct Found {
    bool referral = false;
    std::optional<Attachment> file;
    std::string unreadable;
  };
  auto found = std::make_shared<Found>();
  store::ReaderPool::Query query = [id, position, caller, found](store::Database& db) {
    try {
      const auto row = store::find_referral(db, id);
      found->referral = row && may_read(caller, *row);
      if (found->referral) found->file = store::attachment_file(db, id, position);
      // The answer holds the file whole: read back from its spool here, on
      // the reader's thread, not on the I/O thread that sends it.
      if (found->file) found->file->unspool();
    } catch (const store::PayloadError& e) {
      found->unreadable = e.what();
    }
  };
  const auto error = co_await store::async_read(readers_, std::move(query));
  if (auto failed = read_failure(id, error, found->unreadable)) co_return std::move(*failed);
  if (!found->referral) co_return Response::error(404, "no such referral");
  if (!found->file) co_return Response::error(404, "the referral has no attachment " + std::to_string(position));
  Response response;
  response.status = 200;
  response.content_type = found->file->content_type;
  response.body = std::move(found->file->data);
  response.headers.emplace_back(
      "Content-Disposition",
      "attachment; filename=\"" + attachment_file_name(id, position, response.content_type) + "\"");
  response.log_note = "id=" + id + " attachment=" + std::to_string(position);
  co_return response;
}

// {"status": "accepted", "note": "…"}: the head has passed check() (an
// office key, JSON). Errors name the field, as intake's do.
asio::awaitable<Response> Api::change_status(const Request& request, const std::string& id, const Caller& caller) {
  const auto invalid = [](std::string path, std::string message) {
    json body;
    body["errors"] = json::array({{{"path", std::move(path)}, {"message", std::move(message)}}});
    return Response::json(422, body.dump());
  };
  json doc;
  try {
    doc = json::parse(request.body);
  } catch (const json::parse_error& e) {
    // Not e.what(): it quotes the input, which may be a note's text.
    co_return Response::error(400, "invalid JSON at byte " + std::to_string(e.byte > 0 ? e.byte - 1 : 0));
  }
  if (!doc.is_object()) co_return invalid("", "must be an object");
  for (const auto& [key, value] : doc.items()) {
    (void)value;
    if (key != "status" && key != "note") co_return invalid("/" + key, "unknown field");
  }
  std::vector<std::string> targets;
  for (const OfficeStatus s : all_office_statuses()) {
    if (s != OfficeStatus::received) targets.emplace_back(to_string(s));
  }
  const auto status_field = doc.find("status");
  if (status_field == doc.end()) co_return invalid("/status", "is required");
  if (!status_field->is_string()) co_return invalid("/status", "must be a string");
  const auto to = parse_office_status(status_field->get<std::string>());
  if (!to || *to == OfficeStatus::received) co_return invalid("/status", "must be one of: " + join(targets));
  std::optional<std::string> note;
  if (const auto note_field = doc.find("note"); note_field != doc.end() && !note_field->is_null()) {
    if (!note_field->is_string()) co_return invalid("/note", "must be a string");
    note = note_field->get<std::string>();
    if (auto problem = free_text_problem(*note, max_note_characters)) co_return invalid("/note", std::move(*problem));
    if (trim(*note).empty()) note.reset();
  }

  const auto outcome = co_await status_changes_.change(id, *to, std::move(note), caller.id);
  using Kind = ChangeOutcome::Kind;
  switch (outcome.kind) {
    case Kind::changed:
    case Kind::replayed: {
      json body{{"id", id},
                {"status", std::string(to_string(*to))},
                {"previous_status", std::string(to_string(outcome.result.from))},
                {"status_url", std::string(referrals_path) + "/" + id}};
      auto r = Response::json(200, body.dump());
      if (outcome.kind == Kind::replayed) r.headers.emplace_back("Idempotent-Replayed", "true");
      r.log_note = "id=" + id + " status=" + std::string(to_string(*to)) +
                   (outcome.kind == Kind::replayed ? " replayed=true" : "");
      co_return r;
    }
    case Kind::refused: {
      json body;
      body["errors"] = json::array({{{"path", "/status"}, {"message", outcome.result.refusal.value_or("")}}});
      body["status"] = std::string(to_string(outcome.result.from));
      body["allowed"] = json::array();
      for (const OfficeStatus s : allowed_changes(outcome.result.from)) body["allowed"].push_back(to_string(s));
      auto r = Response::json(409, body.dump());
      r.log_note = "id=" + id + " refused_to=" + std::string(to_string(*to));
      co_return r;
    }
    case Kind::not_found: co_return Response::error(404, "no such referral");
    case Kind::unavailable: {
      auto r = Response::error(503, "the status change could not be stored; nothing was changed, please try again");
      r.headers.emplace_back("Retry-After", "5");
      co_return r;
    }
  }
  co_return Response::error(500, "internal error");
}

Response Api::health() const {
  const auto reason = writer_.unhealthy_reason();
  if (!reason.empty()) {
    const json body{{"status", "unavailable"}, {"reason", "storage: " + reason}};
    return Response::json(503, body.dump());
  }
  return Response::json(200, R"({"status":"ok"})");
}

asio::awaitable<Response> Api::metrics() const {
  // Queue figures come from the store (on a reader thread, off the I/O
  // threads); a store that cannot be read shows as referrald_store_readable 0.
  auto counts = std::make_shared<std::vector<store::StateCount>>();
  auto oldest = std::make_shared<std::optional<store::TimePoint>>();
  auto oldest_unsent = std::make_shared<std::optional<store::TimePoint>>();
  auto office = std::make_shared<store::OfficeFigures>();
  const auto now = std::chrono::system_clock::now();
  store::ReaderPool::Query query = [counts, oldest, oldest_unsent, office, now](store::Database& db) {
    *counts = store::open_delivery_counts(db);
    *oldest = store::oldest_due(db, now);
    *oldest_unsent = store::oldest_unsent(db);
    *office = store::office_figures(db, now);
  };
  const auto read_error = co_await store::async_read(readers_, std::move(query));

  std::string out = intake_counts_.metrics();
  out += "# HELP referrald_store_commits_total Group commits of the store writer.\n";
  out += "# TYPE referrald_store_commits_total counter\n";
  out += "referrald_store_commits_total " + std::to_string(writer_.commits()) + "\n";
  out += "# HELP referrald_store_jobs_total Writes committed by the store writer.\n";
  out += "# TYPE referrald_store_jobs_total counter\n";
  out += "referrald_store_jobs_total " + std::to_string(writer_.jobs_committed()) + "\n";
  out += "# HELP referrald_store_queue_depth Writes waiting for the next commit.\n";
  out += "# TYPE referrald_store_queue_depth gauge\n";
  out += "referrald_store_queue_depth " + std::to_string(writer_.queue_depth()) + "\n";
  out +=
      "# HELP referrald_store_write_seconds Time each write to the store spent in each stage: queued for the "
      "writer, its batch's commit, and (SQLite) the log's fsync after it.\n";
  out += "# TYPE referrald_store_write_seconds histogram\n";
  const store::WriteStages writes = writer_.stages();
  out += histogram_text("referrald_store_write_seconds", R"(stage="queued")", writes.queued);
  out += histogram_text("referrald_store_write_seconds", R"(stage="commit")", writes.commit);
  out += histogram_text("referrald_store_write_seconds", R"(stage="sync")", writes.sync);
  out +=
      "# HELP referrald_intake_stage_seconds Time each referral stored spent outside the store: checked until "
      "its write was queued, and from the store's answer until its request ran again.\n";
  out += "# TYPE referrald_intake_stage_seconds histogram\n";
  out += histogram_text("referrald_intake_stage_seconds", R"(stage="check")", intake_.stages().check.snapshot());
  out += histogram_text("referrald_intake_stage_seconds", R"(stage="resume")", intake_.stages().resume.snapshot());
  out += "# HELP referrald_store_healthy 1 when the last commit succeeded.\n";
  out += "# TYPE referrald_store_healthy gauge\n";
  out += std::string("referrald_store_healthy ") + (writer_.healthy() ? "1" : "0") + "\n";
  out += "# HELP referrald_store_readable 1 when the queue figures below could be read.\n";
  out += "# TYPE referrald_store_readable gauge\n";
  out += std::string("referrald_store_readable ") + (read_error.empty() ? "1" : "0") + "\n";
  out += "# HELP referrald_deliveries Deliveries that are not yet delivered or cancelled, by target and state.\n";
  out += "# TYPE referrald_deliveries gauge\n";
  for (const auto& c : *counts) {
    out += "referrald_deliveries{target=\"" + c.target + "\",state=\"" + std::string(store::to_string(c.state)) +
           "\"} " + std::to_string(c.count) + "\n";
  }
  out += "# HELP referrald_oldest_due_delivery_age_seconds How long the longest-waiting due delivery has waited.\n";
  out += "# TYPE referrald_oldest_due_delivery_age_seconds gauge\n";
  const auto age = [now](const std::optional<store::TimePoint>& since) {
    return std::to_string(since ? std::max(0.0, std::chrono::duration<double>(now - *since).count()) : 0.0);
  };
  out += "referrald_oldest_due_delivery_age_seconds " + age(*oldest) + "\n";
  // oldest_due drops to 0 while every waiting delivery sits out a backoff;
  // this one keeps counting from the referral's arrival until it is sent.
  out +=
      "# HELP referrald_oldest_unsent_delivery_age_seconds How long the oldest delivery not yet sent "
      "(pending, sending, retry) has existed.\n";
  out += "# TYPE referrald_oldest_unsent_delivery_age_seconds gauge\n";
  out += "referrald_oldest_unsent_delivery_age_seconds " + age(*oldest_unsent) + "\n";
  out += office_metrics(*office);
  for (const auto& source : metrics_sources_) out += source();
  Response r;
  r.status = 200;
  r.content_type = "text/plain; version=0.0.4";
  r.body = std::move(out);
  co_return r;
}

}  // namespace referrald::http
