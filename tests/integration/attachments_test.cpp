// Attachments through the real daemon and referralctl: base64 files in the
// JSON API, refused by their bytes with the field named, the limits, the
// files stored encrypted in the referral's own commit (the database files
// hold none of their bytes), their SHA-256 in the 202 answer and the audit
// trail, `referralctl show` and `attachment`, and rekey re-sealing them;
// the files in the office's mail (a real aiosmtpd Maildir, read back with
// Python's email module), each part byte for byte.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "support/harness.hpp"
#include "support/peers.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// util/sealed_spool.hpp's block: what the spool seals and writes at a time.
constexpr std::size_t spool_block = 64 * 1024;

std::string fixture(const std::string& name) { return attachment_fixture(name); }
std::string base64(const std::string& bytes) { return openssl_base64(bytes); }

std::string with_attachments(const json& attachments) {
  auto doc = json::parse(sample("asps-routine.json"));
  doc["attachments"] = attachments;
  return doc.dump();
}

json file(const std::string& title, const std::string& bytes, const std::string& declared = "application/pdf") {
  return attachment_item(title, bytes, declared);
}

// The head of an API POST of `length` bytes (0: chunked).
std::string api_head(std::size_t length) {
  return "POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(Daemon::api_token) +
         "\r\nContent-Type: application/json\r\nConnection: close\r\n" +
         (length == 0 ? std::string("Transfer-Encoding: chunked") : "Content-Length: " + std::to_string(length)) +
         "\r\n\r\n";
}

const std::string small_limits =
    "\n[intake]\nmax_attachments = 3\nmax_attachment_bytes = 4096\n"
    "max_attachments_total_bytes = 8192\n";

// small_limits with a max_body_bytes below what a referral with files
// takes: such a body goes to the spool.
Daemon::Options spooling_options() {
  Daemon::Options options;
  options.extra_http = "max_body_bytes = 4096\n";
  options.extra_config = small_limits;
  return options;
}

