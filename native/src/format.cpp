#include "lakehouse/format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>
#include <shared_mutex>
#include <vector>

#include "lakehouse/index.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace lakehouse {

// ---- CRC-32C ---------------------------------------------------------------------------

namespace {

std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

std::uint32_t crc32c_table(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  static const std::array<std::uint32_t, 256> table = make_crc_table();
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                              const unsigned char* p,
                                                              std::size_t n) {
  std::uint64_t c = crc;
  while (n >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  std::uint32_t c32 = static_cast<std::uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
#endif

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  crc = hw ? crc32c_sse42(crc, p, size) : crc32c_table(crc, p, size);
#else
  crc = crc32c_table(crc, p, size);
#endif
  return ~crc;
}

// ---- encoding --------------------------------------------------------------------------

namespace {

static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");

inline bool little_endian() {
  const std::uint16_t x = 1;
  unsigned char b;
  std::memcpy(&b, &x, 1);
  return b == 1;
}

// Sinks for IndexCodec::write. Both keep a running CRC-32C of everything written.
// MemoryWriter fills a buffer of the exact size; FileWriter stages small fields in a buffer
// and writes large blocks (the vector array) straight from the index's memory, so a save
// never builds the whole image in memory.
class MemoryWriter {
 public:
  explicit MemoryWriter(char* out) : p_(out), begin_(out) {}
  void bytes(const void* src, std::size_t n) {
    if (n) std::memcpy(p_, src, n);
    p_ += n;
  }
  void u8(std::uint8_t v) { bytes(&v, 1); }
  void u32(std::uint32_t v) { bytes(&v, 4); }
  void i32(std::int32_t v) { bytes(&v, 4); }
  void u64(std::uint64_t v) { bytes(&v, 8); }
  template <class F>
  void fill(std::size_t n, F&& byte_at) {
    for (std::size_t i = 0; i < n; ++i) p_[i] = byte_at(i);
    p_ += n;
  }
  std::uint32_t crc() const { return crc32c(begin_, std::size_t(p_ - begin_)); }
  std::size_t written() const { return std::size_t(p_ - begin_); }

 private:
  char* p_;
  char* begin_;
};

class FileWriter {
 public:
  FileWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)), buf_(1 << 20) {}
  void bytes(const void* src, std::size_t n) {
    if (n >= (1 << 16)) {  // large: straight through
      flush();
      crc_ = crc32c(src, n, crc_);
      write_all(static_cast<const char*>(src), n);
      return;
    }
    if (used_ + n > buf_.size()) flush();
    std::memcpy(buf_.data() + used_, src, n);
    used_ += n;
  }
  void u8(std::uint8_t v) { bytes(&v, 1); }
  void u32(std::uint32_t v) { bytes(&v, 4); }
  void i32(std::int32_t v) { bytes(&v, 4); }
  void u64(std::uint64_t v) { bytes(&v, 8); }
  template <class F>
  void fill(std::size_t n, F&& byte_at) {
    for (std::size_t i = 0; i < n; ++i) {
      if (used_ == buf_.size()) flush();
      buf_[used_++] = byte_at(i);
    }
  }
  std::uint32_t crc() {
    flush();
    return crc_;
  }
  void flush() {
    if (used_ == 0) return;
    crc_ = crc32c(buf_.data(), used_, crc_);
    write_all(buf_.data(), used_);
    used_ = 0;
  }

 private:
  void write_all(const char* p, std::size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) throw std::runtime_error("cannot write '" + path_ + "': " + std::strerror(errno));
      p += w;
      n -= std::size_t(w);
    }
  }
  int fd_;
  std::string path_;
  std::vector<char> buf_;
  std::size_t used_ = 0;
  std::uint32_t crc_ = 0;
};

