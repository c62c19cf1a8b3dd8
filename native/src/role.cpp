// The role normal form of role.h. Byte-wise on purpose: every rule looks at ASCII letters
// only, and UTF-8 never uses ASCII bytes inside a multi-byte character, so working on bytes
// is both correct for UTF-8 and trivially reproducible by the Python twin.
#include "lakehouse/role.h"

#include <array>
#include <vector>

namespace lakehouse {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

// The reference's nonPluralSWords: head nouns that end in "s" without being plurals.
constexpr std::array<std::string_view, 10> kNonPluralS = {
    "sales", "logistics", "operations", "facilities", "premises",
    "news",  "physics",   "economics",  "mathematics", "analytics"};

std::string singular(std::string word) {
  for (auto w : kNonPluralS) {
    if (word == w) return word;
  }
  if (word.size() <= 3 || word.back() != 's') return word;
  if (ends_with(word, "ss") || ends_with(word, "us") || ends_with(word, "is")) return word;
  if (word.size() >= 5 && ends_with(word, "ies")) {
    word.resize(word.size() - 3);
    word += 'y';
    return word;
  }
  if (ends_with(word, "xes") || ends_with(word, "ches") || ends_with(word, "shes") ||
      ends_with(word, "sses") || ends_with(word, "zzes")) {
    word.resize(word.size() - 2);
    return word;
  }
  word.pop_back();
  return word;
}

}  // namespace

std::string role_normalize(std::string_view role) {
  std::vector<std::string> words;
  std::string current;
  for (char c : role) {
    if (is_space(c)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current += ascii_lower(c);
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  if (words.empty()) return {};
  words.back() = singular(std::move(words.back()));
  std::string out = words.front();
  for (std::size_t i = 1; i < words.size(); ++i) {
    out += ' ';
    out += words[i];
  }
  return out;
}

bool role_equal(std::string_view a, std::string_view b) { return role_normalize(a) == role_normalize(b); }

bool role_gate_allows(std::string_view entry_role, std::string_view query_role) {
  const std::string e = role_normalize(entry_role);
  if (e.empty()) return true;
  const std::string q = role_normalize(query_role);
  return q.empty() || e == q;
}

}  // namespace lakehouse
