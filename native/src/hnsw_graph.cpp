#include "lakehouse/hnsw_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#include "lakehouse/memory.h"

namespace lakehouse {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

inline std::uint32_t load(const std::uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void store(std::uint32_t* p, std::uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void store_count(std::uint32_t* p, std::uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline std::uint32_t load_count(const std::uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

// How many cache lines of a vector are fetched ahead of its distance: the lines a bounded
// kernel usually reads before it stops (about 58 % of a rotated 384-d vector's 24), or the
// whole vector if shorter. Chosen on the real-text set's tuning queries (docs/vectord.md,
// "What moved the numbers"): against fetching only the first line, 1.11-1.20x faster
// searches at 384 dimensions with 8 to 17 lines, 1.09x at 768 with 12 (all 48: 1.06x),
// 1.22x at 128 with all 8.
constexpr std::size_t kPrefetchLines = 13;

inline std::size_t prefetch_span(std::size_t dims) {
  return std::min(kPrefetchLines, (dims * sizeof(float) + 63) / 64);
}

// Starts fetching cache lines [from, lines) of the vector at v.
inline void prefetch_lines(const float* v, std::size_t from, std::size_t lines) {
  const char* p = reinterpret_cast<const char*>(v);
  for (std::size_t l = from; l < lines; ++l) prefetch(p + 64 * l);
}

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Heap orders compare distances only (fewer instructions than whole pairs); ties are
// broken deterministically by the final sort.
struct MinFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.first > b.first; }
};
struct MaxFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.first < b.first; }
};

}  // namespace

// Per-thread search state, shared by every graph the thread searches: visited marks by
// generation (cleared only when the 16-bit generation wraps), the candidate heap and a
// link buffer. Sized up to the largest graph seen.
struct HnswGraph::Scratch {
  std::vector<std::uint16_t> visited;
  std::uint16_t tag = 0;
  std::vector<Candidate> cand;
  std::vector<std::uint32_t> buf;

  void begin(std::size_t slots, std::size_t links) {
    if (visited.size() < slots) visited.resize(slots, 0);
    if (buf.size() < links) buf.resize(links);
    if (++tag == 0) {
      std::fill(visited.begin(), visited.end(), 0);
      tag = 1;
    }
    cand.clear();
  }
  bool visit(std::uint32_t s) {
    if (visited[s] == tag) return false;
    visited[s] = tag;
    return true;
  }
};

class HnswGraph::NodeLock {
 public:
  NodeLock(const HnswGraph& g, std::uint32_t slot) : lock_(g.locks_[slot]) {
    int spins = 0;
    while (lock_.exchange(1, std::memory_order_acquire)) {
      while (lock_.load(std::memory_order_relaxed)) {
        if (++spins < 128) cpu_relax();
        else std::this_thread::yield();
      }
    }
  }
  ~NodeLock() { lock_.store(0, std::memory_order_release); }
  NodeLock(const NodeLock&) = delete;
  NodeLock& operator=(const NodeLock&) = delete;

 private:
  std::atomic<std::uint8_t>& lock_;
};

HnswGraph::Scratch& HnswGraph::scratch() {
  static thread_local Scratch s;
  return s;
}

HnswGraph::HnswGraph(const SideStore& store, const Space& space, GraphParams params)
    : store_(store),
      space_(space),
      m_(std::max<std::size_t>(params.m, 2)),
      max_m0_(2 * std::max<std::size_t>(params.m, 2)),
      ef_construction_(std::max<std::size_t>(params.ef_construction, 1)),
      seed_(params.seed),
      level_mult_(1.0 / std::log(double(std::max<std::size_t>(params.m, 2)))),
      stride0_(1 + max_m0_),
      stride_up_(1 + m_),
      soft_children_(std::max<std::size_t>(1, max_m0_ / 4)) {
  if (const char* e = std::getenv("LAKEHOUSE_PIVOTS")) pivot_cap_ = std::min<std::size_t>(kPivots, std::atoi(e));
}

HnswGraph::~HnswGraph() = default;

void HnswGraph::reserve(std::size_t capacity) {
  if (capacity <= capacity_) return;
  // Only slots below the store's size were ever written; the rest stays untouched (and
  // therefore not resident) until a slot is used.
  const std::size_t used = std::min(store_.size(), capacity_);
  std::unique_ptr<std::uint32_t[]> links0(new std::uint32_t[capacity * stride0_]);
  advise_huge_pages(links0.get(), capacity * stride0_ * sizeof(std::uint32_t));
  if (used) std::memcpy(links0.get(), links0_.get(), used * stride0_ * sizeof(std::uint32_t));
  std::unique_ptr<std::uint8_t[]> levels(new std::uint8_t[capacity]);
  std::unique_ptr<std::atomic<std::uint32_t*>[]> upper(new std::atomic<std::uint32_t*>[capacity]);
  std::unique_ptr<std::atomic<std::uint8_t>[]> locks(new std::atomic<std::uint8_t>[capacity]);
  std::unique_ptr<std::atomic<std::int64_t>[]> seq(new std::atomic<std::int64_t>[capacity]);
  std::unique_ptr<std::atomic<std::uint32_t>[]> anchor(new std::atomic<std::uint32_t>[capacity]);
  std::unique_ptr<std::atomic<std::uint16_t>[]> children(new std::atomic<std::uint16_t>[capacity]);
  constexpr auto rx = std::memory_order_relaxed;
  for (std::size_t i = 0; i < capacity; ++i) {
    const bool old = i < capacity_;
    levels[i] = old ? levels_[i] : kUnlinked;
    upper[i].store(old ? upper_[i].load(rx) : nullptr, rx);
    locks[i].store(0, rx);
    seq[i].store(old ? seq_[i].load(rx) : 0, rx);
    anchor[i].store(old ? anchor_[i].load(rx) : kNoSlot, rx);
    children[i].store(old ? children_[i].load(rx) : 0, rx);
  }
  links0_ = std::move(links0);
  levels_ = std::move(levels);
  upper_ = std::move(upper);
  locks_ = std::move(locks);
  seq_ = std::move(seq);
  anchor_ = std::move(anchor);
  children_ = std::move(children);
  capacity_ = capacity;
}

