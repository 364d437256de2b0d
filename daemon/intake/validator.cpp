#include "intake/validator.hpp"

#include <algorithm>
#include <boost/json/basic_parser_impl.hpp>
// Boost.JSON's compiled parts (its parser's stack, its error category), here
// once for the whole program: no other file may include it.
#include <boost/json/src.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "attachments/inspect.hpp"
#include "intake/npi.hpp"
#include "util/base64_decoder.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {
namespace {

using boost::json::error_code;
using boost::json::string_view;
using nlohmann::json;

// ---------------------------------------------------------------------------
// JSON Pointer (RFC 6901)

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string pointer(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += '/' + escape_pointer_token(t);
  return out;
}

// ---------------------------------------------------------------------------
// UTF-8. The parser has already rejected ill-formed UTF-8, so decoding here
// can trust the lead bytes.

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    char32_t cp = lead;
    if (lead >= 0xF0) {
      extra = 3;
      cp = lead & 0x07u;
    } else if (lead >= 0xE0) {
      extra = 2;
      cp = lead & 0x0Fu;
    } else if (lead >= 0xC0) {
      extra = 1;
      cp = lead & 0x1Fu;
    }
    ++i;
    for (std::size_t k = 0; k < extra && i < s.size(); ++k, ++i) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3Fu);
    }
    out.push_back(cp);
  }
  return out;
}

bool is_control(char32_t cp) noexcept { return cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F); }

// Free text may break lines; nothing else below U+0020 or in C1.
bool is_free_text_control(char32_t cp) noexcept { return is_control(cp) && cp != '\t' && cp != '\n' && cp != '\r'; }

// Characters that reorder what follows them on screen (bidirectional
// embeddings, overrides and isolates): in a name they can make it read as
// another name on a fax cover or in referralctl.
bool is_bidi_control(char32_t cp) noexcept { return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069); }

// Unicode White_Space plus the zero-width characters a pasted name may carry.
bool is_space(char32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000 || cp == 0xFEFF;
}

// ---------------------------------------------------------------------------
// Parsing: Boost.JSON's push parser (basic_parser), fed the body a block at
// a time, from memory or from its spool alike. Duplicate keys and nesting
// depth are seen while parsing, and strings come in parts: a file's base64
// is decoded as it arrives, into a spool of its own, and is never whole in
// memory as text or as bytes (docs/attachments.md, "Streaming to disk").

// An attachment's data, decoded while parsing: in memory, or in its spool.
struct DecodedFile {
  std::string bytes;
  std::shared_ptr<SealedSpool> spooled;
};

// An attachment's data while it is read: the decoder its parts go through
// and where the bytes go. At namespace scope: clang 14 cannot default-
// construct a class nested in one that is not yet complete.
struct FileText {
  std::size_t index = 0;  // in "attachments"
  std::size_t size = 0;   // of the base64 text so far
  std::optional<Base64Decoder> decoder;
  DecodedFile file;
  bool bad = false;  // not base64: the rest of the text is let go unread
  bool kept = true;  // false past max_attachments_ceiling: decoded, not kept

  // Where decoded bytes go. A spool throws when the disk refuses them:
  // out of the parser, so that nothing is accepted.
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view bytes) {
      if (!kept) return;
      if (file.spooled) {
        file.spooled->append(bytes);
      } else {
        file.bytes.append(bytes);
      }
    };
  }
};

class DocumentBuilder {
 public:
  // Boost.JSON's own limits: none (the depth is ours, the lengths the schema's).
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

  // `files`: the attachments' bytes, when they come beside the JSON.
  // `spool_directory`: where decoded files wait (empty: in memory).
  DocumentBuilder(std::size_t max_depth, const std::vector<Attachment>& files, std::filesystem::path spool_directory)
      : max_depth_(max_depth), files_(files), spool_directory_(std::move(spool_directory)) {}

