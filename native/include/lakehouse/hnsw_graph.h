// HnswGraph: the navigable small-world graph over side-store slots (Malkov & Yashunin).
//
// The graph is a derived view: it stores only links between slot numbers and reads vectors
// from the SideStore, so it can be thrown away and rebuilt from the store at any time.
//
// Layout (as hnswlib): level 0 links in one array, (1 + 2M) uint32 per slot: a count, then
// the neighbours; upper levels in a per-slot array allocated only for slots whose random
// level is above 0. Concurrency, as hnswlib: a writer changes a node's links only while
// holding that node's spin lock; readers (searches) read links without locks through
// relaxed atomic loads and treat every id defensively (bounded by size, skipped if never
// used), so a list read while it changes yields valid slots, at worst a stale neighbour.
// A slot that is deleted and reused may be reached through a stale link while its vector is
// rewritten; Index re-verifies every result (liveness and distance) before returning it.
// The entry point changes under entry_mu_, held for a whole insert only when that insert
// raises the top level (rare), again as hnswlib.
//
// Per-node upper-level arrays are never freed while the graph lives (a replaced one goes to
// a graveyard) so a reader holding a stale pointer never touches freed memory.
//
// Reachability invariant (docs/vectord.md, "Every item reachable"): every node has a rank
// (seq) and every linked live node other than the entry point has an *anchor*: a linked
// live node of lower rank whose level-0 list holds it. A list never drops a node anchored
// to it (its prune keeps anchored links), and the entry point always has the lowest rank.
// Following anchors strictly lowers the rank, so every chain ends at the entry point:
// every live node is reachable from it in the bottom layer. Inserts rank after every
// existing node and anchor to their nearest eligible neighbour; a new entry point ranks
// below everything; a deleted node's anchored children are re-anchored before its slot
// can be reused. anchor_ and children_ change only under the node's lock and the new
// anchor's lock (taken in slot order).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lakehouse/distance.h"
#include "lakehouse/side_store.h"

namespace lakehouse {

struct GraphParams {
  std::size_t m = 16;                 // links per node on upper levels; 2m on level 0
  std::size_t ef_construction = 200;  // candidate list width while inserting
  std::uint64_t seed = 0;             // level generation
};

// Which slots a search may return (slots are already known to be live when asked).
// nullptr = every live slot.
using SlotFilter = std::function<bool(std::uint32_t)>;

// (internal distance, slot), compared by distance then slot.
using Candidate = std::pair<float, std::uint32_t>;

class HnswGraph {
 public:
  static constexpr int kMaxLevel = 31;
  static constexpr std::size_t kMaxM = 256;
  // Pivots every search scans before level 0 (see seed_from_pivots). LAKEHOUSE_PIVOTS=n in
  // the environment caps them lower (0: none) for A/B measurements.
  static constexpr std::size_t kPivots = 64;
  // level() of a slot that is not in the graph (also the value the binary format stores)
  static constexpr std::uint8_t kUnlinked = 0xFF;

  HnswGraph(const SideStore& store, const Space& space, GraphParams params);
  ~HnswGraph();
  HnswGraph(const HnswGraph&) = delete;
  HnswGraph& operator=(const HnswGraph&) = delete;

  // Grows the per-slot arrays to `capacity`. Caller holds the index's exclusive lock.
  void reserve(std::size_t capacity);

  // The level a node gets for insertion number `sequence` (deterministic for a seed).
  int random_level(std::uint64_t sequence) const;

  // A slot just taken for a new item (possibly a reused tombstone): until insert() links it,
  // it must not be chosen as the entry point or counted as part of the graph. Its old links
  // stay readable for searches that reach it through stale links.
  void mark_unlinked(std::uint32_t slot);

  // Links a live slot into the graph at `level`. Safe to run concurrently with other
  // inserts, repairs and searches.
  void insert(std::uint32_t slot, int level);

  // After a batch of inserts: a node whose level-0 list holds fewer than m links (one
  // linked while the graph was tiny, when there was little to link to) is linked again by
  // a fresh neighbour search, which also gives it in-links from its nearest neighbours.
  void top_up(std::uint32_t slot);

  // After `slot` became Deleted: removes it from its neighbours' lists and gives each of
  // them a replacement from the deleted node's own neighbourhood, and moves the entry point
  // off it. The slot's own links stay (stale in-links may still route through it).
  void repair_deleted(std::uint32_t slot);

  // After loading links from a file: ranks the nodes in breadth-first order from the entry
  // point, anchors each to an in-linking node of lower rank, and links (and anchors) any
  // live node the traversal did not reach. Returns how many were unreachable. Run before
  // the graph is visible to searches.
  std::size_t restore_anchors();

