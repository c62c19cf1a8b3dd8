// Playbook boost and inject ("Shape B"), contract sections 9.9-9.12: a pure function from
// one search's merged results and its playbook hits to the re-ranked, truncated answer.
//
// Inputs are plain arrays: results (id, corpus, distance) in merge order; playbook hits
// (answer_id, answer_corpus, score in [0, 1], hit distance, recorded role) in any order.
// The function never calls out: the LLM judge lives in the caller, which runs apply_playbook
// once, reads `inject_candidates`, asks the judge about those hits, and runs it again with
// the hits it refused in `vetoed_hits` (candidates do not depend on the vetoes, so the
// second run only drops those injections).
//
// Order of operations (the invariant every caller and the Python twin rely on):
//   1. Results whose id is in exclude_ids are dropped.
//   2. Hits are visited by (distance ascending, input index ascending). A hit farther than
//      max_distance is ignored; the rest count as `hits`. The role gate (role.h) rejects a
//      hit when both roles are set and differ (`rejected_role`). A hit whose answer_id is
//      excluded is skipped. With max_ratio > 0 (the calibrated playbook; 0 = the
//      reference, no test) a hit must also be clearly the query's nearest demand:
//      hit_distance <= max_ratio x c, where c is the distance of the nearest hit (any hit
//      of the input) recorded for another query text AND another answer; a hit with no
//      such competitor passes. Failing hits neither boost nor inject (`rejected_ratio`).
//      With max_ratio < 1 only the nearest demand's answers can act on a query.
//   3. Boost: when (answer_id, answer_corpus) matches results, each such result's distance
//      becomes d x (1 - 0.5 x score). The first qualifying hit of an answer applies; later
//      hits for the same answer do nothing (no compounding).
//   4. Inject: when the answer is absent from the results and the hit is within
//      max_inject_distance, the hit is an inject candidate (one per answer: the first). A
//      vetoed candidate is dropped (`vetoed`); otherwise a result (answer_id, answer_corpus)
//      is appended at hit_distance x (1 - 0.5 x score).
//   5. Stable sort by distance ascending (ties keep merge order, injected after retrieved),
//      then truncation to k.
//
// Precision: distances are float32 as on the wire. The factor is computed in double
// (0.5 x score is exact, so an FMA contraction cannot change it), the product in double,
// and rounded to float32 once: float(double(d) * (1.0 - 0.5 * score)). The Python twin
// does exactly these IEEE operations, so both give bit-identical distances.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lakehouse {

enum class ResultSource : std::uint8_t { Retrieval = 0, Boost = 1, Inject = 2 };

const char* result_source_name(ResultSource s);

inline constexpr double kDefaultPlaybookMaxDistance = 0.5;
inline constexpr double kDefaultPlaybookMaxInjectDistance = 0.20;

struct PlaybookInput {
  std::vector<std::string> result_ids;
  std::vector<std::string> result_corpora;
  std::vector<float> result_distances;

  std::vector<std::string> hit_answer_ids;
  std::vector<std::string> hit_answer_corpora;
  std::vector<double> hit_scores;
  std::vector<float> hit_distances;
  std::vector<std::string> hit_roles;
  // The query text each hit was recorded for (its demand); empty = no hit has a competitor.
  std::vector<std::string> hit_queries;

  std::string query_role;
  std::vector<std::string> exclude_ids;
  double max_distance = kDefaultPlaybookMaxDistance;
  double max_inject_distance = kDefaultPlaybookMaxInjectDistance;
  // The ratio test of step 2; 0 = off (the reference's behaviour).
  double max_ratio = 0.0;
  std::size_t k = 10;
  // Hit indexes whose injection the caller refuses (judge said no).
  std::vector<std::size_t> vetoed_hits;
};

// One row of the answer. result_index points into the input results (-1 for an injected
// row); hit_index is the hit that boosted or injected it (-1 for a plain retrieval row).
struct PlaybookRow {
  std::int64_t result_index = -1;
  std::int64_t hit_index = -1;
  float distance = 0.0f;
  ResultSource source = ResultSource::Retrieval;
};

struct PlaybookCounts {
  std::size_t hits = 0;           // hits within max_distance
  std::size_t boosted = 0;        // results whose distance was boosted
  std::size_t injected = 0;       // results injected (before truncation)
  std::size_t rejected_role = 0;  // hits refused by the role gate
  std::size_t rejected_ratio = 0; // hits refused by the ratio test (max_ratio > 0)
  std::size_t vetoed = 0;         // inject candidates the caller vetoed
  std::size_t excluded = 0;       // results dropped by exclude_ids
};

struct PlaybookOutcome {
  std::vector<PlaybookRow> rows;                // final order, at most k
  std::vector<std::size_t> inject_candidates;   // hit indexes, in visiting order
  PlaybookCounts counts;
};

// d x (1 - 0.5 x score) rounded to float32 once (see the header comment).
float playbook_boost(float distance, double score);

// Throws std::invalid_argument for mismatched lengths, a non-finite distance, a score
// outside [0, 1], a negative or non-finite threshold, k == 0, a vetoed index out of range or
// hit_queries neither empty nor one per hit.
PlaybookOutcome apply_playbook(const PlaybookInput& in);

}  // namespace lakehouse
