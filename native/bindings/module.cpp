// The only file that includes pybind11. It converts arguments (numpy arrays arrive as
// c-contiguous float32 and are shape-checked once), releases the GIL around every native
// loop, and maps C++ errors to Python ones: std::invalid_argument and FormatError ->
// ValueError, a missing id -> KeyError. The public, documented API is the Python facade in
// lakehouse/vectors/index.py; this module is private.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lakehouse/distance.h"
#include "lakehouse/format.h"
#include "lakehouse/index.h"
#include "lakehouse/json_floats.h"
#include "lakehouse/playbook.h"  // playbook block
#include "lakehouse/role.h"      // playbook block
#include "lakehouse/save_coalescer.h"
#include "lakehouse/scan.h"
#include "lakehouse/thread_pool.h"

namespace py = pybind11;
using namespace lakehouse;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Owns a core SaveCoalescer whose save function calls back into Python. The worker thread
// takes the GIL only around that call; close() and the destructor release the GIL while
// joining the worker, so a save in progress can finish.
class PySaveCoalescer {
 public:
  explicit PySaveCoalescer(py::function fn) : fn_(std::make_shared<py::function>(std::move(fn))) {
    auto holder = fn_;
    core_ = std::make_unique<SaveCoalescer>([holder] {
      py::gil_scoped_acquire gil;
      try {
        (*holder)();
      } catch (py::error_already_set& e) {
        throw std::runtime_error(e.what());
      }
    });
  }
  ~PySaveCoalescer() {
    py::gil_scoped_release release;
    core_.reset();
  }
  void trigger() { core_->trigger(); }
  void flush(double timeout) {
    SaveCoalescer::FlushResult r;
    {
      py::gil_scoped_release release;
      r = core_->flush(timeout);
    }
    if (r.timed_out) throw std::runtime_error("flush timed out");
    if (!r.ok) throw std::runtime_error("save failed: " + r.error);
  }
  void close() {
    py::gil_scoped_release release;
    core_->close();
  }
  py::dict stats() const {
    const auto s = core_->stats();
    py::dict d;
    d["triggers"] = s.triggers;
    d["saves"] = s.saves;
    d["failures"] = s.failures;
    d["running"] = s.running;
    d["pending"] = s.pending;
    d["last_error"] = s.last_error;
    return d;
  }

 private:
  std::shared_ptr<py::function> fn_;
  std::unique_ptr<SaveCoalescer> core_;
};

const float* matrix(const FloatArray& a, std::size_t dims, const char* what) {
  if (a.ndim() != 2 || std::size_t(a.shape(1)) != dims) {
    throw std::invalid_argument(std::string(what) + " must have shape (n, " + std::to_string(dims) + ")");
  }
  return a.data();
}

bool is_float32_rows(const py::array& a) {
  return a.dtype().is(py::dtype::of<float>()) && (a.flags() & py::array::c_style);
}

