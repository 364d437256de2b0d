// The email as bytes on the wire (CRLF, folding, RFC 2047, MIME parts), the
// SMTP outcome classes (docs/channels.md#smtp), and the smtp target's settings.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "adapters/document/referral_pdf.hpp"
#include "adapters/smtp/mail_message.hpp"
#include "adapters/smtp/smtp_adapter.hpp"
#include "spool_file.hpp"
#include "support/harness.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const auto when = sys_days{year{2026} / November / 28} + 7h + 25s;

std::string decode_base64(std::string_view in) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : in) {
    const auto pos = alphabet.find(c);
    if (pos == std::string::npos) continue;  // '=', CR, LF
    bits = (bits << 6) | static_cast<unsigned>(pos);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFFu);
    }
  }
  return out;
}

// Decodes a header value made of "=?UTF-8?B?...?=" words (folded or not).
std::string decode_words(const std::string& value) {
  std::string out;
  std::size_t i = 0;
  while ((i = value.find("=?UTF-8?B?", i)) != std::string::npos) {
    const auto end = value.find("?=", i + 10);
    out += decode_base64(value.substr(i + 10, end - i - 10));
    i = end + 2;
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& message) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < message.size()) {
    const auto end = message.find("\r\n", start);
    if (end == std::string::npos) {
      lines.push_back(message.substr(start));
      break;
    }
    lines.push_back(message.substr(start, end - start));
    start = end + 2;
  }
  return lines;
}

// The unfolded value of a header in the message's header block.
std::string header(const std::string& message, const std::string& name) {
  const std::string head = message.substr(0, message.find("\r\n\r\n"));
  const auto start = head.find("\r\n" + name + ": ") != std::string::npos
                         ? head.find("\r\n" + name + ": ") + 2
                         : (head.starts_with(name + ": ") ? 0 : std::string::npos);
  if (start == std::string::npos) return {};
  std::string value;
  std::size_t i = start + name.size() + 2;
  while (true) {
    const auto end = head.find("\r\n", i);
    value += head.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (end == std::string::npos || end + 2 >= head.size() || (head[end + 2] != ' ' && head[end + 2] != '\t')) break;
    i = end + 2;
  }
  return value;
}

MailMessage sample_message() {
  MailMessage m;
  m.from = {"Referral Office", "referrald@hospital.example"};
  m.to = {{"", "referrals@hospital.example"}, {"Night Desk", "night@hospital.example"}};
  m.subject = "Referral R-20261128-7K3M9-TZQXA (urgent) — review";
  m.message_id = "R-20261128-7K3M9-TZQXA.office-email@referrald";
  m.date = when;
  m.text = "Line one.\nA line with = and trailing space \n.starts with a dot\n" + std::string(200, 'x') + "\n";
  std::string pdf = "%PDF-1.3\n";
  for (int i = 0; i < 2000; ++i) pdf += static_cast<char>(i * 7);
  m.attachments.push_back({"referral-R-20261128-7K3M9-TZQXA.pdf", "application/pdf", pdf});
  return m;
}

TEST(MailMessage, EveryLineEndsInCrlfAndStaysShort) {
  const std::string message = render_mail(sample_message());
  ASSERT_TRUE(message.ends_with("\r\n"));
  for (std::size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\n') {
      ASSERT_TRUE(i > 0 && message[i - 1] == '\r') << "bare LF at " << i;
    }
    if (message[i] == '\r') {
      ASSERT_TRUE(i + 1 < message.size() && message[i + 1] == '\n') << "bare CR at " << i;
    }
  }
  for (const auto& line : lines_of(message)) EXPECT_LE(line.size(), 78U) << line;
}

