#include "lakehouse/index.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "lakehouse/memory.h"
#include "lakehouse/scan.h"
#include "lakehouse/thread_pool.h"

namespace lakehouse {

namespace {

constexpr std::size_t kSingle = static_cast<std::size_t>(-1);
using SharedLock = std::shared_lock<RwLock>;
using UniqueLock = std::unique_lock<RwLock>;

constexpr float kInf = std::numeric_limits<float>::infinity();

const IndexParams& checked(const IndexParams& p) {
  p.validate();
  return p;
}

std::unique_ptr<std::string> owned(const std::optional<std::string>& meta) {
  if (!meta || meta->empty()) return nullptr;
  return std::make_unique<std::string>(*meta);
}

bool is_excluded(const std::vector<std::uint32_t>& excluded, std::uint32_t slot) {
  return !excluded.empty() && std::binary_search(excluded.begin(), excluded.end(), slot);
}

}  // namespace

void IndexParams::validate() const {
  if (dims == 0 || dims > 65536) {
    throw std::invalid_argument("dims must be between 1 and 65536, got " + std::to_string(dims));
  }
  if (m < 2 || m > HnswGraph::kMaxM) {
    throw std::invalid_argument("m must be between 2 and 256, got " + std::to_string(m));
  }
  if (ef_construction < 1 || ef_construction > 100000) {
    throw std::invalid_argument("ef_construction must be between 1 and 100000");
  }
  if (ef_search < 1 || ef_search > 100000) {
    throw std::invalid_argument("ef_search must be between 1 and 100000");
  }
  if (threads > 1024) throw std::invalid_argument("threads must be between 0 and 1024");
}

Index::Index(const IndexParams& params)
    : params_(checked(params)),
      space_(params.metric, params.dims),
      store_(params.dims),
      graph_(std::make_unique<HnswGraph>(
          store_, space_, GraphParams{params.m, params.ef_construction, params.seed})),
      ef_search_(params.ef_search),
      threads_(params.threads) {}

Index::~Index() = default;

void Index::check(const float* in, std::size_t item, const char* what) const {
  const std::size_t d = params_.dims;
  auto label = [&] {
    return item == kSingle ? std::string(what) : std::string(what) + " " + std::to_string(item);
  };
  for (std::size_t j = 0; j < d; ++j) {
    if (!std::isfinite(in[j])) throw std::invalid_argument(label() + ": vector contains NaN or inf");
  }
  if (!space_.needs_normalise()) return;
  double norm = 0;
  for (std::size_t j = 0; j < d; ++j) norm += double(in[j]) * double(in[j]);
  if (!(norm > 0 && std::isfinite(norm))) {
    throw std::invalid_argument(label() + ": zero vector (cosine distance needs a non-zero norm)");
  }
}

void Index::turn(const std::vector<float>& r, const float* v, float* out) const {
  const std::size_t d = params_.dims;
  const KernelFn dot = best_kernels().dot;
  for (std::size_t i = 0; i < d; ++i) out[i] = dot(r.data() + i * d, v, d);
}

void Index::unturn(const std::vector<float>& r, const float* v, float* out) const {
  const std::size_t d = params_.dims;
  static thread_local std::vector<double> acc;
  acc.assign(d, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    const double vi = v[i];
    const float* row = r.data() + i * d;
    for (std::size_t j = 0; j < d; ++j) acc[j] += vi * double(row[j]);
  }
  for (std::size_t j = 0; j < d; ++j) out[j] = float(acc[j]);
}

void Index::transform(const float* in, float* out) const {
  const std::size_t d = params_.dims;
  if (rotation_.empty()) {
    std::memcpy(out, in, d * sizeof(float));
    if (space_.needs_normalise()) normalise(out, d);
    return;
  }
  // Normalise first, then turn: the stored vector of an item is the rotation of what an
  // unrotated index would store, so re-adding an unchanged item finds it unchanged.
  static thread_local std::vector<float> row;
  row.assign(in, in + d);
  if (space_.needs_normalise()) normalise(row.data(), d);
  turn(rotation_, row.data(), out);
}

void Index::prepare(const float* in, float* out, std::size_t item, const char* what) const {
  check(in, item, what);
  transform(in, out);
}

bool Index::rotated() const {
  SharedLock st(struct_mu_);
  return !rotation_.empty();
}

void Index::check_rotation(const std::vector<float>& r, std::size_t d) {
  if (r.size() != d * d) {
    throw std::invalid_argument("a rotation must be " + std::to_string(d) + " x " + std::to_string(d));
  }
  for (std::size_t i = 0; i < d; ++i) {
    double norm = 0;
    for (std::size_t j = 0; j < d; ++j) {
      const float x = r[i * d + j];
      if (!std::isfinite(x)) throw std::invalid_argument("a rotation must be finite");
      norm += double(x) * double(x);
    }
    if (std::abs(norm - 1.0) > 1e-3) {
      throw std::invalid_argument("a rotation's rows must have norm 1 (row " + std::to_string(i) + ")");
    }
  }
}

void Index::set_rotation(const std::vector<float>& r) {
  const std::size_t d = params_.dims;
  if (!params_.rotate) throw std::invalid_argument("this index was made with rotate=False");
  check_rotation(r, d);
  UniqueLock snap(snap_mu_);
  UniqueLock st(struct_mu_);
  UniqueLock mt(meta_mu_);
  // Every slot, tombstones included (the graph still routes through them): back to the
  // stored vector of an unrotated index, then by the new rotation.
  std::vector<float> plain(d), turned(d);
  const std::vector<float> old = rotation_;
  for (std::size_t s = 0; s < store_.size(); ++s) {
    float* v = store_.mutable_vector(std::uint32_t(s));
    if (old.empty()) {
      std::memcpy(plain.data(), v, d * sizeof(float));
    } else {
      unturn(old, v, plain.data());
    }
    turn(r, plain.data(), turned.data());
    std::memcpy(v, turned.data(), d * sizeof(float));
  }
  rotation_ = r;
  // The caller's fit (numpy's arrays) has just been freed: give its pages back.
  release_free_memory();
}

void Index::grow_for(std::size_t new_items) {
  // Growth moves every array: no reader of vectors (struct) or of ids (meta) may be inside.
  UniqueLock lock(struct_mu_);
  UniqueLock meta(meta_mu_);
  const std::size_t short_by = store_.shortfall(new_items);
  if (short_by == 0) return;
  // Exact fit for a first bulk load, then 1.5x so a stream of small adds grows rarely.
  const std::size_t need = store_.capacity() + short_by;
  const std::size_t grown = store_.capacity() + store_.capacity() / 2;
  const std::size_t cap = std::max({need, grown, std::size_t(16)});
  store_.reserve(cap);
  graph_->reserve(cap);
}

std::pair<std::size_t, std::size_t> Index::add(
    const std::vector<std::string>& ids, const float* vectors, std::size_t n,
    const std::vector<std::optional<std::string>>& metadata) {
  const std::size_t d = params_.dims;
  return add(ids, [vectors, d](std::size_t i) { return vectors + i * d; }, n, metadata);
}

std::pair<std::size_t, std::size_t> Index::add(
    const std::vector<std::string>& ids, const RowSource& vectors, std::size_t n,
    const std::vector<std::optional<std::string>>& metadata) {
  const auto counts = add_rows(ids, vectors, n, metadata);
  // A bulk add's scratch (the batch's id table, its order, the graph build's buffers: a few
  // MiB per 100,000 items) has been freed: give its pages back.
  if (n >= kReleaseAfter) release_free_memory();
  return counts;
}

std::pair<std::size_t, std::size_t> Index::add_rows(
    const std::vector<std::string>& ids, const RowSource& vectors, std::size_t n,
    const std::vector<std::optional<std::string>>& metadata) {
  if (ids.size() != n) {
    throw std::invalid_argument("got " + std::to_string(ids.size()) + " ids for " +
                                std::to_string(n) + " vectors");
  }
  if (!metadata.empty() && metadata.size() != n) {
    throw std::invalid_argument("got " + std::to_string(metadata.size()) +
                                " metadata entries for " + std::to_string(n) + " items");
  }
  if (n == 0) return {0, 0};

  // Validate the whole batch before touching anything. No copy of the batch is made: a
  // vector goes from the caller's buffer (or the source's bounded chunk) into the store
  // (cosine: normalised on the way, through one row of scratch), so peak memory during a
  // bulk add is the index itself.
  const std::size_t d = params_.dims;
  std::vector<float> scratch(d);
  for (std::size_t i = 0; i < n; ++i) {
    if (ids[i].empty()) throw std::invalid_argument("item " + std::to_string(i) + ": empty id");
    check(vectors(i), i, "item");
  }
  // Item i's vector as stored (valid until the next call; struct_mu_ held: the rotation's lock).
  auto row = [&](std::size_t i) -> const float* {
    if (!space_.needs_normalise() && rotation_.empty()) return vectors(i);
    transform(vectors(i), scratch.data());
    return scratch.data();
  };
  // A duplicate id inside the batch: the last occurrence wins.
  std::vector<std::size_t> order;
  order.reserve(n);
  {
    std::unordered_map<std::string_view, std::size_t> last;
    last.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) last[ids[i]] = i;
    for (std::size_t i = 0; i < n; ++i) {
      if (last[ids[i]] == i) order.push_back(i);
    }
  }