int HnswGraph::random_level(std::uint64_t sequence) const {
  const std::uint64_t r = splitmix64(seed_ * 0x9e3779b97f4a7c15ull ^ splitmix64(sequence));
  // uniform in (0, 1]: never 0, so the log is finite
  const double u = (double((r >> 11) + 1)) * (1.0 / 9007199254740992.0);
  const int level = static_cast<int>(-std::log(u) * level_mult_);
  return std::min(level, kMaxLevel);
}

std::uint32_t* HnswGraph::upper_block(std::uint32_t slot, int layer) const {
  if (layer > __atomic_load_n(&levels_[slot], __ATOMIC_ACQUIRE)) return nullptr;
  std::uint32_t* arr = upper_[slot].load(std::memory_order_acquire);
  if (arr == nullptr || arr[0] < std::uint32_t(layer)) return nullptr;
  return arr + 1 + std::size_t(layer - 1) * stride_up_;
}

std::size_t HnswGraph::read_links(std::uint32_t slot, int layer, std::uint32_t* buf) const {
  const std::uint32_t* blk = block(slot, layer);
  if (blk == nullptr) return 0;
  const std::size_t n = std::min<std::size_t>(load_count(blk), cap(layer));
  for (std::size_t i = 0; i < n; ++i) buf[i] = load(blk + 1 + i);
  return n;
}

void HnswGraph::write_links(std::uint32_t* blk, const std::uint32_t* ids, std::size_t n) const {
  for (std::size_t i = 0; i < n; ++i) store(blk + 1 + i, ids[i]);
  store_count(blk, static_cast<std::uint32_t>(n));
}

void HnswGraph::greedy(const float* q, int layer, std::uint32_t& ep, float& ep_dist,
                       std::uint32_t exclude) const {
  Scratch& sc = scratch();
  if (sc.buf.size() < max_m0_) sc.buf.resize(max_m0_);
  const VecView vv = view();
  bool changed = true;
  while (changed) {
    changed = false;
    const std::size_t n = read_links(ep, layer, sc.buf.data());
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t s = sc.buf[i];
      if (s >= capacity_ || s == exclude || store_.state(s) == SlotState::Free) continue;
      const float d = vv.within(q, s, ep_dist);
      if (d < ep_dist) {
        ep_dist = d;
        ep = s;
        changed = true;
      }
    }
  }
}

void HnswGraph::search_layer(const float* q, std::uint32_t ep, float ep_dist, int layer,
                             std::size_t ef, const SlotFilter* filter, std::uint32_t exclude,
                             Scratch& sc, std::vector<Candidate>& top) const {
  sc.begin(capacity_, max_m0_);
  auto& cand = sc.cand;
  top.clear();
  // While inserting (exclude = the new node), a neighbour must already be linked: a slot
  // taken by another add but not yet inserted will have its links reset by that insert.
  const bool inserting = exclude != kNoSlot;
  auto accept = [&](std::uint32_t s) {
    return s != exclude && store_.state(s) == SlotState::Live &&
           (!inserting || __atomic_load_n(&levels_[s], __ATOMIC_ACQUIRE) != kUnlinked) &&
           (filter == nullptr || (*filter)(s));
  };
  sc.visit(ep);
  cand.emplace_back(ep_dist, ep);
  float bound = kInf;
  if (accept(ep)) {
    top.emplace_back(ep_dist, ep);
    bound = ep_dist;
  }
  std::uint32_t* buf = sc.buf.data();
  const VecView vv = view();
  const std::size_t limit = capacity_;
  const std::size_t span = prefetch_span(vv.dims);
  while (!cand.empty()) {
    const Candidate c = cand.front();
    if (c.first > bound && top.size() >= ef) break;
    std::pop_heap(cand.begin(), cand.end(), MinFirst());
    cand.pop_back();
    // The next node to expand is likely the new heap top: start fetching its links while
    // this node's neighbours are scored (hnswlib gets this from storing links beside vectors).
    if (!cand.empty() && layer == 0) prefetch(links0(cand.front().second));
    std::size_t n = read_links(c.second, layer, buf);
    // Keep only unvisited neighbours (marking them), prefetching their vectors as we go, so
    // the distance loop below finds them on their way in. Links only ever name slots that
    // were inserted (a never-used slot is unreachable), so no state check is needed here.
    std::size_t fresh = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t s = buf[i];
      if (s < limit && sc.visit(s)) {
        prefetch(vv.at(s));
        buf[fresh++] = s;
      }
    }
    n = fresh;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t s = buf[i];
      // While this neighbour is scored, the next one's first lines come in.
      if (i + 1 < n) prefetch_lines(vv.at(buf[i + 1]), 1, span);
      // Most scored neighbours lose to the bound once the beam is full: the kernel stops
      // reading such a vector as soon as its running sum passes the bound.
      const float d = vv.within(q, s, top.size() < ef ? kInf : bound);
      if (top.size() < ef || d < bound) {
        cand.emplace_back(d, s);
        std::push_heap(cand.begin(), cand.end(), MinFirst());
        if (accept(s)) {
          top.emplace_back(d, s);
          std::push_heap(top.begin(), top.end(), MaxFirst());
          if (top.size() > ef) {
            std::pop_heap(top.begin(), top.end(), MaxFirst());
            top.pop_back();
          }
          bound = top.front().first;
        }
      }
    }
  }
  std::sort(top.begin(), top.end());
}