TEST(MailMessage, HeadersAsSpecified) {
  const MailMessage m = sample_message();
  const std::string message = render_mail(m);
  EXPECT_EQ(header(message, "Date"), "Sat, 28 Nov 2026 07:00:25 +0000");
  EXPECT_EQ(header(message, "From"), "Referral Office <referrald@hospital.example>");
  EXPECT_EQ(header(message, "To"), "referrals@hospital.example, Night Desk <night@hospital.example>");
  EXPECT_EQ(header(message, "Message-ID"), "<R-20261128-7K3M9-TZQXA.office-email@referrald>");
  EXPECT_EQ(header(message, "MIME-Version"), "1.0");
  // The em dash makes the subject RFC 2047; decoded it is the original.
  const std::string subject = header(message, "Subject");
  EXPECT_TRUE(subject.starts_with("=?UTF-8?B?")) << subject;
  EXPECT_EQ(decode_words(subject), m.subject);
  // The same delivery renders the same way on every attempt (but the date).
  MailMessage again = m;
  again.date = when + 1h;
  const std::string second = render_mail(again);
  EXPECT_EQ(second.substr(second.find("\r\nFrom:")), message.substr(message.find("\r\nFrom:")));
}

TEST(MailMessage, PartsDecodeToTheOriginals) {
  const MailMessage m = sample_message();
  const std::string message = render_mail(m);
  const std::string type = header(message, "Content-Type");
  ASSERT_TRUE(type.starts_with("multipart/mixed; boundary=\"")) << type;
  const std::string boundary = type.substr(type.find('"') + 1, type.rfind('"') - type.find('"') - 1);
  const auto text_start = message.find("--" + boundary + "\r\n");
  const auto pdf_start = message.find("--" + boundary + "\r\n", text_start + 1);
  const auto end = message.find("--" + boundary + "--\r\n");
  ASSERT_NE(text_start, std::string::npos);
  ASSERT_NE(pdf_start, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  const std::string pdf_part = message.substr(pdf_start, end - pdf_start);
  EXPECT_NE(pdf_part.find("Content-Type: application/pdf;\r\n name=\"referral-R-20261128-7K3M9-TZQXA.pdf\""),
            std::string::npos);
  EXPECT_NE(pdf_part.find("Content-Disposition: attachment;\r\n filename=\"referral-R-20261128-7K3M9-TZQXA.pdf\""),
            std::string::npos);
  const std::string body = pdf_part.substr(pdf_part.find("\r\n\r\n") + 4);
  EXPECT_EQ(decode_base64(body), m.attachments[0].data);
  // The boundary occurs nowhere but at the part delimiters.
  std::size_t count = 0;
  for (std::size_t i = message.find(boundary); i != std::string::npos; i = message.find(boundary, i + 1)) ++count;
  EXPECT_EQ(count, 4U);  // the header, two parts, the close
}

TEST(MailMessage, QuotedPrintable) {
  EXPECT_EQ(quoted_printable("a = b\n"), "a =3D b\r\n");
  EXPECT_EQ(quoted_printable("trailing \n"), "trailing=20\r\n");
  EXPECT_EQ(quoted_printable("Zoë"), "Zo=C3=AB\r\n");
  const std::string long_line = quoted_printable(std::string(200, 'x'));
  for (const auto& line : lines_of(long_line)) EXPECT_LE(line.size(), 76U);
  std::string joined;
  for (const auto& line : lines_of(long_line)) joined += line.ends_with("=") ? line.substr(0, line.size() - 1) : line;
  EXPECT_EQ(joined, std::string(200, 'x'));
}

TEST(MailMessage, HeaderTextCannotCarryALineBreak) {
  const std::string injected = encode_header_text("Referral\r\nBcc: someone@evil.example", 9);
  EXPECT_EQ(injected.find('\n'), std::string::npos) << injected;
  EXPECT_EQ(injected, "Referral  Bcc: someone@evil.example");
  // Non-ASCII: encoded words, folded with CRLF + space only.
  const std::string long_name(120, 'a');
  const std::string encoded = encode_header_text("Ünïcödé " + long_name, 9);
  for (std::size_t i = encoded.find('\n'); i != std::string::npos; i = encoded.find('\n', i + 1)) {
    ASSERT_EQ(encoded[i - 1], '\r');
    ASSERT_EQ(encoded[i + 1], ' ');
  }
  EXPECT_EQ(decode_words(encoded), "Ünïcödé " + long_name);
  const auto lines = lines_of(encoded);
  ASSERT_GT(lines.size(), 1U);
  EXPECT_LE(lines[0].size(), 78U - 9U);  // after "Subject: "
  for (const auto& line : lines) EXPECT_LE(line.size(), 76U) << line;
}

TEST(MailMessage, DisplayNamesAreQuotedOrEncoded) {
  MailMessage m = sample_message();
  m.from = {"Office, \"Referrals\"", "a@b.example"};
  m.to = {{"Zoë Ødegård", "z@b.example"}};
  const std::string message = render_mail(m);
  EXPECT_EQ(header(message, "From"), R"("Office, \"Referrals\"" <a@b.example>)");
  const std::string to = header(message, "To");
  EXPECT_TRUE(to.starts_with("=?UTF-8?B?")) << to;
  EXPECT_EQ(decode_words(to.substr(0, to.find(" <"))), "Zoë Ødegård");
  EXPECT_TRUE(to.ends_with(" <z@b.example>"));
}

// Files of the sizes where base64 lines and blocks begin and end: none, one
// byte, a line's 57 bytes and either side of it, and several spool blocks
// and a byte (which also crosses MailStream's chunks).
// Around a base64 line, a stream chunk and spool blocks.
const std::vector<std::size_t> awkward_sizes{0,
                                             1,
                                             56,
                                             57,
                                             58,
                                             MailStream::chunk_bytes,
                                             2 * MailStream::chunk_bytes,
                                             2 * MailStream::chunk_bytes + 1,
                                             3 * SealedSpool::block_size + 1};

std::string random_bytes_of(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xFFu);
  return out;
}