  SharedLock snap(snap_mu_);
  std::size_t added = 0, updated = 0;
  std::vector<std::uint32_t> fresh, dead;
  std::vector<int> levels;
  bool graph_built = false;
  for (;;) {
    SharedLock st(struct_mu_);
    UniqueLock mt(meta_mu_);
    std::size_t need = 0;
    for (std::size_t i : order) {
      const std::uint32_t slot = store_.find(ids[i]);
      if (slot == kNoSlot || std::memcmp(store_.vector(slot), row(i), d * sizeof(float)) != 0) {
        ++need;
      }
    }
    if (store_.shortfall(need) > 0) {
      mt.unlock();
      st.unlock();
      grow_for(need);
      continue;
    }
    graph_built = graph_built_;
    for (std::size_t i : order) {
      const float* vec = row(i);
      const std::optional<std::string> none;
      const std::optional<std::string>& meta = metadata.empty() ? none : metadata[i];
      const std::uint32_t slot = store_.find(ids[i]);
      if (slot == kNoSlot) {
        fresh.push_back(store_.insert(ids[i], vec, owned(meta)));
        if (graph_built) graph_->mark_unlinked(fresh.back());
        ++added;
        continue;
      }
      ++updated;
      if (std::memcmp(store_.vector(slot), vec, d * sizeof(float)) == 0) {
        if (meta) store_.set_metadata(slot, owned(meta));
        continue;
      }
      // A new vector: a new slot; the old one is repaired around, then reused.
      std::unique_ptr<std::string> keep = meta ? owned(meta) : store_.take_metadata(slot);
      store_.remove(slot);
      dead.push_back(slot);
      fresh.push_back(store_.insert(ids[i], vec, std::move(keep)));
      if (graph_built) graph_->mark_unlinked(fresh.back());
    }
    if (!graph_built) {
      for (std::uint32_t s : dead) store_.release(s);
    } else {
      const std::uint64_t seq = sequence_.fetch_add(fresh.size());
      levels.reserve(fresh.size());
      for (std::size_t j = 0; j < fresh.size(); ++j) levels.push_back(graph_->random_level(seq + j));
    }
    break;
  }