// Rows of a 2-d numpy array of another dtype or layout (float64, integers, bool, strided
// float32), converted to float32 a bounded chunk at a time (at most about 4 MiB), so an add
// never holds a whole float32 copy of the batch. Reads the array's memory directly: built
// with the GIL held, used without it (the caller keeps the array alive).
class RowConverter {
 public:
  static bool supports(const py::array& a) {
    const py::dtype dt = a.dtype();
    if (!dt.attr("isnative").cast<bool>()) return false;
    const char k = dt.kind();
    const auto size = dt.itemsize();
    return (k == 'f' && (size == 4 || size == 8)) ||
           ((k == 'i' || k == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
           (k == 'b' && size == 1);
  }

  RowConverter(const py::array& a, std::size_t dims)
      : base_(static_cast<const char*>(a.data())),
        stride_row_(a.strides(0)),
        stride_col_(a.strides(1)),
        kind_(a.dtype().kind()),
        size_(a.dtype().itemsize()),
        dims_(dims),
        rows_(std::max<std::size_t>(1, (std::size_t(1) << 20) / std::max<std::size_t>(dims, 1))),
        n_(std::size_t(a.shape(0))) {
    buf_.resize(std::min(rows_, n_) * dims_);
  }

  const float* row(std::size_t i) {
    if (i < first_ || i >= first_ + count_) fill(i - i % rows_);
    return buf_.data() + (i - first_) * dims_;
  }

 private:
  template <class T>
  void convert(std::size_t first, std::size_t count) {
    for (std::size_t r = 0; r < count; ++r) {
      const char* src = base_ + std::ptrdiff_t(first + r) * stride_row_;
      float* out = buf_.data() + r * dims_;
      for (std::size_t j = 0; j < dims_; ++j) {
        T v;
        std::memcpy(&v, src + std::ptrdiff_t(j) * stride_col_, sizeof(T));
        out[j] = to_float(v);
      }
    }
  }
  template <class T>
  static float to_float(T v) {
    if constexpr (std::is_same_v<T, double>) {
      // out of float's range: +-inf (the add then rejects it), never undefined behaviour
      if (v > double(std::numeric_limits<float>::max())) return std::numeric_limits<float>::infinity();
      if (v < -double(std::numeric_limits<float>::max())) return -std::numeric_limits<float>::infinity();
    }
    return static_cast<float>(v);
  }
  void fill(std::size_t first) {
    const std::size_t count = std::min(rows_, n_ - first);
    if (kind_ == 'f') {
      size_ == 4 ? convert<float>(first, count) : convert<double>(first, count);
    } else if (kind_ == 'i') {
      if (size_ == 1) convert<std::int8_t>(first, count);
      else if (size_ == 2) convert<std::int16_t>(first, count);
      else if (size_ == 4) convert<std::int32_t>(first, count);
      else convert<std::int64_t>(first, count);
    } else if (kind_ == 'u') {
      if (size_ == 1) convert<std::uint8_t>(first, count);
      else if (size_ == 2) convert<std::uint16_t>(first, count);
      else if (size_ == 4) convert<std::uint32_t>(first, count);
      else convert<std::uint64_t>(first, count);
    } else {
      convert<bool>(first, count);
    }
    first_ = first;
    count_ = count;
  }

  const char* base_;
  std::ptrdiff_t stride_row_, stride_col_;
  char kind_;
  py::ssize_t size_;
  std::size_t dims_, rows_, n_;
  std::size_t first_ = 0, count_ = 0;
  std::vector<float> buf_;
};

const float* row(const FloatArray& a, std::size_t dims, const char* what) {
  if (a.ndim() != 1 || std::size_t(a.shape(0)) != dims) {
    throw std::invalid_argument(std::string(what) + " must have shape (" + std::to_string(dims) + ",)");
  }
  return a.data();
}

py::object bytes_or_none(const std::optional<std::string>& s) {
  if (!s) return py::none();
  return py::bytes(*s);
}

// The facade's result type (lakehouse.vectors.index.Hit, a NamedTuple) and its decoder of
// JSON-tagged metadata, registered once by the facade (set_hit_type); leaked on purpose, so
// nothing is released after the interpreter is gone.
PyTypeObject* g_hit_type = nullptr;
PyObject* g_decode_json = nullptr;

// Metadata as the facade gives it: none for none or "" (cleared), the JSON-tagged kind
// decoded, the bytes kind as bytes (the facade's tags, lakehouse/vectors/index.py).
py::object facade_metadata(const std::optional<std::string>& m) {
  if (!m || m->empty()) return py::none();
  py::bytes body(m->data() + 1, m->size() - 1);
  if ((*m)[0] == 'J') return py::reinterpret_borrow<py::function>(g_decode_json)(body);
  return std::move(body);
}

// One Hit(id, distance, metadata), made in C as tuple.__new__(Hit, ...) would: a search's
// answer costs no Python-level call per hit.
py::object make_hit(const std::string& id, double distance, const std::optional<std::string>& m) {
  if (g_hit_type == nullptr) throw std::runtime_error("lakehouse._native: set_hit_type was not called");
  py::object fields[3] = {py::str(id), py::float_(distance), facade_metadata(m)};
  PyObject* hit = g_hit_type->tp_alloc(g_hit_type, 3);
  if (hit == nullptr) throw py::error_already_set();
  for (int i = 0; i < 3; ++i) PyTuple_SET_ITEM(hit, i, fields[i].release().ptr());
  return py::reinterpret_steal<py::object>(hit);
}

py::dict stats_dict(const IndexStats& s) {
  py::dict d;
  d["count"] = s.count;
  d["dims"] = s.dims;
  d["distance"] = s.distance;
  d["m"] = s.m;
  d["ef_construction"] = s.ef_construction;
  d["ef_search"] = s.ef_search;
  d["brute_force_threshold"] = s.brute_force_threshold;
  d["threads"] = s.threads;
  d["tombstones"] = s.tombstones;
  d["slots"] = s.slots;
  d["capacity"] = s.capacity;
  d["rebuilds"] = s.rebuilds;
  d["graph_failures"] = s.graph_failures;
  d["graph_built"] = s.graph_built;
  d["max_level"] = s.max_level;
  d["memory_bytes"] = s.memory_bytes;
  d["unreachable"] = s.unreachable;
  d["rotated"] = s.rotated;
  d["isa"] = s.isa;
  return d;
}

std::unique_ptr<Index> make_index(std::size_t dims, const std::string& distance, std::size_t m,
                                  std::size_t ef_construction, std::size_t ef_search,
                                  std::size_t brute_force_threshold, std::size_t threads,
                                  std::uint64_t seed, bool rotate) {
  IndexParams p;
  p.dims = dims;
  p.metric = parse_metric(distance);
  p.m = m;
  p.ef_construction = ef_construction;
  p.ef_search = ef_search;
  p.brute_force_threshold = brute_force_threshold;
  p.threads = threads;
  p.seed = seed;
  p.rotate = rotate;
  return std::make_unique<Index>(p);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Lakehouse native core (private; use the lakehouse package)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::length_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("simd_isa", [] { return std::string(best_kernels().isa); },
        "The SIMD kernel set chosen for this CPU: 'avx512', 'avx2' or 'scalar'.");
  m.def("available_isas", [] {
    std::vector<std::string> out{"scalar"};
    if (avx2_kernels()) out.emplace_back("avx2");
    if (avx512_kernels()) out.emplace_back("avx512");
    return out;
  });
  m.def("hardware_threads", &hardware_threads);
  m.def(
      "kernel_distance",
      [](const std::string& isa, const std::string& kind, FloatArray a, FloatArray b, float bound) {
        const Kernels* k = isa == "scalar" ? &scalar_kernels()
                           : isa == "avx2" ? avx2_kernels()
                           : isa == "avx512" ? avx512_kernels()
                                             : nullptr;
        if (k == nullptr) throw std::invalid_argument("kernel set '" + isa + "' is not available");
        if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != b.shape(0)) {
          throw std::invalid_argument("a and b must be 1-d of equal length");
        }
        const auto n = std::size_t(a.shape(0));
        if (kind == "l2sq") return k->l2sq(a.data(), b.data(), n);
        if (kind == "dot") return k->dot(a.data(), b.data(), n);
        if (kind == "ip_distance") return k->ip_distance(a.data(), b.data(), n);
        if (kind == "l2sq_bounded") return k->l2sq_bounded(a.data(), b.data(), n, bound);
        throw std::invalid_argument("kind must be 'l2sq', 'dot', 'ip_distance' or 'l2sq_bounded'");
      },
      py::arg("isa"), py::arg("kind"), py::arg("a"), py::arg("b"),
      py::arg("bound") = std::numeric_limits<float>::infinity(),
      "Runs one raw kernel (tests and micro-benchmarks); `bound` is l2sq_bounded's.");
  m.def(
      "scan_kernel_distances",
      [](const std::string& isa, const std::string& kind, FloatArray queries, FloatArray x) {
        if (queries.ndim() != 2 || x.ndim() != 1 || queries.shape(1) != x.shape(0)) {
          throw std::invalid_argument("queries must be (n, d) and x (d,)");
        }
        const auto n = std::size_t(queries.shape(0)), d = std::size_t(x.shape(0));
        if (n == 0 || n > kMaxScanTile) {
          throw std::invalid_argument("a tile holds 1 to " + std::to_string(kMaxScanTile) + " queries");
        }
        std::vector<const float*> rows(n);
        for (std::size_t t = 0; t < n; ++t) rows[t] = queries.data() + t * d;
        py::array_t<float> out(n);
        if (!scan_kernel_distances(isa.c_str(), kind.c_str(), rows.data(), n, x.data(), d,
                                   out.mutable_data())) {
          throw std::invalid_argument("no tile kernel '" + kind + "' in kernel set '" + isa + "'");
        }
        return out;
      },
      "Runs one tile kernel: the distance of each query row to x (tests).");
  m.def("scan_tile", &scan_tile, "Queries that share one pass of the exact scan (scan.h).");
  m.def("set_scan_tile", &set_scan_tile, py::arg("width"),
        "Sets the exact scan's tile width, process-wide; 1 = one pass per query (A/B runs).");
  m.def(
      "set_hit_type",
      [](const py::object& hit_type, const py::function& decode_json) {
        if (!PyType_Check(hit_type.ptr()) ||
            !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(hit_type.ptr()), &PyTuple_Type)) {
          throw py::type_error("set_hit_type takes a tuple subclass");
        }
        Py_XDECREF(g_decode_json);
        Py_XDECREF(reinterpret_cast<PyObject*>(g_hit_type));
        g_hit_type = reinterpret_cast<PyTypeObject*>(hit_type.inc_ref().ptr());
        g_decode_json = decode_json.inc_ref().ptr();
      },
      py::arg("hit_type"), py::arg("decode_json"),
      "The type search answers are made of (3-tuples: id, distance, metadata) and the "
      "decoder of JSON-tagged metadata; the facade calls it once, at import.");
  m.def(
      "json_floats",
      [](const py::buffer& text) -> py::object {
        const py::buffer_info info = text.request();
        if (info.ndim != 1 || info.itemsize != 1 || (info.size > 1 && info.strides[0] != 1)) {
          throw py::value_error("json_floats takes contiguous bytes");
        }
        std::vector<float> values;
        const std::string_view view(static_cast<const char*>(info.ptr), std::size_t(info.size));
        if (!parse_json_float_array(view, values)) return py::none();
        py::array_t<float> out(values.size());
        std::copy(values.begin(), values.end(), out.mutable_data());
        return std::move(out);
      },
      py::arg("text"),
      "The numbers of a JSON array as float32 (json_floats.h), or None for anything else.");
  m.def("crc32c", [](py::bytes b) {
    const std::string s = b;
    return crc32c(s.data(), s.size());
  });

