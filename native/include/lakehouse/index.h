// Index: the vector index the Python facade wraps: a SideStore (the truth) plus an
// HnswGraph (a derived, rebuildable view of it).
//
// Guarantees:
// - Every mutation validates its whole batch first; a bad item throws std::invalid_argument
//   naming the item, and nothing changes.
// - The side store is authoritative. A graph operation that throws marks the graph broken and
//   the graph is rebuilt from the store before the call returns; the item is never lost.
// - At or below brute_force_threshold live items (or before the graph exists) a search is an
//   exact scan. The graph is built lazily when the live count first passes the threshold.
// - Every result is re-checked against the store (live, not excluded, distance recomputed)
//   before it is returned, and if the graph yields fewer than k results while k eligible
//   items exist, the search falls back to the exact scan.
//
// Locks, always taken in this order:
//   snap_mu_    shared by every mutation; exclusive for a consistent snapshot (save) and
//               for swapping in a rebuilt graph. Searches never take it.
//   struct_mu_  shared by searches and mutations; exclusive only to grow the arrays or to
//               install a new graph (short).
//   meta_mu_    exclusive while a mutation edits ids / metadata / slot states (short);
//               shared while a search maps exclude_ids and resolves result slots.
// Graph links are guarded by HnswGraph's per-node locks, so inserts run in parallel.
//
// Rotation (docs/vectord.md, "The rotation"): an index may hold its vectors turned by an
// orthogonal matrix R (set_rotation; the facade fits R to the data's principal axes, largest
// variance first). Every vector coming in (items, queries) is turned on the way in and every
// vector going out (get) is turned back, so callers never see R; distances and answers are
// those of the unturned vectors up to float rounding. With the variance in the leading
// coordinates, a graph search's bounded kernel rejects a far neighbour after reading a
// fraction of its vector. R changes only under all three locks held exclusively, and is read
// under struct_mu_ (shared): a query is turned inside the lock that its search holds.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "lakehouse/distance.h"
#include "lakehouse/hnsw_graph.h"
#include "lakehouse/rwlock.h"
#include "lakehouse/side_store.h"

namespace lakehouse {

struct IndexParams {
  std::size_t dims = 0;
  Metric metric = Metric::Cosine;
  std::size_t m = 16;
  std::size_t ef_construction = 200;
  std::size_t ef_search = 64;
  std::size_t brute_force_threshold = 2048;
  std::size_t threads = 0;  // 0 = all hardware threads
  std::uint64_t seed = 0;
  // false: the index is never rotated (its vectors come back from get() bit for bit); the
  // facade asks before fitting a rotation. Saved with the index.
  bool rotate = true;

  // Throws std::invalid_argument for out-of-range values.
  void validate() const;
};

struct IndexStats {
  std::size_t count = 0;
  std::size_t dims = 0;
  std::string distance;
  std::size_t m = 0;
  std::size_t ef_construction = 0;
  std::size_t ef_search = 0;
  std::size_t brute_force_threshold = 0;
  std::size_t threads = 0;
  std::size_t tombstones = 0;  // deleted slots awaiting reuse
  std::size_t slots = 0;       // live + tombstones
  std::size_t capacity = 0;
  std::size_t rebuilds = 0;
  std::size_t graph_failures = 0;
  bool graph_built = false;
  int max_level = -1;
  std::size_t memory_bytes = 0;
  // live items a search cannot reach from the entry point (a graph traversal per call:
  // O(items x 2m); always 0, see HnswGraph)
  std::size_t unreachable = 0;
  bool rotated = false;  // a rotation is set (see the header comment)
  std::string isa;
};

// One search answer: slots resolved to ids, output distances ascending.
struct SearchHit {
  std::string id;
  float distance;
  std::optional<std::string> metadata;
};

class Index {
 public:
  explicit Index(const IndexParams& params);
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  const IndexParams& params() const { return params_; }
  std::size_t ef_search() const { return ef_search_.load(); }

  // Upsert n items. vectors is n x dims, row-major. metadata: empty (keep / none for all) or
  // n entries: nullopt keeps an existing item's metadata, "" clears it, other bytes replace
  // it. A duplicate id inside the batch: the last occurrence wins.
  // Returns (added, updated).
  std::pair<std::size_t, std::size_t> add(const std::vector<std::string>& ids, const float* vectors,
                                          std::size_t n,
                                          const std::vector<std::optional<std::string>>& metadata);
  // Row i of a batch (dims floats), valid until the next call; rows are asked for in a
  // few passes over the batch, ascending within each. Lets a caller convert another
  // dtype in bounded chunks instead of copying the whole batch first.
  using RowSource = std::function<const float*(std::size_t i)>;
  std::pair<std::size_t, std::size_t> add(const std::vector<std::string>& ids, const RowSource& vectors,
                                          std::size_t n,
                                          const std::vector<std::optional<std::string>>& metadata);

  std::vector<SearchHit> search(const float* query, std::size_t k, std::size_t ef,
                                const std::vector<std::string>& exclude, bool with_metadata) const;

  // q queries; writes q*k ids ("" for padding) and distances (+inf for padding); with
  // out_metadata, also each hit's metadata, read under the same lock as its id.
  void search_batch(const float* queries, std::size_t q, std::size_t k, std::size_t ef,
                    const std::vector<std::string>& exclude, std::vector<std::string>& out_ids,
                    float* out_distances,
                    std::vector<std::optional<std::string>>* out_metadata = nullptr) const;

