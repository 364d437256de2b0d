// The web form's multipart/form-data bodies (http/multipart.hpp) and the
// files held for a form that came back with errors (http/kept_files.hpp).
// No daemon: the real daemon's handling is tests/integration/form_attachments_test.cpp.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include "http/kept_files.hpp"
#include "http/multipart.hpp"
#include "spool_file.hpp"
#include "util/crypto.hpp"
#include "util/file_reader.hpp"
#include "util/sealed_spool.hpp"

namespace referrald::test {
namespace {

using http::multipart_boundary;
using http::MultipartForm;
using http::parse_multipart_form;

std::string part(const std::string& head, const std::string& content) {
  return "--b0\r\n" + head + "\r\n\r\n" + content + "\r\n";
}

const std::string close = "--b0--\r\n";

TEST(Multipart, TheBoundaryComesFromTheContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk"),
            "----WebKitFormBoundary7MA4YWxk");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data; boundary=\"a b\""), "a b");
  EXPECT_EQ(multipart_boundary("multipart/form-data"), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary="), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/mixed; boundary=x"), std::nullopt);
  EXPECT_EQ(multipart_boundary("application/x-www-form-urlencoded"), std::nullopt);
}

TEST(Multipart, FieldsAndFilesComeInOrderWithTheirBytesUnchanged) {
  // A NUL, a byte that is no UTF-8 and a line that starts like a boundary.
  constexpr char bytes[] = "%PDF-1.4\r\n\0\xff\r\n--b\r\nnot a boundary\r\n";
  const std::string binary(bytes, sizeof bytes - 1);
  const auto body = part("Content-Disposition: form-data; name=\"notes\"", "line one\r\nline two") +
                    part("Content-Disposition: form-data; name=\"patient.given_name\"", "Łucja") +
                    part(
                        "Content-Disposition: form-data; name=\"attachments\"; filename=\"scans/rapport été.pdf\"\r\n"
                        "Content-Type: application/pdf",
                        binary) +
                    part("Content-Disposition: form-data; name=\"attachments\"; filename=\"empty.png\"", "") + close;
  auto parsed = parse_multipart_form("b0", body, "attachments");
  ASSERT_TRUE(std::holds_alternative<MultipartForm>(parsed)) << std::get<std::string>(parsed);
  const auto& form = std::get<MultipartForm>(parsed);
  ASSERT_EQ(form.fields.size(), 2u);
  EXPECT_EQ(form.fields[0], (std::pair<std::string, std::string>{"notes", "line one\r\nline two"}));
  EXPECT_EQ(form.fields[1].second, "Łucja");
  ASSERT_EQ(form.files.size(), 2u);
  EXPECT_EQ(form.files[0].filename, "rapport été.pdf") << "the last segment of a path";
  EXPECT_EQ(form.files[0].data, binary);
  EXPECT_EQ(form.files[1].filename, "empty.png");
  EXPECT_EQ(form.files[1].data, "");
}

TEST(Multipart, AFileInputLeftEmptyIsNoFile) {
  const auto body = part(
                        "Content-Disposition: form-data; name=\"attachments\"; filename=\"\"\r\n"
                        "Content-Type: application/octet-stream",
                        "") +
                    close;
  auto parsed = parse_multipart_form("b0", body, "attachments");
  ASSERT_TRUE(std::holds_alternative<MultipartForm>(parsed)) << std::get<std::string>(parsed);
  EXPECT_TRUE(std::get<MultipartForm>(parsed).files.empty());
}

std::string refusal(const std::string& body, const http::MultipartLimits& limits = {}) {
  auto parsed = parse_multipart_form("b0", body, "attachments", limits);
  if (const auto* why = std::get_if<std::string>(&parsed)) return *why;
  return "(accepted)";
}

