#include "adapters/wctp/wctp_message.hpp"
#include "util/strings.hpp"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include <climits>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace referrald {

namespace {

const xmlChar* x(const char* text) { return reinterpret_cast<const xmlChar*>(text); }
const char* c(const xmlChar* text) { return reinterpret_cast<const char*>(text); }

// libxml2 is thread-safe once its parser is initialised; do that once.
void init_libxml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

struct BufferDeleter {
  void operator()(xmlBuffer* b) const { xmlBufferFree(b); }
};
struct WriterDeleter {
  void operator()(xmlTextWriter* w) const { xmlFreeTextWriter(w); }
};
struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XmlStringDeleter {
  void operator()(xmlChar* s) const { xmlFree(s); }
};

// XML 1.0 carries no C0 control characters but tab, CR and LF (which the
// writer escapes in attributes), and libxml2 writes bytes as they are:
// refuse what would make the document invalid.
void check_xml_text(std::string_view what, const std::string& value) {
  if (value.size() > INT_MAX || xmlCheckUTF8(x(value.c_str())) == 0 || value.find('\0') != std::string::npos) {
    throw std::invalid_argument(std::string(what) + ": not valid UTF-8");
  }
  for (const char ch : value) {
    const auto u = static_cast<unsigned char>(ch);
    if ((u < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || u == 0x7f) {
      throw std::invalid_argument(std::string(what) + ": holds a control character");
    }
  }
}

class Writer {
 public:
  Writer() : buffer_(xmlBufferCreate()) {
    if (!buffer_) throw std::runtime_error("libxml2: cannot allocate a buffer");
    writer_.reset(xmlNewTextWriterMemory(buffer_.get(), 0));
    if (!writer_) throw std::runtime_error("libxml2: cannot create a writer");
  }
  void check(int rc, const char* step) {
    if (rc < 0) throw std::runtime_error(std::string("libxml2: ") + step + " failed");
  }
  void start(const char* name) { check(xmlTextWriterStartElement(writer_.get(), x(name)), name); }
  void end() { check(xmlTextWriterEndElement(writer_.get()), "end element"); }
  void attribute(const char* name, const std::string& value) {
    check(xmlTextWriterWriteAttribute(writer_.get(), x(name), x(value.c_str())), name);
  }
  void text(const std::string& value) { check(xmlTextWriterWriteString(writer_.get(), x(value.c_str())), "text"); }
  xmlTextWriter* get() { return writer_.get(); }
  std::string finish() {
    check(xmlTextWriterEndDocument(writer_.get()), "end document");
    writer_.reset();  // flushes into the buffer
    return std::string(c(xmlBufferContent(buffer_.get())), static_cast<std::size_t>(xmlBufferLength(buffer_.get())));
  }

 private:
  std::unique_ptr<xmlBuffer, BufferDeleter> buffer_;
  std::unique_ptr<xmlTextWriter, WriterDeleter> writer_;
};

std::string property(xmlNode* node, const char* name) {
  std::unique_ptr<xmlChar, XmlStringDeleter> value(xmlGetProp(node, x(name)));
  return value ? std::string(c(value.get())) : std::string();
}

std::string content(xmlNode* node) {
  std::unique_ptr<xmlChar, XmlStringDeleter> value(xmlNodeGetContent(node));
  return value ? std::string(c(value.get())) : std::string();
}

xmlNode* first_element(xmlNode* parent) {
  for (xmlNode* n = parent != nullptr ? parent->children : nullptr; n != nullptr; n = n->next) {
    if (n->type == XML_ELEMENT_NODE) return n;
  }
  return nullptr;
}

bool named(const xmlNode* node, const char* name) { return node != nullptr && xmlStrEqual(node->name, x(name)) != 0; }

int parse_code(const std::string& text) {
  if (text.empty() || text.size() > 6) return 0;
  int value = 0;
  for (const char ch : text) {
    if (ch < '0' || ch > '9') return 0;
    value = value * 10 + (ch - '0');
  }
  return value;
}

std::string describe(const WctpConfirmation& r) {
  std::string out =
      std::string(r.success ? "wctp-Success " : "wctp-Failure ") + http_client::printable_excerpt(r.code_text, 12);
  if (!r.text.empty()) out += " " + http_client::printable_excerpt(r.text, 160);
  return out;
}

}  // namespace

std::string wctp_timestamp(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
  return out;
}

std::string build_wctp_submit(const WctpSubmit& s) {
  init_libxml();
  check_xml_text("senderID", s.sender_id);
  if (s.security_code) check_xml_text("securityCode", *s.security_code);
  check_xml_text("messageID", s.message_id);
  check_xml_text("recipientID", s.recipient_id);
  check_xml_text("text", s.text);

  Writer w;
  w.check(xmlTextWriterStartDocument(w.get(), "1.0", "UTF-8", nullptr), "start document");
  w.check(xmlTextWriterWriteDTD(w.get(), x("wctp-Operation"), nullptr, x(wctp_dtd_url), nullptr), "doctype");
  w.start("wctp-Operation");
  w.attribute("wctpVersion", wctp_version);
  w.start("wctp-SubmitRequest");
  w.start("wctp-SubmitHeader");
  w.attribute("submitTimestamp", wctp_timestamp(s.submitted));
  w.start("wctp-Originator");
  w.attribute("senderID", s.sender_id);
  if (s.security_code) w.attribute("securityCode", *s.security_code);
  w.end();
  w.start("wctp-MessageControl");
  w.attribute("messageID", s.message_id);
  if (s.high_priority) w.attribute("deliveryPriority", "HIGH");
  w.end();
  w.start("wctp-Recipient");
  w.attribute("recipientID", s.recipient_id);
  w.end();
  w.end();  // wctp-SubmitHeader
  w.start("wctp-Payload");
  w.start("wctp-Alphanumeric");
  w.text(s.text);
  w.end();
  w.end();  // wctp-Payload
  w.end();  // wctp-SubmitRequest
  w.end();  // wctp-Operation
  return w.finish();
}

std::optional<WctpConfirmation> parse_wctp_confirmation(std::string_view xml, std::string* problem) {
  init_libxml();
  auto fail = [&](std::string why) -> std::optional<WctpConfirmation> {
    if (problem != nullptr) *problem = std::move(why);
    return std::nullopt;
  };
  if (xml.size() > http_client::max_reply_bytes) return fail("the reply is too large");
  // A confirmation has no business declaring entities; refusing them keeps
  // entity expansion (and its amplification) out of the picture entirely.
  if (xml.find("<!ENTITY") != std::string_view::npos) return fail("the reply declares entities");
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
  std::unique_ptr<xmlDoc, DocDeleter> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "wctp-reply.xml", nullptr, options));
  if (!doc) return fail("the reply is not well-formed XML");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!named(root, "wctp-Operation")) {
    return fail("the reply's root is not wctp-Operation");
  }
  xmlNode* operation = first_element(root);
  if (!named(operation, "wctp-Confirmation")) {
    return fail(std::string("the reply holds ") + (operation != nullptr ? c(operation->name) : "nothing") +
                ", not wctp-Confirmation");
  }
  xmlNode* result = first_element(operation);
  WctpConfirmation out;
  if (named(result, "wctp-Success")) {
    out.success = true;
    out.code_text = std::string(trim(property(result, "successCode")));
    out.text = property(result, "successText");
  } else if (named(result, "wctp-Failure")) {
    out.code_text = std::string(trim(property(result, "errorCode")));
    out.text = property(result, "errorText");
  } else {
    return fail("wctp-Confirmation holds neither wctp-Success nor wctp-Failure");
  }
  if (out.text.empty()) out.text = std::string(trim(content(result)));
  out.code = parse_code(out.code_text);
  if (out.code_text.empty()) return fail(std::string(out.success ? "wctp-Success" : "wctp-Failure") + " has no code");
  return out;
}

