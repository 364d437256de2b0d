// The wctp and http-fax targets end to end: the real referrald binary sends
// to small HTTP(S) servers written for this suite (tests/peers/wctp_server.py
// and tests/peers/fax_api_server.py, run by /usr/bin/python3). No paging
// carrier or fax provider is reachable from a test machine, so these stand
// in for them: real servers on free loopback ports, speaking WCTP 1.3 and a
// Phaxio-shaped fax API (docs/channels.md#wctp, #http-fax; the servers:
// docs/test-peers.md#wctp-host-and-fax-api), recording every request they get. HTTPS certificates are made here with the openssl
// CLI; the daemon trusts them through the target's ca_file.
//
// What the tests check is what an operator would: the XML the pager host
// received (valid against the DTD, messageID, no patient data), the PDF and
// the headers the fax API received, and each delivery's state and attempts.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/valid.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <utility>

#include "support/harness.hpp"
#include "support/peers.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- peers --

// One peer server process; killed (its whole process group) when destroyed.
class Peer {
 public:
  Peer(const std::string& script, unsigned short port, std::vector<std::string> args, const fs::path& log)
      : port_(port) {
    std::vector<std::string> argv{python3_path, (source_dir() / "tests" / "peers" / script).string(), "--port",
                                  std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<Process>(std::move(argv), log);
    if (!wait_for_port(port, 15s)) {
      throw std::runtime_error(script + " did not listen on port " + std::to_string(port) + ":\n" + process_->log());
    }
  }
  std::string log() const { return process_->log(); }

 private:
  unsigned short port_;
  std::unique_ptr<Process> process_;
};

// ------------------------------------------------------------- the store --

struct DeliveryView {
  std::string state;
  int attempts = 0;
  std::string last_error;
};

std::optional<DeliveryView> delivery_of(Daemon& daemon, const std::string& id, const std::string& target) {
  const auto r = daemon.get("/api/v1/referrals/" + id);
  if (r.status != 200) return std::nullopt;
  const json body = json::parse(r.body);
  for (const auto& d : body["deliveries"]) {
    if (d["target"] != target) continue;
    DeliveryView v;
    v.state = d["state"];
    v.attempts = d["attempts"];
    if (d.contains("last_error")) v.last_error = d["last_error"];
    return v;
  }
  return std::nullopt;
}

// Waits until the delivery reaches a final state (delivered, dead) and returns it.
DeliveryView wait_final(Daemon& daemon, const std::string& id, const std::string& target) {
  std::optional<DeliveryView> last;
  const bool final = wait_until([&] {
    last = delivery_of(daemon, id, target);
    return last && (last->state == "delivered" || last->state == "dead");
  });
  if (!final) {
    throw std::runtime_error("no final state for the delivery to " + target + " of " + id + ": " +
                             daemon.get("/api/v1/referrals/" + id).body + "\n--- daemon:\n" + daemon.log());
  }
  return *last;
}

// "outcome code" per attempt, in order, read with the sqlite3 C API directly.
std::vector<std::string> attempt_log(const fs::path& db, const std::string& id, const std::string& target) {
  sqlite3* handle = nullptr;
  std::vector<std::string> out;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(handle);
    return out;
  }
  sqlite3_busy_timeout(handle, 5000);
  sqlite3_stmt* stmt = nullptr;
  const char* sql =
      "SELECT a.outcome, coalesce(a.code, ''), coalesce(a.external_id, '') FROM attempts a "
      "JOIN deliveries d ON d.id = a.delivery_id WHERE d.referral_id = ?1 AND d.target = ?2 ORDER BY a.attempt";
  if (sqlite3_prepare_v2(handle, sql, -1, &stmt, nullptr) == SQLITE_OK) {
    sqlite3_bind_text(stmt, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, target.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      const std::string code = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
      const std::string external = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
      if (!code.empty()) row += " " + code;
      if (!external.empty()) row += " id=" + external;
      out.push_back(row);
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return out;
}

// The files in dir whose names end with suffix, sorted.
std::vector<fs::path> recorded(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(suffix) && !name.starts_with(".")) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string submit_referral(Daemon& daemon, const std::string& sample_name) {
  const auto r = daemon.post_referral(sample(sample_name));
  if (r.status != 202) throw std::runtime_error("POST answered " + std::to_string(r.status) + ": " + r.body);
  return json::parse(r.body)["id"];
}

using Keys = std::vector<std::pair<std::string, std::string>>;

// A [[target]] table of string-valued keys.
std::string target_table(const Keys& keys) {
  std::string out = "\n[[target]]\n";
  for (const auto& [key, value] : keys) out += key + " = \"" + value + "\"\n";
  return out;
}

std::string daemon_config(const std::string& targets, const std::string& target_name) {
  // Short backoff so retries happen within a test; routes send every referral.
  return "\n[delivery]\nmax_attempts = 20\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" + targets +
         "\n[[route]]\nnotify = [\"" + target_name + "\"]\n";
}

Daemon::Options options_with(const std::string& extra) {
  Daemon::Options o;
  o.with_default_targets = false;
  o.extra_http = "rate_limit_per_minute = 0\n";  // the tests poll the API
  o.extra_config = extra;
  return o;
}

// ----------------------------------------------------------------- XML --

void collect(void* context, const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  *static_cast<std::string*>(context) += line;
}

// Empty when valid against the DTD excerpt in tests/peers; else the reasons.
std::string dtd_problems(const std::string& xml) {
  const fs::path dtd_file = source_dir() / "tests" / "peers" / "wctp-submit-v1r3.dtd";
  xmlDoc* doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "submit.xml", nullptr, XML_PARSE_NONET);
  if (doc == nullptr) return "not well-formed";
  xmlDtd* dtd = xmlParseDTD(nullptr, reinterpret_cast<const xmlChar*>(dtd_file.c_str()));
  if (dtd == nullptr) {
    xmlFreeDoc(doc);
    return "cannot read " + dtd_file.string();
  }
  std::string problems;
  xmlValidCtxt* validator = xmlNewValidCtxt();
  validator->userData = &problems;
  validator->error = collect;
  validator->warning = collect;
  if (xmlValidateDtd(validator, doc, dtd) == 0 && problems.empty()) problems = "invalid";
  xmlFreeValidCtxt(validator);
  xmlFreeDtd(dtd);
  xmlFreeDoc(doc);
  return problems;
}

// The submit's parts a test looks at, read with libxml2.
struct Submit {
  std::vector<std::string> order;                 // element names, depth-first
  std::map<std::string, std::string> attributes;  // "element@attribute" -> value
  std::string text;                               // wctp-Alphanumeric
};

void walk(xmlNode* node, Submit& out) {
  for (; node != nullptr; node = node->next) {
    if (node->type != XML_ELEMENT_NODE) continue;
    const std::string name = reinterpret_cast<const char*>(node->name);
    out.order.push_back(name);
    for (xmlAttr* a = node->properties; a != nullptr; a = a->next) {
      xmlChar* v = xmlNodeListGetString(node->doc, a->children, 1);
      out.attributes[name + "@" + reinterpret_cast<const char*>(a->name)] = reinterpret_cast<const char*>(v);
      xmlFree(v);
    }
    if (name == "wctp-Alphanumeric") {
      xmlChar* t = xmlNodeGetContent(node);
      out.text = reinterpret_cast<const char*>(t);
      xmlFree(t);
    }
    walk(node->children, out);
  }
}

Submit read_submit(const std::string& xml) {
  xmlDoc* doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "submit.xml", nullptr, XML_PARSE_NONET);
  if (doc == nullptr) throw std::runtime_error("not XML:\n" + xml);
  Submit out;
  walk(xmlDocGetRootElement(doc), out);
  xmlFreeDoc(doc);
  return out;
}

