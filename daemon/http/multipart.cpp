#include "http/multipart.hpp"

#include <gmime/gmime.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <functional>
#include <memory>
#include <mutex>

#include "util/strings.hpp"

namespace referrald::http {

namespace {

// GLib objects released when the handle goes (g_object_unref).
struct Unref {
  void operator()(void* object) const noexcept {
    if (object != nullptr) g_object_unref(object);
  }
};
template <typename T>
using Ref = std::unique_ptr<T, Unref>;

bool is_a(GMimeObject* object, GType type) {
  return object != nullptr && g_type_check_instance_is_a(reinterpret_cast<GTypeInstance*>(object), type) != 0;
}

void init_gmime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

std::string part_name(std::size_t index) { return "Part " + std::to_string(index + 1) + " of the form"; }

// RFC 2046 section 5.1.1: bcharsnospace and space, not ending in a space.
bool is_boundary(std::string_view b) {
  if (b.empty() || b.size() > 70 || b.back() == ' ') return false;
  return std::all_of(b.begin(), b.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
  });
}

// The Content-Type fields of a part's head, with their folded lines, in
// lower case: where a part says it holds parts of its own. Not the whole
// head: a field's name may hold any text in its quotes.
std::string content_types(std::string_view head) {
  std::string out;
  bool in_type = false;
  while (!head.empty()) {
    const auto eol = head.find('\n');
    const std::string_view line = head.substr(0, eol);
    const bool folded = line.starts_with(' ') || line.starts_with('\t');
    if (!folded) in_type = lower(std::string(line.substr(0, 13))) == "content-type:";
    if (in_type) out += lower(std::string(line)) + '\n';
    if (eol == std::string_view::npos) break;
    head.remove_prefix(eol + 1);
  }
  return out;
}

// --- the body as a GMimeStream ---------------------------------------------
//
// A read-only, seekable GMimeStream over a FileReader: GMime reads the body
// where it is (memory, or its spool a block at a time), and a part's
// content is a substream of it (the parser's persist_stream), read only
// when the part is decoded. A read that fails (a spool block that does not
// open) is an error to GMime (-1); the reader remembers what it threw.

struct ReaderStream {
  GMimeStream parent;
  FileReader* file;
};

struct ReaderStreamClass {
  GMimeStreamClass parent;
};

gint64 stream_end(GMimeStream* stream) {
  return stream->bound_end != -1 ? stream->bound_end
                                 : static_cast<gint64>(reinterpret_cast<ReaderStream*>(stream)->file->size());
}

GType reader_stream_type();

GMimeStream* new_reader_stream(FileReader& file, gint64 start, gint64 end) {
  auto* stream = static_cast<GMimeStream*>(g_object_new(reader_stream_type(), nullptr));
  reinterpret_cast<ReaderStream*>(stream)->file = &file;
  g_mime_stream_construct(stream, start, end);
  return stream;
}

ssize_t reader_read(GMimeStream* stream, char* out, size_t n) {
  const gint64 end = stream_end(stream);
  if (stream->position >= end) return 0;
  const auto wanted = static_cast<std::size_t>(std::min<gint64>(end - stream->position, static_cast<gint64>(n)));
  try {
    const auto got =
        reinterpret_cast<ReaderStream*>(stream)->file->read(static_cast<std::size_t>(stream->position), out, wanted);
    stream->position += static_cast<gint64>(got);
    return static_cast<ssize_t>(got);
  } catch (const std::exception&) {
    errno = EIO;
    return -1;
  }
}

gint64 reader_seek(GMimeStream* stream, gint64 offset, GMimeSeekWhence whence) {
  const gint64 end = stream_end(stream);
  const gint64 base = whence == GMIME_STREAM_SEEK_END ? end : whence == GMIME_STREAM_SEEK_CUR ? stream->position : 0;
  const gint64 to = base + offset;
  if (to < stream->bound_start || to > end) {
    errno = EINVAL;
    return -1;
  }
  stream->position = to;
  return to;
}

void reader_stream_class_init(gpointer klass, gpointer) {
  auto* c = static_cast<GMimeStreamClass*>(klass);
  c->read = reader_read;
  c->write = [](GMimeStream*, const char*, size_t) -> ssize_t {
    errno = EBADF;
    return -1;
  };
  c->flush = [](GMimeStream*) { return 0; };
  c->close = [](GMimeStream*) { return 0; };
  c->eos = [](GMimeStream* stream) -> gboolean { return stream->position >= stream_end(stream) ? TRUE : FALSE; };
  c->reset = [](GMimeStream* stream) {
    stream->position = stream->bound_start;
    return 0;
  };
  c->seek = reader_seek;
  c->tell = [](GMimeStream* stream) { return stream->position; };
  c->length = [](GMimeStream* stream) { return stream_end(stream) - stream->bound_start; };
  c->substream = [](GMimeStream* stream, gint64 start, gint64 end) {
    return new_reader_stream(*reinterpret_cast<ReaderStream*>(stream)->file, start, end);
  };
}

GType reader_stream_type() {
  static const GType type = g_type_register_static_simple(g_mime_stream_get_type(), "ReferraldReaderStream",
                                                          sizeof(ReaderStreamClass), reader_stream_class_init,
                                                          sizeof(ReaderStream), nullptr, static_cast<GTypeFlags>(0));
  return type;
}

// Bounds what the library is given: every delimiter line of `boundary` is
// found on the raw body, each part's head must end within the limit and
// may not declare parts of its own, and the body must end with the close
// delimiter. Read through the reader: a head (at most the limit) at a
// time, never the whole body. Returns a sentence, or empty when the body
// may be parsed.
std::string prescan(std::string_view boundary, FileReader& body, const MultipartLimits& limits) {
  const std::string dash = "--" + std::string(boundary);
  std::size_t parts = 0;
  bool closed = false;
  for (std::size_t at = body.find(dash, 0); at != std::string_view::npos; at = body.find(dash, at + dash.size())) {
    if (at != 0 && body.copy(at - 1, 1) != "\n") continue;  // not at the start of a line: part of some content
    const std::size_t after = at + dash.size();
    if (body.copy(after, 2) == "--") {
      closed = true;
      break;
    }
    if (++parts > limits.max_parts) {
      return "The form was sent in more than " + std::to_string(limits.max_parts) + " parts.";
    }
    const auto line_end = body.find("\n", after);
    if (line_end == std::string_view::npos) break;  // cut short: no closing delimiter
    const std::string head_bytes = body.copy(line_end + 1, limits.max_head_bytes + 4);
    const std::string_view head(head_bytes);
    auto end = head.starts_with("\r\n") || head.starts_with("\n") ? 0 : head.find("\r\n\r\n");
    if (end == std::string_view::npos) end = head.find("\n\n");
    if (end == std::string_view::npos || end > limits.max_head_bytes) {
      return part_name(parts - 1) + " has headers longer than " + std::to_string(limits.max_head_bytes / 1024) +
             " kB, or they do not end.";
    }
    if (const auto types = content_types(head.substr(0, end));
        types.find("multipart/") != std::string::npos || types.find("message/") != std::string::npos) {
      return part_name(parts - 1) + " holds parts of its own; a form's part is one field or one file.";
    }
  }
  if (!closed) return "The form's body was cut short (it does not end with its closing boundary).";
  if (parts == 0) return "The form was sent without any field.";
  return {};
}

// What the parser says of the body; anything but what a browser's body may
// show is a reason to refuse it.
struct Warnings {
  std::string problem;
};

void on_warning(gint64 offset, GMimeParserWarning code, const gchar* item, gpointer user_data) {
  (void)offset;
  (void)item;  // may be the body's content: never shown or logged
  auto* w = static_cast<Warnings*>(user_data);
  if (!w->problem.empty()) return;
  switch (code) {
    // UTF-8 file names arrive raw (RFC 7578 section 4.2); a file input left
    // empty is a part without content; address lists are not in a form.
    // A header sent twice is refused below, naming it.
    case GMIME_WARN_UNENCODED_8BIT_HEADER:
    case GMIME_WARN_PART_WITHOUT_CONTENT:
    case GMIME_WARN_INVALID_ADDRESS_LIST:
    case GMIME_WARN_DUPLICATED_HEADER:
    case GMIME_CRIT_CONFLICTING_HEADER: return;
    case GMIME_WARN_TRUNCATED_MESSAGE:
    case GMIME_WARN_MALFORMED_MULTIPART:
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
      w->problem = "The form's body is not a complete multipart/form-data body.";
      return;
    case GMIME_CRIT_NESTING_OVERFLOW: w->problem = "The form's body nests parts."; return;
    default: w->problem = "A part of the form has headers that cannot be read."; return;
  }
}

// A header a part has twice ("content-disposition header"), or "".
std::string repeated_header(GMimeObject* part) {
  GMimeHeaderList* headers = g_mime_object_get_header_list(part);
  const int n = g_mime_header_list_get_count(headers);
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    const char* name = g_mime_header_get_name(g_mime_header_list_get_header_at(headers, i));
    names.push_back(lower(name == nullptr ? "" : name));
  }
  std::sort(names.begin(), names.end());
  const auto twice = std::adjacent_find(names.begin(), names.end());
  if (twice == names.end()) return {};
  // Named in the answer only when it is a plain header name.
  const bool plain = !twice->empty() && twice->size() <= 40 && std::all_of(twice->begin(), twice->end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
  return plain ? *twice + " header" : std::string("one of its headers");
}

// A part's content, its transfer encoding undone, handed to `each` a piece
// (at most 64 kB) at a time as GMime reads it from the body; `each` says
// whether to go on. False when it cannot be read or decoded.
bool read_content(GMimePart* part, const std::function<bool(std::string_view)>& each) {
  GMimeDataWrapper* content = g_mime_part_get_content(part);
  if (content == nullptr) return true;
  GMimeStream* raw = g_mime_data_wrapper_get_stream(content);
  if (raw == nullptr) return true;
  if (g_mime_stream_reset(raw) < 0) return false;
  Ref<GMimeStream> decoded(g_mime_stream_filter_new(raw));
  switch (const auto encoding = g_mime_data_wrapper_get_encoding(content)) {
    case GMIME_CONTENT_ENCODING_BASE64:
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
    case GMIME_CONTENT_ENCODING_UUENCODE: {
      Ref<GMimeFilter> filter(g_mime_filter_basic_new(encoding, FALSE));
      g_mime_stream_filter_add(reinterpret_cast<GMimeStreamFilter*>(decoded.get()), filter.get());
      break;
    }
    default: break;
  }
  std::string piece(SealedSpool::block_size, '\0');
  while (g_mime_stream_eos(decoded.get()) == FALSE) {
    const auto n = g_mime_stream_read(decoded.get(), piece.data(), piece.size());
    if (n < 0) return false;
    if (n > 0 && !each(std::string_view(piece.data(), static_cast<std::size_t>(n)))) return true;
  }
  return true;
}

// The last segment of a path some browsers send as the name ("C:\scans\a.pdf").
std::string base_name(std::string_view name) {
  const auto slash = name.find_last_of("/\\");
  return std::string(slash == std::string_view::npos ? name : name.substr(slash + 1));
}

}  // namespace

