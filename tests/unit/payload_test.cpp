// Encryption at rest of referral documents: the key file format with its
// exact messages, and the stored payload format (store/payload.hpp) against
// tampering, moving between referrals, unknown keys and nonce reuse.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "store/payload.hpp"
#include "support/harness.hpp"
#include "util/key_ring.hpp"

namespace referrald {
namespace {

namespace fs = std::filesystem;
using store::open_payload;
using store::payload_key_id;
using store::PayloadError;
using store::seal_payload;

const std::string hex_a(64, 'a');
const std::string hex_b = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
const std::string document =
    R"({"patient":{"given_name":"Ava","family_name":"Nguyen","birth_date":"2014-03-09"},"urgency":"routine"})";
const std::string referral_id = "R-20261128-7K3M9-TZQXA";

std::shared_ptr<const KeyRing> ring(const std::string& text) {
  std::vector<KeyFileProblem> problems;
  auto keys = parse_key_file(text, problems);
  EXPECT_TRUE(problems.empty()) << problems.front().to_string();
  return keys;
}

std::vector<std::string> problems_of(const std::string& text) {
  std::vector<KeyFileProblem> problems;
  EXPECT_EQ(parse_key_file(text, problems), nullptr);
  std::vector<std::string> out;
  for (const auto& p : problems) out.push_back(p.to_string());
  return out;
}

std::string open_error(const KeyRing* keys, const std::string& stored, const std::string& id = referral_id) {
  try {
    open_payload(keys, stored, id);
  } catch (const PayloadError& e) {
    return e.what();
  }
  return "(opened)";
}

// ---- the key file ----

TEST(KeyFile, FirstKeyEncryptsAndEveryKeyIsFound) {
  const auto keys = ring("# rotated 2026-11-28\n\nk2 " + hex_b + "\n  k1\t" + hex_a + "  \r\n");
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(keys->current().id, "k2");
  EXPECT_EQ(keys->current().bytes[0], 0x00);
  EXPECT_EQ(keys->current().bytes[31], 0xff);
  ASSERT_NE(keys->find("k1"), nullptr);
  EXPECT_EQ(keys->find("k1")->bytes[5], 0xaa);
  EXPECT_EQ(keys->find("k3"), nullptr);
  EXPECT_EQ(keys->ids(), "k2, k1");
}

TEST(KeyFile, EveryProblemIsReportedWithItsLineAndNoKeyMaterial) {
  const std::string text = "k1 " + hex_a + "\n" +                      // 1: fine
                           hex_b + "\n" +                              // 2: a key without an id
                           "k2 " + hex_b + " extra\n" +                // 3: three fields
                           "bad/id " + hex_b + "\n" +                  // 4
                           "k3 " + hex_b.substr(1) + "\n" +            // 5: 63 digits
                           "k4 " + hex_b.substr(1) + "g\n" +           // 6: not hex
                           "k1 " + hex_b + "\n" +                      // 7: duplicate
                           std::string(33, 'x') + " " + hex_b + "\n";  // 8: id too long
  const auto problems = problems_of(text);
  EXPECT_EQ(
      problems,
      (std::vector<std::string>{
          R"(2: expected "<key-id> <64 hex digits>")",
          R"(3: expected "<key-id> <64 hex digits>")",
          R"(4: a key id is 1 to 32 letters, digits, ".", "_" or "-")",
          R"(5: key "k3": expected 64 hex digits (openssl rand -hex 32), got 63 characters)",
          R"(6: key "k4": expected 64 hex digits (openssl rand -hex 32), got a character that is not a hex digit)",
          R"(7: key "k1" is listed twice (first at line 1))",
          R"(8: a key id is 1 to 32 letters, digits, ".", "_" or "-")",
      }));
  for (const auto& p : problems) {
    EXPECT_EQ(p.find(hex_b.substr(2, 20)), std::string::npos) << p;
    EXPECT_EQ(p.find(hex_a.substr(0, 20)), std::string::npos) << p;
  }
}

TEST(KeyFile, OneWithoutKeysIsRefused) {
  EXPECT_EQ(problems_of(""), std::vector<std::string>{"holds no key"});
  EXPECT_EQ(problems_of("# only a comment\n\n"), std::vector<std::string>{"holds no key"});
}

class KeyFileOnDisk : public ::testing::Test {
 protected:
  fs::path write(const std::string& text, mode_t mode) {
    const fs::path file = dir_ / "keys";
    std::ofstream(file) << text;
    ::chmod(file.c_str(), mode);
    return file;
  }

  test::TempDir dir_;
};

TEST_F(KeyFileOnDisk, AFileOthersMayReadIsRefusedUnlessTrusted) {
  const fs::path file = write("k1 " + hex_a + "\n", 0640);
  std::vector<KeyFileProblem> problems;
  EXPECT_EQ(read_key_file(file, KeyFilePrivacy::owner_only, problems), nullptr);
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].to_string(),
            "may be read or written by group or others (mode 0640); make it private to referrald's user (chmod 600)");

