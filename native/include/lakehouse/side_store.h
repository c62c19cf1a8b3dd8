// SideStore: the source of truth of an index: (id, vector, metadata) in numbered slots.
//
// Vectors live in one contiguous float32 array, slot-major, so a slot's vector is
// data + slot * dims; the graph refers to items only by slot number and reads vectors from
// here (each vector is stored once). An id maps to exactly one live slot through IdTable, an
// open-addressing table of slot numbers hashed by the slot's id string (4 bytes per entry
// instead of a second copy of every id).
//
// Ids are kept in one byte array, each after its length (LEB128), and a slot holds the
// offset of its id there: 8 bytes a slot plus the id's own bytes, where a std::string per
// slot took 32 (and a heap block besides for ids over 15 bytes: 80 or more for a UUID). A
// removed id's bytes stay until they outweigh the live ones; then the array is rewritten
// with the live ids only (under the writer's lock, like every other change).
//
// Slot states: Free (never used, beyond size()), Live, or Deleted (a tombstone: no id, but
// its vector and graph node remain until the slot is reused, so stale graph links through
// it still lead somewhere). Deleted slots are reused by later adds.
//
// SideStore does no locking of its own; Index serialises writers and grows it only under
// its exclusive structure lock (growth moves the arrays). States are atomic bytes because
// searches read them while writers change them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lakehouse {

enum class SlotState : std::uint8_t { Free = 0, Live = 1, Deleted = 2 };

inline constexpr std::uint32_t kNoSlot = 0xFFFFFFFFu;

class SideStore {
 public:
  explicit SideStore(std::size_t dims);
  ~SideStore();
  SideStore(const SideStore&) = delete;
  SideStore& operator=(const SideStore&) = delete;

  std::size_t dims() const { return dims_; }
  // Slots in use (live + deleted); the high-water mark.
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t live() const { return live_; }
  std::size_t deleted() const { return free_.size(); }

  // Grows the arrays to hold at least `capacity` slots. Caller holds the exclusive lock.
  void reserve(std::size_t capacity);
  // Slots an add of `n` new items would need beyond the current capacity (0 if none).
  std::size_t shortfall(std::size_t n) const;

  const float* vector(std::uint32_t slot) const { return data_.get() + std::size_t(slot) * dims_; }
  float* mutable_vector(std::uint32_t slot) { return data_.get() + std::size_t(slot) * dims_; }
  const float* data() const { return data_.get(); }

  SlotState state(std::uint32_t slot) const {
    return static_cast<SlotState>(states_[slot].load(std::memory_order_acquire));
  }
  // The id of a live slot (empty for any other); valid until the store next changes.
  std::string_view id(std::uint32_t slot) const;
  // nullptr when the item has no metadata.
  const std::string* metadata(std::uint32_t slot) const { return meta_[slot].get(); }

  // Slot of a live id, or kNoSlot.
  std::uint32_t find(std::string_view id) const;

  // Takes a slot for a new item (a deleted slot if any, else the next free one; the caller
  // checked capacity), writes its vector, id and metadata, and makes it Live.
  std::uint32_t insert(const std::string& id, const float* vec, std::unique_ptr<std::string> meta);
  void set_metadata(std::uint32_t slot, std::unique_ptr<std::string> meta) { meta_[slot] = std::move(meta); }
  std::unique_ptr<std::string> take_metadata(std::uint32_t slot) { return std::move(meta_[slot]); }
  // Live -> Deleted: drops the id and metadata; the vector stays for the graph. The slot is
  // not reusable until release() (after the graph has been repaired around it).
  void remove(std::uint32_t slot);
  void release(std::uint32_t slot) { free_.push_back(slot); }
  // Deleted slots awaiting reuse (the last released is reused first).
  const std::vector<std::uint32_t>& free_slots() const { return free_; }

  // Loading a saved index: restore_slots copies every vector and state at once (capacity
  // reserved by the caller, states already validated), then restore_item binds each live
  // slot's id and metadata, then restore_free_list the tombstones awaiting reuse.
  void restore_slots(const char* vectors, const std::uint8_t* states, std::size_t slots);
  void restore_item(std::uint32_t slot, std::string id, std::unique_ptr<std::string> meta);
  void restore_free_list(std::vector<std::uint32_t> free) { free_ = std::move(free); }
  void reserve_ids(std::size_t n) { table_.reserve(n, *this); }

  std::size_t memory_bytes() const;

 private:
  // Open addressing with linear probing over slot numbers; kEmpty / kGrave are sentinels.
  class IdTable {
   public:
    std::uint32_t find(std::string_view id, const SideStore& st) const;
    void insert(std::uint32_t slot, const SideStore& st);
    void erase(std::uint32_t slot, const SideStore& st);
    std::size_t memory_bytes() const { return table_.capacity() * sizeof(std::uint32_t); }
    void reserve(std::size_t n, const SideStore& st);

   private:
    static constexpr std::uint32_t kEmpty = 0xFFFFFFFFu;
    static constexpr std::uint32_t kGrave = 0xFFFFFFFEu;
    void rehash(std::size_t buckets, const SideStore& st);
    std::vector<std::uint32_t> table_;
    std::size_t used_ = 0;   // live entries
    std::size_t graves_ = 0; // erased entries still occupying buckets
  };

  // Where a slot without an id (free or deleted) points in id_at_.
  static constexpr std::uint64_t kNoId = ~std::uint64_t(0);
  // Appends the id's length and bytes to ids_ and points the slot at them.
  void put_id(std::uint32_t slot, std::string_view id);
  // Drops the slot's id; rewrites ids_ with the live ids once removed bytes outweigh them.
  void drop_id(std::uint32_t slot);

  std::size_t dims_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::size_t live_ = 0;
  std::unique_ptr<float[]> data_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> states_;
  std::vector<char> ids_;              // every id: LEB128 length, then its bytes
  std::vector<std::uint64_t> id_at_;   // per slot: offset of its id in ids_, or kNoId
  std::size_t id_garbage_ = 0;         // bytes in ids_ of ids since removed
  std::vector<std::unique_ptr<std::string>> meta_;
  std::vector<std::uint32_t> free_;
  IdTable table_;
};

}  // namespace lakehouse
