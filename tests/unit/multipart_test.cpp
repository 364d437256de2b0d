// The web form's multipart/form-data bodies (http/multipart.hpp) and the
// files held for a form that came back with errors (http/kept_files.hpp).
// No daemon: the real daemon's handling is tests/integration/form_attachments_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "http/kept_files.hpp"
#include "http/multipart.hpp"

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

TEST(Multipart, TheLimitsHoldBeforeTheLibraryBuildsAPart) {
  http::MultipartLimits limits;
  limits.max_parts = 3;
  limits.max_text_bytes = 2048;
  const auto field = part("Content-Disposition: form-data; name=\"n\"", std::string(1000, 'x'));
  EXPECT_EQ(refusal(field + field + field + close, limits), "The form's text fields come to more than 2 kB.");
  EXPECT_EQ(refusal(field + field + field + field + close, limits), "The form was sent in more than 3 parts.");
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
