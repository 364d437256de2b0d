#include "store/attachments.hpp"

#include "store/payload.hpp"
#include "store/rows.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <system_error>

#include "util/sealed_spool.hpp"

namespace referrald::store {

using detail::ResetOnExit;

namespace {

std::string data_context(const std::string& referral_id, std::int64_t position) {
  return referral_id + "/attachment/" + std::to_string(position);
}

std::string title_context(const std::string& referral_id, std::int64_t position) {
  return data_context(referral_id, position) + "/title";
}

constexpr const char* info_columns = "position, title, content_type, bytes, pages, sha256";

AttachmentInfo read_info(Database& db, const Statement& st, const std::string& referral_id) {
  AttachmentInfo info;
  info.position = static_cast<int>(st.column_int(0));
  info.title = open_text(db.payload_keys(), st.column_blob(1), title_context(referral_id, info.position));
  info.content_type = st.column_text(2);
  info.bytes = st.column_int(3);
  info.pages = static_cast<int>(st.column_int(4));
  info.sha256 = st.column_text(5);
  return info;
}

Attachment to_file(AttachmentInfo info) {
  Attachment a;
  a.title = std::move(info.title);
  a.content_type = std::move(info.content_type);
  a.pages = info.pages;
  a.sha256 = std::move(info.sha256);
  return a;
}

// A file is sealed and opened a spool block at a time.
constexpr std::size_t block = SealedSpool::block_size;

// Seals a file into the data column of the row just inserted with a
// zeroblob of TextSealer::sealed_size: the header, the ciphertext a block at
// a time as it is made, the tag. The same bytes seal_text would have bound.
void write_sealed(Database& db, std::int64_t rowid, TextSealer& sealer, const Attachment& a) {
  const auto blob = db.open_blob("attachments", "data", rowid, true);
  blob->write(0, sealer.head());
  std::size_t at = sealer.head().size();
  std::string out(block, '\0');
  const auto each = [&](std::string_view piece) {
    for (; !piece.empty(); piece.remove_prefix(std::min(piece.size(), block))) {
      const auto part = piece.substr(0, block);
      sealer.update(part, out.data());
      blob->write(at, std::string_view(out.data(), part.size()));
      at += part.size();
    }
  };
  if (a.spooled) {
    a.spooled->for_each_block(each);
  } else {
    each(a.data);
  }
  // The row was made for exactly a.size() bytes: a spool that read back
  // shorter or longer would leave a value that never opens.
  if (at != sealer.head().size() + a.size()) {
    throw std::runtime_error("attachment: the file read back as " + std::to_string(at - sealer.head().size()) +
                             " bytes where " + std::to_string(a.size()) + " were counted");
  }
  blob->write(at, sealer.finish());
}

// Reads `n` bytes of a stored value from `offset` into `out`.
using ReadStored = std::function<void(std::size_t offset, char* out, std::size_t n)>;

// Opens a stored file (`size` bytes, read through `read`) a block at a time
// into a new spool in `directory`: it is handed on only once its tag has
// been checked, and its plaintext is never whole in memory. Throws
// PayloadError as open_text does (naming the file by `context`), and
// std::system_error when no spool can be made in `directory`.
std::shared_ptr<const SealedSpool> open_into_spool(const KeyRing* keys, const ReadStored& read, std::size_t size,
                                                   const std::string& context, const std::filesystem::path& directory) {
  std::string in(std::min(size, TextOpener::head_max), '\0');
  read(0, in.data(), in.size());
  TextOpener opener(keys, in, size, context);
  auto spool = std::make_shared<SealedSpool>(directory);
  std::string out;
  for (std::size_t done = 0; done < opener.text_size();) {
    const std::size_t n = std::min(block, opener.text_size() - done);
    in.resize(n);
    out.resize(n);
    read(opener.text_offset() + done, in.data(), n);
    opener.update(in, out.data());
    spool->append(out);
    done += n;
  }
  in.resize(opener.tag_size());
  read(opener.text_offset() + opener.text_size(), in.data(), in.size());
  opener.finish(in);
  spool->finish();
  return spool;
}

// The file of the row `st` stands on (info_columns, then at `data_column`
// SQLite's rowid or PostgreSQL's data itself), opened into a spool beside
// the database; whole, into `data`, where no spool can be made there (a
// referralctl user who may read the database's directory but not write it).
Attachment read_file(Database& db, const Statement& st, const std::string& referral_id, int data_column) {
  AttachmentInfo info = read_info(db, st, referral_id);
  const std::string context = data_context(referral_id, info.position);
  Attachment a = to_file(std::move(info));
  std::string whole;  // PostgreSQL returns the bytea whole
  std::unique_ptr<Blob> blob;
  if (db.incremental_blobs()) {
    blob = db.open_blob("attachments", "data", st.column_int(data_column), false);
  } else {
    whole = st.column_blob(data_column);
  }
  const std::size_t size = blob ? blob->size() : whole.size();
  const ReadStored read = [&](std::size_t offset, char* out, std::size_t n) {
    if (blob) {
      blob->read(offset, out, n);
    } else {
      std::copy_n(whole.data() + offset, n, out);
    }
  };
  try {
    a.spooled = open_into_spool(db.payload_keys(), read, size, context, default_spool_directory(db.file()));
  } catch (const std::system_error&) {
    std::string stored(size, '\0');
    read(0, stored.data(), size);
    a.data = open_text(db.payload_keys(), stored, context);
  }
  return a;
}

}  // namespace

void insert_attachments(Database& db, const std::string& referral_id, TimePoint at,
                        const std::vector<Attachment>& attachments) {
  if (attachments.empty()) return;
  Statement& st = db.cached(
      "INSERT INTO attachments (referral_id, position, title, content_type, bytes, pages, sha256, data) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  std::int64_t position = 0;
  for (const Attachment& a : attachments) {
    ++position;
    const std::size_t size = a.size();
    const std::string context = data_context(referral_id, position);
    // SQLite: the row is inserted with room for the sealed file, which is
    // then sealed into it a block at a time (write_sealed), inside the same
    // savepoint. PostgreSQL (libpq binds a bytea whole): sealed whole, a
    // spooled file read back first.
    TextSealer sealer(db.payload_keys(), context);
    {
      ResetOnExit reset(st);
      st.bind(1, std::string_view(referral_id))
          .bind(2, position)
          .bind_blob(3, seal_text(db.payload_keys(), a.title, title_context(referral_id, position)))
          .bind(4, std::string_view(a.content_type))
          .bind(5, static_cast<std::int64_t>(size))
          .bind(6, std::int64_t{a.pages})
          .bind(7, std::string_view(a.sha256));
      if (db.incremental_blobs()) {
        st.bind_zeroblob(8, sealer.sealed_size(size));
      } else {
        if (a.spooled) {
          std::string plain = a.bytes();
          st.bind_blob(8, seal_text(db.payload_keys(), plain, context));
          OPENSSL_cleanse(plain.data(), plain.size());
        } else {
          st.bind_blob(8, seal_text(db.payload_keys(), a.data, context));
        }
      }
      st.run();
    }
    if (db.incremental_blobs()) write_sealed(db, db.last_insert_rowid(), sealer, a);
    audit(db, at, referral_id, std::nullopt, "referrald", "attachment",
          "position=" + std::to_string(position) + " type=" + a.content_type + " bytes=" + std::to_string(size) +
              " pages=" + std::to_string(a.pages) + " sha256=" + a.sha256);
  }
}

std::vector<AttachmentInfo> attachments_of(Database& db, const std::string& referral_id) {
  Statement& st =
      db.cached(std::string("SELECT ") + info_columns + " FROM attachments WHERE referral_id = ?1 ORDER BY position");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<AttachmentInfo> out;
  while (st.step()) out.push_back(read_info(db, st, referral_id));
  return out;
}

namespace {
// SQLite: the row's rowid, to open its data in place; PostgreSQL: the data.
std::string data_column(const Database& db) { return db.incremental_blobs() ? ", rowid" : ", data"; }
}  // namespace

std::vector<Attachment> attachment_files(Database& db, const std::string& referral_id) {
  Statement& st = db.cached(std::string("SELECT ") + info_columns + data_column(db) +
                            " FROM attachments WHERE referral_id = ?1 ORDER BY position");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<Attachment> out;
  while (st.step()) out.push_back(read_file(db, st, referral_id, 6));
  return out;
}

std::optional<Attachment> attachment_file(Database& db, const std::string& referral_id, int position) {
  Statement& st = db.cached(std::string("SELECT ") + info_columns + data_column(db) +
                            " FROM attachments WHERE referral_id = ?1 AND position = ?2");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id)).bind(2, std::int64_t{position});
  if (!st.step()) return std::nullopt;
  return read_file(db, st, referral_id, 6);
}

