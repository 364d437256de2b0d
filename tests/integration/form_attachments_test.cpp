// The web form's files through the real daemon: a multipart/form-data body
// as a browser sends it (the fields, then the file input's parts), the files
// inspected and stored as the API's are (referralctl reads them back byte
// for byte), refused files named next to the file input, good ones held for
// the form when it comes back with errors (listed, removable, bound to the
// browser), and malformed bodies answered 400 with nothing stored. The
// parser alone: tests/unit/multipart_test.cpp; a browser: tests/browser.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>
#include <regex>
#include <utility>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;

std::string fixture(const std::string& name) {
  return read_file(source_dir() / "tests" / "data" / "attachments" / name);
}

struct FilePart {
  std::string filename;
  std::string data;
  std::string content_type = "application/octet-stream";
};

constexpr const char* boundary = "----referraldTestBoundary7MA4YWxkTrZu0gW";

// The body a browser sends (RFC 7578): every field, then the file input's
// parts; a file input left empty is one part with an empty name and no bytes.
std::string multipart(const Fields& fields, const std::vector<FilePart>& files) {
  std::string out;
  for (const auto& [name, value] : fields) {
    out += std::string("--") + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value +
           "\r\n";
  }
  const auto empty = std::vector<FilePart>{{"", "", "application/octet-stream"}};
  for (const auto& f : files.empty() ? empty : files) {
    out += std::string("--") + boundary + "\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"" +
           f.filename + "\"\r\nContent-Type: " + f.content_type + "\r\n\r\n" + f.data + "\r\n";
  }
  return out + "--" + boundary + "--\r\n";
}

const std::string content_type = std::string("multipart/form-data; boundary=") + boundary;

Fields with_tokens(const Browser& b, Fields fields) {
  fields.insert(fields.begin(), {{"csrf_token", b.csrf}, {"submission_token", b.submission}});
  return fields;
}

HttpResult send(Browser& b, const Fields& fields, const std::vector<FilePart>& files) {
  return b.post_raw(multipart(with_tokens(b, fields), files), {}, content_type);
}

// The ids of the files a re-shown form holds, in order.
std::vector<std::string> held_ids(const std::string& page) {
  std::vector<std::string> out;
  const std::regex re(R"re(name="kept_attachment" value="([0-9a-f]{32})")re");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[1]);
  }
  return out;
}

// An executable (ELF header) that calls itself a PDF.
const std::string executable = std::string(
                                   "\x7f"
                                   "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
                                   16) +
                               std::string(600, 'x');

class FormFiles : public ::testing::Test {
 protected:
  // The [intake] limits: `max_attachment_bytes` and the total.
  virtual std::pair<int, int> file_limits() const { return {2600, 8192}; }
  void SetUp() override {
    Daemon::Options options;
    // The form's POST may be larger than this when it carries files.
    options.extra_http = "max_body_bytes = 4096\n";
    const auto [each, total] = file_limits();
    options.extra_config = "\n[intake]\nmax_attachments = 3\nmax_attachment_bytes = " + std::to_string(each) +
                           "\nmax_attachments_total_bytes = " + std::to_string(total) + "\n";
    daemon = std::make_unique<Daemon>(options);
    daemon->start();
  }
  long long referrals() { return count_rows(daemon->database(), "SELECT count(*) FROM referrals"); }
  long long stored_files() { return count_rows(daemon->database(), "SELECT count(*) FROM attachments"); }
  // The stored referral's files as `referralctl show --json` lists them.
  json files_of(const HttpResult& r) {
    const std::string id = r.headers.at("location").substr(std::string("/referrals/").size());
    const auto show = ctl({"--config", daemon->config_file().string(), "show", id, "--json"});
    EXPECT_EQ(show.status, 0) << describe(show);
    return show.parsed()["attachments"];
  }
  std::unique_ptr<Daemon> daemon;
};

TEST_F(FormFiles, FilesAreStoredWithTheReferralByteForByte) {
  Browser b{*daemon};
  b.open_form();
  const auto pdf = fixture("records.pdf"), jpeg = fixture("image.jpg");
  const auto r = send(b, valid_fields(), {{"Pathology report.pdf", pdf, "application/pdf"}, {"MRI.jpg", jpeg}});
  ASSERT_EQ(r.status, 303) << r.body;
  const auto files = files_of(r);
  ASSERT_EQ(files.size(), 2u) << files;
  EXPECT_EQ(files[0]["title"], "Pathology report.pdf");
  EXPECT_EQ(files[0]["content_type"], "application/pdf");
  EXPECT_EQ(files[0]["sha256"], openssl_sha256_hex(pdf));
  EXPECT_EQ(files[1]["title"], "MRI.jpg");
  EXPECT_EQ(files[1]["content_type"], "image/jpeg") << "from the bytes, not the declared octet-stream";
  EXPECT_EQ(files[1]["sha256"], openssl_sha256_hex(jpeg));
}

