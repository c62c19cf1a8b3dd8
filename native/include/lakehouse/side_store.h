// SideStore: the source of truth of an index: (id, vector, metadata) in numbered slots.
//
// Vectors live in one contiguous float32 array, slot-major, so a slot's vector is
// data + slot * dims; the graph refers to items only by slot number and reads vectors from
// here (each vector is stored once). An id maps to exactly one live slot through IdTable, an
// open-addressing table of slot numbers hashed by the slot's id string (4 bytes per entry
// instead of a second copy of every id).
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
  const std::string& id(std::uint32_t slot) const { return ids_[slot]; }
  // nullptr when the item has no metadata.
  const std::string* metadata(std::uint32_t slot) const { return meta_[slot].get(); }

  // Slot of a live id, or kNoSlot.
  std::uint32_t find(const std::string& id) const;

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
  void reserve_ids(std::size_t n) { table_.reserve(n, ids_); }

  std::size_t memory_bytes() const;

 private:
  // Open addressing with linear probing over slot numbers; kEmpty / kGrave are sentinels.
  class IdTable {
   public:
    std::uint32_t find(const std::string& id, const std::vector<std::string>& ids) const;
    void insert(std::uint32_t slot, const std::vector<std::string>& ids);
    void erase(std::uint32_t slot, const std::vector<std::string>& ids);
    std::size_t memory_bytes() const { return table_.capacity() * sizeof(std::uint32_t); }
    void reserve(std::size_t n, const std::vector<std::string>& ids);

   private:
    static constexpr std::uint32_t kEmpty = 0xFFFFFFFFu;
    static constexpr std::uint32_t kGrave = 0xFFFFFFFEu;
    void rehash(std::size_t buckets, const std::vector<std::string>& ids);
    std::vector<std::uint32_t> table_;
    std::size_t used_ = 0;   // live entries
    std::size_t graves_ = 0; // erased entries still occupying buckets
  };

  std::size_t dims_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::size_t live_ = 0;
  std::unique_ptr<float[]> data_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> states_;
  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<std::string>> meta_;
  std::vector<std::uint32_t> free_;
  IdTable table_;
};

}  // namespace lakehouse
