#include "rules/matching.hpp"

#include <algorithm>
#include <cstddef>

namespace referrald {
namespace {

// Non-ASCII code points that separate words: Latin-1 punctuation and symbols,
// the general and supplemental punctuation blocks (which hold U+2010 HYPHEN,
// the dashes and typographic quotes), CJK and full-width punctuation.
bool is_unicode_separator(char32_t cp) noexcept {
  if (cp >= 0x80 && cp <= 0xBF) return cp != 0xAA && cp != 0xB5 && cp != 0xBA;  // ª µ º are letters
  return cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x2E00 && cp <= 0x2E7F) ||
         (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE10 && cp <= 0xFE1F) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
         cp == 0xFEFF || (cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
         (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65);
}

// Length of the UTF-8 sequence starting at s[i] and its code point; a broken
// sequence counts as one byte that separates words.
std::size_t decode(std::string_view s, std::size_t i, char32_t& cp) noexcept {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    cp = lead & 0x07u;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    cp = lead & 0x0Fu;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
    cp = lead & 0x1Fu;
  } else {
    cp = 0x80;  // a stray continuation byte or invalid lead: a separator
    return 1;
  }
  if (i + len > s.size()) {
    cp = 0x80;
    return 1;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0u) != 0x80u) {
      cp = 0x80;
      return 1;
    }
    cp = (cp << 6) | (c & 0x3Fu);
  }
  return len;
}

bool is_ascii_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Codes compare without case and without any white space: "9581/3" == " 9581 / 3".
std::string normalized_code(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') continue;
    out += ascii_lower(c);
  }
  return out;
}

bool contains_run(const std::vector<std::string>& words, const std::vector<std::string>& run) {
  return !run.empty() && std::search(words.begin(), words.end(), run.begin(), run.end()) != words.end();
}

std::size_t total_length(const std::vector<std::string>& words) {
  std::size_t n = 0;
  for (const auto& w : words) n += w.size();
  return n;
}

}  // namespace

std::vector<std::string> normalized_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (static_cast<unsigned char>(c) < 0x80) {
      if (is_ascii_alnum(c)) {
        word += ascii_lower(c);
      } else {
        flush();
      }
      ++i;
      continue;
    }
    char32_t cp = 0;
    const std::size_t len = decode(text, i, cp);
    if (is_unicode_separator(cp)) {
      flush();
    } else {
      word.append(text.substr(i, len));
    }
    i += len;
  }
  flush();
  return words;
}

const Disease* match_disease(const RuleSet& rules, const Diagnosis& diagnosis) {
  // A code is the most precise statement a referrer can make: it wins.
  if (diagnosis.code) {
    const std::string system = normalized_code(diagnosis.code->system);
    const std::string value = normalized_code(diagnosis.code->value);
    for (const auto& disease : rules.diseases) {
      for (const auto& code : disease.codes) {
        const std::string code_system = normalized_code(code.system);
        const bool system_matches = code_system.empty() || system.empty() || code_system == system;
        if (system_matches && !value.empty() && normalized_code(code.value) == value) return &disease;
      }
    }
  }

  // Otherwise the longest alias (in words, then letters) found as whole,
  // consecutive words of the diagnosis; the display name counts as an alias.
  const auto words = normalized_words(diagnosis.name);
  const Disease* best = nullptr;
  std::size_t best_words = 0;
  std::size_t best_length = 0;
  for (const auto& disease : rules.diseases) {
    auto consider = [&](std::string_view alias) {
      const auto run = normalized_words(alias);
      if (!contains_run(words, run)) return;
      const std::size_t length = total_length(run);
      if (run.size() > best_words || (run.size() == best_words && length > best_length)) {
        best = &disease;
        best_words = run.size();
        best_length = length;
      }
    };
    consider(disease.name);
    for (const auto& alias : disease.aliases) consider(alias);
  }
  return best;
}

}  // namespace referrald