  bool on_document_begin(error_code& /*ec*/) { return true; }
  bool on_document_end(error_code& /*ec*/) { return true; }
  bool on_array_begin(error_code& ec) { return open(json::array(), ec); }
  bool on_array_end(std::size_t /*n*/, error_code& /*ec*/) { return close(); }
  bool on_object_begin(error_code& ec) { return open(json::object(), ec); }
  bool on_object_end(std::size_t /*n*/, error_code& /*ec*/) { return close(); }
  bool on_string_part(string_view part, std::size_t /*n*/, error_code& /*ec*/) {
    string_part(part);
    return true;
  }
  bool on_string(string_view part, std::size_t /*n*/, error_code& /*ec*/) {
    string_part(part);
    end_string();
    return true;
  }
  bool on_key_part(string_view part, std::size_t /*n*/, error_code& /*ec*/) {
    key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(string_view part, std::size_t /*n*/, error_code& /*ec*/) {
    key_.append(part.data(), part.size());
    key();
    return true;
  }
  bool on_number_part(string_view /*part*/, error_code& /*ec*/) { return true; }
  // As nlohmann reads numbers: unsigned when not negative.
  bool on_int64(std::int64_t v, string_view /*text*/, error_code& /*ec*/) {
    return v >= 0 ? add(json(static_cast<std::uint64_t>(v))) : add(json(v));
  }
  bool on_uint64(std::uint64_t v, string_view /*text*/, error_code& /*ec*/) { return add(json(v)); }
  bool on_double(double v, string_view /*text*/, error_code& ec) {
    if (!std::isfinite(v)) {
      out_of_range_ = true;
      ec = boost::json::error::exception;  // stops the parser
      return false;
    }
    return add(json(v));
  }
  bool on_bool(bool v, error_code& /*ec*/) { return add(json(v)); }
  bool on_null(error_code& /*ec*/) { return add(json(nullptr)); }
  // Comments are not allowed (parse_options), so never called.
  bool on_comment_part(string_view /*part*/, error_code& /*ec*/) { return true; }
  bool on_comment(string_view /*part*/, error_code& /*ec*/) { return true; }

  json& root() { return root_; }
  // Each attachment's data, decoded from base64 as it was read, by its
  // index in "attachments" (nullopt: not base64; absent: no string there).
  std::vector<std::optional<DecodedFile>>& decoded() { return decoded_; }
  bool too_deep() const { return too_deep_; }
  bool out_of_range() const { return out_of_range_; }
  const std::vector<std::string>& duplicates() const { return duplicates_; }

 private:
  struct Frame {
    json* container;
    std::string key;            // the member being parsed (objects only)
    bool discard = false;       // that member repeats an earlier key: parse it, keep the first
    bool in_discarded = false;  // this container is part of such a member
  };

  void string_part(string_view part) {
    if (!in_string_) {
      in_string_ = true;
      if (at_attachment_data()) start_file_text();
    }
    if (!file_text_) {
      // A repeated key's value is dropped: its text is not worth keeping
      // (a repeated "data" could be as long as a file).
      if (!in_discarded()) text_.append(part.data(), part.size());
      return;
    }
    FileText& f = *file_text_;
    f.size += part.size();
    if (!f.decoder || f.bad) return;
    if (!f.decoder->update(std::string_view(part.data(), part.size()), f.sink())) f.bad = true;
  }

  // A file's base64 is decoded as it is read, and the document keeps a
  // stand-in: the text is the largest part of a body by far, and is not
  // kept at all. An empty one stays, for the schema's minLength to speak
  // of. A file beside the JSON is not read here: its place is marked, and
  // the pipeline hands the referral the file where it waits (plan_intake).
  void start_file_text() {
    file_text_.emplace();
    file_text_->index = stack_[1].container->size() - 1;
    if (files_.empty()) {
      file_text_->decoder.emplace();
      // More files than any office takes are refused for their number
      // (inspect_attachments): none of them is worth a spool (an open file).
      file_text_->kept = file_text_->index < max_attachments_ceiling;
      if (file_text_->kept && !spool_directory_.empty()) {
        file_text_->file.spooled = std::make_shared<SealedSpool>(spool_directory_);
      }
    }
  }

  void end_string() {
    in_string_ = false;
    if (!file_text_) {
      add(json(std::move(text_)));
      text_.clear();
      return;
    }
    FileText& f = *file_text_;
    if (decoded_.size() <= f.index) decoded_.resize(f.index + 1);
    if (f.decoder) {
      if (!f.bad && f.decoder->finish(f.sink())) {
        if (f.file.spooled) f.file.spooled->finish();
        decoded_[f.index] = std::move(f.file);
      }
    } else if (f.index < files_.size()) {
      decoded_[f.index] = DecodedFile{};
    }
    const bool empty = f.size == 0;
    file_text_.reset();  // a spool of text that was not base64 goes with it
    add(json(empty ? std::string() : std::string(attachment_data_stand_in)));
  }

  void key() {
    Frame& top = stack_.back();
    top.discard = top.container->contains(key_);
    top.key = std::move(key_);
    key_.clear();
    // Inside a value that is itself dropped, a repeat is not worth a message.
    if (top.discard && !top.in_discarded) duplicates_.push_back(current_pointer());
  }

  json* place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& top = stack_.back();
    if (top.container->is_array()) {
      // Safe to hold: nothing is appended to this array while the element is open.
      top.container->push_back(std::move(v));
      return &top.container->back();
    }
    if (top.discard) {
      discarded_.push_back(std::make_unique<json>(std::move(v)));
      return discarded_.back().get();
    }
    json& slot = (*top.container)[top.key];
    slot = std::move(v);
    return &slot;
  }

  bool add(json&& v) {
    place(std::move(v));
    return true;
  }

