// Memory placement helpers for the large arrays the search reads at random (the side store's
// vectors, the level-0 links).
//
// A search touches a few hundred vectors scattered over the whole array: with 4 KiB pages
// nearly every one is a TLB miss, and under virtualisation a miss walks two sets of page
// tables. Transparent huge pages (2 MiB) cover the array with 512x fewer entries. Where the
// kernel grants them only on request (THP mode "madvise", the common default), the request
// is an madvise on the range; in mode "always" it is redundant, in "never" it is ignored.
// Nothing changes in what is stored: the advice only affects how the pages are mapped.
// Memory: a huge page is resident as soon as any byte of it is touched, so an array's
// untouched tail can cost up to 2 MiB more RSS than with small pages (once per array).
// LAKEHOUSE_HUGEPAGES=0 in the environment turns the advice off (for A/B measurements;
// docs/bench.md, "Where the time goes").
#pragma once

#include <cstddef>

namespace lakehouse {

// Asks for huge pages on [p, p + bytes) (the whole 4 KiB pages inside it), before the
// memory is first touched. A no-op for small ranges, on other systems, or when refused.
void advise_huge_pages(void* p, std::size_t bytes);

// Hands the allocator's free pages back to the system (glibc: malloc_trim). A bulk add, a
// rebuild or a rotation frees many megabytes of scratch (the batch's id table, the fit's
// arrays on the Python side); glibc keeps freed memory below the heap's top, and raises its
// mmap threshold after large frees, so without this the process stays that much larger for
// good. Took 0.6 ms after a bulk add of 100,000 x 384 (a 170 MiB heap): called after bulk
// operations only. A no-op elsewhere (other C libraries, or LAKEHOUSE_TRIM=0).
void release_free_memory();

}  // namespace lakehouse
