// Distance metrics and their SIMD kernels.
//
// The metric is chosen once, when a Space is constructed: it resolves to one kernel function
// pointer (scalar, AVX2+FMA or AVX-512, by a run-time CPU check), so the search loop calls
// through that pointer and never branches on the metric or the ISA.
//
// Internal distances are what the graph compares:
//   cosine     1 - a.b   (vectors are normalised on insert, so a.b is the cosine)
//   dot        1 - a.b
//   euclidean  |a - b|^2 (squared; to_output() takes the square root)
// All three are monotone in the output distance, so ordering is preserved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lakehouse {

enum class Metric : std::uint32_t { Cosine = 0, Euclidean = 1, Dot = 2 };

// Parses "cosine" / "euclidean" / "dot"; throws std::invalid_argument otherwise.
Metric parse_metric(const std::string& name);
const char* metric_name(Metric metric);

using KernelFn = float (*)(const float* a, const float* b, std::size_t n);
// A distance that may stop reading early: see Kernels::l2sq_bounded.
using BoundedFn = float (*)(const float* a, const float* b, std::size_t n, float bound);

struct Kernels {
  KernelFn l2sq;         // sum (a_i - b_i)^2
  KernelFn ip_distance;  // 1 - sum a_i b_i
  KernelFn dot;          // sum a_i b_i
  // l2sq that gives up once a running sum exceeds `bound` (checked every kBoundStride
  // floats). Returns l2sq(a, b, n) bit for bit when it does not give up, else that running
  // sum, which is > bound; since every term is >= 0 the full sum would be > bound too, so a
  // caller asking "is it below bound?" gets the same answer as from l2sq, having read only
  // part of b. Graph searches reject most neighbours they score, and reading a vector is
  // what a search waits for (docs/vectord.md, "Where search time goes on real text").
  BoundedFn l2sq_bounded;
  const char* isa;
};

// How many floats a bounded kernel reads between two looks at its running sum.
inline constexpr std::size_t kBoundStride = 64;

// The kernels for the best ISA this CPU supports. LAKEHOUSE_SIMD=scalar|avx2|avx512 in the
// environment forces a lower one (for tests); an unsupported request falls back to the best.
const Kernels& best_kernels();
const Kernels& scalar_kernels();
// nullptr when the CPU (or the build) lacks the ISA.
const Kernels* avx2_kernels();
const Kernels* avx512_kernels();

class Space {
 public:
  Space(Metric metric, std::size_t dims);
  Space(Metric metric, std::size_t dims, const Kernels& kernels);

  float distance(const float* a, const float* b) const { return fn_(a, b, dims_); }
  KernelFn kernel() const { return fn_; }
  // What the graph compares (HnswGraph): the squared L2 distance for cosine as for euclidean
  // (for unit vectors |a - b|^2 = 2 (1 - a.b): the same order as the cosine distance) so that
  // a search can stop reading a vector early (graph_bounded()); 1 - a.b for dot. A graph
  // distance never leaves the graph: Index re-scores every answer with distance().
  KernelFn graph_kernel() const { return graph_fn_; }
  // graph_kernel() with a bound (Kernels::l2sq_bounded), or nullptr for dot, whose partial
  // sums say nothing about the whole (and when LAKEHOUSE_EARLY_STOP=0, for A/B runs).
  BoundedFn graph_bounded() const { return graph_bounded_; }
  // Internal distance -> the distance a caller sees.
  float to_output(float internal) const;
  Metric metric() const { return metric_; }
  std::size_t dims() const { return dims_; }
  const char* isa() const { return isa_; }
  // Cosine normalises stored and query vectors; returns false for a zero vector.
  bool needs_normalise() const { return metric_ == Metric::Cosine; }

 private:
  Metric metric_;
  std::size_t dims_;
  KernelFn fn_;
  KernelFn graph_fn_;
  BoundedFn graph_bounded_;
  const char* isa_;
};

// L2-normalises v in place (double accumulation); returns false if its norm is zero.
bool normalise(float* v, std::size_t n);

namespace detail {
float l2sq_scalar(const float* a, const float* b, std::size_t n);
float l2sq_bounded_scalar(const float* a, const float* b, std::size_t n, float bound);
float l2sq_bounded_avx2(const float* a, const float* b, std::size_t n, float bound);
float l2sq_bounded_avx512(const float* a, const float* b, std::size_t n, float bound);
float dot_scalar(const float* a, const float* b, std::size_t n);
float ipd_scalar(const float* a, const float* b, std::size_t n);
float l2sq_avx2(const float* a, const float* b, std::size_t n);
float dot_avx2(const float* a, const float* b, std::size_t n);
float ipd_avx2(const float* a, const float* b, std::size_t n);
float l2sq_avx512(const float* a, const float* b, std::size_t n);
float dot_avx512(const float* a, const float* b, std::size_t n);
float ipd_avx512(const float* a, const float* b, std::size_t n);
}  // namespace detail

}  // namespace lakehouse
