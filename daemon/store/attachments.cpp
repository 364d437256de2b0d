#include "store/attachments.hpp"

#include "store/payload.hpp"
#include "store/rows.hpp"

#include <openssl/crypto.h>
#include <stdexcept>

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

Attachment to_file(AttachmentInfo info, std::string data) {
  Attachment a;
  a.title = std::move(info.title);
  a.content_type = std::move(info.content_type);
  a.pages = info.pages;
  a.sha256 = std::move(info.sha256);
  a.data = std::move(data);
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
    // A file that waited on disk is read back one at a time, here, and
    // its plaintext let go once sealed: the writer holds a file twice (sealed,
    // and the database's copy of the bound value), not three times.
    const std::size_t size = a.size();
    std::string sealed = [&] {
      if (!a.spooled) return seal_text(db.payload_keys(), a.data, data_context(referral_id, position));
      std::string plain = a.bytes();
      auto out = seal_text(db.payload_keys(), plain, data_context(referral_id, position));
      OPENSSL_cleanse(plain.data(), plain.size());
      return out;
    }();
    {
      ResetOnExit reset(st);
      st.bind(1, std::string_view(referral_id))
          .bind(2, position)
          .bind_blob(3, seal_text(db.payload_keys(), a.title, title_context(referral_id, position)))
          .bind(4, std::string_view(a.content_type))
          .bind(5, static_cast<std::int64_t>(size))
          .bind(6, std::int64_t{a.pages})
          .bind(7, std::string_view(a.sha256))
          .bind_blob(8, sealed);
      st.run();
    }
    std::string().swap(sealed);
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

std::vector<Attachment> attachment_files(Database& db, const std::string& referral_id) {
  Statement& st = db.cached(std::string("SELECT ") + info_columns +
                            ", data FROM attachments WHERE referral_id = ?1 ORDER BY position");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<Attachment> out;
  while (st.step()) {
    AttachmentInfo info = read_info(db, st, referral_id);
    std::string data = open_text(db.payload_keys(), st.column_blob(6), data_context(referral_id, info.position));
    out.push_back(to_file(std::move(info), std::move(data)));
  }
  return out;
}

std::optional<Attachment> attachment_file(Database& db, const std::string& referral_id, int position) {
  Statement& st = db.cached(std::string("SELECT ") + info_columns +
                            ", data FROM attachments WHERE referral_id = ?1 AND position = ?2");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id)).bind(2, std::int64_t{position});
  if (!st.step()) return std::nullopt;
  AttachmentInfo info = read_info(db, st, referral_id);
  std::string data = open_text(db.payload_keys(), st.column_blob(6), data_context(referral_id, position));
  return to_file(std::move(info), std::move(data));
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