  bool open(json&& container, error_code& ec) {
    if (stack_.size() >= max_depth_) {
      too_deep_ = true;
      ec = boost::json::error::too_deep;  // stops the parser
      return false;
    }
    const bool discarded = in_discarded();
    json* p = place(std::move(container));
    stack_.push_back(Frame{p, {}, false, discarded});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  // Whether the value being read is part of a repeated key's, which is dropped.
  bool in_discarded() const {
    return !stack_.empty() &&
           (stack_.back().in_discarded || (stack_.back().discard && stack_.back().container->is_object()));
  }

  // Whether the string being read is /attachments/N/data of the document
  // (the first of repeated keys: the one that is kept).
  bool at_attachment_data() const {
    return stack_.size() == 3 && stack_[0].container->is_object() && stack_[0].key == "attachments" &&
           !stack_[0].discard && stack_[1].container->is_array() && stack_[2].container->is_object() &&
           stack_[2].key == "data" && !stack_[2].discard && !stack_[2].in_discarded;
  }

  // Pointer to the member whose key was just read.
  std::string current_pointer() const {
    std::vector<std::string> tokens;
    for (const auto& f : stack_) {
      if (f.container->is_array()) {
        tokens.push_back(std::to_string(f.container->size() - 1));
      } else {
        tokens.push_back(f.key);
      }
    }
    return pointer(tokens);
  }

  std::size_t max_depth_;
  json root_;
  std::vector<Frame> stack_;
  std::vector<std::unique_ptr<json>> discarded_;
  std::vector<std::string> duplicates_;
  std::vector<std::optional<DecodedFile>> decoded_;
  std::string key_;   // the key being read
  std::string text_;  // the string being read (not a file's)
  std::optional<FileText> file_text_;
  bool in_string_ = false;
  bool too_deep_ = false;
  bool out_of_range_ = false;
  const std::vector<Attachment>& files_;
  std::filesystem::path spool_directory_;
};

// The body, block by block, into a DocumentBuilder; a syntax error becomes
// a message that names its byte and never echoes the input (it may be a
// patient's name). The offsets are those of the first byte that cannot be
// read on, wherever the blocks were cut.
class DocumentParser {
 public:
  DocumentParser(std::size_t max_depth, const std::vector<Attachment>& files,
                 const std::filesystem::path& spool_directory)
      : parser_(options(max_depth), max_depth, files, spool_directory) {}

  // The next block; false once the parse has stopped (an error, or too deep).
  bool write(std::string_view block) {
    if (stopped_) return false;
    if (offset_ == 0 && !started_) {
      started_ = true;
      // A UTF-8 byte-order mark before the document is let pass, as it was
      // before this parser (RFC 8259 allows a parser to ignore one; some
      // EHRs' HTTP clients send one). Offsets still count it.
      if (block.substr(0, utf8_bom.size()) == utf8_bom) {
        block.remove_prefix(utf8_bom.size());
        offset_ = utf8_bom.size();
      }
    }
    block_ = block;
    error_code ec;
    const std::size_t n = parser_.write_some(true, block.data(), block.size(), ec);
    if (ec) {
      fail(ec, offset_ + n);
      return false;
    }
    // Whitespace after the document is read by the parser; anything else is not.
    if (parser_.done() && n < block.size()) {
      error_ = "invalid JSON at byte " + std::to_string(offset_ + n) + ": " + unexpected(offset_ + n) +
               "; expected end of input";
      stopped_ = true;
      return false;
    }
    tail_ = (tail_ + std::string(block.substr(block.size() - std::min(block.size(), tail_bytes))));
    if (tail_.size() > tail_bytes) tail_.erase(0, tail_.size() - tail_bytes);
    offset_ += block.size();
    return true;
  }

  // The end of the body.
  void finish() {
    if (stopped_) return;
    block_ = {};
    error_code ec;
    const std::size_t n = parser_.write_some(false, nullptr, 0, ec);
    if (ec) fail(ec, offset_ + n);
  }

  DocumentBuilder& builder() { return parser_.handler(); }
  const std::optional<std::string>& error() const { return error_; }

 private:
  // Bytes kept from before the current block: enough to look back over a
  // UTF-8 sequence or a literal cut by a block's end.
  static constexpr std::size_t tail_bytes = 8;
  static constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

  static boost::json::parse_options options(std::size_t max_depth) {
    boost::json::parse_options o;
    o.max_depth = max_depth + 1;  // ours stops first, with its own message
    return o;
  }

  // The byte at `at`, when it is at hand (the current block or the tail).
  std::optional<unsigned char> byte_at(std::size_t at) const {
    if (at >= offset_) {
      if (at - offset_ < block_.size()) return static_cast<unsigned char>(block_[at - offset_]);
      return std::nullopt;
    }
    const std::size_t back = offset_ - at;
    if (back <= tail_.size()) return static_cast<unsigned char>(tail_[tail_.size() - back]);
    return std::nullopt;
  }