Outcome classify_wctp_confirmation(const WctpConfirmation& r) {
  const std::string message = describe(r);
  const std::optional<std::string> code = r.code_text.empty() ? std::nullopt : std::optional<std::string>(r.code_text);
  if (r.success) return Outcome::delivered("accepted by the WCTP host: " + message);
  if (r.code == 401 || r.code == 402) return Outcome::misconfigured(message, code);  // senderID, securityCode
  if (r.code == 403) return Outcome::permanent(message, code);                       // recipientID unknown
  if (r.code >= 600 && r.code < 700) return Outcome::transient(message, code);       // temporary at the host
  return Outcome::permanent(message, code);
}

Outcome classify_wctp_reply(const http_client::Reply& reply) {
  if (auto failed = http_client::classify_transfer(reply, "wctp")) return *failed;
  const long status = reply.status;
  const std::string code = "http-" + std::to_string(status);
  if (status < 200 || status >= 300) {
    const std::string message =
        "wctp: HTTP " + std::to_string(status) + " " + http_client::printable_excerpt(reply.body, 120);
    if (status >= 500 || status == 408 || status == 429) return Outcome::transient(message, code);
    if ((status >= 300 && status < 400) || status == 401 || status == 403 || status == 404 || status == 405 ||
        status == 407) {
      return Outcome::misconfigured(message, code);
    }
    return Outcome::transient(message, code);
  }
  std::string problem;
  const auto confirmation = parse_wctp_confirmation(reply.body, &problem);
  if (!confirmation) {
    // The host may not have taken the page: send it again (the same
    // messageID lets the host recognise a repeat).
    return Outcome::transient("wctp: HTTP " + std::to_string(status) + " but " + problem, code);
  }
  return classify_wctp_confirmation(*confirmation);
}

}  // namespace referrald