  // Live linked slots not reachable from the entry point through level-0 links between live
  // nodes (a traversal; 0 whenever the invariant holds and no writer is running).
  std::size_t unreachable() const;
  // Test hook: an inconsistency of the anchor bookkeeping, or "" (no writer running).
  std::string check_anchors() const;

  // Up to `ef` nearest live slots accepted by `filter`, ascending.
  void search(const float* query, std::size_t ef, const SlotFilter& filter,
              std::vector<Candidate>& out) const;

  std::uint32_t entry_point() const { return entry_.load(std::memory_order_acquire); }
  int max_level() const { return max_level_.load(std::memory_order_acquire); }
  std::size_t m() const { return m_; }
  std::size_t max_m0() const { return max_m0_; }
  // The most links a node holds at `layer`: 2m at level 0, m above.
  std::size_t cap(int layer) const { return layer == 0 ? max_m0_ : m_; }
  std::size_t memory_bytes() const;

  // -- raw access for the binary format (index locks held by the caller) --
  int level(std::uint32_t slot) const { return levels_[slot]; }
  // Neighbours of slot at `layer` (copied; empty when the node has no such layer).
  void neighbours(std::uint32_t slot, int layer, std::vector<std::uint32_t>& out) const;
  // The raw list (count, then ids) of slot at `layer`, or nullptr. Only while no writer runs.
  const std::uint32_t* links_block(std::uint32_t slot, int layer) const { return block(slot, layer); }
  // Loading: restore_level allocates the node's layers, then restore_links fills each one
  // (ids already validated against the slot count; count <= the layer's cap).
  void restore_level(std::uint32_t slot, int level);
  void restore_links(std::uint32_t slot, int layer, const char* ids, std::uint32_t count);
  void restore_entry(std::uint32_t entry, int max_level);

  // Test hook: the next n inserts throw (to prove a failed graph operation loses nothing).
  void inject_failures(int n) { inject_failures_.store(n); }

 private:
  struct Scratch;
  class NodeLock;
  // The store's vectors and the kernel, copied into locals of a hot loop: the compiler cannot
  // hoist these loads itself because the loop writes memory that might alias them.
  // Distances are the graph's own (Space::graph_kernel): squared L2 for cosine and euclidean.
  struct VecView {
    const float* base;
    std::size_t dims;
    KernelFn fn;
    BoundedFn bounded;  // nullptr: no early stop for this metric
    const float* at(std::uint32_t s) const { return base + std::size_t(s) * dims; }
    float operator()(const float* q, std::uint32_t s) const { return fn(q, at(s), dims); }
    // The distance when it is below `bound`, else some value > bound (possibly having read
    // only part of the vector): for callers that only keep what beats the bound.
    float within(const float* q, std::uint32_t s, float bound) const {
      return bounded ? bounded(q, at(s), dims, bound) : fn(q, at(s), dims);
    }
  };
  VecView view() const {
    return VecView{store_.data(), store_.dims(), space_.graph_kernel(), space_.graph_bounded()};
  }
  static Scratch& scratch();

  std::uint32_t* links0(std::uint32_t slot) const { return links0_.get() + std::size_t(slot) * stride0_; }
  // Block for `layer` >= 1 inside an upper array, or nullptr.
  std::uint32_t* upper_block(std::uint32_t slot, int layer) const;
  std::uint32_t* block(std::uint32_t slot, int layer) const {
    return layer == 0 ? links0(slot) : upper_block(slot, layer);
  }
  // Copies the neighbour list of slot at layer into buf; returns the count.
  std::size_t read_links(std::uint32_t slot, int layer, std::uint32_t* buf) const;
  void write_links(std::uint32_t* blk, const std::uint32_t* ids, std::size_t n) const;
  float dist(const float* q, std::uint32_t slot) const { return space_.graph_kernel()(q, store_.vector(slot), store_.dims()); }

  // Greedy descent through one upper layer from (ep, ep_dist), never stepping onto `exclude`
  // (an insert must not descend onto its own node: a reused slot is reachable through stale
  // links, sits at distance 0 from its own vector, and has no links yet).
  void greedy(const float* q, int layer, std::uint32_t& ep, float& ep_dist,
              std::uint32_t exclude = kNoSlot) const;
  // Beam search of width ef at `layer`; fills `top` with the best accepted candidates.
  void search_layer(const float* q, std::uint32_t ep, float ep_dist, int layer, std::size_t ef,
                    const SlotFilter* filter, std::uint32_t exclude, Scratch& scratch,
                    std::vector<Candidate>& top) const;
  // hnswlib's heuristic: keep a candidate only if it is closer to the base than to every
  // candidate already kept. `cands` ascending by distance to the base.
  void select_neighbours(std::vector<Candidate>& cands, std::size_t m) const;
  // select_neighbours (at most m), then refilled with the closest discarded candidates up
  // to fill_to (<= m).
  void keep_neighbours(std::vector<Candidate>& cands, std::size_t m, std::size_t fill_to) const;
  void connect(std::uint32_t slot, const std::vector<Candidate>& neighbours, int layer);
  void choose_entry_excluding(std::uint32_t slot);