  void fail(const error_code& ec, std::size_t at) {
    stopped_ = true;
    if (parser_.handler().too_deep()) return;  // ReferralValidator says so itself
    if (parser_.handler().out_of_range()) {
      // The parser stops past the number; its last digit is named.
      error_ = "invalid JSON at byte " + std::to_string(at > 0 ? at - 1 : 0) + ": number out of range";
      return;
    }
    if (ec == boost::json::error::incomplete) {
      error_ = "invalid JSON at byte " + std::to_string(at) + ": unexpected end of input";
      return;
    }
    if (const auto bad = ill_formed_utf8(at)) {
      error_ = "invalid UTF-8 at byte " + std::to_string(*bad);
      return;
    }
    std::string detail;
    if (ec == boost::json::error::expected_hex_digit) {
      detail = "invalid string: '\\u' must be followed by 4 hex digits";
    } else if (ec == boost::json::error::illegal_leading_surrogate ||
               ec == boost::json::error::illegal_trailing_surrogate) {
      detail = "invalid string: a surrogate escape must be one of a pair";
    } else if (ec == boost::json::error::syntax) {
      at = in_literal(at);
      detail = unexpected(at);
    }
    error_ = "invalid JSON at byte " + std::to_string(at);
    if (!detail.empty()) error_ = *error_ + ": " + detail;
  }

  // The first byte of a UTF-8 sequence that is not well-formed (Unicode
  // 15, table 3-7) at or around `at`, where the parser stopped: at the
  // sequence's lead byte or at the byte that broke it, depending on where
  // the blocks were cut.
  std::optional<std::size_t> ill_formed_utf8(std::size_t at) const {
    for (std::size_t back = std::min<std::size_t>(3, at) + 1; back-- > 0;) {
      const std::size_t start = at - back;
      const auto lead = byte_at(start);
      if (!lead || *lead < 0xC2 || *lead > 0xF4) continue;
      const std::size_t length = *lead >= 0xF0 ? 4 : *lead >= 0xE0 ? 3 : 2;
      if (start + length <= at) continue;  // a whole sequence before `at`
      for (std::size_t k = 1; k < length; ++k) {
        const auto c = byte_at(start + k);
        if (!c) break;
        unsigned char low = 0x80, high = 0xBF;
        if (k == 1 && *lead == 0xE0) low = 0xA0;
        if (k == 1 && *lead == 0xED) high = 0x9F;
        if (k == 1 && *lead == 0xF0) low = 0x90;
        if (k == 1 && *lead == 0xF4) high = 0x8F;
        if (*c < low || *c > high) return start + k;
      }
    }
    // A stray continuation or an impossible byte. A well-formed sequence
    // here (checked above) is a character out of place, not bad UTF-8.
    if (const auto b = byte_at(at); b && *b >= 0x80 && (*b < 0xC2 || *b > 0xF4)) return at;
    return std::nullopt;
  }

  // Where a misspelt literal (true, false, null) goes wrong: the parser
  // stops at its start or at the wrong byte, depending on the blocks.
  std::size_t in_literal(std::size_t at) const {
    std::size_t start = at;
    for (int k = 0; k < 5 && start > 0; ++k) {
      const auto b = byte_at(start - 1);
      if (!b || *b < 'a' || *b > 'z') break;
      --start;
    }
    const auto first = byte_at(start);
    if (!first) return at;
    const std::string_view word = *first == 't' ? "true" : *first == 'f' ? "false" : *first == 'n' ? "null" : "";
    std::size_t k = 0;
    while (k < word.size() && byte_at(start + k) == static_cast<unsigned char>(word[k])) ++k;
    return word.empty() || k == word.size() ? at : std::max(at, start + k);
  }

  // What the byte at `at` is, in words; only JSON's own punctuation is quoted.
  std::string unexpected(std::size_t at) const {
    const auto b = byte_at(at);
    if (!b) return "unexpected end of input";
    const unsigned char c = *b;
    if (at > 0 && byte_at(at - 1) == '\\') return "invalid string: forbidden character after backslash";
    if (c < 0x20) return "unexpected control character (in a string it must be escaped)";
    if (std::string_view("{}[],:").find(static_cast<char>(c)) != std::string_view::npos) {
      return std::string("unexpected '") + static_cast<char>(c) + "'";
    }
    if (c == '"') return "unexpected string";
    if (c == '-' || (c >= '0' && c <= '9')) return "unexpected number";
    return "invalid literal";
  }

  boost::json::basic_parser<DocumentBuilder> parser_;
  std::string_view block_;  // the block being read
  std::string tail_;        // the last bytes before it
  std::size_t offset_ = 0;  // of the block in the body
  bool started_ = false;    // the first block was seen (and a mark skipped)
  std::optional<std::string> error_;
  bool stopped_ = false;
};

// ---------------------------------------------------------------------------
// Turning valijson's results into FieldErrors.

// Lower rank wins when several problems are found at one path.
enum class Rank { duplicate, structure, pattern, enumeration, min_length, max_length, semantic, other };

struct Problem {
  Rank rank;
  std::string message;
};

class ErrorSet {
 public:
  void add(const std::string& path, Rank rank, std::string message) {
    auto [it, inserted] = by_path_.try_emplace(path, Problem{rank, message});
    if (!inserted && rank < it->second.rank) it->second = Problem{rank, std::move(message)};
  }

  bool has(const std::string& path) const { return by_path_.count(path) != 0; }
  bool empty() const { return by_path_.empty(); }

