#include "lakehouse/save_coalescer.h"

#include <chrono>
#include <exception>

namespace lakehouse {

SaveCoalescer::SaveCoalescer(SaveFn save_fn) : save_fn_(std::move(save_fn)) {
  worker_ = std::thread([this] { run(); });
}

SaveCoalescer::~SaveCoalescer() { close(); }

void SaveCoalescer::trigger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    ++requested_;
    ++stats_.triggers;
  }
  wake_.notify_one();
}

void SaveCoalescer::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || requested_ > started_; });
    if (requested_ <= started_) return;  // stopping with nothing pending
    const std::uint64_t target = requested_;
    started_ = target;
    running_ = true;
    lock.unlock();
    bool ok = true;
    std::string error;
    try {
      save_fn_();
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
    } catch (...) {
      ok = false;
      error = "unknown error";
    }
    lock.lock();
    running_ = false;
    completed_ = target;
    last_ok_ = ok;
    if (ok) {
      ++stats_.saves;
    } else {
      ++stats_.failures;
      stats_.last_error = error.empty() ? "save failed" : error;
    }
    done_.notify_all();
  }
}

SaveCoalescer::FlushResult SaveCoalescer::flush(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::uint64_t target = requested_;
  FlushResult result;
  auto ready = [&] { return completed_ >= target || (closed_ && !running_ && requested_ <= started_); };
  if (timeout_s < 0) {
    done_.wait(lock, ready);
  } else if (!done_.wait_for(lock, std::chrono::duration<double>(timeout_s), ready)) {
    result.ok = false;
    result.timed_out = true;
    result.error = "flush timed out";
    return result;
  }
  if (target > 0 && !last_ok_) {
    result.ok = false;
    result.error = stats_.last_error;
  }
  return result;
}

void SaveCoalescer::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mu_);
  done_.notify_all();
}

SaveCoalescer::Stats SaveCoalescer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.running = running_;
  s.pending = requested_ > started_;
  return s;
}

}  // namespace lakehouse