MailMessage with_files(const std::vector<std::string>& files) {
  MailMessage m = sample_message();
  for (std::size_t i = 0; i < files.size(); ++i) {
    m.attachments.push_back({"file-" + std::to_string(i) + ".bin", "application/octet-stream", files[i]});
  }
  return m;
}

std::shared_ptr<const SealedSpool> spooled(const fs::path& dir, const std::string& bytes) {
  auto spool = std::make_shared<SealedSpool>(dir);
  spool->append(bytes);
  spool->finish();
  return spool;
}

// Everything the stream yields, asked for `piece` bytes at a time.
std::string drain(MailStream& stream, std::size_t piece) {
  std::string out;
  std::string buffer(piece, '\0');
  while (const std::size_t n = stream.read(buffer.data(), buffer.size())) out.append(buffer, 0, n);
  return out;
}

// What libcurl sends (the stream read as its read callback asks) is what
// render_mail makes of the whole files: the same boundaries, headers, line
// lengths and CRLFs, whether the files are in memory or in spools, however
// the reads fall across lines, chunks and spool blocks.
TEST(MailStream, IsTheWholeRenderingForFilesOfAwkwardSizes) {
  test::TempDir dir;
  std::vector<std::string> files;
  for (std::size_t i = 0; i < awkward_sizes.size(); ++i) {
    files.push_back(random_bytes_of(awkward_sizes[i], static_cast<unsigned>(i)));
  }
  const MailMessage in_memory = with_files(files);
  const std::string whole = render_mail(in_memory);
  MailMessage in_spools = in_memory;
  for (std::size_t i = 0; i < files.size(); ++i) {
    auto& a = in_spools.attachments[i + 1];  // after the referral PDF
    a.spooled = spooled(dir.path(), a.data);
    a.data.clear();
  }
  EXPECT_TRUE(render_mail(in_spools) == whole);

  for (const MailMessage* m : {&in_memory, static_cast<const MailMessage*>(&in_spools)}) {
    for (const std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{76}, std::size_t{16384},
                                    SealedSpool::block_size, MailStream::chunk_bytes + 3}) {
      MailStream stream(*m);
      ASSERT_EQ(stream.size(), whole.size());
      const std::string streamed = drain(stream, piece);
      ASSERT_EQ(streamed.size(), whole.size()) << "reads of " << piece;
      ASSERT_TRUE(streamed == whole) << "reads of " << piece << ": first difference at "
                                     << std::distance(
                                            whole.begin(),
                                            std::mismatch(whole.begin(), whole.end(), streamed.begin()).first);
    }
  }
  // Each file is one part whose base64 decodes to it.
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string head =
        "filename=\"file-" + std::to_string(i) + ".bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    const auto start = whole.find(head) + head.size();
    const auto end = whole.find("\r\n--=_referrald_", start);
    EXPECT_TRUE(decode_base64(whole.substr(start, end - start)) == files[i]) << awkward_sizes[i] << " bytes";
  }
}

