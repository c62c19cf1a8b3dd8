#include "lakehouse/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lakehouse {

std::size_t hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

namespace {

class Pool {
 public:
  explicit Pool(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  std::size_t size() const { return threads_.size(); }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (stop_ && tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

Pool& pool() {
  // Leaked on purpose: joining workers from a static destructor at interpreter exit can
  // deadlock; the OS reclaims the threads.
  static Pool* p = new Pool(hardware_threads() > 1 ? hardware_threads() - 1 : 1);
  return *p;
}

struct ForState {
  std::size_t n = 0;
  std::size_t grain = 1;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::function<void(std::size_t, std::size_t)> fn;
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr error;

  // Takes chunks until none are left. Returns when this thread can take no more.
  void work() {
    for (;;) {
      const std::size_t begin = next.fetch_add(grain);
      if (begin >= n) return;
      const std::size_t end = std::min(n, begin + grain);
      try {
        fn(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(end - begin) + (end - begin) == n) {
        std::lock_guard<std::mutex> lock(mu);
        cv.notify_all();
      }
    }
  }
};

}  // namespace

void parallel_for(std::size_t n, std::size_t threads, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  if (threads == 0) threads = hardware_threads();
  const std::size_t chunks = (n + grain - 1) / grain;
  threads = std::min(threads, chunks);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  auto state = std::make_shared<ForState>();
  state->n = n;
  state->grain = grain;
  state->fn = fn;
  const std::size_t helpers = std::min(threads - 1, pool().size());
  for (std::size_t i = 0; i < helpers; ++i) {
    pool().submit([state] { state->work(); });
  }
  state->work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() >= n; });
  // fn is a copy owned by the state; late helpers only touch the counters.
  if (state->error) std::rethrow_exception(state->error);
}

}  // namespace lakehouse