  if (graph_built && (!fresh.empty() || !dead.empty())) {
    repair_graph(dead);
    insert_into_graph(fresh, levels);
    if (!dead.empty()) {
      SharedLock st(struct_mu_);
      UniqueLock mt(meta_mu_);
      for (std::uint32_t s : dead) store_.release(s);
    }
  }
  snap.unlock();
  maybe_build_or_rebuild();
  return {added, updated};
}

void Index::insert_into_graph(const std::vector<std::uint32_t>& slots, const std::vector<int>& levels) {
  parallel_for(slots.size(), threads_.load(), 4, [&](std::size_t begin, std::size_t end) {
    SharedLock st(struct_mu_);
    for (std::size_t i = begin; i < end; ++i) {
      try {
        graph_->insert(slots[i], levels[i]);
      } catch (...) {
        // The item is safe in the side store; the graph is rebuilt from it before the
        // mutation returns.
        graph_failures_.fetch_add(1);
        graph_broken_.store(true);
      }
    }
  });
  top_up(slots);
}

void Index::top_up(const std::vector<std::uint32_t>& slots) {
  parallel_for(slots.size(), threads_.load(), 64, [&](std::size_t begin, std::size_t end) {
    SharedLock st(struct_mu_);
    for (std::size_t i = begin; i < end; ++i) {
      try {
        graph_->top_up(slots[i]);
      } catch (...) {
        graph_failures_.fetch_add(1);
        graph_broken_.store(true);
      }
    }
  });
}