std::time_t parse_utc(const std::string& text) {
  std::tm tm{};
  if (strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return 0;
  return timegm(&tm);
}

// ---------------------------------------------------------------- WCTP --

class Wctp : public ::testing::Test {
 protected:
  // Starts the WCTP host (HTTPS) and the daemon with one wctp target.
  void start(std::vector<std::string> server_args, const std::string& recipient = "5551234",
             std::optional<fs::path> trusted_ca = std::nullopt) {
    make_certificate(dir_ / "tls");
    write_file(dir_ / "security-code", "s3cr&t<code>\n");
    server_args.insert(server_args.end(),
                       {"--record", record().string(), "--cert", (dir_ / "tls" / "cert.pem").string(), "--key",
                        (dir_ / "tls" / "key.pem").string()});
    const unsigned short port = free_port();
    server_ = std::make_unique<Peer>("wctp_server.py", port, server_args, dir_ / "wctp_server.log");
    const std::string targets = target_table({
        {"name", "office-pager"},
        {"type", "wctp"},
        {"url", "https://127.0.0.1:" + std::to_string(port) + "/wctp"},
        {"sender_id", "referrald"},
        {"security_code_file", (dir_ / "security-code").string()},
        {"recipient_id", recipient},
        {"ca_file", trusted_ca.value_or(dir_ / "tls" / "cert.pem").string()},
        {"timeout", "10s"},
    });
    daemon_ = std::make_unique<Daemon>(options_with(daemon_config(targets, "office-pager")));
    daemon_->start();
  }
  fs::path record() const { return dir_ / "received"; }
  std::string logs() const { return "\n--- daemon:\n" + daemon_->log() + "\n--- wctp server:\n" + server_->log(); }

  TempDir dir_;
  std::unique_ptr<Peer> server_;
  std::unique_ptr<Daemon> daemon_;  // stopped before the server goes
};

TEST_F(Wctp, PagesOverHttpsWithAValidSubmitRequestAndNoPatientData) {
  start({});
  const std::string id = submit_referral(*daemon_, "asps-urgent.json");
  const auto d = wait_final(*daemon_, id, "office-pager");
  ASSERT_EQ(d.state, "delivered") << d.last_error << logs();
  EXPECT_EQ(d.attempts, 1);

  const auto bodies = recorded(record(), ".xml");
  ASSERT_EQ(bodies.size(), 1U) << logs();
  const std::string xml = read_file(bodies[0]);
  EXPECT_EQ(dtd_problems(xml), "") << xml;
  const Submit s = read_submit(xml);
  EXPECT_EQ(s.order,
            (std::vector<std::string>{"wctp-Operation", "wctp-SubmitRequest", "wctp-SubmitHeader", "wctp-Originator",
                                      "wctp-MessageControl", "wctp-Recipient", "wctp-Payload", "wctp-Alphanumeric"}));
  EXPECT_EQ(s.attributes.at("wctp-Operation@wctpVersion"), "wctp-dtd-v1r3");
  EXPECT_EQ(s.attributes.at("wctp-Originator@senderID"), "referrald");
  EXPECT_EQ(s.attributes.at("wctp-Originator@securityCode"), "s3cr&t<code>");
  EXPECT_EQ(s.attributes.at("wctp-MessageControl@messageID"), id + ".office-pager");
  EXPECT_EQ(s.attributes.at("wctp-MessageControl@deliveryPriority"), "HIGH");  // an urgent referral
  EXPECT_EQ(s.attributes.at("wctp-Recipient@recipientID"), "5551234");
  const std::time_t sent = parse_utc(s.attributes.at("wctp-SubmitHeader@submitTimestamp"));
  EXPECT_LT(std::abs(std::difftime(sent, std::time(nullptr))), 300.0)
      << "submitTimestamp is not UTC now: " << s.attributes.at("wctp-SubmitHeader@submitTimestamp");

  // The page: reference number, urgency, decision, call-back number; nothing of the patient.
  EXPECT_NE(s.text.find(id), std::string::npos) << s.text;
  EXPECT_NE(s.text.find("URGENT"), std::string::npos) << s.text;
  EXPECT_NE(s.text.find("1-888-226-4343"), std::string::npos) << s.text;
  for (const char* phi : {"Mateo", "Ortiz", "2011-07-21", "ASPS", "lung"}) {
    EXPECT_EQ(xml.find(phi), std::string::npos) << phi << " in " << xml;
  }

  const json headers = json::parse(read_file(record() / "001.json"))["headers"];
  EXPECT_EQ(headers["content-type"], "text/xml; charset=utf-8");
  EXPECT_EQ(json::parse(read_file(record() / "001.json"))["path"], "/wctp");
}

TEST_F(Wctp, ATemporaryFailureIsRetriedWithTheSameMessageId) {
  start({"--fail-first", "1"});
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-pager");
  ASSERT_EQ(d.state, "delivered") << d.last_error << logs();
  EXPECT_EQ(d.attempts, 2);
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-pager"),
            (std::vector<std::string>{"transient 604", "delivered"}));
  const auto bodies = recorded(record(), ".xml");
  ASSERT_EQ(bodies.size(), 2U) << logs();
  for (const auto& body : bodies) {
    const Submit s = read_submit(read_file(body));
    EXPECT_EQ(s.attributes.at("wctp-MessageControl@messageID"), id + ".office-pager");
    EXPECT_EQ(s.attributes.count("wctp-MessageControl@deliveryPriority"), 0U);  // routine: NORMAL by default
  }
}

