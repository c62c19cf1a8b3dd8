// The exact scan of several queries in one pass over the side store.
//
// Below brute_force_threshold (and when the graph's answer comes up short) a search compares
// the query with every live vector. Done once per query, a batch of q searches streams the
// whole store from memory q times; a 2,000 x 768 store (6 MB) does not fit in a core's L2.
// scan_exact() reads each stored vector once per tile of queries and computes its distance
// to all of them while it is in registers / L1, each query keeping its own k-heap and its
// own exclusions.
//
// Exactness: the tile kernels (scan_*.cpp) repeat, per query, the very accumulation order of
// the one-query kernel of the same ISA (distance_*.cpp): the same accumulators, the same
// fused multiply-adds in the same order, the same final reduction. So a distance from a tile
// is bit-for-bit the distance Space::distance(query, stored) gives, and a tile's answer
// equals a one-query scan's: same ids, same distances, ties broken by the lower slot.
// A change to a distance_*.cpp kernel must be mirrored in its scan_*.cpp twin
// (tests/native/test_scan.py compares them bit for bit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace lakehouse {

class SideStore;
class Space;

// One query of a tiled scan.
struct ScanQuery {
  const float* vector = nullptr;                        // prepared (normalised for cosine)
  const std::vector<std::uint32_t>* excluded = nullptr; // sorted slots to skip (or nullptr)
  std::vector<std::pair<float, std::uint32_t>>* out = nullptr;  // (internal distance, slot)
};

// How many queries share one pass over the store (1 = one pass per query, as before tiles).
// Defaults to kDefaultScanTile; LAKEHOUSE_SCAN_TILE=N in the environment, or
// set_scan_tile(N), changes it (A/B measurements; docs/performance.md). Clamped to
// [1, kMaxScanTile].
inline constexpr std::size_t kDefaultScanTile = 8;
inline constexpr std::size_t kMaxScanTile = 16;
std::size_t scan_tile();
void set_scan_tile(std::size_t width);

// Exact k nearest live items of each query, in one pass over the store per tile of
// scan_tile() queries: writes each query's out with up to k (internal distance, slot),
// ascending by (distance, slot). Caller holds the locks that keep slots and vectors still
// (Index: struct_mu_ and meta_mu_ shared).
void scan_exact(const SideStore& store, const Space& space, const ScanQuery* queries,
                std::size_t n, std::size_t k);

// Test hook: the tile kernel of kernel set `isa` ("scalar", "avx2", "avx512"; false when
// unavailable) for `kind` ("l2sq", "ip_distance"): out[t] = distance(queries[t], x) for
// t < n <= kMaxScanTile.
bool scan_kernel_distances(const char* isa, const char* kind, const float* const* queries,
                           std::size_t n, const float* x, std::size_t dims, float* out);

namespace detail {
// out[t] = distance(q[t], x), t < n <= kScanGroup: n queries against one stored vector.
using TileFn = void (*)(const float* const* q, std::size_t n, const float* x, std::size_t dims,
                        float* out);
inline constexpr std::size_t kScanGroup = 8;
void l2sq_tile_avx2(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out);
void ipd_tile_avx2(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out);
void l2sq_tile_avx512(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out);
void ipd_tile_avx512(const float* const* q, std::size_t n, const float* x, std::size_t dims, float* out);
}  // namespace detail

}  // namespace lakehouse