TEST(Attachments, FilesAreStoredEncryptedWithTheReferralAndComeBackByteForByte) {
  Daemon::Options options;
  options.extra_config = small_limits;
  Daemon daemon(options);
  daemon.start();
  const std::string pdf = fixture("records.pdf"), jpeg = fixture("image.jpg"), tiff = fixture("image.tif");
  const auto r = daemon.post_referral(
      with_attachments(json::array({file("Pathology report for Linh Nguyen", pdf), file("MRI still", jpeg, "image/png"),
                                    file("Scan", tiff, "image/tiff")})));
  ASSERT_EQ(r.status, 202) << r.body;
  const auto answer = json::parse(r.body);
  const std::string id = answer["id"];
  ASSERT_EQ(answer["attachments"].size(), 3u) << r.body;
  EXPECT_EQ(answer["attachments"][0], json({{"position", 1},
                                            {"content_type", "application/pdf"},
                                            {"bytes", pdf.size()},
                                            {"pages", 2},
                                            {"sha256", openssl_sha256_hex(pdf)}}));
  EXPECT_EQ(answer["attachments"][1]["content_type"], "image/jpeg") << "decided from the bytes, not the declared type";
  EXPECT_EQ(answer["attachments"][1]["sha256"], openssl_sha256_hex(jpeg));
  EXPECT_EQ(answer["attachments"][2]["sha256"], openssl_sha256_hex(tiff));
  EXPECT_EQ(r.body.find("Pathology"), std::string::npos) << "a title may name the patient: not in the stored answer";

  // One commit: the files are there with the referral, and each in the audit trail.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM attachments WHERE referral_id = '" + id + "'"), 3);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE referral_id = '" + id +
                           "' AND action = 'attachment' AND detail LIKE '%sha256=" + openssl_sha256_hex(pdf) + "'"),
            1);
  // No byte of a file, nor a title, in the database's files.
  const std::string bytes = database_bytes(daemon.database());
  ASSERT_NE(bytes.find(id), std::string::npos);
  EXPECT_EQ(bytes.find("Pathology report (test fixture)"), std::string::npos) << "the PDF's text is on disk";
  EXPECT_EQ(bytes.find("Linh Nguyen"), std::string::npos);
  EXPECT_EQ(bytes.find(jpeg.substr(jpeg.size() / 2, 64)), std::string::npos) << "the JPEG's bytes are on disk";
  EXPECT_EQ(bytes.find(base64(pdf).substr(0, 40)), std::string::npos);
  // The stored document is the referral alone.
  EXPECT_FALSE(daemon.stored_document(id).contains("attachments"));

  const std::string config = daemon.config_file().string();
  const auto show = ctl({"--config", config, "show", id, "--json"});
  ASSERT_EQ(show.status, 0) << describe(show);
  const auto listed = show.parsed()["attachments"];
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0], json({{"position", 1},
                             {"title", "Pathology report for Linh Nguyen"},
                             {"content_type", "application/pdf"},
                             {"bytes", pdf.size()},
                             {"pages", 2},
                             {"sha256", openssl_sha256_hex(pdf)}}));
  const auto text = ctl({"--config", config, "show", id});
  EXPECT_NE(text.out.find("MRI still"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(openssl_sha256_hex(tiff)), std::string::npos) << text.out;

  TempDir out;
  const auto written = ctl({"--config", config, "attachment", id, "2", "--output", (out / "mri.jpg").string()});
  ASSERT_EQ(written.status, 0) << describe(written);
  EXPECT_EQ(read_file(out / "mri.jpg"), jpeg);
  struct stat st {};
  ASSERT_EQ(::stat((out / "mri.jpg").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Never over an existing file; no such attachment is exit 1.
  EXPECT_NE(ctl({"--config", config, "attachment", id, "2", "--output", (out / "mri.jpg").string()}).status, 0);
  EXPECT_EQ(read_file(out / "mri.jpg"), jpeg);
  const auto missing = ctl({"--config", config, "attachment", id, "4", "--output", (out / "x").string()});
  EXPECT_EQ(missing.status, 1) << describe(missing);
  EXPECT_FALSE(fs::exists(out / "x"));
}

// The API hands the files back as the referral's GET does: described in it
// (never their bytes), each at its own URL, to the key that sent them and
// to an office key, to no other.
TEST(Attachments, TheApiListsTheFilesAndHandsEachBackToWhoMayReadTheReferral) {
  constexpr const char* other_token = "another-submitting-key";
  constexpr const char* office_token = "office-key-for-attachments";
  Daemon::Options options;
  options.extra_config = small_limits;
  options.extra_http = "office_api_keys = [\"sha256:" + openssl_sha256_hex(office_token) + "\"]\n";
  Daemon daemon(options);
  // A second submitting key beside the harness's own.
  auto config = read_file(daemon.config_file());
  const std::string keys = "api_keys = [\"sha256:";
  config.replace(config.find(keys), keys.size(), keys + openssl_sha256_hex(other_token) + "\", \"sha256:");
  write_file(daemon.config_file(), config);
  daemon.start();

  const std::string pdf = fixture("records.pdf"), jpeg = fixture("image.jpg");
  const auto r =
      daemon.post_referral(with_attachments(json::array({file("Pathology report", pdf), file("MRI", jpeg)})));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];

  const auto got = daemon.get("/api/v1/referrals/" + id);
  ASSERT_EQ(got.status, 200) << got.body;
  const auto listed = json::parse(got.body)["attachments"];
  ASSERT_EQ(listed.size(), 2u) << got.body;
  EXPECT_EQ(listed[0], json({{"position", 1},
                             {"title", "Pathology report"},
                             {"content_type", "application/pdf"},
                             {"bytes", pdf.size()},
                             {"pages", 2},
                             {"sha256", openssl_sha256_hex(pdf)},
                             {"url", "/api/v1/referrals/" + id + "/attachments/1"}}));
  EXPECT_EQ(listed[1]["content_type"], "image/jpeg");
  EXPECT_EQ(got.body.find(base64(jpeg).substr(0, 40)), std::string::npos) << "the GET carries no file's bytes";

  const auto as = [&](const std::string& path, const char* token) {
    HttpRequest request;
    request.url = daemon.base_url() + path;
    request.headers = {"Authorization: Bearer " + std::string(token)};
    return http(request);
  };
  const auto second = daemon.get(listed[1]["url"].get<std::string>());
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.body, jpeg);
  EXPECT_EQ(openssl_sha256_hex(second.body), listed[1]["sha256"]);
  EXPECT_EQ(second.headers.at("content-type"), "image/jpeg");
  EXPECT_EQ(second.headers.at("content-disposition"), "attachment; filename=\"referral-" + id + "-file-2.jpg\"");
  EXPECT_EQ(second.headers.at("cache-control"), "no-store");
  EXPECT_EQ(as("/api/v1/referrals/" + id + "/attachments/1", office_token).body, pdf);

  // Another submitting key sees neither the referral nor its files.
  EXPECT_EQ(as("/api/v1/referrals/" + id, other_token).status, 404);
  const auto other = as("/api/v1/referrals/" + id + "/attachments/1", other_token);
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(other.body.find("%PDF"), std::string::npos);
  EXPECT_EQ(daemon.get("/api/v1/referrals/" + id + "/attachments/1", false).status, 401);
  // No such file; not a position.
  const auto third = daemon.get("/api/v1/referrals/" + id + "/attachments/3");
  EXPECT_EQ(third.status, 404);
  EXPECT_NE(third.body.find("no attachment 3"), std::string::npos) << third.body;
  for (const char* bad : {"0", "01", "x", "1/2", "", "1000"}) {
    const auto answer = daemon.get("/api/v1/referrals/" + id + "/attachments/" + bad);
    EXPECT_EQ(answer.status, 404) << bad;
    EXPECT_NE(answer.body.find("files are numbered 1, 2, 3"), std::string::npos) << bad << ": " << answer.body;
  }
  HttpRequest post;
  post.method = "POST";
  post.url = daemon.base_url() + "/api/v1/referrals/" + id + "/attachments/1";
  post.headers = {"Authorization: Bearer " + std::string(office_token)};
  post.body = "";
  EXPECT_EQ(http(post).status, 405);
}

