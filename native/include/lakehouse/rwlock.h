// RwLock: a writer-preferring shared mutex.
//
// std::shared_mutex on glibc prefers readers, so under a steady stream of searches a writer
// (growing the arrays, installing a rebuilt graph, taking a save snapshot) could wait
// forever. Here a waiting writer stops new readers from entering; readers already inside
// finish, the writer runs, then everyone proceeds. Not recursive: a thread must not take a
// shared lock it already holds.
#pragma once

#include <condition_variable>
#include <mutex>

namespace lakehouse {

class RwLock {
 public:
  void lock_shared() {
    std::unique_lock<std::mutex> l(mu_);
    readers_cv_.wait(l, [this] { return !writer_ && writers_waiting_ == 0; });
    ++readers_;
  }
  void unlock_shared() {
    std::lock_guard<std::mutex> l(mu_);
    if (--readers_ == 0 && writers_waiting_ > 0) writers_cv_.notify_one();
  }
  void lock() {
    std::unique_lock<std::mutex> l(mu_);
    ++writers_waiting_;
    writers_cv_.wait(l, [this] { return !writer_ && readers_ == 0; });
    --writers_waiting_;
    writer_ = true;
  }
  void unlock() {
    std::lock_guard<std::mutex> l(mu_);
    writer_ = false;
    if (writers_waiting_ > 0) writers_cv_.notify_one();
    readers_cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable readers_cv_;
  std::condition_variable writers_cv_;
  int readers_ = 0;
  int writers_waiting_ = 0;
  bool writer_ = false;
};

}  // namespace lakehouse
