// The on-disk envelope of an index (little-endian; versions 1 and 2).
//
//   magic "LHNSWIDX" | u32 version | u32 flags (bit 0: never rotate)
//   params: u32 dims, metric, m, ef_construction, ef_search, brute_force_threshold; u64 seed
//   version 2 only: rotation[dims * dims] f32, row-major (the vectors below are stored turned)
//   u64 sequence (level generation continues across a reload)
//   u64 slots | u64 live | u64 tombstones
//   states[slots] u8          1 = live, 2 = tombstone (deleted, awaiting reuse)
//   free list[tombstones] u32
//   vectors[slots * dims] f32 (tombstones too: the saved graph still routes through them)
//   per live slot: u32 id length, id bytes; u32 metadata length + 1 (0 = none), bytes
//   u8 graph present; if 1: u32 entry, i32 max level, levels[slots] u8 (255 = unlinked),
//     per linked slot and level 0..level: u32 count, count x u32 neighbours
//   u32 CRC-32C of every byte above | magic "LHNSWEND"
//
// The graph is stored so a load needs no rebuild; an index saved while its graph was being
// rebuilt is saved without one and builds it on load. A reader checks the magic, the
// version, the size and the checksum before parsing, then bounds-checks every field while
// parsing: truncated or corrupt input raises FormatError and never yields an index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lakehouse {

inline constexpr char kFormatMagic[8] = {'L', 'H', 'N', 'S', 'W', 'I', 'D', 'X'};
inline constexpr char kFormatEnd[8] = {'L', 'H', 'N', 'S', 'W', 'E', 'N', 'D'};
// Version 2 adds the rotation; an index without one is written as version 1.
inline constexpr std::uint32_t kFormatVersion = 2;
inline constexpr std::uint32_t kFormatVersionPlain = 1;
// flags: bit 0 = the index must never be rotated (IndexParams::rotate false).
inline constexpr std::uint32_t kFlagNoRotate = 1;

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// CRC-32C (Castagnoli): SSE4.2 instruction when the CPU has it, a table otherwise.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace lakehouse
