#include "lakehouse/distance.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace lakehouse {

Metric parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::Cosine;
  if (name == "euclidean" || name == "l2") return Metric::Euclidean;
  if (name == "dot" || name == "ip") return Metric::Dot;
  throw std::invalid_argument("unknown distance '" + name +
                              "' (expected 'cosine', 'euclidean' or 'dot')");
}

const char* metric_name(Metric metric) {
  switch (metric) {
    case Metric::Cosine: return "cosine";
    case Metric::Euclidean: return "euclidean";
    case Metric::Dot: return "dot";
  }
  return "?";
}

namespace {

#if defined(__x86_64__) || defined(_M_X64)
#define LAKEHOUSE_X86 1
#endif

const Kernels kScalar{detail::l2sq_scalar, detail::ipd_scalar, detail::dot_scalar, detail::l2sq_bounded_scalar,
                      "scalar"};
#ifdef LAKEHOUSE_X86
const Kernels kAvx2{detail::l2sq_avx2, detail::ipd_avx2, detail::dot_avx2, detail::l2sq_bounded_avx2, "avx2"};
const Kernels kAvx512{detail::l2sq_avx512, detail::ipd_avx512, detail::dot_avx512, detail::l2sq_bounded_avx512,
                      "avx512"};
#endif

const Kernels& choose() {
  const char* forced = std::getenv("LAKEHOUSE_SIMD");
  const Kernels* best = &kScalar;
  const Kernels* avx2 = avx2_kernels();
  const Kernels* avx512 = avx512_kernels();
  if (avx512) best = avx512;
  else if (avx2) best = avx2;
  if (forced) {
    if (std::strcmp(forced, "scalar") == 0) return kScalar;
    if (std::strcmp(forced, "avx2") == 0 && avx2) return *avx2;
    if (std::strcmp(forced, "avx512") == 0 && avx512) return *avx512;
  }
  return *best;
}

}  // namespace

const Kernels& scalar_kernels() { return kScalar; }

const Kernels* avx2_kernels() {
#ifdef LAKEHOUSE_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &kAvx2 : nullptr;
#else
  return nullptr;
#endif
}

const Kernels* avx512_kernels() {
#ifdef LAKEHOUSE_X86
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  return ok ? &kAvx512 : nullptr;
#else
  return nullptr;
#endif
}

const Kernels& best_kernels() {
  static const Kernels& chosen = choose();
  return chosen;
}

namespace {
// LAKEHOUSE_EARLY_STOP=0 in the environment: graph searches read every vector whole (for A/B
// measurements of the bounded kernel; read when a Space is made).
bool early_stop_off() {
  const char* e = std::getenv("LAKEHOUSE_EARLY_STOP");
  return e != nullptr && std::strcmp(e, "0") == 0;
}
}  // namespace

Space::Space(Metric metric, std::size_t dims) : Space(metric, dims, best_kernels()) {}

Space::Space(Metric metric, std::size_t dims, const Kernels& kernels)
    : metric_(metric),
      dims_(dims),
      fn_(metric == Metric::Euclidean ? kernels.l2sq : kernels.ip_distance),
      graph_fn_(metric == Metric::Dot ? kernels.ip_distance : kernels.l2sq),
      graph_bounded_(metric == Metric::Dot || early_stop_off() ? nullptr : kernels.l2sq_bounded),
      isa_(kernels.isa) {}

float Space::to_output(float internal) const {
  switch (metric_) {
    case Metric::Euclidean: return std::sqrt(std::max(internal, 0.0f));
    case Metric::Cosine: return std::min(std::max(internal, 0.0f), 2.0f);
    case Metric::Dot: return internal;
  }
  return internal;
}

bool normalise(float* v, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += double(v[i]) * double(v[i]);
  if (!(s > 0) || !std::isfinite(s)) return false;
  const double inv = 1.0 / std::sqrt(s);
  for (std::size_t i = 0; i < n; ++i) v[i] = float(double(v[i]) * inv);
  return true;
}

}  // namespace lakehouse
