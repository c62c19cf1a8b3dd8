#include "lakehouse/hnsw_graph.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

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
      stride_up_(1 + m_) {}

HnswGraph::~HnswGraph() = default;

void HnswGraph::reserve(std::size_t capacity) {
  if (capacity <= capacity_) return;
  // Only slots below the store's size were ever written; the rest stays untouched (and
  // therefore not resident) until a slot is used.
  const std::size_t used = std::min(store_.size(), capacity_);
  std::unique_ptr<std::uint32_t[]> links0(new std::uint32_t[capacity * stride0_]);
  if (used) std::memcpy(links0.get(), links0_.get(), used * stride0_ * sizeof(std::uint32_t));
  std::unique_ptr<std::uint8_t[]> levels(new std::uint8_t[capacity]);
  std::unique_ptr<std::atomic<std::uint32_t*>[]> upper(new std::atomic<std::uint32_t*>[capacity]);
  std::unique_ptr<std::atomic<std::uint8_t>[]> locks(new std::atomic<std::uint8_t>[capacity]);
  for (std::size_t i = 0; i < capacity; ++i) {
    const bool old = i < capacity_;
    levels[i] = old ? levels_[i] : kUnlinked;
    upper[i].store(old ? upper_[i].load(std::memory_order_relaxed) : nullptr,
                   std::memory_order_relaxed);
    locks[i].store(0, std::memory_order_relaxed);
  }
  links0_ = std::move(links0);
  levels_ = std::move(levels);
  upper_ = std::move(upper);
  locks_ = std::move(locks);
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
      const float d = vv(q, s);
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
      const float d = vv(q, s);
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

void HnswGraph::connect(std::uint32_t slot, const std::vector<Candidate>& neighbours, int layer) {
  const std::size_t limit = cap(layer);
  {
    NodeLock lock(*this, slot);
    std::uint32_t* blk = block(slot, layer);
    std::uint32_t buf[2 * kMaxM];
    const std::size_t n = std::min(neighbours.size(), limit);
    for (std::size_t i = 0; i < n; ++i) buf[i] = neighbours[i].second;
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
    for (std::size_t i = 0; i < cnt; ++i) {
      const std::uint32_t s = load(blk + 1 + i);
      if (s >= capacity_ || store_.state(s) != SlotState::Live) continue;
      pool.emplace_back(vv(nv, s), s);
    }
    std::sort(pool.begin(), pool.end());
    // Keep the list nearly full: the heuristic can drop many old links at once (a
    // near-duplicate newcomer "covers" them). It is refilled to all but an eighth of the
    // cap: that slack takes the next few reverse links as plain appends, so the quadratic
    // prune runs about once in five instead of on every link (docs/bench.md: fewer
    // instructions than hnswlib's build at the same recall per ef as a list refilled to the
    // brim).
    keep_neighbours(pool, limit, limit - std::max<std::size_t>(1, limit / 8));
    // The newcomer keeps this in-link even if the prune left it out: a new node whose
    // reverse links are all pruned away at once has no way in and can never be found.
    bool has_new = false;
    for (const Candidate& k : pool) has_new |= k.second == slot;
    if (!has_new) {
      if (pool.size() < limit) pool.emplace_back(nb.first, slot);
      else pool.back() = Candidate(nb.first, slot);
    }
    ids.clear();
    for (const Candidate& c : pool) ids.push_back(c.second);
    write_links(blk, ids.data(), ids.size());
  }
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
      entry_.store(slot, std::memory_order_release);
      max_level_.store(level, std::memory_order_release);
      return;
    }
  }
  float ep_dist = dist(v, ep);
  for (int l = top; l > level; --l) greedy(v, l, ep, ep_dist, slot);
  std::vector<Candidate> found;
  for (int l = std::min(level, top); l >= 0; --l) {
    search_layer(v, ep, ep_dist, l, ef_construction_, nullptr, slot, scratch(), found);
    if (!found.empty()) {
      ep = found.front().second;
      ep_dist = found.front().first;
    }
    keep_neighbours(found, m_, m_);
    connect(slot, found, l);
  }
  if (level > top) {
    entry_.store(slot, std::memory_order_release);
    max_level_.store(level, std::memory_order_release);
  }
}

void HnswGraph::repair_deleted(std::uint32_t slot) {
  const int top = __atomic_load_n(&levels_[slot], __ATOMIC_ACQUIRE);
  if (top == kUnlinked) return;
  std::vector<std::uint32_t> around(max_m0_);
  std::vector<std::pair<std::uint32_t, int>> worn;  // lists deletes have worn too short
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
        const float d = space_.distance(nv, store_.vector(c));
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
  // The deleted node's neighbours may have been reachable only through it; once its slot
  // is reused its links are gone, so each of them must keep an in-link of its own.
  const std::size_t na = read_links(slot, 0, around.data());
  for (std::size_t a = 0; a < na; ++a) {
    const std::uint32_t c = around[a];
    if (c < capacity_ && c != slot && store_.state(c) == SlotState::Live) ensure_in_link(c, slot);
  }
  if (entry_point() == slot) choose_entry_excluding(slot);
}

void HnswGraph::relink(std::uint32_t node, int layer) {
  std::uint32_t ep = entry_point();
  if (ep == kNoSlot || ep == node || store_.state(node) != SlotState::Live) return;
  const VecView vv = view();
  const float* v = vv.at(node);
  float ep_dist = vv(v, ep);
  for (int l = max_level(); l > layer; --l) greedy(v, l, ep, ep_dist, node);
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
  } else {
    store(blk + 1 + far, node);
  }
}

std::size_t HnswGraph::link_orphans() {
  const std::size_t slots = std::min(store_.size(), capacity_);
  std::vector<std::uint32_t> indegree(slots, 0);
  std::vector<std::uint32_t> buf(max_m0_);
  for (std::size_t s = 0; s < slots; ++s) {
    if (levels_[s] == kUnlinked) continue;
    const std::size_t n = read_links(std::uint32_t(s), 0, buf.data());
    for (std::size_t i = 0; i < n; ++i) {
      if (buf[i] < slots) ++indegree[buf[i]];
    }
  }
  const std::uint32_t entry = entry_point();
  std::size_t linked = 0;
  for (std::size_t s = 0; s < slots; ++s) {
    if (indegree[s] > 0 || s == entry || levels_[s] == kUnlinked) continue;
    if (store_.state(std::uint32_t(s)) != SlotState::Live) continue;
    ensure_in_link(std::uint32_t(s), kNoSlot);
    ++linked;
  }
  return linked;
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
  std::size_t bytes = capacity_ * (stride0_ * sizeof(std::uint32_t) + 1 + sizeof(void*) + 1);
  for (const auto& a : upper_owned_) bytes += (1 + a[0] * stride_up_) * sizeof(std::uint32_t);
  return bytes;
}

}  // namespace lakehouse
