#include "http/fhir.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <variant>

#include "fhir/mapping.hpp"
#include "http/async_intake.hpp"
#include "http/form_fields.hpp"
#include "store/async.hpp"
#include "store/office.hpp"
#include "store/payload.hpp"
#include "store/store.hpp"
#include "util/ids.hpp"

namespace referrald::http {

namespace asio = boost::asio;
using fhir::json;

namespace {

constexpr std::string_view fhir_media_type = "application/fhir+json";
constexpr std::size_t max_identifier_bytes = 180;  // bytes of "system|value", as a stored idempotency key

Response resource(unsigned status, const json& body) {
  auto r = Response::json(status, body.dump(-1, ' ', false, json::error_handler_t::replace));
  r.content_type = std::string(fhir_media_type) + "; charset=utf-8";
  return r;
}

// An error as an OperationOutcome; `diagnostics` is one of our sentences.
Response outcome(unsigned status, std::string_view code, std::string_view diagnostics) {
  return resource(status, fhir::operation_outcome(code, diagnostics));
}

Response unavailable(std::string_view diagnostics) {
  auto r = outcome(503, "transient", diagnostics);
  r.headers.emplace_back("Retry-After", "5");
  return r;
}

enum class Route { metadata, transaction, message, create, read, search, unknown };

struct Target {
  Route route = Route::unknown;
  std::string type;  // read: ServiceRequest | Task | Patient
  std::string id;
};

Target target_of(std::string_view path) {
  path.remove_prefix(Fhir::base_path.size());
  if (path.empty() || path == "/") return {Route::transaction, "", ""};
  path.remove_prefix(1);
  if (path == "metadata") return {Route::metadata, "", ""};
  if (path == "$process-message" || path == "%24process-message") return {Route::message, "", ""};
  if (path == "ServiceRequest") return {Route::create, "", ""};
  if (path == "Task") return {Route::search, "", ""};
  const auto slash = path.find('/');
  if (slash == std::string_view::npos) return {};
  const auto type = path.substr(0, slash);
  const auto id = path.substr(slash + 1);
  if ((type == "ServiceRequest" || type == "Task" || type == "Patient") && !id.empty() &&
      id.find('/') == std::string_view::npos) {
    return {Route::read, std::string(type), std::string(id)};
  }
  return {};
}

Response method_not_allowed(std::string_view allow) {
  auto r = outcome(405, "not-supported", "method not allowed");
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

Response unauthorized() {
  auto r = outcome(401, "login", "missing or invalid API key (Authorization: Bearer <key>)");
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"referrald\"");
  return r;
}

// A stored referral as FHIR reads it, or the error response.
using Loaded = std::variant<fhir::StoredReferral, Response>;

asio::awaitable<Loaded> load(store::ReaderPool& readers, const std::string& id, const Caller& caller) {
  if (!looks_like_referral_id(id)) co_return outcome(404, "not-found", "no such resource");
  struct Found {
    std::optional<store::ReferralWithStatus> referral;
    std::string unreadable;
  };
  auto found = std::make_shared<Found>();
  store::ReaderPool::Query query = [id, found](store::Database& db) {
    try {
      found->referral = store::find_referral_with_status(db, id);
    } catch (const store::PayloadError& e) {
      found->unreadable = e.what();
    }
  };
  const auto error = co_await store::async_read(readers, std::move(query));
  if (!found->unreadable.empty()) {
    spdlog::error("fhir.referral_unreadable id={} error=\"{}\"", id, found->unreadable);
    co_return outcome(500, "exception", "the stored referral cannot be decrypted");
  }
  if (!error.empty()) co_return unavailable("the referral store cannot be read right now");
  // A submitting key sees only the referrals it submitted; an office key every one.
  if (!found->referral || (!caller.office && found->referral->row.client != caller.id)) {
    co_return outcome(404, "not-found", "no such resource");
  }
  const auto& row = found->referral->row;
  fhir::StoredReferral r;
  r.id = row.id;
  r.received_at = row.received_at;
  r.decision = row.decision;
  r.urgency = row.urgency;
  r.reasons = row.reasons;
  r.document = row.document;
  r.last_modified = row.received_at;
  if (found->referral->status) {
    r.status = found->referral->status->status;
    r.last_modified = found->referral->status->since;
  }
  for (auto& change : found->referral->history) {
    r.history.push_back({change.at, change.from, change.to, std::move(change.note)});
  }
  co_return r;
}

json as_resource(std::string_view type, const fhir::StoredReferral& r) {
  if (type == "Task") return fhir::task(r);
  if (type == "Patient") return fhir::patient(r);
  return fhir::service_request(r);
}

}  // namespace

Fhir::Fhir(Api& api, IntakeService& intake, store::ReaderPool& readers)
    : api_(api), intake_(intake), readers_(readers) {}

bool Fhir::serves(const Request& request) const {
  return request.path == base_path || request.path.starts_with(std::string(base_path) + "/") || fallback_ == nullptr;
}

std::optional<Response> Fhir::check(const Request& request) const {
  if (!serves(request)) return fallback_->check(request);
  if (!request.path.starts_with(base_path)) return outcome(404, "not-found", "not found");
  const auto target = target_of(request.path);
  const bool get = request.method == "GET" || request.method == "HEAD";
  switch (target.route) {
    case Route::unknown: return outcome(404, "not-supported", "no such FHIR interaction here (see /fhir/r4/metadata)");
    case Route::metadata: return get ? std::nullopt : std::optional(method_not_allowed("GET, HEAD"));
    case Route::read:
    case Route::search:
      if (!get) return method_not_allowed("GET, HEAD");
      break;
    case Route::transaction:
    case Route::message:
    case Route::create:
      if (request.method != "POST") return method_not_allowed("POST");
      break;
  }
  if (request.count("authorization") > 1) return outcome(400, "invalid", "more than one Authorization header");
  const auto caller = api_.authenticate(request);
  if (!caller) return unauthorized();
  if (get) return std::nullopt;
  if (!caller->submits) {
    return outcome(403, "forbidden",
                   "this office key may read referrals, not submit them: that needs a key in [http] api_keys");
  }
  const auto types = request.count("content-type");
  if (types > 1) return outcome(400, "invalid", "more than one Content-Type header");
  if (types == 0 || !(is_json_content_type(*request.header("content-type"), fhir_media_type) ||
                      is_json_content_type(*request.header("content-type")))) {
    return outcome(415, "not-supported", "Content-Type must be application/fhir+json or application/json (UTF-8)");
  }
  const auto keys = request.count("idempotency-key");
  if (keys > 1) return outcome(400, "invalid", "more than one Idempotency-Key header");
  if (keys == 1 && !is_idempotency_key(*request.header("idempotency-key"))) {
    return outcome(400, "invalid", "Idempotency-Key must be 1 to 200 bytes of UTF-8 text without control characters");
  }
  if (request.count("if-none-exist") > 1) return outcome(400, "invalid", "more than one If-None-Exist header");
  if (request.count("if-none-exist") == 1 && target.route != Route::create) {
    return outcome(400, "not-supported", "If-None-Exist applies to POST /fhir/r4/ServiceRequest");
  }
  return std::nullopt;
}

Response Fhir::rate_limited(const Request& request, long long retry_after) const {
  if (!serves(request)) return fallback_->rate_limited(request, retry_after);
  auto r = outcome(429, "throttled", "too many requests from this address; slow down");
  r.headers.emplace_back("Retry-After", std::to_string(std::max<long long>(1, retry_after)));
  return r;
}

Response Fhir::too_large(const Request& request, std::size_t limit) const {
  if (!serves(request)) return fallback_->too_large(request, limit);
  return outcome(413, "too-costly", "request body is larger than " + std::to_string(limit) + " bytes");
}

asio::awaitable<Response> Fhir::handle(const Request& request) {
  if (!serves(request)) co_return co_await fallback_->handle(request);
  if (auto refused = check(request)) co_return std::move(*refused);
  const auto target = target_of(request.path);
  switch (target.route) {
    case Route::metadata: co_return resource(200, fhir::capability_statement());
    case Route::transaction:
    case Route::message:
    case Route::create: co_return co_await submit(request, *api_.authenticate(request));
    case Route::read: co_return co_await read(target.type, target.id, *api_.authenticate(request));
    case Route::search: co_return co_await search_tasks(request, *api_.authenticate(request));
    case Route::unknown: break;
  }
  co_return outcome(404, "not-found", "not found");
}

// The head has passed check(): a submitting key, JSON, a sound Idempotency-Key.
asio::awaitable<Response> Fhir::submit(const Request& request, const Caller& caller) {
  const auto route = target_of(request.path).route;
  const auto form = route == Route::transaction ? fhir::Form::transaction
                    : route == Route::message   ? fhir::Form::message
                                                : fhir::Form::service_request;
  // The body is read once, by the intake's streaming reader, from memory or
  // from its spool: each Attachment's and Binary's base64 is decoded as it
  // is read, into a spool of its own when the body is large, so that no
  // file is ever whole in memory (docs/fhir.md). A large body is read on
  // the blocking pool, as the intake's own file work is, not on this thread.
  const std::size_t size = request.body_file ? request.body_file->size() : request.body.size();
  struct Read {
    std::optional<fhir::Parsed> parsed;
    std::string error;
  };
  const auto read = [&request](const std::filesystem::path& spool_directory) {
    Read out;
    out.parsed = request.body_file ? fhir::parse(*request.body_file, out.error, spool_directory)
                                   : fhir::parse(request.body, out.error, spool_directory);
    return out;
  };
  Read body;
  if (IntakeService::is_file_work(request.body_file != nullptr, request.body.size())) {
    bool unreadable = false;
    try {
      body = co_await async_file_work(intake_, [&read, this] { return read(intake_.spool_directory()); });
    } catch (const std::exception& e) {
      // The body's spool does not open (changed on disk) or a file's spool
      // cannot be written: nothing is stored, try again.
      spdlog::error("fhir.body_unreadable error=\"{}\"", e.what());
      unreadable = true;
    }
    if (unreadable) co_return unavailable("the request's files could not be kept while it was read; try again");
  } else {
    body = read({});
  }
  // Only files make a body larger than max_body_bytes, as in the API: the
  // parse says whether it holds any (a "data" element; a body that is not
  // JSON holds none) and the mapping whether any is a referral's (a
  // DocumentReference's).
  const auto too_large = [this] {
    return outcome(413, "too-costly",
                   "request body is larger than " + std::to_string(api_.plain_body_limit()) +
                       " bytes; only a referral with attachments (DocumentReference) may be larger");
  };
  const bool over_plain_limit = size > api_.plain_body_limit();
  if (over_plain_limit && (!body.parsed || body.parsed->files.empty())) co_return too_large();
  if (!body.parsed) co_return outcome(400, "invalid", body.error);
  auto result = fhir::map_submission(*body.parsed, form);
  if (auto* issues = std::get_if<std::vector<fhir::Issue>>(&result)) {
    auto r = resource(422, fhir::operation_outcome(*issues));
    r.log_note = "issues=" + std::to_string(issues->size());
    co_return r;
  }
  auto& mapped = std::get<fhir::Mapped>(result);
  if (over_plain_limit && mapped.files.empty()) co_return too_large();

  // A conditional create: the identifier searched for is the key under which
  // the store finds the referral it already holds (per key, as Idempotency-Key).
  std::optional<std::string> condition = mapped.if_none_exist;
  if (const auto* header = request.header("if-none-exist")) condition = *header;
  const auto* idempotency_key = request.header("idempotency-key");
  Submission submission;
  submission.body = mapped.referral;
  // The files beside the JSON, in the order of its "attachments" (whose
  // "data" only stands in for them), as the web form's.
  submission.files = std::move(mapped.files);
  submission.channel = "fhir";
  submission.client = caller.id;
  if (condition) {
    const auto identifier = fhir::identifier_search(*condition);
    if (!identifier || identifier->size() > max_identifier_bytes || !is_idempotency_key(*identifier)) {
      co_return outcome(400, "not-supported",
                        "a conditional create must search identifier=system|value (at most 180 bytes)");
    }
    if (idempotency_key != nullptr) {
      co_return outcome(400, "invalid", "use either Idempotency-Key or a conditional create (ifNoneExist), not both");
    }
    submission.idempotency_key = "fhir-identifier:" + *identifier;
  } else if (idempotency_key != nullptr) {
    submission.idempotency_key = *idempotency_key;
  }

  auto submitted = co_await async_submit(intake_, std::move(submission), accepted_response);
  using Kind = SubmissionOutcome::Kind;
  bool created = false;
  switch (submitted.kind) {
    case Kind::accepted:
      created = true;
      if (submitted.eligibility) api_.intake_counts().count(Channel::fhir, submitted.eligibility->decision);
      break;
    case Kind::replayed: break;
    case Kind::conflict:
      // The identifier names a referral this key stored before: that one is the answer.
      if (condition) break;
      {
        auto r = outcome(409, "conflict", submitted.message);
        r.log_note = "id=" + submitted.id;
        co_return r;
      }
    case Kind::malformed: co_return outcome(400, "invalid", submitted.message);
    case Kind::too_large: co_return outcome(413, "too-long", submitted.message);  // not asked of FHIR's intake
    case Kind::invalid: {
      auto r = resource(422, fhir::operation_outcome(fhir::translate(submitted.errors, mapped)));
      r.log_note = "errors=" + std::to_string(submitted.errors.size());
      co_return r;
    }
    case Kind::unavailable:
    case Kind::overloaded: co_return unavailable(submitted.message);
  }
  const std::string& id = submitted.id;
  std::string note = "id=" + id + (created ? "" : " existing=true");
  if (submitted.eligibility) note += " decision=" + std::string(to_string(submitted.eligibility->decision));

  Response r;
  if (form == fhir::Form::service_request) {
    // The ServiceRequest as stored (201), or the one the condition found (200).
    auto loaded = co_await load(readers_, id, caller);
    if (auto* stored = std::get_if<fhir::StoredReferral>(&loaded)) {
      r = resource(created ? 201 : 200, fhir::service_request(*stored));
    } else {
      // Stored, but not readable back right now: say so, with where to read it.
      r = resource(created ? 201 : 200, fhir::operation_outcome(std::vector<fhir::Issue>{
                                            {"information", "informational", "stored; read it at the Location", ""}}));
    }
    r.headers.emplace_back("Location", std::string(base_path) + "/ServiceRequest/" + id);
  } else {
    r = resource(200, fhir::transaction_response(mapped, id, created));
  }
  if (submitted.kind == Kind::replayed && !condition) r.headers.emplace_back("Idempotent-Replayed", "true");
  r.log_note = std::move(note);
  co_return r;
}

asio::awaitable<Response> Fhir::read(std::string_view type, const std::string& id, const Caller& caller) {
  auto loaded = co_await load(readers_, id, caller);
  if (auto* error = std::get_if<Response>(&loaded)) co_return std::move(*error);
  auto r = resource(200, as_resource(type, std::get<fhir::StoredReferral>(loaded)));
  r.log_note = "id=" + id;
  co_return r;
}

// Task?focus=ServiceRequest/{id}[&_lastUpdated=gt…]: the referral's Task,
// if the key may read it and it changed in the time asked.
asio::awaitable<Response> Fhir::search_tasks(const Request& request, const Caller& caller) {
  const auto params = decode_form(request.query);
  if (!params) co_return outcome(400, "invalid", "the query string is not valid percent-encoded UTF-8");
  std::optional<std::string> focus;
  struct Bound {
    std::string prefix;
    fhir::TimePoint at;
  };
  std::vector<Bound> bounds;
  for (const auto& [name, value] : *params) {
    if (name == "focus") {
      std::string_view v = value;
      if (const auto at = v.rfind("ServiceRequest/"); at != std::string_view::npos) v.remove_prefix(at + 15);
      focus = std::string(v);
    } else if (name == "_lastUpdated") {
      const std::string prefix = value.substr(0, 2);
      const auto at = fhir::parse_instant(std::string_view(value).substr(std::min<std::size_t>(2, value.size())));
      if ((prefix != "gt" && prefix != "ge" && prefix != "lt" && prefix != "le") || !at) {
        co_return outcome(400, "value",
                          "_lastUpdated must be gt, ge, lt or le and a FHIR instant, e.g. gt2026-12-06T17:00:00Z");
      }
      bounds.push_back({prefix, *at});
    } else if (name != "_format") {
      co_return outcome(400, "not-supported", "Task search takes focus and _lastUpdated only");
    }
  }
  if (!focus) co_return outcome(400, "required", "Task search needs focus=ServiceRequest/{id}");

  json bundle{
      {"resourceType", "Bundle"},
      {"type", "searchset"},
      {"total", 0},
      {"link",
       json::array({{{"relation", "self"},
                     {"url", std::string(base_path) + "/Task" + (request.query.empty() ? "" : "?" + request.query)}}})},
      {"entry", json::array()}};
  auto loaded = co_await load(readers_, *focus, caller);
  if (auto* error = std::get_if<Response>(&loaded)) {
    if (error->status != 404) co_return std::move(*error);
  } else {
    const auto& stored = std::get<fhir::StoredReferral>(loaded);
    bool match = true;
    for (const auto& b : bounds) {
      const auto t = stored.last_modified;
      match = match && (b.prefix == "gt"   ? t > b.at
                        : b.prefix == "ge" ? t >= b.at
                        : b.prefix == "lt" ? t < b.at
                                           : t <= b.at);
    }
    if (match) {
      bundle["total"] = 1;
      bundle["entry"].push_back({{"fullUrl", std::string(base_path) + "/Task/" + stored.id},
                                 {"resource", fhir::task(stored)},
                                 {"search", {{"mode", "match"}}}});
    }
  }
  if (bundle["entry"].empty()) bundle.erase("entry");
  auto r = resource(200, bundle);
  r.log_note = "total=" + std::to_string(bundle["total"].get<int>());
  co_return r;
}

}  // namespace referrald::http