  // Sorted by path (std::map order); a vague problem is dropped when a more
  // precise one was found at or below the same place.
  std::vector<FieldError> finish() const {
    std::vector<FieldError> out;
    for (const auto& [path, problem] : by_path_) {
      if (problem.rank == Rank::other && has_descendant(path)) continue;
      out.push_back(FieldError{path, problem.message});
    }
    return out;
  }

 private:
  bool has_descendant(const std::string& path) const {
    const std::string prefix = path + '/';
    auto it = by_path_.lower_bound(prefix);
    return it != by_path_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  }

  std::map<std::string, Problem> by_path_;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The schema node that describes the value at tokens (nullptr if none does).
const json* schema_node(const json& schema, const std::vector<std::string>& tokens) {
  const json* node = &schema;
  for (const auto& t : tokens) {
    // An array's elements (a token of digits) share its "items" schema.
    if (const auto items = node->find("items"); items != node->end()) {
      node = &*items;
      continue;
    }
    const auto props = node->find("properties");
    if (props == node->end()) return nullptr;
    const auto child = props->find(t);
    if (child == props->end()) return nullptr;
    node = &*child;
  }
  return node;
}

const json* value_node(const json& doc, const std::vector<std::string>& tokens) {
  const json* node = &doc;
  for (const auto& t : tokens) {
    if (node->is_array()) {
      if (t.empty() || t.size() > 9 || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return nullptr;
      const auto index = static_cast<std::size_t>(std::stoul(t));
      if (index >= node->size()) return nullptr;
      node = &(*node)[index];
      continue;
    }
    if (!node->is_object()) return nullptr;
    const auto child = node->find(t);
    if (child == node->end()) return nullptr;
    node = &*child;
  }
  return node;
}

std::string type_message(const json* node) {
  const std::string type = node != nullptr ? node->value("type", "") : "";
  if (type == "string") return "must be a string";
  if (type == "object") return "must be an object";
  if (type == "boolean") return "must be true or false";
  if (type == "integer") return "must be a whole number";
  if (type == "number") return "must be a number";
  if (type == "array") return "must be an array";
  return "has the wrong type";
}

std::string enum_message(const json* node) {
  if (node == nullptr || !node->contains("enum")) return "is not one of the allowed values";
  std::string out = "must be one of: ";
  bool first = true;
  for (const auto& v : node->at("enum")) {
    if (!first) out += ", ";
    out += v.is_string() ? v.get<std::string>() : v.dump();
    first = false;
  }
  return out;
}

std::string pattern_message(const json* node) {
  const std::string pattern = node != nullptr ? node->value("pattern", "") : "";
  if (pattern == "^[0-9]{4}-[0-9]{2}-[0-9]{2}$") return "must be a date in the form YYYY-MM-DD";
  if (pattern == "^[0-9]{10}$") return "must be exactly 10 digits";
  if (pattern == "^[0-9]{5}(-[0-9]{4})?$") return "must be a US ZIP code: 5 digits or ZIP+4 (12345-6789)";
  if (pattern == "^[^@\\s]+@[^@\\s]+$") return "must be an email address";
  return "is not in the expected format";
}

std::size_t schema_length(const json* node, const char* keyword) {
  if (node == nullptr) return 0;
  const auto it = node->find(keyword);
  return it != node->end() && it->is_number_unsigned() ? it->get<std::size_t>() : 0;
}

std::string max_length_message(const json* node) {
  return "must be at most " + std::to_string(schema_length(node, "maxLength")) + " characters";
}

std::string min_length_message(const json* node) {
  const std::size_t min = schema_length(node, "minLength");
  if (min <= 1) return "must not be empty";
  return "must be at least " + std::to_string(min) + " characters";
}

std::vector<std::string> context_tokens(const std::vector<std::string>& context) {
  // valijson's context is "<root>" followed by "[name]" or "[index]" per level.
  std::vector<std::string> tokens;
  for (std::size_t i = 1; i < context.size(); ++i) {
    const std::string& c = context[i];
    tokens.push_back(c.size() >= 2 && c.front() == '[' && c.back() == ']' ? c.substr(1, c.size() - 2) : c);
  }
  return tokens;
}

std::string child_pointer(std::vector<std::string> tokens, const std::string& name) {
  tokens.push_back(name);
  return pointer(tokens);
}

void collect_schema_errors(const json& schema, const json& doc, const valijson::ValidationResults& results,
                           ErrorSet& errors) {
  for (const auto& error : results) {
    const auto tokens = context_tokens(error.context);
    const std::string path = pointer(tokens);
    const json* node = schema_node(schema, tokens);
    const std::string& d = error.description;

    if (starts_with(d, "Missing required property")) {
      // Reported against the parent; name each missing member instead.
      const json* value = value_node(doc, tokens);
      if (node == nullptr || value == nullptr || !value->is_object()) continue;
      for (const auto& name : node->value("required", json::array())) {
        const std::string member = name.get<std::string>();
        if (!value->contains(member)) {
          errors.add(child_pointer(tokens, member), Rank::structure, "is required");
        }
      }
    } else if (starts_with(d, "Object contains a property that could not be validated")) {
      // valijson names only the first stray member; report every one.
      const json* value = value_node(doc, tokens);
      if (node == nullptr || value == nullptr || !value->is_object()) continue;
      const json properties = node->value("properties", json::object());
      for (const auto& member : value->items()) {
        if (!properties.contains(member.key())) {
          errors.add(child_pointer(tokens, member.key()), Rank::structure, "unknown field");
        }
      }
    } else if (starts_with(d, "Value type not permitted")) {
      errors.add(path, Rank::structure, type_message(node));
    } else if (starts_with(d, "Failed to match regex")) {
      errors.add(path, Rank::pattern, pattern_message(node));
    } else if (starts_with(d, "Failed to match against any enum values")) {
      errors.add(path, Rank::enumeration, enum_message(node));
    } else if (starts_with(d, "String should be no fewer than")) {
      errors.add(path, Rank::min_length, min_length_message(node));
    } else if (starts_with(d, "String should be no more than")) {
      errors.add(path, Rank::max_length, max_length_message(node));
    } else if (starts_with(d, "Failed to validate against schema associated with property")) {
      // Context: repeats that a member below failed, which is reported itself.
    } else {
      errors.add(path, Rank::other, "is not valid");
    }
  }
}

// valijson counts code points only up to the first U+0000, so a string that
// contains one could slip past maxLength; count those again ourselves.
void check_lengths_past_nul(const json& schema, const json& value, std::vector<std::string>& tokens, ErrorSet& errors) {
  if (value.is_object()) {
    for (const auto& member : value.items()) {
      tokens.push_back(member.key());
      check_lengths_past_nul(schema, member.value(), tokens, errors);
      tokens.pop_back();
    }
    return;
  }
  if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i) {
      tokens.push_back(std::to_string(i));
      check_lengths_past_nul(schema, value[i], tokens, errors);
      tokens.pop_back();
    }
    return;
  }
  if (!value.is_string()) return;
  const auto& s = value.get_ref<const std::string&>();
  if (s.find('\0') == std::string::npos) return;
  const json* node = schema_node(schema, tokens);
  const std::size_t max = schema_length(node, "maxLength");
  const std::string path = pointer(tokens);
  if (max > 0 && code_points(s).size() > max && !errors.has(path)) {
    errors.add(path, Rank::max_length, max_length_message(node));
  }
}

// ---------------------------------------------------------------------------
// Checks a schema cannot express. Each runs only on a field that is present,
// has the right type and had no schema error.

class SemanticChecks {
 public:
  SemanticChecks(const json& doc, ErrorSet& errors, Date today, std::vector<std::optional<DecodedFile>>& decoded)
      : doc_(doc), errors_(errors), today_(today), decoded_(decoded) {}