void HnswGraph::select_neighbours(std::vector<Candidate>& cands, std::size_t m) const {
  if (cands.size() <= m) return;
  std::vector<Candidate> kept;
  kept.reserve(m);
  const VecView vv = view();
  for (const Candidate& c : cands) {
    if (kept.size() >= m) break;
    const float* cv = vv.at(c.second);
    bool good = true;
    for (const Candidate& k : kept) {
      if (vv(cv, k.second) < c.first) {
        good = false;
        break;
      }
    }
    if (good) kept.push_back(c);
  }
  cands.swap(kept);
}

void HnswGraph::keep_neighbours(std::vector<Candidate>& cands, std::size_t m,
                                std::size_t fill_to) const {
  const std::vector<Candidate> all = cands;
  select_neighbours(cands, m);
  // The closest discarded candidates refill the selection up to fill_to
  // ("keepPrunedConnections", Malkov & Yashunin): the diversity rule alone may keep only one
  // or two, and nodes that lose their in-links that way become unreachable.
  for (const Candidate& c : all) {
    if (cands.size() >= fill_to) break;
    bool kept = false;
    for (const Candidate& k : cands) kept |= k.second == c.second;
    if (!kept) cands.push_back(c);
  }
}

namespace {

// Puts `id` into a pruned selection: appended when there is room, else in place of the
// farthest entry (the selection's tail) that `keep` does not protect. False if all are.
template <class Keep>
bool force_in(std::vector<Candidate>& pool, Candidate c, std::size_t limit, const Keep& keep) {
  for (const Candidate& k : pool) {
    if (k.second == c.second) return true;
  }
  if (pool.size() < limit) {
    pool.push_back(c);
    return true;
  }
  for (std::size_t i = pool.size(); i-- > 0;) {
    if (!keep(pool[i].second)) {
      pool[i] = c;
      return true;
    }
  }
  return false;
}

}  // namespace

void HnswGraph::connect(std::uint32_t slot, const std::vector<Candidate>& neighbours, int layer) {
  const std::size_t limit = cap(layer);
  {
    NodeLock lock(*this, slot);
    std::uint32_t* blk = block(slot, layer);
    std::uint32_t buf[2 * kMaxM];
    std::size_t n = 0;
    if (layer == 0) {
      // Nodes anchored here stay (another insert may have anchored to a node being linked).
      const std::size_t cnt = std::min<std::size_t>(load(blk), limit);
      for (std::size_t i = 0; i < cnt; ++i) {
        const std::uint32_t s = load(blk + 1 + i);
        if (anchored_here(s, slot)) buf[n++] = s;
      }
    }
    const std::size_t kept = n;
    for (const Candidate& c : neighbours) {
      if (n >= limit) break;
      bool dup = false;
      for (std::size_t i = 0; i < kept && !dup; ++i) dup = buf[i] == c.second;
      if (!dup) buf[n++] = c.second;
    }
    write_links(blk, buf, n);
  }
  std::vector<Candidate> pool;
  std::vector<std::uint32_t> ids;
  for (const Candidate& nb : neighbours) {
    const std::uint32_t n = nb.second;
    NodeLock lock(*this, n);
    std::uint32_t* blk = block(n, layer);
    if (blk == nullptr) continue;  // the slot was reused at a lower level meanwhile
    const std::size_t cnt = std::min<std::size_t>(load(blk), limit);
    bool present = false;
    for (std::size_t i = 0; i < cnt && !present; ++i) present = load(blk + 1 + i) == slot;
    if (present) continue;
    if (cnt < limit) {
      store(blk + 1 + cnt, slot);
      store_count(blk, static_cast<std::uint32_t>(cnt + 1));
      continue;
    }
    // Full: keep the best diverse set among the old links and the new node. Tombstones
    // are dropped here, which cleans lists as the graph churns.
    const VecView vv = view();
    const float* nv = vv.at(n);
    pool.clear();
    pool.emplace_back(nb.first, slot);
    ids.clear();  // nodes anchored to n: they stay, whatever the prune says
    for (std::size_t i = 0; i < cnt; ++i) {
      const std::uint32_t s = load(blk + 1 + i);
      if (s >= capacity_ || store_.state(s) != SlotState::Live) continue;
      const float d = vv(nv, s);
      pool.emplace_back(d, s);
      if (layer == 0 && anchored_here(s, n)) ids.push_back(s);
    }
    std::sort(pool.begin(), pool.end());
    std::vector<Candidate> protect;
    for (std::uint32_t s : ids) {
      for (const Candidate& c : pool) {
        if (c.second == s) protect.push_back(c);
      }
    }
    // Keep the list nearly full: the heuristic can drop many old links at once (a
    // near-duplicate newcomer "covers" them). It is refilled to all but an eighth of the
    // cap: that slack takes the next few reverse links as plain appends, so the quadratic
    // prune runs about once in five instead of on every link (docs/bench.md: fewer
    // instructions than hnswlib's build at the same recall per ef as a list refilled to the
    // brim).
    keep_neighbours(pool, limit, limit - std::max<std::size_t>(1, limit / 8));
    auto is_protected = [&](std::uint32_t s) {
      for (const Candidate& c : protect) {
        if (c.second == s) return true;
      }
      return false;
    };
    for (const Candidate& c : protect) force_in(pool, c, limit, is_protected);
    // The newcomer keeps this in-link even if the prune left it out: a new node whose
    // reverse links are all pruned away at once has no way in and can never be found.
    force_in(pool, Candidate(nb.first, slot), limit, is_protected);
    ids.clear();
    for (const Candidate& c : pool) ids.push_back(c.second);
    write_links(blk, ids.data(), ids.size());
  }
}

bool HnswGraph::may_anchor(std::uint32_t y, std::uint32_t x) const {
  return y < capacity_ && y != x && store_.state(y) == SlotState::Live &&
         __atomic_load_n(&levels_[y], __ATOMIC_ACQUIRE) != kUnlinked &&
         seq_[y].load(std::memory_order_acquire) < seq_[x].load(std::memory_order_acquire);
}