void Index::repair_graph(const std::vector<std::uint32_t>& dead) {
  SharedLock st(struct_mu_);
  for (std::uint32_t s : dead) {
    try {
      graph_->repair_deleted(s);
    } catch (...) {
      // As for a failed insert: the store is intact and the graph is rebuilt from it
      // before the mutation returns.
      graph_failures_.fetch_add(1);
      graph_broken_.store(true);
    }
  }
  deletes_since_rebuild_ += dead.size();
}

void Index::maybe_build_or_rebuild() {
  bool need = false;
  bool built = false;
  {
    SharedLock st(struct_mu_);
    SharedLock mt(meta_mu_);
    const std::size_t live = store_.live();
    built = graph_built_;
    if (!built) {
      need = live > params_.brute_force_threshold;
    } else {
      // Broken by a failed graph operation, or churned more than its own size since the
      // last build (stale links through reused slots accumulate; a rebuild resets them).
      need = graph_broken_.load() ||
             deletes_since_rebuild_.load() > std::max(live, params_.brute_force_threshold);
    }
  }
  // The first, lazy build is not a rebuild.
  if (need) rebuild_graph(/*count_as_rebuild=*/built);
}

void Index::rebuild_graph(bool count_as_rebuild) {
  UniqueLock snap(snap_mu_);  // no mutation runs until the new graph is in place
  std::vector<std::uint32_t> live;
  std::unique_ptr<HnswGraph> graph;
  {
    SharedLock st(struct_mu_);
    {
      SharedLock mt(meta_mu_);
      live.reserve(store_.live());
      for (std::size_t s = 0; s < store_.size(); ++s) {
        if (store_.state(std::uint32_t(s)) == SlotState::Live) live.push_back(std::uint32_t(s));
      }
    }
    graph = std::make_unique<HnswGraph>(
        store_, space_, GraphParams{params_.m, params_.ef_construction, params_.seed});
    graph->reserve(store_.capacity());
  }
  const std::uint64_t seq = sequence_.fetch_add(live.size());
  // Searches keep using the old graph while the new one is built beside it.
  for (int attempt = 0;; ++attempt) {
    bool failed = false;
    parallel_for(live.size(), threads_.load(), 4, [&](std::size_t begin, std::size_t end) {
      SharedLock st(struct_mu_);
      for (std::size_t i = begin; i < end; ++i) {
        try {
          graph->insert(live[i], graph->random_level(seq + i));
        } catch (...) {
          failed = true;
        }
      }
    });
    if (!failed) {
      parallel_for(live.size(), threads_.load(), 64, [&](std::size_t begin, std::size_t end) {
        SharedLock st(struct_mu_);
        for (std::size_t i = begin; i < end; ++i) {
          try {
            graph->top_up(live[i]);
          } catch (...) {
            failed = true;
          }
        }
      });
    }
    if (!failed) break;
    if (attempt >= 2) throw std::runtime_error("graph rebuild failed repeatedly");
    graph_failures_.fetch_add(1);
    SharedLock st(struct_mu_);
    graph = std::make_unique<HnswGraph>(
        store_, space_, GraphParams{params_.m, params_.ef_construction, params_.seed});
    graph->reserve(store_.capacity());
  }
  {
    UniqueLock st(struct_mu_);
    graph_ = std::move(graph);
    graph_built_ = true;
    graph_broken_.store(false);
    deletes_since_rebuild_.store(0);
  }
  // Deleted slots need no repair in a graph that never contained them.
  if (count_as_rebuild) rebuilds_.fetch_add(1);
  snap.unlock();
  live = {};
  release_free_memory();  // the old graph and the build's scratch are freed
}