TEST(Multipart, WhatABrowserNeverSendsIsRefusedWithAReason) {
  const auto field = part("Content-Disposition: form-data; name=\"notes\"", "x");
  EXPECT_EQ(refusal(field), "The form's body was cut short (it does not end with its closing boundary).");
  EXPECT_EQ(refusal(field + "--b0"), "The form's body was cut short (it does not end with its closing boundary).");
  EXPECT_EQ(refusal(close), "The form was sent without any field.");
  EXPECT_EQ(refusal(part("Content-Type: text/plain", "x") + close),
            "Part 1 of the form does not say which field it is (Content-Disposition: form-data; name=...).");
  EXPECT_EQ(refusal(field + part("Content-Disposition: attachment; name=\"notes\"", "x") + close),
            "Part 2 of the form does not say which field it is (Content-Disposition: form-data; name=...).");
  EXPECT_EQ(refusal(part("Content-Disposition: form-data; name=\"notes\"\r\n"
                         "Content-Disposition: form-data; name=\"urgency\"",
                         "x") +
                    close),
            "Part 1 of the form has its content-disposition header twice.");
  EXPECT_EQ(refusal(part("Content-Disposition: form-data; name=\"notes\"\r\nContent-Type: multipart/mixed; boundary=i",
                         "--i\r\n\r\nx\r\n--i--") +
                    close),
            "Part 1 of the form holds parts of its own; a form's part is one field or one file.");
  EXPECT_EQ(refusal(part("Content-Disposition: form-data; name=\"notes\"; filename=\"a.txt\"", "x") + close),
            "Part 1 of the form is a file, in a field that takes none.");
  EXPECT_EQ(refusal(part("Content-Disposition: form-data; name=\"attachments\"", "x") + close),
            "Part 1 of the form is in the files' field but is not a file.");
  EXPECT_EQ(refusal(part("Content-Disposition: form-data; name=\"notes\"", "\xff\xfe") + close),
            "The form's text was damaged on the way (it was not valid UTF-8).");
  EXPECT_EQ(refusal("--b0\r\nContent-Disposition: form-data; name=\"notes\"\r\n" + std::string(9000, 'x') + close),
            "Part 1 of the form has headers longer than 8 kB, or they do not end.");
}

// Only a part's Content-Type says it holds parts: a field's name may hold
// any text in its quotes (found by fuzz_multipart: a form it took came
// back refused when written out again). A folded Content-Type still counts.
TEST(Multipart, OnlyTheContentTypeSaysAPartHoldsParts) {
  const auto parsed = parse_multipart_form(
      "b0", part("Content-Disposition: form-data; name=\"notes multipart/mixed message/rfc822\"", "x") + close,
      "attachments", {});
  ASSERT_TRUE(std::holds_alternative<MultipartForm>(parsed)) << std::get<std::string>(parsed);
  EXPECT_EQ(std::get<MultipartForm>(parsed).fields.at(0).first, "notes multipart/mixed message/rfc822");

  EXPECT_EQ(
      refusal(part("Content-Disposition: form-data; name=\"notes\"\r\nContent-Type:\r\n multipart/mixed; boundary=i",
                   "--i\r\n\r\nx\r\n--i--") +
              close),
      "Part 1 of the form holds parts of its own; a form's part is one field or one file.");
  EXPECT_EQ(
      refusal(part("Content-Disposition: form-data; name=\"notes\"\r\ncontent-type: Message/RFC822", "x") + close),
      "Part 1 of the form holds parts of its own; a form's part is one field or one file.");
}

TEST(Multipart, TheLimitsHoldBeforeTheLibraryBuildsAPart) {
  http::MultipartLimits limits;
  limits.max_parts = 3;
  limits.max_text_bytes = 2048;
  const auto field = part("Content-Disposition: form-data; name=\"n\"", std::string(1000, 'x'));
  EXPECT_EQ(refusal(field + field + field + close, limits), "The form's text fields come to more than 2 kB.");
  EXPECT_EQ(refusal(field + field + field + field + close, limits), "The form was sent in more than 3 parts.");
}

// ---- a body read from its spool, a block at a time ----

// A directory for the spools of one test, removed after it.
struct SpoolDirectory {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("referrald-multipart-" + std::to_string(::getpid()));
  SpoolDirectory() { std::filesystem::create_directories(path); }
  ~SpoolDirectory() { std::filesystem::remove_all(path); }
};

std::shared_ptr<SealedSpool> spooled(const std::string& bytes, const std::filesystem::path& directory) {
  auto spool = std::make_shared<SealedSpool>(directory);
  spool->append(bytes);
  spool->finish();
  return spool;
}