bool HnswGraph::try_anchor(std::uint32_t x, std::uint32_t y, std::size_t child_cap) {
  if (x == y || y >= capacity_) return false;
  NodeLock first(*this, std::min(x, y));
  NodeLock second(*this, std::max(x, y));
  if (store_.state(x) != SlotState::Live || levels_[x] == kUnlinked) return true;  // nothing to anchor
  const std::uint32_t old = anchor_[x].load(std::memory_order_acquire);
  if (old == y) return true;
  if (!may_anchor(y, x) || children_[y].load(std::memory_order_acquire) >= child_cap) return false;
  std::uint32_t* blk = links0(y);
  const std::size_t cnt = std::min<std::size_t>(load(blk), max_m0_);
  bool present = false;
  for (std::size_t i = 0; i < cnt && !present; ++i) present = load(blk + 1 + i) == x;
  if (!present) {
    if (cnt < max_m0_) {
      store(blk + 1 + cnt, x);
      store_count(blk, static_cast<std::uint32_t>(cnt + 1));
    } else {
      // displace the farthest link not anchored here (a tombstone first)
      const VecView vv = view();
      const float* yv = vv.at(y);
      std::size_t far = cnt;
      float far_d = -1;
      for (std::size_t i = 0; i < cnt; ++i) {
        const std::uint32_t s = load(blk + 1 + i);
        const bool live = s < capacity_ && store_.state(s) == SlotState::Live;
        if (live && anchored_here(s, y)) continue;
        const float d = live ? vv(yv, s) : kInf;
        if (d > far_d) {
          far_d = d;
          far = i;
        }
      }
      if (far == cnt) return false;
      store(blk + 1 + far, x);
    }
  }
  anchor_[x].store(y, std::memory_order_release);
  children_[y].fetch_add(1, std::memory_order_acq_rel);
  if (old != kNoSlot) children_[old].fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

void HnswGraph::reanchor(std::uint32_t x) {
  if (x == entry_point() || store_.state(x) != SlotState::Live || levels_[x] == kUnlinked) return;
  const VecView vv = view();
  const float* v = vv.at(x);
  std::vector<Candidate> cands;
  // 1. its own neighbours: links are made both ways, so they are near and mostly older
  std::uint32_t mine[2 * kMaxM];
  const std::size_t n = read_links(x, 0, mine);
  for (std::size_t i = 0; i < n; ++i) {
    if (may_anchor(mine[i], x)) cands.emplace_back(vv(v, mine[i]), mine[i]);
  }
  std::sort(cands.begin(), cands.end());
  for (const Candidate& c : cands) {
    if (try_anchor(x, c.second, soft_children_)) return;
  }
  // 2. the nearest eligible nodes a search for its vector finds
  std::uint32_t ep = entry_point();
  if (ep != kNoSlot && ep != x) {
    float ep_dist = vv(v, ep);
    for (int l = max_level(); l > 0; --l) greedy(v, l, ep, ep_dist, x);
    const SlotFilter filter = [this, x](std::uint32_t s) {
      return may_anchor(s, x) && children_[s].load(std::memory_order_relaxed) < soft_children_;
    };
    search_layer(v, ep, ep_dist, 0, ef_construction_, &filter, x, scratch(), cands);
    for (const Candidate& c : cands) {
      if (try_anchor(x, c.second, soft_children_)) return;
    }
  }
  // 3. every eligible node, nearest first, up to a whole list of anchored nodes (an old
  // node has few older ones to choose from)
  cands.clear();
  const std::size_t slots = std::min(store_.size(), capacity_);
  for (std::size_t s = 0; s < slots; ++s) {
    const auto y = static_cast<std::uint32_t>(s);
    if (may_anchor(y, x)) cands.emplace_back(vv(v, y), y);
  }
  std::sort(cands.begin(), cands.end());
  for (const Candidate& c : cands) {
    if (try_anchor(x, c.second, max_m0_)) return;
  }
  if (x == entry_point()) return;
  throw std::runtime_error("no node can anchor slot " + std::to_string(x));
}

void HnswGraph::make_root(std::uint32_t slot) {
  seq_[slot].store(root_seq_.fetch_sub(1) - 1, std::memory_order_release);
  NodeLock lock(*this, slot);
  const std::uint32_t old = anchor_[slot].exchange(kNoSlot, std::memory_order_acq_rel);
  if (old != kNoSlot) children_[old].fetch_sub(1, std::memory_order_acq_rel);
}

void HnswGraph::mark_unlinked(std::uint32_t slot) {
  NodeLock lock(*this, slot);
  __atomic_store_n(&levels_[slot], kUnlinked, __ATOMIC_RELEASE);
}

void HnswGraph::insert(std::uint32_t slot, int level) {
  if (inject_failures_.load(std::memory_order_relaxed) > 0 && inject_failures_.fetch_sub(1) > 0) {
    throw std::runtime_error("injected graph failure");
  }
  level = std::min(std::max(level, 0), kMaxLevel);
  const float* v = store_.vector(slot);
  {
    NodeLock lock(*this, slot);
    if (level > 0) {
      std::uint32_t* arr = upper_[slot].load(std::memory_order_acquire);
      if (arr == nullptr || arr[0] < std::uint32_t(level)) {
        std::unique_ptr<std::uint32_t[]> fresh(new std::uint32_t[1 + level * stride_up_]);
        fresh[0] = static_cast<std::uint32_t>(level);
        arr = fresh.get();
        std::lock_guard<std::mutex> g(upper_mu_);
        upper_owned_.push_back(std::move(fresh));
      }
      for (int l = 1; l <= level; ++l) store_count(arr + 1 + std::size_t(l - 1) * stride_up_, 0);
      upper_[slot].store(arr, std::memory_order_release);
    }
    store_count(links0(slot), 0);
    // Ranks after every node linked so far; a reused slot's anchoring was undone when it
    // was deleted (repair_deleted), so it starts with no anchor and no anchored nodes.
    seq_[slot].store(next_seq_.fetch_add(1), std::memory_order_release);
    anchor_[slot].store(kNoSlot, std::memory_order_release);
    children_[slot].store(0, std::memory_order_release);
    __atomic_store_n(&levels_[slot], static_cast<std::uint8_t>(level), __ATOMIC_RELEASE);
  }

  std::unique_lock<std::mutex> top_lock(entry_mu_, std::defer_lock);
  if (level > max_level()) top_lock.lock();
  std::uint32_t ep = entry_point();
  int top = max_level();
  if (ep == kNoSlot || ep == slot) {
    if (!top_lock.owns_lock()) top_lock.lock();
    ep = entry_point();
    top = max_level();
    if (ep == kNoSlot || ep == slot) {
      make_root(slot);
      entry_.store(slot, std::memory_order_release);
      max_level_.store(level, std::memory_order_release);
      return;
    }
  }
  const std::uint32_t ep0 = ep;
  float ep_dist = dist(v, ep);
  for (int l = top; l > level; --l) greedy(v, l, ep, ep_dist, slot);
  std::vector<Candidate> found;
  for (int l = std::min(level, top); l >= 0; --l) {
    if (l == 0) seed_from_pivots(v, ep, ep_dist, slot);
    search_layer(v, ep, ep_dist, l, ef_construction_, nullptr, slot, scratch(), found);
    if (!found.empty()) {
      ep = found.front().second;
      ep_dist = found.front().first;
    }
    keep_neighbours(found, m_, m_);
    connect(slot, found, l);
    if (l == 0 && level <= top) {
      // The anchor: the nearest neighbour that ranks below it and has room, else a wider look.
      bool anchored = false;
      for (const Candidate& c : found) {
        if ((anchored = try_anchor(slot, c.second, soft_children_))) break;
      }
      if (!anchored) reanchor(slot);
    }
  }
  if (level > top) {
    // The new entry point ranks below everything; the old one anchors to it.
    make_root(slot);
    entry_.store(slot, std::memory_order_release);
    max_level_.store(level, std::memory_order_release);
    if (!try_anchor(ep0, slot, max_m0_)) reanchor(ep0);
  }
  consider_pivot(slot);
}

float HnswGraph::pivot_gap(const float* v, std::uint32_t s) const {
  return best_kernels().l2sq(v, store_.vector(s), store_.dims());
}

void HnswGraph::seed_from_pivots(const float* q, std::uint32_t& ep, float& ep_dist,
                                 std::uint32_t exclude) const {
  const std::size_t n = std::min(n_pivots_.load(std::memory_order_acquire), kPivots);
  const VecView vv = view();
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t s = pivots_[i].load(std::memory_order_relaxed);
    if (s == ep || !pivot_ok(s, exclude)) continue;
    const float d = vv.within(q, s, ep_dist);
    if (d < ep_dist) {
      ep_dist = d;
      ep = s;
    }
  }
}