// The intake's larger body limit covers the form's POST: files past
// max_body_bytes are taken, a body past what the limits allow is a 413 page.
TEST_F(FormFiles, TheFormsPostMayBeAsLargeAsTheAttachmentLimitsAllow) {
  Browser b{*daemon};
  b.open_form();
  const std::vector<FilePart> files{
      {"a.pdf", fixture("records.pdf")}, {"b.jpg", fixture("image.jpg")}, {"c.png", fixture("image.png")}};
  ASSERT_GT(multipart(with_tokens(b, valid_fields()), files).size(), 4096u);
  EXPECT_EQ(send(b, valid_fields(), files).status, 303);

  const auto r = send(b, valid_fields(), {{"huge.pdf", std::string(40000, 'x')}});
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("Nothing was stored."), std::string::npos) << r.body;
  EXPECT_EQ(referrals(), 1);
}

// The form's submission token is its Idempotency-Key, and what it covers
// includes the files: the same form with the same files sent again (a
// double click, the back button) is the first referral; the same form with
// another file is a conflict, and nothing more is stored.
TEST_F(FormFiles, TheSameFormSentTwiceIsOneReferralAndAnotherFileWithItAConflict) {
  Browser b{*daemon};
  b.open_form();
  const auto pdf = fixture("records.pdf"), jpeg = fixture("image.jpg");
  const auto first = send(b, valid_fields(), {{"a.pdf", pdf}, {"b.jpg", jpeg}});
  ASSERT_EQ(first.status, 303) << first.body;
  const auto again = send(b, valid_fields(), {{"a.pdf", pdf}, {"b.jpg", jpeg}});
  ASSERT_EQ(again.status, 303) << again.body;
  EXPECT_EQ(again.headers.at("location"), first.headers.at("location"));
  const auto other = send(b, valid_fields(), {{"a.pdf", pdf}, {"b.jpg", fixture("image.png")}});
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_EQ(referrals(), 1);
  EXPECT_EQ(stored_files(), 2);
}

TEST_F(FormFiles, AMultipartFormWithoutFilesIsStoredAsBefore) {
  Browser b{*daemon};
  b.open_form();
  const auto r = send(b, valid_fields(), {});
  ASSERT_EQ(r.status, 303) << r.body;
  EXPECT_EQ(files_of(r).size(), 0u);
  // And the urlencoded form (a page opened before an upgrade) still works.
  Browser old{*daemon};
  old.open_form();
  EXPECT_EQ(old.post(valid_fields()).status, 303);
  EXPECT_EQ(referrals(), 2);
}

TEST_F(FormFiles, ARefusedFileIsNamedAndTheGoodOnesAreHeldUntilTheFormIsSent) {
  Browser b{*daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "referrer.npi", "1234567890");  // bad check digit
  const auto pdf = fixture("records.pdf");
  auto r = send(b, fields, {{"records.pdf", pdf, "application/pdf"}, {"scan.pdf", executable, "application/pdf"}});
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(referrals(), 0);
  EXPECT_EQ(stored_files(), 0);
  // The refusal names the file, in the summary and next to the file input.
  const std::string message =
      "Attachment 2 (scan.pdf) is not a PDF, JPEG, PNG or TIFF file (decided from its bytes, not its name or declared "
      "type).";
  EXPECT_NE(r.body.find("<a href=\"#attachments\">" + message + "</a>"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("<p class=\"field-message\" id=\"attachments-error\"><span class=\"visually-hidden\">Error: "
                        "</span>" +
                        message + "</p>"),
            std::string::npos);
  EXPECT_NE(r.body.find(R"(aria-invalid="true" aria-describedby="attachments-hint attachments-error")"),
            std::string::npos);
  EXPECT_NE(r.body.find("NPI is not a valid NPI"), std::string::npos);
  EXPECT_NE(r.body.find(R"(value="Delta Pediatrics")"), std::string::npos) << "the form's values are kept";
  // The good file is held and listed (title, type, size); the refused one is not.
  auto ids = held_ids(r.body);
  ASSERT_EQ(ids.size(), 1u) << r.body;
  EXPECT_NE(r.body.find("<span class=\"held-title\">records.pdf</span> <span class=\"held-size\">(PDF, 910 bytes)"),
            std::string::npos);
  EXPECT_EQ(r.body.find("held-title\">scan.pdf"), std::string::npos);

  // Corrected and sent with the held file only: stored with it.
  set_field(fields, "referrer.npi", "1234567893");
  fields.emplace_back("kept_attachment", ids[0]);
  r = send(b, fields, {});
  ASSERT_EQ(r.status, 303) << r.body;
  const auto files = files_of(r);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0]["title"], "records.pdf");
  EXPECT_EQ(files[0]["sha256"], openssl_sha256_hex(pdf));
}

