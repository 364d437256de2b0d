// The web form's multipart/form-data bodies (RFC 7578), read with GMime 3
// (libgmime-3.0): the form's text fields, and the files of its file input.
// The body is read through a FileReader (in memory, or from its sealed spool
// a block at a time: never whole in memory), and each file may go straight
// into a sealed spool of its own. No Asio, so the multipart fuzz target
// builds it alone. docs/attachments.md says why GMime and what is refused.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/form_fields.hpp"
#include "util/file_reader.hpp"
#include "util/sealed_spool.hpp"

namespace referrald::http {

// What one body may hold, checked on the raw body before the library builds
// a part of it (so a body of many tiny parts cannot make it allocate many
// objects). The request's size is the server's limit (request_body_limit).
struct MultipartLimits {
  std::size_t max_parts = 200;              // every part: text fields and files
  std::size_t max_head_bytes = 8 * 1024;    // one part's headers
  std::size_t max_text_bytes = 512 * 1024;  // all text fields together
};

// A file of the form's file input, as the browser sent it.
struct UploadedFile {
  std::string filename;  // the name the browser gave (its last path segment), UTF-8
  std::string data;      // the bytes, transfer encoding undone
  // Or those bytes in a sealed spool of their own (`data` is empty then).
  std::shared_ptr<const SealedSpool> spooled;

  std::size_t size() const { return spooled ? spooled->size() : data.size(); }
};

struct MultipartForm {
  FormData fields;                  // text fields, in the order they came
  std::vector<UploadedFile> files;  // the parts of `file_field` that carry a file, in order
};

// Whether a Content-Type names multipart/form-data (parameters aside).
bool is_multipart_form_type(std::string_view content_type);

// The boundary of a multipart/form-data Content-Type, or nullopt when it has
// none or one RFC 2046 does not allow (1 to 70 characters of its set).
std::optional<std::string> multipart_boundary(std::string_view content_type);

// The fields and files of a multipart/form-data body, or why it cannot be
// read (a sentence for the page, naming the part by its number from 1; no
// content of the body in it). Files come only from parts named `file_field`
// with a filename; such a part with no name and no bytes (a file input left
// empty) is skipped. Refused: no closing boundary (a body cut short), a part
// without `Content-Disposition: form-data; name=...`, a header twice, a part
// that holds parts, text that is not UTF-8, anything over `limits`.
// With a `spool_directory`, each file is written into a spool there as it
// is decoded (else into `data`). Throws what a read of the body's spool
// threw (it does not open: not the sender's fault), or what the disk did
// to a file's spool.
std::variant<MultipartForm, std::string> parse_multipart_form(std::string_view boundary, FileReader& body,
                                                              std::string_view file_field,
                                                              const MultipartLimits& limits = {},
                                                              const std::filesystem::path& spool_directory = {});
std::variant<MultipartForm, std::string> parse_multipart_form(std::string_view boundary, std::string_view body,
                                                              std::string_view file_field,
                                                              const MultipartLimits& limits = {});

}  // namespace referrald::http
