// The files that came with a referral (table `attachments`, schema version
// 8): written in the referral's own transaction, each file and its title
// sealed like the document (store/payload.hpp, under "<id>/attachment/<n>"
// and "<id>/attachment/<n>/title"), so a copy of the database holds none of
// them in the clear. Type, size, pages and SHA-256 are kept in the clear:
// they are what the office checks a file against, not patient data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/referral.hpp"
#include "store/database.hpp"
#include "store/office.hpp"
#include "store/store.hpp"

namespace referrald::store {

// Inserts the referral's files as positions 1, 2, ... with an audit row
// each ("attachment", with position, type, size and SHA-256; no title).
// Inside the caller's transaction (insert_referral's savepoint). SQLite:
// each file is sealed into its row a block at a time, from its spool or
// from memory; PostgreSQL: sealed and bound whole.
void insert_attachments(Database& db, const std::string& referral_id, TimePoint at,
                        const std::vector<Attachment>& attachments);

struct AttachmentInfo {
  int position = 0;   // from 1
  std::string title;  // opened (PHI)
  std::string content_type;
  std::int64_t bytes = 0;
  int pages = 1;
  std::string sha256;
};

// What each file is, without its bytes. Throws PayloadError for a title it
// cannot open.
std::vector<AttachmentInfo> attachments_of(Database& db, const std::string& referral_id);

// The files themselves, opened, in order (for a delivery). Each is read a
// block at a time (SQLite; PostgreSQL returns it whole) and opened into a
// new spool beside the database (Attachment::spooled), handed on only once
// its GCM tag has verified; into Attachment::data where no spool can be
// made there. Throws PayloadError as attachments_of, and for a file that
// does not open (naming it).
std::vector<Attachment> attachment_files(Database& db, const std::string& referral_id);

// One file, opened; nullopt when the referral has no file at `position`.
std::optional<Attachment> attachment_file(Database& db, const std::string& referral_id, int position);

// As rekey_status_notes (store/office.hpp), for the files and their titles,
// along the table's rowid: seals again under the current key what is not
// under it yet, one audit row per file.
NoteRekeyBatch rekey_attachments(Database& db, std::int64_t after_rowid, int limit, const std::string& actor,
                                 TimePoint now);

}  // namespace referrald::store