  py::class_<PySaveCoalescer>(m, "SaveCoalescer")
      .def(py::init<py::function>(), py::arg("save_fn"))
      .def("trigger", &PySaveCoalescer::trigger)
      .def("flush", &PySaveCoalescer::flush, py::arg("timeout") = -1.0)
      .def("close", &PySaveCoalescer::close)
      .def("stats", &PySaveCoalescer::stats);

  py::class_<Index>(m, "HnswIndex")
      .def(py::init(&make_index), py::arg("dims"), py::arg("distance"), py::arg("m"),
           py::arg("ef_construction"), py::arg("ef_search"), py::arg("brute_force_threshold"),
           py::arg("threads"), py::arg("seed"), py::arg("rotate") = true)
      .def(
          "add",
          [](Index& ix, const std::vector<std::string>& ids, const py::array& vectors,
             const std::vector<std::optional<std::string>>& metadata) {
            const std::size_t dims = ix.params().dims;
            if (vectors.ndim() != 2 || std::size_t(vectors.shape(1)) != dims) {
              throw std::invalid_argument("vectors must have shape (n, " + std::to_string(dims) + ")");
            }
            const auto n = std::size_t(vectors.shape(0));
            if (is_float32_rows(vectors)) {
              const auto* data = static_cast<const float*>(vectors.data());
              py::gil_scoped_release release;
              return ix.add(ids, data, n, metadata);
            }
            if (RowConverter::supports(vectors)) {
              RowConverter rows(vectors, dims);
              py::gil_scoped_release release;
              return ix.add(ids, [&rows](std::size_t i) { return rows.row(i); }, n, metadata);
            }
            // anything else numpy can cast (float16, big-endian ...): one float32 copy
            const FloatArray cast = FloatArray::ensure(vectors);
            if (!cast) throw py::error_already_set();
            const float* data = cast.data();
            py::gil_scoped_release release;
            return ix.add(ids, data, n, metadata);
          },
          py::arg("ids"), py::arg("vectors"), py::arg("metadata"))
      .def(
          "search",
          [](const Index& ix, const FloatArray& query, std::size_t k, std::size_t ef,
             const std::vector<std::string>& exclude, bool with_metadata) {
            const float* q = row(query, ix.params().dims, "query");
            std::vector<SearchHit> hits;
            {
              py::gil_scoped_release release;
              hits = ix.search(q, k, ef, exclude, with_metadata);
            }
            py::list out(hits.size());
            for (std::size_t i = 0; i < hits.size(); ++i) {
              out[i] = make_hit(hits[i].id, hits[i].distance, hits[i].metadata);
            }
            return out;
          },
          py::arg("query"), py::arg("k"), py::arg("ef"), py::arg("exclude"), py::arg("with_metadata"))
      .def(
          "search_batch",
          [](const Index& ix, const FloatArray& queries, std::size_t k, std::size_t ef,
             const std::vector<std::string>& exclude, bool with_metadata) -> py::object {
            const float* q = matrix(queries, ix.params().dims, "queries");
            const auto nq = std::size_t(queries.shape(0));
            py::array_t<float> distances({nq, k});
            std::vector<std::string> ids;
            std::vector<std::optional<std::string>> metadata;
            {
              float* out = distances.mutable_data();
              py::gil_scoped_release release;
              ix.search_batch(q, nq, k, ef, exclude, ids, out,
                              with_metadata ? &metadata : nullptr);
            }
            py::list rows(nq);
            if (with_metadata) {
              // one list of Hits per query, as search returns; no padding
              const float* d = distances.data();
              for (std::size_t i = 0; i < nq; ++i) {
                std::size_t n = 0;
                while (n < k && !ids[i * k + n].empty()) ++n;
                py::list r(n);
                for (std::size_t j = 0; j < n; ++j) {
                  const std::size_t at = i * k + j;
                  r[j] = make_hit(ids[at], d[at], metadata[at]);
                }
                rows[i] = std::move(r);
              }
              return std::move(rows);
            }
            for (std::size_t i = 0; i < nq; ++i) {
              py::list r(k);
              for (std::size_t j = 0; j < k; ++j) r[j] = py::str(ids[i * k + j]);
              rows[i] = std::move(r);
            }
            return py::make_tuple(std::move(rows), std::move(distances));
          },
          py::arg("queries"), py::arg("k"), py::arg("ef"), py::arg("exclude"),
          py::arg("with_metadata") = false)
      .def(
          "remove",
          [](Index& ix, const std::vector<std::string>& ids) {
            py::gil_scoped_release release;
            return ix.remove(ids);
          },
          py::arg("ids"))
      .def(
          "get",
          [](const Index& ix, const std::string& id) {
            std::vector<float> vec;
            std::optional<std::string> meta;
            if (!ix.get(id, vec, meta)) throw py::key_error(id);
            py::array_t<float> arr(vec.size());
            std::copy(vec.begin(), vec.end(), arr.mutable_data());
            return py::make_tuple(std::move(arr), bytes_or_none(meta));
          },
          py::arg("id"))
      .def_property_readonly("dims", [](const Index& ix) { return ix.params().dims; })
      .def_property_readonly("distance", [](const Index& ix) { return std::string(metric_name(ix.params().metric)); })
      .def_property_readonly("ef_search", [](const Index& ix) { return ix.ef_search(); })
      .def_property_readonly("brute_force_threshold", [](const Index& ix) { return ix.params().brute_force_threshold; })
      .def_property_readonly("rotate", [](const Index& ix) { return ix.params().rotate; })
      .def_property_readonly("rotated", &Index::rotated)
      .def(
          "set_rotation",
          [](Index& ix, const FloatArray& r) {
            const std::size_t d = ix.params().dims;
            const float* data = matrix(r, d, "rotation");
            std::vector<float> rot(data, data + std::size_t(r.shape(0)) * d);
            py::gil_scoped_release release;
            ix.set_rotation(rot);
          },
          py::arg("rotation"))
      .def("ids", &Index::ids)
      .def("__len__", &Index::size)
      .def("__contains__", &Index::contains)
      .def("rebuild", &Index::rebuild, py::call_guard<py::gil_scoped_release>())
      .def("stats", [](const Index& ix) { return stats_dict(ix.stats()); })
      .def("set_ef_search", &Index::set_ef_search)
      .def("set_threads", &Index::set_threads)
      .def("_inject_graph_failures", &Index::inject_graph_failures)
      .def("_graph_neighbours", &Index::graph_neighbours, py::arg("id"), py::arg("layer"))
      .def("_graph_entry", &Index::graph_entry)
      .def("_check_graph", &Index::check_graph)
      .def("_graph_level", &Index::graph_level, py::arg("id"))
      .def("to_bytes",
           [](const Index& ix) {
             py::object result;
             {
               py::gil_scoped_release release;
               ix.serialize([&result](std::size_t n) -> char* {
                 py::gil_scoped_acquire acquire;
                 PyObject* b = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(n));
                 if (b == nullptr) throw std::bad_alloc();
                 result = py::reinterpret_steal<py::object>(b);
                 return PyBytes_AsString(b);
               });
             }
             return result;
           })
      .def_static(
          "from_bytes",
          [](const py::buffer& data) {
            const py::buffer_info info = data.request();
            const auto size = std::size_t(info.size * info.itemsize);
            const char* ptr = static_cast<const char*>(info.ptr);
            py::gil_scoped_release release;
            return Index::from_bytes(ptr, size);
          },
          py::arg("data"))
      .def("save", &Index::save, py::arg("path"), py::arg("durable") = true,
           py::call_guard<py::gil_scoped_release>())
      .def_static("load", &Index::load, py::arg("path"), py::call_guard<py::gil_scoped_release>());

  // ---- playbook boost / inject and the role gate (lakehouse/matrix/ranking.py wraps these) ----
  m.def("role_normalize", [](const std::string& role) { return role_normalize(role); },
        py::arg("role"));
  m.def("role_equal", [](const std::string& a, const std::string& b) { return role_equal(a, b); },
        py::arg("a"), py::arg("b"));
  m.def(
      "apply_playbook",
      [](std::vector<std::string> result_ids, std::vector<std::string> result_corpora,
         const FloatArray& result_distances, std::vector<std::string> hit_answer_ids,
         std::vector<std::string> hit_answer_corpora,
         const py::array_t<double, py::array::c_style | py::array::forcecast>& hit_scores,
         const FloatArray& hit_distances, std::vector<std::string> hit_roles,
         std::string query_role, std::vector<std::string> exclude_ids, double max_distance,
         double max_inject_distance, std::size_t k, std::vector<std::size_t> vetoed_hits,
         std::vector<std::string> hit_queries, double max_ratio) {
        if (result_distances.ndim() != 1 || hit_distances.ndim() != 1 || hit_scores.ndim() != 1) {
          throw std::invalid_argument("distances and scores must be 1-d arrays");
        }
        PlaybookInput in;
        in.result_ids = std::move(result_ids);
        in.result_corpora = std::move(result_corpora);
        in.result_distances.assign(result_distances.data(),
                                   result_distances.data() + result_distances.shape(0));
        in.hit_answer_ids = std::move(hit_answer_ids);
        in.hit_answer_corpora = std::move(hit_answer_corpora);
        in.hit_scores.assign(hit_scores.data(), hit_scores.data() + hit_scores.shape(0));
        in.hit_distances.assign(hit_distances.data(), hit_distances.data() + hit_distances.shape(0));
        in.hit_roles = std::move(hit_roles);
        in.query_role = std::move(query_role);
        in.exclude_ids = std::move(exclude_ids);
        in.max_distance = max_distance;
        in.max_inject_distance = max_inject_distance;
        in.k = k;
        in.vetoed_hits = std::move(vetoed_hits);
        in.hit_queries = std::move(hit_queries);
        in.max_ratio = max_ratio;
        PlaybookOutcome out;
        {
          py::gil_scoped_release release;
          out = apply_playbook(in);
        }
        const std::size_t n = out.rows.size();
        py::list result_index(n), hit_index(n), sources(n);
        py::array_t<float> distances(n);
        float* d = distances.mutable_data();
        for (std::size_t i = 0; i < n; ++i) {
          result_index[i] = out.rows[i].result_index;
          hit_index[i] = out.rows[i].hit_index;
          sources[i] = result_source_name(out.rows[i].source);
          d[i] = out.rows[i].distance;
        }
        py::dict counts;
        counts["hits"] = out.counts.hits;
        counts["boosted"] = out.counts.boosted;
        counts["injected"] = out.counts.injected;
        counts["rejected_role"] = out.counts.rejected_role;
        counts["rejected_ratio"] = out.counts.rejected_ratio;
        counts["vetoed"] = out.counts.vetoed;
        counts["excluded"] = out.counts.excluded;
        return py::make_tuple(std::move(result_index), std::move(hit_index), std::move(distances),
                              std::move(sources), out.inject_candidates, std::move(counts));
      },
      py::arg("result_ids"), py::arg("result_corpora"), py::arg("result_distances"),
      py::arg("hit_answer_ids"), py::arg("hit_answer_corpora"), py::arg("hit_scores"),
      py::arg("hit_distances"), py::arg("hit_roles"), py::arg("query_role"),
      py::arg("exclude_ids"), py::arg("max_distance"), py::arg("max_inject_distance"),
      py::arg("k"), py::arg("vetoed_hits"), py::arg("hit_queries") = std::vector<std::string>{},
      py::arg("max_ratio") = 0.0,
      "Playbook boost + inject (see lakehouse/playbook.h); private, use lakehouse.matrix.ranking.");
  // ---- end of the playbook block ----
}
