#include "util/json_stream.hpp"

#include <algorithm>
#include <boost/json/basic_parser_impl.hpp>
// Boost.JSON's compiled parts (its parser's stack, its error category), here
// once for the whole program: no other file may include it.
#include <boost/json/src.hpp>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/referral.hpp"
#include "util/base64_decoder.hpp"
#include "util/strings.hpp"

namespace referrald {

namespace {

using boost::json::error_code;
using boost::json::string_view;

// A file's data while it is read: the decoder its parts go through and
// where the bytes go. At namespace scope: clang 14 cannot default-construct
// a class nested in one that is not yet complete.
struct FileText {
  std::string pointer;    // of its place in the document
  std::size_t index = 0;  // in "attachments" (referral_attachments)
  std::size_t size = 0;   // of the base64 text so far
  std::optional<Base64Decoder> decoder;
  DecodedFile file;
  bool bad = false;  // not base64: the rest of the text is let go unread
  bool kept = true;  // false past max_files: decoded, not kept

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

// What the builder does to a document, for each kind it builds: nlohmann's
// (FHIR's resources, ordered as FHIR writes them) and Boost.JSON's (the v1
// referral: the schema validator reads it, and every value of one body
// comes from one arena, JsonStream::root's storage).
template <class Json>
struct Dom {
  using Storage = std::nullptr_t;
  static Storage storage() { return nullptr; }
  template <class V>
  static Json make(Storage /*storage*/, V&& v) {
    return Json(std::forward<V>(v));
  }
  // As nlohmann reads numbers: unsigned when not negative.
  static Json integer(Storage /*storage*/, std::int64_t v) {
    return v >= 0 ? Json(static_cast<std::uint64_t>(v)) : Json(v);
  }
  static Json array(Storage /*storage*/) { return Json::array(); }
  static Json object(Storage /*storage*/) { return Json::object(); }
  static bool is_array(const Json& v) { return v.is_array(); }
  static bool is_object(const Json& v) { return v.is_object(); }
  static std::size_t size(const Json& v) { return v.size(); }
  static bool contains(const Json& object, const std::string& key) { return object.contains(key); }
  static Json& append(Json& array, Json&& v) {
    array.push_back(std::move(v));
    return array.back();
  }
  static Json& set(Json& object, const std::string& key, Json&& v) { return object[key] = std::move(v); }
};

template <>
struct Dom<boost::json::value> {
  using Json = boost::json::value;
  using Storage = boost::json::storage_ptr;
  // One bump allocator per document: its values are freed together, with it.
  static Storage storage() { return boost::json::make_shared_resource<boost::json::monotonic_resource>(); }
  static Json make(const Storage& storage, std::string&& v) { return Json(boost::json::string_view(v), storage); }
  static Json make(const Storage& storage, std::nullptr_t) { return Json(nullptr, storage); }
  template <class V>
  static Json make(const Storage& storage, V v) {
    return Json(v, storage);
  }
  // As Boost.JSON reads numbers (and valijson's adapter takes them): signed
  // when they fit.
  static Json integer(const Storage& storage, std::int64_t v) { return Json(v, storage); }
  static Json array(const Storage& storage) { return boost::json::array(storage); }
  static Json object(const Storage& storage) { return boost::json::object(storage); }
  static bool is_array(const Json& v) { return v.is_array(); }
  static bool is_object(const Json& v) { return v.is_object(); }
  static std::size_t size(const Json& v) { return v.is_array() ? v.get_array().size() : v.get_object().size(); }
  static bool contains(const Json& object, const std::string& key) { return object.get_object().contains(key); }
  static Json& append(Json& array, Json&& v) { return array.get_array().emplace_back(std::move(v)); }
  static Json& set(Json& object, const std::string& key, Json&& v) { return object.get_object()[key] = std::move(v); }
};

template <class Json>
class DocumentBuilder {
  using D = Dom<Json>;

 public:
  // Boost.JSON's own limits: none (the depth is ours, the lengths the schema's).
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

  explicit DocumentBuilder(const JsonStreamOptions& options)
      : options_(options), storage_(D::storage()), root_(D::make(storage_, nullptr)) {}