TEST_F(FormFiles, AHeldFileCanBeRemovedAndIsHeldOnlyForItsBrowser) {
  Browser b{*daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "referrer.email", "");
  auto r = send(b, fields, {{"a.pdf", fixture("records.pdf")}, {"b.png", fixture("image.png")}});
  ASSERT_EQ(r.status, 422) << r.body;
  const auto ids = held_ids(r.body);
  ASSERT_EQ(ids.size(), 2u) << r.body;

  // Another browser with the same ids (and its own tokens) gets none of them.
  Browser other{*daemon};
  other.open_form();
  other.submission = b.submission;
  auto stolen = valid_fields();
  stolen.emplace_back("kept_attachment", ids[0]);
  r = send(other, stolen, {});
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("1 file chosen earlier was no longer held"), std::string::npos) << r.body;
  EXPECT_EQ(referrals(), 0);

  // The PNG ticked "Remove": stored with the PDF alone.
  set_field(fields, "referrer.email", "dwhitfield@example.org");
  fields.emplace_back("kept_attachment", ids[0]);
  fields.emplace_back("kept_attachment", ids[1]);
  fields.emplace_back("remove_attachment", ids[1]);
  r = send(b, fields, {});
  ASSERT_EQ(r.status, 303) << r.body;
  const auto files = files_of(r);
  ASSERT_EQ(files.size(), 1u) << files;
  EXPECT_EQ(files[0]["title"], "a.pdf");
}

TEST_F(FormFiles, AnOversizedFileGetsTheLimitInItsMessage) {
  Browser b{*daemon};
  b.open_form();
  const auto tiff = fixture("image.tif");  // 2706 bytes, over 2600
  const auto r = send(b, valid_fields(), {{"big.tif", tiff, "image/tiff"}});
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("Attachment 1 (big.tif) is 2.6 kB, larger than the 2.5 kB one file may be."), std::string::npos)
      << r.body;
  EXPECT_TRUE(held_ids(r.body).empty());
  EXPECT_EQ(referrals(), 0);
}

TEST_F(FormFiles, MalformedBodiesAreA400AndStoreNothing) {
  Browser b{*daemon};
  b.open_form();
  const auto good = multipart(with_tokens(b, valid_fields()), {{"records.pdf", fixture("records.pdf")}});
  const auto expect_400 = [&](const std::string& body, const std::string& type, const std::string& says) {
    const auto r = b.post_raw(body, {}, type);
    EXPECT_EQ(r.status, 400) << says << "\n" << r.body;
    EXPECT_NE(r.body.find(says), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("Nothing was stored"), std::string::npos);
  };
  expect_400(good, "multipart/form-data", "without the boundary that separates its parts");
  expect_400(good, "multipart/form-data; boundary=", "without the boundary that separates its parts");
  // Cut short: the closing boundary never came.
  expect_400(good.substr(0, good.size() / 2), content_type, "cut short");
  expect_400(good.substr(0, good.rfind("--" + std::string(boundary) + "--")), content_type, "cut short");
  // A file name that carries a header of its own (CR LF inside the quotes).
  {
    std::string body = good;
    const std::string name = "filename=\"records.pdf\"";
    body.replace(body.find(name), name.size(),
                 "filename=\"x.pdf\r\nContent-Disposition: form-data; name=\"patient.given_name\"\"");
    expect_400(body, content_type, "has its content-disposition header twice");
  }
  // A part that is not a form field, a part that holds parts, a file in a text field.
  expect_400(std::string("--") + boundary + "\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + boundary + "--\r\n",
             content_type, "does not say which field it is");
  expect_400(std::string("--") + boundary +
                 "\r\nContent-Disposition: form-data; name=\"notes\"\r\nContent-Type: multipart/mixed; "
                 "boundary=inner\r\n\r\n--inner\r\n\r\nx\r\n--inner--\r\n\r\n--" +
                 boundary + "--\r\n",
             content_type, "holds parts of its own");
  expect_400(std::string("--") + boundary +
                 "\r\nContent-Disposition: form-data; name=\"notes\"; filename=\"n.txt\"\r\n\r\nx\r\n--" + boundary +
                 "--\r\n",
             content_type, "is a file, in a field that takes none");
  EXPECT_EQ(referrals(), 0);
  EXPECT_EQ(stored_files(), 0);
  // And the well-formed body is stored.
  EXPECT_EQ(b.post_raw(good, {}, content_type).status, 303);
}