  std::size_t remove(const std::vector<std::string>& ids);

  // False when absent.
  bool get(const std::string& id, std::vector<float>& vector, std::optional<std::string>& metadata) const;
  std::vector<std::string> ids() const;
  std::size_t size() const;
  bool contains(const std::string& id) const;

  void rebuild();
  IndexStats stats() const;
  void set_ef_search(std::size_t ef);
  void set_threads(std::size_t threads);
  void inject_graph_failures(int n);
  // Test hook: ids of an item's graph neighbours at `layer` (empty when not in the graph).
  std::vector<std::string> graph_neighbours(const std::string& id, int layer) const;
  // Test hook: an item's graph level (-1 not linked, -2 absent or no graph).
  int graph_level(const std::string& id) const;
  // Test hook: "" when the graph's reachability bookkeeping is consistent, else what is not.
  std::string check_graph() const;
  // Test hook: the entry point's id and the graph's top level ("" / -1 when empty).
  std::pair<std::string, int> graph_entry() const;

  // Binary format (format.cpp). serialize() computes the exact size, asks alloc for a buffer
  // of that size and fills it, all under one consistent snapshot.
  void serialize(const std::function<char*(std::size_t)>& alloc) const;
  std::string to_bytes() const;
  static std::unique_ptr<Index> from_bytes(const char* data, std::size_t size);
  // Atomic: writes a temporary file beside path and renames it over path. durable also
  // fsyncs the file and its directory, so the new content survives a power loss.
  void save(const std::string& path, bool durable = true) const;
  static std::unique_ptr<Index> load(const std::string& path);

  // Turns every stored vector (tombstones too) by r (dims x dims, row-major, orthonormal
  // rows), replacing any earlier rotation; the graph stays valid, since distances do not
  // change. Throws std::invalid_argument, changing nothing, for a matrix of the wrong size,
  // with a non-finite entry or a row whose norm is not 1, or when params().rotate is false.
  void set_rotation(const std::vector<float>& r);
  bool rotated() const;
  // set_rotation's checks of the matrix alone (size, finite, unit rows): also a loaded one's.
  static void check_rotation(const std::vector<float>& r, std::size_t dims);

 private:
  friend class IndexCodec;

  // Throws std::invalid_argument naming the item unless the vector is finite (and non-zero
  // under cosine).
  void check(const float* in, std::size_t item, const char* what) const;
  // The vector as stored: copied, normalised under cosine, turned by the rotation. Only for a
  // vector check() accepted; the caller holds struct_mu_ (the rotation's lock).
  void transform(const float* in, float* out) const;
  // check, then transform.
  void prepare(const float* in, float* out, std::size_t item, const char* what) const;
  // r times v (dims floats each), into out; r is row-major.
  void turn(const std::vector<float>& r, const float* v, float* out) const;
  // The transpose of r times v: turns a stored vector back (double accumulation).
  void unturn(const std::vector<float>& r, const float* v, float* out) const;
  // An add of at least this many items gives its freed scratch back to the system
  // (release_free_memory, memory.h).
  static constexpr std::size_t kReleaseAfter = 1024;
  // add, without that release.
  std::pair<std::size_t, std::size_t> add_rows(const std::vector<std::string>& ids, const RowSource& vectors,
                                               std::size_t n,
                                               const std::vector<std::optional<std::string>>& metadata);
  void grow_for(std::size_t new_items);
  void insert_into_graph(const std::vector<std::uint32_t>& slots, const std::vector<int>& levels);
  // graph_->top_up over freshly inserted slots (HnswGraph::top_up).
  void top_up(const std::vector<std::uint32_t>& slots);
  // Repairs the graph around deleted slots (before they can be reused).
  void repair_graph(const std::vector<std::uint32_t>& dead);
  void exact_search(const float* q, std::size_t k, const std::vector<std::uint32_t>& excluded,
                    std::vector<Candidate>& out) const;
  // False (and out unset) when the answer needs the exact scan and exact_fallback is off:
  // search_batch runs those together, one pass over the store per tile (scan.h).
  bool search_slots(const float* q, std::size_t k, std::size_t ef,
                    const std::vector<std::uint32_t>& excluded, std::vector<Candidate>& out,
                    std::shared_lock<RwLock>& meta_lock, bool exact_fallback = true) const;
  std::vector<std::uint32_t> exclude_slots(const std::vector<std::string>& ids) const;
  // Builds a new graph over the live slots aside and swaps it in. Holds snap_mu_ exclusively.
  void rebuild_graph(bool count_as_rebuild);
  void maybe_build_or_rebuild();

  IndexParams params_;
  Space space_;
  SideStore store_;
  std::unique_ptr<HnswGraph> graph_;
  bool graph_built_ = false;
  std::atomic<bool> graph_broken_{false};
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<std::size_t> ef_search_;
  std::atomic<std::size_t> threads_;
  std::atomic<std::size_t> deletes_since_rebuild_{0};
  std::atomic<std::size_t> rebuilds_{0};
  std::atomic<std::size_t> graph_failures_{0};
  std::vector<float> rotation_;  // dims x dims, row-major; empty: none. Under struct_mu_.

  mutable RwLock snap_mu_;
  mutable RwLock struct_mu_;
  mutable RwLock meta_mu_;
};

}  // namespace lakehouse