TEST(Attachments, AFileThatIsNotWhatItClaimsIsRefusedByNameAndNothingIsStored) {
  Daemon::Options options;
  options.extra_config = small_limits;
  Daemon daemon(options);
  daemon.start();
  const auto refusal = [&](const json& attachments) {
    const auto r = daemon.post_referral(with_attachments(attachments));
    EXPECT_EQ(r.status, 422) << r.body;
    return r.status == 422 ? json::parse(r.body)["errors"] : json();
  };
  const std::string executable = read_file("/bin/true").substr(0, 2048);
  auto errors = refusal(json::array({file("ok", fixture("image.png")), file("report.pdf", executable)}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["path"], "/attachments/1/data");
  EXPECT_NE(errors[0]["message"].get<std::string>().find("is not a PDF, JPEG, PNG or TIFF"), std::string::npos);

  errors = refusal(json::array({file("locked", fixture("encrypted.pdf"))}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0]["message"].get<std::string>().find("encrypted"), std::string::npos);

  const std::string pdf = fixture("records.pdf");
  errors = refusal(json::array({file("cut", pdf.substr(0, pdf.size() / 2))}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0]["message"].get<std::string>().find("damaged or cut short"), std::string::npos);

  errors = refusal(json::array({file("big", std::string(5000, 'x'))}));
  EXPECT_EQ(errors[0]["message"], "is 4.8 kB, larger than the 4 kB one file may be");
  errors = refusal(json::array({file("1", pdf), file("2", pdf), file("3", pdf), file("4", pdf)}));
  EXPECT_EQ(errors[0]["message"], "has 4 files; at most 3 may come with one referral");
  errors = refusal(json::array({{{"title", "x"}, {"data", "%%%"}}}));
  EXPECT_EQ(errors[0]["path"], "/attachments/0/data");

  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM attachments"), 0);
}

// max_body_bytes keeps its meaning for a referral without files; one with
// files may be as large as the attachment limits allow.
TEST(Attachments, OnlyAReferralWithFilesMayBeLargerThanMaxBodyBytes) {
  Daemon daemon(spooling_options());
  daemon.start();
  auto padded = json::parse(sample("asps-routine.json")).dump(8);  // whitespace: still a valid referral
  while (padded.size() < 6000) padded += "        ";
  const auto plain = daemon.post_referral(padded);
  EXPECT_EQ(plain.status, 413) << plain.body;

  const std::string tiff = fixture("image.tif"), jpeg = fixture("image.jpg");
  const std::string two_files = with_attachments(json::array({file("a", tiff), file("b", jpeg)}));
  ASSERT_GT(two_files.size(), 4096u);
  const auto with_files = daemon.post_referral(two_files);
  EXPECT_EQ(with_files.status, 202) << with_files.body;

  // Past what the limits allow, the body is refused before it is read.
  const auto huge = daemon.post_referral(with_attachments(json::array({file("x", std::string(40000, 'x'))})));
  EXPECT_EQ(huge.status, 413) << huge.body;
}

// A body over max_body_bytes is read into a sealed spool beside the
// database, chunked or not (docs/attachments.md, "Streaming to disk"): the
// referral and its files are stored as from memory, a repeated
// Idempotency-Key gets the first answer and another body with it a 409 (the
// body's SHA-256 is taken while it is spooled), and no file is left behind.
TEST(Attachments, ALargeBodyIsSpooledChunkedOrNotAndLeavesNoFileBehind) {
  Daemon daemon(spooling_options());
  daemon.start();
  const std::string tiff = fixture("image.tif"), jpeg = fixture("image.jpg");
  const std::string body = with_attachments(json::array({file("Scan", tiff), file("MRI", jpeg)}));
  ASSERT_GT(body.size(), 4096u);

  const auto first = daemon.post_referral(body, {"Idempotency-Key: spooled-1"});
  ASSERT_EQ(first.status, 202) << first.body;
  const auto answer = json::parse(first.body);
  EXPECT_EQ(answer["attachments"][0]["sha256"], openssl_sha256_hex(tiff));
  EXPECT_EQ(answer["attachments"][1]["sha256"], openssl_sha256_hex(jpeg));
  const auto again = daemon.post_referral(body, {"Idempotency-Key: spooled-1"});
  EXPECT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(json::parse(again.body)["id"], answer["id"]);
  const auto other = daemon.post_referral(with_attachments(json::array({file("MRI", jpeg), file("Scan", tiff)})),
                                          {"Idempotency-Key: spooled-1"});
  EXPECT_EQ(other.status, 409) << other.body;

  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  const auto chunked =
      raw_request(daemon.port(), "POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                     std::string(Daemon::api_token) +
                                     "\r\nContent-Type: application/json\r\nTransfer-Encoding: "
                                     "chunked\r\nConnection: close\r\n\r\n" +
                                     size + "\r\n" + body + "\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(chunked), 202) << chunked;

  // While a body is read, it is in an unlinked file beside the database;
  // once answered, the file is gone.
  ASSERT_TRUE(wait_until([&] { return open_spools(daemon).empty(); }, 10s)) << "a spool outlived its request";
  {
    RawClient client(daemon.port());
    ASSERT_TRUE(send_all(client, api_head(body.size()) + body.substr(0, body.size() / 2)));
    EXPECT_TRUE(wait_until([&] { return open_spools(daemon).size() == 1; }, 10s)) << "no spool while the body is read";
    ASSERT_TRUE(send_all(client, body.substr(body.size() / 2)));
    ASSERT_TRUE(client.wait_closed(30s));
    EXPECT_EQ(status_of(client.received()), 202) << client.received();
  }
  EXPECT_TRUE(wait_until([&] { return open_spools(daemon).empty(); }, 10s)) << "a spool outlived its request";

  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 3);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM attachments"), 6);
}

// What can go wrong with a spooled body: it stops half way (the client went
// away), it is chunked past the limit, its file is changed on disk while it
// is read, or a file in it is not base64. Never a crash, nothing stored, and
// no spool left open.
TEST(Attachments, ASpooledBodyCutShortOverTheLimitTamperedOrNotBase64StoresNothing) {
  Daemon::Options options;
  options.extra_http = "max_body_bytes = 4096\n";
  options.extra_config =
      "\n[intake]\nmax_attachments = 3\nmax_attachment_bytes = 1048576\n"
      "max_attachments_total_bytes = 2097152\n";
  Daemon daemon(options);
  daemon.start();
  const auto referrals = [&daemon] { return count_rows(daemon.database(), "SELECT count(*) FROM referrals"); };

  // Cut short: a chunk announced and not sent, then the connection closed.
  {
    RawClient client(daemon.port());
    ASSERT_TRUE(send_all(client, api_head(0) + "2000\r\n" + std::string(100, ' ')));
    EXPECT_TRUE(wait_until([&] { return open_spools(daemon).size() == 1; }, 10s));
  }
  EXPECT_TRUE(wait_until([&] { return open_spools(daemon).empty(); }, 10s)) << "the cut-short body's spool is open";

  // Chunked past what the limits allow (about 2.9 MB here): 413 once the
  // third chunk of 1 MB is announced, however it is framed.
  {
    const std::string megabyte(1024 * 1024, ' ');
    RawClient client(daemon.port());
    ASSERT_TRUE(
        send_all(client, api_head(0) + "100000\r\n" + megabyte + "\r\n100000\r\n" + megabyte + "\r\n100000\r\n"));
    ASSERT_TRUE(client.wait_closed(30s));
    EXPECT_EQ(status_of(client.received()), 413) << client.received().substr(0, 300);
  }

  // Not base64: 422 naming the file's field, as from memory.
  {
    const auto bad =
        daemon.post_referral(with_attachments(json::array({{{"title", "Scan"}, {"data", std::string(6000, '!')}}})));
    EXPECT_EQ(bad.status, 422) << bad.body;
    const auto errors = json::parse(bad.body)["errors"];
    ASSERT_EQ(errors.size(), 1u) << bad.body;
    EXPECT_EQ(errors[0]["path"], "/attachments/0/data");
    EXPECT_NE(errors[0]["message"].get<std::string>().find("base64"), std::string::npos) << bad.body;
  }

  // Changed on disk while it is read: the block does not open, and the
  // request is refused (503, nothing stored) without harm to the daemon.
  {
    std::string body = with_attachments(json::array({file("Scan", fixture("image.tif"))}));
    body.append(3 * spool_block - body.size() % spool_block, ' ');  // JSON allows trailing whitespace
    RawClient client(daemon.port());
    ASSERT_TRUE(send_all(client, api_head(body.size()) + body.substr(0, 2 * spool_block)));
    fs::path spool;
    ASSERT_TRUE(wait_until(
        [&] {
          const auto open = open_spools(daemon);
          if (open.size() == 1) spool = open[0];
          // Its first block is written once the second has begun.
          std::error_code ec;
          return !spool.empty() && fs::file_size(spool, ec) > spool_block && !ec;
        },
        10s));
    {
      std::fstream f(spool, std::ios::in | std::ios::out | std::ios::binary);
      ASSERT_TRUE(f.good());
      f.seekp(100);
      f.write("tampered", 8);
    }
    ASSERT_TRUE(send_all(client, body.substr(2 * spool_block)));
    ASSERT_TRUE(client.wait_closed(30s));
    const int status = status_of(client.received());
    EXPECT_TRUE(status == 503 || status == 500) << client.received();
    EXPECT_EQ(client.received().find("Scan"), std::string::npos);
  }
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
  EXPECT_EQ(referrals(), 0);
  EXPECT_TRUE(wait_until([&] { return open_spools(daemon).empty(); }, 10s));
  // And the daemon goes on taking spooled bodies.
  const auto ok = daemon.post_referral(with_attachments(json::array({file("Scan", fixture("image.tif"))})) +
                                       std::string(5000, ' '));
  EXPECT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(referrals(), 1);
}

// A large body's head without a valid key is answered before its body: the
// daemon does not wait for (or keep on disk) what it will refuse anyway.
TEST(Attachments, ALargeBodyWithoutAValidKeyIsRefusedBeforeItIsRead) {
  Daemon daemon(spooling_options());
  daemon.start();
  for (const std::string framing : {"Content-Length: 9000", "Transfer-Encoding: chunked"}) {
    // The head only: the body never comes.
    const auto answer = raw_request(daemon.port(),
                                    "POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                                    "Content-Type: application/json\r\n" +
                                        framing + "\r\n\r\n");
    EXPECT_EQ(status_of(answer), 401) << framing << ": " << answer;
  }
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

TEST(Attachments, RekeySealsTheFilesAgainUnderTheNewKey) {
  Daemon::Options options;
  options.extra_config = small_limits;
  Daemon daemon(options);
  const std::string key_a = read_file(daemon.key_file());
  daemon.start();
  const std::string png = fixture("image.png");
  const auto r = daemon.post_referral(with_attachments(json::array({file("Photo", png)})));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  EXPECT_EQ(daemon.stop(), 0);

  const std::string key_b = new_key_line("test-2");
  write_key_file(daemon.key_file(), key_b + key_a);
  const std::string config = daemon.config_file().string();
  const auto rekey = ctl({"--config", config, "rekey", "--json"});
  ASSERT_EQ(rekey.status, 0) << describe(rekey);
  EXPECT_EQ(rekey.parsed()["attachments_examined"], 1);
  EXPECT_EQ(rekey.parsed()["attachments_rekeyed"], 1);
  // Sealed under test-2 now (read with SQL: "RFE", version 1, the id's length, the id).
  const std::string sealed_b = "CAST('RFE' || char(1) || char(6) || 'test-2' AS BLOB)";
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM attachments WHERE substr(data, 1, 11) = " + sealed_b +
                                              " AND substr(title, 1, 11) = " + sealed_b),
            1);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE action = 'rekeyed' AND "
                       "detail = 'attachment=1 from=test-1 to=test-2'"),
            1);
  const auto again = ctl({"--config", config, "rekey"});
  EXPECT_NE(again.out.find("0 attachments (1 already under it)"), std::string::npos) << describe(again);

  // Without the old key the file still reads, byte for byte.
  write_key_file(daemon.key_file(), key_b);
  TempDir out;
  const auto written = ctl({"--config", config, "attachment", id, "1", "-o", (out / "photo.png").string()});
  ASSERT_EQ(written.status, 0) << describe(written);
  EXPECT_EQ(read_file(out / "photo.png"), png);
}

