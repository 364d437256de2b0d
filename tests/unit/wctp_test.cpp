// WCTP documents and outcomes: the submit request against the DTD (element
// order, attribute values, escaping), the confirmation parser, and every row
// of the code mapping (docs/channels.md#wctp).
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/valid.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/wctp/wctp_adapter.hpp"
#include "adapters/wctp/wctp_message.hpp"
#include "support/office.hpp"

namespace referrald {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const xmlChar* x(const char* s) { return reinterpret_cast<const xmlChar*>(s); }
std::string s(const xmlChar* v) { return v != nullptr ? reinterpret_cast<const char*>(v) : ""; }

void collect(void* context, const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  *static_cast<std::string*>(context) += line;
}

// Empty when the document is valid against the DTD excerpt the tests share
// with the WCTP peer (tests/peers/wctp-submit-v1r3.dtd); else why not.
std::string dtd_problems(const std::string& xml) {
  const fs::path dtd_file = fs::path(REFERRALD_SOURCE_DIR) / "tests" / "peers" / "wctp-submit-v1r3.dtd";
  xmlDoc* doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "submit.xml", nullptr, XML_PARSE_NONET);
  if (doc == nullptr) return "not well-formed";
  xmlDtd* dtd = xmlParseDTD(nullptr, x(dtd_file.c_str()));
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

struct Element {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::string text;
  std::vector<Element> children;
};

Element read_element(xmlNode* node) {
  Element e;
  e.name = s(node->name);
  for (xmlAttr* a = node->properties; a != nullptr; a = a->next) {
    xmlChar* v = xmlNodeListGetString(node->doc, a->children, 1);
    e.attributes[s(a->name)] = s(v);
    xmlFree(v);
  }
  for (xmlNode* c = node->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) e.children.push_back(read_element(c));
    if (c->type == XML_TEXT_NODE) e.text += s(c->content);
  }
  return e;
}

Element parse(const std::string& xml) {
  xmlDoc* doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "submit.xml", nullptr, XML_PARSE_NONET);
  if (doc == nullptr) throw std::runtime_error("not XML: " + xml);
  Element root = read_element(xmlDocGetRootElement(doc));
  xmlFreeDoc(doc);
  return root;
}

std::vector<std::string> names(const Element& e) {
  std::vector<std::string> out;
  for (const auto& c : e.children) out.push_back(c.name);
  return out;
}

WctpSubmit sample_submit() {
  WctpSubmit w;
  w.sender_id = "referrald";
  w.security_code = "s3cr&t<\"code\">";
  w.message_id = "R-20261128-7K3M9-TZQXA.office-pager";
  w.recipient_id = "5551234";
  w.submitted = std::chrono::sys_days{std::chrono::year{2026} / 11 / 28} + 14h + 5min + 9s + 250ms;
  w.text = "referrald R-20261128-7K3M9-TZQXA URGENT review call 1-888-226-4343 <&>";
  return w;
}