bool is_multipart_form_type(std::string_view content_type) {
  auto media = lower(std::string(content_type.substr(0, content_type.find(';'))));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.pop_back();
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.erase(0, 1);
  return media == "multipart/form-data";
}

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  if (!is_multipart_form_type(content_type) || content_type.find('\0') != std::string_view::npos) return std::nullopt;
  init_gmime();
  const std::string text(content_type);
  Ref<GMimeContentType> type(g_mime_content_type_parse(nullptr, text.c_str()));
  if (!type) return std::nullopt;
  const char* boundary = g_mime_content_type_get_parameter(type.get(), "boundary");
  if (boundary == nullptr || !is_boundary(boundary)) return std::nullopt;
  return std::string(boundary);
}

namespace {

std::variant<MultipartForm, std::string> parse(std::string_view boundary, FileReader& body, std::string_view file_field,
                                               const MultipartLimits& limits,
                                               const std::filesystem::path& spool_directory) {
  if (!is_boundary(boundary)) return std::string("The form's body has no boundary it can be read by.");
  if (auto problem = prescan(boundary, body, limits); !problem.empty()) return problem;
  init_gmime();

  // The body as the content of an entity whose head is the request's
  // Content-Type. The body is not copied: GMime reads it through the
  // reader, and the parts are substreams of it (persist_stream).
  const std::string head = "Content-Type: multipart/form-data; boundary=\"" + std::string(boundary) + "\"\r\n\r\n";
  Ref<GMimeStream> head_stream(g_mime_stream_mem_new_with_buffer(head.data(), head.size()));
  Ref<GMimeStream> body_stream(new_reader_stream(body, 0, -1));
  Ref<GMimeStream> entity(g_mime_stream_cat_new());
  g_mime_stream_cat_add_source(reinterpret_cast<GMimeStreamCat*>(entity.get()), head_stream.get());
  g_mime_stream_cat_add_source(reinterpret_cast<GMimeStreamCat*>(entity.get()), body_stream.get());

  Warnings warnings;
  std::unique_ptr<GMimeParserOptions, void (*)(GMimeParserOptions*)> options(g_mime_parser_options_new(),
                                                                             g_mime_parser_options_free);
  g_mime_parser_options_set_warning_callback(options.get(), on_warning, &warnings);
  Ref<GMimeParser> parser(g_mime_parser_new_with_stream(entity.get()));
  g_mime_parser_set_persist_stream(parser.get(), TRUE);
  Ref<GMimeObject> root(g_mime_parser_construct_part(parser.get(), options.get()));
  body.rethrow_failure();  // a body that could not be read is not a malformed one
  if (!is_a(root.get(), g_mime_multipart_get_type())) {
    return warnings.problem.empty() ? std::string("The form's body is not a multipart/form-data body.")
                                    : warnings.problem;
  }
  auto* multipart = reinterpret_cast<GMimeMultipart*>(root.get());
  const int count = g_mime_multipart_get_count(multipart);
  if (count == 0) return std::string("The form was sent without any field.");
  // A header twice first: a file name that carries a line break and a
  // header of its own is named as that, whatever else the parser saw.
  for (int i = 0; i < count; ++i) {
    GMimeObject* part = g_mime_multipart_get_part(multipart, i);
    if (const auto twice = repeated_header(part); !twice.empty()) {
      return part_name(static_cast<std::size_t>(i)) + " has " + (twice.starts_with("one") ? "" : "its ") + twice +
             " twice.";
    }
  }
  if (!warnings.problem.empty()) return warnings.problem;

  MultipartForm form;
  std::size_t text_bytes = 0;
  for (int i = 0; i < count; ++i) {
    const auto index = static_cast<std::size_t>(i);
    GMimeObject* part = g_mime_multipart_get_part(multipart, i);
    if (!is_a(part, g_mime_part_get_type())) {
      return part_name(index) + " holds parts of its own; a form's part is one field or one file.";
    }
    GMimeContentDisposition* disposition = g_mime_object_get_content_disposition(part);
    const char* kind = disposition == nullptr ? nullptr : g_mime_content_disposition_get_disposition(disposition);
    const char* name = disposition == nullptr ? nullptr : g_mime_content_disposition_get_parameter(disposition, "name");
    if (kind == nullptr || lower(kind) != "form-data" || name == nullptr || *name == '\0') {
      return part_name(index) + " does not say which field it is (Content-Disposition: form-data; name=...).";
    }
    const char* filename = g_mime_content_disposition_get_parameter(disposition, "filename");
    if (!is_valid_utf8(name) || (filename != nullptr && !is_valid_utf8(filename))) {
      return part_name(index) + " has a name that is not valid UTF-8.";
    }
    auto* content = reinterpret_cast<GMimePart*>(part);
    if (filename != nullptr) {
      if (name != file_field) return part_name(index) + " is a file, in a field that takes none.";
      // Into a spool of its own as it is decoded, or into memory.
      UploadedFile file{base_name(filename), {}, {}};
      std::shared_ptr<SealedSpool> spool;
      if (!spool_directory.empty()) spool = std::make_shared<SealedSpool>(spool_directory);
      const bool ok = read_content(content, [&](std::string_view piece) {
        if (spool) {
          spool->append(piece);
        } else {
          file.data.append(piece);
        }
        return true;
      });
      body.rethrow_failure();
      if (!ok) return part_name(index) + " could not be decoded.";
      if (spool) {
        spool->finish();
        file.spooled = std::move(spool);
      }
      if (*filename == '\0' && file.size() == 0) continue;  // the file input left empty
      form.files.push_back(std::move(file));
      continue;
    }
    if (name == file_field) return part_name(index) + " is in the files' field but is not a file.";
    std::string data;
    bool over = false;
    const bool ok = read_content(content, [&](std::string_view piece) {
      text_bytes += piece.size();
      over = text_bytes > limits.max_text_bytes;
      if (!over) data.append(piece);
      return !over;  // not read further than the limit
    });
    body.rethrow_failure();
    if (!ok) return part_name(index) + " could not be decoded.";
    if (over) {
      return "The form's text fields come to more than " + std::to_string(limits.max_text_bytes / 1024) + " kB.";
    }
    if (!is_valid_utf8(data)) return "The form's text was damaged on the way (it was not valid UTF-8).";
    form.fields.emplace_back(name, std::move(data));
  }
  return form;
}

}  // namespace

std::variant<MultipartForm, std::string> parse_multipart_form(std::string_view boundary, FileReader& body,
                                                              std::string_view file_field,
                                                              const MultipartLimits& limits,
                                                              const std::filesystem::path& spool_directory) {
  auto parsed = parse(boundary, body, file_field, limits, spool_directory);
  body.rethrow_failure();  // a read of the prescan or the parser that failed
  return parsed;
}

std::variant<MultipartForm, std::string> parse_multipart_form(std::string_view boundary, std::string_view body,
                                                              std::string_view file_field,
                                                              const MultipartLimits& limits) {
  FileReader reader(body);
  return parse_multipart_form(boundary, reader, file_field, limits);
}

}  // namespace referrald::http
