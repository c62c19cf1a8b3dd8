// Role normalisation for the playbook's role gate (contract section 9.11).
//
// Two role strings are equal when their normal forms are equal. The normal form is the
// string lower-cased (ASCII letters only), trimmed, with runs of ASCII whitespace collapsed
// to one space, and its LAST word (the head noun: "Forklift Operators") singularised:
//
//   * kept as is: a word in the non-plural-s list (sales, logistics, operations, facilities,
//     premises, news, physics, economics, mathematics, analytics), a word ending in "ss"
//     (boss, press), "us" (status) or "is" (analysis), and any word of 3 letters or fewer
//     (gas, bus: too short to tell);
//   * "-ies" -> "-y" (deliveries -> delivery), for words of 5 letters or more;
//   * "-es" after a sibilant (x, ch, sh, ss, zz) loses "es" (boxes -> box, presses -> press);
//   * otherwise a final "s" is dropped (operators -> operator, nurses -> nurse).
//
// Only the last word changes, so "Sales Associate" stays as it is and "Sales" never equals
// "Sale". Bytes outside ASCII pass through untouched: UTF-8 text keeps its meaning, and the
// pure-Python twin (parity/reference/playbook.py) can reproduce the result exactly.
#pragma once

#include <string>
#include <string_view>

namespace lakehouse {

// The normal form described above; "" for an empty or all-whitespace role.
std::string role_normalize(std::string_view role);

// True when both roles have the same normal form.
bool role_equal(std::string_view a, std::string_view b);

// The gate itself: true when either role is empty after normalisation (the gate is open,
// fail-open as in the reference) or the two roles are equal.
bool role_gate_allows(std::string_view entry_role, std::string_view query_role);

}  // namespace lakehouse