TEST(WctpSubmit, FollowsTheDtdElementOrder) {
  const std::string xml = build_wctp_submit(sample_submit());
  EXPECT_EQ(dtd_problems(xml), "") << xml;
  EXPECT_TRUE(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")) << xml;
  EXPECT_NE(xml.find("<!DOCTYPE wctp-Operation SYSTEM \"http://dtd.wctp.org/wctp-dtd-v1r3.dtd\">"), std::string::npos)
      << xml;

  const Element root = parse(xml);
  EXPECT_EQ(root.name, "wctp-Operation");
  EXPECT_EQ(root.attributes.at("wctpVersion"), "wctp-dtd-v1r3");
  ASSERT_EQ(names(root), std::vector<std::string>{"wctp-SubmitRequest"});
  const Element& request = root.children[0];
  ASSERT_EQ(names(request), (std::vector<std::string>{"wctp-SubmitHeader", "wctp-Payload"}));
  const Element& header = request.children[0];
  EXPECT_EQ(header.attributes.at("submitTimestamp"), "2026-11-28T14:05:09");
  ASSERT_EQ(names(header), (std::vector<std::string>{"wctp-Originator", "wctp-MessageControl", "wctp-Recipient"}));
  EXPECT_EQ(header.children[0].attributes.at("senderID"), "referrald");
  EXPECT_EQ(header.children[0].attributes.at("securityCode"), "s3cr&t<\"code\">");
  EXPECT_EQ(header.children[1].attributes.at("messageID"), "R-20261128-7K3M9-TZQXA.office-pager");
  EXPECT_EQ(header.children[1].attributes.count("deliveryPriority"), 0U);
  EXPECT_EQ(header.children[2].attributes.at("recipientID"), "5551234");
  const Element& payload = request.children[1];
  ASSERT_EQ(names(payload), std::vector<std::string>{"wctp-Alphanumeric"});
  EXPECT_EQ(payload.children[0].text, "referrald R-20261128-7K3M9-TZQXA URGENT review call 1-888-226-4343 <&>");
}

TEST(WctpSubmit, EscapesMarkupInsteadOfPastingIt) {
  const std::string xml = build_wctp_submit(sample_submit());
  EXPECT_NE(xml.find("securityCode=\"s3cr&amp;t&lt;&quot;code&quot;&gt;\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("4343 &lt;&amp;&gt;</wctp-Alphanumeric>"), std::string::npos) << xml;
}

TEST(WctpSubmit, HighPriorityAndNoSecurityCode) {
  WctpSubmit w = sample_submit();
  w.high_priority = true;
  w.security_code.reset();
  const std::string xml = build_wctp_submit(w);
  EXPECT_EQ(dtd_problems(xml), "") << xml;
  const Element header = parse(xml).children.at(0).children.at(0);
  EXPECT_EQ(header.children.at(0).attributes.count("securityCode"), 0U);
  EXPECT_EQ(header.children.at(1).attributes.at("deliveryPriority"), "HIGH");
}

TEST(WctpSubmit, RefusesWhatXmlCannotCarry) {
  WctpSubmit w = sample_submit();
  w.text = std::string("bell\x07");
  EXPECT_THROW(build_wctp_submit(w), std::invalid_argument);
  w = sample_submit();
  w.sender_id = "\xff\xfe";
  EXPECT_THROW(build_wctp_submit(w), std::invalid_argument);
  w = sample_submit();
  w.recipient_id = "tab\there";  // a tab is fine (escaped in the attribute)
  EXPECT_NO_THROW(build_wctp_submit(w));
}

TEST(WctpTimestamp, IsUtcWithoutZone) {
  EXPECT_EQ(wctp_timestamp(std::chrono::sys_days{std::chrono::year{2025} / 1 / 31} + 14h + 5min),
            "2025-01-31T14:05:00");
}

std::string confirmation(const std::string& inner) {
  return "<?xml version=\"1.0\"?>\n<!DOCTYPE wctp-Operation SYSTEM \"http://dtd.wctp.org/wctp-dtd-v1r3.dtd\">\n"
         "<wctp-Operation wctpVersion=\"wctp-dtd-v1r3\"><wctp-Confirmation>" +
         inner + "</wctp-Confirmation></wctp-Operation>";
}

TEST(WctpConfirmation, ReadsSuccessAndFailure) {
  std::string problem;
  auto ok =
      parse_wctp_confirmation(confirmation("<wctp-Success successCode=\"200\" successText=\"Accepted\"/>"), &problem);
  ASSERT_TRUE(ok) << problem;
  EXPECT_TRUE(ok->success);
  EXPECT_EQ(ok->code, 200);
  EXPECT_EQ(ok->text, "Accepted");

  auto failed =
      parse_wctp_confirmation(confirmation("<wctp-Failure errorCode=\"604\">Internal error</wctp-Failure>"), &problem);
  ASSERT_TRUE(failed) << problem;
  EXPECT_FALSE(failed->success);
  EXPECT_EQ(failed->code, 604);
  EXPECT_EQ(failed->code_text, "604");
  EXPECT_EQ(failed->text, "Internal error");  // the element's text when errorText is absent
}

TEST(WctpConfirmation, RefusesWhatIsNotAConfirmation) {
  std::string problem;
  EXPECT_FALSE(parse_wctp_confirmation("<html>502 Bad Gateway</html", &problem));
  EXPECT_EQ(problem, "the reply is not well-formed XML");
  EXPECT_FALSE(parse_wctp_confirmation("<html><body/></html>", &problem));
  EXPECT_EQ(problem, "the reply's root is not wctp-Operation");
  EXPECT_FALSE(parse_wctp_confirmation(
      "<wctp-Operation wctpVersion=\"wctp-dtd-v1r3\"><wctp-VersionResponse responder=\"x\"/></wctp-Operation>",
      &problem));
  EXPECT_EQ(problem, "the reply holds wctp-VersionResponse, not wctp-Confirmation");
  EXPECT_FALSE(parse_wctp_confirmation(confirmation("<wctp-Failure errorText=\"no code\"/>"), &problem));
  EXPECT_EQ(problem, "wctp-Failure has no code");
  EXPECT_FALSE(parse_wctp_confirmation(confirmation(""), &problem));
  EXPECT_EQ(problem, "wctp-Confirmation holds neither wctp-Success nor wctp-Failure");
  // Entities (and their amplification) are refused before parsing.
  EXPECT_FALSE(parse_wctp_confirmation(
      "<!DOCTYPE wctp-Operation [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>" + confirmation("&b;"), &problem));
  EXPECT_EQ(problem, "the reply declares entities");
}

OutcomeClass failure_class(int code) {
  WctpConfirmation c;
  c.code = code;
  c.code_text = std::to_string(code);
  return classify_wctp_confirmation(c).kind;
}

TEST(WctpOutcome, MapsEveryCodeClass) {
  WctpConfirmation success{true, 200, "200", "Accepted"};
  EXPECT_EQ(classify_wctp_confirmation(success).kind, OutcomeClass::delivered);
  EXPECT_EQ(failure_class(401), OutcomeClass::misconfigured);  // senderID
  EXPECT_EQ(failure_class(402), OutcomeClass::misconfigured);  // securityCode
  EXPECT_EQ(failure_class(403), OutcomeClass::permanent);      // recipientID
  for (int code : {601, 602, 603, 604, 605, 699}) EXPECT_EQ(failure_class(code), OutcomeClass::transient) << code;
  for (int code : {301, 302, 303, 399, 404, 405, 408, 411, 499, 501, 599, 0, 700}) {
    EXPECT_EQ(failure_class(code), OutcomeClass::permanent) << code;
  }
  WctpConfirmation failure{false, 604, "604", "Internal error"};
  const Outcome o = classify_wctp_confirmation(failure);
  EXPECT_EQ(o.code, "604");
  EXPECT_EQ(o.message, "wctp-Failure 604 Internal error");
}

http_client::Reply http_reply(long status, std::string body) {
  http_client::Reply r;
  r.status = status;
  r.transfer.response_code = status;
  r.body = std::move(body);
  return r;
}

http_client::Reply transfer_error(CURLcode code) {
  http_client::Reply r;
  r.transfer.code = code;
  r.transfer.error = curl_easy_strerror(code);
  return r;
}

TEST(WctpOutcome, MapsHttpAndTransport) {
  const std::string ok = confirmation("<wctp-Success successCode=\"200\"/>");
  EXPECT_EQ(classify_wctp_reply(http_reply(200, ok)).kind, OutcomeClass::delivered);
  EXPECT_EQ(classify_wctp_reply(http_reply(200, "<html/>")).kind, OutcomeClass::transient);
  for (long status : {500L, 502L, 503L, 504L, 408L, 429L, 400L}) {
    EXPECT_EQ(classify_wctp_reply(http_reply(status, "busy")).kind, OutcomeClass::transient) << status;
  }
  for (long status : {301L, 302L, 401L, 403L, 404L, 405L, 407L}) {
    EXPECT_EQ(classify_wctp_reply(http_reply(status, "no")).kind, OutcomeClass::misconfigured) << status;
  }
  EXPECT_EQ(classify_wctp_reply(http_reply(503, "busy")).code, "http-503");
  for (CURLcode code : {CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_RESOLVE_HOST, CURLE_RECV_ERROR,
                        CURLE_GOT_NOTHING, CURLE_SSL_CONNECT_ERROR}) {
    EXPECT_EQ(classify_wctp_reply(transfer_error(code)).kind, OutcomeClass::transient) << code;
  }
  for (CURLcode code : {CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_URL_MALFORMAT}) {
    EXPECT_EQ(classify_wctp_reply(transfer_error(code)).kind, OutcomeClass::misconfigured) << code;
  }
  http_client::Reply huge = transfer_error(CURLE_WRITE_ERROR);
  huge.too_large = true;
  EXPECT_EQ(classify_wctp_reply(huge).kind, OutcomeClass::transient);
}

TargetConfig wctp_target(const std::string& url, const std::string& security_file = "") {
  TargetConfig t;
  t.name = "office-pager";
  t.type = "wctp";
  t.settings["url"] = url;
  t.settings["sender_id"] = std::string("referrald");
  t.settings["recipient_id"] = std::string("5551234");
  if (!security_file.empty()) t.settings["security_code_file"] = security_file;
  return t;
}

OfficeConfig office() { return test::sample_office(); }

Delivery delivery() {
  Delivery d;
  d.identity = "R-20261128-7K3M9-TZQXA.office-pager";
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-pager";
  d.decision = Decision::review;
  d.urgency = Urgency::emergent;
  d.document = R"({"patient":{"given_name":"Ava","family_name":"Nguyen","birth_date":"2014-03-09"}})";
  return d;
}

TEST(WctpSettings, RefusesPlainHttpExceptToLoopback) {
  try {
    wctp_settings(wctp_target("http://wctp.example.org/wctp"), office());
    FAIL() << "accepted plain http";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "target \"office-pager\": url: WCTP carries the security code; use https:// (plain http:// only to a "
              "loopback address), got \"http://wctp.example.org/wctp\"");
  }
  EXPECT_NO_THROW(wctp_settings(wctp_target("http://127.0.0.1:8080/wctp"), office()));
  EXPECT_NO_THROW(wctp_settings(wctp_target("https://wctp.example.org/wctp"), office()));
  auto t = wctp_target("https://wctp.example.org/wctp");
  t.settings["max_message_length"] = std::int64_t{20};
  EXPECT_THROW(wctp_settings(t, office()), std::runtime_error);
}

TEST(WctpAdapter, ThePageCarriesNoPatientData) {
  CurlPool curl(1);
  const SystemClock clock;
  WctpAdapter adapter(wctp_settings(wctp_target("https://wctp.example.org/wctp"), office()), curl, clock);
  const std::string xml = adapter.build_request(delivery(), std::chrono::system_clock::now());
  EXPECT_EQ(dtd_problems(xml), "") << xml;
  const Element text = parse(xml).children.at(0).children.at(1).children.at(0);
  EXPECT_EQ(text.text, "referrald R-20261128-7K3M9-TZQXA EMERGENT review call 1-888-226-4343");
  for (const char* phi : {"Ava", "Nguyen", "2014"}) EXPECT_EQ(xml.find(phi), std::string::npos) << phi;
}

TEST(WctpAdapter, AnUnreadableSecurityCodeFileIsMisconfigured) {
  const fs::path missing = fs::temp_directory_path() / "referrald-wctp-test-no-such-file";
  const WctpSettings settings = wctp_settings(wctp_target("https://127.0.0.1:9/wctp", missing.string()), office());
  ASSERT_TRUE(settings.problem);
  EXPECT_NE(settings.problem->find("security_code_file cannot read " + missing.string()), std::string::npos)
      << *settings.problem;

  CurlPool curl(1);
  const SystemClock clock;
  WctpAdapter adapter(settings, curl, clock);
  boost::asio::io_context io;
  const Delivery d = delivery();
  auto future = boost::asio::co_spawn(io, adapter.send(d), boost::asio::use_future);
  io.run();
  const Outcome o = future.get();
  EXPECT_EQ(o.kind, OutcomeClass::misconfigured);
  EXPECT_EQ(o.message, *settings.problem);
}

TEST(WctpAdapter, ReadsTheSecurityCodeFile) {
  const fs::path file = fs::temp_directory_path() / ("referrald-wctp-test-" + std::to_string(::getpid()));
  std::ofstream(file) << "s3cret\n";
  const WctpSettings settings = wctp_settings(wctp_target("https://127.0.0.1:9/wctp", file.string()), office());
  fs::remove(file);
  EXPECT_FALSE(settings.problem);
  EXPECT_EQ(settings.security_code, "s3cret");
}

}  // namespace
}  // namespace referrald