  void run() {
    // Names: the fields a person reads aloud or prints on a fax cover.
    for (const auto& field : {"/patient/given_name", "/patient/family_name", "/patient/guardian/name", "/referrer/name",
                              "/referrer/organization"}) {
      check_text(field, /*required=*/true);
    }
    // Other single-line text: a control character there can only be an
    // injection attempt or a broken client (it would end up in mail headers,
    // fax cover pages and pager text).
    for (const auto& field : {"/patient/guardian/phone", "/patient/guardian/relationship", "/diagnosis/name",
                              "/diagnosis/code/value", "/referrer/phone"}) {
      check_text(field, /*required=*/true);
    }
    check_text("/referrer/fax", /*required=*/false);
    check_text("/referrer/email", /*required=*/false);
    // Free text: tabs and line breaks are its own, other controls are not
    // (they went on into spool files and fax pages).
    check_free_text("/notes");

    const auto birth = check_birth_date();
    check_diagnosed_on(birth);
    check_npi();
    check_attachments();
  }

  // Each attachment's bytes, decoded from base64 while parsing, once its
  // data passed (attachments whose data did not pass are left empty).
  std::vector<DecodedFile> take_attachment_bytes() { return std::move(attachment_bytes_); }

 private:
  // The string at path (a pointer without escapes), if it passed the schema.
  const std::string* clean_string(const std::string& path) const {
    if (errors_.has(path)) return nullptr;
    std::vector<std::string> tokens;
    for (std::size_t start = 1; start <= path.size();) {
      const std::size_t end = std::min(path.find('/', start), path.size());
      tokens.push_back(path.substr(start, end - start));
      start = end + 1;
    }
    const json* v = value_node(doc_, tokens);
    return v != nullptr && v->is_string() ? &v->get_ref<const std::string&>() : nullptr;
  }

  void check_text(const std::string& path, bool required) {
    const std::string* s = clean_string(path);
    if (s == nullptr) return;
    const auto cps = code_points(*s);
    if (std::any_of(cps.begin(), cps.end(), is_control)) {
      errors_.add(path, Rank::semantic, "must not contain control characters");
    } else if (std::any_of(cps.begin(), cps.end(), is_bidi_control)) {
      errors_.add(path, Rank::semantic,
                  "must not contain bidirectional override or isolate characters (U+202A to U+202E, U+2066 to "
                  "U+2069)");
    } else if (required && std::all_of(cps.begin(), cps.end(), is_space)) {
      errors_.add(path, Rank::semantic, "must not be blank");
    }
  }

