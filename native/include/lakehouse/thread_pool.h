// A process-wide pool of worker threads for batch calls.
//
// parallel_for splits [0, n) into chunks handed out by an atomic counter; the calling thread
// works too, so a call never waits for an idle pool to wake up, and a call made while every
// worker is busy still finishes (on the caller alone). Work never outlives the call: the
// caller returns only when every chunk is done; helpers that start late find nothing to do.
// The first exception thrown by a chunk is rethrown in the caller.
#pragma once

#include <cstddef>
#include <functional>

namespace lakehouse {

// Number of hardware threads (at least 1).
std::size_t hardware_threads();

// Runs fn(begin, end) over [0, n) in chunks of `grain`, on up to `threads` threads
// (0 = all hardware threads). threads == 1 or n <= grain runs inline.
void parallel_for(std::size_t n, std::size_t threads, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn);

}  // namespace lakehouse
