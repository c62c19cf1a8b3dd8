// The only file that includes pybind11. It converts arguments (numpy arrays are taken as
// c-contiguous float32 with one shape check), releases the GIL around every native loop, and
// maps C++ errors to Python ones: std::invalid_argument -> ValueError, std::out_of_range ->
// KeyError, lakehouse::FormatError -> ValueError.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "lakehouse/distance.h"
#include "lakehouse/save_coalescer.h"
#include "lakehouse/thread_pool.h"

namespace py = pybind11;
using namespace lakehouse;

namespace {

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
    {
      py::gil_scoped_release release;
      core_.reset();
    }
  }
  void trigger() { core_->trigger(); }
  bool flush(double timeout) {
    SaveCoalescer::FlushResult r;
    {
      py::gil_scoped_release release;
      r = core_->flush(timeout);
    }
    if (r.timed_out) throw py::value_error("flush timed out");
    if (!r.ok) throw std::runtime_error("save failed: " + r.error);
    return true;
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

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Lakehouse native core (private; use the lakehouse package)";

  m.def("simd_isa", [] { return std::string(best_kernels().isa); },
        "The SIMD kernel set chosen for this CPU: 'avx512', 'avx2' or 'scalar'.");
  m.def("hardware_threads", &hardware_threads);

  py::class_<PySaveCoalescer>(m, "SaveCoalescer")
      .def(py::init<py::function>(), py::arg("save_fn"))
      .def("trigger", &PySaveCoalescer::trigger)
      .def("flush", &PySaveCoalescer::flush, py::arg("timeout") = -1.0)
      .def("close", &PySaveCoalescer::close)
      .def("stats", &PySaveCoalescer::stats);
}