TEST(Attachments, TheOfficesMailCarriesEachFileByteForByteInItsOwnPart) {
  MailServer server({});
  TempDir work;
  Daemon::Options options;
  options.with_default_targets = false;
  options.extra_config =
      small_limits + smtp_target(server, work / "secrets") + "\n[[route]]\nnotify = [\"office-email\"]\n";
  Daemon daemon(options);
  daemon.start();
  const std::string pdf = fixture("records.pdf"), jpeg = fixture("image.jpg");
  const auto r = daemon.post_referral(with_attachments(json::array({file("Pathology", pdf), file("MRI", jpeg)})));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  ASSERT_TRUE(wait_until([&] { return server.messages().size() == 1; }, 30s)) << server.log() << daemon.log();

  const auto mail = mail_parts(server.messages()[0], work.path());
  EXPECT_EQ(mail["defects"], 0);
  const auto& parts = mail["parts"];
  ASSERT_EQ(parts.size(), 4u) << mail.dump();
  EXPECT_EQ(parts[0]["type"], "text/plain");
  EXPECT_EQ(parts[1]["filename"], "referral-" + id + ".pdf");
  EXPECT_EQ(parts[2]["type"], "application/pdf");
  EXPECT_EQ(parts[2]["filename"], "referral-" + id + "-file-1.pdf");
  EXPECT_EQ(parts[2]["sha256"], openssl_sha256_hex(pdf));
  EXPECT_EQ(parts[3]["type"], "image/jpeg");
  EXPECT_EQ(parts[3]["filename"], "referral-" + id + "-file-2.jpg");
  EXPECT_EQ(parts[3]["sha256"], openssl_sha256_hex(jpeg));
  const std::string text = parts[0]["text"];
  EXPECT_NE(text.find(openssl_sha256_hex(jpeg)), std::string::npos) << text;
  EXPECT_EQ(text.find("Pathology"), std::string::npos) << "a title may name the patient: not in the text part";
}

}  // namespace
}  // namespace referrald::test