void Index::rebuild() { rebuild_graph(true); }

std::size_t Index::remove(const std::vector<std::string>& ids) {
  SharedLock snap(snap_mu_);
  std::vector<std::uint32_t> dead;
  bool graph_built;
  {
    SharedLock st(struct_mu_);
    UniqueLock mt(meta_mu_);
    for (const std::string& id : ids) {
      const std::uint32_t slot = store_.find(id);
      if (slot == kNoSlot) continue;
      store_.remove(slot);
      dead.push_back(slot);
    }
    graph_built = graph_built_;
    if (!graph_built) {
      for (std::uint32_t s : dead) store_.release(s);
    }
  }
  if (graph_built && !dead.empty()) {
    repair_graph(dead);
    SharedLock st(struct_mu_);
    UniqueLock mt(meta_mu_);
    for (std::uint32_t s : dead) store_.release(s);
  }
  snap.unlock();
  maybe_build_or_rebuild();
  return dead.size();
}

std::vector<std::uint32_t> Index::exclude_slots(const std::vector<std::string>& ids) const {
  std::vector<std::uint32_t> out;
  if (ids.empty()) return out;
  SharedLock mt(meta_mu_);
  out.reserve(ids.size());
  for (const std::string& id : ids) {
    const std::uint32_t s = store_.find(id);
    if (s != kNoSlot) out.push_back(s);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void Index::exact_search(const float* q, std::size_t k, const std::vector<std::uint32_t>& excluded,
                         std::vector<Candidate>& out) const {
  // Caller holds struct_mu_ and meta_mu_ shared. A max-heap of the k best.
  out.clear();
  const std::size_t n = store_.size();
  for (std::size_t s = 0; s < n; ++s) {
    const auto slot = static_cast<std::uint32_t>(s);
    if (store_.state(slot) != SlotState::Live || is_excluded(excluded, slot)) continue;
    const float d = space_.distance(q, store_.vector(slot));
    if (out.size() < k) {
      out.emplace_back(d, slot);
      std::push_heap(out.begin(), out.end());
    } else if (Candidate(d, slot) < out.front()) {
      std::pop_heap(out.begin(), out.end());
      out.back() = Candidate(d, slot);
      std::push_heap(out.begin(), out.end());
    }
  }
  std::sort(out.begin(), out.end());
}

// Caller holds struct_mu_ shared and passes meta_lock unlocked. Returns up to k verified
// (internal distance, slot), ascending, with meta_lock held so the caller resolves ids
// against exactly the state that was verified.
bool Index::search_slots(const float* q, std::size_t k, std::size_t ef,
                         const std::vector<std::uint32_t>& excluded,
                         std::vector<Candidate>& out, SharedLock& meta_lock,
                         bool exact_fallback) const {
  out.clear();
  // The graph's answer, reused across calls on this thread (no allocation per query).
  static thread_local std::vector<Candidate> found;
  const bool use_graph = graph_built_ && store_.live() > params_.brute_force_threshold;
  if (use_graph) {
    const std::size_t width = std::max({ef ? ef : ef_search_.load(), k, std::size_t(1)});
    SlotFilter filter;
    if (!excluded.empty()) filter = [&excluded](std::uint32_t s) { return !is_excluded(excluded, s); };
    graph_->search(q, width, filter, found);
  }
  meta_lock.lock();
  if (use_graph) {
    // Re-verify the best k against the store: a slot reused during the search may carry a
    // stale distance or be gone. Only the answer is re-scored, not all ef candidates.
    out.reserve(std::min(found.size(), k));
    for (const Candidate& c : found) {
      if (out.size() >= k) break;
      if (store_.state(c.second) != SlotState::Live || is_excluded(excluded, c.second)) continue;
      out.emplace_back(space_.distance(q, store_.vector(c.second)), c.second);
    }
    std::sort(out.begin(), out.end());
    std::size_t excluded_live = 0;
    for (std::uint32_t s : excluded) excluded_live += store_.state(s) == SlotState::Live;
    const std::size_t eligible = store_.live() - std::min(store_.live(), excluded_live);
    if (out.size() >= std::min(k, eligible)) return true;
  }
  if (!exact_fallback) return false;
  exact_search(q, k, excluded, out);
  return true;
}

std::vector<SearchHit> Index::search(const float* query, std::size_t k, std::size_t ef,
                                     const std::vector<std::string>& exclude,
                                     bool with_metadata) const {
  if (k == 0) throw std::invalid_argument("k must be positive");
  std::vector<float> q(params_.dims);
  check(query, kSingle, "query");
  SharedLock st(struct_mu_);
  transform(query, q.data());
  const std::vector<std::uint32_t> excluded = exclude_slots(exclude);
  std::vector<Candidate> found;
  SharedLock mt(meta_mu_, std::defer_lock);
  search_slots(q.data(), k, ef, excluded, found, mt);
  std::vector<SearchHit> hits;
  hits.reserve(found.size());
  for (const Candidate& c : found) {
    SearchHit h{std::string(store_.id(c.second)), space_.to_output(c.first), std::nullopt};
    if (with_metadata) {
      if (const std::string* m = store_.metadata(c.second)) h.metadata = *m;
    }
    hits.push_back(std::move(h));
  }
  return hits;
}

void Index::search_batch(const float* queries, std::size_t q, std::size_t k, std::size_t ef,
                         const std::vector<std::string>& exclude,
                         std::vector<std::string>& out_ids, float* out_distances,
                         std::vector<std::optional<std::string>>* out_metadata) const {
  if (k == 0) throw std::invalid_argument("k must be positive");
  const std::size_t d = params_.dims;
  std::vector<float> prepared(q * d);
  for (std::size_t i = 0; i < q; ++i) check(queries + i * d, i, "query");
  out_ids.assign(q * k, std::string());
  if (out_metadata != nullptr) out_metadata->assign(q * k, std::nullopt);
  std::fill(out_distances, out_distances + q * k, kInf);
  const std::vector<std::uint32_t> excluded = exclude_slots(exclude);
  // Queries that need the exact scan (below the threshold, or a short graph answer) are
  // set aside and scanned together: one pass over the store per tile (scan.h), each query
  // with its own heap. A tile width of 1 keeps the one-pass-per-query scan.
  const bool tiled = scan_tile() > 1;
  parallel_for(q, threads_.load(), 8, [&](std::size_t begin, std::size_t end) {
    SharedLock st(struct_mu_);
    for (std::size_t i = begin; i < end; ++i) transform(queries + i * d, prepared.data() + i * d);
    std::vector<Candidate> found;
    auto emit = [&](std::size_t i, const std::vector<Candidate>& hits) {
      std::size_t j = 0;
      for (const Candidate& c : hits) {
        out_ids[i * k + j] = store_.id(c.second);
        out_distances[i * k + j] = space_.to_output(c.first);
        if (out_metadata != nullptr) {
          if (const std::string* m = store_.metadata(c.second)) (*out_metadata)[i * k + j] = *m;
        }
        ++j;
      }
    };
    std::vector<std::size_t> exact;
    for (std::size_t i = begin; i < end; ++i) {
      SharedLock mt(meta_mu_, std::defer_lock);
      if (search_slots(prepared.data() + i * d, k, ef, excluded, found, mt, !tiled)) {
        emit(i, found);
      } else {
        exact.push_back(i);
      }
    }
    if (exact.empty()) return;
    std::vector<std::vector<Candidate>> answers(exact.size());
    std::vector<ScanQuery> scan(exact.size());
    for (std::size_t j = 0; j < exact.size(); ++j) {
      scan[j] = ScanQuery{prepared.data() + exact[j] * d, &excluded, &answers[j]};
    }
    // meta_mu_ per tile: ids resolved against the state that was scanned, and a writer
    // waits for one pass at most, as it waited for one query's scan before.
    const std::size_t width = scan_tile();
    for (std::size_t b = 0; b < exact.size(); b += width) {
      const std::size_t n = std::min(width, exact.size() - b);
      SharedLock mt(meta_mu_);
      scan_exact(store_, space_, scan.data() + b, n, k);
      for (std::size_t j = b; j < b + n; ++j) emit(exact[j], answers[j]);
    }
  });
}

bool Index::get(const std::string& id, std::vector<float>& vector,
                std::optional<std::string>& metadata) const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  const std::uint32_t slot = store_.find(id);
  if (slot == kNoSlot) return false;
  const float* v = store_.vector(slot);
  vector.resize(params_.dims);
  if (rotation_.empty()) {
    std::memcpy(vector.data(), v, params_.dims * sizeof(float));
  } else {
    unturn(rotation_, v, vector.data());
  }
  metadata.reset();
  if (const std::string* m = store_.metadata(slot)) metadata = *m;
  return true;
}

std::vector<std::string> Index::ids() const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  std::vector<std::string> out;
  out.reserve(store_.live());
  for (std::size_t s = 0; s < store_.size(); ++s) {
    if (store_.state(std::uint32_t(s)) == SlotState::Live) out.emplace_back(store_.id(std::uint32_t(s)));
  }
  return out;
}

