// The keyed identity hash behind "possible duplicate": names normalised so
// that spelling variants meet, the key derived, never the plain identity.
#include <gtest/gtest.h>

#include "intake/identity.hpp"
#include "util/crypto.hpp"
#include "util/key_ring.hpp"

namespace referrald {
namespace {

using namespace std::chrono;

Patient patient(std::string given, std::string family, Date birth = year{2014} / March / 9) {
  Patient p;
  p.given_name = std::move(given);
  p.family_name = std::move(family);
  p.birth_date = birth;
  return p;
}

std::shared_ptr<const IdentityKey> key(unsigned char fill) {
  const std::vector<unsigned char> material(32, fill);
  return IdentityKey::derive(material.data(), material.size());
}

TEST(Identity, NamesAreComparedWithoutCaseAccentsSpacesOrPunctuation) {
  EXPECT_EQ(normalise_name("Nguyễn"), "nguyen");
  EXPECT_EQ(normalise_name("  NGUYEN "), "nguyen");
  EXPECT_EQ(normalise_name("O'Brien-Smith"), "obriensmith");
  EXPECT_EQ(normalise_name("obrien smith"), "obriensmith");
  EXPECT_EQ(normalise_name("Straße"), "strasse");
  EXPECT_EQ(normalise_name("ＡＶＡ"), "ava");       // full-width letters
  EXPECT_EQ(normalise_name("Дмитрий"), "дмитрии");  // Cyrillic short i loses its breve, as accents do
  EXPECT_EQ(normalise_name("阮"), "阮");
  EXPECT_EQ(normalise_name("-- '"), "");
}

TEST(Identity, SamePatientWrittenDifferentlyHashesTheSame) {
  const auto k = key(1);
  const std::string h = k->hash(patient("Ava", "Nguyễn"));
  EXPECT_EQ(h.size(), 64U);
  EXPECT_EQ(h, k->hash(patient(" ava ", "NGUYEN")));
  EXPECT_NE(h, k->hash(patient("Ava", "Nguyen", year{2014} / March / 10)));
  EXPECT_NE(h, k->hash(patient("Nguyen", "Ava")));  // given and family are not interchangeable
  EXPECT_NE(h, k->hash(patient("Av", "aNguyen")));  // the separator keeps the fields apart
  EXPECT_EQ(h.find("nguyen"), std::string::npos);
}

TEST(Identity, TheHashDependsOnTheKey) {
  EXPECT_NE(key(1)->hash(patient("Ava", "Nguyen")), key(2)->hash(patient("Ava", "Nguyen")));
}

TEST(Identity, KeyComesFromTheFileThenTheEncryptionKeyThenTheDatabase) {
  const std::vector<unsigned char> database_secret(32, 7);
  const auto from_database = load_identity_key({}, nullptr, database_secret);
  std::vector<KeyFileProblem> problems;
  const auto ring = parse_key_file("k1 " + std::string(64, 'a') + "\n", problems);
  ASSERT_TRUE(ring);
  const auto from_ring = load_identity_key({}, ring.get(), database_secret);
  const Patient p = patient("Ava", "Nguyen");
  EXPECT_NE(from_database->hash(p), from_ring->hash(p));
  EXPECT_EQ(from_ring->hash(p), load_identity_key({}, ring.get(), {})->hash(p));
  try {
    load_identity_key("/nonexistent/identity-key", ring.get(), database_secret);
    FAIL() << "an unreadable identity_key file must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("intake.identity_key /nonexistent/identity-key"), std::string::npos)
        << e.what();
  }
}

TEST(Crypto, HkdfMatchesRfc5869TestCase1) {
  const std::vector<unsigned char> ikm(22, 0x0b);
  unsigned char salt[13];
  for (unsigned char i = 0; i < 13; ++i) salt[i] = i;
  unsigned char info[10];
  for (unsigned char i = 0; i < 10; ++i) info[i] = static_cast<unsigned char>(0xf0 + i);
  const auto okm =
      hkdf_sha256(ikm.data(), ikm.size(), {reinterpret_cast<char*>(salt), 13}, {reinterpret_cast<char*>(info), 10}, 42);
  EXPECT_EQ(to_hex(okm.data(), okm.size()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Crypto, Base64UrlHasNoPaddingAndUrlSafeCharacters) {
  const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0x01};
  EXPECT_EQ(base64url(bytes, 3), "-_-_");
  EXPECT_EQ(base64url(bytes, 4), "-_-_AQ");
  EXPECT_EQ(base64url(bytes, 0), "");
}

}  // namespace
}  // namespace referrald