class Reader {
 public:
  Reader(const char* data, std::size_t size) : p_(data), end_(data + size) {}
  const char* take(std::size_t n, const char* what) {
    if (std::size_t(end_ - p_) < n) throw FormatError(std::string("truncated input while reading ") + what);
    const char* at = p_;
    p_ += n;
    return at;
  }
  std::uint8_t u8(const char* what) { std::uint8_t v; std::memcpy(&v, take(1, what), 1); return v; }
  std::uint32_t u32(const char* what) { std::uint32_t v; std::memcpy(&v, take(4, what), 4); return v; }
  std::int32_t i32(const char* what) { std::int32_t v; std::memcpy(&v, take(4, what), 4); return v; }
  std::uint64_t u64(const char* what) { std::uint64_t v; std::memcpy(&v, take(8, what), 8); return v; }
  std::size_t left() const { return std::size_t(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace

class IndexCodec {
  // A list's count, clamped to its capacity (what the writer copies).
  static std::uint32_t link_count(const HnswGraph& g, std::size_t slot, int layer) {
    const std::uint32_t* blk = g.links_block(std::uint32_t(slot), layer);
    if (blk == nullptr) return 0;
    return std::min<std::uint32_t>(blk[0], std::uint32_t(g.cap(layer)));
  }

 public:
  // Caller holds snap (exclusive), struct and meta (shared).
  static std::size_t size_of(const Index& ix, bool with_graph) {
    const SideStore& st = ix.store_;
    const std::size_t slots = st.size();
    std::size_t n = 8 + 4 + 4 + 6 * 4 + 8 + ix.rotation_.size() * 4 + 8 + 3 * 8;
    n += slots + st.deleted() * 4 + slots * st.dims() * 4;
    for (std::size_t s = 0; s < slots; ++s) {
      if (st.state(std::uint32_t(s)) != SlotState::Live) continue;
      n += 4 + st.id(std::uint32_t(s)).size() + 4;
      if (const std::string* m = st.metadata(std::uint32_t(s))) n += m->size();
    }
    n += 1;
    if (with_graph) {
      const HnswGraph& g = *ix.graph_;
      n += 4 + 4 + slots;
      for (std::size_t s = 0; s < slots; ++s) {
        const int level = g.level(std::uint32_t(s));
        if (level == HnswGraph::kUnlinked) continue;
        for (int l = 0; l <= level; ++l) n += 4 + 4 * std::size_t(link_count(g, s, l));
      }
    }
    return n + 4 + 8;
  }

  template <class Sink>
  static void write(const Index& ix, bool with_graph, Sink& w) {
    const SideStore& st = ix.store_;
    const IndexParams& p = ix.params_;
    const std::size_t slots = st.size();
    w.bytes(kFormatMagic, 8);
    // Version 1 unless the index is rotated, so that an unrotated index stays readable by
    // builds that predate rotations.
    w.u32(ix.rotation_.empty() ? kFormatVersionPlain : kFormatVersion);
    w.u32(p.rotate ? 0u : kFlagNoRotate);
    w.u32(std::uint32_t(p.dims));
    w.u32(static_cast<std::uint32_t>(p.metric));
    w.u32(std::uint32_t(p.m));
    w.u32(std::uint32_t(p.ef_construction));
    w.u32(std::uint32_t(ix.ef_search_.load()));
    w.u32(std::uint32_t(std::min<std::size_t>(p.brute_force_threshold, 0xFFFFFFFFu)));
    w.u64(p.seed);
    if (!ix.rotation_.empty()) w.bytes(ix.rotation_.data(), ix.rotation_.size() * sizeof(float));
    w.u64(ix.sequence_.load());
    w.u64(slots);
    w.u64(st.live());
    w.u64(st.deleted());
    w.fill(slots, [&](std::size_t s) { return static_cast<char>(st.state(std::uint32_t(s))); });
    for (std::uint32_t s : st.free_slots()) w.u32(s);
    w.bytes(st.data(), slots * st.dims() * sizeof(float));
    for (std::size_t s = 0; s < slots; ++s) {
      if (st.state(std::uint32_t(s)) != SlotState::Live) continue;
      const std::string_view id = st.id(std::uint32_t(s));
      w.u32(std::uint32_t(id.size()));
      w.bytes(id.data(), id.size());
      const std::string* m = st.metadata(std::uint32_t(s));
      w.u32(m ? std::uint32_t(m->size() + 1) : 0);
      if (m) w.bytes(m->data(), m->size());
    }
    w.u8(with_graph ? 1 : 0);
    if (with_graph) {
      const HnswGraph& g = *ix.graph_;
      w.u32(g.entry_point());
      w.i32(g.max_level());
      w.fill(slots, [&](std::size_t s) { return static_cast<char>(g.level(std::uint32_t(s))); });
      for (std::size_t s = 0; s < slots; ++s) {
        const int level = g.level(std::uint32_t(s));
        if (level == HnswGraph::kUnlinked) continue;
        for (int l = 0; l <= level; ++l) {
          // count then ids, exactly the in-memory block: one copy per list
          const std::uint32_t cnt = link_count(g, s, l);
          w.u32(cnt);
          if (cnt) w.bytes(g.links_block(std::uint32_t(s), l) + 1, std::size_t(cnt) * 4);
        }
      }
    }
    w.u32(w.crc());
    w.bytes(kFormatEnd, 8);
  }

  static std::unique_ptr<Index> read(const char* data, std::size_t size) {
    if (!little_endian()) throw FormatError("big-endian hosts are not supported");
    if (size == 0) throw FormatError("empty input: not a lakehouse index");
    if (size < 8 || std::memcmp(data, kFormatMagic, 8) != 0) {
      throw FormatError("not a lakehouse index (bad magic)");
    }
    if (size < 8 + 4) throw FormatError("truncated input while reading the version");
    std::uint32_t version;
    std::memcpy(&version, data + 8, 4);
    if (version != kFormatVersion && version != kFormatVersionPlain) {
      throw FormatError("unsupported format version " + std::to_string(version) +
                        " (this build reads versions " + std::to_string(kFormatVersionPlain) + " and " +
                        std::to_string(kFormatVersion) + ")");
    }
    if (size < 8 + 4 + 8 + 4 + 8 || std::memcmp(data + size - 8, kFormatEnd, 8) != 0) {
      throw FormatError("truncated input (end marker missing)");
    }
    std::uint32_t stored_crc;
    std::memcpy(&stored_crc, data + size - 12, 4);
    if (crc32c(data, size - 12) != stored_crc) throw FormatError("checksum mismatch: the data is corrupt");

    Reader r(data + 12, size - 12 - 12);
    const std::uint32_t flags = r.u32("flags");
    if (flags & ~kFlagNoRotate) throw FormatError("unknown flags " + std::to_string(flags));
    IndexParams p;
    p.rotate = (flags & kFlagNoRotate) == 0;
    p.dims = r.u32("dims");
    const std::uint32_t metric = r.u32("metric");
    if (metric > 2) throw FormatError("unknown metric " + std::to_string(metric));
    p.metric = static_cast<Metric>(metric);
    p.m = r.u32("m");
    p.ef_construction = r.u32("ef_construction");
    p.ef_search = r.u32("ef_search");
    p.brute_force_threshold = r.u32("brute_force_threshold");
    p.seed = r.u64("seed");
    try {
      p.validate();
    } catch (const std::invalid_argument& e) {
      throw FormatError(std::string("invalid parameters: ") + e.what());
    }
    std::vector<float> rotation;
    if (version == kFormatVersion) {
      if (!p.rotate) throw FormatError("a rotation in an index saved with rotate=False");
      if (std::uint64_t(p.dims) * p.dims * 4 > r.left()) throw FormatError("truncated input (rotation)");
      rotation.resize(std::size_t(p.dims) * p.dims);
      std::memcpy(rotation.data(), r.take(rotation.size() * 4, "rotation"), rotation.size() * 4);
      try {
        Index::check_rotation(rotation, p.dims);
      } catch (const std::invalid_argument& e) {
        throw FormatError(std::string("corrupt rotation: ") + e.what());
      }
    }
    const std::uint64_t sequence = r.u64("sequence");
    const std::uint64_t slots = r.u64("slot count");
    const std::uint64_t live = r.u64("live count");
    const std::uint64_t tombs = r.u64("tombstone count");
    if (slots >= kNoSlot - 1 || live + tombs != slots) throw FormatError("inconsistent slot counts");
    // Every array below must fit in what is left before any allocation is sized by it.
    if (slots > r.left() || slots * p.dims * 4 > r.left()) throw FormatError("truncated input (slot arrays)");

    auto ix = std::make_unique<Index>(p);
    ix->rotation_ = std::move(rotation);  // the vectors below are stored turned already
    ix->sequence_.store(sequence);
    SideStore& st = ix->store_;
    st.reserve(std::max<std::size_t>(slots, 16));
    ix->graph_->reserve(std::max<std::size_t>(slots, 16));

    const auto* states = reinterpret_cast<const std::uint8_t*>(r.take(slots, "slot states"));
    std::uint64_t live_seen = 0;
    for (std::uint64_t s = 0; s < slots; ++s) {
      if (states[s] == std::uint8_t(SlotState::Live)) ++live_seen;
      else if (states[s] != std::uint8_t(SlotState::Deleted)) throw FormatError("corrupt slot state");
    }
    if (live_seen != live) throw FormatError("inconsistent live count");
    std::vector<std::uint32_t> free_list(tombs);
    std::vector<char> seen_free(slots, 0);
    for (std::uint64_t i = 0; i < tombs; ++i) {
      const std::uint32_t s = r.u32("free list");
      if (s >= slots || states[s] != std::uint8_t(SlotState::Deleted) || seen_free[s]) {
        throw FormatError("corrupt free list");
      }
      seen_free[s] = 1;
      free_list[i] = s;
    }
    st.restore_slots(r.take(slots * p.dims * 4, "vectors"), states, slots);
    st.reserve_ids(live);
    for (std::uint64_t s = 0; s < slots; ++s) {
      if (states[s] != std::uint8_t(SlotState::Live)) continue;
      const std::uint32_t idlen = r.u32("id length");
      std::string id(r.take(idlen, "id"), idlen);
      if (id.empty()) throw FormatError("corrupt id (empty)");
      if (st.find(id) != kNoSlot) throw FormatError("corrupt ids (duplicate '" + id + "')");
      const std::uint32_t mlen = r.u32("metadata length");
      std::unique_ptr<std::string> meta;
      if (mlen > 0) meta = std::make_unique<std::string>(r.take(mlen - 1, "metadata"), mlen - 1);
      st.restore_item(std::uint32_t(s), std::move(id), std::move(meta));
    }
    st.restore_free_list(std::move(free_list));

    const std::uint8_t has_graph = r.u8("graph flag");
    if (has_graph > 1) throw FormatError("corrupt graph flag");
    if (has_graph) {
      HnswGraph& g = *ix->graph_;
      const std::uint32_t entry = r.u32("entry point");
      const std::int32_t max_level = r.i32("max level");
      const auto* levels = reinterpret_cast<const std::uint8_t*>(r.take(slots, "levels"));
      for (std::uint64_t s = 0; s < slots; ++s) {
        const std::uint8_t level = levels[s];
        if (level == HnswGraph::kUnlinked) continue;
        if (level > HnswGraph::kMaxLevel) throw FormatError("corrupt level");
        g.restore_level(std::uint32_t(s), level);
        for (int l = 0; l <= level; ++l) {
          const std::uint32_t cnt = r.u32("link count");
          if (cnt > g.cap(l)) throw FormatError("corrupt link count");
          const char* ids = r.take(std::size_t(cnt) * 4, "links");
          for (std::uint32_t i = 0; i < cnt; ++i) {
            std::uint32_t v;
            std::memcpy(&v, ids + std::size_t(i) * 4, 4);
            if (v >= slots) throw FormatError("corrupt link (slot out of range)");
          }
          g.restore_links(std::uint32_t(s), l, ids, cnt);
        }
      }
      if (slots > 0) {
        if (entry >= slots || max_level < 0 || max_level > HnswGraph::kMaxLevel ||
            levels[entry] != max_level) {
          throw FormatError("corrupt entry point");
        }
        g.restore_entry(entry, max_level);
        g.restore_anchors();
      } else if (entry != kNoSlot) {
        throw FormatError("corrupt entry point");
      }
      ix->graph_built_ = true;
    }
    if (r.left() != 0) throw FormatError("trailing bytes after the graph");
    if (!has_graph && st.live() > p.brute_force_threshold) ix->rebuild_graph(false);
    return ix;
  }
};

// ---- Index entry points -----------------------------------------------------------------

void Index::serialize(const std::function<char*(std::size_t)>& alloc) const {
  std::unique_lock<RwLock> snap(snap_mu_);
  std::shared_lock<RwLock> st(struct_mu_);
  std::shared_lock<RwLock> mt(meta_mu_);
  const bool with_graph = graph_built_ && !graph_broken_.load();
  const std::size_t size = IndexCodec::size_of(*this, with_graph);
  MemoryWriter w(alloc(size));
  IndexCodec::write(*this, with_graph, w);
  if (w.written() != size) throw std::logic_error("index serialisation size mismatch");
}

std::string Index::to_bytes() const {
  std::string out;
  serialize([&out](std::size_t n) {
    out.resize(n);
    return out.data();
  });
  return out;
}

std::unique_ptr<Index> Index::from_bytes(const char* data, std::size_t size) {
  return IndexCodec::read(data, size);
}

namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " '" + path + "': " + std::strerror(errno));
}

}  // namespace

void Index::save(const std::string& path, bool durable) const {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_error("cannot create", tmp);
  try {
    {
      std::unique_lock<RwLock> snap(snap_mu_);
      std::shared_lock<RwLock> st(struct_mu_);
      std::shared_lock<RwLock> mt(meta_mu_);
      FileWriter w(fd, tmp);
      IndexCodec::write(*this, graph_built_ && !graph_broken_.load(), w);
      w.flush();
    }
    if (durable && ::fsync(fd) != 0) io_error("cannot fsync", tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    io_error("cannot rename over", path);
  }
  if (!durable) return;
  // Make the rename itself durable.
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::unique_ptr<Index> Index::load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open", path);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    io_error("cannot stat", path);
  }
  const auto size = std::size_t(info.st_size);
  // Uninitialised: the file overwrites every byte, so nothing is written twice.
  std::unique_ptr<char[]> data(new char[std::max<std::size_t>(size, 1)]);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, data.get() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      if (n == 0) throw FormatError("truncated input ('" + path + "' shrank while reading)");
      errno = err;
      io_error("cannot read", path);
    }
    done += std::size_t(n);
  }
  ::close(fd);
  return from_bytes(data.get(), size);
}

}  // namespace lakehouse