NoteRekeyBatch rekey_attachments(Database& db, std::int64_t after_rowid, int limit, const std::string& actor,
                                 TimePoint now) {
  const KeyRing* keys = db.payload_keys();
  if (keys == nullptr) throw std::logic_error("rekey needs storage.encryption_keys");
  const std::string& current = keys->current().id;
  Statement& select = db.cached(
      "SELECT rowid, referral_id, position, title, data FROM attachments WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
  Statement& update = db.cached("UPDATE attachments SET title = ?2, data = ?3 WHERE rowid = ?1");
  NoteRekeyBatch batch;
  // One row at a time: a file may be tens of megabytes.
  for (int n = 0; n < limit; ++n) {
    std::int64_t rowid = 0, position = 0;
    std::string referral_id, title, data;
    {
      ResetOnExit reset(select);
      select.bind(1, batch.last_id.value_or(after_rowid)).bind(2, std::int64_t{1});
      if (!select.step()) break;
      rowid = select.column_int(0);
      referral_id = select.column_text(1);
      position = select.column_int(2);
      title = select.column_blob(3);
      data = select.column_blob(4);
    }
    ++batch.examined;
    batch.last_id = rowid;
    const std::string title_ctx = title_context(referral_id, position), data_ctx = data_context(referral_id, position);
    try {
      const auto from = text_key_id(data, data_ctx);
      if (from == current && text_key_id(title, title_ctx) == current) continue;
      const std::string sealed_title = seal_text(keys, open_text(keys, title, title_ctx), title_ctx);
      const std::string sealed_data = seal_text(keys, open_text(keys, data, data_ctx), data_ctx);
      {
        ResetOnExit reset(update);
        update.bind(1, rowid).bind_blob(2, sealed_title).bind_blob(3, sealed_data);
        update.run();
      }
      audit(db, now, referral_id, std::nullopt, actor, "rekeyed",
            "attachment=" + std::to_string(position) + " from=" + from.value_or("plaintext") + " to=" + current);
      ++batch.rekeyed;
    } catch (const PayloadError& e) {
      batch.unreadable.push_back(e.what());
    }
  }
  return batch;
}

}  // namespace referrald::store