  bool on_document_begin(error_code& /*ec*/) { return true; }
  bool on_document_end(error_code& /*ec*/) { return true; }
  bool on_array_begin(error_code& ec) { return open(D::array(storage_), ec); }
  bool on_array_end(std::size_t /*n*/, error_code& /*ec*/) { return close(); }
  bool on_object_begin(error_code& ec) { return open(D::object(storage_), ec); }
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
  bool on_int64(std::int64_t v, string_view /*text*/, error_code& /*ec*/) { return add(D::integer(storage_, v)); }
  bool on_uint64(std::uint64_t v, string_view /*text*/, error_code& /*ec*/) { return add(D::make(storage_, v)); }
  bool on_double(double v, string_view /*text*/, error_code& ec) {
    if (!std::isfinite(v)) {
      out_of_range_ = true;
      ec = boost::json::error::exception;  // stops the parser
      return false;
    }
    return add(D::make(storage_, v));
  }
  bool on_bool(bool v, error_code& /*ec*/) { return add(D::make(storage_, v)); }
  bool on_null(error_code& /*ec*/) { return add(D::make(storage_, nullptr)); }
  // Comments are not allowed (parse_options), so never called.
  bool on_comment_part(string_view /*part*/, error_code& /*ec*/) { return true; }
  bool on_comment(string_view /*part*/, error_code& /*ec*/) { return true; }

  Json& root() { return root_; }
  std::map<std::string, std::optional<DecodedFile>>& files() { return files_; }
  bool too_deep() const { return too_deep_; }
  bool out_of_range() const { return out_of_range_; }
  std::vector<std::string>& duplicates() { return duplicates_; }

 private:
  struct Frame {
    Json* container;
    std::string key;            // the member being parsed (objects only)
    bool discard = false;       // that member repeats an earlier key: parse it, keep the first
    bool in_discarded = false;  // this container is part of such a member
  };

