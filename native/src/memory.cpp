#include "lakehouse/memory.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace lakehouse {

namespace {
// NAME=0 in the environment (an A/B switch, read once by each caller).
bool switched_off(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "0") == 0;
}
}  // namespace

void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kPage = 4096;
  constexpr std::size_t kHuge = std::size_t(2) << 20;
  // Below one huge page there is nothing to gain (and no 2 MiB-aligned page inside).
  if (p == nullptr || bytes < 2 * kHuge) return;
  static const bool off = switched_off("LAKEHOUSE_HUGEPAGES");
  if (off) return;
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) & ~(kPage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void release_free_memory() {
#if defined(__GLIBC__)
  static const bool off = switched_off("LAKEHOUSE_TRIM");
  if (!off) malloc_trim(0);
#endif
}

}  // namespace lakehouse