  // A systemd credential shows group bits when systemd grants access by ACL.
  problems.clear();
  const auto trusted = read_key_file(file, KeyFilePrivacy::trusted, problems);
  ASSERT_NE(trusted, nullptr);
  EXPECT_EQ(trusted->current().id, "k1");

  ::chmod(file.c_str(), 0600);
  problems.clear();
  EXPECT_NE(read_key_file(file, KeyFilePrivacy::owner_only, problems), nullptr);
  EXPECT_TRUE(problems.empty());
}

TEST_F(KeyFileOnDisk, AMissingFileAndParseProblemsAreReported) {
  std::vector<KeyFileProblem> problems;
  EXPECT_EQ(read_key_file(dir_ / "absent", KeyFilePrivacy::owner_only, problems), nullptr);
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].to_string(), "cannot read: No such file or directory");

  problems.clear();
  const fs::path file = write("k1 " + hex_a + "\nk1 " + hex_b + "\n", 0600);
  EXPECT_EQ(read_key_file(file, KeyFilePrivacy::owner_only, problems), nullptr);
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].to_string(), R"(2: key "k1" is listed twice (first at line 1))");
}

// ---- the stored payload ----

TEST(Payload, RoundTripsAndHidesTheDocument) {
  const auto keys = ring("k2 " + hex_b + "\nk1 " + hex_a + "\n");
  const std::string stored = seal_payload(keys.get(), document, referral_id);
  EXPECT_EQ(stored.find("Nguyen"), std::string::npos);
  EXPECT_EQ(stored.find("2014-03-09"), std::string::npos);
  EXPECT_EQ(stored.size(), 3 + 1 + 1 + 2 + 12 + document.size() + 16);  // header with "k2", nonce, body, tag
  EXPECT_EQ(stored.substr(0, 7), std::string("RFE\x01\x02k2", 7));
  EXPECT_EQ(payload_key_id(stored, referral_id), "k2");
  EXPECT_EQ(open_payload(keys.get(), stored, referral_id), document);
  // An empty document too (nothing but header, nonce and tag).
  EXPECT_EQ(open_payload(keys.get(), seal_payload(keys.get(), "", referral_id), referral_id), "");
}

TEST(Payload, TheNonceDiffersBetweenTwoEncryptionsOfTheSameDocument) {
  const auto keys = ring("k1 " + hex_a + "\n");
  const std::string first = seal_payload(keys.get(), document, referral_id);
  const std::string second = seal_payload(keys.get(), document, referral_id);
  const std::size_t nonce_at = 3 + 1 + 1 + 2;
  EXPECT_NE(first.substr(nonce_at, 12), second.substr(nonce_at, 12));
  EXPECT_NE(first.substr(nonce_at + 12), second.substr(nonce_at + 12));
  EXPECT_EQ(open_payload(keys.get(), second, referral_id), document);
}

TEST(Payload, AnyAlteredByteFailsAndNothingIsReturned) {
  const auto keys = ring("k1 " + hex_a + "\nk2 " + hex_b + "\n");
  const std::string stored = seal_payload(keys.get(), document, referral_id);
  const std::size_t header = 3 + 1 + 1 + 2;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    for (const int flip : {0x01, 0x80}) {
      std::string altered = stored;
      altered[i] = static_cast<char>(static_cast<unsigned char>(altered[i]) ^ flip);
      const std::string error = open_error(keys.get(), altered);
      EXPECT_NE(error, "(opened)") << "byte " << i;
      // Past the header (nonce, ciphertext, tag) it is GCM that refuses.
      if (i >= header) {
        EXPECT_EQ(error, "referral " + referral_id +
                             R"(: document failed authentication under key "k1" (altered, copied from another )"
                             "referral, or a different key under the same id)")
            << "byte " << i;
      }
    }
  }
  // The header is authenticated too: "k1" renamed "k2" (a key that exists) fails.
  std::string renamed = stored;
  renamed[6] = '2';
  EXPECT_NE(open_error(keys.get(), renamed).find(R"(failed authentication under key "k2")"), std::string::npos);
  // Cut short anywhere, it never opens.
  for (std::size_t n = 0; n < stored.size(); ++n) {
    EXPECT_NE(open_error(keys.get(), stored.substr(0, n)), "(opened)") << n;
  }
}

TEST(Payload, ADocumentMovedToAnotherReferralFails) {
  const auto keys = ring("k1 " + hex_a + "\n");
  const std::string stored = seal_payload(keys.get(), document, referral_id);
  EXPECT_EQ(open_error(keys.get(), stored, "R-20261128-7K3M9-TZQXB"),
            R"(referral R-20261128-7K3M9-TZQXB: document failed authentication under key "k1" (altered, copied )"
            "from another referral, or a different key under the same id)");
}