void HnswGraph::consider_pivot(std::uint32_t slot) {
  if (pivot_cap_ == 0) return;
  const float* v = store_.vector(slot);
  auto far_from_all = [&] {
    const float r = pivot_radius_.load(std::memory_order_relaxed);
    const std::size_t n = std::min(n_pivots_.load(std::memory_order_acquire), kPivots);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t s = pivots_[i].load(std::memory_order_relaxed);
      if (s == slot) return false;
      if (pivot_ok(s, kNoSlot) && pivot_gap(v, s) <= r) return false;
    }
    return true;
  };
  if (!far_from_all()) return;  // the common case, decided without the lock
  std::lock_guard<std::mutex> lock(pivot_mu_);
  if (!pivot_ok(slot, kNoSlot)) return;
  // Drop pivots that are no longer live (a replacement can fail), then thin a full set:
  // double the radius and keep a pivot only if it is farther than that from every kept
  // one (the doubling algorithm for incremental k-centre).
  std::vector<std::uint32_t> kept;
  const std::size_t n = n_pivots_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t s = pivots_[i].load(std::memory_order_relaxed);
    if (pivot_ok(s, kNoSlot)) kept.push_back(s);
  }
  while (kept.size() >= pivot_cap_) {
    float r = pivot_radius_.load(std::memory_order_relaxed);
    if (r > 0) {
      r *= 2;
    } else {  // the first thinning: the closest pair sets the scale
      r = std::numeric_limits<float>::max();
      for (std::size_t i = 0; i < kept.size(); ++i) {
        for (std::size_t j = i + 1; j < kept.size(); ++j) {
          r = std::min(r, pivot_gap(store_.vector(kept[i]), kept[j]));
        }
      }
      r = std::max(r, std::numeric_limits<float>::min());
    }
    pivot_radius_.store(r, std::memory_order_relaxed);
    std::vector<std::uint32_t> thin;
    for (std::uint32_t s : kept) {
      bool apart = true;
      for (std::size_t j = 0; j < thin.size() && apart; ++j) apart = pivot_gap(store_.vector(s), thin[j]) > r;
      if (apart) thin.push_back(s);
    }
    kept.swap(thin);
  }
  // Readers scanning meanwhile see a mix of the old and new set: any slot is a valid seed.
  for (std::size_t i = 0; i < kept.size(); ++i) pivots_[i].store(kept[i], std::memory_order_relaxed);
  n_pivots_.store(kept.size(), std::memory_order_release);
  if (!far_from_all()) return;
  pivots_[kept.size()].store(slot, std::memory_order_relaxed);
  n_pivots_.store(kept.size() + 1, std::memory_order_release);
}

