#include "lakehouse/scan.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "lakehouse/distance.h"
#include "lakehouse/side_store.h"

namespace lakehouse {

namespace {

using Candidate = std::pair<float, std::uint32_t>;

std::size_t clamp_tile(long long width) {
  return std::size_t(std::clamp<long long>(width, 1, static_cast<long long>(kMaxScanTile)));
}

std::size_t initial_tile() {
  const char* env = std::getenv("LAKEHOUSE_SCAN_TILE");
  if (env == nullptr || *env == '\0') return kDefaultScanTile;
  return clamp_tile(std::atoll(env));
}

std::atomic<std::size_t>& tile_width() {
  static std::atomic<std::size_t> width{initial_tile()};
  return width;
}

// The tile kernel that repeats `fn` bit for bit, or nullptr when there is none (then each
// query calls `fn` itself, the stored vector still read from memory once per tile).
detail::TileFn tile_kernel_for(KernelFn fn) {
#if defined(__x86_64__) || defined(_M_X64)
  if (fn == detail::l2sq_avx512) return detail::l2sq_tile_avx512;
  if (fn == detail::ipd_avx512) return detail::ipd_tile_avx512;
  if (fn == detail::l2sq_avx2) return detail::l2sq_tile_avx2;
  if (fn == detail::ipd_avx2) return detail::ipd_tile_avx2;
#endif
  (void)fn;
  return nullptr;
}

bool is_excluded(const std::vector<std::uint32_t>* excluded, std::uint32_t slot) {
  return excluded != nullptr && !excluded->empty() &&
         std::binary_search(excluded->begin(), excluded->end(), slot);
}

// The k-heap step of Index::exact_search: keep the k smallest (distance, slot).
inline void offer(std::vector<Candidate>& heap, std::size_t k, float d, std::uint32_t slot,
                  const std::vector<std::uint32_t>* excluded) {
  if (heap.size() < k) {
    if (is_excluded(excluded, slot)) return;
    heap.emplace_back(d, slot);
    std::push_heap(heap.begin(), heap.end());
  } else if (Candidate(d, slot) < heap.front()) {
    if (is_excluded(excluded, slot)) return;
    std::pop_heap(heap.begin(), heap.end());
    heap.back() = Candidate(d, slot);
    std::push_heap(heap.begin(), heap.end());
  }
}

// One pass over the store for n <= kMaxScanTile queries.
void scan_pass(const SideStore& store, const Space& space, const ScanQuery* queries,
               std::size_t n, std::size_t k) {
  const float* qs[kMaxScanTile];
  float d[kMaxScanTile];
  for (std::size_t t = 0; t < n; ++t) {
    qs[t] = queries[t].vector;
    queries[t].out->clear();
    queries[t].out->reserve(k);
  }
  const detail::TileFn tile = tile_kernel_for(space.kernel());
  const KernelFn one = space.kernel();
  const std::size_t dims = space.dims();
  const std::size_t slots = store.size();
  for (std::size_t s = 0; s < slots; ++s) {
    const auto slot = static_cast<std::uint32_t>(s);
    if (store.state(slot) != SlotState::Live) continue;
    const float* x = store.vector(slot);
    if (tile != nullptr) {
      for (std::size_t g = 0; g < n; g += detail::kScanGroup) {
        tile(qs + g, std::min(detail::kScanGroup, n - g), x, dims, d + g);
      }
    } else {
      for (std::size_t t = 0; t < n; ++t) d[t] = one(qs[t], x, dims);
    }
    for (std::size_t t = 0; t < n; ++t) offer(*queries[t].out, k, d[t], slot, queries[t].excluded);
  }
  for (std::size_t t = 0; t < n; ++t) std::sort(queries[t].out->begin(), queries[t].out->end());
}

}  // namespace

std::size_t scan_tile() { return tile_width().load(std::memory_order_relaxed); }

void set_scan_tile(std::size_t width) {
  tile_width().store(std::clamp<std::size_t>(width, 1, kMaxScanTile), std::memory_order_relaxed);
}

void scan_exact(const SideStore& store, const Space& space, const ScanQuery* queries,
                std::size_t n, std::size_t k) {
  const std::size_t width = scan_tile();
  for (std::size_t b = 0; b < n; b += width) {
    scan_pass(store, space, queries + b, std::min(width, n - b), k);
  }
}

bool scan_kernel_distances(const char* isa, const char* kind, const float* const* queries,
                           std::size_t n, const float* x, std::size_t dims, float* out) {
  const Kernels* kernels = std::strcmp(isa, "scalar") == 0   ? &scalar_kernels()
                           : std::strcmp(isa, "avx2") == 0   ? avx2_kernels()
                           : std::strcmp(isa, "avx512") == 0 ? avx512_kernels()
                                                             : nullptr;
  if (kernels == nullptr || n > kMaxScanTile) return false;
  KernelFn fn;
  if (std::strcmp(kind, "l2sq") == 0) fn = kernels->l2sq;
  else if (std::strcmp(kind, "ip_distance") == 0) fn = kernels->ip_distance;
  else return false;
  const detail::TileFn tile = tile_kernel_for(fn);
  for (std::size_t g = 0; g < n; g += detail::kScanGroup) {
    const std::size_t m = std::min(detail::kScanGroup, n - g);
    if (tile != nullptr) {
      tile(queries + g, m, x, dims, out + g);
    } else {
      for (std::size_t t = g; t < g + m; ++t) out[t] = fn(queries[t], x, dims);
    }
  }
  return true;
}

}  // namespace lakehouse
