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

struct Kernels {
  KernelFn l2sq;         // sum (a_i - b_i)^2
  KernelFn ip_distance;  // 1 - sum a_i b_i
  KernelFn dot;          // sum a_i b_i
  const char* isa;
};

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
  const char* isa_;
};

// L2-normalises v in place (double accumulation); returns false if its norm is zero.
bool normalise(float* v, std::size_t n);

namespace detail {
float l2sq_scalar(const float* a, const float* b, std::size_t n);
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