// A retry on a fresh connection makes libcurl rewind (CURLOPT_SEEKFUNCTION):
// from the start, or from any byte, the rest is the message's rest.
TEST(MailStream, GoesBackToTheStartOrAnyByte) {
  test::TempDir dir;
  MailMessage m = with_files({random_bytes_of(2 * MailStream::chunk_bytes + 58, 1), random_bytes_of(57, 2)});
  const std::string whole = render_mail(m);
  m.attachments[1].spooled = spooled(dir.path(), m.attachments[1].data);
  m.attachments[1].data.clear();
  MailStream stream(std::move(m));
  EXPECT_TRUE(drain(stream, 1000) == whole);
  EXPECT_EQ(drain(stream, 1000), "") << "at the end";
  ASSERT_TRUE(stream.seek(0));
  EXPECT_TRUE(drain(stream, 4096) == whole);
  const std::string body_head = "Content-Transfer-Encoding: base64\r\n\r\n";
  const auto first_file = whole.find(body_head, whole.find("file-0.bin")) + body_head.size();
  const std::size_t encoded_chunk = MailStream::chunk_bytes / 57 * 78;
  for (const std::size_t at :
       {std::size_t{0}, std::size_t{5}, first_file, first_file + 1, first_file + encoded_chunk - 1,
        first_file + encoded_chunk, first_file + 2 * encoded_chunk + 3, whole.size() - 1, whole.size()}) {
    ASSERT_TRUE(stream.seek(at)) << at;
    EXPECT_TRUE(drain(stream, 3000) == whole.substr(at)) << "from " << at;
  }
  EXPECT_FALSE(stream.seek(whole.size() + 1));
  // Moved (as into the transfer), it goes on where it was.
  ASSERT_TRUE(stream.seek(first_file + 10));
  MailStream moved(std::move(stream));
  EXPECT_TRUE(drain(moved, 512) == whole.substr(first_file + 10));
}

// A spool block changed on disk under the delivery: reading the message is
// an error (the adapter aborts the transfer before its end), never other bytes.
TEST(MailStream, AFileWhoseSpoolDoesNotOpenIsAnError) {
  test::TempDir dir;
  MailMessage m = with_files({random_bytes_of(2 * SealedSpool::block_size, 3)});
  m.attachments[1].spooled = spooled(dir.path(), m.attachments[1].data);
  m.attachments[1].data.clear();
  const auto file = test::open_spool_file(dir.path());
  ASSERT_FALSE(file.empty());
  test::change_byte(file, SealedSpool::block_size + 16 + 3);  // in the second block
  MailStream stream(std::move(m));
  std::string buffer(4096, '\0');
  std::size_t read = 0;
  EXPECT_THROW(
      {
        while (const std::size_t n = stream.read(buffer.data(), buffer.size())) read += n;
      },
      std::runtime_error);
  EXPECT_LT(read, stream.size());
}