TEST(Payload, AnUnknownKeyIdIsNamed) {
  const auto old_keys = ring("old-2025 " + hex_a + "\n");
  const auto new_keys = ring("k2 " + hex_b + "\nk3 " + hex_a + "\n");
  const std::string stored = seal_payload(old_keys.get(), document, referral_id);
  EXPECT_EQ(
      open_error(new_keys.get(), stored),
      "referral " + referral_id +
          R"(: document is encrypted with key "old-2025", which is not in storage.encryption_keys (it has k2, k3))");
  EXPECT_EQ(open_error(nullptr, stored),
            "referral " + referral_id +
                R"(: document is encrypted with key "old-2025" but no storage.encryption_keys is configured)");
  // The same bytes under another id are a different key: authentication fails, nothing garbled comes out.
  const auto impostor = ring("old-2025 " + hex_b + "\n");
  EXPECT_NE(open_error(impostor.get(), stored).find("failed authentication"), std::string::npos);
}

TEST(Payload, DocumentsStoredBeforeEncryptionStayReadable) {
  const auto keys = ring("k1 " + hex_a + "\n");
  EXPECT_EQ(seal_payload(nullptr, document, referral_id), document);  // encryption off
  EXPECT_EQ(open_payload(keys.get(), document, referral_id), document);
  EXPECT_EQ(open_payload(nullptr, document, referral_id), document);
  EXPECT_EQ(payload_key_id(document, referral_id), std::nullopt);
  EXPECT_EQ(open_error(keys.get(), "garbage"),
            "referral " + referral_id + ": stored document is neither JSON nor an encrypted referrald payload");
  EXPECT_EQ(open_error(keys.get(), std::string("RFE\x02\x02k1", 7) + std::string(40, 'x')),
            "referral " + referral_id +
                ": encrypted payload has format version 2, which this referrald does not know (it knows 1)");
}

TEST(Payload, FreeTextIsSealedOrMarkedPlainAndNeverTakenForADocument) {
  const auto keys = ring("k1 " + hex_a + "\n");
  const std::string note = "Mother says the MRI is at Delta Imaging. {not json}";
  const std::string context = referral_id + "/status/3";
  const std::string sealed = store::seal_text(keys.get(), note, context);
  EXPECT_EQ(sealed.find("Delta"), std::string::npos);
  EXPECT_EQ(store::open_text(keys.get(), sealed, context), note);
  EXPECT_THROW(store::open_text(keys.get(), sealed, referral_id + "/status/4"), PayloadError);
  EXPECT_THROW(store::open_text(keys.get(), sealed, referral_id), PayloadError);

  const std::string plain = store::seal_text(nullptr, note, context);  // encryption off
  EXPECT_EQ(plain, "RFT" + note);
  EXPECT_EQ(store::open_text(keys.get(), plain, context), note);
  EXPECT_EQ(store::open_text(nullptr, "RFT", context), "");
  EXPECT_THROW(store::open_text(keys.get(), document, context), PayloadError);
  EXPECT_THROW(store::open_text(keys.get(), note, context), PayloadError);

  // The key a note is under (rekey asks), nullopt for one kept in the clear.
  EXPECT_EQ(store::text_key_id(sealed, context), "k1");
  EXPECT_EQ(store::text_key_id(plain, context), std::nullopt);
  EXPECT_THROW(store::text_key_id(document, context), PayloadError);
}

// A text sealed in pieces of any size is what seal_text writes (open_text
// opens it), and opens in pieces of other sizes; one altered byte, and the
// last step refuses it.
TEST(Payload, TextSealedAndOpenedInPiecesIsSealTextsFormat) {
  using store::open_text, store::seal_text, store::TextOpener, store::TextSealer;
  const auto keys = ring("k1 " + hex_a + "\n");
  std::string text;
  for (int i = 0; i < 5000; ++i) text += static_cast<char>(i * 7);
  const std::string context = referral_id + "/attachment/1";
  for (const KeyRing* k : {keys.get(), static_cast<const KeyRing*>(nullptr)}) {
    TextSealer sealer(k, context);
    std::string stored = sealer.head();
    for (std::size_t at = 0, piece = 1; at < text.size(); at += piece, piece = piece * 3 + 1) {
      const auto part = std::string_view(text).substr(at, piece);
      std::string out(part.size(), '\0');
      sealer.update(part, out.data());
      stored += out;
    }
    stored += sealer.finish();
    EXPECT_EQ(stored.size(), sealer.sealed_size(text.size()));
    EXPECT_EQ(open_text(k, stored, context), text);
    EXPECT_EQ(stored.size(), seal_text(k, text, context).size());

    const auto open_in_pieces = [&](const std::string& value) {
      TextOpener opener(k, std::string_view(value).substr(0, TextOpener::head_max), value.size(), context);
      std::string out(opener.text_size(), '\0');
      for (std::size_t at = 0; at < opener.text_size(); at += 999) {
        const auto part = std::string_view(value).substr(opener.text_offset() + at,
                                                         std::min<std::size_t>(999, opener.text_size() - at));
        opener.update(part, out.data() + at);
      }
      opener.finish(std::string_view(value).substr(opener.text_offset() + opener.text_size()));
      return out;
    };
    EXPECT_EQ(open_in_pieces(stored), text);
    if (k == nullptr) continue;
    std::string altered = stored;
    altered[altered.size() / 2] ^= 0x10;
    try {
      open_in_pieces(altered);
      ADD_FAILURE() << "an altered text opened";
    } catch (const PayloadError& e) {
      EXPECT_NE(std::string(e.what()).find(context), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace referrald