  void string_part(string_view part) {
    if (!in_string_) {
      in_string_ = true;
      if (at_file()) start_file_text();
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
  // kept at all. An empty one stays, for a schema's minLength to speak
  // of. A file beside the JSON is not read here: its place is marked, and
  // the pipeline hands the referral the file where it waits (plan_intake).
  void start_file_text() {
    file_text_.emplace();
    FileText& f = *file_text_;
    f.pointer = current_pointer();
    f.index = options_.files == FileStrings::referral_attachments ? D::size(*stack_[1].container) - 1 : files_.size();
    if (options_.files_beside == 0) {
      f.decoder.emplace();
      // More files than any office takes are refused for their number: none
      // of them is worth a spool (an open file).
      f.kept = f.index < options_.max_files;
      if (f.kept && !options_.spool_directory.empty()) {
        f.file.spooled = std::make_shared<SealedSpool>(options_.spool_directory);
      }
    }
  }

  void end_string() {
    in_string_ = false;
    if (!file_text_) {
      add(D::make(storage_, std::move(text_)));
      text_.clear();
      return;
    }
    FileText& f = *file_text_;
    auto& slot = files_[f.pointer];
    if (f.decoder) {
      if (!f.bad && f.decoder->finish(f.sink())) {
        if (f.file.spooled) f.file.spooled->finish();
        f.file.dropped = !f.kept;
        slot = std::move(f.file);
      }
    } else if (f.index < options_.files_beside) {
      slot = DecodedFile{};
    }
    const bool empty = f.size == 0;
    file_text_.reset();  // a spool of text that was not base64 goes with it
    add(D::make(storage_, empty ? std::string() : std::string(attachment_data_stand_in)));
  }

  void key() {
    Frame& top = stack_.back();
    top.discard = D::contains(*top.container, key_);
    top.key = std::move(key_);
    key_.clear();
    // Inside a value that is itself dropped, a repeat is not worth a message.
    if (top.discard && !top.in_discarded && duplicates_.size() < JsonStream<Json>::max_reported_duplicates) {
      auto pointer = current_pointer();
      if (std::find(duplicates_.begin(), duplicates_.end(), pointer) == duplicates_.end()) {
        duplicates_.push_back(std::move(pointer));
      }
    }
  }

  Json* place(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& top = stack_.back();
    if (D::is_array(*top.container)) {
      // Safe to hold: nothing is appended to this array while the element is open.
      return &D::append(*top.container, std::move(v));
    }
    if (top.discard) {
      discarded_.push_back(std::make_unique<Json>(std::move(v)));
      return discarded_.back().get();
    }
    return &D::set(*top.container, top.key, std::move(v));
  }

  bool add(Json&& v) {
    place(std::move(v));
    return true;
  }

  bool open(Json&& container, error_code& ec) {
    if (stack_.size() >= options_.max_depth) {
      too_deep_ = true;
      ec = boost::json::error::too_deep;  // stops the parser
      return false;
    }
    const bool discarded = in_discarded();
    Json* p = place(std::move(container));
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
           (stack_.back().in_discarded || (stack_.back().discard && D::is_object(*stack_.back().container)));
  }

  // Whether the string being read is a file (the first of repeated keys:
  // the one that is kept).
  bool at_file() const {
    if (stack_.empty()) return false;
    const Frame& top = stack_.back();
    const bool data = D::is_object(*top.container) && top.key == "data" && !top.discard && !top.in_discarded;
    if (options_.files == FileStrings::fhir_data) return data;
    return data && stack_.size() == 3 && D::is_object(*stack_[0].container) && stack_[0].key == "attachments" &&
           !stack_[0].discard && D::is_array(*stack_[1].container);
  }

  // Pointer to the member whose key was just read.
  std::string current_pointer() const {
    std::string out;
    for (const auto& f : stack_) {
      out += '/';
      out += D::is_array(*f.container) ? std::to_string(D::size(*f.container) - 1) : json_pointer_token(f.key);
    }
    return out;
  }

  const JsonStreamOptions& options_;
  typename D::Storage storage_;
  Json root_;
  std::vector<Frame> stack_;
  std::vector<std::unique_ptr<Json>> discarded_;
  std::vector<std::string> duplicates_;
  std::map<std::string, std::optional<DecodedFile>> files_;
  std::string key_;   // the key being read
  std::string text_;  // the string being read (not a file's)
  std::optional<FileText> file_text_;
  bool in_string_ = false;
  bool too_deep_ = false;
  bool out_of_range_ = false;
};

// The body, block by block, into a DocumentBuilder; a syntax error becomes
// a message that names its byte and never echoes the input (it may be a
// patient's name). The offsets are those of the first byte that cannot be
// read on, wherever the blocks were cut.
template <class Json>
class DocumentParser {
 public:
  explicit DocumentParser(const JsonStreamOptions& options) : parser_(parse_options(options.max_depth), options) {}

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

  DocumentBuilder<Json>& builder() { return parser_.handler(); }
  const std::optional<std::string>& error() const { return error_; }

 private:
  // Bytes kept from before the current block: enough to look back over a
  // UTF-8 sequence or a literal cut by a block's end.
  static constexpr std::size_t tail_bytes = 8;
  static constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

  static boost::json::parse_options parse_options(std::size_t max_depth) {
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
    if (parser_.handler().too_deep()) return;  // the caller says so, with its bound
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

  boost::json::basic_parser<DocumentBuilder<Json>> parser_;
  std::string_view block_;  // the block being read
  std::string tail_;        // the last bytes before it
  std::size_t offset_ = 0;  // of the block in the body
  bool started_ = false;    // the first block was seen (and a mark skipped)
  std::optional<std::string> error_;
  bool stopped_ = false;
};

template <class Json>
JsonStream<Json> result_of(DocumentParser<Json>& parser) {
  auto& builder = parser.builder();
  JsonStream<Json> out;
  out.too_deep = builder.too_deep();
  if (!out.too_deep) out.error = parser.error();
  out.root = std::move(builder.root());
  out.duplicates = std::move(builder.duplicates());
  out.files = std::move(builder.files());
  return out;
}

}  // namespace

template <class Json>
JsonStream<Json> read_json(std::string_view text, const JsonStreamOptions& options) {
  DocumentParser<Json> parser(options);
  parser.write(text);
  parser.finish();
  return result_of(parser);
}

template <class Json>
JsonStream<Json> read_json(const SealedSpool& text, const JsonStreamOptions& options) {
  DocumentParser<Json> parser(options);
  // One opened block at a time; a block that does not open throws (the
  // caller's: nothing is accepted).
  bool reading = true;
  for (std::size_t i = 0; i < text.blocks() && reading; ++i) reading = parser.write(text.block(i));
  parser.finish();
  return result_of(parser);
}

// The two documents intake reads: the v1 referral (Boost.JSON's, which the
// schema validator reads) and FHIR's resources (ordered, as FHIR writes them).
template JsonStream<boost::json::value> read_json(std::string_view, const JsonStreamOptions&);
template JsonStream<boost::json::value> read_json(const SealedSpool&, const JsonStreamOptions&);
template JsonStream<nlohmann::ordered_json> read_json(std::string_view, const JsonStreamOptions&);
template JsonStream<nlohmann::ordered_json> read_json(const SealedSpool&, const JsonStreamOptions&);

}  // namespace referrald
