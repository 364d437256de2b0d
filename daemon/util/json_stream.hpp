// One JSON reader for every intake body (the API's referral, FHIR's
// resources): Boost.JSON's push parser, fed the text a block at a time from
// memory or from its spool, builds the document (Boost.JSON's for the v1
// referral, in one arena; nlohmann's, ordered, for FHIR). Nesting depth and
// repeated keys are seen while parsing, a syntax error names its byte and
// never echoes the input, and the strings that are files (base64) are
// decoded as they arrive, each into a spool of its own, so that no file is
// ever whole in memory as text or as bytes (docs/attachments.md, "Streaming
// to disk"). The document keeps attachment_data_stand_in in a file's place.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/sealed_spool.hpp"

namespace referrald {

// A file's data, decoded while parsing: in memory, or in its spool.
struct DecodedFile {
  std::string bytes;
  std::shared_ptr<SealedSpool> spooled;
  bool dropped = false;  // past max_files: its base64 checked, its bytes not kept
};

// What a file string that is not base64 is told (after the field's name).
inline constexpr std::string_view not_base64_message = "is not base64 (RFC 4648: A-Z, a-z, 0-9, +, / and = padding)";

// Which strings of a document are files.
enum class FileStrings {
  // /attachments/N/data: the v1 referral's (intake/validator.hpp).
  referral_attachments,
  // The value of any object member named "data" (FHIR R4: Attachment.data
  // and Binary.data are base64Binary; so is Signature.data, and the one
  // other element of that name, SampledData.data, is in no resource
  // referrald reads). The mapping takes the files it finds a use for; the
  // others go with the document.
  fhir_data,
};

struct JsonStreamOptions {
  std::size_t max_depth = 16;  // deeper nesting stops the parse (too_deep)
  FileStrings files = FileStrings::referral_attachments;
  // Files that come beside the JSON (the web form's, referral_attachments
  // only): the first `files_beside` places are marked, not decoded.
  std::size_t files_beside = 0;
  // Where decoded files wait, each in a spool of its own (empty: in memory).
  std::filesystem::path spool_directory;
  // Files past this many are decoded, not kept (each spool is an open file).
  std::size_t max_files = static_cast<std::size_t>(-1);
};

template <class Json>
struct JsonStream {
  Json root;
  // The text is not JSON: "invalid JSON at byte N: …" or "invalid UTF-8 at
  // byte N". Not set when too_deep.
  std::optional<std::string> error;
  bool too_deep = false;
  // JSON Pointers of repeated keys (the first value of each is kept): the
  // first max_reported_duplicates places, each once, so that a body of
  // countless repeats does not become an answer many times its size.
  static constexpr std::size_t max_reported_duplicates = 100;
  std::vector<std::string> duplicates;
  // Each file string by the JSON Pointer of its place: decoded, or nullopt
  // when it is not base64 (RFC 4648, as base64_decode reads it). A place
  // past max_files (dropped), or marked for a file beside the JSON, holds
  // no bytes.
  std::map<std::string, std::optional<DecodedFile>> files;
};

// Reads `text`; throws what a spool throws (a block of the text that does
// not open, a disk that refuses a decoded file): nothing may be accepted then.
template <class Json>
JsonStream<Json> read_json(std::string_view text, const JsonStreamOptions& options);
template <class Json>
JsonStream<Json> read_json(const SealedSpool& text, const JsonStreamOptions& options);

}  // namespace referrald