std::size_t Index::size() const {
  SharedLock mt(meta_mu_);
  return store_.live();
}

bool Index::contains(const std::string& id) const {
  SharedLock mt(meta_mu_);
  return store_.find(id) != kNoSlot;
}

IndexStats Index::stats() const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  IndexStats s;
  s.count = store_.live();
  s.dims = params_.dims;
  s.distance = metric_name(params_.metric);
  s.m = params_.m;
  s.ef_construction = params_.ef_construction;
  s.ef_search = ef_search_.load();
  s.brute_force_threshold = params_.brute_force_threshold;
  s.threads = threads_.load() ? threads_.load() : hardware_threads();
  s.tombstones = store_.deleted();
  s.slots = store_.size();
  s.capacity = store_.capacity();
  s.rebuilds = rebuilds_.load();
  s.graph_failures = graph_failures_.load();
  s.graph_built = graph_built_;
  s.max_level = graph_built_ ? graph_->max_level() : -1;
  s.memory_bytes = store_.memory_bytes() + (graph_built_ ? graph_->memory_bytes() : 0) +
                   rotation_.capacity() * sizeof(float);
  s.rotated = !rotation_.empty();
  s.unreachable = graph_built_ && !graph_broken_.load() ? graph_->unreachable() : 0;
  s.isa = space_.isa();
  return s;
}