  void check_free_text(const std::string& path) {
    const std::string* s = clean_string(path);
    if (s == nullptr) return;
    // The schema's maxLength has had its say.
    if (auto problem = free_text_problem(*s, s->size())) errors_.add(path, Rank::semantic, std::move(*problem));
  }

  std::optional<Date> check_date(const std::string& path) {
    const std::string* s = clean_string(path);
    if (s == nullptr) return std::nullopt;
    const auto date = parse_iso_date(*s);
    if (!date) {
      errors_.add(path, Rank::semantic, "is not a real calendar date");
    } else if (*date > today_) {
      errors_.add(path, Rank::semantic, "must not be in the future");
      return std::nullopt;
    }
    return date;
  }

  std::optional<Date> check_birth_date() {
    const std::string path = "/patient/birth_date";
    const auto birth = check_date(path);
    if (!birth) return std::nullopt;
    // Compared field by field, so that 29 February needs no special case.
    const Date oldest{today_.year() - std::chrono::years{120}, today_.month(), today_.day()};
    if (*birth < oldest) {
      errors_.add(path, Rank::semantic, "must not be more than 120 years ago");
      return std::nullopt;
    }
    return birth;
  }

  void check_diagnosed_on(std::optional<Date> birth) {
    const std::string path = "/diagnosis/diagnosed_on";
    const auto diagnosed = check_date(path);
    if (diagnosed && birth && *diagnosed < *birth) {
      errors_.add(path, Rank::semantic, "must not be before the birth date");
    }
  }

  // An attachment's title goes on the fax cover and into the email: one line
  // of text. Its data must be base64; what the bytes are is the pipeline's
  // question (attachments/inspect.hpp).
  void check_attachments() {
    const auto list = doc_.find("attachments");
    if (list == doc_.end() || !list->is_array()) return;
    attachment_bytes_.resize(list->size());
    for (std::size_t i = 0; i < list->size(); ++i) {
      const std::string at = "/attachments/" + std::to_string(i);
      check_text(at + "/title", /*required=*/true);
      check_text(at + "/content_type", /*required=*/false);
      const std::string* data = clean_string(at + "/data");
      if (data == nullptr) continue;
      // Decoded while parsing (DocumentBuilder::end_string).
      if (i < decoded_.size() && decoded_[i]) {
        attachment_bytes_[i] = std::move(*decoded_[i]);
      } else {
        errors_.add(at + "/data", Rank::semantic, "is not base64 (RFC 4648: A-Z, a-z, 0-9, +, / and = padding)");
      }
    }
  }

  void check_npi() {
    const std::string path = "/referrer/npi";
    const std::string* s = clean_string(path);
    if (s != nullptr && !npi_is_valid(*s)) {
      errors_.add(path, Rank::semantic, "is not a valid NPI: check digit does not match");
    }
  }