// ---- a form's body over max_body_bytes: read from its spool ----

// util/sealed_spool.hpp's block: what the spool seals and writes at a time.
constexpr std::size_t spool_block = 64 * 1024;

// Files of several spool blocks: up to 1 MB each.
class SpooledForm : public FormFiles {
 protected:
  std::pair<int, int> file_limits() const override { return {1048576, 2097152}; }
};

// GMime reads the body from its spool, the file goes from it into a spool
// of its own, is inspected from that and stored: what referralctl writes
// out is the file sent, byte for byte, and no spool is left open.
TEST_F(SpooledForm, AFileOfManySpoolBlocksIsStoredByteForByte) {
  Browser b{*daemon};
  b.open_form();
  const auto pdf = large_pdf(5 * spool_block + 1234), jpeg = fixture("image.jpg");
  const auto r = send(b, valid_fields(), {{"scan.pdf", pdf, "application/pdf"}, {"MRI.jpg", jpeg}});
  ASSERT_EQ(r.status, 303) << r.body;
  const auto files = files_of(r);
  ASSERT_EQ(files.size(), 2u) << files;
  EXPECT_EQ(files[0]["content_type"], "application/pdf");
  EXPECT_EQ(files[0]["pages"], 1);
  EXPECT_EQ(files[0]["bytes"], pdf.size());
  EXPECT_EQ(files[0]["sha256"], openssl_sha256_hex(pdf));
  EXPECT_EQ(files[1]["sha256"], openssl_sha256_hex(jpeg));
  TempDir out;
  const std::string id = r.headers.at("location").substr(std::string("/referrals/").size());
  const auto written =
      ctl({"--config", daemon->config_file().string(), "attachment", id, "1", "--output", (out / "scan.pdf").string()});
  ASSERT_EQ(written.status, 0) << describe(written);
  EXPECT_EQ(openssl_sha256_hex(read_file(out / "scan.pdf")), openssl_sha256_hex(pdf));
  EXPECT_TRUE(wait_until([&] { return open_spools(*daemon).empty(); }, std::chrono::seconds(10)))
      << "a spool outlived its request";
}

// The body's spool changed on disk while it was read (its first block no
// longer opens when GMime reads it): a 503 page, nothing stored, no spool
// left open, and the daemon takes the next form.
TEST_F(SpooledForm, ABodyChangedOnDiskIsA503AndStoresNothing) {
  Browser b{*daemon};
  b.open_form();
  const auto body = multipart(with_tokens(b, valid_fields()), {{"scan.pdf", large_pdf(3 * spool_block)}});
  const std::string head = "POST /referrals HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(daemon->port()) +
                           "\r\nCookie: " + b.cookie + "\r\nContent-Type: " + content_type +
                           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  {
    RawClient client(daemon->port());
    ASSERT_TRUE(send_all(client, head + body.substr(0, 2 * spool_block)));
    std::filesystem::path spool;
    ASSERT_TRUE(wait_until(
        [&] {
          const auto open = open_spools(*daemon);
          if (open.size() == 1) spool = open[0];
          // Its first block is written once the second has begun.
          std::error_code ec;
          return !spool.empty() && std::filesystem::file_size(spool, ec) > spool_block && !ec;
        },
        std::chrono::seconds(10)));
    {
      std::fstream f(spool, std::ios::in | std::ios::out | std::ios::binary);
      ASSERT_TRUE(f.good());
      f.seekp(100);
      f.write("tampered", 8);
    }
    ASSERT_TRUE(send_all(client, body.substr(2 * spool_block)));
    ASSERT_TRUE(client.wait_closed(std::chrono::seconds(30)));
    EXPECT_EQ(status_of(client.received()), 503) << client.received().substr(0, 400);
    EXPECT_NE(client.received().find("Nothing was stored"), std::string::npos);
    EXPECT_NE(client.received().find("Retry-After: 30"), std::string::npos);
  }
  EXPECT_EQ(referrals(), 0);
  EXPECT_TRUE(wait_until([&] { return open_spools(*daemon).empty(); }, std::chrono::seconds(10)));
  b.open_form();
  EXPECT_EQ(send(b, valid_fields(), {{"scan.pdf", large_pdf(2 * spool_block)}}).status, 303);
  EXPECT_EQ(referrals(), 1);
}

}  // namespace
}  // namespace referrald::test