void HnswGraph::replace_pivot(std::uint32_t slot) {
  std::lock_guard<std::mutex> lock(pivot_mu_);
  std::size_t n = n_pivots_.load(std::memory_order_relaxed);
  std::size_t i = 0;
  while (i < n) {
    if (pivots_[i].load(std::memory_order_relaxed) != slot) {
      ++i;
      continue;
    }
    std::uint32_t links[2 * kMaxM];
    const std::size_t nl = read_links(slot, 0, links);
    const float* v = store_.vector(slot);
    std::uint32_t best = kNoSlot;
    float best_d = kInf;
    for (std::size_t j = 0; j < nl; ++j) {
      const std::uint32_t c = links[j];
      if (!pivot_ok(c, slot)) continue;
      bool taken = false;
      for (std::size_t k = 0; k < n && !taken; ++k) taken = pivots_[k].load(std::memory_order_relaxed) == c;
      if (taken) continue;
      const float d = pivot_gap(v, c);
      if (d < best_d) {
        best_d = d;
        best = c;
      }
    }
    if (best != kNoSlot) {
      pivots_[i++].store(best, std::memory_order_relaxed);
    } else {  // no live neighbour: the last pivot moves here
      pivots_[i].store(pivots_[n - 1].load(std::memory_order_relaxed), std::memory_order_relaxed);
      n_pivots_.store(--n, std::memory_order_release);
    }
  }
}

void HnswGraph::repair_deleted(std::uint32_t slot) {
  const int top = __atomic_load_n(&levels_[slot], __ATOMIC_ACQUIRE);
  if (top == kUnlinked) return;
  {
    NodeLock lock(*this, slot);
    const std::uint32_t old = anchor_[slot].exchange(kNoSlot, std::memory_order_acq_rel);
    if (old != kNoSlot) children_[old].fetch_sub(1, std::memory_order_acq_rel);
  }
  replace_pivot(slot);
  std::vector<std::uint32_t> around(max_m0_);
  std::vector<std::pair<std::uint32_t, int>> worn;  // lists deletes have worn too short
  const VecView vv = view();
  for (int layer = 0; layer <= top; ++layer) {
    const std::size_t na = read_links(slot, layer, around.data());
    const std::size_t limit = cap(layer);
    for (std::size_t a = 0; a < na; ++a) {
      const std::uint32_t n = around[a];
      if (n >= capacity_ || n == slot || store_.state(n) != SlotState::Live) continue;
      NodeLock lock(*this, n);
      std::uint32_t* blk = block(n, layer);
      if (blk == nullptr) continue;
      std::size_t cnt = std::min<std::size_t>(load(blk), limit);
      std::size_t at = cnt;
      for (std::size_t i = 0; i < cnt; ++i) {
        if (load(blk + 1 + i) == slot) {
          at = i;
          break;
        }
      }
      if (at == cnt) continue;
      // Fill the hole with the deleted node's neighbour nearest to n that n lacks.
      const float* nv = store_.vector(n);
      std::uint32_t best = kNoSlot;
      float best_d = kInf;
      for (std::size_t b = 0; b < na; ++b) {
        const std::uint32_t c = around[b];
        if (c == n || c >= capacity_ || store_.state(c) != SlotState::Live) continue;
        bool has = false;
        for (std::size_t i = 0; i < cnt && !has; ++i) has = load(blk + 1 + i) == c;
        if (has) continue;
        const float d = vv(nv, c);
        if (d < best_d) {
          best_d = d;
          best = c;
        }
      }
      if (best != kNoSlot) {
        store(blk + 1 + at, best);
      } else {
        store(blk + 1 + at, load(blk + cnt));
        store_count(blk, static_cast<std::uint32_t>(cnt - 1));
        if (cnt - 1 < m_ / 2) worn.emplace_back(n, layer);
      }
    }
  }
  for (const auto& [n, layer] : worn) relink(n, layer);
  if (entry_point() == slot) choose_entry_excluding(slot);
  // The nodes anchored here: no later anchoring can pick this node (it is no longer live),
  // so the list read under its lock names all of them. Each gets a new anchor before the
  // slot can be reused.
  std::vector<std::uint32_t> kids;
  {
    NodeLock lock(*this, slot);
    const std::size_t na = read_links(slot, 0, around.data());
    for (std::size_t a = 0; a < na; ++a) {
      if (anchored_here(around[a], slot)) kids.push_back(around[a]);
    }
  }
  for (std::uint32_t c : kids) reanchor(c);
  // Its other neighbours may have been easiest to find through it: each keeps an in-link
  // from a live neighbour of its own.
  const std::size_t na = read_links(slot, 0, around.data());
  for (std::size_t a = 0; a < na; ++a) {
    const std::uint32_t c = around[a];
    if (c < capacity_ && c != slot && store_.state(c) == SlotState::Live) ensure_in_link(c, slot);
  }
}

void HnswGraph::top_up(std::uint32_t slot) {
  if (slot >= capacity_ || store_.state(slot) != SlotState::Live) return;
  if (__atomic_load_n(&levels_[slot], __ATOMIC_ACQUIRE) == kUnlinked) return;
  if (load_count(links0(slot)) < m_) relink(slot, 0);
}

void HnswGraph::relink(std::uint32_t node, int layer) {
  std::uint32_t ep = entry_point();
  if (ep == kNoSlot || ep == node || store_.state(node) != SlotState::Live) return;
  const VecView vv = view();
  const float* v = vv.at(node);
  float ep_dist = vv(v, ep);
  for (int l = max_level(); l > layer; --l) greedy(v, l, ep, ep_dist, node);
  if (layer == 0) seed_from_pivots(v, ep, ep_dist, node);
  std::vector<Candidate> found;
  search_layer(v, ep, ep_dist, layer, ef_construction_, nullptr, node, scratch(), found);
  std::uint32_t mine[2 * kMaxM];
  const std::size_t n = read_links(node, layer, mine);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t s = mine[i];
    if (s >= capacity_ || s == node || store_.state(s) != SlotState::Live) continue;
    bool dup = false;
    for (const Candidate& c : found) dup |= c.second == s;
    if (!dup) found.emplace_back(vv(v, s), s);
  }
  std::sort(found.begin(), found.end());
  keep_neighbours(found, m_, m_);
  connect(node, found, layer);
}