TEST_F(Wctp, AnUnknownRecipientIsDeadAfterOneAttempt) {
  start({}, "999");
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-pager");
  EXPECT_EQ(d.state, "dead") << logs();
  EXPECT_EQ(d.attempts, 1);
  EXPECT_NE(d.last_error.find("403"), std::string::npos) << d.last_error;
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-pager"), std::vector<std::string>{"permanent 403"});
  std::this_thread::sleep_for(1s);  // a retry would come within the 200ms..1s backoff
  EXPECT_EQ(recorded(record(), ".xml").size(), 1U) << logs();
}

TEST_F(Wctp, ACertificateThatDoesNotVerifyIsMisconfigured) {
  make_certificate(dir_ / "other-ca");
  start({}, "5551234", dir_ / "other-ca" / "cert.pem");
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-pager");
  EXPECT_EQ(d.state, "dead") << logs();
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-pager"), std::vector<std::string>{"misconfigured"});
  EXPECT_TRUE(recorded(record(), ".xml").empty()) << "the page went to a server the daemon could not verify";
}

// ------------------------------------------------------------ HTTP fax --

class HttpFax : public ::testing::Test {
 protected:
  static constexpr const char* password = "fax-api-secret";

  HttpFax() { write_file(dir_ / "fax-password", std::string(password) + "\n"); }

