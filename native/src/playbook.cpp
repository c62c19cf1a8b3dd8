// apply_playbook of playbook.h. Sizes are small (a few hundred results, top-K hits), so the
// code favours obvious ordered containers over clever ones; what matters is that every step
// is deterministic and matches the Python twin operation for operation.
#include "lakehouse/playbook.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>

#include "lakehouse/role.h"

namespace lakehouse {
namespace {

using AnswerKey = std::pair<std::string, std::string>;  // (id, corpus)

void check_threshold(double v, const char* name) {
  if (!std::isfinite(v) || v < 0.0) {
    throw std::invalid_argument(std::string(name) + " must be a finite number >= 0");
  }
}

void validate(const PlaybookInput& in) {
  const std::size_t nr = in.result_ids.size();
  if (in.result_corpora.size() != nr || in.result_distances.size() != nr) {
    throw std::invalid_argument("result_ids, result_corpora and result_distances differ in length");
  }
  const std::size_t nh = in.hit_answer_ids.size();
  if (in.hit_answer_corpora.size() != nh || in.hit_scores.size() != nh ||
      in.hit_distances.size() != nh || in.hit_roles.size() != nh) {
    throw std::invalid_argument(
        "hit_answer_ids, hit_answer_corpora, hit_scores, hit_distances and hit_roles differ in length");
  }
  for (std::size_t i = 0; i < nr; ++i) {
    if (!std::isfinite(in.result_distances[i])) {
      throw std::invalid_argument("result_distances[" + std::to_string(i) + "] is not finite");
    }
  }
  for (std::size_t i = 0; i < nh; ++i) {
    if (!std::isfinite(in.hit_distances[i])) {
      throw std::invalid_argument("hit_distances[" + std::to_string(i) + "] is not finite");
    }
    const double s = in.hit_scores[i];
    if (!(s >= 0.0 && s <= 1.0)) {  // also refuses NaN
      throw std::invalid_argument("hit_scores[" + std::to_string(i) + "] must be within [0, 1]");
    }
  }
  if (!in.hit_queries.empty() && in.hit_queries.size() != nh) {
    throw std::invalid_argument("hit_queries must be empty or hold one query per hit");
  }
  check_threshold(in.max_distance, "max_distance");
  check_threshold(in.max_inject_distance, "max_inject_distance");
  check_threshold(in.max_ratio, "max_ratio");
  if (in.k == 0) throw std::invalid_argument("k must be positive");
  for (std::size_t v : in.vetoed_hits) {
    if (v >= nh) throw std::invalid_argument("vetoed hit index " + std::to_string(v) + " is out of range");
  }
}

}  // namespace

const char* result_source_name(ResultSource s) {
  switch (s) {
    case ResultSource::Boost:
      return "boost";
    case ResultSource::Inject:
      return "inject";
    case ResultSource::Retrieval:
    default:
      return "retrieval";
  }
}

float playbook_boost(float distance, double score) {
  const double factor = 1.0 - 0.5 * score;
  return static_cast<float>(static_cast<double>(distance) * factor);
}

PlaybookOutcome apply_playbook(const PlaybookInput& in) {
  validate(in);
  PlaybookOutcome out;
  const std::unordered_set<std::string> excluded(in.exclude_ids.begin(), in.exclude_ids.end());
  const std::set<std::size_t> vetoed(in.vetoed_hits.begin(), in.vetoed_hits.end());

  // 1. Drop excluded results; index the rest by answer key for the boost.
  std::vector<PlaybookRow> rows;
  rows.reserve(in.result_ids.size());
  std::map<AnswerKey, std::vector<std::size_t>> present;  // key -> positions in rows
  for (std::size_t i = 0; i < in.result_ids.size(); ++i) {
    if (excluded.count(in.result_ids[i]) != 0) {
      ++out.counts.excluded;
      continue;
    }
    PlaybookRow row;
    row.result_index = static_cast<std::int64_t>(i);
    row.distance = in.result_distances[i];
    present[{in.result_ids[i], in.result_corpora[i]}].push_back(rows.size());
    rows.push_back(row);
  }

  // 2. Visit hits nearest first; the index breaks ties so the order is total.
  std::vector<std::size_t> order(in.hit_answer_ids.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return in.hit_distances[a] < in.hit_distances[b];
  });

  // The ratio test's competitor of each hit: the nearest hit of another query text and
  // another answer (quadratic in the hits, which are a handful).
  const bool ratio_test = in.max_ratio > 0.0 && !in.hit_queries.empty();
  auto passes_ratio = [&](std::size_t h) {
    bool found = false;
    double competitor = 0.0;
    for (std::size_t g = 0; g < in.hit_answer_ids.size(); ++g) {
      if (in.hit_queries[g] == in.hit_queries[h]) continue;
      if (in.hit_answer_ids[g] == in.hit_answer_ids[h] &&
          in.hit_answer_corpora[g] == in.hit_answer_corpora[h]) {
        continue;
      }
      const double d = static_cast<double>(in.hit_distances[g]);
      if (!found || d < competitor) competitor = d;
      found = true;
    }
    return !found || static_cast<double>(in.hit_distances[h]) <= in.max_ratio * competitor;
  };

  std::set<AnswerKey> boosted_keys;
  std::set<AnswerKey> candidate_keys;
  std::vector<PlaybookRow> injected;
  for (std::size_t h : order) {
    const double hit_distance = static_cast<double>(in.hit_distances[h]);
    if (hit_distance > in.max_distance) continue;
    ++out.counts.hits;
    if (!role_gate_allows(in.hit_roles[h], in.query_role)) {
      ++out.counts.rejected_role;
      continue;
    }
    if (excluded.count(in.hit_answer_ids[h]) != 0) continue;
    if (ratio_test && !passes_ratio(h)) {
      ++out.counts.rejected_ratio;
      continue;
    }

    AnswerKey key{in.hit_answer_ids[h], in.hit_answer_corpora[h]};
    auto found = present.find(key);
    if (found != present.end()) {
      // 3. Boost, once per answer: the nearest hit wins, later ones must not compound.
      if (!boosted_keys.insert(key).second) continue;
      for (std::size_t pos : found->second) {
        PlaybookRow& row = rows[pos];
        row.distance = playbook_boost(row.distance, in.hit_scores[h]);
        row.source = ResultSource::Boost;
        row.hit_index = static_cast<std::int64_t>(h);
        ++out.counts.boosted;
      }
      continue;
    }
    // 4. Inject: tighter window, one candidate per answer (dedup happens before the veto,
    // as the reference judges after dedup: a refused answer is not retried with a farther hit).
    if (hit_distance > in.max_inject_distance) continue;
    if (!candidate_keys.insert(std::move(key)).second) continue;
    out.inject_candidates.push_back(h);
    if (vetoed.count(h) != 0) {
      ++out.counts.vetoed;
      continue;
    }
    PlaybookRow row;
    row.hit_index = static_cast<std::int64_t>(h);
    row.distance = playbook_boost(in.hit_distances[h], in.hit_scores[h]);
    row.source = ResultSource::Inject;
    injected.push_back(row);
    ++out.counts.injected;
  }

  // 5. Re-sort (stable: merge order, then injection order, breaks ties) and truncate.
  rows.insert(rows.end(), injected.begin(), injected.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [](const PlaybookRow& a, const PlaybookRow& b) { return a.distance < b.distance; });
  if (rows.size() > in.k) rows.resize(in.k);
  out.rows = std::move(rows);
  return out;
}

}  // namespace lakehouse
