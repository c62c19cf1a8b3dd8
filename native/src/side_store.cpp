#include "lakehouse/side_store.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include "lakehouse/memory.h"

namespace lakehouse {

namespace {

// FNV-1a folded through a 64-bit finaliser: cheap for short ids, well mixed for probing.
inline std::uint64_t hash_id(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace

// ---- IdTable ---------------------------------------------------------------------------

std::uint32_t SideStore::IdTable::find(std::string_view id, const SideStore& st) const {
  if (table_.empty()) return kNoSlot;
  const std::size_t mask = table_.size() - 1;
  for (std::size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
    const std::uint32_t s = table_[i];
    if (s == kEmpty) return kNoSlot;
    if (s != kGrave && st.id(s) == id) return s;
  }
}

void SideStore::IdTable::rehash(std::size_t buckets, const SideStore& st) {
  std::vector<std::uint32_t> old = std::move(table_);
  table_.assign(buckets, kEmpty);
  used_ = 0;
  graves_ = 0;
  const std::size_t mask = buckets - 1;
  for (std::uint32_t s : old) {
    if (s == kEmpty || s == kGrave) continue;
    std::size_t i = hash_id(st.id(s)) & mask;
    while (table_[i] != kEmpty) i = (i + 1) & mask;
    table_[i] = s;
    ++used_;
  }
}

void SideStore::IdTable::reserve(std::size_t n, const SideStore& st) {
  std::size_t buckets = 16;
  while (buckets < n * 2 + 2) buckets <<= 1;
  if (buckets > table_.size()) rehash(buckets, st);
}

void SideStore::IdTable::insert(std::uint32_t slot, const SideStore& st) {
  // Keep the load (live + graves) under 1/2 so probes stay short.
  if ((used_ + graves_ + 1) * 2 > table_.size()) {
    std::size_t buckets = 16;
    while (buckets < (used_ + 1) * 4) buckets <<= 1;
    rehash(buckets, st);
  }
  const std::size_t mask = table_.size() - 1;
  std::size_t i = hash_id(st.id(slot)) & mask;
  while (table_[i] != kEmpty && table_[i] != kGrave) i = (i + 1) & mask;
  if (table_[i] == kGrave) --graves_;
  table_[i] = slot;
  ++used_;
}

void SideStore::IdTable::erase(std::uint32_t slot, const SideStore& st) {
  if (table_.empty()) return;
  const std::size_t mask = table_.size() - 1;
  for (std::size_t i = hash_id(st.id(slot)) & mask;; i = (i + 1) & mask) {
    const std::uint32_t s = table_[i];
    if (s == kEmpty) return;
    if (s == slot) {
      table_[i] = kGrave;
      --used_;
      ++graves_;
      return;
    }
  }
}

// ---- Ids -------------------------------------------------------------------------------

namespace {

// The id whose entry (LEB128 length, then the bytes) starts at p.
std::string_view read_id(const char* p) {
  std::size_t n = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<unsigned char>(*p++);
    n |= std::size_t(b & 0x7F) << shift;
    if (!(b & 0x80)) break;
  }
  return {p, n};
}

void append_id(std::vector<char>& out, std::string_view id) {
  for (std::size_t n = id.size();; n >>= 7) {
    out.push_back(static_cast<char>((n & 0x7F) | (n > 0x7F ? 0x80 : 0)));
    if (n <= 0x7F) break;
  }
  out.insert(out.end(), id.begin(), id.end());
}

}  // namespace

std::string_view SideStore::id(std::uint32_t slot) const {
  const std::uint64_t at = id_at_[slot];
  return at == kNoId ? std::string_view() : read_id(ids_.data() + at);
}

void SideStore::put_id(std::uint32_t slot, std::string_view id) {
  const std::size_t at = ids_.size();
  try {
    append_id(ids_, id);
  } catch (...) {
    ids_.resize(at);  // no half-written entry stays behind
    throw;
  }
  id_at_[slot] = at;
}

void SideStore::drop_id(std::uint32_t slot) {
  const std::uint64_t at = id_at_[slot];
  if (at == kNoId) return;
  const std::string_view id = read_id(ids_.data() + at);
  id_garbage_ += std::size_t(id.data() + id.size() - (ids_.data() + at));
  id_at_[slot] = kNoId;
  // Removed bytes over half the array (and worth a pass): keep only the live ids. Only the
  // new array's allocation can fail, before any offset changes: then the removed bytes
  // simply stay until the next removal tries again.
  if (id_garbage_ < 4096 || id_garbage_ * 2 < ids_.size()) return;
  std::vector<char> kept;
  try {
    kept.reserve(ids_.size() - id_garbage_);
  } catch (const std::bad_alloc&) {
    return;
  }
  for (std::size_t s = 0; s < size_; ++s) {
    if (id_at_[s] == kNoId) continue;
    const std::string_view live = read_id(ids_.data() + id_at_[s]);
    id_at_[s] = kept.size();
    append_id(kept, live);  // within the reserve: cannot throw
  }
  ids_.swap(kept);
  id_garbage_ = 0;
}

// ---- SideStore -------------------------------------------------------------------------

SideStore::SideStore(std::size_t dims) : dims_(dims) {}

SideStore::~SideStore() = default;

std::size_t SideStore::shortfall(std::size_t n) const {
  const std::size_t reusable = free_.size();
  const std::size_t fresh = n > reusable ? n - reusable : 0;
  return size_ + fresh > capacity_ ? size_ + fresh - capacity_ : 0;
}

void SideStore::reserve(std::size_t capacity) {
  if (capacity <= capacity_) return;
  if (capacity >= kNoSlot - 1) throw std::length_error("index is full (2^32 - 2 slots)");
  // new float[] leaves the memory untouched, so unused capacity costs address space, not RSS.
  std::unique_ptr<float[]> data(new float[capacity * dims_]);
  advise_huge_pages(data.get(), capacity * dims_ * sizeof(float));  // searches read it at random
  if (size_) std::memcpy(data.get(), data_.get(), size_ * dims_ * sizeof(float));
  std::unique_ptr<std::atomic<std::uint8_t>[]> states(new std::atomic<std::uint8_t>[capacity]);
  for (std::size_t i = 0; i < capacity; ++i) {
    states[i].store(i < size_ ? states_[i].load(std::memory_order_relaxed) : 0,
                    std::memory_order_relaxed);
  }
  // Exactly the capacity asked for (resize alone may double).
  id_at_.reserve(capacity);
  id_at_.resize(capacity, kNoId);
  meta_.reserve(capacity);
  meta_.resize(capacity);
  data_ = std::move(data);
  states_ = std::move(states);
  capacity_ = capacity;
}

std::uint32_t SideStore::find(std::string_view id) const { return table_.find(id, *this); }

std::uint32_t SideStore::insert(const std::string& id, const float* vec,
                                std::unique_ptr<std::string> meta) {
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    if (size_ >= capacity_) throw std::logic_error("SideStore::insert beyond capacity");
    slot = static_cast<std::uint32_t>(size_++);
  }
  std::memcpy(mutable_vector(slot), vec, dims_ * sizeof(float));
  put_id(slot, id);
  meta_[slot] = std::move(meta);
  table_.insert(slot, *this);
  ++live_;
  states_[slot].store(static_cast<std::uint8_t>(SlotState::Live), std::memory_order_release);
  return slot;
}

void SideStore::remove(std::uint32_t slot) {
  table_.erase(slot, *this);
  states_[slot].store(static_cast<std::uint8_t>(SlotState::Deleted), std::memory_order_release);
  drop_id(slot);
  meta_[slot].reset();
  --live_;
}

void SideStore::restore_slots(const char* vectors, const std::uint8_t* states, std::size_t slots) {
  if (slots > capacity_) throw std::logic_error("SideStore::restore_slots beyond capacity");
  std::memcpy(data_.get(), vectors, slots * dims_ * sizeof(float));
  for (std::size_t s = 0; s < slots; ++s) states_[s].store(states[s], std::memory_order_relaxed);
  size_ = slots;
}

void SideStore::restore_item(std::uint32_t slot, std::string id, std::unique_ptr<std::string> meta) {
  put_id(slot, id);
  meta_[slot] = std::move(meta);
  table_.insert(slot, *this);
  ++live_;
}

std::size_t SideStore::memory_bytes() const {
  std::size_t bytes = capacity_ * dims_ * sizeof(float) + capacity_ +
                      ids_.capacity() + id_at_.capacity() * sizeof(std::uint64_t) +
                      meta_.capacity() * sizeof(std::unique_ptr<std::string>) +
                      free_.capacity() * sizeof(std::uint32_t) + table_.memory_bytes();
  for (std::size_t s = 0; s < size_; ++s) {
    if (meta_[s]) bytes += sizeof(std::string) + meta_[s]->capacity() + 1;
  }
  return bytes;
}

}  // namespace lakehouse