  const json& doc_;
  ErrorSet& errors_;
  Date today_;
  std::vector<std::optional<DecodedFile>>& decoded_;
  std::vector<DecodedFile> attachment_bytes_;
};

// ---------------------------------------------------------------------------
// Building the Referral once everything has passed.

std::string text(const json& obj, const char* key) { return obj.at(key).get<std::string>(); }

std::optional<std::string> optional_text(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  return it->get<std::string>();
}

// `doc` loses its attachments: their bytes are kept apart (`attachment_bytes`,
// decoded), and the stored document holds the referral alone.
Referral to_referral(json& doc, std::vector<DecodedFile> attachment_bytes) {
  Referral r;
  const json& p = doc.at("patient");
  r.patient.given_name = text(p, "given_name");
  r.patient.family_name = text(p, "family_name");
  r.patient.birth_date = *parse_iso_date(text(p, "birth_date"));
  r.patient.sex = text(p, "sex");
  r.patient.postal_code = optional_text(p, "postal_code");
  if (const auto g = p.find("guardian"); g != p.end()) {
    r.patient.guardian = Guardian{text(*g, "name"), text(*g, "phone"), text(*g, "relationship")};
  }

  const json& d = doc.at("diagnosis");
  r.diagnosis.name = text(d, "name");
  if (const auto c = d.find("code"); c != d.end()) {
    r.diagnosis.code = DiagnosisCode{text(*c, "system"), text(*c, "value")};
  }
  if (const auto on = optional_text(d, "diagnosed_on")) r.diagnosis.diagnosed_on = parse_iso_date(*on);
  if (const auto pc = d.find("pathology_confirmed"); pc != d.end()) {
    r.diagnosis.pathology_confirmed = pc->get<bool>();
  }

  const json& f = doc.at("referrer");
  r.referrer.name = text(f, "name");
  r.referrer.credential = text(f, "credential");
  r.referrer.npi = text(f, "npi");
  r.referrer.organization = text(f, "organization");
  r.referrer.phone = text(f, "phone");
  r.referrer.fax = optional_text(f, "fax");
  r.referrer.email = text(f, "email");

  r.urgency = parse_urgency(text(doc, "urgency")).value_or(Urgency::routine);
  r.notes = optional_text(doc, "notes");
  if (const auto list = doc.find("attachments"); list != doc.end()) {
    for (std::size_t i = 0; i < list->size(); ++i) {
      Attachment a;
      a.title = text((*list)[i], "title");
      a.data = std::move(attachment_bytes.at(i).bytes);
      a.spooled = std::move(attachment_bytes.at(i).spooled);
      r.attachments.push_back(std::move(a));
    }
    doc.erase(list);
  }
  r.document = doc.dump();
  return r;
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read schema file " + file.string() + ": " + std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

struct ReferralValidator::Impl {
  json schema_document;  // for turning errors into messages (limits, enums)
  valijson::Schema schema;
  ValidationLimits limits;

  // The parsed document against the schema and the checks it cannot express.
  // With `files_required`, JSON without a non-empty "attachments" array is
  // FilesRequired before any other check of its content.
  ValidationResult check(DocumentParser& parsed, Date today, bool files_required) const;
};

ReferralValidator::ReferralValidator(const std::filesystem::path& schema_file, ValidationLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  try {
    impl_->schema_document = json::parse(read_file(schema_file));
  } catch (const json::exception& e) {
    throw std::runtime_error("schema file " + schema_file.string() + " is not valid JSON: " + e.what());
  }
  try {
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    const valijson::adapters::NlohmannJsonAdapter adapter(impl_->schema_document);
    parser.populateSchema(adapter, impl_->schema);
  } catch (const std::exception& e) {
    throw std::runtime_error("schema file " + schema_file.string() + " is not a valid JSON Schema: " + e.what());
  }
}

ReferralValidator::~ReferralValidator() = default;

ValidationResult ReferralValidator::validate(std::string_view json_text, Date today) const {
  return validate(json_text, today, {});
}

ValidationResult ReferralValidator::validate(std::string_view json_text, Date today,
                                             const std::vector<Attachment>& files, bool files_required) const {
  DocumentParser parser(impl_->limits.max_depth, files, {});
  parser.write(json_text);
  parser.finish();
  return impl_->check(parser, today, files_required);
}

ValidationResult ReferralValidator::validate(const SealedSpool& json_text, Date today, bool files_required,
                                             const std::filesystem::path& spool_directory) const {
  const std::vector<Attachment> none;
  DocumentParser parser(impl_->limits.max_depth, none, spool_directory);
  // One opened block at a time; a block that does not open throws (the
  // caller's: nothing is accepted).
  bool reading = true;
  for (std::size_t i = 0; i < json_text.blocks() && reading; ++i) reading = parser.write(json_text.block(i));
  parser.finish();
  return impl_->check(parser, today, files_required);
}

ValidationResult ReferralValidator::Impl::check(DocumentParser& parsed, Date today, bool files_required) const {
  DocumentBuilder& builder = parsed.builder();
  if (builder.too_deep()) {
    return MalformedInput{"nesting deeper than " + std::to_string(limits.max_depth) + " levels"};
  }
  if (parsed.error()) return MalformedInput{*parsed.error()};

  const json& doc = builder.root();
  if (files_required) {
    const json* files = doc.is_object() && doc.contains("attachments") ? &doc.at("attachments") : nullptr;
    if (files == nullptr || !files->is_array() || files->empty()) return FilesRequired{};
  }
  if (!doc.is_object()) return InvalidReferral{{FieldError{"", "expected a JSON object"}}};

  ErrorSet errors;
  for (const auto& path : builder.duplicates()) errors.add(path, Rank::duplicate, "duplicate key");

  // A Validator holds the compiled-regex cache for "pattern" constraints;
  // compiling them anew per request cost more than everything else here, so
  // each thread keeps one (the cache is keyed by pattern text, so sharing it
  // between schemas is safe). The parsed Schema is only read.
  thread_local valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  const valijson::adapters::NlohmannJsonAdapter target(doc);
  validator.validate(schema, target, &results);
  collect_schema_errors(schema_document, doc, results, errors);
  std::vector<std::string> tokens;
  check_lengths_past_nul(schema_document, doc, tokens, errors);

  SemanticChecks checks(doc, errors, today, builder.decoded());
  checks.run();

  if (!errors.empty()) return InvalidReferral{errors.finish()};
  return to_referral(builder.root(), checks.take_attachment_bytes());
}

std::optional<std::string> free_text_problem(std::string_view text, std::size_t max_chars) {
  const auto cps = code_points(text);
  if (cps.size() > max_chars) return "must be at most " + std::to_string(max_chars) + " characters";
  if (std::any_of(cps.begin(), cps.end(), is_free_text_control)) {
    return "must not contain control characters other than tab and line breaks";
  }
  return std::nullopt;
}

}  // namespace referrald