void HnswGraph::ensure_in_link(std::uint32_t node, std::uint32_t gone) {
  std::uint32_t mine[2 * kMaxM];
  std::uint32_t theirs[2 * kMaxM];
  const std::size_t n = read_links(node, 0, mine);
  const VecView vv = view();
  const float* nv = vv.at(node);
  std::uint32_t best = kNoSlot;
  float best_d = kInf;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t s = mine[i];
    if (s == gone || s == node || s >= capacity_ || store_.state(s) != SlotState::Live) continue;
    const std::size_t m = read_links(s, 0, theirs);
    for (std::size_t j = 0; j < m; ++j) {
      if (theirs[j] == node) return;  // already has an in-link
    }
    const float d = vv(nv, s);
    if (d < best_d) {
      best_d = d;
      best = s;
    }
  }
  if (best == kNoSlot) return;
  NodeLock lock(*this, best);
  std::uint32_t* blk = links0(best);
  const std::size_t cnt = std::min<std::size_t>(load(blk), max_m0_);
  std::size_t far = cnt;
  float far_d = -1;
  const float* bv = vv.at(best);
  for (std::size_t i = 0; i < cnt; ++i) {
    const std::uint32_t s = load(blk + 1 + i);
    if (s == node) return;
    if (anchored_here(s, best) && store_.state(s) == SlotState::Live) continue;  // stays
    // a link to a tombstone is the first to go
    const float d = (s >= capacity_ || store_.state(s) != SlotState::Live) ? kInf : vv(bv, s);
    if (d > far_d) {
      far_d = d;
      far = i;
    }
  }
  if (cnt < max_m0_) {
    store(blk + 1 + cnt, node);
    store_count(blk, static_cast<std::uint32_t>(cnt + 1));
  } else if (far < cnt) {
    store(blk + 1 + far, node);
  }
}