TEST(Mailbox, Parses) {
  EXPECT_EQ(parse_mailbox("a@b.example"), (Mailbox{"", "a@b.example"}));
  EXPECT_EQ(parse_mailbox(" Referral Office <a@b.example> "), (Mailbox{"Referral Office", "a@b.example"}));
  EXPECT_EQ(parse_mailbox(R"("Office, \"R\"" <a@b.example>)"), (Mailbox{R"(Office, "R")", "a@b.example"}));
}

TEST(Mailbox, RefusesWhatCouldInjectOrIsNoAddress) {
  std::string problem;
  EXPECT_FALSE(parse_mailbox("a@b.example\r\nBcc: x@evil.example", &problem));
  EXPECT_EQ(problem, "control characters (line breaks) are not allowed");
  EXPECT_FALSE(parse_mailbox("Name <a@b.example>\n", &problem));
  EXPECT_FALSE(parse_mailbox("no-at-sign", &problem));
  EXPECT_EQ(problem, "expected an address like name@domain");
  EXPECT_FALSE(parse_mailbox("a b@c.example", &problem));
  EXPECT_FALSE(parse_mailbox("Name <a@b.example", &problem));
  EXPECT_FALSE(parse_mailbox("x@b.example>, <y@c.example", &problem));
  EXPECT_FALSE(parse_mailbox("zoë@b.example", &problem));
  EXPECT_FALSE(parse_mailbox("", &problem));
}

CurlResult result(CURLcode code, long reply, std::string error = "error text") {
  return {code, reply, std::move(error)};
}

TEST(SmtpOutcome, ClassesAsProtocolsSection5) {
  EXPECT_EQ(classify_smtp_result(result(CURLE_OK, 250)).kind, OutcomeClass::delivered);
  // 4xx: try again; 5xx: dead now.
  auto o = classify_smtp_result(result(CURLE_SEND_ERROR, 451, "RCPT failed: 451"));
  EXPECT_EQ(o.kind, OutcomeClass::transient);
  EXPECT_EQ(o.code, "451");
  EXPECT_EQ(o.message, "smtp: RCPT failed: 451 (reply 451)");
  EXPECT_EQ(classify_smtp_result(result(CURLE_SEND_ERROR, 421)).kind, OutcomeClass::transient);
  o = classify_smtp_result(result(CURLE_SEND_ERROR, 550, "RCPT failed: 550"));
  EXPECT_EQ(o.kind, OutcomeClass::permanent);
  EXPECT_EQ(o.code, "550");
  EXPECT_EQ(classify_smtp_result(result(CURLE_WEIRD_SERVER_REPLY, 554)).kind, OutcomeClass::permanent);
  EXPECT_EQ(classify_smtp_result(result(CURLE_WEIRD_SERVER_REPLY, 452)).kind, OutcomeClass::transient);
  // Configuration: alert and stop.
  for (CURLcode c : {CURLE_LOGIN_DENIED, CURLE_PEER_FAILED_VERIFICATION, CURLE_USE_SSL_FAILED, CURLE_SSL_CONNECT_ERROR,
                     CURLE_SSL_CACERT_BADFILE}) {
    EXPECT_EQ(classify_smtp_result(result(c, 0)).kind, OutcomeClass::misconfigured) << c;
  }
  EXPECT_EQ(classify_smtp_result(result(CURLE_LOGIN_DENIED, 535)).code, "535");
  EXPECT_EQ(classify_smtp_result(result(CURLE_SEND_ERROR, 530)).kind, OutcomeClass::misconfigured);
  // A handshake that broke off (the connection reset or closed under it)
  // is the network, not the configuration: curl says so only in its message.
  for (const char* broke : {"OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to 127.0.0.1:2525 ",
                            "OpenSSL SSL_connect: Connection reset by peer in connection to 127.0.0.1:2525 ",
                            "error:0A000126:SSL routines::unexpected eof while reading"}) {
    EXPECT_EQ(classify_smtp_result(result(CURLE_SSL_CONNECT_ERROR, 0, broke)).kind, OutcomeClass::transient) << broke;
  }
  EXPECT_EQ(classify_smtp_result(
                result(CURLE_SSL_CONNECT_ERROR, 0, "error:0A000410:SSL routines::sslv3 alert handshake failure"))
                .kind,
            OutcomeClass::misconfigured);
  // No reply code: the network. Try again.
  for (CURLcode c : {CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
                     CURLE_GOT_NOTHING, CURLE_COULDNT_RESOLVE_HOST}) {
    const auto n = classify_smtp_result(result(c, 0));
    EXPECT_EQ(n.kind, OutcomeClass::transient) << c;
    EXPECT_FALSE(n.code.has_value());
  }
}

class SmtpTarget : public ::testing::Test {
 protected:
  TargetConfig target() const {
    TargetConfig t;
    t.name = "office-email";
    t.type = "smtp";
    t.settings["url"] = std::string("smtp://127.0.0.1:2525");
    t.settings["from"] = std::string("Referral Office <referrald@hospital.example>");
    t.settings["to"] = std::vector<std::string>{"referrals@hospital.example"};
    return t;
  }
  test::TempDir dir_;
  CurlPool curl_{1};
  SystemClock clock_;
};

TEST_F(SmtpTarget, PasswordFileIsReadOnceWithoutItsNewline) {
  std::ofstream(dir_ / "pw") << "s3cret\n";
  std::string problem;
  EXPECT_EQ(read_secret_file((dir_ / "pw").string(), &problem), "s3cret");
  std::ofstream(dir_ / "crlf") << "s3cret\r\n";
  EXPECT_EQ(read_secret_file((dir_ / "crlf").string(), &problem), "s3cret");
  std::ofstream(dir_ / "empty") << "\n";
  EXPECT_FALSE(read_secret_file((dir_ / "empty").string(), &problem));
  EXPECT_EQ(problem, "password_file " + (dir_ / "empty").string() + " is empty");

  auto t = target();
  t.settings["username"] = std::string("referrald");
  t.settings["password_file"] = (dir_ / "pw").string();
  EXPECT_FALSE(SmtpAdapter(t, curl_, OfficeConfig{}, clock_).problem());
}

TEST_F(SmtpTarget, AMissingPasswordFileIsMisconfiguredNotAFailedStart) {
  auto t = target();
  t.settings["username"] = std::string("referrald");
  t.settings["password_file"] = (dir_ / "missing").string();
  SmtpAdapter adapter(t, curl_, OfficeConfig{}, clock_);
  ASSERT_TRUE(adapter.problem());
  EXPECT_EQ(*adapter.problem(),
            "cannot read password_file " + (dir_ / "missing").string() + ": No such file or directory");
}

TEST_F(SmtpTarget, RefusesSettingsThatCanNeverWork) {
  auto plain = target();
  plain.settings["starttls"] = std::string("none");
  EXPECT_THROW(SmtpAdapter(plain, curl_, OfficeConfig{}, clock_), std::runtime_error);
  plain.settings["allow_plaintext"] = true;
  EXPECT_NO_THROW(SmtpAdapter(plain, curl_, OfficeConfig{}, clock_));

  auto injected = target();
  injected.settings["from"] = std::string("a@b.example\r\nBcc: x@evil.example");
  try {
    SmtpAdapter adapter(injected, curl_, OfficeConfig{}, clock_);
    FAIL() << "accepted a From with a line break";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "target \"office-email\": from: control characters (line breaks) are not allowed");
  }
  auto only_user = target();
  only_user.settings["username"] = std::string("referrald");
  EXPECT_THROW(SmtpAdapter(only_user, curl_, OfficeConfig{}, clock_), std::runtime_error);
  auto bad_helo = target();
  bad_helo.settings["helo"] = std::string("host name");
  EXPECT_THROW(SmtpAdapter(bad_helo, curl_, OfficeConfig{}, clock_), std::runtime_error);
}

TEST_F(SmtpTarget, MessageIdIsTheDeliverysIdentityOnEveryAttempt) {
  SmtpAdapter adapter(target(), curl_, OfficeConfig{}, clock_);
  Delivery d;
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-email";
  d.identity = "R-20261128-7K3M9-TZQXA.office-email";
  d.received_at = when;
  d.urgency = Urgency::urgent;
  d.document = R"({"patient":{"given_name":"Ava","family_name":"Nguyen"},"referrer":{"name":"Dana Whitfield"}})";
  const std::string first = render_mail(adapter.build_message(d, when));
  d.attempt = 2;
  const std::string second = render_mail(adapter.build_message(d, when + 10min));
  EXPECT_EQ(header(first, "Message-ID"), "<R-20261128-7K3M9-TZQXA.office-email@referrald>");
  EXPECT_EQ(header(second, "Message-ID"), header(first, "Message-ID"));
  EXPECT_EQ(decode_words(header(first, "Subject")), "Referral R-20261128-7K3M9-TZQXA (urgent) — review");
  EXPECT_EQ(first.find("Nguyen"), std::string::npos);  // the patient is in the (base64) PDF only
}

}  // namespace
}  // namespace referrald