void Index::set_ef_search(std::size_t ef) {
  if (ef < 1 || ef > 100000) throw std::invalid_argument("ef_search must be between 1 and 100000");
  ef_search_.store(ef);
}

void Index::set_threads(std::size_t threads) {
  if (threads > 1024) throw std::invalid_argument("threads must be between 0 and 1024");
  threads_.store(threads);
}

std::vector<std::string> Index::graph_neighbours(const std::string& id, int layer) const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  std::vector<std::string> out;
  const std::uint32_t slot = store_.find(id);
  if (slot == kNoSlot || !graph_built_ || layer < 0) return out;
  const int level = graph_->level(slot);
  if (level == HnswGraph::kUnlinked || layer > level) return out;
  std::vector<std::uint32_t> nb;
  graph_->neighbours(slot, layer, nb);
  for (std::uint32_t s : nb) {
    out.emplace_back(store_.state(s) == SlotState::Live ? store_.id(s) : std::string_view());
  }
  return out;
}

int Index::graph_level(const std::string& id) const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  const std::uint32_t slot = store_.find(id);
  if (slot == kNoSlot || !graph_built_) return -2;
  const int level = graph_->level(slot);
  return level == HnswGraph::kUnlinked ? -1 : level;
}

std::pair<std::string, int> Index::graph_entry() const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  if (!graph_built_) return {std::string(), -1};
  const std::uint32_t e = graph_->entry_point();
  if (e == kNoSlot) return {std::string(), -1};
  return {std::string(store_.id(e)), graph_->max_level()};
}

std::string Index::check_graph() const {
  SharedLock st(struct_mu_);
  SharedLock mt(meta_mu_);
  if (!graph_built_) return std::string();
  return graph_->check_anchors();
}

void Index::inject_graph_failures(int n) {
  SharedLock st(struct_mu_);
  graph_->inject_failures(n);
}

}  // namespace lakehouse