std::size_t HnswGraph::restore_anchors() {
  const std::size_t slots = std::min(store_.size(), capacity_);
  auto linked_live = [&](std::uint32_t s) {
    return s < slots && levels_[s] != kUnlinked && store_.state(s) == SlotState::Live;
  };
  for (std::size_t s = 0; s < slots; ++s) {
    anchor_[s].store(kNoSlot, std::memory_order_relaxed);
    children_[s].store(0, std::memory_order_relaxed);
    seq_[s].store(std::numeric_limits<std::int64_t>::max(), std::memory_order_relaxed);
  }
  const std::uint32_t entry = entry_point();
  if (entry == kNoSlot) return 0;
  // Rank in breadth-first order from the entry point (which ranks 0).
  std::vector<std::uint32_t> order;
  order.reserve(slots);
  seq_[entry].store(0, std::memory_order_relaxed);
  order.push_back(entry);
  std::vector<std::uint32_t> buf(max_m0_);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t n = read_links(order[i], 0, buf.data());
    for (std::size_t j = 0; j < n; ++j) {
      const std::uint32_t c = buf[j];
      if (!linked_live(c) || seq_[c].load(std::memory_order_relaxed) != std::numeric_limits<std::int64_t>::max()) continue;
      seq_[c].store(std::int64_t(order.size()), std::memory_order_relaxed);
      order.push_back(c);
    }
  }
  // Anchor each node to the first lower-ranked node listing it that has room, else to the
  // node that found it (which lists it: a list holds at most max_m0 anchored nodes).
  std::vector<std::uint32_t> finder(slots, kNoSlot);
  for (std::uint32_t y : order) {
    const std::size_t n = read_links(y, 0, buf.data());
    for (std::size_t j = 0; j < n; ++j) {
      const std::uint32_t c = buf[j];
      if (!linked_live(c) || c == entry || anchor_[c].load(std::memory_order_relaxed) != kNoSlot) continue;
      if (seq_[c].load(std::memory_order_relaxed) <= seq_[y].load(std::memory_order_relaxed)) continue;
      if (finder[c] == kNoSlot) finder[c] = y;
      if (children_[y].load(std::memory_order_relaxed) < soft_children_) {
        anchor_[c].store(y, std::memory_order_relaxed);
        children_[y].fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  for (std::uint32_t c : order) {
    if (c == entry || anchor_[c].load(std::memory_order_relaxed) != kNoSlot) continue;
    anchor_[c].store(finder[c], std::memory_order_relaxed);
    children_[finder[c]].fetch_add(1, std::memory_order_relaxed);
  }
  for (std::uint32_t c : order) consider_pivot(c);
  next_seq_.store(std::int64_t(order.size()) + 1);
  root_seq_.store(0);
  // Nodes the traversal missed (a file written before this invariant existed) rank last
  // and are anchored to their nearest reachable node.
  std::size_t missed = 0;
  for (std::size_t s = 0; s < slots; ++s) {
    const auto x = static_cast<std::uint32_t>(s);
    if (!linked_live(x) || seq_[x].load(std::memory_order_relaxed) != std::numeric_limits<std::int64_t>::max()) continue;
    seq_[x].store(next_seq_.fetch_add(1), std::memory_order_relaxed);
    ++missed;
  }
  if (missed) {
    for (std::size_t s = 0; s < slots; ++s) {
      const auto x = static_cast<std::uint32_t>(s);
      if (linked_live(x) && x != entry && anchor_[x].load() == kNoSlot) reanchor(x);
    }
  }
  return missed;
}

std::size_t HnswGraph::unreachable() const {
  const std::size_t slots = std::min(store_.size(), capacity_);
  std::size_t live = 0;
  for (std::size_t s = 0; s < slots; ++s) live += store_.state(std::uint32_t(s)) == SlotState::Live;
  const std::uint32_t entry = entry_point();
  if (entry == kNoSlot || entry >= slots || store_.state(entry) != SlotState::Live) return live;
  std::vector<std::uint8_t> seen(slots, 0);
  std::vector<std::uint32_t> queue{entry};
  seen[entry] = 1;
  std::vector<std::uint32_t> buf(max_m0_);
  for (std::size_t i = 0; i < queue.size(); ++i) {
    const std::size_t n = read_links(queue[i], 0, buf.data());
    for (std::size_t j = 0; j < n; ++j) {
      const std::uint32_t c = buf[j];
      if (c >= slots || seen[c] || store_.state(c) != SlotState::Live) continue;
      if (__atomic_load_n(&levels_[c], __ATOMIC_ACQUIRE) == kUnlinked) continue;
      seen[c] = 1;
      queue.push_back(c);
    }
  }
  return live - queue.size();
}

std::string HnswGraph::check_anchors() const {
  const std::size_t slots = std::min(store_.size(), capacity_);
  const std::uint32_t entry = entry_point();
  std::vector<std::size_t> kids(slots, 0);
  std::vector<std::uint32_t> buf(max_m0_);
  for (std::size_t s = 0; s < slots; ++s) {
    const auto x = static_cast<std::uint32_t>(s);
    if (store_.state(x) != SlotState::Live || levels_[x] == kUnlinked) continue;
    const std::uint32_t a = anchor_[x].load();
    if (x == entry) {
      if (a != kNoSlot) return "the entry point has an anchor";
      continue;
    }
    if (seq_[entry].load() >= seq_[x].load()) return "slot " + std::to_string(x) + " ranks below the entry point";
    if (a == kNoSlot) return "slot " + std::to_string(x) + " has no anchor";
    if (a >= slots || !may_anchor(a, x)) return "slot " + std::to_string(x) + " has an invalid anchor";
    const std::size_t n = read_links(a, 0, buf.data());
    if (std::find(buf.begin(), buf.begin() + n, x) == buf.begin() + n) {
      return "slot " + std::to_string(x) + " is not in its anchor's list";
    }
    ++kids[a];
  }
  for (std::size_t s = 0; s < slots; ++s) {
    const auto y = static_cast<std::uint32_t>(s);
    if (store_.state(y) != SlotState::Live || levels_[y] == kUnlinked) continue;
    if (kids[s] != children_[s].load()) return "slot " + std::to_string(s) + " miscounts its anchored nodes";
  }
  return std::string();
}

void HnswGraph::choose_entry_excluding(std::uint32_t slot) {
  std::lock_guard<std::mutex> lock(entry_mu_);
  if (entry_point() != slot) return;
  std::uint32_t best = kNoSlot;
  int best_level = -1;
  for (std::size_t s = 0; s < capacity_; ++s) {
    if (s == slot || store_.state(std::uint32_t(s)) != SlotState::Live) continue;
    const int l = __atomic_load_n(&levels_[s], __ATOMIC_ACQUIRE);
    if (l == kUnlinked) continue;
    if (l > best_level) {
      best_level = l;
      best = static_cast<std::uint32_t>(s);
    }
  }
  if (best != kNoSlot) make_root(best);
  entry_.store(best, std::memory_order_release);
  max_level_.store(best_level, std::memory_order_release);
}

void HnswGraph::search(const float* query, std::size_t ef, const SlotFilter& filter,
                       std::vector<Candidate>& out) const {
  out.clear();
  std::uint32_t ep = entry_point();
  if (ep == kNoSlot) return;
  const int top = max_level();
  float d = dist(query, ep);
  for (int l = top; l > 0; --l) greedy(query, l, ep, d);
  seed_from_pivots(query, ep, d, kNoSlot);
  search_layer(query, ep, d, 0, std::max<std::size_t>(ef, 1), filter ? &filter : nullptr, kNoSlot,
               scratch(), out);
}

void HnswGraph::neighbours(std::uint32_t slot, int layer, std::vector<std::uint32_t>& out) const {
  out.resize(max_m0_);
  out.resize(read_links(slot, layer, out.data()));
}

void HnswGraph::restore_level(std::uint32_t slot, int level) {
  if (level > 0) {
    std::unique_ptr<std::uint32_t[]> arr(new std::uint32_t[1 + level * stride_up_]);
    arr[0] = static_cast<std::uint32_t>(level);
    for (int l = 1; l <= level; ++l) arr[1 + std::size_t(l - 1) * stride_up_] = 0;
    upper_[slot].store(arr.get(), std::memory_order_relaxed);
    upper_owned_.push_back(std::move(arr));
  }
  links0(slot)[0] = 0;
  levels_[slot] = static_cast<std::uint8_t>(level);
}

void HnswGraph::restore_links(std::uint32_t slot, int layer, const char* ids, std::uint32_t count) {
  std::uint32_t* blk = block(slot, layer);
  std::memcpy(blk + 1, ids, std::size_t(count) * sizeof(std::uint32_t));
  blk[0] = count;
}

void HnswGraph::restore_entry(std::uint32_t entry, int max_level) {
  entry_.store(entry);
  max_level_.store(max_level);
}

std::size_t HnswGraph::memory_bytes() const {
  std::lock_guard<std::mutex> lock(upper_mu_);
  // Per slot: level-0 links, level, upper-layer pointer, lock, rank, anchor, children.
  std::size_t bytes = capacity_ * (stride0_ * sizeof(std::uint32_t) + sizeof(std::uint8_t) +
                                   sizeof(void*) + sizeof(std::uint8_t) + sizeof(std::int64_t) +
                                   sizeof(std::uint32_t) + sizeof(std::uint16_t));
  for (const auto& a : upper_owned_) bytes += (1 + a[0] * stride_up_) * sizeof(std::uint32_t);
  return bytes;
}

}  // namespace lakehouse