// Bytes that hold line breaks and lines that start like a delimiter.
std::string binary(std::size_t n, unsigned seed) {
  std::mt19937 random(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(random() & 0xffU);
  for (std::size_t at = 1000; at + 8 < n; at += 5000) out.replace(at, 7, "\r\n--b\r\n");
  return out;
}

std::variant<MultipartForm, std::string> parse_spooled(const std::string& body, const std::filesystem::path& directory,
                                                       const http::MultipartLimits& limits = {}) {
  const auto spool = spooled(body, directory);
  FileReader reader(*spool);
  return parse_multipart_form("b0", reader, "attachments", limits, directory);
}

TEST(Multipart, ASpooledBodyIsReadAcrossItsBlocksAndEachFileGoesIntoASpoolOfItsOwn) {
  SpoolDirectory directory;
  const std::string scan = binary(5 * SealedSpool::block_size + 123, 1);
  const std::string photo = binary(2 * SealedSpool::block_size, 2);
  const auto body = part("Content-Disposition: form-data; name=\"notes\"", "before") +
                    part("Content-Disposition: form-data; name=\"attachments\"; filename=\"scan.pdf\"", scan) +
                    part(
                        "Content-Disposition: form-data; name=\"attachments\"; filename=\"photo.jpg\"\r\n"
                        "Content-Transfer-Encoding: base64",
                        base64(photo)) +
                    part("Content-Disposition: form-data; name=\"urgency\"", "after") + close;
  const auto parsed = parse_spooled(body, directory.path);
  ASSERT_TRUE(std::holds_alternative<MultipartForm>(parsed)) << std::get<std::string>(parsed);
  const auto& form = std::get<MultipartForm>(parsed);
  ASSERT_EQ(form.fields.size(), 2u);
  EXPECT_EQ(form.fields[0].second, "before");
  EXPECT_EQ(form.fields[1].second, "after");
  ASSERT_EQ(form.files.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& sent = i == 0 ? scan : photo;
    ASSERT_NE(form.files[i].spooled, nullptr) << "file " << i << " is not in a spool";
    EXPECT_TRUE(form.files[i].data.empty());
    EXPECT_EQ(form.files[i].size(), sent.size());
    EXPECT_EQ(form.files[i].spooled->sha256_hex(), sha256_hex(sent)) << "file " << i;
  }
  EXPECT_EQ(form.files[0].filename, "scan.pdf");

  // Wherever a delimiter line and the head after it fall against the
  // blocks, the spool reads as memory does.
  const auto file = part("Content-Disposition: form-data; name=\"attachments\"; filename=\"a.png\"", "png");
  const std::string head = "--b0\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\n";
  for (std::size_t shift = 0; shift < 70; ++shift) {
    // The field's end, and the file's delimiter, cross the first block's end.
    const std::size_t text = SealedSpool::block_size - head.size() - 40 + shift;
    const auto crossing = part("Content-Disposition: form-data; name=\"notes\"", std::string(text, 'x')) + file + close;
    const auto from_spool = parse_spooled(crossing, directory.path);
    ASSERT_TRUE(std::holds_alternative<MultipartForm>(from_spool))
        << shift << ": " << std::get<std::string>(from_spool);
    const auto& f = std::get<MultipartForm>(from_spool);
    ASSERT_EQ(f.fields.size(), 1u) << shift;
    EXPECT_EQ(f.fields[0].second.size(), text) << shift;
    ASSERT_EQ(f.files.size(), 1u) << shift;
    EXPECT_EQ(f.files[0].spooled->read_all(), "png") << shift;
    // Cut short across the block: refused as from memory.
    const auto cut = crossing.substr(0, SealedSpool::block_size + 3);
    const auto refused = parse_spooled(cut, directory.path);
    ASSERT_TRUE(std::holds_alternative<std::string>(refused)) << shift;
    EXPECT_EQ(std::get<std::string>(refused), refusal(cut)) << shift;
  }

  // The raw-body checks, on a spooled body: headers that run over a block
  // and past the limit, too many parts, too much text.
  const auto long_head =
      part("Content-Disposition: form-data; name=\"notes\"", std::string(SealedSpool::block_size - 100, 'x')) +
      "--b0\r\nContent-Disposition: form-data; name=\"notes\"\r\nX: " + std::string(9000, 'y') + "\r\n\r\nz\r\n" +
      close;
  EXPECT_EQ(std::get<std::string>(parse_spooled(long_head, directory.path)),
            "Part 2 of the form has headers longer than 8 kB, or they do not end.");
  http::MultipartLimits limits;
  limits.max_parts = 3;
  limits.max_text_bytes = 100 * 1024;
  const auto field = part("Content-Disposition: form-data; name=\"n\"", std::string(40 * 1024, 'x'));
  EXPECT_EQ(std::get<std::string>(parse_spooled(field + field + field + close, directory.path, limits)),
            "The form's text fields come to more than 100 kB.");
  EXPECT_EQ(std::get<std::string>(parse_spooled(field + field + field + field + close, directory.path, limits)),
            "The form was sent in more than 3 parts.");
}

// A block of the body's spool changed on disk before GMime reads it: an
// error (the form's 503, nothing stored), never a 400 blaming the sender.
TEST(Multipart, ASpooledBodyChangedOnDiskIsAnErrorNotAMalformedForm) {
  SpoolDirectory directory;
  const auto body = part("Content-Disposition: form-data; name=\"notes\"", "x") +
                    part("Content-Disposition: form-data; name=\"attachments\"; filename=\"scan.pdf\"",
                         binary(3 * SealedSpool::block_size, 3)) +
                    close;
  // In the file, in the closing delimiter.
  for (const std::size_t block : {std::size_t{3}, std::size_t{1}}) {
    const auto spool = spooled(body, directory.path);
    ASSERT_EQ(spool->blocks(), 4u);
    test::change_byte(test::open_spool_file(directory.path),
                      static_cast<std::streamoff>(block * (SealedSpool::block_size + 16) + 10));
    FileReader reader(*spool);
    EXPECT_THROW(parse_multipart_form("b0", reader, "attachments", {}, directory.path), std::runtime_error)
        << "block " << block;
  }
}

using http::KeptFiles;

TEST(KeptFiles, FilesAreHeldPerFormWithinTheirBoundsAndTime) {
  KeptFiles::Limits limits;
  limits.max_bytes = 100;
  limits.max_forms = 2;
  limits.max_age = std::chrono::minutes(10);
  KeptFiles kept(limits);
  const auto t0 = KeptFiles::Clock::time_point(std::chrono::hours(1));
  std::vector<KeptFiles::File> files{{"", "a.pdf", std::string(30, 'a'), "application/pdf"},
                                     {"", "b.png", std::string(20, 'b'), "image/png"}};
  ASSERT_TRUE(kept.keep("form-1", files, t0));
  ASSERT_EQ(files[0].id.size(), 32u);
  EXPECT_NE(files[0].id, files[1].id);
  EXPECT_EQ(kept.bytes(), 60u) << "the bytes and the titles";

  auto found = kept.find("form-1", {files[1].id, files[0].id}, t0);
  EXPECT_EQ(found.missing, 0u);
  ASSERT_EQ(found.files.size(), 2u);
  EXPECT_EQ(found.files[0].title, "b.png");
  EXPECT_EQ(found.files[1].data, std::string(30, 'a'));
  // Another form does not see them.
  EXPECT_EQ(kept.find("form-2", {files[0].id}, t0).missing, 1u);

  // Over the bound alone: nothing held for it.
  std::vector<KeptFiles::File> huge{{"", "c.tif", std::string(101, 'c'), "image/tiff"}};
  EXPECT_FALSE(kept.keep("form-2", huge, t0));
  EXPECT_EQ(kept.bytes(), 60u) << "nothing held for it, nothing let go for it";

  // Room is made by letting the oldest form's files go.
  std::vector<KeptFiles::File> more{{"", "d.jpg", std::string(50, 'd'), "image/jpeg"}};
  ASSERT_TRUE(kept.keep("form-3", more, t0 + std::chrono::minutes(1)));
  EXPECT_EQ(kept.find("form-1", {files[0].id}, t0 + std::chrono::minutes(1)).missing, 1u);
  EXPECT_EQ(kept.bytes(), 55u);

  // And after max_age, nothing.
  EXPECT_EQ(kept.find("form-3", {more[0].id}, t0 + std::chrono::minutes(11)).missing, 1u);
  EXPECT_EQ(kept.bytes(), 0u);

  // Keeping a form's files again replaces them; forget lets them go.
  ASSERT_TRUE(kept.keep("form-4", more, t0));
  std::vector<KeptFiles::File> none;
  ASSERT_TRUE(kept.keep("form-4", none, t0));
  EXPECT_EQ(kept.bytes(), 0u);
  ASSERT_TRUE(kept.keep("form-4", more, t0));
  kept.forget("form-4");
  EXPECT_EQ(kept.bytes(), 0u);
}

}  // namespace
}  // namespace referrald::test