  // -- pivots: a spread-out sample of live nodes, a second way into level 0 --
  // Scans the pivots and moves (ep, ep_dist) to the nearest one if it is nearer than ep.
  void seed_from_pivots(const float* q, std::uint32_t& ep, float& ep_dist,
                        std::uint32_t exclude) const;
  // After `slot` was linked: it becomes a pivot if it is farther than the radius from every
  // pivot (the set is thinned, doubling the radius, when full).
  void consider_pivot(std::uint32_t slot);
  // After `slot` was deleted: a pivot there is replaced by its nearest live neighbour.
  void replace_pivot(std::uint32_t slot);
  // Squared L2 between v and slot s: pivots spread by it whatever the metric.
  float pivot_gap(const float* v, std::uint32_t s) const;
  bool pivot_ok(std::uint32_t s, std::uint32_t exclude) const {
    return s < capacity_ && s != exclude && store_.state(s) == SlotState::Live &&
           __atomic_load_n(&levels_[s], __ATOMIC_ACQUIRE) != kUnlinked;
  }

  // -- reachability (see the header comment) --
  // y may anchor x: y is linked, live, not x, and ranks below x.
  bool may_anchor(std::uint32_t y, std::uint32_t x) const;
  // Makes y x's anchor if y may anchor x and has fewer than child_cap anchored nodes: puts
  // x into y's level-0 list when absent (displacing y's farthest link that is not itself
  // anchored to y), then moves the anchor. False when y cannot take x.
  bool try_anchor(std::uint32_t x, std::uint32_t y, std::size_t child_cap);
  // A new anchor for live x: its own neighbours first, then a search for its vector, then
  // every eligible node nearest first. Throws when no node can take it (the index then
  // rebuilds the graph, which always can).
  void reanchor(std::uint32_t x);
  // The entry point ranks below every node: gives `slot` the next lowest rank and drops its
  // own anchor. Caller holds entry_mu_.
  void make_root(std::uint32_t slot);
  bool anchored_here(std::uint32_t s, std::uint32_t holder) const {
    return s < capacity_ && anchor_[s].load(std::memory_order_acquire) == holder;
  }
  // Makes sure some live node other than `gone` lists `node` at level 0: its own
  // neighbours are checked (links are made both ways), and if none lists it, its nearest
  // live neighbour takes it in (displacing that neighbour's farthest link when full).
  void ensure_in_link(std::uint32_t node, std::uint32_t gone);
  // Re-runs an insert's neighbour search for an existing node at `layer` and merges the
  // result with its current links: used when deletes have worn its list down.
  void relink(std::uint32_t node, int layer);

  const SideStore& store_;
  const Space& space_;
  std::size_t m_;
  std::size_t max_m0_;
  std::size_t ef_construction_;
  std::uint64_t seed_;
  double level_mult_;
  std::size_t stride0_;   // uint32 per slot at level 0: 1 + max_m0
  std::size_t stride_up_; // uint32 per upper level: 1 + m

  std::size_t capacity_ = 0;
  std::unique_ptr<std::uint32_t[]> links0_;
  std::unique_ptr<std::uint8_t[]> levels_;
  std::unique_ptr<std::atomic<std::uint32_t*>[]> upper_;  // [0] = levels allocated
  std::unique_ptr<std::atomic<std::uint8_t>[]> locks_;
  std::unique_ptr<std::atomic<std::int64_t>[]> seq_;       // rank: lower = older / entry
  std::unique_ptr<std::atomic<std::uint32_t>[]> anchor_;   // kNoSlot: none (the entry)
  std::unique_ptr<std::atomic<std::uint16_t>[]> children_; // nodes anchored here
  std::atomic<std::int64_t> next_seq_{1};   // ranks of inserts count up from 1
  std::atomic<std::int64_t> root_seq_{0};   // ranks of entry points count down from 0
  std::size_t soft_children_;  // anchored nodes a list takes by preference (a quarter of it)
  std::vector<std::unique_ptr<std::uint32_t[]>> upper_owned_;
  mutable std::mutex upper_mu_;  // guards upper_owned_

  std::array<std::atomic<std::uint32_t>, kPivots> pivots_{};
  std::atomic<std::size_t> n_pivots_{0};
  std::atomic<float> pivot_radius_{0.0f};  // squared L2: kept pivots are farther apart
  std::size_t pivot_cap_ = kPivots;
  std::mutex pivot_mu_;                     // held by writers of the pivot set

  std::atomic<std::uint32_t> entry_{kNoSlot};
  std::atomic<int> max_level_{-1};
  std::mutex entry_mu_;
  std::atomic<int> inject_failures_{0};
};

}  // namespace lakehouse
