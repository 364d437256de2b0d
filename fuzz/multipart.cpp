// libFuzzer target: the web form's multipart/form-data bodies
// (http/multipart.hpp, GMime underneath). The input's first line is the
// request's Content-Type (its boundary, when it has one that passes, is
// used; "b0" otherwise), the rest the body.
//
// Checked besides "no crash, no leak, no UB":
//   - what is accepted keeps the limits: at most max_parts parts, the text
//     fields within max_text_bytes, no file larger than the body;
//   - every field name, value and file name is valid UTF-8, a file name has
//     no path separator, and a refusal is a sentence without the body's bytes
//     (no control character);
//   - what is accepted comes back the same when written out again as a
//     browser writes it (RFC 7578) and parsed: fields, files and their bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "http/multipart.hpp"

namespace referrald::fuzz {
namespace {

constexpr std::string_view file_field = "attachments";

// A name a browser can write in quotes as it is.
bool writable(std::string_view text) { return text.find_first_of("\"\\\r\n") == std::string_view::npos; }

// The form written out again as a browser would, or "" when it cannot be
// written so (a name with a quote or a line break, content holding the boundary).
std::string rewrite(const http::MultipartForm& form, const std::string& boundary) {
  const std::string dash = "--" + boundary;
  std::string out;
  for (const auto& [name, value] : form.fields) {
    if (!writable(name) || value.find(dash) != std::string::npos) return {};
    out += dash + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
  }
  for (const auto& f : form.files) {
    if (!writable(f.filename) || f.filename.empty() || f.data.find(dash) != std::string::npos) return {};
    out += dash + "\r\nContent-Disposition: form-data; name=\"" + std::string(file_field) + "\"; filename=\"" +
           f.filename + "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + f.data + "\r\n";
  }
  return out + dash + "--\r\n";
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto newline = input.find('\n');
  const std::string_view type = newline == std::string_view::npos ? std::string_view() : input.substr(0, newline);
  const std::string_view body = newline == std::string_view::npos ? input : input.substr(newline + 1);

  const auto boundary = http::multipart_boundary(type).value_or("b0");
  http::MultipartLimits limits;
  limits.max_parts = 50;
  limits.max_text_bytes = 4096;
  const auto parsed = http::parse_multipart_form(boundary, body, file_field, limits);
  if (const auto* why = std::get_if<std::string>(&parsed)) {
    require(!why->empty() && is_printable_ascii(*why), "a refusal that is not a plain sentence");
    return 0;
  }
  const auto& form = std::get<http::MultipartForm>(parsed);
  require(form.fields.size() + form.files.size() <= limits.max_parts, "more parts than max_parts");
  std::size_t text = 0;
  for (const auto& [name, value] : form.fields) {
    require(!name.empty() && http::is_valid_utf8(name) && http::is_valid_utf8(value), "a field that is not UTF-8");
    require(name != file_field, "a text field in the files' field");
    text += value.size();
  }
  require(text <= limits.max_text_bytes, "text fields over max_text_bytes");
  for (const auto& f : form.files) {
    require(http::is_valid_utf8(f.filename), "a file name that is not UTF-8");
    require(f.filename.find_first_of("/\\") == std::string::npos, "a file name with a path in it");
    require(f.data.size() <= body.size(), "a file larger than the body");
  }

  // (A form of nothing but an empty file input has no part to write.)
  if (form.fields.empty() && form.files.empty()) return 0;
  const auto again = rewrite(form, "fuzzRoundTrip0");
  if (again.empty()) return 0;
  const auto reparsed = http::parse_multipart_form("fuzzRoundTrip0", again, file_field, limits);
  require(std::holds_alternative<http::MultipartForm>(reparsed), "a form written out again is refused");
  const auto& second = std::get<http::MultipartForm>(reparsed);
  require(second.fields == form.fields, "fields changed when written out again");
  require(second.files.size() == form.files.size(), "files lost when written out again");
  for (std::size_t i = 0; i < form.files.size(); ++i) {
    require(second.files[i].filename == form.files[i].filename, "a file name changed when written out again");
    require(second.files[i].data == form.files[i].data, "a file's bytes changed when written out again");
  }
  return 0;
}