  void start_server(std::vector<std::string> args, bool tls = false) {
    args.insert(args.end(), {"--record", record().string(), "--user", "referrald", "--password", password});
    if (tls) {
      make_certificate(dir_ / "tls");
      args.insert(args.end(),
                  {"--cert", (dir_ / "tls" / "cert.pem").string(), "--key", (dir_ / "tls" / "key.pem").string()});
    }
    server_ = std::make_unique<Peer>("fax_api_server.py", port_, args, dir_ / "fax_api_server.log");
  }

  // The daemon with one http-fax target at port_; `extra` adds target keys.
  void start_daemon(const Keys& extra = {}, bool tls = false, const std::string& password_file = "") {
    Keys keys{
        {"name", "office-fax"},
        {"type", "http-fax"},
        {"url", std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + "/v2/faxes"},
        {"auth", "basic"},
        {"username", "referrald"},
        {"password_file", password_file.empty() ? (dir_ / "fax-password").string() : password_file},
        {"to", "+19015954011"},
        {"id_path", "data.id"},
        {"success_path", "success"},
        {"timeout", "20s"},
    };
    if (tls) keys.emplace_back("ca_file", (dir_ / "tls" / "cert.pem").string());
    keys.insert(keys.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<Daemon>(options_with(daemon_config(target_table(keys), "office-fax")));
    daemon_->start();
  }

  Keys status_polling() const {
    return {{"status_url", "http://127.0.0.1:" + std::to_string(port_) + "/v2/faxes/{id}"},
            {"status_path", "data.status"},
            {"poll_interval", "200ms"}};
  }

  fs::path record() const { return dir_ / "received"; }
  std::string logs() const {
    return "\n--- daemon:\n" + (daemon_ ? daemon_->log() : "") + "\n--- fax API server:\n" +
           (server_ ? server_->log() : "(not started)");
  }

  // Checks one recorded upload: credentials, key, fields, the PDF.
  void expect_upload(const fs::path& meta_file, const std::string& id) {
    const json meta = json::parse(read_file(meta_file));
    EXPECT_EQ(meta["headers"]["idempotency-key"], id + ".office-fax");
    EXPECT_TRUE(meta["headers"]["content-type"].get<std::string>().starts_with("multipart/form-data; boundary="));
    EXPECT_EQ(meta["fields"]["to"], "+19015954011");
    ASSERT_EQ(meta["files"].size(), 1U);
    EXPECT_EQ(meta["files"][0]["name"], "file");
    EXPECT_EQ(meta["files"][0]["filename"], "referral-" + id + ".pdf");
    EXPECT_EQ(meta["files"][0]["content_type"], "application/pdf");
    fs::path pdf = meta_file;
    pdf.replace_extension(".pdf");
    const std::string bytes = read_file(pdf);
    ASSERT_TRUE(bytes.starts_with("%PDF-")) << bytes.substr(0, 16);
    EXPECT_NE(bytes.find("%%EOF"), std::string::npos);
    // The referral renderer writes the reference number as text: pdftotext (poppler-utils) reads it back.
    if (fs::exists("/usr/bin/pdftotext")) {
      const fs::path text = dir_ / (meta_file.stem().string() + ".txt");
      ASSERT_EQ(shell("/usr/bin/pdftotext " + pdf.string() + " " + text.string()), 0);
      EXPECT_NE(read_file(text).find(id), std::string::npos) << read_file(text);
    }
  }

  TempDir dir_;
  unsigned short port_ = free_port();
  std::unique_ptr<Peer> server_;
  std::unique_ptr<Daemon> daemon_;  // declared last: stopped first
};

TEST_F(HttpFax, UploadsThePdfWithBasicAuthAndAnIdempotencyKey) {
  start_server({});
  start_daemon();
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-fax");
  ASSERT_EQ(d.state, "delivered") << d.last_error << logs();
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-fax"), std::vector<std::string>{"delivered id=1001"});
  const auto uploads = recorded(record(), ".json");
  ASSERT_EQ(uploads.size(), 1U) << logs();
  expect_upload(uploads[0], id);
}

TEST_F(HttpFax, AWrongPasswordIsMisconfiguredAndDead) {
  start_server({});
  write_file(dir_ / "wrong-password", "not-the-secret\n");
  start_daemon({}, false, (dir_ / "wrong-password").string());
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-fax");
  EXPECT_EQ(d.state, "dead") << logs();
  EXPECT_EQ(d.attempts, 1);
  EXPECT_NE(d.last_error.find("HTTP 401"), std::string::npos) << d.last_error;
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-fax"), std::vector<std::string>{"misconfigured 401"});
  EXPECT_TRUE(recorded(record(), ".json").empty());
}

TEST_F(HttpFax, PollsTheStatusUntilTheFaxIsDelivered) {
  start_server({"--pending-polls", "2"});
  start_daemon(status_polling());
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  const auto d = wait_final(*daemon_, id, "office-fax");
  ASSERT_EQ(d.state, "delivered") << d.last_error << logs();
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-fax"), std::vector<std::string>{"delivered id=1001"});
  EXPECT_EQ(read_file(record() / "polls.log"), "1001 queued\n1001 queued\n1001 success\n");
  EXPECT_EQ(recorded(record(), ".json").size(), 1U);
}

TEST_F(HttpFax, AFailedCallIsFaxedAgainUnderANewKey) {
  start_server({"--final-status", "failure"});
  start_daemon(status_polling());
  const std::string id = submit_referral(*daemon_, "asps-routine.json");
  // Every call "fails" at this provider: each attempt faxes again, so two
  // uploads with different keys must arrive (the second under the new key).
  ASSERT_TRUE(wait_until([&] { return recorded(record(), ".json").size() >= 2; })) << logs();
  const auto uploads = recorded(record(), ".json");
  const json first = json::parse(read_file(uploads[0]));
  const json second = json::parse(read_file(uploads[1]));
  EXPECT_EQ(first["headers"]["idempotency-key"], id + ".office-fax");
  EXPECT_EQ(second["headers"]["idempotency-key"], id + ".office-fax.after-1");
  EXPECT_FALSE(second["repeat"].get<bool>());
  EXPECT_EQ(attempt_log(daemon_->database(), id, "office-fax").at(0), "transient failure");
}

TEST_F(HttpFax, WorksOverHttpsWithAPrivateCa) {
  start_server({}, true);
  start_daemon({}, true);
  const std::string id = submit_referral(*daemon_, "asps-urgent.json");
  const auto d = wait_final(*daemon_, id, "office-fax");
  ASSERT_EQ(d.state, "delivered") << d.last_error << logs();
  const auto uploads = recorded(record(), ".json");
  ASSERT_EQ(uploads.size(), 1U) << logs();
  expect_upload(uploads[0], id);
}

TEST_F(HttpFax, AProviderDownAtFirstGetsEveryFaxOnceWhenItComesUp) {
  start_daemon();  // nothing listens on port_ yet
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(submit_referral(*daemon_, i == 1 ? "asps-urgent.json" : "asps-routine.json"));
  // Each delivery fails (connection refused) and comes back at its backoff.
  ASSERT_TRUE(wait_until([&] {
    return std::all_of(ids.begin(), ids.end(), [&](const std::string& id) {
      const auto d = delivery_of(*daemon_, id, "office-fax");
      return d && d->attempts >= 2 && d->state != "delivered" && d->state != "dead";
    });
  })) << logs();
  for (const auto& id : ids) {
    EXPECT_EQ(attempt_log(daemon_->database(), id, "office-fax").at(0), "transient") << id;
  }

  start_server({});
  for (const auto& id : ids) {
    const auto d = wait_final(*daemon_, id, "office-fax");
    EXPECT_EQ(d.state, "delivered") << id << " " << d.last_error << logs();
  }
  // None lost, none sent twice: one upload per referral, each under its own key.
  const auto uploads = recorded(record(), ".json");
  ASSERT_EQ(uploads.size(), ids.size()) << logs();
  std::set<std::string> keys;
  for (const auto& u : uploads) {
    const json meta = json::parse(read_file(u));
    keys.insert(meta["headers"]["idempotency-key"].get<std::string>());
    EXPECT_FALSE(meta["repeat"].get<bool>());
  }
  std::set<std::string> expected;
  for (const auto& id : ids) expected.insert(id + ".office-fax");
  EXPECT_EQ(keys, expected);
}

}  // namespace
}  // namespace referrald::test
